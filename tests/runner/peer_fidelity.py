"""torch-fidelity, the peer our FID Inception and metrics are checked against, imported without torchvision.

torch-fidelity's package imports torchvision (for its datasets, CLIP and VGG extractors), whose PyPI build is a
CUDA build that does not import beside a CPU torch. Its Inception extractor and metric functions use none of it,
so stand-in torchvision modules holding the few names it imports let the package load. scripts/setup.sh installs
torch-fidelity (without its dependencies; see there).
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import torch
from torch import nn

from runner.metrics.inception import FidInceptionV3


def torch_fidelity() -> Any:
    """The torch_fidelity package, imported with stand-ins for the torchvision modules it names."""
    if "torch_fidelity" not in sys.modules:
        stand_ins = {
            "torchvision": {},
            "torchvision.datasets": {"CIFAR10": object, "CIFAR100": object, "STL10": object},
            "torchvision.transforms": {},
            "torchvision.transforms.functional": {},
        }
        for name, attributes in stand_ins.items():
            module = types.ModuleType(name)
            module.__path__ = []  # a package, so that its "submodules" import
            module.__dict__.update(attributes)
            sys.modules.setdefault(name, module)
    import torch_fidelity

    return torch_fidelity


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


def save_in_fidelity_layout(net: FidInceptionV3, path: Path) -> Path:
    """``net``'s weights as torch-fidelity's weights file holds them: a plain dict, no ``num_batches_tracked``."""
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, path)
    return path
