"""Validate parsed YAML with pydantic and turn each pydantic error into a SpecError at its YAML position."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from archspec.errors import SpecError
from archspec.layers import LAYER_TYPES
from archspec.source import Loc, Source
from archspec.spec import Latent, Network, Spec, Train

_SECTIONS: dict[str, type[BaseModel]] = {"latent": Latent, "train": Train, "generator": Network,
                                         "discriminator": Network}


def validate(source: Source) -> tuple[Spec | None, list[SpecError]]:
    """The validated Spec, or None and every validation error of the file."""
    try:
        return Spec.model_validate(source.data), []
    except ValidationError as exc:
        return None, [_to_spec_error(source, err) for err in exc.errors()]


def dotted(loc: Loc) -> str:
    """``('generator', 'layers', 9, 'padding')`` → ``generator.layers[9].padding``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _to_spec_error(source: Source, err: ErrorDetails) -> SpecError:
    loc = _yaml_loc(source.data, err["loc"])
    message, fix = _explain(source.data, loc, err)
    path = dotted(loc)
    layer_type = _layer_type(source.data, loc)
    if layer_type and len(loc) >= 3:
        path = f"{dotted(loc[:3])} ({layer_type})" + path[len(dotted(loc[:3])):]
    return source.error(loc, path, message, fix=fix)


def _yaml_loc(data: Any, loc: tuple[str | int, ...]) -> Loc:
    """Drop the segments pydantic adds that are not in the YAML (a discriminated union's tag, validator names)."""
    out: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and (part in LAYER_TYPES or "[" in part):
            continue
        elif isinstance(node, list | str | int | float) or node is None:
            if isinstance(part, str) and not isinstance(node, dict):
                continue
            node = None
        else:
            node = None
        out.append(part)
    return tuple(out)


def _layer_type(data: Any, loc: Loc) -> str | None:
    if len(loc) >= 3 and loc[1] == "layers" and isinstance(loc[2], int):
        try:
            layer = data[loc[0]]["layers"][loc[2]]
        except (KeyError, IndexError, TypeError):
            return None
        kind = layer.get("type") if isinstance(layer, dict) else None
        return kind if isinstance(kind, str) and kind in LAYER_TYPES else None
    return None


def _fields_at(data: Any, loc: Loc) -> list[str]:
    """The field names a mapping at ``loc`` may hold (for "did you mean")."""
    parent = loc[:-1]
    kind = _layer_type(data, parent) if len(parent) == 3 else None
    if kind:
        return [f for f in LAYER_TYPES[kind].model_fields]
    if not parent:
        return list(Spec.model_fields)
    model = _SECTIONS.get(str(parent[0])) if len(parent) == 1 else None
    return list(model.model_fields) if model else []


def _explain(data: Any, loc: Loc, err: ErrorDetails) -> tuple[str, str | None]:
    kind, value = err["type"], err.get("input")
    field = loc[-1] if loc else "spec"
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(field), _fields_at(data, loc), n=1, cutoff=0.5)
        return f"unknown field '{field}'", (f"did you mean {close[0]}?" if close else _list_fields(data, loc))
    if kind == "union_tag_invalid":
        tag = err.get("ctx", {}).get("tag", value)
        close = difflib.get_close_matches(str(tag), list(LAYER_TYPES), n=1, cutoff=0.6)
        fix = f"did you mean {close[0]}?" if close else f"type is one of {', '.join(sorted(LAYER_TYPES))}"
        return f"unknown layer type '{tag}'", fix
    if kind == "union_tag_not_found":
        return "a layer needs a 'type'", f"add type: one of {', '.join(sorted(LAYER_TYPES))}"
    if kind == "missing":
        return f"missing required field '{field}'", None
    if kind in ("int_type", "float_type", "bool_type") and isinstance(value, str):
        wanted = kind.split("_")[0]
        fix = f"write {value} without quotes" if _parses_as(value, wanted) else None
        return f"{field} must be a{'n' if wanted == 'int' else ''} {_NAMES[wanted]}, got the string {value!r}", fix
    if kind in ("int_type", "float_type", "bool_type", "tuple_type", "string_type", "list_type", "dict_type",
                "model_type", "model_attributes_type"):
        wanted = _NAMES.get(kind.split("_")[0], kind.split("_")[0])
        return f"{field} must be {_article(wanted)} {wanted}, got {_describe(value)}", None
    return f"{field}: {err['msg'][0].lower()}{err['msg'][1:]} (got {_describe(value)})", None


_NAMES = {"int": "integer", "float": "number", "bool": "boolean (true/false)", "tuple": "list", "string": "text",
          "list": "list", "dict": "mapping", "model": "mapping"}


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _parses_as(text: str, kind: str) -> bool:
    try:
        {"int": int, "float": float}.get(kind, lambda t: {"true": 1, "false": 0}[t.lower()])(text)
    except (ValueError, KeyError):
        return False
    return True


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return f"the list {value}" if len(str(value)) < 40 else "a list"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f"the string {value!r}" if len(value) < 40 else "a string"
    if value is None:
        return "nothing (null)"
    return repr(value)


def _list_fields(data: Any, loc: Loc) -> str | None:
    fields = [f for f in _fields_at(data, loc) if f != "type"]
    return f"known fields: {', '.join(fields)}" if fields else None
