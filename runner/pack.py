"""``archspec data pack``: decode a folder or zip of images, or a NumPy ``.npy`` array of them, into one HDF5
dataset that training reads fast.

The output holds one uint8 dataset ``images`` of shape (N, S, S, C), C = 3 (RGB) or 1 (``channels=1``, grey),
chunked in whole images, so the reader can pull large contiguous slices; the seed's one-dataset-per-image layout
has to decode every image separately. A ``.npy`` holds (N, H, W), (N, H, W, 1) or (N, H, W, 3) images, uint8
or floats in [0, 1] (scikit-image's ``lfw_subset.npy``); floats >= 0 beyond 1 are divided by their maximum
(scikit-learn's digits hold 0..16).

Beside it, optionally: ``labels`` int64 (N,) with the attribute ``class_names`` (runner.pack_labels says
where they come from), and for paired images ``inputs`` uint8 (N, S, S, Ci), the condition image of each
pair (pix2pix's A), whose target (its B) is the same row of ``images``. A pair comes from one file holding A
and B side by side (pix2pix's datasets), or from a second folder, zip or .npy matched by file name (by order
for a .npy).
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import numpy.typing as npt
from PIL import Image

from archspec.words import plural
from runner.errors import RunError
from runner.outputs import check_input, check_output
from runner.pack_labels import Labels, LabelSource, read_labels
from runner.packed import CLASS_NAMES, FORMAT_VERSION, IMAGES, INPUTS, LABELS

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
# Images written per HDF5 call, and the chunk height: 64 RGB images of 128x128 are a 3 MB chunk.
BLOCK = 64
# A bound on one image file's bytes (a zip entry's inflated size is checked before it is inflated) and on the
# crop size, and the bytes of one block of crops: so nothing a file declares is allocated unchecked.
MAX_IMAGE_BYTES = 64 << 20
MAX_SIZE = 8192
_BLOCK_BYTES = 256 << 20
# Pillow decodes with the GIL released, so a few threads decode JPEGs in parallel.
DECODE_THREADS = min(4, os.cpu_count() or 1)

Progress = Callable[[int, int], None]

# What Pillow raises for a file it cannot read: UnidentifiedImageError and truncation are OSErrors, a broken
# PNG chunk is a SyntaxError, a bad mode a ValueError, an enormous image a DecompressionBombError.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)
_BUFFER_REPR = re.compile(r"\s*<_io\.BytesIO object at 0x[0-9a-fA-F]+>")


DIRECTIONS = ("AtoB", "BtoA")


@dataclass(frozen=True)
class Pairs:
    """Where each image's condition image comes from: ``inputs``, a second folder, zip or .npy matched to the
    source by relative file name (by order when either is a .npy), or with ``side_by_side`` the same file, A
    left and B right (pix2pix's layout; ``direction`` "BtoA" makes the right half the input). The condition
    images have ``channels`` channels (None: as many as the images)."""

    inputs: Path | None = None
    side_by_side: bool = False
    direction: str = "AtoB"
    channels: int | None = None

    def describe(self) -> str:
        if self.side_by_side:
            return f"side by side, {self.direction}"
        return f"from {self.inputs}"


@dataclass(frozen=True)
class PackReport:
    """What ``pack_images`` wrote: the image count, the dataset's shape (N, S, S, C), the output path and how
    each image was fitted to S×S (``centre-cropped`` or ``resized (shorter side) and centre-cropped``); the
    class names when it wrote labels, the shape of ``inputs`` when it wrote pairs, and notes (how float
    pixels were scaled)."""

    count: int
    shape: tuple[int, int, int, int]
    path: Path
    fitted: str = "centre-cropped"
    class_names: tuple[str, ...] | None = None
    class_counts: tuple[int, ...] | None = None
    input_shape: tuple[int, int, int, int] | None = None
    notes: tuple[str, ...] = ()


def pack_images(
    src: Path,
    out: Path,
    size: int,
    limit: int | None,
    resize: bool,
    progress: Progress | None = None,
    *,
    overwrite: bool = False,
    compression: str | None = None,
    channels: int = 3,
    labels: LabelSource | None = None,
    pairs: Pairs | None = None,
) -> PackReport:
    """Decode the images under ``src`` (a folder, searched recursively, a .zip, or a .npy array) into ``out``.

    Files are taken in sorted path order (a .npy's images in its order), the first ``limit`` of them when given.
    Each is converted to RGB (or to grey with ``channels=1``) and centre-cropped to ``size`` x ``size`` with the
    seed's rule (start = dim // 2 - size // 2 on each axis); with ``resize`` the shorter side is first scaled to
    ``size`` (bicubic), the DCGAN recipe. ``labels`` adds a ``labels`` dataset, ``pairs`` an ``inputs`` dataset
    of condition images fitted the same way (each half of a side-by-side file is fitted on its own). The file is
    written to a temporary name beside ``out`` and renamed into place only when complete, and an existing
    ``out`` is replaced only with ``overwrite``. ``progress(done, total)`` is called after each block.
    ``compression`` is passed to h5py ("lzf", "gzip" or None); None reads fastest.
    """
    _check_arguments(src, out, size, limit, overwrite)
    for flag, value in (("--channels", channels), ("--input-channels", pairs and pairs.channels)):
        if value is not None and value not in (1, 3):
            raise RunError(f"{flag} {value}: 1 (grey) or 3 (RGB)")
    fit = _Fit(size, resize, "L" if channels == 1 else "RGB")
    with _open_source(src) as source, _open_pairs(src, source, pairs, fit) as plan:
        names = source.names[:limit] if limit is not None else source.names
        if not names:
            raise RunError(
                f"{src}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))}, or a .npy)"
            )
        classes = None
        if labels is not None:
            classes = read_labels(labels, src, source.names, len(names), source.is_array)
        shape = (len(names), size, size, channels)
        tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
        try:
            _write_file(tmp, plan, names, classes, progress, compression)
            os.replace(tmp, out)
        except OSError as err:
            # Decoding and reading errors are RunErrors already; an OSError here is the output side.
            raise RunError(f"{out}: cannot write: {_one_line(err)}") from err
        finally:
            tmp.unlink(missing_ok=True)
    return PackReport(
        count=len(names),
        shape=shape,
        path=out,
        fitted=fit.describe(),
        class_names=None if classes is None else classes.class_names,
        class_counts=None if classes is None else _counts(classes),
        input_shape=None if plan.input_fit is None else (len(names), size, size, len(plan.input_fit.mode)),
        notes=tuple(note for note in (source.note, plan.inputs and plan.inputs.note) if note),
    )


def centre_crop_box(height: int, width: int, size: int) -> tuple[int, int]:
    """(top, left) of the seed's centre crop: start = dim // 2 - size // 2 on each axis."""
    return height // 2 - size // 2, width // 2 - size // 2


def resized_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) with the shorter side scaled to ``size``; the longer truncates, as torchvision does."""
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


@dataclass(frozen=True)
class _Fit:
    """How each image becomes one of the output's: PIL mode ("RGB" or "L"), then ``size`` × ``size``."""

    size: int
    resize: bool
    mode: str

    def describe(self) -> str:
        how = "resized (shorter side) and centre-cropped" if self.resize else "centre-cropped"
        return f"{how} to {self.size}x{self.size}"


# What a source hands the decoder: a file's bytes, or one image of a .npy as uint8 (H, W) or (H, W, 3).
Raw = bytes | npt.NDArray[np.uint8]


class _Source:
    """The image files of a folder or a zip, by sorted name, or the images of a .npy (named by index), and a
    way to read one."""

    def __init__(
        self,
        root: Path,
        names: list[str],
        archive: zipfile.ZipFile | None,
        array: npt.NDArray[np.generic] | None = None,
        scale: float = 255.0,
        note: str = "",
    ) -> None:
        self.root = root
        self.names = names
        self._archive = archive
        self._array = array
        self._scale = scale  # what a float pixel is multiplied by to make 0..255
        self.note = note  # how the pixels were scaled, where the report should say so

    @property
    def is_array(self) -> bool:
        """Whether this is a .npy, whose images are named by index."""
        return self._array is not None

    def read(self, name: str) -> Raw:
        """One image of an array, or the bytes of one image file, refused past MAX_IMAGE_BYTES before they are
        read (or inflated)."""
        if self._array is not None:
            return _uint8(self._array[int(name)], self._scale)
        try:
            if self._archive is not None:
                size = self._archive.getinfo(name).file_size
                self._check_size(name, size)
                with self._archive.open(name) as f:
                    data = f.read(MAX_IMAGE_BYTES + 1)
            else:
                with open(self.root / name, "rb") as f:
                    self._check_size(name, os.fstat(f.fileno()).st_size)
                    data = f.read(MAX_IMAGE_BYTES + 1)
        except (OSError, zipfile.BadZipFile) as err:
            raise RunError(f"{self.where(name)}: cannot read: {_one_line(err)}") from err
        self._check_size(name, len(data))
        return data

    def _check_size(self, name: str, size: int) -> None:
        if size > MAX_IMAGE_BYTES:
            raise RunError(
                f"{self.where(name)}: {size:,} bytes, more than an image file may have ({MAX_IMAGE_BYTES:,})"
            )

    def where(self, name: str) -> str:
        if self._array is not None:
            return f"{self.root}[{name}]"
        return f"{self.root}:{name}" if self._archive is not None else str(self.root / name)

    def __enter__(self) -> _Source:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._archive is not None:
            self._archive.close()


def _check_arguments(src: Path, out: Path, size: int, limit: int | None, overwrite: bool) -> None:
    if size < 1:
        raise RunError(f"--size {size}: must be a positive number of pixels")
    if size > MAX_SIZE:
        raise RunError(f"--size {size}: at most {MAX_SIZE} pixels (a spec's image is far smaller)")
    if limit is not None and limit < 1:
        raise RunError(f"--limit {limit}: must be at least 1")
    if not src.exists():
        raise RunError(f"{src}: no such file or folder")
    check_input(src, "an image folder or zip")
    if out.exists() and not out.is_dir():
        check_output(out, True, "OUT.h5")  # a device or FIFO is never replaced, even with --force
    if out.is_dir():
        raise RunError(f"{out}: is a folder; give the path of the .h5 file to write")
    if out.exists() and not overwrite:
        raise RunError(f"{out}: already exists; pass --force to replace it")
    if not out.parent.is_dir():
        raise RunError(f"{out.parent}: no such folder to write {out.name} into")


def _open_source(src: Path) -> _Source:
    if src.suffix.lower() == ".npy" and src.is_file():
        return _npy_source(src)
    if src.is_dir():
        files = (p for p in src.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        return _Source(src, sorted(p.relative_to(src).as_posix() for p in files), None)
    try:
        archive = zipfile.ZipFile(src)
    except (OSError, zipfile.BadZipFile) as err:
        raise RunError(f"{src}: not a folder or a readable .zip file: {_one_line(err)}") from err
    return _Source(src, sorted(_zip_images(archive)), archive)


class _Plan:
    """How each output row is made: the source's image, and with pairs its condition image, taken from the
    same file (side by side) or from a second source matched by name or order. A context manager that
    closes the second source."""

    def __init__(
        self,
        source: _Source,
        fit: _Fit,
        pairs: Pairs | None = None,
        inputs: _Source | None = None,
        matched: dict[str, str] | None = None,
    ) -> None:
        self.source = source
        self.fit = fit
        self.pairs = pairs
        self.inputs = inputs
        self._matched = matched or {}  # a source name to its pair's name in ``inputs``
        channels = (
            fit.mode if pairs is None or pairs.channels is None else "L" if pairs.channels == 1 else "RGB"
        )
        self.input_fit = None if pairs is None else _Fit(fit.size, fit.resize, channels)

    def read(self, name: str) -> tuple[Raw, Raw | None]:
        """The bytes (or array) of an image and of its pair's condition image, when it comes from elsewhere."""
        other = None if self.inputs is None else self.inputs.read(self._matched[name])
        return self.source.read(name), other

    def decode(
        self, name: str, data: tuple[Raw, Raw | None]
    ) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8] | None]:
        """An image fitted to the output, and its condition image (None without pairs)."""
        where = self.source.where(name)
        if self.pairs is None or self.input_fit is None:
            return _decode(where, data[0], self.fit), None
        image = _image(where, data[0])
        if self.pairs.side_by_side:
            a, b = _halves(where, image)
            if self.pairs.direction == "BtoA":
                a, b = b, a
        else:
            assert self.inputs is not None and data[1] is not None, "a pair from elsewhere was read with it"
            a_where = self.inputs.where(self._matched[name])
            a, b = _image(a_where, data[1]), image
            if a.size != b.size:
                raise RunError(
                    f"{where}: {b.height}x{b.width} (HxW), but its pair {a_where} is {a.height}x{a.width}; "
                    "the two images of a pair must have one size"
                )
        target = _fitted(where, b.convert(self.fit.mode), self.fit)
        return target, _fitted(where, a.convert(self.input_fit.mode), self.input_fit)

    def __enter__(self) -> _Plan:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.inputs is not None:
            self.inputs.__exit__(*exc)


def _open_pairs(src: Path, source: _Source, pairs: Pairs | None, fit: _Fit) -> _Plan:
    """The plan for ``source`` and ``pairs``; a second source is opened, and its names matched, here."""
    if pairs is None:
        return _Plan(source, fit)
    if pairs.direction not in DIRECTIONS:
        raise RunError(f"--direction {pairs.direction}: AtoB (the left half is the input) or BtoA")
    if pairs.side_by_side == (pairs.inputs is not None):
        raise RunError("pairs: give either --side-by-side (A|B in one file) or --inputs A_SRC, not both")
    if pairs.inputs is None:
        return _Plan(source, fit, pairs)
    if pairs.direction != "AtoB":
        raise RunError(
            "--direction: with --inputs, SRC holds the targets (B) and A_SRC the inputs; swap them instead"
        )
    if not pairs.inputs.exists():
        raise RunError(f"--inputs {pairs.inputs}: no such file or folder")
    check_input(pairs.inputs, "a folder, zip or .npy of condition images")
    inputs = _open_source(pairs.inputs)
    try:
        matched = _match(src, source, pairs.inputs, inputs)
    except RunError:
        inputs.__exit__(None, None, None)
        raise
    return _Plan(source, fit, pairs, inputs, matched)


def _match(src: Path, source: _Source, other_root: Path, other: _Source) -> dict[str, str]:
    """Each of ``source``'s names to its pair in ``other``: the same relative name, or by order when either
    is a .npy; RunError naming the first image without a pair."""
    if source.is_array or other.is_array:
        if len(source.names) != len(other.names):
            raise RunError(
                f"{other_root}: {plural(len(other.names), 'condition image')} for "
                f"{plural(len(source.names), 'image')} in {src}; pairs are matched by order"
            )
        return dict(zip(source.names, other.names, strict=True))
    mine, theirs = set(source.names), set(other.names)
    alone = [name for name in source.names if name not in theirs]
    if alone:
        raise RunError(
            f"{other.where(alone[0])}: no such file to pair with {source.where(alone[0])} ({len(alone)} unpaired)"
        )
    extra = [name for name in other.names if name not in mine]
    if extra:
        raise RunError(
            f"{source.where(extra[0])}: no such file to pair with {other.where(extra[0])} ({len(extra)} unpaired)"
        )
    return {name: name for name in source.names}


def _halves(where: str, image: Image.Image) -> tuple[Image.Image, Image.Image]:
    """The left and right halves of a side-by-side pair (pix2pix's A|B)."""
    if image.width % 2:
        raise RunError(
            f"{where}: {image.width} pixels wide, an odd width that does not split into two halves A|B "
            "(--side-by-side wants A and B of one size side by side)"
        )
    half = image.width // 2
    return image.crop((0, 0, half, image.height)), image.crop((half, 0, image.width, image.height))


def _counts(labels: Labels) -> tuple[int, ...]:
    return tuple(int(n) for n in np.bincount(labels.values, minlength=len(labels.class_names)))


def _npy_source(src: Path) -> _Source:
    """A .npy of images, memory-mapped (never pickled objects): (N, H, W), (N, H, W, 1) or (N, H, W, 3)."""
    try:
        array = np.load(src, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise RunError(f"{src}: not a readable .npy array: {_one_line(err)}") from err
    shape = tuple(array.shape)
    if array.ndim == 4 and shape[3] == 1:
        array = array[..., 0]
    if not (array.ndim == 3 or (array.ndim == 4 and shape[3] == 3)):
        raise RunError(
            f"{src}: an array of shape {shape}; expected images (N, H, W), (N, H, W, 1) or (N, H, W, 3)"
        )
    if array.dtype != np.uint8 and array.dtype.kind != "f":
        raise RunError(f"{src}: holds {array.dtype}; expected uint8 pixels 0..255 or floats >= 0")
    names = [str(i) for i in range(shape[0])]
    if array.dtype.kind != "f" or not array.size:
        return _Source(src, names, None, array)
    low, high = float(array.min()), float(array.max())
    if not (np.isfinite(low) and np.isfinite(high) and low >= 0.0):
        raise RunError(
            f"{src}: float pixels from {low:g} to {high:g}; expected floats >= 0 "
            "(in [0, 1], or 0..max as scikit-learn's digits), or uint8 0..255"
        )
    if high <= 1.0:
        return _Source(src, names, None, array)
    # Floats past 1 are not [0, 1] pixels: the array's own maximum is its white (the digits' 16).
    return _Source(src, names, None, array, 255.0 / high, f"float pixels 0..{high:g} scaled to 0..255")


def _uint8(image: npt.NDArray[np.generic], scale: float = 255.0) -> npt.NDArray[np.uint8]:
    """One image of a .npy as uint8: floats multiplied by ``scale`` (255 for [0, 1]) and rounded."""
    if image.dtype == np.uint8:
        return np.ascontiguousarray(image, dtype=np.uint8)
    return np.rint(np.asarray(image, dtype=np.float64) * scale).astype(np.uint8)


def _zip_images(archive: zipfile.ZipFile) -> Iterator[str]:
    for info in archive.infolist():
        # macOS zips carry "__MACOSX/._x.jpg" resource forks that are not images.
        if info.is_dir() or info.filename.startswith("__MACOSX/"):
            continue
        if Path(info.filename).suffix.lower() in IMAGE_SUFFIXES:
            yield info.filename


def _write_file(
    tmp: Path,
    plan: _Plan,
    names: Sequence[str],
    labels: Labels | None,
    progress: Progress | None,
    compression: str | None,
) -> None:
    fit = plan.fit
    crop = f"resize+center {fit.size}x{fit.size}" if fit.resize else f"center {fit.size}x{fit.size}"
    with h5py.File(tmp, "w") as f:
        ds = _image_dataset(f, IMAGES, len(names), fit, compression)
        ds.attrs.update(
            source=str(plan.source.root), crop=crop, count=len(names), format_version=FORMAT_VERSION
        )
        inputs = None
        if plan.input_fit is not None and plan.pairs is not None:
            inputs = _image_dataset(f, INPUTS, len(names), plan.input_fit, compression)
            inputs.attrs.update(source=plan.pairs.describe(), crop=crop)
        if labels is not None:
            _write_labels(f, labels)
        _write_blocks(ds, inputs, plan, names, progress)


def _image_dataset(f: h5py.File, name: str, count: int, fit: _Fit, compression: str | None) -> h5py.Dataset:
    """An uninitialised (count, S, S, C) uint8 dataset, chunked in whole images."""
    size, channels = fit.size, len(fit.mode)
    return f.create_dataset(
        name,
        shape=(count, size, size, channels),
        dtype=np.uint8,
        chunks=(_block_images(count, size), size, size, channels),
        compression=compression,
    )


def _write_labels(f: h5py.File, labels: Labels) -> None:
    ds = f.create_dataset(LABELS, data=labels.values.astype(np.int64))
    ds.attrs[CLASS_NAMES] = np.array(labels.class_names, dtype=h5py.string_dtype())
    ds.attrs["source"] = labels.source


def _write_blocks(
    ds: h5py.Dataset,
    inputs: h5py.Dataset | None,
    plan: _Plan,
    names: Sequence[str],
    progress: Progress | None,
) -> None:
    per_block = _block_images(len(names), plan.fit.size)
    block = np.empty((per_block, *ds.shape[1:]), dtype=np.uint8)
    input_block = None if inputs is None else np.empty((per_block, *inputs.shape[1:]), dtype=np.uint8)
    with ThreadPoolExecutor(DECODE_THREADS) as pool:
        for lo in range(0, len(names), per_block):
            chunk = names[lo : lo + per_block]
            # Bytes are read on this thread (a ZipFile is not safe to share); only decoding is parallel.
            data = [(name, plan.read(name)) for name in chunk]
            crops = pool.map(lambda item: plan.decode(item[0], item[1]), data)
            for i, (crop, condition) in enumerate(crops):
                block[i] = crop.reshape(block.shape[1:])
                if input_block is not None and condition is not None:
                    input_block[i] = condition.reshape(input_block.shape[1:])
            ds[lo : lo + len(chunk)] = block[: len(chunk)]
            if inputs is not None and input_block is not None:
                inputs[lo : lo + len(chunk)] = input_block[: len(chunk)]
            if progress is not None:
                progress(lo + len(chunk), len(names))


def _block_images(count: int, size: int) -> int:
    """Images per block (and per chunk): BLOCK, fewer when that many crops of ``size`` exceed _BLOCK_BYTES."""
    return max(1, min(BLOCK, count, _BLOCK_BYTES // (size * size * 3)))


def _decode(where: str, data: Raw, fit: _Fit) -> npt.NDArray[np.uint8]:
    return _fitted(where, _image(where, data, fit.mode), fit)


def _image(where: str, data: Raw, mode: str | None = None) -> Image.Image:
    """A file's bytes, or an array's image, as a loaded PIL image in ``mode`` (None: its own)."""
    if isinstance(data, np.ndarray):
        return Image.fromarray(data) if mode is None else Image.fromarray(data).convert(mode)
    try:
        with Image.open(io.BytesIO(data)) as img:
            # convert() and copy() both load the pixels into an image that outlives the file.
            return img.copy() if mode is None else img.convert(mode)
    except _DECODE_ERRORS as err:
        raise RunError(f"{where}: not a readable image (PIL: {_pil_reason(err)})") from err


def _fitted(where: str, rgb: Image.Image, fit: _Fit) -> npt.NDArray[np.uint8]:
    """An image already in ``fit.mode``, resized (with ``fit.resize``) and centre-cropped to its size."""
    size, resize = fit.size, fit.resize
    if resize:
        rgb = rgb.resize(resized_size(rgb.width, rgb.height, size), Image.Resampling.BICUBIC)
    elif rgb.width < size or rgb.height < size:
        raise RunError(
            f"{where}: image is {rgb.height}x{rgb.width} (HxW), smaller than the {size}x{size} crop; "
            f"pass --resize to scale it first or use --size {min(rgb.height, rgb.width)}"
        )
    top, left = centre_crop_box(rgb.height, rgb.width, size)
    return np.asarray(rgb)[top : top + size, left : left + size]


def _pil_reason(err: BaseException) -> str:
    # Pillow names the stream it was given, which here is the repr of an in-memory buffer: the file is named
    # in front of the message already.
    return _BUFFER_REPR.sub("", _one_line(err)) or type(err).__name__


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__
