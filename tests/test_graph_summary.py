"""Graph specs against torchinfo (every layer's output shape and parameter count, on the meta device), against
torch.compile's graph capture (one graph, no breaks) and through ``archspec summary``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchinfo

from archspec.check import CheckResult, check_file
from archspec.cli import main
from archspec.modules import build
from archspec.trace import NetworkTrace

ROOT = Path(__file__).resolve().parent.parent
GRAPHS = sorted([*(ROOT / "specs" / "zoo").glob("*.yaml"), *(ROOT / "specs" / "examples").glob("*.yaml")])


def _inputs(trace: NetworkTrace, device: str) -> list[torch.Tensor]:
    assert trace.graph is not None
    return [
        torch.zeros(1, dtype=torch.long, device=device)
        if i.kind == "label"
        else torch.randn(1, *i.shape, device=device)
        for i in trace.graph.inputs
    ]


@pytest.fixture(scope="module", params=GRAPHS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def checked(request: pytest.FixtureRequest) -> CheckResult:
    result = check_file(request.param)
    assert result.ok, [e.render() for e in result.errors]
    return result


def test_torchinfo_shapes_and_params_equal_the_trace(checked: CheckResult) -> None:
    gan = build(checked, device="meta")
    for net, trace in ((gan.generator, checked.generator), (gan.discriminator, checked.discriminator)):
        assert trace is not None
        stats = torchinfo.summary(net, input_data=_inputs(trace, "meta"), device="meta", verbose=0)
        assert stats.total_params == trace.params
        shown = {id(row.module): row for row in stats.summary_list}
        modules = dict(net.named_modules())
        for t in trace.layers:
            row = shown[id(modules[t.node.key])]
            if not t.outputs:  # a split's parts are a tuple
                assert tuple(row.output_size) == (1, *t.output), t.node.path
            assert row.num_params == t.params, t.node.path


def test_summary_prints_both_networks_of_a_conditional_spec(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", str(ROOT / "specs" / "zoo" / "mimicry_cgan_pd32.yaml")]) == 0
    out = capsys.readouterr().out
    assert "Total params: 4,304,387" in out and "Total params: 1,055,105" in out


def test_torch_compile_captures_a_graph_network_whole() -> None:
    # dynamo's capture is what torch.compile runs on: one graph, no Python fallbacks in between
    result = check_file(ROOT / "specs" / "examples" / "resblock.yaml")
    gan = build(result)
    assert result.generator is not None
    explanation = torch._dynamo.explain(gan.generator.eval())(*_inputs(result.generator, "cpu"))
    assert explanation.graph_count == 1 and explanation.graph_break_count == 0
