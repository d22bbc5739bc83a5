"""Sub-commands the trainer adds to ``archspec`` (train, sample, data pack, bench, eval).

``archspec.cli`` finds ``register`` through the ``archspec.commands`` entry point, so the compiler never imports
the runner. This module must stay light: argparse only; torch is imported inside the commands. Every command
returns an exit code and reports a user's mistake as one ``error: ...`` line on stderr, never a traceback (under
torchrun from rank 0 only: every rank meets the same mistake).
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archspec.builtin import find_spec
from archspec.cli import int_at_least, positive_int
from archspec.errors import SpecInvalid
from archspec.words import plural
from runner.config import Flag, train_flags
from runner.errors import RunError

if TYPE_CHECKING:
    from runner.pack import Pairs
    from runner.pack_labels import LabelSource

    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

Command = Callable[[argparse.Namespace], int]

EXIT_INTERRUPTED = 130

_TRAIN_EXAMPLE = """examples:
  archspec train specs/conv_gan.yaml                          built-in synthetic faces, no download
  archspec train specs/conv_gan.yaml --data celeba128.h5      CUDA when present (see `archspec data pack`)
  archspec train specs/conv_gan.yaml --dry-run                one step of everything on random data
  archspec train specs/tiny.yaml --max-steps 200 --batch-size 32 --lr 2e-4 --ema 0.999
  archspec train specs/conv_gan.yaml --resume auto            continue the latest run of this spec
  torchrun --standalone --nproc_per_node=4 -m archspec train specs/conv_gan.yaml --batch-size 256
                                                              DDP on 4 GPUs (batch per process)

Every train: field of the spec has a flag; an override is checked like the file (`archspec check`).
Outputs go to OUT/<spec name>/<run id>/: metrics.jsonl, loss.png, samples/, checkpoints/, spec.yaml, run.json.
Ctrl-C, SIGTERM and SIGHUP finish the step, save checkpoints/last.pt and exit with 128+N (130, 143, 129);
a second signal stops at once.
"""
_SAMPLE_EXAMPLE = """example:
  archspec sample runs/conv_gan/20261128-021500/checkpoints/last.pt --n 16 --out grid.png
  archspec sample runs/conv_gan/20261128-021500      the newest checkpoint, into the run's samples/
  archspec sample runs/pg_cgan/RUN                    class-conditional: one row per class
  archspec sample runs/pg_cgan/RUN --class 7 --n 16   16 images of class 7 (a class name or index)
  archspec sample runs/pix2pix/RUN --input photos/    translate each image under photos/ (one PNG each)
"""
_BENCH_EXAMPLE = """examples:
  archspec bench specs/tiny.yaml                               a few seconds on a CPU
  archspec bench specs/conv_gan.yaml --steps 30 --batch-size 256 --json bench.json
  archspec bench specs/conv_gan.yaml --compile --fast-batch-size 512

Loops: (a) the seed's one-image loop by hand, (b) archspec fp32 at --batch-size, (c) archspec with bf16 +
channels_last + fused Adam + data on the device at --fast-batch-size, (d) (b)'s updates by hand.
MFU = images/s x the compiler's train-step FLOPs per image / the GPU's peak FLOP/s.
"""
_PACK_EXAMPLE = """examples:
  archspec data pack img_align_celeba.zip celeba128.h5 --size 128 --limit 20000
  archspec train specs/conv_gan.yaml --data celeba128.h5
  archspec data pack lfw_subset.npy lfw32.h5 --size 32 --resize --channels 1    grey faces, one channel
"""
_PACK_CONDITIONS = """
labels (a dataset 'labels' with the class names beside 'images'):
  archspec data pack pets/ pets64.h5 --size 64 --resize --labels folders
      one sub-folder per class (torchvision's ImageFolder): pets/cat/1.jpg, pets/dog/7.jpg; classes in
      sorted folder order, every sub-folder a class
  archspec data pack img_align_celeba.zip celeba64.h5 --size 64 --resize \\
      --labels list_attr_celeba.txt --attributes Male,Smiling
      an attribute table (line 1: count; line 2: names; then `000001.jpg -1 1 ...`), rows matched by file
      name; one attribute makes 2 classes (0 'not Male', 1 'Male'), k make their 2^k combinations, the
      first attribute the highest bit: 0 'not Male,not Smiling', 1 'not Male,Smiling', 2 'Male,not Smiling',
      3 'Male,Smiling'
  archspec data pack digits.npy digits32.h5 --size 32 --resize --channels 1 --labels digits_labels.npy
      a .npy (or text file, one integer per line) of class indices aligned with the images (a .npy's in
      its order, a folder's in sorted path order); classes '0'..'K-1' unless --class-names zero,one,...
      (floats past 1, like the digits' 0..16, are divided by the array's maximum)

paired images (a dataset 'inputs' of condition images, pix2pix's A, beside 'images', its B):
  archspec data pack facades/train facades256.h5 --size 256 --side-by-side
      each file holds A (left half, the input) and B (right half, the target); --direction BtoA swaps them
  archspec data pack photos/ pairs64.h5 --size 64 --resize --inputs edges/ --input-channels 1
      SRC holds the targets, --inputs the condition images, matched by relative file name (by order when
      either is a .npy); each pair must have one size
"""
_EVAL_EXAMPLE = """examples:
  archspec eval runs/tiny/20261128-021500 --data synthetic --n 2000      swd and ndb without Inception weights
  archspec eval runs/conv_gan/20261128-021500/checkpoints/last.pt --data celeba128.h5 --json
  archspec eval RUN --data celeba128.h5 --metrics fid,kid --inception pt_inception-2015-12-05-6726825d.pth

Metrics: fid, kid, pr (precision/recall, k=3), is on the FID Inception-v3 (weights from --inception, the torch hub
cache, or a download); swd and ndb on the pixels, without weights. Default: all six when the weights are found,
else swd,ndb. The real images' Inception features are cached in DATA.archspec-ref/ beside the data file.
"""


def register(subparsers: SubParsers) -> None:
    """Add the runner's sub-commands; each sets ``func(args) -> exit code``."""
    _add_train(subparsers)
    _add_sample(subparsers)
    _add_data(subparsers)
    _add_bench(subparsers)
    _add_eval(subparsers)


def train_command(args: argparse.Namespace) -> int:
    """``archspec train``: train a spec; 0 when done, 130 after Ctrl-C (last.pt saved)."""
    from runner.train import TrainOptions, train

    overrides = {k[len("set_") :]: v for k, v in vars(args).items() if k.startswith("set_")}
    options = TrainOptions(
        spec=find_spec(args.spec),
        overrides=overrides,
        resume=args.resume,
        dry_run=args.dry_run,
        limit=args.limit,
        live=args.progress,
    )
    report = train(options)
    if report.status == "interrupted":
        by = f" by {report.signal}" if report.signal else ""
        print(
            f"interrupted{by} at step {report.step}: saved {report.checkpoint}; resume with: {report.resume_hint}",
            file=sys.stderr,
        )
    if report.signal is not None:
        return 128 + signal.Signals[report.signal].value  # as a shell reports a process the signal ended
    return EXIT_INTERRUPTED if report.status == "interrupted" else 0


def sample_command(args: argparse.Namespace) -> int:
    """``archspec sample``: a PNG grid from a checkpoint."""
    from runner.sample import sample

    out = Path(args.out) if args.out is not None else None
    if args.input is not None:
        from runner.translate import translate

        done = translate(
            Path(args.checkpoint),
            Path(args.input),
            out,
            seed=args.seed,
            device=args.device,
            force=args.force,
            label=args.label,
        )
        print(
            f"wrote {plural(len(done.written), 'translation')} to {done.out} from the {done.weights} weights at "
            f"step {done.step}"
        )
        return 0
    report = sample(
        Path(args.checkpoint),
        args.n,
        out,
        seed=args.seed,
        device=args.device,
        force=args.force,
        label=args.label,
    )
    print(
        f"wrote {report.path}: {plural(report.count, 'image')} from the {report.weights} weights at step {report.step}"
    )
    return 0


def bench_command(args: argparse.Namespace) -> int:
    """``archspec bench``: time the trainer's step against hand-written loops; print a table, write JSON."""
    from runner.bench import BenchOptions, check_json_path, print_result, run_bench, write_json

    options = BenchOptions(
        spec=find_spec(args.spec),
        steps=args.steps,
        warmup=args.warmup,
        batch_size=args.batch_size,
        fast_batch_size=args.fast_batch_size,
        device=args.device,
        data=args.data,
        compile=args.compile,
        peak_tflops=args.peak_tflops,
        variants=tuple(args.only.split(",")) if args.only else BenchOptions.variants,
    )

    if args.json is not None:
        check_json_path(Path(args.json), args.force)  # before the benchmark, which may take minutes

    def progress(what: str) -> None:
        print(f"{what} ...", file=sys.stderr, flush=True)

    result = run_bench(options, progress)
    print_result(result, sys.stdout)
    if args.json is not None:
        write_json(result, Path(args.json))
        print(f"wrote {args.json}")
    return 0


def pack_command(args: argparse.Namespace) -> int:
    """``archspec data pack``: a folder or zip of images into one HDF5 file."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from runner.pack import pack_images

    console = Console(stderr=True)
    columns = (TextColumn("packing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task("pack", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        report = pack_images(
            Path(args.src),
            Path(args.out),
            args.size,
            args.limit,
            args.resize,
            advance,
            overwrite=args.force,
            channels=args.channels,
            labels=_label_source(args),
            pairs=_pairs(args),
        )
    n, height, width, channels = report.shape
    print(
        f"packed {plural(report.count, 'image')} into {report.path}, each {report.fitted}: dataset 'images' "
        f"{n}x{height}x{width}x{channels} uint8"
    )
    if report.input_shape is not None:
        print(
            f"dataset 'inputs' {'x'.join(map(str, report.input_shape))} uint8: the condition image of each pair"
        )
    if report.class_names is not None and report.class_counts is not None:
        print(f"dataset 'labels' {n} int64, {_classes(report.class_names, report.class_counts)}")
    for note in report.notes:
        print(note)
    return 0


def _label_source(args: argparse.Namespace) -> LabelSource | None:
    from runner.pack_labels import LabelSource

    if args.labels is None:
        if args.attributes or args.class_names:
            option = "--attributes" if args.attributes else "--class-names"
            raise RunError(f"{option}: give the labels too (--labels FILE)")
        return None
    return LabelSource(
        args.labels,
        tuple(_names(args.attributes)),
        None if args.class_names is None else tuple(_names(args.class_names)),
    )


def _pairs(args: argparse.Namespace) -> Pairs | None:
    from runner.pack import Pairs

    if not args.side_by_side and args.inputs is None:
        for option, value in (("--direction", args.direction), ("--input-channels", args.input_channels)):
            if value is not None:
                raise RunError(f"{option}: only for pairs (--side-by-side or --inputs A_SRC)")
        return None
    inputs = None if args.inputs is None else Path(args.inputs)
    return Pairs(inputs, args.side_by_side, args.direction or "AtoB", args.input_channels)


def _names(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _classes(names: tuple[str, ...], counts: tuple[int, ...]) -> str:
    """ "3 classes: cat 40, dog 52, eel 0", the first few of many."""
    shown = ", ".join(f"{name} {count:,}" for name, count in list(zip(names, counts, strict=True))[:12])
    more = f", ... ({len(names) - 12} more)" if len(names) > 12 else ""
    return f"{plural(len(names), 'class', 'classes')} (images each): {shown}{more}"


def eval_command(args: argparse.Namespace) -> int:
    """``archspec eval``: metrics of a checkpoint's images against a data set, as a table or JSON."""
    import json

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from runner.evaluate import EvalOptions, evaluate, format_report, parse_metrics

    options = EvalOptions(
        target=Path(args.target),
        data=args.data,
        n=args.n,
        metrics=parse_metrics(args.metrics) if args.metrics is not None else None,
        inception=Path(args.inception) if args.inception is not None else None,
        batch_size=args.batch_size,
        device=args.device,
        seed=args.seed,
    )
    console = Console(stderr=True)
    columns = (TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
        tasks: dict[str, Any] = {}

        def advance(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        report = evaluate(options, advance)
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    print(json.dumps(report.to_json(), indent=2) if args.json else format_report(report))
    return 0


# --- parsers ------------------------------------------------------------------------------------------------------


def _add_train(subparsers: SubParsers) -> None:
    parser = _parser(subparsers, "train", "train a spec's GAN (CUDA when present, else CPU)", _TRAIN_EXAMPLE)
    parser.add_argument("spec", metavar="SPEC", help="spec file (YAML), or a built-in spec by name")
    parser.add_argument(
        "--resume",
        metavar="auto|PATH",
        help="continue a run: 'auto' (the newest run of this spec), a checkpoint or a run folder",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="one step of everything (random data unless --data) into a temporary folder",
    )
    parser.add_argument("--limit", type=positive_int, metavar="N", help="use only the first N images")
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="live progress bar (default: only on a terminal and not under CI)",
    )
    group = parser.add_argument_group("train: section overrides")
    for flag in train_flags():
        _add_flag(group, flag)
    parser.set_defaults(func=_guarded(train_command))


def _add_sample(subparsers: SubParsers) -> None:
    parser = _parser(subparsers, "sample", "draw a grid of images from a checkpoint", _SAMPLE_EXAMPLE)
    parser.add_argument(
        "checkpoint",
        metavar="CHECKPOINT",
        help="a .pt file written by archspec train, or a run folder (its newest)",
    )
    parser.add_argument(
        "--n", type=positive_int, default=16, help="number of images (default 16, at most 1024)"
    )  # 1024: runner.sample.MAX_IMAGES, not imported here since it would bring torch
    parser.add_argument(
        "--out",
        metavar="FILE.png",
        help="where to write the grid (default: RUN/samples/sample_stepSTEP_seedSEED_nN.png); with --input "
        "a folder: the PNG (one input) or the folder of PNGs (a folder of inputs)",
    )
    parser.add_argument(
        "--class",
        dest="label",
        metavar="NAME_OR_INDEX",
        help="a class-conditional run: draw this class only (default: one row per class)",
    )
    parser.add_argument(
        "--input",
        metavar="FILE_OR_FOLDER",
        help="a paired (image-to-image) run: translate this image, or every image under this folder",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the latent vectors (default 0)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    parser.set_defaults(func=_guarded(sample_command))


def _add_data(subparsers: SubParsers) -> None:
    parser = _parser(subparsers, "data", "prepare image data for training", _PACK_EXAMPLE)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    pack = _parser(
        commands,
        "pack",
        "pack a folder, .zip or .npy of images into one HDF5 file",
        _PACK_EXAMPLE + _PACK_CONDITIONS,
    )
    pack.add_argument(
        "src",
        metavar="SRC",
        help="a folder (searched recursively) or a .zip of images, or a .npy array (N, H, W[, C]) of "
        "uint8 or floats >= 0 (in [0, 1], else divided by their maximum)",
    )
    pack.add_argument("out", metavar="OUT.h5", help="the HDF5 file to write")
    pack.add_argument(
        "--size", type=positive_int, default=128, help="centre-crop to SIZE x SIZE (default 128)"
    )
    pack.add_argument(
        "--limit", type=positive_int, metavar="N", help="the first N images (in sorted path order)"
    )
    pack.add_argument("--resize", action="store_true", help="scale the shorter side to SIZE before cropping")
    pack.add_argument(
        "--channels",
        type=int,
        choices=(1, 3),
        default=3,
        help="3: RGB (default); 1: grey, for a spec whose image has one channel",
    )
    pack.add_argument("--force", action="store_true", help="replace OUT.h5 if it exists")
    labels = pack.add_argument_group("labels (see the examples below)")
    labels.add_argument(
        "--labels",
        metavar="folders|FILE",
        help="'folders': one sub-folder per class; FILE: a .npy or text file of class indices aligned with the "
        "images, or with --attributes an attribute table such as CelebA's list_attr_celeba.txt",
    )
    labels.add_argument(
        "--attributes",
        metavar="A,B,...",
        help="the attributes of the table to use: 1 makes 2 classes, k make their 2^k combinations",
    )
    labels.add_argument(
        "--class-names",
        metavar="A,B,...",
        help="names of classes 0, 1, ... of a label file (default '0'..'K-1')",
    )
    pairs = pack.add_argument_group("paired images (see the examples below)")
    pairs.add_argument(
        "--side-by-side",
        action="store_true",
        help="each file holds A (input) left and B (target) right, as pix2pix's",
    )
    pairs.add_argument(
        "--direction", choices=("AtoB", "BtoA"), help="AtoB (default): A is the input; BtoA: B is the input"
    )
    pairs.add_argument(
        "--inputs",
        metavar="A_SRC",
        help="a folder, .zip or .npy of condition images matched to SRC's by relative file name (by order for a .npy)",
    )
    pairs.add_argument(
        "--input-channels",
        type=int,
        choices=(1, 3),
        help="channels of the condition images (default: --channels)",
    )
    pack.set_defaults(func=_guarded(pack_command))
    parser.set_defaults(func=functools.partial(_usage, parser))


def _add_bench(subparsers: SubParsers) -> None:
    parser = _parser(
        subparsers, "bench", "time training steps against hand-written PyTorch loops", _BENCH_EXAMPLE
    )
    parser.add_argument("spec", metavar="SPEC", help="spec file (YAML), or a built-in spec by name")
    parser.add_argument(
        "--steps", type=positive_int, default=50, metavar="N", help="timed steps per loop (default 50)"
    )
    parser.add_argument(
        "--warmup", type=int_at_least(0), default=3, metavar="N", help="untimed steps first (default 3)"
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        metavar="B",
        help="batch of (b) and (d) (default: the spec's, or 64 if it trains one image at a time)",
    )
    parser.add_argument("--fast-batch-size", type=positive_int, metavar="B", help="batch of (c) (default: B)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--data", default="synthetic", metavar="PATH|synthetic|random", help="images (default synthetic)"
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the networks of (c)")
    parser.add_argument(
        "--peak-tflops",
        type=float,
        metavar="X",
        help="peak TFLOP/s for the MFU column (default: by GPU name)",
    )
    parser.add_argument("--only", metavar="LIST", help="some of seed,fp32,fast,hand (default: all four)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--force", action="store_true", help="overwrite --json if it exists")
    parser.set_defaults(func=_guarded(bench_command))


def _add_eval(subparsers: SubParsers) -> None:
    parser = _parser(subparsers, "eval", "measure a checkpoint's images against a data set", _EVAL_EXAMPLE)
    parser.add_argument(
        "target",
        metavar="RUN_OR_CHECKPOINT",
        help="a .pt file written by archspec train, or a run folder (its newest)",
    )
    parser.add_argument(
        "--data", required=True, metavar="PATH|synthetic", help="the real images: an HDF5 file or synthetic"
    )
    parser.add_argument(
        "--n",
        type=int,
        default=10_000,
        help="images generated, and real images read (default 10,000, as FID is reported)",
    )  # 10,000: runner.evaluate.DEFAULT_N, not imported here since it would bring torch
    parser.add_argument(
        "--metrics", metavar="LIST", help="some of fid,kid,pr,is,swd,ndb (default: see below)"
    )
    parser.add_argument("--inception", metavar="PATH", help="the FID Inception weights file (.pth)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=64,
        metavar="B",
        help="images per Inception pass (default 64)",
    )
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: the run's train.device)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latent vectors (default 0)")
    parser.set_defaults(func=_guarded(eval_command))


def _parser(subparsers: SubParsers, name: str, help: str, example: str) -> argparse.ArgumentParser:
    return subparsers.add_parser(
        name,
        help=help,
        description=help[0].upper() + help[1:] + ".",
        epilog=example,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _add_flag(group: argparse._ArgumentGroup, flag: Flag) -> None:
    common: dict[str, Any] = {"dest": f"set_{flag.field}", "default": argparse.SUPPRESS, "help": flag.help}
    if flag.kind == "bool":
        group.add_argument(flag.option, action=argparse.BooleanOptionalAction, **common)
    elif flag.kind == "choice":
        group.add_argument(flag.option, choices=flag.choices, **common)
    elif flag.kind == "pair":
        group.add_argument(flag.option, nargs=2, type=_typed(flag), metavar=("B1", "B2"), **common)
    else:
        group.add_argument(flag.option, type=_typed(flag), metavar=flag.metavar, **common)


def _typed(flag: Flag) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return flag.parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {flag.kind_name}, got {text!r}") from None

    parse.__name__ = flag.kind  # argparse names the type in its messages
    return parse


def _guarded(command: Command) -> Command:
    """Run ``command``, turning the errors a user can cause into one line on stderr and exit code 1."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except SpecInvalid as err:
            if _main_rank():
                for error in err.errors:
                    print(error.render(), file=sys.stderr)
            return 1
        except RunError as err:
            if _main_rank():
                print(f"error: {err}", file=sys.stderr)
            return 1
        except KeyboardInterrupt as err:
            # A first Ctrl-C outside training, or a second stop signal (StopNow, which carries its number).
            signum = getattr(err, "signum", signal.SIGINT)
            again = " (a second stop signal: stopped at once)" if hasattr(err, "signum") else ""
            print(f"error: interrupted by {signal.Signals(signum).name}{again}", file=sys.stderr)
            return 128 + signum
        except OSError as err:
            # A file system fault no command foresaw (a full disk, a read-only folder): still one line.
            where = f"{err.filename}: " if err.filename else ""
            print(f"error: {where}{err.strerror or err}", file=sys.stderr)
            return 1

    return run


def _main_rank() -> bool:
    # torchrun's RANK; read here without importing torch.distributed, which this module must not.
    return os.environ.get("RANK", "0") == "0"


def _usage(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    parser.print_help(sys.stderr)
    return 2
