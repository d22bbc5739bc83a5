"""How fast ``archspec check`` is: cold against torchinfo, on a 1,000-layer spec, and at 4096 channels.

Run from the repository root: ``.venv/bin/python benchmarks/bench_check.py [--runs 5]``. Prints a table; the
goals are the ones archspec promises (checking costs a tenth of a torchinfo summary, does not grow with the
layers' widths, and stays under a second for a thousand layers).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "specs" / "conv_gan.yaml"

# The same two networks, built by archspec and summarised by torchinfo, in a fresh interpreter.
TORCHINFO = """\
import torchinfo
import archspec
gan = archspec.build({spec!r}, device={device!r})
torchinfo.summary(gan.generator, input_size=(1, gan.spec.latent.size), device={device!r}, verbose=0)
torchinfo.summary(gan.discriminator, input_size=(1, *gan.spec.image), device={device!r}, verbose=0)
"""


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="repeats per measurement; the median is printed")
    args = parser.parse_args()

    check, meta, cpu = cold_runs(args.runs)
    rows = [
        ("cold check: " + " ".join(check_command()[1:4]), check, ""),
        ("cold torchinfo summary, device meta", meta, f"check = 1/{meta / check:.1f} of it"),
        ("cold torchinfo summary, device cpu, batch 1", cpu, f"check = 1/{cpu / check:.1f} of it"),
    ]
    goals = [f"cold check ≤ 1/10 of the cheaper summary: {_met(check * 10 <= min(meta, cpu))}"]

    sys.path.insert(0, str(ROOT))
    from archspec.check import check_text

    text = thousand_layers()
    spec = check_text(text).spec
    assert spec is not None
    layers = len(spec.generator.layers) + len(spec.discriminator.layers)
    thousand = median(lambda: check_text(text), args.runs)
    rows.append((f"in-process check, {layers}-layer spec", thousand, ""))
    goals.append(f"{layers} layers < 1 s: {_met(thousand < 1.0)}")

    seed = SEED.read_text()
    wide = seed.replace("out_channels: 256", "out_channels: 4096")
    assert check_text(seed).ok and check_text(wide).ok
    narrow_s = median(lambda: check_text(seed), args.runs * 4)
    wide_s = median(lambda: check_text(wide), args.runs * 4)
    rows.append(("in-process check, seed at 256 channels", narrow_s, ""))
    rows.append(("in-process check, seed at 4096 channels", wide_s, f"{wide_s / narrow_s:.2f}× the 256-wide"))
    goals.append(f"4096 wide as fast as 256 wide: {_met(wide_s < 1.5 * narrow_s)}")

    print(f"median of {args.runs} runs ({args.runs * 4} for the seed widths), {os.cpu_count()} CPUs")
    print(f"{'measurement':46} {'ms':>9}  note")
    for name, seconds, note in rows:
        print(f"{name:46} {seconds * 1000:9.1f}  {note}")
    print("\n".join(goals))
    return 0


def check_command() -> list[str]:
    """``python -m archspec check`` once the CLI exists, else the same check through the Python API."""
    if (ROOT / "archspec" / "__main__.py").exists():
        return [sys.executable, "-m", "archspec", "check", str(SEED)]
    code = f"from archspec.check import check_file; check_file({str(SEED)!r})"
    return [sys.executable, "-c", code]


def cold_runs(runs: int) -> tuple[float, float, float]:
    """Median wall time of fresh interpreters: check, torchinfo on meta, torchinfo on cpu, interleaved."""
    commands = [
        check_command(),
        [sys.executable, "-c", TORCHINFO.format(spec=str(SEED), device="meta")],
        [sys.executable, "-c", TORCHINFO.format(spec=str(SEED), device="cpu")],
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    }
    times: list[list[float]] = [[] for _ in commands]
    for _ in range(runs):
        for command, seconds in zip(commands, times, strict=True):
            start = time.perf_counter()
            subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
            seconds.append(time.perf_counter() - start)
    check, meta, cpu = (statistics.median(t) for t in times)
    return check, meta, cpu


def median(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm: first-use costs (pydantic's validators, regexes) are not what this measures
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def thousand_layers() -> str:
    """A valid GAN of 3×16×16 images with 1,000 layers: conv, batch norm, leaky ReLU blocks on both sides."""
    block = [
        "{type: conv2d, out_channels: 8, kernel_size: 3, padding: 1}",
        "{type: batch_norm2d}",
        "{type: leaky_relu, negative_slope: 0.2}",
    ]
    generator = ["{type: linear, out_features: 768}", "{type: view, shape: [3, 16, 16]}", *block * 166]
    generator += ["{type: conv2d, out_channels: 3, kernel_size: 3, padding: 1}", "{type: sigmoid}"]
    discriminator = [*block * 165, "{type: flatten}", "{type: linear, out_features: 1}", "{type: sigmoid}"]

    def layers(items: list[str]) -> str:
        return "\n".join(f"    - {item}" for item in items)

    return (
        "name: thousand\nlatent: 100\nimage: [3, 16, 16]\n"
        f"generator:\n  layers:\n{layers(generator)}\n"
        f"discriminator:\n  layers:\n{layers(discriminator)}\n"
    )


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


if __name__ == "__main__":
    sys.exit(main())
