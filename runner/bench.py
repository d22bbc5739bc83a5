"""``archspec bench``: how fast the trainer trains a spec, against hand-written PyTorch on the same networks.

Four loops are built and warmed up (``warmup`` steps each), then timed for ``steps`` steps each in five chunks,
the loops taking turns chunk by chunk; a loop's speed is its median chunk's, so a slow spell of the machine
falls on all of them alike and moves none by much:

* (a) ``seed``: the seed's loop written by hand (``runner.handwritten.SeedLoop``): one image per step, float32;
* (b) ``fp32``: archspec's own step (``runner.step.GanStep``, the code ``archspec train`` runs) in float32 at
  batch B, the data in host memory (prefetched through pinned memory on a GPU);
* (c) ``fast``: the same step with bf16 autocast, channels_last, fused Adam and the data held on the device
  (``torch.compile`` too with ``--compile``), at the fast batch size. bf16 autocast refuses BCELoss on sigmoid
  outputs, so a spec trained with ``bce`` is benchmarked with ``bce_logits`` and without the discriminator's
  final sigmoid, and the table says so;
* (d) ``hand``: the same updates as (b) written by hand (``runner.handwritten.BatchedLoop``), at batch B.

Model FLOP utilisation is images/s × the compiler's FLOPs of one training step per image ÷ the GPU's peak.
All four start from the weights the spec's seed gives, and train the seed's step: one discriminator update per
step and no EMA, whatever the spec's train section says (its loss, learning rate and betas are kept).

This module runs the benchmark; each of its jobs has a module of its own: ``bench_results`` (the options and
result types, and the JSON), ``peaks`` (the GPU peak table), ``bench_loops`` (building the four loops and their
feeds), ``bench_timing`` (warm-up and interleaved timing) and ``bench_table`` (the rich table).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from archspec.check import check_file
from archspec.conditioning import Conditioning
from archspec.contract import data_range
from archspec.errors import SpecInvalid
from archspec.words import plural
from runner.bench_loops import Prepared, open_pool, prepare
from runner.bench_results import (
    LETTERS,
    VARIANTS,
    BenchOptions,
    BenchResult,
    Measurement,
    check_json_path,
    write_json,
)
from runner.bench_table import print_result
from runner.bench_timing import CHUNKS, interleaved, measurement, prepare_warm, split, time_steps
from runner.config import load_spec
from runner.device import describe_device, prepare_device, resolve_device
from runner.errors import RunError
from runner.peaks import peak_flops, peaks_by_name

__all__ = [
    "BenchOptions",
    "BenchResult",
    "Measurement",
    "check_json_path",
    "peak_flops",
    "peaks_by_name",
    "prepare",
    "print_result",
    "run_bench",
    "time_steps",
    "write_json",
]


def run_bench(options: BenchOptions, progress: Callable[[str], None] | None = None) -> BenchResult:
    """Build and warm up the variants ``options`` name, time them in turns, and collect their measurements.

    RunError for a bad device, data source or variant; SpecInvalid if the spec does not check.
    """
    say = progress or (lambda what: None)
    _check_options(options)
    spec = load_spec(options.spec)
    device = resolve_device(options.device)
    prepare_device(device)
    batch = options.batch_size or (spec.train.batch_size if spec.train.batch_size > 1 else 64)
    fast_batch = options.fast_batch_size or batch
    result = _empty_result(options, device, batch)
    pool = open_pool(options.data, spec.image, max(batch, fast_batch), data_range(spec))
    loops: dict[str, Prepared] = {}
    memory: dict[str, int] = {}
    try:
        for variant in options.variants:
            say(f"({LETTERS[variant]}) {variant}: building and warming up")
            size = fast_batch if variant == "fast" else batch
            try:
                loops[variant], memory[variant] = prepare_warm(variant, options, pool, device, size)
            except SpecInvalid as err:
                # Say, e.g., that batch norm cannot train one image at a time, and bench the other loops.
                result.skipped[variant] = err.errors[0].headline() if err.errors else "does not check"
        say(f"timing {plural(options.steps, 'step')} of each, interleaved")
        chunks = split(options.steps, CHUNKS)
        times = interleaved(loops, chunks, device)
    finally:
        for prepared in loops.values():
            prepared.feed.close()  # stops a prefetch thread
    sizes = [len(chunk) for chunk in chunks]
    result.rows = [measurement(loops[v], sizes, times[v], memory[v], device, result) for v in loops]
    fp32 = result.row("fp32")
    if fp32 is not None and device.type == "cuda":
        result.memory_measured_bytes = fp32.peak_memory_bytes
    return result


def _check_options(options: BenchOptions) -> None:
    unknown = [v for v in options.variants if v not in VARIANTS]
    if unknown:
        raise RunError(f"bench: unknown loop {unknown[0]!r}; choose among {', '.join(VARIANTS)}")
    if options.steps < 1 or options.warmup < 0:
        raise RunError(f"bench: --steps {options.steps} --warmup {options.warmup}: at least 1 and 0")


def _empty_result(options: BenchOptions, device: torch.device, batch: int) -> BenchResult:
    """The result before any loop ran: the compiler's FLOPs and memory estimate, the device's peaks."""
    checked = check_file(options.spec, batch_size=batch)
    if checked.totals is None:
        raise RunError(f"{options.spec}: does not check; run `archspec check {options.spec}`")
    feeds = checked.conditioning
    if not isinstance(feeds, Conditioning) or feeds.kind != "unconditional":
        # The hand-written loops (a), (d) are the seed's G(z), D(x): a conditional step has nothing to compare.
        kind = feeds if isinstance(feeds, str) else f"this one is {feeds.describe()}" if feeds else "?"
        raise RunError(
            f"{options.spec}: archspec bench times unconditional specs against hand-written loops; {kind}: "
            "time it with `archspec train` (its last line gives images/s)"
        )
    peaks, source = peak_flops(device, options.peak_tflops)
    return BenchResult(
        spec=options.spec,
        device=describe_device(device),
        torch=torch.__version__,
        model_flops=checked.totals.model_flops,
        peaks=peaks,
        peak_source=source,
        memory_estimate_bytes=checked.totals.train_memory_bytes,
    )
