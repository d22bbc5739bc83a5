"""Does a class-conditional generator draw the class it is asked for? Class fidelity as the AC-GAN paper measures
it: a classifier trained on the real, labelled images labels G(z, y), and the fidelity is how often it says y.

The classifier is a small MLP trained here on a split of the data (its accuracy on the held-out rest says how far
its verdicts can be trusted); the generator is the checkpoint's (its EMA copy when it has one), in eval mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from runner.data import ImageSet
from runner.grids import generator_args
from runner.sample import LoadedGenerator


@dataclass(frozen=True)
class Classifier:
    """A classifier of the data's images, and its accuracy on the images it was not trained on."""

    model: nn.Module
    held_out_accuracy: float
    value_range: tuple[float, float]

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """The class of each float image (N, C, H, W) in ``value_range``."""
        logits: torch.Tensor = self.model(images.float().cpu())
        return logits.argmax(dim=1)


def train_classifier(
    data: ImageSet, held_out: float = 0.2, seed: int = 0, steps: int = 600, hidden: int = 256
) -> Classifier:
    """An MLP trained with Adam on a random ``1 − held_out`` of the labelled ``data``; tested on the rest."""
    if data.labels is None or data.info.class_names is None:
        raise ValueError("the classifier needs labelled data")
    classes = len(data.info.class_names)
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data), generator=gen)
    cut = int(len(data) * (1 - held_out))
    images, labels = data.to_float(data.images.cpu()), data.labels.cpu()
    train_x, train_y = images[order[:cut]], labels[order[:cut]]
    test_x, test_y = images[order[cut:]], labels[order[cut:]]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = nn.Sequential(
            nn.Flatten(), nn.Linear(train_x[0].numel(), hidden), nn.ReLU(), nn.Linear(hidden, classes)
        )
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    for _ in range(steps):  # full batch: a few thousand small images
        optimiser.zero_grad(set_to_none=True)
        torch.autograd.backward(F.cross_entropy(model(train_x), train_y))
        optimiser.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(test_x).argmax(dim=1) == test_y).float().mean())
    return Classifier(model, accuracy, data.info.value_range)


@torch.no_grad()
def class_fidelity(
    loaded: LoadedGenerator, classifier: Classifier, per_class: int = 100, seed: int = 0
) -> float:
    """The fraction of G(z, y), ``per_class`` latents for each class y, that ``classifier`` calls y."""
    feeds = loaded.feeds
    if feeds.classes is None or "label" not in feeds.generator:
        raise ValueError("class fidelity needs a generator that takes a class label")
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(feeds.classes).repeat_interleave(per_class)
    latents = loaded.gan.latent(len(labels), generator=gen)
    device = next(loaded.gan.generator.parameters()).device
    images = loaded.gan.generator(*generator_args(feeds, latents.to(device), labels.to(device)))
    return float((classifier.predict(images) == labels).float().mean())
