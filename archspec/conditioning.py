"""What a spec's two networks are given, and what the trainer must feed them: the training contract of a spec.

A chain takes the latent (generator) or the image (discriminator). A graph can also take a class label, a
conditioning image (pix2pix's A, SRGAN's low-resolution picture) or a vector; its discriminator can have a
second output, a class head (AC-GAN). ``conditioning`` reads this from the two traced graphs, with no torch, and
says in one sentence why ``archspec train`` cannot feed a combination it does not train.

Three kinds of run follow:

* **unconditional**: G(z), D(x), as the seed;
* **class**: a label input on G or D (cGAN, projection D, BigGAN), and/or D's class head (AC-GAN): real batches
  bring their labels, fakes get labels drawn from the data's label distribution;
* **paired**: G takes a conditioning image (with or without a latent): G(a) against the target b of the same
  pair, and D sees a too when it declares it (pix2pix's D(a, b)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from archspec.contract import ends_in
from archspec.graph import Graph
from archspec.rules import Shape, fmt
from archspec.trace import NetworkTrace

Feed = Literal["latent", "image", "label", "condition"]

_GENERATOR_FEEDS = frozenset({"latent", "label", "condition"})
_DISCRIMINATOR_FEEDS = frozenset({"image", "label", "condition"})
# Layers after which a class head holds probabilities rather than logits (PyTorch-GAN's AC-GAN ends in softmax).
_PROBABILITY_LAYERS = frozenset({"softmax"})


@dataclass(frozen=True)
class Conditioning:
    """The inputs of each network in their declared order, and what the data must bring for them."""

    generator: tuple[Feed, ...]
    discriminator: tuple[Feed, ...]
    classes: int | None = None  # the class count of the label inputs (they agree: contract checks it)
    condition: Shape | None = None  # the conditioning image's (C, H, W)
    class_head: bool = False  # D's second output: one score per class
    head_probabilities: bool = False  # that head ends in softmax: train it on log-probabilities

    @property
    def kind(self) -> Literal["unconditional", "class", "paired"]:
        if self.condition is not None:
            return "paired"
        return "class" if self.classes is not None else "unconditional"

    @property
    def needs_labels(self) -> bool:
        """Whether training reads class labels from the data."""
        return self.classes is not None

    def describe(self) -> str:
        """One phrase for the run header: ``class-conditional, 10 classes, class head on D``."""
        if self.kind == "unconditional":
            return "unconditional"
        parts = []
        if self.condition is not None:
            d_sees = " and D sees it" if "condition" in self.discriminator else ""
            parts.append(f"paired: G translates a {fmt(self.condition)} image{d_sees}")
        if self.classes is not None:
            parts.append(f"class-conditional, {self.classes} classes")
        if self.class_head:
            parts.append("class head on D")
        return ", ".join(parts)


UNCONDITIONAL = Conditioning(generator=("latent",), discriminator=("image",))


def conditioning(generator: NetworkTrace, discriminator: NetworkTrace) -> Conditioning | str:
    """The spec's training contract, or why ``archspec train`` cannot train it (one sentence)."""
    g_graph, d_graph = generator.graph, discriminator.graph
    g_feeds = _feeds(g_graph, "generator", _GENERATOR_FEEDS)
    if isinstance(g_feeds, str):
        return g_feeds
    d_feeds = _feeds(d_graph, "discriminator", _DISCRIMINATOR_FEEDS)
    if isinstance(d_feeds, str):
        return d_feeds
    if "latent" not in g_feeds and "condition" not in g_feeds:
        return (
            "the generator takes neither a latent vector nor a conditioning image: nothing to generate from"
        )
    if d_feeds.count("image") != 1:
        return "the discriminator must take the image (an input `image`) that it judges"
    if g_graph is not None and len(g_graph.outputs) > 1:
        return f"the generator has {len(g_graph.outputs)} outputs; training needs one, the image"
    classes = _classes(g_graph) or _classes(d_graph)
    condition = _condition(g_graph)
    d_condition = _condition(d_graph)
    if d_condition is not None and condition is None:
        return "the discriminator takes a conditioning image that the generator does not: nothing pairs them"
    if d_condition is not None and d_condition != condition:
        return (
            f"the conditioning image is {fmt(condition or ())} for the generator but {fmt(d_condition)} for the "
            "discriminator; a pair feeds the same image to both"
        )
    problem = _class_head_problem(discriminator, classes)
    if problem is not None:
        return problem
    head = ends_in(d_graph, 1) if d_graph is not None and len(d_graph.outputs) == 2 else None
    return Conditioning(
        generator=g_feeds,
        discriminator=d_feeds,
        classes=classes,
        condition=condition,
        class_head=d_graph is not None and len(d_graph.outputs) == 2,
        head_probabilities=head in _PROBABILITY_LAYERS,
    )


def _feeds(graph: Graph | None, role: str, allowed: frozenset[str]) -> tuple[Feed, ...] | str:
    if graph is None:
        return ("latent",) if role == "generator" else ("image",)
    feeds: list[Feed] = []
    for given in graph.inputs:
        kind = given.kind
        if kind == "vector":
            return (
                f"the {role} takes a vector input ({given.name}): training feeds latents, labels and images, "
                "not vectors"
            )
        if kind not in allowed:
            what = "the image" if kind == "image" else f"a {kind} input"
            return f"the {role} takes {what} ({given.name}), which training does not feed a {role}"
        if kind in feeds:
            return f"the {role} takes two {kind} inputs; training feeds one of each"
        feeds.append(kind)
    return tuple(feeds)


def _classes(graph: Graph | None) -> int | None:
    if graph is None:
        return None
    return next((i.classes for i in graph.inputs if i.kind == "label"), None)


def _condition(graph: Graph | None) -> Shape | None:
    if graph is None:
        return None
    return next((i.shape for i in graph.inputs if i.kind == "condition"), None)


def _class_head_problem(discriminator: NetworkTrace, classes: int | None) -> str | None:
    """Why D's outputs after the first cannot be trained as a class head, or None (no head, or a good one)."""
    graph = discriminator.graph
    if graph is None or len(graph.outputs) == 1:
        return None
    if len(graph.outputs) > 2:
        return (
            f"the discriminator has {len(graph.outputs)} outputs; training knows the score and one class head"
        )
    if classes is None:
        return (
            "the discriminator's second output is a class head, but no network takes a class label: "
            "declare one (`y: {label: K}`) so that the data's labels have somewhere to go"
        )
    shape = discriminator.outputs[1] if len(discriminator.outputs) > 1 else None
    if shape != (classes,):
        return (
            f"the discriminator's second output is {fmt(shape or ())}; a class head gives one score per class, "
            f"[{classes}]"
        )
    return None
