"""Does compiling cost speed? Forward + backward of the seed as archspec builds it against the book's classes.

Run from the repository root: ``.venv/bin/python benchmarks/bench_forward.py [--repeats 21]``. CPU, batch 1
(the book's View hard-codes it), the same weights in both, repeats interleaved A-B-B-A so drift hits both
alike; prints the medians and their ratio (goal ≤ 1.02).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from runner.handwritten import seed_discriminator, seed_generator

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=21, help="timed steps per network pair")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per network pair first")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from archspec.modules import build

    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    built = build(ROOT / "specs" / "conv_gan.yaml")
    book = (seed_generator(), seed_discriminator())
    book[0].load_state_dict(built.generator.state_dict())
    book[1].load_state_dict(built.discriminator.state_dict())
    pairs = {"archspec": (built.generator, built.discriminator), "book": book}
    z = torch.randn(1, 100)

    for _ in range(args.warmup):
        for g, d in pairs.values():
            step(g, d, z)
    wall: dict[str, list[float]] = {name: [] for name in pairs}
    cpu: dict[str, list[float]] = {name: [] for name in pairs}
    for i in range(args.repeats):
        for name in list(pairs) if i % 2 == 0 else reversed(pairs):
            seconds, cpu_seconds = step(*pairs[name], z)
            wall[name].append(seconds)
            cpu[name].append(cpu_seconds)

    print(f"seed GAN, forward + backward of D(G(z)), batch 1, CPU, {threads} threads, {args.repeats} repeats")
    for name in pairs:
        w, c = wall[name], cpu[name]
        print(
            f"  {name:9} wall median {statistics.median(w) * 1000:7.1f} ms, min {min(w) * 1000:7.1f} ms;"
            f"  CPU time median {statistics.median(c) * 1000:7.1f} ms"
        )
    # Each round's two steps ran back to back, so their ratio shares the machine's load at that moment.
    paired = statistics.median(a / b for a, b in zip(wall["archspec"], wall["book"], strict=True))
    by_cpu = statistics.median(cpu["archspec"]) / statistics.median(cpu["book"])
    print(f"  archspec / book: median of paired wall ratios {paired:.3f}, of CPU-time medians {by_cpu:.3f}")
    print(f"  goal ≤ 1.02: {'met' if paired <= 1.02 else 'NOT met'}")
    return 0


def step(generator: nn.Module, discriminator: nn.Module, z: torch.Tensor) -> tuple[float, float]:
    """One generator update's compute (the seed's costliest step): D(G(z)), BCE against 1, backward.

    Returns wall seconds and process CPU seconds (all threads), the latter less sensitive to a busy machine.
    """
    generator.zero_grad(set_to_none=True)
    discriminator.zero_grad(set_to_none=True)
    start, start_cpu = time.perf_counter(), time.process_time()
    score = discriminator(generator(z))
    nn.BCELoss()(score, torch.ones_like(score)).backward()
    return time.perf_counter() - start, time.process_time() - start_cpu


if __name__ == "__main__":
    sys.exit(main())
