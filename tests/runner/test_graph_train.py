"""Graph specs train as chains do: a residual GAN and the zoo's SNGAN-32 run and resume exactly (conditional
graphs: tests/runner/test_conditional_train.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.checkpoint import load_checkpoint
from tests.runner.conftest import SPECS, Cli, only_run
from tests.runner.conftest import assert_same as _assert_same

SNGAN = SPECS / "zoo" / "mimicry_sngan32.yaml"

RESIDUAL = """\
name: tiny_res
latent: 16
image: [3, 16, 16]
blocks:
  up:
    params: {channels: null}
    layers:
      - {type: batch_norm2d}
      - {type: relu}
      - {type: upsample, scale_factor: 2}
      - {type: conv2d, out_channels: $channels, kernel_size: 3, padding: 1, id: h}
      - {type: upsample, scale_factor: 2, from: x}
      - {type: conv2d, out_channels: $channels, kernel_size: 1}
      - {type: add, from: [h, _]}
generator:
  init: {type: xavier_uniform}
  layers:
    - {type: linear, out_features: 128}
    - {type: view, shape: [8, 4, 4]}
    - {type: up, channels: 8, repeat: 2}
    - {type: conv2d, out_channels: 3, kernel_size: 3, padding: 1}
    - {type: tanh}
discriminator:
  layers:
    - {type: conv2d, out_channels: 8, kernel_size: 4, stride: 2, padding: 1, spectral_norm: true, id: a}
    - {type: relu}
    - {type: dropout, p: 0.2}
    - {type: add, from: [_, a]}
    - {type: sum, dim: [2, 3]}
    - {type: linear, out_features: 1, spectral_norm: true}
train: {loss: hinge, batch_size: 8, shuffle: true, log_every: 2, checkpoint_every: 4, sample_every: 4}
"""


def _train(cli: Cli, spec: Path, out: Path, *args: object) -> Path:
    result = cli("train", spec, "--out", out, "--limit", 32, "--epochs", 5, *args)
    assert result.code == 0, result.err
    return only_run(out, spec.stem if spec.stem != "residual" else "tiny_res")


def test_a_residual_graph_resumes_exactly(cli: Cli, tmp_path: Path) -> None:
    spec = tmp_path / "residual.yaml"
    spec.write_text(RESIDUAL)
    whole = _train(cli, spec, tmp_path / "whole", "--max-steps", 6, "--ema", "0.9")
    split = _train(cli, spec, tmp_path / "split", "--max-steps", 3, "--ema", "0.9")
    resumed = cli("train", spec, "--out", tmp_path / "split", "--resume", split, "--max-steps", 6)
    assert resumed.code == 0, resumed.err
    a = load_checkpoint(whole / "checkpoints" / "last.pt")
    b = load_checkpoint(split / "checkpoints" / "last.pt")
    for key in ("generator", "discriminator", "ema", "opt_g", "opt_d", "rng", "step"):
        _assert_same(a[key], b[key], key)
    assert "2.1.3.weight" in a["generator"] and "0.weight_u" in a["discriminator"]
    assert (whole / "samples" / "final.png").is_file()


@pytest.mark.slow
def test_sngan32_runs_a_dry_run_and_real_steps_and_resumes_exactly(cli: Cli, tmp_path: Path) -> None:
    small = ("--batch-size", 2, "--d-steps", 1, "--samples", 4, "--log-every", 1, "--checkpoint-every", 2)
    dry = cli("train", SNGAN, "--dry-run", *small[:6])
    assert dry.code == 0, dry.err
    whole = _train(cli, SNGAN, tmp_path / "whole", "--max-steps", 2, *small)
    split = _train(cli, SNGAN, tmp_path / "split", "--max-steps", 1, *small)
    resumed = cli("train", SNGAN, "--out", tmp_path / "split", "--resume", split, "--max-steps", 2)
    assert resumed.code == 0, resumed.err
    a = load_checkpoint(whole / "checkpoints" / "last.pt")
    b = load_checkpoint(split / "checkpoints" / "last.pt")
    for key in ("generator", "discriminator", "opt_g", "opt_d", "step"):
        _assert_same(a[key], b[key], key)
