"""``--tensorboard``: the run's losses, D outputs, quality metrics and sample grids as TensorBoard events, in
``RUN/tensorboard/`` (``tensorboard --logdir runs`` shows every run). Rank 0 writes; tensorboard is an optional
extra, asked for by name when missing."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from runner.errors import RunError

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

FOLDER = "tensorboard"
# metrics.jsonl keys and the TensorBoard tags they become: losses, D outputs and speed, then quality.
_TAGS = {
    "loss_d": "loss/discriminator",
    "loss_g": "loss/generator",
    "d_real": "D/real",
    "d_fake": "D/fake",
    "images_per_s": "speed/images_per_s",
    "swd": "quality/swd",
    "ndb": "quality/ndb_k",
    "coverage": "quality/coverage",
    "fid": "quality/fid",
}


class Board:
    """The event files of one run. A resumed session sets ``resumed_at``: TensorBoard then drops the earlier
    sessions' points after that step (``purge_step``), as metrics.jsonl drops its rows, so a curve never
    doubles back over the steps trained again."""

    def __init__(self, run_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise RunError(
                "--tensorboard needs the tensorboard package: pip install 'archspec[tensorboard]'"
            ) from None
        self.folder = run_dir / FOLDER
        self._writer_class = SummaryWriter
        self._writer: SummaryWriter | None = None  # made at the first event: setup leaves no folder behind
        self.resumed_at: int | None = None

    @property
    def writer(self) -> SummaryWriter:
        if self._writer is None:
            purge = self.resumed_at + 1 if self.resumed_at is not None else None
            self._writer = self._writer_class(log_dir=str(self.folder), purge_step=purge)
        return self._writer

    def row(self, row: Mapping[str, Any]) -> None:
        """A metrics.jsonl row (losses or an evaluation) as scalars at its step."""
        for key, tag in _TAGS.items():
            value = row.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                self.writer.add_scalar(tag, value, row["step"])
        self.writer.flush()  # a run killed later keeps what was logged

    def grid(self, path: Path, step: int, tag: str = "samples") -> None:
        """The sample grid PNG at ``path`` (as written: the same picture as on disk) as an image at ``step``."""
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
        self.writer.add_image(tag, pixels, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
