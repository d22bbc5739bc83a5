"""Expand a network of a validated spec into a flat graph of layers: blocks instantiated, repeats unrolled, every
``from:`` resolved to the value it names.

A chain is the simple case: each layer reads the previous one. Each node keeps where it is written in the YAML and
the block uses around it, so that every later check reports at the right line. Pure data: no torch.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from archspec.layers import LAYER_TYPES, BlockUse, Layer
from archspec.spec import Block, ImageInput, LabelInput, Network, Spec, VectorInput

Role = Literal["generator", "discriminator"]
Loc = tuple[str | int, ...]
Shape = tuple[int, ...]
PREVIOUS = "_"
MAX_BLOCK_DEPTH = 32


@dataclass(frozen=True)
class Input:
    """A value a network is given: the latent, the image, a label, a conditioning image or a vector."""

    name: str
    kind: Literal["latent", "image", "label", "condition", "vector"]
    shape: Shape  # per sample; () for a label
    classes: int | None = None  # a label's class count


@dataclass(frozen=True)
class Wire:
    """Where a layer reads from: input ``-1 - k``, or the output of node ``source`` (``part`` of a split)."""

    source: int
    part: int | None = None


# Made by the ten thousand: not frozen (its checks cost), compared by identity.
@dataclass(eq=False, slots=True)
class Node:
    """One layer of the expanded graph."""

    index: int
    key: str  # its module path in the built network: ``3``, ``3.1.4``
    layer: Layer
    inputs: tuple[Wire, ...]
    loc: Loc  # where the layer is written (inside ``blocks:`` for a block's layer)
    uses: tuple[Loc, ...]  # the block uses around it, outermost first
    path: str  # ``generator.layers[3] (res_up) › layers[4] (conv2d)``
    depth: int
    reads: tuple[str, ...] = ()  # the names in its ``from:``, as written

    @property
    def type(self) -> str:
        return self.layer.type


@dataclass(frozen=True)
class Group:
    """A block use or a repeat: a row of its own in the table, above its members ``first``…``last``."""

    key: str
    label: str
    loc: Loc
    uses: tuple[Loc, ...]
    path: str
    depth: int
    first: int
    last: int
    reads: tuple[str, ...] = ()  # the names in its ``from:``, as written


@dataclass(frozen=True)
class Finding:
    """A problem located at a spec field or layer (``loc``), before it becomes a SpecError.

    ``uses`` are the block uses that led to a problem inside a block; ``at_key`` points at the key itself.
    """

    loc: Loc
    path: str
    message: str
    fix: str | None = None
    detail: tuple[str, ...] = ()
    uses: tuple[Loc, ...] = ()
    at_key: bool = False


@dataclass(frozen=True)
class Graph:
    role: Role
    inputs: tuple[Input, ...]
    nodes: tuple[Node, ...]
    groups: tuple[Group, ...]
    outputs: tuple[Wire, ...]
    output_names: tuple[str, ...]
    chain: bool  # written as a plain chain: built as nn.Sequential, shown as before


def network_inputs(spec: Spec, role: Role) -> tuple[Input, ...]:
    """The declared inputs, or the default one: the latent for the generator, the image for the discriminator."""
    network: Network = getattr(spec, role)
    declared = network.inputs or ({"z": "latent"} if role == "generator" else {"x": "image"})
    out = []
    for name, kind in declared.items():
        if kind == "latent":
            out.append(Input(name, "latent", (spec.latent.size if spec.latent else 0,)))
        elif kind == "image":
            out.append(Input(name, "image", spec.image))
        elif isinstance(kind, LabelInput):
            out.append(Input(name, "label", (), kind.label))
        elif isinstance(kind, ImageInput):
            out.append(Input(name, "condition", kind.image))
        elif isinstance(kind, VectorInput):
            out.append(Input(name, "vector", (kind.vector,)))
    return tuple(out)


def expand(spec: Spec, role: Role) -> tuple[Graph, list[Finding]]:
    """The flat graph of one network, and every problem found while expanding it."""
    network: Network = getattr(spec, role)
    inputs = network_inputs(spec, role)
    if _plain_chain(network):
        return chain_graph(role, inputs, network.layers), []
    expander = _Expander(spec, role)
    scope = {i.name: Wire(-1 - k) for k, i in enumerate(inputs)}
    expander.reads.update({w: 0 for w in scope.values()})
    last = expander.chain(
        list(network.layers), (role, "layers"), "", scope, Wire(-1), (), 0, f"{role}.layers"
    )
    outputs: list[Wire] = []
    names: list[str] = []
    for k, ref in enumerate(network.outputs or ()):
        wire = expander.resolve(ref, scope, last, (role, "outputs", k), f"{role}.outputs[{k}]", ())
        if wire is not None:
            outputs.append(wire)
            names.append(ref)
            expander.reads[wire] = expander.reads.get(wire, 0) + 1
    if not network.outputs and last is not None:
        outputs, names = [last], ["out"]
    # "never used" only where the graph is otherwise sound: a broken layer leaves its inputs unread.
    findings = expander.findings or expander.unused(inputs, set(outputs))
    chain = (
        network.inputs is None
        and network.outputs is None
        and all(isinstance(n, Layer) and n.from_ is None and n.repeat is None for n in network.layers)
    )
    graph = Graph(
        role, inputs, tuple(expander.nodes), tuple(expander.groups), tuple(outputs), tuple(names), chain
    )
    return graph, _unique(findings)


def _plain_chain(network: Network) -> bool:
    """Layers that each read the one above, no names, no blocks, no repeats: nothing to resolve."""
    return (
        network.inputs is None
        and network.outputs is None
        and all(
            isinstance(n, Layer)
            and n.from_ is None
            and n.repeat is None
            and n.id is None
            and n.traits.inputs == 1
            for n in network.layers
        )
    )


def chain_graph(role: Role, inputs: tuple[Input, ...], layers: Sequence[Any]) -> Graph:
    """The graph of a plain chain, made directly: each layer reads the one above (the first, the first input)."""
    nodes = tuple(
        Node(
            i,
            str(layer.name or i),
            layer,
            (Wire(i - 1),),
            (role, "layers", i),
            (),
            f"{role}.layers[{i}] ({layer.type})",
            0,
        )
        for i, layer in enumerate(layers)
    )
    return Graph(role, inputs, nodes, (), (Wire(len(nodes) - 1),), ("out",), True)


@dataclass
class _Expander:
    spec: Spec
    role: Role
    nodes: list[Node] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    reads: dict[Wire, int] = field(default_factory=dict)  # how often each value is read
    named: dict[Wire, tuple[str, Loc, tuple[Loc, ...]]] = field(default_factory=dict)  # ids, for "never used"
    failed: set[str] = field(default_factory=set)  # ids of layers that could not be expanded

    def chain(
        self,
        items: Sequence[Any],
        where: Loc,
        prefix: str,
        scope: dict[str, Wire],
        previous: Wire | None,
        uses: tuple[Loc, ...],
        depth: int,
        path: str,
    ) -> Wire | None:
        """Expand ``items`` (validated nodes) in order; returns the last one's output."""
        later = {getattr(n, "id", None): i for i, n in enumerate(items)}
        for i, item in enumerate(items):
            loc = (*where, i)
            key = f"{prefix}{item.name or i}"
            item_path = f"{path}[{i}] ({item.type})"
            inputs = self.inputs_of(item, scope, previous, loc, item_path, uses, later, i)
            previous = self.node(item, key, loc, item_path, uses, depth, inputs, scope)
            if item.id is not None and previous is None:
                self.failed.add(item.id)  # what reads it is skipped silently: its error is already said
            if item.id is not None and previous is not None:
                if item.id in scope:
                    self.fail(
                        (*loc, "id"),
                        item_path,
                        f"id {item.id!r} is already taken",
                        "choose another id",
                        uses,
                    )
                scope[item.id] = previous
                self.named[previous] = (item.id, (*loc, "id"), uses)
        return previous

    def inputs_of(
        self,
        item: Any,
        scope: dict[str, Wire],
        previous: Wire | None,
        loc: Loc,
        path: str,
        uses: tuple[Loc, ...],
        later: dict[Any, int],
        index: int,
    ) -> list[Wire] | None:
        refs = item.from_ if item.from_ is not None else (PREVIOUS,)
        wires: list[Wire] = []
        for k, ref in enumerate(refs):
            at = (*loc, "from", k) if item.from_ is not None and len(item.from_) > 1 else (*loc, "from")
            name = ref.split(".")[0]
            if name in later and later[name] >= index and name not in scope:
                self.fail(
                    at,
                    path,
                    f"reads {ref!r}, which is defined below it (layers[{later[name]}]): a layer reads only values "
                    "defined above it, so this is a cycle",
                    f"move layers[{later[name]}] above this layer, or read another value",
                    uses,
                )
                return None
            wire = self.resolve(ref, scope, previous, at, path, uses)
            if wire is None:
                return None
            if wire.part is None and wire.source >= 0 and self.nodes[wire.source].type in ("split", "chunk"):
                self.fail(
                    at,
                    path,
                    f"reads the parts of a {self.nodes[wire.source].type} as one value",
                    f"name a part: from: {ref if ref != PREVIOUS else 'ID'}.0",
                    uses,
                )
                return None
            wires.append(wire)
        for wire in wires:
            self.reads[wire] = self.reads.get(wire, 0) + 1
        return wires

    def resolve(
        self,
        ref: str,
        scope: dict[str, Wire],
        previous: Wire | None,
        at: Loc,
        path: str,
        uses: tuple[Loc, ...],
    ) -> Wire | None:
        if ref == PREVIOUS:
            return previous  # None only after a layer above failed, which has its own error
        name, _, part = ref.partition(".")
        if name not in scope and name in self.failed:
            return None
        if name not in scope:
            close = difflib.get_close_matches(name, [n for n in scope if n != PREVIOUS], n=1, cutoff=0.5)
            known = ", ".join(sorted(scope)) or "none"
            self.fail(
                at,
                path,
                f"unknown value {name!r} (the values defined above: {known})",
                f"did you mean {close[0]}?" if close else f"give a layer above `id: {name}`",
                uses,
            )
            return None
        wire = scope[name]
        if not part:
            return wire
        if wire.part is not None or wire.source < 0 or self.nodes[wire.source].type not in ("split", "chunk"):
            self.fail(at, path, f"{ref!r}: only a split or chunk has parts", f"from: {name}", uses)
            return None
        return Wire(wire.source, int(part))

    def node(
        self,
        item: Any,
        key: str,
        loc: Loc,
        path: str,
        uses: tuple[Loc, ...],
        depth: int,
        inputs: list[Wire] | None,
        scope: dict[str, Wire],
    ) -> Wire | None:
        """Expand one item (a layer, a block use, or either repeated); returns its output."""
        if item.repeat is not None:
            return self.repeated(item, key, loc, path, uses, depth, inputs, scope)
        if isinstance(item, BlockUse):
            return self.block(item, key, loc, path, uses, depth, inputs)
        if inputs is None:
            return None
        arity = item.traits.inputs
        if (arity and len(inputs) != arity) or (arity == 0 and len(inputs) < 2):
            wanted = "two or more inputs" if arity == 0 else f"{arity} input{'s' if arity > 1 else ''}"
            self.fail(
                (*loc, "from"),
                path,
                f"{item.type} takes {wanted}, got {len(inputs)}",
                "from: [a, b]" if arity != 1 else "from: one value",
                uses,
            )
            return None
        reads = tuple(item.from_ or ())
        self.nodes.append(Node(len(self.nodes), key, item, tuple(inputs), loc, uses, path, depth, reads))
        return Wire(len(self.nodes) - 1)

    def repeated(
        self,
        item: Any,
        key: str,
        loc: Loc,
        path: str,
        uses: tuple[Loc, ...],
        depth: int,
        inputs: list[Wire] | None,
        scope: dict[str, Wire],
    ) -> Wire | None:
        overrides: tuple[dict[str, Any], ...] = (
            ({},) * item.repeat if isinstance(item.repeat, int) else item.repeat
        )
        first = len(self.nodes)
        group_at = len(self.groups)
        out: Wire | None = None
        for c, override in enumerate(overrides):
            copy = self.copy(item, override, (*loc, "repeat", c) if override else loc, path, uses)
            if copy is None:
                return None
            out = self.node(copy, f"{key}.{c}", loc, f"{path} #{c}", uses, depth + 1, inputs, scope)
            if out is None:
                return None
            inputs = [out, *(inputs or [])[1:]]  # the first input chains; a label or skip stays the same
        label = f"{item.type} × {len(overrides)}"
        group = Group(key, label, loc, uses, path, depth, first, len(self.nodes) - 1, tuple(item.from_ or ()))
        self.groups.insert(group_at, group)
        return out

    def copy(self, item: Any, override: dict[str, Any], loc: Loc, path: str, uses: tuple[Loc, ...]) -> Any:
        data = {**item.model_dump(by_alias=True, exclude_unset=True), **override, "repeat": None}
        data.pop("id", None)
        data.pop("from", None)
        if isinstance(item, BlockUse):
            return BlockUse.model_validate(data)
        return self.validated(data, loc, path, uses)

    def block(
        self,
        use: BlockUse,
        key: str,
        loc: Loc,
        path: str,
        uses: tuple[Loc, ...],
        depth: int,
        inputs: list[Wire] | None,
    ) -> Wire | None:
        block = self.spec.blocks.get(use.type)
        if block is None:
            self.unknown_type(use.type, (*loc, "type"), path, uses)
            return None
        if len(uses) >= MAX_BLOCK_DEPTH or any(u[:2] == ("blocks", use.type) for u in (loc, *uses)):
            self.fail(loc, path, f"block {use.type!r} uses itself", "a block may use only other blocks", uses)
            return None
        args = self.arguments(use, block, loc, path, uses)
        if args is None or inputs is None:
            return None
        if len(inputs) != len(block.inputs):
            self.fail(
                (*loc, "from") if use.from_ else loc,
                path,
                f"block {use.type} takes {len(block.inputs)} input{'s' if len(block.inputs) > 1 else ''} "
                f"({', '.join(block.inputs)}), got {len(inputs)}",
                f"from: [{', '.join(block.inputs)}]" if len(block.inputs) > 1 else None,
                uses,
            )
            return None
        scope = dict(zip(block.inputs, inputs, strict=True))
        inner_uses = (*uses, loc)
        items = []
        for j, template in enumerate(block.layers):
            at = ("blocks", use.type, "layers", j)
            data = self.substitute(template, args, at, path, inner_uses)
            item = None if data is None else self.validated(data, at, f"{use.type}.layers[{j}]", inner_uses)
            if item is None:
                return None
            items.append(item)
        first, group_at = len(self.nodes), len(self.groups)
        out = self.chain(
            items,
            ("blocks", use.type, "layers"),
            f"{key}.",
            scope,
            inputs[0],
            inner_uses,
            depth + 1,
            f"{path} › layers",
        )
        if out is not None and block.output is not None:
            out = self.resolve(
                block.output,
                scope,
                out,
                ("blocks", use.type, "output"),
                f"blocks.{use.type}.output",
                inner_uses,
            )
            if out is not None:
                self.reads[out] = self.reads.get(out, 0) + 1
        if out is not None:
            label = use.type + "".join(f" {k}={_short(v)}" for k, v in use.args.items())
            self.groups.insert(
                group_at, Group(key, label, loc, uses, path, depth, first, len(self.nodes) - 1)
            )
        return out

    def arguments(
        self, use: BlockUse, block: Block, loc: Loc, path: str, uses: tuple[Loc, ...]
    ) -> dict[str, Any] | None:
        args = use.args
        ok = True
        for name in args:
            if name not in block.params:
                close = difflib.get_close_matches(name, list(block.params), n=1, cutoff=0.5)
                params = ", ".join(block.params) or "none"
                self.fail(
                    (*loc, name),
                    path,
                    f"block {use.type} has no parameter {name!r} (its parameters: {params})",
                    f"did you mean {close[0]}?" if close else None,
                    uses,
                    at_key=True,
                )
                ok = False
        for name, default in block.params.items():
            if default is None and name not in args:
                self.fail(
                    loc, path, f"block {use.type} needs the argument {name!r}", f"add {name}: ...", uses
                )
                ok = False
        return {**block.params, **args} if ok else None

    def substitute(
        self, template: Any, args: dict[str, Any], at: Loc, path: str, uses: tuple[Loc, ...]
    ) -> Any:
        """``$name`` (a whole value) → the argument; anything else as written."""
        missing: list[tuple[Loc, str]] = []

        def walk(value: Any, loc: Loc) -> Any:
            if isinstance(value, str) and value.startswith("$"):
                if value[1:] in args:
                    return args[value[1:]]
                missing.append((loc, value))
                return value
            if isinstance(value, dict):
                return {k: walk(v, (*loc, k)) for k, v in value.items()}
            if isinstance(value, list):
                return [walk(v, (*loc, i)) for i, v in enumerate(value)]
            return value

        data = walk(template, at)
        for loc, value in missing:
            self.fail(
                loc,
                path,
                f"{value} is not a parameter of block {at[1]}",
                f"add {value[1:]} to its params",
                uses,
            )
        return None if missing else data

    def validated(self, data: Any, loc: Loc, path: str, uses: tuple[Loc, ...]) -> Any:
        """A block's layer (or a repeat's copy) validated once its arguments are in."""
        from archspec.validate import layer_problems  # validate imports this module's Finding

        if not isinstance(data, dict):
            self.fail(loc, path, "a layer must be a mapping such as {type: relu}", None, uses)
            return None
        tag = data.get("type")
        if isinstance(tag, str) and tag not in LAYER_TYPES:
            if tag in self.spec.blocks:
                return BlockUse.model_validate(data)
            self.unknown_type(tag, (*loc, "type"), path, uses)
            return None
        try:
            return LAYER_TYPES[tag].model_validate(data) if isinstance(tag, str) else None
        except ValidationError as exc:
            for problem in layer_problems(data, exc, loc, path):
                self.findings.append(
                    Finding(problem.loc, problem.path, problem.message, problem.fix, (), uses, problem.at_key)
                )
            return None

    def unknown_type(self, tag: str, loc: Loc, path: str, uses: tuple[Loc, ...]) -> None:
        from archspec.validate import layer_type_error

        message, fix = layer_type_error(tag, list(self.spec.blocks))
        self.fail(loc, path.rsplit(" (", 1)[0], message, fix, uses)

    def fail(
        self,
        loc: Loc,
        path: str,
        message: str,
        fix: str | None,
        uses: tuple[Loc, ...],
        at_key: bool = False,
    ) -> None:
        self.findings.append(Finding(loc, path, message, fix, (), uses, at_key))

    def unused(self, inputs: tuple[Input, ...], outputs: set[Wire]) -> list[Finding]:
        found = []
        role = self.role
        for k, i in enumerate(inputs):
            if not self.reads.get(Wire(-1 - k)):
                found.append(
                    Finding(
                        (role, "inputs", i.name),
                        f"{role}.inputs.{i.name}",
                        f"input {i.name!r} is never used",
                        f"read it with from: {i.name}, or remove it",
                    )
                )
        read = {w.source for w, count in self.reads.items() if count} | {w.source for w in outputs}
        for wire, (name, loc, uses) in self.named.items():
            if wire.source not in read:  # a split read through its parts (``zs.0``) is read
                found.append(
                    Finding(
                        loc,
                        f"{role}: {name}",
                        f"value {name!r} is never used",
                        f"read it with from: {name}, or add it to outputs",
                        uses=uses,
                    )
                )
        return found


def _unique(findings: list[Finding]) -> list[Finding]:
    """One finding per place and message: a block used three times with one mistake reports it once."""
    seen: dict[tuple[Loc, str], Finding] = {}
    for f in findings:
        seen.setdefault((f.loc, f.message), f)
    return list(seen.values())


def _short(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ",".join(_short(v) for v in value) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)
