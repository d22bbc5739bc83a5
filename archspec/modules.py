"""Compile a checked spec into PyTorch modules: one ``nn.Sequential`` per network.

The only module of the compiler that imports torch. Each builder is one constructor call with the spec's
keyword arguments plus the input size the trace inferred.
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

from archspec.check import CheckResult, check_file, spec_findings
from archspec.errors import SpecError, SpecInvalid
from archspec.spec import Spec
from archspec.trace import LayerTrace, NetworkTrace, trace_spec


class View(nn.Module):
    """``x.view(batch, *shape)``: the seed's View, with the batch dimension kept free."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # reshape, not view: a channels_last activation is not contiguous in NCHW order.
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


@dataclass
class GAN:
    """The two compiled networks of a spec."""

    spec: Spec
    generator: nn.Sequential
    discriminator: nn.Sequential

    def latent(self, n: int, generator: torch.Generator | None = None, device: Any = None) -> torch.Tensor:
        """A batch of ``n`` latent vectors drawn as the spec says (N(0, 1) or U(-1, 1))."""
        size = (n, self.spec.latent.size)
        if self.spec.latent.distribution == "uniform":
            return torch.rand(size, generator=generator, device=device) * 2 - 1
        return torch.randn(size, generator=generator, device=device)


def build(spec: Spec | CheckResult | str | Path, device: Any = None) -> GAN:
    """Build both networks of a spec (a path, a checked result or a Spec) as plain ``nn.Sequential`` modules.

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
    return GAN(spec, build_network(generator, device), build_network(discriminator, device))


def build_network(trace: NetworkTrace, device: Any = None) -> nn.Sequential:
    """One ``nn.Sequential`` whose children are named by the layers' ``name:`` or their index."""
    children: OrderedDict[str, nn.Module] = OrderedDict()
    # Weights are initialised on the CPU, so a seed gives the same weights on every device; meta holds no
    # values, so build there directly rather than initialise gigabytes only to drop them.
    meta = device is not None and torch.device(device).type == "meta"
    with torch.device("meta") if meta else contextlib.nullcontext():
        for t in trace.layers:
            key = t.layer.name or str(t.index)
            children[key] = BUILDERS[t.type](t)
    net = nn.Sequential(children)
    return net.to(device) if device is not None and not meta else net


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
    return View(t.output)


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
}
