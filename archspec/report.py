"""Present a CheckResult: rich tables for people, one JSON document for programs. The only rich importer."""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

from rich import box
from rich.console import Console
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


def emit(target: Console, *renderables: Any) -> None:
    """Print to a terminal as rich does; to a pipe or file without the padding spaces rich leaves at line ends."""
    if target.is_terminal:
        for renderable in renderables:
            target.print(renderable)
        return
    with target.capture() as captured:
        for renderable in renderables:
            target.print(renderable)
    target.file.write("\n".join(line.rstrip() for line in captured.get().splitlines()) + "\n")


def print_result(result: CheckResult, out: Console, err: Console) -> None:
    """Tables and the contract line for a valid spec; every error for an invalid one."""
    if result.errors:
        n = len(result.errors)
        shown = [Text(error.render()) for error in result.errors[:MAX_ERRORS]]
        if n > MAX_ERRORS:
            shown.append(Text(f"... and {n - MAX_ERRORS:,} more errors (--json lists them all)"))
        summary = Text(f"{result.file}: {n:,} error{'s' if n > 1 else ''}", style="bold red")
        emit(err, *shown, summary)
        return
    assert result.spec is not None and result.generator and result.discriminator and result.totals
    name = result.spec.name
    g, d = result.generator, result.discriminator
    emit(
        out,
        network_table(f"{name} · generator", g, f"latent {_shape(g.input)} → image {_shape(g.output)}"),
        network_table(f"{name} · discriminator", d, f"image {_shape(d.input)} → score {_shape(d.output)}"),
        Text(
            f"✓ generator out {_shape(g.output)} = image {_shape(result.spec.image)} = discriminator in "
            f"{_shape(d.input)}; discriminator out {_shape(d.output)}",
            style="green",
        ),
        totals_table(result.totals),
    )


def network_table(title: str, net: NetworkTrace, caption: str) -> Table:
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


def to_json(result: CheckResult) -> dict[str, Any]:
    """The same facts as the tables, as one JSON-ready document."""
    doc: dict[str, Any] = {"file": result.file, "valid": result.ok}
    if result.spec is not None:
        doc["name"] = result.spec.name
        doc["image"] = list(result.spec.image)
        doc["latent"] = result.spec.latent.model_dump()
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
    return doc


def _network_json(net: NetworkTrace) -> dict[str, Any]:
    return {
        "input": list(net.input),
        "output": list(net.output) if net.output is not None else None,
        "params": net.params,
        "macs": net.macs,
        "activation_bytes": net.activation_bytes,
        "layers": [
            {
                "index": t.index,
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


def _shape(shape: tuple[int, ...] | None) -> str:
    return "?" if shape is None else "[" + ", ".join(str(d) for d in shape) + "]"


def _count(n: int) -> str:
    return f"{n:,}" if n else ""


def _bytes(n: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"
