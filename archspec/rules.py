"""One shape rule per layer type: given a validated layer and its per-sample input shape, the output shape, the
size arithmetic, the parameter count and the multiply-accumulates, or a Problem saying what PyTorch would reject.

Pure integer code: no torch. ``RULES`` maps each layer tag to its rule; a test keeps its keys equal to the tags.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from archspec import layers as L
from archspec import shapes
from archspec.shapes import Size1d

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Step:
    """What one layer does to one sample. ``outputs`` lists the parts of a split or chunk; ``buffers`` counts the
    values of spectral norm's power-iteration vectors."""

    output: Shape
    arithmetic: tuple[str, ...] = ()
    params: int = 0
    macs: int = 0
    outputs: tuple[Shape, ...] = ()
    buffers: int = 0


@dataclass(frozen=True)
class Value:
    """What flows along a wire of the graph, per sample: a tensor of ``shape``, or a class label (``classes``)."""

    shape: Shape
    classes: int | None = None

    def describe(self) -> str:
        return f"a label ({self.classes} classes)" if self.classes is not None else fmt(self.shape)


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
    operand: int | None = None  # which input of a merge is at fault (its producer may hold the fix)


@dataclass
class DeclaredMismatch(Problem):
    """A written input size (``in_channels``, ``in_features``, ...) that the input disagrees with."""

    declared: int = 0
    actual: int = 0


@dataclass
class ViewCount(Problem):
    """A view whose shape holds ``needed`` values where its input has ``given`` (``fix_shape`` would hold them)."""

    needed: int = 0
    given: int = 0
    fix_shape: Shape = ()


@dataclass
class NeedsView(Problem):
    """A layer that wants [C, H, W] fed a flat [``flat``]: a view before it is the cure."""

    flat: int = 0


def fmt(shape: Shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def spatial(h: int, w: int) -> str:
    return f"{h}×{w}"


# --- checks shared by several rules ------------------------------------------------------------------------------


def _need_rank(layer: L.Layer, shape: Shape, ranks: tuple[int, ...], what: str) -> None:
    if len(shape) not in ranks:
        fix = None
        if layer.type == "batch_norm1d" and len(shape) == 3:
            fix = "type: batch_norm2d (batch_norm1d takes [C] or [C, L])"
        elif layer.type == "batch_norm2d" and len(shape) in (1, 2):
            fix = "type: batch_norm1d (batch_norm2d takes [C, H, W])"
        elif 3 in ranks and len(shape) == 1:
            # [N] as N channels of 1×1 (DCGAN's first view); contract.fault_finding tries other shapes.
            raise NeedsView(
                f"{layer.type} expects {what}, but its input is {fmt(shape)}",
                fix=f"insert {{type: view, shape: [{shape[0]}, 1, 1]}} before this layer",
                flat=shape[0],
            )
        elif ranks == (1,) or (1 in ranks and len(shape) > 2):
            fix = "insert {type: flatten} before this layer"
        raise Problem(f"{layer.type} expects {what}, but its input is {fmt(shape)}", fix=fix)


def _check_declared(field_name: str, declared: int | None, shape: Shape, what: str, step: Step) -> Step:
    """A size the user wrote must equal the one the trace infers; the layer's output stands either way.

    ``what`` names the input dimension checked: ``channels`` (the first) or ``features`` (the last).
    """
    actual = shape[-1] if what == "features" else shape[0]
    return _agree(field_name, declared, actual, f"its input {fmt(shape)} has {actual} {what}", step)


def _agree(field_name: str, declared: int | None, actual: int, said: str, step: Step) -> Step:
    """``step``, unless a written size (``declared``) differs from the one the input gives (``actual``)."""
    if declared is not None and declared != actual:
        raise DeclaredMismatch(
            f"{field_name}: {declared}, but {said}",
            fix=f"{field_name}: {actual} (or leave it out: it is inferred)",
            field=field_name,
            output=step,
            declared=declared,
            actual=actual,
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
    step = Step(
        (*shape[:-1], layer.out_features),
        (),
        params,
        rows * in_features * layer.out_features,
        buffers=_sn_buffers(layer, layer.out_features, in_features),
    )
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
    step = Step(
        (layer.out_channels, oh, ow),
        _arith(sizes),
        params,
        layer.out_channels * oh * ow * per_out,
        buffers=_sn_buffers(layer, layer.out_channels, per_out),
    )
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
    step = Step(
        (layer.out_channels, oh, ow),
        _arith(sizes),
        params,
        c * h * w * per_in,
        buffers=_sn_buffers(layer, layer.out_channels // layer.groups, c * kh * kw),  # torch normalises dim 1
    )
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
        raise ViewCount(
            f"shape {fmt(target)} holds {known:,} values, the input {fmt(shape)} has {count:,}",
            fix=_view_fix(count, target),
            field="shape",
            needed=known,
            given=count,
            fix_shape=_view_fix_shape(count, target),
        )
    return Step(target)


def _view_fix(count: int, target: Shape) -> str:
    return f"shape: {fmt(_view_fix_shape(count, target))}"


def _view_fix_shape(count: int, target: Shape) -> Shape:
    rest = math.prod(d for d in target[1:] if d != -1)
    if len(target) > 1 and count % rest == 0 and -1 not in target[1:]:
        return (count // rest, *target[1:])
    return (count,)


def _sn_buffers(layer: L.Layer, rows: int, columns: int) -> int:
    """Spectral norm keeps u (one value per row of the weight matrix) and v (one per column) as buffers."""
    return rows + columns if getattr(layer, "spectral_norm", None) is not None else 0


def _dim(dim: int, shape: Shape, name: str = "dim") -> int:
    """A torch dim (counting the batch) → an index into the per-sample shape; refuses the batch dimension."""
    rank = len(shape) + 1
    d = dim + rank if dim < 0 else dim
    if not 0 <= d < rank:
        raise Problem(f"{name} {dim} is out of range for a {rank}-d batch [N, {fmt(shape)[1:]}", field=name)
    if d == 0:
        raise Problem(f"{name} 0 is the batch dimension", fix=f"{name}: 1", field=name)
    return d - 1


# --- layers of conditional GANs ----------------------------------------------------------------------------------


def _label(value: Value, what: str) -> int:
    if value.classes is None:
        raise Problem(f"{what}, but it is {value.describe()}", fix="from: the network's label input")
    return value.classes


def embedding(layer: L.Embedding, values: tuple[Value, ...]) -> Step:
    classes = _label(values[0], "embedding looks up a class label")
    if layer.padding_idx is not None and layer.padding_idx >= classes:
        raise Problem(f"padding_idx {layer.padding_idx} is not a class of {classes}", field="padding_idx")
    step = Step(
        (layer.embedding_dim,),
        (),
        classes * layer.embedding_dim,
        0,
        buffers=_sn_buffers(layer, classes, layer.embedding_dim),
    )
    return _check_classes("num_embeddings", layer.num_embeddings, classes, step)


def _check_classes(field_name: str, declared: int | None, classes: int, step: Step) -> Step:
    return _agree(field_name, declared, classes, f"the label has {classes} classes", step)


def conditional_batch_norm2d(layer: L.ConditionalBatchNorm2d, values: tuple[Value, ...]) -> Step:
    x, c = values
    _need_rank(layer, x.shape, (3,), "[C, H, W] and a label or vector")
    channels = x.shape[0]
    buffers = 0
    if c.classes is not None:
        if layer.spectral_norm is not None:
            raise Problem(
                "spectral_norm applies to the linears of a vector-conditioned batch norm; a label-conditioned "
                "one has none",
                fix="leave spectral_norm out",
                field="spectral_norm",
            )
        params = c.classes * 2 * channels
        macs = 0
    elif len(c.shape) == 1:
        params = 2 * c.shape[0] * channels + (2 * channels if layer.bias else 0)
        macs = 2 * c.shape[0] * channels
        buffers = 2 * (channels + c.shape[0]) if layer.spectral_norm is not None else 0
    else:
        raise Problem(
            f"conditional_batch_norm2d takes its scale and shift from a label or a vector, got {c.describe()}",
            operand=1,
        )
    step = Step(x.shape, (), params, macs, buffers=buffers)
    return _check_declared("num_features", layer.num_features, x.shape, "channels", step)


def self_attention(layer: L.SelfAttention, shape: Shape) -> Step:
    _need_rank(layer, shape, (3,), "[C, H, W]")
    c, h, w = shape
    if c % 8:
        raise Problem(f"self_attention needs channels divisible by 8 (C/8 queries), got {c}")
    if h % 2 or w % 2:
        raise Problem(
            f"self_attention max-pools keys and values 2×2: height and width must be even, got {h}×{w}"
        )
    n, m = h * w, h * w // 4
    params = 2 * c * (c // 8) + 2 * c * (c // 2) + 1
    macs = (
        n * c * (c // 8)
        + m * 4 * c * (c // 8)
        + m * 4 * c * (c // 2)
        + n * m * (c // 8)
        + n * m * (c // 2)
        + n * (c // 2) * c
    )
    # spectral norm's u and v for theta, phi (C/8 × C), g (C/2 × C) and o (C × C/2)
    buffers = 2 * (c // 8 + c) + 2 * (c // 2 + c) if layer.spectral_norm is not None else 0
    step = Step(shape, (), params, macs, buffers=buffers)
    return _check_declared("in_channels", layer.in_channels, shape, "channels", step)


def projection(layer: L.Projection, values: tuple[Value, ...]) -> Step:
    h, y = values
    if len(h.shape) != 1 or h.classes is not None:
        raise Problem(f"projection takes [features] then a label, but its first input is {h.describe()}")
    classes = _label(y, "projection's second input must be a label")
    step = Step((1,), (), classes * h.shape[0], h.shape[0], buffers=_sn_buffers(layer, classes, h.shape[0]))
    step = _check_declared("in_features", layer.in_features, h.shape, "features", step)
    return _check_classes("num_classes", layer.num_classes, classes, step)


# --- padding, pixel shuffle, adaptive pooling, softmax, prelu -------------------------------------------------------


def pad2d(layer: L.ZeroPad2d | L.ReflectionPad2d | L.ReplicationPad2d, shape: Shape) -> Step:
    _need_rank(layer, shape, (3,), "[C, H, W]")
    c, h, w = shape
    left, right, top, bottom = layer.padding
    if layer.type == "reflection_pad2d":
        for axis, pads, n in (("width", (left, right), w), ("height", (top, bottom), h)):
            if max(pads) >= n:
                raise Problem(
                    f"reflection_pad2d cannot pad {max(pads)} on a side of an input {axis} of {n} "
                    f"(PyTorch allows at most {n - 1})",
                    fix="type: replication_pad2d, or a smaller padding",
                    field="padding",
                )
    oh, ow = h + top + bottom, w + left + right
    arith = (f"{h} + {top} + {bottom} = {oh}", f"{w} + {left} + {right} = {ow}")
    return Step((c, oh, ow), arith[:1] if arith[0].split("=")[0] == arith[1].split("=")[0] else arith)


def pixel_shuffle(layer: L.PixelShuffle, shape: Shape) -> Step:
    _need_rank(layer, shape, (3,), "[C, H, W]")
    c, h, w = shape
    r = layer.upscale_factor
    if c % (r * r):
        raise Problem(
            f"pixel_shuffle with upscale_factor {r} needs channels divisible by {r * r}, got {c}",
            fix=f"out_channels: {max(r * r, c - c % (r * r))} in the layer before",
        )
    return Step((c // (r * r), h * r, w * r), (f"{c}/{r}² = {c // (r * r)} channels, {h}·{r} × {w}·{r}",))


def adaptive_avg_pool2d(layer: L.AdaptiveAvgPool2d, shape: Shape) -> Step:
    _need_rank(layer, shape, (3,), "[C, H, W]")
    return Step((shape[0], *layer.output_size))


def softmax(layer: L.Softmax, shape: Shape) -> Step:
    _dim(layer.dim, shape)
    return Step(shape)


def prelu(layer: L.PReLU, shape: Shape) -> Step:
    if layer.num_parameters != 1 and layer.num_parameters != shape[0]:
        raise Problem(
            f"num_parameters {layer.num_parameters} must be 1 or the input's channels ({shape[0]})",
            fix=f"num_parameters: {shape[0]}",
            field="num_parameters",
        )
    return Step(shape, (), layer.num_parameters)


# --- tensor operations -----------------------------------------------------------------------------------------------


def _tensors(values: tuple[Value, ...], kind: str) -> list[Shape]:
    for k, v in enumerate(values):
        if v.classes is not None:
            raise Problem(f"{kind} takes tensors, but input {k + 1} is {v.describe()}", operand=k)
    return [v.shape for v in values]


def add(layer: L.Add, values: tuple[Value, ...]) -> Step:
    shapes_ = _tensors(values, "add")
    return Step(_same(shapes_, "add"), (), 0, 0)


def mul(layer: L.Mul, values: tuple[Value, ...]) -> Step:
    shapes_ = _tensors(values, "mul")
    return Step(_same(shapes_, "mul"), (), 0, 0)


def _same(shapes_: list[Shape], kind: str) -> Shape:
    first = shapes_[0]
    for k, other in enumerate(shapes_[1:], start=1):
        if other != first:
            raise Problem(
                f"{kind} needs inputs of one shape, but input 1 is {fmt(first)} and input {k + 1} is {fmt(other)}",
                operand=k,
            )
    return first


def cat(layer: L.Cat, values: tuple[Value, ...]) -> Step:
    shapes_ = _tensors(values, "cat")
    first = shapes_[0]
    d = _dim(layer.dim, first)
    for k, other in enumerate(shapes_[1:], start=1):
        if len(other) != len(first) or any(
            a != b for i, (a, b) in enumerate(zip(first, other, strict=True)) if i != d
        ):
            raise Problem(
                f"cat along dim {layer.dim} needs inputs equal in every other dimension, but input 1 is "
                f"{fmt(first)} and input {k + 1} is {fmt(other)}",
                operand=k,
            )
    total = sum(s[d] for s in shapes_)
    out = (*first[:d], total, *first[d + 1 :])
    return Step(out, (" + ".join(str(s[d]) for s in shapes_) + f" = {total}",))


def reduce(layer: L.Sum | L.Mean, shape: Shape) -> Step:
    every = [_dim(d, shape) for d in layer.dim]
    if len(set(every)) < len(every):
        raise Problem(
            f"dim {list(layer.dim)} names one dimension twice (torch refuses it)",
            fix=f"dim: {sorted({d + 1 for d in every})}",
            field="dim",
        )
    dims = sorted(every)
    if layer.keepdim:
        out = tuple(1 if i in dims else n for i, n in enumerate(shape))
    else:
        out = tuple(n for i, n in enumerate(shape) if i not in dims)
    return Step(out, (), 0, math.prod(shape))


def scale(layer: L.Scale, shape: Shape) -> Step:
    return Step(shape, (), 0, 0)


def split(layer: L.Split, shape: Shape) -> Step:
    d = _dim(layer.dim, shape)
    n = shape[d]
    sections = layer.split_size_or_sections
    if isinstance(sections, int):
        sizes = [min(sections, n - i) for i in range(0, n, sections)]
    else:
        sizes = list(sections)
        if sum(sizes) != n:
            raise Problem(
                f"split sections {sizes} add up to {sum(sizes)}, but dim {layer.dim} has {n}",
                fix=f"split_size_or_sections: {[*sizes[:-1], n - sum(sizes[:-1])]}"
                if n > sum(sizes[:-1])
                else None,
                field="split_size_or_sections",
            )
    return _parts(shape, d, sizes)


def chunk(layer: L.Chunk, shape: Shape) -> Step:
    """torch.chunk: parts of ⌈n/chunks⌉, the last smaller; fewer than ``chunks`` parts when they run out."""
    d = _dim(layer.dim, shape)
    n = shape[d]
    size = -(-n // layer.chunks)
    return _parts(shape, d, [min(size, n - i) for i in range(0, n, size)])


def _parts(shape: Shape, d: int, sizes: list[int]) -> Step:
    outs = tuple((*shape[:d], s, *shape[d + 1 :]) for s in sizes)
    return Step(outs[0], (" + ".join(str(s) for s in sizes) + f" = {shape[d]}",), 0, 0, outs)


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
    "dropout2d": elementwise,
    "identity": elementwise,
    "softmax": softmax,
    "prelu": prelu,
    "self_attention": self_attention,
    "zero_pad2d": pad2d,
    "reflection_pad2d": pad2d,
    "replication_pad2d": pad2d,
    "pixel_shuffle": pixel_shuffle,
    "adaptive_avg_pool2d": adaptive_avg_pool2d,
    "sum": reduce,
    "mean": reduce,
    "scale": scale,
    "split": split,
    "chunk": chunk,
}

GraphRule = Callable[[Any, tuple[Value, ...]], Step]

# Layers that read several inputs, or a label: they see every input with its kind.
GRAPH_RULES: dict[str, GraphRule] = {
    "embedding": embedding,
    "conditional_batch_norm2d": conditional_batch_norm2d,
    "projection": projection,
    "add": add,
    "mul": mul,
    "cat": cat,
}
