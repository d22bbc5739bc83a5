"""Does conditioning work? Class fidelity of three class-conditional GANs on real handwritten digits.

Run from the repository root: ``.venv/bin/python benchmarks/bench_conditional.py [--steps 1500] [--seeds 0 1 2] [--seeds 0]``.
scikit-learn's 1,797 labelled 8x8 digits (shipped with it, no download) are packed at 16x16 with
``archspec data pack``; specs/digits/{cgan,projection,acgan}.yaml each train for ``--steps`` steps of 64 on the
CPU; then a classifier trained on 80% of the real digits (its held-out accuracy is printed: how far its verdicts
can be trusted) labels 100 generated digits of each class, and the fraction it labels as asked is the class
fidelity (the AC-GAN paper's measure). Chance is 10%.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

from archspec.cli import main as archspec
from runner.data import open_images
from runner.fidelity import class_fidelity, train_classifier
from runner.sample import load_generator

ROOT = Path(__file__).resolve().parent.parent
SPECS = ("cgan", "projection", "acgan")


def pack_digits(folder: Path, size: int = 16) -> Path:
    """scikit-learn's digits packed with their labels at ``size`` x ``size`` into ``folder/digits.h5``."""
    digits = load_digits()
    np.save(folder / "digits.npy", digits.images)
    np.save(folder / "labels.npy", digits.target)
    out = folder / "digits.h5"
    args = ["data", "pack", str(folder / "digits.npy"), str(out), "--size", str(size), "--resize"]
    code = archspec([*args, "--channels", "1", "--labels", str(folder / "labels.npy")])
    if code != 0:
        raise SystemExit(f"packing the digits failed ({code})")
    return out


def main() -> int:
    args = _parse()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="archspec-bench-conditional-") as tmp:
        folder = Path(tmp)
        data_path = pack_digits(folder)
        data = open_images(str(data_path), (1, 16, 16), (-1.0, 1.0))
        classifier = train_classifier(data)
        print(f"classifier: held-out accuracy {classifier.held_out_accuracy:.3f} on 20% of the real digits")
        print(f"{'spec':<12} {'seed':>4} {'steps':>6} {'seconds':>8} {'class fidelity':>15}")
        for name in SPECS:
            for seed in args.seeds:
                out = folder / f"{name}-{seed}"
                started = time.perf_counter()
                code = archspec(
                    [
                        "train",
                        str(ROOT / "specs" / "digits" / f"{name}.yaml"),
                        "--data",
                        str(data_path),
                        "--max-steps",
                        str(args.steps),
                        "--seed",
                        str(seed),
                        "--out",
                        str(out),
                        "--log-every",
                        str(args.steps),
                    ]
                )
                seconds = time.perf_counter() - started
                if code != 0:
                    raise SystemExit(f"training {name} failed ({code})")
                run = next((out / f"digits_{name}").iterdir())
                loaded = load_generator(run / "checkpoints" / "last.pt", torch.device("cpu"))
                fidelity = class_fidelity(loaded, classifier)
                print(f"{name:<12} {seed:>4} {args.steps:>6} {seconds:>8.1f} {fidelity:>15.3f}", flush=True)
    return 0


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=1500, help="training steps of 64 per spec (default 1500)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="run seeds (default 0)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    return parser.parse_args()


if __name__ == "__main__":
    raise SystemExit(main())
