"""The JSON Schema of the spec format, for editors' YAML validation (``archspec schema``).

pydantic writes the schema of what a field holds once validated; the spec's shorthands (``kernel_size: 8`` for
``[8, 8]``, ``latent: 100`` for ``{size: 100}``) are accepted by the ``BeforeValidator`` that normalises them,
which pydantic's schema leaves out. This module asks each such validator what it makes of a single value and
widens the schema where it accepts one, so that a new layer type or field with the same shorthand is covered
without a line here:

* a validator that turns a single number into a tuple of equal items (``_pair``): the item alone is accepted too;
* one that turns a number into a one-key mapping (``latent``): that key's schema is accepted in its place.

Imports neither torch nor rich.
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from archspec.spec import schema_model

DIALECT = "https://json-schema.org/draft/2020-12/schema"
# The value each normalising validator is asked about: a number that every size, stride and scale accepts.
_PROBE = 1
# Marks, until the definitions are complete, where a shorthand stands for one property of a referenced model.
_SHORTHAND = "x-archspec-shorthand-of"


def spec_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a spec file, shorthands included."""
    schema = schema_model().model_json_schema(by_alias=True, schema_generator=_WithShorthands)
    schema = _resolve_shorthands(schema, schema.get("$defs", {}))
    return {"$schema": DIALECT, **schema, "title": "archspec GAN spec"}


class _WithShorthands(GenerateJsonSchema):
    """pydantic's generator, widened wherever a before-validator accepts a single value for a compound one."""

    def function_before_schema(self, schema: core_schema.BeforeValidatorFunctionSchema) -> JsonSchemaValue:
        inner = super().function_before_schema(schema)
        function = schema["function"]
        if function["type"] != "no-info":
            return inner
        try:
            probed = function["function"](_PROBE)
        except (TypeError, ValueError):
            return inner
        if isinstance(probed, tuple | list) and len(probed) > 1:
            return _accept_item(inner, len(probed))
        if isinstance(probed, dict) and len(probed) == 1 and "$ref" in inner:
            (key,) = probed
            return {"anyOf": [{_SHORTHAND: inner["$ref"], "key": key}, inner]}
        return inner


def _accept_item(schema: JsonSchemaValue, length: int) -> JsonSchemaValue:
    """``schema`` (an array of ``length`` equal items, maybe among other choices) also accepting one item."""
    choices = schema.get("anyOf")
    if isinstance(choices, list):
        widened = [_accept_item(choice, length) for choice in choices]
        return {**schema, "anyOf": [c for w in widened for c in w.get("anyOf", [w])]}
    items = schema.get("prefixItems")
    equal = (
        schema.get("type") == "array"
        and isinstance(items, list)
        and len(items) == length == schema.get("minItems") == schema.get("maxItems")
        and all(item == items[0] for item in items)
    )
    if not equal:
        return schema
    assert isinstance(items, list)  # for mypy: checked just above
    annotations: dict[str, Any] = {k: schema[k] for k in ("title", "description", "default") if k in schema}
    array = {k: v for k, v in schema.items() if k not in annotations}
    return {**annotations, "anyOf": [items[0], array]}


def _resolve_shorthands(node: Any, defs: dict[str, Any]) -> Any:
    """Replace each shorthand mark with the schema of the property it stands for, now that $defs exist."""
    if isinstance(node, list):
        return [_resolve_shorthands(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if _SHORTHAND in node:
        model = defs[node[_SHORTHAND].rsplit("/", 1)[-1]]
        return dict(model["properties"][node["key"]])
    return {key: _resolve_shorthands(value, defs) for key, value in node.items()}
