"""``archspec bench`` on the CPU: the four loops, the table and JSON, the fast variant's spec change, and the
hand-written loops it measures against."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from runner.bench import BenchOptions, peak_flops, peaks_by_name, run_bench
from runner.config import resolve
from runner.handwritten import SeedLoop
from runner.step import build_gan
from tests.runner.conftest import TINY, Cli, Result, one_error_line, spec_variant


def test_all_four_loops_run_on_the_cpu() -> None:
    result = run_bench(BenchOptions(spec=str(TINY), device="cpu", steps=3, warmup=1))
    assert [r.variant for r in result.rows] == ["seed", "fp32", "fast", "hand"]
    seed, fp32, fast, hand = result.rows
    assert seed.batch_size == 1 and fp32.batch_size == hand.batch_size == fast.batch_size == 16
    assert (seed.precision, fp32.precision, fast.precision, hand.precision) == (
        "fp32",
        "fp32",
        "bf16",
        "fp32",
    )
    assert all(r.images_per_s > 0 and r.ms_per_step > 0 and r.steps == 3 for r in result.rows)
    assert all(r.mfu is None for r in result.rows)  # no peak for a CPU
    assert all("RSS" in r.peak_memory_kind for r in result.rows)
    assert "sigmoid dropped" in fast.note and not fp32.note
    assert result.memory_measured_bytes is None and result.memory_ratio is None
    assert result.memory_estimate_bytes > 0 and result.model_flops > 0
    assert set(result.speedups()) == {"fast_over_seed", "fp32_over_hand"}


def test_the_cli_prints_the_table_and_writes_json(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = cli("bench", TINY, "--device", "cpu", "--steps", 3, "--warmup", 1, "--batch-size", 8,
                 "--peak-tflops", 0.5, "--json", out)  # fmt: skip
    assert result.code == 0, result.err
    for text in ("(a)", "(b)", "(c)", "(d)", "hand-written seed loop", "archspec fp32", "MFU", "(b) ÷ (d)"):
        assert text in result.out
    assert "measured n/a (CPU)" in result.out
    doc = json.loads(out.read_text())
    assert [r["batch_size"] for r in doc["rows"]] == [1, 8, 8, 8]
    assert all(0 < r["mfu"] < 1 for r in doc["rows"])  # from --peak-tflops
    assert doc["peak_source"] == "--peak-tflops 0.5" and doc["memory_ratio"] is None
    assert doc["speedups"]["fp32_over_hand"] > 0


def test_only_some_loops_and_a_fast_batch(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = cli("bench", TINY, "--device", "cpu", "--steps", 2, "--warmup", 0, "--only", "fast",
                 "--fast-batch-size", 32, "--json", out)  # fmt: skip
    assert result.code == 0, result.err
    rows = json.loads(out.read_text())["rows"]
    assert [(r["variant"], r["batch_size"]) for r in rows] == [("fast", 32)]


def test_a_json_file_that_cannot_be_written_is_refused_before_the_benchmark(cli: Cli, tmp_path: Path) -> None:
    def bench(*extra: str | Path) -> Result:
        return cli("bench", TINY, "--device", "cpu", "--only", "fp32", "--steps", 1, "--warmup", 0, *extra)

    missing = one_error_line(bench("--json", tmp_path / "nodir" / "b.json"))
    assert f"{tmp_path / 'nodir'}: no such folder for --json" in missing
    existing = tmp_path / "b.json"
    existing.write_text("keep me\n")
    line = one_error_line(bench("--json", existing))
    assert "already exists; pass --force" in line  # one line: the benchmark did not start
    assert existing.read_text() == "keep me\n"
    forced = bench("--json", existing, "--force")
    assert forced.code == 0, forced.err
    assert json.loads(existing.read_text())["rows"][0]["variant"] == "fp32"


def test_a_spec_already_on_logits_is_benchmarked_as_written(tmp_path: Path) -> None:
    def logits(data: dict[str, Any]) -> None:
        data["discriminator"]["layers"].pop()

    spec = spec_variant(tmp_path, edit=logits, loss="bce_logits")
    result = run_bench(
        BenchOptions(spec=str(spec), device="cpu", variants=("fast", "seed"), steps=3, warmup=1)
    )
    fast, seed = result.rows
    assert not fast.note
    assert "BCEWithLogitsLoss" in seed.note


def test_a_spec_that_cannot_train_one_image_skips_the_seed_loop(tmp_path: Path) -> None:
    def norm_features(data: dict[str, Any]) -> None:
        data["generator"]["layers"].insert(1, {"type": "batch_norm1d"})

    spec = spec_variant(tmp_path, edit=norm_features)
    result = run_bench(
        BenchOptions(spec=str(spec), device="cpu", variants=("seed", "fp32"), steps=3, warmup=1)
    )
    assert [r.variant for r in result.rows] == ["fp32"]
    assert "batch_size 1" in result.skipped["seed"]


def test_unknown_loops_are_refused(cli: Cli) -> None:
    result = cli("bench", TINY, "--device", "cpu", "--only", "fp32,turbo")
    assert result.code == 1 and result.err.startswith("error: bench: unknown loop 'turbo'; choose among")


def test_peaks_come_from_the_gpus_name() -> None:
    assert peaks_by_name("NVIDIA H100 80GB HBM3", tf32=True) == ({"bf16": 989e12, "fp32": 494e12}, "H100")
    assert peaks_by_name("NVIDIA H100 PCIe", tf32=False)[0] == {"bf16": 756e12, "fp32": 51e12}
    assert peaks_by_name("NVIDIA H200", tf32=True)[0] == peaks_by_name("NVIDIA H100 SXM", tf32=True)[0]
    assert peaks_by_name("NVIDIA A100-SXM4-40GB", tf32=False)[0] == {"bf16": 312e12, "fp32": 19.5e12}
    assert peaks_by_name("Tesla T4", tf32=True)[0] == {"bf16": 65e12, "fp32": 8.1e12}
    assert peaks_by_name("Some Future GPU", tf32=True) == ({"bf16": None, "fp32": None}, None)
    peaks, said = peak_flops(torch.device("cpu"), None)
    assert peaks == {"bf16": None, "fp32": None} and "--peak-tflops" in said


def test_the_seed_loop_reads_every_loss_back_as_it_goes() -> None:
    resolved = resolve(TINY, {"batch_size": 1})
    torch.manual_seed(0)
    gan = build_gan(resolved.result, resolved.train, torch.device("cpu"))
    loop = SeedLoop(gan, torch.device("cpu"), resolved.value_range)
    before = [p.detach().clone() for p in gan.generator.parameters()]
    for _ in range(2):
        loop(torch.randint(0, 256, (1, 3, 16, 16), dtype=torch.uint8))
    assert len(loop.progress) == 6 and all(isinstance(v, float) for v in loop.progress)
    assert not all(torch.equal(a, b) for a, b in zip(before, gan.generator.parameters(), strict=True))


@pytest.mark.parametrize("steps", [1, 4, 5, 7])
def test_timed_steps_are_split_into_chunks_that_add_up(steps: int) -> None:
    from runner.bench_timing import split as _split

    parts = _split(steps, 5)
    assert sum(len(p) for p in parts) == steps and all(len(p) > 0 for p in parts)
