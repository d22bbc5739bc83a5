"""``archspec train``: setup (everything that can fail, before any step) → the training loop → cleanup.

One step is one generator update after ``d_steps`` critic updates, each on a fresh real batch (the schedule is
``runner.schedule``'s), trained by ``runner.step.GanStep``. Losses stay on the device as tensors and are
read back only every ``log_every`` steps, so a step never waits for the device; data that does not fit on the
GPU comes through pinned memory, prefetched by a thread. Everything a step draws at random comes from generators
that checkpoints save, so a run resumed from a checkpoint continues bit for bit as if it had never stopped.

Under torchrun (``runner.distributed``) every process runs this same loop on its own share of each epoch, with
DDP averaging the gradients; rank 0 alone prints and writes files, and the losses it logs are the ranks' mean.

What the run prints about itself and keeps in run.json is ``runner.record``'s job; what a checkpoint holds of the
run, and putting it back on ``--resume``, is ``runner.run_state``'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
import time
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import nn

from archspec.layers import MAX_SIZE
from archspec.memory import too_big
from archspec.modules import GAN
from archspec.trace import totals
from archspec.words import plural
from runner import checkpoint as ckpt
from runner import conditions, distributed, grids, outputs
from runner.config import Resolved, resolve, train_changes
from runner.data import Batch, ImageSet, epoch_generator, epoch_permutation, open_images
from runner.device import World, fits_on_device, peak_memory, prepare_device, resolve_device, synchronize
from runner.errors import RunError
from runner.finite import NonFiniteLoss, check_losses, check_weights
from runner.metrics.fid import InceptionFeatures
from runner.metrics.weights import find_inception, load_inception
from runner.monitor import BEST, Monitor
from runner.prefetch import prefetched
from runner.record import RunRecord, TrainReport, console
from runner.run_folder import LOCK_NAME, RunLock, check_layout, sweep_temporaries
from runner.run_state import Position, checkpoint_state, load_resume, restore
from runner.schedule import images_per_step, plan_steps
from runner.seeds import GLOBAL_STREAM, LATENT_STREAM, SAMPLE_STREAM, derived_seed, seed_everything
from runner.step import GanStep, build_gan
from runner.stopping import StopNow, StopRequest, stop_on_signals
from runner.tensorboard import Board

__all__ = ["NonFiniteLoss", "TrainOptions", "TrainReport", "Trainer", "train"]


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


def train(options: TrainOptions) -> TrainReport:
    """Train the spec as ``options`` say; RunError or SpecInvalid for any problem found before the first step.

    Launched by torchrun, this process joins the others for the run and trains its share with DDP.
    """
    with distributed.session() as world:
        trainer = Trainer.setup(options, world)
        try:
            return trainer.run()
        finally:
            trainer.release()
            trainer.remove_temporary()


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
        self.out = console(options.stdout, self.world)
        self.latent_rng = torch.Generator(device=device).manual_seed(
            derived_seed(self.cfg.seed, LATENT_STREAM, self.world.rank)
        )
        self.feeds = resolved.feeds
        self.step = GanStep(
            gan,
            self.cfg,
            device,
            resolved.value_range,
            self.latent_rng,
            self.world,
            self.feeds,
            conditions.label_counts(self.feeds, data),
        )
        sample_rng = torch.Generator().manual_seed(derived_seed(self.cfg.seed, SAMPLE_STREAM))
        pairs = conditions.first_pairs(data, grids.MAX_PAIR_ROWS)
        grid = grids.sample_grid(self.feeds, gan, self.cfg.samples, sample_rng, pairs, data.labels)
        self.grid = grids.to_device(grid, device)
        self.pos = Position()
        # Each rank trains an equal share of every epoch (the tail that does not divide evenly is dropped).
        self.plan = plan_steps(self.cfg, len(data) // self.world.world_size)
        self.per_epoch, self.total = self.plan.per_epoch, self.plan.total
        self.metrics = outputs.MetricsLog(run_dir / "metrics.jsonl")
        self.pending: list[tuple[int, torch.Tensor]] = []
        self.last_checkpoint: Path | None = None
        self.ranks_identical: bool | None = None
        # A dry run without --out goes to a temporary folder, removed when the run ends.
        self.temporary = run_dir.parents[1] if options.dry_run and "out" not in options.overrides else None
        self.record = RunRecord(
            run_dir, resolved, options.overrides, options.dry_run, device, data, self.world, self.out
        )
        self.record.temporary = self.temporary is not None
        self.lock: RunLock | None = None  # rank 0's lock of the run folder
        self.branched_from: Path | None = (
            None  # the run folder a resume from an older checkpoint left as it was
        )
        self._stop = StopRequest()
        self._stop_agreed = False  # under torchrun: some rank asked to stop, as of the last log step
        self._session_start = time.perf_counter()
        self._log_start = (self._session_start, 0)
        # Quality: rank 0 measures (runner.monitor) and tells the others whether to write best.pt.
        self.monitor: Monitor | None = None
        if self.cfg.eval_every is not None and self.world.is_main:
            # FID where the Inception weights are in the torch hub cache; training never downloads them.
            path = find_inception(None)
            inception = InceptionFeatures(load_inception(path, device), device) if path is not None else None
            self.record.inception = path
            self.monitor = Monitor(
                data, gan, self.cfg.eval_samples, self.cfg.seed, device, inception, self.feeds
            )
        self.evaluated_at: int | None = None
        self.board = Board(run_dir) if self.cfg.tensorboard and self.world.is_main else None

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
            resolved, state, checkpoint_path = load_resume(options.spec, options.resume, overrides, world)
            changes = train_changes(state["train"], resolved.train)
            if options.limit is None and isinstance(state.get("limit"), int):
                # --limit is not part of the train section; a resumed run keeps the data it started with.
                options = dataclasses.replace(options, limit=state["limit"])
        train_cfg = resolved.train
        device = resolve_device(distributed.rank_device(train_cfg.device, world))
        distributed.check_sync_batchnorm(train_cfg.sync_batchnorm, device, world)
        data = _open_data(resolved, options, device, world)
        _check_memory(resolved, device)
        prepare_device(device)
        seed_everything(train_cfg.seed)  # the same weights on every rank (DDP copies rank 0's anyway)
        gan = build_gan(resolved.result, train_cfg, device)
        if world.rank > 0:
            torch.manual_seed(derived_seed(train_cfg.seed, GLOBAL_STREAM, world.rank))  # its own dropout
        step = state["step"] if state is not None else 0
        run_dir, branched_from = distributed.from_main(
            world, lambda: _run_dir(options, resolved, checkpoint_path, step)
        )
        new_folder = checkpoint_path is None or run_dir != _run_of(checkpoint_path)
        lock = None
        try:
            trainer = cls(options, resolved, device, data, gan, run_dir, world)
            trainer.branched_from = branched_from
            trainer.record.changes = changes
            if state is not None and checkpoint_path is not None:
                trainer._restore(
                    state, checkpoint_path
                )  # in memory: a state that does not fit writes nothing
            if world.is_main:
                trainer.lock = lock = _take(run_dir)
            trainer._prepare(state, checkpoint_path, new_folder)
        except BaseException:
            if lock is not None:
                lock.release()
            if world.is_main and new_folder:
                _remove_new_folder(run_dir)  # made for this session: leave nothing behind
            raise
        return trainer

    def _prepare(
        self, state: Mapping[str, Any] | None, checkpoint_path: Path | None, new_folder: bool
    ) -> None:
        """Fill the (locked) run folder for this session: its history up to the resumed step, or a new run's
        spec.yaml; then run.json."""
        if self.world.is_main and state is not None:
            step = self.pos.step
            if self.branched_from is not None:
                # The new folder starts with the old run's history up to the checkpoint: the plot continues.
                rows = outputs.read_metrics(self.branched_from / "metrics.jsonl")
                outputs.write_metrics(self.run_dir / "metrics.jsonl", [r for r in rows if r["step"] <= step])
                self.record.notes.append(
                    f"branched: {checkpoint_path} is older than the newest checkpoint of {self.branched_from}, "
                    f"which is left as it was; this run continues from step {step} in a new folder"
                )
            # Drops rows logged after the checkpoint (steps about to be trained again): a write, rank 0's alone.
            self.metrics = outputs.MetricsLog(self.run_dir / "metrics.jsonl", upto_step=step)
            if self.monitor is not None:
                self.monitor.resume(self.metrics.rows, self.record.collapse, step)
                # An alarm raised after the resumed step is about steps trained again: forget it.
                self.record.collapse = self.monitor.alarm.json() if self.monitor.alarm is not None else None
            if self.board is not None:
                self.board.resumed_at = step
        if self.world.is_main and new_folder:
            outputs.write_atomic(self.run_dir / "spec.yaml", self.resolved.text.encode("utf-8"))
        self._write_run_json("running")

    def release(self) -> None:
        """Let go of the run folder's lock (rank 0); the end of the process would too."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        if self.board is not None:
            self.board.close()

    def _restore(self, state: Mapping[str, Any], path: Path) -> None:
        self.pos, notes = restore(state, path, self.step, self.world)
        self.record.notes += notes
        self.record.resumed_from = path
        self.last_checkpoint = path

    # --- the loop ------------------------------------------------------------------------------------------------

    def run(self) -> TrainReport:
        """Train to the end (or a stop signal), then write the final samples, last.pt, loss.png and the report."""
        self.record.print_header(self.gan, self.pos, self.plan)
        if self.pos.step >= self.total:
            print(
                f"already at step {self.pos.step} of {self.total}: nothing to train (raise --max-steps or "
                "--epochs to continue)",
                file=self.out,
            )
            return self._report("complete", 0, 0.0)
        # From here to the report, SIGINT, SIGTERM and SIGHUP stop the loop after its step; the final writes
        # complete whatever arrives, except a second signal.
        with stop_on_signals() as self._stop:
            try:
                return self._train_and_finish()
            except StopNow:
                self._write_run_json_if_possible("stopped")
                raise
            except OSError as err:
                self._write_run_json_if_possible("failed")
                raise RunError(self._write_failure(err)) from None

    def _train_and_finish(self) -> TrainReport:
        start_step, started = self.pos.step, time.perf_counter()
        live = outputs.use_live_display(self.out) if self.options.live is None else self.options.live
        live = live and self.world.is_main
        try:
            with outputs.ProgressDisplay(self.total, self.pos.step, live, self.out) as display:
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
            self.ranks_identical = distributed.ranks_identical(self._networks(), self.world)
        return self._report(status, self.pos.step - start_step, wall)

    def _write_failure(self, err: OSError) -> str:
        """One line for a write that failed mid-run (a full disk, a folder made read-only): what, where, and
        what is safe on disk."""
        where = err.filename or self.run_dir
        kept = f"; the last checkpoint is {self.last_checkpoint}" if self.last_checkpoint else ""
        return f"{where}: cannot write at step {self.pos.step}: {err.strerror or err}{kept}"

    def _write_run_json_if_possible(self, status: str) -> None:
        with contextlib.suppress(OSError):  # the run is failing already: its own error is the one to report
            self._write_run_json(status)

    def _run_loop(self, display: outputs.ProgressDisplay) -> str:
        try:
            return self._loop(display)
        except KeyboardInterrupt:
            if self._stop.requested:
                raise  # a second signal: stop at once, without saving
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

    def _epoch_batches(self) -> Generator[torch.Tensor | Batch, None, None]:
        # One batch of the data is one step's d_steps critic batches, stacked: GanStep splits it.
        shuffle, size, n = self.cfg.shuffle, images_per_step(self.cfg), len(self.data)
        # The order of epoch e depends on (seed, e) alone, so a resumed run skips exactly the batches it did.
        if self.world.distributed:
            # Every rank draws the same permutation and trains its own share of it, as DistributedSampler.
            order = epoch_permutation(n, self.pos.epoch, self.cfg.seed) if shuffle else torch.arange(n)
            share = distributed.shard(order, self.world)
            generator, indices = None, share
            shuffle = False
        else:
            generator = epoch_generator(self.pos.epoch, self.cfg.seed) if shuffle else None
            indices = None
        # A conditional run's batches bring their labels and paired inputs (the same rows of each).
        batches: Iterator[torch.Tensor | Batch]
        if self.feeds.kind == "unconditional":
            batches = self.data.batches(
                size, shuffle=shuffle, generator=generator, start=self.pos.batch, indices=indices
            )
        else:
            batches = self.data.conditioned_batches(
                size, shuffle=shuffle, generator=generator, start=self.pos.batch, indices=indices
            )
        if self.data.images.device != self.device:
            yield from prefetched(batches, self.device)
        else:
            yield from batches

    def _should_stop(self) -> bool:
        # Under torchrun all ranks must stop at the same step, so a Ctrl-C counts once the ranks agreed on it.
        return self._stop_agreed if self.world.distributed else self._stop.requested

    def _after_step(self, display: outputs.ProgressDisplay) -> None:
        step = self.pos.step
        if step % self.cfg.log_every == 0:
            self._flush_log(display)
        if step % self.cfg.sample_every == 0:
            self._sample(self.run_dir / "samples" / f"step_{step:06d}.png")
            self._show(self.run_dir / "samples" / f"step_{step:06d}.png")
        if self.cfg.eval_every is not None and step % self.cfg.eval_every == 0:
            self._evaluate(display)
        if step % self.cfg.checkpoint_every == 0:
            self._save(self.run_dir / "checkpoints" / ckpt.step_name(step))

    def _train_step(self, real: torch.Tensor | Batch) -> torch.Tensor:
        if isinstance(real, Batch):
            return self.step(real.images, real.labels, real.inputs)
        return self.step(real)

    # --- logging, samples, checkpoints ---------------------------------------------------------------------------

    def _flush_log(self, display: outputs.ProgressDisplay | None) -> None:
        """Read the pending losses back (the only host sync of the loop) and write one metrics row."""
        if not self.pending:
            return
        values = self._pending_values(everywhere=True)
        steps = [step for step, _ in self.pending]
        check_losses(values, steps, self.last_checkpoint, self.step.stats)
        now, (since, since_step) = time.perf_counter(), self._log_start
        means = values.mean(dim=0).tolist()
        row: dict[str, Any] = {"step": self.pos.step, "epoch": self.pos.epoch + 1}
        row.update({name: float(v) for name, v in zip(self.step.stats, means, strict=True)})
        images = (self.pos.step - since_step) * images_per_step(self.cfg) * self.world.world_size
        row["images_per_s"] = images / max(now - since, 1e-9)
        row["time"] = round(self.pos.elapsed + now - self._session_start, 3)
        self.pending.clear()
        self._log_start = (now, self.pos.step)
        if not self.world.is_main:
            return
        self.metrics.append(row)
        if self.board is not None:
            self.board.row(row)
        if display is not None:
            display.log(row, self._epoch_label())

    def _pending_values(self, everywhere: bool) -> torch.Tensor:
        """The pending losses on the CPU (the host waits for the device here). Under torchrun, with
        ``everywhere``, they are the mean over the ranks, and the ranks agree on any Ctrl-C on the way."""
        values = torch.stack([s for _, s in self.pending])
        if self.world.distributed and everywhere:
            flag = torch.full_like(values[:1], float(self._stop.requested))
            reduced = distributed.mean_over_ranks(torch.cat([values, flag]), self.world).cpu()
            self._stop_agreed = self._stop_agreed or bool(reduced[-1, 0] > 0)
            return reduced[:-1]
        return values.cpu()

    def _check_finite(self, step: int, everywhere: bool = True) -> None:
        """The pending losses and every weight must be finite (before a checkpoint is written, for one).

        ``everywhere``: all ranks check together (the losses are averaged, so all stop or none); a rank whose
        step failed checks alone, since the others are not there to answer.
        """
        if self.pending:
            steps = [s for s, _ in self.pending]
            check_losses(self._pending_values(everywhere), steps, self.last_checkpoint, self.step.stats)
        check_weights(self._networks(), step, self.last_checkpoint)

    def _networks(self) -> list[nn.Module]:
        """Every network the run trains: G, D and G's EMA copy if there is one."""
        ema = self.step.ema
        return [self.gan.generator, self.gan.discriminator] + ([ema.module] if ema else [])

    def _sample(self, path: Path) -> None:
        if not self.world.is_main:
            return
        net = self.step.ema.module if self.step.ema is not None else self.gan.generator
        was_training = net.training
        net.eval()  # eval: batch norm uses its running statistics and leaves them unchanged
        try:
            images = self.grid.render(net)
        finally:
            net.train(was_training)
        path.parent.mkdir(exist_ok=True)
        outputs.save_grid(images, path, self.resolved.value_range, self.grid.columns)
        self.record.written.append(path)

    def _save(self, path: Path, periodic: bool = True) -> None:
        """Write a checkpoint (rank 0); every rank takes part, checking its losses and handing over its RNGs.

        ``periodic``: a checkpoint to resume from (best.pt is not one: the failure messages name the last)."""
        self._check_finite(self.pos.step)
        rngs = distributed.gather(ckpt.capture_rng(self.latent_rng), self.world)
        if periodic:
            self.last_checkpoint = path
        if not self.world.is_main:
            return
        path.parent.mkdir(exist_ok=True)
        elapsed = self.pos.elapsed + time.perf_counter() - self._session_start
        state = checkpoint_state(
            self.resolved, self.step, self.pos, elapsed, rngs, self.data, self.options.limit, self.world
        )
        ckpt.save_checkpoint(path, state)
        self.record.written.append(path)

    # --- quality ---------------------------------------------------------------------------------------------------

    def _evaluate(self, display: outputs.ProgressDisplay | None) -> None:
        """Measure the samples (rank 0, the others wait) and write best.pt (every rank) if they are the best yet."""
        self.evaluated_at = self.pos.step
        if distributed.from_main(self.world, lambda: self._measure(display)):
            self._save(self.best_path, periodic=False)

    def _measure(self, display: outputs.ProgressDisplay | None) -> bool:
        """Rank 0's evaluation: the metrics row, its line, the alarm; whether it is the best so far."""
        assert self.monitor is not None  # made on rank 0 whenever eval_every is set
        net = self.step.ema.module if self.step.ema is not None else self.gan.generator
        evaluation = self.monitor.evaluate(net, self.pos.step)
        row = evaluation.row(self.pos.epoch + 1)
        self.metrics.append(row)
        if self.board is not None:
            self.board.row(row)
        lines = [evaluation.line()]
        alarm = self.monitor.check_collapse(evaluation, self.total)
        if alarm is not None:
            lines.append(alarm.line())
            self.record.collapse = alarm.json()
        improved = self.monitor.improved(evaluation)
        self.record.quality = {
            "last": row,
            "best_metric": self.monitor.metric,
            "best_value": self.monitor.best,
            "best": str(self.best_path),
        }
        for line in lines:
            if display is not None:
                display.note(line)
            else:
                print(line, file=self.out, flush=True)
        if alarm is not None:
            self._write_run_json("running")  # the alarm is on disk while the run goes on
        return improved

    @property
    def best_path(self) -> Path:
        return self.run_dir / "checkpoints" / BEST

    def _show(self, grid: Path) -> None:
        """A sample grid rank 0 wrote, on TensorBoard too."""
        if self.board is not None:
            self.board.grid(grid, self.pos.step)

    # --- cleanup -------------------------------------------------------------------------------------------------

    def remove_temporary(self) -> None:
        """Remove a dry run's temporary folder (rank 0 made it, rank 0 removes it)."""
        if self.temporary is not None and self.world.is_main:
            shutil.rmtree(self.temporary, ignore_errors=True)

    def _finish(self) -> None:
        self._sample(self.run_dir / "samples" / "final.png")
        self._show(self.run_dir / "samples" / "final.png")
        if self.cfg.eval_every is not None and self.evaluated_at != self.pos.step:
            self._evaluate(None)  # the final report gives the quality of the weights the run ends with
        self._save(self.run_dir / "checkpoints" / ckpt.LAST)
        self._plot()

    def _plot(self) -> None:
        if self.world.is_main and self.metrics.rows:
            outputs.plot_losses(
                self.metrics.rows,
                self.run_dir / "loss.png",
                f"{self.resolved.spec.name}: losses",
                self.cfg.loss,
            )
            self.record.written.append(self.run_dir / "loss.png")

    def _report(self, status: str, steps_run: int, wall: float) -> TrainReport:
        peak, kind = peak_memory(self.device)
        images = steps_run * images_per_step(self.cfg) * self.world.world_size
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
            stopped_by=self.plan.describe_stop() if status == "finished" else None,
            signal=self._stop.name,
        )
        self._write_run_json(status, report)
        self.record.print_report(report)
        return report

    def _write_run_json(self, status: str, report: TrainReport | None = None) -> None:
        self.record.write_run_json(status, self.pos.step, self.ranks_identical, report)

    def _epoch_label(self) -> str:
        return f"{self.pos.epoch + 1}/{self.plan.epochs}"


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


def _open_data(resolved: Resolved, options: TrainOptions, device: torch.device, world: World) -> ImageSet:
    cfg, spec, ranks = resolved.train, resolved.spec, world.world_size
    source = cfg.data or "synthetic"
    if source not in ("synthetic", "random") and spec.image[0] not in (1, 3):
        raise RunError(
            f"image files hold grey or RGB pictures, but the spec's image has {spec.image[0]} channels"
        )
    per_step = images_per_step(cfg)
    limit = options.limit if not options.dry_run else per_step * ranks
    feeds = resolved.feeds
    # A super-resolution run makes its low-resolution inputs from its images; other paired runs read theirs.
    downscaled = conditions.super_resolution(feeds, spec.image)
    data = open_images(
        source,
        spec.image,
        resolved.value_range,
        seed=cfg.seed,
        limit=limit,
        labels=feeds.classes,
        input_shape=None if feeds.condition is None or downscaled else _chw(feeds.condition),
    )
    if downscaled and feeds.condition is not None:
        data = conditions.with_downscaled_inputs(data, feeds.condition)
    conditions.check_data(feeds, data)
    if len(data) // ranks < per_step:
        each = f" ({len(data) // ranks} for each of {ranks} processes)" if ranks > 1 else ""
        need = f"one batch of {cfg.batch_size} (partial batches are skipped)"
        if cfg.d_steps > 1:
            need = f"one step's {cfg.d_steps} batches of {cfg.batch_size} (a fresh one per critic update)"
        raise RunError(
            f"{source}: {plural(len(data), 'image')}{each}, fewer than {need}; lower --batch-size or use more images"
        )
    if device.type != "cpu" and (
        cfg.data_on_device == "always"
        or (cfg.data_on_device == "auto" and fits_on_device(data.images.numel(), device))
    ):
        # uint8 on the device: a quarter of the float size, converted per batch where it is used.
        data = data.to(device)
    return data


def _chw(shape: tuple[int, ...]) -> tuple[int, int, int]:
    channels, height, width = shape  # a conditioning image is (C, H, W): the spec's validation says so
    return channels, height, width


def _run_dir(
    options: TrainOptions, resolved: Resolved, checkpoint_path: Path | None, step: int
) -> tuple[Path, Path | None]:
    """The run folder of this session, and the run it branched from: a resume continues the checkpoint's own
    run, unless that run has gone further than the checkpoint (its history is kept, and a new folder made)."""
    run = _run_of(checkpoint_path) if checkpoint_path is not None else None
    if run is not None:
        newest = ckpt.newest_step(run)
        if newest <= step:
            return run, None
    if options.dry_run and "out" not in options.overrides:
        return outputs.make_run_dir(tempfile.mkdtemp(prefix="archspec-dry-run-"), resolved.spec.name), None
    return outputs.make_run_dir(resolved.train.out, resolved.spec.name), run


def _run_of(checkpoint_path: Path) -> Path | None:
    return ckpt.run_dir_of(checkpoint_path)


def _take(run_dir: Path) -> RunLock:
    """The run folder locked for this process, checked, and swept of what killed writes left."""
    lock = RunLock(run_dir)
    try:
        check_layout(run_dir)
        sweep_temporaries(run_dir)
    except BaseException:
        lock.release()
        raise
    return lock


def _remove_new_folder(run_dir: Path) -> None:
    """Remove a run folder this session made, with what setup put in it (the lock, a branch's history)."""
    with contextlib.suppress(OSError):
        for name in (LOCK_NAME, "metrics.jsonl"):
            (run_dir / name).unlink(missing_ok=True)
        run_dir.rmdir()


def _check_memory(resolved: Resolved, device: torch.device) -> None:
    """RunError, before anything is built, if the compiler's estimate of a step exceeds the device's memory."""
    batch = resolved.train.batch_size
    result = resolved.result
    if result.generator is None or result.discriminator is None:
        return
    estimate = totals(result.generator, result.discriminator, batch).train_memory_bytes
    problem = too_big(estimate, batch, device)
    if problem is not None:
        raise RunError(f"{resolved.path}: {problem}")
