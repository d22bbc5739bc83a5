"""Present a CheckResult: rich tables for people, one JSON document for programs. The only rich importer."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from archspec.check import CheckResult
from archspec.trace import NetworkTrace, Totals

# Bounds on what a terminal is shown of a huge spec (rendering 60,000 rows takes rich minutes): the first and
# last layers of a longer network, the first errors and a count of the rest.
MAX_TABLE_ROWS = 200
MAX_ERRORS = 50


def console(file: TextIO | None = None) -> Console:
    """A console that writes plain text (no colour codes) when piped or when NO_COLOR is set.

    Piped output gets a fixed width so tables never wrap mid-row in logs and golden files.
    """
    file = file or sys.stdout
    tty = file.isatty()
    width = None if tty else int(os.environ.get("COLUMNS", "160"))
    return Console(
        file=file,
        width=width,
        no_color=not tty or "NO_COLOR" in os.environ,
        highlight=False,
        soft_wrap=False,
        emoji=False,
    )


@dataclass(frozen=True)
class Wide:
    """A table printed whole to a file, however wide: a graph's, with its ``from`` column and indented blocks."""

    table: Table

    def __rich__(self) -> Table:
        return self.table


def emit(target: Console, *renderables: Any, soft_wrap: bool = False) -> None:
    """Print to a terminal as rich does; to a pipe or file without the padding spaces rich leaves at line ends.

    ``soft_wrap`` prints text lines whole, however wide: an error line stays one line for editors and CI.
    """
    if target.is_terminal:
        for renderable in renderables:
            target.print(renderable, soft_wrap=soft_wrap)
        return
    with target.capture() as captured:
        for renderable in renderables:
            # A graph's table may be wider than the page: a file gets it whole, never with cells cut short.
            page = target.width
            if isinstance(renderable, Wide):
                renderable = renderable.table
                natural = Measurement.get(target, target.options.update(width=100_000), renderable).maximum
                target.width = max(page, natural)
            target.print(renderable, soft_wrap=soft_wrap)
            target.width = page
    target.file.write("\n".join(line.rstrip() for line in captured.get().splitlines()) + "\n")


def print_result(result: CheckResult, out: Console, err: Console) -> None:
    """Tables and the contract line for a valid spec; every error for an invalid one."""
    if result.errors:
        n = len(result.errors)
        shown = [Text(error.render()) for error in result.errors[:MAX_ERRORS]]
        if n > MAX_ERRORS:
            shown.append(Text(f"... and {n - MAX_ERRORS:,} more errors (--json lists them all)"))
        summary = Text(f"{result.file}: {n:,} error{'s' if n > 1 else ''}", style="bold red")
        emit(err, *shown, summary, soft_wrap=True)
        return
    assert result.spec is not None and result.generator and result.discriminator and result.totals
    name = result.spec.name
    g, d = result.generator, result.discriminator
    parts: list[Any] = [
        network_table(f"{name} · generator", g, _caption(g, "latent", "image")),
        network_table(f"{name} · discriminator", d, _caption(d, "image", "score")),
        Text(
            f"✓ generator out {_shape(g.output)} = image {_shape(result.spec.image)} = discriminator in "
            f"{_shape(result.spec.image)}; discriminator out {_shape(d.output)}",
            style="green",
        ),
        totals_table(result.totals),
    ]
    emit(out, *parts)
    blocker = result.training_blocker
    if blocker:
        note = f"note: archspec train cannot train this spec: {blocker} (check and summary work)"
        emit(out, Text(note), soft_wrap=True)


def _caption(net: NetworkTrace, given: str, makes: str) -> str:
    graph = net.graph
    if graph is None or graph.chain:
        return f"{given} {_shape(net.input)} → {makes} {_shape(net.output)}"
    ins = ", ".join(
        f"{i.name} " + (f"label({i.classes})" if i.classes is not None else _shape(i.shape))
        for i in graph.inputs
    )
    outs = ", ".join(f"{n} {_shape(o)}" for n, o in zip(graph.output_names, net.outputs, strict=True))
    return f"{ins} → {outs}"


def network_table(title: str, net: NetworkTrace, caption: str) -> Table | Wide:
    if net.graph is not None and not net.graph.chain:
        return Wide(_graph_table(title, net, caption))
    table = Table(title=f"{title}    {caption}", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for header, justify in (
        ("#", "right"),
        ("layer", "left"),
        ("input", "left"),
        ("output", "left"),
        ("size arithmetic", "left"),
        ("params", "right"),
        ("MACs", "right"),
        ("act/sample", "right"),
    ):
        table.add_column(header, justify="right" if justify == "right" else "left", no_wrap=True)
    half = MAX_TABLE_ROWS // 2
    hidden = len(net.layers) - MAX_TABLE_ROWS
    for t in net.layers[:half] + net.layers[-half:] if hidden > 0 else net.layers:
        if hidden > 0 and t.index == net.layers[-half].index:
            table.add_row("⋮", f"{hidden:,} more layers (--json lists them all)", "", "", "", "", "", "")
        shape_changed = t.output != t.input
        table.add_row(
            str(t.index),
            (t.layer.name + ": " if t.layer.name else "") + t.label,
            _shape(t.input),
            _shape(t.output) if shape_changed else "″",
            "; ".join(t.arithmetic),
            _count(t.params),
            _count(t.macs),
            _bytes(t.activation_bytes),
        )
    table.add_section()
    table.add_row("", "total", "", "", "", f"{net.params:,}", f"{net.macs:,}", _bytes(net.activation_bytes))
    return table


def _graph_table(title: str, net: NetworkTrace, caption: str) -> Table:
    """A graph: block uses and repeats as rows of their own with their members indented beneath, a ``from``
    column for the layers that read named values, and per-block totals."""
    graph = net.graph
    assert graph is not None
    table = Table(title=f"{title}    {caption}", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for header in (
        "#",
        "layer",
        "from",
        "input",
        "output",
        "size arithmetic",
        "params",
        "MACs",
        "act/sample",
    ):
        right = header in ("params", "MACs", "act/sample")
        table.add_column(header, justify="right" if right else "left", no_wrap=True)
    rows = list(_graph_rows(net))
    half = MAX_TABLE_ROWS // 2
    hidden = len(rows) - MAX_TABLE_ROWS
    if hidden > 0:  # as a chain's: the first and last rows of a long graph, the count of the rest
        rows = [
            *rows[:half],
            (("⋮", f"{hidden:,} more rows (--json lists every layer)", *[""] * 7), None),
            *rows[-half:],
        ]
    for cells, style in rows:
        table.add_row(*cells, style=style)
    table.add_section()
    table.add_row(
        "", "total", "", "", "", "", f"{net.params:,}", f"{net.macs:,}", _bytes(net.activation_bytes)
    )
    return table


def _graph_rows(net: NetworkTrace) -> Iterator[tuple[tuple[str, ...], str | None]]:
    """The rows of a graph's table: each block use or repeat (bold) above its members, indented by depth."""
    graph = net.graph
    assert graph is not None
    by_index = {t.index: t for t in net.layers}
    starts: dict[int, list[Any]] = {}
    for group in graph.groups:
        starts.setdefault(group.first, []).append(group)
    for t in net.layers:
        for group in sorted(starts.get(t.index, []), key=lambda g: g.depth):
            members = [by_index[i] for i in range(group.first, group.last + 1) if i in by_index]
            yield (
                (
                    group.key,
                    "  " * group.depth + group.label,
                    ", ".join(group.reads),
                    _shape(members[0].input) if members else "",
                    _shape(members[-1].output) if members else "",
                    "",
                    _count(sum(m.params for m in members)),
                    _count(sum(m.macs for m in members)),
                    _bytes(sum(m.activation_bytes for m in members)),
                ),
                "bold",
            )
        yield (
            (
                t.node.key,
                "  " * t.node.depth + (t.layer.name + ": " if t.layer.name else "") + t.label,
                ", ".join(t.node.reads),
                " ".join(_shape(s) if s else "label" for s in t.inputs)
                if len(t.inputs) > 1
                else _shape(t.input),
                ", ".join(_shape(o) for o in t.outputs)
                if t.outputs
                else (_shape(t.output) if t.output != t.input else "″"),
                "; ".join(t.arithmetic),
                _count(t.params),
                _count(t.macs),
                _bytes(t.activation_bytes),
            ),
            None,
        )


def totals_table(t: Totals) -> Table:
    table = Table(
        title=f"training step at batch size {t.batch_size} (float32, Adam)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        show_header=False,
    )
    table.add_column("what")
    table.add_column("value", justify="right")
    rows = [
        ("parameters", f"{t.params:,} (G {t.params_generator:,} + D {t.params_discriminator:,})"),
        ("MACs per sample", f"G {t.macs_generator:,} · D {t.macs_discriminator:,}"),
        ("FLOPs per image per step", f"{t.train_step_flops / 1e9:,.2f} GFLOP (D real + D fake + G)"),
        (
            "  of which needed",
            f"{t.model_flops / 1e9:,.2f} GFLOP (without D's weight gradients in G's update)",
        ),
        ("weights", _bytes(t.weights_bytes)),
        ("gradients", _bytes(t.gradients_bytes)),
        ("Adam state", _bytes(t.adam_bytes)),
        (f"activations × {t.batch_size}", _bytes(t.activations_bytes)),
        ("training memory", _bytes(t.train_memory_bytes)),
    ]
    for row in rows:
        table.add_row(*row)
    return table


def github_annotations(result: CheckResult) -> list[str]:
    """GitHub Actions workflow commands, one ``::error file=,line=,col=::`` line per error (arithmetic and fix
    in the message, as escaped newlines), then a plain line naming the file and its count."""
    lines = []
    for error in result.errors:
        where = f"file={_github_property(error.file)}"
        if error.line > 0:
            where += f",line={error.line},col={error.column}"
        body = [(f"{error.path}: " if error.path else "") + error.message, *error.detail]
        if error.fix:
            body.append(f"fix: {error.fix}")
        lines.append(f"::error {where},title=archspec::{_github_data(chr(10).join(body))}")
    n = len(result.errors)
    lines.append(f"{result.file}: {n} error{'s' if n > 1 else ''}" if n else f"{result.file}: ok")
    return lines


def to_json(result: CheckResult) -> dict[str, Any]:
    """The same facts as the tables, as one JSON-ready document."""
    doc: dict[str, Any] = {"file": result.file, "valid": result.ok}
    if result.spec is not None:
        doc["name"] = result.spec.name
        doc["image"] = list(result.spec.image)
        doc["latent"] = result.spec.latent.model_dump() if result.spec.latent else None
    for net in (result.generator, result.discriminator):
        if net is not None:
            doc[net.role] = _network_json(net)
    totals = result.totals
    if totals is not None:
        doc["totals"] = {
            "batch_size": totals.batch_size,
            "params": totals.params,
            "params_generator": totals.params_generator,
            "params_discriminator": totals.params_discriminator,
            "macs_generator": totals.macs_generator,
            "macs_discriminator": totals.macs_discriminator,
            "train_step_flops": totals.train_step_flops,
            "model_flops": totals.model_flops,
            "weights_bytes": totals.weights_bytes,
            "gradients_bytes": totals.gradients_bytes,
            "adam_bytes": totals.adam_bytes,
            "activations_bytes": totals.activations_bytes,
            "train_memory_bytes": totals.train_memory_bytes,
        }
    doc["errors"] = [e.to_json() for e in result.errors]
    if result.ok:
        doc["trainable"] = result.training_blocker is None
        doc["training_blocker"] = result.training_blocker
    return doc


def _network_json(net: NetworkTrace) -> dict[str, Any]:
    graph = net.graph
    block: dict[int, str] = {}
    for group in graph.groups if graph is not None else ():
        for i in range(group.first, group.last + 1):
            block[i] = group.key  # groups are listed outer first: the innermost one wins
    return {
        "input": list(net.input),
        "inputs": [
            {"name": i.name, "kind": i.kind, "shape": list(i.shape), "classes": i.classes}
            for i in (graph.inputs if graph is not None else ())
        ],
        "outputs": [list(o) if o is not None else None for o in net.outputs],
        "output": list(net.output) if net.output is not None else None,
        "params": net.params,
        "macs": net.macs,
        "activation_bytes": net.activation_bytes,
        "layers": [
            {
                "index": t.index,
                "key": t.node.key,
                "id": t.layer.id,
                "from": list(t.node.reads),
                "block": block.get(t.index),
                "depth": t.node.depth,
                "name": t.layer.name,
                "type": t.type,
                "label": t.label,
                "input": list(t.input),
                "output": list(t.output),
                "arithmetic": list(t.arithmetic),
                "params": t.params,
                "macs": t.macs,
                "activation_bytes": t.activation_bytes,
            }
            for t in net.layers
        ],
    }


def _github_data(text: str) -> str:
    # The escapes of GitHub's workflow-command parser (actions/toolkit, core/src/command.ts).
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _github_property(text: str) -> str:
    return _github_data(text).replace(":", "%3A").replace(",", "%2C")


def _shape(shape: tuple[int, ...] | None) -> str:
    return "?" if shape is None else "[" + ", ".join(str(d) for d in shape) + "]"


def _count(n: int) -> str:
    return f"{n:,}" if n else ""


def _bytes(n: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"
