"""``archspec eval``: how good a checkpoint's images are, measured against a data set.

The generator (its EMA copy when the checkpoint has one) draws ``n`` images from latents seeded by ``seed``; the
first ``n`` images of the data (all of them when it has fewer) are the real set. Metrics:

* ``fid``, ``kid``, ``pr`` (precision and recall), ``is``: on the FID Inception-v3 features
  (``runner.metrics.fid``), which need its weights (``runner.metrics.weights``); the real features are cached
  beside the data file (``runner.metrics.reference``);
* ``swd`` (sliced Wasserstein distance on Laplacian-pyramid patches) and ``ndb`` (NDB/K, mode collapse), on the
  pixels, with nothing to download.

Without ``metrics`` it measures all six when Inception weights are found (``--inception`` or the torch hub cache),
else swd and ndb. Every fault is a RunError before the first image is generated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from archspec.conditioning import Conditioning, conditioning
from archspec.contract import data_range
from archspec.modules import build
from archspec.spec import Spec
from archspec.trace import trace_spec
from runner import checkpoint as ckpt
from runner import conditions
from runner.data import ImageSet, open_images
from runner.device import describe_device, resolve_device
from runner.errors import RunError, error_summary
from runner.grids import generator_args
from runner.metrics import fid as inception_metrics
from runner.metrics.fid import InceptionFeatures
from runner.metrics.reference import Cache, Key
from runner.metrics.weights import find_inception, inception_weights, load_inception, weights_id
from runner.outputs import to_uint8

METRICS = ("fid", "kid", "pr", "is", "swd", "ndb")
INCEPTION_METRICS = frozenset({"fid", "kid", "pr", "is"})
WEIGHT_FREE = ("swd", "ndb")
DEFAULT_N = 10_000
_GENERATE_BATCH = 256
MAX_SEED = 2**63 - 1

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class EvalOptions:
    """What ``archspec eval`` was asked: the checkpoint or run folder, the data, and how to measure."""

    target: Path
    data: str
    n: int = DEFAULT_N
    metrics: tuple[str, ...] | None = None  # None: every metric the machine can compute
    inception: Path | None = None
    batch_size: int = 64
    device: str | None = None  # None: the run's own train.device
    seed: int = 0


@dataclass(frozen=True)
class EvalReport:
    """The numbers, and what they were measured on."""

    checkpoint: Path
    step: int
    weights: str  # "ema" or "generator"
    data: str
    real: int
    fake: int
    device: str
    inception: Path | None
    metrics: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data (``archspec eval --json``)."""
        return {
            "checkpoint": str(self.checkpoint),
            "step": self.step,
            "weights": self.weights,
            "data": self.data,
            "real_images": self.real,
            "generated_images": self.fake,
            "device": self.device,
            "inception": None if self.inception is None else str(self.inception),
            "metrics": self.metrics,
            "notes": self.notes,
        }


def parse_metrics(text: str) -> tuple[str, ...]:
    """``fid,kid`` → ("fid", "kid"); RunError naming an unknown metric."""
    names = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [name for name in names if name not in METRICS]
    if unknown or not names:
        raise RunError(
            f"--metrics {text}: unknown metric {unknown[0] if unknown else '(none)'}; choose from "
            f"{','.join(METRICS)}"
        )
    return names


def evaluate(options: EvalOptions, progress: Progress | None = None) -> EvalReport:
    """Generate ``options.n`` images from the checkpoint and measure them against the data's images."""
    report = progress or (lambda stage, done, total: None)
    _check_options(options)
    metrics, weights_file = _choose_metrics(options)
    checkpoint = _checkpoint_in(options.target)
    state = ckpt.load_checkpoint(checkpoint)
    spec = ckpt.checkpoint_spec(state, checkpoint)
    feeds = _feeds(spec, checkpoint)
    device = resolve_device(options.device or spec.train.device)
    inception = None
    if weights_file is not None:
        inception = InceptionFeatures(load_inception(weights_file, device), device, options.batch_size)
    stored_range = state.get("value_range")
    value_range = (float(stored_range[0]), float(stored_range[1])) if stored_range else data_range(spec)
    downscaled = conditions.super_resolution(feeds, spec.image)
    real = open_images(
        options.data,
        spec.image,
        value_range,
        seed=options.seed,
        synthetic_count=options.n,
        limit=options.n,
        progress=lambda done, total: report("reading data", done, total),
        labels=feeds.classes,
        input_shape=None if feeds.condition is None or downscaled else _chw(feeds.condition),
    )
    if downscaled and feeds.condition is not None:
        real = conditions.with_downscaled_inputs(real, feeds.condition)
    conditions.check_data(feeds, real)
    notes = _data_notes(real, spec)
    if "pr" in metrics and min(len(real), options.n) <= inception_metrics.PR_NEIGHBOURS:
        raise RunError(
            f"precision/recall needs more than {inception_metrics.PR_NEIGHBOURS} images in each set "
            f"(k = {inception_metrics.PR_NEIGHBOURS}); the data gives {len(real)}, --n {options.n}"
        )
    weights = "ema" if state.get("ema") is not None else "generator"
    fake = _generate(spec, state[weights], checkpoint, device, options, value_range, report, feeds, real)
    results: dict[str, Any] = {}
    if inception is not None and weights_file is not None:
        real_features = _real_features(inception, real, options, weights_file, spec, notes, report)
        fake_features = inception(fake, lambda done, total: report("inception: generated", done, total))
        results.update(_inception_results(metrics, real_features, fake_features, options.seed, device))
    results.update(_pixel_results(metrics, real.images.to(device), fake.to(device), options.seed, report))
    return EvalReport(
        checkpoint,
        int(state["step"]),
        weights,
        real.info.source,
        len(real),
        len(fake),
        describe_device(device),
        weights_file,
        results,
        notes,
    )


def format_report(report: EvalReport) -> str:
    """The report as a few lines of text: what was measured, then one line per metric."""
    m = report.metrics
    lines = [
        f"{report.checkpoint} (step {report.step}, {report.weights} weights) against {report.data}: "
        f"{report.fake:,} generated, {report.real:,} real images, {report.device}"
    ]
    rows: list[tuple[str, Callable[[], str]]] = [
        ("fid", lambda: f"{m['fid']:.3f}"),
        ("kid", lambda: f"{m['kid']:.5f} ± {m['kid_std']:.5f}"),
        ("precision", lambda: f"{m['precision']:.4f}"),
        ("recall", lambda: f"{m['recall']:.4f}"),
        ("is", lambda: f"{m['is']:.3f} ± {m['is_std']:.3f}"),
        ("swd", lambda: f"{m['swd']:.2f} (×1e3; per level, finest first: {_numbers(m['swd_levels'])})"),
        ("ndb", lambda: f"{m['ndb']:.3f} ({m['ndb_different']} of {m['ndb_bins']} bins differ: NDB/K)"),
    ]
    lines += [f"  {name:<10} {value()}" for name, value in rows if name in m]
    return "\n".join(lines)


def _numbers(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


# --- steps ---------------------------------------------------------------------------------------------------------


def _check_options(options: EvalOptions) -> None:
    if options.n < 2:
        raise RunError(
            f"--n {options.n}: the metrics compare sets; use at least 2 images (default {DEFAULT_N:,})"
        )
    if options.batch_size < 1:
        raise RunError(f"--batch-size {options.batch_size}: must be at least 1")
    if not 0 <= options.seed <= MAX_SEED:
        raise RunError(f"--seed {options.seed}: must be between 0 and {MAX_SEED:,} (2^63 − 1)")


def _choose_metrics(options: EvalOptions) -> tuple[tuple[str, ...], Path | None]:
    """The metrics to compute and the Inception weights file they need (None when none of them does)."""
    if options.metrics is None:
        found = find_inception(options.inception)
        return (METRICS, found) if found is not None else (WEIGHT_FREE, None)
    if INCEPTION_METRICS.isdisjoint(options.metrics):
        return options.metrics, None
    return options.metrics, inception_weights(options.inception)


def _checkpoint_in(path: Path) -> Path:
    """A checkpoint file as given, or the newest intact checkpoint of a run folder (or its checkpoints folder)."""
    if not path.exists():
        raise RunError(f"{path}: no such checkpoint file or run folder")
    if not path.is_dir():
        return path
    run = path.parent if path.name == "checkpoints" else path
    found = ckpt.best_checkpoint(run)
    if found is None:
        raise RunError(
            f"{path}: no intact checkpoint in {run / 'checkpoints'}; give a checkpoint file or a run folder"
        )
    return found


def _feeds(spec: Spec, checkpoint: Path) -> Conditioning:
    """What the checkpoint's generator takes; a conditional one is fed the real images' labels and inputs."""
    found = conditioning(*trace_spec(spec))
    if isinstance(found, str):
        raise RunError(f"{checkpoint}: the stored spec cannot be fed: {found}")
    return found


def _chw(shape: tuple[int, ...]) -> tuple[int, int, int]:
    channels, height, width = shape  # a conditioning image is (C, H, W): the spec's validation says so
    return channels, height, width


def _data_notes(real: ImageSet, spec: Spec) -> list[str]:
    _channels, height, width = spec.image
    stored_h, stored_w, stored_c = real.info.stored_shape
    if (stored_h, stored_w) == (height, width):
        return []
    return [
        f"real images stored {stored_h}x{stored_w}x{stored_c}, centre-cropped to {height}x{width} as training does"
    ]


def _generate(
    spec: Spec,
    weights: dict[str, Any],
    checkpoint: Path,
    device: torch.device,
    options: EvalOptions,
    value_range: tuple[float, float],
    report: Progress,
    feeds: Conditioning,
    real: ImageSet,
) -> torch.Tensor:
    """``options.n`` generated images as uint8 (N, C, H, W) on the CPU, from latents seeded by ``options.seed``;
    a conditional generator's k-th image is drawn for the label, and from the input, of real image k (cycling
    through the real images when ``n`` is larger): generated and real images then have the same classes."""
    gan = build(spec, device)
    try:
        gan.generator.load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError, KeyError, ValueError) as err:
        raise RunError(
            f"{checkpoint}: the stored weights do not fit the stored spec (corrupt?): {error_summary(err)}"
        ) from None
    gan.generator.eval()
    latents = torch.Generator().manual_seed(options.seed)
    batch = max(options.batch_size, _GENERATE_BATCH)
    parts = []
    with torch.no_grad():
        for start in range(0, options.n, batch):
            count = min(batch, options.n - start)
            rows = torch.arange(start, start + count) % len(real)
            z = gan.latent(count, generator=latents).to(device) if "latent" in feeds.generator else None
            labels = None if real.labels is None else real.labels.cpu()[rows].to(device)
            inputs = None if real.inputs is None else real.to_float(real.inputs.cpu()[rows]).to(device)
            images = gan.generator(*generator_args(feeds, z, labels, inputs))
            # As the sample grids quantise: what a user sees is what is measured, real images being uint8 too.
            parts.append(to_uint8(images.float().cpu(), value_range))
            report("generating", start + count, options.n)
    return torch.cat(parts)


def _real_features(
    inception: InceptionFeatures,
    real: ImageSet,
    options: EvalOptions,
    weights_file: Path,
    spec: Spec,
    notes: list[str],
    report: Progress,
) -> inception_metrics.Features:
    """The real images' Inception features, from the cache beside the data file when it has them."""

    def compute() -> inception_metrics.Features:
        return inception(real.images, lambda done, total: report("inception: real", done, total))

    if options.data in ("synthetic", "random"):
        return compute()
    data_file, dataset = Path(options.data), None
    if not data_file.is_file():  # ``path.h5:name``, which open_images has read
        head, _, dataset = options.data.rpartition(":")
        data_file = Path(head)
    cache = Cache(data_file)
    key = Key(dataset, len(real), spec.image, weights_id(weights_file))
    features = cache.load(key)
    if features is None:
        features = compute()
        cache.save(key, features)
    notes.append(cache.note)
    return features


def _inception_results(
    metrics: tuple[str, ...],
    real: inception_metrics.Features,
    fake: inception_metrics.Features,
    seed: int,
    device: torch.device,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "fid" in metrics:
        out["fid"] = inception_metrics.fid(real.pool, fake.pool)
    if "kid" in metrics:
        out["kid"], out["kid_std"] = inception_metrics.kid(real.pool, fake.pool, seed=seed, device=device)
    if "pr" in metrics:
        out["precision"], out["recall"] = inception_metrics.precision_recall(
            real.pool, fake.pool, device=device
        )
    if "is" in metrics:
        splits = min(inception_metrics.IS_SPLITS, len(fake.logits))
        out["is"], out["is_std"] = inception_metrics.inception_score(fake.logits, splits)
    return out


def _pixel_results(
    metrics: tuple[str, ...], real: torch.Tensor, fake: torch.Tensor, seed: int, report: Progress
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "swd" in metrics:
        from runner.metrics.swd import sliced_wasserstein

        report("swd", 0, 1)
        count = min(len(real), len(fake))  # SWD compares equal-sized sets
        swd = sliced_wasserstein(real[:count], fake[:count], seed=seed)
        out["swd"], out["swd_levels"] = swd.mean, list(swd.per_level)
        report("swd", 1, 1)
    if "ndb" in metrics:
        from runner.metrics.ndb import NdbBins, bins_for

        report("ndb", 0, 1)
        ndb = NdbBins.fit(real, bins_for(len(real)), seed=seed).compare(fake)
        out["ndb"], out["ndb_different"], out["ndb_bins"] = ndb.score, ndb.different, ndb.bins
        report("ndb", 1, 1)
    return out
