"""Compare a built zoo spec with its hand-written twin: same parameter counts, same weights, same function."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

import archspec
from archspec.modules import GAN


def copy_weights(twin: nn.Module, built: nn.Module) -> None:
    """Copy every parameter and buffer of ``twin`` into ``built``, pairing them by registration order.

    The twins declare their modules in the spec's order, so the n-th tensor of one is the n-th of the other; a
    shape mismatch names both keys.
    """
    src, dst = twin.state_dict(), built.state_dict()
    assert len(src) == len(dst), f"{len(src)} tensors in the twin, {len(dst)} in the built network"
    for (ks, vs), (kd, vd) in zip(src.items(), dst.items(), strict=True):
        assert vs.shape == vd.shape, f"twin {ks} {tuple(vs.shape)} vs built {kd} {tuple(vd.shape)}"
        vd.copy_(vs)


def param_count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def randomize_norm_stats(net: nn.Module, seed: int = 0) -> None:
    """Give batch norms non-trivial running statistics, so eval-mode comparisons exercise them."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            assert m.running_var is not None
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def assert_checks_with_counts(spec: Path, g_params: int, d_params: int) -> None:
    """The spec checks, and its two parameter counts are the original's."""
    result = archspec.check_file(spec)
    assert result.ok, result.errors
    assert result.totals is not None
    assert (result.totals.params_generator, result.totals.params_discriminator) == (g_params, d_params)


def built_as_twins(spec: Path, g_twin: nn.Module, d_twin: nn.Module, g_params: int, d_params: int) -> GAN:
    """The spec built with its twins' weights (batch-norm statistics made non-trivial first), both in eval mode."""
    gan = archspec.build(spec)
    assert param_count(gan.generator) == param_count(g_twin) == g_params
    assert param_count(gan.discriminator) == param_count(d_twin) == d_params
    for twin, built in ((g_twin, gan.generator), (d_twin, gan.discriminator)):
        randomize_norm_stats(twin)
        copy_weights(twin, built)
        twin.eval()
        built.eval()
    return gan
