"""Metrics on Inception features: FID, KID, precision/recall and the Inception Score.

``InceptionFeatures(net, device, batch_size)`` turns uint8 images (N, C, H, W) into ``Features`` (pool3 and
logits) in batches on a device; the functions below take those arrays and return numbers:

* ``fid(a, b)``: Fréchet distance between Gaussians fitted to two feature sets (Heusel et al. 2017);
  ``fid_stats`` fits one, ``frechet_distance`` compares two fits.
* ``kid(real, fake)``: Bińkowski et al.'s unbiased MMD² estimate with the cubic polynomial kernel
  k(x, y) = (x·y / d + 1)³, averaged over ``subsets`` random subsets of ``subset_size`` (100 of 1000, as
  torch-fidelity), with its standard deviation.
* ``precision_recall(real, fake, k=3)``: Kynkäänniemi et al. 2019: the share of fakes inside some real's
  k-nearest-neighbour ball, and of reals inside some fake's.
* ``inception_score(logits)``: exp(E KL(p(y|x) || p(y))) over 10 splits, mean and standard deviation.

FID and IS are float64 (numpy, torch on the CPU); KID's kernels (float64) and precision/recall's pairwise
distances (float32, in blocks) run in torch on a given device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from runner.metrics.inception import FidInceptionV3

Array = npt.NDArray[np.float64]
Progress = Callable[[int, int], None]

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
PR_NEIGHBOURS = 3
IS_SPLITS = 10
_DISTANCE_ROWS = 1024  # rows of a pairwise distance block: 1024 × 10,000 float32 is 40 MB


@dataclass(frozen=True)
class Features:
    """Inception outputs of a set of images: pool3 (N, 2048) and the Inception Score's logits (N, 1008)."""

    pool: npt.NDArray[np.float32]
    logits: npt.NDArray[np.float32]


class InceptionFeatures:
    """The FID Inception network run over uint8 images in batches of ``batch_size`` on ``device``."""

    def __init__(self, net: FidInceptionV3, device: torch.device, batch_size: int = 64) -> None:
        self.net = net.to(device).eval()
        self.device = device
        self.batch_size = batch_size

    def __call__(self, images: torch.Tensor, progress: Progress | None = None) -> Features:
        """Features of uint8 images (N, C, H, W), C 1 or 3; ``progress(done, total)`` after each batch."""
        pools, logits = [], []
        with torch.no_grad():
            for start in range(0, len(images), self.batch_size):
                pool, logit = self.net(images[start : start + self.batch_size].to(self.device))
                pools.append(pool.float().cpu())
                logits.append(logit.float().cpu())
                if progress is not None:
                    progress(min(start + self.batch_size, len(images)), len(images))
        if not pools:
            return Features(np.zeros((0, 2048), np.float32), np.zeros((0, 1008), np.float32))
        return Features(torch.cat(pools).numpy(), torch.cat(logits).numpy())


@dataclass(frozen=True)
class FidStats:
    """A Gaussian fitted to features: mean and covariance (unbiased, as numpy.cov), float64."""

    mu: Array
    sigma: Array


def fid_stats(features: npt.NDArray[np.floating]) -> FidStats:
    """Mean and covariance of (N, D) features, N at least 2."""
    x = np.asarray(features, dtype=np.float64)
    return FidStats(x.mean(axis=0), np.cov(x, rowvar=False))


def frechet_distance(a: FidStats, b: FidStats) -> float:
    """‖μa − μb‖² + tr(Σa + Σb − 2 (Σa Σb)^½).

    tr((Σa Σb)^½) is the sum of the square roots of the eigenvalues of Σa^½ Σb Σa^½, which has the same
    eigenvalues as Σa Σb but is symmetric, so ``eigvalsh`` applies and rounding cannot make them complex; the
    tiny negative ones rounding leaves are clipped to 0 (pytorch-fid's sqrtm and torch-fidelity's eigvals drop
    the same imaginary parts)."""
    values, vectors = np.linalg.eigh(a.sigma)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    middle = root_a @ b.sigma @ root_a
    trace_root = float(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum())
    diff = a.mu - b.mu
    return float(diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2 * trace_root)


def fid(real: npt.NDArray[np.floating], fake: npt.NDArray[np.floating]) -> float:
    """FID between two feature sets (N, D).

    With fewer images than dimensions (a quick check on a few hundred images) the covariances are low-rank, and
    tr((Σa Σb)^½) is computed in sample space instead: with Σa = AᵀA and Σb = BᵀB (A, B the centred features over
    √(N − 1)), the non-zero eigenvalues of Σa Σb are the squared singular values of A Bᵀ, so the trace is the sum
    of its singular values: an N × N problem in place of a D × D one, and exact rather than rounded near zero."""
    a, b = np.asarray(real, dtype=np.float64), np.asarray(fake, dtype=np.float64)
    if min(len(a), len(b)) >= a.shape[1]:
        return frechet_distance(fid_stats(a), fid_stats(b))
    centred_a = (a - a.mean(axis=0)) / np.sqrt(len(a) - 1)
    centred_b = (b - b.mean(axis=0)) / np.sqrt(len(b) - 1)
    trace_root = float(np.linalg.svd(centred_a @ centred_b.T, compute_uv=False).sum())
    diff = a.mean(axis=0) - b.mean(axis=0)
    traces = float((centred_a**2).sum() + (centred_b**2).sum())
    return float(diff @ diff + traces - 2 * trace_root)


def kid(
    real: npt.NDArray[np.floating],
    fake: npt.NDArray[np.floating],
    subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
    seed: int = 0,
    device: torch.device | None = None,
) -> tuple[float, float]:
    """KID: mean and standard deviation of the unbiased MMD² over ``subsets`` subsets of ``subset_size`` (fewer
    when a set is smaller), each drawn without replacement, the fakes' first (torch-fidelity's order, so the same
    seed draws the same subsets). The kernels are float64 matrices on ``device``."""
    size = min(subset_size, len(real), len(fake))
    rng = np.random.RandomState(seed)
    x_all = torch.as_tensor(np.asarray(fake), dtype=torch.float64, device=device)
    y_all = torch.as_tensor(np.asarray(real), dtype=torch.float64, device=device)
    values = np.empty(subsets)
    for i in range(subsets):
        x = x_all[torch.from_numpy(rng.choice(len(x_all), size, replace=False)).to(x_all.device)]
        y = y_all[torch.from_numpy(rng.choice(len(y_all), size, replace=False)).to(y_all.device)]
        values[i] = mmd2_unbiased(x, y)
    return float(values.mean()), float(values.std())


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """Bińkowski et al.'s unbiased MMD² of two equal-sized samples (m, d) under the cubic polynomial kernel
    (x·y / d + 1)³: the within-set means leave out the diagonal (m(m−1) pairs), the cross term keeps all m²."""
    m, d = x.shape

    def kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a @ b.T / d + 1) ** 3

    k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
    within = (k_xx.sum() - k_xx.trace() + k_yy.sum() - k_yy.trace()) / (m * (m - 1))
    return float(within - 2 * k_xy.sum() / (m * m))


def precision_recall(
    real: npt.NDArray[np.floating],
    fake: npt.NDArray[np.floating],
    k: int = PR_NEIGHBOURS,
    device: torch.device | None = None,
) -> tuple[float, float]:
    """(precision, recall): the share of fakes within the k-th-nearest-neighbour radius of some real (radii from
    the reals among themselves), and of reals within that of some fake. Each set needs more than k members."""
    r = torch.as_tensor(np.asarray(real, dtype=np.float32), device=device)
    f = torch.as_tensor(np.asarray(fake, dtype=np.float32), device=device)
    radii_r, radii_f = _radii(r, k), _radii(f, k)
    return _covered(f, r, radii_r), _covered(r, f, radii_f)


def inception_score(logits: npt.NDArray[np.floating], splits: int = IS_SPLITS) -> tuple[float, float]:
    """Inception Score of logits (N, classes): exp of the mean KL divergence between p(y|x) and the split's
    marginal p(y), for each of ``splits`` consecutive splits; mean and standard deviation over splits."""
    x = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    n = len(x)
    scores = []
    for i in range(splits):
        part = x[i * n // splits : (i + 1) * n // splits]
        log_p = part.log_softmax(dim=1)
        log_marginal = log_p.exp().mean(dim=0, keepdim=True).log()
        kl = (log_p.exp() * (log_p - log_marginal)).sum(dim=1).mean()
        scores.append(float(kl.exp()))
    return float(np.mean(scores)), float(np.std(scores))


def _radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row of ``x`` to its k-th nearest other row (the (k+1)-th, counting itself at 0)."""
    parts = [torch.cdist(x[i : i + _DISTANCE_ROWS], x).kthvalue(k + 1, dim=1).values for i in _blocks(x)]
    return torch.cat(parts)


def _covered(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> float:
    """The share of ``points`` within ``radii`` of at least one of ``centres``."""
    inside = [
        (torch.cdist(points[i : i + _DISTANCE_ROWS], centres) <= radii).any(dim=1) for i in _blocks(points)
    ]
    return float(torch.cat(inside).float().mean())


def _blocks(x: torch.Tensor) -> range:
    return range(0, len(x), _DISTANCE_ROWS)
