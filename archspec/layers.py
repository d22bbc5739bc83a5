"""The layer types of a spec: one frozen pydantic model per torch.nn class, named by its snake_case tag.

Fields are the constructor's keyword arguments with the constructor's names and defaults, so building a layer is one
call and PyTorch's documentation documents the spec. Input sizes (``in_channels``, ``in_features``,
``num_features``) are optional: the shape trace infers them, and checks them when they are written.
This module imports neither torch nor rich.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeAlias, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

MAX_SIZE = 2**31 - 1

Size = Annotated[int, Field(ge=1, le=MAX_SIZE)]
NonNegative = Annotated[int, Field(ge=0, le=MAX_SIZE)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveFloat = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
# A scale beyond this overflows any real image long before; the bound keeps messages short.
ScaleFactor = Annotated[float, Field(gt=0.0, le=65536.0, allow_inf_nan=False)]


def _pair(value: Any) -> Any:
    """``8`` and ``[8, 8]`` both become ``(8, 8)`` at the boundary (torch's ``_pair``).

    Any single value is doubled, so that ``kernel_size: -4`` or ``'4'`` is reported as a bad size, not a bad list.
    """
    if isinstance(value, list):
        return tuple(value)
    if value is None or isinstance(value, tuple | dict):
        return value
    return (value, value)


def _padding(value: Any) -> Any:
    """Conv2d's padding: ``'same'``, ``'valid'``, or a size or pair of sizes."""
    return value if isinstance(value, str) else _pair(value)


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _float_or_pair(value: Any) -> Any:
    """``scale_factor: 2`` means 2.0 on both axes; ints are accepted where torch accepts them."""
    value = _pair(value)
    if isinstance(value, tuple):
        return tuple(float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value)
    return value


Pair = Annotated[tuple[Size, Size], BeforeValidator(_pair)]
PairNonNegative = Annotated[tuple[NonNegative, NonNegative], BeforeValidator(_pair)]
ConvPadding = Annotated[Literal["same", "valid"] | tuple[NonNegative, NonNegative], BeforeValidator(_padding)]
Shape = Annotated[tuple[int, ...], BeforeValidator(_tuple), Field(min_length=1, max_length=8)]


class Layer(BaseModel):
    """Fields every layer has: its ``type`` tag and an optional ``name`` (the child's name in the nn.Sequential)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    type: str  # each concrete layer narrows it to its Literal tag, which the spec's union discriminates on
    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=64)] | None = None

    def torch_kwargs(self) -> dict[str, Any]:
        """The constructor's keyword arguments (everything but ``type`` and ``name``)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("type", "name")}


# --- layers with weights ---------------------------------------------------------------------------------------


class Linear(Layer):
    type: Literal["linear"]
    in_features: Size | None = None
    out_features: Size
    bias: bool = True


class Conv2d(Layer):
    type: Literal["conv2d"]
    in_channels: Size | None = None
    out_channels: Size
    kernel_size: Pair
    stride: Pair = (1, 1)
    padding: ConvPadding = (0, 0)
    dilation: Pair = (1, 1)
    groups: Size = 1
    bias: bool = True
    padding_mode: Literal["zeros", "reflect", "replicate", "circular"] = "zeros"


class ConvTranspose2d(Layer):
    type: Literal["conv_transpose2d"]
    in_channels: Size | None = None
    out_channels: Size
    kernel_size: Pair
    stride: Pair = (1, 1)
    padding: PairNonNegative = (0, 0)
    output_padding: PairNonNegative = (0, 0)
    groups: Size = 1
    bias: bool = True
    dilation: Pair = (1, 1)


class _BatchNorm(Layer):
    num_features: Size | None = None
    eps: PositiveFloat = 1e-5
    momentum: Probability | None = 0.1
    affine: bool = True
    track_running_stats: bool = True


class BatchNorm1d(_BatchNorm):
    type: Literal["batch_norm1d"]


class BatchNorm2d(_BatchNorm):
    type: Literal["batch_norm2d"]


class InstanceNorm2d(Layer):
    type: Literal["instance_norm2d"]
    num_features: Size | None = None
    eps: PositiveFloat = 1e-5
    momentum: Probability | None = 0.1
    affine: bool = False
    track_running_stats: bool = False


class LayerNorm(Layer):
    type: Literal["layer_norm"]
    normalized_shape: Annotated[tuple[Size, ...], BeforeValidator(_tuple)] | None = None
    eps: PositiveFloat = 1e-5
    elementwise_affine: bool = True
    bias: bool = True


# --- layers without weights --------------------------------------------------------------------------------------


class Dropout(Layer):
    type: Literal["dropout"]
    p: Probability = 0.5
    inplace: bool = False


class LeakyReLU(Layer):
    type: Literal["leaky_relu"]
    negative_slope: Finite = 0.01
    inplace: bool = False


class ReLU(Layer):
    type: Literal["relu"]
    inplace: bool = False


class GELU(Layer):
    type: Literal["gelu"]
    approximate: Literal["none", "tanh"] = "none"


class SiLU(Layer):
    type: Literal["silu"]
    inplace: bool = False


class Tanh(Layer):
    type: Literal["tanh"]


class Sigmoid(Layer):
    type: Literal["sigmoid"]


class Flatten(Layer):
    """``start_dim`` and ``end_dim`` count the batch dimension, as in torch (the default 1 keeps it)."""

    type: Literal["flatten"]
    start_dim: int = 1
    end_dim: int = -1


class Upsample(Layer):
    type: Literal["upsample"]
    size: Annotated[tuple[Size, Size], BeforeValidator(_pair)] | None = None
    scale_factor: Annotated[tuple[ScaleFactor, ScaleFactor], BeforeValidator(_float_or_pair)] | None = None
    mode: Literal["nearest", "nearest-exact", "bilinear", "bicubic"] = "nearest"
    align_corners: bool | None = None


class MaxPool2d(Layer):
    type: Literal["max_pool2d"]
    kernel_size: Pair
    stride: Pair | None = None
    padding: PairNonNegative = (0, 0)
    dilation: Pair = (1, 1)
    ceil_mode: bool = False


class AvgPool2d(Layer):
    type: Literal["avg_pool2d"]
    kernel_size: Pair
    stride: Pair | None = None
    padding: PairNonNegative = (0, 0)
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: Size | None = None


class View(Layer):
    """Reshape each sample to ``shape`` (batch dimension excluded; one -1 may stand for the rest)."""

    type: Literal["view"]
    shape: Shape


AnyLayer: TypeAlias = Annotated[
    Linear
    | Conv2d
    | ConvTranspose2d
    | BatchNorm1d
    | BatchNorm2d
    | InstanceNorm2d
    | LayerNorm
    | Dropout
    | LeakyReLU
    | ReLU
    | GELU
    | SiLU
    | Tanh
    | Sigmoid
    | Flatten
    | Upsample
    | MaxPool2d
    | AvgPool2d
    | View,
    Field(discriminator="type"),
]

LAYER_TYPES: dict[str, type[Layer]] = {
    get_args(cls.model_fields["type"].annotation)[0]: cls  # Literal["tag"] → "tag"
    for cls in get_args(get_args(AnyLayer)[0])
}

WEIGHT_LAYERS = frozenset({"linear", "conv2d", "conv_transpose2d"})
