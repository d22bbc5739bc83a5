"""Read a spec file into plain Python data once, keeping every node's line and column.

PyYAML's composer gives a node tree whose ``start_mark`` holds positions; we build the data from it ourselves so
that duplicate keys are refused (``yaml.safe_load`` keeps the last one silently), only the safe YAML tags are
constructed, alias expansion is bounded and deep nesting is refused.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from archspec.errors import SpecError

MAX_BYTES = 4 * 1024 * 1024
MAX_NODES = 200_000
MAX_DEPTH = 64
# Files up to this size that libyaml finds invalid are parsed again by PyYAML, whose messages are clearer
# ("expected ',' or '}', but got '{'"); a bigger file gets libyaml's, so that no file takes long to refuse.
EXACT_MESSAGES_BYTES = 64 * 1024

Loc = tuple[str | int, ...]

_SAFE_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("map", "seq", "str", "int", "float", "bool", "null")
)


class _Loader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no types: SafeLoader is Any
    """SafeLoader that also reads ``1e-4`` as a float (YAML 1.1 insists on ``1.0e-4``)."""


try:
    from yaml._yaml import CParser
except ImportError:  # pragma: no cover - PyYAML built without libyaml: the pure-Python parser does it all
    CParser = None


class _FastLoader(Composer, CParser or object, SafeConstructor, Resolver):  # type: ignore[misc]  # untyped bases
    """libyaml's parser (several times faster than PyYAML's) under a lean copy of PyYAML's composer: the same
    nodes, positions and anchors, without the per-node path-resolver calls, and refusing deep nesting before
    the recursion gets anywhere near Python's limit."""

    def __init__(self, text: str) -> None:
        CParser.__init__(self, text)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        Composer.__init__(self)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.get_event()
        self._nodes += 1
        if self._nodes > MAX_NODES:  # the builder would refuse it too, after composing all of it
            raise _TooManyNodes(event.start_mark)
        if isinstance(event, yaml.AliasEvent):
            if event.anchor not in self.anchors:
                raise yaml.composer.ComposerError(
                    None, None, f"found undefined alias {event.anchor!r}", event.start_mark
                )
            return self.anchors[event.anchor]
        if event.anchor is not None and event.anchor in self.anchors:
            raise yaml.composer.ComposerError(
                f"found duplicate anchor {event.anchor!r}; first occurrence",
                self.anchors[event.anchor].start_mark,
                "second occurrence",
                event.start_mark,
            )
        node: yaml.Node
        if isinstance(event, yaml.ScalarEvent):
            tag = event.tag
            if tag is None or tag == "!":
                tag = self.resolve(yaml.ScalarNode, event.value, event.implicit)
            node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
            if event.anchor is not None:
                self.anchors[event.anchor] = node
            return node
        self._depth += 1
        if self._depth > _COMPOSE_DEPTH:
            raise RecursionError  # reported by PyYAML's parser, which stops at the same place
        mapping = isinstance(event, yaml.MappingStartEvent)
        kind, default = (
            (yaml.MappingNode, DEFAULT_MAPPING_TAG) if mapping else (yaml.SequenceNode, DEFAULT_SEQUENCE_TAG)
        )
        tag = default if event.tag is None or event.tag == "!" else event.tag
        node = kind(tag, [], event.start_mark, None, flow_style=event.flow_style)
        if event.anchor is not None:
            self.anchors[event.anchor] = node
        end = yaml.MappingEndEvent if mapping else yaml.SequenceEndEvent
        while not self.check_event(end):
            if mapping:
                key = self.compose_node(node, None)
                self._nodes -= 1  # a key is not a node of the data: the builder does not count it either
                node.value.append((key, self.compose_node(node, key)))
            else:
                node.value.append(self.compose_node(node, None))
        node.end_mark = self.get_event().end_mark
        self._depth -= 1
        return node


class _TooManyNodes(Exception):
    """More than MAX_NODES nodes written out (not through aliases, which the builder counts)."""

    def __init__(self, mark: yaml.Mark) -> None:
        self.mark = mark


# Deeper than any spec: the builder refuses more than MAX_DEPTH levels with a path; beyond this, composing stops.
_COMPOSE_DEPTH = 4 * MAX_DEPTH
DEFAULT_MAPPING_TAG = "tag:yaml.org,2002:map"
DEFAULT_SEQUENCE_TAG = "tag:yaml.org,2002:seq"


for _loader in (_Loader, _FastLoader):
    _loader.add_implicit_resolver(
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
    source = Source(name, text, None)
    with _collector_paused():
        loader, node = _compose(text, name)
        if node is None:
            raise _file_error(name, "the file holds no YAML document, only comments or blank lines")
        source.data = _Builder(source, loader).build(node, (), 0)
    if not isinstance(source.data, dict):
        raise SourceError(source.error((), "", f"a spec must be a YAML mapping, not a {_kind(node)}"))
    return source


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while a tree is built: a big file's growing tree of nodes and data
    (all alive, none garbage) would otherwise be traversed again and again, which more than doubles the time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _compose(text: str, name: str) -> tuple[Any, yaml.Node | None]:
    """The loader and the node tree of ``text``: libyaml's parser where it is installed; PyYAML's own for the
    message of an error in a small file, for nesting too deep to compose, and where libyaml is missing."""
    if CParser is not None:
        fast: _FastLoader | None = None
        try:
            fast = _FastLoader(text)
            return fast, fast.get_single_node()
        except yaml.YAMLError as exc:
            if len(text) > EXACT_MESSAGES_BYTES:
                raise SourceError(_parser_error(name, text, exc)) from None
        except RecursionError:
            pass  # PyYAML's parser stops at the same place and says where
        except _TooManyNodes as exc:
            message = f"more than {MAX_NODES:,} YAML nodes"
            raise SourceError(SpecError(name, exc.mark.line + 1, exc.mark.column + 1, "", message)) from None
    loader: _Loader | None = None
    try:
        loader = _Loader(text)
        return loader, loader.get_single_node()
    except RecursionError:
        assert loader is not None  # the loader's constructor does not recurse
        mark = loader.get_mark()
        message = f"YAML nested too deeply (more than {MAX_DEPTH} levels)"
        raise SourceError(SpecError(name, mark.line + 1, mark.column + 1, "", message)) from None
    except yaml.YAMLError as exc:
        raise SourceError(_parser_error(name, text, exc)) from None
    finally:
        if loader is not None:
            loader.dispose()


def _parser_error(name: str, text: str, exc: yaml.YAMLError) -> SpecError:
    """One error for what either parser refused; libyaml counts a reader error's offset in UTF-8 bytes."""
    if isinstance(exc, yaml.reader.ReaderError):
        offset = exc.position
        if exc.encoding == "?":  # libyaml's: a byte offset into the UTF-8 text
            offset = len(text.encode("utf-8")[:offset].decode("utf-8", errors="ignore"))
        line, col = _line_col(text, offset)
        message = f"control character U+{exc.character:04X} is not allowed in YAML text"
        return SpecError(name, line, col, "", message, fix="delete it")
    if isinstance(exc, yaml.MarkedYAMLError):
        return _syntax_error(name, exc, text)
    return SpecError(name, 0, 0, "", f"YAML: {exc}")  # pragma: no cover - every parser error carries a mark


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
    raw = _read_bounded(path, name)
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


def _read_bounded(path: Path, name: str) -> bytes:
    """The bytes of a regular file of at most MAX_BYTES, read no further than that: a FIFO (which would block),
    a device (``/dev/zero`` never ends) or a socket is refused before any byte is read."""
    try:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise _file_error(name, "no such file") from None
    except IsADirectoryError:
        raise _file_error(name, "is a directory, not a spec file") from None
    except OSError as exc:
        raise _file_error(name, f"cannot read: {exc.strerror}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise _file_error(name, "is a directory, not a spec file")
        raise _file_error(name, f"is {file_kind(mode)}, not a regular file; a spec is read from a file")
    os.set_blocking(fd, True)
    with os.fdopen(fd, "rb") as f:
        try:
            raw = f.read(MAX_BYTES + 1)
        except OSError as exc:
            raise _file_error(name, f"cannot read: {exc.strerror}") from None
    if len(raw) > MAX_BYTES:
        size = max(os.stat(path).st_size, len(raw)) if path.exists() else len(raw)
        raise _file_error(name, f"file is {size:,} bytes; a spec is at most {MAX_BYTES:,}")
    return raw


def file_kind(mode: int) -> str:
    """What a file that is not a regular one is, for a message: ``a FIFO``, ``a character device``, ..."""
    for test, kind in (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return kind
    return "not a regular file"


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
        if node.tag not in _SAFE_TAGS:
            raise self._tag_error(node, loc)
        try:
            # The safe constructor of the tag, called directly: construct_object's bookkeeping is for the
            # collections and aliases this builder handles itself, and costs more than the conversion.
            return self.loader.yaml_constructors[node.tag](self.loader, node)
        except yaml.constructor.ConstructorError:
            raise self._tag_error(node, loc) from None
        except ValueError:
            # Python refuses to convert integers of more than 4,300 digits (sys.get_int_max_str_digits).
            digits = sum(c.isdigit() for c in node.value)
            raise self._fail(
                node, loc, f"a number of {digits:,} digits; no field takes one that large"
            ) from None

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
