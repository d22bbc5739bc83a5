"""What makes two traced networks a GAN, and a spec trainable as written: the checks between layers.

latent size = generator input, generator output = image = discriminator input, one discriminator value per
sample; the loss fits the discriminator's last activation; the data range fits the generator's.
Each failure comes with a fix computed by re-tracing the network with the changed layer.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from archspec.layers import LAYER_TYPES, Layer
from archspec.rules import Shape, fmt
from archspec.spec import Spec
from archspec.trace import LayerFault, NetworkTrace, Role, trace_network
from archspec.words import plural

_SPATIAL = ("conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d", "upsample")
_CHANNELS = ("conv2d", "conv_transpose2d")
_ELEMENTWISE = (
    "dropout",
    "leaky_relu",
    "relu",
    "gelu",
    "silu",
    "tanh",
    "sigmoid",
    "batch_norm1d",
    "batch_norm2d",
    "instance_norm2d",
    "layer_norm",
)


@dataclass(frozen=True)
class Finding:
    """A problem located at a layer (``index``) or a spec field (``loc``), before it becomes a SpecError."""

    loc: tuple[str | int, ...]
    path: str
    message: str
    fix: str | None = None
    detail: tuple[str, ...] = ()


def fault_finding(
    role: Role, fault: LayerFault, layers: Sequence[Layer], target: Shape | None = None
) -> Finding:
    """A layer fault, with a better fix when the cure is in an earlier layer (a view fed by a linear) or, for the
    first layer, in the latent size or the image. ``target`` is what the network must output (the image, or
    [1]), when known: a fix is offered only if the network then traces to it, or it says what else is needed."""
    problem = fault.problem
    message, fix = problem.message, problem.fix
    needed = problem.extra.get("needed")
    if needed is not None:
        feeder = _feeding_layer(layers, fault.index, ("linear",))
        if feeder is not None:
            changed = layers[fault.index].model_copy(update={"shape": problem.extra["fix_shape"]})
            other = _fits(role, fault.input, [changed, *layers[fault.index + 1 :]], target)
            fix = f"out_features: {needed} in {role}.layers[{feeder}]" + (f", or {fix}" if other else "")
    flat = problem.extra.get("flat")
    if flat is not None:
        fix = _first_view(role, fault, layers, flat, target)
    declared = problem.extra.get("declared")
    if declared is not None and fault.index == 0:
        actual = problem.extra["actual"]
        if role == "generator":
            message = (
                f"{problem.field}: {declared}, but the latent vector has {actual} values (latent: {actual})"
            )
            fix = f"{fix}; or latent: {declared}"
        else:
            message = message.replace("its input", "the image", 1)
    loc: tuple[str | int, ...] = (role, "layers", fault.index)
    if problem.field:
        loc = (*loc, problem.field)
    return Finding(loc, _path(role, fault.index, layers[fault.index]), message, fix, problem.detail)


def image_order(spec: Spec) -> Spec | None:
    """The spec with its image read as channels last ([H, W, C] → [C, H, W]), if it looks written that way."""
    c, h, w = spec.image
    if w in (1, 3, 4) and c not in (1, 3, 4) and h > 4:
        return spec.model_copy(update={"image": (w, c, h)})
    return None


def image_order_finding(spec: Spec, swapped: Spec) -> Finding:
    """The one finding for an image written channels last, when swapping it makes the spec check."""
    c, h, w = spec.image
    return Finding(
        ("image",),
        "image",
        f"{fmt(spec.image)} reads as {plural(c, 'channel')} of {h}×{w} pixels; archspec's image is "
        "[channels, height, width] (channels first, as PyTorch's)",
        f"image: {fmt(swapped.image)}",
    )


def gan_findings(spec: Spec, generator: NetworkTrace, discriminator: NetworkTrace) -> list[Finding]:
    """The contract between latent, generator, image and discriminator, and the train section's fit."""
    findings: list[Finding] = []
    if generator.complete:
        findings += _generator_output(spec, generator)
    if discriminator.complete:
        findings += _discriminator_output(spec, discriminator)
    findings += _train_fit(spec, generator, discriminator)
    return findings


def data_range(spec: Spec) -> tuple[float, float]:
    """The range training scales images to: [-1, 1] for a tanh generator, else [0, 1] (the seed's)."""
    if spec.train.data_range == "symmetric":
        return (-1.0, 1.0)
    if spec.train.data_range == "unit":
        return (0.0, 1.0)
    return (-1.0, 1.0) if _last_type(spec.generator.layers) == "tanh" else (0.0, 1.0)


# --- generator output = image --------------------------------------------------------------------------------------


def _generator_output(spec: Spec, generator: NetworkTrace) -> Iterator[Finding]:
    out, image = generator.output, spec.image
    assert out is not None
    if out == image:
        return
    layers = spec.generator.layers
    if len(out) != 3:
        last = len(layers) - 1
        fix = f"append {{type: view, shape: {fmt(image)}}}" if _count(out) == _count(image) else None
        yield Finding(
            ("generator", "layers", last),
            _path("generator", last, layers[last]),
            f"output {fmt(out)}, but the image is {fmt(image)}",
            fix,
        )
        return
    if out[0] != image[0]:
        index = _last_of(layers, _CHANNELS)
        if index is not None:
            yield Finding(
                ("generator", "layers", index, "out_channels"),
                _path("generator", index, layers[index]),
                f"output {fmt(out)} has {plural(out[0], 'channel')}, but the image {fmt(image)} has {image[0]}",
                f"out_channels: {image[0]}",
            )
    if out[1:] != image[1:]:
        index = _last_of(layers, _SPATIAL)
        if index is None:
            yield Finding(("generator",), "generator", f"output {fmt(out)}, but the image is {fmt(image)}")
            return
        t = generator.layers[index]
        yield Finding(
            ("generator", "layers", index),
            _path("generator", index, layers[index]),
            f"output {out[1]}×{out[2]}, the image is {image[1]}×{image[2]}",
            _size_fix(generator, layers, image),
            t.arithmetic,
        )


def _size_fix(generator: NetworkTrace, layers: Sequence[Layer], image: Shape) -> str | None:
    """The smallest change to one of the last few spatial layers after which the generator outputs the image's
    height × width: the last such layer first, then the ones before it (an upsample feeding a conv, say).

    Only the tail from the changed layer on is re-traced: the layers before it keep their output.
    """
    spatial = [i for i in range(len(layers) - 1, -1, -1) if layers[i].type in _SPATIAL][:_FIX_DEPTH]
    for index in spatial:
        first, rest = layers[index], list(layers[index + 1 :])
        for update in _candidates(first, image):
            trace = trace_network(
                "generator", generator.layers[index].input, [first.model_copy(update=update), *rest]
            )
            out = trace.output
            if trace.complete and not trace.faults and out is not None and out[1:] == image[1:]:
                said = ", ".join(f"{k}: {_value(v)}" for k, v in update.items())
                where = "" if index == spatial[0] else f" in generator.layers[{index}]"
                return f"{said}{where} gives {image[1]}×{image[2]}"
    return None


_FIX_DEPTH = 3  # how many spatial layers, from the last, a size fix may change


def _candidates(layer: Layer, image: Shape) -> Iterator[dict[str, Any]]:
    """Changes to try, smallest first: padding (and output_padding), then kernel size, scale factor or size."""
    fields = layer.torch_kwargs()
    kernel = fields.get("kernel_size", (1, 1))
    dilation = fields.get("dilation", (1, 1))
    stride = fields.get("stride") or kernel
    reach = max(k * d for k, d in zip(kernel, dilation, strict=True))
    paddings = [(p, p) for p in range(reach + 1)] if "padding" in fields else [None]
    out_paddings = [(o, o) for o in range(max(*stride, *dilation))] if "output_padding" in fields else [None]
    for padding, out_padding in itertools.product(paddings, out_paddings):
        update = {"padding": padding, "output_padding": out_padding}
        yield {k: v for k, v in update.items() if v is not None and v != fields.get(k)}
    if "kernel_size" in fields:
        for k in sorted(range(1, 2 * max(kernel) + 2), key=lambda k: abs(k - max(kernel))):
            yield {"kernel_size": (k, k)}
    if isinstance(fields.get("scale_factor"), tuple):
        for s in range(1, 9):
            yield {"scale_factor": (float(s), float(s))}
    if isinstance(fields.get("size"), tuple):
        yield {"size": image[1:]}


# --- discriminator output = one value -------------------------------------------------------------------------------


def _discriminator_output(spec: Spec, discriminator: NetworkTrace) -> Iterator[Finding]:
    out = discriminator.output
    assert out is not None
    if out == (1,):
        return
    layers = spec.discriminator.layers
    last = len(layers) - 1
    if len(out) > 1:
        fix = _flatten_before_linear(discriminator, layers) or "append {type: flatten}"
        if _count(out) != 1 and fix.startswith("append"):
            fix += " and {type: linear, out_features: 1}"
    else:
        linear = _last_of(layers, ("linear",))
        fix = (
            f"out_features: 1 in discriminator.layers[{linear}]"
            if linear is not None
            else "append {type: linear, out_features: 1}"
        )
    yield Finding(
        ("discriminator", "layers", last),
        _path("discriminator", last, layers[last]),
        f"output {fmt(out)}, but a discriminator gives one value per sample, [1]",
        fix,
    )


def _flatten_before_linear(discriminator: NetworkTrace, layers: Sequence[Layer]) -> str | None:
    """A linear fed a [C, H, W] map (torch applies it to the last axis alone) wants a flatten before it."""
    flatten = LAYER_TYPES["flatten"].model_validate({"type": "flatten"})
    for t in discriminator.layers:
        if t.type == "linear" and len(t.input) > 1:
            if _fits("discriminator", t.input, [flatten, *layers[t.index :]], (1,)):
                return f"insert {{type: flatten}} before discriminator.layers[{t.index}] (linear)"
            return None
    return None


# --- the train section fits the networks ---------------------------------------------------------------------------


def _train_fit(spec: Spec, generator: NetworkTrace, discriminator: NetworkTrace) -> Iterator[Finding]:
    train = spec.train
    d_layers, g_layers = spec.discriminator.layers, spec.generator.layers
    d_last = len(d_layers) - 1
    ends_in_sigmoid = _last_type(d_layers) == "sigmoid"
    if train.loss == "bce" and not ends_in_sigmoid:
        yield Finding(
            ("discriminator", "layers", d_last),
            _path("discriminator", d_last, d_layers[d_last]),
            "loss bce needs probabilities, but the discriminator does not end in sigmoid",
            "set train.loss: bce_logits (the sigmoid inside the loss), or append {type: sigmoid}",
        )
    elif train.loss != "bce" and ends_in_sigmoid:
        yield Finding(
            ("discriminator", "layers", d_last),
            _path("discriminator", d_last, d_layers[d_last]),
            f"loss {train.loss} takes raw scores, but the discriminator ends in sigmoid",
            f"remove discriminator.layers[{d_last}] (sigmoid), or set train.loss: bce",
        )
    if train.precision == "bf16" and train.loss == "bce":
        yield Finding(
            ("train", "precision"),
            "train.precision",
            "bf16 autocast cannot run BCELoss on sigmoid outputs (PyTorch refuses it as unsafe)",
            f"set train.loss: bce_logits and remove discriminator.layers[{d_last}] (sigmoid)",
        )
    g_last = _last_type(g_layers)
    if train.data_range == "unit" and g_last == "tanh":
        yield Finding(
            ("train", "data_range"),
            "train.data_range",
            "the generator ends in tanh (values in [-1, 1]) but data_range is unit ([0, 1])",
            "data_range: symmetric (or auto)",
        )
    if train.data_range == "symmetric" and g_last == "sigmoid":
        yield Finding(
            ("train", "data_range"),
            "train.data_range",
            "the generator ends in sigmoid (values in [0, 1]) but data_range is symmetric ([-1, 1])",
            "data_range: unit (or auto)",
        )
    for net in (generator, discriminator):
        yield from _batch_norm_fit(net, train.batch_size, g_layers if net.role == "generator" else d_layers)


def _batch_norm_fit(net: NetworkTrace, batch_size: int, layers: Sequence[Layer]) -> Iterator[Finding]:
    for t in net.layers:
        if t.type.startswith("batch_norm") and batch_size * _count(t.input[1:]) < 2:
            yield Finding(
                (net.role, "layers", t.index),
                _path(net.role, t.index, layers[t.index]),
                f"batch norm over {fmt(t.input)} sees one value per channel at batch_size "
                f"{batch_size}; PyTorch refuses to train it",
                "set train.batch_size: 2 or more, or use layer_norm",
            )


# --- helpers ------------------------------------------------------------------------------------------------------


def _path(role: str, index: int, layer: Layer) -> str:
    return f"{role}.layers[{index}] ({layer.type})"


def _last_type(layers: Sequence[Layer]) -> str | None:
    return layers[-1].type if layers else None


def _last_of(layers: Sequence[Layer], kinds: tuple[str, ...]) -> int | None:
    return next((i for i in range(len(layers) - 1, -1, -1) if layers[i].type in kinds), None)


def _feeding_layer(layers: Sequence[Layer], index: int, kinds: tuple[str, ...]) -> int | None:
    """The nearest earlier layer of ``kinds`` that feeds ``layers[index]`` through element-wise layers only."""
    for j in range(index - 1, -1, -1):
        kind = layers[j].type
        if kind in kinds:
            return j
        if kind not in _ELEMENTWISE:
            return None
    return None


def _fits(role: Role, input_shape: Shape, layers: Sequence[Layer], target: Shape | None) -> bool:
    """Whether ``layers`` trace from ``input_shape`` without a fault (to ``target``, when given)."""
    trace = trace_network(role, input_shape, layers)
    return trace.complete and not trace.faults and (target is None or trace.output == target)


def _first_view(
    role: Role, fault: LayerFault, layers: Sequence[Layer], flat: int, target: Shape | None
) -> str:
    """The view that turns a flat [N] into the [C, H, W] the faulting layer needs: [N, 1, 1] (DCGAN's), or
    C × H × H = N, the first after which the rest of the network traces to ``target``."""
    rest = list(layers[fault.index :])
    for shape in _view_shapes(flat):
        if _fits(role, fault.input, [_view(shape), *rest], target):
            return f"insert {{type: view, shape: {fmt(shape)}}} before this layer"
    trace = trace_network(role, fault.input, [_view((flat, 1, 1)), *rest])
    then = (
        f"the network then outputs {fmt(trace.output)}, not {fmt(target)}"
        if trace.complete and not trace.faults and trace.output is not None and target is not None
        else "the layers after it need changes too"
    )
    return (
        f"insert {{type: view, shape: [{flat}, 1, 1]}} before this layer ({then}: no view of [{flat}] fits)"
    )


def _view_shapes(n: int) -> Iterator[Shape]:
    yield (n, 1, 1)
    for h in range(2, math.isqrt(n) + 1):
        if n % (h * h) == 0:
            yield (n // (h * h), h, h)


def _view(shape: Shape) -> Layer:
    return LAYER_TYPES["view"].model_validate({"type": "view", "shape": list(shape)})


def _count(shape: Shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _value(v: Any) -> str:
    if isinstance(v, tuple) and len(set(v)) == 1:
        v = v[0]
    return f"{v:g}" if isinstance(v, float) else str(list(v) if isinstance(v, tuple) else v)
