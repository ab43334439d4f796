"""Weight initialisation: one loop over a network's layers, and the named schemes the papers use.

:func:`init_weights` visits ``model.modules()`` in order and gives every ``Conv2d`` weight the
``conv`` scheme and every ``Linear`` weight the ``linear`` scheme, zeroes their biases and sets
batch norm to scale 1, shift 0. Schemes are functions of the weight tensor::

    init_weights(model, conv=kaiming_normal(mode="fan_out"), linear=normal(std=0.01))

The order of the visit is the order in which the random generator is drawn, so a network built
twice from the same seed has the same weights, and a scheme changes nothing but what it names.
Tensors on the meta device (shapes only) are skipped.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import nn

__all__ = [
    "WeightInit",
    "init_weights",
    "kaiming_normal",
    "kaiming_uniform",
    "xavier_uniform",
    "normal",
    "truncated_normal",
    "uniform_fan_out",
]

WeightInit = Callable[[torch.Tensor], Any]


def init_weights(
    model: nn.Module,
    conv: WeightInit | None,
    linear: WeightInit | None = None,
    *,
    zero_bias: bool = True,
) -> nn.Module:
    """Initialise ``model`` in place and return it.

    ``conv`` / ``linear``: the scheme of ``Conv2d`` / ``Linear`` weights; ``None`` leaves those
    weights as PyTorch made them. ``zero_bias``: set the biases of both kinds to 0 (else leave
    them). Every ``BatchNorm2d`` gets weight 1 and bias 0.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            scheme = conv
        elif isinstance(module, nn.Linear):
            scheme = linear
        elif isinstance(module, nn.BatchNorm2d) and module.weight is not None and not module.weight.is_meta:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
            continue
        else:
            continue
        if module.weight.is_meta:
            continue
        if scheme is not None:
            scheme(module.weight)
        if zero_bias and module.bias is not None:
            nn.init.zeros_(module.bias)
    return model


def kaiming_normal(mode: str = "fan_in", nonlinearity: str = "leaky_relu") -> WeightInit:
    """He et al. (2015, arXiv:1502.01852): ``N(0, gain^2 / fan)``, gain sqrt(2) for ReLU (and for
    PyTorch's default ``leaky_relu`` with slope 0); ``fan`` is ``k*k*in`` (``"fan_in"``) or
    ``k*k*out`` (``"fan_out"``, the ResNet papers' ``2 / (k^2 c)``)."""
    return partial(nn.init.kaiming_normal_, mode=mode, nonlinearity=nonlinearity)


def kaiming_uniform(mode: str = "fan_in", nonlinearity: str = "leaky_relu") -> WeightInit:
    """He et al. (2015) uniform: ``U(-b, b)`` with ``b = gain * sqrt(3 / fan)``."""
    return partial(nn.init.kaiming_uniform_, mode=mode, nonlinearity=nonlinearity)


def xavier_uniform() -> WeightInit:
    """Glorot & Bengio (2010): ``U(-b, b)`` with ``b = sqrt(6 / (fan_in + fan_out))``."""
    return nn.init.xavier_uniform_


def normal(std: float, mean: float = 0.0) -> WeightInit:
    """``N(mean, std^2)`` (AlexNet and ZFNet: std 0.01)."""
    return partial(nn.init.normal_, mean=mean, std=std)


def truncated_normal(std: float, a: float, b: float, mean: float = 0.0) -> WeightInit:
    """``N(mean, std^2)`` redrawn outside ``[a, b]`` (torchvision's GoogLeNet: std 0.01, +-2)."""
    return partial(nn.init.trunc_normal_, mean=mean, std=std, a=a, b=b)


def uniform_fan_out(weight: torch.Tensor) -> torch.Tensor:
    """``U(-1/sqrt(out), 1/sqrt(out))`` for a linear layer's ``(out, in)`` weight: the dense
    initialiser of the EfficientNet release."""
    bound = 1.0 / math.sqrt(weight.shape[0])
    return nn.init.uniform_(weight, -bound, bound)
