"""The GAN objectives of ``train.loss``: what the discriminator and the generator each minimise.

Each loss splits the discriminator's objective into a term on real scores and one on fake scores. Losses whose
terms are independent are trained like the seed: one optimiser step on the real batch, then one on the fake
batch (``split_d``). WGAN-GP's gradient penalty needs real and fake together, so its critic takes one step on
both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class GanLoss:
    """One of the losses ``train.loss`` names; ``gp_weight`` is used by ``wgan_gp`` only."""

    name: str
    gp_weight: float = 10.0

    @property
    def split_d(self) -> bool:
        """Whether the discriminator takes separate steps on real and fake batches (the seed's loop)."""
        return self.name != "wgan_gp"

    @property
    def penalised(self) -> bool:
        """Whether the discriminator's step adds a gradient penalty on interpolates."""
        return self.name == "wgan_gp"

    def d_real(self, scores: torch.Tensor) -> torch.Tensor:
        """The discriminator's loss on its scores for real images (the target is "real")."""
        if self.name == "bce":
            return _bce(scores, torch.ones_like(scores))
        if self.name == "bce_logits":
            return F.binary_cross_entropy_with_logits(scores, torch.ones_like(scores))
        if self.name == "lsgan":
            return F.mse_loss(scores, torch.ones_like(scores))
        if self.name == "hinge":
            return F.relu(1.0 - scores).mean()
        return -scores.mean()

    def d_fake(self, scores: torch.Tensor) -> torch.Tensor:
        """The discriminator's loss on its scores for generated images (the target is "fake")."""
        if self.name == "bce":
            return _bce(scores, torch.zeros_like(scores))
        if self.name == "bce_logits":
            return F.binary_cross_entropy_with_logits(scores, torch.zeros_like(scores))
        if self.name == "lsgan":
            return F.mse_loss(scores, torch.zeros_like(scores))
        if self.name == "hinge":
            return F.relu(1.0 + scores).mean()
        return scores.mean()

    def g(self, scores: torch.Tensor) -> torch.Tensor:
        """The generator's loss on the discriminator's scores for its images (it wants them called real)."""
        if self.name in ("bce", "bce_logits", "lsgan"):
            return self.d_real(scores)
        return -scores.mean()


LOSS_NAMES = ("bce", "bce_logits", "lsgan", "hinge", "wgan_gp")


def make_loss(name: str, gp_weight: float = 10.0) -> GanLoss:
    """The loss called ``name`` (one of LOSS_NAMES; the spec has already been validated against them)."""
    if name not in LOSS_NAMES:
        raise ValueError(f"unknown loss {name!r}; expected one of {', '.join(LOSS_NAMES)}")
    return GanLoss(name, gp_weight)


def _bce(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """F.binary_cross_entropy, except that NaN scores do not end the process.

    BCE refuses a NaN input, and the run must live to stop cleanly on it (looking for NaN on the host would cost
    a sync per step). On CUDA the refusal is a device-side assert that kills the process, so NaN scores count as
    0.5 there; the mean scores the step logs are taken from the raw scores and stay NaN, and the run's checks stop
    on them at the next log. On the CPU the refusal is an immediate error, turned into a NaN loss: no extra work
    on the hot path of small CPU models. Finite scores go through BCE bit for bit as nn.BCELoss.
    """
    if scores.is_cuda:
        return F.binary_cross_entropy(torch.nan_to_num(scores, nan=0.5), target)
    try:
        return F.binary_cross_entropy(scores, target)
    except RuntimeError:
        if not scores.isnan().any():
            raise
        return (scores * float("nan")).mean()


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP's penalty: mean over the batch of (‖∇ critic(x̂)‖₂ − 1)², x̂ a random mix of real and fake.

    The mixing weights come from ``generator`` so that a resumed run draws the same ones.
    """
    alpha = torch.rand(
        (real.shape[0],) + (1,) * (real.dim() - 1), generator=generator, device=real.device, dtype=real.dtype
    )
    mixed = (alpha * real + (1.0 - alpha) * fake.detach()).requires_grad_(True)
    scores: torch.Tensor = critic(mixed)
    (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    norm = grad.flatten(1).square().sum(dim=1).sqrt()
    return (norm - 1.0).square().mean()
