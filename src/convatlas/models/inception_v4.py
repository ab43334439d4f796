"""Inception-v4 and Inception-ResNet-v2.

Szegedy, Ioffe, Vanhoucke, Alemi (2017), "Inception-v4, Inception-ResNet and the Impact of
Residual Connections on Learning", AAAI 2017, arXiv:1602.07261.

Two ideas. **Inception-v4** makes the Inception network uniform: a stem (Figure 3), then
4 x Inception-A (35x35 grid, Figure 4), Reduction-A (Figure 7), 7 x Inception-B (17x17,
Figure 5), Reduction-B (Figure 8) and 3 x Inception-C (8x8, Figure 6), with the large
convolutions factorised into 3x3, 1x7/7x1 and 1x3/3x1 ones (Figure 9). **Inception-ResNet**
adds a residual connection around each module: the branches are concatenated, a 1x1
convolution without activation ("Linear") brings them back to the input width, and the result
is added to the input, ``y = relu(x + s * linear_1x1(concat(branches(x))))``. The residual is
scaled down by ``s`` between 0.1 and 0.3 (Section 3.3), because without it networks with more
than about 1000 filters "died" early in training.

Every convolution is followed by batch norm (eps 1e-3, TensorFlow's default) and ReLU, except
the "Linear" 1x1 convolutions of the residual blocks, which have a bias and no norm. "V" in the
paper's figures marks a convolution or pool without padding ("valid"); the rest pad to keep the
size ("same"). Shapes below are at the paper's 299x299 input.

Both networks are built as released with the paper's TF-slim checkpoints, which timm ports
(``timm.create_model("inception_v4")``, ``"inception_resnet_v2"``): parameter counts equal timm's
(42,679,816 and 55,843,464) and, after :func:`inception_v4_from_timm` /
:func:`inception_resnet_v2_from_timm` rename the keys, so do the outputs. Where the release
differs from the paper's figures:

* Inception-v4: the widths are the paper's; the order of the 1xn and nx1 convolutions inside a
  branch and the order in which the branches are concatenated (the figures draw the pool
  branch first) follow the release, so that released weights fit.
* Inception-ResNet-v2: the paper's figures are not self-consistent (the 1x1 "Linear" layers of
  Figures 17 and 19 have 1154 and 2048 filters, where the inputs have 1152 and 2144 channels).
  The release uses another stem (Inception-v3's, up to a 35x35x192 map, then an Inception-v3
  35x35 module "Mixed_5b" giving 320 channels instead of Figure 3's 384), so the blocks work on
  320 / 1088 / 2080 channels; it repeats the blocks 10 / 20 / 10 times (Figure 15 draws 5 / 10 /
  5), scales the residuals by 0.17 / 0.10 / 0.20, leaves the ReLU out of the last block, and ends
  with a 1x1 convolution to 1536 channels before the pooling.
"""

from __future__ import annotations

import re
from typing import Callable, Mapping

import torch
from torch import nn

from convatlas.models.features import FeatureInfo
from convatlas.models.googlenet import ConvBlock
from convatlas.registry import ModelCard, Preprocessing, Published, register_model

__all__ = [
    "REDUCTION_A_FILTERS",
    "InceptionV4Stem",
    "InceptionA",
    "ReductionA",
    "InceptionB",
    "ReductionB",
    "InceptionC",
    "InceptionV4",
    "InceptionResNetV2Stem",
    "InceptionResNetA",
    "InceptionResNetB",
    "InceptionResNetReductionB",
    "InceptionResNetC",
    "InceptionResNetV2",
    "inception_v4",
    "inception_resnet_v2",
    "inception_v4_from_timm",
    "inception_resnet_v2_from_timm",
]

# Table 1 of the paper: filters (k, l, m, n) of Reduction-A in each network.
REDUCTION_A_FILTERS: dict[str, tuple[int, int, int, int]] = {
    "inception_v4": (192, 224, 256, 384),
    "inception_resnet_v1": (192, 192, 256, 384),
    "inception_resnet_v2": (256, 256, 384, 384),
}


def _same(in_channels: int, out_channels: int, kernel_size: int | tuple[int, int]) -> ConvBlock:
    """Convolution + BN + ReLU, stride 1, padded to keep the size."""
    return ConvBlock(in_channels, out_channels, kernel_size)


def _valid(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> ConvBlock:
    """Convolution + BN + ReLU without padding ("V" in the paper's figures)."""
    return ConvBlock(in_channels, out_channels, kernel_size, stride, padding=0)


def _avg_pool_branch(in_channels: int, out_channels: int) -> nn.Sequential:
    """Average pool 3x3/1 ("same"; padding is left out of the average, as in TensorFlow),
    then a 1x1 convolution."""
    return nn.Sequential(
        nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
        _same(in_channels, out_channels, 1),
    )


# --------------------------------------------------------------------------------------------
# Inception-v4 (Figure 9)


class InceptionV4Stem(nn.Module):
    """The stem of Inception-v4 and Inception-ResNet-v2 in the paper (Figure 3).

    299x299x3 -> conv1 3x3/2 V -> 149x149x32 -> conv2 3x3 V -> 147x147x32 -> conv3 3x3 ->
    147x147x64 -> [pool4 max 3x3/2 V | conv4 3x3/2 V 96] -> 73x73x160 ->
    [branch5_short 1x1 64, 3x3 V 96 | branch5_long 1x1 64, 1x7 64, 7x1 64, 3x3 V 96] ->
    71x71x192 -> [conv6 3x3/2 V 192 | pool6 max /2 V] -> 35x35x384.

    ``concat5`` (an identity, no parameters) passes the 71x71x192 concatenation of step 5, so that
    this map, the last at a quarter of the input's resolution, is the output of a module.
    """

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = _valid(in_channels, 32, 3, stride=2)
        self.conv2 = _valid(32, 32, 3)
        self.conv3 = _same(32, 64, 3)
        self.pool4 = nn.MaxPool2d(3, stride=2)
        self.conv4 = _valid(64, 96, 3, stride=2)
        self.branch5_short = nn.Sequential(_same(160, 64, 1), _valid(64, 96, 3))
        self.branch5_long = nn.Sequential(
            _same(160, 64, 1), _same(64, 64, (1, 7)), _same(64, 64, (7, 1)), _valid(64, 96, 3)
        )
        self.concat5 = nn.Identity()
        self.conv6 = _valid(192, 192, 3, stride=2)
        self.pool6 = nn.MaxPool2d(3, stride=2)
        self.out_channels = 384

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3(self.conv2(self.conv1(x)))
        x = torch.cat([self.pool4(x), self.conv4(x)], 1)
        x = self.concat5(torch.cat([self.branch5_short(x), self.branch5_long(x)], 1))
        return torch.cat([self.conv6(x), self.pool6(x)], 1)


class InceptionA(nn.Module):
    """Inception-A, the 35x35 module (Figure 4): 384 -> 96 + 96 + 96 + 96 = 384 channels.

    Branches: 1x1 96 | 1x1 64, 3x3 96 | 1x1 64, 3x3 96, 3x3 96 | avg pool, 1x1 96.
    """

    def __init__(self, in_channels: int = 384) -> None:
        super().__init__()
        self.branch_1x1 = _same(in_channels, 96, 1)
        self.branch_3x3 = nn.Sequential(_same(in_channels, 64, 1), _same(64, 96, 3))
        self.branch_3x3dbl = nn.Sequential(_same(in_channels, 64, 1), _same(64, 96, 3), _same(96, 96, 3))
        self.branch_pool = _avg_pool_branch(in_channels, 96)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [self.branch_1x1(x), self.branch_3x3(x), self.branch_3x3dbl(x), self.branch_pool(x)], 1
        )


class ReductionA(nn.Module):
    """Reduction-A, 35x35 -> 17x17 (Figure 7), with the filters (k, l, m, n) of Table 1.

    Branches: 3x3/2 V n | 1x1 k, 3x3 l, 3x3/2 V m | max pool 3x3/2 V; output
    ``in_channels + n + m`` channels (Inception-v4: 384 + 384 + 256 = 1024).
    """

    def __init__(self, in_channels: int, k: int, l: int, m: int, n: int) -> None:  # noqa: E741 - the paper's letters
        super().__init__()
        self.branch_3x3 = _valid(in_channels, n, 3, stride=2)
        self.branch_3x3dbl = nn.Sequential(_same(in_channels, k, 1), _same(k, l, 3), _valid(l, m, 3, stride=2))
        self.branch_pool = nn.MaxPool2d(3, stride=2)
        self.out_channels = in_channels + n + m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch_3x3(x), self.branch_3x3dbl(x), self.branch_pool(x)], 1)


class InceptionB(nn.Module):
    """Inception-B, the 17x17 module (Figure 5): 1024 -> 384 + 256 + 256 + 128 = 1024 channels.

    Branches: 1x1 384 | 1x1 192, 1x7 224, 7x1 256 | 1x1 192, 7x1 192, 1x7 224, 7x1 224, 1x7 256 |
    avg pool, 1x1 128. (Kernel shapes are written (height, width).)
    """

    def __init__(self, in_channels: int = 1024) -> None:
        super().__init__()
        self.branch_1x1 = _same(in_channels, 384, 1)
        self.branch_7x7 = nn.Sequential(
            _same(in_channels, 192, 1), _same(192, 224, (1, 7)), _same(224, 256, (7, 1))
        )
        self.branch_7x7dbl = nn.Sequential(
            _same(in_channels, 192, 1),
            _same(192, 192, (7, 1)),
            _same(192, 224, (1, 7)),
            _same(224, 224, (7, 1)),
            _same(224, 256, (1, 7)),
        )
        self.branch_pool = _avg_pool_branch(in_channels, 128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [self.branch_1x1(x), self.branch_7x7(x), self.branch_7x7dbl(x), self.branch_pool(x)], 1
        )


class ReductionB(nn.Module):
    """Reduction-B of Inception-v4, 17x17 -> 8x8 (Figure 8): 1024 -> 192 + 320 + 1024 = 1536.

    Branches: 1x1 192, 3x3/2 V 192 | 1x1 256, 1x7 256, 7x1 320, 3x3/2 V 320 | max pool 3x3/2 V.
    """

    def __init__(self, in_channels: int = 1024) -> None:
        super().__init__()
        self.branch_3x3 = nn.Sequential(_same(in_channels, 192, 1), _valid(192, 192, 3, stride=2))
        self.branch_7x7x3 = nn.Sequential(
            _same(in_channels, 256, 1),
            _same(256, 256, (1, 7)),
            _same(256, 320, (7, 1)),
            _valid(320, 320, 3, stride=2),
        )
        self.branch_pool = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch_3x3(x), self.branch_7x7x3(x), self.branch_pool(x)], 1)


class InceptionC(nn.Module):
    """Inception-C, the 8x8 module (Figure 6): 1536 -> 256 + 2x256 + 2x256 + 256 = 1536.

    Branches: 1x1 256 | 1x1 384 then side by side 1x3 256 and 3x1 256 | 1x1 384, 3x1 448,
    1x3 512 then side by side 1x3 256 and 3x1 256 | avg pool, 1x1 256. The split ends
    (``_a``/``_b``) widen the filter bank instead of deepening it.
    """

    def __init__(self, in_channels: int = 1536) -> None:
        super().__init__()
        self.branch_1x1 = _same(in_channels, 256, 1)
        self.branch_3x3 = _same(in_channels, 384, 1)
        self.branch_3x3_a = _same(384, 256, (1, 3))
        self.branch_3x3_b = _same(384, 256, (3, 1))
        self.branch_3x3dbl = nn.Sequential(
            _same(in_channels, 384, 1), _same(384, 448, (3, 1)), _same(448, 512, (1, 3))
        )
        self.branch_3x3dbl_a = _same(512, 256, (1, 3))
        self.branch_3x3dbl_b = _same(512, 256, (3, 1))
        self.branch_pool = _avg_pool_branch(in_channels, 256)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch_3x3(x)
        b3dbl = self.branch_3x3dbl(x)
        return torch.cat(
            [
                self.branch_1x1(x),
                self.branch_3x3_a(b3), self.branch_3x3_b(b3),
                self.branch_3x3dbl_a(b3dbl), self.branch_3x3dbl_b(b3dbl),
                self.branch_pool(x),
            ],
            1,
        )


class InceptionV4(nn.Module):
    """Inception-v4 (Figure 9): stem -> 35x35x384 -> 4 x Inception-A -> Reduction-A ->
    17x17x1024 -> 7 x Inception-B -> Reduction-B -> 8x8x1536 -> 3 x Inception-C -> average
    pool -> 1536 -> dropout (keep 0.8) -> fc.

    Feature maps, the last one at each resolution: ``conv3`` (``stem.conv3``, /2), ``concat5``
    (``stem.concat5``, /4), ``inception_a`` (/8), ``inception_b`` (/16), ``inception_c`` (/32)."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        self.stem = InceptionV4Stem()
        self.inception_a = nn.Sequential(*[InceptionA(384) for _ in range(4)])
        self.reduction_a = ReductionA(384, *REDUCTION_A_FILTERS["inception_v4"])
        self.inception_b = nn.Sequential(*[InceptionB(1024) for _ in range(7)])
        self.reduction_b = ReductionB(1024)
        self.inception_c = nn.Sequential(*[InceptionC(1536) for _ in range(3)])
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1536, num_classes)
        self.feature_info = [
            FeatureInfo("conv3", "stem.conv3", 64, 2),
            FeatureInfo("concat5", "stem.concat5", 192, 4),
            FeatureInfo("inception_a", "inception_a", 384, 8),
            FeatureInfo("inception_b", "inception_b", 1024, 16),
            FeatureInfo("inception_c", "inception_c", 1536, 32),
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inception_a(self.stem(x))
        x = self.inception_b(self.reduction_a(x))
        x = self.inception_c(self.reduction_b(x))
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))


# --------------------------------------------------------------------------------------------
# Inception-ResNet-v2 (Figure 15, as released)


class Mixed5b(nn.Module):
    """Inception-v3's 35x35 module that ends the released Inception-ResNet-v2 stem:
    192 -> 96 + 64 + 96 + 64 = 320 channels.

    Branches: 1x1 96 | 1x1 48, 5x5 64 | 1x1 64, 3x3 96, 3x3 96 | avg pool, 1x1 64.
    """

    def __init__(self, in_channels: int = 192) -> None:
        super().__init__()
        self.branch_1x1 = _same(in_channels, 96, 1)
        self.branch_5x5 = nn.Sequential(_same(in_channels, 48, 1), _same(48, 64, 5))
        self.branch_3x3dbl = nn.Sequential(_same(in_channels, 64, 1), _same(64, 96, 3), _same(96, 96, 3))
        self.branch_pool = _avg_pool_branch(in_channels, 64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [self.branch_1x1(x), self.branch_5x5(x), self.branch_3x3dbl(x), self.branch_pool(x)], 1
        )


class InceptionResNetV2Stem(nn.Module):
    """The released Inception-ResNet-v2 stem (Inception-v3's): 299x299x3 -> conv1 3x3/2 V ->
    149x149x32 -> conv2 3x3 V -> 147x147x32 -> conv3 3x3 -> 147x147x64 -> pool3 max 3x3/2 ->
    73x73x64 -> conv4 1x1 80 -> conv5 3x3 V 192 -> 71x71x192 -> pool5 max 3x3/2 -> 35x35x192 ->
    mixed_5b -> 35x35x320."""

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = _valid(in_channels, 32, 3, stride=2)
        self.conv2 = _valid(32, 32, 3)
        self.conv3 = _same(32, 64, 3)
        self.pool3 = nn.MaxPool2d(3, stride=2)
        self.conv4 = _same(64, 80, 1)
        self.conv5 = _valid(80, 192, 3)
        self.pool5 = nn.MaxPool2d(3, stride=2)
        self.mixed_5b = Mixed5b(192)
        self.out_channels = 320

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool3(self.conv3(self.conv2(self.conv1(x))))
        x = self.pool5(self.conv5(self.conv4(x)))
        return self.mixed_5b(x)


class _ResidualInception(nn.Module):
    """Shared tail of the Inception-ResNet blocks (Figure 20):
    ``y = act(x + scale * linear_1x1(mixed))``, ``linear_1x1`` a 1x1 convolution with bias and
    no activation that brings the concatenated branches back to the input width."""

    def __init__(self, channels: int, mixed_channels: int, scale: float, activate: bool) -> None:
        super().__init__()
        if not 0.0 < scale <= 1.0:
            raise ValueError(f"residual scale must be in (0, 1] (the paper uses 0.1-0.3), got {scale}")
        self.scale = scale
        self.linear_1x1 = nn.Conv2d(mixed_channels, channels, 1)
        self.act = nn.ReLU() if activate else nn.Identity()

    def _add_residual(self, x: torch.Tensor, mixed: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.scale * self.linear_1x1(mixed))

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class InceptionResNetA(_ResidualInception):
    """Inception-ResNet-A, 35x35 (Figure 16): branches 1x1 32 | 1x1 32, 3x3 32 |
    1x1 32, 3x3 48, 3x3 64 -> 128 channels -> linear 1x1 back to ``channels``."""

    def __init__(self, channels: int = 320, scale: float = 0.17, activate: bool = True) -> None:
        super().__init__(channels, 128, scale, activate)
        self.branch_1x1 = _same(channels, 32, 1)
        self.branch_3x3 = nn.Sequential(_same(channels, 32, 1), _same(32, 32, 3))
        self.branch_3x3dbl = nn.Sequential(_same(channels, 32, 1), _same(32, 48, 3), _same(48, 64, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = torch.cat([self.branch_1x1(x), self.branch_3x3(x), self.branch_3x3dbl(x)], 1)
        return self._add_residual(x, mixed)


class InceptionResNetB(_ResidualInception):
    """Inception-ResNet-B, 17x17 (Figure 17): branches 1x1 192 | 1x1 128, 1x7 160, 7x1 192 ->
    384 channels -> linear 1x1 back to ``channels``."""

    def __init__(self, channels: int = 1088, scale: float = 0.10, activate: bool = True) -> None:
        super().__init__(channels, 384, scale, activate)
        self.branch_1x1 = _same(channels, 192, 1)
        self.branch_7x7 = nn.Sequential(_same(channels, 128, 1), _same(128, 160, (1, 7)), _same(160, 192, (7, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._add_residual(x, torch.cat([self.branch_1x1(x), self.branch_7x7(x)], 1))


class InceptionResNetReductionB(nn.Module):
    """Reduction-B of Inception-ResNet, 17x17 -> 8x8 (Figure 18): branches 1x1 256, 3x3/2 V 384 |
    1x1 256, 3x3/2 V 288 | 1x1 256, 3x3 288, 3x3/2 V 320 | max pool 3x3/2 V; output
    ``in_channels + 992`` channels (1088 -> 2080)."""

    def __init__(self, in_channels: int = 1088) -> None:
        super().__init__()
        self.branch_3x3a = nn.Sequential(_same(in_channels, 256, 1), _valid(256, 384, 3, stride=2))
        self.branch_3x3b = nn.Sequential(_same(in_channels, 256, 1), _valid(256, 288, 3, stride=2))
        self.branch_3x3dbl = nn.Sequential(
            _same(in_channels, 256, 1), _same(256, 288, 3), _valid(288, 320, 3, stride=2)
        )
        self.branch_pool = nn.MaxPool2d(3, stride=2)
        self.out_channels = in_channels + 384 + 288 + 320

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [self.branch_3x3a(x), self.branch_3x3b(x), self.branch_3x3dbl(x), self.branch_pool(x)], 1
        )


class InceptionResNetC(_ResidualInception):
    """Inception-ResNet-C, 8x8 (Figure 19): branches 1x1 192 | 1x1 192, 1x3 224, 3x1 256 ->
    448 channels -> linear 1x1 back to ``channels``."""

    def __init__(self, channels: int = 2080, scale: float = 0.20, activate: bool = True) -> None:
        super().__init__(channels, 448, scale, activate)
        self.branch_1x1 = _same(channels, 192, 1)
        self.branch_3x3 = nn.Sequential(_same(channels, 192, 1), _same(192, 224, (1, 3)), _same(224, 256, (3, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._add_residual(x, torch.cat([self.branch_1x1(x), self.branch_3x3(x)], 1))


class InceptionResNetV2(nn.Module):
    """Inception-ResNet-v2 as released: stem -> 35x35x320 -> 10 x Inception-ResNet-A ->
    Reduction-A (k, l, m, n = 256, 256, 384, 384) -> 17x17x1088 -> 20 x Inception-ResNet-B ->
    Reduction-B -> 8x8x2080 -> 10 x Inception-ResNet-C (the last with scale 1 and no ReLU) ->
    conv_final 1x1 1536 -> average pool -> dropout (keep 0.8) -> fc.

    Feature maps, the last one at each resolution: ``conv3`` (``stem.conv3``, /2), ``conv5``
    (``stem.conv5``, /4), ``inception_resnet_a`` (/8), ``inception_resnet_b`` (/16) and
    ``conv_final`` (/32)."""

    def __init__(
        self,
        num_classes: int = 1000,
        residual_scales: tuple[float, float, float] = (0.17, 0.10, 0.20),
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        scale_a, scale_b, scale_c = residual_scales
        self.stem = InceptionResNetV2Stem()
        self.inception_resnet_a = nn.Sequential(*[InceptionResNetA(320, scale_a) for _ in range(10)])
        self.reduction_a = ReductionA(320, *REDUCTION_A_FILTERS["inception_resnet_v2"])
        self.inception_resnet_b = nn.Sequential(*[InceptionResNetB(1088, scale_b) for _ in range(20)])
        self.reduction_b = InceptionResNetReductionB(1088)
        self.inception_resnet_c = nn.Sequential(
            *[InceptionResNetC(2080, scale_c) for _ in range(9)],
            InceptionResNetC(2080, scale=1.0, activate=False),
        )
        self.conv_final = _same(2080, 1536, 1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1536, num_classes)
        self.feature_info = [
            FeatureInfo("conv3", "stem.conv3", 64, 2),
            FeatureInfo("conv5", "stem.conv5", 192, 4),
            FeatureInfo("inception_resnet_a", "inception_resnet_a", 320, 8),
            FeatureInfo("inception_resnet_b", "inception_resnet_b", 1088, 16),
            FeatureInfo("conv_final", "conv_final", 1536, 32),
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inception_resnet_a(self.stem(x))
        x = self.inception_resnet_b(self.reduction_a(x))
        x = self.inception_resnet_c(self.reduction_b(x))
        x = self.conv_final(x)
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))


# --------------------------------------------------------------------------------------------
# Builders

_PAPER = "Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning"
_AUTHORS = "Szegedy, Ioffe, Vanhoucke, Alemi"


def _tf_slim_preprocessing(resize: int, crop: int) -> Preprocessing:
    """The TF-slim release's input, as timm feeds the ported weights (``pretrained_cfg`` of
    ``inception_v4`` / ``inception_resnet_v2``): pixels scaled to [-1, 1] (mean = std = 0.5),
    the shorter side resized bicubically to ``resize``, the centre ``crop`` taken."""
    return Preprocessing((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "resize", crop / resize, "bicubic", "imagenet")


@register_model(
    ModelCard(
        name="inception_v4",
        family="inception",
        paper=_PAPER,
        authors=_AUTHORS,
        year=2016,
        arxiv="1602.07261",
        input_size=(3, 299, 299),
        dataset="imagenet",
        # timm crop_pct 0.875: resize floor(299 / 0.875) = 341, centre crop 299.
        preprocessing=_tf_slim_preprocessing(341, 299),
        params=Published(42_679_816, "timm inception_v4 (the paper tabulates no parameter count)"),
        macs=Published(12.3e9, "timm model card: 12.3 GMACs at 299"),
        top1=Published(80.0, "Table 2: top-1 error 20.0%, single crop, single model, ILSVRC 2012 val"),
        top5=Published(95.0, "Table 2: top-5 error 5.0%, single crop, single model, ILSVRC 2012 val"),
        timm="inception_v4",
        idea=(
            "A uniform, simplified Inception network: one stem and three kinds of Inception "
            "modules (35x35, 17x17, 8x8) with explicit reduction modules between the grids, "
            "the large convolutions factorised into 3x3 and 1xn/nx1 ones."
        ),
        notes=(
            "Built as the TF-slim release that timm ports (same parameters and outputs; load "
            "timm weights with convatlas.models.inception_v4.inception_v4_from_timm). The Table 2 "
            "accuracy is marked unverified [P?] in shared/reference/paper-numbers.md section 7."
        ),
    )
)
def inception_v4(*, num_classes: int = 1000) -> InceptionV4:
    """Inception-v4 of Szegedy, Ioffe, Vanhoucke, Alemi (2016), arXiv:1602.07261, Figure 9.

    299x299 input, 42,679,816 parameters (timm's ``inception_v4``). The paper defines no
    variants of it.
    """
    return InceptionV4(num_classes)


@register_model(
    ModelCard(
        name="inception_resnet_v2",
        family="inception",
        paper=_PAPER,
        authors=_AUTHORS,
        year=2016,
        arxiv="1602.07261",
        input_size=(3, 299, 299),
        dataset="imagenet",
        # timm crop_pct 0.8975: resize floor(299 / 0.8975) = 333, centre crop 299.
        preprocessing=_tf_slim_preprocessing(333, 299),
        params=Published(55_843_464, "timm inception_resnet_v2 (the paper tabulates no parameter count)"),
        macs=Published(13.16e9, "conv+linear MACs at 299 of timm's model, shared/reference/paper-numbers.md section 7"),
        top1=Published(
            80.1, "Table 2: top-1 error 19.9%, single crop, single model, ILSVRC 2012 val (quoted in He et al. 2016)"
        ),
        top5=Published(
            95.1, "Table 2: top-5 error 4.9%, single crop, single model, ILSVRC 2012 val (quoted in He et al. 2016)"
        ),
        timm="inception_resnet_v2",
        idea=(
            "Residual connections around Inception modules: the concatenated branches pass a "
            "linear 1x1 convolution and are added to the input, which trains much faster. "
            "The residuals are scaled by 0.1-0.3 before the addition to keep very wide networks stable."
        ),
        notes=(
            "Built as the TF-slim release that timm ports (Inception-v3 stem + Mixed_5b, 320/1088/2080 "
            "channels, 10/20/10 blocks, residual scales 0.17/0.10/0.20, final 1x1 conv to 1536); the "
            "paper's Figures 15-19 differ and are not self-consistent. Load timm weights with "
            "convatlas.models.inception_v4.inception_resnet_v2_from_timm."
        ),
    )
)
def inception_resnet_v2(
    *, num_classes: int = 1000, residual_scales: tuple[float, float, float] = (0.17, 0.10, 0.20)
) -> InceptionResNetV2:
    """Inception-ResNet-v2 of Szegedy, Ioffe, Vanhoucke, Alemi (2016), arXiv:1602.07261.

    299x299 input, 55,843,464 parameters (timm's ``inception_resnet_v2``).
    ``residual_scales``: the factors (A, B, C) by which the residuals of the 35x35, 17x17 and
    8x8 blocks are scaled before the addition (Section 3.3: "between 0.1 and 0.3"; the release
    uses 0.17, 0.10, 0.20). The last C block always uses 1.0 and no ReLU, as released.
    """
    scales = tuple(residual_scales)
    if len(scales) != 3 or not all(isinstance(s, (int, float)) and 0.0 < s <= 1.0 for s in scales):
        raise ValueError(
            f"residual_scales must be three numbers in (0, 1] for the A, B and C blocks, got {residual_scales!r}"
        )
    return InceptionResNetV2(num_classes, residual_scales=scales)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# timm's (TF-slim port's) state_dict keys -> ours

_Rule = tuple[str, str | Callable[[re.Match[str]], str]]


def _rename(
    state: Mapping[str, torch.Tensor],
    prefix_rules: list[_Rule],
    branch_rules: dict[str, dict[str, str]],
    model_name: str,
) -> dict[str, torch.Tensor]:
    """Rename each key: the first matching prefix rule maps timm's module path to ours, then the
    branch names inside that block are translated (``branch0`` -> ``branch_1x1`` ...)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for pattern, replacement in prefix_rules:
            new, hits = re.subn(pattern, replacement, key, count=1)
            if hits:
                break
        else:
            raise ValueError(f"{key!r} is not a key of timm's {model_name}; cannot map it")
        for block, names in branch_rules.items():
            match = re.match(rf"^({re.escape(block)}(?:\.\d+)?)\.(\w+)(\..*)$", new)
            if match and match[2] in names:
                new = f"{match[1]}.{names[match[2]]}{match[3]}"
                break
        out[new] = value
    return out


_V4_PREFIXES: list[_Rule] = [
    (r"^features\.([0-2])\.", lambda m: f"stem.conv{int(m[1]) + 1}."),
    (r"^features\.3\.conv\.", "stem.conv4."),
    (r"^features\.4\.branch0\.", "stem.branch5_short."),
    (r"^features\.4\.branch1\.", "stem.branch5_long."),
    (r"^features\.5\.conv\.", "stem.conv6."),
    (r"^features\.([6-9])\.", lambda m: f"inception_a.{int(m[1]) - 6}."),
    (r"^features\.10\.", "reduction_a."),
    (r"^features\.(1[1-7])\.", lambda m: f"inception_b.{int(m[1]) - 11}."),
    (r"^features\.18\.", "reduction_b."),
    (r"^features\.(19|2[01])\.", lambda m: f"inception_c.{int(m[1]) - 19}."),
    (r"^last_linear\.", "fc."),
]
_V4_BRANCHES: dict[str, dict[str, str]] = {
    "inception_a": {
        "branch0": "branch_1x1",
        "branch1": "branch_3x3",
        "branch2": "branch_3x3dbl",
        "branch3": "branch_pool",
    },
    "reduction_a": {"branch0": "branch_3x3", "branch1": "branch_3x3dbl"},
    "inception_b": {
        "branch0": "branch_1x1",
        "branch1": "branch_7x7",
        "branch2": "branch_7x7dbl",
        "branch3": "branch_pool",
    },
    "reduction_b": {"branch0": "branch_3x3", "branch1": "branch_7x7x3"},
    "inception_c": {
        "branch0": "branch_1x1",
        "branch1_0": "branch_3x3", "branch1_1a": "branch_3x3_a", "branch1_1b": "branch_3x3_b",
        "branch2_0": "branch_3x3dbl.0", "branch2_1": "branch_3x3dbl.1", "branch2_2": "branch_3x3dbl.2",
        "branch2_3a": "branch_3x3dbl_a", "branch2_3b": "branch_3x3dbl_b",
        "branch3": "branch_pool",
    },
}

_IRV2_PREFIXES: list[_Rule] = [
    (r"^conv2d_1a\.", "stem.conv1."),
    (r"^conv2d_2a\.", "stem.conv2."),
    (r"^conv2d_2b\.", "stem.conv3."),
    (r"^conv2d_3b\.", "stem.conv4."),
    (r"^conv2d_4a\.", "stem.conv5."),
    (r"^mixed_5b\.", "stem.mixed_5b."),
    (r"^repeat\.", "inception_resnet_a."),
    (r"^mixed_6a\.", "reduction_a."),
    (r"^repeat_1\.", "inception_resnet_b."),
    (r"^mixed_7a\.", "reduction_b."),
    (r"^repeat_2\.", "inception_resnet_c."),
    (r"^block8\.", "inception_resnet_c.9."),
    (r"^conv2d_7b\.", "conv_final."),
    (r"^classif\.", "fc."),
]
_IRV2_BRANCHES: dict[str, dict[str, str]] = {
    "stem.mixed_5b": {
        "branch0": "branch_1x1",
        "branch1": "branch_5x5",
        "branch2": "branch_3x3dbl",
        "branch3": "branch_pool",
    },
    "inception_resnet_a": {
        "branch0": "branch_1x1",
        "branch1": "branch_3x3",
        "branch2": "branch_3x3dbl",
        "conv2d": "linear_1x1",
    },
    "reduction_a": {"branch0": "branch_3x3", "branch1": "branch_3x3dbl"},
    "inception_resnet_b": {"branch0": "branch_1x1", "branch1": "branch_7x7", "conv2d": "linear_1x1"},
    "reduction_b": {"branch0": "branch_3x3a", "branch1": "branch_3x3b", "branch2": "branch_3x3dbl"},
    "inception_resnet_c": {"branch0": "branch_1x1", "branch1": "branch_3x3", "conv2d": "linear_1x1"},
}


def inception_v4_from_timm(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's ``inception_v4`` state_dict with its keys renamed to :class:`InceptionV4`'s
    (``features.6.branch0.conv.weight`` -> ``inception_a.0.branch_1x1.conv.weight`` ...).
    Load the result with ``model.load_state_dict(...)``; the outputs are then timm's."""
    return _rename(state, _V4_PREFIXES, _V4_BRANCHES, "inception_v4")


def inception_resnet_v2_from_timm(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's ``inception_resnet_v2`` state_dict with its keys renamed to
    :class:`InceptionResNetV2`'s (``repeat.0.conv2d.weight`` ->
    ``inception_resnet_a.0.linear_1x1.weight`` ...)."""
    return _rename(state, _IRV2_PREFIXES, _IRV2_BRANCHES, "inception_resnet_v2")
