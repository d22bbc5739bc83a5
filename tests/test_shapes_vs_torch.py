"""torch itself is the oracle: every shape rule and formula of the compiler against the real nn.Module.

For random layers and random input shapes (tiny, mismatched and invalid ones included) the compiler must reject a
layer exactly when torch does, and otherwise agree with torch on the output shape and the parameter count.
torch runs on the meta device first (shapes only, any size); where meta succeeds the layer also runs on small CPU
tensors, because some checks (output_padding < stride, for one) only happen in the real kernels.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter
from torch import nn

from archspec import shapes
from archspec.layers import LAYER_TYPES, MAX_SIZE, Layer, full_node_union
from archspec.modules import BUILDERS
from archspec.rules import GRAPH_RULES, RULES, Problem, Step
from archspec.trace import trace_network

ADAPTER: TypeAdapter[Any] = TypeAdapter(full_node_union())
CPU_LIMIT = 400_000  # values per tensor up to which the layer is also run for real on the CPU

Shape = tuple[int, ...]


# --- the oracle ------------------------------------------------------------------------------------------------------


def torch_module(layer: Layer, shape: Shape) -> Callable[[torch.Tensor], torch.Tensor]:
    """The layer built straight from its torch kwargs. Declared input sizes are kept, so torch checks them too."""
    kw = layer.torch_kwargs()
    kind = layer.type
    if kind == "view":
        target = kw["shape"]
        return lambda x: x.view(x.shape[0], *target)
    fill = {
        "in_channels": shape[0],
        "in_features": shape[-1],
        "num_features": shape[0],
        "normalized_shape": shape,
    }
    for name, value in fill.items():
        if name in kw and kw[name] is None:
            kw[name] = value
    return TORCH_CLASSES[kind](**kw)  # type: ignore[no-any-return]  # each class is an nn.Module


TORCH_CLASSES: dict[str, Callable[..., Any]] = {
    "linear": nn.Linear,
    "conv2d": nn.Conv2d,
    "conv_transpose2d": nn.ConvTranspose2d,
    "batch_norm1d": nn.BatchNorm1d,
    "batch_norm2d": nn.BatchNorm2d,
    "instance_norm2d": nn.InstanceNorm2d,
    "layer_norm": nn.LayerNorm,
    "dropout": nn.Dropout,
    "leaky_relu": nn.LeakyReLU,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "flatten": nn.Flatten,
    "upsample": nn.Upsample,
    "max_pool2d": nn.MaxPool2d,
    "avg_pool2d": nn.AvgPool2d,
}

# Errors torch raises for a layer it cannot build or run (TypeError: nn.Upsample with neither size nor scale).
TORCH_ERRORS = (RuntimeError, ValueError, TypeError, IndexError)

# The rank of a batched input, from the torch docs ("Input: (N, C, H, W) or (C, H, W)"): a 3-d tensor given to
# these layers is one unbatched sample, so a batch of [C, L] samples is not something they accept.
BATCHED_RANK = {
    "conv2d": (4,),
    "conv_transpose2d": (4,),
    "max_pool2d": (4,),
    "avg_pool2d": (4,),
    "upsample": (4,),
    "batch_norm2d": (4,),
    "instance_norm2d": (4,),
    "batch_norm1d": (2, 3),
}


def torch_output(layer: Layer, shape: Shape) -> Shape | None:
    """The per-sample output shape torch gives, or None when torch rejects the layer for this input.

    Torch "accepts" only if the layer works as a per-sample layer: the batched input has the rank the layer's docs
    give, and it runs at batch sizes 2 and 3 keeping the batch dimension in front (a layer_norm over [2, C] would
    otherwise silently normalise across a batch of 2). An empty output (a transposed conv that shrinks a side to
    0) counts as a rejection: no later layer or image can use it, and the compiler reports it.
    """
    kind = layer.type
    if len(shape) + 1 not in BATCHED_RANK.get(kind, (len(shape) + 1,)):
        return None
    outputs = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.device("meta"):
                module = torch_module(layer, shape)
            for batch in (2, 3):
                y = module(torch.empty((batch, *shape), device="meta"))
                if y.shape[0] != batch:
                    return None
                outputs.add(tuple(y.shape[1:]))
            if len(outputs) != 1:
                return None
            out = outputs.pop()
            if 0 in out or not out:  # empty, or the batch dimension merged into the sample
                return None
            if 2 * max(math.prod(shape), math.prod(out)) <= CPU_LIMIT:
                y = torch_module(layer, shape)(torch.rand((2, *shape)))
                assert tuple(y.shape[1:]) == out, "meta and CPU disagree"
        except TORCH_ERRORS:
            return None
    return out


def compiler_output(layer: Layer, shape: Shape) -> Step | None:
    """The rule's Step, or None when the compiler reports a Problem (a checked-size disagreement included)."""
    try:
        return RULES[layer.type](layer, shape)
    except Problem:
        return None


def built_params(layer: Layer, shape: Shape, step: Step) -> int:
    """Parameters of the module archspec.modules makes for this layer."""
    trace = trace_network("discriminator", shape, [layer]).layers[0]
    module = BUILDERS[trace.type](trace)
    return sum(p.numel() for p in module.parameters())


def assert_agrees(data: dict[str, Any], shape: Shape) -> Step | None:
    """The property every generated case must have; returns the compiler's Step for extra checks."""
    layer = ADAPTER.validate_python(data)
    step = compiler_output(layer, shape)
    expected = torch_output(layer, shape)
    if step is None or expected is None:
        assert step is None and expected is None, (
            f"compiler {step}, torch {expected} for {data} on {list(shape)}"
        )
        return None
    assert step.output == expected, f"{data} on {list(shape)}"
    assert step.params == built_params(layer, shape, step), data
    return step


# --- strategies ------------------------------------------------------------------------------------------------------


def pair(low: int, high: int) -> st.SearchStrategy[Any]:
    """A size written as one int (both axes) or as [h, w]."""
    return pairs_of(st.integers(low, high))


def pairs_of(one: st.SearchStrategy[int]) -> st.SearchStrategy[Any]:
    return st.one_of(one, st.lists(one, min_size=2, max_size=2))


SMALL_PAD = st.sampled_from([0, 0, 0, 1, 1, 2, 3])


def image_shape(channels: st.SearchStrategy[int], size: int = 20) -> st.SearchStrategy[Shape]:
    """Mostly [C, H, W] inputs, sometimes of the wrong rank (a flat vector, [C, L], or one dimension too many)."""
    return st.sampled_from([3, 3, 3, 3, 3, 3, 3, 3, 1, 2, 4]).flatmap(
        lambda rank: sample_shape(channels, rank, size)
    )


def sample_shape(channels: st.SearchStrategy[int], rank: int, size: int = 20) -> st.SearchStrategy[Shape]:
    """[C, ...] with ``rank`` dimensions in all."""
    return st.tuples(channels, *[st.integers(1, size)] * (rank - 1))


def maybe_declared(draw: st.DrawFn, actual: int) -> int | None:
    """Mostly None (inferred), sometimes the right value, sometimes a wrong one."""
    return draw(st.sampled_from([None, None, None, None, actual, actual + 1, max(1, actual - 1)]))


def with_declared(data: dict[str, Any], name: str, value: int | None) -> dict[str, Any]:
    return data if value is None else {**data, name: value}


@st.composite
def conv2d_cases(draw: st.DrawFn) -> tuple[dict[str, Any], Shape]:
    groups = draw(st.sampled_from([1, 1, 1, 2, 3, 4]))
    shape = draw(image_shape(st.integers(1, 4).map(lambda c: c * groups) | st.integers(1, 9)))
    data: dict[str, Any] = {
        "type": "conv2d",
        "out_channels": draw(st.integers(1, 4).map(lambda c: c * groups) | st.integers(1, 9)),
        "kernel_size": draw(pair(1, 5)),
        "stride": draw(pair(1, 3)),
        "padding": draw(st.one_of(pair(0, 4), st.sampled_from(["same", "valid"]))),
        "dilation": draw(pair(1, 3)),
        "groups": groups,
        "bias": draw(st.booleans()),
        "padding_mode": draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"])),
    }
    if data["padding"] == "same" and draw(st.booleans()):
        data["stride"] = 1
    return with_declared(data, "in_channels", maybe_declared(draw, shape[0])), shape


@st.composite
def conv_transpose2d_cases(draw: st.DrawFn) -> tuple[dict[str, Any], Shape]:
    groups = draw(st.sampled_from([1, 1, 1, 2, 3, 4]))
    shape = draw(image_shape(st.integers(1, 4).map(lambda c: c * groups) | st.integers(1, 9), size=12))
    data: dict[str, Any] = {
        "type": "conv_transpose2d",
        "out_channels": draw(st.integers(1, 4).map(lambda c: c * groups) | st.integers(1, 9)),
        "kernel_size": draw(pair(1, 5)),
        "stride": draw(pair(1, 3)),
        "padding": draw(pair(0, 4)),
        "output_padding": draw(pairs_of(SMALL_PAD)),
        "dilation": draw(pair(1, 3)),
        "groups": groups,
        "bias": draw(st.booleans()),
    }
    return with_declared(data, "in_channels", maybe_declared(draw, shape[0])), shape


@st.composite
def pool_cases(draw: st.DrawFn) -> tuple[dict[str, Any], Shape]:
    kind = draw(st.sampled_from(["max_pool2d", "avg_pool2d"]))
    data: dict[str, Any] = {
        "type": kind,
        "kernel_size": draw(pair(1, 5)),
        "padding": draw(pairs_of(SMALL_PAD)),
        "ceil_mode": draw(st.booleans()),
    }
    if draw(st.booleans()):
        data["stride"] = draw(pair(1, 4))
    if kind == "max_pool2d":
        data["dilation"] = draw(pair(1, 3))
    else:
        data["count_include_pad"] = draw(st.booleans())
        data["divisor_override"] = draw(st.sampled_from([None, 1, 3]))
    return data, draw(image_shape(st.integers(1, 4)))


SCALES = [0.1, 0.25, 1 / 3, 0.5, 0.7, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0]


@st.composite
def upsample_cases(draw: st.DrawFn) -> tuple[dict[str, Any], Shape]:
    mode = draw(st.sampled_from(["nearest", "nearest-exact", "bilinear", "bicubic"]))
    data: dict[str, Any] = {"type": "upsample", "mode": mode}
    how = draw(st.sampled_from(["size", "scale", "scale", "scale_pair"]))
    if how == "size":
        data["size"] = draw(pair(1, 24))
    elif how == "scale":
        data["scale_factor"] = draw(st.sampled_from([*SCALES, 2]))
    else:
        data["scale_factor"] = draw(st.lists(st.sampled_from(SCALES), min_size=2, max_size=2))
    if mode in ("bilinear", "bicubic") or draw(st.integers(0, 9)) == 0:
        data["align_corners"] = draw(st.sampled_from([None, True, False]))
    return data, draw(image_shape(st.integers(1, 3)))


@st.composite
def linear_cases(draw: st.DrawFn) -> tuple[dict[str, Any], Shape]:
    shape = draw(st.lists(st.integers(1, 9), min_size=1, max_size=3).map(tuple))
    data = {"type": "linear", "out_features": draw(st.integers(1, 12)), "bias": draw(st.booleans())}
    return with_declared(data, "in_features", maybe_declared(draw, shape[-1])), shape


@st.composite
def view_cases(draw: st.DrawFn) -> tuple[dict[str, Any], Shape]:
    shape = draw(st.lists(st.integers(1, 6), min_size=1, max_size=3).map(tuple))
    count = math.prod(shape)
    divisors = [d for d in range(1, count + 1) if count % d == 0]
    if draw(st.booleans()):  # a shape that fits, perhaps with a -1
        first = draw(st.sampled_from(divisors))
        target = [first, count // first]
        if draw(st.booleans()):
            target[draw(st.integers(0, 1))] = -1
    else:  # anything, usually not fitting
        target = draw(st.lists(st.sampled_from([-2, -1, 1, 2, 3, 4, 6, count]), min_size=1, max_size=3))
    return {"type": "view", "shape": target}, shape


@st.composite
def flatten_cases(draw: st.DrawFn) -> tuple[dict[str, Any], Shape]:
    shape = draw(st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple))
    dims = st.integers(-5, 5)
    start, end = draw(dims), draw(dims)
    rank = len(shape) + 1
    if start % rank == 0 and end % rank != 0 and -rank <= start:
        # Merging the batch into a size-1 dimension looks per-sample to torch; the refusal is tested on its own.
        start = 1
    return {"type": "flatten", "start_dim": start, "end_dim": end}, shape


@st.composite
def norm_cases(draw: st.DrawFn) -> tuple[dict[str, Any], Shape]:
    kind = draw(st.sampled_from(["batch_norm1d", "batch_norm2d", "instance_norm2d"]))
    ranks = [1, 2, 1, 2, 1, 2, 3] if kind == "batch_norm1d" else [3, 3, 3, 3, 3, 1, 2, 4]
    shape = draw(st.sampled_from(ranks).flatmap(lambda rank: sample_shape(st.integers(1, 5), rank, 5)))
    data: dict[str, Any] = {"type": kind, "affine": draw(st.booleans())}
    data["track_running_stats"] = draw(st.booleans())
    declared = maybe_declared(draw, shape[0])
    if not data["affine"] and not data["track_running_stats"]:
        # torch has no tensor of num_features to check it against (instance_norm2d warns, batch norms say nothing);
        # the compiler checks it anyway, tested on its own below.
        declared = None
    return with_declared(data, "num_features", declared), shape


@st.composite
def layer_norm_cases(draw: st.DrawFn) -> tuple[dict[str, Any], Shape]:
    shape = draw(st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple))
    data: dict[str, Any] = {
        "type": "layer_norm",
        "elementwise_affine": draw(st.booleans()),
        "bias": draw(st.booleans()),
    }
    choice = draw(st.sampled_from(["none", "tail", "tail", "other", "longer"]))
    if choice == "tail":
        data["normalized_shape"] = list(shape[draw(st.integers(0, len(shape) - 1)) :])
    elif choice == "other":
        data["normalized_shape"] = draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))
    elif choice == "longer":
        data["normalized_shape"] = [2, *shape]
    return data, shape


@st.composite
def elementwise_cases(draw: st.DrawFn) -> tuple[dict[str, Any], Shape]:
    kind = draw(st.sampled_from(["dropout", "leaky_relu", "relu", "gelu", "silu", "tanh", "sigmoid"]))
    shape = draw(st.lists(st.integers(1, 6), min_size=1, max_size=3).map(tuple))
    return {"type": kind}, shape


# --- the properties --------------------------------------------------------------------------------------------------


@settings(max_examples=1200)
@given(conv2d_cases())
def test_conv2d_agrees_with_torch(case: tuple[dict[str, Any], Shape]) -> None:
    step = assert_agrees(*case)
    if step is not None:
        data, shape = case
        layer = ADAPTER.validate_python(data)
        kh, kw = layer.kernel_size
        assert step.macs == math.prod(step.output) * (shape[0] // layer.groups) * kh * kw


@settings(max_examples=1200)
@given(conv_transpose2d_cases())
def test_conv_transpose2d_agrees_with_torch(case: tuple[dict[str, Any], Shape]) -> None:
    step = assert_agrees(*case)
    if step is not None:
        data, (c, h, w) = case
        layer = ADAPTER.validate_python(data)
        kh, kw = layer.kernel_size
        assert step.macs == c * h * w * (layer.out_channels // layer.groups) * kh * kw


@settings(max_examples=800)
@given(pool_cases())
def test_pools_agree_with_torch(case: tuple[dict[str, Any], Shape]) -> None:
    assert_agrees(*case)


@settings(max_examples=500)
@given(upsample_cases())
def test_upsample_agrees_with_torch(case: tuple[dict[str, Any], Shape]) -> None:
    assert_agrees(*case)


@settings(max_examples=400)
@given(linear_cases())
def test_linear_agrees_with_torch(case: tuple[dict[str, Any], Shape]) -> None:
    step = assert_agrees(*case)
    if step is not None:
        data, shape = case
        assert step.macs == math.prod(shape) * data["out_features"]


@settings(max_examples=400)
@given(view_cases())
def test_view_agrees_with_torch(case: tuple[dict[str, Any], Shape]) -> None:
    assert_agrees(*case)


@settings(max_examples=400)
@given(flatten_cases())
def test_flatten_agrees_with_torch(case: tuple[dict[str, Any], Shape]) -> None:
    assert_agrees(*case)


@settings(max_examples=500)
@given(norm_cases())
def test_norms_agree_with_torch(case: tuple[dict[str, Any], Shape]) -> None:
    assert_agrees(*case)


@settings(max_examples=300)
@given(layer_norm_cases())
def test_layer_norm_agrees_with_torch(case: tuple[dict[str, Any], Shape]) -> None:
    assert_agrees(*case)


@settings(max_examples=100)
@given(elementwise_cases())
def test_elementwise_agree_with_torch(case: tuple[dict[str, Any], Shape]) -> None:
    assert_agrees(*case)


def test_every_layer_type_has_a_rule_a_builder_and_an_oracle() -> None:
    # the types of graphs (merges, labels, padding, ...) have their oracles in test_graph_layers_vs_torch.py
    assert set(RULES) | set(GRAPH_RULES) == set(LAYER_TYPES) == set(BUILDERS)
    assert {*TORCH_CLASSES, "view"} <= set(RULES)


# --- where the compiler is stricter than torch, on purpose ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["instance_norm2d", "batch_norm2d"])
def test_a_declared_num_features_is_checked_even_where_torch_has_nothing_to_check_it_against(
    kind: str,
) -> None:
    data = {"type": kind, "num_features": 5, "affine": False, "track_running_stats": False}
    layer = ADAPTER.validate_python(data)
    with pytest.raises(Problem, match="num_features: 5, but"):
        RULES[kind](layer, (4, 3, 3))


def test_flatten_refuses_to_merge_the_batch_dimension() -> None:
    layer = ADAPTER.validate_python({"type": "flatten", "start_dim": 0})
    with pytest.raises(Problem, match="start_dim 0 would merge the batch dimension"):
        RULES["flatten"](layer, (4, 3, 3))


# --- sizes beyond what a meta tensor should be asked for -------------------------------------------------------------


def test_an_output_over_2_31_values_per_sample_is_an_error() -> None:
    up = ADAPTER.validate_python({"type": "upsample", "scale_factor": 1024})
    trace = trace_network("generator", (512, 64, 64), [up])
    assert not trace.complete
    assert "holds 2,199,023,255,552 values per sample, over 2^31" in trace.faults[0].problem.message
    # Just under the limit is fine, and torch (on meta) agrees on the shape.
    up = ADAPTER.validate_python({"type": "upsample", "scale_factor": 8})
    trace = trace_network("generator", (512, 64, 64), [up])
    assert trace.complete and not trace.faults
    assert trace.output == torch_output(up, (512, 64, 64)) == (512, 512, 512)
    assert math.prod(trace.output or ()) < MAX_SIZE


def test_a_layer_with_over_2_31_parameters_is_an_error() -> None:
    layer = ADAPTER.validate_python({"type": "linear", "out_features": 1_000_000})
    trace = trace_network("generator", (5000,), [layer])
    assert "5,001,000,000 parameters in one layer, over 2^31" in trace.faults[0].problem.message


# --- each formula of archspec.shapes against torch, on a grid --------------------------------------------------------


def _meta(fn: Callable[[torch.Tensor], torch.Tensor], size: int) -> int | None:
    """The height torch gives a 1×1×size×1 input, or None when it refuses (or gives an empty tensor)."""
    try:
        out = int(fn(torch.empty((1, 1, size, 1), device="meta")).shape[2])
    except RuntimeError:
        return None
    return out or None


def test_conv_out_formula() -> None:
    for n, k, s, p, d in itertools.product(range(1, 10), range(1, 5), range(1, 4), range(3), range(1, 3)):
        weight = torch.empty((1, 1, k, 1), device="meta")
        want = _meta(lambda x: torch.nn.functional.conv2d(x, weight, None, (s, 1), (p, 0), (d, 1)), n)  # noqa: B023
        got = shapes.conv_out(n, k, s, p, d)
        assert (got.value if got.value >= 1 else None) == want, (n, k, s, p, d)
        assert got.arithmetic.endswith(f"= {got.value}")


def test_conv_transpose_out_formula() -> None:
    for n, k, s, p, op, d in itertools.product(
        range(1, 7), range(1, 5), range(1, 4), range(3), range(3), range(1, 3)
    ):
        if op >= s and op >= d:
            continue  # refused by the rule before the formula is used
        weight = torch.empty((1, 1, k, 1), device="meta")

        def f(x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.conv_transpose2d(x, weight, None, (s, 1), (p, 0), (op, 0), 1, (d, 1))  # noqa: B023

        got = shapes.conv_transpose_out(n, k, s, p, op, d)
        assert (got.value if got.value >= 1 else None) == _meta(f, n), (n, k, s, p, op, d)


def test_pool_out_formula() -> None:
    grid = itertools.product(range(1, 10), range(1, 5), range(1, 4), range(3), range(1, 3), (False, True))
    for n, k, s, p, d, ceil in grid:
        if p > k // 2:
            continue  # refused by the rule before the formula is used

        def f(x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.max_pool2d(x, (k, 1), (s, 1), (p, 0), (d, 1), ceil)  # noqa: B023

        got = shapes.pool_out(n, k, s, p, d, ceil)
        assert (got.value if got.value >= 1 else None) == _meta(f, n), (n, k, s, p, d, ceil)


def test_upsample_out_formula() -> None:
    for n, scale in itertools.product(range(1, 30), [*SCALES, 0.3, 0.9, 1.1, 1.7, 2.2, 3.3, 7.5]):
        x = torch.empty((1, 1, n, 1), device="meta")
        try:
            want = int(torch.nn.functional.interpolate(x, scale_factor=(scale, 1.0)).shape[2])
        except RuntimeError:
            want = None
        got = shapes.upsample_out(n, scale)
        assert (got.value if got.value >= 1 else None) == want, (n, scale)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_same_padding_formula() -> None:
    for k, d in itertools.product(range(1, 8), range(1, 4)):
        conv = nn.Conv2d(1, 1, (k, 1), padding="same", dilation=(d, 1))
        # torch keeps (left_w, right_w, left_h, right_h); the height pair is ours.
        left, right = conv._reversed_padding_repeated_twice[2:]
        assert shapes.same_padding(k, d) == (left, right), (k, d)
        assert shapes.same_out(9).value == int(conv(torch.empty((1, 1, 9, 3), device="meta")).shape[2])


def test_elements_formula() -> None:
    for shape in [(1,), (3, 128, 128), (256, 28, 28), (7, 1, 5, 2)]:
        assert shapes.elements(shape) == torch.Size(shape).numel()


def test_the_seed_sizes_11_28_62_128() -> None:
    sizes = [11]
    for padding in (0, 0, 1):
        sizes.append(shapes.conv_transpose_out(sizes[-1], 8, 2, padding, 0, 1).value)
    assert sizes == [11, 28, 62, 128]
    assert shapes.conv_transpose_out(62, 8, 2, 0, 0, 1).arithmetic == "(62−1)·2 − 2·0 + 7 + 0 + 1 = 130"
