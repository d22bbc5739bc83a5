"""One GAN training step, shared by ``archspec train`` and ``archspec bench``: the networks, their optimisers
and the updates of one real batch.

A step is ``d_steps`` discriminator updates (for the seed's BCE, one optimiser step on the real batch with target
1 and one on G(z).detach() with target 0), each on its own real batch as the WGAN-GP reference code draws them,
then one generator update through D, each with a fresh latent batch from the step's own generator. The caller
hands a step ``d_steps`` real batches at once, as one tensor of ``d_steps × batch_size`` images. Nothing here reads a value back from the device: a step returns its losses as a
device tensor, and the caller decides when to look.

The fast path is switched by the train section: ``precision: bf16`` runs the forward passes under bf16 autocast
(the loss functions autocast to float32; batch norm keeps float32 weights and running statistics and
accumulates its batch statistics in float32, while its output stays bf16 for the next convolution);
``channels_last`` stores images and weights NHWC; ``fused_adam`` updates all weights in one kernel; ``compile``
runs both networks through ``torch.compile``. Under torchrun the networks are DistributedDataParallel replicas.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from archspec.check import CheckResult
from archspec.modules import GAN, build
from archspec.spec import Train
from runner import distributed
from runner.data import to_float
from runner.device import World
from runner.losses import GanLoss, gradient_penalty, make_loss

# What a step returns, in order: the names of the columns of its stats tensor.
STATS = ("loss_d", "loss_g", "d_real", "d_fake")


class Ema:
    """An exponential moving average of a network's weights (buffers copied as they are), for samples."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """ema ← decay·ema + (1 − decay)·weights."""
        for average, weight in zip(self.module.parameters(), model.parameters(), strict=True):
            average.lerp_(weight, 1.0 - self.decay)
        for copied, buffer in zip(self.module.buffers(), model.buffers(), strict=True):
            copied.copy_(buffer)


def build_gan(result: CheckResult, train: Train, device: torch.device) -> GAN:
    """The checked spec's two networks on ``device``, in the memory format ``train`` asks for."""
    gan = build(result, device)
    if train.channels_last:
        # Module.to takes memory_format at run time; the type stubs leave it out.
        gan.generator.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # see above
        gan.discriminator.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # see above
    return gan


class GanStep:
    """The optimisers, EMA and update rule of a run; ``step(real_uint8)`` trains on one batch."""

    def __init__(
        self,
        gan: GAN,
        train: Train,
        device: torch.device,
        value_range: tuple[float, float],
        latent_rng: torch.Generator,
        world: World | None = None,
    ) -> None:
        world = world or World()
        self.gan = gan
        self.cfg = train
        self.device = device
        self.value_range = value_range
        self.latent_rng = latent_rng
        self.loss: GanLoss = make_loss(train.loss, train.gp_weight)
        distributed.check_sync_batchnorm(train.sync_batchnorm, device, world)
        # What the step calls: DDP replicas under torchrun (the plain modules alone), compiled if asked.
        self.generator = distributed.wrap(gan.generator, device, world, train.sync_batchnorm)
        self.discriminator = distributed.wrap(gan.discriminator, device, world, train.sync_batchnorm)
        self.g_call = _maybe_compile(self.generator, train.compile)
        self.d_call = _maybe_compile(self.discriminator, train.compile)
        self.opt_g = _adam(gan.generator, train.lr_g or train.lr, train.betas, train.fused_adam)
        self.opt_d = _adam(gan.discriminator, train.lr_d or train.lr, train.betas, train.fused_adam)
        self.ema = Ema(gan.generator, train.ema) if train.ema is not None else None
        # Contexts the step enters every time, made once: D frozen for G's update, and float32's no-op autocast.
        self._d_frozen = distributed.Frozen(self.discriminator)
        self._no_autocast = contextlib.nullcontext()

    def __call__(self, real_uint8: torch.Tensor) -> torch.Tensor:
        """Train on ``d_steps`` uint8 batches, stacked into one tensor: the k-th batch is the k-th critic
        update's. Returns (loss_d, loss_g, mean D(x), mean D(G(z))) of the last critic update and the generator
        update as a float32 device tensor, without waiting for the device."""
        if real_uint8.shape[0] % self.cfg.d_steps:
            raise ValueError(
                f"a step takes d_steps={self.cfg.d_steps} equal batches, got {real_uint8.shape[0]} images"
            )
        real = to_float(real_uint8.to(self.device, non_blocking=True), self.value_range)
        if self.cfg.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        batch = real.shape[0] // self.cfg.d_steps
        for real_batch in real.chunk(self.cfg.d_steps):  # equal batches: checked above
            loss_d, d_real, d_fake = self._discriminator_update(real_batch)
        loss_g = self._generator_update(batch)
        if self.ema is not None:
            self.ema.update(self.gan.generator)
        return torch.stack([loss_d, loss_g, d_real, d_fake]).float()

    def _discriminator_update(self, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One discriminator update; returns its loss and the mean scores of real and fake (detached)."""
        if self.loss.split_d:
            # The seed: one optimiser step on the real batch, then one on a generated batch. Each has its own
            # forward and backward pass, which is also what DDP's reducer expects.
            loss_real, scores_real = self._d_optimiser_step(real, self.loss.d_real)
            fake = self._fake(real.shape[0])
            loss_fake, scores_fake = self._d_optimiser_step(fake, self.loss.d_fake)
            return loss_real + loss_fake, scores_real, scores_fake
        fake = self._fake(real.shape[0])
        self.opt_d.zero_grad(set_to_none=True)
        with self._autocast():
            scores_real, scores_fake = self.d_call(real), self.d_call(fake)
            loss = self.loss.d_real(scores_real) + self.loss.d_fake(scores_fake)
        # The penalty differentiates through D; autocast off keeps its second-order graph in fp32. Under DDP the
        # one backward below reduces every gradient once, the penalty's second-order terms included.
        loss = loss + self.loss.gp_weight * gradient_penalty(self.d_call, real, fake, self.latent_rng)
        torch.autograd.backward(loss)
        self.opt_d.step()
        return loss.detach(), _mean32(scores_real), _mean32(scores_fake)

    def _d_optimiser_step(
        self, images: torch.Tensor, loss_of: Callable[[torch.Tensor], torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.opt_d.zero_grad(set_to_none=True)
        with self._autocast():
            scores = self.d_call(images)
            loss = loss_of(scores)
        torch.autograd.backward(loss)
        self.opt_d.step()
        return loss.detach(), _mean32(scores)

    def _fake(self, n: int) -> torch.Tensor:
        """G(z).detach() for a fresh z: no graph is kept, but batch norm updates its statistics as the seed's."""
        z = self.gan.latent(n, generator=self.latent_rng, device=self.device)
        with torch.no_grad(), self._autocast():
            fake: torch.Tensor = self.g_call(z)
        return fake

    def _generator_update(self, n: int) -> torch.Tensor:
        z = self.gan.latent(n, generator=self.latent_rng, device=self.device)
        # D's weights get no gradient from this step; skipping them saves a third of D's backward.
        with self._d_frozen:
            self.opt_g.zero_grad(set_to_none=True)
            with self._autocast():
                loss = self.loss.g(self.d_call(self.g_call(z)))
            torch.autograd.backward(loss)
            self.opt_g.step()
        return loss.detach()

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.cfg.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return self._no_autocast


def _mean32(scores: torch.Tensor) -> torch.Tensor:
    """The mean score as float32 (bf16 scores too), detached: a statistic to log, not to train on."""
    return scores.detach().mean(dtype=torch.float32)


def _adam(net: nn.Module, lr: float, betas: tuple[float, float], fused: bool) -> torch.optim.Adam:
    return torch.optim.Adam(net.parameters(), lr=lr, betas=(betas[0], betas[1]), fused=fused or None)


def _maybe_compile(net: nn.Module, enabled: bool) -> nn.Module:
    if not enabled:
        return net
    compiled: nn.Module = torch.compile(net)  # type: ignore[assignment]  # compile returns the wrapped module
    return compiled
