"""What a run leaves on disk and shows on screen: the run directory, metrics.jsonl, loss.png, sample grids,
JSON files, and the progress display.

Every file is written to a temporary name in the same folder and renamed into place, so a killed run never
leaves half a file (metrics.jsonl is appended line by line; a torn last line is skipped when read back).
"""

from __future__ import annotations

import json
import math
import os
import stat
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
import torch
from PIL import Image

from archspec.source import file_kind
from runner.errors import RunError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

GRID_PADDING = 2
_GRID_BACKGROUND = 32


def make_run_dir(out: str | Path, spec_name: str, now: float | None = None) -> Path:
    """A new, empty ``out/<spec name>/<YYYYmmdd-HHMMSS>[-N]`` folder; never reuses an existing one."""
    if spec_name in ("", ".", "..") or spec_name.startswith(".") or "/" in spec_name or "\\" in spec_name:
        # The spec's own rule refuses these; a run folder is never anywhere but inside ``out``.
        raise RunError(f"spec name {spec_name!r}: cannot name a run folder inside {out}")
    parent = Path(out) / spec_name
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunError(f"{parent}: cannot create the runs folder: {err.strerror or err}") from None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    for n in range(1, 10_000):
        path = parent / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            path.mkdir()  # atomic: fails if another run took the name first
        except FileExistsError:
            continue
        except OSError as err:
            raise RunError(f"{path}: cannot create the run folder: {err.strerror or err}") from None
        return path
    raise RunError(f"{parent}: no free run name for {stamp}")  # pragma: no cover - 10,000 runs in one second


def check_output(path: Path, force: bool, flag: str) -> None:
    """RunError unless ``path`` may be written: an existing file only with ``force``, and never anything that
    is not a regular file (a folder, a device such as /dev/full, a FIFO), which a rename would replace."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as err:
        raise RunError(f"{path}: cannot inspect {flag}: {err.strerror or err}") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise RunError(f"{path}: is a folder; give {flag} a file name")
    if mode is not None and not stat.S_ISREG(mode):
        raise RunError(f"{path}: is {file_kind(mode)}, not a regular file; archspec never replaces one")
    if mode is not None and not force:
        raise RunError(f"{path}: already exists; pass --force to overwrite it")
    if not path.parent.is_dir():
        raise RunError(f"{path.parent}: no such folder for {flag}")


def check_input(path: Path, what: str) -> None:
    """RunError unless ``path`` is a regular file or a folder: a FIFO would block the reader, a device
    (/dev/zero) never ends."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise RunError(f"{path}: no such file") from None
    except OSError as err:
        raise RunError(f"{path}: cannot read: {err.strerror or err}") from None
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise RunError(f"{path}: is {file_kind(mode)}, not a regular file; {what} is read from a file")


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, fsync'd, then renamed."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """``data`` as indented JSON, atomically."""
    write_atomic(path, (json.dumps(data, indent=2, default=str) + "\n").encode("utf-8"))


class MetricsLog:
    """metrics.jsonl: one JSON object per logged step, appended; the rows are also kept for the loss plot."""

    def __init__(self, path: Path, upto_step: int | None = None) -> None:
        """Open ``path``; with ``upto_step`` (a resumed run) rows logged after that step are dropped."""
        self.path = path
        self.rows = read_metrics(path)
        if upto_step is not None and any(row["step"] > upto_step for row in self.rows):
            self.rows = [row for row in self.rows if row["step"] <= upto_step]
            write_metrics(path, self.rows)

    def append(self, row: Mapping[str, Any]) -> None:
        """Add one row to the file (flushed, so a killed run keeps it) and to ``rows``."""
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(dict(row)) + "\n")
        self.rows.append(dict(row))


def write_metrics(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """A whole metrics.jsonl of ``rows``, atomically."""
    write_atomic(path, "".join(json.dumps(dict(row)) + "\n" for row in rows).encode("utf-8"))


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of a metrics.jsonl (none if it does not exist); a torn, undecodable or foreign line is skipped.

    A row is ours when it has an integer step and a number for each value the loss plot draws."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as err:
        raise RunError(f"{path}: cannot read the run's metrics: {err.strerror or err}") from None
    rows = []
    for line in data.splitlines():
        try:
            row = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            continue
        if isinstance(row, dict) and _is_metrics_row(row):
            rows.append(row)
    return rows


def _is_metrics_row(row: Mapping[str, Any]) -> bool:
    step = row.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        return False
    return is_loss_row(row) or is_quality_row(row)


def is_loss_row(row: Mapping[str, Any]) -> bool:
    """A row of losses (every ``log_every`` steps), as opposed to an evaluation's."""
    return all(_is_number(row.get(key)) for key in _PLOTTED)


def is_quality_row(row: Mapping[str, Any]) -> bool:
    """A row of an evaluation (every ``eval_every`` steps: SWD, NDB/K, coverage)."""
    return all(_is_number(row.get(key)) for key in _QUALITY)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_PLOTTED = ("loss_d", "loss_g", "d_real", "d_fake")
_QUALITY = ("swd", "ndb", "coverage")


# What the logged mean D(x) and D(G(z)) are under each loss: the label of the lower plot's axis.
SCORE_AXES = {
    "bce": "mean D output (sigmoid: a probability)",
    "bce_logits": "mean D score (a logit, before sigmoid;\n0 = undecided)",
    "lsgan": "mean D score (least squares:\ntarget 1 real, 0 fake)",
    "hinge": "mean D score (raw, hinge at ±1)",
    "wgan_gp": "mean critic score (raw,\nunbounded)",
}


def plot_losses(rows: Sequence[Mapping[str, Any]], path: Path, title: str, loss: str = "bce") -> None:
    """loss.png: D and G loss against the step (the seed's plot), and mean D(x), D(G(z)) beneath, labelled as
    what they are under ``loss`` (probabilities only for ``bce``); the legends sit beside the plots. A run with
    evaluations gets a third panel: SWD, and NDB/K and coverage on an axis of their own."""
    fig = loss_figure(rows, title, loss)
    _write_png(path, lambda tmp: fig.savefig(tmp, format="png"))


def loss_figure(rows: Sequence[Mapping[str, Any]], title: str, loss: str = "bce") -> Figure:
    """The figure of ``plot_losses``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    quality = [row for row in rows if is_quality_row(row)]
    rows = [row for row in rows if is_loss_row(row)]
    fig = Figure(figsize=(10, 9 if quality else 6), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(3 if quality else 2, 1, sharex=True)
    top, bottom = axes[0], axes[1]
    steps = [row["step"] for row in rows]
    for key, label in (("loss_d", "discriminator"), ("loss_g", "generator")):
        top.plot(steps, [row[key] for row in rows], marker=".", markersize=3, linewidth=0.8, label=label)
    for key, label in (("d_real", "D(x), real"), ("d_fake", "D(G(z)), fake")):
        bottom.plot(steps, [row[key] for row in rows], linewidth=0.8, label=label)
    top.set_ylabel(f"loss ({loss})")
    top.set_title(title)
    bottom.set_ylabel(SCORE_AXES.get(loss, "mean D score"))
    if loss == "bce":
        bottom.set_ylim(-0.02, 1.02)
    axes[-1].set_xlabel("step")
    for ax in axes:
        ax.grid(True, alpha=0.3)
    for ax in (top, bottom):
        # Outside the axes, to the right: a legend inside covers the curves it names.
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False)
    if quality:
        _quality_panel(axes[2], quality)
    fig.tight_layout()
    return fig


def _quality_panel(ax: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """SWD (and FID) on the left axis, lower is better; NDB/K and coverage, both in [0, 1], on the right."""
    left = [("swd", "SWD ×1e3", "o", "tab:purple"), ("fid", "FID", "D", "tab:blue")]
    for key, label, marker, colour in left:
        # FID's values are of the order of SWD ×1e3's: one axis serves both.
        points = [(row["step"], row[key]) for row in rows if _is_number(row.get(key))]
        if points:
            ax.plot(*zip(*points, strict=True), marker=marker, markersize=3, color=colour, label=label)
    names = [label for key, label, _, _ in left if any(key in row for row in rows)]
    ax.set_ylabel(f"{', '.join(names)} (lower is better)")
    steps = [row["step"] for row in rows]
    right = ax.twinx()
    right.plot(steps, [row["ndb"] for row in rows], marker="s", markersize=3, color="tab:red", label="NDB/K")
    right.plot(
        steps,
        [row["coverage"] for row in rows],
        marker="^",
        markersize=3,
        color="tab:green",
        label="coverage",
    )
    right.set_ylim(-0.02, 1.02)
    right.set_ylabel("NDB/K, coverage")
    # One legend for both axes, beyond the right axis's labels.
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.09, 1.0), borderaxespad=0.0, frameon=False)


def grid_shape(n: int, columns: int | None = None) -> tuple[int, int]:
    """(rows, columns) of a grid of ``n`` images: ``columns`` wide, or as square as possible, wider than tall."""
    columns = columns or math.ceil(math.sqrt(n))
    return math.ceil(n / columns), columns


def grid_size(n: int, height: int, width: int, columns: int | None = None) -> tuple[int, int]:
    """(width, height) in pixels of the PNG ``save_grid`` writes for ``n`` images of ``height`` × ``width``."""
    rows, columns = grid_shape(n, columns)
    return columns * (width + GRID_PADDING) + GRID_PADDING, rows * (height + GRID_PADDING) + GRID_PADDING


def save_grid(
    images: torch.Tensor, path: Path, value_range: tuple[float, float], columns: int | None = None
) -> None:
    """A PNG grid of float images (N, C, H, W) in ``value_range``, row by row, ``columns`` wide (or as square as
    possible); 1 channel is grey, 3 RGB, others their first."""
    pixels = to_uint8(images.detach().float().cpu(), value_range)
    n, channels, height, width = pixels.shape
    _rows, columns = grid_shape(n, columns)
    width_px, height_px = grid_size(n, height, width, columns)
    depth = 3 if channels == 3 else 1
    canvas = np.full((height_px, width_px, depth), _GRID_BACKGROUND, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, columns)
        top, left = GRID_PADDING + r * (height + GRID_PADDING), GRID_PADDING + c * (width + GRID_PADDING)
        canvas[top : top + height, left : left + width] = pixels[i, :depth].permute(1, 2, 0).numpy()
    image = Image.fromarray(canvas[:, :, 0] if depth == 1 else canvas, mode="L" if depth == 1 else "RGB")
    _write_png(path, lambda tmp: image.save(tmp, format="PNG"))


def save_image(image: torch.Tensor, path: Path, value_range: tuple[float, float]) -> None:
    """One float image (C, H, W) in ``value_range`` as a PNG of its own size: grey for 1 channel, else RGB."""
    pixels = to_uint8(image.detach().float().cpu()[None], value_range)[0]
    array = pixels[0].numpy() if pixels.shape[0] != 3 else pixels.permute(1, 2, 0).numpy()
    picture = Image.fromarray(array, mode="L" if pixels.shape[0] != 3 else "RGB")
    _write_png(path, lambda tmp: picture.save(tmp, format="PNG"))


def to_uint8(images: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    """Float images in ``value_range`` as uint8 pixels (rounded, clamped; NaN as 0), on their device."""
    low, high = value_range
    scaled = (images - low) / (high - low) * 255.0
    return scaled.nan_to_num(0.0).round().clamp(0, 255).to(torch.uint8)


def _write_png(path: Path, write: Callable[[Path], object]) -> None:
    """``write`` a PNG to a temporary name beside ``path``, then rename it into place."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def use_live_display(stream: TextIO | None = None) -> bool:
    """A live progress bar only on a terminal, and never under CI (its logs want plain lines)."""
    stream = stream or sys.stdout
    return stream.isatty() and not os.environ.get("CI") and os.environ.get("TERM") != "dumb"


class ProgressDisplay:
    """The rich progress bar (epoch, step, images/s, ETA, D and G losses), or plain log lines off a terminal."""

    def __init__(self, total: int, start: int, live: bool, stream: TextIO | None = None) -> None:
        self.total = total
        self.live = live
        self.stream = stream or sys.stdout
        self._progress: Any = None
        self._task: Any = None
        self._start = start

    def __enter__(self) -> ProgressDisplay:
        if self.live:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("epoch {task.fields[epoch]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[speed]}"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[losses]}"),
                console=Console(file=self.stream),
                transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(
                "train", total=self.total, completed=self._start, epoch="?", speed="", losses=""
            )
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.__exit__(kind, value, tb)
            self._progress = None

    def advance(self, step: int, epoch: str) -> None:
        """Move the bar to ``step`` (cheap: no device sync, only the counter)."""
        if self._progress is not None:
            self._progress.update(self._task, completed=step, epoch=epoch)

    def note(self, line: str) -> None:
        """Print a line of its own (an evaluation, a warning) above the bar when live."""
        if self._progress is not None:
            self._progress.console.print(line, markup=False, highlight=False)
        else:
            print(line, file=self.stream, flush=True)

    def log(self, row: Mapping[str, Any], epoch: str) -> None:
        """Show a metrics row: in the bar's fields when live, else as one plain line."""
        speed = f"{row['images_per_s']:.1f} img/s"
        losses = f"D {row['loss_d']:.4f}  G {row['loss_g']:.4f}"
        if self._progress is not None:
            self._progress.update(self._task, completed=row["step"], epoch=epoch, speed=speed, losses=losses)
            return
        extra = "".join(f"  {name} {row[name]:.4f}" for name in AUXILIARY_COLUMNS if name in row)
        print(
            f"step {row['step']}/{self.total}  epoch {epoch}  loss_d {row['loss_d']:.4f}  loss_g "
            f"{row['loss_g']:.4f}  D(x) {row['d_real']:.3f}  D(G(z)) {row['d_fake']:.3f}{extra}  {speed}",
            file=self.stream,
            flush=True,
        )


# Columns of a conditional run's metrics rows that the plain log line shows after the scores: a class head's
# losses and its accuracy on real images, a paired run's L1 of G(a) to b.
AUXILIARY_COLUMNS = ("aux_d", "aux_g", "acc_real", "l1")


def human_bytes(n: float) -> str:
    """``123.4 MB``: decimal units, as the seed prints GB."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} TB"


def relative_files(root: Path, paths: Iterable[Path]) -> list[str]:
    """``paths`` relative to ``root`` where they lie under it (for the dry run's list of what it wrote)."""
    out = []
    for p in paths:
        try:
            out.append(str(p.relative_to(root)))
        except ValueError:
            out.append(str(p))
    return out
