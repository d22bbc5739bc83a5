"""PyTorch's output-size formulas as pure functions on integers, each returning the size and its arithmetic.

Each function quotes the formula it implements; ``tests/test_shapes_vs_torch.py`` holds them to torch itself.
The arithmetic is written the way the ``check`` table prints it: ``(62−1)·2 − 2·1 + 7 + 0 + 1 = 128``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Size1d:
    """One spatial output size and the arithmetic that produced it."""

    value: int
    arithmetic: str


def _span(kernel: int, dilation: int) -> str:
    """The receptive extent minus one, ``dilation·(kernel−1)``, written as simply as it allows."""
    return str(kernel - 1) if dilation == 1 else f"{dilation}·({kernel}−1)"


def _signed(term: str, value: int) -> str:
    return f" − {term}" if value >= 0 else f" + {term}"


def conv_out(size: int, kernel: int, stride: int, padding: int, dilation: int) -> Size1d:
    """Conv2d, per spatial dimension (torch.nn.Conv2d docs):

    out = floor((in + 2·padding − dilation·(kernel_size − 1) − 1) / stride) + 1
    """
    numerator = size + 2 * padding - dilation * (kernel - 1) - 1
    value = numerator // stride + 1
    pad = f" + 2·{padding}" if padding else ""
    inner = f"{size}{pad} − {_span(kernel, dilation)} − 1"
    text = f"({inner})/{stride}" if stride != 1 else inner
    text = f"⌊{text}⌋ + 1" if stride != 1 else f"{inner} + 1"
    return Size1d(value, f"{text} = {value}")


def conv_transpose_out(
    size: int, kernel: int, stride: int, padding: int, output_padding: int, dilation: int
) -> Size1d:
    """ConvTranspose2d, per spatial dimension (torch.nn.ConvTranspose2d docs):

    out = (in − 1)·stride − 2·padding + dilation·(kernel_size − 1) + output_padding + 1
    """
    value = (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1
    text = f"({size}−1)·{stride} − 2·{padding} + {_span(kernel, dilation)} + {output_padding} + 1 = {value}"
    return Size1d(value, text)


def pool_out(size: int, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool) -> Size1d:
    """MaxPool2d / AvgPool2d, per spatial dimension (aten ``pooling_output_shape``):

    out = floor_or_ceil((in + 2·padding − dilation·(kernel_size − 1) − 1) / stride) + 1,
    and with ceil_mode the last window must start inside the input or its left padding:
    if (out − 1)·stride ≥ in + padding then out −= 1.
    """
    numerator = size + 2 * padding - dilation * (kernel - 1) - 1
    if ceil_mode:
        value = -(-numerator // stride) + 1
        if (value - 1) * stride >= size + padding:
            value -= 1
        bracket = "⌈⌉"
    else:
        value = numerator // stride + 1
        bracket = "⌊⌋"
    pad = f" + 2·{padding}" if padding else ""
    text = f"{bracket[0]}({size}{pad} − {_span(kernel, dilation)} − 1)/{stride}{bracket[1]} + 1 = {value}"
    return Size1d(value, text)


def upsample_out(size: int, scale: float) -> Size1d:
    """Upsample with ``scale_factor`` (torch.nn.functional.interpolate): out = floor(in · scale_factor)."""
    value = math.floor(float(size) * scale)
    return Size1d(value, f"⌊{size}·{scale:g}⌋ = {value}")


def same_out(size: int) -> Size1d:
    """Conv2d with ``padding='same'``: the output keeps the input size (stride 1 only)."""
    return Size1d(size, f"'same' = {size}")


def same_padding(kernel: int, dilation: int) -> tuple[int, int]:
    """The (left, right) zero padding torch adds for ``padding='same'``: the extra pixel goes right."""
    total = dilation * (kernel - 1)
    return total // 2, total - total // 2


def elements(shape: tuple[int, ...]) -> int:
    """Number of values in a per-sample shape."""
    return math.prod(shape)
