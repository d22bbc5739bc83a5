"""The shape rules one by one: what each refuses, with which numbers, and the fix it computes."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter

from archspec.layers import LAYER_TYPES, full_node_union
from archspec.rules import GRAPH_RULES, RULES, Problem, Step, ViewCount

ADAPTER: TypeAdapter[Any] = TypeAdapter(full_node_union())


def step(data: dict[str, Any], shape: tuple[int, ...]) -> Step:
    layer = ADAPTER.validate_python(data)
    return RULES[layer.type](layer, shape)


def problem(data: dict[str, Any], shape: tuple[int, ...]) -> Problem:
    with pytest.raises(Problem) as info:
        step(data, shape)
    return info.value


def test_one_rule_per_layer_type() -> None:
    assert set(RULES) | set(GRAPH_RULES) == set(LAYER_TYPES)
    assert not set(RULES) & set(GRAPH_RULES)


# --- the seed's numbers ----------------------------------------------------------------------------------------------


def test_the_seed_first_transposed_conv() -> None:
    s = step({"type": "conv_transpose2d", "out_channels": 256, "kernel_size": 8, "stride": 2}, (3, 11, 11))
    assert s.output == (256, 28, 28)
    assert s.arithmetic == ("(11−1)·2 − 2·0 + 7 + 0 + 1 = 28",)
    assert s.params == 3 * 256 * 8 * 8 + 256  # a transposed convolution does learn weights
    assert s.macs == 3 * 11 * 11 * 256 * 8 * 8


def test_the_seed_third_transposed_conv_receives_62x62() -> None:
    s = step(
        {"type": "conv_transpose2d", "out_channels": 3, "kernel_size": 8, "stride": 2, "padding": 1},
        (256, 62, 62),
    )
    assert s.output == (3, 128, 128)
    assert s.arithmetic == ("(62−1)·2 − 2·1 + 7 + 0 + 1 = 128",)


def test_conv2d_arithmetic_is_written_per_axis_when_the_axes_differ() -> None:
    s = step(
        {"type": "conv2d", "out_channels": 4, "kernel_size": [3, 5], "stride": 2, "padding": 1}, (3, 9, 9)
    )
    assert s.output == (4, 5, 4)
    assert s.arithmetic == ("⌊(9 + 2·1 − 2 − 1)/2⌋ + 1 = 5", "⌊(9 + 2·1 − 4 − 1)/2⌋ + 1 = 4")


# --- groups, output_padding, padding --------------------------------------------------------------------------------


def test_groups_not_dividing_in_channels_suggests_the_nearest_common_divisor() -> None:
    p = problem({"type": "conv2d", "out_channels": 12, "kernel_size": 3, "groups": 5}, (8, 10, 10))
    assert p.message == "groups: 5 does not divide in_channels 8"
    assert p.fix == "groups: 4"
    assert p.field == "groups"


def test_groups_not_dividing_out_channels() -> None:
    p = problem({"type": "conv_transpose2d", "out_channels": 6, "kernel_size": 3, "groups": 4}, (8, 10, 10))
    assert p.message == "groups: 4 does not divide out_channels 6"
    assert p.fix == "groups: 2"


@pytest.mark.parametrize(
    ("extra", "message", "fix"),
    [
        (
            {"stride": 2, "output_padding": 2},
            "output_padding 2 must be smaller than stride (2) or dilation (1)",
            "1",
        ),
        (
            {"dilation": 3, "output_padding": 3},
            "output_padding 3 must be smaller than stride (1) or dilation (3)",
            "2",
        ),
    ],
)
def test_output_padding_must_be_smaller_than_stride_or_dilation(
    extra: dict[str, Any], message: str, fix: str
) -> None:
    p = problem({"type": "conv_transpose2d", "out_channels": 3, "kernel_size": 4, **extra}, (8, 10, 10))
    assert p.message == message
    assert p.fix == f"output_padding: {fix}"
    assert p.field == "output_padding"


def test_output_padding_below_dilation_is_allowed() -> None:
    data = {
        "type": "conv_transpose2d",
        "out_channels": 3,
        "kernel_size": 3,
        "dilation": 2,
        "output_padding": 1,
    }
    assert step(data, (8, 5, 5)).output == (3, 10, 10)


def test_a_transposed_conv_with_too_much_padding_gets_the_largest_padding_that_works() -> None:
    p = problem({"type": "conv_transpose2d", "out_channels": 3, "kernel_size": 4, "padding": 5}, (8, 2, 2))
    assert p.message == "output height is -5: the padding is too large for this conv_transpose2d"
    assert p.detail == ("(2−1)·1 − 2·5 + 3 + 0 + 1 = -5",)
    assert p.fix == "padding: 2"
    assert step(
        {"type": "conv_transpose2d", "out_channels": 3, "kernel_size": 4, "padding": 2}, (8, 2, 2)
    ).output == (
        3,
        1,
        1,
    )


def test_a_conv_larger_than_its_input_gets_the_padding_that_fits() -> None:
    p = problem({"type": "conv2d", "out_channels": 3, "kernel_size": 5}, (8, 4, 4))
    assert p.message == "output height is 0: the input is too small for this conv2d"
    assert p.detail == ("4 − 4 − 1 + 1 = 0",)
    assert p.fix == "padding: 1, or a smaller kernel_size"
    assert step({"type": "conv2d", "out_channels": 3, "kernel_size": 5, "padding": 1}, (8, 4, 4)).output == (
        3,
        2,
        2,
    )


def test_padding_same_with_stride_is_refused() -> None:
    p = problem(
        {"type": "conv2d", "out_channels": 3, "kernel_size": 3, "padding": "same", "stride": 2}, (8, 4, 4)
    )
    assert "padding: same is not supported for strided convolutions" in p.message
    assert p.field == "padding"


def test_padding_same_and_valid() -> None:
    assert step(
        {"type": "conv2d", "out_channels": 3, "kernel_size": 4, "padding": "same"}, (8, 7, 5)
    ).output == (
        3,
        7,
        5,
    )
    assert step(
        {"type": "conv2d", "out_channels": 3, "kernel_size": 4, "padding": "valid"}, (8, 7, 5)
    ).output == (
        3,
        4,
        2,
    )


@pytest.mark.parametrize(
    ("mode", "padding", "size", "most"),
    [("reflect", 4, 4, 3), ("circular", 5, 4, 4), ("reflect", "same", 3, 2)],
)
def test_padding_mode_needs_the_input_to_be_larger_than_the_padding(
    mode: str, padding: Any, size: int, most: int
) -> None:
    kernel = 9 if padding == "same" else 3
    data = {
        "type": "conv2d",
        "out_channels": 3,
        "kernel_size": kernel,
        "padding": padding,
        "padding_mode": mode,
    }
    p = problem(data, (8, size, size))
    pad = 4 if padding == "same" else padding
    assert p.message == (
        f"padding_mode {mode} cannot pad {pad} on each side of an input height of {size} (PyTorch allows at most {most})"
    )
    assert p.field == "padding_mode"


def test_replicate_padding_has_no_limit() -> None:
    data = {"type": "conv2d", "out_channels": 3, "kernel_size": 3, "padding": 9, "padding_mode": "replicate"}
    assert step(data, (8, 1, 1)).output == (3, 17, 17)


# --- declared input sizes ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "shape", "message", "fix"),
    [
        (
            {"type": "conv2d", "in_channels": 4, "out_channels": 3, "kernel_size": 3},
            (8, 4, 4),
            "in_channels: 4, but its input [8, 4, 4] has 8 channels",
            "in_channels: 8 (or leave it out: it is inferred)",
        ),
        (
            {"type": "conv_transpose2d", "in_channels": 4, "out_channels": 3, "kernel_size": 3},
            (8, 4, 4),
            "in_channels: 4, but its input [8, 4, 4] has 8 channels",
            "in_channels: 8 (or leave it out: it is inferred)",
        ),
        (
            {"type": "linear", "in_features": 4, "out_features": 3},
            (2, 8),
            "in_features: 4, but its input [2, 8] has 8 features",
            "in_features: 8 (or leave it out: it is inferred)",
        ),
        (
            {"type": "batch_norm2d", "num_features": 4},
            (8, 4, 4),
            "num_features: 4, but its input [8, 4, 4] has 8 channels",
            "num_features: 8 (or leave it out: it is inferred)",
        ),
        (
            {"type": "batch_norm1d", "num_features": 4},
            (8,),
            "num_features: 4, but its input [8] has 8 channels",
            "num_features: 8 (or leave it out: it is inferred)",
        ),
    ],
)
def test_a_declared_input_size_that_disagrees_is_reported_but_the_trace_goes_on(
    data: dict[str, Any], shape: tuple[int, ...], message: str, fix: str
) -> None:
    p = problem(data, shape)
    assert (p.message, p.fix) == (message, fix)
    assert p.field in data
    inferred = {k: v for k, v in data.items() if k not in ("in_channels", "in_features", "num_features")}
    assert p.output == step(inferred, shape)  # the output stands: later layers are still checked


def test_a_declared_input_size_that_agrees_is_fine() -> None:
    assert step({"type": "linear", "in_features": 8, "out_features": 3}, (8,)).output == (3,)


# --- ranks -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "shape", "message", "fix"),
    [
        (
            {"type": "conv2d", "out_channels": 3, "kernel_size": 1},
            (128,),
            "conv2d expects [C, H, W], but its input is [128]",
            "insert {type: view, shape: [128, 1, 1]} before this layer",
        ),
        (
            {"type": "batch_norm1d"},
            (8, 4, 4),
            "batch_norm1d expects [C] or [C, L], but its input is [8, 4, 4]",
            "type: batch_norm2d (batch_norm1d takes [C] or [C, L])",
        ),
        (
            {"type": "batch_norm2d"},
            (8,),
            "batch_norm2d expects [C, H, W], but its input is [8]",
            "type: batch_norm1d (batch_norm2d takes [C, H, W])",
        ),
        (
            {"type": "max_pool2d", "kernel_size": 2},
            (8, 4),
            "max_pool2d expects [C, H, W], but its input is [8, 4]",
            None,
        ),
    ],
)
def test_wrong_rank(data: dict[str, Any], shape: tuple[int, ...], message: str, fix: str | None) -> None:
    p = problem(data, shape)
    assert (p.message, p.fix) == (message, fix)


def test_linear_acts_on_the_last_dimension() -> None:
    s = step({"type": "linear", "out_features": 3}, (8, 2, 5))
    assert s.output == (8, 2, 3)
    assert s.params == 5 * 3 + 3
    assert s.macs == 8 * 2 * 5 * 3


# --- view and flatten ---------------------------------------------------------------------------------------------------


def test_view_element_count_mismatch_gives_a_matching_shape() -> None:
    p = problem({"type": "view", "shape": [3, 11, 11]}, (360,))
    assert p.message == "shape [3, 11, 11] holds 363 values, the input [360] has 360"
    assert p.fix == "shape: [360]"
    # the contract turns this into out_features: 363, and keeps shape: [360] only if the network then traces
    assert isinstance(p, ViewCount) and (p.needed, p.given, p.fix_shape) == (363, 360, (360,))


def test_view_fix_keeps_the_trailing_dimensions_when_it_can() -> None:
    assert problem({"type": "view", "shape": [5, 5]}, (3, 5)).fix == "shape: [3, 5]"
    assert problem({"type": "view", "shape": [2, 8, 8]}, (3, 8, 8)).fix == "shape: [3, 8, 8]"


def test_view_with_minus_one() -> None:
    assert step({"type": "view", "shape": [-1, 11, 11]}, (363,)).output == (3, 11, 11)
    p = problem({"type": "view", "shape": [-1, 11, 11]}, (360,))
    assert p.message == "cannot view [360] (360 values) as [-1, 11, 11]: 360 is not a multiple of 121"


@pytest.mark.parametrize("shape", [[3, -1, -1], [3, 0, 4], [-2, 4]])
def test_view_shape_sizes_must_be_positive_with_one_minus_one_at_most(shape: list[int]) -> None:
    p = problem({"type": "view", "shape": shape}, (48,))
    assert "sizes must be positive, with at most one -1" in p.message
    assert p.field == "shape"


def test_flatten() -> None:
    assert step({"type": "flatten"}, (3, 8, 8)).output == (192,)
    assert step({"type": "flatten", "start_dim": 2}, (3, 8, 8)).output == (3, 64)
    assert step({"type": "flatten", "start_dim": -2, "end_dim": -1}, (3, 8, 8)).output == (3, 64)
    assert step({"type": "flatten", "start_dim": 0, "end_dim": 0}, (3, 8)).output == (
        3,
        8,
    )  # a no-op, as in torch
    assert problem({"type": "flatten", "start_dim": 3}, (3, 8)).message == (
        "start_dim 3 is out of range for a 3-d batch [N, 3, 8]"
    )
    assert problem({"type": "flatten", "start_dim": 2, "end_dim": 1}, (3, 8, 8)).message == (
        "start_dim 2 comes after end_dim 1"
    )
    p = problem({"type": "flatten", "start_dim": 0}, (3, 8))
    assert (p.message, p.fix) == (
        "start_dim 0 would merge the batch dimension into the sample",
        "start_dim: 1",
    )


# --- pools, upsample, norms --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["max_pool2d", "avg_pool2d"])
def test_pool_padding_at_most_half_the_kernel(kind: str) -> None:
    p = problem({"type": kind, "kernel_size": 3, "padding": 2}, (3, 8, 8))
    assert p.message == "padding 2 is more than half the kernel (3); PyTorch allows at most 1"
    assert p.fix == "padding: 1"


def test_max_pool_padding_limit_ignores_dilation() -> None:
    # max_pool2d_with_indices, which autograd runs, allows kernel/2 whatever the dilation.
    p = problem({"type": "max_pool2d", "kernel_size": 2, "padding": 2, "dilation": 3}, (1, 8, 8))
    assert p.fix == "padding: 1"


def test_pool_ceil_mode_and_default_stride() -> None:
    s = step({"type": "max_pool2d", "kernel_size": 3, "stride": 2, "ceil_mode": True}, (3, 6, 6))
    assert s.output == (3, 3, 3)
    assert s.arithmetic == ("⌈(6 − 2 − 1)/2⌉ + 1 = 3",)
    assert step({"type": "avg_pool2d", "kernel_size": 2}, (3, 7, 7)).output == (3, 3, 3)


def test_pool_on_too_small_an_input() -> None:
    p = problem({"type": "max_pool2d", "kernel_size": 2}, (3, 1, 1))
    assert p.message == "output height is 0: the input is too small for this max_pool2d"
    assert p.detail == ("⌊(1 − 1 − 1)/2⌋ + 1 = 0",)


def test_upsample() -> None:
    assert step({"type": "upsample", "scale_factor": [2, 1.5], "mode": "bilinear"}, (3, 8, 8)).arithmetic == (
        "⌊8·2⌋ = 16",
        "⌊8·1.5⌋ = 12",
    )
    assert step({"type": "upsample", "size": [5, 7]}, (3, 8, 8)).output == (3, 5, 7)
    assert problem({"type": "upsample"}, (3, 8, 8)).message == "give exactly one of size and scale_factor"
    assert problem({"type": "upsample", "size": 4, "scale_factor": 2}, (3, 8, 8)).field == "size"
    p = problem({"type": "upsample", "scale_factor": 2, "align_corners": True}, (3, 8, 8))
    assert p.message == "align_corners only applies to bilinear and bicubic, not mode nearest"
    p = problem({"type": "upsample", "scale_factor": 0.1}, (3, 8, 8))
    assert (p.message, p.detail) == (
        "output height is 0: the input is too small for this upsample",
        ("⌊8·0.1⌋ = 0",),
    )


def test_norm_parameters() -> None:
    assert step({"type": "batch_norm2d"}, (256, 28, 28)).params == 512
    assert step({"type": "batch_norm2d", "affine": False}, (256, 28, 28)).params == 0
    assert step({"type": "instance_norm2d"}, (8, 4, 4)).params == 0
    assert step({"type": "layer_norm"}, (3, 8, 8)).params == 2 * 192
    assert step({"type": "layer_norm", "normalized_shape": [8], "bias": False}, (3, 8, 8)).params == 8


def test_instance_norm_needs_more_than_one_value_per_channel() -> None:
    p = problem({"type": "instance_norm2d"}, (3, 1, 1))
    assert p.message == "instance_norm2d needs more than one spatial value per channel, input is [3, 1, 1]"


def test_layer_norm_shape_must_be_the_trailing_part() -> None:
    p = problem({"type": "layer_norm", "normalized_shape": [4]}, (3, 8, 8))
    assert p.message == "normalized_shape [4] is not the trailing part of the input [3, 8, 8]"
    assert p.fix == "normalized_shape: [3, 8, 8] (or leave it out: the whole sample)"
    assert p.field == "normalized_shape"
