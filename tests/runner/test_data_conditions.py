"""The training reader's conditions: labels and paired condition images, from files and generated."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import numpy.typing as npt
import pytest
import torch

from runner.data import Batch, DataInfo, ImageSet, epoch_generator, open_images
from runner.errors import RunError
from runner.synthetic import synthetic_faces

U8 = npt.NDArray[np.uint8]


def _conditioned_file(
    path: Path,
    images: U8,
    labels: npt.NDArray[np.generic] | None = None,
    class_names: list[str] | None = None,
    inputs: U8 | None = None,
) -> Path:
    """A file laid out as `archspec data pack` writes a labelled or paired set."""
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images)
        if labels is not None:
            ds = f.create_dataset("labels", data=labels)
            if class_names is not None:
                ds.attrs["class_names"] = np.array(class_names, dtype=h5py.string_dtype())
        if inputs is not None:
            f.create_dataset("inputs", data=inputs)
    return path


def _set(n: int, classes: int = 3) -> ImageSet:
    """Image i is filled with i, its label is i % classes and its input is filled with 255 - i."""
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 4, 4).contiguous()
    inputs = (255 - torch.arange(n, dtype=torch.uint8)).view(n, 1, 1, 1).expand(n, 1, 4, 4).contiguous()
    labels = torch.arange(n) % classes
    info = DataInfo("test", "test", n, (4, 4, 3), (0.0, 1.0), tuple("abc"[:classes]), (1, 4, 4))
    return ImageSet(images, info, labels, inputs)


# --- files ----------------------------------------------------------------------------------------


def test_packed_labels_and_inputs_are_read_and_cropped(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 10, 10, 3), dtype=np.uint8)
    inputs = rng.integers(0, 256, (6, 10, 10, 1), dtype=np.uint8)
    labels = np.array([2, 0, 1, 1, 0, 2], np.int64)
    path = _conditioned_file(tmp_path / "d.h5", images, labels, ["cat", "dog", "eel"], inputs)
    data = open_images(str(path), (3, 8, 8), (0.0, 1.0), input_shape=(3, 8, 8))
    assert data.info.layout == "packed"  # `images` chosen, never its `inputs`
    assert data.info.class_names == ("cat", "dog", "eel")
    assert data.info.input_shape == (3, 8, 8)
    assert data.labels is not None and data.labels.dtype == torch.int64
    assert data.labels.tolist() == labels.tolist()
    assert data.inputs is not None and data.inputs.shape == (6, 3, 8, 8)
    # The images' crop rule (start 10 // 2 - 8 // 2 = 1) and grey repeated to RGB, as for the images.
    crop = inputs[:, 1:9, 1:9, 0]
    for c in range(3):
        np.testing.assert_array_equal(data.inputs[:, c].numpy(), crop)
    np.testing.assert_array_equal(data.images.numpy(), images[:, 1:9, 1:9].transpose(0, 3, 1, 2))


def test_inputs_are_loaded_only_for_an_input_shape(tmp_path: Path) -> None:
    images = np.zeros((4, 8, 8, 3), np.uint8)
    path = _conditioned_file(tmp_path / "d.h5", images, inputs=np.zeros((4, 8, 8, 3), np.uint8))
    data = open_images(str(path), (3, 8, 8), (0.0, 1.0))
    assert data.inputs is None and data.info.input_shape is None and data.labels is None
    # An unlabelled, unpaired file gives neither, even when the caller would take inputs.
    plain = _conditioned_file(tmp_path / "p.h5", images)
    data = open_images(str(plain), (3, 8, 8), (0.0, 1.0), input_shape=(3, 8, 8))
    assert data.inputs is None and data.info == DataInfo(str(plain), "packed", 4, (8, 8, 3), (0.0, 1.0))


def test_limit_keeps_the_first_of_images_labels_and_inputs(tmp_path: Path) -> None:
    n = 9
    images = np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1).repeat(8, 1).repeat(8, 2).repeat(3, 3)
    path = _conditioned_file(tmp_path / "d.h5", images, np.arange(n) % 4, list("wxyz"), 255 - images)
    data = open_images(str(path), (3, 8, 8), (0.0, 1.0), limit=5, input_shape=(3, 8, 8))
    assert len(data) == 5 and data.info.count == 5
    assert data.labels is not None and data.labels.tolist() == [0, 1, 2, 3, 0]
    assert data.inputs is not None and data.inputs[:, 0, 0, 0].tolist() == [255, 254, 253, 252, 251]


def test_labels_without_class_names_count_to_the_largest(tmp_path: Path) -> None:
    path = _conditioned_file(tmp_path / "d.h5", np.zeros((3, 8, 8, 1), np.uint8), np.array([0, 4, 1]))
    assert open_images(str(path), (1, 8, 8), (0.0, 1.0)).info.class_names == ("0", "1", "2", "3", "4")


@pytest.mark.parametrize(
    ("labels", "names", "message"),
    [
        (np.array([0, 1]), ["a", "b"], r"d\.h5:labels: 2 labels for 3 images in images"),
        (
            np.array([0, 3, 1]),
            ["a", "b"],
            r"d\.h5:labels: label 3 at image 1 is outside the 2 classes 0\.\.1",
        ),
        (np.array([0, -1, 1]), ["a", "b"], r"d\.h5:labels: label -1 at image 1 is outside"),
        (np.array([0.0, 1.0, 1.0]), ["a", "b"], r"d\.h5:labels: is 1-D float64; expected a 1-D integer"),
        (np.zeros((3, 2), np.int64), ["a", "b"], r"d\.h5:labels: is 2-D int64"),
    ],
)
def test_bad_labels_are_one_error(
    tmp_path: Path, labels: npt.NDArray[np.generic], names: list[str], message: str
) -> None:
    path = _conditioned_file(tmp_path / "d.h5", np.zeros((3, 8, 8, 3), np.uint8), labels, names)
    with pytest.raises(RunError, match=message) as err:
        open_images(str(path), (3, 8, 8), (0.0, 1.0))
    assert "\n" not in str(err.value)


def test_bad_inputs_are_one_error(tmp_path: Path) -> None:
    images = np.zeros((3, 8, 8, 3), np.uint8)
    path = _conditioned_file(tmp_path / "d.h5", images, inputs=np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(RunError, match=r"d\.h5:inputs: 2 condition images for 3 images in images"):
        open_images(str(path), (3, 8, 8), (0.0, 1.0), input_shape=(3, 8, 8))
    path = _conditioned_file(tmp_path / "e.h5", images, inputs=np.zeros((3, 8, 8, 3), np.uint8))
    with pytest.raises(RunError, match=r"e\.h5:inputs: condition images have 3 channels but the generator's"):
        open_images(str(path), (3, 8, 8), (0.0, 1.0), input_shape=(1, 8, 8))
    with pytest.raises(
        RunError, match=r"e\.h5:inputs: stored images are 8x8 \(HxW\), smaller than the 16x16"
    ):
        open_images(str(path), (3, 8, 8), (0.0, 1.0), input_shape=(3, 16, 16))


# --- batches --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"shuffle": False, "generator": None},
        {"shuffle": False, "generator": None, "drop_last": False},
        {"shuffle": True, "generator": "epoch 3"},
        {"shuffle": True, "generator": "epoch 3", "start": 2},
        {"shuffle": True, "generator": "epoch 1", "indices": torch.tensor([9, 2, 4, 7, 1, 0, 5])},
        {"shuffle": False, "generator": None, "indices": torch.tensor([9, 2, 4, 7, 1]), "drop_last": False},
    ],
)
def test_conditioned_batches_visit_what_batches_visits(kwargs: dict[str, object]) -> None:
    data = _set(11)

    def args() -> dict[str, object]:
        # A fresh generator for each pass: both passes must draw the same permutation.
        return {**kwargs, "generator": epoch_generator(3, 7) if kwargs["generator"] else None}

    plain = list(data.batches(2, **args()))  # type: ignore[arg-type]
    conditioned = list(data.conditioned_batches(2, **args()))  # type: ignore[arg-type]
    assert len(plain) == len(conditioned) > 0
    for images, batch in zip(plain, conditioned, strict=True):
        assert isinstance(batch, Batch)
        assert torch.equal(images, batch.images)
        ids = batch.images[:, 0, 0, 0].long()
        assert batch.labels is not None and batch.labels.tolist() == (ids % 3).tolist()
        assert batch.inputs is not None and batch.inputs[:, 0, 0, 0].tolist() == (255 - ids).tolist()


def test_conditioned_batches_of_an_unconditioned_set() -> None:
    images = torch.zeros(4, 1, 2, 2, dtype=torch.uint8)
    data = ImageSet(images, DataInfo("t", "t", 4, (2, 2, 1), (0.0, 1.0)))
    batches = list(data.conditioned_batches(2, shuffle=False, generator=None))
    assert [(b.labels, b.inputs) for b in batches] == [(None, None), (None, None)]


def test_to_moves_labels_and_inputs() -> None:
    data = _set(5).to("meta")
    assert data.images.device.type == data.labels.device.type == data.inputs.device.type == "meta"  # type: ignore[union-attr]
    assert data.info.class_names == ("a", "b", "c")


def test_mismatched_conditions_are_refused() -> None:
    images = torch.zeros(4, 1, 2, 2, dtype=torch.uint8)
    info = DataInfo("t", "t", 4, (2, 2, 1), (0.0, 1.0))
    with pytest.raises(ValueError, match=r"labels of shape \(3,\) for 4 images"):
        ImageSet(images, info, labels=torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="5 inputs for 4 images"):
        ImageSet(images, info, inputs=torch.zeros(5, 1, 2, 2, dtype=torch.uint8))


# --- generated sources ----------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["synthetic", "random"])
def test_generated_labels_are_seeded_and_uniform(source: str) -> None:
    a = open_images(source, (3, 8, 8), (0.0, 1.0), seed=5, synthetic_count=2000, labels=10)
    b = open_images(source, (3, 8, 8), (0.0, 1.0), seed=5, synthetic_count=2000, labels=10)
    c = open_images(source, (3, 8, 8), (0.0, 1.0), seed=6, synthetic_count=2000, labels=10)
    assert a.labels is not None and b.labels is not None and c.labels is not None
    assert a.labels.dtype == torch.int64 and a.labels.shape == (2000,)
    assert torch.equal(a.labels, b.labels) and not torch.equal(a.labels, c.labels)
    counts = torch.bincount(a.labels, minlength=10)
    assert counts.numel() == 10 and int(counts.min()) > 150 and int(counts.max()) < 250  # ~200 each
    assert a.info.class_names == tuple(str(k) for k in range(10))
    # Labels come from their own stream: the images are those of the unlabelled source.
    assert torch.equal(
        a.images, open_images(source, (3, 8, 8), (0.0, 1.0), seed=5, synthetic_count=2000).images
    )
    limited = open_images(source, (3, 8, 8), (0.0, 1.0), seed=5, synthetic_count=2000, labels=10, limit=30)
    assert limited.labels is not None and torch.equal(limited.labels, a.labels[:30])


def test_generated_sources_have_no_labels_unless_asked() -> None:
    data = open_images("random", (3, 8, 8), (0.0, 1.0), synthetic_count=4)
    assert data.labels is None and data.inputs is None and data.info.class_names is None
    with pytest.raises(RunError, match="class count 0: must be at least 1"):
        open_images("random", (3, 8, 8), (0.0, 1.0), labels=0)


def test_random_inputs_for_an_image_to_image_dry_run() -> None:
    a = open_images("random", (3, 16, 16), (0.0, 1.0), seed=2, synthetic_count=6, input_shape=(1, 8, 8))
    b = open_images("random", (3, 16, 16), (0.0, 1.0), seed=2, synthetic_count=6, input_shape=(1, 8, 8))
    assert a.inputs is not None and b.inputs is not None
    assert a.inputs.shape == (6, 1, 8, 8) and a.inputs.dtype == torch.uint8
    assert torch.equal(a.inputs, b.inputs) and a.info.input_shape == (1, 8, 8)
    assert not torch.equal(a.inputs, a.images[:, :1, :8, :8])  # a stream of their own
    assert int(a.inputs.max()) > 200 and int(a.inputs.min()) < 50


def test_synthetic_inputs_are_the_faces_in_grey() -> None:
    data = open_images(
        "synthetic", (3, 32, 32), (0.0, 1.0), seed=3, synthetic_count=5, input_shape=(3, 32, 32)
    )
    grey = synthetic_faces(5, (32, 32, 1), seed=3)[..., 0]
    assert data.inputs is not None and data.info.input_shape == (3, 32, 32)
    for c in range(3):
        np.testing.assert_array_equal(data.inputs[:, c].numpy(), grey)
    # Grey of the same faces: close to the luma of the colour images (not another drawing).
    luma = (data.images.float() * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)
    assert float((luma - data.inputs[:, 0].float()).abs().mean()) < 2.0
