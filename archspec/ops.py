"""The nn.Modules a spec needs that torch.nn lacks: reshapes, merges, and the layers of conditional GANs.

Each is written as the papers define it, and held to hand-written twins of the original networks in tests/zoo.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import spectral_norm


class View(nn.Module):
    """``x.view(batch, *shape)``: the seed's View, with the batch dimension kept free."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # reshape, not view: a channels_last activation is not contiguous in NCHW order.
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


class Add(nn.Module):
    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class Mul(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a * b


class Cat(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Reduce(nn.Module):
    """``torch.sum`` or ``torch.mean`` over ``dim``."""

    def __init__(self, mean: bool, dim: tuple[int, ...], keepdim: bool) -> None:
        super().__init__()
        self.mean, self.dim, self.keepdim = mean, tuple(dim), keepdim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean:
            return torch.mean(x, dim=self.dim, keepdim=self.keepdim)
        return torch.sum(x, dim=self.dim, keepdim=self.keepdim)

    def extra_repr(self) -> str:
        return f"{'mean' if self.mean else 'sum'}, dim={self.dim}, keepdim={self.keepdim}"


class Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


class Split(nn.Module):
    """``torch.split`` (sizes) or ``torch.chunk`` (a count): returns the parts as a tuple."""

    def __init__(self, sizes: int | tuple[int, ...] | None, chunks: int | None, dim: int) -> None:
        super().__init__()
        self.sizes, self.chunks, self.dim = sizes, chunks, dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.chunks is not None:
            return tuple(torch.chunk(x, self.chunks, dim=self.dim))
        assert self.sizes is not None
        return tuple(
            torch.split(x, self.sizes if isinstance(self.sizes, int) else list(self.sizes), dim=self.dim)
        )


class Softmax(nn.Softmax):
    pass


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm whose scale and shift come from a label (an embedding, scale initialised to 1 and shift to 0, as
    cGAN-PD) or from a vector (out = bn(x)·(1 + gain(c)) + bias(c), two linears, as BigGAN)."""

    def __init__(
        self,
        num_features: int,
        classes: int | None,
        features: int | None,
        eps: float,
        momentum: float | None,
        bias: bool,
    ) -> None:
        super().__init__()
        self.num_features = num_features
        self.bn = nn.BatchNorm2d(num_features, eps=eps, momentum=momentum, affine=False)
        self.embed: nn.Embedding | None = None
        self.gain: nn.Linear | None = None
        self.bias: nn.Linear | None = None
        if classes is not None:
            self.embed = nn.Embedding(classes, 2 * num_features)
            with torch.no_grad():
                self.embed.weight[:, :num_features].fill_(1.0)
                self.embed.weight[:, num_features:].zero_()
        else:
            assert features is not None
            self.gain = nn.Linear(features, num_features, bias=bias)
            self.bias = nn.Linear(features, num_features, bias=bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.bn(x)
        if self.embed is not None:
            gamma, beta = self.embed(c).chunk(2, dim=1)
            shifted: torch.Tensor = gamma.view(-1, self.num_features, 1, 1) * out + beta.view(
                -1, self.num_features, 1, 1
            )
            return shifted
        assert self.gain is not None and self.bias is not None
        gain = (1 + self.gain(c)).view(-1, self.num_features, 1, 1)
        scaled: torch.Tensor = out * gain + self.bias(c).view(-1, self.num_features, 1, 1)
        return scaled


class SelfAttention(nn.Module):
    """SAGAN's self-attention block (Zhang et al. 2019) as StudioGAN writes it: 1×1 convolutions without bias,
    keys and values max-pooled 2×2, a learned gate ``gamma`` starting at 0."""

    def __init__(self, channels: int, sn: dict[str, float] | None) -> None:
        super().__init__()

        def conv(i: int, o: int) -> nn.Module:
            layer = nn.Conv2d(i, o, kernel_size=1, bias=False)
            return spectral_norm(layer, **sn) if sn is not None else layer  # type: ignore[arg-type]

        self.theta = conv(channels, channels // 8)
        self.phi = conv(channels, channels // 8)
        self.g = conv(channels, channels // 2)
        self.o = conv(channels // 2, channels)
        self.pool = nn.MaxPool2d(2, stride=2)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        theta = self.theta(x).view(n, c // 8, h * w)
        phi = self.pool(self.phi(x)).view(n, c // 8, h * w // 4)
        attention = torch.softmax(torch.bmm(theta.permute(0, 2, 1), phi), dim=-1)
        g = self.pool(self.g(x)).view(n, c // 2, h * w // 4)
        out = torch.bmm(g, attention.permute(0, 2, 1)).view(n, c // 2, h, w)
        result: torch.Tensor = x + self.gamma * self.o(out)
        return result


class Projection(nn.Module):
    """The projection discriminator's label term: ⟨embed(y), h⟩ per sample, [N, 1]."""

    def __init__(self, classes: int, features: int, sn: dict[str, float] | None) -> None:
        super().__init__()
        embed = nn.Embedding(classes, features)
        self.embed = spectral_norm(embed, **sn) if sn is not None else embed  # type: ignore[arg-type]

    def forward(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        result: torch.Tensor = torch.sum(self.embed(y) * h, dim=1, keepdim=True)
        return result
