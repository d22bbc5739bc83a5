"""The FID Inception network and FID against pytorch-fid, the most used FID code, with the same random weights.

pytorch-fid builds its network from torchvision's Inception-v3 and loads ``pt_inception-2015-12-05-6726825d.pth``;
here its download is replaced by random weights (tests/runner/peers.py), and its own state dict, saved under its
file name, is what ``archspec eval`` loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch

from runner.metrics import fid as m
from runner.metrics import weights
from runner.metrics.fid import InceptionFeatures
from runner.metrics.inception import FEATURES, FidInceptionV3, resize_bilinear_tf1
from tests.runner.conftest import faces
from tests.runner.peers import fidelity_state, pytorch_fid, random_inception


@pytest.fixture(scope="module")
def peer_network(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """pytorch-fid's InceptionV3 (pool3 block, its input resize and scaling off) with random weights, and its
    Inception-v3's state dict saved as pytorch-fid's weights file."""
    fid_module = pytorch_fid()
    state = fidelity_state(random_inception(seed=7))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fid_module.inception, "load_state_dict_from_url", lambda *a, **k: state)
        net = fid_module.inception.InceptionV3([3], resize_input=False, normalize_input=False).eval()
        torchvision_inception = fid_module.inception.fid_inception_v3()
    path = tmp_path_factory.mktemp("pytorch_fid") / weights.PYTORCH_FID_FILE
    torch.save(torchvision_inception.state_dict(), path)  # its layout, num_batches_tracked included
    return net, path


@pytest.fixture(scope="module")
def ours(peer_network: tuple[Any, Path]) -> FidInceptionV3:
    """archspec's network, loaded from pytorch-fid's weights file as ``archspec eval`` loads it."""
    return weights.load_inception(peer_network[1], torch.device("cpu"))


def _peer_pool(net: Any, images: torch.Tensor) -> torch.Tensor:
    """pytorch-fid's pool3 features of uint8 images, given the network input archspec computes."""
    x = resize_bilinear_tf1(images.float(), 299, 299)
    with torch.no_grad():
        return net((x - 128) / 128)[0].flatten(1)


def test_pytorch_fids_weights_file_loads_and_gives_its_features(
    peer_network: tuple[Any, Path], ours: FidInceptionV3
) -> None:
    net, path = peer_network
    assert any(key.endswith("num_batches_tracked") for key in torch.load(path, weights_only=True))
    for images in (faces(2, seed=1, size=299), faces(3, seed=2)):  # the network's size, and one resized
        with torch.no_grad():
            pool, _ = ours(images)
        expected = _peer_pool(net, images)
        assert pool.shape == expected.shape == (len(images), FEATURES)
        assert pool.std() > 0.1  # live features
        torch.testing.assert_close(pool, expected, rtol=0, atol=1e-5)


def test_fid_on_the_same_images_equals_pytorch_fids(
    peer_network: tuple[Any, Path], ours: FidInceptionV3
) -> None:
    net, _ = peer_network
    real, fake = faces(12, seed=3), faces(12, seed=4).flip(-1).roll(5, -2)
    features = InceptionFeatures(ours, torch.device("cpu"), 4)
    fid = m.fid(features(real).pool, features(fake).pool)
    fid_score = pytorch_fid().fid_score
    stats = [_statistics(_peer_pool(net, images).numpy()) for images in (real, fake)]
    expected = fid_score.calculate_frechet_distance(*stats[0], *stats[1])
    assert fid > 1
    # 12 images in 2048 dimensions: singular covariances, where sqrtm's error bounds the agreement.
    assert fid == pytest.approx(expected, rel=1e-4)


def test_fid_of_features_equals_pytorch_fids() -> None:
    rng = np.random.default_rng(5)
    mixing = rng.normal(size=(24, 24)) / np.sqrt(24)
    real = (rng.normal(size=(200, 24)) @ mixing + 1.0).astype(np.float32)
    fake = (rng.normal(size=(150, 24)) @ mixing * 1.3 + 1.2).astype(np.float32)
    expected = pytorch_fid().fid_score.calculate_frechet_distance(*_statistics(real), *_statistics(fake))
    assert m.fid(real, fake) == pytest.approx(expected, rel=1e-9)
    assert m.fid(real, fake) > 1


def test_pytorch_fids_own_resize_gives_other_features(
    peer_network: tuple[Any, Path], ours: FidInceptionV3
) -> None:
    """Why archspec's FID is comparable with torch-fidelity's and TensorFlow's, not pytorch-fid's (README): on a
    32×32 image pytorch-fid's half-pixel bilinear resize feeds the same network other pixels."""
    net, _ = peer_network
    images = faces(2, seed=6)
    with torch.no_grad():
        pool, _ = ours(images)
        half_pixel = torch.nn.functional.interpolate(
            images.float(), size=(299, 299), mode="bilinear", align_corners=False
        )
        theirs = net((half_pixel - 128) / 128)[0].flatten(1)
    assert (pool - theirs).abs().max() > 100 * 1e-5


def _statistics(features: npt.NDArray[Any]) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """Mean and covariance as pytorch-fid's calculate_activation_statistics computes them (its features are
    float64 here, as ours are once they leave the network)."""
    features = features.astype(np.float64)
    return np.mean(features, axis=0), np.cov(features, rowvar=False)
