"""The trainer on a CUDA GPU: skipped where there is none (run them on a GPU machine before a release)."""

from __future__ import annotations

import copy
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from runner.bench import BenchOptions, run_bench
from runner.checkpoint import load_checkpoint
from runner.config import resolve
from runner.device import peak_memory, resolve_device
from runner.errors import RunError
from runner.step import GanStep, build_gan
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


def test_nan_scores_do_not_trip_bce_device_assert() -> None:
    # A device-side assert would end the process; the step's logged mean scores carry the NaN instead.
    from runner.losses import make_loss

    scores = torch.tensor([[0.9], [float("nan")]], device="cuda", requires_grad=True)
    loss = make_loss("bce").d_real(scores)
    loss.backward()
    torch.cuda.synchronize()
    assert loss.isfinite() and scores.detach().mean().isnan()


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


# --- the fast path, the prefetcher and the benchmark on a GPU -------------------------------------------------------


def _logits_spec(tmp_path: Path) -> Path:
    """specs/tiny.yaml with raw discriminator scores and bce_logits: what bf16 autocast needs."""
    spec = tmp_path / "logits.yaml"
    spec.write_text(
        TINY.read_text()
        .replace("    - {type: sigmoid}\n\ntrain:", "\ntrain:")
        .replace("loss: bce", "loss: bce_logits")
    )
    return spec


def _finite_rows(report_dir: Path) -> list[dict[str, float]]:
    rows = [json.loads(line) for line in (report_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows and all(math.isfinite(r[k]) for r in rows for k in ("loss_d", "loss_g", "d_real", "d_fake"))
    return rows


def test_the_fast_path_trains_with_the_data_on_the_gpu(tmp_path: Path) -> None:
    overrides = {
        "out": str(tmp_path),
        "max_steps": 6,
        "log_every": 2,
        "batch_size": 64,
        "precision": "bf16",
        "channels_last": True,
        "fused_adam": True,
        "data_on_device": "always",
    }
    trainer = Trainer.setup(TrainOptions(spec=str(_logits_spec(tmp_path)), overrides=overrides, live=False))
    assert trainer.data.images.device.type == "cuda" and trainer.step.opt_g.defaults["fused"] is True
    report = trainer.run()
    assert report.status == "finished" and report.step == 6
    assert [r["step"] for r in _finite_rows(report.run_dir)] == [2, 4, 6]


def test_data_kept_on_the_host_comes_through_pinned_memory(tmp_path: Path) -> None:
    out = io.StringIO()
    report = train(
        TrainOptions(
            spec=str(TINY),
            overrides={"out": str(tmp_path), "max_steps": 6, "log_every": 3, "data_on_device": "never"},
            live=False,
            stdout=out,
        )
    )
    assert report.status == "finished" and "in pinned host memory, prefetched to the GPU" in out.getvalue()
    _finite_rows(report.run_dir)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_step_never_makes_the_host_wait_for_the_gpu(tmp_path: Path, precision: str) -> None:
    spec = _logits_spec(tmp_path)
    fast = precision == "bf16"
    resolved = resolve(spec, {"precision": precision, "channels_last": fast, "fused_adam": fast, "ema": 0.99})
    device = torch.device("cuda", torch.cuda.current_device())
    gan = build_gan(resolved.result, resolved.train, device)
    rng = torch.Generator(device=device).manual_seed(0)
    step = GanStep(gan, resolved.train, device, resolved.value_range, rng)
    batch = torch.randint(0, 256, (16, 3, 16, 16), dtype=torch.uint8, device=device)
    step(batch)  # the first step builds optimiser state and autotunes; not what is measured
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        stats = [step(batch) for _ in range(3)]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert bool(torch.stack(stats).isfinite().all())


def test_batch_norm_under_bf16_autocast_keeps_float32_statistics_on_cuda() -> None:
    torch.manual_seed(0)
    norm = torch.nn.BatchNorm2d(8).cuda()
    reference = copy.deepcopy(norm)
    x = (torch.randn(64, 8, 32, 32, device="cuda") * 3 + 100).to(torch.bfloat16)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = norm(x)
    reference(x.float())
    assert out.dtype == torch.bfloat16 and norm.running_mean.dtype == torch.float32
    assert torch.allclose(norm.running_mean, reference.running_mean, rtol=1e-5, atol=0)
    assert torch.allclose(norm.running_var, reference.running_var, rtol=1e-3, atol=0)


def test_the_bench_measures_cuda_memory_against_the_estimate() -> None:
    result = run_bench(BenchOptions(spec=str(TINY), steps=5, warmup=2, device="cuda"))
    assert [r.variant for r in result.rows] == ["seed", "fp32", "fast", "hand"]
    assert all(r.peak_memory_kind == "torch.cuda.max_memory_allocated" for r in result.rows)
    assert result.memory_measured_bytes and result.memory_ratio and result.memory_ratio > 0
    assert result.row("fast") is not None and result.row("fast").data == "device"  # type: ignore[union-attr]
    assert result.row("fp32") is not None and "pinned" in result.row("fp32").data  # type: ignore[union-attr]
    if result.peaks["bf16"] is not None:
        assert all(r.mfu is not None and r.mfu > 0 for r in result.rows)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_torchrun_on_two_gpus_with_sync_batchnorm(tmp_path: Path) -> None:
    bin_dir = Path(sys.executable).parent
    proc = subprocess.run(
        [str(bin_dir / "torchrun"), "--nproc_per_node=2", "--standalone", "-m", "archspec", "train", str(TINY),
         "--device", "cuda", "--max-steps", "6", "--checkpoint-every", "3", "--sync-batchnorm",
         "--out", str(tmp_path), "--no-progress"],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "CI": "1", "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "world    2 × cuda (nccl)" in proc.stdout
    (run,) = (tmp_path / "tiny").iterdir()
    doc = json.loads((run / "run.json").read_text())
    assert doc["ranks_identical"] is True and doc["world_size"] == 2
