"""A run's losses and weights must stay finite: the checks, and the error that stops the run when they do not."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import nn

from runner.errors import RunError
from runner.step import STATS


class NonFiniteLoss(RunError):
    """A loss or weight became NaN or infinite; the run stopped without writing a checkpoint of it."""


def check_losses(
    values: torch.Tensor, steps: list[int], last_checkpoint: Path | None, names: Sequence[str] = STATS
) -> None:
    """NonFiniteLoss naming the first loss in ``values`` (a row of ``names`` per step of ``steps``) that is NaN
    or infinite, and the last checkpoint that was good."""
    bad = (~torch.isfinite(values)).nonzero()
    if bad.numel() == 0:
        return
    row, column = (int(v) for v in bad[0])
    kept = (
        f"last good checkpoint: {last_checkpoint}"
        if last_checkpoint is not None
        else "no checkpoint had been written yet"
    )
    raise NonFiniteLoss(
        f"{names[column]} is {values[row, column].item()} at step {steps[row]}; training "
        f"stopped ({kept}). Try a lower --lr"
    )


def check_weights(modules: Iterable[nn.Module], step: int, last_checkpoint: Path | None) -> None:
    """NonFiniteLoss if any weight of ``modules`` is NaN or infinite at ``step``."""
    params = [p for m in modules for p in m.parameters()]
    if params and not bool(torch.stack([p.detach().isfinite().all() for p in params]).all()):
        kept = last_checkpoint or "no checkpoint had been written yet"
        raise NonFiniteLoss(
            f"weights are not finite at step {step}; training stopped without saving "
            f"them (last good checkpoint: {kept}). Try a lower --lr"
        )
