"""NDB/K, the number of statistically different bins (Richardson & Weiss 2018, "On GANs and GMMs"): a mode-collapse
measure that needs no downloaded weights.

The real images are split into ``k`` bins by k-means on their pixels (scaled to [0, 1] and flattened; k-means++
seeding, then Lloyd iterations until no image changes bin). Generated images fall into the bin of the nearest
centre. For each bin a two-proportion z-test (pooled, two-sided, alpha 0.05) asks whether the share of generated
images in it differs from the share of real ones; NDB is the number of bins where it does, NDB/K that number
over ``k``. A generator that covers the data as the data do scores near alpha (about 0.05, from chance alone);
one that collapsed onto a few modes leaves most bins empty, and they all differ.

``NdbBins.shares`` gives the per-bin shares too, for statistics of its own (the collapse alarm counts how many
bins the samples really fill). Everything random comes from a generator seeded by ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import torch
from torch import Tensor

__all__ = ["NDB", "NdbBins", "bins_for"]

ALPHA = 0.05
MAX_ITERATIONS = 100
MAX_BINS = 100  # the paper's K
IMAGES_PER_BIN = 20  # fewer real images per bin and a bin's share means little


@dataclass(frozen=True)
class NDB:
    """``different`` of ``bins`` bins hold a share of generated images that differs from the data's."""

    bins: int
    different: int
    score: float  # different / bins: NDB/K


def bins_for(count: int) -> int:
    """k for ``count`` real images: one bin per 20 images, at least 2 and at most the paper's 100 (1,000: 50)."""
    return max(2, min(MAX_BINS, count // IMAGES_PER_BIN))


class NdbBins:
    """k-means bins of a set of real images, and their share of those images."""

    def __init__(self, centres: Tensor, real_shares: Tensor, real_count: int) -> None:
        self.centres = centres
        self.real_shares = real_shares
        self.real_count = real_count

    @classmethod
    def fit(cls, real: Tensor, k: int, seed: int = 0) -> NdbBins:
        """Bins of ``real`` uint8 images (N, C, H, W) by k-means with ``k`` centres, on ``real``'s device."""
        if real.dim() != 4 or not 1 <= k <= real.shape[0]:
            raise ValueError(f"NDB needs at least k={k} images (N, C, H, W); got shape {tuple(real.shape)}")
        points = _pixels(real)
        centres = _kmeans(points, k, torch.Generator().manual_seed(seed))
        shares = _shares(_nearest(points, centres), k)
        return cls(centres, shares, real.shape[0])

    @property
    def k(self) -> int:
        return self.centres.shape[0]

    def shares(self, images: Tensor) -> Tensor:
        """The share of ``images`` in each bin (k values summing to 1), on the CPU."""
        points = _pixels(images.to(self.centres.device))
        if points.shape[1] != self.centres.shape[1]:
            raise ValueError(
                f"NDB bins were fitted on images of {self.centres.shape[1]} values; got {tuple(images.shape)}"
            )
        return _shares(_nearest(points, self.centres), self.k)

    def compare(self, fake: Tensor) -> NDB:
        """How many bins hold a significantly different share of ``fake`` than of the real images."""
        fake_shares = self.shares(fake)
        n_real, n_fake = self.real_count, fake.shape[0]
        pooled = (self.real_shares * n_real + fake_shares * n_fake) / (n_real + n_fake)
        error = torch.sqrt(pooled * (1 - pooled) * (1 / n_real + 1 / n_fake))
        z = (self.real_shares - fake_shares).abs() / error.clamp_min(1e-12)
        critical = NormalDist().inv_cdf(1 - ALPHA / 2)  # 1.96
        different = int(((z > critical) & (error > 0)).sum())
        return NDB(self.k, different, different / self.k)


def _pixels(images: Tensor) -> Tensor:
    return images.flatten(1).to(torch.float32) / 255.0


def _nearest(points: Tensor, centres: Tensor) -> Tensor:
    return torch.cdist(points, centres).argmin(dim=1)


def _shares(assignment: Tensor, k: int) -> Tensor:
    counts = torch.bincount(assignment, minlength=k).to(torch.float64).cpu()
    return counts / counts.sum()


def _kmeans(points: Tensor, k: int, rng: torch.Generator) -> Tensor:
    """Lloyd's k-means from k-means++ seeds; an emptied centre stays where it was."""
    centres = _kmeans_plus_plus(points, k, rng)
    assignment = _nearest(points, centres)
    for _ in range(MAX_ITERATIONS):
        sums = torch.zeros_like(centres).index_add_(0, assignment, points)
        counts = torch.bincount(assignment, minlength=k)
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled, None].to(points.dtype)
        moved = _nearest(points, centres)
        if torch.equal(moved, assignment):
            break
        assignment = moved
    return centres


def _kmeans_plus_plus(points: Tensor, k: int, rng: torch.Generator) -> Tensor:
    """Arthur & Vassilvitskii's seeding: each next centre drawn with probability ∝ squared distance."""
    n = points.shape[0]
    first = int(torch.randint(0, n, (1,), generator=rng))
    chosen = [first]
    nearest = ((points - points[first]) ** 2).sum(dim=1)
    for _ in range(1, k):
        weights = nearest.cpu().to(torch.float64)
        # All points on chosen centres (duplicates): any point will do.
        index = (
            int(torch.multinomial(weights, 1, generator=rng))
            if weights.sum() > 0
            else int(torch.randint(0, n, (1,), generator=rng))
        )
        chosen.append(index)
        nearest = torch.minimum(nearest, ((points - points[index]) ** 2).sum(dim=1))
    return points[chosen].clone()
