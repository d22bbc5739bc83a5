"""Where training runs: the device a ``--device`` string names, what to call it, and how much memory it used.

Also the seam for distributed training: ``World`` says which process this is (``runner.distributed`` fills it
from torchrun's environment); without torchrun every run is the single rank 0, which alone writes outputs.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

import torch

from archspec.words import plural
from runner.errors import RunError

_CUDA = re.compile(r"^cuda(?::(\d+))?$")


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # the process's index on its own machine: which GPU it drives

    @property
    def is_main(self) -> bool:
        """Only the main rank writes the run directory, checkpoints and the console output."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether there are other processes to keep in step with (DistributedDataParallel)."""
        return self.world_size > 1


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``; RunError for anything else.

    Called before any data is read, so a wrong device costs nothing.
    """
    text = name.strip().lower()
    if text == "auto":
        # Always with an index: torch.cuda.set_device and device comparisons need one.
        return (
            torch.device("cuda", torch.cuda.current_device())
            if torch.cuda.is_available()
            else torch.device("cpu")
        )
    if text == "cpu":
        return torch.device("cpu")
    match = _CUDA.match(text)
    if match is None:
        raise RunError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        build = (
            "built without CUDA"
            if torch.version.cuda is None
            else f"CUDA {torch.version.cuda}, no GPU visible"
        )
        raise RunError(
            f"device {name!r} asked for, but CUDA is not available (torch {torch.__version__}, {build}); "
            "use --device cpu or auto"
        )
    index = int(match.group(1)) if match.group(1) is not None else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise RunError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s), numbered from 0")
    return torch.device("cuda", index)


def prepare_device(device: torch.device) -> None:
    """Per-process device settings: the current CUDA device, cuDNN autotuning, and a clean peak-memory count."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
        # The networks' shapes never change during a run, so autotuning each convolution once pays off.
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats(device)


def describe_device(device: torch.device) -> str:
    """``cuda:0 (NVIDIA H100 80GB HBM3)`` or ``cpu (2 threads)``, for the run header and run.json."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return f"{device.type} ({plural(torch.get_num_threads(), 'thread')})"


def peak_memory(device: torch.device) -> tuple[int, str]:
    """Peak bytes and what they measure: allocated CUDA memory (as the seed prints it), or the process's RSS."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "torch.cuda.max_memory_allocated"
    import resource  # Unix only; imported here so the module still imports elsewhere

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return (rss if sys.platform == "darwin" else rss * 1024), "peak RSS (resource.getrusage)"


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so wall times measure work done rather than work queued."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fits_on_device(nbytes: int, device: torch.device, share: float = 0.25) -> bool:
    """Whether ``nbytes`` of data take at most ``share`` of the device's free memory (always true on CPU)."""
    if device.type != "cuda":
        return True
    free, _total = torch.cuda.mem_get_info(device)
    return nbytes <= share * free
