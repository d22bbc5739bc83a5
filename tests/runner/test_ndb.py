"""NDB/K (runner.metrics.ndb) on real sets of images: the built-in faces, noise, and a collapsed set."""

from __future__ import annotations

import pytest
import torch

from runner.metrics.ndb import NDB, NdbBins, bins_for
from tests.runner.test_swd import faces, noise


def test_the_same_set_has_no_different_bins() -> None:
    real = faces(500, 0)
    bins = NdbBins.fit(real, k=20)
    result = bins.compare(real)
    assert result == NDB(bins=20, different=0, score=0.0)
    assert float(bins.shares(real).sum()) == pytest.approx(1.0)


def test_fresh_faces_differ_in_few_bins_and_noise_in_many() -> None:
    bins = NdbBins.fit(faces(500, 0), k=20)
    fresh = bins.compare(faces(500, 1))
    against_noise = bins.compare(noise(500, 2))
    assert fresh.different <= 4  # chance alone gives about alpha × k = 1
    assert against_noise.different >= 10
    assert against_noise.score == against_noise.different / 20


def test_one_image_repeated_leaves_most_bins_different() -> None:
    real = faces(500, 0)
    bins = NdbBins.fit(real, k=20)
    collapsed = real[:1].expand(500, -1, -1, -1)
    result = bins.compare(collapsed)
    assert result.different >= 18
    assert int((bins.shares(collapsed) > 0).sum()) == 1


def test_the_seed_decides_the_bins() -> None:
    real = faces(300, 0)
    a, b = NdbBins.fit(real, k=10, seed=5), NdbBins.fit(real, k=10, seed=5)
    assert torch.equal(a.centres, b.centres)
    assert not torch.equal(NdbBins.fit(real, k=10, seed=6).centres, a.centres)


def test_k_means_puts_each_image_nearest_its_own_centre() -> None:
    # Three tight clusters of flat images: k-means with k=3 finds them, one bin each.
    levels = torch.tensor([20, 120, 220], dtype=torch.uint8).repeat_interleave(30)
    images = levels[:, None, None, None].expand(90, 1, 8, 8).clone()
    images[::2] += 1
    bins = NdbBins.fit(images, k=3)
    assert sorted(bins.real_shares.tolist()) == pytest.approx([1 / 3] * 3)


def test_too_few_images_are_refused() -> None:
    with pytest.raises(ValueError, match="at least k=10"):
        NdbBins.fit(faces(5, 0), k=10)


def test_one_bin_per_20_images_between_2_and_100() -> None:
    assert [bins_for(n) for n in (10, 40, 1000, 2000, 50_000)] == [2, 2, 50, 100, 100]
