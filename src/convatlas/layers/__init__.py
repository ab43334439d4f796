"""Reusable blocks shared by the families of the zoo."""

from convatlas.layers.basic import (
    ConvNormAct,
    GlobalAvgPool2d,
    LocalResponseNorm,
    SqueezeExcitation,
    StochasticDepth,
    make_divisible,
)
from convatlas.layers.special import (
    DepthwiseSeparableConv2d,
    DilatedConv2d,
    GroupedConv2d,
    SpatiallySeparableConv2d,
    TransposedConv2d,
    bilinear_kernel,
    separate_kernel,
)
from convatlas.layers.unpool import BedOfNailsUnpool2d, MaxUnpool2d, NearestUnpool2d
from convatlas.layers.upsample import UPSAMPLE_KINDS, Upsample2x, make_upsample

__all__ = [
    "BedOfNailsUnpool2d",
    "ConvNormAct",
    "DepthwiseSeparableConv2d",
    "DilatedConv2d",
    "GlobalAvgPool2d",
    "GroupedConv2d",
    "LocalResponseNorm",
    "MaxUnpool2d",
    "NearestUnpool2d",
    "SpatiallySeparableConv2d",
    "SqueezeExcitation",
    "StochasticDepth",
    "TransposedConv2d",
    "UPSAMPLE_KINDS",
    "Upsample2x",
    "bilinear_kernel",
    "make_divisible",
    "make_upsample",
    "separate_kernel",
]
