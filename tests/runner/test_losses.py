"""Each GAN loss against a hand computation on known scores, and the gradient penalty against its closed form."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from runner.losses import LOSS_NAMES, gradient_penalty, make_loss

PROBS = torch.tensor([[0.9], [0.2], [0.6]])
SCORES = torch.tensor([[2.0], [-0.5], [0.25]])


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


P = [0.9, 0.2, 0.6]
S = [2.0, -0.5, 0.25]
# (d_real, d_fake, g) by hand, on PROBS for bce and on SCORES for the others.
EXPECTED = {
    "bce": (
        _mean([-math.log(p) for p in P]),
        _mean([-math.log(1 - p) for p in P]),
        _mean([-math.log(p) for p in P]),
    ),
    "bce_logits": (
        _mean([-math.log(_sigmoid(s)) for s in S]),
        _mean([-math.log(1 - _sigmoid(s)) for s in S]),
        _mean([-math.log(_sigmoid(s)) for s in S]),
    ),
    "lsgan": (_mean([(s - 1) ** 2 for s in S]), _mean([s**2 for s in S]), _mean([(s - 1) ** 2 for s in S])),
    "hinge": (_mean([max(0.0, 1 - s) for s in S]), _mean([max(0.0, 1 + s) for s in S]), -_mean(S)),
    "wgan_gp": (-_mean(S), _mean(S), -_mean(S)),
}


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_loss_values_match_a_hand_computation(name: str) -> None:
    loss = make_loss(name)
    scores = PROBS if name == "bce" else SCORES
    got = (loss.d_real(scores).item(), loss.d_fake(scores).item(), loss.g(scores).item())
    assert got == pytest.approx(EXPECTED[name], rel=1e-6)


def test_hand_values_are_distinct_enough_to_catch_a_swap() -> None:
    for d_real, d_fake, _g in EXPECTED.values():
        assert abs(d_real - d_fake) > 0.1


def test_only_wgan_gp_trains_the_critic_in_one_step_with_a_penalty() -> None:
    assert [n for n in LOSS_NAMES if not make_loss(n).split_d] == ["wgan_gp"]
    assert [n for n in LOSS_NAMES if make_loss(n).penalised] == ["wgan_gp"]
    with pytest.raises(ValueError, match="unknown loss"):
        make_loss("wasserstein")


def test_gradient_penalty_of_a_linear_critic_is_its_closed_form() -> None:
    # critic(x) = w·x has gradient w everywhere, so the penalty is (‖w‖ − 1)² whatever the mix.
    linear = nn.Linear(12, 1, bias=False)
    critic = nn.Sequential(nn.Flatten(), linear)
    with torch.no_grad():
        linear.weight.copy_(torch.arange(12, dtype=torch.float32).reshape(1, 12) / 10)
    real, fake = torch.rand(5, 3, 2, 2), torch.rand(5, 3, 2, 2)
    penalty = gradient_penalty(critic, real, fake, torch.Generator().manual_seed(0))
    norm = torch.linalg.vector_norm(linear.weight).item()
    assert penalty.item() == pytest.approx((norm - 1) ** 2, rel=1e-5)
    assert penalty.item() > 0 and math.isfinite(penalty.item())


def test_gradient_penalty_is_differentiable_and_seeded() -> None:
    conv, linear = nn.Conv2d(3, 4, 2), nn.Linear(4, 1)
    critic = nn.Sequential(conv, nn.Tanh(), nn.Flatten(), linear)
    real, fake = torch.rand(4, 3, 2, 2), torch.rand(4, 3, 2, 2)
    first = gradient_penalty(critic, real, fake, torch.Generator().manual_seed(1))
    again = gradient_penalty(critic, real, fake, torch.Generator().manual_seed(1))
    other = gradient_penalty(critic, real, fake, torch.Generator().manual_seed(2))
    assert torch.equal(first, again) and not torch.equal(first, other)
    torch.autograd.backward(first)
    # The last bias does not change the input gradient, so only the weights get a gradient from the penalty.
    for weight in (conv.weight, linear.weight):
        assert weight.grad is not None and torch.isfinite(weight.grad).all() and weight.grad.abs().sum() > 0


def test_bce_of_nan_scores_does_not_raise() -> None:
    # F.binary_cross_entropy raises on NaN (a device-side assert on CUDA: tests/test_cuda.py): on the CPU the loss
    # is NaN instead, which the run's checks stop on (tests/runner/test_train.py).
    loss = make_loss("bce")
    scores = torch.tensor([[0.9], [float("nan")], [0.6]])
    with pytest.raises(RuntimeError):
        torch.nn.functional.binary_cross_entropy(scores, torch.ones_like(scores))
    for value in (loss.d_real(scores), loss.d_fake(scores), loss.g(scores)):
        assert value.isnan() and value.requires_grad is scores.requires_grad


@pytest.mark.parametrize("target", [0.0, 1.0])
def test_bce_on_finite_scores_is_bit_for_bit_nn_bce_loss(target: float) -> None:
    loss = make_loss("bce")
    ours_of = loss.d_real if target == 1.0 else loss.d_fake
    logits = (
        torch.randn(64, 1, generator=torch.Generator().manual_seed(0)) * 8
    )  # some scores saturate at 0 or 1
    ours_in = torch.sigmoid(logits).requires_grad_(True)
    theirs_in = ours_in.detach().clone().requires_grad_(True)
    ours = ours_of(ours_in)
    theirs = nn.BCELoss()(theirs_in, torch.full_like(theirs_in, target))
    ours.backward()
    theirs.backward()
    assert torch.equal(ours, theirs)
    assert ours_in.grad is not None and theirs_in.grad is not None
    assert torch.equal(ours_in.grad, theirs_in.grad)
