"""A run's state in a checkpoint: what ``archspec train`` saves, the checkpoint ``--resume`` names (checked
against the spec), and putting the saved weights, optimisers, position and generators back.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from runner import checkpoint as ckpt
from runner import distributed
from runner.conditions import class_names
from runner.config import Resolved, load_spec, resolve, resume_base, train_dict
from runner.data import ImageSet
from runner.device import World
from runner.errors import RunError, error_summary
from runner.seeds import GLOBAL_STREAM, LATENT_STREAM, derived_seed
from runner.step import GanStep


@dataclass
class Position:
    """How far a run has got: steps done, the epoch, and batches done within it."""

    step: int = 0
    epoch: int = 0
    batch: int = 0
    elapsed: float = 0.0  # seconds of training before this session


def load_resume(
    spec_path: str, resume: str, overrides: Mapping[str, Any], world: World
) -> tuple[Resolved, dict[str, Any], Path]:
    """The checkpoint ``--resume`` names, refused if its networks differ, and the spec resolved on top of its
    train settings (the file's own train section need not check: the checkpoint's may mend it).

    Rank 0 finds the checkpoint; every rank loads the one it found."""
    spec = load_spec(spec_path)
    out = overrides.get("out", spec.train.out)
    path = distributed.from_main(world, lambda: ckpt.find_resume(resume, out, spec.name, _warn))
    state = ckpt.load_checkpoint(path)
    old = ckpt.checkpoint_spec(state, path)
    differences = ckpt.architecture_differences(old, spec)
    if differences:
        raise RunError(
            f"{path}: the checkpoint's networks differ from {spec_path}: {'; '.join(differences)} "
            "(a different train: section is fine; a different architecture needs a new run)"
        )
    return resolve(spec_path, overrides, resume_base(state["train"], state["spec_text"], spec)), state, path


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def checkpoint_state(
    resolved: Resolved,
    step: GanStep,
    pos: Position,
    elapsed: float,
    rngs: list[dict[str, Any]],
    data: ImageSet,
    limit: int | None,
    world: World,
) -> dict[str, Any]:
    """What a checkpoint holds: the spec, the train section, every state ``restore`` puts back, and ``rngs``
    (each rank's generators, rank 0's first); ``elapsed`` is the seconds of training up to now."""
    cfg, gan = resolved.train, step.gan
    state: dict[str, Any] = {
        "spec_text": resolved.text,
        "spec_name": resolved.spec.name,
        "train": train_dict(cfg),
        "value_range": list(resolved.value_range),
        "generator": gan.generator.state_dict(),
        "discriminator": gan.discriminator.state_dict(),
        "ema": step.ema.module.state_dict() if step.ema is not None else None,
        "opt_g": step.opt_g.state_dict(),
        "opt_d": step.opt_d.state_dict(),
        "step": pos.step,
        "epoch": pos.epoch,
        "batch": pos.batch,
        "elapsed": elapsed,
        "rng": rngs[0],
        "data_order": {"seed": cfg.seed, "epoch": pos.epoch, "shuffle": cfg.shuffle},
        "data": {"source": data.info.source, "count": len(data)},
        # What `archspec sample --class NAME` looks names up in (None for an unconditional run).
        "class_names": class_names(step.feeds, data),
        "limit": limit,
        "world_size": world.world_size,
    }
    if world.distributed:
        state["rng_ranks"] = rngs  # each rank's own latent stream, for a bit-exact resume in the same world
    return state


def restore(state: Mapping[str, Any], path: Path, step: GanStep, world: World) -> tuple[Position, list[str]]:
    """Put the checkpoint ``state`` (read from ``path``) back into ``step``'s networks, optimisers and
    generators; returns the position it was saved at and header notes on how the resume differs.

    The learning rates and betas are this run's: a changed train section may have changed them."""
    cfg, gan = step.cfg, step.gan
    try:
        gan.generator.load_state_dict(state["generator"])
        gan.discriminator.load_state_dict(state["discriminator"])
        step.opt_g.load_state_dict(state["opt_g"])
        step.opt_d.load_state_dict(state["opt_d"])
        if step.ema is not None:
            step.ema.module.load_state_dict(state.get("ema") or state["generator"])
        notes = _restore_rng(state, step.latent_rng, cfg.seed, world)
    except (RuntimeError, KeyError, ValueError, TypeError, AttributeError, IndexError) as err:
        # The architectures were compared already; this is a damaged or hand-edited file.
        raise RunError(
            f"{path}: the checkpoint's state does not fit this run (damaged?): {error_summary(err)}"
        ) from None
    for opt, lr in ((step.opt_g, cfg.lr_g or cfg.lr), (step.opt_d, cfg.lr_d or cfg.lr)):
        for group in opt.param_groups:
            group["lr"], group["betas"] = lr, tuple(cfg.betas)
    elapsed = state.get("elapsed")
    pos = Position(
        state["step"],
        state["epoch"],
        state["batch"],
        float(elapsed) if isinstance(elapsed, float) else 0.0,
    )
    return pos, notes


def _restore_rng(state: Mapping[str, Any], latent_rng: torch.Generator, seed: int, world: World) -> list[str]:
    """Each rank's generators as the checkpoint saved them; fresh ones for ranks a different world lacked."""
    ranks = state.get("rng_ranks")
    saved_world = state.get("world_size", 1)
    if isinstance(ranks, list) and len(ranks) == world.world_size:
        ckpt.restore_rng(ranks[world.rank], latent_rng)
        return []
    if world.is_main:
        ckpt.restore_rng(state["rng"], latent_rng)
    else:
        # Seeded from the step too, so this rank does not repeat the latents of the run's first steps.
        latent_rng.manual_seed(derived_seed(seed, LATENT_STREAM, world.rank, state["step"]))
        torch.manual_seed(derived_seed(seed, GLOBAL_STREAM, world.rank, state["step"]))
    if saved_world != world.world_size:
        return [
            f"the checkpoint was written by {saved_world} process(es), this run has {world.world_size}: "
            "it continues, but not bit for bit as the original world would have"
        ]
    return []
