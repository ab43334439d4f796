"""Small building blocks used across families: conv-norm-act, LRN, squeeze-excitation,
stochastic depth, global average pooling, channel rounding."""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import torch
from torch import nn


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to the nearest multiple of ``divisor``, never going more than 10%
    below ``value`` (the rounding rule of the MobileNet v2 / EfficientNet releases)."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class ConvNormAct(nn.Sequential):
    """``conv -> norm -> act`` as one block; ``norm``/``act`` may be None.

    Children are named ``conv``, ``bn`` and ``act`` so state_dicts read like the papers.
    The convolution has a bias only when there is no normalisation after it.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str | None = None,
        *,
        groups: int = 1,
        dilation: int = 1,
        norm: Callable[[int], nn.Module] | None = nn.BatchNorm2d,
        act: Callable[[], nn.Module] | None = lambda: nn.ReLU(inplace=True),
        bias: bool | None = None,
    ) -> None:
        if padding is None:  # "same" for odd kernels at stride 1
            ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
            padding = tuple(dilation * (k - 1) // 2 for k in ks)
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}"
            )
        layers: dict[str, nn.Module] = {
            "conv": nn.Conv2d(
                in_channels, out_channels, kernel_size, stride, padding,
                dilation=dilation, groups=groups, bias=(norm is None) if bias is None else bias,
            )
        }
        if norm is not None:
            layers["bn"] = norm(out_channels)
        if act is not None:
            layers["act"] = act()
        super().__init__(OrderedDict(layers))
        self.in_channels, self.out_channels = in_channels, out_channels


class LocalResponseNorm(nn.LocalResponseNorm):
    """Local response normalisation with the constants written as in AlexNet's paper.

    AlexNet: ``b = a / (k + alpha * sum_{n neighbours} a^2) ** beta`` with n=5, k=2,
    alpha=1e-4, beta=0.75. PyTorch divides ``alpha`` by ``size``, so it is multiplied here.
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0) -> None:
        super().__init__(size=size, alpha=alpha * size, beta=beta, k=k)
        self.paper_alpha = alpha


class GlobalAvgPool2d(nn.Module):
    """Average each feature map to one number: (N, C, H, W) -> (N, C) (Network-in-Network)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation: global pool -> reduce 1x1 -> act -> expand 1x1 -> gate -> scale."""

    def __init__(
        self,
        channels: int,
        squeeze_channels: int,
        act: Callable[[], nn.Module] = nn.SiLU,
        gate: Callable[[], nn.Module] = nn.Sigmoid,
    ) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.act = act()
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.gate = gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


class StochasticDepth(nn.Module):
    """Drop a residual branch per sample with probability ``p`` in training ("drop connect"
    in the EfficientNet release), scaling survivors by 1/(1-p)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"stochastic depth probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)
        return x * mask.bernoulli_(keep) / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"
