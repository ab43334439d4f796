"""EfficientNet B0-B7: one baseline scaled in depth, width and resolution together.

Tan, Le (2019). "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
ICML 2019, arXiv:1905.11946.

**Compound scaling** (Section 3.3, Eq. 3). With one coefficient ``phi``::

    depth      d = alpha ** phi      alpha = 1.2
    width      w = beta  ** phi      beta  = 1.1
    resolution r = gamma ** phi      gamma = 1.15     s.t. alpha * beta**2 * gamma**2 ~= 2

so each unit of ``phi`` roughly doubles the FLOPS (FLOPS grow as ``d * w^2 * r^2``). alpha, beta,
gamma come from a small grid search at ``phi = 1`` on the B0 baseline (Table 1), which is itself
found by neural architecture search (MnasNet-style, optimising accuracy and FLOPS).

**The released B1-B7 use rounded coefficients**, listed in the official ``efficientnet_builder.py``
as (width, depth, resolution, dropout); :data:`RELEASED_SCALING` holds them. Read against Eq. 3, each
column implies its own phi (``log(w)/log(1.1)``, ``log(d)/log(1.2)``, ``log(r/224)/log(1.15)``)::

    model  width  depth  res  dropout   phi from w   phi from d   phi from r
    B0     1.0    1.0    224  0.2        0.00         0.00         0.00
    B1     1.0    1.1    240  0.2        0.00         0.52         0.49
    B2     1.1    1.2    260  0.3        1.00         1.00         1.07
    B3     1.2    1.4    300  0.3        1.91         1.85         2.09
    B4     1.4    1.8    380  0.4        3.53         3.22         3.78
    B5     1.6    2.2    456  0.4        4.93         4.32         5.09
    B6     1.8    2.6    528  0.5        6.17         5.24         6.14
    B7     2.0    3.1    600  0.5        7.27         6.21         7.05

so B(n) is not phi = n: B2 is phi = 1, B3 about 2, and from B4 on the three dimensions were rounded
separately (width and resolution a little above, depth below the curve).
``efficientnet_b0`` ... ``efficientnet_b7`` use the released rows.

**Rounding** (the release's rules, also torchvision's): every channel count ``c`` becomes
``make_divisible(c * w, 8)`` (nearest multiple of 8, never more than 10% below), every stage's
repeat count ``n`` becomes ``ceil(n * d)``. The head is ``make_divisible(1280 * w, 8)``.

**Any phi** (:func:`efficientnet`, :func:`compound_scaling`): Eq. 3 is applied literally,
``w = 1.1**phi``, ``d = 1.2**phi``, input side ``round(224 * 1.15**phi)`` pixels, then the rounding
rules above; dropout grows by 0.05 per unit of phi from B0's 0.2, capped at B7's 0.5 (our rule:
the release only fixes its eight rows). phi may be any real number >= 0; ``phi = 0`` is B0.

Each block is an MBConv (MobileNetV2's inverted residual with squeeze-and-excitation, ratio 0.25
of the block's input channels, and swish/SiLU): expand 1x1 (x t) -> depthwise k x k -> SE ->
project 1x1 (linear), with stochastic depth ("drop connect") on the residual branch, its rate
growing linearly from 0 to 0.2 over the blocks. Attribute names read like the paper (``expand``,
``depthwise``, ``se``, ``project``); ``torchvision_keys`` maps torchvision's numbered keys onto them.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, replace
from functools import partial
from typing import Callable

import torch
from torch import nn

from convatlas.layers.basic import ConvNormAct, SqueezeExcitation, StochasticDepth, make_divisible
from convatlas.layers.init import init_weights, kaiming_normal, uniform_fan_out
from convatlas.models._torchvision_keys import inverted_residual_keys
from convatlas.models.features import FeatureInfo
from convatlas.registry import ModelCard, Preprocessing, Published, card_with, register_model

__all__ = [
    "ALPHA",
    "BETA",
    "GAMMA",
    "BASELINE",
    "RELEASED_SCALING",
    "EfficientNetScaling",
    "compound_scaling",
    "scale_stages",
    "MBConv",
    "EfficientNet",
    "efficientnet",
    "efficientnet_torchvision_keys",
    "efficientnet_b0",
    "efficientnet_b1",
    "efficientnet_b2",
    "efficientnet_b3",
    "efficientnet_b4",
    "efficientnet_b5",
    "efficientnet_b6",
    "efficientnet_b7",
    "MINI_BASELINE",
    "EfficientNetMini",
    "efficientnet_mini",
]

ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15  # depth, width, resolution bases (Section 3.3)
BASE_RESOLUTION = 224
STOCHASTIC_DEPTH = 0.2  # drop-connect rate of the release (the paper's text says 0.3)


@dataclass(frozen=True)
class Stage:
    """One row of Table 1: MBConv``expand_ratio`` with a ``kernel`` x ``kernel`` depthwise conv."""

    expand_ratio: int
    kernel: int
    stride: int
    in_channels: int
    out_channels: int
    repeats: int


# Table 1, stages 2-8 (stage 1 is a 3x3/2 conv to 32 channels, stage 9 a 1x1 conv to 1280 + pool + FC).
BASELINE = [
    Stage(1, 3, 1, 32, 16, 1),
    Stage(6, 3, 2, 16, 24, 2),
    Stage(6, 5, 2, 24, 40, 2),
    Stage(6, 3, 2, 40, 80, 3),
    Stage(6, 5, 1, 80, 112, 3),
    Stage(6, 5, 2, 112, 192, 4),
    Stage(6, 3, 1, 192, 320, 1),
]
STEM_CHANNELS, HEAD_CHANNELS = 32, 1280


@dataclass(frozen=True)
class EfficientNetScaling:
    """Multipliers of one EfficientNet: width ``w``, depth ``d``, input side, classifier dropout."""

    width_mult: float
    depth_mult: float
    resolution: int
    dropout: float
    phi: float | None = None  # the compound coefficient, when the row comes from Eq. 3

    def implied_phi(self) -> tuple[float, float, float]:
        """phi implied by each multiplier under Eq. 3: (from width, from depth, from resolution)."""
        return (
            math.log(self.width_mult) / math.log(BETA),
            math.log(self.depth_mult) / math.log(ALPHA),
            math.log(self.resolution / BASE_RESOLUTION) / math.log(GAMMA),
        )


# The release's (width, depth, resolution, dropout) for B0-B7 (efficientnet_builder.py).
RELEASED_SCALING = {
    0: EfficientNetScaling(1.0, 1.0, 224, 0.2),
    1: EfficientNetScaling(1.0, 1.1, 240, 0.2),
    2: EfficientNetScaling(1.1, 1.2, 260, 0.3),
    3: EfficientNetScaling(1.2, 1.4, 300, 0.3),
    4: EfficientNetScaling(1.4, 1.8, 380, 0.4),
    5: EfficientNetScaling(1.6, 2.2, 456, 0.4),
    6: EfficientNetScaling(1.8, 2.6, 528, 0.5),
    7: EfficientNetScaling(2.0, 3.1, 600, 0.5),
}


def compound_scaling(phi: float, alpha: float = ALPHA, beta: float = BETA, gamma: float = GAMMA) -> EfficientNetScaling:
    """Eq. 3 applied literally: ``d = alpha**phi``, ``w = beta**phi``, side ``round(224 * gamma**phi)``.

    Dropout (not part of Eq. 3) is ``min(0.5, 0.2 + 0.05 * phi)``.
    """
    if isinstance(phi, bool) or not isinstance(phi, (int, float)) or not math.isfinite(phi) or phi < 0:
        raise ValueError(
            f"phi must be a finite number >= 0 (the compound coefficient; 0 is the B0 baseline and "
            f"each unit about doubles the FLOPS), got {phi!r}"
        )
    return EfficientNetScaling(
        width_mult=beta**phi,
        depth_mult=alpha**phi,
        resolution=round(BASE_RESOLUTION * gamma**phi),
        dropout=min(0.5, 0.2 + 0.05 * phi),
        phi=float(phi),
    )


def scale_stages(width_mult: float, depth_mult: float) -> list[Stage]:
    """Table 1 with widths ``make_divisible(c * w, 8)`` and repeats ``ceil(n * d)``."""
    return [
        Stage(
            s.expand_ratio,
            s.kernel,
            s.stride,
            make_divisible(s.in_channels * width_mult, 8),
            make_divisible(s.out_channels * width_mult, 8),
            int(math.ceil(s.repeats * depth_mult)),
        )
        for s in BASELINE
    ]


# ---------------------------------------------------------------------------------------------
# The block and the network.


class MBConv(nn.Module):
    """Mobile inverted bottleneck with squeeze-and-excitation (MnasNet / EfficientNet).

    ``expand`` 1x1 (to ``t * in`` channels, absent when ``t = 1``) -> ``depthwise`` k x k (stride)
    -> ``se`` (squeeze to ``max(1, in // 4)`` channels) -> ``project`` 1x1 without activation;
    the residual ``x + drop(block(x))`` when stride is 1 and widths agree.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int,
        expand_ratio: int,
        drop_rate: float,
        norm: Callable[[int], nn.Module],
    ) -> None:
        super().__init__()
        silu = partial(nn.SiLU, inplace=True)
        hidden = make_divisible(in_channels * expand_ratio, 8)
        self.expand = ConvNormAct(in_channels, hidden, 1, norm=norm, act=silu) if hidden != in_channels else None
        self.depthwise = ConvNormAct(hidden, hidden, kernel, stride, groups=hidden, norm=norm, act=silu)
        self.se = SqueezeExcitation(hidden, max(1, in_channels // 4), act=silu)
        self.project = ConvNormAct(hidden, out_channels, 1, norm=norm, act=None)
        self.use_residual = stride == 1 and in_channels == out_channels
        self.stochastic_depth = StochasticDepth(drop_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.expand(x) if self.expand is not None else x
        out = self.project(self.se(self.depthwise(out)))
        if self.use_residual:
            out = self.stochastic_depth(out) + x
        return out


def mbconv_stages(stages: list[Stage], stochastic_depth: float, norm: Callable[[int], nn.Module]) -> list[nn.Sequential]:
    """One ``nn.Sequential`` of MBConv blocks per stage: the first block of a stage takes its stride
    and input width; the drop-connect rate grows linearly from 0 to ``stochastic_depth`` over all blocks."""
    total, index, built = sum(s.repeats for s in stages), 0, []
    for s in stages:
        blocks = []
        for i in range(s.repeats):
            blocks.append(MBConv(s.in_channels if i == 0 else s.out_channels, s.out_channels, s.kernel,
                                 s.stride if i == 0 else 1, s.expand_ratio,
                                 drop_rate=stochastic_depth * index / total, norm=norm))
            index += 1
        built.append(nn.Sequential(*blocks))
    return built


def stage_feature_info(stages: list[Stage], head: int, reduction: int) -> list[FeatureInfo]:
    """The last stage at each resolution (``features[i]`` is stage ``i``, after a stem of stride
    ``reduction``), then the head conv; named by Table 1's stage numbers (stage ``i + 1``)."""
    info = []
    for i, s in enumerate(stages, start=1):
        following = stages[i] if i < len(stages) else None
        reduction *= s.stride
        if following is not None and following.stride > 1:
            info.append(FeatureInfo(f"stage{i + 1}", f"features.{i}", s.out_channels, reduction))
    info.append(FeatureInfo(f"stage{len(stages) + 2}", f"features.{len(stages) + 1}", head, reduction))
    return info


class EfficientNet(nn.Module):
    """EfficientNet with width/depth multipliers: ``features[0]`` stem (stage 1 of Table 1),
    ``features[1..7]`` the MBConv stages 2-8, ``features[8]`` the 1x1 head conv (stage 9).

    Feature maps, named by the stages of Table 1: the last one at each resolution, ``stage2``
    (/2), ``stage3`` (/4), ``stage4`` (/8), ``stage6`` (/16) and ``stage9`` (/32, the head conv).
    """

    def __init__(
        self,
        scaling: EfficientNetScaling,
        *,
        num_classes: int = 1000,
        bn_eps: float = 1e-3,
        bn_momentum: float = 0.01,
        stochastic_depth: float = STOCHASTIC_DEPTH,
    ) -> None:
        super().__init__()
        norm = partial(nn.BatchNorm2d, eps=bn_eps, momentum=bn_momentum)
        silu = partial(nn.SiLU, inplace=True)
        stages = scale_stages(scaling.width_mult, scaling.depth_mult)
        layers: list[nn.Module] = [ConvNormAct(3, stages[0].in_channels, 3, 2, norm=norm, act=silu)]
        layers += mbconv_stages(stages, stochastic_depth, norm)
        head = make_divisible(HEAD_CHANNELS * scaling.width_mult, 8)
        layers.append(ConvNormAct(stages[-1].out_channels, head, 1, norm=norm, act=silu))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(OrderedDict(
            dropout=nn.Dropout(scaling.dropout, inplace=True),
            fc=nn.Linear(head, num_classes),
        ))
        self.scaling = scaling
        self.stages = stages
        self.input_size = (3, scaling.resolution, scaling.resolution)
        self.feature_info = stage_feature_info(stages, head, reduction=2)  # after the 3x3/2 stem
        # The release's initialisers: He normal (fan_out) convolutions, uniform(+-1/sqrt(out)) dense.
        init_weights(self, conv=kaiming_normal(mode="fan_out"), linear=uniform_fan_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def efficientnet_torchvision_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename torchvision EfficientNet keys to ours.

    torchvision: ``features.0.{0,1}`` (stem conv/BN), ``features.s.b.block.j...`` inside a block
    (expand and depthwise as conv-BN pairs, SE with ``fc1``/``fc2``, projection as a conv-BN pair;
    one index less without expansion), ``features.8.{0,1}`` (head), ``classifier.1`` (linear).
    """
    return inverted_residual_keys(state, r"(features\.\d+\.\d+)\.block", ("expand", "depthwise", "se", "project"),
                                  frozenset({"expand", "depthwise", "project"}))


# ---------------------------------------------------------------------------------------------
# Builders and cards.

_IDEA = (
    "Compound scaling grows depth, width and input resolution together by fixed ratios "
    "(alpha^phi, beta^phi, gamma^phi) instead of one dimension at a time, applied to a baseline "
    "found by architecture search (MBConv blocks with squeeze-excitation): better accuracy per FLOP "
    "at every size."
)
_BASE = ModelCard(
    name="efficientnet_b0",
    family="efficientnet",
    paper="EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
    authors="Tan, Le",
    year=2019,
    arxiv="1905.11946",
    input_size=(3, 224, 224),
    dataset="imagenet",
    idea=_IDEA,
)

# Table 2 (final version = keras.io) and the exact counts: params, paper FLOPS (multiply-adds),
# top-1, top-5, torchvision top-1/top-5.
_TABLE2 = {
    0: (5_288_548, 0.39e9, 77.1, 93.3, 77.692, 93.532),
    1: (7_794_184, 0.70e9, 79.1, 94.4, 79.838, 94.934),
    2: (9_109_994, 1.0e9, 80.1, 94.9, 80.608, 95.31),
    3: (12_233_232, 1.8e9, 81.6, 95.7, 82.008, 96.054),
    4: (19_341_616, 4.2e9, 82.9, 96.4, 83.384, 96.594),
    5: (30_389_784, 9.9e9, 83.6, 96.7, 83.444, 96.628),
    6: (43_040_704, 19e9, 84.0, 96.8, 84.008, 96.916),
    7: (66_347_960, 37e9, 84.3, 97.0, 84.122, 96.908),
}


# torchvision's evaluation transforms of EfficientNet_B{i}_Weights.IMAGENET1K_V1 (resize the
# shorter side, bicubic, then centre-crop): (resize, crop). B2 is evaluated at a 288 crop, larger
# than its native 260; the card keeps 260 and the ratio crop / resize.
_TORCHVISION_EVAL = {0: (256, 224), 1: (256, 240), 2: (288, 288), 3: (320, 300),
                     4: (384, 380), 5: (456, 456), 6: (528, 528), 7: (600, 600)}


def _b_preprocessing(i: int) -> Preprocessing:
    resize, crop = _TORCHVISION_EVAL[i]
    imagenet = Preprocessing.for_dataset("imagenet", 3)
    return replace(imagenet, crop_fraction=crop / resize, interpolation="bicubic")


def _b_card(i: int) -> ModelCard:
    params, flops, top1, top5, tv_top1, tv_top5 = _TABLE2[i]
    s = RELEASED_SCALING[i]
    return card_with(
        _BASE,
        name=f"efficientnet_b{i}",
        input_size=(3, s.resolution, s.resolution),
        preprocessing=_b_preprocessing(i),
        params=Published(params, f"torchvision meta num_params (Table 2: {params / 1e6:.1f}M)"),
        macs=Published(flops, "Table 2 FLOPS (multiply-adds)"),
        top1=Published(top1, "Table 2 (final version; arXiv v1 differs slightly)"),
        top5=Published(top5, "Table 2 (final version)"),
        torchvision=f"efficientnet_b{i}",
        timm=f"tf_efficientnet_b{i}",
        notes=f"Released coefficients: width {s.width_mult}, depth {s.depth_mult}, resolution "
              f"{s.resolution}, dropout {s.dropout}. BatchNorm eps "
              f"{'1e-5 (torchvision trained B0-B4 with PyTorch defaults)' if i <= 4 else '1e-3 (as the release)'}.",
        extra={"torchvision_top1": tv_top1, "torchvision_top5": tv_top5,
               "width_mult": s.width_mult, "depth_mult": s.depth_mult, "dropout": s.dropout},
    )


# torchvision's B0-B4 weights were trained in PyTorch with BatchNorm's defaults; B5-B7 are ports
# of the TensorFlow release and keep its eps=1e-3, momentum=0.01 (PyTorch convention).
_PYTORCH_BN = {"bn_eps": 1e-5, "bn_momentum": 0.1}
_RELEASE_BN = {"bn_eps": 1e-3, "bn_momentum": 0.01}


def _released(i: int, num_classes: int) -> EfficientNet:
    """EfficientNet-B``i`` with the release's coefficients (:data:`RELEASED_SCALING`)."""
    return EfficientNet(RELEASED_SCALING[i], num_classes=num_classes, **(_PYTORCH_BN if i <= 4 else _RELEASE_BN))


@register_model(_b_card(0), torchvision_keys=efficientnet_torchvision_keys)
def efficientnet_b0(*, num_classes: int = 1000) -> EfficientNet:
    """EfficientNet-B0 (Tan & Le 2019, arXiv:1905.11946, Table 1): the baseline found by
    architecture search, MBConv stages of Table 1 at width x1.0, depth x1.0, input 224x224,
    dropout 0.2."""
    return _released(0, num_classes)


@register_model(_b_card(1), torchvision_keys=efficientnet_torchvision_keys)
def efficientnet_b1(*, num_classes: int = 1000) -> EfficientNet:
    """EfficientNet-B1 (Tan & Le 2019, arXiv:1905.11946, Table 2): B0 scaled with the release's
    coefficients width x1.0, depth x1.1, input 240x240, dropout 0.2."""
    return _released(1, num_classes)


@register_model(_b_card(2), torchvision_keys=efficientnet_torchvision_keys)
def efficientnet_b2(*, num_classes: int = 1000) -> EfficientNet:
    """EfficientNet-B2 (Tan & Le 2019, arXiv:1905.11946, Table 2): B0 scaled with the release's
    coefficients width x1.1, depth x1.2, input 260x260, dropout 0.3 (phi = 1 of Eq. 3)."""
    return _released(2, num_classes)


@register_model(_b_card(3), torchvision_keys=efficientnet_torchvision_keys)
def efficientnet_b3(*, num_classes: int = 1000) -> EfficientNet:
    """EfficientNet-B3 (Tan & Le 2019, arXiv:1905.11946, Table 2): B0 scaled with the release's
    coefficients width x1.2, depth x1.4, input 300x300, dropout 0.3."""
    return _released(3, num_classes)


@register_model(_b_card(4), torchvision_keys=efficientnet_torchvision_keys)
def efficientnet_b4(*, num_classes: int = 1000) -> EfficientNet:
    """EfficientNet-B4 (Tan & Le 2019, arXiv:1905.11946, Table 2): B0 scaled with the release's
    coefficients width x1.4, depth x1.8, input 380x380, dropout 0.4."""
    return _released(4, num_classes)


@register_model(_b_card(5), torchvision_keys=efficientnet_torchvision_keys)
def efficientnet_b5(*, num_classes: int = 1000) -> EfficientNet:
    """EfficientNet-B5 (Tan & Le 2019, arXiv:1905.11946, Table 2): B0 scaled with the release's
    coefficients width x1.6, depth x2.2, input 456x456, dropout 0.4."""
    return _released(5, num_classes)


@register_model(_b_card(6), torchvision_keys=efficientnet_torchvision_keys)
def efficientnet_b6(*, num_classes: int = 1000) -> EfficientNet:
    """EfficientNet-B6 (Tan & Le 2019, arXiv:1905.11946, Table 2): B0 scaled with the release's
    coefficients width x1.8, depth x2.6, input 528x528, dropout 0.5."""
    return _released(6, num_classes)


@register_model(_b_card(7), torchvision_keys=efficientnet_torchvision_keys)
def efficientnet_b7(*, num_classes: int = 1000) -> EfficientNet:
    """EfficientNet-B7 (Tan & Le 2019, arXiv:1905.11946, Table 2): B0 scaled with the release's
    coefficients width x2.0, depth x3.1, input 600x600, dropout 0.5."""
    return _released(7, num_classes)


@register_model(card_with(
    _b_card(0),
    name="efficientnet",
    torchvision=None,
    timm=None,
    notes="Any compound coefficient: efficientnet(phi=p) applies Eq. 3 literally (w=1.1^p, "
          "d=1.2^p, side round(224*1.15^p)); the native side is model.input_size. phi=0 is B0; "
          "the released B1-B7 are efficientnet_b1..b7. BatchNorm eps 1e-3, momentum 0.01 (release).",
))
def efficientnet(*, num_classes: int = 1000, phi: float = 0.0) -> EfficientNet:
    """EfficientNet scaled by compound coefficient ``phi`` (Tan & Le 2019, arXiv:1905.11946, Eq. 3).

    ``phi`` >= 0, any real: width ``1.1**phi``, depth ``1.2**phi`` (channels rounded to multiples of
    8, repeats rounded up), native input side ``round(224 * 1.15**phi)`` (``model.input_size``),
    dropout ``min(0.5, 0.2 + 0.05*phi)``. ``phi = 0`` is B0; the released B1-B7 rounded their
    coefficients differently (module docstring) and are registered as ``efficientnet_b1`` ... ``b7``.
    """
    return EfficientNet(compound_scaling(phi), num_classes=num_classes)


# ---------------------------------------------------------------------------------------------
# A mini baseline for compound-scaling searches on two CPU cores.

# convatlas's mini baseline (not from the paper): Table 1's pattern -- a 3x3 stem, MBConv1 then
# MBConv6 stages with 3x3 and 5x5 depthwise kernels, a 1x1 head -- at 14x14 pixels (half the
# digits' 28, so that resolution scaling can add real detail), with the stem's stride and the
# last stages left out.
MINI_BASELINE = [
    Stage(1, 3, 1, 16, 8, 1),
    Stage(6, 3, 2, 8, 16, 2),
    Stage(6, 5, 2, 16, 24, 2),
    Stage(6, 3, 1, 24, 40, 1),
]
MINI_STEM, MINI_HEAD, MINI_RESOLUTION, MINI_DIVISOR = 16, 128, 14, 4


class EfficientNetMini(nn.Module):
    """:data:`MINI_BASELINE` scaled by width ``w`` (channels ``make_divisible(c * w, 4)``: finer
    steps than the release's 8, for widths this small), depth ``d`` (repeats ``ceil(n * d)``); the
    resolution is the input's (``model.input_size`` is the scaled side). Batch norm, SiLU,
    squeeze-and-excitation and stochastic depth as in :class:`EfficientNet`."""

    def __init__(self, *, width_mult: float = 1.0, depth_mult: float = 1.0, resolution: int = MINI_RESOLUTION,
                 num_classes: int = 10, in_channels: int = 1, dropout: float = 0.2,
                 stochastic_depth: float = STOCHASTIC_DEPTH) -> None:
        super().__init__()
        for label, value in (("width_mult", width_mult), ("depth_mult", depth_mult)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{label} must be a positive number, got {value!r}")
        if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 4:
            raise ValueError(f"resolution must be an integer side of at least 4 pixels, got {resolution!r}")
        norm = nn.BatchNorm2d
        silu = partial(nn.SiLU, inplace=True)
        width = partial(make_divisible, divisor=MINI_DIVISOR)
        stem = width(MINI_STEM * width_mult)
        layers: list[nn.Module] = [ConvNormAct(in_channels, stem, 3, 1, norm=norm, act=silu)]
        stages = [Stage(s.expand_ratio, s.kernel, s.stride, width(s.in_channels * width_mult),
                        width(s.out_channels * width_mult), int(math.ceil(s.repeats * depth_mult)))
                  for s in MINI_BASELINE]
        stages[0] = replace(stages[0], in_channels=stem)
        layers += mbconv_stages(stages, stochastic_depth, norm)
        head = width(MINI_HEAD * width_mult)
        layers.append(ConvNormAct(stages[-1].out_channels, head, 1, norm=norm, act=silu))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(OrderedDict(dropout=nn.Dropout(dropout), fc=nn.Linear(head, num_classes)))
        self.stages = stages
        self.feature_info = stage_feature_info(stages, head, reduction=1)  # the stem keeps the size
        self.scaling = (float(width_mult), float(depth_mult), int(resolution))
        self.input_size = (in_channels, resolution, resolution)
        init_weights(self, conv=kaiming_normal(mode="fan_out"), linear=uniform_fan_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@register_model(ModelCard(
    name="efficientnet_mini",
    family="mini",
    paper="EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
    authors="Tan, Le",
    year=2019,
    arxiv="1905.11946",
    input_size=(1, MINI_RESOLUTION, MINI_RESOLUTION),
    dataset="mnist",
    recipe="mini_digits",
    params=Published(48_180, "hand count, tests/reference/mini.py"),
    macs=Published(983_888, "hand count at 1x14x14, tests/reference/mini.py"),
    idea=(
        "EfficientNet's baseline pattern (MBConv1 then MBConv6 stages with squeeze-and-excitation, 3x3 and 5x5 "
        "depthwise kernels, a 1x1 head) at 14x14 digits: the base that `convatlas scale` grows in depth, width "
        "and resolution together."
    ),
    notes="width_mult (channels rounded to multiples of 4), depth_mult (repeats rounded up), resolution (the "
          "input side; 14 native, up to the digits' 28 adds real detail). convatlas's mini design, not the paper's.",
))
def efficientnet_mini(*, num_classes: int = 10, width_mult: float = 1.0, depth_mult: float = 1.0,
                      resolution: int = MINI_RESOLUTION, in_channels: int = 1) -> EfficientNetMini:
    """A 14-pixel EfficientNet-style baseline (:data:`MINI_BASELINE`) scaled by ``width_mult``,
    ``depth_mult`` and ``resolution`` (the input side it is made for)."""
    return EfficientNetMini(width_mult=width_mult, depth_mult=depth_mult, resolution=resolution,
                            num_classes=num_classes, in_channels=in_channels)
