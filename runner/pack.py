"""``archspec data pack``: decode a folder or zip of images, or a NumPy ``.npy`` array of them, into one HDF5
dataset that training reads fast.

The output holds one uint8 dataset ``images`` of shape (N, S, S, C), C = 3 (RGB) or 1 (``channels=1``, grey),
chunked in whole images, so the reader can pull large contiguous slices; the seed's one-dataset-per-image layout
has to decode every image separately. A ``.npy`` holds (N, H, W), (N, H, W, 1) or (N, H, W, 3) images, uint8
or floats in [0, 1] (scikit-image's ``lfw_subset.npy``).
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

from runner.errors import RunError
from runner.outputs import check_input, check_output

FORMAT_VERSION = 1
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


@dataclass(frozen=True)
class PackReport:
    """What ``pack_images`` wrote: the image count, the dataset's shape (N, S, S, C), the output path and how
    each image was fitted to S×S (``centre-cropped`` or ``resized (shorter side) and centre-cropped``)."""

    count: int
    shape: tuple[int, int, int, int]
    path: Path
    fitted: str = "centre-cropped"


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
) -> PackReport:
    """Decode the images under ``src`` (a folder, searched recursively, a .zip, or a .npy array) into ``out``.

    Files are taken in sorted path order (a .npy's images in its order), the first ``limit`` of them when given.
    Each is converted to RGB (or to grey with ``channels=1``) and centre-cropped to ``size`` x ``size`` with the seed's rule (start = dim // 2 - size // 2 on each axis);
    with ``resize`` the shorter side is first scaled to ``size`` (bicubic), the DCGAN recipe. The file is
    written to a temporary name beside ``out`` and renamed into place only when complete, and an existing
    ``out`` is replaced only with ``overwrite``. ``progress(done, total)`` is called after each block.
    ``compression`` is passed to h5py ("lzf", "gzip" or None); None reads fastest.
    """
    _check_arguments(src, out, size, limit, overwrite)
    if channels not in (1, 3):
        raise RunError(f"--channels {channels}: 1 (grey) or 3 (RGB)")
    fit = _Fit(size, resize, "L" if channels == 1 else "RGB")
    with _open_source(src) as source:
        names = source.names[:limit] if limit is not None else source.names
        if not names:
            raise RunError(
                f"{src}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))}, or a .npy)"
            )
        shape = (len(names), size, size, channels)
        tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
        try:
            _write_file(tmp, source, names, fit, progress, compression)
            os.replace(tmp, out)
        except OSError as err:
            # Decoding and reading errors are RunErrors already; an OSError here is the output side.
            raise RunError(f"{out}: cannot write: {_one_line(err)}") from err
        finally:
            tmp.unlink(missing_ok=True)
    return PackReport(count=len(names), shape=shape, path=out, fitted=fit.describe())


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
    ) -> None:
        self.root = root
        self.names = names
        self._archive = archive
        self._array = array

    def read(self, name: str) -> Raw:
        """One image of an array, or the bytes of one image file, refused past MAX_IMAGE_BYTES before they are
        read (or inflated)."""
        if self._array is not None:
            return _uint8(self._array[int(name)])
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
        raise RunError(f"{src}: holds {array.dtype}; expected uint8 pixels 0..255 or floats in [0, 1]")
    if (
        array.dtype.kind == "f"
        and array.size
        and not (float(array.min()) >= 0.0 and float(array.max()) <= 1.0)
    ):
        raise RunError(
            f"{src}: float pixels from {float(array.min()):g} to {float(array.max()):g}; expected [0, 1] "
            "(scale them, or store uint8 0..255)"
        )
    return _Source(src, [str(i) for i in range(shape[0])], None, array)


def _uint8(image: npt.NDArray[np.generic]) -> npt.NDArray[np.uint8]:
    """One image of a .npy as uint8: floats in [0, 1] scaled by 255 and rounded."""
    if image.dtype == np.uint8:
        return np.ascontiguousarray(image, dtype=np.uint8)
    return np.rint(np.asarray(image, dtype=np.float64) * 255.0).astype(np.uint8)


def _zip_images(archive: zipfile.ZipFile) -> Iterator[str]:
    for info in archive.infolist():
        # macOS zips carry "__MACOSX/._x.jpg" resource forks that are not images.
        if info.is_dir() or info.filename.startswith("__MACOSX/"):
            continue
        if Path(info.filename).suffix.lower() in IMAGE_SUFFIXES:
            yield info.filename


def _write_file(
    tmp: Path,
    source: _Source,
    names: Sequence[str],
    fit: _Fit,
    progress: Progress | None,
    compression: str | None,
) -> None:
    size, channels = fit.size, len(fit.mode)
    crop = f"resize+center {size}x{size}" if fit.resize else f"center {size}x{size}"
    with h5py.File(tmp, "w") as f:
        ds = f.create_dataset(
            "images",
            shape=(len(names), size, size, channels),
            dtype=np.uint8,
            chunks=(_block_images(len(names), size), size, size, channels),
            compression=compression,
        )
        ds.attrs.update(source=str(source.root), crop=crop, count=len(names), format_version=FORMAT_VERSION)
        _write_blocks(ds, source, names, fit, progress)


def _write_blocks(
    ds: h5py.Dataset,
    source: _Source,
    names: Sequence[str],
    fit: _Fit,
    progress: Progress | None,
) -> None:
    per_block = _block_images(len(names), fit.size)
    block = np.empty((per_block, fit.size, fit.size, len(fit.mode)), dtype=np.uint8)
    with ThreadPoolExecutor(DECODE_THREADS) as pool:
        for lo in range(0, len(names), per_block):
            chunk = names[lo : lo + per_block]
            # Bytes are read on this thread (a ZipFile is not safe to share); only decoding is parallel.
            data = [(name, source.read(name)) for name in chunk]
            crops = pool.map(lambda item: _decode(source.where(item[0]), item[1], fit), data)
            for i, crop in enumerate(crops):
                block[i] = crop.reshape(block.shape[1:])
            ds[lo : lo + len(chunk)] = block[: len(chunk)]
            if progress is not None:
                progress(lo + len(chunk), len(names))


def _block_images(count: int, size: int) -> int:
    """Images per block (and per chunk): BLOCK, fewer when that many crops of ``size`` exceed _BLOCK_BYTES."""
    return max(1, min(BLOCK, count, _BLOCK_BYTES // (size * size * 3)))


def _decode(where: str, data: Raw, fit: _Fit) -> npt.NDArray[np.uint8]:
    size, resize = fit.size, fit.resize
    if isinstance(data, np.ndarray):
        rgb = Image.fromarray(data).convert(fit.mode)
    else:
        try:
            with Image.open(io.BytesIO(data)) as img:
                rgb = img.convert(fit.mode)
        except _DECODE_ERRORS as err:
            raise RunError(f"{where}: not a readable image (PIL: {_pil_reason(err)})") from err
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
