"""Training under torchrun: the environment, each rank's share of the data, and real two-process runs on the CPU
(gloo) launched by torchrun itself, in both its ``-m archspec`` and ``--no-python archspec`` forms."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from torch import nn

from runner import distributed
from runner.checkpoint import load_checkpoint
from runner.device import World
from runner.errors import RunError
from tests.runner.conftest import ROOT, TINY, Result, only_run, spec_variant, subprocess_env

BIN = Path(sys.executable).parent
TWO = World(rank=1, world_size=2)


# --- the environment and the helpers, in this process -----------------------------------------------------------


def test_without_torchrun_there_is_one_rank() -> None:
    assert distributed.world_from_env({}) == World(0, 1, 0)
    with distributed.session({}) as world:
        assert world.is_main and not world.distributed
        assert distributed.from_main(world, lambda: "x") == "x"
        assert distributed.gather(5, world) == [5]


def test_torchruns_variables_give_the_rank() -> None:
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}
    assert distributed.world_from_env(env) == World(3, 4, 1)
    assert not distributed.world_from_env(env).is_main


@pytest.mark.parametrize(
    "env", [{"RANK": "x", "WORLD_SIZE": "2"}, {"RANK": "2", "WORLD_SIZE": "2"}, {"WORLD_SIZE": "0"}]
)
def test_a_malformed_environment_is_one_error(env: dict[str, str]) -> None:
    with pytest.raises(RunError, match="torchrun environment"):
        distributed.world_from_env(env)


@pytest.mark.parametrize("n", [10, 11, 13])
@pytest.mark.parametrize("size", [1, 2, 3])
def test_each_rank_gets_an_equal_disjoint_share_of_the_same_order(n: int, size: int) -> None:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(n))
    shares = [distributed.shard(order, World(rank, size)) for rank in range(size)]
    assert len({s.numel() for s in shares}) == 1 and shares[0].numel() == n // size
    together = torch.cat(shares).sort().values
    assert torch.equal(together, order[: n - n % size].sort().values)


def test_devices_under_torchrun() -> None:
    assert distributed.rank_device("cpu", TWO) == "cpu"
    assert distributed.describe_world(TWO, torch.device("cpu")) == "2 × cpu (gloo)"
    if not torch.cuda.is_available():
        assert distributed.rank_device("auto", TWO) == "cpu"
    assert distributed.rank_device("cuda:5", World()) == "cuda:5"  # alone: as asked


def test_sync_batchnorm_needs_cuda_under_torchrun() -> None:
    with pytest.raises(RunError, match="SyncBatchNorm runs on CUDA only"):
        distributed.check_sync_batchnorm(True, torch.device("cpu"), TWO)
    with pytest.raises(RunError, match="SyncBatchNorm runs on CUDA only"):  # alone too, as the README says
        distributed.check_sync_batchnorm(True, torch.device("cpu"), World())


def test_the_weights_digest_sees_one_changed_value() -> None:
    net = nn.Linear(3, 2)
    before = distributed.weights_digest([net])
    assert distributed.weights_digest([net]) == before
    with torch.no_grad():
        net.bias[1] += 1e-6
    assert distributed.weights_digest([net]) != before


# --- real torchrun runs ---------------------------------------------------------------------------------------------

needs_gloo = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available() and (BIN / "torchrun").exists()),
    reason="needs torch.distributed with gloo and the torchrun launcher",
)


def _torchrun(*argv: str | Path | int, no_python: bool = False) -> Result:
    target = ["--no-python", "archspec"] if no_python else ["-m", "archspec"]
    command = [str(BIN / "torchrun"), "--nproc_per_node=2", "--standalone", *target, *(str(a) for a in argv)]
    env = {**subprocess_env(), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def _train(out: Path, *extra: str | Path | int, no_python: bool = False) -> Result:
    return _torchrun(
        "train", TINY, "--device", "cpu", "--max-steps", 6, "--checkpoint-every", 3, "--log-every", 2,
        "--out", out, "--no-progress", *extra, no_python=no_python,
    )  # fmt: skip


def _rows(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@needs_gloo
def test_torchrun_trains_with_ddp_then_resumes_bit_for_bit(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    first = _train(out)
    assert first.code == 0, first.err
    run = only_run(out)  # rank 0 alone made a run folder
    assert first.out.count("archspec train tiny") == 1 and first.out.count("finished: step 6") == 1
    assert "world    2 × cpu (gloo): batch 16 per process, 32 per step" in first.out
    assert "weights of the 2 ranks: identical" in first.out
    assert "error" not in first.err.lower()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "last.pt",
        "step_000003.pt",
        "step_000006.pt",
    ]
    assert [r["step"] for r in _rows(run)] == [2, 4, 6]  # written once, by rank 0
    doc = json.loads((run / "run.json").read_text())
    assert doc["ranks_identical"] is True and doc["world_size"] == 2 and doc["status"] == "finished"
    assert doc["report"]["world_size"] == 2 and doc["report"]["images_per_s"] > 0
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["world_size"] == 2 and len(state["rng_ranks"]) == 2
    latents = [r["latent"] for r in state["rng_ranks"]]
    assert not torch.equal(latents[0], latents[1])  # each rank draws its own latent batches
    whole = tmp_path / "whole.pt"
    shutil.copyfile(run / "checkpoints" / "last.pt", whole)
    last_row = _rows(run)[-1]

    again = _train(out, "--resume", run / "checkpoints" / "step_000003.pt", no_python=True)
    assert again.code == 0, again.err
    assert again.out.count(f"resumed  from {run / 'checkpoints' / 'step_000003.pt'} at step 3") == 1
    # The run had gone on to step 6: resuming its step-3 checkpoint branches, leaving the run as it was.
    assert again.out.count("branched:") == 1 and load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 6
    (branch,) = [p for p in (out / "tiny").iterdir() if p != run]
    a, b = load_checkpoint(whole), load_checkpoint(branch / "checkpoints" / "last.pt")
    for key in ("generator", "discriminator"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    for key in ("opt_g", "opt_d"):
        assert torch.equal(a[key]["state"][0]["exp_avg"], b[key]["state"][0]["exp_avg"]), key
    rows = _rows(branch)
    assert [r["step"] for r in rows] == [2, 4, 6] and _rows(run)[-1] == last_row
    assert (rows[-1]["loss_d"], rows[-1]["loss_g"]) == (last_row["loss_d"], last_row["loss_g"])
    assert json.loads((branch / "run.json").read_text())["ranks_identical"] is True


@pytest.mark.slow
@needs_gloo
def test_wgan_gp_double_backward_through_ddp(tmp_path: Path) -> None:
    def critic(data: dict[str, Any]) -> None:
        data["discriminator"]["layers"].pop()  # raw scores
        data["discriminator"]["layers"].insert(2, {"type": "dropout", "p": 0.3})

    spec = spec_variant(tmp_path, "critic", critic, loss="wgan_gp", d_steps=2)
    out = tmp_path / "runs"
    result = _torchrun(
        "train", spec, "--device", "cpu", "--max-steps", 4, "--log-every", 2, "--out", out, "--no-progress"
    )
    assert result.code == 0, result.err
    run = only_run(out, "tiny")
    assert json.loads((run / "run.json").read_text())["ranks_identical"] is True
    assert all(abs(r["loss_d"]) < 1e6 for r in _rows(run))


@pytest.mark.slow
@needs_gloo
def test_a_users_mistake_under_torchrun_is_said_once(tmp_path: Path) -> None:
    result = _train(tmp_path / "runs", "--sync-batchnorm")
    assert result.code != 0
    errors = [line for line in result.err.splitlines() if line.startswith("error: ")]
    assert errors == [
        "error: --sync-batchnorm: PyTorch's SyncBatchNorm runs on CUDA only; on the CPU (gloo) each process "
        "keeps its own batch statistics, so drop --sync-batchnorm"
    ]
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
@needs_gloo
def test_a_graph_spec_trains_under_ddp(tmp_path: Path) -> None:
    # residual blocks, a skip and spectral norm: GraphNetwork inside DistributedDataParallel
    out = tmp_path / "runs"
    spec = ROOT / "specs" / "examples" / "resblock.yaml"
    result = _torchrun(
        "train", spec, "--device", "cpu", "--max-steps", 2, "--batch-size", 4, "--d-steps", 1,
        "--log-every", 1, "--limit", 32, "--out", out, "--no-progress",
    )  # fmt: skip
    assert result.code == 0, result.err
    run = only_run(out, "resblock")
    doc = json.loads((run / "run.json").read_text())
    assert doc["ranks_identical"] is True and doc["world_size"] == 2
    assert "2.1.3.weight" in load_checkpoint(run / "checkpoints" / "last.pt")["generator"]


@pytest.mark.slow
@needs_gloo
def test_a_class_conditional_spec_trains_under_ddp(tmp_path: Path) -> None:
    # labels travel with their images into each rank's share; fake labels come from each rank's own stream
    out = tmp_path / "runs"
    spec = ROOT / "specs" / "digits" / "acgan.yaml"
    result = _torchrun(
        "train", spec, "--device", "cpu", "--data", "random", "--max-steps", 2, "--batch-size", 8,
        "--log-every", 1, "--limit", 64, "--out", out, "--no-progress",
    )  # fmt: skip
    assert result.code == 0, result.err
    run = only_run(out, "digits_acgan")
    doc = json.loads((run / "run.json").read_text())
    assert doc["ranks_identical"] is True and doc["world_size"] == 2
    assert {"aux_d", "aux_g", "acc_real"} <= _rows(run)[-1].keys()


def test_rank_0_evaluates_and_every_rank_writes_best_pt_together(tmp_path: Path) -> None:
    # Rank 0 measures while the other waits; both join the checkpoint write of best.pt (a gather of RNGs).
    out = tmp_path / "runs"
    result = _train(out, "--eval-every", 3, "--eval-samples", 40)
    assert result.code == 0, result.err
    run = only_run(out)
    assert result.out.count("eval step 3:") == 1 and result.out.count("eval step 6:") == 1
    evaluations = [row for row in _rows(run) if "swd" in row]
    assert [row["step"] for row in evaluations] == [3, 6]
    best = min(evaluations, key=lambda row: row["swd"])
    state = load_checkpoint(run / "checkpoints" / "best.pt")
    assert state["step"] == best["step"] and len(state["rng_ranks"]) == 2
    assert json.loads((run / "run.json").read_text())["ranks_identical"] is True
