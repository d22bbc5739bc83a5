"""Hand-written twins of mimicry's 32x32 ResNet GANs (SNGAN and cGAN-PD), written from the original's description.

kwotsin/mimicry a7fda06: torch_mimicry/nets/sngan/sngan_32.py, nets/cgan_pd/cgan_pd_32.py, modules/resblocks.py,
modules/layers.py. Submodules are declared in the order the specs list their layers, so ``twin.copy_weights`` can
pair state-dict tensors by position. Details that change the function:

- GBlock: BN -> ReLU -> bilinear x2 (align_corners=False) -> 3x3 conv -> BN -> ReLU -> 3x3 conv, plus a shortcut
  bilinear x2 -> 1x1 conv of the block input (the BN is not in place, so the shortcut sees the unchanged input).
- DBlock: the first ReLU is ``nn.ReLU(inplace=True)`` applied to the block input itself, and the residual branch runs
  before the shortcut, so the shortcut reads relu(x), not x. The twin writes that out: both branches start at relu(x).
- DBlock shortcut: 1x1 conv, then 2x2 average pool; DBlockOptimized shortcut: average pool first, then the 1x1 conv.
- Discriminators: spectral norm (torch.nn.utils.spectral_norm, eps 1e-12, one power iteration) on every conv and
  linear, and on cGAN-PD's class embedding; global *sum* pooling after a final ReLU.
- cGAN-PD's conditional batch norm: BatchNorm2d(C, affine=False) (eps 1e-5), one Embedding(classes, 2C) whose first
  C columns are gamma and last C beta: out = gamma * bn(x) + beta.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

NZ = 128
NGF = 256
NDF = 128
BOTTOM = 4


def settle_spectral_norms(net: nn.Module, iterations: int = 50) -> None:
    """Run the power iterations that training would run on every spectral norm's ``weight_u``/``weight_v``.

    At construction they are random, so sigma = u^T W v is far below the top singular value and the scores are
    ~1e17; after these iterations eval-mode scores are of order one, which makes the comparison mean something.
    (Plain matrix products: ``torch.linalg.svd`` takes seconds of CPU here.)
    """
    with torch.no_grad():
        for m in net.modules():
            weight = m._parameters.get("weight_orig")
            if weight is None:
                continue
            w, u, v = weight.flatten(1), m.get_buffer("weight_u"), m.get_buffer("weight_v")
            for _ in range(iterations):
                v = F.normalize(w.t() @ u, dim=0)
                u = F.normalize(w @ v, dim=0)
            m.get_buffer("weight_u").copy_(u)
            m.get_buffer("weight_v").copy_(v)


class ConditionalBN(nn.Module):
    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.channels = channels
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.embed = nn.Embedding(num_classes, 2 * channels)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.embed(y).chunk(2, dim=1)
        return gamma.view(-1, self.channels, 1, 1) * self.bn(x) + beta.view(-1, self.channels, 1, 1)


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class GBlock(nn.Module):
    """Upsampling generator block, ``channels`` in and out; conditional batch norm when ``num_classes`` > 0."""

    def __init__(self, channels: int, num_classes: int = 0) -> None:
        super().__init__()
        self.conditional = num_classes > 0
        self.b1 = ConditionalBN(channels, num_classes) if self.conditional else nn.BatchNorm2d(channels)
        self.c1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.b2 = ConditionalBN(channels, num_classes) if self.conditional else nn.BatchNorm2d(channels)
        self.c2 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.c_sc = nn.Conv2d(channels, channels, 1, 1, 0)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.b1(x, y) if self.conditional else self.b1(x)
        h = self.c1(_up(F.relu(h)))
        h = self.b2(h, y) if self.conditional else self.b2(h)
        h = self.c2(F.relu(h))
        return h + self.c_sc(_up(x))


class DBlockOptimized(nn.Module):
    """The first discriminator block: conv, ReLU, conv, pool; shortcut pool then 1x1 conv (no leading ReLU)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.c1 = spectral_norm(nn.Conv2d(in_channels, out_channels, 3, 1, 1))
        self.c2 = spectral_norm(nn.Conv2d(out_channels, out_channels, 3, 1, 1))
        self.c_sc = spectral_norm(nn.Conv2d(in_channels, out_channels, 1, 1, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.avg_pool2d(self.c2(F.relu(self.c1(x))), 2)
        return h + self.c_sc(F.avg_pool2d(x, 2))


class DBlock(nn.Module):
    """Discriminator block; with ``downsample`` a learnable 1x1 shortcut and 2x2 average pools, else identity."""

    def __init__(self, channels: int, downsample: bool) -> None:
        super().__init__()
        self.downsample = downsample
        self.c1 = spectral_norm(nn.Conv2d(channels, channels, 3, 1, 1))
        self.c2 = spectral_norm(nn.Conv2d(channels, channels, 3, 1, 1))
        self.c_sc = spectral_norm(nn.Conv2d(channels, channels, 1, 1, 0)) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)  # the original's in-place ReLU: the shortcut below sees relu(x)
        h = self.c2(F.relu(self.c1(x)))
        if self.c_sc is None:
            return h + x
        return F.avg_pool2d(h, 2) + F.avg_pool2d(self.c_sc(x), 2)


class Generator(nn.Module):
    """SNGANGenerator32 (num_classes 0) or CGANPDGenerator32 (num_classes > 0)."""

    def __init__(self, num_classes: int = 0) -> None:
        super().__init__()
        self.l1 = nn.Linear(NZ, BOTTOM * BOTTOM * NGF)
        self.blocks = nn.ModuleList(GBlock(NGF, num_classes) for _ in range(3))
        self.b5 = nn.BatchNorm2d(NGF)
        self.c5 = nn.Conv2d(NGF, 3, 3, 1, 1)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.l1(z).view(z.shape[0], NGF, BOTTOM, BOTTOM)
        for block in self.blocks:
            h = block(h, y)
        return torch.tanh(self.c5(F.relu(self.b5(h))))


class Discriminator(nn.Module):
    """SNGANDiscriminator32 (num_classes 0) or CGANPDDiscriminator32 with its projection (num_classes > 0)."""

    def __init__(self, num_classes: int = 0) -> None:
        super().__init__()
        self.block1 = DBlockOptimized(3, NDF)
        self.block2 = DBlock(NDF, downsample=True)
        self.block34 = nn.ModuleList(DBlock(NDF, downsample=False) for _ in range(2))
        self.l5 = spectral_norm(nn.Linear(NDF, 1))
        self.l_y = spectral_norm(nn.Embedding(num_classes, NDF)) if num_classes else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.block2(self.block1(x))
        for block in self.block34:
            h = block(h)
        h = torch.sum(F.relu(h), dim=(2, 3))
        out = self.l5(h)
        if self.l_y is not None:
            assert y is not None
            out = out + torch.sum(self.l_y(y) * h, dim=1, keepdim=True)
        return out
