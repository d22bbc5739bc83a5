"""Class labels for ``archspec data pack``: from one sub-folder per class, from an attribute table such as
CelebA's ``list_attr_celeba.txt``, or from a file of integers aligned with the images.

Every source gives one int64 class index per image of the source (in the source's order, before ``--limit``)
and the names of all K classes; K counts classes that have no image too. Each fault is one RunError naming the
file (and line) and what is wrong, raised before anything is written.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from archspec.words import plural
from runner.errors import RunError

I64 = npt.NDArray[np.int64]

FOLDERS = "folders"
# Several attributes make 2^k classes: past this many the classes outnumber the images of most data sets.
MAX_ATTRIBUTES = 8
# An attribute table or a text file of labels is read whole: CelebA's table is 26 MB.
MAX_TABLE_BYTES = 512 << 20


@dataclass(frozen=True)
class LabelSource:
    """Where ``archspec data pack`` takes labels from: ``--labels folders``, or ``--labels FILE`` (a .npy or a
    text file of integers; with ``attributes``, an attribute table) and optionally ``--class-names``."""

    labels: str  # "folders" or a file's path
    attributes: tuple[str, ...] = ()
    class_names: tuple[str, ...] | None = None

    def describe(self) -> str:
        if self.labels == FOLDERS:
            return "one sub-folder per class"
        if self.attributes:
            return f"attributes {','.join(self.attributes)} of {self.labels}"
        return self.labels


@dataclass(frozen=True)
class Labels:
    """One class index per image (int64, in the source's order) and the K class names."""

    values: I64
    class_names: tuple[str, ...]
    source: str  # LabelSource.describe(), stored with the labels

    def first(self, count: int) -> Labels:
        """The labels of the first ``count`` images (``--limit``); the classes stay all K."""
        return Labels(self.values[:count], self.class_names, self.source)


def read_labels(how: LabelSource, src: Path, names: Sequence[str], count: int, is_array: bool) -> Labels:
    """The labels of the first ``count`` of the images ``names`` of ``src`` (a folder or zip of files, or an
    array when ``is_array``: then the names are the indices). A label file must cover all ``names``; the
    classes are those of all ``names``, so that ``--limit`` keeps K."""
    if how.labels == FOLDERS:
        if how.attributes or how.class_names is not None:
            raise RunError(
                "--labels folders: the class names are the sub-folders' names; drop --attributes and --class-names"
            )
        return _folder_labels(src, names, is_array, how.describe()).first(count)
    path = Path(how.labels)
    if not path.is_file():
        raise RunError(
            f"--labels {how.labels}: no such file (give 'folders', a .npy, a text file or an attribute table)"
        )
    if how.attributes:
        if how.class_names is not None:
            raise RunError(
                "--class-names: attribute classes are named after the attributes; drop --class-names"
            )
        if is_array:
            raise RunError(f"--attributes: {src} is an array; an attribute table names image files")
        return _attribute_labels(path, how.attributes, names[:count], how.describe())
    values = _read_integers(path)
    if len(values) != len(names):
        raise RunError(f"{path}: {plural(len(values), 'label')} for {plural(len(names), 'image')} in {src}")
    return Labels(values, _named_classes(path, values, how.class_names), how.describe()).first(count)


def attribute_classes(attributes: Sequence[str]) -> tuple[str, ...]:
    """The 2^k class names of k yes/no attributes, class c having attribute i when bit k-1-i of c is set:
    ("not Male", "Male"); ("not Male,not Smiling", "not Male,Smiling", "Male,not Smiling", "Male,Smiling")."""
    return tuple(
        ",".join(name if bit else f"not {name}" for name, bit in zip(attributes, bits, strict=True))
        for bits in itertools.product((0, 1), repeat=len(attributes))
    )


def _folder_labels(src: Path, names: Sequence[str], is_array: bool, source: str) -> Labels:
    if is_array:
        raise RunError(
            f"--labels folders: {src} is an array; folders need a folder or zip, one sub-folder per class"
        )
    loose = [name for name in names if "/" not in name]
    if loose:
        raise RunError(
            f"{src}: {loose[0]} is not in a class sub-folder ({plural(len(loose), 'image')} so); "
            "--labels folders wants SRC/CLASS/IMAGE"
        )
    if src.is_dir():
        # Every sub-folder is a class, as in torchvision's ImageFolder, even one whose images --limit left out.
        classes = sorted(p.name for p in src.iterdir() if p.is_dir() and not p.name.startswith("."))
    else:
        classes = sorted({name.split("/", 1)[0] for name in names})
    index = {name: k for k, name in enumerate(classes)}
    values = np.array([index[name.split("/", 1)[0]] for name in names], dtype=np.int64)
    return Labels(values, tuple(classes), source)


def _attribute_labels(table: Path, attributes: Sequence[str], names: Sequence[str], source: str) -> Labels:
    if len(set(attributes)) != len(attributes) or len(attributes) > MAX_ATTRIBUTES:
        raise RunError(
            f"--attributes {','.join(attributes)}: give 1 to {MAX_ATTRIBUTES} different attributes "
            f"(k of them make 2^k classes)"
        )
    columns, rows = _read_table(table)
    picked = []
    for name in attributes:
        if name not in columns:
            close = difflib.get_close_matches(name, columns, n=1)
            hint = f"; did you mean {close[0]}?" if close else f"; it has {', '.join(columns[:6])}, ..."
            raise RunError(f"{table}: no attribute '{name}'{hint}")
        picked.append(columns.index(name))
    weights = np.array([1 << (len(picked) - 1 - i) for i in range(len(picked))], dtype=np.int64)
    values = np.empty(len(names), dtype=np.int64)
    missing: list[str] = []
    for i, name in enumerate(names):
        row = rows.get(name, rows.get(Path(name).name))
        if row is None:
            missing.append(name)
            continue
        values[i] = int(row[picked] @ weights)
    if missing:
        more = f" (and {plural(len(missing) - 1, 'other image')})" if len(missing) > 1 else ""
        raise RunError(f"{table}: no row for {missing[0]}{more}; each image needs its row of attributes")
    return Labels(values, attribute_classes(attributes), source)


def _read_table(table: Path) -> tuple[list[str], dict[str, npt.NDArray[np.int64]]]:
    """An attribute table: line 1 the row count, line 2 the attribute names, then ``file v1 v2 ...`` with
    1 for yes and -1 (or 0) for no; rows by file name, each a 0/1 vector."""
    lines = _text_lines(table)
    if len(lines) < 2:
        raise RunError(f"{table}: an attribute table needs a count line and a line of attribute names")
    count_text, columns = lines[0].strip(), lines[1].split()
    if not count_text.isdigit():
        raise RunError(f"{table}:1: '{count_text}' is not a row count (CelebA's list_attr_celeba.txt layout)")
    rows: dict[str, npt.NDArray[np.int64]] = {}
    for number, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != len(columns) + 1:
            raise RunError(
                f"{table}:{number}: {len(fields) - 1} values for {len(columns)} attributes ({fields[0]})"
            )
        bad = next((v for v in fields[1:] if v not in ("1", "-1", "0")), None)
        if bad is not None:
            raise RunError(f"{table}:{number}: value '{bad}' for {fields[0]}; expected 1 (yes) or -1 (no)")
        if fields[0] in rows:
            raise RunError(f"{table}:{number}: a second row for {fields[0]}")
        rows[fields[0]] = np.array([v == "1" for v in fields[1:]], dtype=np.int64)
    if len(rows) != int(count_text):
        raise RunError(f"{table}: line 1 says {int(count_text):,} rows, the table has {len(rows):,}")
    return columns, rows


def _read_integers(path: Path) -> I64:
    """A .npy of integers (N,), or a text file with one integer per line; each a class index >= 0."""
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise RunError(f"{path}: not a readable .npy array: {' '.join(str(err).split())}") from err
        if array.ndim != 1 or array.dtype.kind not in "iuf":
            raise RunError(f"{path}: a {array.dtype} array of shape {array.shape}; expected integers (N,)")
        wrong = np.flatnonzero((array != np.floor(array)) | (array < 0)) if array.size else np.array([])
        if wrong.size:
            raise RunError(
                f"{path}: label {array[wrong[0]]} at index {wrong[0]}; expected a class index 0, 1, 2 ..."
            )
        labels: I64 = array.astype(np.int64)
        return labels
    values = []
    for number, line in enumerate(_text_lines(path), start=1):
        text = line.strip()
        if not text:
            continue
        if not (text.isdigit() or (text[0] == "-" and text[1:].isdigit())):
            raise RunError(f"{path}:{number}: '{text[:40]}' is not an integer class index")
        if text[0] == "-":
            raise RunError(f"{path}:{number}: label {text} is negative; expected a class index 0, 1, 2 ...")
        values.append(int(text))
    return np.array(values, dtype=np.int64)


def _named_classes(path: Path, values: I64, class_names: tuple[str, ...] | None) -> tuple[str, ...]:
    """``class_names`` (checked against the largest label), or "0".."max label"."""
    top = int(values.max()) if values.size else -1
    if class_names is None:
        return tuple(str(k) for k in range(top + 1))
    if len(set(class_names)) != len(class_names):
        raise RunError(f"--class-names {','.join(class_names)}: a name given twice")
    if top >= len(class_names):
        at = int(np.flatnonzero(values == top)[0])
        raise RunError(
            f"{path}: label {top} at index {at}, but --class-names names {plural(len(class_names), 'class', 'classes')} "
            f"(0..{len(class_names) - 1})"
        )
    return class_names


def _text_lines(path: Path) -> list[str]:
    try:
        size = path.stat().st_size
        if size > MAX_TABLE_BYTES:
            raise RunError(f"{path}: {size:,} bytes, more than a label file may have ({MAX_TABLE_BYTES:,})")
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise RunError(f"{path}: not a text file ({err.reason} at byte {err.start})") from err
    except OSError as err:
        raise RunError(f"{path}: cannot read: {err.strerror or err}") from err
