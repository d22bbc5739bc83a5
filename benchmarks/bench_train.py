"""Does archspec's training step cost speed? The trainer's step against the same updates written by hand.

Run from the repository root: ``.venv/bin/python benchmarks/bench_train.py [--repeats 15] [--steps 40]``.
specs/tiny.yaml on the CPU in float32 at the spec's batch (16): (b) ``runner.step.GanStep``, the step
``archspec train`` runs, against (d) ``runner.handwritten.BatchedLoop``, the same three updates in plain
PyTorch, both fed the same shuffled uint8 batches and starting from the same weights. Threads are pinned (one
torch thread, and the process on one core where the OS allows), repeats alternate which loop runs first, and
the numbers are medians. Goal: archspec / hand-written images/s ≥ 0.98.
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

import torch

from runner.bench import BenchOptions, prepare, time_steps
from runner.config import load_spec
from runner.data import open_images
from runner.device import resolve_device

ROOT = Path(__file__).resolve().parent.parent
GOAL = 0.98


def main() -> int:
    """Time both loops in interleaved repeats and print their medians and ratio."""
    args = _parse()
    pinned = _pin(args.threads, args.core)
    spec_path = str(ROOT / "specs" / "tiny.yaml") if args.spec is None else args.spec
    spec = load_spec(spec_path)
    batch = args.batch_size or spec.train.batch_size
    device = resolve_device("cpu")
    options = BenchOptions(spec=spec_path, batch_size=batch, device="cpu")
    pool = open_images("synthetic", spec.image, (0.0, 1.0), seed=0, synthetic_count=max(4 * batch, 256))
    loops = {name: prepare(name, options, pool, device, batch) for name in ("fp32", "hand")}
    for prepared in loops.values():
        time_steps(prepared.loop, prepared.feed, args.warmup, device)

    rates: dict[str, list[float]] = {name: [] for name in loops}
    for i in range(args.repeats):
        order = list(loops) if i % 2 == 0 else list(reversed(loops))
        for name in order:
            seconds = time_steps(loops[name].loop, loops[name].feed, args.steps, device)
            rates[name].append(args.steps * batch / seconds)
    for prepared in loops.values():
        prepared.feed.close()

    print(
        f"{spec.name}: training step, float32, batch {batch}, CPU, {pinned}, {args.repeats} interleaved "
        f"repeats of {args.steps} steps"
    )
    for name, label in (("fp32", "archspec GanStep"), ("hand", "hand-written loop")):
        r = rates[name]
        print(
            f"  {label:18} median {statistics.median(r):8,.0f} images/s  "
            f"(min {min(r):,.0f}, max {max(r):,.0f}; {1000 * batch / statistics.median(r):.2f} ms/step)"
        )
    ratio = statistics.median(rates["fp32"]) / statistics.median(rates["hand"])
    # Each repeat's two timings ran back to back, so their ratio shares the machine's load at that moment.
    paired = statistics.median(a / b for a, b in zip(rates["fp32"], rates["hand"], strict=True))
    print(f"  archspec / hand-written: ratio of medians {ratio:.3f}, median of paired ratios {paired:.3f}")
    print(f"  goal ≥ {GOAL}: {'met' if min(ratio, paired) >= GOAL else 'NOT met'}")
    return 0


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spec", help="spec file (default specs/tiny.yaml)")
    parser.add_argument("--batch-size", type=int, help="batch size (default: the spec's)")
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds per loop")
    parser.add_argument("--steps", type=int, default=40, help="steps per timed round")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps per loop first")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--core", type=int, default=0, help="CPU core to pin the process to (default 0)")
    return parser.parse_args()


def _pin(threads: int, core: int) -> str:
    """Fix the thread count, and the process to one core where the OS allows it; says what was done."""
    torch.set_num_threads(threads)
    where = ""
    if hasattr(os, "sched_setaffinity") and threads == 1 and core < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {core})
        where = f" on core {core}"
    return f"{threads} thread(s){where}"


if __name__ == "__main__":
    raise SystemExit(main())
