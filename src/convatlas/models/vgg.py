"""VGG: very deep networks of 3x3 convolutions, configurations A to E.

Simonyan, Zisserman (2015). "Very Deep Convolutional Networks for Large-Scale Image Recognition",
ICLR 2015, arXiv:1409.1556 (v6).

The idea (Section 2.3): a stack of two 3x3 convolutions sees a 5x5 region and three see 7x7, with
fewer parameters (``3 (3^2 C^2) = 27 C^2`` against ``7^2 C^2 = 49 C^2``) and more non-linearities in
between. Every convolution is 3x3, stride 1, padding 1 (so it keeps the map size), followed by ReLU;
five 2x2/2 max-pools halve the maps; then FC-4096, FC-4096 (ReLU, dropout 0.5) and FC-1000.

**Table 1** of the paper is the table :data:`CONFIGS` below, read column by column: a number is a
3x3 convolution with that many filters ("conv3-64"), ``"M"`` a max-pool, ``"LRN"`` local response
normalisation as in AlexNet (configuration A-LRN only), ``"conv1-N"`` a 1x1 convolution with N filters
(configuration C only: a linear projection plus a ReLU, Section 2.3).

======  ==============  =========  ===============================================
config  weight layers   name here  torchvision equivalent (same attribute names)
======  ==============  =========  ===============================================
A       11              vgg11      vgg11
A-LRN   11              vgg11_lrn  none (LRN after the first convolution)
B       13              vgg13      vgg13
C       16              vgg16_c    none (D with 1x1 instead of 3x3 in the last conv of blocks 3-5)
D       16              vgg16      vgg16
E       19              vgg19      vgg19
======  ==============  =========  ===============================================

The ``*_bn`` variants put batch normalisation (Ioffe and Szegedy 2015, arXiv:1502.03167) between
each convolution and its ReLU, as torchvision does; they are not in the VGG paper.

Module layout is torchvision's: ``features`` (numbered), ``avgpool`` (adaptive 7x7, the identity at
224x224 input, so other sizes work too) and ``classifier`` (numbered), so torchvision's weights load
directly. Initialisation: Glorot & Bengio (2010) uniform weights and zero biases, which the paper's
footnote in Section 3.1 says works without its pre-training of deeper nets from configuration A.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import nn

from convatlas._checks import fraction, positive_int
from convatlas.layers import LocalResponseNorm
from convatlas.layers.init import init_weights, xavier_uniform
from convatlas.models.features import FeatureInfo
from convatlas.registry import ModelCard, Published, register_model

__all__ = [
    "CONFIGS",
    "VGG",
    "make_features",
    "vgg_feature_info",
    "vgg11",
    "vgg11_lrn",
    "vgg13",
    "vgg16_c",
    "vgg16",
    "vgg19",
    "vgg11_bn",
    "vgg13_bn",
    "vgg16_bn",
    "vgg19_bn",
]

Entry = Union[int, str]

# Table 1 of the paper, one list per column.
CONFIGS: dict[str, list[Entry]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "A-LRN": [64, "LRN", "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "C": [64, 64, "M", 128, 128, "M", 256, 256, "conv1-256", "M",
          512, 512, "conv1-512", "M", 512, 512, "conv1-512", "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
          512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def _resolve_config(config: str | Sequence[Entry]) -> list[Entry]:
    if isinstance(config, str):
        key = config.strip().upper().replace("_", "-")
        if key not in CONFIGS:
            raise ValueError(
                f"unknown VGG configuration {config!r}; the paper's Table 1 has {', '.join(CONFIGS)} "
                f"(or pass a list such as [64, 'M', 128, 'M'])"
            )
        return list(CONFIGS[key])
    return list(config)


def make_features(config: str | Sequence[Entry], batch_norm: bool = False, in_channels: int = 3) -> nn.Sequential:
    """The convolutional part of a VGG configuration (a letter of Table 1 or a list of entries)."""
    layers: list[nn.Module] = []
    channels = in_channels
    for entry in _resolve_config(config):
        if entry == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        if entry == "LRN":
            layers.append(LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0))
            continue
        if isinstance(entry, int) and not isinstance(entry, bool) and entry > 0:
            width, kernel = entry, 3
        elif isinstance(entry, str) and entry.startswith("conv1-") and entry[6:].isdigit() and int(entry[6:]) > 0:
            width, kernel = int(entry[6:]), 1
        else:
            raise ValueError(
                f"bad VGG configuration entry {entry!r}: expected a positive int (3x3 conv filters), "
                f"'conv1-N' (1x1 conv), 'M' (max-pool) or 'LRN'"
            )
        layers.append(nn.Conv2d(channels, width, kernel_size=kernel, padding=kernel // 2))
        if batch_norm:
            layers.append(nn.BatchNorm2d(width))
        layers.append(nn.ReLU(inplace=True))
        channels = width
    if not any(isinstance(m, nn.Conv2d) for m in layers):
        raise ValueError(f"VGG configuration {config!r} has no convolution")
    return nn.Sequential(*layers)


def vgg_feature_info(features: nn.Sequential, prefix: str = "features") -> list[FeatureInfo]:
    """The feature maps of a VGG ``features`` stack: the last layer of each block before its max
    pool, ``conv1`` .. ``conv5`` (/1 .. /16), and the last pool's output, ``pool5`` (/32)."""
    info: list[FeatureInfo] = []
    block, reduction, channels = 1, 1, 0
    for index, layer in enumerate(features):
        if isinstance(layer, nn.Conv2d):
            channels = layer.out_channels
        elif isinstance(layer, nn.MaxPool2d):
            info.append(FeatureInfo(f"conv{block}", f"{prefix}.{index - 1}", channels, reduction))
            block, reduction = block + 1, reduction * 2
    last = len(features) - 1
    if isinstance(features[last], nn.MaxPool2d):
        info.append(FeatureInfo(f"pool{block - 1}", f"{prefix}.{last}", channels, reduction))
    else:
        info.append(FeatureInfo(f"conv{block}", f"{prefix}.{last}", channels, reduction))
    return info


class VGG(nn.Module):
    """A VGG network: ``features`` from a Table 1 configuration, adaptive 7x7 pooling, three FC layers.

    Feature maps (:func:`vgg_feature_info`): ``conv1`` .. ``conv5``, the last ReLU of each block
    before its max pool (/1 .. /16), and ``pool5`` (/32).
    """

    def __init__(
        self,
        config: str | Sequence[Entry] = "D",
        *,
        batch_norm: bool = False,
        num_classes: int = 1000,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        positive_int("num_classes", num_classes)
        fraction("dropout", dropout)
        self.features = make_features(config, batch_norm)
        self.feature_info = vgg_feature_info(self.features)
        last_width = [m.out_channels for m in self.features if isinstance(m, nn.Conv2d)][-1]
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(last_width * 7 * 7, 4096),  # 0: FC-4096
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),  # 3: FC-4096
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),  # 6: FC-1000
        )
        init_weights(self, conv=xavier_uniform(), linear=xavier_uniform())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


_IDEA = (
    "Depth is what matters: stacks of small 3x3 convolutions see as far as one large filter with fewer "
    "parameters and more non-linearities, and 16-19 weight layers of them beat shallower nets. One "
    "simple, uniform design from input to classifier."
)
_TABLE3 = "Table 3: single test scale, dense evaluation, train S=256, test Q=256, ILSVRC-2012 val"


def _card(
    name: str,
    config: str,
    params: int,
    params_source: str,
    gmacs: float,
    top: tuple[float, float],
    top_source: str,
    torchvision: str | None,
    notes: str = "",
) -> ModelCard:
    return ModelCard(
        name=name,
        family="vgg",
        paper="Very Deep Convolutional Networks for Large-Scale Image Recognition",
        authors="Simonyan, Zisserman",
        year=2015,
        arxiv="1409.1556",
        input_size=(3, 224, 224),
        dataset="imagenet",
        idea=_IDEA,
        params=Published(params, params_source),
        macs=Published(gmacs * 1e9, "torchvision meta _ops (GMACs)" if torchvision else "paper-numbers.md Sec. 4"),
        top1=Published(top[0], top_source),
        top5=Published(top[1], top_source),
        torchvision=torchvision,
        notes=f"Configuration {config} of Table 1. {notes}".strip(),
        extra={"config": config},
    )


def _paper_top(top1_error: float, top5_error: float) -> tuple[float, float]:
    return round(100.0 - top1_error, 2), round(100.0 - top5_error, 2)


def _tv(name: str, params: int) -> str:
    return f"torchvision {name} meta num_params ({params / 1e6:.0f} M in the paper's Table 2)"


@register_model(_card(
    "vgg11", "A", 132_863_336, _tv("vgg11", 133e6), 7.609, _paper_top(29.6, 10.4),
    f"100 - error, {_TABLE3}", "vgg11", "torchvision IMAGENET1K_V1 single crop: 69.02 / 88.628.",
))
def vgg11(*, num_classes: int = 1000) -> VGG:
    """VGG configuration A (11 weight layers; Simonyan and Zisserman 2015, arXiv:1409.1556)."""
    return VGG("A", num_classes=num_classes)


@register_model(_card(
    "vgg11_lrn", "A-LRN", 132_863_336, "Table 2: 133 M; exact count paper-numbers.md Sec. 4 (LRN has none)",
    7.609, _paper_top(29.7, 10.5), f"100 - error, {_TABLE3}", None,
    "LRN after the first convolution; the paper found it does not help (Sec. 4.1).",
))
def vgg11_lrn(*, num_classes: int = 1000) -> VGG:
    """VGG configuration A-LRN: A with AlexNet's local response normalisation after the first conv."""
    return VGG("A-LRN", num_classes=num_classes)


@register_model(_card(
    "vgg13", "B", 133_047_848, _tv("vgg13", 133e6), 11.308, _paper_top(28.7, 9.9),
    f"100 - error, {_TABLE3}", "vgg13", "torchvision IMAGENET1K_V1 single crop: 69.928 / 89.246.",
))
def vgg13(*, num_classes: int = 1000) -> VGG:
    """VGG configuration B (13 weight layers)."""
    return VGG("B", num_classes=num_classes)


@register_model(_card(
    "vgg16_c", "C", 133_638_952, "Table 2: 134 M; exact count paper-numbers.md Sec. 4", 11.771,
    _paper_top(28.1, 9.4), f"100 - error, {_TABLE3}", None,
    "16 weight layers like D, but the last conv of blocks 3-5 is 1x1; no library has it.",
))
def vgg16_c(*, num_classes: int = 1000) -> VGG:
    """VGG configuration C (16 weight layers, three of them 1x1 convolutions). Named ``vgg16_c``
    because torchvision's ``vgg16`` is configuration D."""
    return VGG("C", num_classes=num_classes)


@register_model(_card(
    "vgg16", "D", 138_357_544, _tv("vgg16", 138e6), 15.470, _paper_top(27.0, 8.8),
    f"100 - error, {_TABLE3}", "vgg16", "torchvision IMAGENET1K_V1 single crop: 71.592 / 90.382.",
))
def vgg16(*, num_classes: int = 1000) -> VGG:
    """VGG configuration D (16 weight layers, all 3x3): the VGG-16 of common use."""
    return VGG("D", num_classes=num_classes)


@register_model(_card(
    "vgg19", "E", 143_667_240, _tv("vgg19", 144e6), 19.632, _paper_top(27.3, 9.0),
    f"100 - error, {_TABLE3}", "vgg19", "torchvision IMAGENET1K_V1 single crop: 72.376 / 90.876.",
))
def vgg19(*, num_classes: int = 1000) -> VGG:
    """VGG configuration E (19 weight layers)."""
    return VGG("E", num_classes=num_classes)


_BN_NOTE = "Batch normalisation after every conv (not in the paper; torchvision's variant)."
_TV_TOP = "torchvision {} IMAGENET1K_V1, single centre crop 224 of 256, ImageNet val (the paper has no BN)"


@register_model(_card(
    "vgg11_bn", "A", 132_868_840, "torchvision vgg11_bn meta num_params", 7.609, (70.37, 89.81),
    _TV_TOP.format("vgg11_bn"), "vgg11_bn", _BN_NOTE,
))
def vgg11_bn(*, num_classes: int = 1000) -> VGG:
    """VGG configuration A with batch normalisation (torchvision's vgg11_bn)."""
    return VGG("A", batch_norm=True, num_classes=num_classes)


@register_model(_card(
    "vgg13_bn", "B", 133_053_736, "torchvision vgg13_bn meta num_params", 11.308, (71.586, 90.374),
    _TV_TOP.format("vgg13_bn"), "vgg13_bn", _BN_NOTE,
))
def vgg13_bn(*, num_classes: int = 1000) -> VGG:
    """VGG configuration B with batch normalisation (torchvision's vgg13_bn)."""
    return VGG("B", batch_norm=True, num_classes=num_classes)


@register_model(_card(
    "vgg16_bn", "D", 138_365_992, "torchvision vgg16_bn meta num_params", 15.470, (73.36, 91.516),
    _TV_TOP.format("vgg16_bn"), "vgg16_bn", _BN_NOTE,
))
def vgg16_bn(*, num_classes: int = 1000) -> VGG:
    """VGG configuration D with batch normalisation (torchvision's vgg16_bn)."""
    return VGG("D", batch_norm=True, num_classes=num_classes)


@register_model(_card(
    "vgg19_bn", "E", 143_678_248, "torchvision vgg19_bn meta num_params", 19.632, (74.218, 91.842),
    _TV_TOP.format("vgg19_bn"), "vgg19_bn", _BN_NOTE,
))
def vgg19_bn(*, num_classes: int = 1000) -> VGG:
    """VGG configuration E with batch normalisation (torchvision's vgg19_bn)."""
    return VGG("E", batch_norm=True, num_classes=num_classes)
