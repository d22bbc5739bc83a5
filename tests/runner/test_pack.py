"""`archspec data pack`: folders and zips of images into one packed HDF5 dataset."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import h5py
import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from runner.data import open_images
from runner.errors import RunError
from runner.pack import PackReport, centre_crop_box, pack_images, resized_size

U8 = npt.NDArray[np.uint8]


def _random_image(rng: np.random.Generator, height: int, width: int) -> U8:
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def _seed_crop(img: U8, size: int) -> U8:
    top, left = img.shape[0] // 2 - size // 2, img.shape[1] // 2 - size // 2
    return img[top : top + size, left : left + size]


def _png_folder(root: Path, images: dict[str, U8]) -> Path:
    for name, img in images.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / name)
    return root


def _jpeg_bytes(img: U8) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _read(path: Path) -> tuple[U8, dict[str, object]]:
    with h5py.File(path, "r") as f:
        return f["images"][()], dict(f["images"].attrs)


def test_folder_of_pngs_is_cropped_like_the_seed(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    # Odd and even sizes, a nested folder and an upper-case suffix; sorted by path, not by creation order.
    images = {
        "b.png": _random_image(rng, 218, 178),
        "a.PNG": _random_image(rng, 41, 37),
        "sub/c.png": _random_image(rng, 32, 32),
    }
    src = _png_folder(tmp_path / "src", images)
    (src / "notes.txt").write_text("not an image")
    report = pack_images(src, tmp_path / "out.h5", 32, None, False)
    packed, attrs = _read(tmp_path / "out.h5")
    assert report == PackReport(3, (3, 32, 32, 3), tmp_path / "out.h5", "centre-cropped to 32x32")
    assert packed.dtype == np.uint8
    for i, name in enumerate(["a.PNG", "b.png", "sub/c.png"]):
        np.testing.assert_array_equal(packed[i], _seed_crop(images[name], 32))
    assert attrs["source"] == str(src)
    assert attrs["crop"] == "center 32x32"
    assert attrs["count"] == 3
    assert attrs["format_version"] == 1


def test_seed_crop_offsets() -> None:
    # 218x178 to 128: the seed's start = size // 2 - 64 on each axis.
    assert centre_crop_box(218, 178, 128) == (45, 25)
    assert centre_crop_box(25, 25, 16) == (4, 4)


def test_dataset_is_chunked_in_whole_images(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    src = _png_folder(tmp_path / "src", {f"{i}.png": _random_image(rng, 20, 20) for i in range(5)})
    pack_images(src, tmp_path / "out.h5", 16, None, False)
    with h5py.File(tmp_path / "out.h5", "r") as f:
        assert f["images"].chunks == (5, 16, 16, 3)


def test_zip_of_jpegs(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    originals = [_random_image(rng, 218, 178) for _ in range(4)]
    archive = tmp_path / "img_align_celeba.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("img_align_celeba/", b"")
        z.writestr("__MACOSX/img_align_celeba/._000001.jpg", b"resource fork")
        for i in reversed(range(4)):
            z.writestr(f"img_align_celeba/{i + 1:06d}.jpg", _jpeg_bytes(originals[i]))
    report = pack_images(archive, tmp_path / "out.h5", 128, None, False)
    packed, attrs = _read(tmp_path / "out.h5")
    assert report.count == 4
    with zipfile.ZipFile(archive) as z:
        for i in range(4):
            # JPEG is lossy: compare with the decoded file, not with the array that was encoded.
            decoded = np.asarray(Image.open(io.BytesIO(z.read(f"img_align_celeba/{i + 1:06d}.jpg"))))
            np.testing.assert_array_equal(packed[i], decoded[45:173, 25:153])
    assert attrs["source"] == str(archive)


def test_limit_takes_the_first_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    images = {f"{i:02d}.png": _random_image(rng, 16, 16) for i in range(6)}
    src = _png_folder(tmp_path / "src", images)
    report = pack_images(src, tmp_path / "out.h5", 16, 4, False)
    packed, attrs = _read(tmp_path / "out.h5")
    assert report.count == 4 and packed.shape == (4, 16, 16, 3) and attrs["count"] == 4
    np.testing.assert_array_equal(packed[3], images["03.png"])


def test_resize_scales_the_shorter_side_then_crops(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    original = _random_image(rng, 218, 178)
    src = _png_folder(tmp_path / "src", {"x.png": original})
    pack_images(src, tmp_path / "out.h5", 64, None, True)
    packed, attrs = _read(tmp_path / "out.h5")
    assert resized_size(178, 218, 64) == (64, 78)
    expected = np.asarray(Image.fromarray(original).resize((64, 78), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(packed[0], expected[39 - 32 : 39 + 32, :])
    assert attrs["crop"] == "resize+center 64x64"


def test_resize_scales_small_images_up(tmp_path: Path) -> None:
    src = _png_folder(tmp_path / "src", {"x.png": np.full((10, 20, 3), 200, dtype=np.uint8)})
    report = pack_images(src, tmp_path / "out.h5", 32, None, True)
    packed, _ = _read(tmp_path / "out.h5")
    assert report.shape == (1, 32, 32, 3)
    assert np.abs(packed.astype(int) - 200).max() <= 1


def test_grey_images_become_rgb(tmp_path: Path) -> None:
    grey = np.arange(400, dtype=np.uint8).reshape(20, 20)
    (tmp_path / "src").mkdir()
    Image.fromarray(grey, mode="L").save(tmp_path / "src" / "g.png")
    pack_images(tmp_path / "src", tmp_path / "out.h5", 20, None, False)
    packed, _ = _read(tmp_path / "out.h5")
    np.testing.assert_array_equal(packed[0], np.repeat(grey[:, :, None], 3, axis=2))


def test_progress_reports_every_block(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    src = _png_folder(tmp_path / "src", {f"{i:03d}.png": _random_image(rng, 8, 8) for i in range(70)})
    calls: list[tuple[int, int]] = []
    pack_images(src, tmp_path / "out.h5", 8, None, False, lambda done, total: calls.append((done, total)))
    assert calls == [(64, 70), (70, 70)]


def test_image_smaller_than_size(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    src = _png_folder(
        tmp_path / "src", {"big.png": _random_image(rng, 40, 40), "tiny.png": _random_image(rng, 30, 20)}
    )
    with pytest.raises(RunError) as err:
        pack_images(src, tmp_path / "out.h5", 32, None, False)
    message = str(err.value)
    assert "tiny.png" in message and "30x20" in message and "32x32" in message
    assert not (tmp_path / "out.h5").exists()


@pytest.mark.parametrize("content", [{}, {"readme.txt": "no images here"}])
def test_empty_source(tmp_path: Path, content: dict[str, str]) -> None:
    (tmp_path / "src").mkdir()
    for name, text in content.items():
        (tmp_path / "src" / name).write_text(text)
    with pytest.raises(RunError, match="no images found") as err:
        pack_images(tmp_path / "src", tmp_path / "out.h5", 16, None, False)
    assert str(tmp_path / "src") in str(err.value)


def test_missing_source(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="no such file"):
        pack_images(tmp_path / "nope", tmp_path / "out.h5", 16, None, False)


def test_source_that_is_not_a_zip(tmp_path: Path) -> None:
    (tmp_path / "x.zip").write_bytes(b"not a zip at all")
    with pytest.raises(RunError, match=r"not a folder or a readable \.zip") as err:
        pack_images(tmp_path / "x.zip", tmp_path / "out.h5", 16, None, False)
    assert str(tmp_path / "x.zip") in str(err.value)


def test_existing_output_is_kept_unless_overwrite(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    src = _png_folder(tmp_path / "src", {"a.png": _random_image(rng, 16, 16)})
    out = tmp_path / "out.h5"
    out.write_bytes(b"precious")
    with pytest.raises(RunError, match="already exists; pass --force"):
        pack_images(src, out, 16, None, False)
    assert out.read_bytes() == b"precious"
    pack_images(src, out, 16, None, False, overwrite=True)
    assert _read(out)[0].shape == (1, 16, 16, 3)


def test_failure_leaves_no_temporary_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    archive = tmp_path / "src.zip"
    good = _jpeg_bytes(_random_image(rng, 20, 20))
    with zipfile.ZipFile(archive, "w") as z:
        for i in range(100):
            # A corrupt JPEG in the middle, after a first block of 64 has been written.
            z.writestr(f"{i:03d}.jpg", good[: len(good) // 3] if i == 80 else good)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(RunError, match=r"080\.jpg: not a readable image \(PIL: "):
        pack_images(archive, out_dir / "out.h5", 16, None, False)
    assert list(out_dir.iterdir()) == []


def test_failure_keeps_the_existing_output(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path / "out.h5"
    out.write_bytes(b"old")
    with pytest.raises(RunError, match=r"bad\.png"):
        pack_images(tmp_path / "src", out, 16, None, False, overwrite=True)
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5", "src"]


def test_a_file_that_is_not_an_image_is_named_without_pillows_buffer(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "notes.png").write_bytes(b"shopping list")
    with pytest.raises(RunError) as err:
        pack_images(tmp_path / "src", tmp_path / "out.h5", 16, None, False)
    assert (
        str(err.value)
        == f"{tmp_path / 'src' / 'notes.png'}: not a readable image (PIL: cannot identify image file)"
    )


def test_unwritable_output(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    src = _png_folder(tmp_path / "src", {"a.png": _random_image(rng, 16, 16)})
    with pytest.raises(RunError, match="no such folder"):
        pack_images(src, tmp_path / "missing" / "out.h5", 16, None, False)
    (tmp_path / "out.h5").mkdir()
    with pytest.raises(RunError, match="is a folder"):
        pack_images(src, tmp_path / "out.h5", 16, None, False)


def test_real_faces_round_trip(tmp_path: Path) -> None:
    skimage_data = pytest.importorskip("skimage.data")
    faces = skimage_data.lfw_subset()  # (200, 25, 25) float64 in [0, 1], grey LFW crops
    assert faces.shape == (200, 25, 25)
    grey = np.round(faces * 255).astype(np.uint8)
    (tmp_path / "lfw").mkdir()
    for i, face in enumerate(grey):
        Image.fromarray(face, mode="L").save(tmp_path / "lfw" / f"{i:03d}.png")
    report = pack_images(tmp_path / "lfw", tmp_path / "lfw.h5", 16, None, False)
    assert report.count == 200
    images = open_images(str(tmp_path / "lfw.h5"), (3, 16, 16), (-1.0, 1.0))
    assert len(images) == 200 and images.info.layout == "packed"
    expected = np.repeat(grey[:, None, 4:20, 4:20], 3, axis=1)
    np.testing.assert_array_equal(images.images.numpy(), expected)


def _lfw_npy() -> Path:
    """scikit-image's own file: 200 grey 25x25 LFW faces as float64 in [0, 1]."""
    skimage_data = pytest.importorskip("skimage.data")
    return Path(skimage_data.__file__).parent / "lfw_subset.npy"


def test_npy_of_grey_floats_packs_into_one_channel(tmp_path: Path) -> None:
    src = _lfw_npy()
    faces = np.load(src)
    report = pack_images(src, tmp_path / "lfw.h5", 16, None, False, channels=1)
    assert (report.count, report.shape, report.fitted) == (200, (200, 16, 16, 1), "centre-cropped to 16x16")
    images, attrs = _read(tmp_path / "lfw.h5")
    np.testing.assert_array_equal(images[..., 0], np.rint(faces * 255).astype(np.uint8)[:, 4:20, 4:20])
    assert attrs["crop"] == "center 16x16"


def test_npy_of_rgb_uint8_and_grey_to_rgb(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(5, 20, 24, 3), dtype=np.uint8)
    np.save(tmp_path / "rgb.npy", rgb)
    pack_images(tmp_path / "rgb.npy", tmp_path / "rgb.h5", 16, 3, False)
    np.testing.assert_array_equal(_read(tmp_path / "rgb.h5")[0], rgb[:3, 2:18, 4:20])
    np.save(tmp_path / "grey.npy", rgb[..., :1])  # (N, H, W, 1)
    report = pack_images(tmp_path / "grey.npy", tmp_path / "grey.h5", 16, None, True)
    assert report.shape == (5, 16, 16, 3) and report.fitted.startswith("resized")
    packed = _read(tmp_path / "grey.h5")[0]
    assert np.array_equal(packed[..., 0], packed[..., 2])  # grey repeated to RGB


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((4, 8, 8, 2), np.uint8), "expected images"),
        (np.zeros((4, 8), np.uint8), "expected images"),
        (np.full((4, 8, 8), -0.5), "float pixels from -0.5 to -0.5; expected floats >= 0"),
        (np.full((4, 8, 8), np.nan), "float pixels from nan to nan; expected floats >= 0"),
        (np.zeros((4, 8, 8), np.int64), "holds int64"),
    ],
)
def test_npy_that_is_not_images_is_one_message(tmp_path: Path, array: np.ndarray, message: str) -> None:
    np.save(tmp_path / "x.npy", array)
    with pytest.raises(RunError, match=re.escape(message)):
        pack_images(tmp_path / "x.npy", tmp_path / "x.h5", 4, None, False)
    (tmp_path / "obj.npy").write_bytes(b"not numpy")
    with pytest.raises(RunError, match=r"not a readable \.npy"):
        pack_images(tmp_path / "obj.npy", tmp_path / "y.h5", 4, None, False)
