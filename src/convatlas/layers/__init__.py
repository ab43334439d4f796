"""Reusable blocks shared by the families of the zoo."""

from convatlas.layers.basic import (
    ConvNormAct,
    GlobalAvgPool2d,
    LocalResponseNorm,
    SqueezeExcitation,
    StochasticDepth,
    make_divisible,
)

__all__ = [
    "ConvNormAct",
    "GlobalAvgPool2d",
    "LocalResponseNorm",
    "SqueezeExcitation",
    "StochasticDepth",
    "make_divisible",
]
