"""The FID Inception-v3: the 2015-12-05 TensorFlow graph that FID, KID and the Inception Score were defined on.

Its weights are the TensorFlow ones ported to PyTorch by pytorch-fid (``pt_inception-2015-12-05-6726825d.pth``)
and torch-fidelity (``weights-inception-2015-12-05-6726825d.pth``); the child names here are theirs, so
``load_state_dict`` reads either file as it is. The network is torchvision's Inception-v3 with the TensorFlow
graph's quirks: average pools that do not count padding, a max pool in the last block's pool branch, batch norm
with eps 1e-3, 1008 classes, and no auxiliary head.

Input is uint8 RGB of any size. It is resized to 299 × 299 with TensorFlow 1's bilinear rule
(``resize_bilinear_tf1``), as the TensorFlow FID code did, then scaled to [-1, 1] by (x - 128) / 128.
``forward`` returns the 2048 pool3 features (FID, KID, precision/recall) and the logits the Inception Score
uses: pool3 times the classifier's weights, without its bias, as the original Inception Score code computed them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SIZE = 299
FEATURES = 2048
CLASSES = 1008
# The Inception blocks in order: 35 × 35 (5b-d), down to 17 × 17 (6a), 17 × 17 (6b-e), down to 8 × 8 (7a), 8 × 8.
_MIXED = tuple(f"Mixed_{b}" for b in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"))


class FidInceptionV3(nn.Module):
    """Inception-v3 as the TensorFlow FID graph computes it; ``forward(uint8 images) -> (pool3, logits)``."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = _Conv(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _Conv(32, 32, 3)
        self.Conv2d_2b_3x3 = _Conv(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _Conv(64, 80, 1)
        self.Conv2d_4a_3x3 = _Conv(80, 192, 3)
        self.Mixed_5b = _BlockA(192, 32)
        self.Mixed_5c = _BlockA(256, 64)
        self.Mixed_5d = _BlockA(288, 64)
        self.Mixed_6a = _BlockB(288)
        self.Mixed_6b = _BlockC(768, 128)
        self.Mixed_6c = _BlockC(768, 160)
        self.Mixed_6d = _BlockC(768, 160)
        self.Mixed_6e = _BlockC(768, 192)
        self.Mixed_7a = _BlockD(768)
        self.Mixed_7b = _BlockE(1280, pool="avg")
        self.Mixed_7c = _BlockE(2048, pool="max")  # the TensorFlow graph's last block pools by max
        self.fc = nn.Linear(FEATURES, CLASSES)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pool3 features (N, 2048) and bias-free logits (N, 1008) of uint8 images (N, 3, H, W); grey images
        (N, 1, H, W) are repeated to three channels."""
        x = images.float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = resize_bilinear_tf1(x, SIZE, SIZE)
        x = (x - 128) / 128
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for name in _MIXED:
            x = getattr(self, name)(x)
        pool = x.mean(dim=(2, 3))
        return pool, pool @ self.fc.weight.T


def resize_bilinear_tf1(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear resize as TensorFlow 1's ``tf.image.resize_bilinear`` (align_corners=False): output pixel i reads
    the input at i × in/out, with no half-pixel offset, between the two neighbours (the last one repeated).

    PyTorch's ``interpolate`` uses half-pixel centres instead, and the difference moves FID by whole points
    (Parmar et al., clean-fid); this is the rule the published Inception statistics were computed with."""
    rows = _taps(x.shape[2], height, x.device)
    cols = _taps(x.shape[3], width, x.device)
    # Along rows first, then columns: TensorFlow's order, so that even the float rounding agrees.
    left = x[:, :, :, cols.low]
    x = left + (x[:, :, :, cols.high] - left) * cols.weight.view(1, 1, 1, -1)
    top = x[:, :, rows.low, :]
    return top + (x[:, :, rows.high, :] - top) * rows.weight.view(1, 1, -1, 1)


class _Taps:
    """Where each output pixel reads along one axis: two input indices and the weight of the second."""

    def __init__(self, low: torch.Tensor, high: torch.Tensor, weight: torch.Tensor) -> None:
        self.low, self.high, self.weight = low, high, weight


def _taps(size_in: int, size_out: int, device: torch.device) -> _Taps:
    # float32 source positions, as TensorFlow computes them: in float64 a few taps land on the other side of a
    # pixel boundary, which is the kind of difference this function exists to avoid.
    where = torch.arange(size_out, dtype=torch.float32, device=device) * torch.tensor(
        size_in / size_out, dtype=torch.float32
    )
    low = where.long()
    high = (low + 1).clamp(max=size_in - 1)
    return _Taps(low, high, where - low.float())


class _Conv(nn.Module):
    """Convolution without bias, batch norm (eps 1e-3, as TensorFlow's), ReLU: every convolution of the net."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int = 1,
        padding: int | tuple[int, int] = 0,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool(x: torch.Tensor) -> torch.Tensor:
    # TensorFlow's average pool divides by the pixels inside the image only, not the zero padding.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class _BlockA(nn.Module):
    """Mixed_5b-d (35 × 35): 1×1, 5×5, double 3×3 and pooled branches."""

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = _Conv(in_channels, 64, 1)
        self.branch5x5_1 = _Conv(in_channels, 48, 1)
        self.branch5x5_2 = _Conv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _Conv(in_channels, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, padding=1)
        self.branch_pool = _Conv(in_channels, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch5x5_2(self.branch5x5_1(x)),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                self.branch_pool(_avg_pool(x)),
            ],
            1,
        )


class _BlockB(nn.Module):
    """Mixed_6a: 35 × 35 down to 17 × 17."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = _Conv(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = _Conv(in_channels, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                self.branch3x3(x),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                F.max_pool2d(x, kernel_size=3, stride=2),
            ],
            1,
        )


class _BlockC(nn.Module):
    """Mixed_6b-e (17 × 17): factorised 7×7 branches."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c = channels_7x7
        self.branch1x1 = _Conv(in_channels, 192, 1)
        self.branch7x7_1 = _Conv(in_channels, c, 1)
        self.branch7x7_2 = _Conv(c, c, (1, 7), padding=(0, 3))
        self.branch7x7_3 = _Conv(c, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _Conv(in_channels, c, 1)
        self.branch7x7dbl_2 = _Conv(c, c, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _Conv(c, c, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _Conv(c, c, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _Conv(c, 192, (1, 7), padding=(0, 3))
        self.branch_pool = _Conv(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        double = self.branch7x7dbl_3(self.branch7x7dbl_2(self.branch7x7dbl_1(x)))
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
                self.branch7x7dbl_5(self.branch7x7dbl_4(double)),
                self.branch_pool(_avg_pool(x)),
            ],
            1,
        )


class _BlockD(nn.Module):
    """Mixed_7a: 17 × 17 down to 8 × 8."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = _Conv(in_channels, 192, 1)
        self.branch3x3_2 = _Conv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _Conv(in_channels, 192, 1)
        self.branch7x7x3_2 = _Conv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _Conv(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _Conv(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seven = self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x)))
        return torch.cat(
            [
                self.branch3x3_2(self.branch3x3_1(x)),
                self.branch7x7x3_4(seven),
                F.max_pool2d(x, kernel_size=3, stride=2),
            ],
            1,
        )


class _BlockE(nn.Module):
    """Mixed_7b and 7c (8 × 8): split 1×3 / 3×1 branches; ``pool`` is how the pool branch pools."""

    def __init__(self, in_channels: int, pool: str) -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = _Conv(in_channels, 320, 1)
        self.branch3x3_1 = _Conv(in_channels, 384, 1)
        self.branch3x3_2a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _Conv(in_channels, 448, 1)
        self.branch3x3dbl_2 = _Conv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _Conv(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        single = self.branch3x3_1(x)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = _avg_pool(x) if self.pool == "avg" else F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch3x3_2a(single),
                self.branch3x3_2b(single),
                self.branch3x3dbl_3a(double),
                self.branch3x3dbl_3b(double),
                self.branch_pool(pooled),
            ],
            1,
        )
