"""ZFNet: AlexNet retuned by looking inside it with a deconvnet.

Zeiler, Fergus (2014). "Visualizing and Understanding Convolutional Networks", ECCV 2014,
arXiv:1311.2901 (this module follows the final version, v3; v1 had an 11x11/4 first layer).

Visualising AlexNet's features showed dead and aliased first-layer filters (Section 4.1), so the
first layer became 7x7 with stride 2 instead of 11x11 with stride 4, and the sparse two-GPU
connections of layers 3, 4, 5 became dense. The network of Fig. 3 (224x224x3 crop):

=========  =======================================================  ==============
layer      operations                                               output
=========  =======================================================  ==============
conv1      96 @ 7x7, stride 2, ReLU, max-pool 3x3/2, contrast norm  96 x 55 x 55
conv2      256 @ 5x5, stride 2, ReLU, max-pool 3x3/2, contrast norm 256 x 13 x 13
conv3      384 @ 3x3, ReLU                                          384 x 13 x 13
conv4      384 @ 3x3, ReLU                                          384 x 13 x 13
conv5      256 @ 3x3, ReLU, max-pool 3x3/2                          256 x 6 x 6
fc6, fc7   4096 each, ReLU, dropout 0.5 (Section 3.1)               4096
fc8        C-way softmax (C = 1000)                                 1000
=========  =======================================================  ==============

Choices the paper leaves open, fixed here so the figure's sizes come out: conv1 has padding 1
(224 -> 110), the pools round up (``ceil_mode``: 110 -> 55, 26 -> 13, 13 -> 6), conv3-5 have padding 1.
The widths 256/384/384/256 are read off Fig. 3. "Contrast normalization across feature maps" is
implemented as AlexNet's local response normalisation (n=5, k=2, alpha=1e-4, beta=0.75); the paper
does not give its constants. Initialisation (Section 3.1): weights 10^-2 (here N(0, 0.01^2)), biases 0.
The paper also renormalises any conv filter whose RMS exceeds 0.1 during training -- a training
rule, not part of the network.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from convatlas._checks import positive_int
from convatlas.layers import LocalResponseNorm
from convatlas.layers.init import init_weights, normal
from convatlas.models.features import FeatureInfo
from convatlas.registry import ModelCard, Published, register_model

__all__ = ["ZFNet", "zfnet"]


class ZFNet(nn.Module):
    """The ZFNet of Fig. 3 (arXiv:1311.2901v3): 7x7/2 conv1, dense layers 3-5, 224x224 input.

    Feature maps, the last one at each resolution: ``conv1`` (after ``relu1``, /2), ``norm1``
    (pooled and normalised, /4), ``conv2`` (after ``relu2``, /8), ``conv5`` (after ``relu5``, /16)
    and ``pool5`` (/32).
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        positive_int("num_classes", num_classes)
        self.features = nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(3, 96, kernel_size=7, stride=2, padding=1),
            relu1=nn.ReLU(inplace=True),
            pool1=nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            norm1=LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0),
            conv2=nn.Conv2d(96, 256, kernel_size=5, stride=2),
            relu2=nn.ReLU(inplace=True),
            pool2=nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            norm2=LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0),
            conv3=nn.Conv2d(256, 384, kernel_size=3, padding=1),
            relu3=nn.ReLU(inplace=True),
            conv4=nn.Conv2d(384, 384, kernel_size=3, padding=1),
            relu4=nn.ReLU(inplace=True),
            conv5=nn.Conv2d(384, 256, kernel_size=3, padding=1),
            relu5=nn.ReLU(inplace=True),
            pool5=nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
        ))
        self.classifier = nn.Sequential(OrderedDict(
            fc6=nn.Linear(256 * 6 * 6, 4096),
            relu6=nn.ReLU(inplace=True),
            dropout6=nn.Dropout(p=dropout),
            fc7=nn.Linear(4096, 4096),
            relu7=nn.ReLU(inplace=True),
            dropout7=nn.Dropout(p=dropout),
            fc8=nn.Linear(4096, num_classes),
        ))
        self.feature_info = [
            FeatureInfo("conv1", "features.relu1", 96, 2),
            FeatureInfo("norm1", "features.norm1", 96, 4),
            FeatureInfo("conv2", "features.relu2", 256, 8),
            FeatureInfo("conv5", "features.relu5", 256, 16),
            FeatureInfo("pool5", "features.pool5", 256, 32),
        ]
        init_weights(self, conv=normal(std=0.01), linear=normal(std=0.01))  # Section 3.1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


@register_model(
    ModelCard(
        name="zfnet",
        family="zfnet",
        paper="Visualizing and Understanding Convolutional Networks",
        authors="Zeiler, Fergus",
        year=2014,
        arxiv="1311.2901",
        input_size=(3, 224, 224),
        dataset="imagenet",
        params=Published(
            62_357_608, "paper-numbers.md Sec. 3 (Fig. 3 widths 96-256-384-384-256, FC 4096-4096-1000)"
        ),
        macs=Published(1.168e9, "paper-numbers.md Sec. 3, at 224x224"),
        top1=Published(61.6, "Table 2 (arXiv v3): 100 - 38.4% top-1 error, 1 convnet as per Fig. 3, ILSVRC-2012 val"),
        top5=Published(83.5, "Table 2 (arXiv v3): 100 - 16.5% top-5 error, 1 convnet as per Fig. 3, ILSVRC-2012 val"),
        idea=(
            "A deconvolutional network projects feature activations back to pixel space, showing what "
            "each layer has learned. What it showed (aliasing, dead filters) led to a smaller first-layer "
            "filter and stride, which beat AlexNet."
        ),
        notes="Final arXiv version (v3). Contrast normalisation implemented as AlexNet's LRN.",
    )
)
def zfnet(*, num_classes: int = 1000) -> ZFNet:
    """ZFNet of Zeiler and Fergus (2014, arXiv:1311.2901v3, Fig. 3): 7x7/2 first layer, 3x3/2 pooling,
    contrast normalisation after layers 1 and 2, dense layers 3-5."""
    return ZFNet(num_classes=num_classes)
