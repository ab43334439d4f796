"""SqueezeNet: AlexNet-level accuracy with 50x fewer parameters, built from Fire modules.

Iandola, Han, Moskewicz, Ashraf, Dally, Keutzer (2016). "SqueezeNet: AlexNet-level accuracy with
50x fewer parameters and <0.5MB model size", arXiv:1602.07360.

Three strategies (Section 3.1): replace 3x3 filters by 1x1 filters; cut the input channels of the
remaining 3x3 filters with a *squeeze* layer; downsample late so the convolutions see large maps.
A **Fire module** is a squeeze layer of ``s1x1`` 1x1 filters followed by an *expand* layer of
``e1x1`` 1x1 and ``e3x3`` 3x3 filters whose outputs are concatenated (``e1x1 + e3x3`` channels),
ReLU after each. The network (Table 1) is conv1, fire2 ... fire9, conv10 (1x1 to the classes), global
average pooling; there are no fully connected layers.

Version 1.1 (the authors' GitHub release, DeepScale/SqueezeNet) uses 64 3x3/2 filters in conv1 and
pools earlier (after conv1, fire3 and fire5): 2.4x less computation at the same accuracy.

``bypass`` is the macroarchitecture ablation of Section 6 (Fig. 2, Table 6):

* ``"none"``: vanilla SqueezeNet;
* ``"simple"``: identity shortcuts around fire3, fire5, fire7 and fire9 (the modules whose input and
  output widths agree), ``out = fire(x) + x``; no extra parameters;
* ``"complex"``: the simple shortcuts plus a 1x1 convolution (with bias) on the shortcut of fire2,
  fire4, fire6 and fire8, ``out = fire(x) + conv1x1(x)``.

Children are named like the paper (``features.conv1``, ``features.fire2`` ... ``classifier.conv10``);
``torchvision_keys`` maps torchvision's numbered ``features.N`` keys onto these names.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Callable

import torch
from torch import nn

from convatlas.layers.init import init_weights, kaiming_uniform, normal
from convatlas.models.features import FeatureInfo
from convatlas.registry import ModelCard, Published, card_with, register_model

__all__ = ["Fire", "SqueezeNet", "squeezenet1_0", "squeezenet1_1", "BYPASS_CHOICES"]

BYPASS_CHOICES = ("none", "simple", "complex")


class Fire(nn.Module):
    """Squeeze (``s1x1`` 1x1 filters) then expand (``e1x1`` 1x1 and ``e3x3`` 3x3 filters, concatenated).

    ``bypass``: ``None``, ``"identity"`` (needs ``in_channels == e1x1 + e3x3``) or ``"conv"``
    (a 1x1 convolution on the shortcut); the shortcut is added to the concatenated output.
    Attribute names follow torchvision's ``Fire``.
    """

    def __init__(
        self, in_channels: int, s1x1: int, e1x1: int, e3x3: int, bypass: str | None = None
    ) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(in_channels, s1x1, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(s1x1, e1x1, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(s1x1, e3x3, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)
        out_channels = e1x1 + e3x3
        if bypass is None:
            self.bypass: nn.Module | None = None
        elif bypass == "identity":
            if in_channels != out_channels:
                raise ValueError(f"an identity bypass needs equal widths, got {in_channels} -> {out_channels}")
            self.bypass = nn.Identity()
        elif bypass == "conv":
            self.bypass = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        else:
            raise ValueError(f"Fire bypass must be None, 'identity' or 'conv', got {bypass!r}")
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze_activation(self.squeeze(x))
        out = torch.cat(
            [self.expand1x1_activation(self.expand1x1(s)), self.expand3x3_activation(self.expand3x3(s))], dim=1
        )
        if self.bypass is not None:
            out = out + self.bypass(x)
        return out


# Fire modules of Table 1: (name, s1x1, e1x1, e3x3). Both versions share them.
FIRES = [
    ("fire2", 16, 64, 64),
    ("fire3", 16, 64, 64),
    ("fire4", 32, 128, 128),
    ("fire5", 32, 128, 128),
    ("fire6", 48, 192, 192),
    ("fire7", 48, 192, 192),
    ("fire8", 64, 256, 256),
    ("fire9", 64, 256, 256),
]
# conv1 (out channels, kernel) and the Fire modules after which a 3x3/2 max pool follows.
VERSIONS = {
    "1_0": {"conv1": (96, 7), "pool_after": ("fire4", "fire8")},
    "1_1": {"conv1": (64, 3), "pool_after": ("fire3", "fire5")},
}
# Section 6: which modules get which shortcut.
SIMPLE_BYPASS = ("fire3", "fire5", "fire7", "fire9")
COMPLEX_BYPASS = ("fire2", "fire4", "fire6", "fire8")


class SqueezeNet(nn.Module):
    """SqueezeNet ``version`` "1_0" (paper, Table 1) or "1_1" (GitHub release), with a ``bypass`` variant.

    Feature maps, the last one at each resolution: ``conv1`` (after ``relu1``, /2), the Fire
    module before each max pool (v1.0: ``fire4`` /4, ``fire8`` /8; v1.1: ``fire3``, ``fire5``) and
    ``fire9`` (/16), the input of the classifier's ``conv10``.
    """

    def __init__(self, version: str = "1_0", *, bypass: str = "none", num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        if version not in VERSIONS:
            raise ValueError(f"SqueezeNet version must be one of {sorted(VERSIONS)}, got {version!r}")
        if bypass not in BYPASS_CHOICES:
            raise ValueError(
                f"bypass must be one of {', '.join(map(repr, BYPASS_CHOICES))} "
                f"(Section 6 of the SqueezeNet paper), got {bypass!r}"
            )
        spec = VERSIONS[version]
        conv1_channels, conv1_kernel = spec["conv1"]
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv1=nn.Conv2d(3, conv1_channels, kernel_size=conv1_kernel, stride=2),
            relu1=nn.ReLU(inplace=True),
            maxpool1=nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
        )
        channels = conv1_channels
        for name, s1x1, e1x1, e3x3 in FIRES:
            shortcut = None
            if bypass in ("simple", "complex") and name in SIMPLE_BYPASS:
                shortcut = "identity"
            elif bypass == "complex" and name in COMPLEX_BYPASS:
                shortcut = "conv"
            layers[name] = Fire(channels, s1x1, e1x1, e3x3, bypass=shortcut)
            channels = e1x1 + e3x3
            if name in spec["pool_after"]:
                layers[f"maxpool{name[-1]}"] = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)
        self.features = nn.Sequential(layers)
        self.classifier = nn.Sequential(OrderedDict(
            dropout=nn.Dropout(p=dropout),  # "dropout with a ratio of 50% after the fire9 module"
            conv10=nn.Conv2d(channels, num_classes, kernel_size=1),
            relu10=nn.ReLU(inplace=True),
            avgpool10=nn.AdaptiveAvgPool2d(1),
        ))
        self.version, self.bypass = version, bypass
        self.feature_info = [FeatureInfo("conv1", "features.relu1", conv1_channels, 2)]
        widths = {name: e1x1 + e3x3 for name, _, e1x1, e3x3 in FIRES}
        for halvings, name in enumerate([*spec["pool_after"], "fire9"], start=2):  # conv1 and maxpool1 halve twice
            self.feature_info.append(FeatureInfo(name, f"features.{name}", widths[name], 2**halvings))
        # torchvision's initialisation: He uniform convolutions, N(0, 0.01^2) for the final conv10.
        init_weights(self.features, conv=kaiming_uniform())
        init_weights(self.classifier, conv=normal(std=0.01))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


def _feature_names(version: str) -> list[str]:
    names = ["conv1", "relu1", "maxpool1"]
    for name, *_ in FIRES:
        names.append(name)
        if name in VERSIONS[version]["pool_after"]:
            names.append(f"maxpool{name[-1]}")
    return names


def _torchvision_keys(version: str) -> Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
    index = {str(i): name for i, name in enumerate(_feature_names(version))}

    def rename(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for key, value in state.items():
            key = re.sub(r"^features\.(\d+)\.", lambda m: f"features.{index[m.group(1)]}.", key)
            key = re.sub(r"^classifier\.1\.", "classifier.conv10.", key)
            out[key] = value
        return out

    return rename


_IDEA = (
    "The Fire module squeezes the input to few channels with 1x1 filters and expands it again with "
    "a mix of 1x1 and 3x3 filters, and the network ends in a 1x1 conv plus global pooling instead of "
    "fully connected layers, reaching AlexNet's accuracy with 50x fewer parameters."
)
_BASE = ModelCard(
    name="squeezenet1_0",
    family="squeezenet",
    paper="SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size",
    authors="Iandola, Han, Moskewicz, Ashraf, Dally, Keutzer",
    year=2016,
    arxiv="1602.07360",
    input_size=(3, 224, 224),
    dataset="imagenet",
    idea=_IDEA,
)


@register_model(
    card_with(
        _BASE,
        params=Published(1_248_424, "Table 1 total; torchvision meta num_params"),
        macs=Published(0.819e9, "torchvision meta _ops (GMACs at 224)"),
        top1=Published(57.5, "Table 2/6, vanilla SqueezeNet"),
        top5=Published(80.3, "Table 2/6, vanilla SqueezeNet"),
        torchvision="squeezenet1_0",
        notes="Paper input 224 (the Caffe prototxt crops 227). bypass='simple': 60.4/82.5, "
              "'complex': 58.8/82.0 top-1/top-5 (Table 6); complex bypass has 1,589,672 parameters.",
        extra={"torchvision_top1": 58.092, "torchvision_top5": 80.42},
    ),
    torchvision_keys=_torchvision_keys("1_0"),
)
def squeezenet1_0(*, num_classes: int = 1000, bypass: str = "none") -> SqueezeNet:
    """SqueezeNet v1.0 (Iandola et al. 2016, arXiv:1602.07360, Table 1).

    ``bypass``: ``"none"`` (vanilla), ``"simple"`` (identity shortcuts around fire3/5/7/9) or
    ``"complex"`` (plus 1x1-conv shortcuts around fire2/4/6/8), the ablation of Section 6.
    """
    return SqueezeNet("1_0", bypass=bypass, num_classes=num_classes)


@register_model(
    card_with(
        _BASE,
        name="squeezenet1_1",
        params=Published(1_235_496, "torchvision meta num_params"),
        macs=Published(0.349e9, "torchvision meta _ops (GMACs at 224)"),
        top1=Published(58.178, "torchvision IMAGENET1K_V1 meta (the release claims v1.0's accuracy)"),
        top5=Published(80.624, "torchvision IMAGENET1K_V1 meta"),
        torchvision="squeezenet1_1",
        notes="Release v1.1 (DeepScale/SqueezeNet README): conv1 64@3x3/2, pools after conv1, fire3, "
              "fire5; '2.4x less computation than SqueezeNet v1.0, without sacrificing accuracy'.",
    ),
    torchvision_keys=_torchvision_keys("1_1"),
)
def squeezenet1_1(*, num_classes: int = 1000, bypass: str = "none") -> SqueezeNet:
    """SqueezeNet v1.1 (Iandola et al., DeepScale/SqueezeNet release of arXiv:1602.07360).

    ``bypass`` as for :func:`squeezenet1_0` (the paper ran the ablation on v1.0 only).
    """
    return SqueezeNet("1_1", bypass=bypass, num_classes=num_classes)
