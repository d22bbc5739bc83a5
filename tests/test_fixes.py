"""Every fix the broken corpus gets is a fix: applied as written, the spec checks (or only the file's other,
independent errors remain). The fixes are read with the small grammar they are written in; a fix this test cannot
read fails it, so a new kind of fix text comes with a way to apply it."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from archspec.check import check_file, check_text
from archspec.errors import SpecError
from archspec.source import read_source

ROOT = Path(__file__).resolve().parents[1]
BROKEN = sorted((ROOT / "specs" / "broken").rglob("*.yaml"))
# Fixes are alternatives: "A, or B", "A; or B", "A (or leave it out: ...)".
_OR = re.compile(r", or |; or ")
_LEAVE_OUT = re.compile(r"^(?P<base>.*?) \(or leave it out[^)]*\)$")
_LAYER = re.compile(r"^(?P<role>generator|discriminator)\.layers\[(?P<index>\d+)\]")


def _alternatives(fix: str) -> list[str]:
    leave = _LEAVE_OUT.match(fix)
    if leave:
        return [leave["base"], "leave out " + leave["base"].split(":")[0]]
    return _OR.split(fix)


def _value(text: str) -> Any:
    return yaml.safe_load(text)


def _layers(data: dict[str, Any], role: str) -> list[Any]:
    layers: list[Any] = data[role]["layers"]
    return layers


def apply(data: dict[str, Any], error: SpecError, fix: str) -> None:
    """Apply one alternative of ``error``'s fix to the spec ``data`` in place."""
    here = _LAYER.match(error.path)
    role, index = (here["role"], int(here["index"])) if here else (None, None)
    layer = _layers(data, role)[index] if role is not None and index is not None else None
    if m := re.fullmatch(r"did you mean (\S+)\?", fix):
        unknown = re.search(r"unknown (layer type|field) '([^']+)'", error.message)
        assert unknown is not None and layer is not None, error
        if unknown[1] == "layer type":
            layer["type"] = m[1]
        else:
            layer[m[1]] = layer.pop(unknown[2])
    elif m := re.fullmatch(r"remove (generator|discriminator)\.layers\[(\d+)\] \(\w+\)", fix):
        del _layers(data, m[1])[int(m[2])]
    elif m := re.fullmatch(r"set train\.(\w+): (.+)", fix):
        data.setdefault("train", {})[m[1]] = _value(m[2])
    elif m := re.fullmatch(r"leave out (\w+)", fix):
        assert layer is not None, error
        del layer[m[1]]
    elif m := re.fullmatch(r"insert (\{.*\}) before (?:this layer|(\w+)\.layers\[(\d+)\] \(\w+\))", fix):
        where = (m[2], int(m[3])) if m[2] else (role, index)
        assert where[0] is not None and where[1] is not None, error
        _layers(data, where[0]).insert(where[1], _value(m[1]))
    elif m := re.fullmatch(r"append (\{.*?\})(?: and (\{.*\}))?", fix):
        assert role is not None, error
        _layers(data, role).extend(_value(x) for x in (m[1], m[2]) if x)
    elif m := re.fullmatch(
        r"(\w+): (.+?)(?: in (\w+)\.layers\[(\d+)\])?(?: gives .*| \(the argument .*\))?", fix
    ):
        if m[3]:
            _layers(data, m[3])[int(m[4])][m[1]] = _value(m[2])
        elif layer is not None:
            layer[m[1]] = _value(m[2])
        else:
            data[m[1]] = _value(m[2])
    else:
        pytest.fail(f"a fix this test cannot apply (teach it, or write the fix in its grammar): {fix!r}")


def _key(error: SpecError) -> tuple[str, str]:
    return error.path, error.message


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.name)
def test_every_fix_of_the_corpus_makes_the_spec_check(path: Path) -> None:
    result = check_file(path)
    assert not result.ok
    fixed = [e for e in result.errors if e.fix]
    if not fixed:
        assert path.name == "yaml_syntax.yaml", "a broken spec whose errors offer no fix"
        return
    data = read_source(path).data
    for error in fixed:
        assert error.fix is not None
        others = {_key(e) for e in result.errors} - {_key(error)}
        for alternative in _alternatives(error.fix):
            mended = copy.deepcopy(data)
            apply(mended, error, alternative)
            after = check_text(yaml.safe_dump(mended, sort_keys=False), path.name)
            left = {_key(e) for e in after.errors}
            assert left <= others, (alternative, [e.render() for e in after.errors])


@pytest.mark.parametrize(
    ("fix", "alternatives"),
    [
        ("in_channels: 64 (or leave it out: it is inferred)", ["in_channels: 64", "leave out in_channels"]),
        (
            "remove discriminator.layers[7] (sigmoid), or set train.loss: bce",
            ["remove discriminator.layers[7] (sigmoid)", "set train.loss: bce"],
        ),
        ("padding: 1 gives 128×128", ["padding: 1 gives 128×128"]),
    ],
)
def test_the_grammar_reads_alternatives(fix: str, alternatives: list[str]) -> None:
    assert _alternatives(fix) == alternatives


def test_the_issue_cases_get_the_fix_that_works() -> None:
    """A missing flatten gets one before the linear, a missing first view the computed [100, 1, 1] (or the
    seed's [3, 11, 11]), and a channels-last image one error saying so, not three about the layers."""
    fixes = {p.stem: [e.fix for e in check_file(p).errors] for p in BROKEN}
    assert fixes["flatten"] == ["insert {type: flatten} before discriminator.layers[5] (linear)"]
    assert fixes["no_view"] == ["insert {type: view, shape: [100, 1, 1]} before this layer"]
    assert fixes["channels_last"] == ["image: [3, 32, 32]"]
    seed = (ROOT / "specs" / "conv_gan.yaml").read_text()
    no_view = seed.replace("    - {type: view, shape: [3, 11, 11]}", "    # no view")
    assert [e.fix for e in check_text(no_view).errors] == [
        "insert {type: view, shape: [3, 11, 11]} before this layer"
    ]
