"""Quality measured during training (``eval_every``): SWD and NDB/K of the generator's samples against the data
(and FID where the Inception weights are at hand), which evaluation is the best so far (``checkpoints/best.pt``:
lowest FID, or lowest SWD without Inception weights), and the collapse alarm.

An evaluation draws its real images and latents once, from a generator of its own (the run's EVAL stream), and
runs the generator in eval mode under ``no_grad``: it reads no training random stream and changes nothing a
training step reads, so a run with evaluations resumes bit for bit, and every evaluation of a run sees the same
real images and the same latents (their differences are the generator's, not the draw's).

**The collapse alarm** watches how many of the data's modes the samples fill. The NDB bins are k-means modes of
the real images; ``coverage`` is the effective number of bins the samples fall into (the exponential of the
entropy of their shares, as ecologists count species) divided by the same number for the real images. A
generator that covers the data scores about 1; one that makes a handful of distinct images fills about that
many bins, whatever they look like (six faces among 50 bins: 0.13); a constant generator fills one. NDB/K alone
would not do: it is high for any generator far from the data, a diverse but blurry one included.

A generator at initialisation makes near-identical images too (dcgan32 at step 0: pixel spread across samples
0.7 of 255 against the data's 56, coverage 0.02), so a low coverage early says only that training has not
begun. The alarm therefore fires, once per run, at the first evaluation whose coverage is below
``COLLAPSE_COVERAGE`` and either (a) an earlier evaluation of the run had reached twice that (the samples
spread out, then fell back: collapse) or (b) half the run's steps are done and the coverage has not risen since
the previous evaluation (they never spread out, and are not spreading out now: a slow start is not a collapse). With
fewer than 6 bins (``eval_samples`` under 120) one bin is already a fifth of them, and the alarm cannot fire.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from archspec.conditioning import UNCONDITIONAL, Conditioning
from archspec.modules import GAN
from archspec.words import plural
from runner.data import ImageSet
from runner.grids import generator_args
from runner.metrics.fid import FidStats, InceptionFeatures, fid_stats, frechet_distance
from runner.metrics.ndb import NDB, NdbBins, bins_for
from runner.metrics.swd import SWD, sliced_wasserstein
from runner.outputs import to_uint8
from runner.seeds import EVAL_STREAM, derived_seed

__all__ = ["BEST", "COLLAPSE_COVERAGE", "Alarm", "Evaluation", "Monitor"]

BEST = "best.pt"  # checkpoints/best.pt: the weights of the best evaluation so far
COLLAPSE_COVERAGE = 0.2  # the samples fill fewer than a fifth of the modes the data fill
EVAL_BATCH = 250  # latents per generator call: the device holds one chunk of images at a time


@dataclass(frozen=True)
class Evaluation:
    """The measurements of one evaluation, at ``step``."""

    step: int
    samples: int
    swd: SWD
    ndb: NDB
    coverage: float
    seconds: float
    fid: float | None = None  # with Inception weights only

    @property
    def score(self) -> float:
        """What ``best.pt`` minimises: FID where Inception weights are used, else SWD."""
        return self.fid if self.fid is not None else self.swd.mean

    def row(self, epoch: int) -> dict[str, Any]:
        """The metrics.jsonl row of this evaluation."""
        return {
            "step": self.step,
            "epoch": epoch,
            "swd": self.swd.mean,
            "swd_levels": list(self.swd.per_level),
            "ndb": self.ndb.score,
            "ndb_different": self.ndb.different,
            "ndb_bins": self.ndb.bins,
            "coverage": self.coverage,
            "eval_samples": self.samples,
            "eval_s": round(self.seconds, 3),
        } | ({"fid": self.fid} if self.fid is not None else {})

    def line(self) -> str:
        """One line for the console."""
        levels = ", ".join(f"{v:.1f}" for v in self.swd.per_level)
        fid = f"FID {self.fid:.2f}, " if self.fid is not None else ""
        return (
            f"eval step {self.step}: {fid}SWD {self.swd.mean:.1f} (x1e3, levels {levels}), NDB/K {self.ndb.score:.2f} "
            f"({self.ndb.different}/{self.ndb.bins} bins differ), coverage {self.coverage:.2f}, "
            f"{plural(self.samples, 'sample')} in {self.seconds:.1f} s"
        )


@dataclass(frozen=True)
class Alarm:
    """The collapse alarm as run.json keeps it."""

    step: int
    value: float
    threshold: float
    statistic: str = "coverage"

    def line(self) -> str:
        return (
            f"warning: mode collapse at step {self.step}: the samples fill {self.value:.2f} of the data's NDB bins "
            f"(coverage below {self.threshold:g}); look at the sample grids"
        )

    def json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "statistic": self.statistic,
            "value": self.value,
            "threshold": self.threshold,
        }


class Monitor:
    """The evaluations of one run: fixed real images and latents, the NDB bins of the real images, the best score
    so far and the alarm, if it fired."""

    def __init__(
        self,
        data: ImageSet,
        gan: GAN,
        samples: int,
        seed: int,
        device: torch.device,
        inception: InceptionFeatures | None = None,
        feeds: Conditioning = UNCONDITIONAL,
    ) -> None:
        rng = torch.Generator().manual_seed(derived_seed(seed, EVAL_STREAM))
        n = min(samples, len(data))  # a data set smaller than eval_samples is compared whole
        chosen = torch.randperm(len(data), generator=rng)[:n]
        self.real = data.images.index_select(0, chosen.to(data.images.device)).to(device)
        self.feeds = feeds
        self.z = gan.latent(n, generator=rng) if "latent" in feeds.generator else None
        # A conditional generator draws for the chosen real images' labels and translates their inputs: the
        # samples are compared with real images of the same classes, and of the same inputs.
        self.labels = _chosen(data.labels, chosen) if "label" in feeds.generator else None
        inputs = _chosen(data.inputs, chosen) if "condition" in feeds.generator else None
        self.inputs = None if inputs is None else data.to_float(inputs)
        self.value_range = data.info.value_range
        self.device = device
        self.seed = seed
        self.bins = NdbBins.fit(self.real, min(bins_for(n), n), seed=seed)  # a one-image dry run: one bin
        self.real_effective = _effective(self.bins.real_shares)
        # FID: the real images' Inception statistics once; each evaluation adds only its samples' features.
        self.inception = inception
        self.real_stats: FidStats | None = (
            fid_stats(inception(self.real).pool) if inception is not None else None
        )
        self.best: float | None = None
        self.best_coverage: float | None = None
        self.last_coverage: float | None = None
        self.alarm: Alarm | None = None

    def evaluate(self, generator: nn.Module, step: int) -> Evaluation:
        """Measure ``generator``'s samples against the real images (eval mode; its mode is put back after)."""
        started = time.perf_counter()
        fake = self.generate(generator)
        swd = sliced_wasserstein(self.real, fake, seed=self.seed)
        ndb = self.bins.compare(fake)
        coverage = _effective(self.bins.shares(fake)) / self.real_effective
        fid = None
        if self.inception is not None and self.real_stats is not None:
            fid = frechet_distance(self.real_stats, fid_stats(self.inception(fake).pool))
        return Evaluation(step, len(fake), swd, ndb, coverage, time.perf_counter() - started, fid)

    @property
    def metric(self) -> str:
        """The name of what ``best.pt`` minimises: ``fid`` or ``swd`` (a metrics.jsonl key)."""
        return "fid" if self.inception is not None else "swd"

    def generate(self, generator: nn.Module) -> torch.Tensor:
        """The generator's images of the fixed latents, as uint8 on the device."""
        was_training = generator.training
        generator.eval()  # batch norm uses its running statistics and leaves them unchanged
        try:
            with torch.no_grad():
                parts = [
                    to_uint8(generator(*self._args(i)).float(), self.value_range)
                    for i in range(0, len(self.real), EVAL_BATCH)
                ]
        finally:
            generator.train(was_training)
        return torch.cat(parts)

    def _args(self, lo: int) -> list[torch.Tensor | None]:
        """The generator's arguments for the fixed samples ``lo`` to ``lo + EVAL_BATCH``, on the device."""

        def rows(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[lo : lo + EVAL_BATCH].to(self.device)

        return generator_args(self.feeds, rows(self.z), rows(self.labels), rows(self.inputs))

    def improved(self, evaluation: Evaluation) -> bool:
        """Whether ``evaluation`` beats the best so far (it becomes the best if so)."""
        if self.best is not None and not evaluation.score < self.best:
            return False
        self.best = evaluation.score
        return True

    def check_collapse(self, evaluation: Evaluation, total_steps: int) -> Alarm | None:
        """The alarm, the first time the samples' coverage is below the threshold after they had spread out
        or past half the run without still spreading out (module docstring); None otherwise."""
        spread_before = self.best_coverage is not None and self.best_coverage >= 2 * COLLAPSE_COVERAGE
        spreading = self.last_coverage is not None and evaluation.coverage > self.last_coverage
        self.best_coverage = max(self.best_coverage or 0.0, evaluation.coverage)
        self.last_coverage = evaluation.coverage
        if self.alarm is not None or evaluation.coverage >= COLLAPSE_COVERAGE:
            return None
        if not (spread_before or (2 * evaluation.step >= total_steps and not spreading)):
            return None
        self.alarm = Alarm(evaluation.step, evaluation.coverage, COLLAPSE_COVERAGE)
        return self.alarm

    def resume(self, rows: Iterable[Mapping[str, Any]], alarm: Mapping[str, Any] | None, step: int) -> None:
        """Take up a resumed run's best score (from its metrics rows up to ``step``) and an alarm it raised."""
        evaluations = [row for row in rows if "swd" in row and row["step"] <= step]
        # A session without Inception weights after one with them (or the reverse) starts its best afresh.
        self.best = min((float(row[self.metric]) for row in evaluations if self.metric in row), default=None)
        self.best_coverage = max((float(row["coverage"]) for row in evaluations), default=None)
        self.last_coverage = float(evaluations[-1]["coverage"]) if evaluations else None
        if alarm is not None and isinstance(alarm.get("step"), int) and alarm["step"] <= step:
            self.alarm = Alarm(alarm["step"], float(alarm["value"]), float(alarm["threshold"]))


def _effective(shares: torch.Tensor) -> float:
    """The effective number of bins: exp of the entropy of the shares (k for even shares, 1 for one bin)."""
    filled = shares[shares > 0].to(torch.float64)
    return math.exp(float(-(filled * filled.log()).sum()))


def _chosen(values: torch.Tensor | None, chosen: torch.Tensor) -> torch.Tensor | None:
    return None if values is None else values.index_select(0, chosen.to(values.device)).cpu()
