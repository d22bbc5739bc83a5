"""The checks between layers: the GAN contract, the train section's fit, the computed fixes, and the broken-spec
examples of specs/broken/ that the README shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from archspec import check_file, check_text
from archspec.contract import data_range
from archspec.errors import SpecError
from tests.helpers import edit, where

BROKEN = Path(__file__).resolve().parent.parent / "specs" / "broken"

CONV_T = "{type: conv_transpose2d, out_channels: 8, kernel_size: 4, stride: 2, padding: 1}"
CONV_T3 = "{type: conv_transpose2d, out_channels: 3, kernel_size: 4, stride: 2, padding: 1}"
CONV = "{type: conv2d, out_channels: 8, kernel_size: 4, stride: 2, padding: 1}"
CONV16 = "{type: conv2d, out_channels: 16, kernel_size: 4, stride: 2, padding: 1}"
HEAD = "    - {type: flatten}\n    - {type: linear, out_features: 1}\n"


def errors(text: str, batch_size: int | None = None) -> tuple[SpecError, ...]:
    result = check_text(text, "s.yaml", batch_size=batch_size)
    for error in result.errors:
        assert "\n" not in error.headline(), error.headline()
    return result.errors


def only(text: str, batch_size: int | None = None) -> SpecError:
    found = errors(text, batch_size)
    assert len(found) == 1, "\n".join(e.render() for e in found)
    return found[0]


def layer_at(text: str, snippet: str) -> tuple[int, int]:
    """Where the layer whose line holds ``snippet`` starts (its ``{``)."""
    line, _ = where(text, snippet)
    row = text.splitlines()[line - 1]
    return line, row.index("{") + 1


# --- the seed ---------------------------------------------------------------------------------------------------------


def test_the_seed_checks_with_its_published_numbers(seed_text: str) -> None:
    result = check_text(seed_text)
    assert result.ok
    assert result.generator is not None and result.discriminator is not None
    assert result.generator.params == 4_330_816
    assert result.discriminator.params == 4_294_448
    assert [t.output for t in result.generator.layers if t.type == "conv_transpose2d"] == [
        (256, 28, 28),
        (256, 62, 62),
        (3, 128, 128),
    ]


def test_the_seed_with_padding_0_on_its_last_transposed_conv(seed_text: str) -> None:
    text = edit(seed_text, "kernel_size: 8, stride: 2, padding: 1}", "kernel_size: 8, stride: 2, padding: 0}")
    error = only(text)
    assert (error.line, error.column) == layer_at(text, "padding: 0}")
    assert error.headline() == (
        f"s.yaml:{error.line}:7: error: generator.layers[9] (conv_transpose2d): output 130×130, the image is 128×128"
    )
    assert error.detail == ("(62−1)·2 − 2·0 + 7 + 0 + 1 = 130",)
    assert error.fix == "padding: 1 gives 128×128"
    assert error.render().splitlines()[1:] == [
        "    (62−1)·2 − 2·0 + 7 + 0 + 1 = 130",
        "    fix: padding: 1 gives 128×128",
    ]


# --- generator output = image ------------------------------------------------------------------------------------------


def test_generator_channels_differ_from_the_image(small_text: str) -> None:
    text = edit(small_text, CONV_T3, CONV_T3.replace("out_channels: 3", "out_channels: 1"))
    error = only(text)
    assert (error.line, error.column) == where(text, "out_channels: |1")
    assert error.path == "generator.layers[6] (conv_transpose2d)"
    assert error.message == "output [1, 16, 16] has 1 channel, but the image [3, 16, 16] has 3"
    assert error.fix == "out_channels: 3"


def test_generator_size_fix_through_output_padding_and_kernel(small_text: str) -> None:
    text = edit(small_text, CONV_T3, CONV_T3.replace("kernel_size: 4", "kernel_size: 5, output_padding: 1"))
    error = only(text)
    assert error.message == "output 18×18, the image is 16×16"
    assert error.detail == ("(8−1)·2 − 2·1 + 4 + 1 + 1 = 18",)
    assert error.fix == "padding: 2 gives 16×16"


def test_generator_size_fix_in_an_earlier_layer(small_text: str) -> None:
    new = (
        "{type: upsample, scale_factor: 3}\n    - {type: conv2d, out_channels: 3, kernel_size: 3, padding: 1}"
    )
    error = only(edit(small_text, CONV_T3, new))
    # reported where the change is made, not at the last layer
    assert error.path == "generator.layers[6] (upsample)"
    assert error.message == "the generator's output is 24×24, the image is 16×16"
    assert error.fix == "scale_factor: 2 gives 16×16"


def test_generator_output_of_the_wrong_rank_gets_a_view(small_text: str) -> None:
    error = only(
        edit(small_text, "    - {type: sigmoid}\n\ndiscriminator", "    - {type: flatten}\n\ndiscriminator")
    )
    assert error.message == "output [768], but the image is [3, 16, 16]"
    assert error.fix == "append {type: view, shape: [3, 16, 16]}"


# --- discriminator output = [1] ----------------------------------------------------------------------------------------


def test_discriminator_output_of_two_values(small_text: str) -> None:
    text = edit(small_text, "{type: linear, out_features: 1}", "{type: linear, out_features: 2}")
    error = only(text)
    assert (error.line, error.column) == layer_at(text, "{type: sigmoid}\n\ntrain")
    assert error.path == "discriminator.layers[6] (sigmoid)"
    assert error.message == "output [2], but a discriminator gives one value per sample, [1]"
    assert error.fix == "out_features: 1 in discriminator.layers[5]"


@pytest.mark.parametrize(
    ("old", "new", "out", "fix"),
    [
        (HEAD, "", "[16, 4, 4]", "append {type: flatten} and {type: linear, out_features: 1}"),
        ("    - {type: linear, out_features: 1}\n", "", "[256]", "append {type: linear, out_features: 1}"),
    ],
)
def test_discriminator_output_fixes(small_text: str, old: str, new: str, out: str, fix: str) -> None:
    text = edit(small_text, old, new)
    found = [e for e in errors(text) if "a discriminator gives one value" in e.message]
    assert [(e.message, e.fix) for e in found] == [
        (f"output {out}, but a discriminator gives one value per sample, [1]", fix)
    ]


# --- declared sizes ------------------------------------------------------------------------------------------------------


def test_latent_size_differs_from_a_declared_in_features(small_text: str) -> None:
    text = edit(
        small_text, "{type: linear, out_features: 128}", "{type: linear, in_features: 100, out_features: 128}"
    )
    error = only(text)
    assert (error.line, error.column) == where(text, "in_features: |100")
    assert error.message == "in_features: 100, but the latent vector has 16 values (latent: 16)"
    assert error.fix == "in_features: 16 (or leave it out: it is inferred); or latent: 100"


def test_discriminator_in_channels_differ_from_the_image(small_text: str) -> None:
    error = only(edit(small_text, CONV, CONV.replace("out_channels: 8", "in_channels: 1, out_channels: 8")))
    assert error.message == "in_channels: 1, but the image [3, 16, 16] has 3 channels"
    assert error.fix == "in_channels: 3 (or leave it out: it is inferred)"


@pytest.mark.parametrize(
    ("old", "new", "message", "fix"),
    [
        (
            CONV_T3,
            CONV_T3.replace("out_channels: 3", "in_channels: 4, out_channels: 3"),
            "in_channels: 4, but its input [8, 8, 8] has 8 channels",
            "in_channels: 8 (or leave it out: it is inferred)",
        ),
        (
            "{type: batch_norm2d}",
            "{type: batch_norm2d, num_features: 16}",
            "num_features: 16, but its input [8, 8, 8] has 8 channels",
            "num_features: 8 (or leave it out: it is inferred)",
        ),
        (
            "{type: linear, out_features: 1}",
            "{type: linear, in_features: 512, out_features: 1}",
            "in_features: 512, but its input [256] has 256 features",
            "in_features: 256 (or leave it out: it is inferred)",
        ),
    ],
)
def test_declared_input_sizes_get_the_inferred_value(
    small_text: str, old: str, new: str, message: str, fix: str
) -> None:
    error = only(edit(small_text, old, new))
    assert (error.message, error.fix) == (message, fix)


def test_a_later_error_is_still_reported_after_a_declared_size_disagreement(small_text: str) -> None:
    text = edit(small_text, CONV_T, CONV_T.replace("out_channels: 8", "in_channels: 5, out_channels: 8"))
    text = edit(text, CONV_T3, CONV_T3.replace("padding: 1", "padding: 0"))
    found = errors(text)
    assert [(e.path, e.message) for e in found] == [
        ("generator.layers[3] (conv_transpose2d)", "in_channels: 5, but its input [8, 4, 4] has 8 channels"),
        ("generator.layers[6] (conv_transpose2d)", "output 18×18, the image is 16×16"),
    ]
    assert found[1].fix == "padding: 1 gives 16×16"


def test_view_element_count_mismatch_names_the_feeding_linear(small_text: str) -> None:
    text = edit(small_text, "{type: linear, out_features: 128}", "{type: linear, out_features: 120}")
    error = only(text)
    assert (error.line, error.column) == where(text, "|shape: [8, 4, 4]")
    assert error.message == "shape [8, 4, 4] holds 128 values, the input [120] has 120"
    # shape: [120] would hold the 120 values, but the transposed convolution after it needs [C, H, W]: not offered.
    assert error.fix == "out_features: 128 in generator.layers[0]"
    text = edit(small_text, "{type: linear, out_features: 128}", "{type: linear, out_features: 64}")
    assert only(text).fix == "out_features: 128 in generator.layers[0], or shape: [4, 4, 4]"  # this one fits


def test_a_view_fed_by_a_conv_gets_only_a_shape_fix(small_text: str) -> None:
    text = edit(small_text, HEAD, "    - {type: view, shape: [300]}\n    - {type: linear, out_features: 1}\n")
    error = only(text)
    assert error.message == "shape [300] holds 300 values, the input [16, 4, 4] has 256"
    assert error.fix == "shape: [256]"


def test_an_output_over_2_31_values_per_sample(small_text: str) -> None:
    error = only(edit(small_text, CONV_T3, "{type: upsample, scale_factor: 20000}"))
    assert error.path == "generator.layers[6] (upsample)"
    assert error.message == "output [8, 160000, 160000] holds 204,800,000,000 values per sample, over 2^31"


def test_groups_not_dividing_channels_in_a_spec(small_text: str) -> None:
    text = edit(small_text, CONV16, CONV16.replace("}", ", groups: 3}"))
    error = only(text)
    assert (error.line, error.column) == where(text, "groups: |3")
    assert (error.message, error.fix) == ("groups: 3 does not divide in_channels 8", "groups: 2")


def test_output_padding_too_large_in_a_spec(small_text: str) -> None:
    text = edit(small_text, CONV_T3, CONV_T3.replace("}", ", output_padding: 2}"))
    error = only(text)
    assert (error.line, error.column) == where(text, "output_padding: |2")
    assert error.message == "output_padding 2 must be smaller than stride (2) or dilation (1)"
    assert error.fix == "output_padding: 1"


# --- the train section ---------------------------------------------------------------------------------------------------


def test_bce_without_a_sigmoid(small_text: str) -> None:
    text = edit(
        small_text,
        "    - {type: linear, out_features: 1}\n    - {type: sigmoid}\n",
        "    - {type: linear, out_features: 1}\n",
    )
    error = only(text)
    assert error.path == "discriminator.layers[5] (linear)"
    assert error.message == "loss bce needs probabilities, but the discriminator does not end in sigmoid"
    assert error.fix == "set train.loss: bce_logits (the sigmoid inside the loss), or append {type: sigmoid}"


@pytest.mark.parametrize("loss", ["bce_logits", "hinge", "lsgan", "wgan_gp"])
def test_a_raw_score_loss_with_a_sigmoid(small_text: str, loss: str) -> None:
    error = only(edit(small_text, "loss: bce", f"loss: {loss}"))
    assert error.path == "discriminator.layers[6] (sigmoid)"
    assert error.message == f"loss {loss} takes raw scores, but the discriminator ends in sigmoid"
    assert error.fix == "remove discriminator.layers[6] (sigmoid), or set train.loss: bce"


def test_bf16_with_bce(small_text: str) -> None:
    text = edit(small_text, "loss: bce", "loss: bce\n  precision: bf16")
    error = only(text)
    assert (error.line, error.column, error.path) == (*where(text, "precision: |bf16"), "train.precision")
    assert (
        error.message == "bf16 autocast cannot run BCELoss on sigmoid outputs (PyTorch refuses it as unsafe)"
    )
    assert error.fix == "set train.loss: bce_logits and remove discriminator.layers[6] (sigmoid)"


def test_bf16_with_bce_logits_is_fine(small_text: str) -> None:
    text = edit(small_text, "loss: bce", "loss: bce_logits\n  precision: bf16")
    text = edit(
        text,
        "    - {type: linear, out_features: 1}\n    - {type: sigmoid}\n",
        "    - {type: linear, out_features: 1}\n",
    )
    assert errors(text) == ()


def test_data_range_against_the_generator_activation(small_text: str) -> None:
    error = only(edit(small_text, "loss: bce", "loss: bce\n  data_range: symmetric"))
    assert error.path == "train.data_range"
    assert (
        error.message
        == "the generator ends in sigmoid (values in [0, 1]) but data_range is symmetric ([-1, 1])"
    )
    assert error.fix == "data_range: unit (or auto)"
    tanh = edit(small_text, "    - {type: sigmoid}\n\ndiscriminator", "    - {type: tanh}\n\ndiscriminator")
    error = only(edit(tanh, "loss: bce", "loss: bce\n  data_range: unit"))
    assert error.message == "the generator ends in tanh (values in [-1, 1]) but data_range is unit ([0, 1])"
    assert error.fix == "data_range: symmetric (or auto)"


def test_data_range_auto_follows_the_generator(small_text: str) -> None:
    sigmoid = check_text(small_text).spec
    tanh = check_text(
        edit(small_text, "    - {type: sigmoid}\n\ndiscriminator", "    - {type: tanh}\n\ndiscriminator")
    ).spec
    assert sigmoid is not None and tanh is not None
    assert data_range(sigmoid) == (0.0, 1.0)
    assert data_range(tanh) == (-1.0, 1.0)


def test_batch_norm_with_batch_size_1_on_a_vector(small_text: str) -> None:
    text = edit(small_text, "batch_size: 16", "batch_size: 1")
    text = edit(text, "{type: relu}", "{type: batch_norm1d}")
    error = only(text)
    assert (error.line, error.column) == layer_at(text, "{type: batch_norm1d}")
    assert (
        error.message
        == "batch norm over [128] sees one value per channel at batch_size 1; PyTorch refuses to train it"
    )
    assert error.fix == "set train.batch_size: 2 or more, or use layer_norm"
    assert errors(text, batch_size=2) == ()  # --batch-size 2 on the command line cures it


def test_batch_norm_with_batch_size_1_on_1x1_images(small_text: str) -> None:
    new = "    - {type: conv2d, out_channels: 4, kernel_size: 4}\n    - {type: batch_norm2d}\n    - {type: flatten}\n"
    text = edit(edit(small_text, "batch_size: 16", "batch_size: 1"), "    - {type: flatten}\n", new)
    assert only(text).message.startswith(
        "batch norm over [4, 1, 1] sees one value per channel at batch_size 1"
    )


def test_the_seed_batch_norm_at_batch_size_1_is_fine(seed_text: str) -> None:
    assert check_text(seed_text, batch_size=1).ok  # 256×28×28 values per channel


# --- several errors ---------------------------------------------------------------------------------------------------------


def test_shape_contract_and_train_errors_come_together_in_line_order(small_text: str) -> None:
    text = edit(small_text, "{type: linear, out_features: 128}", "{type: linear, out_features: 120}")
    text = edit(text, "{type: linear, out_features: 1}", "{type: linear, out_features: 2}")
    text = edit(text, "loss: bce", "loss: bce\n  data_range: symmetric")
    found = errors(text)
    assert [e.path for e in found] == [
        "generator.layers[2] (view)",
        "discriminator.layers[6] (sigmoid)",
        "train.data_range",
    ]
    assert [e.line for e in found] == sorted(e.line for e in found)


# --- a thousand layers ------------------------------------------------------------------------------------------------------


def deep_spec(layers: int, last_padding: int) -> str:
    body = "    - {type: conv2d, out_channels: 8, kernel_size: 3, padding: 1}\n    - {type: relu}\n" * (
        layers // 2
    )
    return f"""\
name: deep
latent: 16
image: [3, 16, 16]
generator:
  layers:
    - {{type: linear, out_features: 2048}}
    - {{type: view, shape: [8, 16, 16]}}
{body}    - {{type: conv2d, out_channels: 3, kernel_size: 3, padding: {last_padding}}}
    - {{type: sigmoid}}
discriminator:
  layers:
    - {{type: flatten}}
    - {{type: linear, out_features: 1}}
    - {{type: sigmoid}}
"""


def test_a_thousand_layer_spec_checks() -> None:
    result = check_text(deep_spec(1000, 1))
    assert result.ok
    assert result.generator is not None and len(result.generator.layers) == 1004


def test_a_thousand_layer_spec_with_a_mistake_gets_its_fix() -> None:
    error = only(deep_spec(1000, 0))
    assert error.path == "generator.layers[1002] (conv2d)"
    assert error.fix == "padding: 1 gives 16×16"


# --- the broken examples of specs/broken -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "at", "message"),
    [
        ("pad.yaml", "22:7", "generator.layers[9] (conv_transpose2d): output 130×130, the image is 128×128"),
        (
            "channels.yaml",
            "25:35",
            "discriminator.layers[2] (conv2d): in_channels: 32, but its input [64, 16, 16] has 64",
        ),
        (
            "view.yaml",
            "15:20",
            "generator.layers[2] (view): shape [3, 11, 11] holds 363 values, the input [360] has 360",
        ),
        ("typo.yaml", "15:14", "generator.layers[6]: unknown layer type 'conv_transpose_2d'"),
        (
            "yaml_syntax.yaml",
            "23:7",
            "YAML syntax: expected ',' or '}', but got '{' (while parsing a flow mapping that",
        ),
        (
            "loss.yaml",
            "30:7",
            "discriminator.layers[7] (sigmoid): loss bce_logits takes raw scores, but the discriminator",
        ),
    ],
)
def test_broken_examples_fail_with_their_first_error(name: str, at: str, message: str) -> None:
    path = BROKEN / name
    result = check_file(path)
    assert not result.ok
    assert result.errors[0].headline().startswith(f"{path}:{at}: error: {message}")


def test_broken_examples_each_have_one_bug() -> None:
    counts = {path.name: len(check_file(path).errors) for path in sorted(BROKEN.glob("*.yaml"))}
    assert counts == {
        "block_arg.yaml": 1,
        "channels.yaml": 1,
        "channels_last.yaml": 1,
        "flatten.yaml": 1,
        "no_view.yaml": 1,
        "loss.yaml": 1,
        "pad.yaml": 1,
        "typo.yaml": 2,  # the mistyped type and the mistyped field: two slips, both reported
        "view.yaml": 1,
        "yaml_syntax.yaml": 1,
    }


def test_pad_yaml_is_the_seed_with_one_change(seed_text: str) -> None:
    pad = (BROKEN / "pad.yaml").read_text()
    changed = [(a, b) for a, b in zip(seed_text.splitlines(), pad.splitlines(), strict=True) if a != b]
    assert changed == [
        (
            "    - {type: conv_transpose2d, out_channels: 3, kernel_size: 8, stride: 2, padding: 1}",
            "    - {type: conv_transpose2d, out_channels: 3, kernel_size: 8, stride: 2, padding: 0}",
        )
    ]
