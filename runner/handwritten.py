"""Hand-written PyTorch training loops: the yardsticks ``archspec bench`` holds the trainer against.

Plain PyTorch on the networks a spec builds, as someone would write it without archspec:

* ``SeedLoop`` is the seed's loop as the book writes it: one image per step, ``nn.BCELoss``, an optimiser step
  for D on the real image (target 1), one for D on G(z).detach() (target 0), one for G through D (target 1), and
  ``.item()`` of each loss as it goes, which makes the host wait for the GPU three times a step. As in the book,
  G's forward pass for the fake image builds a graph that ``detach`` then drops, and G's update also computes
  gradients for D's weights, which D's next ``zero_grad`` throws away.
* ``BatchedLoop`` does the same three updates on a batch, written well: no read-back per step, G under
  ``no_grad`` for the fake batch, D's weights frozen during the generator's update. That is the work
  ``runner.step.GanStep`` does, so timing the two measures what archspec's step costs on top.

Both use ``nn.BCELoss`` when the discriminator ends in a sigmoid and ``nn.BCEWithLogitsLoss`` otherwise.

``seed_generator`` and ``seed_discriminator`` are the seed's own networks as the book writes them (its View
hard-codes batch size 1): the yardstick the built seed spec is held to in tests/test_seed.py and
benchmarks/bench_forward.py.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from archspec.contract import network_ends_in
from archspec.modules import GAN
from runner.data import to_float


class _HandLoop:
    """What both loops set up the same way: the networks, a BCE loss and one Adam optimiser per network."""

    def __init__(
        self,
        gan: GAN,
        device: torch.device,
        value_range: tuple[float, float],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.999),
    ) -> None:
        self.gan, self.device, self.value_range = gan, device, value_range
        self.loss = _bce_for(gan)
        self.opt_g = torch.optim.Adam(gan.generator.parameters(), lr=lr, betas=betas)
        self.opt_d = torch.optim.Adam(gan.discriminator.parameters(), lr=lr, betas=betas)
        self._start()

    def _start(self) -> None:
        """Set up what the loop keeps of its losses."""


class SeedLoop(_HandLoop):
    """The seed's one-image loop (call it with a uint8 batch of one image)."""

    def _start(self) -> None:
        self.progress: list[float] = []

    def __call__(self, real_uint8: torch.Tensor) -> None:
        """One image: D on it, D on a generated one, G through D."""
        image = to_float(real_uint8.to(self.device), self.value_range)
        self._train_d(image, 1.0)
        self._train_d(self.gan.generator(self._z()).detach(), 0.0)
        self._train_g()

    def sync(self) -> None:
        """Nothing is left on the device: every loss was read back as it was computed."""

    def _train_d(self, inputs: torch.Tensor, target: float) -> None:
        outputs = self.gan.discriminator(inputs)
        loss = self.loss(outputs, torch.full_like(outputs, target))
        self.opt_d.zero_grad()
        loss.backward()
        self.opt_d.step()
        self.progress.append(loss.item())

    def _train_g(self) -> None:
        d_output = self.gan.discriminator(self.gan.generator(self._z()))
        loss = self.loss(d_output, torch.ones_like(d_output))
        self.opt_g.zero_grad()
        loss.backward()
        self.opt_g.step()
        self.progress.append(loss.item())

    def _z(self) -> torch.Tensor:
        return self.gan.latent(1, device=self.device)


class BatchedLoop(_HandLoop):
    """The seed's three updates on a batch, written as an experienced PyTorch user would."""

    def _start(self) -> None:
        self.pending: list[torch.Tensor] = []
        self.history: list[list[float]] = []

    def __call__(self, real_uint8: torch.Tensor) -> None:
        """One batch: D on it, D on a generated batch, G through D; the losses stay on the device."""
        g, d = self.gan.generator, self.gan.discriminator
        real = to_float(real_uint8.to(self.device, non_blocking=True), self.value_range)
        n = real.shape[0]

        self.opt_d.zero_grad(set_to_none=True)
        scores_real = d(real)
        loss_real = self.loss(scores_real, torch.ones_like(scores_real))
        loss_real.backward()
        self.opt_d.step()

        with torch.no_grad():
            fake = g(self.gan.latent(n, device=self.device))
        self.opt_d.zero_grad(set_to_none=True)
        scores_fake = d(fake)
        loss_fake = self.loss(scores_fake, torch.zeros_like(scores_fake))
        loss_fake.backward()
        self.opt_d.step()

        d.requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=True)
        scores = d(g(self.gan.latent(n, device=self.device)))
        loss_g = self.loss(scores, torch.ones_like(scores))
        loss_g.backward()
        self.opt_g.step()
        d.requires_grad_(True)

        stats = [(loss_real + loss_fake).detach(), loss_g.detach(), scores_real.detach().mean()]
        self.pending.append(torch.stack([*stats, scores_fake.detach().mean()]))

    def sync(self) -> None:
        """Read the pending losses back (waits for the device), as a loop does at a logging step."""
        if self.pending:
            self.history += torch.stack(self.pending).cpu().tolist()
            self.pending.clear()


def _bce_for(gan: GAN) -> nn.Module:
    """BCELoss on a discriminator that ends in sigmoid (looking through a flatten after it), else with logits."""
    ends_in_sigmoid = network_ends_in(gan.spec, "discriminator") == "sigmoid"
    return nn.BCELoss() if ends_in_sigmoid else nn.BCEWithLogitsLoss()


# --- the seed's own networks, as the book writes them (the yardstick of tests/test_seed.py, bench_forward.py) ---


class SeedView(nn.Module):
    def __init__(self, shape: int | tuple[int, ...]) -> None:
        super().__init__()
        self.shape: tuple[Any, ...] = (shape,)  # the book's ``self.shape = shape,``

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(*self.shape)


def seed_generator() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(100, 3 * 11 * 11),
        nn.LeakyReLU(0.2),
        SeedView((1, 3, 11, 11)),
        nn.ConvTranspose2d(3, 256, kernel_size=8, stride=2),
        nn.BatchNorm2d(256),
        nn.LeakyReLU(0.2),
        nn.ConvTranspose2d(256, 256, kernel_size=8, stride=2),
        nn.BatchNorm2d(256),
        nn.LeakyReLU(0.2),
        nn.ConvTranspose2d(256, 3, kernel_size=8, stride=2, padding=1),
        nn.BatchNorm2d(3),
        nn.Sigmoid(),
    )


def seed_discriminator() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 256, kernel_size=8, stride=2),
        nn.BatchNorm2d(256),
        nn.LeakyReLU(0.2),
        nn.Conv2d(256, 256, kernel_size=8, stride=2),
        nn.BatchNorm2d(256),
        nn.LeakyReLU(0.2),
        nn.Conv2d(256, 3, kernel_size=8, stride=2),
        nn.LeakyReLU(0.2),
        SeedView(3 * 10 * 10),
        nn.Linear(3 * 10 * 10, 1),
        nn.Sigmoid(),
    )
