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
from pathlib import Path

from archspec.builtin import find_spec

_CHECK_EXAMPLE = """example:
  archspec check specs/conv_gan.yaml                 tables, exit 0
  archspec check specs/broken/pad.yaml               file:line:col: error ... fix: padding: 1 gives 128×128
  archspec check specs/*.yaml --json | jq .totals    one JSON document per spec
  archspec check specs/*.yaml --format github        errors as GitHub Actions annotations (CI)
"""
_SUMMARY_EXAMPLE = """example:
  archspec summary specs/conv_gan.yaml    torchinfo tables of both networks, built on the meta device
"""
_LIST_EXAMPLE = """example:
  archspec list                          the specs that ship with archspec, by name
  archspec check conv_gan                a built-in spec, by name
"""
_NEW_EXAMPLE = """example:
  archspec new my_gan --from dcgan64     writes my_gan.yaml (name: my_gan), a copy of the built-in dcgan64
  archspec new faces/v2.yaml --from my_gan.yaml
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
    from archspec.report import console, github_annotations, print_result, to_json

    # A one-shot command whose objects all live to its end: the cyclic collector would only re-traverse them,
    # which doubles the time on a spec of 60,000 layers.
    gc.disable()
    results = [check_file(find_spec(path), batch_size=args.batch_size) for path in args.specs]
    if args.format == "github":
        for result in results:
            sys.stdout.write("".join(line + "\n" for line in github_annotations(result)))
    elif args.json or args.format == "json":
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

    result = check_file(find_spec(args.spec))
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


def list_command(args: argparse.Namespace) -> int:
    from archspec.builtin import builtin_specs, specs_dir

    specs = builtin_specs()
    width = max((len(s.name) for s in specs), default=0)
    for spec in specs:
        print(f"{spec.name:<{width}}  {spec.summary}")
    print(f"({len(specs)} specs in {specs_dir()}; name one instead of a path: archspec check conv_gan)")
    return 0


def new_command(args: argparse.Namespace) -> int:
    from archspec.builtin import SPEC_NAME, SUFFIX, find_spec, renamed

    out = Path(args.name if args.name.endswith(SUFFIX) else args.name + SUFFIX)
    name = out.name[: -len(SUFFIX)]
    source = Path(find_spec(args.source))
    if not SPEC_NAME.match(name):
        return _fail(f"{args.name}: a spec name takes letters, digits, _ . - only")
    if out.exists() and not args.force:
        return _fail(f"{out}: already exists; pass --force to replace it")
    if not out.parent.is_dir():
        return _fail(f"{out.parent}: no such folder")
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        return _fail(
            f"{args.source}: not a spec file or a built-in spec name ({err.__class__.__name__}); "
            "see `archspec list`"
        )
    out.write_text(renamed(text, name), encoding="utf-8")
    print(f"wrote {out} (name: {name}), a copy of {args.source}; next: archspec check {out}")
    return 0


def schema_command(args: argparse.Namespace) -> int:
    from archspec.schema import spec_schema

    json.dump(spec_schema(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


_BUILTIN = ("check", "summary", "schema", "list", "new")
_INDENTED_JSON_LAYERS = 5_000


def _parser(argv: Sequence[str] | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="archspec",
        description="GAN architectures as YAML: shapes checked with PyTorch's formulas before any weight exists.",
    )
    parser.add_argument("--version", action="version", version=f"archspec {_version()}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    check = _add(sub, "check", "validate specs and print every layer's shape", _CHECK_EXAMPLE)
    check.add_argument(
        "specs",
        nargs="+",
        metavar="SPEC",
        help="spec files (YAML), or built-in specs by name (archspec list)",
    )
    check.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    check.add_argument(
        "--format",
        choices=("text", "json", "github"),
        default="text",
        help="text (tables; errors as FILE:LINE:COL: error: ...), json (= --json), or github: one "
        "::error file=,line=,col=:: annotation per error, for GitHub Actions",
    )
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

    listing = _add(sub, "list", "list the specs that ship with archspec", _LIST_EXAMPLE)
    listing.set_defaults(func=list_command)

    new = _add(sub, "new", "start a spec from a built-in one (or any spec file)", _NEW_EXAMPLE)
    new.add_argument("name", metavar="NAME", help="the new spec's name; writes NAME.yaml")
    new.add_argument(
        "--from",
        dest="source",
        default="dcgan32",
        metavar="SPEC",
        help="a built-in spec's name (archspec list) or a spec file (default: dcgan32)",
    )
    new.add_argument("--force", action="store_true", help="replace NAME.yaml if it exists")
    new.set_defaults(func=new_command)

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


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


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
