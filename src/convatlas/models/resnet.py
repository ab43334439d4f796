"""ResNet: deep residual learning (He, Zhang, Ren, Sun 2015, arXiv:1512.03385).

Layers learn residual functions F(x) = H(x) - x and add their input back through a shortcut,
``y = F(x) + x``. A stack of such blocks is no harder to optimise than a shallow net, so depth
goes to 152 layers on ImageNet and 1202 on CIFAR-10.

Two networks of the paper live here:

* the ImageNet ResNets of Table 1 (:class:`ResNet`): a 7x7/2 convolution and a 3x3/2 max pool,
  four stages ``layer1`` .. ``layer4`` (the paper's conv2_x .. conv5_x) at 56, 28, 14 and 7
  pixels, global average pooling and a 1000-way ``fc``;
* the CIFAR-10 ResNets of §4.2 (:class:`CifarResNet`): 6n+2 layers, a 3x3 convolution with 16
  filters and three stages of n basic blocks with 16, 32 and 64 filters at 32, 16 and 8 pixels.

Where a bottleneck block down-samples, the paper strides its first 1x1 convolution ("v1");
fb.resnet.torch and torchvision stride the 3x3 instead ("v1.5"). The two have the same
parameters and differ in cost: ResNet-50 is 3.86 GMACs as v1 (the paper's "3.8 x 10^9 FLOPs")
and 4.09 GMACs as v1.5. ``resnet50`` .. ``resnet152`` are torchvision's v1.5 (its weights load
unchanged); ``resnet50_v1`` .. ``resnet152_v1`` are the paper's; the ``variant`` argument of
either switches. ResNet-18 and -34 are built of basic blocks, whose only strided convolution is
the first 3x3, so the two placements give the same network: they have one name each and no
``variant`` argument.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from convatlas._checks import positive_int
from convatlas.layers.basic import GlobalAvgPool2d
from convatlas.models._resnet_blocks import (
    BasicBlock,
    Bottleneck,
    ZeroPadShortcut,
    init_resnet_weights,
    projection_shortcut,
)
from convatlas.models.features import FeatureInfo
from convatlas.registry import ModelCard, Published, card_with, register_model

__all__ = ["ResNet", "CifarResNet", "cifar_resnet", "RESNET_DEPTHS", "VARIANTS"]

# Table 1: the block type and the number of blocks in conv2_x .. conv5_x.
RESNET_DEPTHS: dict[int, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}

# Where a down-sampling bottleneck strides: the paper's first 1x1 ("v1") or the 3x3 ("v1.5").
VARIANTS = {"v1": False, "v1.5": True}  # variant -> stride_in_3x3


def _stride_in_3x3(variant: str) -> bool:
    if variant not in VARIANTS:
        raise ValueError(
            f"variant must be 'v1' (stride in the first 1x1, as in the paper) or 'v1.5' "
            f"(stride in the 3x3, as in torchvision), got {variant!r}"
        )
    return VARIANTS[variant]


class ResNet(nn.Module):
    """The ImageNet ResNet of Table 1, with torchvision's attribute names.

    ``block`` is :class:`BasicBlock` or :class:`Bottleneck`, ``layers`` the number of blocks in
    each of the four stages. ``groups`` and ``width_per_group`` widen or group the bottleneck's
    3x3 convolution (Wide ResNet-50-2, ResNeXt); ``stride_in_3x3`` picks v1.5 (True) or v1.
    Shortcuts are identities, and option-B projections where the shape changes.

    Feature maps (``feature_info``): ``conv1`` (after ``relu``, /2), ``layer1`` .. ``layer4``
    (/4 .. /32).
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: Sequence[int],
        *,
        num_classes: int = 1000,
        groups: int = 1,
        width_per_group: int = 64,
        stride_in_3x3: bool = True,
    ) -> None:
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"layers must give the number of blocks of 4 stages, got {list(layers)}")
        self.groups, self.width_per_group, self.stride_in_3x3 = groups, width_per_group, stride_in_3x3
        self.in_channels = 64
        # conv1: 7x7, 64, stride 2 -> 112x112; then 3x3 max pool, stride 2 -> 56x56.
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        # conv2_x .. conv5_x; each stage after the first halves the resolution in its first block.
        self.layer1 = self._make_stage(block, 64, layers[0], stride=1)
        self.layer2 = self._make_stage(block, 128, layers[1], stride=2)
        self.layer3 = self._make_stage(block, 256, layers[2], stride=2)
        self.layer4 = self._make_stage(block, 512, layers[3], stride=2)
        self.avgpool = GlobalAvgPool2d()
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        self.feature_info = [FeatureInfo("conv1", "relu", 64, 2)] + [
            FeatureInfo(f"layer{i}", f"layer{i}", planes * block.expansion, 2 ** (i + 1))
            for i, planes in enumerate((64, 128, 256, 512), start=1)
        ]
        init_resnet_weights(self)

    def _make_stage(self, block, planes: int, blocks: int, stride: int) -> nn.Sequential:
        out_channels = planes * block.expansion
        downsample = None
        if stride != 1 or self.in_channels != out_channels:
            downsample = projection_shortcut(self.in_channels, out_channels, stride)
        extra = {}
        if block is Bottleneck:
            extra = dict(groups=self.groups, base_width=self.width_per_group, stride_in_3x3=self.stride_in_3x3)
        stage = [block(self.in_channels, planes, stride, downsample, **extra)]
        self.in_channels = out_channels
        stage += [block(out_channels, planes, **extra) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x))


class CifarResNet(nn.Module):
    """The CIFAR-10 ResNet of §4.2: 6n+2 weighted layers.

    ``conv1`` (3x3, 16 filters) -> ``layer1`` .. ``layer3`` of n basic blocks with 16, 32, 64
    filters on 32x32, 16x16, 8x8 maps -> global average pooling -> ``fc``. Where a stage starts
    (twice), the shortcut is option ``"A"`` (zero-padding, parameter-free; the paper's choice for
    Table 6) or ``"B"`` (1x1 projection + BN). Feature maps: ``layer1`` .. ``layer3`` (/1, /2, /4).
    """

    def __init__(self, blocks_per_stage: int, *, shortcut: str = "A", num_classes: int = 10) -> None:
        super().__init__()
        positive_int("blocks_per_stage", blocks_per_stage)
        self.shortcut = _check_shortcut(shortcut)
        self.in_channels = 16
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_stage(16, blocks_per_stage, stride=1)
        self.layer2 = self._make_stage(32, blocks_per_stage, stride=2)
        self.layer3 = self._make_stage(64, blocks_per_stage, stride=2)
        self.avgpool = GlobalAvgPool2d()
        self.fc = nn.Linear(64, num_classes)
        self.feature_info = [FeatureInfo(f"layer{i}", f"layer{i}", 16 * 2 ** (i - 1), 2 ** (i - 1)) for i in (1, 2, 3)]
        init_resnet_weights(self)

    def _make_stage(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.in_channels != planes:
            if self.shortcut == "A":
                downsample = ZeroPadShortcut(self.in_channels, planes, stride)
            else:
                downsample = projection_shortcut(self.in_channels, planes, stride)
        stage = [BasicBlock(self.in_channels, planes, stride, downsample)]
        self.in_channels = planes
        stage += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(x))


def _check_shortcut(shortcut: str) -> str:
    if not isinstance(shortcut, str) or shortcut.upper() not in ("A", "B"):
        raise ValueError(
            f"shortcut must be 'A' (zero-padding identity, no parameters) or 'B' "
            f"(1x1 projection where the shape changes), got {shortcut!r}"
        )
    return shortcut.upper()


def cifar_resnet(depth: int, *, shortcut: str = "A", num_classes: int = 10) -> CifarResNet:
    """CIFAR-10 ResNet with ``depth`` = 6n+2 layers (He et al. 2015, arXiv:1512.03385, §4.2).

    ``depth``: 20, 32, 44, 56, 110, 1202 in Table 6, or any other 6n+2 (n >= 1).
    ``shortcut``: ``"A"`` zero-padding identity shortcuts (parameter-free, Table 6) or ``"B"``
    projection shortcuts (1x1 conv + BN) where the number of filters doubles.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(
            f"depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, 1202, ...), got {depth!r}"
        )
    return CifarResNet((depth - 2) // 6, shortcut=shortcut, num_classes=num_classes)


# --------------------------------------------------------------------------------------------
# ImageNet builders.

_PAPER = "Deep Residual Learning for Image Recognition"
_AUTHORS = "He, Zhang, Ren, Sun"
_IDEA = (
    "Each block learns a residual F(x) that is added to its input through an identity shortcut, "
    "y = F(x) + x, so very deep networks are as easy to optimise as shallow ones. "
    "With batch normalisation and bottleneck blocks this reached 152 layers on ImageNet "
    "(3.57% top-5 ensemble error, ILSVRC 2015)."
)
_IMAGENET = ModelCard(
    name="resnet50",
    family="resnet",
    paper=_PAPER,
    authors=_AUTHORS,
    year=2015,
    arxiv="1512.03385",
    input_size=(3, 224, 224),
    dataset="imagenet",
    idea=_IDEA,
)
_TV_ACC = "torchvision IMAGENET1K_V1 weights, single 224 crop"
_TV_OPS = "torchvision meta _ops (GFLOPS column = GMACs), stride in the 3x3 (v1.5)"
_V1_NOTE = (
    "The paper's placement (v1): a down-sampling bottleneck strides its first 1x1 convolution. "
    "Same parameters as torchvision's v1.5, fewer MACs; torchvision's weights fit its shapes but "
    "were trained for v1.5."
)
_V15_NOTE = (
    "torchvision's 'v1.5': a down-sampling bottleneck strides its 3x3 convolution "
    "(fb.resnet.torch); the paper strides the first 1x1 (variant='v1', or the *_v1 names)."
)


def _imagenet_resnet(depth: int, num_classes: int, variant: str = "v1.5") -> ResNet:
    block, layers = RESNET_DEPTHS[depth]
    return ResNet(block, layers, num_classes=num_classes, stride_in_3x3=_stride_in_3x3(variant))


@register_model(card_with(
    _IMAGENET,
    name="resnet18",
    params=Published(11_689_512, "torchvision meta num_params"),
    macs=Published(1.814e9, _TV_OPS + "; paper Table 1: 1.8 x 10^9"),
    top1=Published(69.758, _TV_ACC),
    top5=Published(89.078, _TV_ACC),
    torchvision="resnet18",
    timm="resnet18",
    notes="Basic blocks: v1 and v1.5 are the same network. Paper Table 2: 27.88% top-1 error (10-crop).",
))
def resnet18(*, num_classes: int = 1000) -> ResNet:
    """ResNet-18 (He et al. 2015, arXiv:1512.03385, Table 1): basic blocks [2, 2, 2, 2].

    Its only strided convolutions are 3x3, so the paper's and torchvision's stride placements
    coincide and there is no ``variant`` argument.
    """
    return _imagenet_resnet(18, num_classes)


@register_model(card_with(
    _IMAGENET,
    name="resnet34",
    params=Published(21_797_672, "torchvision meta num_params"),
    macs=Published(3.664e9, _TV_OPS + "; paper Table 1: 3.6 x 10^9"),
    top1=Published(73.314, _TV_ACC),
    top5=Published(91.42, _TV_ACC),
    torchvision="resnet34",
    timm="resnet34",
    notes="Basic blocks: v1 and v1.5 are the same network. Paper Table 3 (option B): "
    "24.52/7.46% top-1/top-5 error (10-crop).",
))
def resnet34(*, num_classes: int = 1000) -> ResNet:
    """ResNet-34 (He et al. 2015, arXiv:1512.03385, Table 1): basic blocks [3, 4, 6, 3].

    Option-B shortcuts (projections only where the shape changes). Its only strided convolutions
    are 3x3, so there is no ``variant`` argument.
    """
    return _imagenet_resnet(34, num_classes)


@register_model(card_with(
    _IMAGENET,
    name="resnet50",
    params=Published(25_557_032, "torchvision meta num_params"),
    macs=Published(4.089e9, _TV_OPS),
    top1=Published(76.13, _TV_ACC),
    top5=Published(92.862, _TV_ACC),
    torchvision="resnet50",
    timm="resnet50",
    notes=_V15_NOTE,
))
def resnet50(*, num_classes: int = 1000, variant: str = "v1.5") -> ResNet:
    """ResNet-50 (He et al. 2015, arXiv:1512.03385, Table 1): bottlenecks [3, 4, 6, 3].

    ``variant``: ``"v1.5"`` (default, torchvision's network: a down-sampling bottleneck strides
    its 3x3 convolution, 4.09 GMACs) or ``"v1"`` (the paper's: it strides the first 1x1,
    3.86 GMACs). Same parameters either way.
    """
    return _imagenet_resnet(50, num_classes, variant)


@register_model(card_with(
    _IMAGENET,
    name="resnet101",
    params=Published(44_549_160, "torchvision meta num_params"),
    macs=Published(7.801e9, _TV_OPS),
    top1=Published(77.374, _TV_ACC),
    top5=Published(93.546, _TV_ACC),
    torchvision="resnet101",
    timm="resnet101",
    notes=_V15_NOTE,
))
def resnet101(*, num_classes: int = 1000, variant: str = "v1.5") -> ResNet:
    """ResNet-101 (He et al. 2015, arXiv:1512.03385, Table 1): bottlenecks [3, 4, 23, 3].

    ``variant``: ``"v1.5"`` (default, stride in the 3x3, torchvision) or ``"v1"`` (stride in the
    first 1x1, the paper).
    """
    return _imagenet_resnet(101, num_classes, variant)


@register_model(card_with(
    _IMAGENET,
    name="resnet152",
    params=Published(60_192_808, "torchvision meta num_params"),
    macs=Published(11.514e9, _TV_OPS),
    top1=Published(78.312, _TV_ACC),
    top5=Published(94.046, _TV_ACC),
    torchvision="resnet152",
    timm="resnet152",
    notes=_V15_NOTE,
))
def resnet152(*, num_classes: int = 1000, variant: str = "v1.5") -> ResNet:
    """ResNet-152 (He et al. 2015, arXiv:1512.03385, Table 1): bottlenecks [3, 8, 36, 3].

    ``variant``: ``"v1.5"`` (default, stride in the 3x3, torchvision) or ``"v1"`` (stride in the
    first 1x1, the paper).
    """
    return _imagenet_resnet(152, num_classes, variant)


_PAPER_10CROP = "paper Table 3, 10-crop validation error {} (top-1) / {} (top-5)"


@register_model(card_with(
    _IMAGENET,
    name="resnet50_v1",
    params=Published(25_557_032, "same layers as torchvision resnet50 (meta num_params)"),
    macs=Published(3.858e9, "conv+fc MACs at 224, stride in the first 1x1; paper Table 1: 3.8 x 10^9"),
    top1=Published(77.15, _PAPER_10CROP.format("22.85%", "6.71%")),
    top5=Published(93.29, _PAPER_10CROP.format("22.85%", "6.71%")),
    notes=_V1_NOTE,
))
def resnet50_v1(*, num_classes: int = 1000, variant: str = "v1") -> ResNet:
    """ResNet-50 as in the paper (He et al. 2015, arXiv:1512.03385, Table 1): the first 1x1 of a
    down-sampling bottleneck has stride 2 (3.86 GMACs). ``variant="v1.5"`` gives ``resnet50``."""
    return _imagenet_resnet(50, num_classes, variant)


@register_model(card_with(
    _IMAGENET,
    name="resnet101_v1",
    params=Published(44_549_160, "same layers as torchvision resnet101 (meta num_params)"),
    macs=Published(7.570e9, "conv+fc MACs at 224, stride in the first 1x1; paper Table 1: 7.6 x 10^9"),
    top1=Published(78.25, _PAPER_10CROP.format("21.75%", "6.05%")),
    top5=Published(93.95, _PAPER_10CROP.format("21.75%", "6.05%")),
    notes=_V1_NOTE,
))
def resnet101_v1(*, num_classes: int = 1000, variant: str = "v1") -> ResNet:
    """ResNet-101 as in the paper (He et al. 2015, arXiv:1512.03385, Table 1): stride in the
    first 1x1 of a down-sampling bottleneck. ``variant="v1.5"`` gives ``resnet101``."""
    return _imagenet_resnet(101, num_classes, variant)


@register_model(card_with(
    _IMAGENET,
    name="resnet152_v1",
    params=Published(60_192_808, "same layers as torchvision resnet152 (meta num_params)"),
    macs=Published(11.282e9, "conv+fc MACs at 224, stride in the first 1x1; paper Table 1: 11.3 x 10^9"),
    top1=Published(78.57, _PAPER_10CROP.format("21.43%", "5.71%")),
    top5=Published(94.29, _PAPER_10CROP.format("21.43%", "5.71%")),
    notes=_V1_NOTE,
))
def resnet152_v1(*, num_classes: int = 1000, variant: str = "v1") -> ResNet:
    """ResNet-152 as in the paper (He et al. 2015, arXiv:1512.03385, Table 1): stride in the
    first 1x1 of a down-sampling bottleneck. ``variant="v1.5"`` gives ``resnet152``."""
    return _imagenet_resnet(152, num_classes, variant)


# --------------------------------------------------------------------------------------------
# CIFAR-10 builders (Table 6).

_CIFAR = card_with(
    _IMAGENET,
    name="resnet20",
    input_size=(3, 32, 32),
    dataset="cifar10",
    idea=(
        "On CIFAR-10, 6n+2-layer networks of basic blocks with parameter-free zero-padding "
        "shortcuts (option A) get better with depth up to 110 layers, where plain networks get "
        "worse; 1202 layers still optimise but overfit."
    ),
    notes="Option A shortcuts (zero-padding identity); shortcut='B' uses 1x1 projections.",
)


def _cifar_card(depth: int, params: int, paper_params: str, error: float, macs: float, macs_digits: str):
    return card_with(
        _CIFAR,
        name=f"resnet{depth}",
        params=Published(params, f"exact count, option A with BN; paper Table 6: {paper_params}"),
        macs=Published(macs, f"conv+fc MACs at 32x32 ({macs_digits}, paper-numbers.md section 9)"),
        top1=Published(round(100 - error, 2), f"paper Table 6, CIFAR-10 test error {error}%"),
    )


@register_model(card_with(
    _cifar_card(20, 269_722, "0.27M", 8.75, 40.6e6, "40.6 M"),
    recipes=("resnet20_cifar10",),
))
def resnet20(*, num_classes: int = 10, shortcut: str = "A") -> CifarResNet:
    """CIFAR-10 ResNet-20 (He et al. 2015, arXiv:1512.03385, §4.2, Table 6): n = 3.

    ``shortcut``: ``"A"`` zero-padding identity (paper, no parameters) or ``"B"`` projection.
    """
    return cifar_resnet(20, shortcut=shortcut, num_classes=num_classes)


@register_model(_cifar_card(32, 464_154, "0.46M", 7.51, 68.9e6, "68.9 M"))
def resnet32(*, num_classes: int = 10, shortcut: str = "A") -> CifarResNet:
    """CIFAR-10 ResNet-32 (He et al. 2015, arXiv:1512.03385, §4.2, Table 6): n = 5.

    ``shortcut``: ``"A"`` zero-padding identity (paper, no parameters) or ``"B"`` projection.
    """
    return cifar_resnet(32, shortcut=shortcut, num_classes=num_classes)


@register_model(_cifar_card(44, 658_586, "0.66M", 7.17, 97.2e6, "97.2 M"))
def resnet44(*, num_classes: int = 10, shortcut: str = "A") -> CifarResNet:
    """CIFAR-10 ResNet-44 (He et al. 2015, arXiv:1512.03385, §4.2, Table 6): n = 7.

    ``shortcut``: ``"A"`` zero-padding identity (paper, no parameters) or ``"B"`` projection.
    """
    return cifar_resnet(44, shortcut=shortcut, num_classes=num_classes)


@register_model(card_with(
    _cifar_card(56, 853_018, "0.85M", 6.97, 125.5e6, "125.5 M"),
    recipes=("resnet56_cifar10",),
))
def resnet56(*, num_classes: int = 10, shortcut: str = "A") -> CifarResNet:
    """CIFAR-10 ResNet-56 (He et al. 2015, arXiv:1512.03385, §4.2, Table 6): n = 9.

    ``shortcut``: ``"A"`` zero-padding identity (paper, no parameters) or ``"B"`` projection.
    """
    return cifar_resnet(56, shortcut=shortcut, num_classes=num_classes)


@register_model(card_with(
    _cifar_card(110, 1_727_962, "1.7M", 6.43, 252.9e6, "252.9 M"),
    recipes=("resnet110_cifar10",),
))
def resnet110(*, num_classes: int = 10, shortcut: str = "A") -> CifarResNet:
    """CIFAR-10 ResNet-110 (He et al. 2015, arXiv:1512.03385, §4.2, Table 6): n = 18.

    Table 6 reports the best of 5 runs, 6.43% (mean 6.61 +- 0.16).
    ``shortcut``: ``"A"`` zero-padding identity (paper, no parameters) or ``"B"`` projection.
    """
    return cifar_resnet(110, shortcut=shortcut, num_classes=num_classes)


@register_model(_cifar_card(1202, 19_421_274, "19.4M", 7.93, 2.83e9, "2.83 G"))
def resnet1202(*, num_classes: int = 10, shortcut: str = "A") -> CifarResNet:
    """CIFAR-10 ResNet-1202 (He et al. 2015, arXiv:1512.03385, §4.2, Table 6): n = 200.

    It trains to under 0.1% training error but tests worse than ResNet-110 (overfitting).
    ``shortcut``: ``"A"`` zero-padding identity (paper, no parameters) or ``"B"`` projection.
    """
    return cifar_resnet(1202, shortcut=shortcut, num_classes=num_classes)


@register_model(card_with(
    _cifar_card(20, 269_722, "0.27M", 8.75, 40.6e6, "40.6 M"),
    name="resnet_cifar",
    notes="Any depth 6n+2 (default 20 = resnet20): create_model('resnet_cifar', depth=164). "
          "Option A shortcuts (zero-padding identity); shortcut='B' uses 1x1 projections.",
))
def resnet_cifar(*, depth: int = 20, num_classes: int = 10, shortcut: str = "A") -> CifarResNet:
    """CIFAR-10 ResNet of any depth 6n+2 (He et al. 2015, arXiv:1512.03385, §4.2); the
    default, 20, is :func:`resnet20`."""
    return cifar_resnet(depth, shortcut=shortcut, num_classes=num_classes)
