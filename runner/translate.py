"""``archspec sample --input``: a paired (image-to-image) run's generator applied to image files.

Each input is read with Pillow, made grey or RGB as the generator's conditioning image is, fitted to its size as
``archspec data pack --resize`` fits images (the shorter side scaled to the size, bicubic, then the seed's centre
crop), and translated. A file gives one PNG; a folder gives one PNG per image, under the same relative name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from archspec.rules import fmt
from runner.checkpoint import run_dir_of
from runner.data import to_float
from runner.device import resolve_device
from runner.errors import RunError
from runner.grids import generator_args
from runner.outputs import check_output, save_image
from runner.pack import IMAGE_SUFFIXES, MAX_IMAGE_BYTES, resized_size
from runner.sample import CHUNK, LoadedGenerator, check_seed, checkpoint_in, load_generator

MAX_INPUTS = 10_000  # a folder larger than this is a data set: pack it and train or evaluate on it instead

# What Pillow raises for a file it cannot read (as runner.pack lists them).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


@dataclass(frozen=True)
class TranslateReport:
    """What ``translate`` wrote: one PNG per input, where, and which weights made them."""

    written: list[Path]
    out: Path
    weights: str
    step: int


def translate(
    checkpoint: Path,
    source: Path,
    out: Path | None = None,
    seed: int = 0,
    device: str = "auto",
    force: bool = False,
    label: str | None = None,
) -> TranslateReport:
    """Translate the image file ``source``, or every image under the folder ``source``, with the generator of
    ``checkpoint`` (a file or a run folder). ``out`` is the PNG (a file) or the folder (a folder) to write; by
    default ``RUN/samples/translated_stepSTEP/`` (or ``..._STEM.png``). A generator that also takes a latent
    draws it from ``seed``; one that takes a class label needs ``label``."""
    check_seed(seed)
    files = _inputs(source)
    checkpoint = checkpoint_in(checkpoint)
    target = resolve_device(device)
    loaded = load_generator(checkpoint, target)
    feeds = loaded.feeds
    if feeds.condition is None:
        raise RunError(
            f"--input {source}: this generator takes no image to translate (draw samples without --input)"
        )
    if "label" in feeds.generator and label is None:
        raise RunError(f"{checkpoint}: this generator also takes a class label: give --class NAME_OR_INDEX")
    if "label" not in feeds.generator and label is not None:
        raise RunError(f"--class {label}: this generator takes no class label")
    targets = _targets(source, files, out, loaded)
    for path in targets:
        if path.parent.is_dir():  # a folder still to make holds nothing to overwrite
            check_output(path, force, "--out")  # all of them before the first is written
    channels, height, width = feeds.condition
    pixels = torch.stack([_read(f, channels, height, width) for f in files])
    rng = torch.Generator().manual_seed(seed)
    latents = loaded.gan.latent(len(files), generator=rng) if "latent" in feeds.generator else None
    labels = (
        torch.full((len(files),), loaded.class_index(label), dtype=torch.long) if label is not None else None
    )
    inputs = to_float(pixels, loaded.value_range)
    with torch.no_grad():
        for lo in range(0, len(files), CHUNK):
            args = generator_args(
                feeds,
                None if latents is None else latents[lo : lo + CHUNK].to(target),
                None if labels is None else labels[lo : lo + CHUNK].to(target),
                inputs[lo : lo + CHUNK].to(target),
            )
            made = loaded.gan.generator(*args).float().cpu()
            for image, path in zip(made, targets[lo : lo + CHUNK], strict=True):
                path.parent.mkdir(parents=True, exist_ok=True)
                save_image(image, path, loaded.value_range)
    return TranslateReport(targets, out or targets[0].parent, loaded.weights, loaded.step)


def _inputs(source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise RunError(f"--input {source}: no such file or folder")
    files = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise RunError(f"--input {source}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in the folder")
    if len(files) > MAX_INPUTS:
        raise RunError(f"--input {source}: {len(files):,} images, more than {MAX_INPUTS:,} at once")
    return files


def _targets(source: Path, files: list[Path], out: Path | None, loaded: LoadedGenerator) -> list[Path]:
    """Where each translation goes: ``out`` itself for one file, else under the out folder by relative name."""
    run = run_dir_of(loaded.path)
    home = run / "samples" if run is not None else loaded.path.parent
    if source.is_file():
        return [out or home / f"translated_step{loaded.step:06d}_{source.stem}.png"]
    folder = out or home / f"translated_step{loaded.step:06d}"
    if folder.exists() and not folder.is_dir():
        raise RunError(f"--out {folder}: not a folder; a folder of inputs is translated into a folder")
    return [folder / f.relative_to(source).with_suffix(".png") for f in files]


def _read(path: Path, channels: int, height: int, width: int) -> torch.Tensor:
    """One image as uint8 (C, H, W): grey or RGB, the shorter side scaled to fit, centre-cropped."""
    try:
        if path.stat().st_size > MAX_IMAGE_BYTES:
            raise RunError(f"{path}: larger than {MAX_IMAGE_BYTES >> 20} MiB; not an image to translate")
        with Image.open(path) as opened:
            image = opened.convert("L" if channels == 1 else "RGB")
            if image.size != (width, height):
                size = max(height, width)
                if min(image.size) != size:
                    image = image.resize(resized_size(*image.size, size), Image.Resampling.BICUBIC)
                top, left = image.height // 2 - height // 2, image.width // 2 - width // 2
                image = image.crop((left, top, left + width, top + height))
            array = np.asarray(image, dtype=np.uint8)
    except _DECODE_ERRORS as err:
        raise RunError(f"{path}: cannot read the image: {err}") from None
    if array.shape[:2] != (height, width):
        raise RunError(
            f"{path}: {array.shape[1]}x{array.shape[0]} after fitting, not {width}x{height} ({fmt((channels, height, width))})"
        )
    tensor = torch.from_numpy(array.copy())
    return tensor.unsqueeze(0) if channels == 1 else tensor.permute(2, 0, 1)
