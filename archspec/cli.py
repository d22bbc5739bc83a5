"""The ``archspec`` command line: one function per sub-command, each returning an exit code.

Exit codes: 0 valid, 1 invalid spec or unreadable file, 2 usage error. The trainer's sub-commands (train, sample,
data, bench) come in through the ``archspec.commands`` entry point, so this module never imports runner or torch.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

_CHECK_EXAMPLE = """example:
  archspec check specs/conv_gan.yaml                 tables, exit 0
  archspec check specs/broken/pad.yaml               file:line:col: error ... fix: padding: 1 gives 128×128
  archspec check specs/*.yaml --json | jq .totals    one JSON document per spec
"""
_SUMMARY_EXAMPLE = """example:
  archspec summary specs/conv_gan.yaml    torchinfo tables of both networks, built on the meta device
"""
_SCHEMA_EXAMPLE = """example:
  archspec schema > archspec.schema.json  then point your editor's YAML plug-in at it
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    parser = _parser(argv)
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def check_command(args: argparse.Namespace) -> int:
    from archspec.check import check_file
    from archspec.report import console, print_result, to_json

    # A one-shot command whose objects all live to its end: the cyclic collector would only re-traverse them,
    # which doubles the time on a spec of 60,000 layers.
    gc.disable()
    results = [check_file(path, batch_size=args.batch_size) for path in args.specs]
    if args.json:
        docs = [to_json(r) for r in results]
        # Indented JSON goes through the json module's pure-Python encoder (seconds for 60,000 layers); a spec
        # that long is printed compact, by its C encoder (which json.dumps alone uses).
        layers = sum(len(net.layers) for r in results for net in (r.generator, r.discriminator) if net)
        indent = 2 if layers <= _INDENTED_JSON_LAYERS else None
        sys.stdout.write(json.dumps(docs[0] if len(docs) == 1 else docs, indent=indent, ensure_ascii=False))
        sys.stdout.write("\n")
    else:
        out, err = console(sys.stdout), console(sys.stderr)
        for result in results:
            print_result(result, out, err)
    return 0 if all(r.ok for r in results) else 1


def summary_command(args: argparse.Namespace) -> int:
    from archspec.check import check_file
    from archspec.report import console, print_result

    result = check_file(args.spec)
    if not result.ok:
        print_result(result, console(sys.stdout), console(sys.stderr))
        return 1
    from archspec.summary import TooBig, summarize

    try:
        print(summarize(result, batch_size=args.batch_size, depth=args.depth))
    except TooBig as err:
        print(f"error: {args.spec}: {err}", file=sys.stderr)
        return 1
    return 0


def schema_command(args: argparse.Namespace) -> int:
    from archspec.spec import Spec

    schema = Spec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "archspec GAN spec"
    json.dump(schema, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


_BUILTIN = ("check", "summary", "schema")
_INDENTED_JSON_LAYERS = 5_000


def _parser(argv: Sequence[str] | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="archspec",
        description="GAN architectures as YAML: shapes checked with PyTorch's formulas before any weight exists.",
    )
    parser.add_argument("--version", action="version", version=f"archspec {_version()}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    check = _add(sub, "check", "validate specs and print every layer's shape", _CHECK_EXAMPLE)
    check.add_argument("specs", nargs="+", metavar="SPEC", help="spec files (YAML)")
    check.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    check.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        metavar="B",
        help="batch size for the training-memory total (default: the spec's train.batch_size)",
    )
    check.set_defaults(func=check_command)

    summary = _add(
        sub, "summary", "torchinfo summary of the built networks (meta device: no weights)", _SUMMARY_EXAMPLE
    )
    summary.add_argument("spec", metavar="SPEC")
    summary.add_argument("--batch-size", type=positive_int, default=1, metavar="B")
    summary.add_argument("--depth", type=positive_int, default=3)
    summary.set_defaults(func=summary_command)

    schema = _add(sub, "schema", "print the JSON Schema of the spec format", _SCHEMA_EXAMPLE)
    schema.set_defaults(func=schema_command)

    args = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in args if not a.startswith("-")), None)
    if command not in _BUILTIN:
        _plugins(sub)
    return parser


def _add(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help: str, example: str
) -> argparse.ArgumentParser:
    return sub.add_parser(
        name,
        help=help,
        description=help[0].upper() + help[1:] + ".",
        epilog=example,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _plugins(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Sub-commands registered by other packages (the trainer), loaded only when one may be asked for."""
    for entry in entry_points(group="archspec.commands"):
        entry.load()(sub)


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``low``."""
    wanted = "a positive integer" if low == 1 else f"{low} or more"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {value}")
        return value

    return parse


positive_int = int_at_least(1)


def _version() -> str:
    from archspec import __version__

    return __version__
