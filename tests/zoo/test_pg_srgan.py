"""specs/zoo/pg_srgan.yaml against a hand-written twin of PyTorch-GAN's SRGAN (implementations/srgan/models.py).

The twin is written from the original's description, in plain PyTorch, declaring its modules in the spec's layer
order so that ``copy_weights`` can pair state-dict tensors by position.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import archspec
from tests.zoo.twin import copy_weights, param_count, randomize_norm_stats

SPEC = Path(__file__).resolve().parents[2] / "specs" / "zoo" / "pg_srgan.yaml"

# Counts of the original GeneratorResNet() and Discriminator((3, 256, 256)).
G_PARAMS = 1_550_486
D_PARAMS = 4_693_697

LR_SHAPE = (3, 64, 64)
HR_SHAPE = (3, 256, 256)


class TwinResidual(nn.Module):
    """conv3x3 - BN(eps 0.8) - PReLU - conv3x3 - BN(eps 0.8), added to the block's input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm_a = nn.BatchNorm2d(channels, eps=0.8)
        self.act = nn.PReLU()
        self.conv_b = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm_b = nn.BatchNorm2d(channels, eps=0.8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h: torch.Tensor = self.act(self.norm_a(self.conv_a(x)))
        out: torch.Tensor = x + self.norm_b(self.conv_b(h))
        return out


class TwinUpsample(nn.Module):
    """conv3x3 to 4C - BN (default eps) - PixelShuffle(2) - PReLU: doubles height and width."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels * 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(channels * 4)
        self.shuffle = nn.PixelShuffle(2)
        self.act = nn.PReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.act(self.shuffle(self.norm(self.conv(x))))
        return out


class TwinGenerator(nn.Module):
    """SRGAN's SRResNet generator: 64x64 low-res image in, 4x super-resolved 256x256 image out."""

    def __init__(self, n_blocks: int = 16, width: int = 64) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, width, 9, padding=4)
        self.head_act = nn.PReLU()
        self.trunk = nn.ModuleList(TwinResidual(width) for _ in range(n_blocks))
        self.trunk_conv = nn.Conv2d(width, width, 3, padding=1)
        self.trunk_norm = nn.BatchNorm2d(width, eps=0.8)
        self.ups = nn.ModuleList(TwinUpsample(width) for _ in range(2))
        self.tail = nn.Conv2d(width, 3, 9, padding=4)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        skip = self.head_act(self.head(lr))
        h = skip
        for block in self.trunk:
            h = block(h)
        h = skip + self.trunk_norm(self.trunk_conv(h))  # the long skip around all residual blocks
        for up in self.ups:
            h = up(h)
        return torch.tanh(self.tail(h))


class TwinDiscriminator(nn.Module):
    """Eight conv3x3 (stride 1, 2 alternating), BN on all but the first, LeakyReLU(0.2); a 1-channel patch map."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for i, c_out in enumerate((64, 128, 256, 512)):
            layers.append(nn.Conv2d(c_in, c_out, 3, stride=1, padding=1))
            if i > 0:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2))
            layers.append(nn.Conv2d(c_out, c_out, 3, stride=2, padding=1))
            layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2))
            c_in = c_out
        layers.append(nn.Conv2d(c_in, 1, 3, stride=1, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.body(img)
        return out


def test_twin_counts_match_the_original() -> None:
    assert param_count(TwinGenerator()) == G_PARAMS
    assert param_count(TwinDiscriminator()) == D_PARAMS


def test_spec_checks_with_the_original_counts() -> None:
    result = archspec.check_file(SPEC)
    assert result.ok, result.errors
    assert result.totals is not None
    assert result.totals.params_generator == G_PARAMS
    assert result.totals.params_discriminator == D_PARAMS


@pytest.fixture(scope="module")
def built_and_twins() -> tuple[archspec.GAN, TwinGenerator, TwinDiscriminator]:
    torch.manual_seed(0)
    gan = archspec.build(SPEC)
    g, d = TwinGenerator(), TwinDiscriminator()
    for twin, built in ((g, gan.generator), (d, gan.discriminator)):
        randomize_norm_stats(twin)
        with torch.no_grad():
            copy_weights(twin, built)
        twin.eval()
        built.eval()
    return gan, g, d


def test_built_counts_equal_the_twins(
    built_and_twins: tuple[archspec.GAN, TwinGenerator, TwinDiscriminator],
) -> None:
    gan, g, d = built_and_twins
    assert param_count(gan.generator) == param_count(g) == G_PARAMS
    assert param_count(gan.discriminator) == param_count(d) == D_PARAMS


def test_generator_equals_twin(
    built_and_twins: tuple[archspec.GAN, TwinGenerator, TwinDiscriminator],
) -> None:
    gan, g, _ = built_and_twins
    lr = torch.randn(1, *LR_SHAPE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = g(lr)
        got = gan.generator(lr)
    assert got.shape == want.shape == (1, *HR_SHAPE)
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()


def test_discriminator_equals_twin(
    built_and_twins: tuple[archspec.GAN, TwinGenerator, TwinDiscriminator],
) -> None:
    gan, _, d = built_and_twins
    hr = torch.randn(1, *HR_SHAPE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = d(hr)
        got = gan.discriminator(hr)
    assert got.shape == want.shape == (1, 1, 16, 16)  # the patch map: 256 / 2**4
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
