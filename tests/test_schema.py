"""``archspec schema``: an editor validating with it accepts every spec ``check`` accepts, shorthands included,
and rejects what ``check``'s field validation rejects (shape errors are beyond what JSON Schema can say)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from archspec.cli import main
from archspec.schema import spec_schema
from archspec.source import SourceError, parse_source, read_source
from archspec.validate import validate

ROOT = Path(__file__).resolve().parents[1]
SPEC_FILES = sorted((ROOT / "specs").rglob("*.yaml"))  # recursive: specs added in sub-folders are covered


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = spec_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _agrees(validator: jsonschema.Draft202012Validator, data: Any) -> tuple[bool, bool, list[str]]:
    """(accepted by archspec's validation, accepted by the schema, the schema's complaints)."""
    source = parse_source(json.dumps(data), "<data>")
    spec, _ = validate(source)
    complaints = [e.message for e in validator.iter_errors(data)]
    return spec is not None, not complaints, complaints


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_schema_agrees_with_check_on_every_shipped_spec(
    validator: jsonschema.Draft202012Validator, path: Path
) -> None:
    try:
        source = read_source(path)
    except SourceError:
        pytest.skip("not YAML (broken/yaml_syntax.yaml): an editor's YAML parser reports it, not the schema")
    spec, errors = validate(source)
    complaints = [e.message for e in validator.iter_errors(source.data)]
    if spec is not None:
        assert complaints == [], path  # shape and contract errors pass the schema: it cannot compute shapes
    else:
        assert complaints, [e.render() for e in errors]


def _seed() -> dict[str, Any]:
    return copy.deepcopy(read_source(ROOT / "specs" / "conv_gan.yaml").data)


def _set(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    *head, last = path.split(".")
    node: Any = data
    for part in head:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


CASES = [
    ("generator.layers.3.kernel_size", 8, True),
    ("generator.layers.3.kernel_size", [8, 8], True),
    ("generator.layers.3.kernel_size", [8], False),
    ("generator.layers.3.kernel_size", "8", False),
    ("generator.layers.3.kernel_size", 0, False),
    ("generator.layers.3.stride", [2, 3], True),
    ("generator.layers.3.padding", 1, True),
    ("discriminator.layers.0.padding", "same", True),
    ("discriminator.layers.0.padding", "full", False),
    ("latent", 100, True),
    ("latent", 0, False),
    ("latent", {"size": 100, "distribution": "uniform"}, True),
    ("latent", {"size": 100, "distribution": "cauchy"}, False),
    ("image", 128, False),  # no shorthand for the image: check refuses it too
    ("image", [3, 128], False),
    ("train.betas", 0.5, False),
    ("train.betas", [0.5, 0.999], True),
    ("train.epochs", 3, True),
    ("train.batch_size", True, False),
    ("train.shuffel", True, False),
    ("generator.layers.1", {"type": "upsample", "scale_factor": 2}, True),
    ("generator.layers.1", {"type": "upsample", "size": 64}, True),
    # any other name may be a block's (the schema cannot see which blocks a file defines): check says
    # "unknown layer type or block 'leaky_rellu'"; a type that is no name at all is refused here too
    ("generator.layers.1", {"type": 3}, False),
    ("generator.layers.1", {"type": "leaky_relu", "negative_slope": "steep"}, False),
    ("generator.layers", [], False),
]


@pytest.mark.parametrize(("path", "value", "valid"), CASES, ids=[f"{p}={v!r}" for p, v, _ in CASES])
def test_schema_accepts_the_shorthands_check_accepts_and_nothing_else(
    validator: jsonschema.Draft202012Validator, path: str, value: Any, valid: bool
) -> None:
    ours, schema, complaints = _agrees(validator, _set(_seed(), path, value))
    assert ours is valid  # the case is what we think it is
    assert schema is valid, complaints


def test_schema_command_prints_the_widened_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(spec_schema()))
    assert printed["$schema"] == "https://json-schema.org/draft/2020-12/schema"
