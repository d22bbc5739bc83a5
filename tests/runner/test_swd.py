"""SWD (runner.metrics.swd) on real sets of images: the built-in faces, noise, and a collapsed set."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from runner.metrics.swd import SWD, _up, laplacian_pyramid, sliced_wasserstein
from tests.runner.conftest import faces


def noise(n: int, seed: int, size: int = 32) -> torch.Tensor:
    rng = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=rng, dtype=torch.uint8)


def test_the_pyramid_goes_down_to_16_and_adds_back_up_to_the_image() -> None:
    images = faces(4, 0, 64).to(torch.float32)
    levels = laplacian_pyramid(images)
    assert [level.shape[-1] for level in levels] == [64, 32, 16]
    # Each Laplacian level is what the coarser level misses, so the finest level plus the upsampled rest is
    # the image again: rebuild it from the coarsest level up.
    rebuilt = levels[-1]
    for level in reversed(levels[:-1]):
        rebuilt = level + _up(rebuilt, level.shape[-2:])
    torch.testing.assert_close(rebuilt, images)


def test_a_set_against_itself_is_near_zero_and_far_below_noise() -> None:
    real = faces(200, 0)
    same = sliced_wasserstein(real, real, seed=1)
    other_faces = sliced_wasserstein(real, faces(200, 1), seed=1)
    against_noise = sliced_wasserstein(real, noise(200, 2), seed=1)
    assert isinstance(same, SWD) and len(same.per_level) == 2  # 32x32: levels 32 and 16
    assert same.mean == pytest.approx(np.mean(same.per_level))
    assert same.mean < 0.1 * against_noise.mean
    assert other_faces.mean < 0.25 * against_noise.mean
    assert all(n > 10 * s for n, s in zip(against_noise.per_level, same.per_level, strict=True))


def test_a_collapsed_set_is_far_from_the_data() -> None:
    real = faces(200, 0)
    collapsed = real[:1].expand(200, -1, -1, -1).contiguous()
    assert sliced_wasserstein(real, collapsed).mean > 5 * sliced_wasserstein(real, faces(200, 1)).mean


def test_the_seed_decides_the_value() -> None:
    real, fake = faces(50, 0), noise(50, 1)
    a = sliced_wasserstein(real, fake, seed=3)
    assert sliced_wasserstein(real, fake, seed=3) == a
    assert sliced_wasserstein(real, fake, seed=4) != a


def test_measuring_leaves_the_global_generator_alone() -> None:
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    sliced_wasserstein(faces(20, 0), noise(20, 1))
    assert torch.equal(torch.rand(3), expected)


def test_small_and_grey_images_have_one_level() -> None:
    real = faces(30, 0, 8)[:, :1]
    assert len(sliced_wasserstein(real, real).per_level) == 1


def test_sets_of_different_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="same shape"):
        sliced_wasserstein(faces(10, 0), faces(11, 0))
