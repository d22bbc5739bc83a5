"""The table ``archspec bench`` prints, with rich: one row per loop, then memory, MFU's yardstick and the goals."""

from __future__ import annotations

from typing import TextIO

from runner.bench_results import LETTERS, BenchResult
from runner.outputs import human_bytes


def print_result(result: BenchResult, stream: TextIO) -> None:
    """The table, the memory comparison and the goals, with rich."""
    from rich.console import Console, JustifyMethod
    from rich.table import Table

    console = Console(file=stream, width=None if stream.isatty() else 140)
    seed = result.row("seed")
    table = Table(title=f"archspec bench {result.spec} on {result.device}", title_justify="left")
    for column in (
        "",
        "loop",
        "batch",
        "precision",
        "images/s",
        "ms/step",
        "× (a)",
        "MFU",
        "peak memory",
        "data",
    ):
        justify: JustifyMethod = "left" if column in ("", "loop", "precision", "data") else "right"
        table.add_column(column, justify=justify)
    for row in result.rows:
        speedup = f"{row.images_per_s / seed.images_per_s:.1f}" if seed and seed.images_per_s else "n/a"
        table.add_row(
            f"({LETTERS[row.variant]})",
            row.label + (" *" if row.note else ""),
            str(row.batch_size),
            row.precision,
            f"{row.images_per_s:,.1f}",
            f"{row.ms_per_step:.2f}",
            speedup,
            f"{row.mfu:.1%}" if row.mfu is not None else "n/a",
            human_bytes(row.peak_memory_bytes) + ("" if "cuda" in row.peak_memory_kind else " RSS"),
            row.data,
        )
    console.print(table)
    for row in result.rows:
        if row.note:
            console.print(f"* ({LETTERS[row.variant]}) {row.note}")
    for variant, why in result.skipped.items():
        console.print(f"({LETTERS[variant]}) {variant} skipped: {why}")
    gflop = result.model_flops / 1e9
    console.print(
        f"MFU counts {gflop:.4g} GFLOP per image (the compiler's needed FLOPs per step, the same for every loop); "
        f"peak FLOP/s: {result.peak_source}"
    )
    if result.rows and "cuda" not in result.rows[0].peak_memory_kind:
        console.print("peak memory on the CPU is the whole process's peak RSS so far, not one loop's")
    measured = result.memory_measured_bytes
    said = f"{human_bytes(measured)} measured by (b)" if measured is not None else "measured n/a (CPU)"
    ratio = f", ratio {result.memory_ratio:.2f} (goal 0.75..1.25)" if result.memory_ratio is not None else ""
    fp32 = result.row("fp32")
    batch = fp32.batch_size if fp32 is not None else "B"
    console.print(
        f"training memory: compiler estimate {human_bytes(result.memory_estimate_bytes)} at batch {batch}, {said}{ratio}"
    )
    speedups = result.speedups()
    if "fp32_over_hand" in speedups:
        console.print(
            f"(b) ÷ (d) = {speedups['fp32_over_hand']:.3f} (archspec's step ÷ the same step by hand)"
        )
    if "fast_over_seed" in speedups:
        console.print(
            f"(c) ÷ (a) = {speedups['fast_over_seed']:.1f}× the seed's loop (goal on a GPU: ≥ 100×)"
        )
