"""Quality during training (runner.monitor through ``archspec train --eval-every``): metrics rows, best.pt,
the final report, bit-exact resume, the collapse alarm, and the third panel of loss.png."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from runner.checkpoint import load_checkpoint
from runner.metrics.ndb import NDB
from runner.metrics.swd import SWD
from runner.metrics.weights import PYTORCH_FID_FILE, hub_checkpoints
from runner.monitor import COLLAPSE_COVERAGE, Evaluation, Monitor
from runner.outputs import is_quality_row
from runner.train import Trainer, TrainOptions
from tests.runner.conftest import Cli, assert_same, only_run, spec_variant
from tests.runner.peers import random_inception, save_in_fidelity_layout

EVAL = ("--eval-every", 4, "--eval-samples", 40)


@pytest.fixture(autouse=True)
def _no_hub_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A machine with Inception weights in its own torch hub cache would measure FID here: keep to SWD.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


def _train(cli: Cli, spec: Path, out: Path, *args: Any) -> Path:
    result = cli("train", spec, "--out", out, "--limit", 64, "--log-every", 2, "--checkpoint-every", 4, *args)
    assert result.code == 0, result.err
    return only_run(out)


def _rows(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _weights(path: Path) -> dict[str, Any]:
    state = load_checkpoint(path)
    return {key: state[key] for key in ("generator", "discriminator", "ema", "opt_g", "opt_d", "step")}


def test_evaluations_land_in_the_rows_the_report_run_json_and_best_pt(cli: Cli, tmp_path: Path) -> None:
    result = cli("train", spec_variant(tmp_path), "--out", tmp_path, "--limit", 64, "--max-steps", 10, *EVAL)
    assert result.code == 0, result.err
    run = only_run(tmp_path)
    quality = [row for row in _rows(run) if is_quality_row(row)]
    # Every 4 steps, and once more for the weights the run ends with.
    assert [row["step"] for row in quality] == [4, 8, 10]
    assert all(
        row["eval_samples"] == 40 and row["ndb_bins"] == 2 and len(row["swd_levels"]) == 1 for row in quality
    )
    assert result.out.count("eval step ") == 3
    best = min(quality, key=lambda row: row["swd"])
    assert load_checkpoint(run / "checkpoints" / "best.pt")["step"] == best["step"]
    doc = json.loads((run / "run.json").read_text())
    assert doc["quality"]["best_metric"] == "swd" and doc["quality"]["best_value"] == best["swd"]
    assert doc["quality"]["last"]["step"] == 10 and "fid" not in doc["quality"]["last"]
    assert f"best SWD {best['swd']:.2f} in {run / 'checkpoints' / 'best.pt'}" in result.out
    # --resume auto never takes best.pt for the newest checkpoint: last.pt is.
    again = cli("train", spec_variant(tmp_path), "--out", tmp_path, "--resume", "auto", "--max-steps", 10)
    assert "already at step 10" in again.out
    # loss.png gains a third panel: 900 pixels high instead of 600.
    with Image.open(run / "loss.png") as image:
        assert image.size[1] == 900


def test_evaluating_changes_nothing_the_training_does(cli: Cli, tmp_path: Path) -> None:
    spec = spec_variant(tmp_path)
    plain = _train(cli, spec, tmp_path / "plain", "--max-steps", 8, "--ema", "0.9")
    measured = _train(cli, spec, tmp_path / "measured", "--max-steps", 8, "--ema", "0.9", *EVAL)
    assert_same(_weights(plain / "checkpoints" / "last.pt"), _weights(measured / "checkpoints" / "last.pt"))


def test_a_run_with_evaluations_resumes_bit_for_bit_and_keeps_its_best(cli: Cli, tmp_path: Path) -> None:
    spec = spec_variant(tmp_path)
    whole = _train(cli, spec, tmp_path / "whole", "--max-steps", 12, *EVAL)
    split = _train(cli, spec, tmp_path / "split", "--max-steps", 6, *EVAL)
    resumed = cli("train", spec, "--out", tmp_path / "split", "--resume", split, "--max-steps", 12)
    assert resumed.code == 0, resumed.err
    assert_same(_weights(whole / "checkpoints" / "last.pt"), _weights(split / "checkpoints" / "last.pt"))
    # The split run also evaluated at its end, step 6; the evaluations both runs made agree exactly.
    by_step = {row["step"]: row for row in _rows(split) if is_quality_row(row)}
    for row in (r for r in _rows(whole) if is_quality_row(r)):
        assert by_step[row["step"]]["swd"] == row["swd"] and by_step[row["step"]]["ndb"] == row["ndb"]
    best_split = json.loads((split / "run.json").read_text())["quality"]["best_value"]
    assert best_split == min(row["swd"] for row in by_step.values())  # the first session's evaluations count
    best_step = min(by_step.values(), key=lambda row: row["swd"])["step"]
    assert load_checkpoint(split / "checkpoints" / "best.pt")["step"] == best_step


def _collapsed(spec: Path, out: Path, max_steps: int, resume: str | None = None) -> str:
    """Train with the generator's weights zeroed and a learning rate that keeps them there (every sample is one
    grey image); what the run printed. 200 samples give 10 bins: one bin filled is a coverage of about 0.1."""
    train = {"out": str(out), "max_steps": max_steps, "eval_every": 2, "eval_samples": 200, "log_every": 4}
    printed = io.StringIO()
    options = TrainOptions(
        str(spec), {**train, "lr_g": 1e-30}, resume=resume, limit=200, live=False, stdout=printed
    )
    trainer = Trainer.setup(options)
    try:
        if resume is None:
            with torch.no_grad():
                for p in trainer.gan.generator.parameters():
                    p.zero_()
        trainer.run()
    finally:
        trainer.release()
    return printed.getvalue()


def _alarms(printed: str) -> list[str]:
    return [line for line in printed.splitlines() if line.startswith("warning: mode collapse")]


def test_a_collapsed_generator_raises_the_alarm_once(tmp_path: Path) -> None:
    spec = spec_variant(tmp_path)
    lines = _alarms(_collapsed(spec, tmp_path, 12))
    # Coverage is low from the start, so the alarm waits for half the run (step 6), and says so once.
    assert len(lines) == 1 and lines[0].startswith("warning: mode collapse at step 6: the samples fill 0.")
    assert lines[0].endswith(f"(coverage below {COLLAPSE_COVERAGE:g}); look at the sample grids")
    run = only_run(tmp_path)
    collapse = json.loads((run / "run.json").read_text())["collapse"]
    assert collapse["step"] == 6 and collapse["threshold"] == COLLAPSE_COVERAGE
    assert collapse["value"] < COLLAPSE_COVERAGE
    # Once per run, not per session: a resumed run that is still collapsed says nothing more.
    again = _collapsed(spec, tmp_path, 20, resume=str(run))
    assert _alarms(again) == [] and "collapse alarm at step 6" in again
    assert json.loads((run / "run.json").read_text())["collapse"] == collapse


@pytest.mark.slow
def test_with_inception_weights_in_the_hub_cache_fid_is_measured_and_decides_best_pt(
    cli: Cli, tmp_path: Path
) -> None:
    # Random (saved-to-disk) weights where pytorch-fid keeps its file: the real network, untrained. One
    # evaluation of 20 samples against 20 real images: 40 Inception passes at 299x299, the test's whole cost.
    hub = hub_checkpoints()
    hub.mkdir(parents=True)
    save_in_fidelity_layout(random_inception(seed=1), hub / PYTORCH_FID_FILE)
    result = cli(
        "train", spec_variant(tmp_path), "--out", tmp_path / "runs", "--limit", 64, "--max-steps", 2,
        "--eval-every", 2, "--eval-samples", 20,
    )  # fmt: skip
    assert result.code == 0, result.err
    assert f"FID (Inception weights {hub / PYTORCH_FID_FILE})" in result.out
    run = only_run(tmp_path / "runs")
    (row,) = [row for row in _rows(run) if is_quality_row(row)]
    assert row["step"] == 2 and row["fid"] > 0 and f"eval step 2: FID {row['fid']:.2f}, SWD" in result.out
    assert load_checkpoint(run / "checkpoints" / "best.pt")["step"] == 2
    doc = json.loads((run / "run.json").read_text())
    assert doc["quality"]["best_metric"] == "fid" and doc["quality"]["best_value"] == row["fid"]


def _evaluation(step: int, coverage: float, swd: float = 100.0, fid: float | None = None) -> Evaluation:
    return Evaluation(step, 100, SWD((swd,), swd), NDB(5, 0, 0.0), coverage, 0.0, fid)


@pytest.fixture
def monitor(tmp_path: Path) -> Monitor:
    from runner.config import resolve
    from runner.data import open_images
    from runner.step import build_gan

    resolved = resolve(spec_variant(tmp_path), {})
    gan = build_gan(resolved.result, resolved.train, torch.device("cpu"))
    data = open_images("synthetic", resolved.spec.image, resolved.value_range, seed=0, limit=40)
    return Monitor(data, gan, 40, 0, torch.device("cpu"))


def test_the_alarm_waits_for_spread_or_half_time(monitor: Monitor) -> None:
    # An untrained generator's low coverage early on says nothing: no alarm before half of 100 steps.
    assert monitor.check_collapse(_evaluation(10, 0.05), 100) is None
    assert monitor.check_collapse(_evaluation(20, 0.5), 100) is None  # the samples spread out...
    alarm = monitor.check_collapse(_evaluation(30, 0.1), 100)  # ...then fell back: collapse, before half time
    assert alarm is not None and (alarm.step, alarm.value) == (30, 0.1)
    assert monitor.check_collapse(_evaluation(60, 0.05), 100) is None  # once per run


def test_best_is_the_lowest_score_so_far(monitor: Monitor) -> None:
    assert monitor.improved(_evaluation(1, 1.0, swd=50.0))
    assert not monitor.improved(_evaluation(2, 1.0, swd=60.0))
    assert not monitor.improved(_evaluation(3, 1.0, swd=50.0))
    assert monitor.improved(_evaluation(4, 1.0, swd=40.0)) and monitor.best == 40.0


def test_with_fid_the_best_is_the_lowest_fid_whatever_the_swd(monitor: Monitor) -> None:
    assert monitor.improved(_evaluation(1, 1.0, swd=50.0, fid=30.0))
    assert not monitor.improved(_evaluation(2, 1.0, swd=10.0, fid=31.0))
    assert monitor.improved(_evaluation(3, 1.0, swd=90.0, fid=29.0)) and monitor.best == 29.0


def _alarm_steps(coverages: list[float], total_steps: int) -> list[int]:
    """The steps at which the alarm fires for evaluations every 10 steps with these coverages."""
    monitor = Monitor.__new__(Monitor)  # check_collapse reads only the coverage history: no data needed
    monitor.best_coverage, monitor.last_coverage, monitor.alarm = None, None, None
    fired = []
    for k, coverage in enumerate(coverages, start=1):
        evaluation = Evaluation(10 * k, 100, SWD((1.0,), 1.0), NDB(10, 10, 1.0), coverage, 0.0)
        if monitor.check_collapse(evaluation, total_steps) is not None:
            fired.append(10 * k)
    return fired


def test_the_alarm_waits_for_a_slow_start_and_catches_a_stall_or_a_fall() -> None:
    # still spreading out past half the run (the modern recipe's first minutes): no alarm
    assert _alarm_steps([0.04, 0.08, 0.10, 0.11, 0.27, 0.47], total_steps=60) == []
    # stuck low past half the run: once, at the first evaluation that did not rise
    assert _alarm_steps([0.09, 0.06, 0.05, 0.05, 0.05, 0.06], total_steps=60) == [30]
    # spread out, then fell back, early in the run: at once
    assert _alarm_steps([0.3, 0.5, 0.1, 0.1], total_steps=1000) == [30]
