"""The compiler's trace against two outside counts: torchinfo's summary and torch's own FLOP counter.

torchinfo 1.8 runs on the meta device, so these summaries allocate no weights and run no arithmetic.

MACs are not compared with torchinfo, on purpose. torchinfo 1.8 counts a ConvTranspose2d as
``weight.numel() * H_out * W_out``, as if every output pixel saw the whole kernel of every input channel: for
the seed's middle layer that is 16,123,888,640 against the 3,288,334,336 multiplications it does. Our count is
on the input grid, ``in_channels * H_in * W_in * out_channels / groups * kh * kw``: each input pixel scatters
into one kernel window per output channel of its group. torchinfo also adds one MAC per bias value
(Linear(100, 363) is 36,663 there, 36,300 here). torch's FlopCounterMode counts what the kernels do, and our
MACs are half its FLOPs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torchinfo
from torch.utils.flop_counter import FlopCounterMode

from archspec.check import CheckResult, check_file
from archspec.layers import LAYER_TYPES
from archspec.modules import build, build_network
from archspec.trace import NetworkTrace, trace_network

SPECS = sorted((Path(__file__).resolve().parent.parent / "specs").glob("*.yaml"))  # not specs/broken/


@pytest.fixture(scope="module", params=SPECS, ids=lambda p: p.stem)
def checked(request: pytest.FixtureRequest) -> CheckResult:
    result = check_file(request.param)
    assert result.ok, [e.render() for e in result.errors]
    return result


def _networks(result: CheckResult) -> list[tuple[torch.nn.Sequential, NetworkTrace]]:
    assert result.generator is not None and result.discriminator is not None
    gan = build(result, device="meta")
    return [(gan.generator, result.generator), (gan.discriminator, result.discriminator)]


def test_torchinfo_shapes_and_params_equal_the_trace(checked: CheckResult) -> None:
    for net, trace in _networks(checked):
        stats = torchinfo.summary(net, input_size=(1, *trace.input), device="meta", verbose=0)
        rows = [row for row in stats.summary_list if row.depth == 1]
        assert [row.class_name for row in rows] == [type(m).__name__ for m in net]
        assert [tuple(row.output_size) for row in rows] == [(1, *t.output) for t in trace.layers]
        assert [row.num_params for row in rows] == [t.params for t in trace.layers]
        assert stats.total_params == trace.params
        assert stats.trainable_params == trace.params


def test_macs_equal_torch_flop_counter(checked: CheckResult) -> None:
    for net, trace in _networks(checked):
        x = torch.randn(1, *trace.input, device="meta")
        for module, layer in zip(net, trace.layers, strict=True):
            with FlopCounterMode(display=False) as counter:
                x = module(x)
            assert counter.get_total_flops() == 2 * layer.macs, layer.label


# Weight layers in the shapes the shipped specs do not reach: groups, dilation, output_padding, odd sizes.
WEIGHT_CASES: list[tuple[tuple[int, ...], dict[str, Any]]] = [
    ((6, 7, 5), {"type": "conv2d", "out_channels": 4, "kernel_size": (3, 2), "stride": (2, 1), "groups": 2}),
    ((4, 9, 9), {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": "same", "dilation": 2}),
    ((4, 9, 9), {"type": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 2, "bias": False}),
    ((6, 5, 7), {"type": "conv_transpose2d", "out_channels": 9, "kernel_size": 3, "stride": 2, "groups": 3}),
    ((3, 4, 4), {"type": "conv_transpose2d", "out_channels": 5, "kernel_size": (4, 3), "stride": 3,
                 "padding": 1, "output_padding": (2, 1), "dilation": 2}),
    ((2, 6, 3), {"type": "linear", "out_features": 7}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("shape", "fields"), WEIGHT_CASES, ids=[f"{i}-{f['type']}" for i, (_, f) in enumerate(WEIGHT_CASES)]
)
def test_weight_layer_macs_equal_torch_flop_counter(shape: tuple[int, ...], fields: dict[str, Any]) -> None:
    layer = LAYER_TYPES[fields["type"]].model_validate(fields)
    trace = trace_network("discriminator", shape, [layer])
    assert trace.complete and not trace.faults
    module = build_network(trace)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        out = module(torch.randn(1, *shape))
    assert tuple(out.shape) == (1, *trace.layers[0].output)
    assert counter.get_total_flops() == 2 * trace.macs
    assert sum(p.numel() for p in module.parameters()) == trace.params


def test_weight_cases_cover_every_single_input_weight_layer() -> None:
    """Layers reading a label or several inputs are held to torch in test_graph_layers.py."""
    single = {t for t, c in LAYER_TYPES.items() if c.traits.weights and c.traits.inputs == 1}
    assert {fields["type"] for _, fields in WEIGHT_CASES} == single - {"embedding", "self_attention"}
