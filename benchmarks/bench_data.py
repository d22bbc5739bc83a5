"""How fast the data layer feeds training: load a packed file, then serve shuffled uint8 batches.

Run: ``python benchmarks/bench_data.py --count 20000``. The goal it reports against is at least 20,000
images/s into shuffled uint8 batch tensors; h5py fancy indexing of scattered rows is timed on a few hundred
images for comparison, because that is what a per-sample Dataset/DataLoader over HDF5 ends up doing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import h5py
import numpy as np
import torch
from PIL import Image

from runner.data import ImageSet, epoch_generator, open_images
from runner.pack import pack_images
from runner.synthetic import synthetic_faces

GOAL = 20_000  # images/s into shuffled uint8 batches


def main() -> None:
    """Pack synthetic faces, then time loading, batching and scattered h5py reads."""
    args = _parse()
    with tempfile.TemporaryDirectory() as tmp:
        packed = Path(tmp) / "faces.h5"
        _report("synthetic faces drawn (64x64)", 2000, _time(lambda: synthetic_faces(2000, (64, 64, 3), 0)))
        _report("pack from PNG files", args.pack_files, _time_pack(Path(tmp), args.size, args.pack_files))
        _report(f"write {args.count} faces to HDF5", args.count, _time(lambda: _write(packed, args)))
        load_s = _time(lambda: open_images(str(packed), (3, args.size, args.size), (0.0, 1.0)))
        _report("(a) open_images into one uint8 tensor", args.count, load_s)
        images = open_images(str(packed), (3, args.size, args.size), (0.0, 1.0))
        batch_s = min(_time(partial(_one_epoch, images, args.batch, epoch)) for epoch in range(3))
        _report(f"(b) shuffled uint8 batches of {args.batch}", args.count, batch_s, goal=True)
        float_s = _time(lambda: _one_epoch(images, args.batch, 9, to_float=True))
        _report("    ... and to_float on each batch", args.count, float_s)
        scattered = min(args.scattered, args.count)
        _report(
            "(c) h5py fancy indexing, scattered rows", scattered, _time(lambda: _fancy(packed, scattered))
        )


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=20_000, help="images in the packed file")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--batch", type=int, default=64, help="batch size")
    parser.add_argument("--scattered", type=int, default=300, help="rows read by h5py fancy indexing")
    parser.add_argument("--pack-files", type=int, default=500, help="PNG files packed by pack_images")
    return parser.parse_args()


def _write(path: Path, args: argparse.Namespace) -> None:
    # The same layout pack_images writes, filled block by block without encoding images to files first.
    step = 1024
    with h5py.File(path, "w") as f:
        shape = (args.count, args.size, args.size, 3)
        ds = f.create_dataset("images", shape=shape, dtype=np.uint8, chunks=(64, args.size, args.size, 3))
        for lo in range(0, args.count, step):
            n = min(step, args.count - lo)
            ds[lo : lo + n] = synthetic_faces(n, (args.size, args.size, 3), seed=lo)


def _time_pack(tmp: Path, size: int, count: int) -> float:
    src = tmp / "pngs"
    src.mkdir()
    for i, face in enumerate(synthetic_faces(count, (218, 178, 3), seed=1)):
        Image.fromarray(face).save(src / f"{i:06d}.png")
    return _time(lambda: pack_images(src, tmp / "pngs.h5", size, None, False))


def _one_epoch(images: ImageSet, batch: int, epoch: int, to_float: bool = False) -> None:
    for b in images.batches(batch, shuffle=True, generator=epoch_generator(epoch, 0)):
        if to_float:
            images.to_float(b)


def _fancy(path: Path, count: int) -> None:
    with h5py.File(path, "r") as f:
        ds = f["images"]
        rows = np.sort(np.random.default_rng(0).choice(ds.shape[0], size=count, replace=False))
        for lo in range(0, count, 64):
            torch.from_numpy(ds[rows[lo : lo + 64]])


def _time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _report(what: str, count: int, seconds: float, goal: bool = False) -> None:
    rate = count / seconds
    verdict = f"  (goal {GOAL:,}/s: {'met' if rate >= GOAL else 'NOT met'})" if goal else ""
    print(f"{what:<44} {count:>7,} images {seconds:8.3f} s {rate:>12,.0f} images/s{verdict}")


if __name__ == "__main__":
    main()
