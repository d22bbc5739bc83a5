"""``archspec summary``: torchinfo's view of the built networks, on the meta device (no weight memory)."""

from __future__ import annotations

import torch
from torchinfo import summary

from archspec.check import CheckResult
from archspec.modules import build


def summarize(result: CheckResult, batch_size: int = 1, depth: int = 3) -> str:
    """torchinfo tables of both networks built on the meta device, one after the other.

    torchinfo 1.8 counts a ConvTranspose2d's MACs on the output grid; ``archspec check`` counts them on the input
    grid, where each input pixel scatters a kernel window (and agrees with torch.utils.flop_counter).
    """
    gan = build(result, device=torch.device("meta"))
    assert result.spec is not None
    parts = []
    meta = torch.device("meta")
    for title, net, trace in (
        ("generator", gan.generator, result.generator),
        ("discriminator", gan.discriminator, result.discriminator),
    ):
        assert trace is not None and trace.graph is not None
        inputs = [
            torch.zeros(batch_size, dtype=torch.long, device=meta)
            if i.kind == "label"
            else torch.zeros(batch_size, *i.shape, device=meta)
            for i in trace.graph.inputs
        ]
        stats = summary(
            net,
            input_data=inputs,
            device=torch.device("meta"),
            depth=depth,
            verbose=0,
            col_names=("input_size", "output_size", "num_params", "mult_adds"),
        )
        parts.append(f"{result.spec.name} · {title}\n{stats}")
    return "\n\n".join([*parts, macs_note(result, batch_size)])


def macs_note(result: CheckResult, batch_size: int) -> str:
    """Why torchinfo's Mult-Adds differ from ``archspec check``'s MACs, with check's numbers to compare."""
    assert result.generator is not None and result.discriminator is not None
    g, d = result.generator.macs * batch_size, result.discriminator.macs * batch_size
    return (
        "note: torchinfo's Mult-Adds are not `archspec check`'s MACs: torchinfo counts each bias as one more "
        "multiply-add and a transposed convolution on its output grid; check counts neither, as "
        f"torch.utils.flop_counter does. check's MACs at batch {batch_size}: G {g:,} · D {d:,}"
    )
