"""Checkpoints: bit-exact resume, which checkpoint --resume picks, and the files it refuses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import runner.sample
from archspec.modules import build
from runner.checkpoint import best_checkpoint, find_resume, load_checkpoint, save_checkpoint
from runner.errors import RunError
from tests.runner.conftest import TINY, Cli, assert_same, one_error_line, only_run, spec_variant


def _with_dropout(data: dict[str, Any]) -> None:
    # Dropout draws from the global torch RNG every step: resume must restore it.
    data["discriminator"]["layers"].insert(2, {"type": "dropout", "p": 0.3})


def _critic(data: dict[str, Any]) -> None:
    _with_dropout(data)
    data["discriminator"]["layers"].pop()  # no sigmoid: raw critic scores


def _train(cli: Cli, spec: Path, out: Path, *args: Any) -> Path:
    result = cli(
        "train",
        spec,
        "--out",
        out,
        "--limit",
        64,
        "--epochs",
        5,
        "--log-every",
        2,
        "--checkpoint-every",
        4,
        *args,
    )
    assert result.code == 0, result.err
    return only_run(out)


CASES = {
    # 64 images / 16 per step = 4 steps an epoch: 6 steps stop mid-epoch, 12 cross two epochs. With 2 critic
    # updates a step reads two batches: 2 x 8 images.
    "bce, shuffled, EMA, dropout": (_with_dropout, ["--ema", "0.9"]),
    "wgan_gp, 2 critic steps, in order": (
        _critic,
        ["--loss", "wgan_gp", "--d-steps", "2", "--batch-size", "8", "--no-shuffle"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_n_steps_then_resume_then_n_steps_equals_2n_steps(cli: Cli, tmp_path: Path, case: str) -> None:
    edit, extra = CASES[case]
    spec = spec_variant(tmp_path, edit=edit)
    whole = _train(cli, spec, tmp_path / "whole", "--max-steps", 12, *extra)
    split = _train(cli, spec, tmp_path / "split", "--max-steps", 6, *extra)
    assert load_checkpoint(split / "checkpoints" / "last.pt")["batch"] == 2  # stopped mid-epoch
    resumed = cli("train", spec, "--out", tmp_path / "split", "--resume", split, "--max-steps", 12)
    assert resumed.code == 0, resumed.err
    assert "max_steps 6 → 12" in resumed.out
    a = load_checkpoint(whole / "checkpoints" / "last.pt")
    b = load_checkpoint(split / "checkpoints" / "last.pt")
    for key in ("generator", "discriminator", "ema", "opt_g", "opt_d", "rng", "step", "epoch", "batch"):
        assert_same(a[key], b[key], key)
    assert a["step"] == 12 and a["epoch"] == 2 and a["generator"]
    # The metrics continue too: every loss of the resumed half equals the one-go run's.
    rows_a = [json.loads(line) for line in (whole / "metrics.jsonl").read_text().splitlines()]
    rows_b = [json.loads(line) for line in (split / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["loss_d"], r["loss_g"]) for r in rows_a] == [
        (r["step"], r["loss_d"], r["loss_g"]) for r in rows_b
    ]
    run = json.loads((split / "run.json").read_text())
    assert [s["status"] for s in run["sessions"]] == ["finished", "finished"]
    assert run["sessions"][1]["resumed_from"].endswith("last.pt")


def test_resume_auto_picks_the_newest_run(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    for steps in (3, 5):
        assert cli("train", TINY, "--out", out, "--max-steps", steps).code == 0
    older, newer = sorted((out / "tiny").iterdir())
    assert find_resume("auto", out, "tiny") == newer / "checkpoints" / "last.pt"
    result = cli("train", TINY, "--out", out, "--resume", "auto", "--max-steps", 7)
    assert result.code == 0, result.err
    assert f"from {newer / 'checkpoints' / 'last.pt'} at step 5" in result.out
    assert load_checkpoint(newer / "checkpoints" / "last.pt")["step"] == 7
    assert load_checkpoint(older / "checkpoints" / "last.pt")["step"] == 3


def test_best_checkpoint_is_the_highest_step(cli: Cli, tmp_path: Path) -> None:
    run = _train(cli, TINY, tmp_path / "runs", "--max-steps", 8)
    folder = run / "checkpoints"
    assert best_checkpoint(run) == folder / "last.pt"  # a tie at step 8: last.pt
    shutil.copyfile(folder / "step_000004.pt", folder / "last.pt")
    assert best_checkpoint(run) == folder / "step_000008.pt"
    (folder / "step_000008.pt").unlink()
    (folder / "step_000004.pt").write_bytes(b"torn")
    assert best_checkpoint(run) == folder / "last.pt"  # an unreadable numbered file is passed over


def test_resume_auto_without_runs_is_one_line(cli: Cli, tmp_path: Path) -> None:
    line = one_error_line(cli("train", TINY, "--out", tmp_path, "--resume", "auto"))
    assert "no run of tiny with a checkpoint" in line


def test_a_different_architecture_is_refused_with_the_layer_named(cli: Cli, tmp_path: Path) -> None:
    run = _train(cli, TINY, tmp_path / "runs", "--max-steps", 2)

    def narrower(data: dict[str, Any]) -> None:
        data["generator"]["layers"][3]["out_channels"] = 4

    spec = spec_variant(tmp_path, edit=narrower)
    line = one_error_line(cli("train", spec, "--resume", run))
    assert "generator.layers[3]: conv_transpose2d out_channels 8 in the checkpoint, 4 in the spec" in line
    assert "size mismatch" not in line and "discriminator" not in line


def test_a_different_train_section_is_allowed_and_said(cli: Cli, tmp_path: Path) -> None:
    run = _train(cli, TINY, tmp_path / "runs", "--max-steps", 2)
    spec = spec_variant(tmp_path, lr=0.001)
    result = cli("train", spec, "--resume", run, "--max-steps", 3)
    assert result.code == 0, result.err
    assert "lr 0.0002 → 0.001" in result.out
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["opt_g"]["param_groups"][0]["lr"] == pytest.approx(0.001) and state["step"] == 3


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.mark.parametrize("damage", ["garbage", "truncated", "bit flip", "empty", "foreign", "rng", "step"])
def test_a_corrupt_checkpoint_is_one_line_naming_the_file(cli: Cli, tmp_path: Path, damage: str) -> None:
    run = _train(cli, TINY, tmp_path / "runs", "--max-steps", 4)
    last = run / "checkpoints" / "last.pt"
    if damage == "garbage":
        last.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    elif damage == "truncated":
        last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    elif damage == "bit flip":
        data = bytearray(last.read_bytes())
        data[len(data) // 2] ^= 0x10  # inside a tensor's bytes: only the archive's CRC notices
        last.write_bytes(bytes(data))
    elif damage == "empty":
        last.write_bytes(b"")
    elif damage in ("rng", "step"):
        state = load_checkpoint(last)  # a well-formed file whose contents were edited
        if damage == "rng":
            state["rng"] = {"torch": "no"}
        else:
            state["step"] = -3
        torch.save(state, last)
    else:
        torch.save({"weights": torch.zeros(3)}, last)
    before = _snapshot(tmp_path / "runs")
    line = one_error_line(cli("train", TINY, "--resume", last))
    assert str(last) in line
    assert _snapshot(tmp_path / "runs") == before  # nothing written, nothing replaced


def test_save_is_atomic_and_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "x.pt"
    path.write_bytes(b"old")
    save_checkpoint(path, {"spec_text": "name: x\n", "generator": {"w": torch.ones(2)}, "step": 3})
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]  # no temporary file left behind
    state = torch.load(path, weights_only=True)
    assert state["format"] == "archspec-checkpoint" and state["step"] == 3
    with pytest.raises(RunError, match="lacks"):
        load_checkpoint(path)


def test_a_tampered_spec_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.pt"
    save_checkpoint(
        path,
        {
            "spec_text": "a",
            "generator": {},
            "discriminator": {},
            "opt_g": {},
            "opt_d": {},
            "step": 0,
            "epoch": 0,
            "batch": 0,
            "rng": {},
            "train": {},
        },
    )
    state = torch.load(path, weights_only=True)
    state["spec_text"] = "b"
    torch.save(state, path)
    with pytest.raises(RunError, match="sha256"):
        load_checkpoint(path)


# --- archspec sample ------------------------------------------------------------------------------------------------


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img)


def test_sample_writes_a_grid_from_the_ema_weights(cli: Cli, tmp_path: Path) -> None:
    run = _train(cli, TINY, tmp_path / "runs", "--max-steps", 4, "--ema", "0.5")
    last = run / "checkpoints" / "last.pt"
    result = cli("sample", last, "--n", 10, "--out", tmp_path / "grid.png", "--seed", 3)
    assert result.code == 0, result.err
    assert "ema weights at step 4" in result.out
    with Image.open(tmp_path / "grid.png") as img:
        assert img.size == (4 * 18 + 2, 3 * 18 + 2)  # 10 images: 3 rows of 4, 16 px each, 2 px apart
    # The same grid from the plain generator weights differs; from the EMA weights it is identical.
    state = load_checkpoint(last)
    state["ema"], plain = None, tmp_path / "plain.pt"
    torch.save(state, plain)
    assert cli("sample", plain, "--n", 10, "--out", tmp_path / "plain.png", "--seed", 3).code == 0
    assert not np.array_equal(_pixels(tmp_path / "grid.png"), _pixels(tmp_path / "plain.png"))
    state["generator"] = load_checkpoint(last)["ema"]
    torch.save(state, plain)
    assert cli("sample", plain, "--n", 10, "--out", tmp_path / "plain.png", "--seed", 3, "--force").code == 0
    assert np.array_equal(_pixels(tmp_path / "grid.png"), _pixels(tmp_path / "plain.png"))


def test_sample_refuses_to_overwrite(cli: Cli, tmp_path: Path) -> None:
    run = _train(cli, TINY, tmp_path / "runs", "--max-steps", 1)
    out = tmp_path / "grid.png"
    out.write_bytes(b"keep me")
    line = one_error_line(cli("sample", run / "checkpoints" / "last.pt", "--out", out))
    assert "already exists" in line and "--force" in line
    assert out.read_bytes() == b"keep me"
    assert cli("sample", run / "checkpoints" / "last.pt", "--out", out, "--force").code == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sample_without_out_writes_into_the_run_folder(cli: Cli, tmp_path: Path) -> None:
    run = _train(cli, TINY, tmp_path / "runs", "--max-steps", 2)
    result = cli("sample", run, "--n", 4, "--seed", 1)
    assert result.code == 0, result.err
    grid = run / "samples" / "sample_step000002_seed1_n4.png"
    assert f"wrote {grid}: 4 images" in result.out and grid.is_file()
    assert "already exists" in one_error_line(cli("sample", run, "--n", 4, "--seed", 1))
    loose = tmp_path / "loose.pt"
    loose.write_bytes((run / "checkpoints" / "last.pt").read_bytes())
    assert cli("sample", loose, "--n", 1).code == 0
    assert (tmp_path / "sample_step000002_seed0_n1.png").is_file()


def test_sample_from_a_run_folder_uses_its_newest_checkpoint(cli: Cli, tmp_path: Path) -> None:
    run = _train(cli, TINY, tmp_path / "runs", "--max-steps", 3, "--checkpoint-every", 2)
    (run / "checkpoints" / "last.pt").unlink()  # as after a kill -9: step_000002.pt is the newest left
    result = cli("sample", run, "--n", 4, "--out", tmp_path / "g.png")
    assert result.code == 0, result.err
    assert "at step 2" in result.out
    empty = tmp_path / "empty"
    empty.mkdir()
    line = one_error_line(cli("sample", empty, "--out", tmp_path / "h.png"))
    assert str(empty) in line and "without checkpoints" in line


def test_sample_of_a_corrupt_checkpoint_is_one_line(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(np.random.default_rng(1).integers(0, 256, 100, dtype=np.uint8).tobytes())
    line = one_error_line(cli("sample", bad, "--out", tmp_path / "g.png"))
    assert str(bad) in line and not (tmp_path / "g.png").exists()


def _misshapen(state: dict[str, Any], weights: str) -> str:
    """Give the first tensor of ``state[weights]`` a row too many; its key."""
    key = next(iter(state[weights]))
    tensor = state[weights][key]
    state[weights][key] = torch.zeros((tensor.shape[0] + 1, *tensor.shape[1:]))
    return str(key)


def test_sample_names_the_weight_whose_shape_is_wrong(cli: Cli, tmp_path: Path) -> None:
    run = _train(cli, TINY, tmp_path / "runs", "--max-steps", 1)
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    key, broken = _misshapen(state, "generator"), tmp_path / "broken.pt"
    torch.save(state, broken)
    line = one_error_line(cli("sample", broken, "--out", tmp_path / "grid.png"))
    assert "Error(s) in loading state_dict" in line and f"size mismatch for {key}: copying a param" in line


def test_resume_names_the_weight_whose_shape_is_wrong(cli: Cli, tmp_path: Path) -> None:
    run = _train(cli, TINY, tmp_path / "runs", "--max-steps", 1)
    last = run / "checkpoints" / "last.pt"
    state = load_checkpoint(last)
    key = _misshapen(state, "discriminator")
    torch.save(state, last)
    line = one_error_line(cli("train", TINY, "--resume", last, "--max-steps", 2))
    assert "does not fit this run" in line and f"size mismatch for {key}: copying a param" in line


def test_sample_refuses_more_than_a_grid_can_show(cli: Cli, tmp_path: Path) -> None:
    line = one_error_line(cli("sample", tmp_path / "never-read.pt", "--n", 1025, "--out", tmp_path / "g.png"))
    assert "--n 1025: at most 1024 images" in line
    assert not (tmp_path / "g.png").exists()


def test_sample_generates_in_chunks_and_the_grid_does_not_depend_on_them(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _train(cli, TINY, tmp_path / "runs", "--max-steps", 1)
    last = run / "checkpoints" / "last.pt"
    assert cli("sample", last, "--n", 10, "--out", tmp_path / "whole.png").code == 0
    batches: list[int] = []

    def counted(spec: Any, device: torch.device) -> Any:
        gan = build(spec, device)
        gan.generator.register_forward_hook(lambda _m, inputs, _out: batches.append(inputs[0].shape[0]))
        return gan

    monkeypatch.setattr(runner.sample, "build", counted)
    monkeypatch.setattr(runner.sample, "CHUNK", 4)
    assert cli("sample", last, "--n", 10, "--out", tmp_path / "chunked.png").code == 0
    assert batches == [4, 4, 2]
    assert np.array_equal(_pixels(tmp_path / "whole.png"), _pixels(tmp_path / "chunked.png"))
