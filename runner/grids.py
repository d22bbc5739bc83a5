"""What a sample grid shows, for every kind of run (``archspec.conditioning``):

* unconditional: G(z) for ``samples`` fixed latents, as square as possible;
* class-conditional: one row per class (the first ``MAX_CLASS_ROWS`` classes) and ``columns`` latents, each
  column one latent in every row, so that what changes down a column is the class alone;
* paired: rows of (input a, G(a), target b) for the first pairs of the data, the input shown at the image's
  size and channels.

The grid's latents come from their own seed, so the grids of a run are comparable step to step and drawing them
changes nothing the training draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from archspec.conditioning import Conditioning
from archspec.modules import GAN

MAX_CLASS_ROWS = 32  # more classes than this show their first 32: a grid taller than that is no longer read
MIN_CLASS_COLUMNS = 8
MAX_PAIR_ROWS = 8


@dataclass(frozen=True)
class SampleGrid:
    """The fixed arguments of a grid, on one device, and how to lay its images out."""

    feeds: Conditioning
    latents: torch.Tensor | None
    labels: torch.Tensor | None
    inputs: torch.Tensor | None  # float, the conditioning images of paired rows
    targets: torch.Tensor | None  # float, what G should make of them
    columns: int | None  # None: as square as possible

    @torch.no_grad()
    def render(self, generator: nn.Module, chunk: int = 64) -> torch.Tensor:
        """The grid's images (N, C, H, W) on the CPU, in row-major order, drawn ``chunk`` at a time."""
        count = next(t.shape[0] for t in (self.latents, self.labels, self.inputs) if t is not None)
        parts = []
        for lo in range(0, count, chunk):
            args = generator_args(
                self.feeds,
                _rows(self.latents, lo, chunk),
                _rows(self.labels, lo, chunk),
                _rows(self.inputs, lo, chunk),
            )
            parts.append(generator(*args).float().cpu())
        made = torch.cat(parts)
        if self.inputs is None or self.targets is None:
            return made
        shown = shown_like(self.inputs.float().cpu(), made)
        return torch.stack([shown, made, self.targets.float().cpu()], dim=1).flatten(0, 1)


def generator_args(
    feeds: Conditioning,
    latents: torch.Tensor | None,
    labels: torch.Tensor | None = None,
    inputs: torch.Tensor | None = None,
) -> list[torch.Tensor | None]:
    """The generator's arguments in the order its spec declares its inputs (latent, label, conditioning image)."""
    given = {"latent": latents, "label": labels, "condition": inputs}
    return [given[kind] for kind in feeds.generator]


def class_grid(
    feeds: Conditioning, gan: GAN, samples: int, rng: torch.Generator, classes: list[int] | None = None
) -> SampleGrid:
    """One row per class of ``classes`` (default: the first ``MAX_CLASS_ROWS``), ``samples ÷ rows`` columns (at
    least ``MIN_CLASS_COLUMNS``), the same latent down each column."""
    assert feeds.classes is not None
    rows = classes if classes is not None else list(range(min(feeds.classes, MAX_CLASS_ROWS)))
    columns = max(MIN_CLASS_COLUMNS, math.ceil(samples / len(rows)))
    latents = gan.latent(columns, generator=rng).repeat(len(rows), 1) if "latent" in feeds.generator else None
    labels = torch.tensor(rows, dtype=torch.long).repeat_interleave(columns)
    return SampleGrid(feeds, latents, labels, None, None, columns)


def sample_grid(
    feeds: Conditioning,
    gan: GAN,
    samples: int,
    rng: torch.Generator,
    pairs: tuple[torch.Tensor, torch.Tensor] | None = None,
    labels: torch.Tensor | None = None,
) -> SampleGrid:
    """The grid of a run: ``pairs`` (inputs, targets as float images) and their ``labels`` are the data's first,
    for a paired run."""
    if feeds.condition is not None:
        assert pairs is not None  # a paired run's data has them: checked before training
        inputs, targets = pairs[0][:MAX_PAIR_ROWS], pairs[1][:MAX_PAIR_ROWS]
        n = inputs.shape[0]
        latents = gan.latent(n, generator=rng) if "latent" in feeds.generator else None
        row_labels = labels[:n] if labels is not None and feeds.classes is not None else None
        return SampleGrid(feeds, latents, row_labels, inputs, targets, 3)
    if feeds.classes is not None and "label" in feeds.generator:
        return class_grid(feeds, gan, samples, rng)
    return SampleGrid(feeds, gan.latent(samples, generator=rng), None, None, None, None)


def shown_like(inputs: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """``inputs`` at the size and channel count of ``images``, to stand beside them in a grid: resized with
    nearest neighbours (the pixels as the generator saw them), grey repeated to RGB, extra channels dropped."""
    height, width = images.shape[-2:]
    if inputs.shape[-2:] != (height, width):
        inputs = F.interpolate(inputs, size=(height, width), mode="nearest")
    channels = images.shape[1]
    if inputs.shape[1] == 1 and channels > 1:
        return inputs.expand(-1, channels, -1, -1)
    if inputs.shape[1] >= channels:
        return inputs[:, :channels]
    return torch.cat([inputs, inputs[:, -1:].expand(-1, channels - inputs.shape[1], -1, -1)], dim=1)


def to_device(grid: SampleGrid, device: torch.device) -> SampleGrid:
    """The same grid with its tensors on ``device``."""

    def move(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.to(device)

    return SampleGrid(
        grid.feeds, move(grid.latents), move(grid.labels), move(grid.inputs), move(grid.targets), grid.columns
    )


def _rows(t: torch.Tensor | None, lo: int, chunk: int) -> torch.Tensor | None:
    return None if t is None else t[lo : lo + chunk]
