"""How fast ``archspec check`` is: cold against torchinfo (the seed and BigGAN), on a 1,000-layer chain, on a
200-block ResNet, and at 4096 channels.

Run from the repository root: ``.venv/bin/python benchmarks/bench_check.py [--runs 5]``. Prints a table; the
goals are the ones archspec promises (checking costs a tenth of a torchinfo summary, does not grow with the
layers' widths, and stays under a second for a thousand layers or two hundred residual blocks).
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "specs" / "conv_gan.yaml"
BIGGAN = ROOT / "specs" / "zoo" / "studiogan_biggan32.yaml"
RESNET_BLOCKS = 200

# The same two networks, built by archspec and summarised by torchinfo, in a fresh interpreter.
TORCHINFO = """\
import torchinfo
import archspec
gan = archspec.build({spec!r}, device={device!r})
torchinfo.summary(gan.generator, input_size=(1, gan.spec.latent.size), device={device!r}, verbose=0)
torchinfo.summary(gan.discriminator, input_size=(1, *gan.spec.image), device={device!r}, verbose=0)
"""

# BigGAN's networks take a label too, so torchinfo is given the tensors: z [1, latent] and y (long) [1] for G,
# the image and y for D.
TORCHINFO_LABELLED = """\
import torch
import torchinfo
import archspec
device = torch.device({device!r})
gan = archspec.build({spec!r}, device=device)
y = torch.zeros(1, dtype=torch.long, device=device)
z = torch.randn(1, gan.spec.latent.size, device=device)
x = torch.randn(1, *gan.spec.image, device=device)
torchinfo.summary(gan.generator, input_data=[z, y], device=device, verbose=0)
torchinfo.summary(gan.discriminator, input_data=[x, y], device=device, verbose=0)
"""


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="repeats per measurement; the median is printed")
    args = parser.parse_args()
    print(f"load average {_load()} at start; {os.cpu_count()} CPUs")

    sys.path.insert(0, str(ROOT))
    from archspec.check import check_text
    from archspec.report import console, print_result

    with tempfile.TemporaryDirectory() as tmp:
        resnet_path = Path(tmp) / "resnet200.yaml"
        resnet_path.write_text(resnet_blocks(RESNET_BLOCKS))
        cold = cold_runs(
            [
                check_command(SEED),
                torchinfo_command(TORCHINFO, SEED, "meta"),
                torchinfo_command(TORCHINFO, SEED, "cpu"),
                check_command(BIGGAN),
                torchinfo_command(TORCHINFO_LABELLED, BIGGAN, "meta"),
                torchinfo_command(TORCHINFO_LABELLED, BIGGAN, "cpu"),
                check_command(resnet_path),
                [*check_command(resnet_path), "--json"],
                api_command(resnet_path),
            ],
            args.runs,
        )
    (check, meta, cpu, big_check, big_meta, big_cpu, res_cold, res_json, res_api), cpu_s = cold
    c_check, c_meta, c_cpu, c_big, c_big_meta, c_big_cpu, c_res, c_json, c_api = cpu_s
    rows: list[tuple[str, float, float | None, str]] = [
        ("cold check: " + " ".join(check_command(SEED)[1:4]), check, c_check, ""),
        ("cold torchinfo summary, device meta", meta, c_meta, _fraction(meta, check, c_meta, c_check)),
        ("cold torchinfo summary, device cpu, batch 1", cpu, c_cpu, _fraction(cpu, check, c_cpu, c_check)),
        ("cold check: studiogan_biggan32", big_check, c_big, ""),
        (
            "cold torchinfo summary, device meta",
            big_meta,
            c_big_meta,
            _fraction(big_meta, big_check, c_big_meta, c_big),
        ),
        (
            "cold torchinfo summary, device cpu, batch 1",
            big_cpu,
            c_big_cpu,
            _fraction(big_cpu, big_check, c_big_cpu, c_big),
        ),
    ]
    goals = [
        "cold check ≤ 1/10 of the cheaper summary, seed: "
        f"{_met(check * 10 <= min(meta, cpu))} by wall, {_met(c_check * 10 <= min(c_meta, c_cpu))} by CPU time",
        "cold check ≤ 1/10 of the cheaper summary, biggan32: "
        f"{_met(big_check * 10 <= min(big_meta, big_cpu))} by wall, "
        f"{_met(c_big * 10 <= min(c_big_meta, c_big_cpu))} by CPU time",
    ]

    text = thousand_layers()
    spec = check_text(text).spec
    assert spec is not None
    layers = len(spec.generator.layers) + len(spec.discriminator.layers)
    thousand = median(lambda: check_text(text), args.runs)
    rows.append((f"in-process check, {layers}-layer spec", thousand, None, ""))
    goals.append(f"{layers} layers < 1 s: {_met(thousand < 1.0)}")

    resnet = resnet_blocks(RESNET_BLOCKS)
    result = check_text(resnet)
    assert result.ok and result.generator is not None, [str(e) for e in result.errors]
    nodes = len(result.generator.layers)
    in_process = median(lambda: check_text(resnet), args.runs)

    def render() -> None:
        sink = io.StringIO()
        print_result(check_text(resnet), console(sink), console(sink))

    rendered = median(render, args.runs)
    name = f"{RESNET_BLOCKS}-block ResNet"
    rows += [
        (f"in-process check, {name} (G {nodes} nodes)", in_process, None, ""),
        ("  and its tables rendered (check + print_result)", rendered, None, ""),
        ("cold archspec check, tables to /dev/null", res_cold, c_res, ""),
        ("cold archspec check --json to /dev/null", res_json, c_json, ""),
        ("cold check_file through the Python API", res_api, c_api, "no output"),
    ]
    goals.append(f"{name} < 1 s in-process: {_met(in_process < 1.0)}")
    goals.append(
        f"{name} < 1 s cold (archspec check): {_met(res_cold < 1.0)} by wall, {_met(c_res < 1.0)} by CPU time"
    )

    seed = SEED.read_text()
    wide = seed.replace("out_channels: 256", "out_channels: 4096")
    assert check_text(seed).ok and check_text(wide).ok
    narrow_s = median(lambda: check_text(seed), args.runs * 4)
    wide_s = median(lambda: check_text(wide), args.runs * 4)
    rows.append(("in-process check, seed at 256 channels", narrow_s, None, ""))
    rows.append(
        ("in-process check, seed at 4096 channels", wide_s, None, f"{wide_s / narrow_s:.2f}× the 256-wide")
    )
    goals.append(f"4096 wide as fast as 256 wide: {_met(wide_s < 1.5 * narrow_s)}")

    print(f"median of {args.runs} runs ({args.runs * 4} for the seed widths), {os.cpu_count()} CPUs")
    print(f"{'measurement':52} {'wall ms':>9} {'CPU ms':>9}  note (by wall; by CPU time)")
    for label, seconds, cpu_seconds, note in rows:
        cpu_ms = "" if cpu_seconds is None else f"{cpu_seconds * 1000:9.1f}"
        print(f"{label:52} {seconds * 1000:9.1f} {cpu_ms:>9}  {note}")
    print("\n".join(goals))
    print(f"load average {_load()} at the end")
    return 0


def check_command(spec: Path) -> list[str]:
    """``python -m archspec check`` once the CLI exists, else the same check through the Python API."""
    if (ROOT / "archspec" / "__main__.py").exists():
        return [sys.executable, "-m", "archspec", "check", str(spec)]
    return api_command(spec)


def api_command(spec: Path) -> list[str]:
    return [sys.executable, "-c", f"from archspec.check import check_file; check_file({str(spec)!r})"]


def torchinfo_command(template: str, spec: Path, device: str) -> list[str]:
    return [sys.executable, "-c", template.format(spec=str(spec), device=device)]


def cold_runs(commands: list[list[str]], runs: int) -> tuple[list[float], list[float]]:
    """Median wall time and median CPU time (user + system, all threads) of each command in a fresh
    interpreter, the commands interleaved run by run. CPU time moves less than wall time on a busy machine."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    }
    wall: list[list[float]] = [[] for _ in commands]
    cpu: list[list[float]] = [[] for _ in commands]
    for _ in range(runs):
        for command, seconds, cpu_seconds in zip(commands, wall, cpu, strict=True):
            before = _children_cpu()
            start = time.perf_counter()
            subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
            seconds.append(time.perf_counter() - start)
            cpu_seconds.append(_children_cpu() - before)
    return [statistics.median(t) for t in wall], [statistics.median(t) for t in cpu]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


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


def resnet_blocks(repeat: int) -> str:
    """A GAN of 3×32×32 images whose generator repeats a residual block (conv, BN, ReLU, conv, add) ``repeat``
    times at 64 channels, 16×16; a two-layer discriminator."""
    return f"""\
name: resnet{repeat}
latent: 64
image: [3, 32, 32]
blocks:
  res:
    params: {{channels: null}}
    layers:
      - {{type: conv2d, out_channels: $channels, kernel_size: 3, padding: 1}}
      - {{type: batch_norm2d}}
      - {{type: relu}}
      - {{type: conv2d, out_channels: $channels, kernel_size: 3, padding: 1}}
      - {{type: add, from: [_, x]}}
generator:
  layers:
    - {{type: linear, out_features: 16384}}
    - {{type: view, shape: [64, 16, 16]}}
    - {{type: res, channels: 64, repeat: {repeat}}}
    - {{type: upsample, scale_factor: 2}}
    - {{type: conv2d, out_channels: 3, kernel_size: 3, padding: 1}}
    - {{type: tanh}}
discriminator:
  layers:
    - {{type: conv2d, out_channels: 64, kernel_size: 4, stride: 2, padding: 1}}
    - {{type: leaky_relu, negative_slope: 0.2}}
    - {{type: flatten}}
    - {{type: linear, out_features: 1}}
train:
  loss: hinge
"""


def _fraction(summary: float, check: float, summary_cpu: float, check_cpu: float) -> str:
    return f"check = 1/{summary / check:.1f} of it; 1/{summary_cpu / check_cpu:.1f} by CPU time"


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


if __name__ == "__main__":
    sys.exit(main())
