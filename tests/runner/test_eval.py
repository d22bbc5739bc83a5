"""``archspec eval`` end to end: a real tiny run, real HDF5 files, the real CLI; the cache; every fault."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch

from archspec.check import check_file
from archspec.cli import main
from runner import checkpoint as ckpt
from runner.metrics import weights
from runner.metrics.fid import InceptionFeatures
from runner.metrics.reference import SUFFIX
from runner.synthetic import synthetic_faces
from tests.runner.conftest import ROOT, TINY, Cli, one_error_line, run_archspec
from tests.runner.peers import random_inception, save_in_fidelity_layout

INCEPTION_KEYS = {"fid", "kid", "kid_std", "precision", "recall", "is", "is_std"}
PIXEL_KEYS = {"swd", "swd_levels", "ndb", "ndb_different", "ndb_bins"}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder of a few real training steps of specs/tiny.yaml, with EMA."""
    out = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CI", "1")
        code = main(
            ["train", str(TINY), "--max-steps", "4", "--ema", "0.9", "--out", str(out), "--limit", "64"]
        )
    assert code == 0
    (folder,) = (out / "tiny").iterdir()
    return folder


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_in_fidelity_layout(random_inception(seed=1), tmp_path_factory.mktemp("w") / "inception.pth")


@pytest.fixture(autouse=True)
def _no_hub_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # An empty torch hub cache and no network: only what a test passes with --inception exists.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(weights, "URL", "http://127.0.0.1:9/weights-inception-2015-12-05-6726825d.pth")
    yield


def faces_h5(path: Path, n: int = 24, size: int = 16, seed: int = 0) -> Path:
    """A packed HDF5 file of synthetic faces, as ``archspec data pack`` writes it."""
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=synthetic_faces(n, (size, size, 3), seed))
    return path


def report(result: Any) -> dict[str, Any]:
    assert result.code == 0, result.err
    data: dict[str, Any] = json.loads(result.out)
    return data


def test_swd_and_ndb_without_weights_by_default(cli: Cli, run: Path) -> None:
    data = report(cli("eval", run, "--data", "synthetic", "--n", "40", "--json"))
    assert set(data["metrics"]) == PIXEL_KEYS
    assert data["weights"] == "ema" and data["step"] == 4 and data["checkpoint"].endswith("last.pt")
    assert data["real_images"] == data["generated_images"] == 40
    assert (
        data["metrics"]["swd"] > 0 and 0 <= data["metrics"]["ndb"] <= 1 and data["metrics"]["ndb_bins"] == 2
    )


def test_every_metric_with_a_saved_inception_file(
    cli: Cli, run: Path, inception_file: Path, tmp_path: Path
) -> None:
    data_file = faces_h5(tmp_path / "faces.h5")
    data = report(
        cli(
            "eval",
            run / "checkpoints" / "last.pt",
            "--data",
            data_file,
            "--n",
            "4",
            "--inception",
            inception_file,
            "--json",
            "--batch-size",
            "2",
        )
    )
    assert set(data["metrics"]) == INCEPTION_KEYS | PIXEL_KEYS
    assert data["inception"] == str(inception_file)
    assert data["metrics"]["fid"] > 0 and 0 <= data["metrics"]["precision"] <= 1
    table = cli(
        "eval", run, "--data", data_file, "--n", "2", "--inception", inception_file, "--metrics", "fid,swd"
    )
    assert table.code == 0, table.err
    lines = table.out.splitlines()
    assert "(step 4, ema weights) against" in lines[0] and "2 generated, 2 real images" in lines[0]
    assert [line.split()[0] for line in lines[1:]] == ["fid", "swd"]


def test_real_features_are_cached_beside_the_data_and_reused_until_the_file_changes(
    cli: Cli, run: Path, inception_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    original = InceptionFeatures.__call__

    def counted(self: InceptionFeatures, images: torch.Tensor, progress: Any = None) -> Any:
        calls.append(len(images))
        return original(self, images, progress)

    monkeypatch.setattr(InceptionFeatures, "__call__", counted)
    data_file = faces_h5(tmp_path / "faces.h5")
    args = (
        "eval",
        run,
        "--data",
        data_file,
        "--n",
        "2",
        "--inception",
        inception_file,
        "--metrics",
        "fid",
        "--json",
    )
    first = report(cli(*args))
    cached = list((tmp_path / f"faces.h5{SUFFIX}").iterdir())
    assert len(calls) == 2 and len(cached) == 1 and cached[0].name.endswith(".npz")
    assert not [p for p in tmp_path.rglob("*tmp*")]  # written atomically: no temporary file left
    second = report(cli(*args))
    assert len(calls) == 3  # only the generated images this time
    assert second["metrics"]["fid"] == first["metrics"]["fid"]
    assert any("read from" in note for note in second["notes"])

    faces_h5(data_file, seed=1)  # other images, same name
    third = report(cli(*args))
    assert len(calls) == 5 and len(list(cached[0].parent.iterdir())) == 2
    assert third["metrics"]["fid"] != first["metrics"]["fid"]


def test_a_cache_folder_that_cannot_be_written_means_no_cache(
    cli: Cli, run: Path, inception_file: Path, tmp_path: Path
) -> None:
    data_file = faces_h5(tmp_path / "faces.h5")
    (tmp_path / f"faces.h5{SUFFIX}").write_text("a file where the cache folder would go")
    result = cli(
        "eval", run, "--data", data_file, "--n", "2", "--inception", inception_file, "--metrics", "fid"
    )
    assert result.code == 0 and "Traceback" not in result.err
    assert "note: not cached: cannot write" in result.err


def test_larger_data_images_are_centre_cropped_as_training_does_and_said(
    cli: Cli, run: Path, tmp_path: Path
) -> None:
    data_file = faces_h5(tmp_path / "faces24.h5", size=24)
    data = report(cli("eval", run, "--data", data_file, "--n", "20", "--json"))
    assert data["real_images"] == 20
    assert "real images stored 24x24x3, centre-cropped to 16x16 as training does" in data["notes"]


def test_asking_for_fid_without_weights_is_one_error_saying_where_to_put_them(cli: Cli, run: Path) -> None:
    line = one_error_line(cli("eval", run, "--data", "synthetic", "--n", "4", "--metrics", "fid"))
    assert "download failed" in line and weights.PYTORCH_FID_FILE in line and "--inception PATH" in line


def test_the_real_cli_in_a_subprocess(run: Path, tmp_path: Path) -> None:
    result = run_archspec(
        "eval", str(run), "--data", "synthetic", "--n", "20", "--metrics", "ndb", cwd=tmp_path
    )
    assert result.code == 0, result.err
    assert "ndb" in result.out.splitlines()[1] and "bins differ" in result.out


def _conditional_checkpoint(run: Path, tmp_path: Path) -> Path:
    """A checkpoint whose stored spec is specs/examples/cgan.yaml (the networks do not matter: the data is refused
    first)."""
    state = ckpt.load_checkpoint(run / "checkpoints" / "last.pt")
    text = (ROOT / "specs" / "examples" / "cgan.yaml").read_text(encoding="utf-8")
    spec = check_file(ROOT / "specs" / "examples" / "cgan.yaml").spec
    assert spec is not None
    state.update(spec_text=text, train=spec.train.model_dump(mode="json"), value_range=None)
    del state["spec_sha256"]  # save_checkpoint writes the new text's
    path = tmp_path / "cgan.pt"
    ckpt.save_checkpoint(path, state)
    return path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("missing-run", "--data", "synthetic"), "missing-run: no such checkpoint file or run folder"),
        (("{run}", "--data", "missing.h5"), "missing.h5"),
        (("{run}", "--data", "synthetic", "--n", "1"), "--n 1: the metrics compare sets; use at least 2"),
        (("{run}", "--data", "synthetic", "--metrics", "fid,lpips"), "unknown metric lpips; choose from"),
        (("{run}", "--data", "synthetic", "--device", "tpu"), "unknown device 'tpu'"),
        (("{corrupt}", "--data", "synthetic"), "not a readable checkpoint"),
        (("{empty}", "--data", "synthetic"), "no intact checkpoint in"),
        (("{run}", "--data", "{small}"), "smaller"),
        (
            ("{cgan}", "--data", "{unlabelled}"),
            "images without labels, but the spec takes a class label (10 classes)",
        ),
        (
            ("{run}", "--data", "synthetic", "--n", "3", "--metrics", "pr", "--inception", "{w}"),
            "precision/recall needs more than 3 images in each set",
        ),
        (("{run}", "--data", "synthetic", "--inception", "{corrupt}"), "not a readable weights file"),
        (
            ("{run}", "--data", "synthetic", "--inception", "nowhere.pth"),
            "--inception nowhere.pth: no such file",
        ),
    ],
)
def test_every_fault_is_one_error_line(
    cli: Cli,
    run: Path,
    inception_file: Path,
    tmp_path: Path,
    args: tuple[str, ...],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes((run / "checkpoints" / "last.pt").read_bytes()[:5000])
    (tmp_path / "empty" / "checkpoints").mkdir(parents=True)
    with h5py.File(tmp_path / "small.h5", "w") as f:
        f.create_dataset("images", data=np.zeros((4, 8, 8, 3), np.uint8))
    with h5py.File(tmp_path / "unlabelled.h5", "w") as f:
        f.create_dataset("images", data=np.zeros((4, 16, 16, 3), np.uint8))
    places = {
        "unlabelled": tmp_path / "unlabelled.h5",
        "run": run,
        "corrupt": corrupt,
        "empty": tmp_path / "empty",
        "small": tmp_path / "small.h5",
        "w": inception_file,
        "cgan": _conditional_checkpoint(run, tmp_path) if "{cgan}" in args else "",
    }
    line = one_error_line(cli("eval", *(a.format(**places) for a in args)))
    assert message in line, line


def test_nothing_of_the_run_is_changed(cli: Cli, run: Path, tmp_path: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    assert cli("eval", copy, "--data", "synthetic", "--n", "8").code == 0
    assert {p.relative_to(tmp_path / "copy") for p in copy.rglob("*")} == {p.relative_to(run) for p in before}


def test_help_has_worked_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = capsys.readouterr().out
    assert "archspec eval runs/tiny/20261128-021500 --data synthetic --n 2000" in text
    assert "--inception PATH" in text and "10,000" in text and "swd,ndb" in text
