"""The residual blocks shared by ResNet, Wide ResNet (ImageNet) and ResNeXt.

He, Zhang, Ren, Sun (2015), "Deep Residual Learning for Image Recognition", arXiv:1512.03385.
A block does not learn the mapping H(x) it should produce but the residual F(x) = H(x) - x:

    y = relu( F(x) + shortcut(x) )

where F is two 3x3 convolutions (:class:`BasicBlock`, ResNet-18/34 and the CIFAR nets) or a
1x1 -> 3x3 -> 1x1 "bottleneck" (:class:`Bottleneck`, ResNet-50/101/152), each convolution followed
by batch normalisation, and the shortcut is the identity when the shapes agree. Where they
change (stride 2 and/or more channels) the paper offers two shortcuts (§3.3):

* option A, :class:`ZeroPadShortcut`: subsample and pad the new channels with zeros (no parameters);
* option B, :func:`projection_shortcut`: a 1x1 convolution with stride, then BN.

Attribute names are torchvision's (``conv1``, ``bn1``, ..., ``downsample``) so that torchvision's
state_dicts load into these blocks unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from convatlas.layers.init import init_weights, kaiming_normal

__all__ = [
    "conv1x1",
    "conv3x3",
    "BasicBlock",
    "Bottleneck",
    "ZeroPadShortcut",
    "projection_shortcut",
    "init_resnet_weights",
]


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1, no bias (a BN follows it)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, groups=groups, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution, no bias (a BN follows it)."""
    return nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`` (Fig. 2, left of Fig. 5).

    The stride of a down-sampling block sits in ``conv1``; ``downsample`` is the shortcut when
    the shape changes (None means identity).
    """

    expansion = 1

    def __init__(
        self, in_channels: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    """1x1 (reduce) -> 3x3 -> 1x1 (expand x4), each followed by BN (right of Fig. 5).

    ``planes`` is the paper's bottleneck width for ResNet (64, 128, 256, 512); the block outputs
    ``4 * planes`` channels. The inner width is ``planes * base_width / 64 * groups``: ResNet has
    ``base_width=64, groups=1``; Wide ResNet-50-2 doubles the inner width (``base_width=128``);
    ResNeXt's "C x d" block is ``groups=C, base_width=d``, its 3x3 being a grouped convolution
    (Xie et al. 2017, Fig. 3(c)).

    ``stride_in_3x3`` chooses where a down-sampling block strides: False is the paper's "v1"
    (the first 1x1 strides, so the 3x3 works at the reduced resolution), True is "v1.5"
    (fb.resnet.torch, torchvision, ResNeXt: the 3x3 strides, the 1x1 sees every pixel). Both have
    the same parameters; v1.5 costs more multiply-accumulates.
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        groups: int = 1,
        base_width: int = 64,
        stride_in_3x3: bool = True,
    ) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        if width % groups:
            raise ValueError(f"groups={groups} must divide the bottleneck width {width}")
        stride_1x1, stride_3x3 = (1, stride) if stride_in_3x3 else (stride, 1)
        self.conv1 = conv1x1(in_channels, width, stride_1x1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride_3x3, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


class ZeroPadShortcut(nn.Module):
    """Option A shortcut: identity on a subsampled grid, extra channels filled with zeros.

    ``x[:, :, ::stride, ::stride]`` keeps the pixels a stride-``stride`` 1x1 convolution would
    see, and ``out_channels - in_channels`` zero channels are appended. It has no parameters,
    which is why the CIFAR ResNets of Table 6 have exactly as many parameters as their plain twins.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(
                f"option A shortcut pads channels with zeros, so out_channels ({out_channels}) "
                f"must be >= in_channels ({in_channels})"
            )
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.out_channels - self.in_channels))

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


def projection_shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """Option B shortcut: ``W_s x`` as a strided 1x1 convolution followed by BN (eq. 2).

    Children ``0`` (conv) and ``1`` (bn), as torchvision's ``downsample``.
    """
    return nn.Sequential(conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))


def init_resnet_weights(model: nn.Module) -> None:
    """He initialisation (He et al. 2015, arXiv:1502.01852) as the ResNet papers use it:
    convolutions ``N(0, 2 / (k*k*out_channels))``, BN scale 1 and shift 0; the classifier keeps
    PyTorch's default. Tensors on the meta device (shapes only) are left alone."""
    init_weights(model, conv=kaiming_normal(mode="fan_out", nonlinearity="relu"), linear=None, zero_bias=False)
