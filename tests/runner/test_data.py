"""The training reader: every layout, the crop rule, batches, and a RunError for every bad input."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import numpy.typing as npt
import pytest
import torch

from runner.data import (
    DataInfo,
    ImageSet,
    epoch_generator,
    epoch_permutation,
    natural_key,
    open_images,
    to_float,
)
from runner.errors import RunError
from runner.synthetic import synthetic_faces

U8 = npt.NDArray[np.uint8]


def _seed_file(path: Path, names: list[str], rng: np.random.Generator) -> dict[str, U8]:
    """A file laid out exactly like the seed's celeba_aligned_small.h5py."""
    images = {name: rng.integers(0, 256, size=(218, 178, 3), dtype=np.uint8) for name in names}
    with h5py.File(path, "w") as f:
        group = f.create_group("img_align_celeba")
        for name, img in images.items():
            group.create_dataset(name, data=img, compression="gzip", compression_opts=9)
    return images


def _packed_file(path: Path, images: npt.NDArray[np.generic], name: str = "images") -> Path:
    with h5py.File(path, "w") as f:
        f.create_dataset(name, data=images, chunks=(max(1, min(len(images), 4)), *images.shape[1:]))
    return path


def _seed_crop_chw(img: U8) -> U8:
    return img[218 // 2 - 64 : 218 // 2 + 64, 178 // 2 - 64 : 178 // 2 + 64].transpose(2, 0, 1)


def _stack(n: int, height: int = 8, width: int = 8) -> ImageSet:
    """Image i is filled with the value i, so a batch's order can be read from its pixels."""
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, height, width).contiguous()
    return ImageSet(images, DataInfo("test", "test", n, (height, width, 3), (0.0, 1.0)))


def _ids(batch: torch.Tensor) -> list[int]:
    return [int(v) for v in batch[:, 0, 0, 0]]


# --- layouts --------------------------------------------------------------------------------------


def test_packed_layout(tmp_path: Path) -> None:
    faces = synthetic_faces(10, (20, 24, 3), seed=0)
    path = _packed_file(tmp_path / "p.h5", faces)
    images = open_images(str(path), (3, 16, 16), (0.0, 1.0))
    assert images.images.shape == (10, 3, 16, 16) and images.images.dtype == torch.uint8
    assert images.images.is_contiguous()
    expected = faces[:, 10 - 8 : 10 + 8, 12 - 8 : 12 + 8].transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(images.images.numpy(), expected)
    assert images.info == DataInfo(str(path), "packed", 10, (20, 24, 3), (0.0, 1.0))
    assert len(images) == 10


def test_packed_layout_reads_across_many_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("runner.data._READ_BYTES", 1)  # one chunk (4 images) per read
    faces = synthetic_faces(11, (16, 16, 3), seed=1)
    path = _packed_file(tmp_path / "p.h5", faces)
    calls: list[tuple[int, int]] = []
    images = open_images(str(path), (3, 16, 16), (0.0, 1.0), progress=lambda d, t: calls.append((d, t)))
    np.testing.assert_array_equal(images.images.numpy(), faces.transpose(0, 3, 1, 2))
    assert calls == [(4, 11), (8, 11), (11, 11)]


@pytest.mark.parametrize("names", [[f"{i}.jpg" for i in range(12)], [f"{i + 1:06d}.jpg" for i in range(12)]])
def test_seed_layout(tmp_path: Path, names: list[str]) -> None:
    originals = _seed_file(tmp_path / "celeba_aligned_small.h5py", names, np.random.default_rng(0))
    calls: list[tuple[int, int]] = []
    images = open_images(
        str(tmp_path / "celeba_aligned_small.h5py"),
        (3, 128, 128),
        (0.0, 1.0),
        progress=lambda d, t: calls.append((d, t)),
    )
    assert images.images.shape == (12, 3, 128, 128)
    # Natural order: "10.jpg" after "9.jpg", not after "1.jpg".
    for i, name in enumerate(sorted(names, key=natural_key)):
        np.testing.assert_array_equal(images.images[i].numpy(), _seed_crop_chw(originals[name]))
    np.testing.assert_array_equal(images.images[10].numpy(), _seed_crop_chw(originals[names[10]]))
    assert images.info.layout == "per-image group 'img_align_celeba'"
    assert images.info.stored_shape == (218, 178, 3)
    assert calls[-1] == (12, 12)


def test_seed_layout_by_name_and_limit(tmp_path: Path) -> None:
    originals = _seed_file(tmp_path / "s.h5", [f"{i}.jpg" for i in range(5)], np.random.default_rng(1))
    images = open_images(f"{tmp_path / 's.h5'}:img_align_celeba", (3, 64, 64), (-1.0, 1.0), limit=3)
    assert len(images) == 3
    crop = originals["2.jpg"][109 - 32 : 109 + 32, 89 - 32 : 89 + 32].transpose(2, 0, 1)
    np.testing.assert_array_equal(images.images[2].numpy(), crop)


def test_natural_key_orders_numbers_by_value() -> None:
    names = ["10.jpg", "9.jpg", "b.jpg", "a.jpg", "100.jpg", "img2.png", "img10.png"]
    assert sorted(names, key=natural_key) == [
        "9.jpg",
        "10.jpg",
        "100.jpg",
        "a.jpg",
        "b.jpg",
        "img2.png",
        "img10.png",
    ]


def test_other_4d_dataset_is_accepted(tmp_path: Path) -> None:
    faces = synthetic_faces(3, (16, 16, 3), seed=2)
    path = _packed_file(tmp_path / "x.h5", faces, name="data/faces")
    images = open_images(str(path), (3, 16, 16), (0.0, 1.0))
    assert images.info.layout == "dataset 'data/faces'"
    np.testing.assert_array_equal(images.images.numpy(), faces.transpose(0, 3, 1, 2))


def test_choose_among_several_by_name(tmp_path: Path) -> None:
    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=np.zeros((2, 16, 16, 3), np.uint8))
        f.create_dataset("more", data=np.full((3, 16, 16, 3), 9, np.uint8))
    images = open_images(f"{path}:more", (3, 16, 16), (0.0, 1.0))
    assert len(images) == 3 and int(images.images.min()) == 9


def test_grey_stored_repeats_to_rgb(tmp_path: Path) -> None:
    grey = synthetic_faces(4, (16, 16, 1), seed=3)
    path = _packed_file(tmp_path / "g.h5", grey)
    images = open_images(str(path), (3, 16, 16), (0.0, 1.0))
    np.testing.assert_array_equal(images.images.numpy(), np.repeat(grey.transpose(0, 3, 1, 2), 3, axis=1))
    grey_set = open_images(str(path), (1, 16, 16), (0.0, 1.0))
    assert grey_set.images.shape == (4, 1, 16, 16)


def test_packed_limit(tmp_path: Path) -> None:
    path = _packed_file(tmp_path / "p.h5", synthetic_faces(10, (16, 16, 3), seed=0))
    images = open_images(str(path), (3, 16, 16), (0.0, 1.0), limit=7)
    assert len(images) == 7 and images.info.count == 7


# --- generated sources ----------------------------------------------------------------------------


@pytest.mark.parametrize("source", [None, "synthetic"])
def test_synthetic_source(source: str | None) -> None:
    images = open_images(source, (3, 32, 32), (-1.0, 1.0), seed=4, synthetic_count=50)
    assert images.images.shape == (50, 3, 32, 32) and images.images.dtype == torch.uint8
    np.testing.assert_array_equal(
        images.images.numpy(), synthetic_faces(50, (32, 32, 3), seed=4).transpose(0, 3, 1, 2)
    )
    assert images.info == DataInfo("synthetic", "synthetic", 50, (32, 32, 3), (-1.0, 1.0))
    assert len(open_images(source, (1, 16, 16), (0.0, 1.0), synthetic_count=50, limit=20)) == 20


def test_random_source_is_seeded() -> None:
    a = open_images("random", (3, 8, 8), (0.0, 1.0), seed=1, synthetic_count=30)
    b = open_images("random", (3, 8, 8), (0.0, 1.0), seed=1, synthetic_count=30)
    assert a.images.shape == (30, 3, 8, 8) and a.info.layout == "random"
    assert torch.equal(a.images, b.images)
    assert int(a.images.max()) > 200 and int(a.images.min()) < 50


# --- to_float -------------------------------------------------------------------------------------


def test_to_float_zero_one() -> None:
    batch = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 3, 1, 1)
    out = to_float(batch, (0.0, 1.0))
    assert out.dtype == torch.float32
    assert out.flatten().tolist() == pytest.approx([0.0, 0.2, 1.0])


def test_to_float_minus_one_one() -> None:
    images = open_images("random", (3, 8, 8), (-1.0, 1.0), synthetic_count=4)
    batch = torch.tensor([0, 255, 128], dtype=torch.uint8).view(1, 3, 1, 1)
    out = images.to_float(batch)
    assert out.dtype == torch.float32 and out.device == batch.device
    assert out.flatten().tolist() == pytest.approx([-1.0, 1.0, 128 / 127.5 - 1], abs=1e-6)


def test_to_float_matches_the_formulas_exactly() -> None:
    pixels = torch.arange(256, dtype=torch.uint8)
    as_float = pixels.to(torch.float32)
    assert torch.equal(to_float(pixels, (0.0, 1.0)), as_float / 255.0)
    assert torch.equal(to_float(pixels, (-1.0, 1.0)), as_float / 127.5 - 1.0)
    assert torch.equal(pixels, torch.arange(256, dtype=torch.uint8))
    with pytest.raises(TypeError, match="uint8"):
        to_float(as_float, (0.0, 1.0))


def test_to_float_other_range() -> None:
    batch = torch.tensor([0, 255], dtype=torch.uint8)
    assert to_float(batch, (-0.5, 0.5)).tolist() == pytest.approx([-0.5, 0.5])


# --- batches --------------------------------------------------------------------------------------


def test_batches_in_order_without_shuffle() -> None:
    batches = list(_stack(10).batches(3, shuffle=False, generator=None))
    assert [b.shape for b in batches] == [(3, 3, 8, 8)] * 3
    assert [_ids(b) for b in batches] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert all(b.dtype == torch.uint8 for b in batches)


def test_batches_keep_the_last_partial_batch() -> None:
    images = _stack(10)
    batches = list(images.batches(4, shuffle=False, generator=None, drop_last=False))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert images.num_batches(4, drop_last=False) == 3 and images.num_batches(4) == 2


def test_seed_default_is_batch_one_in_order() -> None:
    assert [_ids(b) for b in _stack(3).batches(1, shuffle=False, generator=None)] == [[0], [1], [2]]


def test_shuffle_is_a_seeded_permutation() -> None:
    images = _stack(20)

    def order(seed: int) -> list[int]:
        gen = torch.Generator().manual_seed(seed)
        return [i for b in images.batches(5, shuffle=True, generator=gen) for i in _ids(b)]

    assert order(1) == order(1)
    assert order(1) != order(2)
    assert sorted(order(1)) == list(range(20))
    assert order(1) != list(range(20))


def test_start_skips_batches_for_resume() -> None:
    images = _stack(23)
    full = [_ids(b) for b in images.batches(4, shuffle=True, generator=epoch_generator(3, 7))]
    tail = [_ids(b) for b in images.batches(4, shuffle=True, generator=epoch_generator(3, 7), start=2)]
    assert len(full) == 5 and tail == full[2:]
    assert list(images.batches(4, shuffle=False, generator=None, start=9)) == []


def test_epoch_permutation_reproduces_the_shuffle() -> None:
    images = _stack(17)
    seen = [i for b in images.batches(17, shuffle=True, generator=epoch_generator(2, 5)) for i in _ids(b)]
    assert seen == epoch_permutation(17, 2, 5).tolist()
    assert epoch_permutation(17, 2, 5).tolist() != epoch_permutation(17, 3, 5).tolist()
    assert epoch_permutation(17, 2, 5).tolist() != epoch_permutation(17, 2, 6).tolist()


def test_indices_restrict_the_pass() -> None:
    images = _stack(20)
    share = torch.tensor([1, 3, 5, 7, 9, 11])
    in_order = [_ids(b) for b in images.batches(2, shuffle=False, generator=None, indices=share)]
    assert in_order == [[1, 3], [5, 7], [9, 11]]
    gen = torch.Generator().manual_seed(0)
    shuffled = [i for b in images.batches(2, shuffle=True, generator=gen, indices=share) for i in _ids(b)]
    assert sorted(shuffled) == share.tolist()
    assert images.num_batches(4, indices=share) == 1


def test_unshuffled_batches_cover_the_set_once() -> None:
    images = _stack(9)
    batches = list(images.batches(3, shuffle=False, generator=None))
    assert torch.equal(torch.cat(batches), images.images)


def test_bad_batch_arguments() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        next(_stack(4).batches(0, shuffle=False, generator=None))
    with pytest.raises(ValueError, match="start"):
        next(_stack(4).batches(1, shuffle=False, generator=None, start=-1))


def test_to_device_moves_once() -> None:
    images = _stack(4)
    moved = images.to("cpu")
    assert moved.info == images.info and torch.equal(moved.images, images.images)
    batch = next(moved.batches(2, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert batch.device == moved.images.device


# --- errors ---------------------------------------------------------------------------------------


def _error(source: str, image_shape: tuple[int, int, int] = (3, 16, 16)) -> str:
    with pytest.raises(RunError) as err:
        open_images(source, image_shape, (0.0, 1.0))
    message = str(err.value)
    assert "\n" not in message
    return message


def test_missing_file(tmp_path: Path) -> None:
    message = _error(str(tmp_path / "missing.h5"))
    assert str(tmp_path / "missing.h5") in message and "no such file" in message


def test_directory(tmp_path: Path) -> None:
    message = _error(str(tmp_path))
    assert str(tmp_path) in message and "folder" in message and "archspec data pack" in message


def test_not_hdf5(tmp_path: Path) -> None:
    (tmp_path / "x.h5").write_bytes(b"this is not an hdf5 file" * 100)
    message = _error(str(tmp_path / "x.h5"))
    assert str(tmp_path / "x.h5") in message and "not a readable HDF5 file" in message


def test_truncated_file(tmp_path: Path) -> None:
    path = _packed_file(tmp_path / "t.h5", synthetic_faces(64, (32, 32, 3), seed=0))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    message = _error(str(path), (3, 32, 32))
    assert str(path) in message


def test_truncated_seed_file(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    _seed_file(path, [f"{i}.jpg" for i in range(6)], np.random.default_rng(0))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert str(path) in _error(str(path), (3, 128, 128))


def test_no_image_datasets(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "n.h5", "w") as f:
        f.create_dataset("labels", data=np.arange(10))
        f.create_group("empty")
    message = _error(str(tmp_path / "n.h5"))
    assert str(tmp_path / "n.h5") in message and "no image datasets" in message


def test_empty_dataset(tmp_path: Path) -> None:
    path = tmp_path / "e.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("images", shape=(0, 16, 16, 3), dtype=np.uint8)
    message = _error(str(path))
    assert str(path) in message and "0 images" in message


def test_images_smaller_than_the_crop(tmp_path: Path) -> None:
    path = _packed_file(tmp_path / "s.h5", synthetic_faces(2, (25, 30, 3), seed=0))
    message = _error(str(path), (3, 32, 32))
    assert str(path) in message and "25x30" in message and "32x32" in message


def test_seed_image_smaller_than_the_crop(tmp_path: Path) -> None:
    _seed_file(tmp_path / "s.h5", ["0.jpg"], np.random.default_rng(0))
    message = _error(str(tmp_path / "s.h5"), (3, 256, 256))
    assert "218x178" in message and "256x256" in message and "0.jpg" in message


def test_channel_mismatch(tmp_path: Path) -> None:
    path = _packed_file(tmp_path / "c.h5", synthetic_faces(2, (16, 16, 3), seed=0))
    message = _error(str(path), (1, 16, 16))
    assert str(path) in message and "3 channels" in message


def test_unsupported_channel_count(tmp_path: Path) -> None:
    path = _packed_file(tmp_path / "c.h5", np.zeros((2, 16, 16, 4), np.uint8))
    assert "4 channels" in _error(str(path))


def test_non_uint8(tmp_path: Path) -> None:
    path = _packed_file(tmp_path / "f.h5", np.zeros((2, 16, 16, 3), np.float32))
    message = _error(str(path))
    assert str(path) in message and "float32" in message and "uint8" in message


def test_ambiguous_layout(tmp_path: Path) -> None:
    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=np.zeros((2, 16, 16, 3), np.uint8))
        f.create_group("faces").create_dataset("0.jpg", data=np.zeros((16, 16, 3), np.uint8))
    message = _error(str(path))
    assert "'images'" in message and "'faces'" in message and f"choose one with {path}:NAME" in message


def test_lone_uint8_candidate_wins(tmp_path: Path) -> None:
    path = tmp_path / "mixed.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("features", data=np.zeros((2, 4, 4, 8), np.float32))
        f.create_dataset("images", data=np.full((2, 16, 16, 3), 7, np.uint8))
    images = open_images(str(path), (3, 16, 16), (0.0, 1.0))
    assert images.info.layout == "packed" and int(images.images.max()) == 7


def test_group_members_that_are_not_images_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "g.h5"
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(3)]
    with h5py.File(path, "w") as f:
        group = f.create_group("faces")
        for i, img in enumerate(imgs):
            group.create_dataset(f"{i}.png", data=img)
        group.create_dataset("labels", data=np.arange(3))
    images = open_images(str(path), (3, 16, 16), (0.0, 1.0))
    assert len(images) == 3 and images.info.count == 3
    np.testing.assert_array_equal(images.images[2].numpy(), imgs[2].transpose(2, 0, 1))


def test_images_at_the_root(tmp_path: Path) -> None:
    path = tmp_path / "r.h5"
    with h5py.File(path, "w") as f:
        for i in range(2):
            f.create_dataset(f"{i}.jpg", data=np.full((16, 16, 1), i, np.uint8))
    images = open_images(str(path), (3, 16, 16), (0.0, 1.0))
    assert images.info.layout == "per-image group '/'" and images.images[:, :, 0, 0].tolist() == [
        [0] * 3,
        [1] * 3,
    ]


def test_unknown_name(tmp_path: Path) -> None:
    path = _packed_file(tmp_path / "p.h5", np.zeros((2, 16, 16, 3), np.uint8))
    message = _error(f"{path}:nothing")
    assert f"{path}:nothing" in message and "'images'" in message


def test_bad_value_range_and_limit() -> None:
    with pytest.raises(RunError, match="value range"):
        open_images(None, (3, 16, 16), (1.0, 0.0))
    with pytest.raises(RunError, match="limit"):
        open_images(None, (3, 16, 16), (0.0, 1.0), limit=0)


def test_rgb_file_for_a_four_channel_spec(tmp_path: Path) -> None:
    path = _packed_file(tmp_path / "c.h5", synthetic_faces(2, (16, 16, 3), seed=0))
    message = _error(str(path), (4, 16, 16))
    assert str(path) in message and "image: [3, 16, 16]" in message
