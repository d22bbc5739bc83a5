"""The training step: the seed's updates exactly as written by hand, D frozen for G's update, and the fast path
(bf16 autocast with float32 batch norm, channels_last, fused Adam) on the CPU."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from runner.config import resolve
from runner.errors import RunError
from runner.handwritten import BatchedLoop
from runner.losses import GanLoss
from runner.step import Ema, GanStep, _Real, build_gan
from tests.runner.conftest import TINY

CPU = torch.device("cpu")


def _drop_sigmoid(data: dict[str, Any]) -> None:
    data["discriminator"]["layers"].pop()


def _step(edit: Callable[[dict[str, Any]], None] | None = None, **train: Any) -> GanStep:
    resolved = resolve(TINY, train, edit=edit)
    torch.manual_seed(0)
    gan = build_gan(resolved.result, resolved.train, CPU)
    return GanStep(gan, resolved.train, CPU, resolved.value_range, torch.Generator().manual_seed(123))


def _batches(n: int, size: int = 16) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(7)
    return [torch.randint(0, 256, (size, 3, 16, 16), generator=gen, dtype=torch.uint8) for _ in range(n)]


def _params(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def test_a_step_returns_four_float32_losses_and_trains_both_networks() -> None:
    step = _step()
    g_before, d_before = _params(step.gan.generator), _params(step.gan.discriminator)
    stats = step(_batches(1)[0])
    assert stats.shape == (4,) and stats.dtype == torch.float32 and bool(stats.isfinite().all())
    loss_d, loss_g, d_real, d_fake = stats.tolist()
    assert loss_d > 0 and loss_g > 0 and 0 < d_real < 1 and 0 < d_fake < 1
    assert all(not torch.equal(a, b) for a, b in zip(g_before, step.gan.generator.parameters(), strict=True))
    assert all(
        not torch.equal(a, b) for a, b in zip(d_before, step.gan.discriminator.parameters(), strict=True)
    )


def test_the_step_is_the_seeds_loop_written_by_hand_bit_for_bit() -> None:
    """Same weights and the same latents (the hand loop draws from torch's global generator, seeded alike):
    the same three updates give bit-identical networks and optimiser states."""
    step = _step()
    cfg = step.cfg
    hand_gan = copy.deepcopy(step.gan)
    hand = BatchedLoop(hand_gan, CPU, step.value_range, cfg.lr, (cfg.betas[0], cfg.betas[1]))
    torch.manual_seed(123)
    for batch in _batches(3):
        ours = step(batch)
        hand(batch)
    hand.sync()
    assert ours.tolist() == pytest.approx(hand.history[-1], rel=0, abs=0)
    for name in ("generator", "discriminator"):
        a, b = getattr(step.gan, name).state_dict(), getattr(hand_gan, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert torch.equal(
        step.opt_g.state_dict()["state"][0]["exp_avg"], hand.opt_g.state_dict()["state"][0]["exp_avg"]
    )


def test_the_generator_update_leaves_d_without_gradients_and_trainable() -> None:
    step = _step()
    step(_batches(1)[0])
    step.opt_d.zero_grad(set_to_none=True)
    d_before = _params(step.gan.discriminator)
    step._generator_update(_Real(torch.zeros(16, 3, 16, 16)))
    assert all(p.grad is None for p in step.gan.discriminator.parameters())  # skipped, not computed
    assert all(p.requires_grad for p in step.gan.discriminator.parameters())
    assert all(torch.equal(a, b) for a, b in zip(d_before, step.gan.discriminator.parameters(), strict=True))


def test_d_is_trainable_again_after_a_failed_generator_update(monkeypatch: pytest.MonkeyPatch) -> None:
    step = _step()

    def fails(self: GanLoss, scores: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")

    monkeypatch.setattr(GanLoss, "g", fails)
    with pytest.raises(RuntimeError, match="boom"):
        step(_batches(1)[0])
    assert all(p.requires_grad for p in step.gan.discriminator.parameters())


def test_bf16_channels_last_fused_adam_train_on_the_cpu() -> None:
    step = _step(_drop_sigmoid, loss="bce_logits", precision="bf16", channels_last=True, fused_adam=True)
    conv = step.gan.discriminator[0]
    assert isinstance(conv, nn.Conv2d) and conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert step.opt_g.defaults["fused"] is True
    for batch in _batches(3):
        stats = step(batch)
        assert stats.dtype == torch.float32 and bool(stats.isfinite().all())
    # autocast never changes the weights' dtype: the optimisers keep float32 master weights.
    assert all(p.dtype == torch.float32 for p in step.gan.generator.parameters())


def test_batch_norm_under_bf16_autocast_keeps_float32_statistics() -> None:
    """autocast runs batch norm on the bf16 activations it is given, but its weights and running statistics stay
    float32 and its batch statistics are accumulated in float32: they match a float32 batch norm fed the same
    values far more closely than bf16 arithmetic could."""
    torch.manual_seed(0)
    norm = nn.BatchNorm2d(8)
    reference = copy.deepcopy(norm)
    x = (torch.randn(64, 8, 32, 32) * 3 + 100).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = norm(x)
    reference(x.float())
    assert out.dtype == torch.bfloat16
    assert norm.running_mean.dtype == norm.running_var.dtype == norm.weight.dtype == torch.float32
    assert torch.allclose(norm.running_mean, reference.running_mean, rtol=1e-6, atol=0)
    assert torch.allclose(norm.running_var, reference.running_var, rtol=1e-4, atol=0)
    bf16_mean = x.mean(dim=(0, 2, 3)).float() * reference.momentum
    assert (bf16_mean - reference.running_mean).abs().max() > 100 * (
        norm.running_mean - reference.running_mean
    ).abs().max().clamp_min(1e-7)


def test_sync_batchnorm_on_the_cpu_is_refused_even_in_a_single_process() -> None:
    # It used to be a silent no-op recorded as true; the README says it is refused on the CPU.
    with pytest.raises(RunError, match="SyncBatchNorm runs on CUDA only"):
        _step(sync_batchnorm=True)


def test_ema_moves_towards_the_weights() -> None:
    net = nn.Linear(2, 1)
    ema = Ema(net, decay=0.75)
    with torch.no_grad():
        net.weight.add_(4.0)
    before = ema.module.weight.clone()
    ema.update(net)
    assert torch.allclose(ema.module.weight, before + 0.25 * 4.0)
    assert not ema.module.training and not any(p.requires_grad for p in ema.module.parameters())


def test_an_acgan_step_is_the_hand_written_update() -> None:
    """One AC-GAN step (bce_logits, class head, labels drawn from the data's counts) equals the update written
    out by hand: D on real (x, y), D on G(z', y'), G through D with fresh (z'', y''), each loss plus the head's
    cross-entropy, with the latent stream drawing each fake batch's labels and then its latents."""
    import torch.nn.functional as F

    from archspec.conditioning import Conditioning
    from runner.data import to_float
    from tests.runner.conftest import SPECS

    resolved = resolve(SPECS / "digits" / "acgan.yaml", {"aux_weight": 0.5})
    feeds = resolved.result.conditioning
    assert isinstance(feeds, Conditioning) and feeds.class_head
    torch.manual_seed(0)
    gan = build_gan(resolved.result, resolved.train, CPU)
    g, d = copy.deepcopy(gan.generator), copy.deepcopy(gan.discriminator)
    counts = torch.tensor([5, 1, 0, 2, 9, 3, 3, 1, 1, 7])
    step = GanStep(
        gan, resolved.train, CPU, (-1.0, 1.0), torch.Generator().manual_seed(9), None, feeds, counts
    )
    x = torch.randint(0, 256, (8, 1, 16, 16), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    y = torch.randint(0, 10, (8,), generator=torch.Generator().manual_seed(2))
    stats = step(x, y)

    rng, w = torch.Generator().manual_seed(9), 0.5
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))

    def d_loss(images: torch.Tensor, labels: torch.Tensor, target: float) -> torch.Tensor:
        scores, head = d(images)
        adversarial = F.binary_cross_entropy_with_logits(scores, torch.full_like(scores, target))
        return adversarial + w * F.cross_entropy(head, labels)

    def fake_batch() -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.multinomial(counts.float(), 8, replacement=True, generator=rng)
        return torch.randn(8, 32, generator=rng), labels

    opt_d.zero_grad()
    d_loss(to_float(x, (-1.0, 1.0)), y, 1.0).backward()
    opt_d.step()
    z, labels = fake_batch()
    with torch.no_grad():
        fake = g(z, labels)
    opt_d.zero_grad()
    d_loss(fake, labels, 0.0).backward()
    opt_d.step()
    z, labels = fake_batch()
    opt_g.zero_grad()
    d.requires_grad_(False)
    loss_g = d_loss(g(z, labels), labels, 1.0)
    loss_g.backward()
    opt_g.step()

    assert step.stats == ("loss_d", "loss_g", "d_real", "d_fake", "aux_d", "aux_g", "acc_real")
    assert torch.allclose(stats[1], loss_g.detach())
    for mine, theirs in ((gan.generator, g), (gan.discriminator, d)):
        for a, b in zip(mine.parameters(), theirs.parameters(), strict=True):
            assert torch.equal(a, b)
