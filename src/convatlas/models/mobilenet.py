"""MobileNet v1 (depthwise separable convolutions) and MobileNet v2 (inverted residuals).

**MobileNet v1.** Howard, Zhu, Chen, Kalenichenko, Wang, Weyand, Andreetto, Adam (2017).
"MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications",
arXiv:1704.04861.

A standard ``D_K x D_K`` convolution from ``M`` to ``N`` channels on a ``D_F x D_F`` map costs
``D_K^2 * M * N * D_F^2`` multiply-adds. A *depthwise separable* convolution factors it into a
depthwise ``D_K x D_K`` convolution (one filter per input channel, ``D_K^2 * M * D_F^2``) and a
pointwise 1x1 convolution (``M * N * D_F^2``): a reduction of ``1/N + 1/D_K^2`` (8-9x for 3x3).
Two hyper-parameters shrink the network (Section 3.3-3.4):

* width multiplier ``alpha`` (``width_mult``): every layer has ``int(alpha * channels)`` channels,
  cost and parameters fall roughly by ``alpha^2``;
* resolution multiplier ``rho`` (``resolution_mult``): the input is ``224 * rho`` pixels square
  (224, 192, 160, 128 for rho = 1, 6/7, 5/7, 4/7), cost falls by ``rho^2``, parameters are unchanged.
  The network itself is fully convolutional up to a global pool, so ``rho`` only fixes the native
  input size, stored as ``model.input_size``.

**MobileNet v2.** Sandler, Howard, Zhu, Zhmoginov, Chen (2018). "MobileNetV2: Inverted Residuals
and Linear Bottlenecks", CVPR 2018, arXiv:1801.04381.

The *inverted residual* block expands a thin bottleneck of ``c`` channels by a factor ``t`` with a
1x1 conv (ReLU6), filters it with a 3x3 depthwise conv (ReLU6), and projects back with a *linear*
1x1 conv (no activation: ReLU would destroy information in a low-dimensional space); the shortcut
joins the thin bottlenecks when stride is 1 and widths agree. Widths are multiplied by
``width_mult`` and rounded to a multiple of 8; the last 1x1 conv keeps 1280 channels for multipliers
below 1. Its attribute names read like the paper (``expand``, ``depthwise``, ``project``);
``torchvision_keys`` maps torchvision's numbered keys onto them.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Callable

import torch
from torch import nn

from convatlas._checks import positive_number
from convatlas.layers.basic import ConvNormAct, make_divisible
from convatlas.layers.init import init_weights, kaiming_normal, normal
from convatlas.models._torchvision_keys import inverted_residual_keys
from convatlas.models.features import FeatureInfo
from convatlas.registry import ModelCard, Published, card_with, register_model

__all__ = [
    "DepthwiseSeparable",
    "MOBILENET_V1_BLOCKS",
    "mobilenet_v1_feature_info",
    "MobileNetV1",
    "mobilenet_v1",
    "mobilenet_v1_075",
    "mobilenet_v1_050",
    "mobilenet_v1_025",
    "InvertedResidual",
    "MobileNetV2",
    "mobilenet_v2",
    "mobilenet_v2_140",
    "mobilenet_v2_075",
    "mobilenet_v2_050",
    "mobilenet_v2_035",
]


def _check_multiplier(name: str, value: float, meaning: str) -> float:
    """A width or resolution multiplier: a finite number > 0."""
    positive_number(f"{name} ({meaning})", value)
    if not math.isfinite(value):
        raise ValueError(f"{name} ({meaning}) must be a finite number, got {value!r}")
    return float(value)


def _init_weights(model: nn.Module) -> None:
    """torchvision's MobileNet initialisation: He normal (fan_out) convolutions, N(0, 0.01^2) classifier."""
    init_weights(model, conv=kaiming_normal(mode="fan_out"), linear=normal(std=0.01))


def _last_at_each_resolution(strides: list[int]) -> list[int]:
    """Indices of the layers after which the next layer strides (and of the last layer)."""
    return [i for i in range(len(strides)) if i + 1 == len(strides) or strides[i + 1] > 1]


# =============================================================================================
# MobileNet v1


class DepthwiseSeparable(nn.Module):
    """3x3 depthwise conv-BN-ReLU (stride ``stride``), then 1x1 pointwise conv-BN-ReLU (Fig. 3)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.depthwise = ConvNormAct(in_channels, in_channels, 3, stride, groups=in_channels)
        self.pointwise = ConvNormAct(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


# Table 1 after the first 3x3/2 conv of 32 channels: (pointwise output channels, depthwise stride).
# Table 1 prints "Conv dw / s2" for the last depthwise layer, but it works on 7x7 maps and outputs
# 7x7: its stride is 1 (as in every release).
MOBILENET_V1_BLOCKS = [
    (64, 1),
    (128, 2), (128, 1),
    (256, 2), (256, 1),
    (512, 2), (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
    (1024, 2), (1024, 1),
]


def mobilenet_v1_feature_info(
    blocks: list[tuple[int, int]], prefix: str, first_number: int, width: Callable[[int], int], *, first_stride: int
) -> list[FeatureInfo]:
    """The last depthwise-separable block at each resolution of ``blocks`` (rows of Table 1 after
    the first convolution, as :data:`MOBILENET_V1_BLOCKS`).

    The blocks are the modules ``{prefix}{first_number}`` onwards and are named ``block2`` ..
    ``block14`` by their row of Table 1; ``width(c)`` is a block's output width, ``first_stride``
    the stride of the convolution before them.
    """
    strides = [stride for _, stride in blocks]
    return [
        FeatureInfo(f"block{i + 2}", f"{prefix}{first_number + i}", width(blocks[i][0]),
                    first_stride * math.prod(strides[: i + 1]))
        for i in _last_at_each_resolution(strides)
    ]


class MobileNetV1(nn.Module):
    """MobileNet v1 (Table 1) with width multiplier ``alpha``: channels ``max(1, int(alpha * c))``.

    ``features.conv1`` is the first row of Table 1 and ``features.block2`` .. ``block14`` the
    depthwise-separable rows. Feature maps: the last block at each resolution, ``block2`` (/2),
    ``block4`` (/4), ``block6`` (/8), ``block12`` (/16), ``block14`` (/32).
    """

    def __init__(self, width_mult: float = 1.0, resolution_mult: float = 1.0, num_classes: int = 1000) -> None:
        super().__init__()
        alpha = _check_multiplier("width_mult", width_mult, "the width multiplier alpha; the paper uses 1, 0.75, 0.5, 0.25")
        rho = _check_multiplier("resolution_mult", resolution_mult,
                              "the resolution multiplier rho; input side = 224*rho, e.g. 1, 6/7, 5/7, 4/7")

        def width(c: int) -> int:
            return max(1, int(c * alpha))

        channels = width(32)
        layers: OrderedDict[str, nn.Module] = OrderedDict(conv1=ConvNormAct(3, channels, 3, 2))
        for i, (out, stride) in enumerate(MOBILENET_V1_BLOCKS, start=2):
            layers[f"block{i}"] = DepthwiseSeparable(channels, width(out), stride)
            channels = width(out)
        self.features = nn.Sequential(layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        side = round(224 * rho)
        self.input_size = (3, side, side)
        self.width_mult, self.resolution_mult = alpha, rho
        self.feature_info = mobilenet_v1_feature_info(MOBILENET_V1_BLOCKS, "features.block", 2, width, first_stride=2)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


_V1_IDEA = (
    "Depthwise separable convolutions (a per-channel 3x3 filter followed by a 1x1 conv that mixes "
    "channels) replace standard convolutions and cut computation 8-9x; a width multiplier alpha and a "
    "resolution multiplier rho trade accuracy for latency and size in one family."
)
_V1 = ModelCard(
    name="mobilenet_v1",
    family="mobilenet",
    paper="MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications",
    authors="Howard, Zhu, Chen, Kalenichenko, Wang, Weyand, Andreetto, Adam",
    year=2017,
    arxiv="1704.04861",
    input_size=(3, 224, 224),
    dataset="imagenet",
    idea=_V1_IDEA,
)

# Table 6 rows: alpha, name suffix, exact params (paper-numbers.md s.15 [C], with BN),
# paper million mult-adds, paper top-1, TF-slim top-5 (checkpoint of the same net at 224).
_V1_TABLE = {
    1.0: ("", 4_231_976, 569e6, 70.6, 89.9, "mobilenetv1_100"),
    0.75: ("_075", 2_585_560, 325e6, 68.4, 88.2, None),
    0.5: ("_050", 1_331_592, 149e6, 63.7, 84.9, None),
    0.25: ("_025", 470_072, 41e6, 50.6, 74.2, None),
}


def _v1_card(alpha: float) -> ModelCard:
    suffix, params, macs, top1, top5, timm = _V1_TABLE[alpha]
    return card_with(
        _V1,
        name=f"mobilenet_v1{suffix}",
        params=Published(params, f"Table 6 ({params / 1e6:.1f}M); exact count paper-numbers.md s.15 [C] with BN"),
        macs=Published(macs, "Table 6, million mult-adds at 224"),
        top1=Published(top1, "Table 6"),
        top5=Published(top5, f"TF-slim README, MobileNet_v1_{alpha}_224 checkpoint"),
        timm=timm,
        notes=f"{alpha} MobileNet-224. Table 7 (alpha=1): 224/192/160/128 -> 569/418/290/186M mult-adds, "
              "70.6/69.1/67.2/64.4% top-1; pass resolution_mult=r/224. torchvision has no MobileNet v1.",
        extra={"width_mult": alpha},
    )


@register_model(_v1_card(1.0))
def mobilenet_v1(*, num_classes: int = 1000, width_mult: float = 1.0, resolution_mult: float = 1.0) -> MobileNetV1:
    """MobileNet v1 (Howard et al. 2017, arXiv:1704.04861).

    Args:
        width_mult: ``alpha`` > 0; every layer gets ``int(alpha * c)`` channels (Table 6: 1, 0.75, 0.5, 0.25).
        resolution_mult: ``rho`` > 0; the native input is ``224*rho`` square (Table 7: 224, 192,
            160, 128), recorded as ``model.input_size``. Parameters do not change, MACs scale by ``rho^2``.
    """
    return MobileNetV1(width_mult, resolution_mult, num_classes)


@register_model(_v1_card(0.75))
def mobilenet_v1_075(*, num_classes: int = 1000, resolution_mult: float = 1.0) -> MobileNetV1:
    """0.75 MobileNet (Howard et al. 2017, arXiv:1704.04861, Table 6); ``resolution_mult`` = rho."""
    return MobileNetV1(0.75, resolution_mult, num_classes)


@register_model(_v1_card(0.5))
def mobilenet_v1_050(*, num_classes: int = 1000, resolution_mult: float = 1.0) -> MobileNetV1:
    """0.5 MobileNet (Howard et al. 2017, arXiv:1704.04861, Table 6); ``resolution_mult`` = rho."""
    return MobileNetV1(0.5, resolution_mult, num_classes)


@register_model(_v1_card(0.25))
def mobilenet_v1_025(*, num_classes: int = 1000, resolution_mult: float = 1.0) -> MobileNetV1:
    """0.25 MobileNet (Howard et al. 2017, arXiv:1704.04861, Table 6); ``resolution_mult`` = rho."""
    return MobileNetV1(0.25, resolution_mult, num_classes)


# =============================================================================================
# MobileNet v2


class InvertedResidual(nn.Module):
    """Bottleneck residual block (Table 1): 1x1 expand (x t, ReLU6) -> 3x3 depthwise (ReLU6) ->
    1x1 linear projection; ``x + block(x)`` when stride is 1 and the widths agree.
    With ``t = 1`` there is no expansion layer."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(in_channels * expand_ratio))
        relu6 = lambda: nn.ReLU6(inplace=True)  # noqa: E731
        self.expand = ConvNormAct(in_channels, hidden, 1, act=relu6) if expand_ratio != 1 else None
        self.depthwise = ConvNormAct(hidden, hidden, 3, stride, groups=hidden, act=relu6)
        self.project = ConvNormAct(hidden, out_channels, 1, act=None)  # linear bottleneck
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.expand(x) if self.expand is not None else x
        out = self.project(self.depthwise(out))
        return x + out if self.use_residual else out


# Table 2: expansion t, output channels c, repeats n, first stride s (after a 3x3/2 conv of 32).
MOBILENET_V2_SETTINGS = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


class MobileNetV2(nn.Module):
    """MobileNet v2 (Table 2). ``features[0]`` is the stem, ``features[1..17]`` the bottleneck
    blocks, ``features[18]`` the final 1x1 conv to 1280 (or ``1280*width_mult`` when larger).

    Feature maps, named ``stage{i}`` after row ``i`` of Table 2 (1: the stem, 2-8: the bottleneck
    rows, 9: the 1x1 conv): the last row at each resolution, ``stage2`` (/2), ``stage3`` (/4),
    ``stage4`` (/8), ``stage6`` (/16), ``stage9`` (/32).
    """

    def __init__(self, width_mult: float = 1.0, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        alpha = _check_multiplier("width_mult", width_mult,
                                "the width multiplier; the paper uses 0.35, 0.5, 0.75, 1.0, 1.3, 1.4")
        relu6 = lambda: nn.ReLU6(inplace=True)  # noqa: E731
        channels = make_divisible(32 * alpha, 8)
        layers: list[nn.Module] = [ConvNormAct(3, channels, 3, 2, act=relu6)]
        rows = [(0, channels, 2)]  # (index of the row's last layer in features, width, stride)
        for t, c, n, s in MOBILENET_V2_SETTINGS:
            out = make_divisible(c * alpha, 8)
            for i in range(n):
                layers.append(InvertedResidual(channels, out, s if i == 0 else 1, t))
                channels = out
            rows.append((len(layers) - 1, out, s))
        self.last_channel = make_divisible(1280 * max(1.0, alpha), 8)
        layers.append(ConvNormAct(channels, self.last_channel, 1, act=relu6))
        rows.append((len(layers) - 1, self.last_channel, 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(OrderedDict(
            dropout=nn.Dropout(dropout),
            fc=nn.Linear(self.last_channel, num_classes),
        ))
        self.width_mult = alpha
        reductions = [math.prod(stride for _, _, stride in rows[: r + 1]) for r in range(len(rows))]
        self.feature_info = [
            FeatureInfo(f"stage{r + 1}", f"features.{rows[r][0]}", rows[r][1], reductions[r])
            for r in _last_at_each_resolution([stride for _, _, stride in rows])
        ]
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def mobilenet_v2_torchvision_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename torchvision ``mobilenet_v2`` keys to ours.

    torchvision numbers everything: ``features.0.{0,1}`` (stem conv/BN), ``features.i.conv.j...``
    inside a block (expand, depthwise as conv-BN pairs, then the projection conv and BN as
    ``conv.2``/``conv.3``; one index less without expansion), ``classifier.1`` (the linear layer).
    """
    return inverted_residual_keys(state, r"(features\.\d+)\.conv", ("expand", "depthwise", "project.conv", "project.bn"),
                                  frozenset({"expand", "depthwise"}))


_V2_IDEA = (
    "The inverted residual block expands a thin bottleneck with a 1x1 conv, filters it depthwise "
    "and projects it back linearly (no ReLU in the low-dimensional bottleneck), with shortcuts "
    "between the thin layers: more accuracy than MobileNet v1 at about half the operations."
)
_V2 = ModelCard(
    name="mobilenet_v2",
    family="mobilenet",
    paper="MobileNetV2: Inverted Residuals and Linear Bottlenecks",
    authors="Sandler, Howard, Zhu, Zhmoginov, Chen",
    year=2018,
    arxiv="1801.04381",
    input_size=(3, 224, 224),
    dataset="imagenet",
    idea=_V2_IDEA,
)


@register_model(
    card_with(
        _V2,
        params=Published(3_504_872, "torchvision meta num_params (Table 4: 3.4M)"),
        macs=Published(300e6, "Table 4 (300M MAdds); torchvision meta _ops 0.301"),
        top1=Published(72.0, "Table 4"),
        top5=Published(90.286, "torchvision IMAGENET1K_V1 meta"),
        torchvision="mobilenet_v2",
        timm="mobilenetv2_100",
        notes="create_model('mobilenet_v2', width_mult=a) for any multiplier; named variants "
              "mobilenet_v2_140/_075/_050/_035 follow the TF-slim grid.",
        extra={"torchvision_top1": 71.878, "torchvision_top5": 90.286},
    ),
    torchvision_keys=mobilenet_v2_torchvision_keys,
)
def mobilenet_v2(*, num_classes: int = 1000, width_mult: float = 1.0) -> MobileNetV2:
    """MobileNet v2 (Sandler et al. 2018, arXiv:1801.04381, Table 2).

    ``width_mult``: multiplier > 0 of every width, rounded to a multiple of 8 (never more than
    10% down); the final 1x1 conv keeps 1280 channels when the multiplier is below 1.
    """
    return MobileNetV2(width_mult, num_classes)


# Width multipliers of the TF-slim grid: alpha -> (name suffix, exact params (timm, with BN),
# million mult-adds at 224 and source, top-1 and source, TF-slim top-5).
_V2_TABLE = {
    1.4: ("140", 6_108_776, 585e6, "Table 4 (585M MAdds; TF-slim 582M)", 74.7, "Table 4", 92.5),
    0.75: ("075", 2_636_424, 209e6, "TF-slim README (209M at 224)", 69.8, "TF-slim README", 89.6),
    0.5: ("050", 1_968_680, 97e6, "TF-slim README (97M at 224)", 65.4, "TF-slim README", 86.4),
    0.35: ("035", 1_677_128, 59e6, "TF-slim README (59M at 224)", 60.3, "TF-slim README", 82.9),
}


def _v2_card(alpha: float) -> ModelCard:
    suffix, params, macs, macs_source, top1, top1_source, top5 = _V2_TABLE[alpha]
    return card_with(
        _V2,
        name=f"mobilenet_v2_{suffix}",
        params=Published(params, f"timm mobilenetv2_{suffix} (paper-numbers.md s.16, with BN)"),
        macs=Published(macs, macs_source),
        top1=Published(top1, top1_source),
        top5=Published(top5, f"TF-slim README, mobilenet_v2_{alpha}_224"),
        torchvision="mobilenet_v2",
        timm=f"mobilenetv2_{suffix}",
        notes=f"torchvision: mobilenet_v2(width_mult={alpha}) (no released weights).",
        extra={"width_mult": alpha},
    )


@register_model(_v2_card(1.4), torchvision_keys=mobilenet_v2_torchvision_keys)
def mobilenet_v2_140(*, num_classes: int = 1000) -> MobileNetV2:
    """MobileNet v2 with width multiplier 1.4 (Sandler et al. 2018, arXiv:1801.04381, Table 4):
    every width x1.4 and a 1792-channel last conv; the same network as
    create_model('mobilenet_v2', width_mult=1.4)."""
    return MobileNetV2(1.4, num_classes)


@register_model(_v2_card(0.75), torchvision_keys=mobilenet_v2_torchvision_keys)
def mobilenet_v2_075(*, num_classes: int = 1000) -> MobileNetV2:
    """MobileNet v2 with width multiplier 0.75 (Sandler et al. 2018, arXiv:1801.04381; TF-slim
    grid): every width x0.75, the last conv kept at 1280; the same network as
    create_model('mobilenet_v2', width_mult=0.75)."""
    return MobileNetV2(0.75, num_classes)


@register_model(_v2_card(0.5), torchvision_keys=mobilenet_v2_torchvision_keys)
def mobilenet_v2_050(*, num_classes: int = 1000) -> MobileNetV2:
    """MobileNet v2 with width multiplier 0.5 (Sandler et al. 2018, arXiv:1801.04381; TF-slim
    grid): every width x0.5, the last conv kept at 1280; the same network as
    create_model('mobilenet_v2', width_mult=0.5)."""
    return MobileNetV2(0.5, num_classes)


@register_model(_v2_card(0.35), torchvision_keys=mobilenet_v2_torchvision_keys)
def mobilenet_v2_035(*, num_classes: int = 1000) -> MobileNetV2:
    """MobileNet v2 with width multiplier 0.35 (Sandler et al. 2018, arXiv:1801.04381, Table 4's
    smallest): every width x0.35, the last conv kept at 1280; the same network as
    create_model('mobilenet_v2', width_mult=0.35)."""
    return MobileNetV2(0.35, num_classes)
