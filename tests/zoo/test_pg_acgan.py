"""specs/zoo/pg_acgan.yaml equals PyTorch-GAN's AC-GAN (implementations/acgan/acgan.py, default options).

The twin below is written from the original's description, with its submodules declared in the spec's order so
that ``copy_weights`` pairs the tensors by position.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

import archspec
from tests.zoo.twin import (
    assert_checks_with_counts,
    built_as_twins,
    param_count,
)

SPEC = Path(__file__).resolve().parents[2] / "specs" / "zoo" / "pg_acgan.yaml"
LATENT, CLASSES, IMAGE = 100, 10, (1, 32, 32)
G_PARAMS, D_PARAMS = 1_050_985, 103_243


class Generator(nn.Module):
    """embed(y) * z → linear to 128×8×8 → two (nearest ×2, conv 3×3, BN eps 0.8, LeakyReLU) → conv → tanh."""

    def __init__(self) -> None:
        super().__init__()
        self.init_size = IMAGE[1] // 4
        self.label_emb = nn.Embedding(CLASSES, LATENT)
        self.l1 = nn.Linear(LATENT, 128 * self.init_size**2)
        self.conv_blocks = nn.Sequential(
            nn.BatchNorm2d(128),  # the only batch norm with the default eps 1e-5
            nn.Upsample(scale_factor=2),  # nearest
            nn.Conv2d(128, 128, 3, stride=1, padding=1),
            nn.BatchNorm2d(128, eps=0.8),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(128, 64, 3, stride=1, padding=1),
            nn.BatchNorm2d(64, eps=0.8),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(64, IMAGE[0], 3, stride=1, padding=1),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.l1(self.label_emb(y) * z)  # the label multiplies the noise, it is not concatenated
        return self.conv_blocks(h.view(z.shape[0], 128, self.init_size, self.init_size))


class Discriminator(nn.Module):
    """Four (conv 3×3 stride 2, LeakyReLU, Dropout2d 0.25[, BN eps 0.8]) blocks, then two heads on 128×2×2."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        fan_in = IMAGE[0]
        for fan_out, bn in [(16, False), (32, True), (64, True), (128, True)]:
            # Batch norm comes after the activation and the dropout, not between conv and activation.
            layers += [
                nn.Conv2d(fan_in, fan_out, 3, 2, 1),
                nn.LeakyReLU(0.2, inplace=True),
                nn.Dropout2d(0.25),
            ]
            if bn:
                layers.append(nn.BatchNorm2d(fan_out, eps=0.8))
            fan_in = fan_out
        self.conv_blocks = nn.Sequential(*layers)
        features = 128 * (IMAGE[1] // 2**4) ** 2
        self.adv_layer = nn.Sequential(nn.Linear(features, 1), nn.Sigmoid())
        # The original's nn.Softmax() has no dim; on a [batch, classes] input torch picks dim 1.
        self.aux_layer = nn.Sequential(nn.Linear(features, CLASSES), nn.Softmax(dim=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.conv_blocks(x).flatten(1)
        return self.adv_layer(h), self.aux_layer(h)


def test_twin_matches_the_published_counts() -> None:
    assert param_count(Generator()) == G_PARAMS
    assert param_count(Discriminator()) == D_PARAMS


def test_spec_checks_with_the_published_counts() -> None:
    assert_checks_with_counts(SPEC, G_PARAMS, D_PARAMS)


@torch.no_grad()
def test_built_networks_equal_the_twin() -> None:
    torch.manual_seed(0)
    g_twin, d_twin = Generator(), Discriminator()
    gan = built_as_twins(SPEC, g_twin, d_twin, G_PARAMS, D_PARAMS)

    gen = torch.Generator().manual_seed(1)
    z = torch.randn(2, LATENT, generator=gen)
    y = torch.tensor([3, 7])
    img = g_twin(z, y)
    assert img.shape == (2, *IMAGE)
    assert torch.allclose(gan.generator(z, y), img, atol=1e-5)

    x = torch.randn(2, *IMAGE, generator=gen)
    validity, classes = d_twin(x)
    built_validity, built_classes = gan.discriminator(x)
    assert validity.shape == (2, 1) and classes.shape == (2, CLASSES)
    assert torch.allclose(built_validity, validity, atol=1e-5)
    assert torch.allclose(built_classes, classes, atol=1e-5)


@torch.no_grad()
def test_init_follows_weights_init_normal() -> None:
    """The original re-initialises only Conv* weights N(0, 0.02) and BatchNorm2d weights N(1, 0.02), biases 0."""
    torch.manual_seed(0)
    gan = archspec.build(SPEC)
    for net in (gan.generator, gan.discriminator):
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                assert abs(m.weight.std().item() - 0.02) < 0.006
            elif isinstance(m, nn.BatchNorm2d):
                assert abs(m.weight.mean().item() - 1.0) < 0.02 and 0.005 < m.weight.std().item() < 0.04
                assert torch.all(m.bias == 0)
            elif isinstance(m, nn.Linear):
                # left at torch's default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)): std 1/sqrt(3 fan_in)
                expected = (3 * m.in_features) ** -0.5
                assert abs(m.weight.std().item() / expected - 1) < 0.2
