"""Feature Pyramid Networks (Lin, Dollár, Girshick, He, Hariharan, Belongie 2017, arXiv:1612.03144).

A backbone's stages ``C2 .. C5`` (strides 4 .. 32) become a pyramid ``P2 .. P5`` of maps with the
same number of channels (256 in the paper), each as strong semantically as the coarsest:

1. *lateral*: a 1x1 convolution brings each ``C_l`` to ``d`` channels;
2. *top-down*: starting from the coarsest, the running map is upsampled x2 by nearest neighbour
   (to the lateral's size exactly, so odd sizes work) and added to the next finer lateral;
3. *output*: a 3x3 convolution on each sum "to reduce the aliasing effect of upsampling" (Sec. 3);
4. ``P6`` (the ``"pool"`` level, for the RPN only in the paper) is ``P5`` subsampled with stride 2
   (a 1x1 max-pool of stride 2, as torchvision's ``LastLevelMaxPool``).

Faster R-CNN on FPN (Sec. 4): the RPN's head is shared over the levels, one anchor size per level
(32, 64, 128, 256, 512 px on P2 .. P6) at three ratios; the RoI head pools each region from the
level of Eq. 1 (:class:`~convatlas.detection.roi.MultiScaleRoIAlign`) and has two 1,024-wide fully
connected layers.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from convatlas._checks import positive_int

__all__ = ["FeaturePyramidNetwork", "BackboneWithFPN", "FPN_ANCHOR_SIZES"]

# the paper's anchors: one size per level, P2 .. P6 (Sec. 4.1), at ratios 1:2, 1:1, 2:1
FPN_ANCHOR_SIZES = ((32,), (64,), (128,), (256,), (512,))


class FeaturePyramidNetwork(nn.Module):
    """The top-down pathway with lateral connections (see the module docstring).

    ``in_channels``: the channels of the input maps, finest first; ``out_channels``: ``d``;
    ``extra_pool``: add the ``"pool"`` level (``P6``). ``forward(features)`` takes a dict of maps
    (finest first) and returns an ordered dict with the same keys plus ``"pool"``.
    Weights: Kaiming-uniform with ``a = 1``, zero biases (as the reference implementations).
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int = 256, *, extra_pool: bool = True) -> None:
        super().__init__()
        if not in_channels:
            raise ValueError("a feature pyramid needs at least one input map's channels")
        out_channels = positive_int("out_channels", out_channels)
        self.lateral = nn.ModuleList(nn.Conv2d(positive_int("in_channels", c), out_channels, 1) for c in in_channels)
        self.output = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels)
        self.extra_pool = extra_pool
        self.out_channels = out_channels
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                nn.init.zeros_(m.bias)

    def forward(self, features: Mapping[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
        names, maps = list(features), list(features.values())
        if len(maps) != len(self.lateral):
            raise ValueError(f"the pyramid takes {len(self.lateral)} maps, got {len(maps)} ({names})")
        running = self.lateral[-1](maps[-1])
        pyramid = [self.output[-1](running)]
        for level in range(len(maps) - 2, -1, -1):
            lateral = self.lateral[level](maps[level])
            running = lateral + F.interpolate(running, size=lateral.shape[-2:], mode="nearest")
            pyramid.insert(0, self.output[level](running))
        out = OrderedDict(zip(names, pyramid))
        if self.extra_pool:
            out["pool"] = F.max_pool2d(pyramid[-1], kernel_size=1, stride=2)
        return out


class BackboneWithFPN(nn.Module):
    """A backbone returning a dict of stage maps (a
    :class:`~convatlas.models.features.FeatureExtractor`), then the pyramid: maps named ``"0"`` ..
    ``"n-1"`` (finest first) and ``"pool"``, each ``out_channels`` wide."""

    def __init__(self, body: nn.Module, in_channels: Sequence[int], out_channels: int = 256) -> None:
        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(in_channels, out_channels)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        maps = self.body(x)
        return self.fpn(OrderedDict((str(i), m) for i, m in enumerate(maps.values())))
