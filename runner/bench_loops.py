"""The loops ``archspec bench`` times, built from one spec: (a) the seed's loop by hand, (b) archspec's step in
float32, (c) archspec's fast path, (d) (b)'s updates by hand; each with its endless feed of uint8 batches."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from archspec.contract import network_ends_in
from archspec.modules import GAN
from archspec.words import plural
from runner.bench_results import BenchOptions
from runner.config import Resolved, load_spec, resolve
from runner.data import ImageSet, epoch_generator, open_images
from runner.errors import RunError
from runner.handwritten import BatchedLoop, SeedLoop
from runner.prefetch import prefetched
from runner.step import GanStep, build_gan


class Loop(Protocol):
    """A training loop to time: one call trains one batch; ``sync`` reads its results back."""

    def __call__(self, real_uint8: torch.Tensor) -> object: ...

    def sync(self) -> None: ...


@dataclass
class Prepared:
    """A loop ready to time, with its endless feed of uint8 batches."""

    variant: str
    label: str
    loop: Loop
    feed: Generator[torch.Tensor, None, None]
    batch_size: int
    precision: str
    data: str
    note: str = ""


def prepare(
    variant: str, options: BenchOptions, pool: ImageSet, device: torch.device, batch: int
) -> Prepared:
    """Build one variant's networks and loop, and its feed of batches."""
    if variant in ("fp32", "fast"):
        return _prepare_step(variant, options, pool, device, batch)
    resolved = resolve(options.spec, {"batch_size": batch if variant == "hand" else 1})
    gan = _fresh_gan(resolved, device)
    cfg = resolved.train
    lr, betas = cfg.lr, (cfg.betas[0], cfg.betas[1])
    note = (
        ""
        if network_ends_in(resolved.spec, "discriminator") == "sigmoid"
        else "BCEWithLogitsLoss (no final sigmoid)"
    )
    if cfg.loss not in ("bce", "bce_logits"):
        note = f"BCE, where the spec trains {cfg.loss}"
    if variant == "seed":
        loop: Loop = SeedLoop(gan, device, resolved.value_range, lr, betas)
        return Prepared(
            variant, "hand-written seed loop", loop, _feed(pool, 1, None), 1, "fp32", "host", note
        )
    loop = BatchedLoop(gan, device, resolved.value_range, lr, betas)
    return Prepared(
        variant,
        "hand-written batched",
        loop,
        _feed(pool, batch, device),
        batch,
        "fp32",
        _where(pool, device),
        note,
    )


def open_pool(
    source: str, image: tuple[int, int, int], batch: int, value_range: tuple[float, float]
) -> ImageSet:
    """The images every loop draws from: two batches' worth, at least 64 (enough to shuffle, and quick to draw
    for synthetic faces)."""
    count = max(2 * batch, 64)
    return open_images(source, image, value_range, seed=0, synthetic_count=count, limit=None)


def _prepare_step(
    variant: str, options: BenchOptions, pool: ImageSet, device: torch.device, batch: int
) -> Prepared:
    overrides: dict[str, Any] = {"batch_size": batch, "ema": None, "d_steps": 1}
    overrides.update(precision="fp32", channels_last=False, fused_adam=False, compile=False)
    edit, note = None, ""
    if variant == "fast":
        overrides.update(precision="bf16", channels_last=True, fused_adam=True, compile=options.compile)
        spec = load_spec(options.spec)
        if spec.train.loss == "bce" and network_ends_in(spec, "discriminator") == "sigmoid":
            overrides["loss"] = "bce_logits"
            edit = _drop_final_sigmoid
            note = "loss bce_logits and D's final sigmoid dropped: bf16 autocast refuses BCELoss"
    resolved = resolve(options.spec, overrides, edit=edit)
    gan = _fresh_gan(resolved, device)
    cfg = resolved.train
    rng = torch.Generator(device=device).manual_seed(cfg.seed)
    step = GanStep(gan, cfg, device, resolved.value_range, rng)
    data = pool.to(device) if variant == "fast" and device.type == "cuda" else pool
    parts = ["bf16", "channels_last", "fused Adam"] + (["compile"] if cfg.compile else [])
    label = "archspec " + (", ".join(parts) if variant == "fast" else "fp32")
    loop = _StepLoop(step)
    return Prepared(
        variant, label, loop, _feed(data, batch, device), batch, cfg.precision, _where(data, device), note
    )


class _StepLoop:
    """archspec's step, with its losses kept on the device until ``sync`` (the trainer's log step)."""

    def __init__(self, step: GanStep) -> None:
        self.step = step
        self.pending: list[torch.Tensor] = []

    def __call__(self, real_uint8: torch.Tensor) -> None:
        self.pending.append(self.step(real_uint8))

    def sync(self) -> None:
        if self.pending:
            torch.stack(self.pending).cpu()
            self.pending.clear()


def _feed(data: ImageSet, batch: int, device: torch.device | None) -> Generator[torch.Tensor, None, None]:
    """Endless shuffled batches; on a GPU from host memory through the pinned prefetcher (``device`` None: plain
    host batches, copied by the loop itself, as the seed's loop does)."""
    host = _cycle(data, batch)
    if device is None or data.images.device.type == device.type:
        return host
    return prefetched(host, device)


def _cycle(data: ImageSet, batch: int) -> Generator[torch.Tensor, None, None]:
    if len(data) < batch:
        raise RunError(f"bench: {plural(len(data), 'image')}, fewer than one batch of {batch}")
    epoch = 0
    while True:
        yield from data.batches(batch, shuffle=True, generator=epoch_generator(epoch, 0))
        epoch += 1


def _where(data: ImageSet, device: torch.device) -> str:
    if data.images.device.type == device.type:
        return "device" if device.type == "cuda" else "host"
    return "host, pinned prefetch"


def _fresh_gan(resolved: Resolved, device: torch.device) -> GAN:
    torch.manual_seed(resolved.train.seed)  # every variant starts from the same weights
    return build_gan(resolved.result, resolved.train, device)


def _drop_final_sigmoid(data: dict[str, Any]) -> None:
    """The last sigmoid of the discriminator's layers goes (a flatten or view after it stays)."""
    layers = data["discriminator"]["layers"]
    last = max(
        i for i, layer in enumerate(layers) if isinstance(layer, dict) and layer.get("type") == "sigmoid"
    )
    data["discriminator"]["layers"] = layers[:last] + layers[last + 1 :]
