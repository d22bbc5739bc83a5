"""Read a spec file into plain Python data once, keeping every node's line and column.

PyYAML's composer gives a node tree whose ``start_mark`` holds positions; we build the data from it ourselves so
that duplicate keys are refused (``yaml.safe_load`` keeps the last one silently), only the safe YAML tags are
constructed, alias expansion is bounded and deep nesting is refused.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from archspec.errors import SpecError

MAX_BYTES = 4 * 1024 * 1024
MAX_NODES = 200_000
MAX_DEPTH = 64

Loc = tuple[str | int, ...]

_SAFE_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("map", "seq", "str", "int", "float", "bool", "null")
)


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-4`` as a float (YAML 1.1 insists on ``1.0e-4``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


@dataclass
class Source:
    """A parsed spec file: its data, and the (line, column) of every mapping key and value."""

    file: str
    text: str
    data: Any
    positions: dict[Loc, tuple[int, int]] = field(default_factory=dict)

    def position(self, loc: Sequence[str | int]) -> tuple[int, int]:
        """The position of the deepest node of ``loc`` that exists in the file (1-based line and column)."""
        loc = tuple(loc)
        while loc not in self.positions and loc:
            loc = loc[:-1]
        return self.positions.get(loc, (1, 1))

    def error(self, loc: Sequence[str | int], path: str, message: str, **kw: Any) -> SpecError:
        line, column = self.position(loc)
        return SpecError(self.file, line, column, path, message, **kw)


class SourceError(Exception):
    """The file could not be read as a YAML mapping; carries the one error to print."""

    def __init__(self, error: SpecError) -> None:
        self.error = error
        super().__init__(error.render())


def read_source(path: str | Path) -> Source:
    """Read and parse ``path``; raises SourceError for anything that is not a readable YAML mapping."""
    name = str(path)
    text = _read_text(Path(path), name)
    return parse_source(text, name)


def parse_source(text: str, name: str = "<string>") -> Source:
    """Parse YAML text into a Source (see the module docstring for what is refused)."""
    if not text.strip():
        raise _file_error(name, "the file is empty; a spec needs name, latent, image, generator, discriminator")
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problem = exc.problem or "invalid YAML"
        context = f" ({exc.context})" if exc.context else ""
        raise SourceError(SpecError(name, line, col, "", f"YAML syntax: {problem}{context}")) from None
    except yaml.YAMLError as exc:
        raise _file_error(name, f"YAML: {exc}") from None
    except RecursionError:
        raise _file_error(name, f"YAML nested too deeply (more than {MAX_DEPTH} levels)") from None
    finally:
        loader.dispose()
    if node is None:
        raise _file_error(name, "the file holds no YAML document")
    source = Source(name, text, None)
    builder = _Builder(source, loader)
    source.data = builder.build(node, (), 0)
    if not isinstance(source.data, dict):
        raise SourceError(source.error((), "", f"a spec must be a YAML mapping, not a {_kind(node)}"))
    return source


def _read_text(path: Path, name: str) -> str:
    if path.is_dir():
        raise _file_error(name, "is a directory, not a spec file")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise _file_error(name, "no such file") from None
    except OSError as exc:
        raise _file_error(name, f"cannot read: {exc.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise _file_error(name, f"file is {len(raw):,} bytes; a spec is at most {MAX_BYTES:,}")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SourceError(
            SpecError(name, line, col, "", f"not UTF-8 text: byte 0x{raw[exc.start]:02x} cannot be decoded")
        ) from None


def _file_error(name: str, message: str) -> SourceError:
    return SourceError(SpecError(name, 0, 0, "", message))


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.SequenceNode):
        return "list"
    if isinstance(node, yaml.MappingNode):
        return "mapping"
    return "scalar value"


class _Builder:
    """Turns composed nodes into dicts, lists and scalars, recording positions and refusing what is unsafe."""

    def __init__(self, source: Source, loader: _Loader) -> None:
        self.source = source
        self.loader = loader
        self.nodes = 0

    def build(self, node: yaml.Node, loc: Loc, depth: int) -> Any:
        self.nodes += 1
        mark = node.start_mark
        self.source.positions.setdefault(loc, (mark.line + 1, mark.column + 1))
        if self.nodes > MAX_NODES:
            raise self._fail(node, f"more than {MAX_NODES:,} YAML nodes (alias expansion bomb?)")
        if depth > MAX_DEPTH:
            raise self._fail(node, f"YAML nested more than {MAX_DEPTH} levels deep")
        if node.tag not in _SAFE_TAGS:
            raise self._fail(node, f"YAML tag {node.tag!r} is not allowed in a spec")
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, loc, depth)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*loc, i), depth + 1) for i, item in enumerate(node.value)]
        return self._scalar(node)

    def _mapping(self, node: yaml.MappingNode, loc: Loc, depth: int) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self._scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str | int) or isinstance(key, bool):
                raise self._fail(key_node, "mapping keys must be plain names")
            if key in out:
                first = self.source.positions[(*loc, key)]
                raise self._fail(key_node, f"duplicate key '{key}' (first given at line {first[0]})")
            # Errors about a whole block point at its key; errors about a scalar point at the value itself.
            if not isinstance(value_node, yaml.ScalarNode):
                mark = key_node.start_mark
                self.source.positions[(*loc, key)] = (mark.line + 1, mark.column + 1)
            out[key] = self.build(value_node, (*loc, key), depth + 1)
        return out

    def _scalar(self, node: yaml.Node) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            raise self._fail(node, f"YAML tag {node.tag!r} is not allowed in a spec") from exc

    def _fail(self, node: yaml.Node, message: str) -> SourceError:
        mark = node.start_mark
        return SourceError(SpecError(self.source.file, mark.line + 1, mark.column + 1, "", message))
