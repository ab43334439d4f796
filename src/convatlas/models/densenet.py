"""DenseNet: every layer sees the feature maps of all layers before it in its block.

Huang, Liu, van der Maaten, Weinberger (2017). "Densely Connected Convolutional Networks",
CVPR 2017, arXiv:1608.06993.

Layer ``l`` of a dense block computes ``x_l = H_l([x_0, x_1, ..., x_{l-1}])`` where ``[...]`` is
concatenation along channels and ``H_l`` is BN-ReLU-Conv(3x3) producing ``k`` ("growth rate")
new channels. A block that starts with ``m0`` channels and has ``n`` layers ends with
``m0 + n*k`` channels.

* **DenseNet-B** puts a bottleneck in front of the 3x3: ``H_l`` = BN-ReLU-Conv(1x1, 4k)-BN-ReLU-Conv(3x3, k).
* **DenseNet-C** compresses in the transition layers between blocks: BN-ReLU-Conv(1x1) to
  ``floor(theta*m)`` channels (``theta = 0.5``) then 2x2 average pooling.
* **DenseNet-BC** does both. The ImageNet networks (Table 1) are DenseNet-BC with k=32, a 7x7/2
  convolution of 2k=64 channels and a 3x3/2 max pool as stem, and four dense blocks.

The CIFAR networks (Section 3, Table 2) have three dense blocks on 32x32, 16x16 and 8x8 maps, a 3x3
stem of 16 channels (2k for DenseNet-BC), and ``(depth - 4) / 3`` layers per block (``(depth - 4) / 6``
bottleneck layers for BC, each of which holds two convolutions).

Attribute names follow torchvision (``features.conv0``, ``features.denseblock1.denselayer1.conv1``,
``features.transition1.conv``, ``features.norm5``, ``classifier``), so torchvision's DenseNet
state_dicts load unchanged.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from convatlas._checks import fraction, positive_int
from convatlas.layers.init import init_weights, kaiming_normal
from convatlas.models.features import FeatureInfo
from convatlas.registry import ModelCard, Published, card_with, register_model

__all__ = [
    "DenseLayer",
    "DenseBlock",
    "Transition",
    "DenseNet",
    "densenet121",
    "densenet161",
    "densenet169",
    "densenet201",
    "densenet264",
    "densenet_cifar",
    "densenet40_k12",
    "densenet100_k12",
    "densenet100_k24",
    "densenet_bc100_k12",
    "densenet_bc250_k24",
    "densenet_bc190_k40",
    "cifar_block_config",
]


# ---------------------------------------------------------------------------------------------
# Blocks: the composite function H_l, the dense block, the transition layer.


class DenseLayer(nn.Module):
    """``H_l``: [BN-ReLU-Conv1x1(bn_size*k)] - BN-ReLU-Conv3x3(k), on the concatenation of all inputs.

    With ``bn_size=None`` there is no bottleneck (plain DenseNet); then only ``norm2/relu2/conv2``
    (the 3x3 part) exist. ``drop_rate`` adds dropout after each convolution, as the paper does for
    CIFAR without augmentation.
    """

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int | None, drop_rate: float = 0.0) -> None:
        super().__init__()
        channels = in_channels
        if bn_size is not None:
            self.norm1 = nn.BatchNorm2d(channels)
            self.relu1 = nn.ReLU(inplace=True)
            self.conv1 = nn.Conv2d(channels, bn_size * growth_rate, kernel_size=1, bias=False)
            channels = bn_size * growth_rate
        self.norm2 = nn.BatchNorm2d(channels)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, growth_rate, kernel_size=3, padding=1, bias=False)
        self.dropout = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.bottleneck = bn_size is not None

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(inputs, dim=1)
        if self.bottleneck:
            x = self.dropout(self.conv1(self.relu1(self.norm1(x))))
        return self.dropout(self.conv2(self.relu2(self.norm2(x))))


class DenseBlock(nn.ModuleDict):
    """``num_layers`` dense layers; layer ``i`` gets ``in_channels + i*k`` channels, the block
    returns all of them concatenated: ``in_channels + num_layers*k`` channels."""

    def __init__(
        self, num_layers: int, in_channels: int, growth_rate: int, bn_size: int | None, drop_rate: float = 0.0
    ) -> None:
        super().__init__()
        for i in range(num_layers):
            layer = DenseLayer(in_channels + i * growth_rate, growth_rate, bn_size, drop_rate)
            self.add_module(f"denselayer{i + 1}", layer)
        self.out_channels = in_channels + num_layers * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, dim=1)


class Transition(nn.Sequential):
    """Between blocks: BN-ReLU-Conv1x1(out_channels) [-dropout] - AvgPool 2x2/2."""

    def __init__(self, in_channels: int, out_channels: int, drop_rate: float = 0.0) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            norm=nn.BatchNorm2d(in_channels),
            relu=nn.ReLU(inplace=True),
            conv=nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
        )
        if drop_rate > 0:
            layers["dropout"] = nn.Dropout(drop_rate)
        layers["pool"] = nn.AvgPool2d(kernel_size=2, stride=2)
        super().__init__(layers)


# ---------------------------------------------------------------------------------------------
# The network: stem, dense blocks with transitions, BN-ReLU, global average pool, classifier.


class DenseNet(nn.Module):
    """A DenseNet with any number of dense blocks.

    Args:
        block_config: layers per dense block, e.g. ``(6, 12, 24, 16)`` for DenseNet-121.
        growth_rate: ``k``, channels each layer adds.
        num_init_features: channels of the stem convolution.
        bn_size: bottleneck width factor (1x1 conv to ``bn_size*k``); ``None`` for no bottleneck.
        compression: ``theta`` in (0, 1]; transitions output ``floor(theta*m)`` channels.
        stem: ``"imagenet"`` (7x7/2 conv, BN, ReLU, 3x3/2 max pool) or ``"cifar"`` (one 3x3 conv).
        drop_rate: dropout after every convolution but the stem's.

    Feature maps: ``conv0`` (after ``relu0``, /2, ImageNet stem only) and ``denseblock1`` ..
    (each block's concatenated output; the last one after ``norm{n+1}``/``relu{n+1}``, the map the
    classifier sees), at /4, /8, ... (ImageNet) or /1, /2, ... (CIFAR).
    """

    def __init__(
        self,
        block_config: tuple[int, ...],
        growth_rate: int,
        num_init_features: int,
        *,
        bn_size: int | None = 4,
        compression: float = 0.5,
        stem: str = "imagenet",
        drop_rate: float = 0.0,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        if not 0.0 < compression <= 1.0:
            raise ValueError(f"compression (theta) must be in (0, 1], got {compression}")
        if stem == "imagenet":
            layers: OrderedDict[str, nn.Module] = OrderedDict(
                conv0=nn.Conv2d(3, num_init_features, kernel_size=7, stride=2, padding=3, bias=False),
                norm0=nn.BatchNorm2d(num_init_features),
                relu0=nn.ReLU(inplace=True),
                pool0=nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            )
        elif stem == "cifar":
            layers = OrderedDict(conv0=nn.Conv2d(3, num_init_features, kernel_size=3, padding=1, bias=False))
        else:
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        self.features = nn.Sequential(layers)

        channels = num_init_features
        for i, num_layers in enumerate(block_config, start=1):
            block = DenseBlock(num_layers, channels, growth_rate, bn_size, drop_rate)
            self.features.add_module(f"denseblock{i}", block)
            channels = block.out_channels
            if i != len(block_config):
                out = int(math.floor(compression * channels))
                self.features.add_module(f"transition{i}", Transition(channels, out, drop_rate))
                channels = out
        last = len(block_config) + 1
        self.features.add_module(f"norm{last}", nn.BatchNorm2d(channels))
        self.features.add_module(f"relu{last}", nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        self.num_features = channels
        self.feature_info = self._feature_info(block_config, growth_rate, num_init_features, compression, stem)
        # He et al. (2015) normal convolutions (fan_in), as torchvision's DenseNet; the classifier
        # keeps PyTorch's default weight and gets a zero bias.
        init_weights(self, conv=kaiming_normal(), linear=None)

    @staticmethod
    def _feature_info(block_config: tuple[int, ...], growth_rate: int, num_init_features: int,
                      compression: float, stem: str) -> list[FeatureInfo]:
        info = [FeatureInfo("conv0", "features.relu0", num_init_features, 2)] if stem == "imagenet" else []
        reduction = 4 if stem == "imagenet" else 1
        channels = num_init_features
        last = len(block_config)
        for i, num_layers in enumerate(block_config, start=1):
            channels += num_layers * growth_rate
            module = f"features.relu{last + 1}" if i == last else f"features.denseblock{i}"
            info.append(FeatureInfo(f"denseblock{i}", module, channels, reduction))
            channels, reduction = int(math.floor(compression * channels)), reduction * 2
        return info

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


# ---------------------------------------------------------------------------------------------
# ImageNet DenseNet-BC (Table 1): k=32, stem of 2k=64 channels, four blocks.

_PAPER = "Densely Connected Convolutional Networks"
_AUTHORS = "Huang, Liu, van der Maaten, Weinberger"
_IDEA = (
    "Each layer receives the concatenated feature maps of all preceding layers of its dense block "
    "and adds only k (the growth rate) new maps, so features are reused instead of re-learned and "
    "gradients reach every layer directly. Bottleneck 1x1 convolutions and compressing transitions "
    "(DenseNet-BC) keep the concatenated width affordable."
)

_IMAGENET = ModelCard(
    name="densenet121",
    family="densenet",
    paper=_PAPER,
    authors=_AUTHORS,
    year=2017,
    arxiv="1608.06993",
    input_size=(3, 224, 224),
    dataset="imagenet",
    idea=_IDEA,
)


def _imagenet_card(name: str, blocks: tuple[int, ...], params: int, macs: float, macs_source: str,
                   top1_err: float, top5_err: float, **changes) -> ModelCard:
    return card_with(
        _IMAGENET,
        name=name,
        params=Published(params, changes.pop("params_source", "torchvision meta num_params")),
        macs=Published(macs, macs_source),
        top1=Published(round(100 - top1_err, 2), "Table 3, single-crop top-1 error " f"{top1_err}%"),
        top5=Published(round(100 - top5_err, 2), "Table 3, single-crop top-5 error " f"{top5_err}%"),
        notes=changes.pop("notes", f"DenseNet-BC, k=32, blocks {'-'.join(map(str, blocks))}."),
        **changes,
    )


@register_model(_imagenet_card(
    "densenet121", (6, 12, 24, 16), 7_978_856, 2.834e9, "torchvision meta _ops (GMACs)", 25.02, 7.71,
    torchvision="densenet121", timm="densenet121",
    extra={"torchvision_top1": 74.434, "torchvision_top5": 91.972},
))
def densenet121(*, num_classes: int = 1000) -> DenseNet:
    """DenseNet-121 (Huang et al. 2017, arXiv:1608.06993, Table 1): k=32, blocks 6-12-24-16."""
    return DenseNet((6, 12, 24, 16), growth_rate=32, num_init_features=64, num_classes=num_classes)


@register_model(_imagenet_card(
    "densenet169", (6, 12, 32, 32), 14_149_480, 3.36e9, "torchvision meta _ops (GMACs)", 23.80, 6.85,
    torchvision="densenet169", timm="densenet169",
    extra={"torchvision_top1": 75.6, "torchvision_top5": 92.806},
))
def densenet169(*, num_classes: int = 1000) -> DenseNet:
    """DenseNet-169 (Huang et al. 2017, arXiv:1608.06993, Table 1): k=32, blocks 6-12-32-32."""
    return DenseNet((6, 12, 32, 32), growth_rate=32, num_init_features=64, num_classes=num_classes)


@register_model(_imagenet_card(
    "densenet201", (6, 12, 48, 32), 20_013_928, 4.291e9, "torchvision meta _ops (GMACs)", 22.58, 6.34,
    torchvision="densenet201", timm="densenet201",
    extra={"torchvision_top1": 76.896, "torchvision_top5": 93.37},
))
def densenet201(*, num_classes: int = 1000) -> DenseNet:
    """DenseNet-201 (Huang et al. 2017, arXiv:1608.06993, Table 1): k=32, blocks 6-12-48-32."""
    return DenseNet((6, 12, 48, 32), growth_rate=32, num_init_features=64, num_classes=num_classes)


@register_model(_imagenet_card(
    "densenet264", (6, 12, 64, 48), 33_337_704, 5.752e9, "paper-numbers.md s.13 [C] (torchvision DenseNet class)",
    22.15, 6.12, params_source="paper-numbers.md s.13 [C] (torchvision DenseNet(32, (6,12,64,48), 64))",
    notes="DenseNet-BC, k=32, blocks 6-12-64-48. Not in torchvision; timm's densenet264d is a "
          "different deep-stem model (72.7M parameters).",
))
def densenet264(*, num_classes: int = 1000) -> DenseNet:
    """DenseNet-264 (Huang et al. 2017, arXiv:1608.06993, Table 1): k=32, blocks 6-12-64-48."""
    return DenseNet((6, 12, 64, 48), growth_rate=32, num_init_features=64, num_classes=num_classes)


@register_model(card_with(
    _IMAGENET,
    name="densenet161",
    params=Published(28_681_000, "torchvision meta num_params"),
    macs=Published(7.728e9, "torchvision meta _ops (GMACs)"),
    top1=Published(77.8, "official Torch release (liuzhuang13/DenseNet README), 1-crop top-1 error 22.2%"),
    top5=Published(93.56, "torchvision IMAGENET1K_V1 meta"),
    torchvision="densenet161",
    timm="densenet161",
    notes="DenseNet-BC with k=48, a 96-channel stem, blocks 6-12-36-24: released with the paper's "
          "code, not in its Table 1.",
    extra={"torchvision_top1": 77.138, "torchvision_top5": 93.56},
))
def densenet161(*, num_classes: int = 1000) -> DenseNet:
    """DenseNet-161 (Huang et al. 2017, arXiv:1608.06993, official release): k=48, blocks 6-12-36-24."""
    return DenseNet((6, 12, 36, 24), growth_rate=48, num_init_features=96, num_classes=num_classes)


# ---------------------------------------------------------------------------------------------
# CIFAR DenseNets (Section 3 and Table 2): three blocks, depth L fixes the layers per block.


def cifar_block_config(depth: int, bc: bool) -> tuple[int, int, int]:
    """Layers per dense block of a CIFAR DenseNet of total depth ``L``.

    Depth counts the stem conv, every conv in the blocks, the two transition convs and the
    classifier: plain DenseNet ``L = 3n + 4`` (one conv per layer), DenseNet-BC ``L = 6n + 4``
    (two convs per bottleneck layer), so ``n = (L-4)/3`` or ``(L-4)/6``.
    """
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise ValueError(f"depth must be an integer, got {depth!r}")
    convs_per_layer = 2 if bc else 1
    step = 3 * convs_per_layer
    if depth < 4 + step or (depth - 4) % step:
        kind = "DenseNet-BC" if bc else "DenseNet (no bottleneck)"
        examples = "100, 190, 250" if bc else "40, 100"
        raise ValueError(
            f"depth={depth} is not valid for {kind}: depth must be {step}n + 4 with n >= 1 layers per "
            f"dense block (3 blocks x {convs_per_layer} conv(s) per layer + stem + 2 transitions + "
            f"classifier), e.g. {examples}"
        )
    n = (depth - 4) // step
    return (n, n, n)


_CIFAR = ModelCard(
    name="densenet_cifar",
    family="densenet",
    paper=_PAPER,
    authors=_AUTHORS,
    year=2017,
    arxiv="1608.06993",
    input_size=(3, 32, 32),
    dataset="cifar10",
    idea=_IDEA,
)


def _cifar_card(name: str, depth: int, k: int, bc: bool, params: int, macs: float,
                c10_plus: float, c100_plus: float) -> ModelCard:
    kind = "DenseNet-BC" if bc else "DenseNet"
    return card_with(
        _CIFAR,
        name=name,
        params=Published(params, f"paper-numbers.md s.13 [C], 10 classes; Table 2 {kind} (L={depth}, k={k})"),
        macs=Published(macs, "paper-numbers.md s.13 [C]"),
        top1=Published(round(100 - c10_plus, 2), f"Table 2, C10+ error {c10_plus}% (standard augmentation)"),
        notes=f"{kind} (L={depth}, k={k}). C100+ error {c100_plus}% (Table 2); build it with num_classes=100.",
        extra={"depth": depth, "growth_rate": k, "bc": bc, "c100_plus_error": c100_plus},
    )


def _densenet_cifar(depth: int, growth_rate: int, bc: bool, drop_rate: float, num_classes: int) -> DenseNet:
    positive_int("growth_rate", growth_rate, " (k, channels each layer adds)")
    fraction("drop_rate", drop_rate)
    return DenseNet(
        cifar_block_config(depth, bc),
        growth_rate=growth_rate,
        num_init_features=2 * growth_rate if bc else 16,
        bn_size=4 if bc else None,
        compression=0.5 if bc else 1.0,
        stem="cifar",
        drop_rate=drop_rate,
        num_classes=num_classes,
    )


@register_model(card_with(
    _cifar_card("densenet_cifar", 100, 12, True, 769_162, 287.9e6, 4.51, 22.27),
    notes="Any CIFAR DenseNet: densenet_cifar(depth=L, growth_rate=k, bc=True|False). "
          "Defaults are DenseNet-BC (L=100, k=12), Table 2 (C10+ 4.51%, C100+ 22.27%).",
))
def densenet_cifar(
    *, num_classes: int = 10, depth: int = 100, growth_rate: int = 12, bc: bool = True, drop_rate: float = 0.0
) -> DenseNet:
    """A CIFAR DenseNet (Huang et al. 2017, arXiv:1608.06993, Section 3, Table 2).

    Args:
        depth: ``L``, the number of weighted layers: ``3n+4`` for plain DenseNet, ``6n+4`` for
            DenseNet-BC, with ``n`` layers in each of the three dense blocks.
        growth_rate: ``k``, new channels per layer (12, 24 or 40 in the paper).
        bc: DenseNet-BC: bottleneck layers (1x1 to 4k before the 3x3), compression theta=0.5 in
            the transitions and a stem of 2k channels; otherwise plain DenseNet with a 16-channel stem.
        drop_rate: dropout after every convolution but the first (the paper uses 0.2 on C10/C100
            without data augmentation).
    """
    return _densenet_cifar(depth, growth_rate, bc, drop_rate, num_classes)


# Table 2 rows: name -> (L, k, BC, params (10 classes), MACs, C10+ error, C100+ error).
_CIFAR_TABLE: dict[str, tuple[int, int, bool, int, float, float, float]] = {
    "densenet40_k12": (40, 12, False, 1_019_722, 264.8e6, 5.24, 24.42),
    "densenet100_k12": (100, 12, False, 6_979_642, 1.770e9, 4.10, 20.20),
    "densenet100_k24": (100, 24, False, 27_249_082, 6.889e9, 3.74, 19.25),
    "densenet_bc100_k12": (100, 12, True, 769_162, 287.9e6, 4.51, 22.27),
    "densenet_bc250_k24": (250, 24, True, 15_324_406, 5.419e9, 3.62, 17.60),
    "densenet_bc190_k40": (190, 40, True, 25_624_430, 9.302e9, 3.46, 17.18),
}


def _table2(name: str, **changes) -> ModelCard:
    """The card of the Table 2 row ``name``."""
    return card_with(_cifar_card(name, *_CIFAR_TABLE[name]), **changes)


def _table2_network(name: str, drop_rate: float, num_classes: int) -> DenseNet:
    """The network of the Table 2 row ``name``."""
    depth, k, bc = _CIFAR_TABLE[name][:3]
    return _densenet_cifar(depth, k, bc, drop_rate, num_classes)


@register_model(_table2("densenet40_k12"))
def densenet40_k12(*, num_classes: int = 10, drop_rate: float = 0.0) -> DenseNet:
    """DenseNet (L=40, k=12) for CIFAR (Huang et al. 2017, arXiv:1608.06993, Table 2): three dense
    blocks of 12 layers (BN-ReLU-Conv3x3), no bottleneck or compression, a 16-channel stem.
    ``drop_rate``: dropout after every convolution but the first (0.2 in the paper without
    augmentation)."""
    return _table2_network("densenet40_k12", drop_rate, num_classes)


@register_model(_table2("densenet100_k12"))
def densenet100_k12(*, num_classes: int = 10, drop_rate: float = 0.0) -> DenseNet:
    """DenseNet (L=100, k=12) for CIFAR (Huang et al. 2017, arXiv:1608.06993, Table 2): three dense
    blocks of 32 layers, no bottleneck or compression. ``drop_rate``: dropout after every
    convolution but the first (0.2 in the paper without augmentation)."""
    return _table2_network("densenet100_k12", drop_rate, num_classes)


@register_model(_table2("densenet100_k24"))
def densenet100_k24(*, num_classes: int = 10, drop_rate: float = 0.0) -> DenseNet:
    """DenseNet (L=100, k=24) for CIFAR (Huang et al. 2017, arXiv:1608.06993, Table 2): three dense
    blocks of 32 layers adding 24 channels each, no bottleneck or compression. ``drop_rate``:
    dropout after every convolution but the first (0.2 in the paper without augmentation)."""
    return _table2_network("densenet100_k24", drop_rate, num_classes)


@register_model(_table2("densenet_bc100_k12", recipes=("densenet_bc100_cifar10",)))
def densenet_bc100_k12(*, num_classes: int = 10, drop_rate: float = 0.0) -> DenseNet:
    """DenseNet-BC (L=100, k=12) for CIFAR (Huang et al. 2017, arXiv:1608.06993, Table 2): three
    dense blocks of 16 bottleneck layers (1x1 to 4k, then 3x3), compression 0.5, a 24-channel stem.
    ``drop_rate``: dropout after every convolution but the first (0.2 in the paper without
    augmentation)."""
    return _table2_network("densenet_bc100_k12", drop_rate, num_classes)


@register_model(_table2("densenet_bc250_k24"))
def densenet_bc250_k24(*, num_classes: int = 10, drop_rate: float = 0.0) -> DenseNet:
    """DenseNet-BC (L=250, k=24) for CIFAR (Huang et al. 2017, arXiv:1608.06993, Table 2): three
    dense blocks of 41 bottleneck layers, compression 0.5. ``drop_rate``: dropout after every
    convolution but the first (0.2 in the paper without augmentation)."""
    return _table2_network("densenet_bc250_k24", drop_rate, num_classes)


@register_model(_table2("densenet_bc190_k40"))
def densenet_bc190_k40(*, num_classes: int = 10, drop_rate: float = 0.0) -> DenseNet:
    """DenseNet-BC (L=190, k=40) for CIFAR (Huang et al. 2017, arXiv:1608.06993, Table 2), the
    paper's best: three dense blocks of 31 bottleneck layers, compression 0.5. ``drop_rate``:
    dropout after every convolution but the first (0.2 in the paper without augmentation)."""
    return _table2_network("densenet_bc190_k40", drop_rate, num_classes)
