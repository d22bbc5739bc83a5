"""Walk a validated spec layer by layer: every layer's shape, parameters and cost, before any weight exists.

The one place where derived values (shapes, parameter counts, MACs, memory) are computed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from archspec.graph import Finding, Graph, Input, Node, Role, Wire, chain_graph, expand

__all__ = [
    "LayerFault",
    "LayerTrace",
    "NetworkTrace",
    "Role",
    "Totals",
    "totals",
    "trace_graph",
    "trace_network",
    "trace_spec",
]
from archspec.layers import MAX_SIZE, Layer
from archspec.rules import GRAPH_RULES, RULES, Problem, Shape, Step, Value
from archspec.spec import Spec

FLOAT_BYTES = 4
_ABBREVIATIONS = {
    "kernel_size": "k",
    "stride": "s",
    "padding": "p",
    "output_padding": "op",
    "dilation": "d",
    "groups": "g",
    "negative_slope": "",
    "scale_factor": "×",
}


@dataclass(eq=False, slots=True)  # as graph.Node: one per layer, not frozen, compared by identity
class LayerTrace:
    """One layer of a traced network, for one sample (batch dimension excluded)."""

    index: int
    layer: Layer
    input: Shape
    output: Shape
    arithmetic: tuple[str, ...]
    params: int
    macs: int
    node: Node
    inputs: tuple[Shape, ...] = ()
    outputs: tuple[Shape, ...] = ()  # the parts of a split or chunk
    buffers: int = 0
    classes: tuple[int | None, ...] = ()  # per input: its class count when it is a label

    @property
    def type(self) -> str:
        return self.layer.type

    @property
    def label(self) -> str:
        return describe(self.layer, self.input, self.output)

    @property
    def activation_bytes(self) -> int:
        """float32 bytes of this layer's output for one sample (a split's parts are views: none)."""
        if self.outputs:
            return 0
        return math.prod(self.output) * FLOAT_BYTES


@dataclass(frozen=True)
class LayerFault:
    """A layer the trace could not accept."""

    index: int
    layer: Layer
    input: Shape
    problem: Problem
    node: Node
    inputs: tuple[Value, ...] = ()


@dataclass(frozen=True)
class NetworkTrace:
    role: Role
    input: Shape
    layers: tuple[LayerTrace, ...]
    faults: tuple[LayerFault, ...]
    complete: bool  # False when a fault left an output's shape unknown
    graph: Graph | None = None
    outputs: tuple[Shape | None, ...] = ()
    findings: tuple[Finding, ...] = ()  # problems of the graph itself: unknown names, cycles, block arguments

    @property
    def output(self) -> Shape | None:
        if not self.complete:
            return None
        if self.outputs:
            return self.outputs[0]
        return self.layers[-1].output if self.layers else self.input

    @property
    def params(self) -> int:
        return sum(t.params for t in self.layers)

    @property
    def macs(self) -> int:
        return sum(t.macs for t in self.layers)

    @property
    def buffers(self) -> int:
        return sum(t.buffers for t in self.layers)

    @property
    def activation_bytes(self) -> int:
        return sum(t.activation_bytes for t in self.layers)

    def first_weight_macs(self) -> int:
        """MACs of the first layer with weights: its input-gradient is never needed when the input is data."""
        return next((t.macs for t in self.layers if t.layer.traits.weights), 0)


def trace_network(role: Role, input_shape: Shape, layers: Sequence[Layer]) -> NetworkTrace:
    """Trace a chain of ``layers`` from ``input_shape`` (a size fix re-traces the tail of a chain this way)."""
    return trace_graph(chain_graph(role, (Input("x", "image", input_shape),), layers))


def trace_graph(graph: Graph, findings: Sequence[Finding] = ()) -> NetworkTrace:
    """Trace every node of ``graph`` from its inputs' shapes. A fault leaves that node's output unknown and skips
    only the nodes that read it, so a fault in one branch does not hide the faults of another."""
    known: list[list[Value] | None] = []
    traced: list[LayerTrace] = []
    faults: list[LayerFault] = []
    inputs = [Value(i.shape, i.classes) for i in graph.inputs]

    def value(wire: Wire) -> Value | None:
        if wire.source < 0:
            return inputs[-1 - wire.source]
        parts = known[wire.source]
        if parts is None:
            return None
        if (wire.part or 0) >= len(parts):
            raise Problem(
                f"reads part {wire.part} of a {graph.nodes[wire.source].type} that has {len(parts)} "
                f"(parts 0 to {len(parts) - 1})",
                field="from",
            )
        return parts[wire.part or 0]

    for node in graph.nodes:
        try:
            values = [value(w) for w in node.inputs]
        except Problem as problem:
            faults.append(LayerFault(node.index, node.layer, (), problem, node))
            known.append(None)
            continue
        if any(v is None for v in values):
            known.append(None)
            continue
        ins = tuple(v for v in values if v is not None)
        layer = node.layer
        try:
            step = _step(layer, ins)
        except Problem as problem:
            faults.append(LayerFault(node.index, layer, ins[0].shape, problem, node, ins))
            if problem.output is None:
                known.append(None)
                continue
            step = problem.output
        too_big = _too_big(step)
        if too_big:
            faults.append(LayerFault(node.index, layer, ins[0].shape, too_big, node, ins))
            known.append(None)
            continue
        if not step.outputs and step.output == ins[0].shape and ins[0].classes is None:
            known.append([ins[0]])  # most layers keep the shape: no new value to make
        else:
            known.append([Value(p) for p in step.outputs or (step.output,)])
        traced.append(
            LayerTrace(
                node.index,
                layer,
                ins[0].shape,
                step.output,
                step.arithmetic,
                step.params,
                step.macs,
                node,
                tuple(v.shape for v in ins),
                step.outputs,
                step.buffers,
                tuple(v.classes for v in ins),
            )
        )
    outs = tuple(None if (v := _quiet(value, w)) is None else v.shape for w in graph.outputs)
    complete = bool(outs) and all(o is not None for o in outs) and not findings
    first = graph.inputs[0].shape if graph.inputs else ()
    return NetworkTrace(
        graph.role, first, tuple(traced), tuple(faults), complete, graph, outs, tuple(findings)
    )


def _quiet(value: Callable[[Wire], Value | None], wire: Wire) -> Value | None:
    try:
        return value(wire)
    except Problem:
        return None


# What may read one value per sample (per-sample shape (), as a sum over every dimension leaves).
_SCALAR_OK = frozenset(
    {
        "add",
        "mul",
        "scale",
        "identity",
        "dropout",
        "relu",
        "leaky_relu",
        "gelu",
        "silu",
        "tanh",
        "sigmoid",
        "view",
    }
)


def _step(layer: Layer, values: tuple[Value, ...]) -> Step:
    if values[0].shape == () and values[0].classes is None and layer.type not in _SCALAR_OK:
        raise Problem(
            f"{layer.type} needs at least one dimension per sample, but its input is one value per sample",
            fix="keepdim: true on the sum or mean before it, or reduce fewer dims",
        )
    if layer.type in GRAPH_RULES:
        return GRAPH_RULES[layer.type](layer, values)
    if values[0].classes is not None:
        raise Problem(
            f"{layer.type} takes a tensor, but its input is {values[0].describe()}",
            fix="look the label up first: {type: embedding, embedding_dim: N}",
        )
    return RULES[layer.type](layer, values[0].shape)


def _too_big(step: Step) -> Problem | None:
    values = math.prod(step.output)
    if values > MAX_SIZE:
        return Problem(f"output {list(step.output)} holds {values:,} values per sample, over 2^31")
    if step.params > MAX_SIZE:
        return Problem(f"{step.params:,} parameters in one layer, over 2^31")
    return None


def describe(layer: Layer, input_shape: Shape, output: Shape) -> str:
    """``conv_transpose2d 256→3 k=8 s=2 p=1``: the type, the channel change and the non-default arguments
    (``sn`` for spectral norm)."""
    kind = layer.type
    parts = [kind]
    if kind == "linear":
        parts.append(f"{input_shape[-1]}→{output[-1]}")
    elif kind in ("conv2d", "conv_transpose2d"):
        parts.append(f"{input_shape[0]}→{output[0]}")
    elif kind == "view":
        parts.append(_brackets(output))
    defaults = type(layer).model_fields
    for name, value in layer.torch_kwargs().items():
        skip = name in ("in_channels", "in_features", "num_features", "out_channels", "out_features", "shape")
        if skip or value == defaults[name].default:
            continue
        short = _ABBREVIATIONS.get(name, name + "=")
        if short and not short.endswith("=") and short != "×":
            short += "="
        parts.append(f"{short}{_compact(value)}")
    if getattr(layer, "spectral_norm", None) is not None:
        parts.append("sn")  # spectral norm
    return " ".join(parts)


def _compact(value: object) -> str:
    if isinstance(value, tuple) and len(set(value)) == 1:
        value = value[0]
    if isinstance(value, tuple):
        return "(" + ",".join(_compact(v) for v in value) + ")"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _brackets(shape: Shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


@dataclass(frozen=True)
class Totals:
    """Whole-GAN numbers for one training step at ``batch_size``."""

    batch_size: int
    params_generator: int
    params_discriminator: int
    macs_generator: int
    macs_discriminator: int
    train_step_flops: int  # per image: D on real, D on G(z).detach(), G through D
    weights_bytes: int
    gradients_bytes: int
    adam_bytes: int
    activations_bytes: int

    @property
    def params(self) -> int:
        return self.params_generator + self.params_discriminator

    @property
    def train_memory_bytes(self) -> int:
        return self.weights_bytes + self.gradients_bytes + self.adam_bytes + self.activations_bytes

    @property
    def model_flops(self) -> int:
        """The FLOPs a step needs, per image: the seed's step less D's weight gradients in the G update, which
        the seed computes and throws away (archspec's step freezes D there). The numerator of MFU."""
        return self.train_step_flops - 2 * self.macs_discriminator


def totals(generator: NetworkTrace, discriminator: NetworkTrace, batch_size: int) -> Totals:
    """Parameters, MACs, FLOPs and the memory of one training step of the seed's loop.

    Backward costs one forward for the weight gradients and one for the input gradients, except that no layer
    needs the gradient of data it was fed directly. Per image, with F the forward MACs and f the first weight
    layer's MACs: D on real is 3F_D − f_D, D on fake is F_G + 3F_D − f_D, the G update is F_G + 3F_D + 2F_G − f_G.
    """
    fg, fd = generator.macs, discriminator.macs
    step_macs = 9 * fd + 4 * fg - 2 * discriminator.first_weight_macs() - generator.first_weight_macs()
    params = generator.params + discriminator.params
    return Totals(
        batch_size=batch_size,
        params_generator=generator.params,
        params_discriminator=discriminator.params,
        macs_generator=fg,
        macs_discriminator=fd,
        train_step_flops=2 * step_macs,
        weights_bytes=(params + generator.buffers + discriminator.buffers) * FLOAT_BYTES,
        gradients_bytes=params * FLOAT_BYTES,
        adam_bytes=2 * params * FLOAT_BYTES,
        # The generator update keeps every activation of G and D alive for its backward pass.
        activations_bytes=batch_size * (generator.activation_bytes + discriminator.activation_bytes),
    )


def trace_spec(spec: Spec) -> tuple[NetworkTrace, NetworkTrace]:
    """Trace both networks from their inputs (by default the latent vector and the image)."""
    traces = []
    roles: tuple[Role, Role] = ("generator", "discriminator")
    for role in roles:
        graph, findings = expand(spec, role)
        traces.append(trace_graph(graph, findings))
    return traces[0], traces[1]
