"""FCN: fully convolutional networks for semantic segmentation.

Long, Shelhamer, Darrell (2015). "Fully Convolutional Networks for Semantic Segmentation",
CVPR 2015, arXiv:1411.4038 (journal version: Shelhamer, Long, Darrell, PAMI 2016, arXiv:1605.06211).

The idea: a classification network's fully connected layers are convolutions whose kernels cover
their whole input, so written as convolutions the network takes an image of any size and returns
a coarse map of class scores. Upsampling inside the network (a transposed convolution initialised
to bilinear interpolation) brings the map back to the input resolution, and the "skip"
architecture adds the scores of finer layers: FCN-32s upsamples the stride-32 scores in one step,
FCN-16s first fuses them with scores from ``pool4`` (stride 16), FCN-8s also with ``pool3`` (8).

Four kinds of network live here:

* :class:`FCN` (``fcn32s``, ``fcn16s``, ``fcn8s``): the paper's VGG-16 nets, layer for layer the
  reference Caffe nets (``voc-fcn32s``/``16s``/``8s`` of fcn.berkeleyvision.org), with their 100
  pixels of padding and their crops, so the output is the input's size for any input;
* :class:`SkipFCN` on any zoo backbone (``fcn_backbone``): the same skip architecture on the
  stride-8/16/32 stages of a classification network's ``feature_info``;
* :class:`TorchvisionFCN` (``fcn_resnet50``, ``fcn_resnet101``): torchvision's FCN, which is not
  the paper's (a dilated ResNet with output stride 8, a 3x3 head, bilinear interpolation);
* ``fcn8s_mini``: a small FCN-8s for the 64x64 digit scenes, trained from scratch in minutes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from convatlas._checks import fraction, one_of, positive_int
from convatlas.layers.basic import ConvNormAct
from convatlas.layers.init import init_weights, kaiming_normal, normal, xavier_uniform
from convatlas.layers.special import TransposedConv2d
from convatlas.models.features import FeatureExtractor, FeatureInfo
from convatlas.models.vgg import make_features
from convatlas.registry import ModelCard, Published, card_with, register_model
from convatlas.segmentation._heads import (
    BilinearUpsample,
    CoordMap,
    coord_map,
    backbone_taps,
    crop,
    dilate_resnet,
    fit_to_size,
    stages_at,
    zoo_backbone,
)

__all__ = [
    "FCN",
    "SkipFCN",
    "FCNHead",
    "TorchvisionFCN",
    "VARIANTS",
    "vgg16_to_fcn",
    "load_vgg16_weights",
    "torchvision_fcn_keys",
    "fcn32s",
    "fcn16s",
    "fcn8s",
    "fcn_backbone",
    "fcn_resnet50",
    "fcn_resnet101",
    "fcn8s_mini",
]

# The skip architectures: the strides whose scores are fused, coarse to fine (Section 4.2).
VARIANTS: dict[str, tuple[int, ...]] = {"32s": (32,), "16s": (32, 16), "8s": (32, 16, 8)}


def _variant(variant: str) -> tuple[int, ...]:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)} (FCN-32s, -16s, -8s), got {variant!r}")
    return VARIANTS[variant]


def _upsample_x2(num_classes: int, learned: bool, padding: int) -> nn.Module:
    """FCN's 2x upsampling of class scores: a 4x4 transposed convolution with stride 2,
    initialised to bilinear interpolation and learned, or fixed bilinear interpolation."""
    if learned:
        return TransposedConv2d(num_classes, num_classes, 4, 2, padding, bias=False, init="bilinear")
    return BilinearUpsample(num_classes, 2, padding=padding)


# --------------------------------------------------------------------------------------------
# The paper's nets: VGG-16, fc6/fc7 as convolutions, 100 pixels of padding, crops.


class FCN(nn.Module):
    """FCN-32s, -16s or -8s on VGG-16, as the reference Caffe nets build it.

    Layers (Caffe names): ``features`` is VGG-16 (configuration D of
    :data:`convatlas.models.vgg.CONFIGS`, numbered as torchvision's ``vgg16().features``) with
    two changes: ``conv1_1`` pads by 100 pixels, and the max pools round up (Caffe's pooling,
    ``ceil_mode=True``). Then ``fc6`` (7x7 convolution, 4096), ``fc7`` (1x1, 4096), each with ReLU
    and dropout 0.5, and ``score_fr`` (1x1, one score per class) at stride 32.

    * FCN-32s: ``upscore``, a 64x64 transposed convolution with stride 32, fixed to bilinear.
    * FCN-16s: ``upscore2`` (4x4, stride 2) doubles the scores; ``score_pool4`` (1x1 on pool4) is
      cropped to them and added; ``upscore16`` (32x32, stride 16, fixed bilinear).
    * FCN-8s: after that, ``upscore_pool4`` (4x4, stride 2), plus the cropped ``score_pool3``
      (1x1 on pool3), and ``upscore8`` (16x16, stride 8, fixed bilinear).

    What is learned: the paper fixes the final upsampling to bilinear interpolation and learns the
    intermediate 2x ones from a bilinear start (Section 4.3, from memory: [M]); the reference
    re-release fixes them all (``lr_mult: 0``, "no significant difference", its README [V]). Here the final ones (``upscore``,
    ``upscore16``, ``upscore8``) are :class:`BilinearUpsample`, a fixed operation with no
    parameters, and ``learned_upsampling=False`` makes ``upscore2`` / ``upscore_pool4`` fixed too.
    The learned ones are full ``C x C`` transposed convolutions with a bilinear kernel on the
    diagonal (Caffe's ``surgery.interp``), without bias.

    Why 100 pixels and which crops: every layer maps its output pixel ``v`` to an input position
    ``u = a v + b`` (:func:`~convatlas.segmentation._heads.coord_map`). The 100 pixels make the
    7x7 ``fc6`` fit any input and push every map's centre left of the image, so each map can be
    cropped to align with the next: ``score_pool4`` by 5, ``score_pool3`` by 9 and the final
    upsampling by 31 (FCN-8s); 5 and 27 (FCN-16s); 19 (FCN-32s) - the offsets of the reference
    ``.prototxt`` files, computed in :meth:`crop_offsets` from the layers themselves. For example
    pool5 sits at ``u = 32 v - 83.5`` (the padding shifts conv1_1 by -99, each 2x2 pool maps
    ``v -> 2 v + 1/2``), ``fc6`` adds 3 (half its 7x7 kernel), so score_fr is at ``32 v + 12.5``;
    the 64x64/32 transposed convolution maps ``v -> (v - 31.5) / 32``, which puts upscore at
    ``u = v - 19``: the output starts 19 pixels in.

    Initialisation: VGG-16's (Glorot uniform, as :class:`~convatlas.models.vgg.VGG`; in the paper
    it comes from ImageNet, see :func:`load_vgg16_weights`); the class-scoring layers start at zero
    ("we zero-initialize the class scoring layer", Section 4.3 [M]; Caffe's default filler in the
    reference nets).

    ``feature_info``: ``pool3`` (/8), ``pool4`` (/16), ``pool5`` (/32) and ``fc7`` (/32).
    """

    def __init__(
        self,
        variant: str = "8s",
        *,
        num_classes: int = 21,
        learned_upsampling: bool = True,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.variant = variant
        strides = _variant(variant)
        positive_int("num_classes", num_classes)
        fraction("dropout", dropout)
        self.features = make_features("D")
        self.features[0] = nn.Conv2d(3, 64, kernel_size=3, padding=100)  # conv1_1: pad 100
        pools = [i for i, layer in enumerate(self.features) if isinstance(layer, nn.MaxPool2d)]
        for i in pools:
            self.features[i] = nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True)  # Caffe rounds up
        self._pool3, self._pool4 = pools[2], pools[3]
        self.fc6 = nn.Conv2d(512, 4096, kernel_size=7)
        self.relu6 = nn.ReLU(inplace=True)
        self.drop6 = nn.Dropout(dropout)
        self.fc7 = nn.Conv2d(4096, 4096, kernel_size=1)
        self.relu7 = nn.ReLU(inplace=True)
        self.drop7 = nn.Dropout(dropout)
        self.score_fr = nn.Conv2d(4096, num_classes, kernel_size=1)
        if strides == (32,):
            self.upscore = BilinearUpsample(num_classes, 32, padding=0)
        else:
            self.upscore2 = _upsample_x2(num_classes, learned_upsampling, padding=0)
            self.score_pool4 = nn.Conv2d(512, num_classes, kernel_size=1)
            if strides == (32, 16):
                self.upscore16 = BilinearUpsample(num_classes, 16, padding=0)
            else:
                self.upscore_pool4 = _upsample_x2(num_classes, learned_upsampling, padding=0)
                self.score_pool3 = nn.Conv2d(256, num_classes, kernel_size=1)
                self.upscore8 = BilinearUpsample(num_classes, 8, padding=0)
        self.feature_info = [
            FeatureInfo("pool3", f"features.{pools[2]}", 256, 8),
            FeatureInfo("pool4", f"features.{pools[3]}", 512, 16),
            FeatureInfo("pool5", f"features.{pools[4]}", 512, 32),
            FeatureInfo("fc7", "relu7", 4096, 32),
        ]
        init_weights(self, conv=xavier_uniform())
        for name in ("score_fr", "score_pool4", "score_pool3"):
            layer = getattr(self, name, None)
            if layer is not None and not layer.weight.is_meta:
                nn.init.zeros_(layer.weight)
        self.offsets = self.crop_offsets()

    def crop_offsets(self) -> dict[str, int]:
        """The crops of the reference nets, from the layers' geometry: ``{"score_pool4c": 5,
        "score_pool3c": 9, "score": 31}`` for FCN-8s (Caffe's ``Crop`` layer names)."""
        data = CoordMap()
        pool3 = coord_map(self.features[: self._pool3 + 1])
        pool4 = coord_map(self.features[: self._pool4 + 1])
        scores = coord_map([*self.features, self.fc6, self.fc7, self.score_fr])
        if self.variant == "32s":
            return {"score": scores.then(coord_map([self.upscore])).offset_to(data)}
        fused4 = scores.then(coord_map([self.upscore2]))
        offsets = {"score_pool4c": pool4.offset_to(fused4)}
        if self.variant == "16s":
            offsets["score"] = fused4.then(coord_map([self.upscore16])).offset_to(data)
            return offsets
        fused3 = fused4.then(coord_map([self.upscore_pool4]))
        offsets["score_pool3c"] = pool3.offset_to(fused3)
        offsets["score"] = fused3.then(coord_map([self.upscore8])).offset_to(data)
        return offsets

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        h = x
        for index, layer in enumerate(self.features):
            h = layer(h)
            if index == self._pool3:
                pool3 = h
            elif index == self._pool4:
                pool4 = h
        h = self.drop6(self.relu6(self.fc6(h)))
        h = self.drop7(self.relu7(self.fc7(h)))
        h = self.score_fr(h)
        offsets = self.offsets
        if self.variant == "32s":
            return crop(self.upscore(h), offsets["score"], size)
        h = self.upscore2(h)
        h = h + crop(self.score_pool4(pool4), offsets["score_pool4c"], h.shape[-2:])  # fuse_pool4
        if self.variant == "16s":
            return crop(self.upscore16(h), offsets["score"], size)
        h = self.upscore_pool4(h)
        h = h + crop(self.score_pool3(pool3), offsets["score_pool3c"], h.shape[-2:])  # fuse_pool3
        return crop(self.upscore8(h), offsets["score"], size)


def vgg16_to_fcn(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision ``vgg16`` state_dict -> :class:`FCN` keys ("convolutionalization", Section 3.1).

    ``features.*`` keep their names (the same numbering); the first two fully connected layers
    become ``fc6`` (``classifier.0``, 4096 x 25088 reshaped to 4096 x 512 x 7 x 7: torchvision
    flattens pool5 channel-major, the layout of a 7x7 convolution's kernel) and ``fc7``
    (``classifier.3``, to 4096 x 4096 x 1 x 1). The 1000-way ``classifier.6`` is dropped: the
    scoring layers are new.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("features."):
            out[key] = value
        elif key == "classifier.0.weight":
            out["fc6.weight"] = value.reshape(value.shape[0], 512, 7, 7)
        elif key == "classifier.0.bias":
            out["fc6.bias"] = value
        elif key == "classifier.3.weight":
            out["fc7.weight"] = value.reshape(*value.shape, 1, 1)
        elif key == "classifier.3.bias":
            out["fc7.bias"] = value
    return out


def load_vgg16_weights(model: FCN, source: nn.Module | Mapping[str, torch.Tensor]) -> FCN:
    """Copy VGG-16 weights (a torchvision ``vgg16`` or its state_dict, e.g. the ImageNet ones)
    into ``model``'s ``features``, ``fc6`` and ``fc7``; the scoring and upsampling layers keep
    their initialisation. Returns ``model``."""
    state = source.state_dict() if isinstance(source, nn.Module) else dict(source)
    mapped = vgg16_to_fcn(state)
    result = model.load_state_dict(mapped, strict=False)
    new = ("score_", "upscore")
    missing = [k for k in result.missing_keys if not k.startswith(new)]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"the weights are not VGG-16's: missing {missing[:5]}, unexpected {list(result.unexpected_keys)[:5]}"
        )
    return model


# --------------------------------------------------------------------------------------------
# The skip architecture on any backbone of the zoo.


class SkipFCN(nn.Module):
    """FCN's skip architecture on a backbone's stride-32 (and 16, 8) feature maps.

    ``backbone`` is a :class:`~convatlas.models.features.FeatureExtractor` over stages at
    reductions 32, 16, 8 (FCN-8s), 32 and 16 (FCN-16s) or 32 alone (FCN-32s). Each map gets a
    1x1 ``score_<r>`` convolution; from the coarsest, ``upscore_<r>`` doubles the scores and they
    are added to the next finer ones; ``upscore`` brings the finest to the input size.

    ``upsample="transposed"``: the 2x steps are 4x4 transposed convolutions with stride 2 and
    padding 1, initialised to bilinear interpolation and learned (as the paper); the last is fixed
    bilinear interpolation by the finest reduction (a transposed convolution of kernel 2r, stride
    r, padding r/2). Backbones pad "same" or round down, so an upsampled map may be a few pixels
    off the map it meets: it is cropped or extended at its bottom/right edge
    (:func:`~convatlas.segmentation._heads.fit_to_size`). ``upsample="bilinear"``: every step is
    ``F.interpolate(mode="bilinear", align_corners=False)`` to the exact size; no parameters.

    Score layers start from ``N(0, 0.01^2)`` and zero bias (these nets are trained from scratch
    here; the paper's zeros suit its ImageNet-trained backbone).
    """

    def __init__(self, backbone: FeatureExtractor, *, num_classes: int, upsample: str = "transposed") -> None:
        super().__init__()
        positive_int("num_classes", num_classes)
        self.upsample = one_of("upsample", upsample, ("transposed", "bilinear"))
        info = list(backbone.feature_info)[::-1]  # coarse to fine
        self.reductions = tuple(i.reduction for i in info)
        if any(fine * 2 != coarse for coarse, fine in zip(self.reductions, self.reductions[1:])):
            raise ValueError(f"the skip stages must halve the reduction each step, got {list(self.reductions)}")
        self.backbone = backbone
        self.taps, self.feature_info = backbone_taps(backbone)
        self.stages = tuple(i.stage for i in info)
        for index, i in enumerate(info):
            if index > 0 and upsample == "transposed":
                coarser = self.reductions[index - 1]
                self.add_module(f"upscore_{coarser}", _upsample_x2(num_classes, True, padding=1))
            self.add_module(f"score_{i.reduction}", nn.Conv2d(i.channels, num_classes, kernel_size=1))
        self.upscore = BilinearUpsample(num_classes, self.reductions[-1]) if upsample == "transposed" else None
        for r in self.reductions:
            init_weights(getattr(self, f"score_{r}"), conv=normal(std=0.01))

    def _up(self, h: torch.Tensor, layer: nn.Module | None, size: Sequence[int]) -> torch.Tensor:
        if layer is None:
            return F.interpolate(h, size=tuple(size), mode="bilinear", align_corners=False)
        return fit_to_size(layer(h), size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = {stage: self.taps[stage](m) for stage, m in self.backbone(x).items()}
        h = None
        for stage, reduction in zip(self.stages, self.reductions):
            score = getattr(self, f"score_{reduction}")(maps[stage])
            if h is None:
                h = score
            else:
                layer = getattr(self, f"upscore_{reduction * 2}", None)
                h = self._up(h, layer, score.shape[-2:]) + score
        return self._up(h, self.upscore, x.shape[-2:])


# --------------------------------------------------------------------------------------------
# torchvision's FCN.


class FCNHead(nn.Sequential):
    """torchvision's ``FCNHead``: 3x3 convolution to ``in_channels / 4``, BN, ReLU, dropout 0.1,
    1x1 convolution to the classes (children numbered as torchvision's)."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        inter = in_channels // 4
        super().__init__(
            nn.Conv2d(in_channels, inter, 3, padding=1, bias=False),
            nn.BatchNorm2d(inter),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Conv2d(inter, num_classes, 1),
        )
        init_weights(self, conv=kaiming_normal(mode="fan_out", nonlinearity="relu"))


class TorchvisionFCN(nn.Module):
    """torchvision's ``fcn_resnet50`` / ``fcn_resnet101`` (not the paper's FCN).

    ``backbone``: ResNet-50/101 (torchvision's v1.5) whose layer3 and layer4 trade their stride
    for dilation 2 and 4 (``replace_stride_with_dilation=[False, True, True]``: the first block of
    each keeps the previous dilation), so layer4 is at stride 8; ``classifier``: :class:`FCNHead`
    on layer4 (2048 -> 512 -> classes); the scores are interpolated bilinearly
    (``align_corners=False``) to the input size. ``aux=True`` adds ``aux_classifier``, an FCNHead on
    layer3 (1024 -> 256 -> classes); in training mode the network then returns ``(out, aux)``.
    """

    def __init__(self, depth: int = 50, *, num_classes: int = 21, aux: bool = False) -> None:
        super().__init__()
        positive_int("num_classes", num_classes)
        one_of("depth", depth, (50, 101))
        self.backbone = zoo_backbone(
            f"resnet{depth}", ["layer3", "layer4"] if aux else ["layer4"],
            prepare=lambda m: dilate_resnet(m, {"layer3": 2, "layer4": 4}, first_block="previous"),
        )
        self.taps, self.feature_info = backbone_taps(self.backbone)
        self.classifier = FCNHead(2048, num_classes)
        self.aux_classifier = FCNHead(1024, num_classes) if aux else None

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        size = x.shape[-2:]
        maps = {stage: self.taps[stage](m) for stage, m in self.backbone(x).items()}
        out = F.interpolate(self.classifier(maps["layer4"]), size=size, mode="bilinear", align_corners=False)
        if self.aux_classifier is None or not self.training:
            return out
        aux = F.interpolate(self.aux_classifier(maps["layer3"]), size=size, mode="bilinear", align_corners=False)
        return out, aux


def torchvision_fcn_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision ``fcn_resnet*`` state_dict -> :class:`TorchvisionFCN` keys: the backbone's
    ``backbone.<name>`` become ``backbone.model.<name>`` (ours is a FeatureExtractor over the zoo
    ResNet); ``classifier.*`` and ``aux_classifier.*`` keep their names."""
    return {
        (f"backbone.model.{key[len('backbone.'):]}" if key.startswith("backbone.") else key): value
        for key, value in state.items()
    }


# --------------------------------------------------------------------------------------------
# The small FCN-8s for the digit scenes.


class _MiniEncoder(nn.Module):
    """A small VGG-like encoder for 64x64 one-channel scenes: five blocks of 3x3 conv-BN-ReLU,
    each ending in a 2x2 max pool (16, 32, 64-64, 96, 128 filters), then ``fc6``, a 1x1
    conv-BN-ReLU to 256 with dropout: maps ``pool3`` (/8), ``pool4`` (/16), ``fc6`` (/32)."""

    CONFIG = [16, "M", 32, "M", 64, 64, "M", 96, "M", 128, "M"]

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.features = make_features(self.CONFIG, batch_norm=True, in_channels=in_channels)
        self.fc6 = ConvNormAct(128, 256, kernel_size=1)
        self.drop6 = nn.Dropout(0.1)
        pools = [i for i, layer in enumerate(self.features) if isinstance(layer, nn.MaxPool2d)]
        self.feature_info = [
            FeatureInfo("pool3", f"features.{pools[2]}", 64, 8),
            FeatureInfo("pool4", f"features.{pools[3]}", 96, 16),
            FeatureInfo("fc6", "drop6", 256, 32),
        ]
        init_weights(self, conv=kaiming_normal(mode="fan_out", nonlinearity="relu"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop6(self.fc6(self.features(x)))


# --------------------------------------------------------------------------------------------
# Builders.

_PAPER = "Fully Convolutional Networks for Semantic Segmentation"
_AUTHORS = "Long, Shelhamer, Darrell"
_IDEA = (
    "Fully connected layers are convolutions: written so, a classification network takes any image "
    "and returns a coarse map of class scores, which in-network upsampling (transposed convolution "
    "initialised to bilinear) brings back to the input resolution; skips from pool4 and pool3 add "
    "finer scores (FCN-16s, FCN-8s). Trained end to end, pixels to pixels."
)
_VGG_COUNT = (
    "exact count here: VGG-16 convolutions 14,714,688 + fc6 512*7*7*4096+4096 = 102,764,544 + fc7 "
    "4096*4096+4096 = 16,781,312 + score_fr 4096*21+21 = 86,037 (= 134,346,581){}; the fixed bilinear "
    "upsamplings have no parameters. FCN Table 1: 134M (FCN-VGG16) [M]"
)
_MEMORY = "[M] in reference/segmentation-detection.md (paper table from memory)"
_FCN = ModelCard(
    name="fcn8s",
    family="fcn",
    paper=_PAPER,
    authors=_AUTHORS,
    year=2015,
    arxiv="1411.4038",
    input_size=(3, 500, 500),
    dataset="voc",
    num_classes=21,
    idea=_IDEA,
    task="segmentation",
    notes=(
        "The reference Caffe nets (fcn.berkeleyvision.org voc-fcn*s): conv1_1 padding 100, Caffe's "
        "round-up pooling, crops computed from the layers' coordinate maps, so the output is the "
        "input's size for any input. Re-release (online training, all upsampling fixed) mean IU on "
        "seg11valid [V: README]: FCN-32s 63.6, FCN-16s 65.0, FCN-8s 65.5; FCN-8s 67.2 on VOC2012 test "
        "(PAMI). ImageNet VGG-16 weights: convatlas.segmentation.fcn.load_vgg16_weights."
    ),
)


@register_model(card_with(
    _FCN,
    name="fcn32s",
    params=Published(134_346_581, _VGG_COUNT.format("")),
    miou=Published(59.4, "Table 2, mean IU on the VOC2011 segval subset " + _MEMORY),
))
def fcn32s(*, num_classes: int = 21) -> FCN:
    """FCN-32s on VGG-16 (Long, Shelhamer, Darrell 2015, arXiv:1411.4038, Section 4.1).

    One 64x64 transposed convolution with stride 32, fixed to bilinear interpolation, upsamples the
    stride-32 scores of ``score_fr``; the result is cropped by 19 to the input size.
    """
    return FCN("32s", num_classes=num_classes)


@register_model(card_with(
    _FCN,
    name="fcn16s",
    params=Published(134_364_410, _VGG_COUNT.format(
        " + score_pool4 512*21+21 = 10,773 + learned upscore2 21*21*4*4 = 7,056")),
    miou=Published(62.4, "Table 2, mean IU on the VOC2011 segval subset " + _MEMORY),
))
def fcn16s(*, num_classes: int = 21, learned_upsampling: bool = True) -> FCN:
    """FCN-16s on VGG-16 (Long, Shelhamer, Darrell 2015, arXiv:1411.4038, Section 4.2): the
    stride-32 scores, upsampled 2x, plus scores from pool4 (cropped by 5), upsampled 16x
    (fixed bilinear, cropped by 27).

    ``learned_upsampling``: the 2x upsampling is learned from a bilinear start (True, the paper)
    or fixed bilinear (False, the reference re-release; its 7,056 weights then vanish).
    """
    return FCN("16s", num_classes=num_classes, learned_upsampling=learned_upsampling)


@register_model(card_with(
    _FCN,
    name="fcn8s",
    params=Published(134_376_863, _VGG_COUNT.format(
        " + score_pool4 10,773 + score_pool3 256*21+21 = 5,397 + learned upscore2 and upscore_pool4 "
        "2 * 21*21*4*4 = 14,112")),
    miou=Published(62.2, "Table 3, mean IU on VOC2012 test (the abstract's 62.2% [V]; "
                         "VOC2011 test 62.7, Table 2 segval 62.7 " + _MEMORY + ")"),
))
def fcn8s(*, num_classes: int = 21, learned_upsampling: bool = True) -> FCN:
    """FCN-8s on VGG-16 (Long, Shelhamer, Darrell 2015, arXiv:1411.4038, Section 4.2): FCN-16s's
    fused scores, upsampled 2x again, plus scores from pool3 (cropped by 9), upsampled 8x (fixed
    bilinear, cropped by 31).

    ``learned_upsampling``: the two 2x upsamplings are learned from a bilinear start (True, the
    paper) or fixed bilinear (False, the reference re-release).
    """
    return FCN("8s", num_classes=num_classes, learned_upsampling=learned_upsampling)


@register_model(card_with(
    _FCN,
    name="fcn_backbone",
    input_size=(3, 224, 224),
    params=Published(23_597_471, (
        "exact count here, resnet50 FCN-8s: ResNet-50 without fc 23,508,032 + score_8/16/32 "
        "(512, 1024, 2048)*21 + 3*21 = 75,327 + upscore_32, upscore_16 2*21*21*4*4 = 14,112")),
    notes=(
        "The paper's skip architecture on any zoo classification network: its stages at reductions "
        "8, 16, 32 (feature_info). A network not in the paper; its numbers are not published."
    ),
))
def fcn_backbone(
    *, num_classes: int = 21, backbone: str = "resnet50", variant: str = "8s", upsample: str = "transposed"
) -> SkipFCN:
    """FCN's skip architecture (Long, Shelhamer, Darrell 2015, arXiv:1411.4038) on any
    classification network of the zoo.

    ``backbone``: a registered classification network whose ``feature_info`` has stages at
    reductions 8, 16 and 32 (``vgg16``: conv4, conv5, pool5; ``resnet50``: layer2..layer4;
    ``mobilenet_v2``: stage4, stage6, stage9); its classifier is dropped. ``variant``: ``"8s"``,
    ``"16s"`` or ``"32s"``, the finest stride fused. ``upsample``: ``"transposed"`` (learned 2x
    steps from a bilinear start, fixed bilinear last step) or ``"bilinear"`` (interpolation).
    """
    strides = _variant(variant)
    extractor = zoo_backbone(backbone, lambda info: stages_at(info, strides, backbone))
    return SkipFCN(extractor, num_classes=num_classes, upsample=upsample)


_TORCHVISION = card_with(
    _FCN,
    name="fcn_resnet50",
    paper=_PAPER + " (torchvision's variant: dilated ResNet, FCNHead)",
    input_size=(3, 520, 520),
    torchvision="fcn_resnet50",
    aux_weight=0.5,
    notes=(
        "torchvision's fcn_resnet50, not the paper's FCN: ResNet-50 (v1.5) with layer3/layer4 dilated "
        "(output stride 8), FCNHead (3x3 2048->512, BN, ReLU, dropout 0.1, 1x1), bilinear "
        "interpolation to the input. aux=True adds the layer3 head (torchvision's references weight "
        "its loss 0.5; its released weights include it, so load them with aux=True)."
    ),
)
_TV_MIOU = "torchvision COCO_WITH_VOC_LABELS_V1 meta: COCO val2017 subset with the 20 VOC categories"


@register_model(card_with(
    _TORCHVISION,
    params=Published(32_957_013, (
        "torchvision fcn_resnet50(aux_loss=False) counted: ResNet-50 without fc 23,508,032 + "
        "FCNHead 2048*9*512 + 2*512 + 512*21+21 = 9,448,981 (35,322,218 with the aux head, meta num_params)")),
    miou=Published(60.5, _TV_MIOU),
), torchvision_keys=torchvision_fcn_keys)
def fcn_resnet50(*, num_classes: int = 21, aux: bool = False) -> TorchvisionFCN:
    """torchvision's FCN-ResNet50 (``torchvision.models.segmentation.fcn_resnet50``), after Long,
    Shelhamer, Darrell (2015, arXiv:1411.4038) in name only: a ResNet-50 dilated to output stride 8,
    a 3x3 FCNHead and bilinear interpolation, no skips and no transposed convolutions.

    ``aux``: add the auxiliary FCNHead on layer3 (training mode then returns ``(out, aux)``).
    """
    return TorchvisionFCN(50, num_classes=num_classes, aux=aux)


@register_model(card_with(
    _TORCHVISION,
    name="fcn_resnet101",
    torchvision="fcn_resnet101",
    notes=_TORCHVISION.notes.replace("ResNet-50", "ResNet-101").replace("fcn_resnet50", "fcn_resnet101"),
    params=Published(51_949_141, (
        "torchvision fcn_resnet101(aux_loss=False) counted: ResNet-101 without fc 42,500,160 + FCNHead "
        "9,448,981 (54,314,346 with the aux head, meta num_params)")),
    miou=Published(63.7, _TV_MIOU),
), torchvision_keys=torchvision_fcn_keys)
def fcn_resnet101(*, num_classes: int = 21, aux: bool = False) -> TorchvisionFCN:
    """torchvision's FCN-ResNet101 (``torchvision.models.segmentation.fcn_resnet101``): as
    :func:`fcn_resnet50` on a dilated ResNet-101. ``aux``: the auxiliary head on layer3."""
    return TorchvisionFCN(101, num_classes=num_classes, aux=aux)


@register_model(card_with(
    _FCN,
    name="fcn8s_mini",
    input_size=(1, 64, 64),
    dataset="digit-scenes",
    recipe="digit_scenes",
    num_classes=11,
    params=Published(268_897, (
        "exact count here: encoder convs (1*9+1)*16 + (16*9+1)*32 + (32*9+1)*64 + (64*9+1)*64 + "
        "(64*9+1)*96 + (96*9+1)*128 = 225,344 + their BN 2*(16+32+64+64+96+128) = 800 + fc6 128*256 "
        "+ BN 512 = 33,280 + score_32/16/8 (256, 96, 64)*11 + 3*11 = 4,609 + upscore_32, upscore_16 "
        "2*11*11*4*4 = 3,872")),
    notes=(
        "A small network, not in the paper: FCN-8s's skip architecture on a five-block VGG-like encoder with batch "
        "normalisation, small enough to train from scratch on the 64x64 digit scenes on a CPU."
    ),
))
def fcn8s_mini(*, num_classes: int = 11, in_channels: int = 1) -> SkipFCN:
    """A small FCN-8s for the digit scenes, after Long, Shelhamer, Darrell (2015, arXiv:1411.4038):
    a five-block VGG-like encoder (16, 32, 64-64, 96, 128 filters, BN, 2x2 pools) and a 1x1 ``fc6``
    (256), with scores from pool3 (/8), pool4 (/16) and fc6 (/32) fused as in FCN-8s (learned 2x
    upsampling from bilinear, fixed 8x bilinear).

    ``in_channels``: channels of the input images (1 for the digit scenes).
    """
    positive_int("in_channels", in_channels)
    encoder = _MiniEncoder(in_channels)
    return SkipFCN(FeatureExtractor(encoder), num_classes=num_classes)
