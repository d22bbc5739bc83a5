"""Timing the loops of ``archspec bench``: warm-up, the loops taking turns chunk by chunk, and the median chunk's
speed as each loop's measurement."""

from __future__ import annotations

import gc
import itertools
import statistics
import time
from collections.abc import Iterator, Mapping

import torch

from runner.bench_loops import Loop, Prepared, prepare
from runner.bench_results import BenchOptions, BenchResult, Measurement
from runner.data import ImageSet
from runner.device import peak_memory, synchronize

CHUNKS = 5  # each loop's timed steps are split into this many chunks; the median chunk gives its speed


def time_steps(loop: Loop, feed: Iterator[torch.Tensor], steps: int, device: torch.device) -> float:
    """Seconds for ``steps`` steps of ``loop``, from an idle device to all work done and read back."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        loop(next(feed))
    loop.sync()
    synchronize(device)
    return time.perf_counter() - start


def prepare_warm(
    variant: str, options: BenchOptions, pool: ImageSet, device: torch.device, batch: int
) -> tuple[Prepared, int]:
    """A variant built and warmed up, and the memory it took: on a GPU the allocator's peak over building and
    warm-up less what was allocated before (the other loops, idle meanwhile); on the CPU the process's peak RSS."""
    release(device)
    before = 0
    if device.type == "cuda":
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    prepared = prepare(variant, options, pool, device, batch)
    warm = False
    try:
        if options.warmup:
            time_steps(prepared.loop, prepared.feed, options.warmup, device)
        warm = True
    finally:
        if not warm:
            prepared.feed.close()  # the caller never sees this loop: stop its prefetch thread here
    return prepared, peak_memory(device)[0] - before


def interleaved(
    loops: Mapping[str, Prepared], chunks: list[range], device: torch.device
) -> dict[str, list[float]]:
    """Seconds of each chunk of steps of each loop, the loops taking turns chunk by chunk (in a rotating order),
    so that a slow spell of the machine falls on all of them alike."""
    names = list(loops)
    times: dict[str, list[float]] = {name: [] for name in names}
    if not names:
        return times
    for i, chunk in enumerate(chunks):
        turn = i % len(names)
        for name in names[turn:] + names[:turn]:
            times[name].append(time_steps(loops[name].loop, loops[name].feed, len(chunk), device))
    return times


def measurement(
    prepared: Prepared,
    sizes: list[int],
    times: list[float],
    memory: int,
    device: torch.device,
    result: BenchResult,
) -> Measurement:
    per_step = statistics.median(t / n for t, n in zip(times, sizes, strict=True))
    images_per_s = prepared.batch_size / per_step
    peak = result.peaks.get(prepared.precision)
    kind = (
        "torch.cuda.max_memory_allocated" if device.type == "cuda" else "peak RSS of the whole process so far"
    )
    return Measurement(
        variant=prepared.variant,
        label=prepared.label,
        batch_size=prepared.batch_size,
        precision=prepared.precision,
        steps=sum(sizes),
        seconds=sum(times),
        images_per_s=images_per_s,
        ms_per_step=per_step * 1000,
        mfu=images_per_s * result.model_flops / peak if peak else None,
        peak_memory_bytes=memory,
        peak_memory_kind=kind,
        data=prepared.data,
        note=prepared.note,
    )


def split(steps: int, chunks: int) -> list[range]:
    """``range(steps)`` in up to ``chunks`` nearly equal, non-empty parts."""
    parts = min(chunks, steps)
    bounds = [round(i * steps / parts) for i in range(parts + 1)]
    return [range(lo, hi) for lo, hi in itertools.pairwise(bounds)]


def release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
