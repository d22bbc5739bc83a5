"""Sliced Wasserstein distance on Laplacian-pyramid patches, as ProGAN (Karras et al. 2018, appendix D) measures it.

Needs no downloaded weights, so every run can be measured on any machine. How it is computed:

- Images (uint8, any device) become float pixels 0..255 and a Laplacian pyramid: each level is the image minus
  its blurred-down-and-up copy (5x5 binomial filter, reflected borders, as ProGAN's ``mirror`` convolution),
  from full resolution down to 16x16, whose level is the blurred image itself. A 32x32 image has two levels
  (32 and 16); an image smaller than 16x16 has one, itself.
- From each level 128 patches of 7x7 pixels are cut per image at random places (patches as wide as the level
  where it is narrower than 7). Each set's patches are normalised per channel to mean 0 and standard deviation
  1 over all its patches, so the distance compares local structure, not overall brightness.
- The distance between the two patch sets is the sliced Wasserstein distance: project both on 512 random unit
  directions (ProGAN's 4 repeats of 128), sort each projection and average the absolute differences.
- Values are multiplied by 1e3, as ProGAN reports them. Lower is better; a set against itself gives about 0
  (the patch places differ, so not exactly).

Everything random comes from a generator seeded by ``seed``, never from torch's global one: the same sets and
seed give the same numbers, and measuring does not disturb a training run's random streams.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["SWD", "sliced_wasserstein"]

PATCH = 7
PATCHES_PER_IMAGE = 128
COARSEST = 16
DIRECTIONS = 512
SCALE = 1e3


@dataclass(frozen=True)
class SWD:
    """SWD ×1e3 at each pyramid level, finest first (32, 16 for a 32x32 image), and their mean."""

    per_level: tuple[float, ...]
    mean: float


def sliced_wasserstein(real: Tensor, fake: Tensor, *, seed: int = 0) -> SWD:
    """SWD between two equally large sets of uint8 images (N, C, H, W), computed on ``real``'s device."""
    if real.shape != fake.shape:
        raise ValueError(
            f"SWD compares sets of the same shape; got {tuple(real.shape)} and {tuple(fake.shape)}"
        )
    if real.dim() != 4 or real.shape[0] == 0:
        raise ValueError(f"SWD wants a batch of images (N, C, H, W); got shape {tuple(real.shape)}")
    rng = torch.Generator().manual_seed(seed)
    real_levels = laplacian_pyramid(real.to(torch.float32))
    fake_levels = laplacian_pyramid(fake.to(real.device, torch.float32))
    distances = []
    for real_level, fake_level in zip(real_levels, fake_levels, strict=True):
        a = _normalised(_patches(real_level, rng))
        b = _normalised(_patches(fake_level, rng))
        distances.append(_sliced(a, b, rng) * SCALE)
    return SWD(tuple(distances), sum(distances) / len(distances))


def laplacian_pyramid(images: Tensor) -> list[Tensor]:
    """The Laplacian pyramid of float images, finest level first, down to 16x16 (one level if smaller)."""
    levels = [images]
    while min(levels[-1].shape[-2:]) >= 2 * COARSEST:
        down = _down(levels[-1])
        levels[-1] = levels[-1] - _up(down, levels[-1].shape[-2:])
        levels.append(down)
    return levels


def _binomial(channels: int, device: torch.device) -> Tensor:
    row = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=device)
    kernel = torch.outer(row, row) / 256.0
    return kernel.expand(channels, 1, 5, 5).contiguous()


def _blur(images: Tensor) -> Tensor:
    channels = images.shape[1]
    padded = F.pad(images, (2, 2, 2, 2), mode="reflect")
    return F.conv2d(padded, _binomial(channels, images.device), groups=channels)


def _down(images: Tensor) -> Tensor:
    return _blur(images)[..., ::2, ::2]


def _up(images: Tensor, size: torch.Size) -> Tensor:
    # Zeros between the pixels, then the blur ×4: the filter's weights sum to 1/4 over each parity class.
    spread = images.new_zeros(*images.shape[:2], size[0], size[1])
    spread[..., ::2, ::2] = images
    return _blur(spread) * 4.0


def _patches(level: Tensor, rng: torch.Generator) -> Tensor:
    """PATCHES_PER_IMAGE random square patches of every image: (N × 128, C, p, p)."""
    n, c, h, w = level.shape
    p = min(PATCH, h, w)
    ys = torch.randint(0, h - p + 1, (n, PATCHES_PER_IMAGE), generator=rng).to(level.device)
    xs = torch.randint(0, w - p + 1, (n, PATCHES_PER_IMAGE), generator=rng).to(level.device)
    offsets = torch.arange(p, device=level.device)
    rows = (ys[..., None] + offsets)[..., :, None].expand(n, PATCHES_PER_IMAGE, p, p)
    cols = (xs[..., None] + offsets)[..., None, :].expand(n, PATCHES_PER_IMAGE, p, p)
    image = torch.arange(n, device=level.device)[:, None, None, None].expand_as(rows)
    # level[image, :, rows, cols] puts the channel axis last: (N, 128, p, p, C).
    patches = level.permute(0, 2, 3, 1)[image, rows, cols]
    return patches.permute(0, 1, 4, 2, 3).reshape(n * PATCHES_PER_IMAGE, c, p, p)


def _normalised(patches: Tensor) -> Tensor:
    """Per-channel mean 0 and standard deviation 1 over the whole set, flattened to (patches, C·p·p)."""
    mean = patches.mean(dim=(0, 2, 3), keepdim=True)
    std = patches.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-8)  # a constant channel stays 0, not NaN
    return ((patches - mean) / std).flatten(1)


def _sliced(a: Tensor, b: Tensor, rng: torch.Generator) -> float:
    directions = torch.randn(a.shape[1], DIRECTIONS, generator=rng).to(a.device)
    directions = directions / directions.norm(dim=0, keepdim=True)
    projected_a, projected_b = _sorted_rows((a @ directions).T), _sorted_rows((b @ directions).T)
    return float((projected_a - projected_b).abs().mean())


def _sorted_rows(values: Tensor) -> Tensor:
    """Each row sorted. On the CPU through NumPy, whose vectorised sort measured 15x faster than torch.sort
    here (512 rows of 25,600: 0.14 s against 2.0 s), which made SWD of 1,000 images take half a minute."""
    if values.device.type == "cpu":
        return torch.from_numpy(np.sort(values.contiguous().numpy(), axis=1))
    return torch.sort(values, dim=1).values
