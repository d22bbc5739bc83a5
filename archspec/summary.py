"""``archspec summary``: torchinfo's view of the built networks, on the meta device (no weight memory)."""

from __future__ import annotations

import torch
from torchinfo import summary

from archspec.check import CheckResult
from archspec.memory import too_big
from archspec.modules import build
from archspec.trace import totals


class TooBig(Exception):
    """The spec's training step would not fit the machine's memory; the message says by how much."""


def summarize(result: CheckResult, batch_size: int = 1, depth: int = 3) -> str:
    """torchinfo tables of both networks built on the meta device, one after the other.

    torchinfo 1.8 counts a ConvTranspose2d's MACs on the output grid; ``archspec check`` counts them on the input
    grid, where each input pixel scatters a kernel window (and agrees with torch.utils.flop_counter).
    Raises TooBig, before building anything, when the training step at ``batch_size`` would not fit the memory
    of the device training would use (torchinfo itself allocates the inputs).
    """
    assert result.spec is not None and result.generator is not None and result.discriminator is not None
    estimate = totals(result.generator, result.discriminator, batch_size).train_memory_bytes
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    problem = too_big(estimate, batch_size, device)
    if problem is not None:
        raise TooBig(problem)
    gan = build(result, device=torch.device("meta"))
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
