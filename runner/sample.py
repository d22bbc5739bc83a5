"""``archspec sample``: a PNG grid from a checkpoint, with the generator rebuilt from the spec stored inside it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from archspec.conditioning import Conditioning, conditioning
from archspec.contract import data_range
from archspec.modules import GAN, build
from archspec.rules import fmt
from archspec.trace import trace_spec
from archspec.words import plural
from runner import checkpoint as ckpt
from runner.device import resolve_device
from runner.errors import RunError, error_summary
from runner.grids import SampleGrid, class_grid, to_device
from runner.outputs import check_output, save_grid

MAX_IMAGES = 1024  # a 32 × 32 grid: more is no longer a picture one can look at
CHUNK = 64  # images per forward pass
MAX_SEED = 2**63 - 1  # what torch.Generator.manual_seed takes


@dataclass(frozen=True)
class SampleReport:
    """What ``sample`` wrote: the file, how many images, and which weights made them."""

    path: Path
    count: int
    weights: str  # "ema" or "generator"
    step: int


def sample(
    checkpoint: Path,
    n: int,
    out: Path | None = None,
    seed: int = 0,
    device: str = "auto",
    force: bool = False,
    label: str | None = None,
) -> SampleReport:
    """Write a grid of ``n`` images drawn from the checkpoint's generator (its EMA copy when it has one).
    ``checkpoint`` may also be a run folder: its newest checkpoint is used.

    A class-conditional generator draws ``n`` images of class ``label`` (a class name or index), or without it a
    grid with one row per class (``runner.grids.class_grid``: ``n ÷ rows`` columns, at least 8, one latent down
    each column). A generator that translates images is ``runner.translate``'s.

    ``out`` defaults to ``default_out``: a file in the run's ``samples/`` folder named by step, seed and n.
    Refuses to replace an existing ``out`` unless ``force``; the latents come from ``seed`` alone.
    """
    if n < 1:
        raise RunError(f"--n {n}: draw at least one image")
    if n > MAX_IMAGES:
        raise RunError(
            f"--n {n}: at most {MAX_IMAGES} images in one grid; draw several grids with other --seed"
        )
    if out is not None:
        check_output(out, force, "--out")  # before loading anything
    check_seed(seed)
    checkpoint = checkpoint_in(checkpoint)
    target = resolve_device(device)
    loaded = load_generator(checkpoint, target)
    if out is None:
        out = default_out(checkpoint, loaded.step, seed, n, label)
        out.parent.mkdir(exist_ok=True)
        check_output(out, force, "--out")
    feeds, rng = loaded.feeds, torch.Generator().manual_seed(seed)
    if feeds.condition is not None:
        raise RunError(
            f"{checkpoint}: this generator translates {fmt(feeds.condition)} images: give them with "
            "--input FILE_OR_FOLDER"
        )
    if "label" not in feeds.generator:
        if label is not None:
            raise RunError(f"--class {label}: this generator takes no class label")
        grid = SampleGrid(feeds, loaded.gan.latent(n, generator=rng), None, None, None, None)
    elif label is None:
        grid = class_grid(feeds, loaded.gan, n, rng)
    else:
        latents = loaded.gan.latent(n, generator=rng) if "latent" in feeds.generator else None
        labels = torch.full((n,), loaded.class_index(label), dtype=torch.long)
        grid = SampleGrid(feeds, latents, labels, None, None, None)
    images = to_device(grid, target).render(loaded.gan.generator, CHUNK)
    save_grid(images, out, loaded.value_range, grid.columns)
    return SampleReport(out, int(images.shape[0]), loaded.weights, loaded.step)


@dataclass(frozen=True)
class LoadedGenerator:
    """A checkpoint's generator (its EMA weights when it has them) in eval mode, with what feeds it."""

    gan: GAN
    feeds: Conditioning
    weights: str  # "ema" or "generator"
    step: int
    value_range: tuple[float, float]
    class_names: tuple[str, ...] | None
    path: Path

    def class_index(self, label: str) -> int:
        """The index of class ``label``: one of the run's class names, or an index below the class count."""
        classes = self.feeds.classes or 0
        names = self.class_names or tuple(str(k) for k in range(classes))
        if label in names:
            return names.index(label)
        if label.isdigit() and int(label) < classes:
            return int(label)
        shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
        raise RunError(
            f"--class {label}: not a class of this run ({plural(classes, 'class', 'classes')}: {shown})"
        )


def load_generator(checkpoint: Path, device: torch.device) -> LoadedGenerator:
    """The generator of ``checkpoint`` on ``device``, rebuilt from the spec stored in it; RunError if damaged."""
    state = ckpt.load_checkpoint(checkpoint)
    spec = ckpt.checkpoint_spec(state, checkpoint)
    feeds = conditioning(*trace_spec(spec))
    if isinstance(feeds, str):
        raise RunError(f"{checkpoint}: the stored spec cannot be fed: {feeds}")
    gan = build(spec, device)
    weights = "ema" if state.get("ema") is not None else "generator"
    try:
        gan.generator.load_state_dict(state[weights])
    except (RuntimeError, TypeError, AttributeError, KeyError, ValueError) as err:
        raise RunError(
            f"{checkpoint}: the stored weights do not fit the stored spec (corrupt?): {error_summary(err)}"
        ) from None
    gan.generator.eval()
    stored_range = state.get("value_range")
    value_range = (float(stored_range[0]), float(stored_range[1])) if stored_range else data_range(spec)
    names = state.get("class_names")
    class_names = tuple(str(n) for n in names) if isinstance(names, list) else None
    return LoadedGenerator(gan, feeds, weights, int(state["step"]), value_range, class_names, checkpoint)


def check_seed(seed: int) -> None:
    """RunError for a seed torch.Generator cannot take."""
    if not 0 <= seed <= MAX_SEED:
        raise RunError(f"--seed {seed}: must be between 0 and {MAX_SEED:,} (2^63 − 1)")


def default_out(checkpoint: Path, step: int, seed: int, n: int, label: str | None = None) -> Path:
    """Where a grid goes without ``--out``: ``RUN/samples/sample_step000500_seed0_n16.png`` (``..._class7.png``
    for one class) for a checkpoint of a run folder, the checkpoint's own folder for a loose file."""
    run = ckpt.run_dir_of(checkpoint)
    folder = run / "samples" if run is not None else checkpoint.parent
    of_class = (
        "" if label is None else "_class" + "".join(c if c.isalnum() or c in "-_" else "-" for c in label)
    )
    return folder / f"sample_step{step:06d}_seed{seed}_n{n}{of_class}.png"


def checkpoint_in(path: Path) -> Path:
    """A checkpoint file as given, or the newest checkpoint of a run folder (or of its checkpoints folder)."""
    if not path.is_dir():
        return path
    run = path.parent if path.name == "checkpoints" else path
    found = ckpt.best_checkpoint(run)
    if found is None:
        raise RunError(f"{path}: a folder without checkpoints; give a checkpoint file or a run folder")
    return found
