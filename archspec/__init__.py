"""archspec: GAN architectures as YAML, checked with PyTorch's shape formulas before any weight exists.

``load`` and ``check`` import no torch; ``build`` does, on first use.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from archspec.check import CheckResult, check_file, check_text
from archspec.errors import SpecError, SpecInvalid
from archspec.spec import Spec

if TYPE_CHECKING:
    from archspec.modules import GAN

__version__ = "0.1.0"
__all__ = [
    "GAN",
    "CheckResult",
    "Spec",
    "SpecError",
    "SpecInvalid",
    "build",
    "check_file",
    "check_text",
    "load",
]


def load(path: str | Path) -> CheckResult:
    """Check the spec at ``path`` and return it with every layer's shape; raises SpecInvalid listing all errors."""
    result = check_file(path)
    if not result.ok:
        raise SpecInvalid(list(result.errors))
    return result


def build(spec: Spec | CheckResult | str | Path, device: Any = None) -> GAN:
    """Compile a spec (path, checked result or Spec) to ``.generator`` and ``.discriminator``: an nn.Sequential
    for a chain, a GraphNetwork for a graph."""
    from archspec.modules import build as _build

    return _build(spec, device)
