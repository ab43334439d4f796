"""Network in Network: a small MLP slid over the image instead of a linear filter.

Lin, Chen, Yan (2014). "Network In Network", ICLR 2014, arXiv:1312.4400.

An **mlpconv** layer (Section 3.1, Eq. 2) computes at every position a multilayer perceptron of the
patch under it: a k x k convolution followed by 1x1 convolutions ("cascaded cross channel parametric
pooling"), each followed by a ReLU, ``f^n = max(W^n f^(n-1) + b^n, 0)``. The last mlpconv layer has
one feature map per class, and **global average pooling** (Section 3.2) turns each map into that
class's score -- no fully connected layers, nothing to overfit there, and each map reads as a
confidence map of its category. Dropout follows every mlpconv layer but the last (Section 4.1).

``nin_cifar10`` follows the authors' Caffe model for CIFAR-10 (32x32x3):

=========  ============================================  ===========================
block      mlpconv (every conv followed by ReLU)          then
=========  ============================================  ===========================
mlpconv1   5x5 conv 192 -> 1x1 160 -> 1x1 96              max-pool 3x3/2, dropout 0.5
mlpconv2   5x5 conv 192 -> 1x1 192 -> 1x1 192             avg-pool 3x3/2, dropout 0.5
mlpconv3   3x3 conv 192 -> 1x1 192 -> 1x1 10              global average pooling
=========  ============================================  ===========================

``nin_imagenet`` is the authors' ImageNet model from the Caffe Model Zoo (not in the paper):
four mlpconv blocks 96@11x11/4 -> 96 -> 96, 256@5x5 -> 256 -> 256, 384@3x3 -> 384 -> 384 (dropout),
1024@3x3 -> 1024 -> 1000, max-pools 3x3/2 between them, global average pooling.

Padding keeps the map size ("same"); pools round up (``ceil_mode``, Caffe's rule), so 32 -> 16 -> 8
and 54 -> 27 -> 13 -> 6. The final ReLU before global pooling (Eq. 2 in every layer, as in the
Caffe models) makes the class scores non-negative. Initialisation is not given in the paper; here
He et al. (2015) normal for ReLU networks, zero biases.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from convatlas._checks import positive_int
from convatlas.layers import GlobalAvgPool2d
from convatlas.layers.init import init_weights, kaiming_normal
from convatlas.models.features import FeatureInfo
from convatlas.registry import ModelCard, Published, card_with, register_model

__all__ = ["MLPConv", "NIN", "NIN_CIFAR10", "NIN_IMAGENET", "nin_cifar10", "nin_imagenet"]


class MLPConv(nn.Sequential):
    """An mlpconv layer: ``k x k`` conv to ``widths[0]`` maps, then 1x1 convs to ``widths[1:]``, ReLU
    after each. Children: ``conv``, ``relu``, ``mlp1``, ``relu1``, ``mlp2``, ``relu2`` ..."""

    def __init__(self, in_channels: int, widths: tuple[int, ...], kernel_size: int, stride: int = 1,
                 padding: int = 0) -> None:
        if not widths:
            raise ValueError("an mlpconv layer needs at least one width")
        for width in widths:
            positive_int("mlpconv width", width, f" (widths {widths})")
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv=nn.Conv2d(in_channels, widths[0], kernel_size, stride=stride, padding=padding),
            relu=nn.ReLU(inplace=True),
        )
        for n, (c_in, c_out) in enumerate(zip(widths, widths[1:]), start=1):
            layers[f"mlp{n}"] = nn.Conv2d(c_in, c_out, kernel_size=1)
            layers[f"relu{n}"] = nn.ReLU(inplace=True)
        super().__init__(layers)
        self.out_channels = widths[-1]


# One row per mlpconv block: (widths, kernel, stride, padding, pool after it, dropout after it).
# The last width of the last block is the number of classes.
NIN_CIFAR10 = (
    ((192, 160, 96), 5, 1, 2, "max", 0.5),
    ((192, 192, 192), 5, 1, 2, "avg", 0.5),
    ((192, 192, None), 3, 1, 1, None, 0.0),
)
NIN_IMAGENET = (
    ((96, 96, 96), 11, 4, 0, "max", 0.0),
    ((256, 256, 256), 5, 1, 2, "max", 0.0),
    ((384, 384, 384), 3, 1, 1, "max", 0.5),
    ((1024, 1024, None), 3, 1, 1, None, 0.0),
)


class NIN(nn.Module):
    """Network in Network: mlpconv blocks (a table such as :data:`NIN_CIFAR10`) and global average pooling.

    Feature maps: the output of every mlpconv block, ``mlpconv1`` .. (a pool follows each but the
    last, whose maps are the class confidence maps).
    """

    def __init__(self, blocks: tuple = NIN_CIFAR10, *, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        positive_int("num_classes", num_classes)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        self.feature_info = []
        channels, reduction = in_channels, 1
        for n, (widths, kernel, stride, padding, pool, dropout) in enumerate(blocks, start=1):
            widths = tuple(num_classes if w is None else w for w in widths)
            block = MLPConv(channels, widths, kernel, stride, padding)
            layers[f"mlpconv{n}"] = block
            channels, reduction = block.out_channels, reduction * stride
            self.feature_info.append(FeatureInfo(f"mlpconv{n}", f"features.mlpconv{n}", channels, reduction))
            reduction *= 2 if pool else 1
            if pool == "max":
                layers[f"pool{n}"] = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)
            elif pool == "avg":
                layers[f"pool{n}"] = nn.AvgPool2d(kernel_size=3, stride=2, ceil_mode=True)
            if dropout:
                layers[f"dropout{n}"] = nn.Dropout(p=dropout)
        self.features = nn.Sequential(layers)
        self.global_pool = GlobalAvgPool2d()
        init_weights(self, conv=kaiming_normal(nonlinearity="relu"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.global_pool(self.features(x))


_BASE = ModelCard(
    name="nin_cifar10",
    family="nin",
    paper="Network In Network",
    authors="Lin, Chen, Yan",
    year=2014,
    arxiv="1312.4400",
    input_size=(3, 32, 32),
    dataset="cifar10",
    idea=(
        "Replace the linear filter by a small multilayer perceptron slid over the image (mlpconv = a conv "
        "followed by 1x1 convs), and the fully connected classifier by global average pooling of one "
        "map per class. The 1x1 convolution and the global-average-pooled head became standard."
    ),
)


@register_model(
    card_with(
        _BASE,
        params=Published(966_986, "paper-numbers.md Sec. 5 (authors' Caffe CIFAR-10 model; the paper gives no count)"),
        macs=Published(222.5e6, "paper-numbers.md Sec. 5, at 32x32"),
        top1=Published(91.19, "Table 2: 100 - 8.81% test error, NIN + dropout with translation/flip augmentation, CIFAR-10"),
        notes="Authors' Caffe cifar10 model. Without augmentation the paper reports 10.41% error.",
    )
)
def nin_cifar10(*, num_classes: int = 10) -> NIN:
    """Network in Network for CIFAR-10 (Lin, Chen, Yan 2014, arXiv:1312.4400): three mlpconv
    blocks and global average pooling."""
    return NIN(NIN_CIFAR10, num_classes=num_classes)


@register_model(
    card_with(
        _BASE,
        name="nin_imagenet",
        input_size=(3, 224, 224),
        dataset="imagenet",
        params=Published(7_595_176, "paper-numbers.md Sec. 5 (Caffe Model Zoo NIN-ImageNet)"),
        macs=Published(1.100e9, "paper-numbers.md Sec. 5, at 224x224"),
        top1=Published(56.7, "Caffe wiki 'Models accuracy on ImageNet 2012 val', single centre crop of 256x256"),
        top5=Published(79.5, "Caffe wiki 'Models accuracy on ImageNet 2012 val', single centre crop of 256x256"),
        notes="The authors' ImageNet model from the Caffe Model Zoo; not described in the paper.",
    )
)
def nin_imagenet(*, num_classes: int = 1000) -> NIN:
    """Network in Network for ImageNet (the authors' Caffe Model Zoo model; Lin et al. 2014):
    four mlpconv blocks and global average pooling."""
    return NIN(NIN_IMAGENET, num_classes=num_classes)
