"""Compile a checked spec into PyTorch modules: an ``nn.Sequential`` per chain, a ``GraphNetwork`` per graph.

With ``ops.py`` the only modules of the compiler that import torch. Each builder is one constructor call with the
spec's keyword arguments plus the input size the trace inferred; initialisation and spectral norm are applied to
the built layer as the spec says.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils import spectral_norm

from archspec import ops
from archspec.check import CheckResult, check_file, spec_findings
from archspec.errors import SpecError, SpecInvalid
from archspec.layers import Init
from archspec.spec import Spec
from archspec.trace import LayerTrace, NetworkTrace, trace_spec

View = ops.View  # kept here for code that imports it from its old place


@dataclass
class GAN:
    """The two compiled networks of a spec."""

    spec: Spec
    generator: nn.Module  # nn.Sequential for a chain
    discriminator: nn.Module

    def latent(self, n: int, generator: torch.Generator | None = None, device: Any = None) -> torch.Tensor:
        """A batch of ``n`` latent vectors drawn as the spec says (N(0, 1) or U(-1, 1))."""
        if self.spec.latent is None:
            raise ValueError(f"spec {self.spec.name} has no latent vector")
        size = (n, self.spec.latent.size)
        if self.spec.latent.distribution == "uniform":
            return torch.rand(size, generator=generator, device=device) * 2 - 1
        return torch.randn(size, generator=generator, device=device)


def build(spec: Spec | CheckResult | str | Path, device: Any = None) -> GAN:
    """Build both networks of a spec (a path, a checked result or a Spec): ``nn.Sequential`` for a chain,
    ``GraphNetwork`` for a graph.

    Raises SpecInvalid (with every error) if the spec does not check.
    """
    if isinstance(spec, str | Path):
        spec = check_file(spec)
    if isinstance(spec, CheckResult):
        result = spec
        if not result.ok or result.spec is None or result.generator is None or result.discriminator is None:
            raise SpecInvalid(list(result.errors))
        spec, generator, discriminator = result.spec, result.generator, result.discriminator
    else:
        # A Spec made in Python skipped check: hold it to the same layer faults and GAN contract.
        generator, discriminator = trace_spec(spec)
        findings = spec_findings(spec, generator, discriminator)
        if findings:
            where = f"<spec {spec.name}>"
            raise SpecInvalid([SpecError(where, 0, 0, f.path, f.message, f.fix, f.detail) for f in findings])
    return GAN(
        spec,
        build_network(generator, device, spec.generator.init),
        build_network(discriminator, device, spec.discriminator.init),
    )


def build_network(trace: NetworkTrace, device: Any = None, init: Init | None = None) -> nn.Module:
    """A chain as one ``nn.Sequential`` whose children are named by the layers' ``name:`` or their index; a graph
    as a ``GraphNetwork`` whose children are the same, with a block's layers inside the block's child."""
    # Weights are initialised on the CPU, so a seed gives the same weights on every device; meta holds no
    # values, so build there directly rather than initialise gigabytes only to drop them.
    meta = device is not None and torch.device(device).type == "meta"
    with torch.device("meta") if meta else contextlib.nullcontext():
        built = [(t, build_layer(t, init)) for t in trace.layers]
        if trace.graph is None or trace.graph.chain:
            net: nn.Module = nn.Sequential(OrderedDict((t.node.key, m) for t, m in built))
        else:
            net = GraphNetwork(trace, built)
    return net.to(device) if device is not None and not meta else net


class GraphNetwork(nn.Module):
    """A network whose layers read named values: runs its layers in spec order, each on the values it names.

    Children are named as in the spec (a block's layers inside the block's child), so state-dict keys read
    ``3.1.4.weight``: layer 3, copy 1 of a repeat, layer 4 of the block. ``forward`` takes the inputs in declared
    order and returns one tensor, or a tuple for several outputs.
    """

    def __init__(self, trace: NetworkTrace, built: list[tuple[LayerTrace, nn.Module]]) -> None:
        super().__init__()
        graph = trace.graph
        assert graph is not None
        self.input_names = tuple(i.name for i in graph.inputs)
        first = len(graph.inputs)

        def slot(wire: Any) -> tuple[int, int | None]:
            return (-1 - wire.source if wire.source < 0 else first + wire.source), wire.part

        plan: list[tuple[nn.Module, tuple[tuple[int, int | None], ...], int]] = []
        for t, module in built:
            *parents, leaf = t.node.key.split(".")
            holder: nn.Module = self
            for part in parents:
                if part not in holder._modules:
                    holder.add_module(part, Block())
                child = holder._modules[part]
                assert child is not None
                holder = child
            holder.add_module(leaf, module)
            plan.append((module, tuple(slot(w) for w in t.node.inputs), first + t.index))
        self._plan = plan  # a plain list: the modules are registered above, under their spec names
        self._outputs = tuple(slot(w) for w in graph.outputs)
        self._slots = first + len(graph.nodes)

    def forward(self, *inputs: torch.Tensor) -> Any:
        values: list[Any] = [*inputs, *([None] * (self._slots - len(inputs)))]
        for module, reads, out in self._plan:
            values[out] = module(*[values[s] if p is None else values[s][p] for s, p in reads])
        outs = tuple(values[s] if p is None else values[s][p] for s, p in self._outputs)
        return outs[0] if len(outs) == 1 else outs


class Block(nn.Module):
    """Holds a block's layers (or a repeat's copies) under one name; the network runs them, not the block."""

    def forward(self, *args: Any) -> Any:  # pragma: no cover - never called: GraphNetwork runs the members
        raise RuntimeError("a block's layers are run by the network that holds it")


def build_layer(t: LayerTrace, network_init: Init | None = None) -> nn.Module:
    """One layer's module, initialised as the spec says, with spectral norm where the spec asks for it."""
    module = BUILDERS[t.type](t)
    layer: Any = t.layer
    init = getattr(layer, "init", None)
    if not isinstance(init, Init):
        init = network_init if layer.traits.weights else None
    if (
        isinstance(module, ops.ConditionalBatchNorm2d)
        and module.embed is not None
        and isinstance(layer.init, Init)
    ):
        _initialise_label_norm(module.embed.weight, module.num_features, layer.init)
    elif init is not None and init.type != "default":
        _initialise(module, init, norm=not layer.traits.weights)
    sn = getattr(layer, "spectral_norm", None)
    if sn is not None and isinstance(module, _WEIGHTED):
        module = spectral_norm(module, eps=sn.eps, n_power_iterations=sn.n_power_iterations)
    return module


def _initialise(module: nn.Module, init: Init, norm: bool) -> None:
    """``torch.nn.init`` on the weights of the layer, or of the linears, convolutions and embeddings inside a
    composite layer (not a conditional batch norm's label embedding, which starts at scale 1 and shift 0)."""
    for m in _init_targets(module, norm):
        weight = m._parameters.get(
            "weight_orig", m._parameters.get("weight")
        )  # spectral norm keeps weight_orig
        if weight is not None and weight.device.type != "meta":
            with torch.no_grad():
                _INIT[init.type](weight, init)
        bias = m._parameters.get("bias")
        if init.bias is not None and bias is not None and bias.device.type != "meta":
            with torch.no_grad():
                bias.fill_(init.bias)


def _initialise_label_norm(weight: torch.Tensor, channels: int, init: Init) -> None:
    """A label-conditioned batch norm's ``init`` sets its scales (the embedding's first half), its ``bias`` the
    shifts: ``{type: normal, mean: 1.0, std: 0.02, bias: 0.0}`` is mimicry's."""
    if weight.device.type == "meta":
        return
    with torch.no_grad():
        _INIT[init.type](weight[:, :channels], init)
        weight[:, channels:].fill_(init.bias or 0.0)


_WEIGHTED = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d, nn.Embedding)


def _init_targets(module: nn.Module, norm: bool) -> list[nn.Module]:
    if norm or isinstance(module, _WEIGHTED):
        return [module]
    conditional = isinstance(module, ops.ConditionalBatchNorm2d)
    return [
        m
        for m in module.modules()
        if isinstance(m, nn.Linear | nn.Conv2d) or (isinstance(m, nn.Embedding) and not conditional)
    ]


_INIT: dict[str, Callable[[torch.Tensor, Init], Any]] = {
    "normal": lambda w, i: nn.init.normal_(w, i.mean, i.std),
    "uniform": lambda w, i: nn.init.uniform_(w, i.a, i.b),
    "constant": lambda w, i: nn.init.constant_(w, i.value),
    "xavier_uniform": lambda w, i: nn.init.xavier_uniform_(w, i.gain),
    "xavier_normal": lambda w, i: nn.init.xavier_normal_(w, i.gain),
    "kaiming_uniform": lambda w, i: nn.init.kaiming_uniform_(w, i.a, i.mode, i.nonlinearity),
    "kaiming_normal": lambda w, i: nn.init.kaiming_normal_(w, i.a, i.mode, i.nonlinearity),
    "orthogonal": lambda w, i: nn.init.orthogonal_(w, i.gain),
}


def _kwargs(t: LayerTrace, *drop: str) -> dict[str, Any]:
    return {k: v for k, v in t.layer.torch_kwargs().items() if k not in drop}


def _conv2d(t: LayerTrace) -> nn.Module:
    return nn.Conv2d(**{**_kwargs(t), "in_channels": t.input[0]})


def _conv_transpose2d(t: LayerTrace) -> nn.Module:
    return nn.ConvTranspose2d(**{**_kwargs(t), "in_channels": t.input[0]})


def _linear(t: LayerTrace) -> nn.Module:
    return nn.Linear(**{**_kwargs(t), "in_features": t.input[-1]})


def _norm(cls: type[nn.Module]) -> Callable[[LayerTrace], nn.Module]:
    return lambda t: cls(**{**_kwargs(t), "num_features": t.input[0]})


def _layer_norm(t: LayerTrace) -> nn.Module:
    layer: Any = t.layer
    return nn.LayerNorm(**{**_kwargs(t), "normalized_shape": layer.normalized_shape or t.input})


def _upsample(t: LayerTrace) -> nn.Module:
    return nn.Upsample(**_kwargs(t))


def _view(t: LayerTrace) -> nn.Module:
    return ops.View(t.output)


def _embedding(t: LayerTrace) -> nn.Module:
    return nn.Embedding(**{**_kwargs(t), "num_embeddings": t.classes[0]})


def _conditional_batch_norm2d(t: LayerTrace) -> nn.Module:
    layer: Any = t.layer
    features = t.inputs[1][0] if t.classes[1] is None else None
    module = ops.ConditionalBatchNorm2d(
        t.input[0], t.classes[1], features, layer.eps, layer.momentum, layer.bias
    )
    sn = layer.spectral_norm
    if sn is not None and module.gain is not None and module.bias is not None:
        module.gain = spectral_norm(module.gain, eps=sn.eps, n_power_iterations=sn.n_power_iterations)
        module.bias = spectral_norm(module.bias, eps=sn.eps, n_power_iterations=sn.n_power_iterations)
    return module


def _field(t: LayerTrace, name: str) -> Any:
    """A field of the trace's layer, whose type the builder table has already chosen."""
    return t.layer.__dict__[name]


def _sn_args(t: LayerTrace) -> dict[str, float] | None:
    sn = getattr(t.layer, "spectral_norm", None)
    return None if sn is None else {"eps": sn.eps, "n_power_iterations": sn.n_power_iterations}


def _self_attention(t: LayerTrace) -> nn.Module:
    return ops.SelfAttention(t.input[0], _sn_args(t))


def _projection(t: LayerTrace) -> nn.Module:
    classes = t.classes[1]
    assert classes is not None
    return ops.Projection(classes, t.input[0], _sn_args(t))


def _prelu(t: LayerTrace) -> nn.Module:
    return nn.PReLU(**_kwargs(t))


def _reduce(mean: bool) -> Callable[[LayerTrace], nn.Module]:
    return lambda t: ops.Reduce(mean, _field(t, "dim"), _field(t, "keepdim"))


def _split(t: LayerTrace) -> nn.Module:
    layer: Any = t.layer
    return ops.Split(layer.split_size_or_sections, None, layer.dim)


def _chunk(t: LayerTrace) -> nn.Module:
    layer: Any = t.layer
    return ops.Split(None, layer.chunks, layer.dim)


def _plain(cls: Callable[..., nn.Module]) -> Callable[[LayerTrace], nn.Module]:
    return lambda t: cls(**_kwargs(t))


BUILDERS: dict[str, Callable[[LayerTrace], nn.Module]] = {
    "linear": _linear,
    "conv2d": _conv2d,
    "conv_transpose2d": _conv_transpose2d,
    "batch_norm1d": _norm(nn.BatchNorm1d),
    "batch_norm2d": _norm(nn.BatchNorm2d),
    "instance_norm2d": _norm(nn.InstanceNorm2d),
    "layer_norm": _layer_norm,
    "dropout": _plain(nn.Dropout),
    "leaky_relu": _plain(nn.LeakyReLU),
    "relu": _plain(nn.ReLU),
    "gelu": _plain(nn.GELU),
    "silu": _plain(nn.SiLU),
    "tanh": _plain(nn.Tanh),
    "sigmoid": _plain(nn.Sigmoid),
    "flatten": _plain(nn.Flatten),
    "upsample": _upsample,
    "max_pool2d": _plain(nn.MaxPool2d),
    "avg_pool2d": _plain(nn.AvgPool2d),
    "view": _view,
    "embedding": _embedding,
    "conditional_batch_norm2d": _conditional_batch_norm2d,
    "self_attention": _self_attention,
    "projection": _projection,
    "dropout2d": _plain(nn.Dropout2d),
    "identity": lambda t: nn.Identity(),
    "prelu": _prelu,
    "softmax": _plain(nn.Softmax),
    "pixel_shuffle": _plain(nn.PixelShuffle),
    "adaptive_avg_pool2d": _plain(nn.AdaptiveAvgPool2d),
    "zero_pad2d": _plain(nn.ZeroPad2d),
    "reflection_pad2d": _plain(nn.ReflectionPad2d),
    "replication_pad2d": _plain(nn.ReplicationPad2d),
    "add": lambda t: ops.Add(),
    "mul": lambda t: ops.Mul(),
    "cat": lambda t: ops.Cat(_field(t, "dim")),
    "sum": _reduce(False),
    "mean": _reduce(True),
    "scale": lambda t: ops.Scale(_field(t, "factor")),
    "split": _split,
    "chunk": _chunk,
}
