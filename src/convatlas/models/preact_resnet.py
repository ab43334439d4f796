"""Pre-activation ResNet (He, Zhang, Ren, Sun 2016, "Identity Mappings in Deep Residual
Networks", ECCV, arXiv:1603.05027).

If both the shortcut and the after-addition function are identities, a unit computes
``x_{l+1} = x_l + F(x_l)``, so ``x_L = x_l + sum_{i=l}^{L-1} F(x_i)`` and the gradient
``dE/dx_l = dE/dx_L (1 + d/dx_l sum F)`` reaches every layer directly. The paper moves BN and
ReLU out of the path between units and in front of the weight layers ("pre-activation"), which
makes 1001-layer networks train and generalise.

Its Fig. 4 compares five orderings of the residual unit; :data:`UNITS` writes them as a table
and ``unit=`` selects one:

======================== ========= ================================ ==================
``unit``                 Fig. 4    residual branch F (2 weight      after the addition
                                   layers)
======================== ========= ================================ ==================
``original``             (a)       conv BN ReLU conv BN             ReLU
``bn_after_addition``    (b)       conv BN ReLU conv                BN ReLU
``relu_before_addition`` (c)       conv BN ReLU conv BN ReLU        --
``relu_only_preact``     (d)       ReLU conv BN ReLU conv BN        --
``full_preact``          (e)       BN ReLU conv BN ReLU conv        --
======================== ========= ================================ ==================

The letters ``"a"`` .. ``"e"`` are accepted as well. A bottleneck unit has three weight
layers (1x1, 3x3, 1x1) with the same pattern. Two special cases follow from the procedure of
the paper's Fig. 5: the first activation of a pre-activation network is applied once, right
after ``conv1``, to the input of both paths of the first unit, and an extra activation follows
the last addition. Projection shortcuts (1x1 convolutions where the shape changes) are themselves
pre-activated: they take the activated input in orderings (d) and (e) (appendix).

Networks:

* CIFAR (§4, Tables 2-4): ``preact_resnet110`` (basic units, 6n+2 layers, n = 18),
  ``preact_resnet164`` and ``preact_resnet1001`` (bottleneck units 16-16-64 / 32-32-128 /
  64-64-256, 9n+2 layers, n = 18 and 111), as in the authors' code (KaimingHe/resnet-1k-layers),
  which strides the first 1x1 of a down-sampling bottleneck;
* ImageNet (§4.3, Table 5): ``preact_resnet18`` .. ``preact_resnet200`` with the stage depths of
  ResNet's Table 1 (plus [3, 24, 36, 3] for 200) and the stride in the 3x3, as in
  fb.resnet.torch's ``preresnet.lua`` (Facebook's Torch release of the paper's nets). The
  stem is conv1 7x7/2 -> max pool -> first unit (whose BN-ReLU is "the first activation"), as in
  timm's ``resnetv2_*``; fb.resnet.torch puts that BN-ReLU before the max pool, with the same
  parameters.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from convatlas._checks import fraction, positive_int
from convatlas.layers.basic import GlobalAvgPool2d
from convatlas.models._resnet_blocks import init_resnet_weights
from convatlas.models.features import FeatureInfo
from convatlas.registry import ModelCard, Published, card_with, register_model

__all__ = [
    "UnitOrdering",
    "UNITS",
    "ResidualUnit",
    "PreActResNet",
    "cifar_preact_resnet",
    "PREACT_IMAGENET_DEPTHS",
]


@dataclass(frozen=True)
class UnitOrdering:
    """One residual unit of Fig. 4 as sequences of layer kinds ("conv", "bn", "relu").

    The branch F is ``weight_layer`` repeated for every weight layer but the last, then
    ``last_weight_layer``; ``after_addition`` follows ``F(x) + shortcut(x)``. ``after_conv1`` is
    what the network puts after its first convolution and ``after_last_unit`` what it puts
    before global pooling; ``projection`` is a shortcut where the shape changes.
    """

    figure: str
    weight_layer: tuple[str, ...]
    last_weight_layer: tuple[str, ...]
    after_addition: tuple[str, ...]
    after_conv1: tuple[str, ...]
    after_last_unit: tuple[str, ...]
    projection: tuple[str, ...]

    @property
    def leading(self) -> tuple[str, ...]:
        """The activation before the first weight layer (pre-activation units only)."""
        return self.weight_layer[: self.weight_layer.index("conv")]


_CBR = ("conv", "bn", "relu")
UNITS: dict[str, UnitOrdering] = {
    # name:                 figure, weight layer, last weight layer, after addition, after conv1, after last unit, projection
    "original":             UnitOrdering("Fig. 4(a)", _CBR, ("conv", "bn"), ("relu",), ("bn", "relu"), (), ("conv", "bn")),
    "bn_after_addition":    UnitOrdering("Fig. 4(b)", _CBR, ("conv",), ("bn", "relu"), ("bn", "relu"), (), ("conv", "bn")),
    "relu_before_addition": UnitOrdering("Fig. 4(c)", _CBR, _CBR, (), ("bn", "relu"), (), ("conv", "bn")),
    "relu_only_preact":     UnitOrdering("Fig. 4(d)", ("relu", "conv", "bn"), ("relu", "conv", "bn"), (), ("bn",), ("relu",), ("conv", "bn")),
    "full_preact":          UnitOrdering("Fig. 4(e)", ("bn", "relu", "conv"), ("bn", "relu", "conv"), (), (), ("bn", "relu"), ("conv",)),
}  # fmt: skip
_LETTERS = dict(zip("abcde", UNITS))


def _ordering(unit: str) -> UnitOrdering:
    name = _LETTERS.get(unit, unit) if isinstance(unit, str) else unit
    if name not in UNITS:
        raise ValueError(
            f"unit must be one of {', '.join(repr(u) for u in UNITS)} (or the letters 'a'..'e' "
            f"of Fig. 4), got {unit!r}"
        )
    return UNITS[name]


def _layers(kinds: Sequence[str], channels: int, suffix: str = "") -> list[tuple[str, nn.Module]]:
    """Named BN/ReLU modules for ``kinds`` on ``channels`` channels ("conv" is not allowed here)."""
    made = {"bn": lambda: nn.BatchNorm2d(channels), "relu": lambda: nn.ReLU(inplace=True)}
    return [(f"{kind}{suffix}", made[kind]()) for kind in kinds]


class ResidualUnit(nn.Module):
    """A residual unit of Fig. 4: ``after_addition(branch(h) + shortcut(.))``, ``h = preact(x)``.

    ``kernel_sizes`` is ``(3, 3)`` for a basic unit and ``(1, 3, 1)`` for a bottleneck;
    ``channels`` lists the width entering and leaving each weight layer (``in, mid, ..., out``).
    ``stride_at`` is the index of the weight layer that strides. ``preact`` holds the leading
    activation of orderings (d)/(e) (``bn1``, ``relu1``); it feeds both paths when the shortcut is
    a projection and only the branch when the shortcut is the identity. ``dropout`` > 0 puts a
    dropout layer before the last convolution (Wide ResNet).
    """

    def __init__(
        self,
        ordering: UnitOrdering,
        kernel_sizes: Sequence[int],
        channels: Sequence[int],
        *,
        stride: int = 1,
        stride_at: int = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(channels) != len(kernel_sizes) + 1:
            raise ValueError(f"channels needs {len(kernel_sizes) + 1} entries, got {list(channels)}")
        n = len(kernel_sizes)
        kinds: list[tuple[str, int]] = []  # (kind, weight-layer number 1..n)
        for i in range(n):
            group = ordering.weight_layer if i < n - 1 else ordering.last_weight_layer
            kinds += [(kind, i + 1) for kind in group]
        lead = len(ordering.leading)
        layers: list[tuple[str, nn.Module]] = []
        width = channels[0]
        for kind, i in kinds:
            if kind == "conv":
                if i == n and dropout > 0:
                    layers.append(("dropout", nn.Dropout(dropout)))
                k = kernel_sizes[i - 1]
                conv_stride = stride if i - 1 == stride_at else 1
                layers.append(
                    (f"conv{i}", nn.Conv2d(width, channels[i], k, conv_stride, padding=k // 2, bias=False))
                )
                width = channels[i]
            else:
                layers += _layers([kind], width, str(i))
        self.preact = nn.Sequential(OrderedDict(layers[:lead]))
        self.branch = nn.Sequential(OrderedDict(layers[lead:]))
        if lead and isinstance(self.preact[0], nn.ReLU):
            self.preact[0] = nn.ReLU(inplace=False)  # x itself may be the identity shortcut
        in_channels, out_channels = channels[0], channels[-1]
        self.is_projection = stride != 1 or in_channels != out_channels
        if self.is_projection:
            proj: list[tuple[str, nn.Module]] = [
                ("conv", nn.Conv2d(in_channels, out_channels, 1, stride, bias=False))
            ]
            proj += _layers([k for k in ordering.projection if k != "conv"], out_channels)
            self.shortcut: nn.Module = nn.Sequential(OrderedDict(proj))
        else:
            self.shortcut = nn.Identity()
        self.after_addition = nn.Sequential(OrderedDict(_layers(ordering.after_addition, out_channels)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.preact(x)
        shortcut = self.shortcut(h) if self.is_projection else x
        return self.after_addition(self.branch(h) + shortcut)


class PreActResNet(nn.Module):
    """A residual network of units in one of the orderings of Fig. 4.

    ``stage_depths``/``stage_widths``: units per stage and the channels each stage outputs;
    ``bottleneck``: 1x1-3x3-1x1 units with inner width ``width / 4`` (else two 3x3);
    ``stem``: ``"cifar"`` (3x3 conv, ``stem_width`` filters) or ``"imagenet"`` (7x7/2 conv and
    3x3/2 max pool); ``stride_in_3x3``: where a down-sampling bottleneck strides; ``dropout``:
    between the convolutions of each unit (Wide ResNet). Attributes: ``conv1``, ``after_conv1``,
    ``maxpool``, ``layer1`` .., ``after_last_unit``, ``avgpool``, ``fc``.

    Feature maps: ``conv1`` (``after_conv1``, /2, ImageNet stem only), ``layer1`` .. (the units'
    sums, /1 or /4 onwards), the last stage taken after ``after_last_unit`` (its final BN-ReLU in
    pre-activation orderings): the map the classifier sees.
    """

    def __init__(
        self,
        stage_depths: Sequence[int],
        stage_widths: Sequence[int],
        *,
        bottleneck: bool,
        unit: str = "full_preact",
        stem: str = "cifar",
        stem_width: int = 16,
        stride_in_3x3: bool = True,
        dropout: float = 0.0,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        ordering = _ordering(unit)
        if stem not in ("cifar", "imagenet"):
            raise ValueError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
        if len(stage_depths) != len(stage_widths):
            raise ValueError(f"{len(stage_depths)} stage depths but {len(stage_widths)} stage widths")
        fraction("dropout", dropout)
        self.unit = [name for name, o in UNITS.items() if o is ordering][0]
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(3, stem_width, 7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = nn.Conv2d(3, stem_width, 3, stride=1, padding=1, bias=False)
        self.after_conv1 = nn.Sequential(OrderedDict(_layers(ordering.after_conv1, stem_width)))
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if stem == "imagenet" else nn.Identity()
        kernel_sizes = (1, 3, 1) if bottleneck else (3, 3)
        stride_at = (1 if stride_in_3x3 else 0) if bottleneck else 0
        width = stem_width
        self.num_stages = len(stage_depths)
        for s, (depth, out) in enumerate(zip(stage_depths, stage_widths)):
            positive_int("units per stage", depth)
            units = []
            for u in range(depth):
                stride = 2 if (s > 0 and u == 0) else 1
                inner = [out // 4] * 2 if bottleneck else [out]
                units.append(
                    ResidualUnit(
                        ordering, kernel_sizes, [width, *inner, out],
                        stride=stride, stride_at=stride_at, dropout=dropout,
                    )
                )
                width = out
            self.add_module(f"layer{s + 1}", nn.Sequential(*units))
        self.after_last_unit = nn.Sequential(OrderedDict(_layers(ordering.after_last_unit, width)))
        self.avgpool = GlobalAvgPool2d()
        self.fc = nn.Linear(width, num_classes)
        stem_reduction = 4 if stem == "imagenet" else 1
        self.feature_info = [FeatureInfo("conv1", "after_conv1", stem_width, 2)] if stem == "imagenet" else []
        for s, out in enumerate(stage_widths, start=1):
            module = "after_last_unit" if s == self.num_stages else f"layer{s}"
            self.feature_info.append(FeatureInfo(f"layer{s}", module, out, stem_reduction * 2 ** (s - 1)))
        init_resnet_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.after_conv1(self.conv1(x)))
        for s in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{s}")(x)
        return self.fc(self.avgpool(self.after_last_unit(x)))


def cifar_preact_resnet(
    depth: int, *, bottleneck: bool = True, unit: str = "full_preact", num_classes: int = 10
) -> PreActResNet:
    """CIFAR ResNet of any unit ordering (He et al. 2016, arXiv:1603.05027, §4).

    ``depth``: 9n+2 for bottleneck units (164, 1001) or 6n+2 for basic units (110).
    ``unit``: one of :data:`UNITS` (Fig. 4 (a)..(e)). Stages output 64/128/256 channels
    (bottleneck, inner widths 16/32/64) or 16/32/64 (basic); projection shortcuts where the
    shape changes; the first 1x1 of a down-sampling bottleneck strides, as in the authors' code.
    """
    layers_per_unit = 3 if bottleneck else 2
    step = 3 * layers_per_unit
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < step + 2 or (depth - 2) % step:
        kind = "bottleneck" if bottleneck else "basic"
        examples = "11, 20, ..., 164, 1001" if bottleneck else "8, 14, 20, ..., 110"
        raise ValueError(
            f"depth must be {step}n+2 with n >= 1 for {kind} units ({examples}), got {depth!r}"
        )
    n = (depth - 2) // step
    widths = (64, 128, 256) if bottleneck else (16, 32, 64)
    return PreActResNet(
        (n, n, n), widths, bottleneck=bottleneck, unit=unit, stem="cifar", stem_width=16,
        stride_in_3x3=False, num_classes=num_classes,
    )


# --------------------------------------------------------------------------------------------
# CIFAR-10 networks (Tables 2-4).

_CARD = ModelCard(
    name="preact_resnet164",
    family="preact_resnet",
    paper="Identity Mappings in Deep Residual Networks",
    authors="He, Zhang, Ren, Sun",
    year=2016,
    arxiv="1603.05027",
    input_size=(3, 32, 32),
    dataset="cifar10",
    idea=(
        "With identity shortcuts and nothing after the addition, a unit's input reaches every "
        "later unit, and the loss gradient every earlier one, unchanged. Putting BN and ReLU "
        "before the weight layers (pre-activation) makes that so and trains 1001-layer networks."
    ),
)


@register_model(card_with(
    _CARD,
    name="preact_resnet110",
    params=Published(1_730_522, "exact count: basic units, 1x1 projection shortcuts (paper-numbers.md section 10)"),
    macs=Published(
        253.15e6,
        "conv+fc MACs at 32x32: ResNet-110's 252.9 M (paper-numbers.md section 9) plus the two "
        "1x1 projections, 2 x 131,072",
    ),
    top1=Published(93.63, "paper Table 2, Fig. 4(e) ResNet-110, CIFAR-10 test error 6.37%"),
    notes="Table 2's ResNet-110 column: basic units, 6n+2 layers, n = 18; 6.61% with unit='original'.",
))
def preact_resnet110(*, num_classes: int = 10, unit: str = "full_preact") -> PreActResNet:
    """Pre-activation ResNet-110 on CIFAR-10 (He et al. 2016, arXiv:1603.05027, Table 2).

    54 basic units (two 3x3 weight layers) with 16/32/64 filters: 6.37% error with full
    pre-activation, 6.61% with the original unit.

    ``unit``: the ordering of Fig. 4: ``"full_preact"`` (e, default), ``"relu_only_preact"`` (d),
    ``"relu_before_addition"`` (c), ``"bn_after_addition"`` (b) or ``"original"`` (a); the
    letters ``"a"`` .. ``"e"`` work too.
    """
    return cifar_preact_resnet(110, bottleneck=False, unit=unit, num_classes=num_classes)


@register_model(card_with(
    _CARD,
    name="preact_resnet164",
    params=Published(1_703_258, "exact count with BN affine (paper Table 4: 1.7M)"),
    macs=Published(
        244.5e6,
        "conv+fc MACs at 32x32: 247.6 M with the stride in the 3x3 (paper-numbers.md section 10) "
        "less 3,145,728 for the two strided 1x1s of the authors' code",
    ),
    top1=Published(94.54, "paper Table 4, CIFAR-10 test error 5.46% (median of 5 runs)"),
    notes="CIFAR-100: 24.33% error (Table 4). Bottleneck units, 9n+2 layers, n = 18; "
    "5.93% error with unit='original' (Table 2).",
))
def preact_resnet164(*, num_classes: int = 10, unit: str = "full_preact") -> PreActResNet:
    """Pre-activation ResNet-164 on CIFAR-10 (He et al. 2016, arXiv:1603.05027, Tables 2-4).

    54 bottleneck units (1x1, 3x3, 1x1; 16-16-64, 32-32-128, 64-64-256 filters): 5.46% error
    with full pre-activation, 5.93% with the original unit.

    ``unit``: the ordering of Fig. 4: ``"full_preact"`` (e, default), ``"relu_only_preact"`` (d),
    ``"relu_before_addition"`` (c), ``"bn_after_addition"`` (b) or ``"original"`` (a); the
    letters ``"a"`` .. ``"e"`` work too.
    """
    return cifar_preact_resnet(164, bottleneck=True, unit=unit, num_classes=num_classes)


@register_model(card_with(
    _CARD,
    name="preact_resnet1001",
    params=Published(
        10_327_706,
        "exact count with BN affine; paper Table 4's 10.2M is the count without BN (10,178,490)",
    ),
    macs=Published(
        1.4878e9,
        "conv+fc MACs at 32x32: 1.491 G with the stride in the 3x3 (paper-numbers.md section 10) "
        "less 3,145,728 for the two strided 1x1s of the authors' code",
    ),
    top1=Published(95.08, "paper Table 4, CIFAR-10 test error 4.92% (median of 5 runs, batch 128)"),
    notes="CIFAR-100: 22.71% error (Table 4); 4.62% on CIFAR-10 with mini-batch 64. "
    "Bottleneck units, 9n+2 layers, n = 111; 7.61% error with unit='original' (Table 3).",
))
def preact_resnet1001(*, num_classes: int = 10, unit: str = "full_preact") -> PreActResNet:
    """Pre-activation ResNet-1001 on CIFAR-10 (He et al. 2016, arXiv:1603.05027, Tables 3-4).

    333 bottleneck units: 4.92% error with full pre-activation, 7.61% with the original unit,
    which both optimises and generalises worse at this depth.

    ``unit``: the ordering of Fig. 4: ``"full_preact"`` (e, default), ``"relu_only_preact"`` (d),
    ``"relu_before_addition"`` (c), ``"bn_after_addition"`` (b) or ``"original"`` (a); the
    letters ``"a"`` .. ``"e"`` work too.
    """
    return cifar_preact_resnet(1001, bottleneck=True, unit=unit, num_classes=num_classes)


# --------------------------------------------------------------------------------------------
# ImageNet networks (Table 5): ResNet's stage depths of Table 1, and [3, 24, 36, 3] for 200.

PREACT_IMAGENET_DEPTHS: dict[int, tuple[bool, tuple[int, int, int, int]]] = {
    # depth: (bottleneck units?, units in the four stages)
    18: (False, (2, 2, 2, 2)),
    34: (False, (3, 4, 6, 3)),
    50: (True, (3, 4, 6, 3)),
    101: (True, (3, 4, 23, 3)),
    152: (True, (3, 8, 36, 3)),
    200: (True, (3, 24, 36, 3)),
}


def _imagenet_preact(depth: int, unit: str, num_classes: int) -> PreActResNet:
    bottleneck, stages = PREACT_IMAGENET_DEPTHS[depth]
    widths = (256, 512, 1024, 2048) if bottleneck else (64, 128, 256, 512)
    return PreActResNet(
        stages, widths, bottleneck=bottleneck, unit=unit, stem="imagenet", stem_width=64,
        stride_in_3x3=True, num_classes=num_classes,
    )


_IMAGENET_CARD = card_with(_CARD, input_size=(3, 224, 224), dataset="imagenet")
_TIMM = "timm 1.0.31 {} (same layers: pre-activation units, conv-only projections, final BN)"
_SAME_CONVS = "same convolutions and fc as torchvision {} (meta _ops {} GMACs)"
_TABLE5 = "paper Table 5, single 320x320 crop, error {} (top-1) / {} (top-5)"
_NOT_IN_PAPER = "Not in the paper's tables: ResNet-{}'s stage depths with pre-activation units."


@register_model(card_with(
    _IMAGENET_CARD,
    name="preact_resnet18",
    params=Published(11_687_720, _TIMM.format("resnetv2_18")),
    macs=Published(1.814e9, _SAME_CONVS.format("resnet18", "1.814")),
    timm="resnetv2_18",
    notes=_NOT_IN_PAPER.format(18),
))
def preact_resnet18(*, num_classes: int = 1000, unit: str = "full_preact") -> PreActResNet:
    """Pre-activation ResNet-18 for ImageNet (He et al. 2016, arXiv:1603.05027, §4.3).

    Basic units, stages [2, 2, 2, 2] (ResNet-18's). ``unit``: the ordering of Fig. 4,
    ``"full_preact"`` (e, default) .. ``"original"`` (a); see :data:`UNITS`.
    """
    return _imagenet_preact(18, unit, num_classes)


@register_model(card_with(
    _IMAGENET_CARD,
    name="preact_resnet34",
    params=Published(21_795_880, _TIMM.format("resnetv2_34")),
    macs=Published(3.664e9, _SAME_CONVS.format("resnet34", "3.664")),
    timm="resnetv2_34",
    notes=_NOT_IN_PAPER.format(34),
))
def preact_resnet34(*, num_classes: int = 1000, unit: str = "full_preact") -> PreActResNet:
    """Pre-activation ResNet-34 for ImageNet (He et al. 2016, arXiv:1603.05027, §4.3).

    Basic units, stages [3, 4, 6, 3] (ResNet-34's). ``unit``: the ordering of Fig. 4,
    ``"full_preact"`` (e, default) .. ``"original"`` (a); see :data:`UNITS`.
    """
    return _imagenet_preact(34, unit, num_classes)


@register_model(card_with(
    _IMAGENET_CARD,
    name="preact_resnet50",
    params=Published(25_549_352, _TIMM.format("resnetv2_50")),
    macs=Published(4.089e9, _SAME_CONVS.format("resnet50", "4.089")),
    timm="resnetv2_50",
    notes=_NOT_IN_PAPER.format(50),
))
def preact_resnet50(*, num_classes: int = 1000, unit: str = "full_preact") -> PreActResNet:
    """Pre-activation ResNet-50 for ImageNet (He et al. 2016, arXiv:1603.05027, §4.3).

    Bottleneck units, stages [3, 4, 6, 3] (ResNet-50's), stride in the 3x3. ``unit``: the
    ordering of Fig. 4, ``"full_preact"`` (e, default) .. ``"original"`` (a, which is ResNet-50
    v1.5 itself); see :data:`UNITS`.
    """
    return _imagenet_preact(50, unit, num_classes)


@register_model(card_with(
    _IMAGENET_CARD,
    name="preact_resnet101",
    params=Published(44_541_480, _TIMM.format("resnetv2_101")),
    macs=Published(7.801e9, _SAME_CONVS.format("resnet101", "7.801")),
    timm="resnetv2_101",
    notes=_NOT_IN_PAPER.format(101),
))
def preact_resnet101(*, num_classes: int = 1000, unit: str = "full_preact") -> PreActResNet:
    """Pre-activation ResNet-101 for ImageNet (He et al. 2016, arXiv:1603.05027, §4.3).

    Bottleneck units, stages [3, 4, 23, 3], stride in the 3x3. ``unit``: the ordering of
    Fig. 4, ``"full_preact"`` (e, default) .. ``"original"`` (a); see :data:`UNITS`.
    """
    return _imagenet_preact(101, unit, num_classes)


@register_model(card_with(
    _IMAGENET_CARD,
    name="preact_resnet152",
    params=Published(60_185_128, _TIMM.format("resnetv2_152")),
    macs=Published(11.514e9, _SAME_CONVS.format("resnet152", "11.514")),
    top1=Published(78.9, _TABLE5.format("21.1%", "5.5%")),
    top5=Published(94.5, _TABLE5.format("21.1%", "5.5%")),
    timm="resnetv2_152",
    notes="The original ResNet-152 gets 21.3/5.5% error at the same 320 crop (Table 5).",
))
def preact_resnet152(*, num_classes: int = 1000, unit: str = "full_preact") -> PreActResNet:
    """Pre-activation ResNet-152 for ImageNet (He et al. 2016, arXiv:1603.05027, Table 5).

    Bottleneck units, stages [3, 8, 36, 3], stride in the 3x3: 21.1% top-1 error at a 320
    crop against 21.3% for the original. ``unit``: the ordering of Fig. 4, ``"full_preact"``
    (e, default) .. ``"original"`` (a); see :data:`UNITS`.
    """
    return _imagenet_preact(152, unit, num_classes)


@register_model(card_with(
    _IMAGENET_CARD,
    name="preact_resnet200",
    params=Published(
        64_666_152,
        "timm 1.0.31 ResNetV2(layers=[3, 24, 36, 3]) with resnetv2_50's layer types "
        "(WRN README: pre-ResNet-200 64.7M)",
    ),
    top1=Published(79.3, _TABLE5.format("20.7%", "5.3%")),
    top5=Published(94.7, _TABLE5.format("20.7%", "5.3%")),
    notes="The original ResNet-200 gets 21.8/6.0% error at the same crop (Table 5); with scale "
    "and aspect-ratio augmentation the pre-activation one reaches 20.1/4.8%.",
))
def preact_resnet200(*, num_classes: int = 1000, unit: str = "full_preact") -> PreActResNet:
    """Pre-activation ResNet-200 for ImageNet (He et al. 2016, arXiv:1603.05027, Table 5).

    Bottleneck units, stages [3, 24, 36, 3], stride in the 3x3: 20.7% top-1 error at a 320
    crop against 21.8% for the original. ``unit``: the ordering of Fig. 4, ``"full_preact"``
    (e, default) .. ``"original"`` (a); see :data:`UNITS`.
    """
    return _imagenet_preact(200, unit, num_classes)
