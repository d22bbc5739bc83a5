"""specs/zoo/mimicry_cgan_pd32.yaml is Mimicry's cGAN-PD 32x32 (10 classes): the original's parameter counts and the
same function as a hand-written twin (tests/zoo/mimicry_sngan32_twin.py) with the same weights."""

from __future__ import annotations

from pathlib import Path

import torch

import archspec
from tests.zoo.mimicry_sngan32_twin import Discriminator, Generator, settle_spectral_norms
from tests.zoo.twin import copy_weights, param_count, randomize_norm_stats

SPEC = Path(__file__).resolve().parents[2] / "specs" / "zoo" / "mimicry_cgan_pd32.yaml"
CLASSES = 10
G_PARAMS = 4_304_387  # CGANPDGenerator32(num_classes=10) as mimicry builds it
D_PARAMS = 1_055_105  # CGANPDDiscriminator32(num_classes=10)


def test_check_counts_the_originals_parameters() -> None:
    result = archspec.check_file(SPEC)
    assert result.ok, [str(e) for e in result.errors]
    totals = result.totals
    assert totals is not None
    assert (totals.params_generator, totals.params_discriminator) == (G_PARAMS, D_PARAMS)


def test_built_networks_compute_the_twins_function() -> None:
    torch.manual_seed(0)
    gan = archspec.build(SPEC)
    g_twin, d_twin = Generator(CLASSES), Discriminator(CLASSES)
    assert param_count(g_twin) == param_count(gan.generator) == G_PARAMS
    assert param_count(d_twin) == param_count(gan.discriminator) == D_PARAMS
    randomize_norm_stats(g_twin)
    settle_spectral_norms(d_twin)
    copy_weights(g_twin, gan.generator)
    copy_weights(d_twin, gan.discriminator)
    for net in (g_twin, d_twin, gan.generator, gan.discriminator):
        net.eval()

    rng = torch.Generator().manual_seed(1)
    z = torch.randn(2, 128, generator=rng)
    x = torch.rand(2, 3, 32, 32, generator=rng) * 2 - 1
    y = torch.tensor([3, 8])  # two different classes: each sample picks its own gamma/beta and projection row
    with torch.no_grad():
        img_twin, img_built = g_twin(z, y), gan.generator(z, y)
        score_twin, score_built = d_twin(x, y), gan.discriminator(x, y)
    assert img_built.shape == img_twin.shape == (2, 3, 32, 32)
    assert torch.allclose(img_built, img_twin, atol=1e-5)
    assert score_built.shape == score_twin.shape == (2, 1)
    assert torch.allclose(score_built, score_twin, atol=1e-5)
