"""DeepLab v1 and v2: atrous convolution for dense prediction.

Chen, Papandreou, Kokkinos, Murphy, Yuille (2015). "Semantic Image Segmentation with Deep
Convolutional Nets and Fully Connected CRFs", ICLR 2015, arXiv:1412.7062 (v1).
Chen, Papandreou, Kokkinos, Murphy, Yuille (2018). "DeepLab: Semantic Image Segmentation with Deep
Convolutional Nets, Atrous Convolution, and Fully Connected CRFs", TPAMI 40(4), arXiv:1606.00915 (v2).

The idea: instead of downsampling by 32 and learning to upsample, remove the last strides of the
classification network and dilate the filters that follow by the stride removed (the "hole" or
atrous algorithm: a k x k kernel whose taps are r pixels apart), so the network computes its
ImageNet features densely at output stride 8 with the same weights. The score map is interpolated
bilinearly to the input, and a fully connected CRF (Krähenbühl and Koltun 2011) sharpens the
boundaries afterwards; the papers' published numbers include it. The CRF is not part of these
modules (``convatlas.segmentation.crf``).

* v1 ``deeplab_v1_largefov``: VGG-16 with pool4 and pool5 at stride 1, conv5 dilated by 2, and
  ``fc6`` a 3x3 convolution with dilation 12 and 1024 filters (the "LargeFOV" field of view).
* v2 ``deeplab_v2``: ResNet-101 dilated to output stride 8 and atrous spatial pyramid pooling
  (ASPP): four parallel 3x3 convolutions with dilations 6, 12, 18, 24, each straight to class
  scores, summed.
* ``deeplab_mini``: the same ideas at the size of the 64x64 digit scenes.

Score maps are interpolated with ``align_corners=True``: DeepLab's layers pad "same", so pixel
``v`` of a stride-8 map sits on input pixel ``8 v`` and a ``8k + 1`` input (321, 513) gives a
``k + 1`` map whose corners are the image's corners.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from convatlas._checks import fraction, positive_int
from convatlas.layers.basic import ConvNormAct
from convatlas.layers.init import init_weights, kaiming_normal, normal, xavier_uniform
from convatlas.models.features import FeatureInfo
from convatlas.models.vgg import make_features
from convatlas.registry import ModelCard, Published, card_with, register_model
from convatlas.segmentation._heads import backbone_taps, dilate_resnet, zoo_backbone

__all__ = [
    "DeepLabV1",
    "ASPP",
    "DeepLabV2",
    "DeepLabMini",
    "vgg16_to_deeplab",
    "deeplab_v1_largefov",
    "deeplab_v2",
    "deeplab_mini",
]


def _upsample(scores: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    return F.interpolate(scores, size=tuple(size), mode="bilinear", align_corners=True)


class DeepLabV1(nn.Module):
    """DeepLab v1 on VGG-16 (Chen et al. 2015, Sections 3.1 and 4.1).

    ``features``: VGG-16 (configuration D, numbered as torchvision's ``vgg16().features``) with
    3x3 max pools of padding 1 - stride 2 for pool1..pool3, stride 1 for pool4 and pool5, as in
    the released prototxt [M] - and conv5_1..conv5_3 dilated by 2 (the stride pool4 no longer has). Then
    ``fc6`` (``fc6_kernel`` x ``fc6_kernel``, dilation ``fc6_rate``, ``fc6_channels`` filters;
    the stride 2 of pool5 and of the original 7x7 window are folded into the rate), ``fc7`` (1x1,
    same width), each with ReLU and dropout 0.5, and ``fc8`` (1x1, one score per class): output
    stride 8, interpolated bilinearly to the input.

    Table 2 of the paper compares fields of view: 7x7 rate 4 with 4096 filters (134.3M params),
    4x4 rate 4 and 4x4 rate 8 (65.1M), and 3x3 rate 12 with 1024 filters, "LargeFOV" (20.5M) [M]:
    the large field of view of the 7x7 net at a fraction of its parameters and time. These
    arguments rebuild each of them (the counts are exact: see the tests). ``feature_info``: ``conv3`` (/4), ``conv4`` (/8), ``conv5`` (/8),
    ``fc7`` (/8).
    """

    def __init__(
        self,
        *,
        num_classes: int = 21,
        fc6_kernel: int = 3,
        fc6_rate: int = 12,
        fc6_channels: int = 1024,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        positive_int("num_classes", num_classes)
        positive_int("fc6_kernel", fc6_kernel)
        positive_int("fc6_rate", fc6_rate)
        positive_int("fc6_channels", fc6_channels)
        fraction("dropout", dropout)
        if fc6_rate * (fc6_kernel - 1) % 2:
            raise ValueError(
                f"fc6 must keep the map size: rate * (kernel - 1) must be even, got rate {fc6_rate}, "
                f"kernel {fc6_kernel}"
            )
        self.features = make_features("D")
        pools = [i for i, layer in enumerate(self.features) if isinstance(layer, nn.MaxPool2d)]
        for block, i in enumerate(pools, start=1):
            self.features[i] = nn.MaxPool2d(kernel_size=3, stride=2 if block <= 3 else 1, padding=1, ceil_mode=True)
        for i in range(pools[3] + 1, pools[4]):  # conv5_1 .. conv5_3
            if isinstance(self.features[i], nn.Conv2d):
                self.features[i] = nn.Conv2d(512, 512, kernel_size=3, padding=2, dilation=2)
        pad = fc6_rate * (fc6_kernel - 1) // 2
        self.fc6 = nn.Conv2d(512, fc6_channels, fc6_kernel, padding=pad, dilation=fc6_rate)
        self.relu6 = nn.ReLU(inplace=True)
        self.drop6 = nn.Dropout(dropout)
        self.fc7 = nn.Conv2d(fc6_channels, fc6_channels, kernel_size=1)
        self.relu7 = nn.ReLU(inplace=True)
        self.drop7 = nn.Dropout(dropout)
        self.fc8 = nn.Conv2d(fc6_channels, num_classes, kernel_size=1)
        self.feature_info = [
            FeatureInfo("conv3", f"features.{pools[2] - 1}", 256, 4),
            FeatureInfo("conv4", f"features.{pools[3] - 1}", 512, 8),
            FeatureInfo("conv5", f"features.{pools[4] - 1}", 512, 8),
            FeatureInfo("fc7", "relu7", fc6_channels, 8),
        ]
        init_weights(self, conv=xavier_uniform())
        init_weights(self.fc8, conv=normal(std=0.01))  # the released solver's Gaussian filler

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        h = self.drop6(self.relu6(self.fc6(h)))
        h = self.drop7(self.relu7(self.fc7(h)))
        return _upsample(self.fc8(h), x.shape[-2:])


def vgg16_to_deeplab(
    state: Mapping[str, torch.Tensor], fc6_kernel: int = 3, fc6_channels: int = 1024
) -> dict[str, torch.Tensor]:
    """torchvision ``vgg16`` state_dict -> :class:`DeepLabV1` keys, shrinking the fully connected
    layers by decimation as the paper does (Section 4.1): ``fc6``'s 7x7 kernel keeps every third
    tap (3x3) or the taps 0, 2, 4, 6 (4x4) and, for 1024 filters, every fourth filter; ``fc7`` keeps
    every fourth row and column. ``features.*`` keep their names; the 1000-way layer is dropped.
    Load with ``model.load_state_dict(..., strict=False)`` (``fc8`` is new)."""
    taps = {3: slice(0, 7, 3), 4: slice(0, 7, 2), 7: slice(0, 7, 1)}
    if fc6_kernel not in taps:
        raise ValueError(f"fc6 kernels decimated from VGG-16's 7x7: 3, 4 or 7, got {fc6_kernel}")
    weight = state["classifier.0.weight"]  # (4096, 512 * 7 * 7)
    rows = weight.shape[0]
    if rows % fc6_channels:
        raise ValueError(f"fc6_channels must divide {rows} (every n-th filter is kept), got {fc6_channels}")
    step = rows // fc6_channels
    out = {k: v for k, v in state.items() if k.startswith("features.")}
    fc6 = weight.reshape(rows, weight.shape[1] // 49, 7, 7)
    out["fc6.weight"] = fc6[::step, :, taps[fc6_kernel], taps[fc6_kernel]].contiguous()
    out["fc6.bias"] = state["classifier.0.bias"][::step].clone()
    fc7 = state["classifier.3.weight"][::step, ::step]
    out["fc7.weight"] = fc7.reshape(*fc7.shape, 1, 1).clone()
    out["fc7.bias"] = state["classifier.3.bias"][::step].clone()
    return out


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling as DeepLab v2 has it ("ASPP-L", Fig. 4 and Section 3.3):
    parallel 3x3 convolutions ``c0``, ``c1``, ... with dilations ``rates`` (padding = rate, so the
    map keeps its size), each straight from the features to the class scores, summed."""

    def __init__(self, in_channels: int, num_classes: int, rates: Sequence[int]) -> None:
        super().__init__()
        if not rates:
            raise ValueError("ASPP needs at least one rate")
        self.rates = tuple(positive_int("rate", r) for r in rates)
        for index, rate in enumerate(self.rates):
            self.add_module(f"c{index}", nn.Conv2d(in_channels, num_classes, 3, padding=rate, dilation=rate))
        init_weights(self, conv=normal(std=0.01))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = iter(self.children())
        out = next(branches)(x)
        for branch in branches:
            out = out + branch(x)
        return out


class DeepLabV2(nn.Module):
    """DeepLab v2 with ResNet-101 and ASPP (Chen et al. 2018, Sections 3.1-3.3 and 4.1).

    ``backbone``: ResNet-101 as the paper's Caffe net (MSRA's, the stride of a down-sampling block
    in its first 1x1: the zoo's ``resnet101_v1``) with layer3 (res4) at stride 1 and dilation 2 and
    layer4 (res5) at stride 1 and dilation 4, every block alike: output stride 8. ``aspp``:
    :class:`ASPP` on layer4's 2048 channels. Scores are interpolated bilinearly to the input.
    The paper's best VOC result also fuses three input scales (MSC), pre-trains on COCO and adds
    the CRF; this module is the single-scale network.
    """

    def __init__(self, *, num_classes: int = 21, rates: Sequence[int] = (6, 12, 18, 24)) -> None:
        super().__init__()
        positive_int("num_classes", num_classes)
        self.backbone = zoo_backbone(
            "resnet101_v1", ["layer4"],
            prepare=lambda m: dilate_resnet(m, {"layer3": 2, "layer4": 4}, first_block="same"),
        )
        self.taps, self.feature_info = backbone_taps(self.backbone)
        self.aspp = ASPP(2048, num_classes, rates)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.taps["layer4"](self.backbone(x)["layer4"])
        return _upsample(self.aspp(features), x.shape[-2:])


class DeepLabMini(nn.Module):
    """DeepLab's ideas at the size of the digit scenes: three VGG-like blocks with BN and 2x2
    pools (16, 32, 64-64 filters; stride 8), two 3x3 conv-BN-ReLU of 64 filters dilated by 2 in
    place of a fourth block, and :class:`ASPP` with rates 1, 2, 3, 4 (the paper's 6, 12, 18, 24
    scaled to an 8x8 map, as 41x41 maps are to 321 crops) straight to the scores. Its 2x2 pools
    put pixel ``v`` of the stride-8 map at ``8 v + 3.5``, so its scores are interpolated with
    ``align_corners=False``."""

    CONFIG = [16, "M", 32, "M", 64, 64, "M"]

    def __init__(self, *, num_classes: int = 11, in_channels: int = 1, rates: Sequence[int] = (1, 2, 3, 4)) -> None:
        super().__init__()
        positive_int("num_classes", num_classes)
        positive_int("in_channels", in_channels)
        self.features = make_features(self.CONFIG, batch_norm=True, in_channels=in_channels)
        self.dilated = nn.Sequential(
            ConvNormAct(64, 64, 3, dilation=2),
            ConvNormAct(64, 64, 3, dilation=2),
        )
        self.aspp = ASPP(64, num_classes, rates)
        self.feature_info = [
            FeatureInfo("conv3", f"features.{len(self.features) - 2}", 64, 4),
            FeatureInfo("dilated", "dilated", 64, 8),
        ]
        init_weights(self.features, conv=kaiming_normal(mode="fan_out", nonlinearity="relu"))
        init_weights(self.dilated, conv=kaiming_normal(mode="fan_out", nonlinearity="relu"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.aspp(self.dilated(self.features(x)))
        return F.interpolate(scores, size=x.shape[-2:], mode="bilinear", align_corners=False)


# --------------------------------------------------------------------------------------------
# Builders.

_CRF = "The paper applies the fully connected CRF to these scores (convatlas.segmentation.crf)."
_V1 = ModelCard(
    name="deeplab_v1_largefov",
    family="deeplab",
    paper="Semantic Image Segmentation with Deep Convolutional Nets and Fully Connected CRFs",
    authors="Chen, Papandreou, Kokkinos, Murphy, Yuille",
    year=2015,
    arxiv="1412.7062",
    input_size=(3, 321, 321),
    dataset="voc",
    num_classes=21,
    task="segmentation",
    idea=(
        "Atrous ('hole') convolution: drop the last poolings' strides and dilate the filters after "
        "them, so an ImageNet network computes dense features at output stride 8 with its own weights; "
        "bilinear interpolation to the input and a fully connected CRF recover sharp boundaries."
    ),
)


@register_model(card_with(
    _V1,
    params=Published(20_505_429, (
        "exact count here: VGG-16 convolutions 14,714,688 + fc6 512*3*3*1024+1024 = 4,719,616 + fc7 "
        "1024*1024+1024 = 1,049,600 + fc8 1024*21+21 = 21,525; paper Table 2: 20.5M [M] (and 134.3M, 65.1M "
        "for its 7x7 and 4x4 variants, which these arguments reproduce exactly)")),
    miou=Published(70.3, (
        "DeepLab-CRF-LargeFOV, VOC2012 test, with the CRF (Table 4) [M] in reference/segmentation-"
        "detection.md; val: 62.25 without, 67.64 with CRF [M]; multi-scale DeepLab-MSc-CRF-LargeFOV "
        "71.6 test [V: abstract]")),
    notes="Input 321x321 crops in training (8k+1 sizes align the stride-8 map); 513 at test. " + _CRF,
))
def deeplab_v1_largefov(
    *, num_classes: int = 21, fc6_kernel: int = 3, fc6_rate: int = 12, fc6_channels: int = 1024
) -> DeepLabV1:
    """DeepLab-LargeFOV (Chen et al. 2015, "Semantic Image Segmentation with Deep Convolutional Nets
    and Fully Connected CRFs", ICLR, arXiv:1412.7062): VGG-16 made dense at output stride 8 by
    atrous convolution, with a 3x3 ``fc6`` of dilation 12 and 1024 filters. The paper post-processes
    its output with a fully connected CRF (``convatlas.segmentation.crf``), not part of this module.

    ``fc6_kernel``, ``fc6_rate``, ``fc6_channels``: the field-of-view variants of Table 2 (7, 4,
    4096 for DeepLab-CRF-7x7; 4, 4 or 4, 8 with 4096; 3, 12, 1024 is LargeFOV).
    """
    return DeepLabV1(num_classes=num_classes, fc6_kernel=fc6_kernel, fc6_rate=fc6_rate, fc6_channels=fc6_channels)


@register_model(card_with(
    _V1,
    name="deeplab_v2",
    paper="DeepLab: Semantic Image Segmentation with Deep Convolutional Nets, Atrous Convolution, and Fully Connected CRFs",
    year=2018,
    arxiv="1606.00915",
    idea=(
        "Atrous spatial pyramid pooling: parallel atrous convolutions with rates 6, 12, 18, 24 on a "
        "ResNet-101 made dense at output stride 8 see objects at several scales at once; their class "
        "scores are summed, interpolated and refined by a fully connected CRF."
    ),
    params=Published(44_048_532, (
        "exact count here: ResNet-101 without fc 44,549,160 - 2,049,000 = 42,500,160 + ASPP "
        "4*(2048*3*3*21 + 21) = 1,548,372; the paper prints none")),
    miou=Published(79.7, (
        "VOC2012 test [V: abstract], with multi-scale inputs, COCO pre-training and the CRF; this "
        "module is the single-scale network")),
    notes="Published VOC settings (kazuto1011/deeplab-pytorch voc12.yaml [V]): rates 6, 12, 18, 24, "
          "lr 2.5e-4 poly 0.9, 20k iterations, 321 crops. " + _CRF,
))
def deeplab_v2(*, num_classes: int = 21, rates: Sequence[int] = (6, 12, 18, 24)) -> DeepLabV2:
    """DeepLab v2 (Chen et al. 2018, "DeepLab: Semantic Image Segmentation with Deep Convolutional
    Nets, Atrous Convolution, and Fully Connected CRFs", TPAMI, arXiv:1606.00915): ResNet-101 dilated
    to output stride 8 and ASPP-L, four 3x3 atrous convolutions to the class scores, summed. The
    paper refines the result with a fully connected CRF (``convatlas.segmentation.crf``).

    ``rates``: the ASPP dilations ((6, 12, 18, 24) is ASPP-L; the paper's ASPP-S is (2, 4, 8, 12)).
    """
    return DeepLabV2(num_classes=num_classes, rates=tuple(rates))


@register_model(card_with(
    _V1,
    name="deeplab_mini",
    paper="DeepLab: Semantic Image Segmentation with Deep Convolutional Nets, Atrous Convolution, and Fully Connected CRFs",
    year=2018,
    arxiv="1606.00915",
    input_size=(1, 64, 64),
    dataset="digit-scenes",
    recipe="digit_scenes",
    num_classes=11,
    params=Published(159_948, (
        "exact count here: convs (1*9+1)*16 + (16*9+1)*32 + (32*9+1)*64 + (64*9+1)*64 = 60,224 + BN "
        "2*(16+32+64+64) = 352 + dilated 2*64*9*64 = 73,728 + BN 256 + ASPP 4*(64*9*11+11) = 25,388; "
        "the dilated convolutions have no bias, a BN follows them")),
    notes="A small network, not in the paper: output stride 8, dilation and ASPP at the size of the 64x64 digit scenes.",
))
def deeplab_mini(*, num_classes: int = 11, in_channels: int = 1) -> DeepLabMini:
    """A small DeepLab for the digit scenes, after Chen et al. (2018, arXiv:1606.00915): three
    pooled blocks (stride 8), two dilated 3x3 convolutions instead of a fourth pool, ASPP with
    rates 1-4 to the class scores, bilinear interpolation to the input.

    ``in_channels``: channels of the input images (1 for the digit scenes).
    """
    return DeepLabMini(num_classes=num_classes, in_channels=in_channels)
