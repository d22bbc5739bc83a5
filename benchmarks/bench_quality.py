"""Is the modern recipe better than the seed's, on a fixed CPU budget? SWD and NDB/K against steps for both.

Run from the repository root: ``.venv/bin/python benchmarks/bench_quality.py [--budget-s 210] [--evals 6]``.
Two recipes on the same networks (dcgan32's) and the same 32x32 data: ``specs/recipes/seed32.yaml``, the seed's
(batch 1, images in order, sigmoid BCE, Adam 1e-4), and ``specs/recipes/modern32.yaml`` (batch 64, hinge loss,
spectral norm in D, EMA, TTUR). Data: the built-in synthetic faces, and the 200 LFW faces scikit-image ships,
packed to 32x32 with ``archspec data pack``. Each (data, recipe) pair gets the same wall-clock budget: a short
calibration run measures its steps per second, then ``archspec train`` runs the steps that fit 80% of the budget
(the rest is for the evaluations), evaluating ``--evals`` times (``--eval-every``, ``--eval-samples``); a run
still going at 1.5 x the budget is stopped with SIGINT (it saves and evaluates its weights as it ends).

Prints the load average, each run's progress, then a table of SWD (x1e3), NDB/K and coverage at each
evaluation, and writes the final sample grids and a grid of real images as PNG files and the numbers as JSON
into ``--results`` (default benchmarks/results). Where a GPU run happens later, the same comparison with
CelebA-64 and FID is the one with published numbers (Lučić et al. 2018).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
RECIPES = {
    "seed": ROOT / "specs" / "recipes" / "seed32.yaml",
    "modern": ROOT / "specs" / "recipes" / "modern32.yaml",
}
CALIBRATION_STEPS = {"seed": 200, "modern": 10}
TRAINING_SHARE = 0.8  # of the budget; the evaluations take the rest


def main() -> int:
    """Calibrate, train and evaluate each (data, recipe) pair; print the table; write grids and JSON."""
    args = _parse()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-quality-"))
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    print(
        f"load average at start: {_load()}; {args.threads} threads per run; budget {args.budget_s:g} s a run"
    )
    print(f"work folder: {work}")
    sources = {name: _source(name, work, args.threads) for name in args.data}
    table: dict[str, Any] = {
        "budget_s": args.budget_s,
        "threads": args.threads,
        "load_start": _load(),
        "runs": [],
    }
    for data_name, source in sources.items():
        _real_grid(source, results / f"{data_name}_real.png")
        for recipe in args.recipes:
            run = _run(recipe, data_name, source, work, args)
            table["runs"].append(run)
            shutil.copyfile(
                Path(run["run_dir"]) / "samples" / "final.png", results / f"{data_name}_{recipe}.png"
            )
    table["load_end"] = _load()
    (results / "quality.json").write_text(json.dumps(table, indent=2) + "\n", encoding="utf-8")
    _print_table(table)
    print(f"load average at end: {_load()}; grids and quality.json in {results}")
    return 0


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--budget-s", type=float, default=210.0, help="wall-clock seconds per (data, recipe) run"
    )
    parser.add_argument("--evals", type=int, default=6, help="evaluations per run (plus one at its end)")
    parser.add_argument("--eval-samples", type=int, default=500, help="images per evaluation")
    parser.add_argument("--data", nargs="+", default=["synthetic", "lfw"], choices=["synthetic", "lfw"])
    parser.add_argument("--recipes", nargs="+", default=["seed", "modern"], choices=sorted(RECIPES))
    parser.add_argument("--threads", type=int, default=2, help="torch threads of each run (OMP_NUM_THREADS)")
    parser.add_argument(
        "--work", help="folder for the runs and packed data (default: a new temporary folder)"
    )
    parser.add_argument(
        "--results", default=str(ROOT / "benchmarks" / "results"), help="where grids and JSON go"
    )
    return parser.parse_args()


def _run(recipe: str, data_name: str, source: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Calibrate, then train within the budget; the run's quality rows and where it is."""
    label = f"[{data_name}/{recipe}]"
    spec = RECIPES[recipe]
    calibration = _train(
        spec, source, work / "calibration", args.threads, label, "--max-steps", CALIBRATION_STEPS[recipe]
    )
    report = _run_json(calibration)["report"]
    rate = report["steps_run"] / report["wall_s"]
    steps = max(args.evals, int(args.budget_s * TRAINING_SHARE * rate))
    every = max(1, steps // args.evals)
    print(
        f"{label} {report['steps_run']} steps in {report['wall_s']:.1f} s: {rate:.1f} steps/s; training {steps:,} "
        f"steps, evaluating every {every:,}",
        flush=True,
    )
    started = time.perf_counter()
    run_dir = _train(
        spec, source, work / "runs", args.threads, label, "--max-steps", steps, "--eval-every", every,
        "--eval-samples", args.eval_samples, deadline=1.5 * args.budget_s,
    )  # fmt: skip
    wall = time.perf_counter() - started
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    quality = [row for row in rows if "swd" in row]
    final = _run_json(run_dir)
    return {
        "data": data_name,
        "recipe": recipe,
        "run_dir": str(run_dir),
        "steps": final["report"]["step"],
        "batch_size": final["config"]["batch_size"],
        "wall_s": round(wall, 1),
        "status": final["status"],
        "collapse": final.get("collapse"),
        "evaluations": [
            {k: row[k] for k in ("step", "swd", "swd_levels", "ndb", "ndb_different", "ndb_bins", "coverage")}
            for row in quality
        ],
    }


def _train(
    spec: Path, source: str, out: Path, threads: int, label: str, *extra: Any, deadline: float | None = None
) -> Path:
    """``archspec train`` in a subprocess, its lines echoed with ``label``; SIGINT at ``deadline`` seconds."""
    before = set((out / spec.stem).glob("*")) if (out / spec.stem).exists() else set()
    command = [sys.executable, "-m", "archspec", "train", str(spec), "--data", source, "--out", str(out),
               "--device", "cpu", *(str(e) for e in extra)]  # fmt: skip
    env = {**os.environ, "CI": "1", "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    started = time.perf_counter()
    assert proc.stdout is not None
    for line in proc.stdout:
        if not line.startswith("step ") or "eval" in line:
            print(f"{label} {line.rstrip()}", flush=True)
        if deadline is not None and time.perf_counter() - started > deadline and proc.poll() is None:
            print(f"{label} budget exceeded: SIGINT (the run saves and evaluates as it stops)", flush=True)
            proc.send_signal(signal.SIGINT)
            deadline = None
    code = proc.wait()
    if code not in (0, 128 + signal.SIGINT):
        raise SystemExit(f"{label} archspec train exited with {code}")
    (run_dir,) = set((out / spec.stem).glob("*")) - before
    return run_dir


def _source(name: str, work: Path, threads: int) -> str:
    """The --data of a data set: 'synthetic', or LFW packed to 32x32 (grey, repeated to RGB by the loader)."""
    if name == "synthetic":
        return "synthetic"
    from skimage import data as skimage_data  # in the test extra: pip install -e ".[test]"

    work.mkdir(parents=True, exist_ok=True)
    npy, packed = work / "lfw_subset.npy", work / "lfw32.h5"
    if not packed.exists():
        np.save(npy, skimage_data.lfw_subset())
        subprocess.run(
            [sys.executable, "-m", "archspec", "data", "pack", str(npy), str(packed), "--size", "32", "--resize",
             "--channels", "1"],
            check=True, env={**os.environ, "CI": "1", "OMP_NUM_THREADS": str(threads)},
        )  # fmt: skip
    return str(packed)


def _real_grid(source: str, path: Path) -> None:
    """16 real images of the data set, as the runs' grids show their samples."""
    from runner.data import open_images
    from runner.outputs import save_grid

    data = open_images(source, (3, 32, 32), (0.0, 1.0), seed=0, limit=16)
    if path.exists():
        path.unlink()
    save_grid(data.to_float(data.images), path, (0.0, 1.0))


def _run_json(run_dir: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    return doc


def _print_table(table: dict[str, Any]) -> None:
    print()
    print("data       recipe  batch   step     images   SWD x1e3   NDB/K  coverage")
    for run in table["runs"]:
        for row in run["evaluations"]:
            print(
                f"{run['data']:<10} {run['recipe']:<7} {run['batch_size']:>5} {row['step']:>6} "
                f"{row['step'] * run['batch_size']:>10,} {row['swd']:>10.1f} {row['ndb']:>7.2f} {row['coverage']:>9.2f}"
            )
        alarm = run["collapse"]
        note = f"; collapse alarm at step {alarm['step']}" if alarm else ""
        print(
            f"{'':<10} {run['recipe']:<7} {run['steps']:,} steps in {run['wall_s']:.0f} s ({run['status']}){note}"
        )


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


if __name__ == "__main__":
    torch.set_num_threads(1)
    raise SystemExit(main())
