"""specs/zoo/studiogan_biggan32.yaml against a hand-written twin of StudioGAN's CIFAR-10 BigGAN.

The twin follows POSTECH-CVLab/PyTorch-StudioGAN src/models/big_resnet.py (Generator, Discriminator, GenBlock,
DiscOptBlock, DiscBlock) with the layers of src/utils/ops.py (snconv2d/snlinear/sn_embedding with spectral-norm eps
1e-6, BigGANConditionalBatchNorm2d, SelfAttention, batchnorm_2d with eps 1e-4) as configured by
src/configs/CIFAR10/BigGAN.yaml: img_size 32, 10 classes, z_dim 80, g_shared_dim 128, g_conv_dim = d_conv_dim = 96,
apply_g_sn = apply_d_sn = True, self-attention after generator block 2 and discriminator block 1, g_cond_mtd cBN,
d_cond_mtd PD (projection). Written from a reading of that code, with submodules declared in the spec's layer order
so that ``copy_weights`` can pair the tensors.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

import archspec
from tests.zoo.twin import copy_weights, param_count, randomize_norm_stats

SPEC = Path(__file__).resolve().parents[2] / "specs" / "zoo" / "studiogan_biggan32.yaml"
G_PARAMS = 9_416_196
D_PARAMS = 2_415_170

Z_DIM, SHARED_DIM, CH_G, CH_D, CLASSES = 80, 128, 96 * 4, 96 * 2, 10
CHUNK = Z_DIM // 4  # z splits into one chunk for the input linear and one per generator block
SN_EPS = 1e-6
BN_EPS = 1e-4


def sn(module: nn.Module) -> nn.Module:
    return spectral_norm(module, eps=SN_EPS)


def sn_conv(c_in: int, c_out: int, k: int, bias: bool = True) -> nn.Module:
    return sn(nn.Conv2d(c_in, c_out, k, stride=1, padding=k // 2, bias=bias))


class CondBatchNorm(nn.Module):
    """BigGAN's conditional batch norm: bn(x) * (1 + gain(c)) + bias(c), gain/bias spectral-normed linears."""

    def __init__(self, c_dim: int, channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, eps=BN_EPS, momentum=0.1, affine=False)
        self.gain = sn(nn.Linear(c_dim, channels, bias=False))
        self.bias = sn(nn.Linear(c_dim, channels, bias=False))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        gain = (1 + self.gain(c)).view(c.size(0), -1, 1, 1)
        bias = self.bias(c).view(c.size(0), -1, 1, 1)
        return self.bn(x) * gain + bias


class SelfAttention(nn.Module):
    """SAGAN attention with 2x2 max-pooled keys/values; the residual weight (``sigma``) starts at 0."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.theta = sn_conv(ch, ch // 8, 1, bias=False)
        self.phi = sn_conv(ch, ch // 8, 1, bias=False)
        self.g = sn_conv(ch, ch // 2, 1, bias=False)
        self.attn = sn_conv(ch // 2, ch, 1, bias=False)
        self.sigma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, ch, h, w = x.shape
        theta = self.theta(x).view(b, ch // 8, h * w)
        phi = F.max_pool2d(self.phi(x), 2).view(b, ch // 8, h * w // 4)
        beta = torch.softmax(torch.bmm(theta.transpose(1, 2), phi), dim=-1)  # [b, hw, hw/4]
        g = F.max_pool2d(self.g(x), 2).view(b, ch // 2, h * w // 4)
        o = torch.bmm(g, beta.transpose(1, 2)).view(b, ch // 2, h, w)
        return x + self.sigma * self.attn(o)


class GenBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, c_dim: int) -> None:
        super().__init__()
        self.bn1 = CondBatchNorm(c_dim, c_in)
        self.conv2d1 = sn_conv(c_in, c_out, 3)
        self.bn2 = CondBatchNorm(c_dim, c_out)
        self.conv2d2 = sn_conv(c_out, c_out, 3)
        self.conv2d0 = sn_conv(c_in, c_out, 1)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x, c)), scale_factor=2, mode="nearest")
        h = self.conv2d2(F.relu(self.bn2(self.conv2d1(h), c)))
        return h + self.conv2d0(F.interpolate(x, scale_factor=2, mode="nearest"))


class Generator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        c_dim = CHUNK + SHARED_DIM
        self.linear0 = sn(nn.Linear(CHUNK, CH_G * 4 * 4))
        self.shared = nn.Embedding(CLASSES, SHARED_DIM)  # no spectral norm on the shared embedding
        self.block1 = GenBlock(CH_G, CH_G, c_dim)
        self.block2 = GenBlock(CH_G, CH_G, c_dim)
        self.attention = SelfAttention(CH_G)
        self.block3 = GenBlock(CH_G, CH_G, c_dim)
        self.bn4 = nn.BatchNorm2d(CH_G, eps=BN_EPS, momentum=0.1)
        self.conv2d5 = sn_conv(CH_G, 3, 3)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        zs = torch.split(z, CHUNK, 1)
        h = self.linear0(zs[0]).view(-1, CH_G, 4, 4)
        shared = self.shared(y)
        c = [torch.cat([shared, item], 1) for item in zs[1:]]  # embedding first, then the z chunk
        h = self.block2(self.block1(h, c[0]), c[1])
        h = self.block3(self.attention(h), c[2])
        return torch.tanh(self.conv2d5(F.relu(self.bn4(h))))


class DiscOptBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv2d1 = sn_conv(c_in, c_out, 3)
        self.conv2d2 = sn_conv(c_out, c_out, 3)
        self.conv2d0 = sn_conv(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.avg_pool2d(self.conv2d2(F.relu(self.conv2d1(x))), 2)
        return h + self.conv2d0(F.avg_pool2d(x, 2))  # shortcut: pool, then 1x1 conv


class DiscBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, downsample: bool) -> None:
        super().__init__()
        self.downsample = downsample
        self.conv2d1 = sn_conv(c_in, c_out, 3)
        self.conv2d2 = sn_conv(c_out, c_out, 3)
        if downsample or c_in != c_out:
            self.conv2d0 = sn_conv(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # StudioGAN's ReLU(inplace=True) overwrites the block input that the shortcut reads: x0 is ReLU(x).
        x = F.relu(x)
        h = self.conv2d2(F.relu(self.conv2d1(x)))
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        if hasattr(self, "conv2d0"):
            x = self.conv2d0(x)  # shortcut: 1x1 conv, then pool
            if self.downsample:
                x = F.avg_pool2d(x, 2)
        return h + x


class Discriminator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block1 = DiscOptBlock(3, CH_D)
        self.attention = SelfAttention(CH_D)
        self.block2 = DiscBlock(CH_D, CH_D, downsample=True)
        self.block3 = nn.ModuleList([DiscBlock(CH_D, CH_D, downsample=False) for _ in range(2)])
        self.linear1 = sn(nn.Linear(CH_D, 1))
        self.embedding = sn(nn.Embedding(CLASSES, CH_D))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.block2(self.attention(self.block1(x)))
        for block in self.block3:
            h = block(h)
        h = torch.sum(F.relu(h), dim=[2, 3])
        adv = torch.squeeze(self.linear1(h))
        return adv + torch.sum(self.embedding(y) * h, 1)


def test_twin_counts_match_the_original() -> None:
    assert param_count(Generator()) == G_PARAMS
    assert param_count(Discriminator()) == D_PARAMS


def test_check_is_clean_and_counts_match() -> None:
    result = archspec.check_file(SPEC)
    assert result.ok, result.errors
    assert result.totals.params_generator == G_PARAMS
    assert result.totals.params_discriminator == D_PARAMS


@pytest.fixture(scope="module")
def gan() -> archspec.GAN:
    """Build the spec once, on one thread: its orthogonal init is 44 QR decompositions, which multi-threaded
    LAPACK makes many times slower on a small, busy CPU; copy_weights overwrites those weights anyway."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return archspec.build(SPEC)
    finally:
        torch.set_num_threads(threads)


def test_generator_equals_twin(gan: archspec.GAN) -> None:
    torch.manual_seed(0)
    z, y, _ = _inputs(1)  # batch 1 keeps the 9.4M-parameter generator under a few seconds on a small CPU
    twin, built = Generator(), gan.generator
    assert param_count(built) == param_count(twin) == G_PARAMS
    _prepare(twin)
    copy_weights(twin, built)
    built.eval()
    with torch.no_grad():
        want, got = twin(z, y), built(z, y)
    assert got.shape == want.shape == (1, 3, 32, 32)
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    _assert_same_in_training(twin, built, z, y)


def test_discriminator_equals_twin(gan: archspec.GAN) -> None:
    torch.manual_seed(0)
    _, y, x = _inputs(2)
    twin, built = Discriminator(), gan.discriminator
    assert param_count(built) == param_count(twin) == D_PARAMS
    _prepare(twin)
    copy_weights(twin, built)
    built.eval()
    with torch.no_grad():
        want, got = twin(x, y), built(x, y)
    assert got.shape == (2, 1)  # StudioGAN squeezes its score to [batch]; the spec's score is [batch, 1]
    assert torch.allclose(got.view(-1), want, atol=1e-5), (got.view(-1) - want).abs().max()
    _assert_same_in_training(twin, built, x, y)


def _prepare(twin: nn.Module) -> None:
    """Non-trivial state to copy: attention switched on (its weight starts at 0), batch-norm statistics."""
    with torch.no_grad():
        for m in twin.modules():
            if isinstance(m, SelfAttention):
                m.sigma.fill_(0.7)
    randomize_norm_stats(twin)
    twin.eval()


def _inputs(batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    z = torch.randn(batch, Z_DIM, generator=g)
    y = torch.tensor([7, 3][:batch])
    x = torch.rand(batch, 3, 32, 32, generator=g) * 2 - 1
    return z, y, x


def _assert_same_in_training(twin: nn.Module, built: nn.Module, *inputs: torch.Tensor) -> None:
    """Training mode too: batch statistics and one spectral-norm power iteration (eps 1e-6) in every layer, and
    the state they leave behind (running statistics with momentum 0.1, the updated weight_u / weight_v)."""
    twin.train()
    built.train()
    with torch.no_grad():
        want, got = twin(*inputs), built(*inputs)
    assert torch.allclose(got.view(want.shape), want, atol=1e-5), (got.view(want.shape) - want).abs().max()
    for (key, a), b in zip(twin.named_buffers(), built.buffers(), strict=True):
        assert torch.allclose(a.double(), b.double(), atol=1e-5), key
