"""specs/zoo/pg_pix2pix.yaml against a hand-written twin of PyTorch-GAN's pix2pix (U-Net G, PatchGAN D).

The twin follows eriklindernoren/PyTorch-GAN implementations/pix2pix/models.py with pix2pix.py's defaults
(256x256, 3 channels), written anew; its modules are declared in the spec's layer order so that
``copy_weights`` pairs the tensors by position.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from tests.zoo.twin import assert_checks_with_counts, built_as_twins, param_count

SPEC = Path(__file__).resolve().parents[2] / "specs" / "zoo" / "pg_pix2pix.yaml"
G_PARAMS = 54_404_099
D_PARAMS = 2_767_808


class Down(nn.Module):
    """Stride-2 4x4 conv without bias, instance norm (optional), LeakyReLU(0.2) (not in place), dropout (optional)."""

    def __init__(self, cin: int, cout: int, norm: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, stride=2, padding=1, bias=False)]
        if norm:
            layers.append(nn.InstanceNorm2d(cout))
        layers.append(nn.LeakyReLU(0.2))
        if dropout:
            layers.append(nn.Dropout(dropout))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Up(nn.Module):
    """Stride-2 4x4 transposed conv without bias, instance norm, in-place ReLU, dropout; then cat with the skip."""

    def __init__(self, cin: int, cout: int, dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False),
            nn.InstanceNorm2d(cout),
            nn.ReLU(inplace=True),
        ]
        if dropout:
            layers.append(nn.Dropout(dropout))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.body(x), skip), 1)


class UNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.downs = nn.ModuleList(
            [
                Down(3, 64, norm=False),
                Down(64, 128),
                Down(128, 256),
                Down(256, 512, dropout=0.5),
                Down(512, 512, dropout=0.5),
                Down(512, 512, dropout=0.5),
                Down(512, 512, dropout=0.5),
                Down(512, 512, norm=False, dropout=0.5),
            ]
        )
        self.ups = nn.ModuleList(
            [
                Up(512, 512, dropout=0.5),
                Up(1024, 512, dropout=0.5),
                Up(1024, 512, dropout=0.5),
                Up(1024, 512, dropout=0.5),
                Up(1024, 256),
                Up(512, 128),
                Up(256, 64),
            ]
        )
        # Nearest upsampling, then a 4x4 conv made size-preserving by one extra zero row/column at top/left.
        self.final = nn.Sequential(
            nn.Upsample(scale_factor=2),
            nn.ZeroPad2d((1, 0, 1, 0)),
            nn.Conv2d(128, 3, 4, padding=1),
            nn.Tanh(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
        skips.pop()  # the innermost output is the bottleneck, not a skip
        for up in self.ups:
            x = up(x, skips.pop())
        return self.final(x)


class PatchD(nn.Module):
    """Reads cat(img_A, img_B) on channels; 16x16 patch scores for 256x256 inputs."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 6
        for cout, norm in ((64, False), (128, True), (256, True), (512, True)):
            layers.append(nn.Conv2d(cin, cout, 4, stride=2, padding=1))
            if norm:
                layers.append(nn.InstanceNorm2d(cout))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            cin = cout
        layers += [nn.ZeroPad2d((1, 0, 1, 0)), nn.Conv2d(512, 1, 4, padding=1, bias=False)]
        self.model = nn.Sequential(*layers)

    def forward(self, img_a: torch.Tensor, img_b: torch.Tensor) -> torch.Tensor:
        return self.model(torch.cat((img_a, img_b), 1))


def test_twin_matches_the_published_counts() -> None:
    with torch.device("meta"):  # counting needs no values
        assert param_count(UNet()) == G_PARAMS
        assert param_count(PatchD()) == D_PARAMS


def test_spec_checks_with_the_published_counts() -> None:
    assert_checks_with_counts(SPEC, G_PARAMS, D_PARAMS)


@torch.no_grad()
def test_built_networks_compute_what_the_twin_computes() -> None:
    torch.manual_seed(0)
    g_twin, d_twin = UNet(), PatchD()
    gan = built_as_twins(
        SPEC, g_twin, d_twin, G_PARAMS, D_PARAMS
    )  # instance norms: no statistics to randomise

    gen = torch.Generator().manual_seed(1)
    real_a = torch.randn(1, 3, 256, 256, generator=gen)
    real_b = torch.randn(1, 3, 256, 256, generator=gen)

    fake_b = g_twin(real_a)
    assert fake_b.shape == (1, 3, 256, 256)
    assert torch.allclose(gan.generator(real_a), fake_b, atol=1e-5)

    score = d_twin(real_b, real_a)
    assert score.shape == (1, 1, 16, 16)
    assert torch.allclose(gan.discriminator(real_b, real_a), score, atol=1e-5)
