"""The classic ImageNet networks scaled down to 32x32 digits, for comparisons that train in seconds.

Each network here keeps the design that made its paper famous and shrinks everything else: the
convolution widths of the paper divided by 8, the fully connected widths divided by 16, and most
of the early down-sampling of a 224-pixel network left out, so that a 32x32 grey image (an MNIST digit,
``in_channels=1``) or a CIFAR photo (``in_channels=3``) goes through the same stages. They are
what ``convatlas demo`` trains next to the paper's LeNet-5, on the 4,000 embedded MNIST digits,
to draw the accuracy / operations / parameters chart of the notes from measured numbers.

============== ======================= ==================================================  ========  ========
name           scales down             what is kept                                        params    MACs
============== ======================= ==================================================  ========  ========
alexnet_mini   AlexNet (2012)          conv-ReLU-LRN-overlapping pool, kernels 7/2-5-3-3-3, 160,130   1.64 M
                                       three dense layers with dropout, no batch norm
vgg_mini       VGG-11, config A (2014) only 3x3 convolutions, blocks of 1-1-2-2-2 with a    230,106   2.52 M
                                       2x2 pool after each, three dense layers
resnet_mini    ResNet-18 (2015)        basic residual blocks, identity and projection       77,858    4.01 M
                                       shortcuts, BN, global average pooling
mobilenet_mini MobileNet v1 (2017)     the 13 depthwise-separable layers of Table 1         215,498   3.18 M
googlenet_mini GoogLeNet (2014)        stem, Inception modules 3a and 4a with 1x1           10,294    1.51 M
                                       reductions, global average pooling
============== ======================= ==================================================  ========  ========

Parameter counts are at ``in_channels=1, num_classes=10``; MACs count the convolution and linear
layers at 1x32x32. None of these networks is in a paper: their cards cite the paper each one
scales down, and their numbers are hand counts (written out in ``tests/reference/mini.py``).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from convatlas._checks import positive_int
from convatlas.layers import ConvNormAct, DepthwiseSeparableConv2d, GlobalAvgPool2d, LocalResponseNorm
from convatlas.layers.init import init_weights, kaiming_normal
from convatlas.models._resnet_blocks import BasicBlock, init_resnet_weights, projection_shortcut
from convatlas.models.features import FeatureInfo
from convatlas.models.googlenet import INCEPTION_V1_TABLE, ConvBlock, InceptionModule
from convatlas.models.mobilenet import mobilenet_v1_feature_info
from convatlas.models.vgg import make_features, vgg_feature_info
from convatlas.registry import ModelCard, Published, register_model

__all__ = [
    "AlexNetMini",
    "VGGMini",
    "ResNetMini",
    "MobileNetMini",
    "GoogLeNetMini",
    "alexnet_mini",
    "vgg_mini",
    "resnet_mini",
    "mobilenet_mini",
    "googlenet_mini",
]

CONV_DIVISOR = 8  # the papers' convolution widths are divided by this
FC_DIVISOR = 16  # and their fully connected widths (4096 -> 256) by this


def _check_args(in_channels: int, num_classes: int) -> None:
    positive_int("in_channels", in_channels)
    positive_int("num_classes", num_classes)


def _he_init(model: nn.Module) -> None:
    """He et al. (2015, arXiv:1502.01852) normal weights for ReLU networks, zero biases, BN at
    (1, 0). The papers' own schemes (AlexNet's N(0, 0.01^2), VGG's pre-training) are made for
    ImageNet-length training; this one lets the small nets learn in a few epochs."""
    he_normal = kaiming_normal(nonlinearity="relu")
    init_weights(model, conv=he_normal, linear=he_normal)


# --------------------------------------------------------------------------------------------
# AlexNet (Krizhevsky, Sutskever, Hinton 2012)


class AlexNetMini(nn.Module):
    """AlexNet's five convolutions and three dense layers at 1/8 of the paper's widths.

    ===========  =========================================================  ============
    layer        what it computes (1x32x32 input)                           output
    ===========  =========================================================  ============
    conv1        12 @ 7x7, stride 2, pad 3; ReLU, LRN, max-pool 3x3/2 pad 1  12 x 8 x 8
    conv2        32 @ 5x5, pad 2; ReLU, LRN, max-pool 3x3/2 pad 1            32 x 4 x 4
    conv3        48 @ 3x3, pad 1; ReLU                                       48 x 4 x 4
    conv4        48 @ 3x3, pad 1; ReLU                                       48 x 4 x 4
    conv5        32 @ 3x3, pad 1; ReLU, max-pool 3x3/2 pad 1                 32 x 2 x 2
    fc6, fc7     256 units, ReLU, dropout 0.5                                256
    fc8          num_classes                                                 10
    ===========  =========================================================  ============

    As in the paper, a big strided filter comes first (11x11/4 there, 7x7/2 here), then 5x5, then
    3x3 ones; ReLU after every layer, local response normalisation with the paper's constants after
    conv1 and conv2, overlapping 3x3/2 max pooling, dropout on the hidden dense layers, and most of
    the parameters in the dense layers. One tower (no ``groups``), as in torchvision's AlexNet.
    The pools pad by one pixel so that a 32x32 image keeps 2x2 positions to the end (unpadded,
    the 3x3 maps of conv5 would pool to one). ``avgpool`` (adaptive 2x2, the identity at 32x32)
    lets other input sizes through, as torchvision's adaptive 6x6 pool does for the full network.

    Like the paper's network it has no batch normalisation, and like it, it wants a smaller
    learning rate than the batch-normalised networks: it does not learn at the trainer's default
    of 0.1, and learns well at 0.02 (the paper used 0.01).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, dropout: float = 0.5) -> None:
        super().__init__()
        _check_args(in_channels, num_classes)
        c1, c2, c3, c4, c5 = (w // CONV_DIVISOR for w in (96, 256, 384, 384, 256))
        hidden = 4096 // FC_DIVISOR
        self.features = nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(in_channels, c1, kernel_size=7, stride=2, padding=3),
            relu1=nn.ReLU(inplace=True),
            norm1=LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0),
            pool1=nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            conv2=nn.Conv2d(c1, c2, kernel_size=5, padding=2),
            relu2=nn.ReLU(inplace=True),
            norm2=LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0),
            pool2=nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            conv3=nn.Conv2d(c2, c3, kernel_size=3, padding=1),
            relu3=nn.ReLU(inplace=True),
            conv4=nn.Conv2d(c3, c4, kernel_size=3, padding=1),
            relu4=nn.ReLU(inplace=True),
            conv5=nn.Conv2d(c4, c5, kernel_size=3, padding=1),
            relu5=nn.ReLU(inplace=True),
            pool5=nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        ))
        self.feature_info = [  # the last map at each resolution, as AlexNet's
            FeatureInfo("conv1", "features.norm1", c1, 2),
            FeatureInfo("conv2", "features.norm2", c2, 4),
            FeatureInfo("conv5", "features.relu5", c5, 8),
            FeatureInfo("pool5", "features.pool5", c5, 16),
        ]
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(OrderedDict(
            fc6=nn.Linear(c5 * 2 * 2, hidden),
            relu6=nn.ReLU(inplace=True),
            dropout6=nn.Dropout(p=dropout),
            fc7=nn.Linear(hidden, hidden),
            relu7=nn.ReLU(inplace=True),
            dropout7=nn.Dropout(p=dropout),
            fc8=nn.Linear(hidden, num_classes),
        ))
        _he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


# --------------------------------------------------------------------------------------------
# VGG (Simonyan, Zisserman 2014)

# Configuration A of Table 1 (VGG-11: 64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M) at 1/8 width.
VGG_MINI_CONFIG: list[int | str] = [
    w if w == "M" else w // CONV_DIVISOR
    for w in [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]
]


class VGGMini(nn.Module):
    """VGG-11 (configuration A) at 1/8 width: eight 3x3 convolutions in five blocks, each block
    ended by a 2x2/2 max pool, so a 32x32 image leaves ``features`` as 64 x 1 x 1; then three
    dense layers of 256, 256 and ``num_classes`` units with dropout 0.5 after the first two.

    ``features`` is built by :func:`convatlas.models.vgg.make_features` from :data:`VGG_MINI_CONFIG`,
    as the full networks are from Table 1. ``batch_norm`` puts batch normalisation between each
    convolution and its ReLU (torchvision's ``vgg11_bn``; not in the paper, which trained A from
    scratch and used it to initialise the deeper nets): with it, the mini net learns from He
    initialisation in a few epochs. Five halvings need 32 pixels: that is the smallest input.
    """

    def __init__(
        self, in_channels: int = 1, num_classes: int = 10, *, batch_norm: bool = True, dropout: float = 0.5
    ) -> None:
        super().__init__()
        _check_args(in_channels, num_classes)
        self.features = make_features(VGG_MINI_CONFIG, batch_norm=batch_norm, in_channels=in_channels)
        self.feature_info = vgg_feature_info(self.features)
        last_width = VGG_MINI_CONFIG[-2]
        hidden = 4096 // FC_DIVISOR
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))  # the identity at 32x32 (1x1 maps)
        self.classifier = nn.Sequential(
            nn.Linear(last_width, hidden),  # 0: FC-4096 / 16
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, hidden),  # 3: FC-4096 / 16
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, num_classes),  # 6: FC-1000 -> num_classes
        )
        _he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


# --------------------------------------------------------------------------------------------
# ResNet (He, Zhang, Ren, Sun 2015)


class ResNetMini(nn.Module):
    """ResNet-18's four stages of basic blocks with one block per stage (ResNet-18 has two) at
    1/8 width: 8, 16, 32, 64 channels at 32, 16, 8, 4 pixels.

    The 7x7/2 convolution and 3x3/2 max pool that bring 224 pixels down to 56 become one 3x3/1
    convolution (``conv1``/``bn1``), as in the paper's CIFAR networks. Each stage after the first
    halves the size in its first 3x3 convolution; its shortcut is then a 1x1/2 projection with BN
    (option B, ``downsample``), elsewhere the identity. Global average pooling and ``fc`` end it.
    Blocks and initialisation are those of :mod:`convatlas.models.resnet`.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        _check_args(in_channels, num_classes)
        widths = [w // CONV_DIVISOR for w in (64, 128, 256, 512)]
        self.conv1 = nn.Conv2d(in_channels, widths[0], kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        stages = []
        channels = widths[0]
        for i, width in enumerate(widths):
            stride = 1 if i == 0 else 2
            downsample = projection_shortcut(channels, width, stride) if stride != 1 or channels != width else None
            stages.append(nn.Sequential(BasicBlock(channels, width, stride, downsample)))
            channels = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = GlobalAvgPool2d()
        self.fc = nn.Linear(channels, num_classes)
        self.feature_info = [FeatureInfo(f"layer{i}", f"layer{i}", w, 2 ** (i - 1)) for i, w in enumerate(widths, 1)]
        init_resnet_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x))


# --------------------------------------------------------------------------------------------
# MobileNet v1 (Howard et al. 2017)

# Table 1 of the paper after the first convolution: (pointwise output width, depthwise stride)
# of the 13 depthwise-separable layers, at width multiplier 1.
MOBILENET_V1_TABLE: list[tuple[int, int]] = [
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
]


class MobileNetMini(nn.Module):
    """MobileNet v1 at width multiplier 1/4 (the paper's smallest, Table 6), layer for layer: a
    3x3 convolution of 8 filters and the 13 depthwise-separable layers of Table 1 (widths
    16 ... 256), each a 3x3 depthwise convolution and a 1x1 pointwise convolution, both followed
    by BN and ReLU; global average pooling and ``fc``.

    The first convolution has stride 1 instead of 2 (as the usual CIFAR versions do), so that the
    four stride-2 layers take a 32x32 image to 2x2, where the paper takes 224x224 to 7x7; with
    stride 2 the last layers see one pixel, and the net learned the digits worse in our runs
    (94.4% after six epochs, against 96.3% after four). Blocks are
    :class:`convatlas.layers.DepthwiseSeparableConv2d`, in ``layers`` (``layers.0`` ... ``layers.12``).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        _check_args(in_channels, num_classes)
        width_mult = 0.25
        channels = int(32 * width_mult)
        self.conv1 = ConvNormAct(in_channels, channels, 3, stride=1)
        blocks = []
        for width, stride in MOBILENET_V1_TABLE:
            width = int(width * width_mult)
            blocks.append(DepthwiseSeparableConv2d(channels, width, 3, stride=stride,
                                                   norm=nn.BatchNorm2d, act=lambda: nn.ReLU(inplace=True)))
            channels = width
        self.layers = nn.Sequential(*blocks)
        self.avgpool = GlobalAvgPool2d()
        self.fc = nn.Linear(channels, num_classes)
        self.feature_info = mobilenet_v1_feature_info(
            MOBILENET_V1_TABLE, "layers.", 0, lambda c: int(c * width_mult), first_stride=1
        )
        _he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.avgpool(self.layers(self.conv1(x))))


# --------------------------------------------------------------------------------------------
# GoogLeNet (Szegedy et al. 2014)


class GoogLeNetMini(nn.Module):
    """GoogLeNet's stem, Inception modules 3a and 4a with a max pool between them, global average
    pooling, dropout 0.4 and a linear classifier, at 1/8 of the widths of Table 1.

    ===========  ===============================================================  ============
    layer        what it computes (1x32x32 input)                                 output
    ===========  ===============================================================  ============
    conv1        8 @ 7x7, stride 2                                                8 x 16 x 16
    conv2        8 @ 1x1                                                          8 x 16 x 16
    conv3        24 @ 3x3                                                         24 x 16 x 16
    inception3a  #1x1 8, #3x3 reduce 12, #3x3 16, #5x5 reduce 2, #5x5 4, proj 4   32 x 16 x 16
    maxpool3     3x3/2, rounding up                                               32 x 8 x 8
    inception4a  #1x1 24, #3x3 reduce 12, #3x3 26, #5x5 reduce 2, #5x5 6, proj 8  64 x 8 x 8
    avgpool, fc  global average, dropout 0.4, linear                              10
    ===========  ===============================================================  ============

    The stem is the paper's (conv1, conv2, conv3) without its two max pools, which take 224
    pixels to 28 there; so 3a works on 16x16 maps and 4a on 8x8 (28x28 and 14x14 in the paper).
    Modules are :class:`convatlas.models.googlenet.InceptionModule` with the paper's true 5x5
    branch and, as in torchvision's variant, batch norm after every convolution; there are no
    auxiliary classifiers (a network this shallow does not need them).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, dropout: float = 0.4) -> None:
        super().__init__()
        _check_args(in_channels, num_classes)
        stem = [w // CONV_DIVISOR for w in (64, 64, 192)]
        self.conv1 = ConvBlock(in_channels, stem[0], 7, stride=2, padding=3, batch_norm=True)
        self.conv2 = ConvBlock(stem[0], stem[1], 1, batch_norm=True)
        self.conv3 = ConvBlock(stem[1], stem[2], 3, batch_norm=True)
        self.inception3a = self._module("inception3a", stem[2])
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = self._module("inception4a", self.inception3a.out_channels)
        self.avgpool = GlobalAvgPool2d()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.inception4a.out_channels, num_classes)
        self.feature_info = [
            FeatureInfo("inception3a", "inception3a", self.inception3a.out_channels, 2),
            FeatureInfo("inception4a", "inception4a", self.inception4a.out_channels, 4),
        ]
        _he_init(self)

    @staticmethod
    def _module(name: str, in_channels: int) -> InceptionModule:
        """The row ``name`` of Table 1 at 1/8 width, on ``in_channels`` inputs."""
        _, *widths = INCEPTION_V1_TABLE[name]
        return InceptionModule(in_channels, *(w // CONV_DIVISOR for w in widths), batch_norm=True, branch3_kernel=5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3(self.conv2(self.conv1(x)))
        x = self.inception4a(self.maxpool3(self.inception3a(x)))
        return self.fc(self.dropout(self.avgpool(x)))


# --------------------------------------------------------------------------------------------
# Builders

_MINI = "Scaled down for 32x32 digits by convatlas (not in the paper): "


@register_model(ModelCard(
    name="alexnet_mini",
    family="mini",
    paper="ImageNet Classification with Deep Convolutional Neural Networks",
    authors="Krizhevsky, Sutskever, Hinton",
    year=2012,
    input_size=(1, 32, 32),
    dataset="mnist",
    recipe="mini_digits",
    params=Published(160_130, "hand count, tests/reference/mini.py"),
    macs=Published(1_639_936, "hand count at 1x32x32, tests/reference/mini.py"),
    idea=(
        "AlexNet's five convolutions (big kernels first), ReLU, local response normalisation, overlapping "
        "max pooling and three dense layers with dropout, at 1/8 of its convolution widths and 1/16 of its "
        "dense widths. Its first layer is 7x7 with stride 2 instead of 11x11 with stride 4, for 32x32 inputs."
    ),
    notes=_MINI + "one tower, He initialisation, max pools padded by 1, adaptive 2x2 average pool before "
                  "fc6; without batch norm it needs a lower learning rate than the trainer's default 0.1 "
                  "(the demo uses 0.02).",
))
def alexnet_mini(*, num_classes: int = 10, in_channels: int = 1) -> AlexNetMini:
    """AlexNet (Krizhevsky, Sutskever, Hinton 2012) at 1/8 width for 32x32 images: conv 7/2-5-3-3-3
    with LRN and overlapping pooling, FC 256-256 with dropout. ``in_channels``: 1 (digits) or 3."""
    return AlexNetMini(in_channels=in_channels, num_classes=num_classes)


@register_model(ModelCard(
    name="vgg_mini",
    family="mini",
    paper="Very Deep Convolutional Networks for Large-Scale Image Recognition",
    authors="Simonyan, Zisserman",
    year=2014,
    arxiv="1409.1556",
    input_size=(1, 32, 32),
    dataset="mnist",
    recipe="mini_digits",
    params=Published(230_106, "hand count (batch_norm=True), tests/reference/mini.py"),
    macs=Published(2_517_504, "hand count at 1x32x32, tests/reference/mini.py"),
    idea=(
        "VGG-11 (configuration A): nothing but 3x3 convolutions in blocks separated by 2x2 max pooling, "
        "then three dense layers, at 1/8 of its convolution widths and 1/16 of its dense widths. Five "
        "poolings take a 32x32 image to 1x1, as they take 224x224 to 7x7."
    ),
    notes=_MINI + "batch norm after every convolution (batch_norm=False: the paper's plain layers).",
))
def vgg_mini(*, num_classes: int = 10, in_channels: int = 1, batch_norm: bool = True) -> VGGMini:
    """VGG-11 (Simonyan, Zisserman 2014, configuration A) at 1/8 width for 32x32 images.
    ``batch_norm``: BN after every convolution (default, as torchvision's vgg11_bn) or not (paper)."""
    return VGGMini(in_channels=in_channels, num_classes=num_classes, batch_norm=batch_norm)


@register_model(ModelCard(
    name="resnet_mini",
    family="mini",
    paper="Deep Residual Learning for Image Recognition",
    authors="He, Zhang, Ren, Sun",
    year=2015,
    arxiv="1512.03385",
    input_size=(1, 32, 32),
    dataset="mnist",
    recipe="mini_digits",
    params=Published(77_858, "hand count, tests/reference/mini.py"),
    macs=Published(4_006_528, "hand count at 1x32x32, tests/reference/mini.py"),
    idea=(
        "ResNet-18's four stages of basic residual blocks (identity shortcuts, 1x1 projections where the "
        "shape changes, batch norm, global average pooling), one block per stage and 1/8 of the widths. "
        "The 7x7/2 stem and its max pool become one 3x3 convolution, as in the paper's CIFAR networks."
    ),
    notes=_MINI + "option-B shortcuts; blocks from convatlas.models.resnet.",
))
def resnet_mini(*, num_classes: int = 10, in_channels: int = 1) -> ResNetMini:
    """ResNet-18 (He et al. 2015) with one basic block per stage at 1/8 width (8-16-32-64) and a
    3x3 stem, for 32x32 images. ``in_channels``: 1 (digits) or 3."""
    return ResNetMini(in_channels=in_channels, num_classes=num_classes)


@register_model(ModelCard(
    name="mobilenet_mini",
    family="mini",
    paper="MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications",
    authors="Howard, Zhu, Chen, Kalenichenko, Wang, Weyand, Andreetto, Adam",
    year=2017,
    arxiv="1704.04861",
    input_size=(1, 32, 32),
    dataset="mnist",
    recipe="mini_digits",
    params=Published(215_498, "hand count, tests/reference/mini.py"),
    macs=Published(3_183_616, "hand count at 1x32x32, tests/reference/mini.py"),
    idea=(
        "MobileNet v1 at width multiplier 0.25: a 3x3 convolution and the 13 depthwise-separable layers "
        "of Table 1 (3x3 depthwise then 1x1 pointwise, each with BN and ReLU), global average pooling. "
        "The first convolution keeps stride 1, so a 32x32 image ends at 2x2 as 224x224 ends at 7x7."
    ),
    notes=_MINI + "first convolution at stride 1.",
))
def mobilenet_mini(*, num_classes: int = 10, in_channels: int = 1) -> MobileNetMini:
    """MobileNet v1 (Howard et al. 2017) at width multiplier 0.25 with a stride-1 first
    convolution, for 32x32 images. ``in_channels``: 1 (digits) or 3."""
    return MobileNetMini(in_channels=in_channels, num_classes=num_classes)


@register_model(ModelCard(
    name="googlenet_mini",
    family="mini",
    paper="Going Deeper with Convolutions",
    authors="Szegedy, Liu, Jia, Sermanet, Reed, Anguelov, Erhan, Vanhoucke, Rabinovich",
    year=2014,
    arxiv="1409.4842",
    input_size=(1, 32, 32),
    dataset="mnist",
    recipe="mini_digits",
    params=Published(10_294, "hand count, tests/reference/mini.py"),
    macs=Published(1_506_176, "hand count at 1x32x32, tests/reference/mini.py"),
    idea=(
        "GoogLeNet's stem and Inception modules 3a and 4a (parallel 1x1, 3x3, 5x5 and pooled branches, with "
        "1x1 reductions, concatenated) at 1/8 of the widths of Table 1, max pooling between them, global "
        "average pooling and dropout. The stem keeps its 7x7/2, 1x1 and 3x3 convolutions but not its pools."
    ),
    notes=_MINI + "batch norm after every convolution (as torchvision's GoogLeNet), true 5x5 branches, no "
                  "auxiliary classifiers.",
))
def googlenet_mini(*, num_classes: int = 10, in_channels: int = 1) -> GoogLeNetMini:
    """GoogLeNet (Szegedy et al. 2014) with its stem and Inception modules 3a and 4a at 1/8 width,
    for 32x32 images. ``in_channels``: 1 (digits) or 3."""
    return GoogLeNetMini(in_channels=in_channels, num_classes=num_classes)
