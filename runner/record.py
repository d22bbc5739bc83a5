"""What a run shows and keeps about itself: the header it prints first, the report it prints last, and run.json.

Under torchrun rank 0 speaks for the run: the other ranks' console drops what is printed, and they write no
run.json.
"""

from __future__ import annotations

import errno
import io
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import torch

from archspec.modules import GAN
from archspec.words import plural
from runner import distributed, outputs
from runner.config import Resolved, train_dict
from runner.data import ImageSet
from runner.device import World, describe_device
from runner.run_state import Position
from runner.schedule import Plan, images_per_step


@dataclass(frozen=True)
class TrainReport:
    """How a run ended and what it cost."""

    run_dir: Path
    status: str  # "finished", "interrupted" or "complete" (a resumed run that had nothing left to do)
    step: int
    steps_run: int
    wall_s: float
    images_per_s: float
    peak_memory_bytes: int
    peak_memory_kind: str
    checkpoint: Path | None
    resume_hint: str
    world_size: int = 1  # processes that trained; images_per_s counts all of them
    ranks_identical: bool | None = None  # under torchrun: whether every rank ended with the same weights
    stopped_by: str | None = None  # a finished run: "max_steps 500 reached" or "2 epochs done"
    signal: str | None = None  # the stop signal that ended the run early ("SIGTERM"), if one did


def console(stdout: TextIO | None, world: World) -> TextIO:
    """Where this process prints: ``stdout`` (sys.stdout if None) on rank 0, nowhere on the others.

    On rank 0 the console goes quiet if its reader goes away (``archspec train ... | head``): the run is worth
    more than its log lines, so it trains on and writes its checkpoints.
    """
    return _Quiet(stdout or sys.stdout) if world.is_main else _Silent()


class RunRecord:
    """The header, the final report and run.json of one run (run.json keeps every session of a resumed run).

    ``written`` lists the files the run wrote, ``resumed_from`` and ``changes`` how it resumed, ``notes`` how it
    differs from what was asked; the header and run.json show them.
    """

    def __init__(
        self,
        run_dir: Path,
        resolved: Resolved,
        overrides: Mapping[str, Any],
        dry_run: bool,
        device: torch.device,
        data: ImageSet,
        world: World,
        out: TextIO,
    ) -> None:
        self.run_dir = run_dir
        self.resolved = resolved
        self.overrides = overrides
        self.dry_run = dry_run
        self.device = device
        self.data = data
        self.world = world
        self.out = out
        self.written: list[Path] = []
        self.resumed_from: Path | None = None
        self.changes: list[str] = []
        self.notes: list[str] = []
        self.temporary = False  # a dry run in a temporary folder, removed at the end
        previous = _read_json(run_dir / "run.json") or {}
        # The evaluations (runner.monitor): the latest and the best score, and the collapse alarm, once per run.
        self.quality: dict[str, Any] | None = None
        self.inception: Path | None = None  # the Inception weights the evaluations use for FID, if any
        collapse = previous.get("collapse")
        self.collapse: dict[str, Any] | None = collapse if isinstance(collapse, dict) else None
        sessions = previous.get("sessions")
        self._previous_sessions: list[Any] = sessions if isinstance(sessions, list) else []
        self._session: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "command": sys.argv}

    def print_header(self, gan: GAN, pos: Position, plan: Plan) -> None:
        """What is trained on what: the spec, data, device, model sizes, train settings, world and resume."""
        spec, cfg, info = self.resolved.spec, self.resolved.train, self.data.info
        low, high = info.value_range
        g_params = sum(p.numel() for p in gan.generator.parameters())
        d_params = sum(p.numel() for p in gan.discriminator.parameters())
        where = (
            "on the device"
            if self.data.images.device == self.device
            else "in pinned host memory, prefetched to the GPU"
        )
        lines = [
            f"archspec train {spec.name} ({self.resolved.path}) → {self.run_dir}",
            f"  data     {info.source} ({info.layout}): {plural(info.count, 'image')}, stored "
            f"{_hwc(info.stored_shape)}{_fitted(info.stored_shape, spec.image)}, trained as {_chw(spec.image)} in "
            f"[{low:g}, {high:g}], {where}{_conditions(self.data)}",
            f"  device   {describe_device(self.device)}"
            + (", cudnn.benchmark on" if self.device.type == "cuda" else ""),
            f"  model    generator {g_params:,} parameters, discriminator {d_params:,}"
            + ("" if self.resolved.feeds.kind == "unconditional" else f"; {self.resolved.feeds.describe()}"),
            f"  train    {cfg.loss}, Adam lr {cfg.lr_g or cfg.lr:g}/{cfg.lr_d or cfg.lr:g} (G/D) betas "
            f"{tuple(cfg.betas)}, batch {cfg.batch_size}, {plural(plan.total, 'step')} "
            f"({plan.per_epoch} per epoch{_stop_note(plan)})"
            + (f", {cfg.d_steps} critic updates per step, each on its own batch" if cfg.d_steps > 1 else "")
            + (f", EMA {cfg.ema:g}" if cfg.ema else "")
            + (f", aux_weight {cfg.aux_weight:g}" if self.resolved.feeds.class_head else "")
            + (f", l1_weight {cfg.l1_weight:g}" if self.resolved.feeds.condition is not None else "")
            + (f", {cfg.precision}" if cfg.precision != "fp32" else ""),
        ]
        if cfg.eval_every is not None:
            lines.append(
                f"  eval     every {plural(cfg.eval_every, 'step')} and at the end: {_eval_metrics(self.inception)} of "
                f"{min(cfg.eval_samples, info.count):,} samples; checkpoints/best.pt keeps the lowest "
                + ("FID" if self.inception else "SWD")
            )
        if self.world.distributed:
            lines.append(
                f"  world    {distributed.describe_world(self.world, self.device)}: batch {cfg.batch_size} per "
                "process, "
                f"{cfg.batch_size * self.world.world_size} per step; each process trains its share of each epoch"
            )
        if self.resumed_from is not None:
            lines.append(
                f"  resumed  from {self.resumed_from} at step {pos.step} (epoch {pos.epoch + 1}, "
                f"batch {pos.batch})"
            )
            if self.changes:
                lines.append(
                    f"  changed  train section differs from the checkpoint's: {'; '.join(self.changes)}"
                )
        if plan.left_over:
            lines.append(
                f"  note     {plural(plan.left_over, 'image')} of each epoch do not fill a step of "
                f"{images_per_step(cfg)} and are skipped"
                + (" (different ones each epoch)" if cfg.shuffle else "")
            )
        if cfg.sync_batchnorm and not self.world.distributed:
            lines.append("  note     sync_batchnorm has no effect in a single process")
        lines += [f"  note     {note}" for note in self.notes]
        print("\n".join(lines), file=self.out, flush=True)

    def print_report(self, report: TrainReport) -> None:
        """How the run ended, its speed and memory, its checkpoint, and (dry run) the files it wrote."""
        stopped = f", {report.stopped_by}" if report.stopped_by else ""
        print(
            f"{report.status}: step {report.step}{stopped} ({plural(report.steps_run, 'step')} in "
            f"{report.wall_s:.1f} s, "
            f"{report.images_per_s:.1f} images/s), peak memory {outputs.human_bytes(report.peak_memory_bytes)} "
            f"({report.peak_memory_kind})",
            file=self.out,
        )
        if report.checkpoint is not None:
            print(f"  checkpoint {report.checkpoint}", file=self.out)
        if self.quality is not None:
            print(f"  {_quality_line(self.quality)}", file=self.out)
        if self.collapse is not None:
            print(
                f"  collapse alarm at step {self.collapse['step']}: coverage {self.collapse['value']:.2f} "
                f"< {self.collapse['threshold']:g}",
                file=self.out,
            )
        if report.ranks_identical is not None:
            same = "identical" if report.ranks_identical else "DIFFERENT (a bug: please report it)"
            print(f"  weights of the {report.world_size} ranks: {same}", file=self.out)
        if self.dry_run:
            files = sorted({str(p) for p in outputs.relative_files(self.run_dir, self.written)})
            where = f"into {self.run_dir}: {', '.join(files)}"
            if self.temporary:
                where += "; the temporary folder is removed now (--out DIR keeps a dry run's files)"
            print(f"dry run: one step of everything {where}", file=self.out)
        self.out.flush()

    def write_run_json(
        self, status: str, step: int, ranks_identical: bool | None, report: TrainReport | None = None
    ) -> None:
        """run.json (rank 0): the spec, settings, device, data and versions, and this session after the earlier
        ones; ``step`` is where this session started the first time it is written."""
        if not self.world.is_main:
            return
        session = self._session
        session.setdefault("from_step", step)
        session.update(
            status=status,
            train_changes=self.changes,
            resumed_from=str(self.resumed_from) if self.resumed_from else None,
        )
        if report is not None:
            session["report"] = _report_json(report)
        doc = {
            "spec": {
                "name": self.resolved.spec.name,
                "path": self.resolved.path,
                "sha256": self.resolved.sha256,
            },
            "config": train_dict(self.resolved.train),
            "overrides": dict(self.overrides),
            "dry_run": self.dry_run,
            "device": describe_device(self.device),
            "world_size": self.world.world_size,
            "ranks_identical": ranks_identical,
            "data": asdict(self.data.info),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "status": status,
            "report": session.get("report"),
            "quality": self.quality,
            "collapse": self.collapse,
            "sessions": [*self._previous_sessions, session],
        }
        outputs.write_json(self.run_dir / "run.json", doc)


class _Silent(io.StringIO):
    """The console of ranks other than 0: everything written is dropped."""

    def write(self, text: str) -> int:
        return len(text)


class _Quiet(io.StringIO):
    """``stream``, until writing to it fails with a broken pipe; from then on everything written is dropped."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream
        self.gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            self._guard(lambda: self.stream.write(text))
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            self._guard(self.stream.flush)

    def isatty(self) -> bool:
        return not self.gone and self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    def _guard(self, action: Callable[[], object]) -> None:
        try:
            action()
        except OSError as err:
            if not (isinstance(err, BrokenPipeError) or err.errno == errno.EPIPE):
                raise
            self.gone = True
            _send_to_devnull(self.stream)


def _send_to_devnull(stream: TextIO) -> None:
    """Point the file descriptor of a stream whose reader left at /dev/null, as the Python docs advise for
    SIGPIPE: what is still buffered, flushed at exit, would otherwise fail again (and exit with code 120)."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError):  # a stream without a descriptor (io.StringIO) holds nothing to flush later
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _report_json(report: TrainReport) -> dict[str, Any]:
    doc = asdict(report)
    doc["run_dir"], doc["checkpoint"] = (
        str(report.run_dir),
        str(report.checkpoint) if report.checkpoint else None,
    )
    return doc


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _conditions(data: ImageSet) -> str:
    """What the data brings besides images: ``, 10 classes, paired inputs 1x32x32``."""
    parts = []
    if data.labels is not None:
        names = data.info.class_names
        parts.append(plural(len(names), "class", "classes") if names is not None else "labelled")
    if data.inputs is not None:
        parts.append(f"paired inputs {_chw(tuple(data.inputs.shape[1:]))}")
    return "".join(f", {p}" for p in parts)


def _eval_metrics(inception: Path | None) -> str:
    plain = "SWD, NDB/K and coverage"
    return plain if inception is None else f"FID (Inception weights {inception}), {plain}"


def _quality_line(quality: Mapping[str, Any]) -> str:
    last = quality["last"]
    fid = f"FID {last['fid']:.2f}, " if "fid" in last else ""
    return (
        f"quality at step {last['step']}: {fid}SWD {last['swd']:.1f} (x1e3), NDB/K {last['ndb']:.2f}, coverage "
        f"{last['coverage']:.2f}; best {quality['best_metric'].upper()} {quality['best_value']:.2f} in "
        f"{quality['best']}"
    )


def _hwc(shape: tuple[int, int, int]) -> str:
    return f"{shape[0]}x{shape[1]}x{shape[2]}"


def _chw(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def _stop_note(plan: Plan) -> str:
    if plan.stop == "max_steps":
        return f", stops at max_steps {plan.total:,}"
    return f", {plural(plan.epochs, 'epoch')}"


def _fitted(stored: tuple[int, int, int], image: tuple[int, ...]) -> str:
    """How stored images larger than the spec's are fitted to it (the seed's centre crop), if they are."""
    if stored[:2] == tuple(image[1:]):
        return ""
    return f", centre-cropped to {image[1]}x{image[2]}"
