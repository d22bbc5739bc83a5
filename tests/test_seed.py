"""specs/conv_gan.yaml reproduces the seed (shared/seed/SEED.md): its numbers, its shapes, its very outputs.

The seed's classes are copied below the way the book writes them, View with its hard-coded batch of 1
included, so the equivalence tests run at batch size 1.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from archspec.check import CheckResult, check_file
from archspec.modules import GAN, build
from runner.handwritten import seed_discriminator, seed_generator

SEED = Path(__file__).resolve().parent.parent / "specs" / "conv_gan.yaml"

GENERATOR_PARAMS = 4_330_816
DISCRIMINATOR_PARAMS = 4_294_448
# SEED.md's tables: every layer's output, batch dimension excluded (unlisted rows keep the row above's shape).
GENERATOR_SHAPES = [
    (363,), (363,), (3, 11, 11),
    (256, 28, 28), (256, 28, 28), (256, 28, 28),
    (256, 62, 62), (256, 62, 62), (256, 62, 62),
    (3, 128, 128), (3, 128, 128), (3, 128, 128),
]  # fmt: skip
DISCRIMINATOR_SHAPES = [
    (256, 61, 61), (256, 61, 61), (256, 61, 61),
    (256, 27, 27), (256, 27, 27), (256, 27, 27),
    (3, 10, 10), (3, 10, 10), (300,), (1,), (1,),
]  # fmt: skip
TRAIN_STEP_FLOPS = 85.55e9  # SEED.md: "about 85.6 GFLOP per image"


# --- fixtures -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checked() -> CheckResult:
    result = check_file(SEED)
    assert result.ok, [e.render() for e in result.errors]
    return result


@pytest.fixture(scope="module")
def gan(checked: CheckResult) -> GAN:
    torch.manual_seed(0)
    return build(checked)


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --- numbers and shapes -------------------------------------------------------------------------------------


def test_parameter_counts_from_the_trace(checked: CheckResult) -> None:
    assert checked.generator is not None and checked.discriminator is not None
    assert checked.generator.params == GENERATOR_PARAMS
    assert checked.discriminator.params == DISCRIMINATOR_PARAMS


def test_parameter_counts_from_the_modules(gan: GAN) -> None:
    assert _params(gan.generator) == GENERATOR_PARAMS
    assert _params(gan.discriminator) == DISCRIMINATOR_PARAMS
    assert _params(seed_generator()) == GENERATOR_PARAMS
    assert _params(seed_discriminator()) == DISCRIMINATOR_PARAMS


def test_traced_shapes_are_the_seed_tables(checked: CheckResult) -> None:
    assert checked.generator is not None and checked.discriminator is not None
    assert checked.generator.input == (100,)
    assert [t.output for t in checked.generator.layers] == GENERATOR_SHAPES
    assert checked.discriminator.input == (3, 128, 128)
    assert [t.output for t in checked.discriminator.layers] == DISCRIMINATOR_SHAPES


def test_built_shapes_are_the_seed_tables(gan: GAN) -> None:
    with torch.no_grad():
        x = torch.randn(1, 100)
        for module, shape in zip(gan.generator, GENERATOR_SHAPES, strict=True):
            x = module(x)
            assert tuple(x.shape) == (1, *shape), module
        for module, shape in zip(gan.discriminator, DISCRIMINATOR_SHAPES, strict=True):
            x = module(x)
            assert tuple(x.shape) == (1, *shape), module


def test_train_step_flops(checked: CheckResult) -> None:
    totals = checked.totals
    assert totals is not None
    assert totals.train_step_flops == pytest.approx(TRAIN_STEP_FLOPS, rel=1e-3)


def _seed_step_flops(checked: CheckResult, freeze_d_for_g: bool) -> int:
    """torch's FLOP count of the seed's step (D on real, D on G(z).detach(), G through D), on the meta device."""
    gan = build(checked, device="meta")
    g, d, bce = gan.generator, gan.discriminator, nn.BCELoss()
    one, zero = torch.ones(1, 1, device="meta"), torch.zeros(1, 1, device="meta")
    with FlopCounterMode(display=False) as counter:
        bce(d(torch.rand(1, 3, 128, 128, device="meta")), one).backward()
        bce(d(g(torch.randn(1, 100, device="meta")).detach()), zero).backward()
        d.requires_grad_(not freeze_d_for_g)
        bce(d(g(torch.randn(1, 100, device="meta"))), one).backward()
    return int(counter.get_total_flops())


def test_train_step_flops_equal_torch_flop_counter(checked: CheckResult) -> None:
    assert checked.totals is not None
    assert _seed_step_flops(checked, freeze_d_for_g=False) == checked.totals.train_step_flops


def test_model_flops_leave_out_d_weight_gradients_in_the_g_update(checked: CheckResult) -> None:
    """archspec's step freezes D during G's update; torch counts what is left."""
    assert checked.totals is not None
    assert _seed_step_flops(checked, freeze_d_for_g=True) == checked.totals.model_flops
    assert checked.totals.model_flops == pytest.approx(79.06e9, rel=1e-3)


# --- the built modules are the seed's classes ---------------------------------------------------------------


def test_state_dict_keys_line_up_with_the_seed(gan: GAN) -> None:
    assert list(gan.generator.state_dict()) == list(seed_generator().state_dict())
    assert list(gan.discriminator.state_dict()) == list(seed_discriminator().state_dict())


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_same_weights_give_identical_outputs_and_gradients(mode: str) -> None:
    torch.manual_seed(0)
    ours = build(SEED)
    seed = GAN(ours.spec, seed_generator(), seed_discriminator())
    seed.generator.load_state_dict(ours.generator.state_dict())
    seed.discriminator.load_state_dict(ours.discriminator.state_dict())
    for net in (ours, seed):
        net.generator.train(mode == "train")
        net.discriminator.train(mode == "train")

    z = torch.randn(1, 100)
    images = {}
    scores = {}
    for name, net in (("ours", ours), ("seed", seed)):
        images[name] = net.generator(z)
        scores[name] = net.discriminator(images[name])
        # The seed's targets match its output: [1], because its View drops the batch dimension.
        nn.BCELoss()(scores[name], torch.ones_like(scores[name])).backward()

    assert torch.equal(images["ours"], images["seed"])
    assert scores["seed"].shape == (1,)
    assert scores["ours"].shape == (1, 1)
    assert torch.equal(scores["ours"].reshape(1), scores["seed"])
    for ours_net, seed_net in ((ours.generator, seed.generator), (ours.discriminator, seed.discriminator)):
        for (key, a), b in zip(ours_net.named_parameters(), seed_net.parameters(), strict=True):
            assert a.grad is not None and b.grad is not None
            assert torch.equal(a.grad, b.grad), key
        # BatchNorm's running statistics moved the same way in train mode (and not at all in eval mode).
        for (key, a), b in zip(ours_net.state_dict().items(), seed_net.state_dict().values(), strict=True):
            assert torch.equal(a, b), key
