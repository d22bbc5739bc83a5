"""`archspec train` end to end on the CPU: what a run writes, the data it reads, and how it fails and stops."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from runner.checkpoint import load_checkpoint
from runner.losses import GanLoss
from runner.outputs import grid_size
from tests.runner.conftest import (
    SPECS,
    TINY,
    Cli,
    archspec_command,
    one_error_line,
    only_run,
    spec_variant,
    subprocess_env,
)

METRIC_KEYS = {"step", "epoch", "loss_d", "loss_g", "d_real", "d_fake", "images_per_s", "time"}


def _rows(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as img:
        img.verify()  # a truncated or foreign file raises here
    with Image.open(path) as img:
        return img.size


def test_tiny_trains_on_synthetic_faces(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    result = cli(
        "train",
        TINY,
        "--max-steps",
        20,
        "--log-every",
        5,
        "--sample-every",
        10,
        "--checkpoint-every",
        10,
        "--out",
        out,
    )
    assert result.code == 0, result.err
    run = only_run(out)
    assert "synthetic" in result.out and "values" not in result.err
    assert "in [0, 1]" in result.out and "cpu" in result.out  # the header: data range and device
    rows = _rows(run)
    assert [r["step"] for r in rows] == [5, 10, 15, 20]
    assert all(set(r) == METRIC_KEYS for r in rows)
    assert all(math.isfinite(r[k]) for r in rows for k in ("loss_d", "loss_g", "d_real", "d_fake"))
    assert len({r["loss_g"] for r in rows}) > 1 and len({r["loss_d"] for r in rows}) > 1
    assert all(0.0 < r["d_real"] < 1.0 for r in rows)  # mean sigmoid outputs
    grid = grid_size(16, 16, 16)
    for name in ("step_000010.png", "step_000020.png", "final.png"):
        assert _png_size(run / "samples" / name) == grid
    assert _png_size(run / "loss.png")[0] > 100
    assert (run / "spec.yaml").read_text() == TINY.read_text()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "last.pt",
        "step_000010.pt",
        "step_000020.pt",
    ]
    doc = json.loads((run / "run.json").read_text())
    assert (
        doc["status"] == "finished" and doc["config"]["max_steps"] == 20 and doc["torch"] == torch.__version__
    )
    assert doc["data"]["source"] == "synthetic" and doc["device"].startswith("cpu")
    report = doc["report"]
    assert report["step"] == 20 and report["wall_s"] > 0 and report["images_per_s"] > 0
    assert report["peak_memory_bytes"] > 10_000_000 and "RSS" in report["peak_memory_kind"]


def _one_channel(data: dict[str, Any]) -> None:
    data["image"] = [1, 16, 16]
    data["generator"]["layers"][6]["out_channels"] = 1


def test_a_one_channel_spec_trains_on_a_packed_grey_npy(cli: Cli, tmp_path: Path) -> None:
    from skimage import data as skimage_data

    npy = Path(skimage_data.__file__).parent / "lfw_subset.npy"  # 200 grey 25x25 faces, floats in [0, 1]
    packed = tmp_path / "lfw.h5"
    pack = cli("data", "pack", npy, packed, "--size", 20, "--channels", 1)
    assert pack.code == 0, pack.err
    assert (
        "packed 200 images" in pack.out
        and "centre-cropped to 20x20" in pack.out
        and "200x20x20x1" in pack.out
    )
    spec = spec_variant(tmp_path, "grey", _one_channel)
    out = tmp_path / "runs"
    result = cli("train", spec, "--data", packed, "--max-steps", 2, "--out", out)
    assert result.code == 0, result.err
    # 20x20 stored, 16x16 trained: the header says the crop; 200 = 12 x 16 + 8, and says the 8 skipped.
    assert "stored 20x20x1, centre-cropped to 16x16, trained as 1x16x16" in result.out
    assert "8 images of each epoch do not fill a step of 16 and are skipped" in result.out
    rgb = tmp_path / "rgb.h5"
    assert cli("data", "pack", npy, rgb, "--size", 16).code == 0
    line = one_error_line(cli("train", spec, "--data", rgb, "--max-steps", 1, "--out", out))
    assert "--channels 1" in line


def test_second_run_gets_its_own_folder(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    for _ in range(2):
        assert cli("train", TINY, "--max-steps", 1, "--out", out).code == 0
    runs = sorted(p.name for p in (out / "tiny").iterdir())
    assert len(runs) == 2 and runs[1].startswith(runs[0][:8])


def test_tiny_trains_on_packed_real_faces(cli: Cli, tmp_path: Path) -> None:
    from skimage.data import lfw_subset

    faces = lfw_subset()  # type: ignore[no-untyped-call]  # skimage ships no types; 200 grey 25x25 faces in [0, 1]
    folder = tmp_path / "faces"
    folder.mkdir()
    for i, face in enumerate(faces):
        Image.fromarray((face * 255).round().astype(np.uint8), mode="L").save(folder / f"{i:03d}.png")
    packed = tmp_path / "faces16.h5"
    pack = cli("data", "pack", folder, packed, "--size", 16)
    assert pack.code == 0, pack.err
    assert "200 images" in pack.out
    out = tmp_path / "runs"
    result = cli("train", TINY, "--data", packed, "--max-steps", 8, "--log-every", 4, "--out", out)
    assert result.code == 0, result.err
    run = only_run(out)
    doc = json.loads((run / "run.json").read_text())
    assert doc["data"]["layout"] == "packed" and doc["data"]["count"] == 200
    assert "packed" in result.out and "200 images" in result.out
    assert [r["step"] for r in _rows(run)] == [4, 8]


def test_trains_on_the_seeds_hdf5_layout(cli: Cli, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "celeba_small.h5py"
    with h5py.File(path, "w") as f:
        group = f.create_group("img_align_celeba")
        for i in range(40):
            group.create_dataset(
                f"{i}.jpg",
                data=rng.integers(0, 256, (40, 36, 3), dtype=np.uint8),
                compression="gzip",
                compression_opts=9,
            )
    out = tmp_path / "runs"
    result = cli("train", TINY, "--data", path, "--max-steps", 3, "--out", out)
    assert result.code == 0, result.err
    doc = json.loads((only_run(out) / "run.json").read_text())
    assert doc["data"]["layout"] == "per-image group 'img_align_celeba'"
    assert doc["data"]["stored_shape"] == [40, 36, 3] and doc["data"]["count"] == 40


def test_conv_gan_dry_run(cli: Cli, tmp_path: Path) -> None:
    result = cli("train", SPECS / "conv_gan.yaml", "--dry-run", "--out", tmp_path)
    assert result.code == 0, result.err
    run = only_run(tmp_path, "conv_gan")
    assert "dry run" in result.out and "random" in result.out
    assert _png_size(run / "samples" / "final.png") == grid_size(16, 128, 128)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 1
    assert (run / "loss.png").is_file() and len(_rows(run)) == 1


def test_dry_run_defaults_to_a_temporary_folder_it_removes(cli: Cli) -> None:
    result = cli("train", TINY, "--dry-run")
    assert result.code == 0, result.err
    run, files = result.out.split("dry run: one step of everything into ")[1].split(": ", 1)
    assert "checkpoints/last.pt" in files and "samples/final.png" in files
    assert "temporary folder is removed" in files
    root = Path(run).parents[1]
    assert root.name.startswith("archspec-dry-run-") and not root.exists()


# --- faults: one line each, before any step ------------------------------------------------------------------------


def _packed(path: Path, images: np.ndarray) -> Path:
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images)
    return path


def _grey_spec(tmp_path: Path) -> Path:
    def one_channel(data: dict[str, Any]) -> None:
        data["image"] = [1, 16, 16]
        data["generator"]["layers"][6]["out_channels"] = 1

    return spec_variant(tmp_path, "grey", one_channel)


FAULTS: dict[str, tuple[Callable[[Path], list[Any]], str]] = {
    "missing file": (lambda tmp: ["--data", tmp / "nope.h5"], "no such file"),
    "corrupt file": (lambda tmp: ["--data", _garbage(tmp / "bad.h5")], "not a readable HDF5 file"),
    "images too small": (
        lambda tmp: ["--data", _packed(tmp / "small.h5", np.zeros((20, 8, 8, 3), np.uint8))],
        "smaller than",
    ),
    "empty dataset": (
        lambda tmp: ["--data", _packed(tmp / "empty.h5", np.zeros((0, 16, 16, 3), np.uint8))],
        "0 images",
    ),
    "fewer images than a batch": (
        lambda tmp: ["--data", _packed(tmp / "few.h5", np.zeros((5, 16, 16, 3), np.uint8))],
        "fewer than one batch of 16",
    ),
    "channels differ": (
        lambda tmp: [_grey_spec(tmp), "--data", _packed(tmp / "rgb.h5", np.zeros((20, 16, 16, 3), np.uint8))],
        "3 channels",
    ),
    "unknown device": (lambda tmp: ["--device", "tpu"], "unknown device 'tpu'"),
    "device index out of range": (lambda tmp: ["--device", "cuda:99"], "cuda:99"),
}


def _garbage(path: Path) -> Path:
    path.write_bytes(b"\x89HDF not really" * 100)
    return path


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_faults_are_one_line_before_any_step(cli: Cli, tmp_path: Path, fault: str) -> None:
    make, expected = FAULTS[fault]
    args = make(tmp_path)
    spec = args.pop(0) if args and str(args[0]).endswith(".yaml") else TINY
    out = tmp_path / "runs"
    line = one_error_line(cli("train", spec, *args, "--out", out, "--max-steps", 2))
    assert expected in line
    assert not out.exists() or not any(out.rglob("*.pt"))  # nothing trained, nothing saved
    assert not (out / "tiny").exists() and not (out / "variant").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_one_line_in_a_real_process(tmp_path: Path) -> None:
    proc = subprocess.run(
        archspec_command("train", TINY, "--device", "cuda", "--out", tmp_path / "runs"),
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error: device 'cuda' asked for, but CUDA is not available")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


# --- NaN -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("log_every", [3, 100])  # caught at a log row, or at the check before a checkpoint
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_every: int
) -> None:
    original = GanLoss.g
    calls = {"n": 0}

    def poisoned(self: GanLoss, scores: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        loss = original(self, scores)
        return loss * float("nan") if calls["n"] >= 6 else loss  # the generator update of step 6 onwards

    monkeypatch.setattr(GanLoss, "g", poisoned)
    out = tmp_path / "runs"
    line = one_error_line(
        cli("train", TINY, "--max-steps", 20, "--checkpoint-every", 4, "--log-every", log_every, "--out", out)
    )
    assert "is nan at step 6" in line
    run = only_run(out)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_000004.pt"]
    assert "step_000004.pt" in line
    state = load_checkpoint(run / "checkpoints" / "step_000004.pt")
    assert state["step"] == 4
    assert all(torch.isfinite(t).all() for t in state["generator"].values() if t.is_floating_point())
    assert json.loads((run / "run.json").read_text())["status"] == "failed"


def test_nan_scores_under_bce_stop_the_run_like_any_nan(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # NaN scores once made F.binary_cross_entropy raise (a device-side assert on CUDA): a traceback, not a stop.
    original = torch.nn.Sigmoid.forward
    calls = {"n": 0}

    def poisoned(self: torch.nn.Sigmoid, x: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1  # tiny's G and D each end in a sigmoid: 5 calls a step (G, D real, D fake, G, D)
        return original(self, x) * (float("nan") if calls["n"] > 25 else 1.0)  # from step 6 on

    monkeypatch.setattr(torch.nn.Sigmoid, "forward", poisoned)
    out = tmp_path / "runs"
    line = one_error_line(cli("train", TINY, "--max-steps", 20, "--checkpoint-every", 4, "--out", out))
    assert "is nan at step 6" in line and "step_000004.pt" in line
    assert sorted(p.name for p in (only_run(out) / "checkpoints").iterdir()) == ["step_000004.pt"]


def test_a_huge_learning_rate_under_bce_stops_with_one_line(cli: Cli, tmp_path: Path) -> None:
    line = one_error_line(cli("train", TINY, "--lr", "1e30", "--max-steps", 100, "--out", tmp_path / "runs"))
    assert "is nan at step 1;" in line and "Try a lower --lr" in line


# --- Ctrl-C and kill -9 --------------------------------------------------------------------------------------------


def _start_long_run(tmp_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        archspec_command(
            "train",
            TINY,
            "--max-steps",
            1_000_000,
            "--epochs",
            100_000,
            "--limit",
            64,
            "--log-every",
            5,
            "--checkpoint-every",
            10,
            "--sample-every",
            1_000_000,
            "--out",
            tmp_path / "runs",
        ),
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(predicate: Any, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(
                f"exited early with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_ctrl_c_saves_last_pt_and_exits_130(tmp_path: Path) -> None:
    proc = _start_long_run(tmp_path)
    assert proc.stdout is not None
    _wait_for(lambda: "step 10/" in (proc.stdout.readline() if proc.stdout else ""), proc)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "resume with: archspec train" in err
    run = only_run(tmp_path / "runs")
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["step"] >= 10
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"


def test_a_closed_stdout_goes_quiet_and_the_run_trains_on(tmp_path: Path) -> None:
    # `archspec train ... | head -2`: the reader leaves after the header; the run must still finish and save.
    command = archspec_command(
        "train",
        TINY,
        "--max-steps",
        40,
        "--log-every",
        1,
        "--checkpoint-every",
        20,
        "--out",
        tmp_path / "runs",
    )
    proc = subprocess.Popen(command, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b"archspec train tiny")
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert err == ""  # no traceback, and no "Exception ignored" from flushing stdout at exit
    run = only_run(tmp_path / "runs")
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 40
    assert json.loads((run / "run.json").read_text())["status"] == "finished"


def test_after_kill_9_resume_auto_continues_from_the_last_checkpoint(cli: Cli, tmp_path: Path) -> None:
    proc = _start_long_run(tmp_path)
    runs = tmp_path / "runs" / "tiny"

    def has_checkpoint() -> bool:
        return runs.is_dir() and any(runs.glob("*/checkpoints/step_000020.pt"))

    _wait_for(has_checkpoint, proc)
    proc.kill()
    proc.wait(timeout=30)
    run = only_run(tmp_path / "runs")
    numbered = sorted((run / "checkpoints").glob("step_*.pt"))
    latest = numbered[-1]
    step = load_checkpoint(latest)["step"]
    assert not (run / "checkpoints" / "last.pt").exists()
    result = cli(
        "train",
        TINY,
        "--resume",
        "auto",
        "--out",
        tmp_path / "runs",
        "--max-steps",
        step + 5,
        "--limit",
        64,
        "--log-every",
        5,
    )
    assert result.code == 0, result.err
    assert f"resumed  from {latest} at step {step}" in result.out
    assert only_run(tmp_path / "runs") == run  # the same run folder, continued
    steps = [r["step"] for r in _rows(run)]
    assert steps == list(range(5, step + 6, 5))  # rows past the checkpoint were dropped, then continued
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == step + 5


def test_a_keyboard_interrupt_in_a_step_still_saves_last_pt(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runner.train import Trainer

    original = Trainer._train_step
    calls = {"n": 0}

    def interrupted(self: Trainer, real: Any) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return original(self, real)

    monkeypatch.setattr(Trainer, "_train_step", interrupted)
    result = cli("train", TINY, "--max-steps", 20, "--out", tmp_path)
    assert result.code == 130 and "Traceback" not in result.err
    assert "interrupted at step 4" in result.err and "--resume" in result.err
    assert load_checkpoint(only_run(tmp_path) / "checkpoints" / "last.pt")["step"] == 4
