"""specs/zoo/pg_cyclegan.yaml against a hand-written twin of PyTorch-GAN's CycleGAN (one ResNet G, one PatchGAN D).

The twin follows eriklindernoren/PyTorch-GAN implementations/cyclegan/models.py with cyclegan.py's defaults
(256x256, 3 channels, 9 residual blocks), written anew; its modules are declared in the spec's layer order so
that ``copy_weights`` pairs the tensors by position.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from tests.zoo.twin import assert_checks_with_counts, built_as_twins, param_count

SPEC = Path(__file__).resolve().parents[2] / "specs" / "zoo" / "pg_cyclegan.yaml"
G_PARAMS = 11_378_179
D_PARAMS = 2_764_737


class ResBlock(nn.Module):
    """x + (reflect-pad 1, 3x3 conv, IN, ReLU, reflect-pad 1, 3x3 conv, IN)(x)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(c, c, 3),
            nn.InstanceNorm2d(c),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(c, c, 3),
            nn.InstanceNorm2d(c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNetG(nn.Module):
    def __init__(self, channels: int = 3, blocks: int = 9) -> None:
        super().__init__()
        # The original pads the 7x7 convs by `channels` pixels (3 for RGB), not by a fixed 3.
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(channels),
            nn.Conv2d(channels, 64, 7),
            nn.InstanceNorm2d(64),
            nn.ReLU(inplace=True),
        ]
        for cin, cout in ((64, 128), (128, 256)):
            layers += [
                nn.Conv2d(cin, cout, 3, stride=2, padding=1),
                nn.InstanceNorm2d(cout),
                nn.ReLU(inplace=True),
            ]
        layers += [ResBlock(256) for _ in range(blocks)]
        for cin, cout in ((256, 128), (128, 64)):
            layers += [
                nn.Upsample(scale_factor=2),
                nn.Conv2d(cin, cout, 3, padding=1),
                nn.InstanceNorm2d(cout),
                nn.ReLU(inplace=True),
            ]
        layers += [nn.ReflectionPad2d(channels), nn.Conv2d(64, channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PatchD(nn.Module):
    """70x70 PatchGAN: 16x16 patch scores for 256x256 inputs."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = channels
        for cout, norm in ((64, False), (128, True), (256, True), (512, True)):
            layers.append(nn.Conv2d(cin, cout, 4, stride=2, padding=1))
            if norm:
                layers.append(nn.InstanceNorm2d(cout))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            cin = cout
        layers += [nn.ZeroPad2d((1, 0, 1, 0)), nn.Conv2d(512, 1, 4, padding=1)]
        self.model = nn.Sequential(*layers)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.model(img)


def test_twin_matches_the_published_counts() -> None:
    with torch.device("meta"):  # counting needs no values
        assert param_count(ResNetG()) == G_PARAMS
        assert param_count(PatchD()) == D_PARAMS


def test_spec_checks_with_the_published_counts() -> None:
    assert_checks_with_counts(SPEC, G_PARAMS, D_PARAMS)


@torch.no_grad()
def test_built_networks_compute_what_the_twin_computes() -> None:
    torch.manual_seed(0)
    g_twin, d_twin = ResNetG(), PatchD()
    gan = built_as_twins(
        SPEC, g_twin, d_twin, G_PARAMS, D_PARAMS
    )  # instance norms: no statistics to randomise

    gen = torch.Generator().manual_seed(1)
    # Both networks are fully convolutional: G runs at 128x128 (a quarter of the FLOPs of 256x256, ~2 s per
    # forward here) to keep the test short; the check above covers the 256x256 shapes.
    real_a = torch.randn(1, 3, 128, 128, generator=gen)
    fake_b = g_twin(real_a)
    assert fake_b.shape == (1, 3, 128, 128)
    assert torch.allclose(gan.generator(real_a), fake_b, atol=1e-5)

    real_b = torch.randn(1, 3, 256, 256, generator=gen)
    score = d_twin(real_b)
    assert score.shape == (1, 1, 16, 16)
    assert torch.allclose(gan.discriminator(real_b), score, atol=1e-5)
