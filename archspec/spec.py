"""The top level of a spec: name, latent, image, the two networks and the optional ``train:`` section.

Frozen pydantic models only; shapes, parameter counts and costs are derived in ``trace.py``, never stored here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from archspec.layers import MAX_SIZE, AnyLayer, PositiveFloat, Size

# Adam's running-average coefficients: torch.optim.Adam refuses anything outside [0, 1).
Beta = Annotated[float, Field(ge=0.0, lt=1.0)]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _latent_shorthand(value: Any) -> Any:
    """``latent: 100`` is short for ``latent: {size: 100}``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return {"size": value}
    return value


class Latent(_Frozen):
    """The generator's input: ``size`` values drawn from N(0, 1) (``normal``) or U(-1, 1) (``uniform``)."""

    size: Size
    distribution: Literal["normal", "uniform"] = "normal"


class Network(_Frozen):
    layers: Annotated[list[AnyLayer], Field(min_length=1, max_length=100_000)]


Loss = Literal["bce", "bce_logits", "lsgan", "hinge", "wgan_gp"]


class Train(_Frozen):
    """How ``archspec train`` trains the spec. The defaults reproduce the seed's loop.

    Every field can be overridden on the command line (``--batch-size 64`` for ``batch_size``).
    """

    data: str | None = Field(None, description="HDF5 file; 'synthetic' (default) or 'random'")
    epochs: Size = 1
    max_steps: Size | None = None
    batch_size: Annotated[int, Field(ge=1, le=1 << 20)] = 1
    shuffle: bool = False
    loss: Loss = "bce"
    lr: PositiveFloat = 1e-4
    lr_g: PositiveFloat | None = None
    lr_d: PositiveFloat | None = None
    betas: Annotated[tuple[Beta, Beta], BeforeValidator(lambda v: tuple(v) if isinstance(v, list) else v)] = (
        0.9,
        0.999,
    )
    d_steps: Annotated[int, Field(ge=1, le=100)] = 1
    gp_weight: PositiveFloat = 10.0
    ema: Annotated[float, Field(gt=0.0, lt=1.0)] | None = None
    data_range: Literal["auto", "unit", "symmetric"] = "auto"
    seed: Annotated[int, Field(ge=0, le=MAX_SIZE)] = 0
    device: str = "auto"
    out: str = "runs"
    log_every: Size = 10
    sample_every: Size = 500
    checkpoint_every: Size = 1000
    samples: Annotated[int, Field(ge=1, le=256)] = 16
    precision: Literal["fp32", "bf16"] = "fp32"
    channels_last: bool = False
    fused_adam: bool = False
    compile: bool = False
    data_on_device: Literal["auto", "always", "never"] = "auto"
    sync_batchnorm: bool = False


class Spec(_Frozen):
    """A whole GAN: what a spec file holds once validated."""

    # Names the run folder: a leading dot would hide it, or (".", "..") put it outside --out.
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$", max_length=100)]
    latent: Annotated[Latent, BeforeValidator(_latent_shorthand)]
    image: Annotated[
        tuple[Size, Size, Size], BeforeValidator(lambda v: tuple(v) if isinstance(v, list) else v)
    ] = Field(description="[channels, height, width]")
    generator: Network
    discriminator: Network
    train: Train = Train()
    description: str | None = None
