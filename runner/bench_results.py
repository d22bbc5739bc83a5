"""What ``archspec bench`` is asked for and what it finds: the options, one measurement per loop, the whole
result, and the result as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import RunError
from runner.outputs import check_output

VARIANTS = ("seed", "fp32", "fast", "hand")


LETTERS = {"seed": "a", "fp32": "b", "fast": "c", "hand": "d"}


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


def check_json_path(path: Path, force: bool) -> None:
    """RunError if ``write_json`` could not write ``path``: checked before the benchmark, not after it."""
    check_output(path, force, "--json")


def write_json(result: BenchResult, path: Path) -> None:
    """``result`` as JSON at ``path``."""
    try:
        path.write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
    except OSError as err:
        raise RunError(f"{path}: cannot write the results: {err.strerror or err}") from None
