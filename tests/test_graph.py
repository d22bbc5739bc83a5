"""Graph specs: named values, inputs and outputs, blocks, repeats, merges; their errors, tables and built modules."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import archspec
import archspec.cli
from archspec.check import CheckResult, check_file, check_text
from archspec.conditioning import Conditioning
from archspec.errors import SpecError
from archspec.layers import LAYER_TYPES, Layer
from archspec.modules import GraphNetwork
from archspec.report import to_json

ROOT = Path(__file__).resolve().parent.parent

# A residual generator and a discriminator with a skip, small enough to run in milliseconds.
RES = """\
name: res
latent: 16
image: [3, 8, 8]
blocks:
  res:
    params: {channels: null, pad: 1}
    layers:
      - {type: conv2d, out_channels: $channels, kernel_size: 3, padding: $pad}
      - {type: relu}
      - {type: conv2d, out_channels: $channels, kernel_size: 3, padding: 1, id: h}
      - {type: add, from: [h, x]}
generator:
  layers:
    - {type: linear, out_features: 128}
    - {type: view, shape: [8, 4, 4]}
    - {type: res, channels: 8, repeat: 2}
    - {type: upsample, scale_factor: 2}
    - {type: conv2d, out_channels: 3, kernel_size: 3, padding: 1}
    - {type: tanh}
discriminator:
  layers:
    - {type: conv2d, out_channels: 4, kernel_size: 3, padding: 1, id: a, spectral_norm: true}
    - {type: relu, id: b}
    - {type: cat, from: [a, b]}
    - {type: sum, dim: [2, 3]}
    - {type: linear, out_features: 1}
train: {loss: hinge, batch_size: 2}
"""


def ok(text: str) -> CheckResult:
    result = check_text(text, "g.yaml")
    assert result.ok, "\n".join(e.render() for e in result.errors)
    return result


def errors(text: str) -> tuple[SpecError, ...]:
    result = check_text(text, "g.yaml")
    assert not result.ok, "expected errors"
    return result.errors


def only(text: str) -> SpecError:
    found = errors(text)
    assert len(found) == 1, "\n".join(e.render() for e in found)
    return found[0]


def line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


# --- the format -------------------------------------------------------------------------------------------------


def test_a_chain_builds_the_same_sequential_with_the_same_keys() -> None:
    gan = archspec.build(ROOT / "specs" / "conv_gan.yaml")
    assert isinstance(gan.generator, nn.Sequential) and isinstance(gan.discriminator, nn.Sequential)
    assert list(gan.generator.state_dict())[:4] == ["0.weight", "0.bias", "3.weight", "3.bias"]


def test_blocks_and_repeats_expand_with_their_keys_and_counts() -> None:
    result = ok(RES)
    g = result.generator
    assert g is not None and g.graph is not None
    keys = [n.key for n in g.graph.nodes]
    assert keys[2:6] == ["2.0.0", "2.0.1", "2.0.2", "2.0.3"] and keys[6] == "2.1.0"
    assert [grp.key for grp in g.graph.groups] == ["2", "2.0", "2.1"]
    convs = 2 * 2 * (8 * 8 * 9 + 8)  # two copies of two 3×3 convolutions
    assert g.params == 16 * 128 + 128 + convs + 8 * 3 * 9 + 3
    gan = archspec.build(result)
    assert isinstance(gan.generator, GraphNetwork)
    assert "2.1.2.weight" in gan.generator.state_dict()
    assert sum(p.numel() for p in gan.generator.parameters()) == g.params


def test_the_built_graph_computes_what_the_spec_says() -> None:
    gan = archspec.build(check_text(RES))
    g = gan.generator.eval()
    z = torch.randn(2, 16)
    m = dict(g.named_modules())
    x = m["1"](m["0"](z))
    for copy in ("2.0", "2.1"):
        h = m[f"{copy}.2"](m[f"{copy}.1"](m[f"{copy}.0"](x)))
        x = h + x
    expected = m["5"](m["4"](m["3"](x)))
    assert torch.equal(g(z), expected)
    d = gan.discriminator.eval()  # spectral norm's power iteration runs only in training
    dm = dict(d.named_modules())
    img = torch.randn(2, 3, 8, 8)
    a = dm["0"](img)
    expected_d = dm["4"](torch.cat([a, torch.relu(a)], dim=1).sum(dim=(2, 3)))
    assert torch.allclose(d(img), expected_d)
    assert {"0.weight_orig", "0.weight_u", "0.weight_v"} <= set(d.state_dict())


CONDITIONAL = """\
name: cond
latent: 8
image: [1, 4, 4]
generator:
  inputs: {z: latent, y: {label: 3}}
  layers:
    - {type: embedding, embedding_dim: 8, from: y, id: e}
    - {type: mul, from: [z, e]}
    - {type: chunk, chunks: 2, dim: 1, id: parts}
    - {type: cat, from: [parts.1, parts.0, e]}
    - {type: linear, out_features: 16}
    - {type: view, shape: [1, 4, 4], id: h}
    - {type: conditional_batch_norm2d, from: [h, y]}
    - {type: conditional_batch_norm2d, from: [_, e], spectral_norm: true}
    - {type: tanh}
discriminator:
  inputs: {x: image, y: {label: 3}}
  layers:
    - {type: flatten}
    - {type: linear, out_features: 5, id: f}
    - {type: linear, out_features: 1, id: score}
    - {type: projection, from: [f, y], id: p}
    - {type: add, from: [score, p], id: out}
    - {type: linear, out_features: 3, from: f, id: cls}
  outputs: [out, cls]
train: {loss: hinge, batch_size: 2}
"""


def test_a_conditional_graph_checks_and_computes_what_the_spec_says() -> None:
    result = ok(CONDITIONAL)
    assert result.training_blocker is None
    assert result.conditioning == Conditioning(
        generator=("latent", "label"), discriminator=("image", "label"), classes=3, class_head=True
    )
    gan = archspec.build(result)
    g, d = gan.generator.eval(), gan.discriminator.eval()
    m = dict(g.named_modules())
    z, y = torch.randn(2, 8), torch.tensor([0, 2])
    e = m["0"](y)
    parts = torch.chunk(z * e, 2, dim=1)
    h = m["5"](m["4"](torch.cat([parts[1], parts[0], e], dim=1)))
    h = m["6"](h, y)
    expected = torch.tanh(m["7"](h, e))
    assert torch.allclose(g(z, y), expected)
    # label-conditioned batch norm starts at scale 1, shift 0: in eval mode with fresh statistics it is the identity
    assert torch.allclose(m["6"](h, y), h / (1 + 1e-5) ** 0.5, atol=1e-6)
    score, cls = d(g(z, y), y)
    assert score.shape == (2, 1) and cls.shape == (2, 3)
    assert result.discriminator is not None and result.discriminator.outputs == ((1,), (3,))


def test_json_gives_each_node_its_key_id_from_and_block() -> None:
    doc = to_json(ok(RES))
    nodes = doc["generator"]["layers"]
    add = next(n for n in nodes if n["type"] == "add")
    assert add["key"] == "2.0.3" and add["from"] == ["h", "x"] and add["block"] == "2.0" and add["depth"] == 2
    assert doc["discriminator"]["layers"][0]["id"] == "a"
    assert doc["trainable"] is True


def test_the_table_shows_blocks_and_a_from_column(capsys: pytest.CaptureFixture[str]) -> None:
    path = ROOT / "specs" / "zoo" / "mimicry_sngan32.yaml"
    assert archspec.cli.main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "from" in out.splitlines()[2]
    assert " 2.0       g_block" in out or "2.0 " in out
    assert "…" not in out  # no cell cut short in a file


def test_a_discriminator_may_end_in_a_patch_map() -> None:
    text = RES.replace(
        "    - {type: sum, dim: [2, 3]}\n    - {type: linear, out_features: 1}\n",
        "    - {type: conv2d, out_channels: 1, kernel_size: 3, padding: 1}\n",
    )
    result = ok(text)
    assert result.discriminator is not None and result.discriminator.output == (1, 8, 8)


def test_sigmoid_then_flatten_ends_in_sigmoid() -> None:
    # pytorch/examples' DCGAN discriminator: ... sigmoid, then the view to [1]
    text = RES.replace(
        "    - {type: linear, out_features: 1}\ntrain: {loss: hinge, batch_size: 2}",
        "    - {type: linear, out_features: 1}\n    - {type: sigmoid}\n    - {type: flatten}\n"
        "train: {loss: bce, batch_size: 2}",
    )
    ok(text)


def test_every_layer_type_declares_its_traits() -> None:
    for tag, cls in LAYER_TYPES.items():
        owners = [c for c in cls.__mro__ if "traits" in vars(c)]
        assert owners and owners[0] is not Layer, f"{tag} declares no traits"
        traits = cls.traits
        for name in traits.inferred:
            assert cls.model_fields[name].default is None, f"{tag}.{name} is inferred, so it must be optional"
        if traits.channels is not None:
            assert cls.model_fields[traits.channels].is_required(), tag
        for name in traits.fixes:
            assert name in cls.model_fields, f"{tag} fix field {name}"


# --- errors ---------------------------------------------------------------------------------------------------------


def test_an_unknown_value_gets_did_you_mean_at_its_from() -> None:
    text = RES.replace("{type: cat, from: [a, b]}", "{type: cat, from: [a, bb]}")
    error = only(text)
    assert error.message == "unknown value 'bb' (the values defined above: a, b, x)"
    assert error.fix == "did you mean b?"
    assert error.line == line_of(text, "{type: cat, from: [a, bb]}")


def test_reading_a_value_defined_below_is_a_cycle() -> None:
    text = RES.replace("{type: relu, id: b}", "{type: relu, id: b, from: c}").replace(
        "{type: cat, from: [a, b]}", "{type: cat, from: [a, b], id: c}"
    )
    error = only(text)
    assert "defined below it (layers[2])" in error.message and "cycle" in error.message


def test_an_unused_input_and_an_unused_id() -> None:
    text = RES.replace(
        "discriminator:\n  layers:", "discriminator:\n  inputs: {x: image, y: {label: 4}}\n  layers:"
    )
    text = text.replace("{type: relu, id: b}", "{type: relu, id: b}\n    - {type: relu, from: a, id: spare}")
    found = errors(text)
    messages = {e.message for e in found}
    assert "input 'y' is never used" in messages
    assert "value 'spare' is never used" in messages


def test_an_add_of_two_shapes_names_both_and_fixes_the_channels_of_the_odd_one() -> None:
    text = RES.replace(
        "{type: conv2d, out_channels: $channels, kernel_size: 3, padding: 1, id: h}",
        "{type: conv2d, out_channels: 6, kernel_size: 3, padding: 1, id: h}",
    )
    error = only(text)
    assert error.message == "add needs inputs of one shape, but input 1 is [6, 4, 4] and input 2 is [8, 4, 4]"
    # the block's line, and the use that led there
    assert error.line == line_of(text, "{type: add, from: [h, x]}")
    assert error.detail == (
        f"in block res, used at g.yaml:{line_of(text, '{type: res, channels')}:7 (generator.layers[2])",
    )


def test_an_add_of_two_sizes_says_to_resample() -> None:
    text = RES.replace("{type: res, channels: 8, repeat: 2}", "{type: res, channels: 8, pad: 0}")
    error = only(text)
    assert "input 1 is [8, 2, 2] and input 2 is [8, 4, 4]" in error.message
    assert error.fix == "make both 2×2: resample input 2 (4×4)"


def test_a_cat_of_different_sizes() -> None:
    text = RES.replace("{type: relu, id: b}", "{type: max_pool2d, kernel_size: 2, id: b}")
    error = only(text)
    assert error.message.startswith("cat along dim 1 needs inputs equal in every other dimension")


def test_block_arguments_are_checked() -> None:
    text = RES.replace("{type: res, channels: 8, repeat: 2}", "{type: res, chanels: 8}")
    found = errors(text)
    assert {(e.message, e.fix) for e in found} == {
        ("block res has no parameter 'chanels' (its parameters: channels, pad)", "did you mean channels?"),
        ("block res needs the argument 'channels'", "add channels: ..."),
    }


def test_an_unknown_parameter_in_a_block() -> None:
    text = RES.replace("padding: $pad}", "padding: $padd}")
    error = only(text)
    assert error.message == "$padd is not a parameter of block res"


def test_a_field_error_inside_a_block_points_at_the_block_and_the_use() -> None:
    text = RES.replace("{type: relu}\n", "{type: relu, inplce: true}\n", 1)
    error = only(text)
    assert error.message == "unknown field 'inplce'" and error.fix == "did you mean inplace?"
    assert error.line == line_of(text, "inplce")
    assert error.detail[0].startswith("in block res, used at g.yaml:")


def test_an_unknown_type_did_you_mean_a_block() -> None:
    error = only(RES.replace("{type: res, channels: 8, repeat: 2}", "{type: rez, channels: 8}"))
    assert error.message == "unknown layer type or block 'rez'" and error.fix == "did you mean res?"


def test_a_label_input_needs_its_class_count() -> None:
    error = only(CONDITIONAL.replace("inputs: {z: latent, y: {label: 3}}", "inputs: {z: latent, y: label}"))
    assert error.path.startswith("generator.inputs.y")


def test_label_class_counts_must_agree() -> None:
    error = only(
        CONDITIONAL.replace("inputs: {x: image, y: {label: 3}}", "inputs: {x: image, y: {label: 4}}")
    )
    assert error.message == "label with 4 classes, but the generator's label has 3"


def test_a_label_read_as_a_tensor() -> None:
    error = only(
        CONDITIONAL.replace(
            "{type: embedding, embedding_dim: 8, from: y, id: e}",
            "{type: linear, out_features: 8, from: y, id: e}",
        )
    )
    assert error.message == "linear takes a tensor, but its input is a label (3 classes)"


def test_a_split_read_whole() -> None:
    error = only(
        CONDITIONAL.replace("{type: cat, from: [parts.1, parts.0, e]}", "{type: cat, from: [parts, e]}")
    )
    assert error.message == "reads the parts of a chunk as one value"


def test_a_fault_in_one_branch_does_not_hide_one_in_another() -> None:
    text = RES.replace("{type: relu, id: b}", "{type: view, shape: [5], id: b}").replace(
        "{type: conv2d, out_channels: 4, kernel_size: 3, padding: 1, id: a, spectral_norm: true}",
        "{type: conv2d, out_channels: 4, kernel_size: 3, padding: 1, id: a, spectral_norm: true}\n"
        "    - {type: layer_norm, normalized_shape: [7], from: a, id: other}\n"
        "    - {type: identity, from: a}",
    )
    found = errors(text)
    assert any("layer_norm" in e.path for e in found) and any("(view)" in e.path for e in found)


def test_an_upstream_padding_slip_is_fixed_where_it_was_made(tmp_path: Path) -> None:
    # the example: line 13 of dcgan64 with padding 0 instead of 1
    lines = (ROOT / "specs" / "dcgan64.yaml").read_text().splitlines(keepends=True)
    assert "padding: 1" in lines[12]
    lines[12] = lines[12].replace("padding: 1", "padding: 0")
    path = tmp_path / "dcgan64.yaml"
    path.write_text("".join(lines))
    result = check_file(path)
    assert len(result.errors) == 1
    error = result.errors[0]
    assert error.line == 13 and error.fix is not None and error.fix.startswith("padding: 1 gives")


# --- training a graph, and what cannot be trained yet ------------------------------------------------------------


def test_totals_count_spectral_norms_vectors() -> None:
    result = ok(RES)
    totals = result.totals
    assert totals is not None and result.discriminator is not None
    assert result.discriminator.buffers == 4 + 3 * 9  # u has one value per output channel, v one per column
    assert totals.weights_bytes == 4 * (totals.params + result.discriminator.buffers)


def test_init_is_applied_per_network_and_per_layer() -> None:
    text = RES.replace(
        "generator:\n  layers:", "generator:\n  init: {type: constant, value: 0.5, bias: 0.0}\n  layers:"
    )
    text = text.replace(
        "{type: linear, out_features: 128}", "{type: linear, out_features: 128, init: {type: orthogonal}}"
    )
    gan = archspec.build(check_text(text))
    m = dict(gan.generator.named_modules())
    assert torch.all(m["2.0.0"].weight == 0.5) and torch.all(m["2.0.0"].bias == 0)  # type: ignore[operator]
    w = m["0"].weight.detach()  # type: ignore[union-attr]
    assert torch.allclose(w.T @ w, torch.eye(16), atol=1e-5)  # orthogonal columns


def test_a_part_past_the_end_of_a_split() -> None:
    error = only(
        CONDITIONAL.replace(
            "{type: cat, from: [parts.1, parts.0, e]}", "{type: cat, from: [parts.1, parts.5, e]}"
        )
    )
    assert error.message == "reads part 5 of a chunk that has 2 (parts 0 to 1)"
