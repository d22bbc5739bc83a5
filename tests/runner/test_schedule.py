"""The schedule of a run: how many steps (``max_steps`` against ``epochs``), and the critic's fresh real batch per
update, held against a WGAN-GP loop written by hand as the reference code writes it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from archspec.spec import Train
from runner.checkpoint import load_checkpoint
from runner.config import resolve
from runner.data import epoch_permutation, open_images, to_float
from runner.schedule import plan_steps
from runner.seeds import LATENT_STREAM, derived_seed, seed_everything
from runner.step import build_gan
from tests.runner.conftest import Cli, only_run, spec_variant


@pytest.mark.parametrize(
    ("fields", "total", "epochs", "stop"),
    [
        ({}, 4, 1, "epochs"),  # neither: one pass
        ({"max_steps": 10}, 10, 3, "max_steps"),  # max_steps alone: as many epochs as it needs
        ({"epochs": 2}, 8, 2, "epochs"),
        ({"epochs": 2, "max_steps": 5}, 5, 2, "max_steps"),  # both: the first reached
        ({"epochs": 2, "max_steps": 50}, 8, 2, "epochs"),
    ],
)
def test_max_steps_and_epochs_stop_at_the_first(
    fields: dict[str, int], total: int, epochs: int, stop: str
) -> None:
    plan = plan_steps(Train(batch_size=16, **fields), 64 + 5)
    assert (plan.total, plan.per_epoch, plan.epochs, plan.stop, plan.left_over) == (total, 4, epochs, stop, 5)


def test_a_step_reads_one_batch_per_critic_update() -> None:
    plan = plan_steps(Train(batch_size=16, d_steps=5), 200)
    assert (plan.per_epoch, plan.left_over) == (2, 40)


def test_max_steps_trains_past_one_epoch_and_says_why_it_stopped(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    # 40 images at batch 16: 2 steps an epoch, 8 images skipped in each.
    result = cli("train", spec_variant(tmp_path), "--limit", 40, "--max-steps", 5, "--out", out)
    assert result.code == 0, result.err
    assert "5 steps (2 per epoch, stops at max_steps 5)" in result.out
    assert "8 images of each epoch do not fill a step of 16 and are skipped" in result.out
    assert "finished: step 5, max_steps 5 reached (5 steps in" in result.out
    assert load_checkpoint(only_run(out) / "checkpoints" / "last.pt")["epoch"] == 2


def test_epochs_stop_first_when_they_come_first(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    result = cli(
        "train", spec_variant(tmp_path), "--limit", 32, "--epochs", 2, "--max-steps", 50, "--out", out
    )
    assert result.code == 0, result.err
    assert "finished: step 4, 2 epochs done (4 steps in" in result.out
    assert "skipped" not in result.out


def test_critic_updates_each_draw_a_fresh_real_batch_as_the_reference_loop(cli: Cli, tmp_path: Path) -> None:
    """archspec train with wgan_gp and d_steps 3 ends with the weights of WGAN-GP's loop written by hand:
    every critic update on the next real batch of the epoch's shuffled order, three steps across two epochs."""
    spec = spec_variant(
        tmp_path,
        edit=lambda data: data["discriminator"]["layers"].pop(),  # a critic: raw scores
        loss="wgan_gp",
        d_steps=3,
        batch_size=4,
        shuffle=True,
        seed=5,
        lr=1e-3,
        betas=[0.0, 0.9],
    )
    out = tmp_path / "runs"
    # 28 images: 2 steps of 3 x 4 an epoch (4 skipped), so step 3 starts epoch 2.
    result = cli("train", spec, "--limit", 28, "--max-steps", 3, "--log-every", 1, "--out", out)
    assert result.code == 0, result.err
    state = load_checkpoint(only_run(out) / "checkpoints" / "last.pt")

    generator, discriminator = _wgan_gp_by_hand(spec, images=28, steps=3, d_steps=3, batch=4, seed=5)
    for name, ours in (("generator", state["generator"]), ("discriminator", state["discriminator"])):
        hand = generator if name == "generator" else discriminator
        assert all(torch.equal(ours[k], hand[k]) for k in hand), name


def _wgan_gp_by_hand(
    spec: Path, images: int, steps: int, d_steps: int, batch: int, seed: int
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """WGAN-GP as its reference code trains it (Gulrajani et al.; PyTorch-GAN's wgan_gp.py): for each generator
    update, ``d_steps`` critic updates, each on the next real batch; weights, latents, penalty mixes and data
    order drawn as archspec's run draws them (the same seeds), so the two must agree bit for bit."""
    resolved = resolve(spec, {})
    cfg = resolved.train
    seed_everything(seed)
    gan = build_gan(resolved.result, cfg, torch.device("cpu"))
    g, d = gan.generator, gan.discriminator
    rng = torch.Generator().manual_seed(derived_seed(seed, LATENT_STREAM))
    data = open_images("synthetic", resolved.spec.image, resolved.value_range, seed=seed, limit=images)
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr, betas=cfg.betas)
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr, betas=cfg.betas)

    def real_batches() -> Iterator[torch.Tensor]:
        per_epoch = images // (batch * d_steps) * d_steps  # whole steps only
        for epoch in range(steps):
            order = epoch_permutation(images, epoch, seed)
            for k in range(per_epoch):
                yield to_float(data.images[order[k * batch : (k + 1) * batch]], resolved.value_range)

    feed = real_batches()
    for _ in range(steps):
        for _ in range(d_steps):
            real = next(feed)
            with torch.no_grad():
                fake = g(gan.latent(batch, generator=rng))
            opt_d.zero_grad()
            loss = -d(real).mean() + d(fake).mean()
            alpha = torch.rand((batch, 1, 1, 1), generator=rng)
            mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
            (grad,) = torch.autograd.grad(d(mixed).sum(), mixed, create_graph=True)
            penalty = (grad.flatten(1).square().sum(dim=1).sqrt() - 1).square().mean()
            (loss + cfg.gp_weight * penalty).backward()
            opt_d.step()
        d.requires_grad_(False)
        opt_g.zero_grad()
        (-d(g(gan.latent(batch, generator=rng))).mean()).backward()
        opt_g.step()
        d.requires_grad_(True)
    return g.state_dict(), d.state_dict()
