"""The FID Inception network against torch-fidelity's, and where its weights come from."""

from __future__ import annotations

import urllib.error
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from runner.errors import RunError
from runner.metrics import weights
from runner.metrics.inception import CLASSES, FEATURES, FidInceptionV3, resize_bilinear_tf1
from tests.runner.peers import random_inception, save_in_fidelity_layout, torch_fidelity


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("inception")
    return save_in_fidelity_layout(random_inception(seed=3), folder / weights.TORCH_FIDELITY_FILE)


def test_features_equal_torch_fidelity_with_the_same_weights(weights_file: Path) -> None:
    tf = torch_fidelity()
    peer = tf.FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(weights_file)
    )
    ours = weights.load_inception(weights_file, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    for size in ((32, 32), (20, 28)):  # square, and a shape whose two axes resize differently
        images = torch.randint(0, 256, (2, 3, *size), generator=gen, dtype=torch.uint8)
        with torch.no_grad():
            pool, logits = ours(images)
            peer_pool, peer_logits = peer(images)
        assert pool.shape == (2, FEATURES) and logits.shape == (2, CLASSES)
        assert pool.std() > 0.1  # live features, not a network that maps everything to zero
        torch.testing.assert_close(pool, peer_pool, rtol=0, atol=1e-5)
        torch.testing.assert_close(logits, peer_logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize("size", [(16, 16), (32, 32), (64, 48), (299, 299), (400, 300)])
def test_resize_is_tensorflow_1_bilinear_as_torch_fidelity_computes_it(size: tuple[int, int]) -> None:
    ported = torch_fidelity().interpolate_compat_tensorflow.interpolate_bilinear_2d_like_tensorflow1x
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(1)) * 255
    expected = ported(x, size=(299, 299), align_corners=False)
    assert torch.equal(resize_bilinear_tf1(x, 299, 299), expected)


def test_resize_differs_from_torch_interpolate_by_whole_pixel_values() -> None:
    # The reason for resize_bilinear_tf1: PyTorch's half-pixel rule gives other pixels (README: how images are resized).
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 255
    torch_way = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    assert (resize_bilinear_tf1(x, 299, 299) - torch_way).abs().max() > 10


def test_grey_images_are_read_as_three_equal_channels() -> None:
    net = random_inception(seed=4)
    grey = torch.randint(
        0, 256, (1, 1, 16, 16), generator=torch.Generator().manual_seed(5), dtype=torch.uint8
    )
    with torch.no_grad():
        assert torch.equal(net(grey)[0], net(grey.expand(-1, 3, -1, -1))[0])


# --- weights ------------------------------------------------------------------------------------------------------


@pytest.fixture
def empty_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """torch.hub's folder pointed at an empty temporary one; returns its checkpoints folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_weights_are_found_in_the_hub_cache_under_either_peers_name(
    empty_hub: Path, weights_file: Path
) -> None:
    assert weights.find_inception(None) is None
    empty_hub.mkdir(parents=True)
    for name in (weights.TORCH_FIDELITY_FILE, weights.PYTORCH_FID_FILE):
        (empty_hub / name).write_bytes(weights_file.read_bytes())
        assert weights.find_inception(None) == empty_hub / name
        (empty_hub / name).unlink()
    assert weights.find_inception(weights_file) == weights_file  # --inception wins
    with pytest.raises(RunError, match=r"--inception .*missing\.pth: no such file"):
        weights.find_inception(weights_file.parent / "missing.pth")


def test_offline_download_is_one_error_saying_where_to_put_the_file(
    empty_hub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(weights, "URL", "http://127.0.0.1:9/weights-inception-2015-12-05-6726825d.pth")
    with pytest.raises(RunError) as caught:
        weights.inception_weights(None)
    message = str(caught.value)
    assert "download failed" in message and str(empty_hub) in message and "--inception PATH" in message
    assert "\n" not in message

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", unreachable)
    with pytest.raises(RunError, match=r"download failed \(no network\)"):
        weights.inception_weights(None)
    with pytest.raises(RunError, match="no FID Inception weights: put"):
        weights.inception_weights(None, download=False)


def test_a_download_lands_in_the_hub_cache_where_it_is_found_next_time(
    empty_hub: Path, weights_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def download(url: str, **kwargs: Any) -> Any:  # what torch.hub does, minus the network
        empty_hub.mkdir(parents=True, exist_ok=True)
        (empty_hub / url.rsplit("/", 1)[1]).write_bytes(weights_file.read_bytes())
        return torch.load(weights_file, weights_only=True)

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", download)
    path = weights.inception_weights(None)
    assert path == empty_hub / weights.TORCH_FIDELITY_FILE and weights.find_inception(None) == path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a weights file", "not a readable weights file"),
        (b"", "not a readable weights file"),
        ("tensor", "holds a Tensor, not the state dict"),
        (
            "other network",
            r"not the FID Inception-v3 weights .*lacks \d+ keys .*has unknown 2 keys \(0.weight",
        ),
        ("wrong shape", "not the FID Inception-v3 weights: .*size mismatch for fc.weight"),
    ],
)
def test_a_wrong_weights_file_is_one_error(tmp_path: Path, content: bytes | str, message: str) -> None:
    path = tmp_path / "w.pth"
    if content == "tensor":
        torch.save(torch.zeros(3), path)
    elif content == "other network":
        torch.save(torch.nn.Sequential(torch.nn.Linear(2, 2)).state_dict(), path)
    elif content == "wrong shape":
        state = FidInceptionV3().state_dict()
        state["fc.weight"] = torch.zeros(1000, FEATURES)
        torch.save(state, path)
    else:
        assert isinstance(content, bytes)
        path.write_bytes(content)
    with pytest.raises(RunError, match=message) as caught:
        weights.load_inception(path, torch.device("cpu"))
    assert "\n" not in str(caught.value)
