"""Training on several processes with PyTorch's DistributedDataParallel (DDP), as torchrun launches it.

torchrun starts one process per GPU (or several on the CPU) and tells each who it is through the environment:
RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT. ``session`` reads that, joins the process group
(NCCL for CUDA tensors, gloo for CPU ones) and leaves it cleanly. The helpers below are what the trainer needs
from the group: rank 0's answer shared with all, each rank's share of an epoch, losses averaged over ranks, and a
check that every rank ends with the same weights. Without torchrun each of them is a no-op for the lone rank 0.

One machine::

    torchrun --standalone --nproc_per_node=8 -m archspec train specs/conv_gan.yaml --batch-size 256

Several machines (run on each, with its own --node-rank; HOST:PORT is reachable from all of them)::

    torchrun --nnodes=2 --nproc_per_node=8 --node-rank=0 --rdzv-backend=c10d --rdzv-endpoint=HOST:29400 \\
        -m archspec train specs/conv_gan.yaml --batch-size 256 --out /shared/runs

``--batch-size`` is per process; a step trains ``batch_size × WORLD_SIZE`` images. Every rank reads the data
set and the checkpoint it resumes from, so on several machines both must be at the same path on each (a shared
file system); rank 0 alone writes the run folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from runner.device import World
from runner.errors import RunError

T = TypeVar("T")


def world_from_env(env: Mapping[str, str] | None = None) -> World:
    """This process's place as torchrun's environment says (rank 0 of 1 when not launched by torchrun)."""
    env = os.environ if env is None else env
    if "WORLD_SIZE" not in env:
        return World()
    names = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
    try:
        rank, size, local = (int(env.get(name, "0")) for name in names)
    except ValueError:
        shown = " ".join(f"{name}={env.get(name)!r}" for name in names)
        raise RunError(f"torchrun environment: {shown}: expected whole numbers") from None
    if size < 1 or not 0 <= rank < size or local < 0:
        raise RunError(
            f"torchrun environment: RANK {rank} of WORLD_SIZE {size} (LOCAL_RANK {local}) is not a rank"
        )
    return World(rank, size, local)


@contextlib.contextmanager
def session(env: Mapping[str, str] | None = None) -> Iterator[World]:
    """Join the process group for the length of a run (nothing to join for a single process).

    A run that ends normally waits at a barrier, so no rank leaves while rank 0 still writes, then leaves the
    group; a run that fails leaves at once.
    """
    world = world_from_env(env)
    if not world.distributed:
        yield world
        return
    _join(world)
    finished = False
    try:
        yield world
        finished = True
    finally:
        # After an error no barrier: the other ranks may be inside a collective this rank will never join, and
        # waiting for them would hang. torchrun stops them when this process exits with an error.
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def rank_device(name: str, world: World) -> str:
    """The ``--device`` this rank uses: under torchrun ``auto`` and ``cuda`` mean ``cuda:LOCAL_RANK``."""
    if not world.distributed:
        return name
    text = name.strip().lower()
    if text not in ("auto", "cuda") and not text.startswith("cuda:"):
        return name  # cpu, or a name resolve_device will refuse
    if not torch.cuda.is_available():
        return "cpu" if text == "auto" else name
    own = f"cuda:{world.local_rank}"
    count = torch.cuda.device_count()
    if world.local_rank >= count:
        raise RunError(
            f"torchrun started process {world.local_rank} on a machine with {count} GPU(s): one process per "
            f"GPU, so --nproc_per_node {count} or fewer (or --device cpu)"
        )
    if text not in ("auto", "cuda", own):
        raise RunError(
            f"--device {name}: under torchrun each process drives its own GPU, cuda:LOCAL_RANK; use --device cuda"
        )
    return own


def describe_world(world: World, device: torch.device) -> str:
    """``2 × cpu (gloo)``: how many processes, on what, talking over which backend."""
    return f"{world.world_size} × {device.type} ({'nccl' if device.type == 'cuda' else 'gloo'})"


def check_sync_batchnorm(sync: bool, device: torch.device, world: World) -> None:
    """RunError if ``sync_batchnorm`` cannot work here (PyTorch's SyncBatchNorm needs CUDA tensors)."""
    if sync and device.type != "cuda":
        raise RunError(
            "--sync-batchnorm: PyTorch's SyncBatchNorm runs on CUDA only; on the CPU (gloo) each process keeps "
            "its own batch statistics, so drop --sync-batchnorm"
        )


def wrap(module: nn.Module, device: torch.device, world: World, sync_batchnorm: bool) -> nn.Module:
    """``module`` as one DDP replica (its batch norms made SyncBatchNorm if asked), or itself when alone.

    DDP copies rank 0's weights and buffers to every rank here, and from then on averages the gradients of
    each backward pass over the ranks. The module's own parameters are the replica's, so optimisers and
    checkpoints keep using ``module``.
    """
    if not world.distributed:
        return module
    if sync_batchnorm:
        # Replaces each batch norm inside the Sequential in place, keeping the same Parameter objects.
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)  # type: ignore[no-untyped-call]  # torch leaves it untyped
    device_ids = [device] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids, gradient_as_bucket_view=True)


class Frozen:
    """A reusable context in which ``module``'s weights want no gradients (the generator's update through D).

    Inside DDP it also skips the gradient reduction (``no_sync``): the reducer would otherwise wait for gradients
    of weights that get none, and fail at the next forward pass. The weights want gradients again on leaving,
    whatever happened inside.
    """

    def __init__(self, module: nn.Module) -> None:
        self._ddp = module if isinstance(module, DistributedDataParallel) else None
        inner = self._ddp.module if self._ddp is not None else module
        self._params = list(inner.parameters())  # listed once: the step enters this every time
        self._no_sync: contextlib.AbstractContextManager[None] | None = None

    def __enter__(self) -> None:
        for param in self._params:
            param.requires_grad_(False)
        if self._ddp is not None:
            self._no_sync = self._ddp.no_sync()
            self._no_sync.__enter__()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._no_sync is not None:
                self._no_sync.__exit__(kind, value, tb)
        finally:
            self._no_sync = None
            for param in self._params:
                param.requires_grad_(True)


def from_main(world: World, compute: Callable[[], T]) -> T:
    """``compute()`` run on rank 0 only, its result (or the RunError it raised) shared with every rank."""
    if not world.distributed:
        return compute()
    box: list[Any] = [None]
    if world.is_main:
        try:
            box[0] = ("ok", compute())
        except RunError as err:
            box[0] = ("error", str(err))
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        raise RunError(value)
    result: T = value
    return result


def gather(value: T, world: World) -> list[T]:
    """Every rank's ``value`` (picklable), in rank order; ``[value]`` alone."""
    if not world.distributed:
        return [value]
    out: list[Any] = [None] * world.world_size
    dist.all_gather_object(out, value)
    return out


def mean_over_ranks(values: torch.Tensor, world: World) -> torch.Tensor:
    """The element-wise mean of ``values`` over the ranks (a new tensor; ``values`` itself alone)."""
    if not world.distributed:
        return values
    total = values.clone()
    dist.all_reduce(total)
    return total / world.world_size


def shard(order: torch.Tensor, world: World) -> torch.Tensor:
    """This rank's share of an epoch's order: every WORLD_SIZE-th index from RANK on, as DistributedSampler
    does, after dropping the tail that would give some ranks one image more."""
    if not world.distributed:
        return order
    usable = order.numel() - order.numel() % world.world_size
    return order[:usable][world.rank :: world.world_size]


def weights_digest(modules: Iterable[nn.Module]) -> str:
    """sha256 of every parameter's bytes, in order: equal digests mean bit-identical weights."""
    digest = hashlib.sha256()
    for module in modules:
        for param in module.parameters():
            digest.update(param.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def ranks_identical(modules: Iterable[nn.Module], world: World) -> bool:
    """Whether every rank holds bit-identical weights (always true alone)."""
    return len(set(gather(weights_digest(modules), world))) == 1


def _join(world: World) -> None:
    if not dist.is_available():
        raise RunError(
            f"torch {torch.__version__} was built without torch.distributed; torchrun cannot train"
        )
    if torch.cuda.is_available() and world.local_rank < torch.cuda.device_count():
        torch.cuda.set_device(world.local_rank)
        # One group, two backends: NCCL for the CUDA tensors DDP reduces, gloo for CPU objects and CPU runs.
        dist.init_process_group("cpu:gloo,cuda:nccl")
    else:
        dist.init_process_group("gloo")
