"""What a conditional run needs of its data, checked before any step: labels for a spec that takes a class label,
as many classes as the spec, no label outside them, and conditioning images of the spec's shape for a paired run.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from archspec.conditioning import Conditioning
from archspec.rules import fmt
from archspec.words import plural
from runner.data import ImageSet
from runner.errors import RunError

_PACK_LABELS = (
    "pack labelled data with `archspec data pack SRC OUT.h5 --labels ...` (see `archspec data pack --help`)"
)
_PACK_PAIRS = (
    "pack pairs with `archspec data pack` (see `archspec data pack --help`: side-by-side or two folders)"
)


def super_resolution(feeds: Conditioning, image: tuple[int, ...]) -> bool:
    """Whether the conditioning image is the image made smaller by a whole factor (SRGAN's low-resolution
    input): such a run makes its inputs from its images, since packed inputs have the images' size."""
    if feeds.condition is None:
        return False
    channels, height, width = feeds.condition
    big_c, big_h, big_w = image
    smaller = (height, width) != (big_h, big_w)
    return channels == big_c and smaller and big_h % height == 0 and big_w % width == 0


def with_downscaled_inputs(data: ImageSet, shape: tuple[int, ...], chunk: int = 256) -> ImageSet:
    """``data`` whose inputs are its images downscaled to ``shape`` (C, H, W), bicubic with antialiasing (the
    low-resolution half of a super-resolution pair, as SRGAN makes it), rounded back to uint8."""
    _, height, width = shape
    parts = []
    for lo in range(0, len(data), chunk):
        images = data.images[lo : lo + chunk].float()
        small = F.interpolate(images, size=(height, width), mode="bicubic", antialias=True)
        parts.append(small.round_().clamp_(0, 255).to(torch.uint8))
    inputs = torch.cat(parts) if parts else data.images.new_zeros((0, *shape))
    info = dataclasses.replace(data.info, input_shape=(shape[0], height, width))
    return ImageSet(data.images, info, data.labels, inputs)


def check_data(feeds: Conditioning, data: ImageSet) -> None:
    """RunError (one line naming the data) for data that cannot feed this spec's networks."""
    source = data.info.source
    if feeds.classes is not None:
        _check_labels(feeds.classes, data, source)
    if feeds.condition is not None:
        if data.inputs is None:
            raise RunError(
                f"{source}: images without paired inputs, but the generator translates a {fmt(feeds.condition)} "
                f"image; {_PACK_PAIRS}"
            )
        stored = tuple(data.inputs.shape[1:])
        if stored != feeds.condition:
            raise RunError(
                f"{source}: the paired inputs are {fmt(stored)}, but the generator takes {fmt(feeds.condition)}"
            )


def label_counts(feeds: Conditioning, data: ImageSet) -> torch.Tensor | None:
    """How many images of each class the data holds (what fake labels are drawn from), or None unlabelled."""
    if feeds.classes is None or data.labels is None:
        return None
    return torch.bincount(data.labels.cpu(), minlength=feeds.classes)


def first_pairs(data: ImageSet, count: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The first ``count`` (inputs, targets) of paired data as float images in the data's range, for grids."""
    if data.inputs is None:
        return None
    return data.to_float(data.inputs[:count].cpu()), data.to_float(data.images[:count].cpu())


def class_names(feeds: Conditioning, data: ImageSet) -> list[str] | None:
    """The class names of a run (the data's, or "0".."K-1"), kept in its checkpoints for ``sample --class``."""
    if feeds.classes is None:
        return None
    names = data.info.class_names
    return list(names) if names is not None else [str(k) for k in range(feeds.classes)]


def _check_labels(classes: int, data: ImageSet, source: str) -> None:
    if data.labels is None:
        raise RunError(
            f"{source}: images without labels, but the spec takes a class label ({classes} classes); {_PACK_LABELS}"
        )
    if len(data.labels) > 0:
        low, high = int(data.labels.min()), int(data.labels.max())
        if low < 0 or high >= classes:
            bad = high if high >= classes else low
            index = int((data.labels == bad).nonzero()[0])
            raise RunError(
                f"{source}: image {index} has label {bad}, outside the spec's {classes} classes "
                f"(0 to {classes - 1})"
            )
    names = data.info.class_names
    if names is not None and len(names) != classes:
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise RunError(
            f"{source}: {plural(len(names), 'class', 'classes')} ({shown}), but the spec's label input has "
            f"{classes}; set `label: {len(names)}` in the spec or pack the data with {classes} classes"
        )
