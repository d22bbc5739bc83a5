"""The Inception features of a data set's real images, cached beside the data file and reused.

A data file ``faces.h5`` gets a folder ``faces.h5.archspec-ref/`` holding one ``.npz`` per set of features, named
by everything the features depend on::

    <sha256 of the file's bytes, 16 hex>-<dataset name or "auto">-n<count>-<H>x<W>x<C>-inception-<weights id>.npz

(the weights id is the first 12 hex digits of the Inception file's sha256), so a changed file, a different
number of images, image size or Inception file never reuses stale features. A file is written to a temporary
name and renamed; a folder that cannot be written (read-only, or a file in the way) means the features are
computed without caching, and ``Cache.note`` says why. Built-in ``synthetic`` data is not cached: it has no file
to sit beside.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runner.metrics.fid import Features
from runner.outputs import write_atomic

SUFFIX = ".archspec-ref"
_HASH_BLOCK = 1 << 20


@dataclass(frozen=True)
class Key:
    """What cached features depend on, besides the data file's bytes."""

    dataset: str | None  # the ``path.h5:name`` part, if any
    count: int
    shape: tuple[int, int, int]  # C, H, W as evaluated
    weights: str  # the Inception weights id


class Cache:
    """Reads and writes the cached features of one data file; ``note`` says what happened, for the report."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.folder = data.with_name(data.name + SUFFIX)
        self.note = ""
        self._digest: str | None = None

    def path(self, key: Key) -> Path:
        """The file that holds (or would hold) the features of ``key``."""
        channels, height, width = key.shape
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", key.dataset) if key.dataset else "auto"
        return self.folder / (
            f"{self.digest()[:16]}-{name}-n{key.count}-{height}x{width}x{channels}-inception-{key.weights}.npz"
        )

    def digest(self) -> str:
        """sha256 of the data file's bytes (read once)."""
        if self._digest is None:
            digest = hashlib.sha256()
            with open(self.data, "rb") as f:
                for block in iter(lambda: f.read(_HASH_BLOCK), b""):
                    digest.update(block)
            self._digest = digest.hexdigest()
        return self._digest

    def load(self, key: Key) -> Features | None:
        """The cached features of ``key``, or None when there are none (or the file is damaged)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as stored:
                pool, logits = stored["pool"], stored["logits"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            self.note = f"ignored the damaged cache file {path} ({err}); recomputed"
            return None
        if pool.ndim != 2 or len(pool) != key.count or len(logits) != key.count:
            self.note = (
                f"ignored the cache file {path}: it holds {len(pool)} rows, not {key.count}; recomputed"
            )
            return None
        self.note = f"real features read from {path}"
        return Features(pool, logits)

    def save(self, key: Key, features: Features) -> None:
        """Store ``features`` atomically; when the folder cannot be written, only ``note`` says so."""
        path = self.path(key)
        buffer = io.BytesIO()
        np.savez(buffer, pool=features.pool, logits=features.logits)
        try:
            self.folder.mkdir(exist_ok=True)
            write_atomic(path, buffer.getvalue())
        except OSError as err:
            self.note = f"not cached: cannot write {path} ({err.strerror or err})"
            return
        self.note = f"real features cached in {path}"
