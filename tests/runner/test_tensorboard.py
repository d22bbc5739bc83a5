"""``archspec train --tensorboard``: the event file read back with TensorBoard's own reader, and the one line a
machine without tensorboard gets."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.runner.conftest import Cli, one_error_line, only_run, spec_variant


def test_losses_metrics_and_grids_are_in_the_event_file(cli: Cli, tmp_path: Path) -> None:
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    spec = spec_variant(tmp_path)
    result = cli(
        "train", spec, "--out", tmp_path, "--limit", 64, "--max-steps", 8, "--log-every", 2,
        "--sample-every", 4, "--eval-every", 4, "--eval-samples", 40, "--tensorboard",
    )  # fmt: skip
    assert result.code == 0, result.err
    run = only_run(tmp_path)
    events = event_accumulator.EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()
    assert {
        "loss/discriminator",
        "loss/generator",
        "D/real",
        "D/fake",
        "quality/swd",
        "quality/ndb_k",
    } <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("loss/discriminator")] == [2, 4, 6, 8]
    rows = [line for line in (run / "metrics.jsonl").read_text().splitlines() if '"swd"' in line]
    swd = events.Scalars("quality/swd")
    assert [e.step for e in swd] == [4, 8] and len(rows) == 2
    # The grids: step 4, step 8 and the final grid (also at step 8), as PNG pictures of the grid's size.
    images = events.Images("samples")
    assert [e.step for e in images] == [4, 8, 8]
    assert all(e.encoded_image_string.startswith(b"\x89PNG") and e.width > 16 for e in images)


def test_a_resumed_run_replaces_the_points_after_its_checkpoint(cli: Cli, tmp_path: Path) -> None:
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    spec = spec_variant(tmp_path)
    args = ("--out", tmp_path, "--limit", 64, "--log-every", 2, "--checkpoint-every", 4, "--tensorboard")
    assert cli("train", spec, *args, "--max-steps", 8).code == 0
    run = only_run(tmp_path)
    # As after a kill between steps 4 and 8: steps 6 and 8 were logged, the newest checkpoint is step 4.
    for name in ("last.pt", "step_000008.pt"):
        (run / "checkpoints" / name).unlink()
    resumed = cli("train", spec, *args, "--max-steps", 8, "--resume", run)
    assert resumed.code == 0, resumed.err
    events = event_accumulator.EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("loss/discriminator")] == [2, 4, 6, 8]  # not 2, 4, 6, 8, 6, 8


def test_without_tensorboard_one_line_says_what_to_install(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    line = one_error_line(
        cli("train", spec_variant(tmp_path), "--out", tmp_path, "--max-steps", 1, "--tensorboard")
    )
    assert line == "error: --tensorboard needs the tensorboard package: pip install 'archspec[tensorboard]'"
    assert not list(tmp_path.glob("tiny/*"))  # no run folder left behind
