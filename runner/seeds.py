"""The seeds of a run: the global generators seeded from the run's seed, and seeds for its own streams.

Latent batches and the fixed sample batch come from their own generators, seeded from the run's seed; under
torchrun ranks other than 0 also reseed torch's global generator (dropout) from the third stream.
"""

from __future__ import annotations

import random

import numpy as np
import torch

LATENT_STREAM, SAMPLE_STREAM, GLOBAL_STREAM = 1, 2, 3
EVAL_STREAM = 4  # the real images and latents of the evaluations (runner.monitor)


def seed_everything(seed: int) -> None:
    """Seed torch's, Python's and NumPy's global generators with ``seed``."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def derived_seed(seed: int, stream: int, *more: int) -> int:
    """A seed for one stream of a run (and rank, and step): SeedSequence mixes them, so the latent and sample
    streams are unrelated to the weights' stream and to each other's. Rank 0 adds nothing: a single-process
    run and rank 0 of a torchrun draw the same latents."""
    return mixed_seed(seed, stream, *more) if any(more) else mixed_seed(seed, stream)


def mixed_seed(*key: int) -> int:
    """A 63-bit seed from several integers: SeedSequence mixes them, so neighbouring keys give unrelated streams."""
    return int(np.random.SeedSequence(list(key)).generate_state(1, np.uint64)[0] >> np.uint64(1))
