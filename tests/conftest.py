"""Shared test setup: a deterministic hypothesis profile and the spec texts several test files start from."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"

# CI must see the same examples on every run: no example database, derandomized search, no per-example deadline
# (a cold torch op can take longer than hypothesis's default 200 ms on a busy 2-core runner).
settings.register_profile(
    "archspec",
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.load_profile("archspec")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite tests/golden/ from the current output (after a deliberate change to the tables)",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture
def seed_text() -> str:
    """specs/conv_gan.yaml, the seed's GAN, as text."""
    return (SPECS / "conv_gan.yaml").read_text()


SMALL = """\
name: small
latent: 16
image: [3, 16, 16]

generator:
  layers:
    - {type: linear, out_features: 128}
    - {type: relu}
    - {type: view, shape: [8, 4, 4]}
    - {type: conv_transpose2d, out_channels: 8, kernel_size: 4, stride: 2, padding: 1}
    - {type: batch_norm2d}
    - {type: relu, inplace: true}
    - {type: conv_transpose2d, out_channels: 3, kernel_size: 4, stride: 2, padding: 1}
    - {type: sigmoid}

discriminator:
  layers:
    - {type: conv2d, out_channels: 8, kernel_size: 4, stride: 2, padding: 1}
    - {type: leaky_relu, negative_slope: 0.2}
    - {type: conv2d, out_channels: 16, kernel_size: 4, stride: 2, padding: 1}
    - {type: leaky_relu, negative_slope: 0.2}
    - {type: flatten}
    - {type: linear, out_features: 1}
    - {type: sigmoid}

train:
  batch_size: 16
  loss: bce
  lr: 2.0e-4
"""


@pytest.fixture
def small_text() -> str:
    """A small valid GAN (16x16 RGB) owned by the tests, so that editing specs/ never moves their line numbers."""
    return SMALL
