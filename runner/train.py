"""``archspec train``: setup (everything that can fail, before any step) → the training loop → cleanup.

One step is one real batch: ``d_steps`` discriminator updates (for the seed's BCE, one optimiser step on the
real batch with target 1 and one on G(z).detach() with target 0), then one generator update through D, each with
a fresh latent batch. Losses stay on the device as tensors and are read back only every ``log_every`` steps, so
a step never waits for the device. Everything a step draws at random comes from generators that checkpoints save,
so a run resumed from a checkpoint continues bit for bit as if it had never stopped.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import platform
import random
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import numpy as np
import torch
from torch import nn

from archspec.layers import MAX_SIZE
from archspec.modules import GAN, build
from runner import checkpoint as ckpt
from runner import outputs
from runner.config import Resolved, load_spec, resolve, resume_base, train_changes, train_dict
from runner.data import ImageSet, epoch_generator, open_images
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
from runner.losses import GanLoss, gradient_penalty, make_loss

# Latent batches and the fixed sample batch come from their own generators, seeded from the run's seed.
_LATENT_STREAM, _SAMPLE_STREAM = 1, 2
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


class NonFiniteLoss(RunError):
    """A loss or weight became NaN or infinite; the run stopped without writing a checkpoint of it."""


def train(options: TrainOptions) -> TrainReport:
    """Train the spec as ``options`` say; RunError or SpecInvalid for any problem found before the first step."""
    trainer = Trainer.setup(options)
    return trainer.run()


class Ema:
    """An exponential moving average of a network's weights (buffers copied as they are), for samples."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """ema ← decay·ema + (1 − decay)·weights."""
        for average, weight in zip(self.module.parameters(), model.parameters(), strict=True):
            average.lerp_(weight, 1.0 - self.decay)
        for copied, buffer in zip(self.module.buffers(), model.buffers(), strict=True):
            copied.copy_(buffer)


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
    ) -> None:
        self.options = options
        self.resolved = resolved
        self.cfg = resolved.train
        self.device = device
        self.data = data
        self.gan = gan
        self.run_dir = run_dir
        self.world = World()
        self.out = options.stdout or sys.stdout
        self.loss: GanLoss = make_loss(self.cfg.loss, self.cfg.gp_weight)
        self.opt_g = _adam(gan.generator, self.cfg.lr_g or self.cfg.lr, self.cfg.betas, self.cfg.fused_adam)
        self.opt_d = _adam(
            gan.discriminator, self.cfg.lr_d or self.cfg.lr, self.cfg.betas, self.cfg.fused_adam
        )
        self.ema = Ema(gan.generator, self.cfg.ema) if self.cfg.ema is not None else None
        self.latent_rng = torch.Generator(device=device).manual_seed(
            _derived_seed(self.cfg.seed, _LATENT_STREAM)
        )
        sample_rng = torch.Generator().manual_seed(_derived_seed(self.cfg.seed, _SAMPLE_STREAM))
        self.fixed_z = gan.latent(self.cfg.samples, generator=sample_rng).to(device)
        self.g_step, self.d_step = (
            _maybe_compile(gan.generator, self.cfg.compile),
            _maybe_compile(gan.discriminator, self.cfg.compile),
        )
        self.pos = _Position()
        self.per_epoch = data.num_batches(self.cfg.batch_size)
        self.total = min(self.cfg.max_steps or MAX_SIZE, self.cfg.epochs * self.per_epoch)
        self.metrics = outputs.MetricsLog(run_dir / "metrics.jsonl")
        self.pending: list[tuple[int, torch.Tensor]] = []
        self.last_checkpoint: Path | None = None
        self.written: list[Path] = []
        self.resumed_from: Path | None = None
        self.changes: list[str] = []
        self._stop_requested = False
        self._session_start = time.perf_counter()
        self._log_start = (self._session_start, 0)
        previous = _read_json(run_dir / "run.json") or {}
        self._previous_sessions: list[Any] = list(previous.get("sessions", []))
        self._session: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "command": sys.argv}

    # --- setup ---------------------------------------------------------------------------------------------------

    @classmethod
    def setup(cls, options: TrainOptions) -> Trainer:
        """Check the spec, overrides, checkpoint, device and data, build everything, and make the run folder.

        Every RunError a user can cause is raised here, before the first step and before any file is written.
        """
        overrides = dict(options.overrides)
        if options.dry_run:
            if options.resume is not None:
                raise RunError("--dry-run starts a throw-away run; it cannot be combined with --resume")
            overrides = _dry_run_overrides(overrides)
        state, checkpoint_path, changes = None, None, []
        if options.resume is None:
            resolved = resolve(options.spec, overrides)
        else:
            resolved, state, checkpoint_path = _resume(options.spec, options.resume, overrides)
            changes = train_changes(state["train"], resolved.train)
            if options.limit is None and isinstance(state.get("limit"), int):
                # --limit is not part of the train section; a resumed run keeps the data it started with.
                options = dataclasses.replace(options, limit=state["limit"])
        train_cfg = resolved.train
        device = resolve_device(train_cfg.device)
        data = _open_data(resolved, options, device)
        prepare_device(device)
        _seed_everything(train_cfg.seed)
        gan = build(resolved.result, device)
        if train_cfg.channels_last:
            # Module.to takes memory_format at run time; the type stubs leave it out.
            gan.generator.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            gan.discriminator.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        run_dir = _run_dir(options, resolved, checkpoint_path)
        trainer = cls(options, resolved, device, data, gan, run_dir)
        trainer.changes = changes
        if state is not None and checkpoint_path is not None:
            try:
                trainer._restore(state, checkpoint_path)
            except RunError:
                if not any(run_dir.iterdir()):
                    run_dir.rmdir()  # made for this resume (a loose checkpoint file): leave nothing behind
                raise
        else:
            outputs.write_atomic(run_dir / "spec.yaml", resolved.text.encode("utf-8"))
        trainer._write_run_json("running")
        return trainer

    def _restore(self, state: Mapping[str, Any], path: Path) -> None:
        try:
            self.gan.generator.load_state_dict(state["generator"])
            self.gan.discriminator.load_state_dict(state["discriminator"])
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
            if self.ema is not None:
                self.ema.module.load_state_dict(state.get("ema") or state["generator"])
            ckpt.restore_rng(state["rng"], self.latent_rng)
        except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as err:
            # The architectures were compared already; this is a damaged or hand-edited file.
            raise RunError(
                f"{path}: the checkpoint's state does not fit this run (damaged?): {_first_line(err)}"
            ) from None
        # A changed train section may change the learning rates and betas; the checkpoint has the old ones.
        for opt, lr in (
            (self.opt_g, self.cfg.lr_g or self.cfg.lr),
            (self.opt_d, self.cfg.lr_d or self.cfg.lr),
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
        self.metrics = outputs.MetricsLog(self.run_dir / "metrics.jsonl", upto_step=self.pos.step)
        self.resumed_from = path
        self.last_checkpoint = path

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
            for real in self._epoch_batches():
                try:
                    stats = self._train_step(real)
                except RuntimeError:
                    # NaN weights make some ops refuse their input (BCE wants [0, 1]); say so rather than crash.
                    self._check_finite(self.pos.step + 1)
                    raise
                self.pos.step, self.pos.batch = self.pos.step + 1, self.pos.batch + 1
                self.pending.append((self.pos.step, stats))
                display.advance(self.pos.step, self._epoch_label())
                self._after_step(display)
                if self._stop_requested:
                    return "interrupted"
                if self.pos.step >= self.total:
                    break
        return "finished"

    def _epoch_batches(self) -> Iterator[torch.Tensor]:
        shuffle = self.cfg.shuffle
        # The order of epoch e depends on (seed, e) alone, so a resumed run skips exactly the batches it did.
        order = epoch_generator(self.pos.epoch, self.cfg.seed) if shuffle else None
        # indices=None: the whole set; under DDP each rank will pass its share here.
        return self.data.batches(self.cfg.batch_size, shuffle=shuffle, generator=order, start=self.pos.batch)

    def _after_step(self, display: outputs.ProgressDisplay) -> None:
        step = self.pos.step
        if step % self.cfg.log_every == 0:
            self._flush_log(display)
        if step % self.cfg.sample_every == 0:
            self._sample(self.run_dir / "samples" / f"step_{step:06d}.png")
        if step % self.cfg.checkpoint_every == 0:
            self._save(self.run_dir / "checkpoints" / ckpt.step_name(step))

    def _train_step(self, real_uint8: torch.Tensor) -> torch.Tensor:
        real = self.data.to_float(real_uint8.to(self.device, non_blocking=True))
        if self.cfg.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        for _ in range(self.cfg.d_steps):
            loss_d, d_real, d_fake = self._discriminator_update(real)
        loss_g = self._generator_update(real.shape[0])
        if self.ema is not None:
            self.ema.update(self.gan.generator)
        return torch.stack([loss_d, loss_g, d_real, d_fake]).float()

    def _discriminator_update(self, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One discriminator update; returns its loss and the mean scores of real and fake (detached)."""
        if self.loss.split_d:
            # The seed: one optimiser step on the real batch, then one on a generated batch.
            loss_real, scores_real = self._d_optimiser_step(lambda: self.d_step(real), self.loss.d_real)
            fake = self._fake(real.shape[0])
            loss_fake, scores_fake = self._d_optimiser_step(lambda: self.d_step(fake), self.loss.d_fake)
            return loss_real + loss_fake, scores_real, scores_fake
        fake = self._fake(real.shape[0])
        self.opt_d.zero_grad(set_to_none=True)
        with self._autocast():
            scores_real, scores_fake = self.d_step(real), self.d_step(fake)
            loss = self.loss.d_real(scores_real) + self.loss.d_fake(scores_fake)
        # The penalty differentiates through D; autocast off keeps its second-order graph in fp32.
        loss = loss + self.loss.gp_weight * gradient_penalty(self.d_step, real, fake, self.latent_rng)
        torch.autograd.backward(loss)
        self.opt_d.step()
        return loss.detach(), scores_real.detach().float().mean(), scores_fake.detach().float().mean()

    def _d_optimiser_step(
        self, scores_of: Callable[[], torch.Tensor], loss_of: Callable[[torch.Tensor], torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.opt_d.zero_grad(set_to_none=True)
        with self._autocast():
            scores = scores_of()
            loss = loss_of(scores)
        torch.autograd.backward(loss)
        self.opt_d.step()
        return loss.detach(), scores.detach().float().mean()

    def _fake(self, n: int) -> torch.Tensor:
        """G(z).detach() for a fresh z: no graph is kept, but batch norm updates its statistics as the seed's."""
        z = self.gan.latent(n, generator=self.latent_rng, device=self.device)
        with torch.no_grad(), self._autocast():
            fake: torch.Tensor = self.g_step(z)
        return fake

    def _generator_update(self, n: int) -> torch.Tensor:
        z = self.gan.latent(n, generator=self.latent_rng, device=self.device)
        # D's weights get no gradient from this step; skipping them saves a third of D's backward.
        self.gan.discriminator.requires_grad_(False)
        try:
            self.opt_g.zero_grad(set_to_none=True)
            with self._autocast():
                loss = self.loss.g(self.d_step(self.g_step(z)))
            torch.autograd.backward(loss)
            self.opt_g.step()
        finally:
            self.gan.discriminator.requires_grad_(True)
        return loss.detach()

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.cfg.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # --- logging, samples, checkpoints ---------------------------------------------------------------------------

    def _flush_log(self, display: outputs.ProgressDisplay | None) -> None:
        """Read the pending losses back (the only host sync of the loop) and write one metrics row."""
        if not self.pending:
            return
        values = torch.stack([s for _, s in self.pending]).cpu()
        steps = [step for step, _ in self.pending]
        self._raise_if_not_finite(values, steps)
        now, (since, since_step) = time.perf_counter(), self._log_start
        means = values.mean(dim=0).tolist()
        row: dict[str, Any] = {"step": self.pos.step, "epoch": self.pos.epoch + 1}
        row.update({name: float(v) for name, v in zip(_STATS, means, strict=True)})
        row["images_per_s"] = (self.pos.step - since_step) * self.cfg.batch_size / max(now - since, 1e-9)
        row["time"] = round(self.pos.elapsed + now - self._session_start, 3)
        self.pending.clear()
        self._log_start = (now, self.pos.step)
        self.metrics.append(row)
        if display is not None:
            display.log(row, self._epoch_label())

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

    def _check_finite(self, step: int) -> None:
        """The pending losses and every weight must be finite (before a checkpoint is written, for one)."""
        if self.pending:
            self._raise_if_not_finite(
                torch.stack([s for _, s in self.pending]).cpu(), [s for s, _ in self.pending]
            )
        modules = [self.gan.generator, self.gan.discriminator] + ([self.ema.module] if self.ema else [])
        params = [p for m in modules for p in m.parameters()]
        if params and not bool(torch.stack([p.detach().isfinite().all() for p in params]).all()):
            kept = self.last_checkpoint or "no checkpoint had been written yet"
            raise NonFiniteLoss(
                f"weights are not finite at step {step}; training stopped without saving "
                f"them (last good checkpoint: {kept}). Try a lower --lr"
            )

    def _sample(self, path: Path) -> None:
        net = self.ema.module if self.ema is not None else self.gan.generator
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
        self._check_finite(self.pos.step)
        path.parent.mkdir(exist_ok=True)
        elapsed = self.pos.elapsed + time.perf_counter() - self._session_start
        state = {
            "spec_text": self.resolved.text,
            "spec_name": self.resolved.spec.name,
            "train": train_dict(self.cfg),
            "value_range": list(self.resolved.value_range),
            "generator": self.gan.generator.state_dict(),
            "discriminator": self.gan.discriminator.state_dict(),
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "step": self.pos.step,
            "epoch": self.pos.epoch,
            "batch": self.pos.batch,
            "elapsed": elapsed,
            "rng": ckpt.capture_rng(self.latent_rng),
            "data_order": {"seed": self.cfg.seed, "epoch": self.pos.epoch, "shuffle": self.cfg.shuffle},
            "data": {"source": self.data.info.source, "count": len(self.data)},
            "limit": self.options.limit,
        }
        ckpt.save_checkpoint(path, state)
        self.last_checkpoint = path
        self.written.append(path)

    # --- cleanup -------------------------------------------------------------------------------------------------

    def _finish(self) -> None:
        self._sample(self.run_dir / "samples" / "final.png")
        self._save(self.run_dir / "checkpoints" / ckpt.LAST)
        self._plot()

    def _plot(self) -> None:
        if self.metrics.rows:
            outputs.plot_losses(
                self.metrics.rows, self.run_dir / "loss.png", f"{self.resolved.spec.name}: losses"
            )
            self.written.append(self.run_dir / "loss.png")

    def _report(self, status: str, steps_run: int, wall: float) -> TrainReport:
        peak, kind = peak_memory(self.device)
        images_per_s = steps_run * self.cfg.batch_size / wall if wall > 0 else 0.0
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
        )
        self._write_run_json(status, report)
        self._print_report(report)
        return report

    def _print_header(self) -> None:
        spec, cfg, info = self.resolved.spec, self.cfg, self.data.info
        low, high = info.value_range
        g_params = sum(p.numel() for p in self.gan.generator.parameters())
        d_params = sum(p.numel() for p in self.gan.discriminator.parameters())
        where = "on the device" if self.data.images.device == self.device else "on the CPU, copied per batch"
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
        if self.resumed_from is not None:
            lines.append(
                f"  resumed  from {self.resumed_from} at step {self.pos.step} (epoch {self.pos.epoch + 1}, "
                f"batch {self.pos.batch})"
            )
            if self.changes:
                lines.append(
                    f"  changed  train section differs from the checkpoint's: {'; '.join(self.changes)}"
                )
        if cfg.sync_batchnorm and self.world.world_size == 1:
            lines.append("  note     sync_batchnorm has no effect in a single process")
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
        if self.options.dry_run:
            files = sorted({str(p) for p in outputs.relative_files(self.run_dir, self.written)})
            print(f"dry run: one step of everything into {self.run_dir}: {', '.join(files)}", file=self.out)
        self.out.flush()

    def _write_run_json(self, status: str, report: TrainReport | None = None) -> None:
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
    spec_path: str, resume: str, overrides: Mapping[str, Any]
) -> tuple[Resolved, dict[str, Any], Path]:
    """The checkpoint ``--resume`` names, refused if its networks differ, and the spec resolved on top of its
    train settings (the file's own train section need not check: the checkpoint's may mend it)."""
    spec = load_spec(spec_path)
    path = ckpt.find_resume(resume, overrides.get("out", spec.train.out), spec.name)
    state = ckpt.load_checkpoint(path)
    old = ckpt.checkpoint_spec(state, path)
    differences = ckpt.architecture_differences(old, spec)
    if differences:
        raise RunError(
            f"{path}: the checkpoint's networks differ from {spec_path}: {'; '.join(differences)} "
            "(a different train: section is fine; a different architecture needs a new run)"
        )
    return resolve(spec_path, overrides, resume_base(state["train"], state["spec_text"], spec)), state, path


def _open_data(resolved: Resolved, options: TrainOptions, device: torch.device) -> ImageSet:
    cfg, spec = resolved.train, resolved.spec
    source = cfg.data or "synthetic"
    if source not in ("synthetic", "random") and spec.image[0] not in (1, 3):
        raise RunError(
            f"image files hold grey or RGB pictures, but the spec's image has {spec.image[0]} channels"
        )
    limit = options.limit if not options.dry_run else cfg.batch_size
    data = open_images(source, spec.image, resolved.value_range, seed=cfg.seed, limit=limit)
    if len(data) < cfg.batch_size:
        raise RunError(
            f"{source}: {len(data)} images, fewer than one batch of {cfg.batch_size} (partial batches "
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


def _derived_seed(seed: int, stream: int) -> int:
    # SeedSequence mixes (seed, stream): the latent and sample streams are unrelated to the weights' stream.
    return int(np.random.SeedSequence([seed, stream]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def _adam(net: nn.Module, lr: float, betas: tuple[float, float], fused: bool) -> torch.optim.Adam:
    return torch.optim.Adam(net.parameters(), lr=lr, betas=(betas[0], betas[1]), fused=fused or None)


def _maybe_compile(net: nn.Module, enabled: bool) -> nn.Module:
    if not enabled:
        return net
    compiled: nn.Module = torch.compile(net)  # type: ignore[assignment]  # compile returns the wrapped module
    return compiled


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
