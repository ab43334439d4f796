"""Upsampling by two: the one switch of the encoder-decoder segmentation networks.

An encoder halves the map with 2x2 max pooling; a decoder has to double it again. The notes
(after Stanford CS231n 2017, lecture 11) list the ways, and :class:`Upsample2x` offers each of them
under one name, so U-Net, SegNet and DeconvNet can be built with any (``upsample="..."``) and
compared:

================  =====================================================================  ========
kind              what it does                                                           learned
================  =====================================================================  ========
``nearest``       nearest neighbour: each value copied over its 2x2 block                no
                  (:class:`~convatlas.layers.unpool.NearestUnpool2d`)
``bed_of_nails``  the value in the top-left corner of its 2x2 block, zeros in the other  no
                  three (:class:`~convatlas.layers.unpool.BedOfNailsUnpool2d`)
``max_unpool``    max unpooling: each value put back where the matching 2x2 max pooling  no
                  found its maximum (the *switches*, the indices of
                  ``nn.MaxPool2d(2, 2, return_indices=True)``), zeros elsewhere
                  (:class:`~convatlas.layers.unpool.MaxUnpool2d`; SegNet, DeconvNet)
``transposed``    a learned 2x2 transposed convolution with stride 2 (U-Net's "up-conv   yes
                  2x2"); it may change the channel count
``unpool_conv``   nearest-neighbour unpooling, then a learned 3x3 convolution (padding   yes
                  1): Odena et al.'s "resize-convolution"; it may change the channels
``bilinear``      bilinear interpolation (``align_corners=False``: output pixel centres  no
                  at half-pixel positions of the input)
================  =====================================================================  ========

**Why the transposed convolution is 2x2 with stride 2.** It is the U-Net paper's up-convolution
(Ronneberger et al. 2015, arXiv:1505.04597, Fig. 1), so the paper's parameter count holds; the
output is exactly twice the input without any padding arithmetic; and since the kernel size is
a multiple of the stride, every output pixel receives exactly one input pixel - the kernels do
not overlap unevenly. Uneven overlap (a 3x3 kernel at stride 2) is what draws the checkerboard
artefacts of Odena, Dumoulin and Olah, "Deconvolution and Checkerboard Artifacts", Distill 2016;
a 2x2/2 kernel can still learn a period-2 pattern (each of the four output phases has its own
weights), which is why that article recommends resize-convolution instead: here ``unpool_conv``,
nearest neighbour (not bed of nails, whose zeros the convolution would have to fill, nor max
unpooling, which needs switches) followed by a 3x3 convolution, each of whose outputs sees the
same number of distinct inputs.

A module that needs switches (``max_unpool``; :attr:`Upsample2x.needs_switches`) takes them in
``forward``; the others ignore them. The learned kinds may change the channel count; asked to,
the others first apply a learned 1x1 convolution (U-Net halves the channels at every step up).
``output_size`` makes an odd map come back to its size: a 2x2/2 pooling (floor mode) takes 45
rows to 22, and ``output_size=(45, ...)`` gives 45 again (max unpooling writes into an output of
that size, the transposed convolution adds its ``output_padding``, the others repeat the last
row - or, for bed of nails, add a row of zeros).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from convatlas._checks import one_of, positive_int
from convatlas.layers.unpool import BedOfNailsUnpool2d, MaxUnpool2d, NearestUnpool2d

__all__ = ["LEARNED_UPSAMPLE_KINDS", "UPSAMPLE_KINDS", "Upsample2x", "check_upsample", "make_upsample"]

UPSAMPLE_KINDS = ("nearest", "bed_of_nails", "max_unpool", "transposed", "unpool_conv", "bilinear")
LEARNED_UPSAMPLE_KINDS = ("transposed", "unpool_conv")


def check_upsample(kind: str) -> str:
    """``kind`` if it is one of :data:`UPSAMPLE_KINDS`, else a ValueError naming them."""
    return one_of("upsample", kind, UPSAMPLE_KINDS)


class Upsample2x(nn.Module):
    """Double the height and width of an (N, C, H, W) map, the way ``kind`` says (module docstring).

    ``in_channels``: channels of the input; ``out_channels``: of the output (default
    ``in_channels``). The learned kinds (``transposed``, ``unpool_conv``) change the channels with
    their own weights. The other kinds have none; asked for other channels, they first apply a
    learned 1x1 convolution (``project``) from ``in_channels`` to ``out_channels``, at the low
    resolution - four times cheaper than after, and for ``max_unpool`` the only way the map meets
    its switches, which have the pooled map's channels (U-Net's decoder halves the channels at
    each step up; its bottom map has 1024 channels where pool 4's switches have 512).

    ``forward(x, switches=None, output_size=None)``: ``switches`` are the indices of the 2x2/2 max
    pooling this layer undoes (required by ``max_unpool``, ignored by the rest); ``output_size``
    is ``(H', W')`` (or a full shape, of which the last two are used) with ``H'`` in
    ``{2H, 2H + 1}``, for maps that a floor-mode pooling made odd - for ``max_unpool``, the size of
    the pooling's input, whatever it is; default ``(2H, 2W)``.
    """

    def __init__(self, kind: str, in_channels: int, out_channels: int | None = None) -> None:
        super().__init__()
        self.kind = check_upsample(kind)
        positive_int("in_channels", in_channels)
        if out_channels is None:
            out_channels = in_channels
        positive_int("out_channels", out_channels)
        self.in_channels, self.out_channels = in_channels, out_channels
        if kind not in LEARNED_UPSAMPLE_KINDS and out_channels != in_channels:
            self.project = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        else:
            self.project = None
        if kind == "nearest":
            self.unpool = NearestUnpool2d(2)
        elif kind == "bed_of_nails":
            self.unpool = BedOfNailsUnpool2d(2)
        elif kind == "max_unpool":
            self.unpool = MaxUnpool2d(2, 2)
        elif kind == "transposed":
            self.deconv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        elif kind == "unpool_conv":
            self.unpool = NearestUnpool2d(2)
            self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        else:  # bilinear
            self.interpolate = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)

    @property
    def needs_switches(self) -> bool:
        """True for ``max_unpool``: ``forward`` needs the pooling's indices."""
        return self.kind == "max_unpool"

    @property
    def learned(self) -> bool:
        """True for the kinds that upsample with weights (``transposed``, ``unpool_conv``); the
        others have weights only in their channel projection, if they have one."""
        return self.kind in LEARNED_UPSAMPLE_KINDS

    def _target(self, x: torch.Tensor, output_size) -> tuple[int, int]:
        h, w = x.shape[-2:]
        if output_size is None:
            return 2 * h, 2 * w
        target = tuple(int(s) for s in tuple(output_size)[-2:])
        if self.kind == "max_unpool" and len(target) == 2:  # the switches say where the values go
            return target  # type: ignore[return-value]
        if len(target) != 2 or not all(2 * n <= t <= 2 * n + 1 for n, t in zip((h, w), target)):
            raise ValueError(
                f"upsampling by 2 takes {h}x{w} to {2 * h}x{2 * w} (or one more row / column, for maps a "
                f"pooling made odd); output_size {tuple(output_size)} asks for {target}"
            )
        return target  # type: ignore[return-value]

    def forward(
        self, x: torch.Tensor, switches: torch.Tensor | None = None, output_size=None
    ) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__}({self.kind!r}) takes (N, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        out_h, out_w = self._target(x, output_size)
        if self.project is not None:
            x = self.project(x)
        if self.kind == "max_unpool":
            if switches is None:
                raise ValueError(
                    "upsample='max_unpool' needs the switches of the matching pooling: the indices of "
                    "nn.MaxPool2d(2, 2, return_indices=True), passed as forward(x, switches)"
                )
            return self.unpool(x, switches, (out_h, out_w))
        if self.kind == "transposed":
            return self.deconv(x, output_size=[out_h, out_w])
        if self.kind == "bilinear":
            y = self.interpolate(x)
        else:
            y = self.unpool(x)
        extra_h, extra_w = out_h - y.shape[-2], out_w - y.shape[-1]
        if extra_h or extra_w:  # the row / column a floor-mode pooling dropped
            y = F.pad(y, (0, extra_w, 0, extra_h), mode="constant" if self.kind == "bed_of_nails" else "replicate")
        if self.kind == "unpool_conv":
            y = self.conv(y)
        return y

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, in_channels={self.in_channels}, out_channels={self.out_channels}"


def make_upsample(kind: str, in_channels: int, out_channels: int | None = None) -> Upsample2x:
    """The upsampling layer ``kind`` (one of :data:`UPSAMPLE_KINDS`) from ``in_channels`` to
    ``out_channels`` (default: the same; :class:`Upsample2x`)."""
    return Upsample2x(kind, in_channels, out_channels)
