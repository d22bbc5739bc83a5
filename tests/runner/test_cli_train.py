"""The trainer's command line: a flag for every train: field, overrides checked like the file, help examples."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from archspec.cli import main
from archspec.spec import Train
from runner.config import FLAG_HELP, train_flags
from runner.outputs import ProgressDisplay
from tests.runner.conftest import ROOT, TINY, Cli, one_error_line, only_run, spec_variant


def test_every_train_field_has_a_flag_and_help() -> None:
    assert set(FLAG_HELP) == set(Train.model_fields)
    assert [f.field for f in train_flags()] == list(Train.model_fields)


def test_train_help_lists_every_flag_and_a_worked_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for flag in train_flags():
        assert flag.option in text
    assert "archspec train specs/conv_gan.yaml --dry-run" in text and "--resume auto" in text


@pytest.mark.parametrize(
    ("argv", "example"),
    [
        (["sample", "--help"], "archspec sample runs/conv_gan/"),
        (["data", "pack", "--help"], "archspec data pack img_align_celeba.zip celeba128.h5 --size 128"),
    ],
)
def test_other_commands_have_worked_examples(
    capsys: pytest.CaptureFixture[str], argv: list[str], example: str
) -> None:
    with pytest.raises(SystemExit):
        main(argv)
    assert example in capsys.readouterr().out


def test_data_without_a_sub_command_prints_usage(cli: Cli) -> None:
    result = cli("data")
    assert result.code == 2 and "pack" in result.err


def test_overrides_reach_the_resolved_config(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    result = cli(
        "train",
        TINY,
        "--out",
        out,
        "--max-steps",
        2,
        "--batch-size",
        8,
        "--lr",
        "1e-3",
        "--lr-g",
        "2e-3",
        "--betas",
        "0.1",
        "0.2",
        "--ema",
        "0.99",
        "--seed",
        5,
        "--no-shuffle",
        "--samples",
        4,
        "--data-range",
        "unit",
        "--device",
        "cpu",
    )
    assert result.code == 0, result.err
    doc = json.loads((only_run(out) / "run.json").read_text())
    config: dict[str, Any] = doc["config"]
    assert (config["batch_size"], config["lr"], config["lr_g"], config["betas"], config["ema"]) == (
        8,
        1e-3,
        2e-3,
        [0.1, 0.2],
        0.99,
    )
    assert (config["seed"], config["shuffle"], config["samples"], config["lr_d"]) == (5, False, 4, None)
    assert "lr 0.002/0.001 (G/D)" in result.out and "batch 8" in result.out


def test_an_invalid_override_names_the_flag(cli: Cli, tmp_path: Path) -> None:
    line = one_error_line(cli("train", TINY, "--batch-size", 0, "--out", tmp_path))
    assert line.startswith("error: --batch-size 0: input should be greater than or equal to 1")
    line = one_error_line(cli("train", TINY, "--ema", "1.5", "--out", tmp_path))
    assert "--ema 1.5" in line


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--loss", "bce_logits", "loss bce_logits takes raw scores, but the discriminator ends in sigmoid"),
        ("--precision", "bf16", "bf16 autocast cannot run BCELoss"),
    ],
)
def test_an_override_that_breaks_a_rule_is_reported_like_check(
    cli: Cli, tmp_path: Path, flag: str, value: str, message: str
) -> None:
    result = cli("train", TINY, flag, value, "--out", tmp_path)
    assert result.code == 1 and "Traceback" not in result.err
    first = result.err.splitlines()[0]
    assert first.startswith(f"{TINY}:") and ": error: " in first and message in first
    assert f"with {flag} {value}" in result.err and "fix: " in result.err
    assert not any(tmp_path.iterdir())


def test_an_override_may_mend_the_file(cli: Cli, tmp_path: Path) -> None:
    spec = spec_variant(
        tmp_path, edit=lambda data: data["discriminator"]["layers"].pop()
    )  # no sigmoid, loss bce
    assert cli("train", spec, "--out", tmp_path / "a", "--max-steps", 1).code == 1
    result = cli("train", spec, "--loss", "hinge", "--out", tmp_path / "b", "--max-steps", 2)
    assert result.code == 0, result.err
    assert "hinge" in result.out


def test_dry_run_and_resume_do_not_mix(cli: Cli, tmp_path: Path) -> None:
    line = one_error_line(cli("train", TINY, "--dry-run", "--resume", "auto"))
    assert "--dry-run" in line


def test_pack_errors_are_one_line(cli: Cli, tmp_path: Path) -> None:
    line = one_error_line(cli("data", "pack", tmp_path / "missing", tmp_path / "out.h5"))
    assert "missing" in line and not (tmp_path / "out.h5").exists()


def test_the_cli_module_imports_no_torch() -> None:
    code = "import sys, runner.cli; print(sorted(m for m in ('torch', 'runner.train') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def test_live_progress_bar_shows_epoch_step_and_losses() -> None:
    stream = io.StringIO()
    with ProgressDisplay(total=10, start=0, live=True, stream=stream) as display:
        display.advance(3, "1/2")
        display.log(
            {"step": 5, "loss_d": 1.25, "loss_g": 0.5, "d_real": 0.6, "d_fake": 0.4, "images_per_s": 99.0},
            "1/2",
        )
    text = stream.getvalue()
    assert "epoch 1/2" in text and "5/10" in text and "D 1.2500" in text and "G 0.5000" in text
