"""The layer types of a spec: one frozen pydantic model per torch.nn class, named by its snake_case tag.

Fields are the constructor's keyword arguments with the constructor's names and defaults, so building a layer is one
call and PyTorch's documentation documents the spec. Input sizes (``in_channels``, ``in_features``,
``num_features``) are optional: the shape trace infers them, and checks them when they are written.
Besides its torch kwargs a layer may carry the graph fields ``id`` (names its output), ``from`` (its inputs) and
``repeat``; weight layers also ``spectral_norm`` and ``init``. What a type *is* (has weights, changes the spatial
size, which field sets its channels, what it infers, what a size fix may try, how many inputs it takes) is declared
once on its class as ``traits``. This module imports neither torch nor rich.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, NamedTuple, TypeAlias, Union, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    SerializeAsAny,
    Tag,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import ErrorDetails, InitErrorDetails

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


Ident = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=64)]
# A value a layer reads: an id, an input's name, ``id.N`` for part N of a split/chunk, or ``_`` (the previous layer).
_REF = r"^(?:[A-Za-z_][A-Za-z0-9_]*(?:\.[0-9]+)?)$"
Ref = Annotated[str, Field(pattern=_REF, max_length=80)]
_REF_SCHEMA = {"type": "string", "pattern": _REF, "maxLength": 80}
Refs = Annotated[
    tuple[Ref, ...],
    BeforeValidator(lambda v: (v,) if isinstance(v, str) else _tuple(v)),
    Field(min_length=1, max_length=64),
    # one name, or a list of them (the validator makes one name a list of one)
    WithJsonSchema(
        {"anyOf": [_REF_SCHEMA, {"type": "array", "items": _REF_SCHEMA, "minItems": 1, "maxItems": 64}]}
    ),
]
Repeat = (
    Annotated[int, Field(ge=1, le=1000)]
    | Annotated[tuple[dict[str, Any], ...], BeforeValidator(_tuple), Field(min_length=1, max_length=1000)]
)


class Traits(NamedTuple):
    """What a layer type is, for every table, rule and fix that needs to know."""

    weights: bool = False  # has learnable weights (a network ``init`` applies to it)
    spatial: bool = False  # may change height and width (a size fix may change it)
    channels: str | None = None  # the field that sets the output channels (or features)
    inferred: tuple[str, ...] = ()  # fields the trace infers from the input
    fixes: tuple[str, ...] = ()  # fields a size fix may try, in order
    passthrough: bool = (
        False  # keeps the values (flatten, view, dropout, identity): "ends in" looks through it
    )
    elementwise: bool = False  # output shape = input shape, each value on its own
    inputs: int = 1  # how many inputs it reads; 0 = two or more


class SpectralNorm(BaseModel):
    """``torch.nn.utils.spectral_norm``'s arguments (``spectral_norm: true`` takes torch's defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True)

    eps: PositiveFloat = 1e-12
    n_power_iterations: Annotated[int, Field(ge=1, le=100)] = 1


def _spectral_norm(value: Any) -> Any:
    if value is True:
        return {}
    if value is False:
        return None
    return value


_SPECTRAL_NORM_SCHEMA = {
    "anyOf": [
        {"type": "boolean"},
        {
            "type": "object",
            "properties": {
                "eps": {"type": "number", "exclusiveMinimum": 0},
                "n_power_iterations": {"type": "integer", "minimum": 1, "maximum": 100},
            },
            "additionalProperties": False,
        },
        {"type": "null"},
    ]
}
# true (torch's defaults), false, or {eps, n_power_iterations}
SpectralNormField = Annotated[
    Annotated[SpectralNorm, BeforeValidator(_spectral_norm)] | None, WithJsonSchema(_SPECTRAL_NORM_SCHEMA)
]


class Init(BaseModel):
    """A weight initialisation (``torch.nn.init``), and optionally a constant for the bias."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True)

    type: Literal[
        "default",
        "normal",
        "uniform",
        "constant",
        "xavier_uniform",
        "xavier_normal",
        "kaiming_uniform",
        "kaiming_normal",
        "orthogonal",
    ]
    mean: Finite = 0.0
    std: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] = 0.02
    a: Finite = 0.0
    b: Finite = 1.0
    value: Finite = 0.0
    gain: PositiveFloat = 1.0
    mode: Literal["fan_in", "fan_out"] = "fan_in"
    nonlinearity: Literal["leaky_relu", "relu", "linear", "tanh", "sigmoid"] = "leaky_relu"
    bias: Finite | None = None


class NetworkNode(BaseModel):
    """What every item of a network's ``layers`` has: its ``type``, an optional ``name`` (the child's name in the
    built module), and the graph fields ``id``, ``from`` and ``repeat``. A layer, or a use of a block."""

    # Built on first use: a spec pays only for the layer types it uses.
    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, populate_by_name=True, defer_build=True
    )

    type: str  # each concrete layer narrows it to its Literal tag
    name: Ident | None = None
    id: Ident | None = None
    from_: Refs | None = Field(None, alias="from")
    repeat: Repeat | None = None


class Layer(NetworkNode):
    """A layer: one torch.nn class (or tensor operation), its fields the constructor's keyword arguments."""

    traits: ClassVar[Traits]

    def torch_kwargs(self) -> dict[str, Any]:
        """The constructor's keyword arguments (everything but the spec's own fields; PReLU's ``init`` is torch's)."""
        return {
            k: v
            for k, v in self.__dict__.items()
            if k not in SPEC_FIELDS or (k == "init" and isinstance(v, float))
        }


SPEC_FIELDS = frozenset({"type", "name", "id", "from_", "repeat", "spectral_norm", "init"})


class _Weighted(Layer):
    spectral_norm: SpectralNormField = None
    init: Init | None = None


# --- layers with weights ---------------------------------------------------------------------------------------


class Linear(_Weighted):
    traits = Traits(weights=True, channels="out_features", inferred=("in_features",))
    type: Literal["linear"]
    in_features: Size | None = None
    out_features: Size
    bias: bool = True


class Conv2d(_Weighted):
    traits = Traits(
        weights=True,
        spatial=True,
        channels="out_channels",
        inferred=("in_channels",),
        fixes=("padding", "kernel_size"),
    )
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


class ConvTranspose2d(_Weighted):
    traits = Traits(
        weights=True,
        spatial=True,
        channels="out_channels",
        inferred=("in_channels",),
        fixes=("padding", "output_padding", "kernel_size"),
    )
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


class Embedding(_Weighted):
    """A class label → a learned vector; ``num_embeddings`` is the label's class count."""

    traits = Traits(weights=True, channels="embedding_dim", inferred=("num_embeddings",))
    type: Literal["embedding"]
    num_embeddings: Size | None = None
    embedding_dim: Size
    padding_idx: NonNegative | None = None


# --- normalisation ------------------------------------------------------------------------------------------------


_NORM = Traits(inferred=("num_features",), elementwise=True)


class _BatchNorm(Layer):
    traits = _NORM
    num_features: Size | None = None
    eps: PositiveFloat = 1e-5
    momentum: Probability | None = 0.1
    affine: bool = True
    track_running_stats: bool = True
    init: Init | None = None


class BatchNorm1d(_BatchNorm):
    type: Literal["batch_norm1d"]


class BatchNorm2d(_BatchNorm):
    type: Literal["batch_norm2d"]


class InstanceNorm2d(Layer):
    traits = _NORM
    type: Literal["instance_norm2d"]
    num_features: Size | None = None
    eps: PositiveFloat = 1e-5
    momentum: Probability | None = 0.1
    affine: bool = False
    track_running_stats: bool = False
    init: Init | None = None


class LayerNorm(Layer):
    traits = Traits(inferred=("normalized_shape",), elementwise=True)
    type: Literal["layer_norm"]
    normalized_shape: Annotated[tuple[Size, ...], BeforeValidator(_tuple)] | None = None
    eps: PositiveFloat = 1e-5
    elementwise_affine: bool = True
    bias: bool = True


class ConditionalBatchNorm2d(_Weighted):
    """Batch norm without affine weights whose scale and shift come from a second input (``from: [x, c]``).

    A label ``c`` looks them up in an embedding (cGAN-PD, mimicry: scale initialised to 1, shift to 0); a vector
    ``c`` maps through two bias-free linears, out = bn(x)·(1 + W_g c) + W_b c (BigGAN, StudioGAN).
    """

    traits = Traits(weights=True, inferred=("num_features",), inputs=2)
    type: Literal["conditional_batch_norm2d"]
    num_features: Size | None = None
    eps: PositiveFloat = 1e-5
    momentum: Probability | None = 0.1
    bias: bool = False


# --- composite layers of conditional GANs --------------------------------------------------------------------------


class SelfAttention(_Weighted):
    """SAGAN's self-attention (Zhang et al. 2019, as in StudioGAN): 1×1 convolutions theta, phi (C → C/8), g
    (C → C/2) and o (C/2 → C) without bias, 2×2 max-pooling of phi and g, out = x + gamma·o(attention), gamma = 0."""

    traits = Traits(weights=True, inferred=("in_channels",), elementwise=True)
    type: Literal["self_attention"]
    in_channels: Size | None = None


class Projection(_Weighted):
    """The projection discriminator's label term (Miyato & Koyama 2018): sum(embed(y)·h) over the features of
    ``h``, from ``[h, y]`` (h a [C] feature vector, y a label) → [1]."""

    traits = Traits(weights=True, inferred=("in_features", "num_classes"), inputs=2)
    type: Literal["projection"]
    in_features: Size | None = None
    num_classes: Size | None = None


# --- layers without weights --------------------------------------------------------------------------------------

_ACTIVATION = Traits(elementwise=True)
_KEEPS = Traits(elementwise=True, passthrough=True)


class Dropout(Layer):
    traits = _KEEPS
    type: Literal["dropout"]
    p: Probability = 0.5
    inplace: bool = False


class Dropout2d(Layer):
    traits = _KEEPS
    type: Literal["dropout2d"]
    p: Probability = 0.5
    inplace: bool = False


class Identity(Layer):
    traits = _KEEPS
    type: Literal["identity"]


class LeakyReLU(Layer):
    traits = _ACTIVATION
    type: Literal["leaky_relu"]
    negative_slope: Finite = 0.01
    inplace: bool = False


class ReLU(Layer):
    traits = _ACTIVATION
    type: Literal["relu"]
    inplace: bool = False


class PReLU(Layer):
    """``init`` is PReLU's own initial slope (torch's keyword), not a weight initialisation."""

    traits = Traits(elementwise=True)
    type: Literal["prelu"]
    num_parameters: Size = 1
    init: Finite = 0.25


class GELU(Layer):
    traits = _ACTIVATION
    type: Literal["gelu"]
    approximate: Literal["none", "tanh"] = "none"


class SiLU(Layer):
    traits = _ACTIVATION
    type: Literal["silu"]
    inplace: bool = False


class Tanh(Layer):
    traits = _ACTIVATION
    type: Literal["tanh"]


class Sigmoid(Layer):
    traits = _ACTIVATION
    type: Literal["sigmoid"]


class Softmax(Layer):
    """``dim`` counts the batch dimension, as in torch; the default 1 is the features (torch has no default)."""

    traits = _ACTIVATION
    type: Literal["softmax"]
    dim: int = 1


class Flatten(Layer):
    """``start_dim`` and ``end_dim`` count the batch dimension, as in torch (the default 1 keeps it)."""

    traits = Traits(passthrough=True)
    type: Literal["flatten"]
    start_dim: int = 1
    end_dim: int = -1


class Upsample(Layer):
    traits = Traits(spatial=True, fixes=("scale_factor", "size"))
    type: Literal["upsample"]
    size: Annotated[tuple[Size, Size], BeforeValidator(_pair)] | None = None
    scale_factor: Annotated[tuple[ScaleFactor, ScaleFactor], BeforeValidator(_float_or_pair)] | None = None
    mode: Literal["nearest", "nearest-exact", "bilinear", "bicubic"] = "nearest"
    align_corners: bool | None = None


class PixelShuffle(Layer):
    traits = Traits(spatial=True)
    type: Literal["pixel_shuffle"]
    upscale_factor: Size


class MaxPool2d(Layer):
    traits = Traits(spatial=True, fixes=("padding", "kernel_size"))
    type: Literal["max_pool2d"]
    kernel_size: Pair
    stride: Pair | None = None
    padding: PairNonNegative = (0, 0)
    dilation: Pair = (1, 1)
    ceil_mode: bool = False


class AvgPool2d(Layer):
    traits = Traits(spatial=True, fixes=("padding", "kernel_size"))
    type: Literal["avg_pool2d"]
    kernel_size: Pair
    stride: Pair | None = None
    padding: PairNonNegative = (0, 0)
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: Size | None = None


class AdaptiveAvgPool2d(Layer):
    traits = Traits(spatial=True)
    type: Literal["adaptive_avg_pool2d"]
    output_size: Pair


def _four(value: Any) -> Any:
    """torch's padding layers: one size for all four sides, or [left, right, top, bottom]."""
    if isinstance(value, list):
        return tuple(value)
    if value is None or isinstance(value, tuple | dict):
        return value
    return (value, value, value, value)


Padding4 = Annotated[tuple[NonNegative, NonNegative, NonNegative, NonNegative], BeforeValidator(_four)]


class _Pad2d(Layer):
    traits = Traits(spatial=True)
    padding: Padding4


class ZeroPad2d(_Pad2d):
    type: Literal["zero_pad2d"]


class ReflectionPad2d(_Pad2d):
    type: Literal["reflection_pad2d"]


class ReplicationPad2d(_Pad2d):
    type: Literal["replication_pad2d"]


class View(Layer):
    """Reshape each sample to ``shape`` (batch dimension excluded; one -1 may stand for the rest)."""

    traits = Traits(passthrough=True)
    type: Literal["view"]
    shape: Shape


# --- tensor operations of forward(): merges, reductions, splits ------------------------------------------------------

Dims = Annotated[
    tuple[int, ...],
    BeforeValidator(lambda v: (v,) if isinstance(v, int) and not isinstance(v, bool) else _tuple(v)),
    Field(min_length=1, max_length=8),
]


class Add(Layer):
    """The sum of two or more inputs of one shape (a residual connection)."""

    traits = Traits(inputs=0)
    type: Literal["add"]


class Mul(Layer):
    """The element-wise product of two inputs of one shape."""

    traits = Traits(inputs=2)
    type: Literal["mul"]


class Cat(Layer):
    """``torch.cat`` of two or more inputs along ``dim`` (counting the batch dimension, as in torch)."""

    traits = Traits(inputs=0)
    type: Literal["cat"]
    dim: int = 1


class Sum(Layer):
    """``torch.sum`` over ``dim`` (counting the batch dimension; it may not be summed)."""

    traits = Traits()
    type: Literal["sum"]
    dim: Dims
    keepdim: bool = False


class Mean(Layer):
    """``torch.mean`` over ``dim`` (counting the batch dimension; it may not be averaged)."""

    traits = Traits()
    type: Literal["mean"]
    dim: Dims
    keepdim: bool = False


class Scale(Layer):
    """Multiply by a constant."""

    traits = Traits(elementwise=True)
    type: Literal["scale"]
    factor: Finite


class Split(Layer):
    """``torch.split``: parts ``id.0``, ``id.1``, ... of ``split_size_or_sections`` along ``dim``."""

    traits = Traits()
    type: Literal["split"]
    split_size_or_sections: (
        Size | Annotated[tuple[Size, ...], BeforeValidator(_tuple), Field(min_length=1, max_length=64)]
    )
    dim: int = 1


class Chunk(Layer):
    """``torch.chunk``: ``chunks`` parts ``id.0``, ``id.1``, ... along ``dim``."""

    traits = Traits()
    type: Literal["chunk"]
    chunks: Annotated[int, Field(ge=1, le=64)]
    dim: int = 1


def _not_a_layer_type(schema: dict[str, Any]) -> None:
    """In the JSON Schema, a block use's type is any name but a layer type's (so each layer matches one branch)."""
    schema["properties"]["type"]["not"] = {"enum": sorted(LAYER_TYPES)}


class BlockUse(NetworkNode):
    """A use of a block of the spec's ``blocks:`` section: its name as the type, its arguments as fields."""

    model_config = ConfigDict(
        extra="allow",
        frozen=True,
        strict=True,
        populate_by_name=True,
        defer_build=True,
        json_schema_extra=_not_a_layer_type,
    )

    @property
    def args(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


_LAYER_CLASSES: tuple[type[Layer], ...] = (
    Linear,
    Conv2d,
    ConvTranspose2d,
    Embedding,
    BatchNorm1d,
    BatchNorm2d,
    InstanceNorm2d,
    LayerNorm,
    ConditionalBatchNorm2d,
    SelfAttention,
    Projection,
    Dropout,
    Dropout2d,
    Identity,
    LeakyReLU,
    ReLU,
    PReLU,
    GELU,
    SiLU,
    Tanh,
    Sigmoid,
    Softmax,
    Flatten,
    Upsample,
    PixelShuffle,
    MaxPool2d,
    AvgPool2d,
    AdaptiveAvgPool2d,
    ZeroPad2d,
    ReflectionPad2d,
    ReplicationPad2d,
    View,
    Add,
    Mul,
    Cat,
    Sum,
    Mean,
    Scale,
    Split,
    Chunk,
)

LAYER_TYPES: dict[str, type[Layer]] = {
    get_args(cls.model_fields["type"].annotation)[0]: cls  # Literal["tag"] → "tag"
    for cls in _LAYER_CLASSES
}
BLOCK_TAG = "block"  # the union's tag for a type that is not a layer: a use of a block (or a typo)


def _node_tag(value: Any) -> str | None:
    """The union's tag of a layer: its type when that is a layer type, else a block use. A mapping without a
    type has none (pydantic says "needs a type"); anything else is a block use, which refuses a non-mapping."""
    if isinstance(value, dict):
        tag = value.get("type")
        if not isinstance(tag, str):
            return None
    else:
        tag = getattr(value, "type", None)
    return tag if isinstance(tag, str) and tag in LAYER_TYPES else BLOCK_TAG


def validated_nodes(value: Any) -> Any:
    """Each layer of a list validated by its own class, chosen by its ``type``; a type that is no layer type is a
    block use. Classes are built on first use (``defer_build``), so a spec pays only for the types it uses.

    Every layer's errors are collected, at ``(index, field)``, into one ValidationError.
    """
    if not isinstance(value, list):
        return value  # the list type refuses it
    out: list[Any] = []
    errors: list[InitErrorDetails] = []
    for i, item in enumerate(value):
        if isinstance(item, Layer | BlockUse):
            out.append(item)
            continue
        tag = _node_tag(item)
        if tag is None:
            errors.append(
                {
                    "type": "union_tag_not_found",
                    "loc": (i,),
                    "input": item,
                    "ctx": {"discriminator": "'type'"},
                }
            )
            continue
        try:
            out.append(LAYER_TYPES.get(tag, BlockUse).model_validate(item))
        except ValidationError as exc:
            errors += [_at(i, e) for e in exc.errors()]
    if errors:
        raise ValidationError.from_exception_data("layers", errors)
    return out


def _at(index: int, error: ErrorDetails) -> InitErrorDetails:
    details: InitErrorDetails = {
        "type": error["type"],
        "loc": (index, *error["loc"]),
        "input": error["input"],
    }
    if "ctx" in error:
        details["ctx"] = error["ctx"]
    return details


def full_node_union() -> Any:
    """The discriminated union of every layer class and block uses: for the JSON Schema (``archspec schema``),
    which must describe every type; validation dispatches on ``type`` instead (``validated_nodes``)."""
    tagged = (
        *(Annotated[cls, Tag(tag)] for tag, cls in LAYER_TYPES.items()),
        Annotated[BlockUse, Tag(BLOCK_TAG)],
    )
    return Annotated[Union[tagged], Discriminator(_node_tag)]  # noqa: UP007  # | cannot take a tuple


if TYPE_CHECKING:
    AnyNode: TypeAlias = Layer | BlockUse
else:
    # Serialised as what each node is (a Conv2d's fields), not as the base class the list declares.
    AnyNode = SerializeAsAny[NetworkNode]
