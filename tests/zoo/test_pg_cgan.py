"""specs/zoo/pg_cgan.yaml equals PyTorch-GAN's conditional GAN (implementations/cgan/cgan.py, default options).

The twin below is written from the original's description, with its submodules declared in the spec's order so
that ``copy_weights`` pairs the tensors by position.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from tests.zoo.twin import (
    assert_checks_with_counts,
    built_as_twins,
    param_count,
)

SPEC = Path(__file__).resolve().parents[2] / "specs" / "zoo" / "pg_cgan.yaml"
LATENT, CLASSES, IMAGE = 100, 10, (1, 32, 32)
G_PARAMS, D_PARAMS = 1_757_412, 1_055_845


class Generator(nn.Module):
    """cat(embed(y), z) → an MLP 110-128-256-512-1024-1024 → tanh → a 1×32×32 image."""

    def __init__(self) -> None:
        super().__init__()
        self.label_emb = nn.Embedding(CLASSES, CLASSES)
        layers: list[nn.Module] = [nn.Linear(LATENT + CLASSES, 128), nn.LeakyReLU(0.2, inplace=True)]
        for fan_in, fan_out in [(128, 256), (256, 512), (512, 1024)]:
            # BatchNorm1d(n, 0.8): the second positional argument is eps, not momentum.
            layers += [
                nn.Linear(fan_in, fan_out),
                nn.BatchNorm1d(fan_out, eps=0.8),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        layers += [nn.Linear(1024, IMAGE[0] * IMAGE[1] * IMAGE[2]), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = torch.cat((self.label_emb(y), z), dim=-1)  # the label embedding comes first
        return self.model(h).view(z.shape[0], *IMAGE)


class Discriminator(nn.Module):
    """cat(flatten(x), embed(y)) → an MLP 1034-512-512-512-1 with dropout 0.4 before two of the LeakyReLUs."""

    def __init__(self) -> None:
        super().__init__()
        self.label_embedding = nn.Embedding(CLASSES, CLASSES)
        self.model = nn.Sequential(
            nn.Linear(IMAGE[0] * IMAGE[1] * IMAGE[2] + CLASSES, 512),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(512, 512),
            nn.Dropout(0.4),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(512, 512),
            nn.Dropout(0.4),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(512, 1),
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = torch.cat((x.flatten(1), self.label_embedding(y)), dim=-1)  # here the image comes first
        return self.model(h)


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
    score = d_twin(x, y)
    assert score.shape == (2, 1)
    assert torch.allclose(gan.discriminator(x, y), score, atol=1e-5)
