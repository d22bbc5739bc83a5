"""What makes two traced networks a GAN, and a spec trainable as written: the checks between layers.

Generator output = image = what the discriminator judges; the discriminator's score is one value per sample ([1])
or a patch map ([1, H, W]); label inputs agree on their class count; the loss fits the discriminator's last
activation; the data range fits the generator's. Each failure comes with a fix computed by re-tracing the network
with the changed layer, at the layer whose change is smallest.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterator, Sequence
from typing import Any

from archspec.graph import Finding, Graph, Node, Wire
from archspec.layers import LAYER_TYPES, Layer
from archspec.rules import DeclaredMismatch, NeedsView, Shape, ViewCount, fmt
from archspec.spec import Spec
from archspec.trace import LayerFault, NetworkTrace, Role, trace_graph, trace_network
from archspec.words import plural

__all__ = [
    "Finding",
    "data_range",
    "ends_in",
    "fault_finding",
    "gan_findings",
    "image_order",
    "image_order_finding",
    "network_ends_in",
]


def fault_finding(
    fault: LayerFault, trace: NetworkTrace, spec: Spec | None = None, target: Shape | None = None
) -> Finding:
    """A layer fault at its node, with a better fix when the cure is in the layer that feeds it (a view fed by a
    linear, a merge fed by a convolution) or, for a layer reading the latent or the image, in that input.
    ``target`` is what the network must output (the image, or [1]), when known: a fix is offered only if the
    network then traces to it, or it says what else is needed."""
    problem, node = fault.problem, fault.node
    message, fix = problem.message, problem.fix
    graph = trace.graph
    if isinstance(problem, ViewCount) and graph is not None:
        feeder = _feeder(graph, node, lambda n: n.type == "linear")
        if feeder is not None:
            changed = node.layer.model_copy(update={"shape": problem.fix_shape})
            other = _fits_with(graph, node, changed, target)
            fix = f"out_features: {problem.needed} in {feeder.path.rsplit(' (', 1)[0]}" + (
                f", or {fix}" if other else ""
            )
    if isinstance(problem, NeedsView) and graph is not None and graph.chain:
        fix = _first_view(graph, node, fault, problem.flat, target)
    if isinstance(problem, DeclaredMismatch) and graph is not None and node.inputs[0].source < 0:
        given = graph.inputs[-1 - node.inputs[0].source]
        if given.kind == "latent":
            message = (
                f"{problem.field}: {problem.declared}, but the latent vector has {problem.actual} values "
                f"(latent: {problem.actual})"
            )
            fix = f"{fix}; or latent: {problem.declared}"
        elif given.kind == "image":
            message = message.replace("its input", "the image", 1)
    if problem.operand is not None and graph is not None and fix is None:
        fix = _operand_fix(graph, node, fault, problem.operand, spec)
    loc = node.loc if problem.field is None else (*node.loc, problem.field)
    return Finding(loc, node.path, message, fix, problem.detail, node.uses)


def gan_findings(spec: Spec, generator: NetworkTrace, discriminator: NetworkTrace) -> list[Finding]:
    """The contract between latent, generator, image and discriminator, and the train section's fit."""
    findings: list[Finding] = []
    if generator.complete:
        findings += _generator_output(spec, generator)
    if discriminator.complete:
        findings += _discriminator_output(discriminator)
    findings += _labels_agree(generator, discriminator)
    findings += _train_fit(spec, generator, discriminator)
    return findings


def data_range(spec: Spec) -> tuple[float, float]:
    """The range training scales images to: [-1, 1] for a tanh generator, else [0, 1] (the seed's)."""
    if spec.train.data_range == "symmetric":
        return (-1.0, 1.0)
    if spec.train.data_range == "unit":
        return (0.0, 1.0)
    return (-1.0, 1.0) if network_ends_in(spec, "generator") == "tanh" else (0.0, 1.0)


def ends_in(graph: Graph, output: int = 0) -> str | None:
    """The type of the layer that makes a network's output, looking through layers that only reshape or pass the
    values on (flatten, view, dropout, identity): pytorch/examples' DCGAN ends in sigmoid, then a view."""
    if output >= len(graph.outputs):
        return None
    wire = graph.outputs[output]
    while wire.source >= 0:
        node = graph.nodes[wire.source]
        if not node.layer.traits.passthrough:
            return node.type
        wire = node.inputs[0]
    return None


def network_ends_in(spec: Spec, role: Role) -> str | None:
    """``ends_in`` of one network of a validated spec (its first output)."""
    from archspec.graph import expand

    graph, _ = expand(spec, role)
    return ends_in(graph)


# --- generator output = image --------------------------------------------------------------------------------------


def _generator_output(spec: Spec, generator: NetworkTrace) -> Iterator[Finding]:
    out, image = generator.output, spec.image
    graph = generator.graph
    assert out is not None and graph is not None
    if out == image:
        return
    last = _producer(graph, 0)
    if last is None:
        yield Finding(("generator",), "generator", f"output {fmt(out)}, but the image is {fmt(image)}")
        return
    if len(out) != 3:
        fix = f"append {{type: view, shape: {fmt(image)}}}" if _count(out) == _count(image) else None
        yield Finding(
            last.loc, last.path, f"output {fmt(out)}, but the image is {fmt(image)}", fix, (), last.uses
        )
        return
    if out[0] != image[0]:
        node = _feeder(graph, last, lambda n: n.layer.traits.channels is not None, include=True)
        if node is not None:
            field = node.layer.traits.channels
            yield Finding(
                (*node.loc, field),  # type: ignore[arg-type]  # channels is set on the nodes _feeder returns
                node.path,
                f"output {fmt(out)} has {plural(out[0], 'channel')}, but the image {fmt(image)} has {image[0]}",
                f"{field}: {image[0]}",
                (),
                node.uses,
            )
    if out[1:] != image[1:]:
        yield _size_finding(generator, image, last)


def _size_finding(generator: NetworkTrace, image: Shape, last: Node) -> Finding:
    """The wrong size, reported at the layer whose smallest change gives the image's size (the last one when no
    change does), with the change as the fix."""
    out = generator.output
    assert out is not None
    message = f"output {out[1]}×{out[2]}, the image is {image[1]}×{image[2]}"
    found = _size_fix(generator, image)
    by_index = {t.index: t for t in generator.layers}
    if found is None:
        spatial = _feeder(generator.graph, last, lambda n: n.layer.traits.spatial, include=True)  # type: ignore[arg-type]
        node = spatial or last
        arithmetic = by_index[node.index].arithmetic if node.index in by_index else ()
        return Finding(node.loc, node.path, message, None, arithmetic, node.uses)
    node, update = found
    said = ", ".join(f"{k}: {_value(v)}" for k, v in update.items())
    if _feeder(generator.graph, last, lambda n: n is node, include=True) is None:  # type: ignore[arg-type]
        message = f"the generator's output is {out[1]}×{out[2]}, the image is {image[1]}×{image[2]}"
    return Finding(
        node.loc,
        node.path,
        message,
        f"{said} gives {image[1]}×{image[2]}",
        by_index[node.index].arithmetic,
        node.uses,
    )


_MAX_TRIALS = 4000  # re-traces a size fix may spend


def _size_fix(generator: NetworkTrace, image: Shape) -> tuple[Node, dict[str, Any]] | None:
    """The smallest change to one spatial layer after which the generator outputs the image's height × width.

    Changes are tried cheapest first over every spatial layer (the cost is how far the numbers move), the later
    layer first on a tie; the first that works wins. A slip upstream (padding 0 where the other layers have 1) is
    thus fixed where it was made.
    """
    graph = generator.graph
    assert graph is not None
    trials = sorted(
        (
            (cost, -node.index, k, node, update)
            for node in graph.nodes
            if node.layer.traits.spatial
            for k, (cost, update) in enumerate(_candidates(node.layer, image))
        ),
        key=lambda t: t[:3],
    )
    known = {(f.index, f.problem.message) for f in generator.faults}
    for _, _, _, node, update in trials[:_MAX_TRIALS]:
        try:
            layer = node.layer.model_copy(update=update)
        except ValueError:
            continue
        changed = dataclasses.replace(
            graph, nodes=tuple(dataclasses.replace(n, layer=layer) if n is node else n for n in graph.nodes)
        )
        trace = trace_graph(changed)
        out = trace.output
        new_faults = {(f.index, f.problem.message) for f in trace.faults} - known
        if trace.complete and not new_faults and out is not None and out[1:] == image[1:]:
            return node, update
    return None


def _candidates(layer: Layer, image: Shape) -> Iterator[tuple[int, dict[str, Any]]]:
    """Changes to try with their cost: padding (and output_padding), kernel size, scale factor or size."""
    fields = layer.torch_kwargs()
    fixes = layer.traits.fixes
    kernel = fields.get("kernel_size", (1, 1))
    dilation = fields.get("dilation", (1, 1))
    stride = fields.get("stride") or kernel
    reach = max(k * d for k, d in zip(kernel, dilation, strict=True))
    padding = fields.get("padding") if isinstance(fields.get("padding"), tuple) else None
    out_padding = fields.get("output_padding")
    paddings = [(p, p) for p in range(reach + 1)] if "padding" in fixes and padding is not None else [None]
    out_paddings = [(o, o) for o in range(max(*stride, *dilation))] if "output_padding" in fixes else [None]
    for p, o in itertools.product(paddings, out_paddings):
        update = {
            k: v for k, v in (("padding", p), ("output_padding", o)) if v is not None and v != fields.get(k)
        }
        if update:
            cost = (abs(p[0] - padding[0]) if p and padding else 0) + (
                abs(o[0] - out_padding[0]) if o and out_padding else 0
            )
            yield cost, update
    if "kernel_size" in fixes:
        for k in range(1, 2 * max(kernel) + 2):
            if (k, k) != kernel:
                yield 2 * abs(k - max(kernel)), {"kernel_size": (k, k)}
    if "scale_factor" in fixes and isinstance(fields.get("scale_factor"), tuple):
        for s in range(1, 9):
            if (float(s), float(s)) != fields["scale_factor"]:
                yield 2 * abs(s - int(fields["scale_factor"][0])), {"scale_factor": (float(s), float(s))}
    if "size" in fixes and isinstance(fields.get("size"), tuple):
        yield 1, {"size": image[1:]}


# --- discriminator output: one value per sample, or a patch map -----------------------------------------------------


def _discriminator_output(discriminator: NetworkTrace) -> Iterator[Finding]:
    out = discriminator.output
    graph = discriminator.graph
    assert out is not None and graph is not None
    if out == (1,) or (len(out) == 3 and out[0] == 1):
        return
    last = _producer(graph, 0)
    if last is None:
        return
    if len(out) > 1:
        fix = _flatten_before_linear(discriminator) or "append {type: flatten}"
        if _count(out) != 1 and fix.startswith("append"):
            fix += " and {type: linear, out_features: 1}"
    else:
        linear = _last_of(graph, last, "linear")
        fix = (
            f"out_features: 1 in {linear.path.rsplit(' (', 1)[0]}"
            if linear is not None
            else "append {type: linear, out_features: 1}"
        )
    yield Finding(
        last.loc,
        last.path,
        f"output {fmt(out)}, but a discriminator gives one value per sample, [1]",
        fix,
        (),
        last.uses,
    )


def _labels_agree(generator: NetworkTrace, discriminator: NetworkTrace) -> Iterator[Finding]:
    if generator.graph is None or discriminator.graph is None:
        return
    g = {i.classes for i in generator.graph.inputs if i.classes is not None}
    d = [i for i in discriminator.graph.inputs if i.classes is not None]
    for label in d:
        if g and label.classes not in g:
            yield Finding(
                ("discriminator", "inputs", label.name),
                f"discriminator.inputs.{label.name}",
                f"label with {label.classes} classes, but the generator's label has {min(g)}",
                f"{label.name}: {{label: {min(g)}}}",
            )


def _flatten_before_linear(discriminator: NetworkTrace) -> str | None:
    """A linear fed a [C, H, W] map (torch applies it to the last axis alone) wants a flatten before it."""
    graph = discriminator.graph
    if graph is None or not graph.chain:
        return None
    layers = [n.layer for n in graph.nodes]
    flatten = LAYER_TYPES["flatten"].model_validate({"type": "flatten"})
    for t in discriminator.layers:
        if t.type == "linear" and len(t.input) > 1:
            if _fits("discriminator", t.input, [flatten, *layers[t.index :]], (1,)):
                return f"insert {{type: flatten}} before {t.node.path}"
            return None
    return None


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


# --- the train section fits the networks ---------------------------------------------------------------------------


def _train_fit(spec: Spec, generator: NetworkTrace, discriminator: NetworkTrace) -> Iterator[Finding]:
    train = spec.train
    g_graph, d_graph = generator.graph, discriminator.graph
    assert g_graph is not None and d_graph is not None
    d_last = _producer(d_graph, 0)
    d_end = ends_in(d_graph)
    if d_last is not None:
        where = d_last.path.rsplit(" (", 1)[0]
        if train.loss == "bce" and d_end != "sigmoid":
            yield Finding(
                d_last.loc,
                d_last.path,
                "loss bce needs probabilities, but the discriminator does not end in sigmoid",
                "set train.loss: bce_logits (the sigmoid inside the loss), or append {type: sigmoid}",
                (),
                d_last.uses,
            )
        elif train.loss != "bce" and d_end == "sigmoid":
            sigmoid = _feeder(d_graph, d_last, lambda n: n.type == "sigmoid", include=True) or d_last
            where = sigmoid.path.rsplit(" (", 1)[0]
            yield Finding(
                sigmoid.loc,
                sigmoid.path,
                f"loss {train.loss} takes raw scores, but the discriminator ends in sigmoid",
                f"remove {where} (sigmoid), or set train.loss: bce",
                (),
                sigmoid.uses,
            )
        if train.precision == "bf16" and train.loss == "bce":
            yield Finding(
                ("train", "precision"),
                "train.precision",
                "bf16 autocast cannot run BCELoss on sigmoid outputs (PyTorch refuses it as unsafe)",
                f"set train.loss: bce_logits and remove {where} (sigmoid)",
            )
    g_end = ends_in(g_graph)
    if train.data_range == "unit" and g_end == "tanh":
        yield Finding(
            ("train", "data_range"),
            "train.data_range",
            "the generator ends in tanh (values in [-1, 1]) but data_range is unit ([0, 1])",
            "data_range: symmetric (or auto)",
        )
    if train.data_range == "symmetric" and g_end == "sigmoid":
        yield Finding(
            ("train", "data_range"),
            "train.data_range",
            "the generator ends in sigmoid (values in [0, 1]) but data_range is symmetric ([-1, 1])",
            "data_range: unit (or auto)",
        )
    for net in (generator, discriminator):
        yield from _batch_norm_fit(net, train.batch_size)


def _batch_norm_fit(net: NetworkTrace, batch_size: int) -> Iterator[Finding]:
    for t in net.layers:
        if "batch_norm" in t.type and batch_size * _count(t.input[1:]) < 2:
            yield Finding(
                t.node.loc,
                t.node.path,
                f"batch norm over {fmt(t.input)} sees one value per channel at batch_size "
                f"{batch_size}; PyTorch refuses to train it",
                "set train.batch_size: 2 or more, or use layer_norm",
                (),
                t.node.uses,
            )


# --- helpers ------------------------------------------------------------------------------------------------------


def _producer(graph: Graph, output: int) -> Node | None:
    wire = graph.outputs[output] if output < len(graph.outputs) else None
    return graph.nodes[wire.source] if wire is not None and wire.source >= 0 else None


def _feeder(graph: Graph, node: Node, want: Any, include: bool = False) -> Node | None:
    """The nearest node that ``want``s, walking back from ``node`` along first inputs through layers that keep
    the shape (activations, norms, dropout)."""
    current: Node | None = node if include else _before(graph, node)
    while current is not None:
        if want(current):
            return current
        if not (current.layer.traits.elementwise or current.layer.traits.passthrough):
            return None
        current = _before(graph, current)
    return None


def _before(graph: Graph, node: Node) -> Node | None:
    wire = node.inputs[0] if node.inputs else None
    return graph.nodes[wire.source] if wire is not None and wire.source >= 0 else None


def _last_of(graph: Graph, node: Node, kind: str) -> Node | None:
    current: Node | None = node
    while current is not None:
        if current.type == kind:
            return current
        current = _before(graph, current)
    return None


def _operand_fix(graph: Graph, node: Node, fault: LayerFault, operand: int, spec: Spec | None) -> str | None:
    """For a merge whose inputs disagree in channels only: set the channels of the layer that makes the odd one;
    where a block's argument sets them (``out_channels: $channels``), that argument at the block's use."""
    want, got = fault.inputs[0].shape, fault.inputs[operand].shape
    if len(want) != len(got) or want[1:] != got[1:] or want[0] == got[0]:
        if len(want) == len(got) == 3 and want[0] == got[0]:
            return f"make both {want[1]}×{want[2]}: resample input {operand + 1} ({got[1]}×{got[2]})"
        return None
    wire: Wire = node.inputs[operand]
    producer = graph.nodes[wire.source] if wire.source >= 0 else None
    channels = (
        None
        if producer is None
        else _feeder(graph, producer, lambda n: n.layer.traits.channels is not None, include=True)
    )
    if channels is None:
        return None
    field = channels.layer.traits.channels
    assert field is not None
    argument = _argument(spec, channels, field)
    if argument is not None and channels.uses:
        use = channels.uses[-1]
        return f"{argument}: {want[0]} in {_dotted(use)} (the argument that sets {field} in block {channels.loc[1]})"
    return f"{field}: {want[0]} in {channels.path.rsplit(' (', 1)[0]}"


def _argument(spec: Spec | None, node: Node, field: str) -> str | None:
    """The block parameter a block's layer takes ``field`` from (``out_channels: $channels`` → ``channels``)."""
    if spec is None or node.loc[:1] != ("blocks",) or len(node.loc) < 4:
        return None
    block = spec.blocks.get(str(node.loc[1]))
    index = node.loc[3]
    if block is None or not isinstance(index, int) or index >= len(block.layers):
        return None
    written = block.layers[index].get(field)
    return written[1:] if isinstance(written, str) and written.startswith("$") else None


def _dotted(loc: tuple[str | int, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(loc))


def _fits(role: Role, input_shape: Shape, layers: Sequence[Layer], target: Shape | None) -> bool:
    """Whether a chain of ``layers`` traces from ``input_shape`` without a fault (to ``target``, when given)."""
    trace = trace_network(role, input_shape, layers)
    return trace.complete and not trace.faults and (target is None or trace.output == target)


def _fits_with(graph: Graph, node: Node, layer: Layer, target: Shape | None) -> bool:
    """Whether the graph traces without a fault (to ``target``, when given) once ``node`` is ``layer``."""
    changed = dataclasses.replace(
        graph, nodes=tuple(dataclasses.replace(n, layer=layer) if n is node else n for n in graph.nodes)
    )
    trace = trace_graph(changed)
    return trace.complete and not trace.faults and (target is None or trace.output == target)


def _first_view(graph: Graph, node: Node, fault: LayerFault, flat: int, target: Shape | None) -> str:
    """The view that turns a flat [N] into the [C, H, W] the faulting layer of a chain needs: [N, 1, 1]
    (DCGAN's), or C × H × H = N, the first after which the rest of the network traces to ``target``."""
    rest = [n.layer for n in graph.nodes[node.index :]]
    role = graph.role
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
