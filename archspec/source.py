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


class _Loader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no types: SafeLoader is Any
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
    keys: dict[Loc, tuple[int, int]] = field(default_factory=dict)  # where each mapping key itself is written

    def position(self, loc: Sequence[str | int]) -> tuple[int, int]:
        """The position of the deepest node of ``loc`` that exists in the file (1-based line and column)."""
        loc = tuple(loc)
        while loc not in self.positions and loc:
            loc = loc[:-1]
        return self.positions.get(loc, (1, 1))

    def key_position(self, loc: Sequence[str | int]) -> tuple[int, int]:
        """The position of the key that ends ``loc`` (for an unknown field), else as ``position``."""
        return self.keys.get(tuple(loc)) or self.position(loc)

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
        raise _file_error(
            name, "the file is empty; a spec needs name, latent, image, generator, discriminator"
        )
    if len(text) > MAX_BYTES:
        raise _file_error(name, f"spec text is {len(text):,} characters; a spec is at most {MAX_BYTES:,}")
    loader: _Loader | None = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
    except yaml.reader.ReaderError as exc:
        line, col = _line_col(text, exc.position)
        message = f"control character U+{exc.character:04X} is not allowed in YAML text"
        raise SourceError(SpecError(name, line, col, "", message, fix="delete it")) from None
    except yaml.MarkedYAMLError as exc:
        raise SourceError(_syntax_error(name, exc, text)) from None
    except yaml.YAMLError as exc:  # pragma: no cover - every parser error of PyYAML carries a mark
        raise _file_error(name, f"YAML: {exc}") from None
    except RecursionError:
        assert loader is not None  # the loader's constructor does not recurse
        mark = loader.get_mark()
        message = f"YAML nested too deeply (more than {MAX_DEPTH} levels)"
        raise SourceError(SpecError(name, mark.line + 1, mark.column + 1, "", message)) from None
    finally:
        if loader is not None:
            loader.dispose()
    if node is None:
        raise _file_error(name, "the file holds no YAML document, only comments or blank lines")
    source = Source(name, text, None)
    builder = _Builder(source, loader)
    source.data = builder.build(node, (), 0)
    if not isinstance(source.data, dict):
        raise SourceError(source.error((), "", f"a spec must be a YAML mapping, not a {_kind(node)}"))
    return source


def _syntax_error(name: str, exc: yaml.MarkedYAMLError, text: str = "") -> SpecError:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
    if exc.context == "expected a single document in the stream":
        return SpecError(
            name,
            line,
            col,
            "",
            "a second YAML document starts here; a spec file holds one",
            fix="delete the '---' line and what follows, or put the second spec in its own file",
        )
    problem = exc.problem or "invalid YAML"
    context = f" ({exc.context})" if exc.context else ""
    start = exc.context_mark
    if exc.context and start is not None and mark is not None and start.line != mark.line:
        context = f" ({exc.context} that starts at line {start.line + 1})"
    return SpecError(
        name, line, col, "", f"YAML syntax: {problem}{context}", fix=_indent_hint(problem, line, text)
    )


def _indent_hint(problem: str, line: int, text: str) -> str | None:
    """Plain words for PyYAML's errors whose usual cause is a line indented unlike its neighbours."""
    if not ("expected <block end>" in problem or "mapping values are not allowed" in problem) or line < 1:
        return None
    lines = text.splitlines()
    if line > len(lines):
        return None
    here = _indent(lines[line - 1])
    above = next(
        (t for t in reversed(lines[: line - 1]) if t.strip() and not t.lstrip().startswith("#")), None
    )
    said = f"line {line} is indented by {here}"
    if above is not None:
        said += f", the line above by {_indent(above)}"
        item = len(above) - len(above.lstrip(" -"))
        if item != _indent(above):
            said += f" ({item} after its '- ')"
    hint = f"check the indentation: {said}; the entries of one mapping or list start in the same column"
    if "mapping values" in problem:
        hint += " (or, if the ': ' belongs to a text value, put the text in quotes)"
    return hint


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _line_col(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of a character offset."""
    return text.count("\n", 0, offset) + 1, offset - (text.rfind("\n", 0, offset) + 1) + 1


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
        # exc.object is what was decoded (a byte-order mark already stripped); columns count characters.
        data, start = exc.object, exc.start
        line_start = data.rfind(b"\n", 0, start) + 1
        line = data.count(b"\n", 0, start) + 1
        col = len(data[line_start:start].decode("utf-8", errors="replace")) + 1
        message = f"not UTF-8 text: byte 0x{data[start]:02x} cannot be decoded"
        raise SourceError(SpecError(name, line, col, "", message, fix="save the file as UTF-8")) from None


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
            # An alias's nodes sit where its anchor was written: point at the top-level key being expanded instead.
            line, column = self.source.position(loc[:1])
            message = f"more than {MAX_NODES:,} YAML nodes (an alias expansion bomb?)"
            raise SourceError(SpecError(self.source.file, line, column, dotted(loc[:1]), message))
        if depth > MAX_DEPTH:
            raise self._fail(node, loc[:1], f"YAML nested more than {MAX_DEPTH} levels deep")
        if node.tag not in _SAFE_TAGS:
            raise self._tag_error(node, loc)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, loc, depth)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*loc, i), depth + 1) for i, item in enumerate(node.value)]
        return self._scalar(node, loc)

    def _mapping(self, node: yaml.MappingNode, loc: Loc, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        keys: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                raise self._tag_error(key_node, loc)
            key = self._scalar(key_node, loc) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                raise self._fail(key_node, loc, *_bad_key(key_node, key))
            if key in keys:
                first = keys[key].start_mark
                message = (
                    f"duplicate key {key!r} (first given at line {first.line + 1}, column {first.column + 1})"
                )
                raise self._fail(key_node, loc, message, fix="keep one of the two")
            keys[key] = key_node
            self.source.keys[(*loc, key)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            # Errors about a whole block point at its key; errors about a scalar point at the value itself.
            if not isinstance(value_node, yaml.ScalarNode):
                mark = key_node.start_mark
                self.source.positions[(*loc, key)] = (mark.line + 1, mark.column + 1)
            out[key] = self.build(value_node, (*loc, key), depth + 1)
        return out

    def _scalar(self, node: yaml.Node, loc: Loc) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError:
            raise self._tag_error(node, loc) from None

    def _tag_error(self, node: yaml.Node, loc: Loc) -> SourceError:
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        if node.tag == _MERGE:
            return self._fail(
                node,
                loc,
                "YAML merge keys (<<) are not supported in a spec",
                fix="write the fields out in full",
            )
        if node.tag == "tag:yaml.org,2002:timestamp":
            return self._fail(
                node,
                loc,
                f"{node.value} reads as a YAML date, which no spec field takes",
                fix=f"write it in quotes: '{node.value}'",
            )
        return self._fail(
            node,
            loc,
            f"YAML tag {tag} is not allowed in a spec",
            fix="a spec holds only mappings, lists, strings, numbers, booleans and null",
        )

    def _fail(self, node: yaml.Node, loc: Loc, message: str, fix: str | None = None) -> SourceError:
        mark = node.start_mark
        return SourceError(
            SpecError(self.source.file, mark.line + 1, mark.column + 1, dotted(loc), message, fix)
        )


_MERGE = "tag:yaml.org,2002:merge"


def _bad_key(node: yaml.Node, key: Any) -> tuple[str, str]:
    if isinstance(node, yaml.ScalarNode) and key is not None:
        kind = "boolean" if isinstance(key, bool) else "number" if isinstance(key, int | float) else "value"
        message = f"key {node.value!r} reads as a {kind}; keys are field names such as kernel_size"
        return message, f"write it in quotes: '{node.value}'"
    return "mapping keys must be plain names such as kernel_size", "write a field name"


def dotted(loc: Sequence[str | int]) -> str:
    """``('generator', 'layers', 9, 'padding')`` → ``generator.layers[9].padding``; a key that is not a plain
    name is quoted (``generator['two\\nlines']``), so that a path is always one line."""
    out = ""
    for part in loc:
        if isinstance(part, int) or not _NAME.fullmatch(part):
            out += f"[{part!r}]"
        else:
            out += f".{part}" if out else part
    return out


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
