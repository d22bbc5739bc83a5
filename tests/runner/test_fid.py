"""FID, KID, precision/recall and IS against torch-fidelity's own functions, and against first principles."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
import torch

from runner.metrics import fid as m
from runner.metrics.fid import InceptionFeatures
from runner.metrics.swd import sliced_wasserstein
from tests.runner.conftest import faces
from tests.runner.peers import random_inception, torch_fidelity

Floats = npt.NDArray[np.float32]


def _features(n: int, d: int, seed: int, shift: float = 0.0) -> Floats:
    rng = np.random.default_rng(seed)
    # Correlated, non-centred features, as Inception's are: a random mixing of Gaussian noise.
    mixing = rng.normal(size=(d, d)) / np.sqrt(d)
    return (rng.normal(size=(n, d)) @ mixing + 1.0 + shift).astype(np.float32)


@pytest.fixture(scope="module")
def real() -> Floats:
    return _features(120, 32, seed=1)


@pytest.fixture(scope="module")
def fake() -> Floats:
    return _features(100, 32, seed=2, shift=0.3)


def test_fid_equals_torch_fidelity(real: Floats, fake: Floats) -> None:
    peer = torch_fidelity().metric_fid
    stats = [peer.fid_features_to_statistics(torch.from_numpy(x)) for x in (real, fake)]
    expected = peer.fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"]
    assert m.fid(real, fake) == pytest.approx(expected, rel=1e-6)  # its means are float32, ours float64
    assert m.fid(real, fake) > 1


def test_fid_of_a_set_against_itself_is_zero(real: Floats) -> None:
    assert abs(m.fid(real, real)) < 1e-9


def test_fid_of_few_images_in_sample_space_equals_the_covariance_form(real: Floats, fake: Floats) -> None:
    few_real, few_fake = real[:20], fake[:15]  # fewer images than the 32 dimensions: the sample-space path
    expected = m.frechet_distance(m.fid_stats(few_real), m.fid_stats(few_fake))
    assert m.fid(few_real, few_fake) == pytest.approx(expected, rel=1e-6)
    assert abs(m.fid(few_real, few_real)) < 1e-9


def test_fid_of_gaussians_is_the_closed_form() -> None:
    # Diagonal covariances: FID = |mu_a - mu_b|^2 + sum (sqrt(var_a) - sqrt(var_b))^2.
    a = m.FidStats(np.array([0.0, 1.0]), np.diag([4.0, 9.0]))
    b = m.FidStats(np.array([1.0, 1.0]), np.diag([1.0, 1.0]))
    assert m.frechet_distance(a, b) == pytest.approx(1 + (2 - 1) ** 2 + (3 - 1) ** 2)


def test_kid_equals_torch_fidelity_with_the_same_subsets(real: Floats, fake: Floats) -> None:
    peer = torch_fidelity().metric_kid.kid_features_to_metric(
        torch.from_numpy(fake),
        torch.from_numpy(real),
        kid_subsets=20,
        kid_subset_size=50,
        rng_seed=7,
        kid_kernel="poly",
        kid_kernel_poly_degree=3,
        kid_kernel_poly_gamma=None,
        kid_kernel_poly_coef0=1,
        verbose=False,
    )
    mean, std = m.kid(real, fake, subsets=20, subset_size=50, seed=7)
    assert mean == pytest.approx(peer["kernel_inception_distance_mean"], rel=1e-6)
    assert std == pytest.approx(peer["kernel_inception_distance_std"], rel=1e-6)
    assert mean > 0


def test_kid_is_the_unbiased_estimator_written_out() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(6, 4)), rng.normal(size=(6, 4)) + 0.5
    d, n = 4, 6

    def k(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
        return float((a @ b / d + 1) ** 3)

    within = sum(k(x[i], x[j]) + k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    across = sum(k(x[i], y[j]) for i in range(n) for j in range(n)) / (n * n)
    assert m.mmd2_unbiased(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(
        within - 2 * across, rel=1e-12
    )
    # Unbiased: two samples of one distribution give values on both sides of 0, not a positive bias.
    gen = torch.Generator().manual_seed(5)
    same = [
        m.mmd2_unbiased(torch.randn(20, 4, generator=gen), torch.randn(20, 4, generator=gen))
        for _ in range(40)
    ]
    assert min(same) < 0 < max(same)


def test_precision_recall_equal_torch_fidelity(real: Floats, fake: Floats) -> None:
    peer = torch_fidelity().metric_prc.prc_features_to_metric(
        torch.from_numpy(fake),  # torch-fidelity's convention: input 1 generated, input 2 real
        torch.from_numpy(real),
        prc_neighborhood=3,
        prc_batch_size=10000,
        save_cpu_ram=False,
        verbose=False,
    )
    precision, recall = m.precision_recall(real, fake, k=3)
    assert precision == pytest.approx(peer["precision"], abs=1e-9)
    assert recall == pytest.approx(peer["recall"], abs=1e-9)
    assert 0 < precision < 1 and 0 < recall < 1  # a comparison that could have gone either way


def test_precision_recall_in_blocks_equal_the_whole(
    monkeypatch: pytest.MonkeyPatch, real: Floats, fake: Floats
) -> None:
    whole = m.precision_recall(real, fake)
    monkeypatch.setattr(m, "_DISTANCE_ROWS", 7)
    assert m.precision_recall(real, fake) == whole


def test_inception_score_equals_torch_fidelity() -> None:
    logits = np.random.default_rng(4).normal(size=(50, 1008)).astype(np.float32) * 3
    peer = torch_fidelity().metric_isc.isc_features_to_metric(
        torch.from_numpy(logits), splits=5, shuffle=False
    )
    mean, std = m.inception_score(logits, splits=5)
    assert mean == pytest.approx(peer["inception_score_mean"], rel=1e-9)
    assert std == pytest.approx(peer["inception_score_std"], rel=1e-9)
    assert mean > 1


def test_noise_is_further_from_faces_than_faces_are_by_fid_and_swd() -> None:
    faces_a, faces_b = faces(8, seed=1, size=16), faces(8, seed=2, size=16)
    noise = torch.randint(
        0, 256, faces_a.shape, generator=torch.Generator().manual_seed(3), dtype=torch.uint8
    )
    features = InceptionFeatures(random_inception(), torch.device("cpu"), batch_size=4)
    a, b, c = features(faces_a).pool, features(faces_b).pool, features(noise).pool
    assert m.fid(a, c) > 2 * m.fid(a, b)
    assert abs(m.fid(a, a)) < 1e-9 * m.fid(a, b)
    # SWD needs no Inception pass, so more images: with 8 its patch sample is too small to tell.
    faces_a, faces_b = faces(128, seed=1, size=16), faces(128, seed=2, size=16)
    noise = torch.randint(
        0, 256, faces_a.shape, generator=torch.Generator().manual_seed(3), dtype=torch.uint8
    )
    assert sliced_wasserstein(faces_a, noise).mean > 2 * sliced_wasserstein(faces_a, faces_b).mean
