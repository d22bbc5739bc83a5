"""The peers our FID Inception and metrics are checked against, torch-fidelity and pytorch-fid, and random weights.

Both import torchvision: torch-fidelity's package for its datasets, CLIP and VGG extractors, pytorch-fid for the
Inception-v3 it patches into the FID network. PyPI's torchvision is a CUDA build whose compiled operators do not
load beside a CPU torch; its import then stops in ``torchvision._meta_registrations``, which registers shapes for
those operators (detection ops, used by neither peer). Its model code is plain Python and runs on any torch, so
``torchvision()`` imports it with that one module replaced by an empty one. scripts/setup.sh installs
torch-fidelity into .venv and torchvision and pytorch-fid into .venv/peers (see there), without dependencies.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import torch
from torch import nn

from runner.metrics.inception import FidInceptionV3

PEERS = Path(sys.prefix) / "peers"  # where scripts/setup.sh puts torchvision and pytorch-fid


def torchvision() -> Any:
    """torchvision's Python code, without the shape registrations of its compiled operators."""
    if str(PEERS) not in sys.path:
        sys.path.append(str(PEERS))  # after site-packages: a torchvision installed there wins
    sys.modules.setdefault(
        "torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations")
    )
    import torchvision

    return torchvision


def torch_fidelity() -> Any:
    """The torch_fidelity package."""
    torchvision()
    import torch_fidelity

    return torch_fidelity


def pytorch_fid() -> Any:
    """The pytorch_fid package."""
    torchvision()
    import pytorch_fid.fid_score
    import pytorch_fid.inception

    return pytorch_fid


def random_inception(seed: int = 0) -> FidInceptionV3:
    """The FID Inception with random weights that keep activations alive through its 94 convolutions (He init,
    batch norm with random statistics): features that differ between images, as trained weights give."""
    gen = torch.Generator().manual_seed(seed)
    net = FidInceptionV3()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * (2 / fan_in) ** 0.5)
            elif isinstance(module, nn.BatchNorm2d):
                count = module.num_features
                module.weight.copy_(torch.rand(count, generator=gen) + 0.5)
                module.bias.copy_(torch.rand(count, generator=gen) * 0.2 - 0.1)
                module.running_mean.copy_(torch.rand(count, generator=gen) * 0.2 - 0.1)
                module.running_var.copy_(torch.rand(count, generator=gen) + 0.5)
        net.fc.weight.copy_(torch.randn(net.fc.weight.shape, generator=gen) * 0.05)
        net.fc.bias.copy_(torch.randn(net.fc.bias.shape, generator=gen))
    return net.eval()


def fidelity_state(net: FidInceptionV3) -> dict[str, torch.Tensor]:
    """``net``'s weights as torch-fidelity's weights file holds them: a plain dict, no ``num_batches_tracked``."""
    return {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}


def save_in_fidelity_layout(net: FidInceptionV3, path: Path) -> Path:
    """``net``'s weights saved to ``path`` as torch-fidelity's weights file holds them."""
    torch.save(fidelity_state(net), path)
    return path
