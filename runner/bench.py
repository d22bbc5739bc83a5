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
"""

from __future__ import annotations

import gc
import itertools
import json
import statistics
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

import torch

from archspec.check import check_file
from archspec.contract import data_range
from archspec.errors import SpecInvalid
from archspec.modules import GAN
from runner.config import Resolved, load_spec, resolve
from runner.data import ImageSet, epoch_generator, open_images
from runner.device import describe_device, peak_memory, prepare_device, resolve_device, synchronize
from runner.errors import RunError
from runner.handwritten import BatchedLoop, SeedLoop
from runner.outputs import check_output, human_bytes
from runner.prefetch import prefetched
from runner.step import GanStep, build_gan

VARIANTS = ("seed", "fp32", "fast", "hand")
_CHUNKS = 5  # each loop's timed steps are split into this many chunks; the median chunk gives its speed
LETTERS = {"seed": "a", "fp32": "b", "fast": "c", "hand": "d"}

# Dense peak FLOP/s from NVIDIA's data sheets, by a part of the device's name (first match wins; SXM parts
# unless named): bf16 tensor cores, TF32 tensor cores, plain float32. The T4 has no bf16 units: its fp16 peak.
PEAKS: tuple[tuple[str, float, float, float], ...] = (
    ("H100 PCIe", 756e12, 378e12, 51e12),
    ("H100", 989e12, 494e12, 67e12),
    ("H200", 989e12, 494e12, 67e12),
    ("A100", 312e12, 156e12, 19.5e12),
    ("L4", 121e12, 60e12, 30.3e12),
    ("T4", 65e12, 8.1e12, 8.1e12),
)


@dataclass(frozen=True)
class BenchOptions:
    """What ``archspec bench`` was asked for."""

    spec: str
    steps: int = 50
    warmup: int = 3
    batch_size: int | None = None  # (b) and (d); default: the spec's batch size, or 64 if it trains one image
    fast_batch_size: int | None = None  # (c); default: batch_size
    device: str = "auto"
    data: str = "synthetic"
    compile: bool = False
    peak_tflops: float | None = None
    variants: tuple[str, ...] = VARIANTS


@dataclass(frozen=True)
class Measurement:
    """One timed loop."""

    variant: str
    label: str
    batch_size: int
    precision: str
    steps: int
    seconds: float
    images_per_s: float
    ms_per_step: float
    mfu: float | None  # model FLOP utilisation, 0..1; None where the peak is unknown
    peak_memory_bytes: int
    peak_memory_kind: str
    data: str  # where the images were: "device", "host (pinned, prefetched)", "host"
    note: str = ""


@dataclass
class BenchResult:
    """Every measurement of one bench run, and what they are measured against."""

    spec: str
    device: str
    torch: str
    model_flops: int  # per image, from the compiler: the step less D's discarded weight gradients
    peaks: dict[str, float | None]  # peak FLOP/s by precision
    peak_source: str
    rows: list[Measurement] = field(default_factory=list)
    memory_estimate_bytes: int = 0  # the compiler's train_memory_bytes at (b)'s batch size
    memory_measured_bytes: int | None = None  # (b)'s CUDA allocator peak; None on the CPU
    skipped: dict[str, str] = field(default_factory=dict)  # variant → why it did not run

    def row(self, variant: str) -> Measurement | None:
        """The measurement of ``variant``, if it ran."""
        return next((r for r in self.rows if r.variant == variant), None)

    def to_json(self) -> dict[str, Any]:
        """Everything, JSON-ready."""
        doc = asdict(self)
        doc["memory_ratio"] = self.memory_ratio
        doc["speedups"] = self.speedups()
        return doc

    @property
    def memory_ratio(self) -> float | None:
        """Measured ÷ estimated training memory of (b) (goal: within 25% of 1)."""
        if self.memory_measured_bytes is None or not self.memory_estimate_bytes:
            return None
        return self.memory_measured_bytes / self.memory_estimate_bytes

    def speedups(self) -> dict[str, float]:
        """The ratios the goals are stated in: fast ÷ seed loop, fp32 ÷ hand-written."""
        out: dict[str, float] = {}
        for name, top, bottom in (("fast_over_seed", "fast", "seed"), ("fp32_over_hand", "fp32", "hand")):
            a, b = self.row(top), self.row(bottom)
            if a is not None and b is not None and b.images_per_s > 0:
                out[name] = a.images_per_s / b.images_per_s
        return out


class Loop(Protocol):
    """A training loop to time: one call trains one batch; ``sync`` reads its results back."""

    def __call__(self, real_uint8: torch.Tensor) -> object: ...

    def sync(self) -> None: ...


@dataclass
class Prepared:
    """A loop ready to time, with its endless feed of uint8 batches."""

    variant: str
    label: str
    loop: Loop
    feed: Generator[torch.Tensor, None, None]
    batch_size: int
    precision: str
    data: str
    note: str = ""


def run_bench(options: BenchOptions, progress: Callable[[str], None] | None = None) -> BenchResult:
    """Build and warm up the variants ``options`` name, time them in turns, and collect their measurements.

    RunError for a bad device, data source or variant; SpecInvalid if the spec does not check.
    """
    unknown = [v for v in options.variants if v not in VARIANTS]
    if unknown:
        raise RunError(f"bench: unknown loop {unknown[0]!r}; choose among {', '.join(VARIANTS)}")
    if options.steps < 1 or options.warmup < 0:
        raise RunError(f"bench: --steps {options.steps} --warmup {options.warmup}: at least 1 and 0")
    spec = load_spec(options.spec)
    device = resolve_device(options.device)
    prepare_device(device)
    batch = options.batch_size or (spec.train.batch_size if spec.train.batch_size > 1 else 64)
    fast_batch = options.fast_batch_size or batch
    checked = check_file(options.spec, batch_size=batch)
    if checked.totals is None:
        raise RunError(f"{options.spec}: does not check; run `archspec check {options.spec}`")
    peaks, source = peak_flops(device, options.peak_tflops)
    result = BenchResult(
        spec=options.spec,
        device=describe_device(device),
        torch=torch.__version__,
        model_flops=checked.totals.model_flops,
        peaks=peaks,
        peak_source=source,
        memory_estimate_bytes=checked.totals.train_memory_bytes,
    )
    pool = _open_pool(options, spec.image, max(batch, fast_batch), data_range(spec))
    loops: dict[str, Prepared] = {}
    memory: dict[str, int] = {}
    try:
        for variant in options.variants:
            if progress is not None:
                progress(f"({LETTERS[variant]}) {variant}: building and warming up")
            size = fast_batch if variant == "fast" else batch
            try:
                loops[variant], memory[variant] = _prepare_warm(variant, options, pool, device, size)
            except SpecInvalid as err:
                # Say, e.g., that batch norm cannot train one image at a time, and bench the other loops.
                result.skipped[variant] = err.errors[0].headline() if err.errors else "does not check"
        if progress is not None:
            progress(f"timing {options.steps} steps of each, interleaved")
        chunks = _split(options.steps, _CHUNKS)
        times = _interleaved(loops, chunks, device)
    finally:
        for prepared in loops.values():
            prepared.feed.close()  # stops a prefetch thread
    sizes = [len(chunk) for chunk in chunks]
    result.rows = [_measurement(loops[v], sizes, times[v], memory[v], device, result) for v in loops]
    fp32 = result.row("fp32")
    if fp32 is not None and device.type == "cuda":
        result.memory_measured_bytes = fp32.peak_memory_bytes
    return result


def prepare(
    variant: str, options: BenchOptions, pool: ImageSet, device: torch.device, batch: int
) -> Prepared:
    """Build one variant's networks and loop, and its feed of batches."""
    if variant in ("fp32", "fast"):
        return _prepare_step(variant, options, pool, device, batch)
    resolved = resolve(options.spec, {"batch_size": batch if variant == "hand" else 1})
    gan = _fresh_gan(resolved, device)
    cfg = resolved.train
    lr, betas = cfg.lr, (cfg.betas[0], cfg.betas[1])
    note = "" if _ends_in_sigmoid(gan) else "BCEWithLogitsLoss (no final sigmoid)"
    if cfg.loss not in ("bce", "bce_logits"):
        note = f"BCE, where the spec trains {cfg.loss}"
    if variant == "seed":
        loop: Loop = SeedLoop(gan, device, resolved.value_range, lr, betas)
        return Prepared(
            variant, "hand-written seed loop", loop, _feed(pool, 1, None), 1, "fp32", "host", note
        )
    loop = BatchedLoop(gan, device, resolved.value_range, lr, betas)
    return Prepared(
        variant,
        "hand-written batched",
        loop,
        _feed(pool, batch, device),
        batch,
        "fp32",
        _where(pool, device),
        note,
    )


def time_steps(loop: Loop, feed: Iterator[torch.Tensor], steps: int, device: torch.device) -> float:
    """Seconds for ``steps`` steps of ``loop``, from an idle device to all work done and read back."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        loop(next(feed))
    loop.sync()
    synchronize(device)
    return time.perf_counter() - start


def peak_flops(device: torch.device, peak_tflops: float | None) -> tuple[dict[str, float | None], str]:
    """Peak FLOP/s by precision ("bf16", "fp32") on ``device``, and where the numbers come from."""
    if peak_tflops is not None:
        value = peak_tflops * 1e12
        return {"bf16": value, "fp32": value}, f"--peak-tflops {peak_tflops:g}"
    if device.type != "cuda":
        return {"bf16": None, "fp32": None}, "unknown for the CPU (give --peak-tflops)"
    name = torch.cuda.get_device_name(device)
    # cuDNN runs float32 convolutions on TF32 tensor cores unless told not to (PyTorch's default).
    tf32 = bool(torch.backends.cudnn.allow_tf32)
    peaks, part = peaks_by_name(name, tf32)
    if part is None:
        return peaks, f"unknown for {name} (give --peak-tflops)"
    return peaks, f"{part} data sheet, dense; fp32 loops at the {'TF32' if tf32 else 'FP32'} peak"


def peaks_by_name(name: str, tf32: bool) -> tuple[dict[str, float | None], str | None]:
    """The PEAKS row whose part is in the GPU's ``name`` (and that part), or unknowns and None."""
    for part, bf16, tf32_peak, fp32 in PEAKS:
        if part in name:
            return {"bf16": bf16, "fp32": tf32_peak if tf32 else fp32}, part
    return {"bf16": None, "fp32": None}, None


def print_result(result: BenchResult, stream: TextIO) -> None:
    """The table, the memory comparison and the goals, with rich."""
    from rich.console import Console, JustifyMethod
    from rich.table import Table

    console = Console(file=stream, width=None if stream.isatty() else 140)
    seed = result.row("seed")
    table = Table(title=f"archspec bench {result.spec} on {result.device}", title_justify="left")
    for column in (
        "",
        "loop",
        "batch",
        "precision",
        "images/s",
        "ms/step",
        "× (a)",
        "MFU",
        "peak memory",
        "data",
    ):
        justify: JustifyMethod = "left" if column in ("", "loop", "precision", "data") else "right"
        table.add_column(column, justify=justify)
    for row in result.rows:
        speedup = f"{row.images_per_s / seed.images_per_s:.1f}" if seed and seed.images_per_s else "n/a"
        table.add_row(
            f"({LETTERS[row.variant]})",
            row.label + (" *" if row.note else ""),
            str(row.batch_size),
            row.precision,
            f"{row.images_per_s:,.1f}",
            f"{row.ms_per_step:.2f}",
            speedup,
            f"{row.mfu:.1%}" if row.mfu is not None else "n/a",
            human_bytes(row.peak_memory_bytes) + ("" if "cuda" in row.peak_memory_kind else " RSS"),
            row.data,
        )
    console.print(table)
    for row in result.rows:
        if row.note:
            console.print(f"* ({LETTERS[row.variant]}) {row.note}")
    for variant, why in result.skipped.items():
        console.print(f"({LETTERS[variant]}) {variant} skipped: {why}")
    gflop = result.model_flops / 1e9
    console.print(
        f"MFU counts {gflop:.4g} GFLOP per image (the compiler's needed FLOPs per step, the same for every loop); "
        f"peak FLOP/s: {result.peak_source}"
    )
    if result.rows and "cuda" not in result.rows[0].peak_memory_kind:
        console.print("peak memory on the CPU is the whole process's peak RSS so far, not one loop's")
    measured = result.memory_measured_bytes
    said = f"{human_bytes(measured)} measured by (b)" if measured is not None else "measured n/a (CPU)"
    ratio = f", ratio {result.memory_ratio:.2f} (goal 0.75..1.25)" if result.memory_ratio is not None else ""
    fp32 = result.row("fp32")
    batch = fp32.batch_size if fp32 is not None else "B"
    console.print(
        f"training memory: compiler estimate {human_bytes(result.memory_estimate_bytes)} at batch {batch}, {said}{ratio}"
    )
    speedups = result.speedups()
    if "fp32_over_hand" in speedups:
        console.print(
            f"(b) ÷ (d) = {speedups['fp32_over_hand']:.3f} (archspec's step ÷ the same step by hand)"
        )
    if "fast_over_seed" in speedups:
        console.print(
            f"(c) ÷ (a) = {speedups['fast_over_seed']:.1f}× the seed's loop (goal on a GPU: ≥ 100×)"
        )


def check_json_path(path: Path, force: bool) -> None:
    """RunError if ``write_json`` could not write ``path``: checked before the benchmark, not after it."""
    check_output(path, force, "--json")


def write_json(result: BenchResult, path: Path) -> None:
    """``result`` as JSON at ``path``."""
    try:
        path.write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
    except OSError as err:
        raise RunError(f"{path}: cannot write the results: {err.strerror or err}") from None


# --- helpers -------------------------------------------------------------------------------------------------------


def _prepare_step(
    variant: str, options: BenchOptions, pool: ImageSet, device: torch.device, batch: int
) -> Prepared:
    overrides: dict[str, Any] = {"batch_size": batch, "ema": None, "d_steps": 1}
    overrides.update(precision="fp32", channels_last=False, fused_adam=False, compile=False)
    edit, note = None, ""
    if variant == "fast":
        overrides.update(precision="bf16", channels_last=True, fused_adam=True, compile=options.compile)
        spec = load_spec(options.spec)
        if spec.train.loss == "bce" and spec.discriminator.layers[-1].type == "sigmoid":
            overrides["loss"] = "bce_logits"
            edit = _drop_final_sigmoid
            note = "loss bce_logits and D's final sigmoid dropped: bf16 autocast refuses BCELoss"
    resolved = resolve(options.spec, overrides, edit=edit)
    gan = _fresh_gan(resolved, device)
    cfg = resolved.train
    rng = torch.Generator(device=device).manual_seed(cfg.seed)
    step = GanStep(gan, cfg, device, resolved.value_range, rng)
    data = pool.to(device) if variant == "fast" and device.type == "cuda" else pool
    parts = ["bf16", "channels_last", "fused Adam"] + (["compile"] if cfg.compile else [])
    label = "archspec " + (", ".join(parts) if variant == "fast" else "fp32")
    loop = _StepLoop(step)
    return Prepared(
        variant, label, loop, _feed(data, batch, device), batch, cfg.precision, _where(data, device), note
    )


class _StepLoop:
    """archspec's step, with its losses kept on the device until ``sync`` (the trainer's log step)."""

    def __init__(self, step: GanStep) -> None:
        self.step = step
        self.pending: list[torch.Tensor] = []

    def __call__(self, real_uint8: torch.Tensor) -> None:
        self.pending.append(self.step(real_uint8))

    def sync(self) -> None:
        if self.pending:
            torch.stack(self.pending).cpu()
            self.pending.clear()


def _prepare_warm(
    variant: str, options: BenchOptions, pool: ImageSet, device: torch.device, batch: int
) -> tuple[Prepared, int]:
    """A variant built and warmed up, and the memory it took: on a GPU the allocator's peak over building and
    warm-up less what was allocated before (the other loops, idle meanwhile); on the CPU the process's peak RSS."""
    _release(device)
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


def _interleaved(
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


def _measurement(
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


def _split(steps: int, chunks: int) -> list[range]:
    """``range(steps)`` in up to ``chunks`` nearly equal, non-empty parts."""
    parts = min(chunks, steps)
    bounds = [round(i * steps / parts) for i in range(parts + 1)]
    return [range(lo, hi) for lo, hi in itertools.pairwise(bounds)]


def _open_pool(
    options: BenchOptions, image: tuple[int, int, int], batch: int, value_range: tuple[float, float]
) -> ImageSet:
    # Two batches' worth, at least 64 images: enough to shuffle, and quick to draw for synthetic faces.
    count = max(2 * batch, 64)
    return open_images(options.data, image, value_range, seed=0, synthetic_count=count, limit=None)


def _feed(data: ImageSet, batch: int, device: torch.device | None) -> Generator[torch.Tensor, None, None]:
    """Endless shuffled batches; on a GPU from host memory through the pinned prefetcher (``device`` None: plain
    host batches, copied by the loop itself, as the seed's loop does)."""
    host = _cycle(data, batch)
    if device is None or data.images.device.type == device.type:
        return host
    return prefetched(host, device)


def _cycle(data: ImageSet, batch: int) -> Generator[torch.Tensor, None, None]:
    if len(data) < batch:
        raise RunError(f"bench: {len(data)} images, fewer than one batch of {batch}")
    epoch = 0
    while True:
        yield from data.batches(batch, shuffle=True, generator=epoch_generator(epoch, 0))
        epoch += 1


def _where(data: ImageSet, device: torch.device) -> str:
    if data.images.device.type == device.type:
        return "device" if device.type == "cuda" else "host"
    return "host, pinned prefetch"


def _fresh_gan(resolved: Resolved, device: torch.device) -> GAN:
    torch.manual_seed(resolved.train.seed)  # every variant starts from the same weights
    return build_gan(resolved.result, resolved.train, device)


def _drop_final_sigmoid(data: dict[str, Any]) -> None:
    data["discriminator"]["layers"] = data["discriminator"]["layers"][:-1]


def _ends_in_sigmoid(gan: GAN) -> bool:
    return len(gan.discriminator) > 0 and isinstance(gan.discriminator[-1], torch.nn.Sigmoid)


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
