"""Validation errors: one per mistake, at the YAML position of the mistake, saying what with numbers, with a fix."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from archspec import Spec, check_text
from archspec.errors import SpecError
from archspec.layers import LAYER_TYPES, Conv2d
from tests.helpers import edit, where


def errors(text: str) -> tuple[SpecError, ...]:
    result = check_text(text, "s.yaml")
    for error in result.errors:
        assert "\n" not in error.headline(), error.headline()
    return result.errors


def only(text: str) -> SpecError:
    found = errors(text)
    assert len(found) == 1, "\n".join(e.render() for e in found)
    return found[0]


def check(text: str, at: str, path: str, message: str, fix: str | None) -> None:
    """The text has exactly one error, at the first occurrence of ``at``, with this path, message and fix."""
    error = only(text)
    assert (error.line, error.column) == where(text, at)
    assert (error.path, error.message, error.fix) == (path, message, fix)


LINEAR = "{type: linear, out_features: 128}"
CONV_T = "{type: conv_transpose2d, out_channels: 8, kernel_size: 4, stride: 2, padding: 1}"
CONV = "{type: conv2d, out_channels: 8, kernel_size: 4, stride: 2, padding: 1}"


# --- wrong types -------------------------------------------------------------------------------------------------------


def test_a_quoted_number_gets_write_it_without_quotes(small_text: str) -> None:
    text = edit(small_text, "out_features: 128}", "out_features: '128'}")
    check(
        text,
        "'128'",
        "generator.layers[0] (linear).out_features",
        "out_features must be an integer, got the string '128'",
        "write 128 without quotes",
    )


def test_a_quoted_kernel_size(small_text: str) -> None:
    text = edit(small_text, CONV_T, CONV_T.replace("kernel_size: 4", "kernel_size: '8'"))
    check(
        text,
        "'8'",
        "generator.layers[3] (conv_transpose2d).kernel_size",
        "kernel_size must be an integer, got the string '8'",
        "write 8 without quotes",
    )


def test_a_quoted_item_of_a_list(small_text: str) -> None:
    text = edit(small_text, CONV_T, CONV_T.replace("kernel_size: 4", "kernel_size: [4, '4']"))
    error = only(text)
    assert error.path == "generator.layers[3] (conv_transpose2d).kernel_size[1]"
    assert (error.message, error.fix) == (
        "kernel_size[1] must be an integer, got the string '4'",
        "write 4 without quotes",
    )


@pytest.mark.parametrize(
    ("value", "message", "fix"),
    [
        ("4.0", "kernel_size must be an integer, got 4.0", "write 4"),
        ("4.5", "kernel_size must be an integer, got 4.5", None),
        ("true", "kernel_size must be an integer, got true", None),
    ],
)
def test_not_an_integer(small_text: str, value: str, message: str, fix: str | None) -> None:
    text = edit(small_text, CONV, CONV.replace("kernel_size: 4", f"kernel_size: {value}"))
    check(text, f"kernel_size: |{value}", "discriminator.layers[0] (conv2d).kernel_size", message, fix)


@pytest.mark.parametrize(
    ("value", "message", "fix"),
    [
        (
            "'false'",
            "bias must be a boolean (true or false), got the string 'false'",
            "write false without quotes",
        ),
        ("0", "bias must be a boolean (true or false), got 0", "write false"),
    ],
)
def test_not_a_boolean(small_text: str, value: str, message: str, fix: str) -> None:
    text = edit(small_text, CONV, CONV.replace("}", f", bias: {value}}}"))
    check(text, f"bias: |{value}", "discriminator.layers[0] (conv2d).bias", message, fix)


def test_a_quoted_learning_rate(small_text: str) -> None:
    text = edit(small_text, "lr: 2.0e-4", "lr: '2e-4'")
    check(
        text, "'2e-4'", "train.lr", "lr must be a number, got the string '2e-4'", "write 2e-4 without quotes"
    )


def test_1e_4_is_a_number(small_text: str) -> None:
    result = check_text(edit(small_text, "lr: 2.0e-4", "lr: 1e-4"))
    assert result.ok and result.spec is not None
    assert result.spec.train.lr == 1e-4


# --- sizes ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "at", "path", "message"),
    [
        (
            LINEAR,
            LINEAR.replace("128", "0"),
            "out_features: |0}",
            "generator.layers[0] (linear).out_features",
            "out_features must be at least 1, got 0",
        ),
        (
            CONV_T,
            CONV_T.replace("kernel_size: 4", "kernel_size: -4"),
            "-4",
            "generator.layers[3] (conv_transpose2d).kernel_size",
            "kernel_size must be at least 1, got -4",
        ),
        (
            CONV,
            CONV.replace("padding: 1", "padding: -1"),
            "padding: |-1",
            "discriminator.layers[0] (conv2d).padding",
            "padding must be at least 0, got -1",
        ),
        (
            "image: [3, 16, 16]",
            "image: [3, 0, 16]",
            "image: [3, |0",
            "image[1]",
            "image[1] must be at least 1, got 0",
        ),
        ("latent: 16", "latent: -3", "latent: |-3", "latent", "latent must be at least 1, got -3"),
        ("lr: 2.0e-4", "lr: -1", "lr: |-1", "train.lr", "lr must be more than 0.0, got -1"),
        (
            "batch_size: 16",
            "batch_size: 0",
            "batch_size: |0",
            "train.batch_size",
            "batch_size must be at least 1, got 0",
        ),
        (
            LINEAR,
            LINEAR.replace("128", "99999999999"),
            "99999999999",
            "generator.layers[0] (linear).out_features",
            "out_features must be at most 2,147,483,647 (2^31 − 1), got 99999999999",
        ),
    ],
)
def test_zero_negative_and_absurd_sizes(
    small_text: str, old: str, new: str, at: str, path: str, message: str
) -> None:
    check(edit(small_text, old, new), at, path, message, None)


# --- lists of fixed length ---------------------------------------------------------------------------------------------


def test_a_pair_with_one_value(small_text: str) -> None:
    text = edit(small_text, CONV, CONV.replace("kernel_size: 4", "kernel_size: [4]"))
    check(
        text,
        "kernel_size: [4]",  # a list's errors point at its key
        "discriminator.layers[0] (conv2d).kernel_size",
        "kernel_size needs 2 values [height, width], got the list [4]",
        "kernel_size: 4 (the same for height and width)",
    )


def test_a_pair_with_three_values(small_text: str) -> None:
    text = edit(small_text, CONV, CONV.replace("padding: 1", "padding: [1, 1, 1]"))
    check(
        text,
        "padding: [1, 1, 1]",
        "discriminator.layers[0] (conv2d).padding",
        "padding takes at most 2 values [height, width], got the list [1, 1, 1]",
        None,
    )


def test_an_image_with_two_values(small_text: str) -> None:
    text = edit(small_text, "image: [3, 16, 16]", "image: [3, 16]")
    check(
        text,
        "image: [3, 16]",
        "image",
        "image needs 3 values [channels, height, width], got the list [3, 16]",
        None,
    )


def test_an_image_that_is_not_a_list(small_text: str) -> None:
    text = edit(small_text, "image: [3, 16, 16]", "image: 16")
    check(text, "image: |16", "image", "image must be a list [channels, height, width], got 16", None)


def test_no_layers(small_text: str) -> None:
    text = edit(small_text, "discriminator:\n  layers:\n", "discriminator:\n  layers: []\n  spare:\n")
    found = errors(text)
    assert [e.message for e in found] == [
        "layers needs at least 1 layer, got the list []",
        "unknown field 'spare'",
    ]
    assert found[1].fix == "known fields: inputs, init, layers, outputs"


# --- the padding union: 'same' | 'valid' | sizes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message", "fix"),
    [
        (
            "full",
            "padding must be 'same', 'valid' or a size such as 1 or [1, 2], got the string 'full'",
            None,
        ),
        (
            "sme",
            "padding must be 'same', 'valid' or a size such as 1 or [1, 2], got the string 'sme'",
            "did you mean same?",
        ),
        (
            "'1'",
            "padding must be 'same', 'valid' or a size such as 1 or [1, 2], got the string '1'",
            "write 1 without quotes",
        ),
        ("-1", "padding must be at least 0, got -1", None),
    ],
)
def test_conv_padding_reports_the_branch_the_value_was_meant_for(
    small_text: str, value: str, message: str, fix: str | None
) -> None:
    text = edit(small_text, CONV, CONV.replace("padding: 1", f"padding: {value}"))
    check(text, f"padding: |{value}", "discriminator.layers[0] (conv2d).padding", message, fix)


# --- names of things ----------------------------------------------------------------------------------------------------


def test_unknown_field_did_you_mean_kernel_size(small_text: str) -> None:
    text = edit(small_text, CONV_T, CONV_T.replace("kernel_size", "kernal_size"))
    # One error: not also "missing required field 'kernel_size'".
    check(
        text,
        "kernal_size",
        "generator.layers[3] (conv_transpose2d).kernal_size",
        "unknown field 'kernal_size'",
        "did you mean kernel_size?",
    )


def test_unknown_field_with_nothing_close_lists_the_fields(small_text: str) -> None:
    text = edit(small_text, "{type: relu}", "{type: relu, colour: red}")
    error = errors(text)[0]
    assert (error.message, error.fix) == ("unknown field 'colour'", "known fields: name, inplace")


def test_unknown_fields_at_the_top_and_in_train(small_text: str) -> None:
    text = edit(edit(small_text, "latent: 16", "latnt: 16"), "loss: bce", "los: bce")
    found = errors(text)
    assert [(e.path, e.message, e.fix) for e in found] == [
        ("latnt", "unknown field 'latnt'", "did you mean latent?"),
        ("train.los", "unknown field 'los'", "did you mean loss?"),
    ]


def test_a_field_of_another_layer_type(small_text: str) -> None:
    text = edit(small_text, CONV_T, CONV_T.replace("}", ", scale_factor: 2}"))
    error = only(text)
    assert error.message == "unknown field 'scale_factor'"
    assert error.fix is not None and error.fix.startswith(
        "known fields: name, in_channels, out_channels, kernel_size"
    )


def test_mistyped_layer_type_did_you_mean_conv_transpose2d(small_text: str) -> None:
    text = edit(small_text, CONV_T, CONV_T.replace("conv_transpose2d", "conv_transpose_2d"))
    check(
        text,
        "{type: |conv_transpose_2d",
        "generator.layers[3]",
        "unknown layer type 'conv_transpose_2d'",
        "did you mean conv_transpose2d?",
    )


def test_a_layer_type_nothing_like_any_lists_them_all(small_text: str) -> None:
    error = only(edit(small_text, "{type: relu}", "{type: swishy}"))
    assert error.message == "unknown layer type 'swishy'"
    assert error.fix == f"type is one of {', '.join(sorted(LAYER_TYPES))}"
    error = only(edit(small_text, "{type: relu}", "{type: 3}"))
    assert error.message == "a layer's type must be a name such as relu, got 3"


@pytest.mark.parametrize(
    ("torch_name", "tag"),
    [
        ("ReLU", "relu"),
        ("LeakyReLU", "leaky_relu"),
        ("ConvTranspose2d", "conv_transpose2d"),
        ("BatchNorm2d", "batch_norm2d"),
    ],
)
def test_a_torch_class_name_finds_its_tag(small_text: str, torch_name: str, tag: str) -> None:
    error = only(edit(small_text, "{type: relu}", f"{{type: {torch_name}}}"))
    assert (error.message, error.fix) == (f"unknown layer type {torch_name!r}", f"did you mean {tag}?")


def test_missing_type(small_text: str) -> None:
    text = edit(small_text, "{type: relu}", "{inplace: true}")
    check(
        text,
        "{inplace",
        "generator.layers[1]",
        "a layer needs a 'type'",
        f"add type: one of {', '.join(sorted(LAYER_TYPES))}",
    )


def test_missing_required_field(small_text: str) -> None:
    text = edit(small_text, CONV_T, CONV_T.replace("out_channels: 8, ", ""))
    at = "{type: conv_transpose2d, kernel_size"
    check(
        text,
        at,
        "generator.layers[3] (conv_transpose2d).out_channels",
        "missing required field 'out_channels'",
        None,
    )


def test_missing_top_level_field(small_text: str) -> None:
    error = only(edit(small_text, "image: [3, 16, 16]\n", ""))
    assert (error.line, error.column, error.path) == (1, 1, "image")
    assert (error.message, error.fix) == ("missing required field 'image'", "add image: [3, 64, 64]")


@pytest.mark.parametrize(
    ("field", "old", "new", "fix"),
    [
        ("padding_mode", CONV, CONV.replace("}", ", padding_mode: zero}"), "did you mean zeros?"),
        ("loss", "loss: bce", "loss: bcee", "did you mean bce?"),
    ],
)
def test_a_choice_did_you_mean(small_text: str, field: str, old: str, new: str, fix: str) -> None:
    error = only(edit(small_text, old, new))
    assert error.message.startswith(f"{field} must be ")
    assert error.fix == fix


def test_a_spec_name_with_a_space(small_text: str) -> None:
    text = edit(small_text, "name: small", "name: 'small gan'")
    check(
        text,
        "'small gan'",
        "name",
        "name 'small gan' may hold only letters, digits, '_', '.' and '-'",
        "name: small_gan",
    )


def test_a_layer_name_that_is_not_an_identifier(small_text: str) -> None:
    text = edit(small_text, "{type: relu}", "{type: relu, name: 1st relu}")
    error = only(text)
    assert error.path == "generator.layers[1] (relu).name"
    assert error.message == "name '1st relu' must be a Python identifier (letters, digits and '_')"
    assert error.fix == "name: _1st_relu"


# --- mappings where a mapping belongs ---------------------------------------------------------------------------------


def test_a_layer_written_as_a_word(small_text: str) -> None:
    text = edit(small_text, "- {type: relu}", "- relu")
    check(
        text,
        "- |relu",
        "generator.layers[1]",
        "a layer must be a mapping such as {type: relu}, got the string 'relu'",
        "write {type: relu}",
    )


def test_an_empty_layer(small_text: str) -> None:
    text = edit(small_text, "- {type: relu}", "-")
    assert only(text).message == "a layer must be a mapping such as {type: relu}, got nothing (null)"


@pytest.mark.parametrize(
    ("value", "fix"), [("'100'", "write 100 without quotes"), ("100.0", "write 100"), ("[100]", None)]
)
def test_latent_that_is_neither_a_size_nor_a_mapping(small_text: str, value: str, fix: str | None) -> None:
    error = only(edit(small_text, "latent: 16", f"latent: {value}"))
    assert error.path == "latent"
    assert error.message.startswith(
        "latent must be a size (latent: 100) or a mapping (latent: {size: 100}), got "
    )
    assert error.fix == fix


def test_a_network_that_is_not_a_mapping(small_text: str) -> None:
    text = small_text[: small_text.index("discriminator:")] + "discriminator: 3\n"
    check(
        text,
        "discriminator: |3",
        "discriminator",
        "discriminator must be a mapping, got 3",
        "discriminator: {layers: [...]}",
    )


# --- several errors -----------------------------------------------------------------------------------------------------


def test_every_error_is_reported_in_line_order(small_text: str) -> None:
    # train first in the file: pydantic reports it last, the compiler in line order.
    body, train = small_text.split("train:\n")
    text = "train:\n" + train.replace("loss: bce", "loss: bcee") + body
    text = edit(text, LINEAR, LINEAR.replace("128", "'128'"))
    text = edit(text, CONV_T, CONV_T.replace("kernel_size", "kernal_size"))
    text = edit(text, CONV, CONV.replace("conv2d", "conv_2d"))
    found = errors(text)
    assert [e.path for e in found] == [
        "train.loss",
        "generator.layers[0] (linear).out_features",
        "generator.layers[3] (conv_transpose2d).kernal_size",
        "discriminator.layers[0]",
    ]
    assert [e.line for e in found] == sorted(e.line for e in found)


# --- the models ---------------------------------------------------------------------------------------------------------


def test_kernel_size_8_and_8_8_give_equal_models(small_text: str) -> None:
    a = check_text(small_text).spec
    b = check_text(edit(small_text, CONV, CONV.replace("kernel_size: 4", "kernel_size: [4, 4]"))).spec
    assert a is not None and b is not None
    assert a == b
    layer = a.discriminator.layers[0]
    assert isinstance(layer, Conv2d) and layer.kernel_size == (4, 4) and layer.padding == (1, 1)


def test_latent_shorthand_equals_the_mapping(small_text: str) -> None:
    a = check_text(small_text).spec
    b = check_text(edit(small_text, "latent: 16", "latent: {size: 16}")).spec
    c = check_text(edit(small_text, "latent: 16", "latent:\n  size: 16\n  distribution: normal")).spec
    assert a is not None and a == b == c
    assert a.latent.size == 16 and a.latent.distribution == "normal"


def test_spec_models_are_frozen(small_text: str) -> None:
    spec = check_text(small_text).spec
    assert spec is not None
    conv = spec.discriminator.layers[0]
    assert isinstance(conv, Conv2d)
    with pytest.raises(ValidationError, match="frozen"):
        spec.name = "other"  # type: ignore[misc]  # the assignment is the point of the test
    with pytest.raises(ValidationError, match="frozen"):
        conv.kernel_size = (3, 3)  # type: ignore[misc]  # the assignment is the point of the test
    with pytest.raises(ValidationError, match="frozen"):
        spec.train.lr = 1.0  # type: ignore[misc]  # the assignment is the point of the test


def test_spec_models_forbid_extras(small_text: str) -> None:
    spec = check_text(small_text).spec
    assert spec is not None
    data = spec.model_dump()
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Spec.model_validate({**data, "colour": "red"})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Conv2d.model_validate({"type": "conv2d", "out_channels": 3, "kernel_size": 3, "colour": "red"})


def test_a_spec_round_trips_through_its_dump(seed_text: str) -> None:
    spec = check_text(seed_text).spec
    assert spec is not None
    assert Spec.model_validate(spec.model_dump()) == spec


# --- any edit: no crash, every error one line inside the file ----------------------------------------------------------

TOKENS = [
    *[
        "0",
        "-1",
        "1.5",
        "'8'",
        "true",
        "null",
        "[]",
        "[1]",
        "[1, 2, 3]",
        "{}",
        "{a: 1}",
        "x",
        "same",
        "'\\n'",
    ],
    *[
        "2024-01-01",
        "!!python/none ''",
        "*nowhere",
        "[",
        "{",
        "'",
        "99999999999999999999",
        "1e400",
        ".nan",
        "-.inf",
    ],
]


@settings(
    max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture]
)  # the fixture is a str
@given(st.data())
def test_any_edit_gives_errors_or_a_spec_never_a_crash(small_text: str, data: st.DataObject) -> None:
    # Replace one to three values of the spec (in flow mappings, lists or top-level scalars) by something else.
    spots = [m.start(1) for m in re.finditer(r"(?::|-|\[|,) ?(\S[^,}\]\n]*)", small_text)]
    chosen = data.draw(st.lists(st.sampled_from(spots), min_size=1, max_size=3, unique=True))
    text = small_text
    for start in sorted(chosen, reverse=True):
        end = start + len(re.match(r"[^,}\]\n]*", text[start:]).group())  # type: ignore[union-attr]  # matches ""
        text = text[:start] + data.draw(st.sampled_from(TOKENS)) + text[end:]
    result = check_text(text, "s.yaml")
    lines = text.count("\n") + 1
    for error in result.errors:
        assert "\n" not in error.headline()
        assert 1 <= error.line <= lines and error.column >= 1, error.headline()
    assert result.ok == (result.spec is not None and not result.errors)


def test_a_field_named_like_a_layer_type_is_still_an_unknown_field(small_text: str) -> None:
    text = edit(small_text, "{type: relu}", "{type: relu, relu: 3}")
    check(
        text,
        "relu, |relu: 3",
        "generator.layers[1] (relu).relu",
        "unknown field 'relu'",
        "known fields: name, inplace",
    )


# --- review findings: non-finite numbers, Adam betas, every problem at once ---------------------------------


@pytest.mark.parametrize(
    ("old", "new", "path", "message"),
    [
        (
            "{type: relu}\n    - {type: view",
            "{type: relu}\n    - {type: upsample, scale_factor: .inf}\n    - {type: view",
            "generator.layers[2] (upsample).scale_factor",
            "finite number",
        ),
        (
            "{type: relu}\n    - {type: view",
            "{type: relu}\n    - {type: upsample, scale_factor: 1e300}\n    - {type: view",
            "generator.layers[2] (upsample).scale_factor",
            "at most 65,536",
        ),
        (
            "negative_slope: 0.2}\n    - {type: conv2d",
            "negative_slope: .nan}\n    - {type: conv2d",
            "discriminator.layers[1] (leaky_relu).negative_slope",
            "finite number",
        ),
        ("lr: 2.0e-4", "lr: 2.0e-4\n  betas: [1.5, 0.9]", "train.betas[0]", "less than 1.0"),
        ("lr: 2.0e-4", "lr: 2.0e-4\n  betas: [0.5, -0.1]", "train.betas[1]", "at least 0"),
    ],
)
def test_numbers_torch_would_refuse(small_text: str, old: str, new: str, path: str, message: str) -> None:
    error = only(edit(small_text, old, new))
    assert error.path == path and message in error.message, error.render()


def test_a_field_error_does_not_hide_a_shape_error_in_a_valid_network(small_text: str) -> None:
    text = edit(small_text, "{type: view, shape: [8, 4, 4]}", "{type: view, shape: [-1, -1, 4]}")
    text = edit(text, "{type: flatten}", "{type: dropout, p: 1.5}\n    - {type: flatten}")
    found = errors(text)
    assert [e.path for e in found] == ["generator.layers[2] (view)", "discriminator.layers[4] (dropout).p"]
    assert "at most one -1" in found[0].message
