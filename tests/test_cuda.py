"""The trainer on a CUDA GPU: skipped where there is none (run them on a GPU machine before a release)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from runner.checkpoint import load_checkpoint
from runner.device import peak_memory, resolve_device
from runner.errors import RunError
from runner.train import Trainer, TrainOptions, train

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

TINY = Path(__file__).resolve().parents[1] / "specs" / "tiny.yaml"


def _options(tmp_path: Path, **overrides: object) -> TrainOptions:
    return TrainOptions(
        spec=str(TINY),
        overrides={"out": str(tmp_path), "max_steps": 6, "log_every": 2, "checkpoint_every": 3, **overrides},
        live=False,
    )


def test_auto_picks_cuda_and_turns_on_cudnn_benchmark(tmp_path: Path) -> None:
    torch.backends.cudnn.benchmark = False
    trainer = Trainer.setup(_options(tmp_path))
    assert trainer.device.type == "cuda"
    assert torch.backends.cudnn.benchmark is True
    assert trainer.data.images.device.type == "cuda"  # the uint8 set fits: copied once
    assert next(trainer.gan.generator.parameters()).device.type == "cuda"


def test_a_few_steps_train_on_cuda_and_report_cuda_memory(tmp_path: Path) -> None:
    report = train(_options(tmp_path, device="cuda"))
    assert report.status == "finished" and report.step == 6
    assert report.peak_memory_kind == "torch.cuda.max_memory_allocated"
    assert 0 < report.peak_memory_bytes == torch.cuda.max_memory_allocated()
    doc = json.loads((report.run_dir / "run.json").read_text())
    assert doc["device"].startswith("cuda:0 (") and torch.cuda.get_device_name(0) in doc["device"]
    rows = [json.loads(line) for line in (report.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6]
    state = load_checkpoint(report.run_dir / "checkpoints" / "last.pt")
    assert state["rng"]["cuda"] and state["rng"]["latent"].device.type == "cpu"
    assert all(t.device.type == "cpu" for t in state["generator"].values())


def test_resume_on_cuda_continues_the_run(tmp_path: Path) -> None:
    first = train(_options(tmp_path, device="cuda"))
    again = train(
        TrainOptions(
            spec=str(TINY), overrides={"out": str(tmp_path), "max_steps": 9}, resume="auto", live=False
        )
    )
    assert again.run_dir == first.run_dir and again.step == 9 and again.steps_run == 3


def test_bf16_and_channels_last_train(tmp_path: Path) -> None:
    spec = tmp_path / "logits.yaml"
    spec.write_text(
        TINY.read_text()
        .replace("    - {type: sigmoid}\n\ntrain:", "\ntrain:")
        .replace("loss: bce", "loss: bce_logits")
    )
    report = train(
        TrainOptions(
            spec=str(spec),
            overrides={
                "out": str(tmp_path),
                "max_steps": 4,
                "precision": "bf16",
                "channels_last": True,
                "fused_adam": True,
            },
            live=False,
        )
    )
    assert report.status == "finished"


def test_an_unknown_cuda_index_is_refused() -> None:
    with pytest.raises(RunError, match="CUDA device"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_peak_memory_is_the_allocator_peak() -> None:
    device = torch.device("cuda")
    torch.cuda.reset_peak_memory_stats(device)
    block = torch.empty(64 << 20, dtype=torch.uint8, device=device)
    peak, kind = peak_memory(device)
    assert peak >= 64 << 20 and kind == "torch.cuda.max_memory_allocated"
    del block
