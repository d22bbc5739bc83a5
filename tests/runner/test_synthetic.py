"""The built-in procedural faces: shape, determinism, variety and range at every supported size."""

from __future__ import annotations

import numpy as np
import pytest

from runner.errors import RunError
from runner.synthetic import synthetic_faces


@pytest.mark.parametrize("size", [16, 64, 128])
@pytest.mark.parametrize("channels", [1, 3])
def test_shape_and_dtype(size: int, channels: int) -> None:
    faces = synthetic_faces(5, (size, size, channels), seed=0)
    assert faces.shape == (5, size, size, channels)
    assert faces.dtype == np.uint8


def test_non_square_and_smallest_size() -> None:
    assert synthetic_faces(3, (40, 100, 3), seed=1).shape == (3, 40, 100, 3)
    assert synthetic_faces(3, (8, 8, 1), seed=1).shape == (3, 8, 8, 1)


def test_same_seed_same_images() -> None:
    a = synthetic_faces(20, (32, 32, 3), seed=7)
    b = synthetic_faces(20, (32, 32, 3), seed=7)
    np.testing.assert_array_equal(a, b)


def test_other_seed_other_images() -> None:
    a = synthetic_faces(20, (32, 32, 3), seed=7)
    b = synthetic_faces(20, (32, 32, 3), seed=8)
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 10


def test_prefix_does_not_depend_on_count() -> None:
    # Drawn block by block from parameters drawn up front: asking for more images keeps the first ones.
    few = synthetic_faces(10, (64, 64, 3), seed=3)
    many = synthetic_faces(400, (64, 64, 3), seed=3)
    np.testing.assert_array_equal(few, many[:10])


def test_images_vary() -> None:
    faces = synthetic_faces(50, (32, 32, 3), seed=0).reshape(50, -1).astype(np.int32)
    diffs = np.abs(faces[:, None, :] - faces[None, :, :]).mean(axis=2)
    off_diagonal = diffs[~np.eye(50, dtype=bool)]
    assert off_diagonal.min() > 3, "two synthetic faces are nearly identical"
    assert faces.std(axis=0).mean() > 30


def test_value_range_is_used() -> None:
    faces = synthetic_faces(100, (64, 64, 3), seed=0)
    assert faces.min() < 20
    assert faces.max() > 235


def test_face_is_in_the_middle() -> None:
    # The centre pixel is skin in most images: reddish (R > B), unlike random backgrounds half the time.
    faces = synthetic_faces(200, (64, 64, 3), seed=0).astype(int)
    centre = faces[:, 30:34, 30:34, :].mean(axis=(1, 2))
    assert (centre[:, 0] > centre[:, 2]).mean() > 0.9


def test_grey_is_luma_of_colour() -> None:
    rgb = synthetic_faces(10, (32, 32, 3), seed=5).astype(np.float64)
    grey = synthetic_faces(10, (32, 32, 1), seed=5).astype(np.float64)
    luma = rgb @ np.array([0.299, 0.587, 0.114])
    # Both are rounded from the same float rendering, so they agree to within rounding.
    assert np.abs(grey[..., 0] - luma).max() <= 1.5


def test_zero_images() -> None:
    assert synthetic_faces(0, (16, 16, 3), seed=0).shape == (0, 16, 16, 3)


@pytest.mark.parametrize("shape", [(4, 16, 3), (16, 7, 3), (16, 16, 2), (16, 16, 4)])
def test_unsupported_shape(shape: tuple[int, int, int]) -> None:
    with pytest.raises(RunError, match="synthetic faces"):
        synthetic_faces(2, shape, seed=0)
