"""One shape rule per layer type: given a validated layer and its per-sample input shape, the output shape, the
size arithmetic, the parameter count and the multiply-accumulates, or a Problem saying what PyTorch would reject.

Pure integer code: no torch. ``RULES`` maps each layer tag to its rule; a test keeps its keys equal to the tags.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as _field
from typing import Any

from archspec import layers as L
from archspec import shapes
from archspec.shapes import Size1d

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Step:
    """What one layer does to one sample."""

    output: Shape
    arithmetic: tuple[str, ...] = ()
    params: int = 0
    macs: int = 0


@dataclass
class Problem(Exception):
    """A layer PyTorch would reject, or one that disagrees with a size the user wrote.

    ``field`` names the offending field (for the error position); ``output`` is set when the trace can go on
    regardless (a written ``in_channels`` that disagrees does not change what the layer outputs).
    """

    message: str
    fix: str | None = None
    detail: tuple[str, ...] = ()
    field: str | None = None
    output: Step | None = None
    extra: dict[str, Any] = _field(default_factory=dict)


def fmt(shape: Shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def spatial(h: int, w: int) -> str:
    return f"{h}×{w}"


# --- checks shared by several rules ------------------------------------------------------------------------------


def _need_rank(layer: L.Layer, shape: Shape, ranks: tuple[int, ...], what: str) -> None:
    if len(shape) not in ranks:
        fix, extra = None, {}
        if layer.type == "batch_norm1d" and len(shape) == 3:
            fix = "type: batch_norm2d (batch_norm1d takes [C] or [C, L])"
        elif layer.type == "batch_norm2d" and len(shape) in (1, 2):
            fix = "type: batch_norm1d (batch_norm2d takes [C, H, W])"
        elif 3 in ranks and len(shape) == 1:
            # [N] as N channels of 1×1 (DCGAN's first view); contract.fault_finding tries other shapes.
            fix = f"insert {{type: view, shape: [{shape[0]}, 1, 1]}} before this layer"
            extra = {"flat": shape[0]}
        elif ranks == (1,) or (1 in ranks and len(shape) > 2):
            fix = "insert {type: flatten} before this layer"
        raise Problem(f"{layer.type} expects {what}, but its input is {fmt(shape)}", fix=fix, extra=extra)


def _check_declared(field_name: str, declared: int | None, shape: Shape, what: str, step: Step) -> Step:
    """A size the user wrote must equal the one the trace infers; the layer's output stands either way.

    ``what`` names the input dimension checked: ``channels`` (the first) or ``features`` (the last).
    """
    actual = shape[-1] if what == "features" else shape[0]
    if declared is not None and declared != actual:
        raise Problem(
            f"{field_name}: {declared}, but its input {fmt(shape)} has {actual} {what}",
            fix=f"{field_name}: {actual} (or leave it out: it is inferred)",
            field=field_name,
            output=step,
            extra={"declared": declared, "actual": actual},
        )
    return step


def _check_groups(groups: int, in_channels: int, out_channels: int) -> None:
    for name, count in (("in_channels", in_channels), ("out_channels", out_channels)):
        if count % groups:
            divisors = [
                g
                for g in range(1, min(groups * 2, count) + 1)
                if in_channels % g == 0 and out_channels % g == 0
            ]
            nearest = min(divisors, key=lambda g: (abs(g - groups), g))
            raise Problem(
                f"groups: {groups} does not divide {name} {count}",
                fix=f"groups: {nearest}",
                field="groups",
            )


def _positive(
    layer: L.Layer, sizes: list[Size1d], fix: str | None = None, too: str = "the input is too small"
) -> None:
    for axis, size in zip(("height", "width"), sizes, strict=True):
        if size.value < 1:
            raise Problem(
                f"output {axis} is {size.value}: {too} for this {layer.type}",
                fix=fix,
                detail=(size.arithmetic,),
            )


def _pair_text(values: list[int]) -> str:
    return str(values[0]) if values[0] == values[1] else f"[{values[0]}, {values[1]}]"


def _arith(sizes: list[Size1d]) -> tuple[str, ...]:
    """One line when both axes did the same arithmetic, else one per axis."""
    texts = tuple(s.arithmetic for s in sizes)
    return texts[:1] if len(set(texts)) == 1 else texts


# --- layers with weights ----------------------------------------------------------------------------------------


def linear(layer: L.Linear, shape: Shape) -> Step:
    """nn.Linear acts on the last dimension: [..., in_features] → [..., out_features]."""
    in_features = shape[-1]
    rows = math.prod(shape[:-1])
    params = in_features * layer.out_features + (layer.out_features if layer.bias else 0)
    step = Step((*shape[:-1], layer.out_features), (), params, rows * in_features * layer.out_features)
    return _check_declared("in_features", layer.in_features, shape, "features", step)


def conv2d(layer: L.Conv2d, shape: Shape) -> Step:
    _need_rank(layer, shape, (3,), "[C, H, W]")
    c, h, w = shape
    _check_groups(layer.groups, c, layer.out_channels)
    if layer.padding == "same":
        if layer.stride != (1, 1):
            raise Problem(
                "padding: same is not supported for strided convolutions (PyTorch refuses it)",
                fix="padding: same needs stride: 1; or give the padding as numbers",
                field="padding",
            )
        sizes = [shapes.same_out(h), shapes.same_out(w)]
        # torch pads the larger half on the right/bottom; that side is the one padding_mode must fit.
        pads = [
            max(shapes.same_padding(k, d)) for k, d in zip(layer.kernel_size, layer.dilation, strict=True)
        ]
    else:
        pads = [0, 0] if layer.padding == "valid" else list(layer.padding)
        sizes = [
            shapes.conv_out(n, k, s, p, d)
            for n, k, s, p, d in zip(
                (h, w), layer.kernel_size, layer.stride, pads, layer.dilation, strict=True
            )
        ]
    if layer.padding_mode != "zeros":
        _check_pad_mode(layer.padding_mode, pads, (h, w))
    # out ≥ 1 needs in + 2·padding ≥ dilation·(kernel − 1) + 1
    need = [
        max(p, -(-(d * (k - 1) + 1 - n) // 2))
        for n, k, p, d in zip((h, w), layer.kernel_size, pads, layer.dilation, strict=True)
    ]
    _positive(layer, sizes, f"padding: {_pair_text(need)}, or a smaller kernel_size")
    oh, ow = sizes[0].value, sizes[1].value
    kh, kw = layer.kernel_size
    per_out = (c // layer.groups) * kh * kw
    params = layer.out_channels * per_out + (layer.out_channels if layer.bias else 0)
    step = Step((layer.out_channels, oh, ow), _arith(sizes), params, layer.out_channels * oh * ow * per_out)
    return _check_declared("in_channels", layer.in_channels, shape, "channels", step)


def _check_pad_mode(mode: str, pads: list[int], sizes: tuple[int, int]) -> None:
    """reflect mirrors the input without its edge, so each pad must be < the side; circular wraps it at most once."""
    for axis, p, n in zip(("height", "width"), pads, sizes, strict=True):
        if (mode == "reflect" and p >= n) or (mode == "circular" and p > n):
            most = n - 1 if mode == "reflect" else n
            raise Problem(
                f"padding_mode {mode} cannot pad {p} on each side of an input {axis} of {n} "
                f"(PyTorch allows at most {most})",
                fix="padding_mode: replicate (or zeros), or a larger input",
                field="padding_mode",
            )


def conv_transpose2d(layer: L.ConvTranspose2d, shape: Shape) -> Step:
    _need_rank(layer, shape, (3,), "[C, H, W]")
    c, h, w = shape
    _check_groups(layer.groups, c, layer.out_channels)
    for op, s, d in zip(layer.output_padding, layer.stride, layer.dilation, strict=True):
        if op >= s and op >= d:
            raise Problem(
                f"output_padding {op} must be smaller than stride ({s}) or dilation ({d})",
                fix=f"output_padding: {max(s, d) - 1}",
                field="output_padding",
            )
    axes = list(
        zip(
            (h, w),
            layer.kernel_size,
            layer.stride,
            layer.padding,
            layer.output_padding,
            layer.dilation,
            strict=True,
        )
    )
    sizes = [shapes.conv_transpose_out(n, k, s, p, op, d) for n, k, s, p, op, d in axes]
    # out ≥ 1 needs 2·padding ≤ (in − 1)·stride + dilation·(kernel − 1) + output_padding
    most = [min(p, ((n - 1) * s + d * (k - 1) + op) // 2) for n, k, s, p, op, d in axes]
    _positive(layer, sizes, f"padding: {_pair_text(most)}", too="the padding is too large")
    oh, ow = sizes[0].value, sizes[1].value
    kh, kw = layer.kernel_size
    per_in = (layer.out_channels // layer.groups) * kh * kw
    params = c * per_in + (layer.out_channels if layer.bias else 0)
    # Each input pixel scatters into a k×k window of every output channel of its group: count on the input grid.
    step = Step((layer.out_channels, oh, ow), _arith(sizes), params, c * h * w * per_in)
    return _check_declared("in_channels", layer.in_channels, shape, "channels", step)


# --- normalisation ------------------------------------------------------------------------------------------------


def _norm(
    layer: L.BatchNorm1d | L.BatchNorm2d | L.InstanceNorm2d, shape: Shape, ranks: tuple[int, ...], what: str
) -> Step:
    _need_rank(layer, shape, ranks, what)
    params = 2 * shape[0] if layer.affine else 0
    return _check_declared("num_features", layer.num_features, shape, "channels", Step(shape, (), params, 0))


def batch_norm1d(layer: L.BatchNorm1d, shape: Shape) -> Step:
    return _norm(layer, shape, (1, 2), "[C] or [C, L]")


def batch_norm2d(layer: L.BatchNorm2d, shape: Shape) -> Step:
    return _norm(layer, shape, (3,), "[C, H, W]")


def instance_norm2d(layer: L.InstanceNorm2d, shape: Shape) -> Step:
    step = _norm(layer, shape, (3,), "[C, H, W]")
    if shape[1] * shape[2] < 2:
        raise Problem(f"instance_norm2d needs more than one spatial value per channel, input is {fmt(shape)}")
    return step


def layer_norm(layer: L.LayerNorm, shape: Shape) -> Step:
    normalized = layer.normalized_shape or shape
    if tuple(shape[len(shape) - len(normalized) :]) != tuple(normalized) or len(normalized) > len(shape):
        raise Problem(
            f"normalized_shape {fmt(normalized)} is not the trailing part of the input {fmt(shape)}",
            fix=f"normalized_shape: {fmt(shape)} (or leave it out: the whole sample)",
            field="normalized_shape",
        )
    params = math.prod(normalized) * ((2 if layer.bias else 1) if layer.elementwise_affine else 0)
    return Step(shape, (), params, 0)


# --- shape changes without weights ---------------------------------------------------------------------------------


def elementwise(layer: L.Layer, shape: Shape) -> Step:
    return Step(shape)


def flatten(layer: L.Flatten, shape: Shape) -> Step:
    rank = len(shape) + 1  # torch counts the batch dimension
    start = layer.start_dim + rank if layer.start_dim < 0 else layer.start_dim
    end = layer.end_dim + rank if layer.end_dim < 0 else layer.end_dim
    for name, value in (("start_dim", start), ("end_dim", end)):
        if not 0 <= value < rank:
            raise Problem(
                f"{name} {getattr(layer, name)} is out of range for a {rank}-d batch [N, {fmt(shape)[1:]}",
                field=name,
            )
    if start == 0 and end > 0:
        raise Problem(
            "start_dim 0 would merge the batch dimension into the sample",
            fix="start_dim: 1",
            field="start_dim",
        )
    if start == end:
        return Step(shape)
    if start > end:
        raise Problem(f"start_dim {layer.start_dim} comes after end_dim {layer.end_dim}", field="start_dim")
    s, e = start - 1, end - 1
    return Step((*shape[:s], math.prod(shape[s : e + 1]), *shape[e + 1 :]))


def upsample(layer: L.Upsample, shape: Shape) -> Step:
    _need_rank(layer, shape, (3,), "[C, H, W]")
    if (layer.size is None) == (layer.scale_factor is None):
        raise Problem("give exactly one of size and scale_factor", fix="scale_factor: 2", field="size")
    if layer.align_corners is not None and layer.mode not in ("bilinear", "bicubic"):
        raise Problem(
            f"align_corners only applies to bilinear and bicubic, not mode {layer.mode}",
            fix="leave align_corners out",
            field="align_corners",
        )
    c, h, w = shape
    if layer.size is not None:
        sizes = [Size1d(s, f"size = {s}") for s in layer.size]
    else:
        assert layer.scale_factor is not None
        sizes = [shapes.upsample_out(n, f) for n, f in zip((h, w), layer.scale_factor, strict=True)]
    _positive(layer, sizes)
    return Step((c, sizes[0].value, sizes[1].value), _arith(sizes))


def max_pool2d(layer: L.MaxPool2d, shape: Shape) -> Step:
    return _pool(layer, shape, layer.dilation)


def avg_pool2d(layer: L.AvgPool2d, shape: Shape) -> Step:
    return _pool(layer, shape, (1, 1))


def _pool(layer: L.MaxPool2d | L.AvgPool2d, shape: Shape, dilation: tuple[int, int]) -> Step:
    _need_rank(layer, shape, (3,), "[C, H, W]")
    c, h, w = shape
    stride = layer.stride or layer.kernel_size
    for k, p in zip(layer.kernel_size, layer.padding, strict=True):
        # max_pool2d_with_indices (what autograd and the meta device run) allows kernel/2, whatever the dilation.
        limit = k // 2
        if p > limit:
            raise Problem(
                f"padding {p} is more than half the kernel ({k}); PyTorch allows at most {limit}",
                fix=f"padding: {limit}",
                field="padding",
            )
    sizes = [
        shapes.pool_out(n, k, s, p, d, layer.ceil_mode)
        for n, k, s, p, d in zip((h, w), layer.kernel_size, stride, layer.padding, dilation, strict=True)
    ]
    _positive(layer, sizes)
    return Step((c, sizes[0].value, sizes[1].value), _arith(sizes))


def view(layer: L.View, shape: Shape) -> Step:
    count = math.prod(shape)
    target = layer.shape
    if any(d == 0 or d < -1 for d in target) or target.count(-1) > 1:
        raise Problem(f"shape {fmt(target)}: sizes must be positive, with at most one -1", field="shape")
    known = math.prod(d for d in target if d != -1)
    if -1 in target:
        if count % known:
            raise Problem(
                f"cannot view {fmt(shape)} ({count:,} values) as {fmt(target)}: "
                f"{count:,} is not a multiple of {known:,}",
                fix=_view_fix(count, target),
                field="shape",
            )
        resolved = tuple(count // known if d == -1 else d for d in target)
        return Step(resolved)
    if known != count:
        raise Problem(
            f"shape {fmt(target)} holds {known:,} values, the input {fmt(shape)} has {count:,}",
            fix=_view_fix(count, target),
            field="shape",
            extra={"needed": known, "given": count, "fix_shape": _view_fix_shape(count, target)},
        )
    return Step(target)


def _view_fix(count: int, target: Shape) -> str:
    return f"shape: {fmt(_view_fix_shape(count, target))}"


def _view_fix_shape(count: int, target: Shape) -> Shape:
    rest = math.prod(d for d in target[1:] if d != -1)
    if len(target) > 1 and count % rest == 0 and -1 not in target[1:]:
        return (count // rest, *target[1:])
    return (count,)


Rule = Callable[[Any, Shape], Step]

RULES: dict[str, Rule] = {
    "linear": linear,
    "conv2d": conv2d,
    "conv_transpose2d": conv_transpose2d,
    "batch_norm1d": batch_norm1d,
    "batch_norm2d": batch_norm2d,
    "instance_norm2d": instance_norm2d,
    "layer_norm": layer_norm,
    "dropout": elementwise,
    "leaky_relu": elementwise,
    "relu": elementwise,
    "gelu": elementwise,
    "silu": elementwise,
    "tanh": elementwise,
    "sigmoid": elementwise,
    "flatten": flatten,
    "upsample": upsample,
    "max_pool2d": max_pool2d,
    "avg_pool2d": avg_pool2d,
    "view": view,
}
