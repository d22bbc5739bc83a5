"""``archspec sample``: a PNG grid from a checkpoint, with the generator rebuilt from the spec stored inside it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from archspec.contract import data_range
from archspec.modules import build
from runner import checkpoint as ckpt
from runner.device import resolve_device
from runner.errors import RunError, error_summary
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
) -> SampleReport:
    """Write a grid of ``n`` images drawn from the checkpoint's generator (its EMA copy when it has one).
    ``checkpoint`` may also be a run folder: its newest checkpoint is used.

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
    if not 0 <= seed <= MAX_SEED:
        raise RunError(f"--seed {seed}: must be between 0 and {MAX_SEED:,} (2^63 − 1)")
    checkpoint = _checkpoint_in(checkpoint)
    target = resolve_device(device)
    state = ckpt.load_checkpoint(checkpoint)
    if out is None:
        out = default_out(checkpoint, int(state["step"]), seed, n)
        out.parent.mkdir(exist_ok=True)
        check_output(out, force, "--out")
    spec = ckpt.checkpoint_spec(state, checkpoint)
    gan = build(spec, target)
    weights = "ema" if state.get("ema") is not None else "generator"
    try:
        gan.generator.load_state_dict(state[weights])
    except (RuntimeError, TypeError, AttributeError, KeyError, ValueError) as err:
        raise RunError(
            f"{checkpoint}: the stored weights do not fit the stored spec (corrupt?): {error_summary(err)}"
        ) from None
    gan.generator.eval()
    z = gan.latent(n, generator=torch.Generator().manual_seed(seed))
    images = _generate(gan.generator, z, target)
    stored_range = state.get("value_range")
    value_range = (float(stored_range[0]), float(stored_range[1])) if stored_range else data_range(spec)
    save_grid(images, out, value_range)
    return SampleReport(out, n, weights, int(state["step"]))


def default_out(checkpoint: Path, step: int, seed: int, n: int) -> Path:
    """Where a grid goes without ``--out``: ``RUN/samples/sample_step000500_seed0_n16.png`` for a checkpoint of a
    run folder, the checkpoint's own folder for a loose file."""
    run = ckpt.run_dir_of(checkpoint)
    folder = run / "samples" if run is not None else checkpoint.parent
    return folder / f"sample_step{step:06d}_seed{seed}_n{n}.png"


def _generate(generator: torch.nn.Module, z: torch.Tensor, device: torch.device) -> torch.Tensor:
    """G(z) on ``device``, ``CHUNK`` latents at a time (the images gathered on the CPU): a large grid needs no
    more device memory than a small one. The latents are drawn beforehand, so the grid does not depend on it."""
    with torch.no_grad():
        parts = [generator(z[i : i + CHUNK].to(device)).cpu() for i in range(0, len(z), CHUNK)]
    return torch.cat(parts)


def _checkpoint_in(path: Path) -> Path:
    """A checkpoint file as given, or the newest checkpoint of a run folder (or of its checkpoints folder)."""
    if not path.is_dir():
        return path
    run = path.parent if path.name == "checkpoints" else path
    found = ckpt.best_checkpoint(run)
    if found is None:
        raise RunError(f"{path}: a folder without checkpoints; give a checkpoint file or a run folder")
    return found
