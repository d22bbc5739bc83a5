"""The images training reads: one uint8 tensor (N, C, H, W) in memory, served as batches.

Three sources: the built-in synthetic faces, uniform random pixels (for ``--dry-run``) and HDF5 files in one
of three layouts, found automatically:

* packed (``archspec data pack``): one dataset ``images`` of shape (N, H, W, C);
* the seed's file: a group such as ``img_align_celeba`` holding one (H, W, C) dataset per image;
* any other single 4-D uint8 dataset (N, H, W, C).

``path.h5:name`` picks a group or dataset by name when a file holds several candidates. Images larger than
the spec's size are centre-cropped with the seed's rule (start = dim // 2 - size // 2); grey images are
repeated to three channels when the spec wants RGB.

Conditions travel with the images. Beside a 4-D image dataset, a 1-D integer dataset ``labels`` (one class
index per image, the class names in its attribute ``class_names``) and a 4-D uint8 dataset ``inputs`` (the
condition image of each pair, pix2pix's A; the images are the targets, its B) are read with them:
``labels`` always, ``inputs`` when the caller names the generator's ``input_shape``. The generated sources
make both up from the seed, so a conditional spec's dry run needs no file.

Shuffled order is reproducible: ``batches(shuffle=True, generator=epoch_generator(epoch, seed))`` visits
``epoch_permutation(len(images), epoch, seed)``, and ``start=k`` skips the first k batches of that order, so
a run resumed mid-epoch sees exactly the batches it had not seen.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt
import torch

from archspec.memory import device_memory
from archspec.words import plural
from runner.errors import RunError
from runner.outputs import check_input
from runner.packed import CLASS_NAMES, IMAGES, INPUTS, LABELS
from runner.seeds import mixed_seed
from runner.synthetic import synthetic_faces

Progress = Callable[[int, int], None]

# Bytes of stored images read per HDF5 call: large enough that per-call overhead vanishes, small enough
# that the staging buffer stays in memory we have already touched.
_READ_BYTES = 32 << 20
# The seed's per-image layout reports progress this often (each image is a separate gzip decode).
_PROGRESS_EVERY = 256
# How far the search for image sets goes into a file's groups: hard links can make cycles, and a small file
# can nest thousands of groups.
_MAX_GROUP_DEPTH = 32
_MAX_GROUPS = 10_000
# A compressed dataset stores at least this fraction of what it declares (real pixels never compress 1000:1);
# one that stores less has most of its images missing, and would be read as zeros.
_MIN_COMPRESSED_FRACTION = 1 / 1000
# Generated labels and inputs draw from mixed_seed(seed, _GENERATED_STREAM, k): three keys, so they never meet
# an epoch's shuffle, mixed_seed(seed, epoch).
_GENERATED_STREAM = 0xDA7A


@dataclass(frozen=True)
class DataInfo:
    """Where the images came from and how they are stored."""

    source: str  # "synthetic", "random", or the file path
    layout: str  # "packed", "per-image group 'img_align_celeba'", "dataset 'x'", "synthetic", "random"
    count: int
    stored_shape: tuple[int, int, int]  # H, W, C as stored
    value_range: tuple[float, float]  # what to_float scales to: (0.0, 1.0) or (-1.0, 1.0)
    class_names: tuple[str, ...] | None = None  # one per class index, when the images have labels
    input_shape: tuple[int, int, int] | None = None  # C, H, W of ``inputs`` as trained, when loaded


@dataclass(frozen=True, eq=False)  # tensors have no truth value: batches compare by identity
class Batch:
    """One batch with its conditions: uint8 images (B, C, H, W), int64 labels (B,) and uint8 condition images
    (B, Ci, Hi, Wi), each None where the data set has none; all on the images' device."""

    images: torch.Tensor
    labels: torch.Tensor | None
    inputs: torch.Tensor | None


class ImageSet:
    """All images of a data set as one uint8 tensor ``images`` (N, C, H, W), plus where they came from, and
    optionally their class ``labels`` (int64 (N,)) and paired condition images ``inputs`` (uint8 (N, Ci, H, W)).
    """

    def __init__(
        self,
        images: torch.Tensor,
        info: DataInfo,
        labels: torch.Tensor | None = None,
        inputs: torch.Tensor | None = None,
    ) -> None:
        n = int(images.shape[0])
        if labels is not None and tuple(labels.shape) != (n,):
            raise ValueError(f"labels of shape {tuple(labels.shape)} for {n} images; expected ({n},)")
        if inputs is not None and int(inputs.shape[0]) != n:
            raise ValueError(f"{int(inputs.shape[0])} inputs for {n} images")
        self.images = images
        self.info = info
        self.labels = labels
        self.inputs = inputs

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def to(self, device: torch.device | str) -> ImageSet:
        """The same images, labels and inputs on ``device``, copied once (a whole data set fits on most GPUs
        as uint8)."""
        return ImageSet(
            self.images.to(device),
            self.info,
            None if self.labels is None else self.labels.to(device),
            None if self.inputs is None else self.inputs.to(device),
        )

    def num_batches(
        self, batch_size: int, *, drop_last: bool = True, indices: torch.Tensor | None = None
    ) -> int:
        """How many batches ``batches`` yields from the start of a pass with these arguments."""
        count = len(self) if indices is None else int(indices.numel())
        whole, rest = divmod(count, batch_size)
        return whole + (1 if rest and not drop_last else 0)

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool,
        generator: torch.Generator | None,
        drop_last: bool = True,
        start: int = 0,
        indices: torch.Tensor | None = None,
    ) -> Iterator[torch.Tensor]:
        """One pass of uint8 batches (B, C, H, W) on the images' device.

        In stored order, or with ``shuffle`` in the order ``torch.randperm(n, generator=generator)``.
        ``indices`` restricts the pass to those images (a rank's share), taken in the given order or shuffled
        among themselves. ``start`` skips that many batches, to resume mid-epoch. Unshuffled batches over the
        whole set are views of the data: copy before changing them in place.
        """
        for rows in self._rows(batch_size, shuffle, generator, drop_last, start, indices):
            yield _take(self.images, rows)

    def conditioned_batches(
        self,
        batch_size: int,
        *,
        shuffle: bool,
        generator: torch.Generator | None,
        drop_last: bool = True,
        start: int = 0,
        indices: torch.Tensor | None = None,
    ) -> Iterator[Batch]:
        """The pass ``batches`` makes with the same arguments (the same images in the same order), each batch
        with its labels and inputs."""
        for rows in self._rows(batch_size, shuffle, generator, drop_last, start, indices):
            yield Batch(
                _take(self.images, rows),
                None if self.labels is None else _take(self.labels, rows),
                None if self.inputs is None else _take(self.inputs, rows),
            )

    def to_float(self, batch_uint8: torch.Tensor) -> torch.Tensor:
        """A uint8 batch as float32 in this set's value range, on the batch's device."""
        return to_float(batch_uint8, self.info.value_range)

    def _rows(
        self,
        batch_size: int,
        shuffle: bool,
        generator: torch.Generator | None,
        drop_last: bool,
        start: int,
        indices: torch.Tensor | None,
    ) -> Iterator[slice | torch.Tensor]:
        """The rows of each batch of a pass: a slice in stored order, else indices on the images' device."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        order = self._order(shuffle, generator, indices)
        total = self.num_batches(batch_size, drop_last=drop_last, indices=indices)
        for k in range(start, total):
            lo, hi = k * batch_size, (k + 1) * batch_size
            yield slice(lo, hi) if order is None else order[lo:hi]

    def _order(
        self, shuffle: bool, generator: torch.Generator | None, indices: torch.Tensor | None
    ) -> torch.Tensor | None:
        if indices is None and not shuffle:
            return None
        base = torch.arange(len(self)) if indices is None else indices.to("cpu", torch.long)
        if shuffle:
            base = base[torch.randperm(base.numel(), generator=generator)]
        return base.to(self.images.device)


def _take(tensor: torch.Tensor, rows: slice | torch.Tensor) -> torch.Tensor:
    return tensor[rows] if isinstance(rows, slice) else tensor.index_select(0, rows)


def open_images(
    source: str | None,
    image_shape: tuple[int, int, int],
    value_range: tuple[float, float],
    seed: int = 0,
    synthetic_count: int = 2048,
    limit: int | None = None,
    progress: Progress | None = None,
    *,
    labels: int | None = None,
    input_shape: tuple[int, int, int] | None = None,
) -> ImageSet:
    """Load every image of ``source`` into memory as uint8 (N, C, H, W) for ``image_shape`` (C, H, W).

    ``source`` is None or "synthetic" (built-in faces, ``synthetic_count`` of them, drawn from ``seed``),
    "random" (uniform noise for dry runs), or an HDF5 path, optionally ``path.h5:name``. ``limit`` keeps the
    first images (and their labels and inputs) only. ``progress(done, total)`` is called while a file's
    images are read. Every problem with the source raises RunError before anything is trained.

    A file's ``labels`` are always read when it has them. ``labels=K`` gives the generated sources labels
    drawn uniformly from K classes (from ``seed``), named "0".."K-1". ``input_shape`` (C, H, W) is the
    generator's image input: a file's ``inputs`` are read for it (cropped and made RGB as the images are);
    random data gets random inputs and the synthetic faces their own drawing in grey at that size. Without
    ``input_shape`` no inputs are loaded, even from a file that has them.
    """
    channels, height, width = image_shape
    _check_value_range(value_range)
    if limit is not None and limit < 1:
        raise RunError(f"data limit {limit}: must be at least 1")
    if labels is not None and labels < 1:
        raise RunError(f"class count {labels}: must be at least 1")
    if source is None or source in ("synthetic", "random"):
        return _generated(
            source or "synthetic", synthetic_count, limit, image_shape, value_range, seed, labels, input_shape
        )
    path, name = _split_source(source)
    read = _read_file(path, name, (height, width, channels), limit, progress, input_shape)
    info = DataInfo(
        source,
        read.layout,
        len(read.images),
        read.stored_shape,
        value_range,
        read.class_names,
        None if read.inputs is None else input_shape,
    )
    return ImageSet(read.images, info, read.labels, read.inputs)


def to_float(batch_uint8: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    """uint8 pixels as float32 in ``value_range``: x / 255 for (0, 1), x / 127.5 - 1 for (-1, 1)."""
    if batch_uint8.dtype != torch.uint8:
        raise TypeError(f"to_float expects a uint8 batch, got {batch_uint8.dtype}")
    # In place on the one new float tensor: a second batch-sized allocation costs as much as the arithmetic.
    x = batch_uint8.to(torch.float32)
    low, high = value_range
    if (low, high) == (0.0, 1.0):
        return x.div_(255.0)
    if (low, high) == (-1.0, 1.0):
        return x.div_(127.5).sub_(1.0)
    return x.mul_((high - low) / 255.0).add_(low)


def epoch_generator(epoch: int, seed: int) -> torch.Generator:
    """The generator that shuffles ``epoch`` of a run seeded with ``seed``; independent of any other state."""
    return torch.Generator().manual_seed(mixed_seed(seed, epoch))


def epoch_permutation(n: int, epoch: int, seed: int) -> torch.Tensor:
    """The order of ``batches(shuffle=True, generator=epoch_generator(epoch, seed))`` over n images."""
    return torch.randperm(n, generator=epoch_generator(epoch, seed))


def natural_key(name: str) -> tuple[str | int, ...]:
    """Sort key that orders "2.jpg" before "10.jpg": digit runs compare as numbers."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


@dataclass(frozen=True)
class _Candidate:
    """A place in an HDF5 file that may hold the images: a 4-D dataset or a group of 3-D datasets."""

    name: str
    kind: str  # "dataset" or "group"
    count: int  # images in a dataset; members of a group
    uint8: bool

    def describe(self) -> str:
        what = "4-D dataset" if self.kind == "dataset" else "group of per-image datasets"
        return f"'{self.name}' ({what}, {plural(self.count, 'image')})"


@dataclass(frozen=True)
class _Read:
    """What a file gave: images (N, C, H, W), how they were stored, and the conditions found beside them."""

    images: torch.Tensor
    layout: str
    stored_shape: tuple[int, int, int]
    labels: torch.Tensor | None = None
    class_names: tuple[str, ...] | None = None
    inputs: torch.Tensor | None = None


def _check_value_range(value_range: tuple[float, float]) -> None:
    low, high = value_range
    if not low < high:
        raise RunError(f"value range {value_range}: the low end must be below the high end, e.g. (-1.0, 1.0)")


def _generated(
    kind: str,
    total: int,
    limit: int | None,
    image_shape: tuple[int, int, int],
    value_range: tuple[float, float],
    seed: int,
    classes: int | None,
    input_shape: tuple[int, int, int] | None,
) -> ImageSet:
    channels, height, width = image_shape
    count = total if limit is None else min(limit, total)
    images = _generated_images(kind, count, image_shape, seed)
    labels, names = None, None
    if classes is not None:
        # Drawn for the whole set and then cut, so a --limit keeps the first labels of the full set; from a
        # stream of their own, so the images are those of an unlabelled run with the same seed.
        gen = torch.Generator().manual_seed(mixed_seed(seed, _GENERATED_STREAM, 1))
        labels = torch.randint(0, classes, (total,), generator=gen, dtype=torch.int64)[:count].clone()
        names = tuple(str(k) for k in range(classes))
    inputs = None
    if input_shape is not None:
        if kind == "random":
            inputs = _generated_images(kind, count, input_shape, mixed_seed(seed, _GENERATED_STREAM, 2))
        else:
            # The same faces drawn in grey at the input's size: an image-to-image spec learns to colour them.
            grey = _generated_images(kind, count, (1, *input_shape[1:]), seed)
            inputs = grey.expand(-1, input_shape[0], -1, -1).contiguous()
    info = DataInfo(
        kind,
        kind,
        count,
        (height, width, channels),
        value_range,
        names,
        None if inputs is None else input_shape,
    )
    return ImageSet(images, info, labels, inputs)


def _generated_images(kind: str, count: int, shape: tuple[int, int, int], seed: int) -> torch.Tensor:
    channels, height, width = shape
    if kind == "random":
        gen = torch.Generator().manual_seed(seed)
        return torch.randint(0, 256, (count, channels, height, width), generator=gen, dtype=torch.uint8)
    faces = synthetic_faces(count, (height, width, channels), seed)
    return torch.from_numpy(faces).permute(0, 3, 1, 2).contiguous()


def _split_source(source: str) -> tuple[Path, str | None]:
    """``path.h5:name`` to (path, name); a path that exists as written wins over the split."""
    path = Path(source)
    if path.exists() or ":" not in source:
        return path, None
    head, name = source.rsplit(":", 1)
    return Path(head), name.strip("/") or "/"


def _read_file(
    path: Path,
    name: str | None,
    want: tuple[int, int, int],
    limit: int | None,
    progress: Progress | None,
    input_shape: tuple[int, int, int] | None,
) -> _Read:
    check_input(path, "a data set")
    if path.is_dir():
        raise RunError(
            f"{path}: is a folder, not an HDF5 file; pack it with `archspec data pack {path} out.h5`"
        )
    try:
        with h5py.File(path, "r") as f:
            candidate = _choose(path, f, name)
            if candidate.kind == "group":
                return _read_group(path, candidate.name, f[candidate.name], want, limit, progress)
            ds = f[candidate.name]
            images, stored = _read_stacked(path, ds, want, limit, progress)
            layout = "packed" if ds.name == f"/{IMAGES}" else f"dataset '{ds.name.lstrip('/')}'"
            labels, names = _read_labels(path, ds, limit)
            inputs = None if input_shape is None else _read_inputs(path, ds, input_shape, limit)
            return _Read(images, layout, stored, labels, names, inputs)
    except OSError as err:
        # h5py raises OSError for a file that is not HDF5, is truncated, or has a corrupt chunk.
        raise RunError(f"{path}: not a readable HDF5 file: {_one_line(err)}") from err


def _choose(path: Path, f: h5py.File, name: str | None) -> _Candidate:
    found = _candidates(f, "/")
    listing = ", ".join(c.describe() for c in found) or "none"
    if name is not None:
        for c in found:
            if c.name == name:
                return c
        raise RunError(f"{path}:{name}: not a 4-D image dataset or a group of images; candidates: {listing}")
    found = _without_paired_inputs(found)
    if not found:
        raise RunError(
            f"{path}: no image datasets found "
            "(want a 4-D (N, H, W, C) dataset or a group of (H, W, C) datasets)"
        )
    # A lone uint8 candidate wins over float arrays stored beside it (features, masks).
    pixels = [c for c in found if c.uint8]
    if len(found) == 1 or len(pixels) == 1:
        return pixels[0] if pixels else found[0]
    raise RunError(
        f"{path}: several image sets: {listing}; choose one with {path}:NAME, e.g. {path}:{found[0].name}"
    )


def _without_paired_inputs(found: list[_Candidate]) -> list[_Candidate]:
    """The candidates less each ``inputs`` beside an ``images``: a pair's condition images are read with
    their images, never chosen instead of them."""
    folders = {c.name.rpartition("/")[0] for c in found if c.name.rpartition("/")[2] == IMAGES}
    return [
        c for c in found if not (c.name.rpartition("/")[2] == INPUTS and c.name.rpartition("/")[0] in folders)
    ]


def _candidates(
    group: h5py.Group, name: str, seen: set[Any] | None = None, depth: int = 0
) -> list[_Candidate]:
    """4-D datasets and groups of 3-D datasets under ``group``, found without opening every image.

    A group counts as a per-image group as soon as one 3-D dataset turns up, and is not searched further:
    the seed's group has 20,000 members and opening each takes two seconds. Each group is visited once (hard
    links may make cycles), links to other files are not followed, and the search is bounded in depth and size.
    """
    seen = {group.id} if seen is None else seen
    if depth > _MAX_GROUP_DEPTH or len(seen) > _MAX_GROUPS:
        raise RunError(
            f"{group.file.filename}: more than {_MAX_GROUPS:,} groups or {_MAX_GROUP_DEPTH} levels of them "
            f"(at {name}); name the image set with PATH.h5:NAME"
        )
    found: list[_Candidate] = []
    for key in group:
        if isinstance(group.get(key, getlink=True), h5py.ExternalLink):
            continue  # another file, which may be anything: only what this file holds is read
        child = group.get(key)
        child_name = key if name == "/" else f"{name}/{key}"
        if isinstance(child, h5py.Group):
            if child.id in seen:
                continue
            seen.add(child.id)
            found += _candidates(child, child_name, seen, depth + 1)
        elif isinstance(child, h5py.Dataset) and child.ndim == 4:
            found.append(_Candidate(child_name, "dataset", int(child.shape[0]), child.dtype == np.uint8))
        elif isinstance(child, h5py.Dataset) and child.ndim == 3:
            return [*found, _Candidate(name, "group", len(group), child.dtype == np.uint8)]
    return found


def _read_labels(
    path: Path, images: h5py.Dataset, limit: int | None
) -> tuple[torch.Tensor | None, tuple[str, ...] | None]:
    """The ``labels`` beside ``images`` (first ``limit``) and their class names, each checked, or (None, None)."""
    ds = images.parent.get(LABELS)
    if ds is None:
        return None, None
    where = f"{path}:{ds.name.lstrip('/')}"
    if not isinstance(ds, h5py.Dataset) or ds.ndim != 1 or ds.dtype.kind not in "iu":
        what = f"{ds.ndim}-D {ds.dtype}" if isinstance(ds, h5py.Dataset) else "a group"
        raise RunError(f"{where}: is {what}; expected a 1-D integer dataset, one class index per image")
    count = int(images.shape[0])
    if int(ds.shape[0]) != count:
        raise RunError(f"{where}: {ds.shape[0]:,} labels for {count:,} images in {images.name.lstrip('/')}")
    _check_stored(where, path, ds)
    values = np.asarray(ds[()], dtype=np.int64)
    names = _class_names(where, ds, values)
    low, high = (int(values.min()), int(values.max())) if count else (0, 0)
    if low < 0 or high >= len(names):
        bad = low if low < 0 else high
        at = int(np.flatnonzero(values == bad)[0])
        classes = plural(len(names), "class", "classes")
        raise RunError(f"{where}: label {bad} at image {at} is outside the {classes} 0..{len(names) - 1}")
    kept = values if limit is None else values[:limit]
    return torch.from_numpy(np.ascontiguousarray(kept)), names


def _class_names(where: str, ds: h5py.Dataset, values: npt.NDArray[np.int64]) -> tuple[str, ...]:
    """The ``class_names`` attribute as strings; without one, "0".."max label" (a file packed by hand)."""
    raw = ds.attrs.get(CLASS_NAMES)
    if raw is None:
        return tuple(str(k) for k in range(int(values.max()) + 1 if values.size else 0))
    names = np.atleast_1d(np.asarray(raw))
    if names.ndim != 1 or names.size == 0:
        raise RunError(f"{where}: attribute '{CLASS_NAMES}' is {names.shape}; expected a list of class names")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist())


def _read_inputs(
    path: Path, images: h5py.Dataset, input_shape: tuple[int, int, int], limit: int | None
) -> torch.Tensor | None:
    """The ``inputs`` beside ``images`` for the generator's ``input_shape`` (C, H, W), or None."""
    ds = images.parent.get(INPUTS)
    if ds is None:
        return None
    where = f"{path}:{ds.name.lstrip('/')}"
    if not isinstance(ds, h5py.Dataset) or ds.ndim != 4:
        raise RunError(f"{where}: expected a 4-D (N, H, W, C) uint8 dataset of condition images")
    if int(ds.shape[0]) != int(images.shape[0]):
        raise RunError(
            f"{where}: {ds.shape[0]:,} condition images for {images.shape[0]:,} images in "
            f"{images.name.lstrip('/')}; each image needs its pair"
        )
    channels, height, width = input_shape
    return _read_stacked(path, ds, (height, width, channels), limit, None, role="input")[0]


def _read_stacked(
    path: Path,
    ds: h5py.Dataset,
    want: tuple[int, int, int],
    limit: int | None,
    progress: Progress | None,
    role: str = "image",
) -> tuple[torch.Tensor, tuple[int, int, int]]:
    where = f"{path}:{ds.name.lstrip('/')}"
    stored = (int(ds.shape[1]), int(ds.shape[2]), int(ds.shape[3]))
    _check_images(where, ds.dtype, stored, want, role)
    count = int(ds.shape[0]) if limit is None else min(limit, int(ds.shape[0]))
    if count == 0:
        raise RunError(f"{where}: the dataset holds 0 images")
    _check_stored(where, path, ds)
    (height, width, channels), (top, left) = want, _crop_start(stored, want)
    _check_fits_in_memory(where, count, want)
    out = torch.empty((count, channels, height, width), dtype=torch.uint8)
    step = _read_step(ds, stored)
    # A reused staging block, then one permuting copy: each byte of the big tensor is written once.
    staging = np.empty((min(step, count), height, width, stored[2]), dtype=np.uint8)
    for lo in range(0, count, step):
        hi = min(count, lo + step)
        ds.read_direct(staging, np.s_[lo:hi, top : top + height, left : left + width, :], np.s_[0 : hi - lo])
        block = torch.from_numpy(staging[: hi - lo]).permute(0, 3, 1, 2)
        out[lo:hi].copy_(block.expand(-1, channels, -1, -1))
        if progress is not None:
            progress(hi, count)
    return out, stored


def _read_group(
    path: Path,
    name: str,
    group: h5py.Group,
    want: tuple[int, int, int],
    limit: int | None,
    progress: Progress | None,
) -> _Read:
    keys = sorted(group, key=natural_key)
    total = len(keys) if limit is None else min(limit, len(keys))
    height, width, channels = want
    _check_fits_in_memory(f"{path}:{_label(name)}", total, want)
    out = torch.empty((total, channels, height, width), dtype=torch.uint8)
    stored: tuple[int, int, int] | None = None
    count = 0
    for key in keys:
        if count == total:
            break
        ds = group.get(key)
        if not (isinstance(ds, h5py.Dataset) and ds.ndim == 3):
            continue  # other members (label tables, subgroups) are not images
        shape = (int(ds.shape[0]), int(ds.shape[1]), int(ds.shape[2]))
        _check_images(f"{path}:{_label(name)}/{key}", ds.dtype, shape, want)
        _check_stored(f"{path}:{_label(name)}/{key}", path, ds)
        top, left = _crop_start(shape, want)
        img = torch.from_numpy(ds[top : top + height, left : left + width, :]).permute(2, 0, 1)
        out[count].copy_(img.expand(channels, -1, -1))
        stored = stored or shape
        count += 1
        if progress is not None and (count % _PROGRESS_EVERY == 0 or count == total):
            progress(count, total)
    assert stored is not None, "a group is a candidate only once a 3-D dataset was seen in it"
    return _Read(out[:count], f"per-image group '{_label(name)}'", stored)


def _label(name: str) -> str:
    return "/" if name == "/" else name.strip("/")


def _check_images(
    where: str,
    dtype: np.dtype[np.generic],
    stored: tuple[int, int, int],
    want: tuple[int, int, int],
    role: str = "image",
) -> None:
    """``role`` "image" checks against the spec's image, "input" against the generator's image input."""
    (s_h, s_w, s_c), (w_h, w_w, w_c) = stored, want
    if dtype != np.uint8:
        raise RunError(
            f"{where}: holds {dtype} data; expected uint8 pixels 0..255 (repack with `archspec data pack`)"
        )
    if s_c not in (1, 3):
        raise RunError(
            f"{where}: images of shape {stored} (H, W, C) have {s_c} channels; expected 1 or 3 last"
        )
    if s_c == 3 and w_c != 3 and role == "input":
        raise RunError(
            f"{where}: condition images have 3 channels but the generator's image input has {w_c}"
            + ("; repack them in grey with `archspec data pack ... --input-channels 1`" if w_c == 1 else "")
        )
    if s_c == 3 and w_c != 3:
        raise RunError(
            f"{where}: images have 3 channels but the spec's image has {w_c}; set image: [3, {w_h}, {w_w}]"
            + (", or repack in grey with `archspec data pack SRC OUT.h5 --channels 1`" if w_c == 1 else "")
        )
    if s_h < w_h or s_w < w_w:
        raise RunError(
            f"{where}: stored images are {s_h}x{s_w} (HxW), smaller than the {w_h}x{w_w} the spec needs; "
            f"repack with `archspec data pack SRC OUT.h5 --size {max(w_h, w_w)} --resize`"
        )


def _check_stored(where: str, path: Path, ds: h5py.Dataset) -> None:
    """RunError if a dataset declares more than the file stores: HDF5 reads what was never written as zeros,
    so a 1 kB file can declare a billion images, or images of 100000x100000 with nothing behind them."""
    declared = int(ds.size) * ds.dtype.itemsize
    stored = int(ds.id.get_storage_size())
    file_size = path.stat().st_size
    compressed = ds.id.get_create_plist().get_nfilters() > 0
    short = stored < declared * _MIN_COMPRESSED_FRACTION if compressed else stored < declared
    if short or stored > file_size:
        raise RunError(
            f"{where}: declares {tuple(ds.shape)} {ds.dtype} ({_gb(declared)}), but stores {stored:,} bytes "
            f"in a file of {file_size:,}: most of its images are missing (a damaged or unfinished file?)"
        )


def _check_fits_in_memory(where: str, count: int, want: tuple[int, int, int]) -> None:
    """RunError before allocating ``count`` images of ``want`` (H, W, C) if they exceed the machine's memory."""
    need = count * want[0] * want[1] * want[2]
    have = device_memory(torch.device("cpu"))
    if need > have:
        raise RunError(
            f"{where}: {count:,} images of {want[0]}x{want[1]}x{want[2]} take {_gb(need)} in memory, more than "
            f"this machine's {_gb(have)}; use --limit N"
        )


def _gb(n: int) -> str:
    return f"{n / 1e9:,.1f} GB"


def _crop_start(stored: tuple[int, int, int], want: tuple[int, int, int]) -> tuple[int, int]:
    return stored[0] // 2 - want[0] // 2, stored[1] // 2 - want[1] // 2


def _read_step(ds: h5py.Dataset, stored: tuple[int, int, int]) -> int:
    """Images per read: about _READ_BYTES, in whole chunks so no chunk is decoded twice."""
    per_chunk = int(ds.chunks[0]) if ds.chunks is not None else 1
    chunks = max(1, _READ_BYTES // (per_chunk * stored[0] * stored[1] * stored[2]))
    return chunks * per_chunk


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__
