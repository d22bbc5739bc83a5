"""One GAN training step, shared by ``archspec train`` and ``archspec bench``: the networks, their optimisers
and the updates of one real batch.

A step is ``d_steps`` discriminator updates (for the seed's BCE, one optimiser step on the real batch with target
1 and one on G(z).detach() with target 0), each on its own real batch as the WGAN-GP reference code draws them,
then one generator update through D, each with a fresh latent batch from the step's own generator. The caller
hands a step ``d_steps`` real batches at once, as one tensor of ``d_steps × batch_size`` images. A conditional
run (``archspec.conditioning``) feeds every network the inputs it declares, in their order: real batches bring
their labels and paired inputs, fake batches get labels drawn from the data's class counts (then their latents,
from the same stream); a class head adds ``aux_weight`` × its cross-entropy, a paired run ``l1_weight`` × L1. Nothing here reads a value back from the device: a step returns its losses as a
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
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archspec.check import CheckResult
from archspec.conditioning import UNCONDITIONAL, Conditioning
from archspec.modules import GAN, build
from archspec.spec import Train
from runner import distributed
from runner.data import to_float
from runner.device import World
from runner.losses import GanLoss, gradient_penalty, make_loss

# What a step returns, in order: the names of the columns of its stats tensor (``GanStep.stats`` adds the
# auxiliary columns of a class head or a paired run).
STATS = ("loss_d", "loss_g", "d_real", "d_fake")
CLASS_HEAD_STATS = ("aux_d", "aux_g", "acc_real")
PAIRED_STATS = ("l1",)


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
        conditioning: Conditioning = UNCONDITIONAL,
        label_weights: torch.Tensor | None = None,
    ) -> None:
        world = world or World()
        self.gan = gan
        self.feeds = conditioning
        # Fake images get labels drawn from the data's label distribution (class counts; uniform without data).
        self.label_weights = _label_weights(conditioning, label_weights, device)
        self.stats = (
            STATS
            + (CLASS_HEAD_STATS if conditioning.class_head else ())
            + (PAIRED_STATS if conditioning.condition is not None else ())
        )
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

    def __call__(
        self,
        real_uint8: torch.Tensor,
        labels: torch.Tensor | None = None,
        inputs_uint8: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Train on ``d_steps`` uint8 batches, stacked into one tensor: the k-th batch is the k-th critic
        update's, with its images' ``labels`` and conditioning ``inputs_uint8`` where the spec takes them.

        Returns the columns ``stats`` names as a float32 device tensor, without waiting for the device: the loss
        of the last critic update and of the generator update, the mean scores D gave real and fake images, and
        for a class head its losses and its accuracy on the real images, for a paired run the L1 of G(a) to b.
        """
        if real_uint8.shape[0] % self.cfg.d_steps:
            raise ValueError(
                f"a step takes d_steps={self.cfg.d_steps} equal batches, got {real_uint8.shape[0]} images"
            )
        real = self._images(real_uint8)
        n = real.shape[0] // self.cfg.d_steps
        y_all = (
            labels.to(self.device, non_blocking=True)
            if self.feeds.needs_labels and labels is not None
            else None
        )
        a_all = (
            self._images(inputs_uint8)
            if self.feeds.condition is not None and inputs_uint8 is not None
            else None
        )
        self._check_fed(y_all, a_all)
        for k in range(self.cfg.d_steps):
            part = slice(k * n, (k + 1) * n)
            real_k = _Real(real[part], _part(y_all, part), _part(a_all, part))
            d_stats = self._discriminator_update(real_k)
        g_stats = self._generator_update(real_k)
        if self.ema is not None:
            self.ema.update(self.gan.generator)
        loss_d, d_real, d_fake, *d_extra = d_stats
        loss_g, *g_extra = g_stats
        columns = [loss_d, loss_g, d_real, d_fake]
        if self.feeds.class_head:
            aux_d, acc_real = d_extra
            columns += [aux_d, g_extra[0], acc_real]
        if self.feeds.condition is not None:
            columns.append(g_extra[-1])
        return torch.stack(columns).float()

    def _images(self, batch_uint8: torch.Tensor) -> torch.Tensor:
        images = to_float(batch_uint8.to(self.device, non_blocking=True), self.value_range)
        if self.cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def _check_fed(self, labels: torch.Tensor | None, inputs: torch.Tensor | None) -> None:
        if self.feeds.needs_labels and labels is None:
            raise ValueError("this spec takes class labels: the step needs the batch's labels")
        if self.feeds.condition is not None and inputs is None:
            raise ValueError("this spec takes a conditioning image: the step needs the batch's inputs")

    def _discriminator_update(self, real: _Real) -> list[torch.Tensor]:
        """One discriminator update; returns its loss, the mean scores of real and fake (detached), and for a
        class head its loss and its accuracy on the real images."""
        head = self.feeds.class_head
        if self.loss.split_d:
            # The seed: one optimiser step on the real batch, then one on a generated batch. Each has its own
            # forward and backward pass, which is also what DDP's reducer expects.
            loss_real, scores_real, aux_real, acc = self._d_optimiser_step(
                real, real.labels, self.loss.d_real
            )
            fake = self._fake(real)
            loss_fake, scores_fake, aux_fake, _ = self._d_optimiser_step(fake, fake.labels, self.loss.d_fake)
            stats = [loss_real + loss_fake, scores_real, scores_fake]
            if head:
                assert acc is not None  # a class head measures its accuracy
                stats += [aux_real + aux_fake, acc]
            return stats
        fake = self._fake(real)
        self.opt_d.zero_grad(set_to_none=True)
        with self._autocast():
            scores_real, head_real = self._judge(real, real.labels)
            scores_fake, head_fake = self._judge(fake, fake.labels)
            loss = self.loss.d_real(scores_real) + self.loss.d_fake(scores_fake)
            aux = self._aux(head_real, real.labels) + self._aux(head_fake, fake.labels)
            if head:
                loss = loss + self.cfg.aux_weight * aux
        # The penalty differentiates through D; autocast off keeps its second-order graph in fp32. Under DDP the
        # one backward below reduces every gradient once, the penalty's second-order terms included.
        penalty = gradient_penalty(self._critic(real), real.images, fake.images, self.latent_rng)
        loss = loss + self.loss.gp_weight * penalty
        torch.autograd.backward(loss)
        self.opt_d.step()
        stats = [loss.detach(), _mean32(scores_real), _mean32(scores_fake)]
        return [*stats, aux.detach(), _accuracy(head_real, real.labels)] if head else stats

    def _d_optimiser_step(
        self, batch: _Real, labels: torch.Tensor | None, loss_of: Callable[[torch.Tensor], torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        self.opt_d.zero_grad(set_to_none=True)
        with self._autocast():
            scores, head = self._judge(batch, labels)
            aux = self._aux(head, labels)
            loss = loss_of(scores) + self.cfg.aux_weight * aux if head is not None else loss_of(scores)
        torch.autograd.backward(loss)
        self.opt_d.step()
        accuracy = _accuracy(head, labels) if head is not None else None
        return loss.detach(), _mean32(scores), aux.detach(), accuracy

    def _judge(self, batch: _Real, labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """D's scores for ``batch`` (with ``labels`` where D takes them), and its class head's when it has one."""
        out = self.d_call(*self._args(self.feeds.discriminator, batch.images, labels, batch.inputs))
        if self.feeds.class_head:
            scores, head = out
            return scores, head
        return out, None

    def _critic(self, real: _Real) -> Callable[[torch.Tensor], torch.Tensor]:
        """D's score of an image, given the rest of what it reads from ``real`` (the penalty's critic)."""
        return lambda images: self._judge(_Real(images, real.labels, real.inputs), real.labels)[0]

    def _aux(self, head: torch.Tensor | None, labels: torch.Tensor | None) -> torch.Tensor:
        """The class head's cross-entropy against ``labels`` (zero without a head)."""
        if head is None or labels is None:
            return torch.zeros((), device=self.device)
        if self.feeds.head_probabilities:  # a head that ends in softmax: log of its probabilities
            return F.nll_loss(head.float().clamp_min(1e-12).log(), labels)
        return F.cross_entropy(head.float(), labels)

    def _fake(self, real: _Real) -> _Real:
        """G's images for fresh latents and labels (and ``real``'s conditioning images), detached: no graph is
        kept, but batch norm updates its statistics as the seed's."""
        labels = self._fake_labels(real.images.shape[0])
        with torch.no_grad(), self._autocast():
            fake: torch.Tensor = self.g_call(*self._generator_args(real, labels))
        return _Real(fake, labels, real.inputs)

    def _generator_update(self, real: _Real) -> list[torch.Tensor]:
        """One generator update through D; returns its loss, the class head's loss on the fakes for a class head
        and the L1 of G(a) to b for a paired run."""
        labels = self._fake_labels(real.images.shape[0])
        args = self._generator_args(real, labels)
        # D's weights get no gradient from this step; skipping them saves a third of D's backward.
        with self._d_frozen:
            self.opt_g.zero_grad(set_to_none=True)
            with self._autocast():
                fake = self.g_call(*args)
                scores, head = self._judge(_Real(fake, labels, real.inputs), labels)
                loss = self.loss.g(scores)
                extra = []
                if self.feeds.class_head:
                    aux = self._aux(head, labels)
                    loss = loss + self.cfg.aux_weight * aux
                    extra.append(aux.detach())
                if self.feeds.condition is not None:
                    l1 = F.l1_loss(fake.float(), real.images.float())
                    loss = loss + self.cfg.l1_weight * l1
                    extra.append(l1.detach())
            torch.autograd.backward(loss)
            self.opt_g.step()
        return [loss.detach(), *extra]

    def _generator_args(self, real: _Real, labels: torch.Tensor | None) -> list[torch.Tensor | None]:
        z = None
        if "latent" in self.feeds.generator:
            z = self.gan.latent(real.images.shape[0], generator=self.latent_rng, device=self.device)
        return self._args(self.feeds.generator, z, labels, real.inputs)

    def _fake_labels(self, n: int) -> torch.Tensor | None:
        if self.label_weights is None:
            return None
        return torch.multinomial(self.label_weights, n, replacement=True, generator=self.latent_rng)

    @staticmethod
    def _args(
        order: tuple[str, ...],
        first: torch.Tensor | None,
        labels: torch.Tensor | None,
        inputs: torch.Tensor | None,
    ) -> list[torch.Tensor | None]:
        """A network's arguments in its declared order: ``first`` is the latent (G) or the image (D)."""
        given = {"latent": first, "image": first, "label": labels, "condition": inputs}
        return [given[kind] for kind in order]

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.cfg.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return self._no_autocast


@dataclass(frozen=True)
class _Real:
    """A batch of images (real, or G's) with the labels and conditioning images that go with them."""

    images: torch.Tensor
    labels: torch.Tensor | None = None
    inputs: torch.Tensor | None = None


def _part(t: torch.Tensor | None, part: slice) -> torch.Tensor | None:
    return None if t is None else t[part]


def _accuracy(head: torch.Tensor | None, labels: torch.Tensor | None) -> torch.Tensor:
    """The fraction of ``labels`` the class head ranks first (float32, detached)."""
    assert head is not None and labels is not None  # only called for a class head, on labelled batches
    return (head.detach().argmax(dim=1) == labels).float().mean()


def _label_weights(
    conditioning: Conditioning, counts: torch.Tensor | None, device: torch.device
) -> torch.Tensor | None:
    """What fake labels are drawn from: the data's class counts, or uniform over the classes without them."""
    if conditioning.classes is None:
        return None
    if counts is None:
        return torch.ones(conditioning.classes, device=device)
    return counts.to(device=device, dtype=torch.float32)


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
