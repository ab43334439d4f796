"""Pieces shared by the segmentation families of this folder (FCN, DeepLab, the baselines).

* :class:`BilinearUpsample`: fixed bilinear upsampling written as a transposed convolution whose
  kernel is not learned (FCN's final ``upscore`` layers, whose Caffe weights have ``lr_mult: 0``);
* :func:`crop` and :func:`fit_to_size`: bring a score map to the size of another;
* :class:`CoordMap` and :func:`coord_map`: where a pixel of a feature map sits in the input, the
  algebra behind FCN's crop offsets (Caffe's ``coord_map.py``);
* :func:`zoo_backbone` and :func:`stages_at` (from :mod:`convatlas.models.features`, shared with
  detection): a classification network of the zoo as a backbone, without its now unused classifier;
* :func:`dilate_resnet`: trade a ResNet's last strides for dilation (output stride 8).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import nn

from convatlas._checks import positive_int
from convatlas.layers.special import bilinear_kernel
from convatlas.models.features import (FeatureExtractor, FeatureInfo, classification_model, stages_at,
                                       zoo_backbone)

__all__ = [
    "BilinearUpsample",
    "crop",
    "fit_to_size",
    "CoordMap",
    "coord_map",
    "zoo_backbone",
    "backbone_taps",
    "stages_at",
    "classification_model",
    "dilate_resnet",
]


class BilinearUpsample(nn.Module):
    """Fixed ``factor``-times bilinear upsampling of each channel: a transposed convolution with
    stride ``factor`` and the ``2 factor x 2 factor`` kernel of :func:`~convatlas.layers.bilinear_kernel`,
    applied channel by channel (``groups = channels``). The kernel is a buffer, not a parameter,
    because it is never learned.

    ``padding = factor // 2`` (the default) makes the output exactly ``factor`` times the input,
    and its interior then equals ``F.interpolate(..., mode="bilinear", align_corners=False)``;
    ``padding=0`` is Caffe's ``Deconvolution`` as FCN's reference nets use it (output
    ``factor (n - 1) + 2 factor``, cropped afterwards).
    """

    def __init__(self, channels: int, factor: int, padding: int | None = None) -> None:
        super().__init__()
        self.channels = positive_int("channels", channels)
        self.factor = positive_int("factor", factor)
        self.kernel_size = 2 * factor
        self.padding = factor // 2 if padding is None else padding
        self.register_buffer("kernel", bilinear_kernel(self.kernel_size).float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.kernel.to(x.dtype).expand(x.shape[1], 1, self.kernel_size, self.kernel_size)
        return F.conv_transpose2d(x, weight, stride=self.factor, padding=self.padding, groups=x.shape[1])

    def extra_repr(self) -> str:
        return f"{self.channels}, factor={self.factor}, kernel_size={self.kernel_size}, padding={self.padding}, fixed"


def crop(x: torch.Tensor, offset: int, size: Sequence[int]) -> torch.Tensor:
    """``x[..., offset : offset + h, offset : offset + w]`` (Caffe's ``Crop`` layer, axis 2)."""
    h, w = int(size[0]), int(size[1])
    if x.shape[-2] < offset + h or x.shape[-1] < offset + w:
        raise ValueError(
            f"cannot crop {h}x{w} at offset {offset} from a {x.shape[-2]}x{x.shape[-1]} map"
        )
    return x[..., offset:offset + h, offset:offset + w]


def fit_to_size(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bring ``x`` to ``size`` (h, w) keeping its top-left corner: crop the bottom/right rows and
    columns it has too many, repeat its last row/column where it has too few.

    An upsampling by ``r`` of a map at reduction ``r`` is ``r`` times the map; the input or skip
    map it must match may be a few pixels larger (networks that round sizes down: VGG's pools) or
    smaller (networks that round up: "same" padding with stride 2).
    """
    h, w = int(size[0]), int(size[1])
    x = x[..., :h, :w]
    pad_h, pad_w = h - x.shape[-2], w - x.shape[-1]
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    return x


# --------------------------------------------------------------------------------------------
# Coordinate maps (Caffe's coord_map.py, which computes the crops of FCN's reference nets).


@dataclasses.dataclass(frozen=True)
class CoordMap:
    """An affine map ``u = scale * v + shift`` from a pixel ``v`` of a layer's output to the
    input position ``u`` of its centre (exact fractions)."""

    scale: Fraction = Fraction(1)
    shift: Fraction = Fraction(0)

    def then(self, other: "CoordMap") -> "CoordMap":
        """This map followed by ``other`` (``other`` maps the next layer's output to our output)."""
        return CoordMap(self.scale * other.scale, self.scale * other.shift + self.shift)

    def offset_to(self, reference: "CoordMap") -> int:
        """The crop offset ``o`` that aligns this map with ``reference``: pixel ``v + o`` here sits
        where pixel ``v`` of the reference does."""
        if self.scale != reference.scale:
            raise ValueError(f"maps at different scales ({self.scale} and {reference.scale}) do not align by a crop")
        offset = (reference.shift - self.shift) / self.scale
        if offset.denominator != 1 or offset < 0:
            raise ValueError(f"the maps are {offset} pixels apart: not a crop")
        return int(offset)


def _layer_map(layer: nn.Module) -> CoordMap:
    """Output pixel -> input position of one layer. A convolution or pooling of kernel ``k``,
    stride ``s``, padding ``p``, dilation ``d``: ``u = s v + d (k - 1) / 2 - p``; a transposed
    convolution inverts that: ``u = (v - d (k - 1) / 2 + p) / s``; anything else is the identity."""
    def pair(value) -> int:
        value = value[0] if isinstance(value, (tuple, list)) else value
        return int(value)

    if isinstance(layer, (nn.ConvTranspose2d, BilinearUpsample)):
        k, s = pair(layer.kernel_size), pair(getattr(layer, "stride", getattr(layer, "factor", 1)))
        p, d = pair(layer.padding), pair(getattr(layer, "dilation", 1))
        return CoordMap(Fraction(1, s), Fraction(p - Fraction(d * (k - 1), 2), s))
    if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        k, s, p = pair(layer.kernel_size), pair(layer.stride), pair(layer.padding)
        d = pair(getattr(layer, "dilation", 1))
        return CoordMap(Fraction(s), Fraction(d * (k - 1), 2) - p)
    return CoordMap()


def coord_map(layers: Iterable[nn.Module]) -> CoordMap:
    """The coordinate map of ``layers`` applied in order: output pixel -> input position."""
    total = CoordMap()
    for layer in layers:
        total = total.then(_layer_map(layer))
    return total


def backbone_taps(backbone: FeatureExtractor) -> tuple[nn.ModuleDict, list[FeatureInfo]]:
    """Identity ``taps`` for the maps ``backbone`` returns, and the ``feature_info`` of a model
    that holds them as ``self.backbone`` and ``self.taps`` and passes each map through its tap.

    Why taps: the model's ``feature_info`` must name modules whose outputs are the maps. Naming
    the backbone's own last stage would put a second :class:`FeatureExtractor`'s stopping hook on
    the module where the inner one stops, and each would stop the other; the taps run after the
    inner extractor has returned. The list holds the backbone network's stages up to the last one
    returned: those returned at ``taps.<stage>``, the earlier ones where they are in the network
    (``backbone.model.<module>``).
    """
    returned = [i.stage for i in backbone.feature_info]
    declared = list(getattr(backbone.model, "feature_info", None) or backbone.feature_info)
    names = [i.stage for i in declared]
    declared = declared[: names.index(returned[-1]) + 1]
    taps = nn.ModuleDict({stage: nn.Identity() for stage in returned})
    info = [
        FeatureInfo(i.stage, f"taps.{i.stage}" if i.stage in returned else f"backbone.model.{i.module}",
                    i.channels, i.reduction)
        for i in declared
    ]
    return taps, info


# --------------------------------------------------------------------------------------------
# Dilated ResNets.


def dilate_resnet(model: nn.Module, rates: dict[str, int], *, first_block: str) -> nn.Module:
    """Remove the stride of the ResNet stages in ``rates`` and dilate their 3x3 convolutions
    instead (the "hole" / atrous algorithm), in place; ``model.feature_info`` gets the new
    reductions. Parameters do not change, so ImageNet weights still fit.

    ``rates``: stage -> dilation, e.g. ``{"layer3": 2, "layer4": 4}`` (output stride 8).
    ``first_block``: ``"previous"`` keeps the previous stage's dilation in the first block of a
    dilated stage (torchvision's ``replace_stride_with_dilation``: layer3's first block at 1,
    layer4's at 2); ``"same"`` dilates every block of the stage alike (DeepLab v2's Caffe nets).
    """
    if first_block not in ("previous", "same"):
        raise ValueError(f"first_block must be 'previous' or 'same', got {first_block!r}")
    unknown = sorted(set(rates) - {f"layer{i}" for i in range(1, 5)})
    if unknown:
        raise ValueError(f"rates name stages layer1 .. layer4, got {', '.join(unknown)}")
    current, removed, divide = 1, 1, {}
    for index in range(1, 5):
        stage_name = f"layer{index}"
        rate = rates.get(stage_name)
        if rate is not None:
            positive_int(f"dilation of {stage_name}", rate)
            for block_index, block in enumerate(getattr(model, stage_name)):
                dilation = current if (block_index == 0 and first_block == "previous") else rate
                convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
                removed *= max(conv.stride[0] for conv in convs)  # the stage's stride, in its first block
                for conv in convs:
                    conv.stride = (1, 1)  # the down-sampling 1x1 or 3x3, and its shortcut
                    if conv.kernel_size == (3, 3):
                        conv.dilation = (dilation, dilation)
                        conv.padding = (dilation, dilation)
            current = rate
        divide[stage_name] = removed
    model.feature_info = [
        dataclasses.replace(i, reduction=i.reduction // divide[i.stage]) if i.stage in divide else i
        for i in model.feature_info
    ]
    return model
