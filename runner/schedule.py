"""How many steps a run trains, and what a step reads: the schedule of ``archspec train``.

A step is one generator update. Before it come ``d_steps`` critic updates, each on a fresh real batch (as the
WGAN-GP reference code and PyTorch-GAN draw them), so a step reads ``d_steps × batch_size`` images and an epoch
has ``images // (d_steps × batch_size)`` steps. The images that do not fill a whole step at the end of an epoch
are skipped for that epoch (with ``shuffle`` they are different ones each epoch; without, the same ones).

The run stops at ``max_steps`` or after ``epochs`` passes, whichever comes first; with ``max_steps`` set and
``epochs`` not, it trains for as many epochs as ``max_steps`` needs; with neither, one epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

from archspec.spec import Train


@dataclass(frozen=True)
class Plan:
    """The steps of a run: ``total`` of them, ``per_epoch`` in each epoch, and which limit ends the run."""

    total: int
    per_epoch: int
    epochs: int  # passes the run starts (the last may stop part-way, at max_steps)
    stop: str  # "max_steps" or "epochs"
    left_over: int  # images per epoch (of one process) that do not fill a step and are skipped

    def describe_stop(self) -> str:
        """What ends the run, for its final line: ``max_steps 500 reached`` or ``2 epochs done``."""
        if self.stop == "max_steps":
            return f"max_steps {self.total} reached"
        return f"{self.epochs} epoch{'s' if self.epochs != 1 else ''} done"


def images_per_step(train: Train) -> int:
    """Real images one step reads (per process): a fresh batch for each critic update."""
    return train.batch_size * train.d_steps


def plan_steps(train: Train, images: int) -> Plan:
    """The plan of a run whose process trains on ``images`` images per epoch."""
    per_step = images_per_step(train)
    per_epoch, left_over = divmod(images, per_step)
    per_epoch = max(per_epoch, 1)  # an empty epoch is refused before the run starts; avoid dividing by 0
    if train.max_steps is not None and train.epochs is None:
        return Plan(train.max_steps, per_epoch, -(-train.max_steps // per_epoch), "max_steps", left_over)
    epochs = train.epochs or 1
    by_epochs = epochs * per_epoch
    if train.max_steps is not None and train.max_steps < by_epochs:
        return Plan(train.max_steps, per_epoch, -(-train.max_steps // per_epoch), "max_steps", left_over)
    return Plan(by_epochs, per_epoch, epochs, "epochs", left_over)
