"""archspec.modules: one builder per layer tag, modules with the trace's shapes, and the public entry points."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import archspec
from archspec.check import CheckResult, check_file, check_text
from archspec.layers import LAYER_TYPES
from archspec.modules import BUILDERS, GAN, build
from archspec.rules import GRAPH_RULES, RULES
from archspec.spec import Spec
from archspec.trace import NetworkTrace

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "specs" / "tiny.yaml"

# A small GAN on 3×8×8 images; the discriminator starts with the layers under test and ends the same way.
TEMPLATE = """\
name: layer_{index}
latent: 8
image: [3, 8, 8]
generator:
  layers:
    - {{type: linear, out_features: 192}}
    - {{type: view, shape: [3, 8, 8]}}
    - {{type: sigmoid}}
discriminator:
  layers:
{layers}
    - {{type: flatten}}
    - {{type: linear, out_features: 1}}
    - {{type: sigmoid}}
train: {{batch_size: 2}}
"""

# Each case is the discriminator's opening layers; together they use every layer type and most options.
CASES = [
    ["{type: linear, out_features: 5}", "{type: linear, in_features: 5, out_features: 4, bias: false}"],
    ["{type: conv2d, out_channels: 6, kernel_size: 3, padding: 1, groups: 3}"],
    ["{type: conv2d, out_channels: 4, kernel_size: [3, 1], padding: same, dilation: 2}"],
    ["{type: conv2d, out_channels: 4, kernel_size: 3, stride: 2, padding: 1, padding_mode: reflect}"],
    ["{type: conv2d, in_channels: 3, out_channels: 4, kernel_size: 3, padding: valid, bias: false}"],
    ["{type: conv_transpose2d, out_channels: 4, kernel_size: 3, stride: 2, padding: 1, output_padding: 1}"],
    ["{type: conv_transpose2d, out_channels: 6, kernel_size: [4, 2], groups: 3, dilation: 2, bias: false}"],
    ["{type: flatten}", "{type: batch_norm1d}"],
    ["{type: view, shape: [3, 64]}", "{type: batch_norm1d, num_features: 3, affine: false, momentum: null}"],
    ["{type: batch_norm2d, eps: 0.001, track_running_stats: false}", "{type: dropout, p: 0.2}"],
    ["{type: instance_norm2d, affine: true}", "{type: leaky_relu, negative_slope: 0.2, inplace: true}"],
    ["{type: layer_norm}", "{type: relu, inplace: true}"],
    ["{type: layer_norm, normalized_shape: [8, 8], bias: false}", "{type: gelu, approximate: tanh}"],
    ["{type: silu}", "{type: tanh}", "{type: sigmoid}"],
    ["{type: flatten, start_dim: 2}", "{type: view, shape: [-1, 4]}"],
    ["{type: upsample, scale_factor: 2}", "{type: max_pool2d, kernel_size: 2}"],
    ["{type: upsample, size: [5, 7], mode: bilinear, align_corners: true}"],
    ["{type: max_pool2d, kernel_size: 3, stride: 2, padding: 1, dilation: 1, ceil_mode: true}"],
    ["{type: avg_pool2d, kernel_size: 3, stride: 2, padding: 1, ceil_mode: true, count_include_pad: false}"],
    ["{type: avg_pool2d, kernel_size: 2, divisor_override: 3}"],
    ["{type: dropout2d, p: 0.1}", "{type: identity}", "{type: prelu, num_parameters: 3, init: 0.1}"],
    ["{type: conv2d, out_channels: 12, kernel_size: 1}", "{type: pixel_shuffle, upscale_factor: 2}"],
    ["{type: adaptive_avg_pool2d, output_size: [3, 5]}", "{type: scale, factor: 0.5}"],
    ["{type: zero_pad2d, padding: [1, 0, 1, 0]}", "{type: reflection_pad2d, padding: 2}"],
    ["{type: replication_pad2d, padding: [0, 1, 2, 3]}", "{type: softmax, dim: 1}"],
    ["{type: conv2d, out_channels: 16, kernel_size: 1}", "{type: self_attention, spectral_norm: true}"],
    ["{type: sum, dim: 3, keepdim: true}", "{type: mean, dim: [-1]}"],
]

# Layers that read several inputs or a label, or give several outputs, are built in tests/test_graph.py.
GRAPH_ONLY = {"embedding", "conditional_batch_norm2d", "projection", "add", "mul", "cat", "split", "chunk"}


def case_spec(index: int) -> str:
    layers = "\n".join(f"    - {layer}" for layer in CASES[index])
    return TEMPLATE.format(index=index, layers=layers)


def _check(text: str) -> CheckResult:
    result = check_text(text)
    assert result.ok, "\n".join(e.render() for e in result.errors)
    return result


def _run(net: nn.Sequential, trace: NetworkTrace, batch: int) -> torch.Tensor:
    """Run ``net`` child by child, holding every output shape to the trace's."""
    x = torch.randn(batch, *trace.input)
    for module, layer in zip(net, trace.layers, strict=True):
        x = module(x)
        assert tuple(x.shape) == (batch, *layer.output), f"layer {layer.index}: {layer.label}"
    return x


# --- the tables agree ---------------------------------------------------------------------------------------


def test_builders_cover_exactly_the_layer_types() -> None:
    assert set(BUILDERS) == set(LAYER_TYPES) == set(RULES) | set(GRAPH_RULES)
    assert not set(RULES) & set(GRAPH_RULES)


def test_cases_use_every_layer_type() -> None:
    used: set[str] = set()
    for index in range(len(CASES)):
        spec = _check(case_spec(index)).spec
        assert spec is not None
        used |= {layer.type for layer in spec.discriminator.layers}
    assert used == set(LAYER_TYPES) - GRAPH_ONLY


# --- every layer type builds and runs with the trace's shapes -----------------------------------------------


@pytest.mark.parametrize("index", range(len(CASES)), ids=lambda i: "+".join(CASES[i]).replace(" ", ""))
def test_layer_builds_and_runs_with_traced_shapes(index: int) -> None:
    result = _check(case_spec(index))
    assert result.generator is not None and result.discriminator is not None
    gan = build(result)
    for net, trace in ((gan.generator, result.generator), (gan.discriminator, result.discriminator)):
        assert len(net) == len(trace.layers)
        assert sum(p.numel() for p in net.parameters()) == trace.params
        _run(net, trace, batch=2)


@pytest.mark.parametrize("spec", sorted((ROOT / "specs").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_specs_run_with_traced_shapes(spec: Path) -> None:
    result = check_file(spec)
    assert result.generator is not None and result.discriminator is not None
    gan = build(result)
    with torch.no_grad():
        image = _run(gan.generator, result.generator, batch=2)
        score = gan.discriminator(image)
    assert score.shape == (2, 1)
    assert sum(p.numel() for p in gan.generator.parameters()) == result.generator.params
    assert sum(p.numel() for p in gan.discriminator.parameters()) == result.discriminator.params


# --- names and state dicts ----------------------------------------------------------------------------------


def test_children_are_named_by_name_or_index() -> None:
    text = case_spec(0).replace(
        "{type: linear, out_features: 5}", "{type: linear, out_features: 5, name: fc1}"
    )
    text = text.replace("- {type: sigmoid}\ntrain", "- {type: sigmoid, name: prob}\ntrain")
    gan = build(_check(text))
    assert [name for name, _ in gan.discriminator.named_children()] == ["fc1", "1", "2", "3", "prob"]
    assert isinstance(gan.discriminator.fc1, nn.Linear)
    assert list(gan.discriminator.state_dict()) == [
        "fc1.weight",
        "fc1.bias",
        "1.weight",
        "3.weight",
        "3.bias",
    ]


def test_state_dict_keys_are_ordinary() -> None:
    gan = build(TINY)
    assert list(gan.generator.state_dict())[:2] == ["0.weight", "0.bias"]
    assert "4.running_mean" in gan.generator.state_dict()
    assert list(gan.discriminator.state_dict())[:2] == ["0.weight", "0.bias"]
    assert all(isinstance(m, nn.Sequential) for m in (gan.generator, gan.discriminator))


def test_latent_follows_the_spec() -> None:
    gan = build(TINY)
    assert gan.latent(4).shape == (4, 16)
    uniform = build(
        _check(TINY.read_text().replace("latent: 16", "latent: {size: 16, distribution: uniform}"))
    )
    z = uniform.latent(1000, generator=torch.Generator().manual_seed(0))
    assert z.min() >= -1 and z.max() <= 1 and z.min() < -0.9


def test_device_argument() -> None:
    for device in ("meta", torch.device("meta"), "cpu"):
        gan = build(TINY, device=device)
        assert {p.device.type for p in gan.generator.parameters()} == {torch.device(device).type}


def test_meta_build_allocates_and_initialises_nothing() -> None:
    """The seed at 4096 channels: over 4 GB of generator weights, built on meta at once (not in 11 s)."""
    text = (ROOT / "specs" / "conv_gan.yaml").read_text().replace("out_channels: 256", "out_channels: 4096")
    result = _check(text)
    start = time.perf_counter()
    gan = build(result, device="meta")
    assert time.perf_counter() - start < 2.0
    assert sum(p.numel() for p in gan.generator.parameters()) > 1_000_000_000
    assert {p.device.type for p in gan.generator.parameters()} == {"meta"}


# --- entry points -------------------------------------------------------------------------------------------


def test_build_accepts_a_path_a_string_a_result_and_a_spec() -> None:
    result = check_file(TINY)
    assert result.spec is not None
    for source in (TINY, str(TINY), result, result.spec):
        torch.manual_seed(0)
        gan = build(source)
        assert isinstance(gan, GAN)
        assert gan.spec == result.spec


def test_top_level_build_stays_the_function() -> None:
    # The builder module is archspec.modules: a submodule named build would rebind archspec.build on import.
    importlib.import_module("archspec.modules")
    assert callable(archspec.build)
    for source in (TINY, archspec.load(TINY), archspec.load(TINY).spec):
        assert isinstance(archspec.build(source), GAN)  # type: ignore[arg-type]  # spec is not None here


def test_invalid_file_raises_with_every_error(tmp_path: Path) -> None:
    text = TINY.read_text()
    text = text.replace("{type: view, shape: [8, 4, 4]}", "{type: view, shape: [8, 5, 4]}")
    text = text.replace("out_features: 1}", "out_features: 2}")
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = check_file(path)
    assert len(result.errors) == 2
    for source in (path, result):
        with pytest.raises(archspec.SpecInvalid) as caught:
            build(source)
        assert caught.value.errors == list(result.errors)
        assert all(e.line > 0 for e in caught.value.errors)


def test_invalid_spec_object_raises_with_every_error() -> None:
    spec = check_file(TINY).spec
    assert spec is not None
    data = spec.model_dump()
    data["generator"]["layers"][2]["shape"] = (8, 5, 4)  # 160 values from a linear giving 128
    data["discriminator"]["layers"][5]["out_features"] = 2  # two scores per sample
    bad = Spec.model_validate(data)
    with pytest.raises(archspec.SpecInvalid) as caught:
        build(bad)
    errors = caught.value.errors
    assert [e.path for e in errors] == ["generator.layers[2] (view)", "discriminator.layers[6] (sigmoid)"]
    assert errors[0].fix is not None and "out_features: 160 in generator.layers[0]" in errors[0].fix
    assert errors[1].fix == "out_features: 1 in discriminator.layers[5]"
    assert "<spec tiny>: error: generator.layers[2] (view)" in str(caught.value)


def test_spec_object_whose_networks_disagree_is_refused() -> None:
    """Each network traces, but the generator's 16×16 is not the discriminator's 32×32 input."""
    text = TINY.read_text().replace("image: [3, 16, 16]", "image: [3, 32, 32]")
    text = text.replace("{type: flatten}", "{type: max_pool2d, kernel_size: 2}\n    - {type: flatten}")
    result = check_text(text)
    assert result.spec is not None and not result.ok
    with pytest.raises(archspec.SpecInvalid) as caught:
        build(result.spec)
    assert [e.message for e in caught.value.errors] == [e.message for e in result.errors]


def test_load_does_not_import_torch_and_build_does() -> None:
    code = (
        "import sys, archspec\n"
        f"result = archspec.load({str(TINY)!r})\n"
        "assert result.ok\n"
        "print('torch' in sys.modules)\n"
        "gan = archspec.build(result)\n"
        "print('torch' in sys.modules, type(gan).__name__)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["False", "True", "GAN"]
