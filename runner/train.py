"""``archspec train``: setup (everything that can fail, before any step) → the training loop → cleanup.

One step is one real batch, trained by ``runner.step.GanStep``. Losses stay on the device as tensors and are
read back only every ``log_every`` steps, so a step never waits for the device; data that does not fit on the
GPU comes through pinned memory, prefetched by a thread. Everything a step draws at random comes from generators
that checkpoints save, so a run resumed from a checkpoint continues bit for bit as if it had never stopped.

Under torchrun (``runner.distributed``) every process runs this same loop on its own share of each epoch, with
DDP averaging the gradients; rank 0 alone prints and writes files, and the losses it logs are the ranks' mean.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import platform
import random
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Generator, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import numpy as np
import torch

from archspec.layers import MAX_SIZE
from archspec.modules import GAN
from runner import checkpoint as ckpt
from runner import distributed, outputs
from runner.config import Resolved, load_spec, resolve, resume_base, train_changes, train_dict
from runner.data import ImageSet, epoch_generator, epoch_permutation, open_images
from runner.device import (
    World,
    describe_device,
    fits_on_device,
    peak_memory,
    prepare_device,
    resolve_device,
    synchronize,
)
from runner.errors import RunError
from runner.prefetch import prefetched
from runner.step import GanStep, build_gan

# Latent batches and the fixed sample batch come from their own generators, seeded from the run's seed; under
# torchrun ranks other than 0 also reseed torch's global generator (dropout) from the third stream.
_LATENT_STREAM, _SAMPLE_STREAM, _GLOBAL_STREAM = 1, 2, 3
_STATS = ("loss_d", "loss_g", "d_real", "d_fake")


@dataclass(frozen=True)
class TrainOptions:
    """What ``archspec train`` was asked for: the spec, overrides of its train section, and the run mode."""

    spec: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    resume: str | None = None  # "auto", a checkpoint file or a run folder
    dry_run: bool = False
    limit: int | None = None  # use only the first N images
    live: bool | None = None  # progress bar; None: only on a terminal
    stdout: TextIO | None = None


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


class NonFiniteLoss(RunError):
    """A loss or weight became NaN or infinite; the run stopped without writing a checkpoint of it."""


def train(options: TrainOptions) -> TrainReport:
    """Train the spec as ``options`` say; RunError or SpecInvalid for any problem found before the first step.

    Launched by torchrun, this process joins the others for the run and trains its share with DDP.
    """
    with distributed.session() as world:
        trainer = Trainer.setup(options, world)
        return trainer.run()


@dataclass
class _Position:
    """How far a run has got: steps done, the epoch, and batches done within it."""

    step: int = 0
    epoch: int = 0
    batch: int = 0
    elapsed: float = 0.0  # seconds of training before this session


class Trainer:
    """One run: built by ``setup`` (which checks everything), then ``run`` trains and cleans up."""

    def __init__(
        self,
        options: TrainOptions,
        resolved: Resolved,
        device: torch.device,
        data: ImageSet,
        gan: GAN,
        run_dir: Path,
        world: World | None = None,
    ) -> None:
        self.options = options
        self.resolved = resolved
        self.cfg = resolved.train
        self.device = device
        self.data = data
        self.gan = gan
        self.run_dir = run_dir
        self.world = world or World()
        # Other ranks print nothing: rank 0 speaks for the run.
        self.out = (options.stdout or sys.stdout) if self.world.is_main else _Silent()
        self.latent_rng = torch.Generator(device=device).manual_seed(
            _derived_seed(self.cfg.seed, _LATENT_STREAM, self.world.rank)
        )
        self.step = GanStep(gan, self.cfg, device, resolved.value_range, self.latent_rng, self.world)
        sample_rng = torch.Generator().manual_seed(_derived_seed(self.cfg.seed, _SAMPLE_STREAM))
        self.fixed_z = gan.latent(self.cfg.samples, generator=sample_rng).to(device)
        self.pos = _Position()
        # Each rank trains an equal share of every epoch (the tail that does not divide evenly is dropped).
        self.per_epoch = (len(data) // self.world.world_size) // self.cfg.batch_size
        self.total = min(self.cfg.max_steps or MAX_SIZE, self.cfg.epochs * self.per_epoch)
        self.metrics = outputs.MetricsLog(run_dir / "metrics.jsonl")
        self.pending: list[tuple[int, torch.Tensor]] = []
        self.last_checkpoint: Path | None = None
        self.written: list[Path] = []
        self.resumed_from: Path | None = None
        self.changes: list[str] = []
        self.notes: list[str] = []  # header lines about how this run differs from what was asked
        self.ranks_identical: bool | None = None
        self._stop_requested = False
        self._stop_agreed = False  # under torchrun: some rank asked to stop, as of the last log step
        self._session_start = time.perf_counter()
        self._log_start = (self._session_start, 0)
        previous = _read_json(run_dir / "run.json") or {}
        self._previous_sessions: list[Any] = list(previous.get("sessions", []))
        self._session: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "command": sys.argv}

    # --- setup ---------------------------------------------------------------------------------------------------

    @classmethod
    def setup(cls, options: TrainOptions, world: World | None = None) -> Trainer:
        """Check the spec, overrides, checkpoint, device and data, build everything, and make the run folder.

        Every RunError a user can cause is raised here, before the first step and before any file is written.
        Under torchrun (``world``) rank 0 finds the checkpoint to resume and makes the run folder, and tells the
        other ranks.
        """
        world = world or World()
        overrides = dict(options.overrides)
        if options.dry_run:
            if options.resume is not None:
                raise RunError("--dry-run starts a throw-away run; it cannot be combined with --resume")
            overrides = _dry_run_overrides(overrides)
        state, checkpoint_path, changes = None, None, []
        if options.resume is None:
            resolved = resolve(options.spec, overrides)
        else:
            resolved, state, checkpoint_path = _resume(options.spec, options.resume, overrides, world)
            changes = train_changes(state["train"], resolved.train)
            if options.limit is None and isinstance(state.get("limit"), int):
                # --limit is not part of the train section; a resumed run keeps the data it started with.
                options = dataclasses.replace(options, limit=state["limit"])
        train_cfg = resolved.train
        device = resolve_device(distributed.rank_device(train_cfg.device, world))
        distributed.check_sync_batchnorm(train_cfg.sync_batchnorm, device, world)
        data = _open_data(resolved, options, device, world)
        prepare_device(device)
        _seed_everything(train_cfg.seed)  # the same weights on every rank (DDP copies rank 0's anyway)
        gan = build_gan(resolved.result, train_cfg, device)
        if world.rank > 0:
            torch.manual_seed(_derived_seed(train_cfg.seed, _GLOBAL_STREAM, world.rank))  # its own dropout
        run_dir = distributed.from_main(world, lambda: _run_dir(options, resolved, checkpoint_path))
        trainer = cls(options, resolved, device, data, gan, run_dir, world)
        trainer.changes = changes
        if state is not None and checkpoint_path is not None:
            try:
                trainer._restore(state, checkpoint_path)
            except RunError:
                if world.is_main and not any(run_dir.iterdir()):
                    run_dir.rmdir()  # made for this resume (a loose checkpoint file): leave nothing behind
                raise
        elif world.is_main:
            outputs.write_atomic(run_dir / "spec.yaml", resolved.text.encode("utf-8"))
        trainer._write_run_json("running")
        return trainer

    def _restore(self, state: Mapping[str, Any], path: Path) -> None:
        step = self.step
        try:
            self.gan.generator.load_state_dict(state["generator"])
            self.gan.discriminator.load_state_dict(state["discriminator"])
            step.opt_g.load_state_dict(state["opt_g"])
            step.opt_d.load_state_dict(state["opt_d"])
            if step.ema is not None:
                step.ema.module.load_state_dict(state.get("ema") or state["generator"])
            self._restore_rng(state)
        except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as err:
            # The architectures were compared already; this is a damaged or hand-edited file.
            raise RunError(
                f"{path}: the checkpoint's state does not fit this run (damaged?): {_first_line(err)}"
            ) from None
        # A changed train section may change the learning rates and betas; the checkpoint has the old ones.
        for opt, lr in (
            (step.opt_g, self.cfg.lr_g or self.cfg.lr),
            (step.opt_d, self.cfg.lr_d or self.cfg.lr),
        ):
            for group in opt.param_groups:
                group["lr"], group["betas"] = lr, tuple(self.cfg.betas)
        elapsed = state.get("elapsed")
        self.pos = _Position(
            state["step"],
            state["epoch"],
            state["batch"],
            float(elapsed) if isinstance(elapsed, float) else 0.0,
        )
        if self.world.is_main:  # drops rows logged after the checkpoint: a write, so rank 0's alone
            self.metrics = outputs.MetricsLog(self.run_dir / "metrics.jsonl", upto_step=self.pos.step)
        self.resumed_from = path
        self.last_checkpoint = path

    def _restore_rng(self, state: Mapping[str, Any]) -> None:
        """Each rank's generators as the checkpoint saved them; fresh ones for ranks a different world lacked."""
        ranks = state.get("rng_ranks")
        saved_world = state.get("world_size", 1)
        if isinstance(ranks, list) and len(ranks) == self.world.world_size:
            ckpt.restore_rng(ranks[self.world.rank], self.latent_rng)
            return
        if self.world.is_main:
            ckpt.restore_rng(state["rng"], self.latent_rng)
        else:
            # Seeded from the step too, so this rank does not repeat the latents of the run's first steps.
            self.latent_rng.manual_seed(
                _derived_seed(self.cfg.seed, _LATENT_STREAM, self.world.rank, state["step"])
            )
            torch.manual_seed(_derived_seed(self.cfg.seed, _GLOBAL_STREAM, self.world.rank, state["step"]))
        if saved_world != self.world.world_size:
            self.notes.append(
                f"the checkpoint was written by {saved_world} process(es), this run has {self.world.world_size}: "
                "it continues, but not bit for bit as the original world would have"
            )

    # --- the loop ------------------------------------------------------------------------------------------------

    def run(self) -> TrainReport:
        """Train to the end (or Ctrl-C), then write the final samples, last.pt, loss.png and the report."""
        self._print_header()
        if self.pos.step >= self.total:
            print(
                f"already at step {self.pos.step} of {self.total}: nothing to train (raise --max-steps or "
                "--epochs to continue)",
                file=self.out,
            )
            return self._report("complete", 0, 0.0)
        start_step, started = self.pos.step, time.perf_counter()
        live = outputs.use_live_display(self.out) if self.options.live is None else self.options.live
        live = live and self.world.is_main
        try:
            with (
                self._sigint_stops(),
                outputs.ProgressDisplay(self.total, self.pos.step, live, self.out) as display,
            ):
                status = self._run_loop(display)
                self._flush_log(display)
        except NonFiniteLoss:
            self._plot()
            self._write_run_json("failed")
            raise
        except torch.OutOfMemoryError:
            raise RunError(
                f"out of memory on {self.device} at step {self.pos.step + 1}; lower --batch-size "
                "(or --samples)"
            ) from None
        synchronize(self.device)  # wall time of work done, not of work queued
        wall = time.perf_counter() - started
        self._finish()
        if self.world.distributed:
            modules = [self.gan.generator, self.gan.discriminator] + (
                [self.step.ema.module] if self.step.ema else []
            )
            self.ranks_identical = distributed.ranks_identical(modules, self.world)
        return self._report(status, self.pos.step - start_step, wall)

    def _run_loop(self, display: outputs.ProgressDisplay) -> str:
        try:
            return self._loop(display)
        except KeyboardInterrupt:
            if self._stop_requested:
                raise  # a second Ctrl-C: stop at once, without saving
            # Ctrl-C that bypassed our handler (not the main thread): save what there is. The weights may hold
            # part of the step that was running, so resuming from it is close but not bit-exact.
            return "interrupted"

    def _loop(self, display: outputs.ProgressDisplay) -> str:
        self._log_start = (time.perf_counter(), self.pos.step)
        while self.pos.step < self.total:
            if self.pos.batch >= self.per_epoch:
                self.pos.epoch, self.pos.batch = self.pos.epoch + 1, 0
            # closing: leaving the epoch early also stops its prefetch thread at once.
            with contextlib.closing(self._epoch_batches()) as batches:
                for real in batches:
                    try:
                        stats = self._train_step(real)
                    except RuntimeError:
                        # NaN weights make some ops refuse their input (BCE wants [0, 1]); say so, not crash.
                        self._check_finite(self.pos.step + 1, everywhere=False)
                        raise
                    self.pos.step, self.pos.batch = self.pos.step + 1, self.pos.batch + 1
                    self.pending.append((self.pos.step, stats))
                    display.advance(self.pos.step, self._epoch_label())
                    self._after_step(display)
                    if self._should_stop():
                        return "interrupted"
                    if self.pos.step >= self.total:
                        break
        return "finished"

    def _epoch_batches(self) -> Generator[torch.Tensor, None, None]:
        shuffle, size, n = self.cfg.shuffle, self.cfg.batch_size, len(self.data)
        # The order of epoch e depends on (seed, e) alone, so a resumed run skips exactly the batches it did.
        if self.world.distributed:
            # Every rank draws the same permutation and trains its own share of it, as DistributedSampler.
            order = epoch_permutation(n, self.pos.epoch, self.cfg.seed) if shuffle else torch.arange(n)
            share = distributed.shard(order, self.world)
            batches = self.data.batches(
                size, shuffle=False, generator=None, start=self.pos.batch, indices=share
            )
        else:
            generator = epoch_generator(self.pos.epoch, self.cfg.seed) if shuffle else None
            batches = self.data.batches(size, shuffle=shuffle, generator=generator, start=self.pos.batch)
        if self.data.images.device != self.device:
            yield from prefetched(batches, self.device)
        else:
            yield from batches

    def _should_stop(self) -> bool:
        # Under torchrun all ranks must stop at the same step, so a Ctrl-C counts once the ranks agreed on it.
        return self._stop_agreed if self.world.distributed else self._stop_requested

    def _after_step(self, display: outputs.ProgressDisplay) -> None:
        step = self.pos.step
        if step % self.cfg.log_every == 0:
            self._flush_log(display)
        if step % self.cfg.sample_every == 0:
            self._sample(self.run_dir / "samples" / f"step_{step:06d}.png")
        if step % self.cfg.checkpoint_every == 0:
            self._save(self.run_dir / "checkpoints" / ckpt.step_name(step))

    def _train_step(self, real_uint8: torch.Tensor) -> torch.Tensor:
        return self.step(real_uint8)

    # --- logging, samples, checkpoints ---------------------------------------------------------------------------

    def _flush_log(self, display: outputs.ProgressDisplay | None) -> None:
        """Read the pending losses back (the only host sync of the loop) and write one metrics row."""
        if not self.pending:
            return
        values = self._pending_values(everywhere=True)
        steps = [step for step, _ in self.pending]
        self._raise_if_not_finite(values, steps)
        now, (since, since_step) = time.perf_counter(), self._log_start
        means = values.mean(dim=0).tolist()
        row: dict[str, Any] = {"step": self.pos.step, "epoch": self.pos.epoch + 1}
        row.update({name: float(v) for name, v in zip(_STATS, means, strict=True)})
        images = (self.pos.step - since_step) * self.cfg.batch_size * self.world.world_size
        row["images_per_s"] = images / max(now - since, 1e-9)
        row["time"] = round(self.pos.elapsed + now - self._session_start, 3)
        self.pending.clear()
        self._log_start = (now, self.pos.step)
        if not self.world.is_main:
            return
        self.metrics.append(row)
        if display is not None:
            display.log(row, self._epoch_label())

    def _pending_values(self, everywhere: bool) -> torch.Tensor:
        """The pending losses on the CPU (the host waits for the device here). Under torchrun, with
        ``everywhere``, they are the mean over the ranks, and the ranks agree on any Ctrl-C on the way."""
        values = torch.stack([s for _, s in self.pending])
        if self.world.distributed and everywhere:
            flag = torch.full_like(values[:1], float(self._stop_requested))
            reduced = distributed.mean_over_ranks(torch.cat([values, flag]), self.world).cpu()
            self._stop_agreed = self._stop_agreed or bool(reduced[-1, 0] > 0)
            return reduced[:-1]
        return values.cpu()

    def _raise_if_not_finite(self, values: torch.Tensor, steps: list[int]) -> None:
        bad = (~torch.isfinite(values)).nonzero()
        if bad.numel() == 0:
            return
        row, column = (int(v) for v in bad[0])
        where = self.last_checkpoint
        kept = f"last good checkpoint: {where}" if where is not None else "no checkpoint had been written yet"
        raise NonFiniteLoss(
            f"{_STATS[column]} is {values[row, column].item()} at step {steps[row]}; training "
            f"stopped ({kept}). Try a lower --lr"
        )

    def _check_finite(self, step: int, everywhere: bool = True) -> None:
        """The pending losses and every weight must be finite (before a checkpoint is written, for one).

        ``everywhere``: all ranks check together (the losses are averaged, so all stop or none); a rank whose
        step failed checks alone, since the others are not there to answer.
        """
        if self.pending:
            self._raise_if_not_finite(self._pending_values(everywhere), [s for s, _ in self.pending])
        ema = self.step.ema
        modules = [self.gan.generator, self.gan.discriminator] + ([ema.module] if ema else [])
        params = [p for m in modules for p in m.parameters()]
        if params and not bool(torch.stack([p.detach().isfinite().all() for p in params]).all()):
            kept = self.last_checkpoint or "no checkpoint had been written yet"
            raise NonFiniteLoss(
                f"weights are not finite at step {step}; training stopped without saving "
                f"them (last good checkpoint: {kept}). Try a lower --lr"
            )

    def _sample(self, path: Path) -> None:
        if not self.world.is_main:
            return
        net = self.step.ema.module if self.step.ema is not None else self.gan.generator
        was_training = net.training
        net.eval()  # eval: batch norm uses its running statistics and leaves them unchanged
        try:
            with torch.no_grad():
                images = net(self.fixed_z)
        finally:
            net.train(was_training)
        path.parent.mkdir(exist_ok=True)
        outputs.save_grid(images, path, self.resolved.value_range)
        self.written.append(path)

    def _save(self, path: Path) -> None:
        """Write a checkpoint (rank 0); every rank takes part, checking its losses and handing over its RNGs."""
        self._check_finite(self.pos.step)
        rngs = distributed.gather(ckpt.capture_rng(self.latent_rng), self.world)
        self.last_checkpoint = path
        if not self.world.is_main:
            return
        path.parent.mkdir(exist_ok=True)
        elapsed = self.pos.elapsed + time.perf_counter() - self._session_start
        step = self.step
        state: dict[str, Any] = {
            "spec_text": self.resolved.text,
            "spec_name": self.resolved.spec.name,
            "train": train_dict(self.cfg),
            "value_range": list(self.resolved.value_range),
            "generator": self.gan.generator.state_dict(),
            "discriminator": self.gan.discriminator.state_dict(),
            "ema": step.ema.module.state_dict() if step.ema is not None else None,
            "opt_g": step.opt_g.state_dict(),
            "opt_d": step.opt_d.state_dict(),
            "step": self.pos.step,
            "epoch": self.pos.epoch,
            "batch": self.pos.batch,
            "elapsed": elapsed,
            "rng": rngs[0],
            "data_order": {"seed": self.cfg.seed, "epoch": self.pos.epoch, "shuffle": self.cfg.shuffle},
            "data": {"source": self.data.info.source, "count": len(self.data)},
            "limit": self.options.limit,
            "world_size": self.world.world_size,
        }
        if self.world.distributed:
            state["rng_ranks"] = (
                rngs  # each rank's own latent stream, for a bit-exact resume in the same world
            )
        ckpt.save_checkpoint(path, state)
        self.written.append(path)

    # --- cleanup -------------------------------------------------------------------------------------------------

    def _finish(self) -> None:
        self._sample(self.run_dir / "samples" / "final.png")
        self._save(self.run_dir / "checkpoints" / ckpt.LAST)
        self._plot()

    def _plot(self) -> None:
        if self.world.is_main and self.metrics.rows:
            outputs.plot_losses(
                self.metrics.rows, self.run_dir / "loss.png", f"{self.resolved.spec.name}: losses"
            )
            self.written.append(self.run_dir / "loss.png")

    def _report(self, status: str, steps_run: int, wall: float) -> TrainReport:
        peak, kind = peak_memory(self.device)
        images = steps_run * self.cfg.batch_size * self.world.world_size
        images_per_s = images / wall if wall > 0 else 0.0
        report = TrainReport(
            run_dir=self.run_dir,
            status=status,
            step=self.pos.step,
            steps_run=steps_run,
            wall_s=wall,
            images_per_s=images_per_s,
            peak_memory_bytes=peak,
            peak_memory_kind=kind,
            checkpoint=self.last_checkpoint,
            resume_hint=f"archspec train {self.options.spec} --resume {self.run_dir}",
            world_size=self.world.world_size,
            ranks_identical=self.ranks_identical,
        )
        self._write_run_json(status, report)
        self._print_report(report)
        return report

    def _print_header(self) -> None:
        spec, cfg, info = self.resolved.spec, self.cfg, self.data.info
        low, high = info.value_range
        g_params = sum(p.numel() for p in self.gan.generator.parameters())
        d_params = sum(p.numel() for p in self.gan.discriminator.parameters())
        where = (
            "on the device"
            if self.data.images.device == self.device
            else "in pinned host memory, prefetched to the GPU"
        )
        lines = [
            f"archspec train {spec.name} ({self.resolved.path}) → {self.run_dir}",
            f"  data     {info.source} ({info.layout}): {info.count} images, stored {_hwc(info.stored_shape)}, "
            f"trained as {_chw(spec.image)} in [{low:g}, {high:g}], {where}",
            f"  device   {describe_device(self.device)}"
            + (", cudnn.benchmark on" if self.device.type == "cuda" else ""),
            f"  model    generator {g_params:,} parameters, discriminator {d_params:,}",
            f"  train    {cfg.loss}, Adam lr {cfg.lr_g or cfg.lr:g}/{cfg.lr_d or cfg.lr:g} (G/D) betas "
            f"{tuple(cfg.betas)}, batch {cfg.batch_size}, {self.total} steps ({self.per_epoch} per epoch)"
            + (f", EMA {cfg.ema:g}" if cfg.ema else "")
            + (f", {cfg.precision}" if cfg.precision != "fp32" else ""),
        ]
        if self.world.distributed:
            lines.append(
                f"  world    {distributed.describe_world(self.world, self.device)}: batch {cfg.batch_size} per "
                "process, "
                f"{cfg.batch_size * self.world.world_size} per step; each process trains its share of each epoch"
            )
        if self.resumed_from is not None:
            lines.append(
                f"  resumed  from {self.resumed_from} at step {self.pos.step} (epoch {self.pos.epoch + 1}, "
                f"batch {self.pos.batch})"
            )
            if self.changes:
                lines.append(
                    f"  changed  train section differs from the checkpoint's: {'; '.join(self.changes)}"
                )
        if cfg.sync_batchnorm and not self.world.distributed:
            lines.append("  note     sync_batchnorm has no effect in a single process")
        lines += [f"  note     {note}" for note in self.notes]
        print("\n".join(lines), file=self.out, flush=True)

    def _print_report(self, report: TrainReport) -> None:
        print(
            f"{report.status}: step {report.step} ({report.steps_run} steps in {report.wall_s:.1f} s, "
            f"{report.images_per_s:.1f} images/s), peak memory {outputs.human_bytes(report.peak_memory_bytes)} "
            f"({report.peak_memory_kind})",
            file=self.out,
        )
        if report.checkpoint is not None:
            print(f"  checkpoint {report.checkpoint}", file=self.out)
        if report.ranks_identical is not None:
            same = "identical" if report.ranks_identical else "DIFFERENT (a bug: please report it)"
            print(f"  weights of the {report.world_size} ranks: {same}", file=self.out)
        if self.options.dry_run:
            files = sorted({str(p) for p in outputs.relative_files(self.run_dir, self.written)})
            print(f"dry run: one step of everything into {self.run_dir}: {', '.join(files)}", file=self.out)
        self.out.flush()

    def _write_run_json(self, status: str, report: TrainReport | None = None) -> None:
        if not self.world.is_main:
            return
        session = self._session
        session.setdefault("from_step", self.pos.step)
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
            "config": train_dict(self.cfg),
            "overrides": dict(self.options.overrides),
            "dry_run": self.options.dry_run,
            "device": describe_device(self.device),
            "world_size": self.world.world_size,
            "ranks_identical": self.ranks_identical,
            "data": asdict(self.data.info),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "status": status,
            "report": session.get("report"),
            "sessions": [*self._previous_sessions, session],
        }
        outputs.write_json(self.run_dir / "run.json", doc)

    def _epoch_label(self) -> str:
        return f"{self.pos.epoch + 1}/{self.cfg.epochs}"

    @contextlib.contextmanager
    def _sigint_stops(self) -> Iterator[None]:
        """Ctrl-C asks the loop to stop after the current step (a second one stops at once)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def request_stop(signum: int, frame: FrameType | None) -> None:
            self._stop_requested = True
            signal.signal(signal.SIGINT, previous)

        previous = signal.signal(signal.SIGINT, request_stop)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


# --- setup helpers -------------------------------------------------------------------------------------------------


def _dry_run_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **overrides,
        "data": overrides.get("data", "random"),
        "max_steps": 1,
        "log_every": 1,
        "sample_every": MAX_SIZE,  # the final grid and last.pt are the one sample and the one checkpoint
        "checkpoint_every": MAX_SIZE,
    }


def _resume(
    spec_path: str, resume: str, overrides: Mapping[str, Any], world: World
) -> tuple[Resolved, dict[str, Any], Path]:
    """The checkpoint ``--resume`` names, refused if its networks differ, and the spec resolved on top of its
    train settings (the file's own train section need not check: the checkpoint's may mend it).

    Rank 0 finds the checkpoint; every rank loads the one it found."""
    spec = load_spec(spec_path)
    out = overrides.get("out", spec.train.out)
    path = distributed.from_main(world, lambda: ckpt.find_resume(resume, out, spec.name))
    state = ckpt.load_checkpoint(path)
    old = ckpt.checkpoint_spec(state, path)
    differences = ckpt.architecture_differences(old, spec)
    if differences:
        raise RunError(
            f"{path}: the checkpoint's networks differ from {spec_path}: {'; '.join(differences)} "
            "(a different train: section is fine; a different architecture needs a new run)"
        )
    return resolve(spec_path, overrides, resume_base(state["train"], state["spec_text"], spec)), state, path


def _open_data(resolved: Resolved, options: TrainOptions, device: torch.device, world: World) -> ImageSet:
    cfg, spec, ranks = resolved.train, resolved.spec, world.world_size
    source = cfg.data or "synthetic"
    if source not in ("synthetic", "random") and spec.image[0] not in (1, 3):
        raise RunError(
            f"image files hold grey or RGB pictures, but the spec's image has {spec.image[0]} channels"
        )
    limit = options.limit if not options.dry_run else cfg.batch_size * ranks
    data = open_images(source, spec.image, resolved.value_range, seed=cfg.seed, limit=limit)
    if len(data) // ranks < cfg.batch_size:
        each = f" ({len(data) // ranks} for each of {ranks} processes)" if ranks > 1 else ""
        raise RunError(
            f"{source}: {len(data)} images{each}, fewer than one batch of {cfg.batch_size} (partial batches "
            "are dropped); lower --batch-size or use more images"
        )
    if device.type != "cpu" and (
        cfg.data_on_device == "always"
        or (cfg.data_on_device == "auto" and fits_on_device(data.images.numel(), device))
    ):
        # uint8 on the device: a quarter of the float size, converted per batch where it is used.
        data = data.to(device)
    return data


def _run_dir(options: TrainOptions, resolved: Resolved, checkpoint_path: Path | None) -> Path:
    if checkpoint_path is not None:
        run = ckpt.run_dir_of(checkpoint_path)
        if run is not None:
            return run
    if options.dry_run and "out" not in options.overrides:
        return outputs.make_run_dir(tempfile.mkdtemp(prefix="archspec-dry-run-"), resolved.spec.name)
    return outputs.make_run_dir(resolved.train.out, resolved.spec.name)


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def _derived_seed(seed: int, stream: int, *more: int) -> int:
    """A seed for one stream of a run (and rank, and step): SeedSequence mixes them, so the latent and sample
    streams are unrelated to the weights' stream and to each other's. Rank 0 adds nothing: a single-process
    run and rank 0 of a torchrun draw the same latents."""
    key = [seed, stream, *more] if any(more) else [seed, stream]
    return int(np.random.SeedSequence(key).generate_state(1, np.uint64)[0] >> np.uint64(1))


class _Silent(io.StringIO):
    """The console of ranks other than 0: everything written is dropped."""

    def write(self, text: str) -> int:
        return len(text)


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


def _hwc(shape: tuple[int, int, int]) -> str:
    return f"{shape[0]}x{shape[1]}x{shape[2]}"


def _chw(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
