"""The top level of a spec: name, latent, image, blocks, the two networks and the optional ``train:`` section.

Frozen pydantic models only; shapes, parameter counts and costs are derived in ``trace.py``, never stored here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

from archspec.layers import (
    MAX_SIZE,
    AnyNode,
    Ident,
    Init,
    PositiveFloat,
    Ref,
    Refs,
    Size,
    full_node_union,
    validated_nodes,
)

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


ImageShape = Annotated[
    tuple[Size, Size, Size], BeforeValidator(lambda v: tuple(v) if isinstance(v, list) else v)
]


class LabelInput(_Frozen):
    """A class index per sample, out of ``label`` classes."""

    label: Size


class ImageInput(_Frozen):
    """A conditioning image of shape ``image`` [C, H, W] (pix2pix's A, SRGAN's low-resolution input)."""

    image: ImageShape


class VectorInput(_Frozen):
    """Any other per-sample vector of ``vector`` values."""

    vector: Size


InputKind = Literal["latent", "image"] | LabelInput | ImageInput | VectorInput


class Network(_Frozen):
    """One network: a chain of layers, or a graph of them when layers name their inputs with ``from:``.

    ``inputs`` defaults to the latent for the generator and the image for the discriminator; ``outputs`` to the
    last layer's value; ``init`` initialises the weights of every weight layer that sets none of its own.
    """

    inputs: Annotated[dict[Ident, InputKind], Field(min_length=1, max_length=16)] | None = None
    init: Init | None = None
    layers: Annotated[
        list[AnyNode], BeforeValidator(validated_nodes), Field(min_length=1, max_length=100_000)
    ]
    outputs: Annotated[Refs, Field(max_length=16)] | None = None


class Block(_Frozen):
    """A named, parameterised sub-graph, used in a network like a layer type.

    ``params`` maps each parameter to its default (null: required); ``$name`` as a whole value in ``layers``
    stands for the argument. ``layers`` are validated per use, once the arguments are in.
    """

    params: Annotated[dict[Ident, Any], Field(max_length=64)] = {}
    inputs: Annotated[
        tuple[Ident, ...], BeforeValidator(lambda v: _tuple(v)), Field(min_length=1, max_length=16)
    ] = ("x",)
    layers: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=10_000)]
    output: Ref | None = None


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


Loss = Literal["bce", "bce_logits", "lsgan", "hinge", "wgan_gp"]


class Train(_Frozen):
    """How ``archspec train`` trains the spec. The defaults reproduce the seed's loop.

    Every field can be overridden on the command line (``--batch-size 64`` for ``batch_size``).
    """

    data: str | None = Field(None, description="HDF5 file; 'synthetic' (default) or 'random'")
    # None: one pass, or as many as max_steps needs when max_steps is set (runner.train.plan_steps).
    epochs: Size | None = None
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
    # A discriminator's class head (AC-GAN): its cross-entropy, real and fake, is added to D's and G's losses.
    aux_weight: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] = 1.0
    # A paired (image-to-image) run: G's loss adds l1_weight · |G(a) − b|, pix2pix's λ = 100.
    l1_weight: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] = 100.0
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
    # Quality during training (runner.monitor): SWD and NDB/K of eval_samples samples every eval_every steps.
    eval_every: Size | None = None
    eval_samples: Annotated[int, Field(ge=20, le=1_000_000)] = 1000
    tensorboard: bool = False


class Spec(_Frozen):
    """A whole GAN: what a spec file holds once validated."""

    # Names the run folder: a leading dot would hide it, or (".", "..") put it outside --out.
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$", max_length=100)]
    # Required unless the generator declares inputs without one (an image-to-image generator).
    latent: Annotated[Latent, BeforeValidator(_latent_shorthand)] | None = None
    image: ImageShape = Field(description="[channels, height, width]")
    blocks: Annotated[dict[Ident, Block], Field(max_length=1000)] = {}
    generator: Network
    discriminator: Network
    train: Train = Train()
    description: str | None = None


def schema_model() -> type[Spec]:
    """Spec with every layer type spelled out in the networks' layers, for the JSON Schema (validation dispatches
    on ``type`` instead, building only the layer models a spec uses; the schema needs them all)."""
    layers: Any = Annotated[list[full_node_union()], Field(min_length=1, max_length=100_000)]  # type: ignore[misc]  # a run-time union
    network = create_model("Network", __base__=Network, layers=(layers, ...))
    return create_model("Spec", __base__=Spec, generator=(network, ...), discriminator=(network, ...))
