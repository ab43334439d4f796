"""ResNeXt: aggregated residual transformations (Xie, Girshick, Dollár, Tu, He 2017, CVPR,
arXiv:1611.05431).

A ResNeXt block sums C parallel transformations of the same shape ("split-transform-merge"),
``y = x + sum_{i=1}^{C} T_i(x)``, each ``T_i`` a 1x1 -> 3x3 -> 1x1 bottleneck of width d. The
paper shows (Fig. 3) that this equals a bottleneck whose 3x3 layer is a grouped convolution
with C groups of d channels, which is how it is built here (:class:`Bottleneck` with
``groups=C, base_width=d``). "Cardinality" C is a new dimension beside depth and width: at the
same cost, more paths beat deeper or wider ones (Tables 3-4). Networks are named C x d, e.g.
ResNeXt-50 (32x4d).

ImageNet: ResNet-50/101's stages (``layer1`` .. ``layer4``), the 3x3 of a down-sampling block
strides (§4: "as suggested in fb.resnet.torch"), torchvision's names and weights.
CIFAR (§5.2): ResNeXt-29: a 3x3 conv of 64 filters, three stages of three bottleneck blocks
with outputs 256, 512, 1024 and inner widths C*d, 2*C*d, 4*C*d (d = 64), global pooling, fc.
"""

from __future__ import annotations

import torch
from torch import nn

from convatlas._checks import positive_int
from convatlas.layers.basic import GlobalAvgPool2d
from convatlas.models._resnet_blocks import Bottleneck, init_resnet_weights, projection_shortcut
from convatlas.models.features import FeatureInfo
from convatlas.models.resnet import ResNet
from convatlas.registry import ModelCard, Published, card_with, register_model

__all__ = ["CifarResNeXt", "imagenet_resnext"]


def _check_cardinality(cardinality: int, bottleneck_width: int) -> None:
    positive_int("cardinality", cardinality)
    positive_int("bottleneck_width", bottleneck_width)


def imagenet_resnext(
    depth: int, *, cardinality: int, bottleneck_width: int, num_classes: int = 1000
) -> ResNet:
    """ImageNet ResNeXt-``depth`` (C x d) (Xie et al. 2017, arXiv:1611.05431, Table 1).

    ``depth``: 50 (stages [3, 4, 6, 3]) or 101 ([3, 4, 23, 3]). ``cardinality`` C: the number of
    paths, i.e. groups of the 3x3 convolution. ``bottleneck_width`` d: the width of each path in
    the first stage (doubling per stage), so the 3x3 layers have C*d, 2Cd, 4Cd, 8Cd channels.
    """
    _check_cardinality(cardinality, bottleneck_width)
    stages = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
    if depth not in stages:
        raise ValueError(f"depth must be 50 or 101 for an ImageNet ResNeXt, got {depth!r}")
    return ResNet(
        Bottleneck, stages[depth], num_classes=num_classes,
        groups=cardinality, width_per_group=bottleneck_width, stride_in_3x3=True,
    )


class CifarResNeXt(nn.Module):
    """ResNeXt-29 for CIFAR (Xie et al. 2017, arXiv:1611.05431, §5.2).

    ``conv1`` 3x3/64 -> ``layer1`` .. ``layer3`` of 3 bottleneck blocks each (outputs 256, 512,
    1024 on 32, 16, 8 pixels; grouped 3x3 of ``cardinality`` groups x ``bottleneck_width``
    channels, doubling per stage) -> global average pooling -> ``fc``. Projection shortcuts
    where the shape changes; the 3x3 of a down-sampling block strides. Feature maps:
    ``layer1`` .. ``layer3`` (/1, /2, /4).
    """

    def __init__(
        self, *, cardinality: int, bottleneck_width: int, blocks_per_stage: int = 3, num_classes: int = 10
    ) -> None:
        super().__init__()
        _check_cardinality(cardinality, bottleneck_width)
        positive_int("blocks_per_stage", blocks_per_stage)
        self.cardinality, self.bottleneck_width = cardinality, bottleneck_width
        self.in_channels = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        # Bottleneck(planes=p) has inner width p * d / 64 * C and outputs 4p channels.
        self.layer1 = self._make_stage(64, blocks_per_stage, stride=1)
        self.layer2 = self._make_stage(128, blocks_per_stage, stride=2)
        self.layer3 = self._make_stage(256, blocks_per_stage, stride=2)
        self.avgpool = GlobalAvgPool2d()
        self.fc = nn.Linear(1024, num_classes)
        self.feature_info = [FeatureInfo(f"layer{i}", f"layer{i}", 256 * 2 ** (i - 1), 2 ** (i - 1)) for i in (1, 2, 3)]
        init_resnet_weights(self)

    def _make_stage(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        out_channels = planes * Bottleneck.expansion
        downsample = None
        if stride != 1 or self.in_channels != out_channels:
            downsample = projection_shortcut(self.in_channels, out_channels, stride)
        shape = dict(groups=self.cardinality, base_width=self.bottleneck_width, stride_in_3x3=True)
        stage = [Bottleneck(self.in_channels, planes, stride, downsample, **shape)]
        self.in_channels = out_channels
        stage += [Bottleneck(out_channels, planes, **shape) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(x))


_CARD = ModelCard(
    name="resnext50_32x4d",
    family="resnext",
    paper="Aggregated Residual Transformations for Deep Neural Networks",
    authors="Xie, Girshick, Dollár, Tu, He",
    year=2017,
    arxiv="1611.05431",
    input_size=(3, 224, 224),
    dataset="imagenet",
    idea=(
        "A block aggregates C parallel bottleneck paths of the same shape, implemented as one "
        "grouped 3x3 convolution. Increasing this cardinality improves accuracy more than going "
        "deeper or wider at the same cost."
    ),
)
_TV_ACC = "torchvision IMAGENET1K_V1 weights, single 224 crop"
_TV_OPS = "torchvision meta _ops (GFLOPS column = GMACs)"


@register_model(card_with(
    _CARD,
    name="resnext50_32x4d",
    params=Published(25_028_904, "torchvision meta num_params (paper Table 1: 25.0 x 10^6)"),
    macs=Published(4.230e9, _TV_OPS + "; paper Table 1: 4.2 x 10^9"),
    top1=Published(77.618, _TV_ACC),
    top5=Published(93.698, _TV_ACC),
    torchvision="resnext50_32x4d",
    timm="resnext50_32x4d",
    notes="Paper Table 3: 22.2% top-1 error (single 224 crop) vs 23.9% for ResNet-50.",
))
def resnext50_32x4d(*, num_classes: int = 1000, cardinality: int = 32, bottleneck_width: int = 4) -> ResNet:
    """ResNeXt-50 (32x4d) (Xie et al. 2017, arXiv:1611.05431, Table 1).

    ResNet-50's stages with 32 paths of width 4 per block (3x3 layers of 128 .. 1024 channels).

    ``cardinality`` C: paths per block (groups of the 3x3 convolution); ``bottleneck_width`` d:
    channels per path in the first stage (doubling per stage).
    """
    return imagenet_resnext(50, cardinality=cardinality, bottleneck_width=bottleneck_width, num_classes=num_classes)


@register_model(card_with(
    _CARD,
    name="resnext101_32x4d",
    params=Published(44_177_704, "exact count (paper-numbers.md section 12; timm resnext101_32x4d)"),
    macs=Published(7.970e9, "conv+fc MACs at 224, stride in the 3x3 (paper-numbers.md section 12)"),
    top1=Published(78.8, "paper Table 3, single 224 crop, top-1 error 21.2%"),
    timm="resnext101_32x4d",
    notes="Paper Table 3: 21.2% top-1 error vs 22.0% for ResNet-101. Not in torchvision.",
))
def resnext101_32x4d(*, num_classes: int = 1000, cardinality: int = 32, bottleneck_width: int = 4) -> ResNet:
    """ResNeXt-101 (32x4d) (Xie et al. 2017, arXiv:1611.05431, Table 3).

    ResNet-101's stages with 32 paths of width 4 per block.

    ``cardinality`` C: paths per block (groups of the 3x3 convolution); ``bottleneck_width`` d:
    channels per path in the first stage (doubling per stage).
    """
    return imagenet_resnext(101, cardinality=cardinality, bottleneck_width=bottleneck_width, num_classes=num_classes)


@register_model(card_with(
    _CARD,
    name="resnext101_32x8d",
    params=Published(88_791_336, "torchvision meta num_params"),
    macs=Published(16.414e9, _TV_OPS),
    top1=Published(79.312, _TV_ACC),
    top5=Published(94.526, _TV_ACC),
    torchvision="resnext101_32x8d",
    timm="resnext101_32x8d",
    notes="Not in the ResNeXt paper: released later by Facebook and torchvision, no paper numbers.",
))
def resnext101_32x8d(*, num_classes: int = 1000, cardinality: int = 32, bottleneck_width: int = 8) -> ResNet:
    """ResNeXt-101 (32x8d) (the architecture of Xie et al. 2017, arXiv:1611.05431; torchvision).

    ResNet-101's stages with 32 paths of width 8 per block. Not a configuration of the paper.

    ``cardinality`` C: paths per block (groups of the 3x3 convolution); ``bottleneck_width`` d:
    channels per path in the first stage (doubling per stage).
    """
    return imagenet_resnext(101, cardinality=cardinality, bottleneck_width=bottleneck_width, num_classes=num_classes)


@register_model(card_with(
    _CARD,
    name="resnext101_64x4d",
    params=Published(83_455_272, "torchvision meta num_params"),
    macs=Published(15.460e9, _TV_OPS),
    top1=Published(79.6, "paper Table 4, single 224 crop, error 20.4% (top-1) / 5.3% (top-5)"),
    top5=Published(94.7, "paper Table 4, single 224 crop, error 20.4% (top-1) / 5.3% (top-5)"),
    torchvision="resnext101_64x4d",
    timm="resnext101_64x4d",
    notes="torchvision's only weights (new training recipe): 83.246/96.454% top-1/top-5.",
))
def resnext101_64x4d(*, num_classes: int = 1000, cardinality: int = 64, bottleneck_width: int = 4) -> ResNet:
    """ResNeXt-101 (64x4d) (Xie et al. 2017, arXiv:1611.05431, Table 4): 2x ResNet-101's cost.

    ResNet-101's stages with 64 paths of width 4 per block.

    ``cardinality`` C: paths per block (groups of the 3x3 convolution); ``bottleneck_width`` d:
    channels per path in the first stage (doubling per stage).
    """
    return imagenet_resnext(101, cardinality=cardinality, bottleneck_width=bottleneck_width, num_classes=num_classes)


_CIFAR = card_with(_CARD, input_size=(3, 32, 32), dataset="cifar10")
_TABLE7 = "paper Table 7 (average of 10 runs), CIFAR-10 test error {}%"


@register_model(card_with(
    _CIFAR,
    name="resnext29_8x64d",
    params=Published(34_426_698, "exact count, 10 classes (paper Table 7: 34.4M)"),
    macs=Published(5.387e9, "conv+fc MACs at 32x32 (5.387 G, paper-numbers.md section 12)"),
    top1=Published(96.35, _TABLE7.format("3.65")),
    notes="CIFAR-100: 17.77% error (Table 7).",
))
def resnext29_8x64d(*, num_classes: int = 10, cardinality: int = 8, bottleneck_width: int = 64) -> CifarResNeXt:
    """ResNeXt-29 (8x64d) for CIFAR (Xie et al. 2017, arXiv:1611.05431, §5.2, Table 7).

    ``cardinality`` C: paths per block (groups of the 3x3 convolution); ``bottleneck_width`` d:
    channels per path in the first stage (doubling per stage).
    """
    return CifarResNeXt(cardinality=cardinality, bottleneck_width=bottleneck_width, num_classes=num_classes)


@register_model(card_with(
    _CIFAR,
    name="resnext29_16x64d",
    params=Published(68_155_210, "exact count, 10 classes (paper Table 7: 68.1M)"),
    macs=Published(10.689e9, "conv+fc MACs at 32x32 (10.689 G, paper-numbers.md section 12)"),
    top1=Published(96.42, _TABLE7.format("3.58")),
    notes="CIFAR-100: 17.31% error (Table 7), the best in the paper.",
))
def resnext29_16x64d(*, num_classes: int = 10, cardinality: int = 16, bottleneck_width: int = 64) -> CifarResNeXt:
    """ResNeXt-29 (16x64d) for CIFAR (Xie et al. 2017, arXiv:1611.05431, §5.2, Table 7).

    ``cardinality`` C: paths per block (groups of the 3x3 convolution); ``bottleneck_width`` d:
    channels per path in the first stage (doubling per stage).
    """
    return CifarResNeXt(cardinality=cardinality, bottleneck_width=bottleneck_width, num_classes=num_classes)
