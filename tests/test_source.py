"""Reading a spec file: positions kept, and everything that is not a readable YAML mapping refused with a place."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from archspec import check_file, check_text
from archspec.errors import SpecError
from archspec.source import MAX_BYTES, MAX_DEPTH, MAX_NODES, SourceError, parse_source, read_source


def source_error(text: str) -> SpecError:
    with pytest.raises(SourceError) as info:
        parse_source(text, "s.yaml")
    error = info.value.error
    assert "\n" not in error.headline()
    return error


def file_error(path: Path) -> SpecError:
    result = check_file(path)
    assert result.spec is None and len(result.errors) == 1
    return result.errors[0]


# --- what is read ------------------------------------------------------------------------------------------------------


def test_positions_point_at_keys_of_blocks_and_at_scalar_values(seed_text: str) -> None:
    source = parse_source(seed_text, "conv_gan.yaml")
    lines = seed_text.splitlines()
    assert source.position(("generator",)) == (lines.index("generator:") + 1, 1)
    assert source.position(("generator", "layers")) == (lines.index("  layers:") + 1, 3)
    row = next(i for i, line in enumerate(lines) if "padding: 1}" in line) + 1
    assert source.position(("generator", "layers", 9)) == (row, 7)
    assert source.position(("generator", "layers", 9, "padding")) == (row, lines[row - 1].index("1}") + 1)
    assert source.position(("latent", "size")) == (lines.index("  size: 100") + 1, 9)


def test_position_of_something_absent_is_its_nearest_present_parent(seed_text: str) -> None:
    source = parse_source(seed_text)
    assert source.position(("generator", "layers", 9, "no_such_field")) == source.position(
        ("generator", "layers", 9)
    )
    first_key = seed_text.splitlines().index("name: conv_gan") + 1  # the document starts after the comments
    assert source.position(("nothing", "here")) == source.position(()) == (first_key, 1)


def test_1e_4_is_a_float_and_yaml_1_1_floats_still_are() -> None:
    data = parse_source("a: 1e-4\nb: 1.0e-4\nc: 2E5\nd: -3e+2\ne: 1e4x\nf: 10\n").data
    assert data == {"a": 1e-4, "b": 1e-4, "c": 2e5, "d": -300.0, "e": "1e4x", "f": 10}
    assert type(data["f"]) is int
    # The float rule belongs to archspec's loader only: PyYAML's own SafeLoader is unchanged.
    assert yaml.safe_load("a: 1e-4") == {"a": "1e-4"}


def test_the_seed_reads_and_checks(seed_text: str) -> None:
    assert read_source(Path(__file__).parent.parent / "specs" / "conv_gan.yaml").data["name"] == "conv_gan"
    assert check_text(seed_text).ok


def test_a_byte_order_mark_is_fine(tmp_path: Path, seed_text: str) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + seed_text.encode())
    assert check_file(path).ok


# --- what is refused, and where ----------------------------------------------------------------------------------------


def test_yaml_syntax_error_has_its_position() -> None:
    error = source_error("name: x\nlatent: [1, 2\nimage: 3\n")
    assert (error.line, error.column) == (3, 6)
    assert error.message == (
        "YAML syntax: expected ',' or ']', but got ':' (while parsing a flow sequence that starts at line 2)"
    )


def test_tab_indentation() -> None:
    error = source_error("name: x\n\tlatent: 3\n")
    assert (error.line, error.column) == (2, 1)
    assert "found character '\\t' that cannot start any token" in error.message


def test_a_second_document() -> None:
    error = source_error("name: a\n---\nname: b\n")
    assert (error.line, error.column, error.message) == (
        2,
        1,
        "a second YAML document starts here; a spec file holds one",
    )


@pytest.mark.parametrize(
    ("raw", "line", "column", "byte"),
    [
        (b"name: caf\xe9\n", 1, 10, "e9"),
        (b"name: x\n# \xc3\xa9t\xc3\xa9 \xff\n", 2, 7, "ff"),  # columns count characters, not bytes
        (b"\xef\xbb\xbfname: \x80\n", 1, 7, "80"),  # after a byte-order mark
    ],
)
def test_undecodable_bytes(tmp_path: Path, raw: bytes, line: int, column: int, byte: str) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(raw)
    error = file_error(path)
    assert (error.line, error.column) == (line, column)
    assert error.message == f"not UTF-8 text: byte 0x{byte} cannot be decoded"
    assert error.fix == "save the file as UTF-8"


def test_control_characters() -> None:
    error = source_error("name: x\x00y\n")
    assert (error.line, error.column) == (1, 8)
    assert error.message == "control character U+0000 is not allowed in YAML text"


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        ("name: x\nlatent: 3\nname: y\n", 3, 1, "duplicate key 'name' (first given at line 1, column 1)"),
        (
            "generator:\n  layers:\n    - {type: relu, type: tanh}\n",
            3,
            20,
            "duplicate key 'type' (first given at line 3, column 8)",
        ),
    ],
)
def test_duplicate_keys(text: str, line: int, column: int, message: str) -> None:
    error = source_error(text)
    assert (error.line, error.column, error.message, error.fix) == (
        line,
        column,
        message,
        "keep one of the two",
    )


@pytest.mark.parametrize("text", ["", "   \n\n", "\t\n"])
def test_empty_file(text: str) -> None:
    error = source_error(text)
    assert (error.line, error.message) == (
        0,
        "the file is empty; a spec needs name, latent, image, generator, discriminator",
    )
    assert (
        error.headline()
        == "s.yaml: error: the file is empty; a spec needs name, latent, image, generator, discriminator"
    )


def test_only_comments() -> None:
    assert (
        source_error("# nothing\n").message == "the file holds no YAML document, only comments or blank lines"
    )


@pytest.mark.parametrize(
    ("text", "kind"), [("- a\n- b\n", "list"), ("hello\n", "scalar value"), ("42\n", "scalar value")]
)
def test_a_document_that_is_not_a_mapping(text: str, kind: str) -> None:
    error = source_error(text)
    assert (error.line, error.column, error.message) == (1, 1, f"a spec must be a YAML mapping, not a {kind}")


def test_a_directory(tmp_path: Path) -> None:
    error = file_error(tmp_path)
    assert error.headline() == f"{tmp_path}: error: is a directory, not a spec file"


def test_a_missing_path(tmp_path: Path) -> None:
    error = file_error(tmp_path / "nope.yaml")
    assert error.headline() == f"{tmp_path / 'nope.yaml'}: error: no such file"


def test_a_huge_file(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_bytes(b"# padding\n" * (MAX_BYTES // 10 + 1))
    error = file_error(path)
    assert error.message == f"file is {path.stat().st_size:,} bytes; a spec is at most {MAX_BYTES:,}"
    text_error = source_error("#" * (MAX_BYTES + 1))
    assert text_error.message == f"spec text is {MAX_BYTES + 1:,} characters; a spec is at most {MAX_BYTES:,}"


@pytest.mark.parametrize(
    ("text", "column", "tag"),
    [
        ("name: !!python/object/apply:os.system ['echo hi']\n", 7, "!!python/object/apply:os.system"),
        ("name: !!python/name:os.system\n", 7, "!!python/name:os.system"),
        ("name: !!python/object/new:os.system [ls]\n", 7, "!!python/object/new:os.system"),
        ("name: !custom x\n", 7, "!custom"),
        ("name: !!binary aGVsbG8=\n", 7, "!!binary"),
        ("name: !!set {a}\n", 7, "!!set"),
    ],
)
def test_unsafe_and_unknown_tags_are_refused(text: str, column: int, tag: str) -> None:
    error = source_error(text)
    assert (error.line, error.column, error.path) == (1, column, "name")
    assert error.message == f"YAML tag {tag} is not allowed in a spec"
    assert error.fix == "a spec holds only mappings, lists, strings, numbers, booleans and null"


def test_a_python_tag_on_a_key_is_refused_too() -> None:
    assert "is not allowed in a spec" in source_error("? !!python/name:os.system\n: 1\n").message


def test_a_date_is_refused_with_a_quoting_fix() -> None:
    error = source_error("name: x\ndescription: 2024-01-01\n")
    assert (error.line, error.column, error.path) == (2, 14, "description")
    assert error.message == "2024-01-01 reads as a YAML date, which no spec field takes"
    assert error.fix == "write it in quotes: '2024-01-01'"


def test_merge_keys_are_refused() -> None:
    error = source_error("base: &b {type: relu}\nlayer: {<<: *b, inplace: true}\n")
    assert (error.line, error.column, error.message) == (
        2,
        9,
        "YAML merge keys (<<) are not supported in a spec",
    )


@pytest.mark.parametrize(
    ("text", "message", "fix"),
    [
        (
            "1: x\n",
            "key '1' reads as a number; keys are field names such as kernel_size",
            "write it in quotes: '1'",
        ),
        (
            "on: x\n",
            "key 'on' reads as a boolean; keys are field names such as kernel_size",
            "write it in quotes: 'on'",
        ),
        ("? [a, b]\n: x\n", "mapping keys must be plain names such as kernel_size", "write a field name"),
    ],
)
def test_keys_must_be_names(text: str, message: str, fix: str) -> None:
    error = source_error(text)
    assert (error.message, error.fix) == (message, fix)


BILLION_LAUGHS = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def test_billion_laughs_stops_at_the_node_limit() -> None:
    error = source_error(BILLION_LAUGHS)
    assert error.message == f"more than {MAX_NODES:,} YAML nodes (an alias expansion bomb?)"
    assert error.line == 6 and error.path == "f"


def test_a_few_aliases_are_fine() -> None:
    assert parse_source("a: &x [1, 2]\nb: *x\n").data == {"a": [1, 2], "b": [1, 2]}


def test_deep_nesting_is_refused_at_its_position() -> None:
    error = source_error("a: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n")
    assert error.message == f"YAML nested more than {MAX_DEPTH} levels deep"
    assert (error.line, error.column, error.path) == (1, 4 + MAX_DEPTH, "a")


def test_nesting_deeper_than_the_parser_can_recurse_is_refused_too() -> None:
    error = source_error("a: " + "[" * 5000 + "]" * 5000 + "\n")
    assert error.message == f"YAML nested too deeply (more than {MAX_DEPTH} levels)"
    assert error.line == 1 and error.column > 1


def test_a_recursive_alias_is_refused() -> None:
    assert source_error("a: &a [*a]\n").message == f"YAML nested more than {MAX_DEPTH} levels deep"


def test_every_source_error_is_one_line_with_a_place() -> None:
    for text in ["a: [1\n", "a: 1\na: 2\n", "a: !!python/none ''\n", BILLION_LAUGHS, "- 1\n"]:
        error = source_error(text)
        assert error.headline().startswith(f"s.yaml:{error.line}:{error.column}: error: ")


# --- YAML errors in plain words ------------------------------------------------------------------------------------

_HEAD = "name: a\nlatent: 100\nimage: [3, 64, 64]\n"


@pytest.mark.parametrize(
    ("body", "line", "hint"),
    [
        (  # a list item one space short
            "generator:\n  layers:\n    - {type: linear, out_features: 10}\n   - {type: relu}\n",
            7,
            "line 7 is indented by 3, the line above by 4 (6 after its '- ')",
        ),
        (  # a field of a list item aligned with the dash instead of the field above
            "generator:\n  layers:\n    - type: linear\n    out_features: 10\n",
            7,
            "line 7 is indented by 4, the line above by 4 (6 after its '- ')",
        ),
        (  # a field indented deeper than its neighbour
            "train:\n  batch_size: 4\n    lr: 0.1\n",
            6,
            "line 6 is indented by 4, the line above by 2",
        ),
    ],
)
def test_indentation_errors_get_a_plain_hint(body: str, line: int, hint: str) -> None:
    error = source_error(_HEAD + body)
    assert error.line == line and error.message.startswith("YAML syntax: ")  # PyYAML's words stay, for search
    assert error.fix is not None and error.fix.startswith(f"check the indentation: {hint};")


def test_a_colon_in_a_text_value_is_mentioned() -> None:
    error = source_error(_HEAD + "description: GAN: faces\n")
    assert error.fix is not None and "put the text in quotes" in error.fix


def test_other_syntax_errors_get_no_indentation_hint() -> None:
    assert source_error(_HEAD + "generator: {layers: [\n").fix is None


def test_a_section_field_dedented_to_the_top_level_is_named_as_such() -> None:
    text = _HEAD + "generator:\nlayers:\n  - {type: linear, out_features: 10}\n"
    errors = check_text(text).errors
    layers = next(e for e in errors if e.path == "layers")
    assert layers.message == "unknown field 'layers' at the top level"
    assert layers.fix == "layers belongs inside generator or discriminator: indent it under its section"
    shuffled = check_text(_HEAD + "shuffle: true\n").errors
    assert any(e.fix == "shuffle belongs inside train: indent it under its section" for e in shuffled)
