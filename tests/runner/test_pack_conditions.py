"""`archspec data pack` with labels and paired images, run through the real CLI, read back by the trainer's
reader; and each fault as one error line with nothing written."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt
import pytest
import torch
from PIL import Image

from runner.data import open_images
from runner.pack_labels import attribute_classes
from tests.runner.conftest import Cli, one_error_line

U8 = npt.NDArray[np.uint8]


def _save(path: Path, img: U8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


def _images(rng: np.random.Generator, n: int, height: int = 12, width: int = 12) -> list[U8]:
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(n)]


def _packed(path: Path) -> dict[str, Any]:
    """Every dataset of a packed file, with the labels' class names and source."""
    with h5py.File(path, "r") as f:
        out: dict[str, Any] = {name: f[name][()] for name in f}
        if "labels" in f:
            out["class_names"] = [str(n) for n in f["labels"].attrs["class_names"]]
            out["label_source"] = f["labels"].attrs["source"]
    return out


def _centre(img: U8, size: int) -> U8:
    top, left = img.shape[0] // 2 - size // 2, img.shape[1] // 2 - size // 2
    return img[top : top + size, left : left + size]


# --- labels ---------------------------------------------------------------------------------------


def test_image_folder_labels(tmp_path: Path, cli: Cli) -> None:
    rng = np.random.default_rng(0)
    imgs = _images(rng, 5)
    layout = {"dog/b.png": imgs[0], "cat/x.png": imgs[1], "cat/sub/a.png": imgs[2], "dog/a.png": imgs[3]}
    for name, img in layout.items():
        _save(tmp_path / "src" / name, img)
    (tmp_path / "src" / "eel").mkdir()  # a class with no image is still a class
    result = cli("data", "pack", tmp_path / "src", tmp_path / "out.h5", "--size", 8, "--labels", "folders")
    assert result.code == 0, result.err
    assert "dataset 'labels' 4 int64, 3 classes (images each): cat 2, dog 2, eel 0" in result.out
    packed = _packed(tmp_path / "out.h5")
    assert packed["class_names"] == ["cat", "dog", "eel"]
    assert packed["labels"].tolist() == [0, 0, 1, 1]
    order = ["cat/sub/a.png", "cat/x.png", "dog/a.png", "dog/b.png"]  # sorted paths
    for i, name in enumerate(order):
        np.testing.assert_array_equal(packed["images"][i], _centre(layout[name], 8))
    data = open_images(str(tmp_path / "out.h5"), (3, 8, 8), (0.0, 1.0))
    assert data.info.class_names == ("cat", "dog", "eel")
    assert data.labels is not None and data.labels.tolist() == [0, 0, 1, 1]
    # --limit keeps every class.
    limited = tmp_path / "two.h5"
    assert (
        cli("data", "pack", tmp_path / "src", limited, "--size", 8, "--labels", "folders", "--limit", 2).code
        == 0
    )
    assert _packed(limited)["class_names"] == ["cat", "dog", "eel"]


def test_image_folder_labels_from_a_zip(tmp_path: Path, cli: Cli) -> None:
    rng = np.random.default_rng(1)
    with zipfile.ZipFile(tmp_path / "src.zip", "w") as z:
        for name, img in zip(["b/1.png", "a/2.png", "b/0.png"], _images(rng, 3), strict=True):
            _save(tmp_path / "tmp" / name, img)
            z.write(tmp_path / "tmp" / name, name)
    assert (
        cli("data", "pack", tmp_path / "src.zip", tmp_path / "o.h5", "--size", 8, "--labels", "folders").code
        == 0
    )
    packed = _packed(tmp_path / "o.h5")
    assert packed["class_names"] == ["a", "b"] and packed["labels"].tolist() == [0, 1, 1]


def _attribute_table(path: Path, rows: dict[str, list[int]], columns: list[str]) -> Path:
    lines = [str(len(rows)), " ".join(columns)]
    lines += [f"{name}  " + " ".join(f"{v:2d}" for v in values) for name, values in rows.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_attribute_table_labels(tmp_path: Path, cli: Cli) -> None:
    rng = np.random.default_rng(2)
    rows = {
        "000001.jpg": [1, -1, 1],
        "000002.jpg": [-1, -1, 1],
        "000003.jpg": [1, 1, -1],
        "000004.jpg": [-1, 1, -1],
        "000005.jpg": [1, 1, 1],  # in the table, not among the images: fine
    }
    table = _attribute_table(tmp_path / "list_attr_celeba.txt", rows, ["Male", "Smiling", "Young"])
    for name, img in zip(list(rows)[:4], _images(rng, 4), strict=True):
        _save(tmp_path / "celeba" / "img_align_celeba" / name, img)  # nested: matched by file name
    src = tmp_path / "celeba"
    one = cli(
        "data", "pack", src, tmp_path / "one.h5", "--size", 8, "--labels", table, "--attributes", "Male"
    )
    assert one.code == 0, one.err
    packed = _packed(tmp_path / "one.h5")
    assert packed["class_names"] == ["not Male", "Male"]
    assert packed["labels"].tolist() == [1, 0, 1, 0]
    assert packed["label_source"] == f"attributes Male of {table}"
    two = cli(
        "data",
        "pack",
        src,
        tmp_path / "two.h5",
        "--size",
        8,
        "--labels",
        table,
        "--attributes",
        "Male,Smiling",
    )
    assert two.code == 0, two.err
    packed = _packed(tmp_path / "two.h5")
    assert packed["class_names"] == [
        "not Male,not Smiling",
        "not Male,Smiling",
        "Male,not Smiling",
        "Male,Smiling",
    ]
    assert packed["labels"].tolist() == [2, 0, 3, 1]
    # Only the images packed need a row: --limit leaves out one that has none.
    _save(src / "img_align_celeba" / "000009.jpg", _images(rng, 1)[0])
    args = ("--size", 8, "--labels", table, "--attributes", "Smiling")
    assert "no row for img_align_celeba/000009.jpg" in one_error_line(
        cli("data", "pack", src, tmp_path / "x.h5", *args)
    )
    assert cli("data", "pack", src, tmp_path / "four.h5", *args, "--limit", 4).code == 0
    assert _packed(tmp_path / "four.h5")["labels"].tolist() == [0, 0, 1, 1]


def test_attribute_classes_are_every_combination() -> None:
    names = attribute_classes(["A", "B", "C"])
    assert len(names) == 8 and len(set(names)) == 8
    assert names[0] == "not A,not B,not C" and names[5] == "A,not B,C" and names[7] == "A,B,C"


def _readme_recipe(tmp_path: Path, source: str) -> tuple[str, list[str]]:
    """Run the README's recipe that makes ``source`` (a ``$ python -c`` line) in ``tmp_path``; return the
    ``$ archspec data pack SOURCE ...`` command after it and the lines the README shows it printing."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    found = re.search(
        rf"^\$ (python -c .*)\n\$ (archspec data pack {re.escape(source)} .*)\n((?:(?!\$ |```).*\n)*)",
        readme,
        re.M,
    )
    assert found is not None, f"README shows no recipe for {source}"
    make, command, shown = found.groups()
    subprocess.run([sys.executable, *shlex.split(make)[1:]], cwd=tmp_path, check=True, timeout=120)
    return command, shown.splitlines()


@pytest.mark.parametrize("source", ["digits.npy", "lfw.npy"])
def test_readme_recipes_print_what_the_readme_shows(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    monkeypatch.chdir(tmp_path)
    command, shown = _readme_recipe(tmp_path, source)
    result = cli(*shlex.split(command)[1:])
    assert result.code == 0, result.err
    assert result.out.splitlines() == shown


def test_digits_with_their_labels(tmp_path: Path, cli: Cli) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    np.save(tmp_path / "digits.npy", digits.images)  # (1797, 8, 8) floats 0..16
    np.save(tmp_path / "labels.npy", digits.target)
    out = tmp_path / "digits32.h5"
    result = cli(
        "data", "pack", tmp_path / "digits.npy", out, "--size", 32, "--resize", "--channels", 1,
        "--labels", tmp_path / "labels.npy",
    )  # fmt: skip
    assert result.code == 0, result.err
    packed = _packed(out)
    assert packed["class_names"] == [str(k) for k in range(10)]
    np.testing.assert_array_equal(packed["labels"], digits.target)
    # Each digit is its 8x8 scaled by 255/16, then upscaled bicubically to 32x32.
    for i in (0, 1000, 1796):
        small = Image.fromarray(np.rint(digits.images[i] * 255 / 16).astype(np.uint8))
        big = np.asarray(small.resize((32, 32), Image.Resampling.BICUBIC))
        np.testing.assert_array_equal(packed["images"][i, :, :, 0], big)
    data = open_images(str(out), (1, 32, 32), (-1.0, 1.0), limit=100)
    assert data.labels is not None and data.labels.tolist() == digits.target[:100].tolist()


def test_text_labels_with_class_names(tmp_path: Path, cli: Cli) -> None:
    rng = np.random.default_rng(3)
    np.save(tmp_path / "x.npy", rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8))
    (tmp_path / "labels.txt").write_text("1\n0\n 2\n1\n\n")
    result = cli(
        "data", "pack", tmp_path / "x.npy", tmp_path / "o.h5", "--size", 8,
        "--labels", tmp_path / "labels.txt", "--class-names", "ant, bee,cow,dog",
    )  # fmt: skip
    assert result.code == 0, result.err
    packed = _packed(tmp_path / "o.h5")
    assert packed["class_names"] == ["ant", "bee", "cow", "dog"]
    assert packed["labels"].tolist() == [1, 0, 2, 1]


# --- pairs ----------------------------------------------------------------------------------------


def test_side_by_side_pairs(tmp_path: Path, cli: Cli) -> None:
    rng = np.random.default_rng(4)
    a_imgs, b_imgs = _images(rng, 3, 12, 10), _images(rng, 3, 12, 10)
    for i in range(3):
        _save(tmp_path / "src" / f"{i}.png", np.concatenate([a_imgs[i], b_imgs[i]], axis=1))
    result = cli("data", "pack", tmp_path / "src", tmp_path / "ab.h5", "--size", 8, "--side-by-side")
    assert result.code == 0, result.err
    assert "dataset 'inputs' 3x8x8x3 uint8" in result.out
    packed = _packed(tmp_path / "ab.h5")
    for i in range(3):
        np.testing.assert_array_equal(packed["inputs"][i], _centre(a_imgs[i], 8))
        np.testing.assert_array_equal(packed["images"][i], _centre(b_imgs[i], 8))
    args = ("--size", 8, "--side-by-side", "--direction", "BtoA", "--input-channels", 1)
    assert cli("data", "pack", tmp_path / "src", tmp_path / "ba.h5", *args).code == 0
    packed = _packed(tmp_path / "ba.h5")
    grey = np.asarray(Image.fromarray(b_imgs[1]).convert("L"))
    np.testing.assert_array_equal(packed["inputs"][1, :, :, 0], _centre(grey, 8))
    np.testing.assert_array_equal(packed["images"][1], _centre(a_imgs[1], 8))
    # The trainer reads the pairs aligned, and batches them together.
    data = open_images(str(tmp_path / "ba.h5"), (3, 8, 8), (0.0, 1.0), input_shape=(1, 8, 8))
    assert data.inputs is not None and data.info.input_shape == (1, 8, 8)
    batch = next(data.conditioned_batches(3, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert batch.inputs is not None
    for k in range(3):
        i = next(j for j in range(3) if torch.equal(data.images[j], batch.images[k]))
        assert torch.equal(batch.inputs[k], data.inputs[i])


def test_two_folder_pairs_match_by_name(tmp_path: Path, cli: Cli) -> None:
    rng = np.random.default_rng(5)
    names = ["x/2.png", "1.png", "x/0.png"]
    targets, conditions = _images(rng, 3), _images(rng, 3)
    for name, b, a in zip(names, targets, conditions, strict=True):
        _save(tmp_path / "B" / name, b)
        _save(tmp_path / "A" / name, a)
    args = ("--size", 8, "--inputs", tmp_path / "A", "--labels", "folders")
    _save(tmp_path / "B" / "y" / "0.png", targets[0])  # labels with pairs: folder x and y under B
    _save(tmp_path / "A" / "y" / "0.png", conditions[0])
    (tmp_path / "B" / "1.png").unlink()
    (tmp_path / "A" / "1.png").unlink()
    result = cli("data", "pack", tmp_path / "B", tmp_path / "o.h5", *args)
    assert result.code == 0, result.err
    packed = _packed(tmp_path / "o.h5")
    for i, k in enumerate([2, 0, 0]):  # sorted: x/0.png (image 2), x/2.png (image 0), y/0.png (a copy of 0)
        np.testing.assert_array_equal(packed["inputs"][i], _centre(conditions[k], 8))
        np.testing.assert_array_equal(packed["images"][i], _centre(targets[k], 8))
    assert packed["labels"].tolist() == [0, 0, 1] and packed["class_names"] == ["x", "y"]


def test_npy_pairs_match_by_order(tmp_path: Path, cli: Cli) -> None:
    rng = np.random.default_rng(6)
    b, a = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8), rng.integers(0, 256, (5, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "b.npy", b)
    np.save(tmp_path / "a.npy", a)
    args = ("--size", 8, "--inputs", tmp_path / "a.npy", "--input-channels", 1, "--limit", 4)
    assert cli("data", "pack", tmp_path / "b.npy", tmp_path / "o.h5", *args).code == 0
    packed = _packed(tmp_path / "o.h5")
    np.testing.assert_array_equal(packed["images"], b[:4])
    np.testing.assert_array_equal(packed["inputs"], a[:4, :, :, None])


# --- faults ---------------------------------------------------------------------------------------


def _pair_folders(tmp_path: Path, a_names: list[str], b_names: list[str], a_size: int = 12) -> None:
    rng = np.random.default_rng(7)
    for name in a_names:
        _save(tmp_path / "A" / name, _images(rng, 1, a_size, a_size)[0])
    for name in b_names:
        _save(tmp_path / "B" / name, _images(rng, 1)[0])


def _fault_unequal_sizes(t: Path) -> list[object]:
    _pair_folders(t, ["0.png", "1.png"], ["0.png", "1.png"], a_size=14)
    return [t / "B", "--inputs", t / "A"]


def _fault_missing_from_inputs(t: Path) -> list[object]:
    _pair_folders(t, ["0.png"], ["0.png", "1.png"])
    return [t / "B", "--inputs", t / "A"]


def _fault_missing_from_source(t: Path) -> list[object]:
    _pair_folders(t, ["0.png", "2.png"], ["0.png"])
    return [t / "B", "--inputs", t / "A"]


def _fault_npy_counts(t: Path) -> list[object]:
    np.save(t / "b.npy", np.zeros((3, 8, 8), np.uint8))
    np.save(t / "a.npy", np.zeros((2, 8, 8), np.uint8))
    return [t / "b.npy", "--inputs", t / "a.npy"]


def _fault_odd_width(t: Path) -> list[object]:
    _save(t / "src" / "0.png", np.zeros((12, 24, 3), np.uint8))
    _save(t / "src" / "1.png", np.zeros((12, 25, 3), np.uint8))
    return [t / "src", "--side-by-side"]


def _npy_with_labels(t: Path, labels: object, name: str = "labels.npy") -> list[object]:
    np.save(t / "x.npy", np.zeros((3, 8, 8), np.uint8))
    if name.endswith(".npy"):
        np.save(t / name, labels)
    else:
        (t / name).write_text(str(labels))
    return [t / "x.npy", "--labels", t / name]


def _attribute_fault(t: Path, attributes: str, rows: dict[str, list[int]]) -> list[object]:
    table = _attribute_table(t / "attr.txt", rows, ["Male", "Smiling"])
    _save(t / "src" / "000001.jpg", np.zeros((12, 12, 3), np.uint8))
    _save(t / "src" / "000002.jpg", np.zeros((12, 12, 3), np.uint8))
    return [t / "src", "--labels", table, "--attributes", attributes]


def _one_image(t: Path) -> Path:
    _save(t / "src" / "a.png", np.zeros((12, 12, 3), np.uint8))
    return t / "src"


FAULTS: dict[str, tuple[Callable[[Path], list[object]], str]] = {
    "pairs of unequal sizes": (
        _fault_unequal_sizes,
        r"B/0\.png: 12x12 \(HxW\), but its pair .*A/0\.png is 14x14",
    ),
    "a file missing from the inputs": (
        _fault_missing_from_inputs,
        r"A/1\.png: no such file to pair with .*B/1\.png",
    ),
    "a file missing from the source": (
        _fault_missing_from_source,
        r"B/2\.png: no such file to pair with .*A/2\.png",
    ),
    "pair counts": (
        _fault_npy_counts,
        r"a\.npy: 2 condition images for 3 images in .*b\.npy; pairs are matched by order",
    ),
    "odd-width side by side": (_fault_odd_width, r"src/1\.png: 25 pixels wide, an odd width"),
    "label count": (
        lambda t: _npy_with_labels(t, np.array([0, 1])),
        r"labels\.npy: 2 labels for 3 images in",
    ),
    "negative label": (
        lambda t: _npy_with_labels(t, np.array([0, -1, 1])),
        r"labels\.npy: label -1 at index 1",
    ),
    "fractional label": (
        lambda t: _npy_with_labels(t, np.array([0, 1.5, 1])),
        r"labels\.npy: label 1\.5 at index 1",
    ),
    "2-D labels": (
        lambda t: _npy_with_labels(t, np.zeros((3, 2), int)),
        r"labels\.npy: a int64 array of shape \(3, 2\)",
    ),
    "negative text label": (
        lambda t: _npy_with_labels(t, "0\n-2\n1\n", "l.txt"),
        r"l\.txt:2: label -2 is negative",
    ),
    "text label not a number": (
        lambda t: _npy_with_labels(t, "0\n1\ncat\n", "l.txt"),
        r"l\.txt:3: 'cat' is not an integer",
    ),
    "unknown attribute": (
        lambda t: _attribute_fault(t, "Smilng", {"000001.jpg": [1, 1], "000002.jpg": [1, -1]}),
        r"attr\.txt: no attribute 'Smilng'; did you mean Smiling\?",
    ),
    "image missing from the table": (
        lambda t: _attribute_fault(t, "Male", {"000001.jpg": [1, 1], "000003.jpg": [1, -1]}),
        r"attr\.txt: no row for 000002\.jpg; each image needs its row",
    ),
    "a table row too short": (
        lambda t: _attribute_fault(t, "Male", {"000001.jpg": [1], "000002.jpg": [1, -1]}),
        r"attr\.txt:3: 1 values for 2 attributes \(000001\.jpg\)",
    ),
    "image outside a class folder": (
        lambda t: [_one_image(t), "--labels", "folders"],
        r"src: a\.png is not in a class sub-folder",
    ),
    "attributes without labels": (
        lambda t: [_one_image(t), "--attributes", "Male"],
        r"--attributes: give the labels too",
    ),
    "direction without pairs": (
        lambda t: [_one_image(t), "--direction", "BtoA"],
        r"--direction: only for pairs",
    ),
    "side by side and inputs": (
        lambda t: [_one_image(t), "--side-by-side", "--inputs", _one_image(t / "A")],
        r"pairs: give either --side-by-side \(A\|B in one file\) or --inputs A_SRC, not both",
    ),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_fault_is_one_error_line_and_writes_nothing(tmp_path: Path, cli: Cli, fault: str) -> None:
    make, message = FAULTS[fault]
    src, *options = make(tmp_path)
    out = tmp_path / "out.h5"
    line = one_error_line(cli("data", "pack", src, out, "--size", 8, *options))
    assert re.search(message, line), line
    assert not out.exists()
    assert not [p for p in tmp_path.rglob("*.tmp-*")]


def test_a_fault_keeps_the_existing_output(tmp_path: Path, cli: Cli) -> None:
    src, *options = _fault_odd_width(tmp_path)
    out = tmp_path / "out.h5"
    out.write_bytes(b"what the user had")
    one_error_line(cli("data", "pack", src, out, "--size", 8, "--force", *options))
    assert out.read_bytes() == b"what the user had"


def test_label_beyond_the_class_names(tmp_path: Path, cli: Cli) -> None:
    src, *options = _npy_with_labels(tmp_path, np.array([0, 3, 1]))
    line = one_error_line(
        cli("data", "pack", src, tmp_path / "o.h5", "--size", 8, *options, "--class-names", "a,b")
    )
    assert "labels.npy: label 3 at index 1, but --class-names names 2 classes (0..1)" in line
