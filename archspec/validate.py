"""Validate parsed YAML with pydantic and turn each pydantic error into a SpecError at its YAML position.

One mistake gives one error: the errors of a union's other branch, the copies of a value written once
(``kernel_size: -4`` is checked as ``(-4, -4)``) and the "missing field" that a misspelt field causes are folded away.
"""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from archspec.errors import SpecError
from archspec.graph import Finding
from archspec.layers import LAYER_TYPES
from archspec.source import Loc, Source, dotted
from archspec.spec import Block, Latent, Network, Spec, Train

__all__ = ["dotted", "layer_problems", "layer_type_error", "validate"]

_SECTIONS: dict[str, type[BaseModel]] = {
    "latent": Latent,
    "train": Train,
    "generator": Network,
    "discriminator": Network,
}
_EXAMPLES = {
    "name": "name: my_gan",
    "latent": "latent: 100",
    "image": "image: [3, 64, 64]",
    "generator": "generator: {layers: [...]}",
    "discriminator": "discriminator: {layers: [...]}",
    "size": "size: 100",
    "layers": "layers: [{type: ...}, ...]",
}
_HINTS = {"image": " [channels, height, width]", "betas": " [beta1, beta2]"}
_PAIRS = {"kernel_size", "stride", "padding", "output_padding", "dilation", "size", "scale_factor"}


def validate(source: Source) -> tuple[Spec | None, list[SpecError]]:
    """The validated Spec, or None and every validation error of the file, in line order.

    A layer whose type is no layer type validates as a block use; whether such a block exists is the graph's
    question (``graph.expand``), asked here too when the spec fails, so that a typo is never hidden.
    """
    try:
        spec = Spec.model_validate(source.data)
    except ValidationError as exc:
        issues = _fold(source.data, [_Issue.of(source.data, err) for err in exc.errors()])
    else:
        if spec.latent is None and _needs_latent(source.data):
            return None, [
                source.error(("latent",), "latent", "missing required field 'latent'", fix="add latent: 100")
            ]
        return spec, []
    errors: dict[tuple[int, int, str, str], SpecError] = {}
    for issue in issues:
        error = _to_spec_error(source, issue)
        errors.setdefault((error.line, error.column, error.path, error.message), error)
    for loc, tag in _unknown_types(source.data):
        message, fix = layer_type_error(tag, _block_names(source.data))
        error = source.error((*loc, "type"), f"{dotted(loc)}", message, fix=fix)
        errors.setdefault((error.line, error.column, error.path, error.message), error)
    return None, sorted(errors.values(), key=lambda e: (e.line, e.column))


def layer_problems(data: dict[str, Any], exc: ValidationError, loc: Loc, path: str) -> list[Finding]:
    """The errors of one layer validated on its own (a block's layer once its arguments are in), at ``loc``."""
    root = {"n": {"layers": [data]}}
    found = []
    for issue in _fold(root, [_Issue.of(root, _prefixed(err)) for err in exc.errors()]):
        message, fix = _explain(root, issue)
        rest = issue.loc[3:]
        where = f"{path} ({data.get('type')})" + (dotted(("x", *rest))[1:] if rest else "")
        found.append(Finding((*loc, *rest), where, message, fix, at_key=issue.kind == "extra_forbidden"))
    return found


def _prefixed(err: ErrorDetails) -> ErrorDetails:
    """The error as if the layer stood at ``n.layers[0]`` of a spec, where ``_explain`` knows its way."""
    return {**err, "loc": ("n", "layers", 0, *err["loc"])}


def layer_type_error(tag: Any, blocks: list[str]) -> tuple[str, str | None]:
    """``unknown layer type 'conv_transpose_2d'`` with the closest layer type or block as the fix."""
    return _layer_type_error(tag, blocks)


def _needs_latent(data: dict[str, Any]) -> bool:
    generator = data.get("generator")
    inputs = generator.get("inputs") if isinstance(generator, dict) else None
    return not isinstance(inputs, dict) or "latent" in inputs.values()


def _block_names(data: dict[str, Any]) -> list[str]:
    blocks = data.get("blocks")
    return [k for k in blocks if isinstance(k, str)] if isinstance(blocks, dict) else []


def _unknown_types(data: dict[str, Any]) -> list[tuple[Loc, str]]:
    """Layers of the networks whose type names neither a layer type nor a block."""
    blocks = set(_block_names(data))
    found: list[tuple[Loc, str]] = []
    for role in ("generator", "discriminator"):
        network = data.get(role)
        layers = network.get("layers") if isinstance(network, dict) else None
        for i, layer in enumerate(layers if isinstance(layers, list) else []):
            tag = layer.get("type") if isinstance(layer, dict) else None
            if isinstance(tag, str) and tag not in LAYER_TYPES and tag not in blocks:
                found.append(((role, "layers", i), tag))
    return found


@dataclass(frozen=True)
class _Issue:
    """A pydantic error with its location split into the part that is in the YAML and the part that is not."""

    loc: Loc  # the deepest node the YAML has (a missing or unknown field's name included)
    rest: tuple[str | int, ...]  # what pydantic went on into: an item of a value written once, a missing item
    branch: str | None  # the union branch that failed (``literal['same','valid']``)
    err: ErrorDetails
    count: int = 0  # for a tuple with items missing: how many it needs

    @classmethod
    def of(cls, data: Any, err: ErrorDetails) -> _Issue:
        loc: list[str | int] = []
        rest: list[str | int] = []
        branch = None
        node, in_yaml = data, True
        # Layers are validated by their own class (layers.validated_nodes): no union tag stands in the path.
        for part in err["loc"]:
            if isinstance(part, str) and "[" in part:
                branch = part  # a union branch (``literal['same','valid']``): not in the YAML
            elif not in_yaml:
                rest.append(part)
            elif _has(node, part):
                node = node[part]
                loc.append(part)
            elif isinstance(node, dict):
                loc.append(part)  # a missing field: named in the path, positioned at its mapping
                in_yaml = False
            else:
                rest.append(part)  # an item of a value written once, or a missing item of a list
                in_yaml = False
        return cls(tuple(loc), tuple(rest), branch, err)

    @property
    def kind(self) -> str:
        return self.err["type"]

    @property
    def field(self) -> str:
        """How the message names the value: ``kernel_size``, ``image[1]``, ``layer``."""
        if not self.loc:
            return "spec"
        if isinstance(self.loc[-1], int):
            if len(self.loc) >= 2 and self.loc[-2] == "layers":
                return "a layer"
            return dotted(self.loc[-2:])
        return str(self.loc[-1])


def _fold(data: Any, issues: list[_Issue]) -> list[_Issue]:
    """One issue per mistake (see the module docstring)."""
    by_loc: dict[Loc, list[_Issue]] = {}
    for issue in issues:
        by_loc.setdefault(issue.loc, []).append(issue)
    typos = {
        (*i.loc[:-1], m) for i in issues if i.kind == "extra_forbidden" for m in _close_fields(data, i.loc)
    }
    out = []
    for loc, group in by_loc.items():
        if len({i.branch for i in group}) > 1:
            # padding: 'full' fails both 'same' | 'valid' and [h, w]: the value's kind says which branch was meant.
            wants_text = isinstance(_value_at(data, loc), str)
            kept = [i for i in group if (i.kind == "literal_error") == wants_text]
            group = kept or group
        missing_items = [i for i in group if i.kind == "missing" and i.rest and isinstance(i.rest[-1], int)]
        if missing_items:
            count = max(int(i.rest[-1]) for i in missing_items) + 1
            group = [i for i in group if i not in missing_items] + [
                _Issue(loc, (), None, missing_items[0].err, count)
            ]
        out += [i for i in group if not (i.kind == "missing" and i.loc in typos)]
    return out


def _to_spec_error(source: Source, issue: _Issue) -> SpecError:
    message, fix = _explain(source.data, issue)
    loc = issue.loc
    path = dotted(loc)
    layer_type = _layer_type(source.data, loc)
    if layer_type and len(loc) >= 3:
        path = f"{dotted(loc[:3])} ({layer_type})" + path[len(dotted(loc[:3])) :]
    if issue.kind == "extra_forbidden":  # point at the unknown key, not at its value
        line, column = source.key_position(loc)
        return SpecError(source.file, line, column, path, message, fix)
    if issue.kind == "union_tag_invalid":  # point at the mistyped type itself
        line, column = source.position((*loc, "type"))
        return SpecError(source.file, line, column, path, message, fix)
    return source.error(loc, path, message, fix=fix)


def _explain(data: Any, issue: _Issue) -> tuple[str, str | None]:
    err, kind, name = issue.err, issue.kind, issue.field
    value = err.get("input")
    ctx: dict[str, Any] = dict(err.get("ctx") or {})
    if kind == "extra_forbidden":
        owners = [s for s, model in _SECTIONS.items() if len(issue.loc) == 1 and name in model.model_fields]
        if owners:  # a section's field at the top level: its line lost its indentation
            return f"unknown field {name!r} at the top level", (
                f"{name} belongs inside {' or '.join(owners)}: indent it under its section"
            )
        close = _close_fields(data, issue.loc)
        return f"unknown field {name!r}", (
            f"did you mean {close[0]}?" if close else _list_fields(data, issue.loc)
        )
    if kind == "union_tag_invalid":
        return _layer_type_error(_value_at(data, (*issue.loc, "type")), [])
    if kind == "union_tag_not_found":
        tag = _value_at(data, (*issue.loc, "type"))
        if tag is not None:
            return _layer_type_error(tag, [])
        return "a layer needs a 'type'", f"add type: one of {', '.join(sorted(LAYER_TYPES))}"
    if kind == "missing":
        return _missing(data, issue)
    if kind in _BOUNDS:
        word, key = _BOUNDS[kind]
        bound = ctx[key]
        limit = f"{bound:,}" + (" (2^31 − 1)" if bound == 2**31 - 1 else "")
        return f"{name} must be {word} {limit}, got {_describe(value)}", None
    if kind == "literal_error":
        return _literal(issue, value, str(ctx.get("expected", "")))
    if kind in ("int_type", "float_type", "bool_type"):
        return _scalar_type(kind, name, value)
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return _mapping_type(issue, value)
    if kind in ("too_long", "too_short"):
        return _length(kind, name, value, ctx)
    if kind == "string_pattern_mismatch":
        return _pattern(issue, str(value))
    if kind in ("tuple_type", "list_type", "string_type"):
        wanted = "text" if kind == "string_type" else "list" + _HINTS.get(name, "")
        return f"{name} must be {_article(wanted)} {wanted}, got {_describe(value)}", None
    return f"{name}: {err['msg'][0].lower()}{err['msg'][1:]} (got {_describe(value)})", None


_BOUNDS = {
    "greater_than_equal": ("at least", "ge"),
    "greater_than": ("more than", "gt"),
    "less_than_equal": ("at most", "le"),
    "less_than": ("less than", "lt"),
}
_NAMES = {"int": "an integer", "float": "a number", "bool": "a boolean (true or false)"}


def _layer_type_error(tag: Any, blocks: list[str]) -> tuple[str, str | None]:
    every = f"type is one of {', '.join(sorted(LAYER_TYPES))}"
    if blocks:
        every += f"; or a block: {', '.join(blocks)}"
    if not isinstance(tag, str):
        return f"a layer's type must be a name such as relu, got {_describe(tag)}", every
    # torch's class names (ReLU, ConvTranspose2d) and near misses (conv_transpose_2d) both find the tag.
    by_class = {cls.__name__.lower(): name for name, cls in LAYER_TYPES.items()}
    close = [by_class[tag.lower()]] if tag.lower() in by_class else []
    close = close or difflib.get_close_matches(tag, [*LAYER_TYPES, *blocks], n=1, cutoff=0.6)
    what = "layer type or block" if blocks else "layer type"
    return f"unknown {what} {tag!r}", (f"did you mean {close[0]}?" if close else every)


def _missing(data: Any, issue: _Issue) -> tuple[str, str | None]:
    if issue.count:  # items of a fixed-length list
        name, value = issue.field, issue.err.get("input")
        hint = _HINTS.get(name, " [height, width]" if name in _PAIRS else "")
        fix = None
        if name in _PAIRS and isinstance(value, tuple | list) and len(value) == 1:
            fix = f"{name}: {value[0]} (the same for height and width)"
        return f"{name} needs {issue.count} values{hint}, got {_describe(value)}", fix
    field = issue.field
    example = _EXAMPLES.get(field) if len(issue.loc) <= 2 else None
    return f"missing required field {field!r}", (f"add {example}" if example else None)


def _literal(issue: _Issue, value: Any, expected: str) -> tuple[str, str | None]:
    options = re.findall(r"'([^']*)'", expected)
    if issue.branch:  # padding: 'same' | 'valid' | sizes
        expected = ", ".join(repr(o) for o in options) + " or a size such as 1 or [1, 2]"
    message = f"{issue.field} must be {expected}, got {_describe(value)}"
    if isinstance(value, str):
        close = difflib.get_close_matches(value, options, n=1, cutoff=0.6)
        if close:
            return message, f"did you mean {close[0]}?"
        if issue.branch and _parses_as(value, "int"):
            return message, f"write {value.strip()} without quotes"
    return message, None


def _scalar_type(kind: str, name: str, value: Any) -> tuple[str, str | None]:
    wanted = kind.split("_")[0]
    fix = None
    if isinstance(value, str) and _parses_as(value, wanted):
        fix = f"write {value.strip()} without quotes"
    elif wanted == "int" and isinstance(value, float) and value.is_integer():
        fix = f"write {int(value)}"
    elif wanted == "bool" and value in (0, 1) and not isinstance(value, bool):
        fix = f"write {'true' if value else 'false'}"
    return f"{name} must be {_NAMES[wanted]}, got {_describe(value)}", fix


def _mapping_type(issue: _Issue, value: Any) -> tuple[str, str | None]:
    fix = None
    if issue.field == "a layer":
        if isinstance(value, str):
            close = difflib.get_close_matches(value, list(LAYER_TYPES), n=1, cutoff=0.6)
            fix = f"write {{type: {close[0]}}}" if close else None
        return f"a layer must be a mapping such as {{type: relu}}, got {_describe(value)}", fix
    if issue.loc == ("latent",):
        if isinstance(value, str) and _parses_as(value, "int"):
            fix = f"write {value.strip()} without quotes"
        elif isinstance(value, float) and value.is_integer():
            fix = f"write {int(value)}"
        return (
            f"latent must be a size (latent: 100) or a mapping (latent: {{size: 100}}), got {_describe(value)}",
            fix,
        )
    return f"{issue.field} must be a mapping, got {_describe(value)}", _EXAMPLES.get(issue.field)


def _length(kind: str, name: str, value: Any, ctx: dict[str, Any]) -> tuple[str, str | None]:
    hint = _HINTS.get(name, " [height, width]" if name in _PAIRS else "")
    if kind == "too_long":
        return f"{name} takes at most {ctx['max_length']} values{hint}, got {_describe(value)}", None
    least = ctx["min_length"]
    return (
        f"{name} needs at least {least} {'layer' if name == 'layers' else 'value'}{'' if least == 1 else 's'}, "
        f"got {_describe(value)}",
        None,
    )


def _pattern(issue: _Issue, value: str) -> tuple[str, str | None]:
    if issue.loc == ("name",):
        fixed = re.sub(r"[^A-Za-z0-9_.-]+", "_", value).lstrip(".") or "gan"
        if value.startswith(".") and re.fullmatch(r"[A-Za-z0-9_.-]+", value):  # names the run folder in --out
            return f"name {value!r} must not start with '.'", f"name: {fixed}"
        return f"name {value!r} may hold only letters, digits, '_', '.' and '-'", f"name: {fixed}"
    fixed = re.sub(r"\W+", "_", value)
    fixed = fixed if re.match(r"[A-Za-z_]", fixed) else f"_{fixed}"
    return f"{issue.field} {value!r} must be a Python identifier (letters, digits and '_')", f"name: {fixed}"


def _has(node: Any, part: str | int) -> bool:
    """Whether the YAML data ``node`` has a child ``part``."""
    if isinstance(node, dict):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def _value_at(data: Any, loc: Loc) -> Any:
    node = data
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _layer_type(data: Any, loc: Loc) -> str | None:
    if len(loc) >= 3 and loc[1] == "layers" and isinstance(loc[2], int):
        layer = _value_at(data, loc[:3])
        kind = layer.get("type") if isinstance(layer, dict) else None
        return kind if isinstance(kind, str) and kind in LAYER_TYPES else None
    return None


def _fields_at(data: Any, loc: Loc) -> list[str]:
    """The field names a mapping at ``loc`` may hold (for "did you mean")."""
    parent = loc[:-1]
    kind = _layer_type(data, parent) if len(parent) == 3 else None
    if kind:
        return [_alias(LAYER_TYPES[kind], f) for f in LAYER_TYPES[kind].model_fields]
    if not parent:
        return list(Spec.model_fields)
    if len(parent) == 2 and parent[0] == "blocks":
        return list(Block.model_fields)
    model = _SECTIONS.get(str(parent[0])) if len(parent) == 1 else None
    return [_alias(model, f) for f in model.model_fields] if model else []


def _alias(model: type[BaseModel], name: str) -> str:
    return model.model_fields[name].alias or name


def _close_fields(data: Any, loc: Loc) -> list[str]:
    return list(_closest(str(loc[-1]), tuple(_fields_at(data, loc)))) if loc else []


@functools.lru_cache(maxsize=1024)  # a hostile file repeats one typo 60,000 times; difflib is slow
def _closest(word: str, fields: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(difflib.get_close_matches(word, fields, n=1, cutoff=0.5))


def _list_fields(data: Any, loc: Loc) -> str | None:
    # A layer's graph fields (id, from, repeat, spectral_norm, init) are in the README; list its torch kwargs.
    graph = (
        {"type", "id", "from", "repeat", "spectral_norm", "init"}
        if len(loc) >= 3 and loc[1] == "layers"
        else {"type"}
    )
    fields = [f for f in _fields_at(data, loc) if f not in graph]
    return f"known fields: {', '.join(fields)}" if fields else None


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _parses_as(text: str, kind: str) -> bool:
    if kind == "bool":
        return text.lower() in ("true", "false")
    try:
        (int if kind == "int" else float)(text)
    except ValueError:
        return False
    return True


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        text = (
            f"[{', '.join(_describe(v) if isinstance(v, list | tuple | dict) else repr(v) for v in value)}]"
        )
        return f"the list {text}" if len(text) < 40 else f"a list of {len(value)}"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f"the string {value!r}" if len(value) < 40 else "a string"
    if value is None:
        return "nothing (null)"
    return repr(value)
