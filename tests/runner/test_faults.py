"""The fault matrix: what a hostile or unlucky user meets, each case on the CPU in a few seconds.

Signals are real signals sent to real ``python -m archspec`` processes. A full disk or a read-only folder is an
OSError injected at the write site (root ignores permission bits, and mounting a tmpfs needs privileges a test
should not assume). Hostile files are generated small; none is large on disk. Adding a fault is adding a row:
a case in ``ONE_LINE_FAULTS`` sets the scene and returns the command line that must fail with one ``error:``
line and exit code 1.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch

from runner.checkpoint import load_checkpoint, save_checkpoint
from runner.errors import RunError
from runner.outputs import make_run_dir
from runner.run_folder import RunLock
from tests.runner.conftest import TINY, Cli, one_error_line, only_run, spec_variant, subprocess_env

# --- helpers ------------------------------------------------------------------------------------------------------


def _train(cli: Cli, out: Path, *args: str | int | Path) -> Path:
    result = cli("train", TINY, "--out", out, "--limit", 64, "--epochs", 100, "--log-every", 2, *args)
    assert result.code == 0, result.err
    return only_run(out)


def _steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


# A real ``archspec train`` whose final sample grid takes two seconds and says when it starts: the window in
# which a signal must not cost last.pt.
_SLOW_FINAL = """
import sys, time
import runner.outputs as outputs
from archspec.cli import main
save_grid = outputs.save_grid
def slow(images, path, value_range, columns=None):
    if path.name == "final.png":
        print("FINAL WRITES", file=sys.stderr, flush=True)
        time.sleep(2)
    save_grid(images, path, value_range, columns)
outputs.save_grid = slow
sys.exit(main(sys.argv[1:]))
"""


def _start(tmp_path: Path, *args: str | int, slow_final: bool = False) -> subprocess.Popen[str]:
    prefix = ["-c", _SLOW_FINAL] if slow_final else ["-m", "archspec"]
    argv = [
        "train",
        TINY,
        "--limit",
        64,
        "--epochs",
        10**5,
        "--log-every",
        5,
        "--sample-every",
        10**6,
        "--out",
        tmp_path / "runs",
    ]
    return subprocess.Popen(
        [sys.executable, *prefix, *(str(a) for a in [*argv, *args])],
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_line(stream: Any, text: str, proc: subprocess.Popen[str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        if text in line:
            return
        if not line and proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode} before {text!r}")
    proc.kill()
    raise AssertionError(f"no {text!r} within {timeout} s")


def _run_json(tmp_path: Path) -> dict[str, Any]:
    return json.loads((only_run(tmp_path / "runs") / "run.json").read_text())  # type: ignore[no-any-return]


# --- signals -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_finishes_the_step_saves_last_pt_and_exits_128_plus_n(
    tmp_path: Path, signum: signal.Signals
) -> None:
    proc = _start(tmp_path, "--max-steps", 10**6, "--checkpoint-every", 10**6)
    _wait_for_line(proc.stdout, "step 5/", proc)
    proc.send_signal(signum)
    _out, err = proc.communicate(timeout=90)
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err and f"interrupted by {signum.name} at step" in err
    state = load_checkpoint(only_run(tmp_path / "runs") / "checkpoints" / "last.pt")
    assert state["step"] >= 5
    run = _run_json(tmp_path)
    assert run["status"] == "interrupted" and run["report"]["signal"] == signum.name


def test_a_signal_during_the_final_writes_still_leaves_a_complete_last_pt(tmp_path: Path) -> None:
    # 30 steps, no periodic checkpoint: before the fix, Ctrl-C here lost all 30.
    proc = _start(tmp_path, "--max-steps", 30, "--checkpoint-every", 1000, slow_final=True)
    _wait_for_line(proc.stderr, "FINAL WRITES", proc)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=90)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert load_checkpoint(only_run(tmp_path / "runs") / "checkpoints" / "last.pt")["step"] == 30
    assert _run_json(tmp_path)["status"] == "finished"


def test_a_second_signal_stops_at_once(tmp_path: Path) -> None:
    proc = _start(tmp_path, "--max-steps", 30, "--checkpoint-every", 10, slow_final=True)
    _wait_for_line(proc.stderr, "FINAL WRITES", proc)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert (
        err.strip().splitlines()[-1]
        == "error: interrupted by SIGTERM (a second stop signal: stopped at once)"
    )
    run = only_run(tmp_path / "runs")
    assert not (run / "checkpoints" / "last.pt").exists()  # stopped before writing it
    assert load_checkpoint(run / "checkpoints" / "step_000030.pt")["step"] == 30
    assert not [p for p in run.rglob(".*tmp-*")]
    assert _run_json(tmp_path)["status"] == "stopped"


# --- run folders ---------------------------------------------------------------------------------------------------


def test_a_run_folder_takes_one_process_at_a_time(cli: Cli, tmp_path: Path) -> None:
    run = _train(cli, tmp_path / "runs", "--max-steps", 4)
    lock = RunLock(run)  # this test process holds it, as a second `--resume auto` would find
    try:
        line = one_error_line(
            cli("train", TINY, "--resume", "auto", "--out", tmp_path / "runs", "--max-steps", 6)
        )
        assert f"in use by another archspec train (process {os.getpid()})" in line
    finally:
        lock.release()
    result = cli("train", TINY, "--resume", "auto", "--out", tmp_path / "runs", "--max-steps", 6)
    assert result.code == 0, result.err  # released on exit: the next one gets it


def test_resuming_an_older_checkpoint_branches_and_keeps_the_history(cli: Cli, tmp_path: Path) -> None:
    run = _train(cli, tmp_path / "runs", "--max-steps", 12, "--checkpoint-every", 4)
    rows_before = _steps(run)
    result = cli(
        "train", TINY, "--resume", run / "checkpoints" / "step_000004.pt", "--out", tmp_path / "runs",
        "--max-steps", 8, "--limit", 64, "--log-every", 2,
    )  # fmt: skip
    assert result.code == 0, result.err
    assert "branched:" in result.out
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 12  # the old lineage, untouched
    assert _steps(run) == rows_before
    (branch,) = [p for p in (tmp_path / "runs" / "tiny").iterdir() if p != run]
    assert load_checkpoint(branch / "checkpoints" / "last.pt")["step"] == 8
    assert _steps(branch) == [2, 4, 6, 8]


def test_stale_temporary_files_are_swept_on_resume(cli: Cli, tmp_path: Path) -> None:
    run = _train(cli, tmp_path / "runs", "--max-steps", 4)
    stale = [run / "checkpoints" / ".step_000005.pt.tmp-99999", run / ".run.json.tmp-99999"]
    for path in stale:
        path.write_bytes(b"half a file")
    result = cli("train", TINY, "--resume", "auto", "--out", tmp_path / "runs", "--max-steps", 6)
    assert result.code == 0, result.err
    assert not any(p.exists() for p in stale)


def test_resume_auto_skips_a_damaged_newest_checkpoint_with_one_warning(cli: Cli, tmp_path: Path) -> None:
    run = _train(cli, tmp_path / "runs", "--max-steps", 8, "--checkpoint-every", 4)
    last = run / "checkpoints" / "last.pt"
    data = bytearray(last.read_bytes())
    data[len(data) // 2] ^= 0x10  # bit rot inside a tensor: only the CRC notices
    last.write_bytes(bytes(data))
    result = cli("train", TINY, "--resume", "auto", "--out", tmp_path / "runs", "--max-steps", 10)
    assert result.code == 0, result.err
    warnings = [line for line in result.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "last.pt" in warnings[0] and "CRC" in warnings[0], result.err
    assert "using step_000008.pt" in warnings[0]
    assert "from " in result.out and "step_000008.pt at step 8" in result.out


def test_a_run_folder_stays_inside_out() -> None:
    for name in ("..", ".", ".x", "a/b"):
        with pytest.raises(RunError):
            make_run_dir("/tmp/never-made", name)


# --- one error line, exit 1, no traceback ---------------------------------------------------------------------------

Scene = Callable[[Cli, Path], list[Any]]


def _hdf5(tmp_path: Path, build: Callable[[h5py.File], None]) -> Path:
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        build(f)
    return path


def _billion_images(cli: Cli, tmp_path: Path) -> list[Any]:
    path = _hdf5(tmp_path, lambda f: f.create_dataset("images", shape=(10**9, 16, 16, 3), dtype="u1"))
    assert path.stat().st_size < 10_000
    return ["train", TINY, "--data", path, "--max-steps", 1, "--out", tmp_path]


def _huge_images_no_data(cli: Cli, tmp_path: Path) -> list[Any]:
    path = _hdf5(tmp_path, lambda f: f.create_dataset("images", shape=(64, 100_000, 100_000, 3), dtype="u1"))
    return ["train", TINY, "--data", path, "--max-steps", 1, "--out", tmp_path]


def _link_cycle(cli: Cli, tmp_path: Path) -> list[Any]:
    def build(f: h5py.File) -> None:
        group = f.create_group("a")
        group["again"] = group  # a hard link to itself

    return ["train", TINY, "--data", _hdf5(tmp_path, build), "--max-steps", 1, "--out", tmp_path]


def _deep_groups(cli: Cli, tmp_path: Path) -> list[Any]:
    def build(f: h5py.File) -> None:
        f.create_group("/".join(["g"] * 2000))

    return ["train", TINY, "--data", _hdf5(tmp_path, build), "--max-steps", 1, "--out", tmp_path]


def _fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


def _zip_bomb(cli: Cli, tmp_path: Path) -> list[Any]:
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive, archive.open("a.png", "w") as f:
        zeros = bytes(1 << 20)
        for _ in range(65):  # 65 MiB of zeros: a 65 kB entry
            f.write(zeros)
    assert path.stat().st_size < 1 << 20
    return ["data", "pack", path, tmp_path / "out.h5"]


def _wrong_typed_checkpoint(cli: Cli, tmp_path: Path) -> list[Any]:
    run = _train(cli, tmp_path / "runs", "--max-steps", 2)
    last = run / "checkpoints" / "last.pt"
    state = load_checkpoint(last)
    state["train"] = [1, 2]
    torch.save(state, last)
    return ["train", TINY, "--resume", last]


def _wrong_typed_value_range(cli: Cli, tmp_path: Path) -> list[Any]:
    run = _train(cli, tmp_path / "runs", "--max-steps", 2)
    last = run / "checkpoints" / "last.pt"
    state = load_checkpoint(last)
    state["value_range"] = "ab"
    torch.save(state, last)
    return ["sample", last, "--out", tmp_path / "g.png"]


def _odd_run_folder(entry: str, make: Callable[[Path], None]) -> Scene:
    def scene(cli: Cli, tmp_path: Path) -> list[Any]:
        run = _train(cli, tmp_path / "runs", "--max-steps", 2)
        path = run / entry
        if path.is_dir():
            path.rename(run / "moved")
        else:
            path.unlink(missing_ok=True)
        make(path)
        return ["train", TINY, "--resume", "auto", "--out", tmp_path / "runs", "--max-steps", 4]

    return scene


def _huge_spec(cli: Cli, tmp_path: Path) -> list[Any]:
    def edit(data: dict[str, Any]) -> None:
        wide = [{"type": "linear", "out_features": 32768}]
        wide += [{"type": "linear", "out_features": 65000}, {"type": "linear", "out_features": 32768}] * 2
        data["generator"]["layers"][:0] = wide

    return ["train", spec_variant(tmp_path, "huge", edit), "--out", tmp_path]


def _injected(target: str, err: int) -> Scene:
    """A write that fails as a full disk or a read-only folder would, at ``target`` (module.attribute)."""

    def scene(cli: Cli, tmp_path: Path) -> list[Any]:
        module, *owners, attribute = target.split(".")
        owner: Any = sys.modules[f"runner.{owners.pop(0)}"] if module == "runner" else sys.modules[module]
        for name in owners:
            owner = getattr(owner, name)
        original = getattr(owner, attribute)

        def failing(*args: Any, **kwargs: Any) -> Any:
            path = next((a for a in args if isinstance(a, Path)), None)
            raise OSError(err, os.strerror(err), str(path) if path else None)

        _PATCHES.append((owner, attribute, original))
        setattr(owner, attribute, failing)
        return ["train", TINY, "--max-steps", 4, "--log-every", 2, "--checkpoint-every", 2, "--out", tmp_path]

    return scene


_PATCHES: list[tuple[Any, str, Any]] = []

ONE_LINE_FAULTS: dict[str, tuple[Scene, str]] = {
    "hdf5 declaring 10^9 images": (_billion_images, "most of its images are missing"),
    "hdf5 declaring 100000x100000 images": (_huge_images_no_data, "most of its images are missing"),
    "hdf5 hard-link cycle": (_link_cycle, "no image datasets found"),
    "hdf5 2000 nested groups": (_deep_groups, "levels of them"),
    "train --data FIFO": (lambda c, t: ["train", TINY, "--data", _fifo(t), "--out", t], "is a FIFO"),
    "data pack FIFO": (lambda c, t: ["data", "pack", _fifo(t), t / "o.h5"], "is a FIFO"),
    "data pack zip bomb": (_zip_bomb, "more than an image file may have"),
    "data pack --size 100000": (
        lambda c, t: ["data", "pack", t, t / "o.h5", "--size", 100_000],
        "at most 8192",
    ),
    "sample --out /dev/full --force": (
        lambda c, t: ["sample", _train(c, t / "runs", "--max-steps", 2), "--out", "/dev/full", "--force"],
        "not a regular file; archspec never replaces one",
    ),
    "sample --out DIR --force": (
        lambda c, t: ["sample", _train(c, t / "runs", "--max-steps", 2), "--out", t, "--force"],
        "is a folder",
    ),
    "sample --seed 10^30": (
        lambda c, t: [
            "sample",
            _train(c, t / "runs", "--max-steps", 2),
            "--out",
            t / "g.png",
            "--seed",
            10**30,
        ],
        "--seed",
    ),
    "--sync-batchnorm on one CPU process": (
        lambda c, t: ["train", TINY, "--sync-batchnorm", "--device", "cpu", "--out", t],
        "SyncBatchNorm runs on CUDA only",
    ),
    "checkpoint with a wrong-typed entry": (_wrong_typed_checkpoint, "checkpoint field train is list"),
    "checkpoint with a wrong-typed value_range": (_wrong_typed_value_range, "value_range"),
    "metrics.jsonl is a folder": (_odd_run_folder("metrics.jsonl", lambda p: p.mkdir()), "Is a directory"),
    "run.json is a folder": (_odd_run_folder("run.json", lambda p: p.mkdir()), "is not a file"),
    "samples is a file": (_odd_run_folder("samples", lambda p: p.write_text("x")), "is not a folder"),
    "spec too big for the machine": (_huge_spec, "more than the"),
    "ENOSPC writing a checkpoint": (_injected("runner.checkpoint.save_checkpoint", errno.ENOSPC), "No space"),
    "ENOSPC writing metrics": (_injected("runner.outputs.MetricsLog.append", errno.ENOSPC), "No space"),
    "ENOSPC writing a PNG": (_injected("runner.outputs._write_png", errno.ENOSPC), "No space"),
    "ENOSPC writing run.json": (_injected("runner.outputs.write_json", errno.ENOSPC), "No space"),
    "read-only run folder": (_injected("runner.outputs.write_atomic", errno.EROFS), "Read-only file system"),
}


@pytest.fixture
def _restore_patches() -> Any:
    yield
    while _PATCHES:
        owner, attribute, original = _PATCHES.pop()
        setattr(owner, attribute, original)


@pytest.mark.parametrize("case", list(ONE_LINE_FAULTS))
@pytest.mark.usefixtures("_restore_patches")
def test_a_fault_is_one_error_line(cli: Cli, tmp_path: Path, case: str) -> None:
    scene, expected = ONE_LINE_FAULTS[case]
    argv = scene(cli, tmp_path)
    line = one_error_line(cli(*argv))
    assert expected in line, line


def test_sample_never_replaces_a_device(cli: Cli, tmp_path: Path) -> None:
    run = _train(cli, tmp_path / "runs", "--max-steps", 2)
    one_error_line(cli("sample", run, "--out", "/dev/full", "--force"))
    assert Path("/dev/full").is_char_device()


def test_a_metrics_file_with_foreign_and_undecodable_rows_is_read_around(cli: Cli, tmp_path: Path) -> None:
    run = _train(cli, tmp_path / "runs", "--max-steps", 4)
    with open(run / "metrics.jsonl", "ab") as f:
        f.write(b'\xff\xfe not utf-8\n{"step": 3}\n{"step": "x", "loss_d": 1}\n[1, 2]\n')
    result = cli("train", TINY, "--resume", "auto", "--out", tmp_path / "runs", "--max-steps", 6)
    assert result.code == 0, result.err
    assert (run / "loss.png").is_file()


def test_a_failed_write_marks_the_run_failed_and_names_the_last_checkpoint(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import runner.outputs

    calls = {"n": 0}
    original = runner.outputs._write_png

    def full_disk(path: Path, write: Any) -> None:
        calls["n"] += 1
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(runner.outputs, "_write_png", full_disk)
    line = one_error_line(
        cli("train", TINY, "--max-steps", 4, "--sample-every", 2, "--checkpoint-every", 1, "--out", tmp_path)
    )
    assert "samples/step_000002.png: cannot write at step 2: No space left on device" in line
    assert "the last checkpoint is" in line and "step_000001.pt" in line  # sampled before it saves
    monkeypatch.setattr(runner.outputs, "_write_png", original)
    assert json.loads((only_run(tmp_path) / "run.json").read_text())["status"] == "failed"


def test_save_checkpoint_interrupted_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "x.pt", {"spec_text": "x", "step": np.int64(1).item()})
    assert list(tmp_path.iterdir()) == []
