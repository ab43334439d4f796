"""AlexNet: the network that won ILSVRC-2012, in two versions named plainly.

Krizhevsky, Sutskever, Hinton (2012). "ImageNet Classification with Deep Convolutional Neural
Networks", NIPS 2012 (no arXiv version).

**The paper's network** (``alexnet_paper``, Section 3 and Fig. 2): a 227x227x3 input (the paper says
224, but only 227 makes the arithmetic of the 11x11/4 first layer come out at 55x55), five convolutional
and three fully connected layers, trained split over two GPUs:

=====  ===========================================  =======================  =================
layer  filters                                      connections              output
=====  ===========================================  =======================  =================
conv1  96 @ 11x11, stride 4                         all of the input         96 x 55 x 55
       ReLU, LRN, max-pool 3x3/2 (overlapping)
conv2  256 @ 5x5, pad 2                             own GPU only (groups=2)  256 x 27 x 27
       ReLU, LRN, max-pool 3x3/2
conv3  384 @ 3x3, pad 1                             both GPUs                384 x 13 x 13
conv4  384 @ 3x3, pad 1                             own GPU only (groups=2)  384 x 13 x 13
conv5  256 @ 3x3, pad 1, max-pool 3x3/2             own GPU only (groups=2)  256 x 6 x 6
fc6    4096, ReLU, dropout 0.5                      both GPUs                4096
fc7    4096, ReLU, dropout 0.5                      both GPUs                4096
fc8    1000, softmax                                                         1000
=====  ===========================================  =======================  =================

ReLU follows every layer. Local response normalisation (Section 3.3) divides each activity by its
neighbours across ``n = 5`` adjacent maps: ``b_i = a_i / (k + alpha sum_j a_j^2) ^ beta`` with
``k = 2, alpha = 1e-4, beta = 0.75``. Pooling windows overlap (z = 3 > s = 2, Section 3.4).
Dropout (Section 4.2) zeroes the *outputs* of the hidden units of fc6 and fc7 with probability 0.5.
Initialisation (Section 5): weights N(0, 0.01^2); biases 1 in conv2, conv4, conv5, fc6, fc7 and 0
elsewhere. 60,965,224 parameters ("60 million").

**torchvision's network** (``alexnet``): one tower, 64-192-384-256-256 filters, no LRN, no groups,
dropout on the *inputs* of fc6 and fc7, and an adaptive 6x6 average pool so that any input of at
least 63x63 works. torchvision's documentation says it follows Krizhevsky (2014), "One weird trick
for parallelizing convolutional neural networks", arXiv:1404.5997. 61,100,840 parameters. Its
attribute names are torchvision's (``features.0`` ... ``classifier.6``), so torchvision's weights load
as they are.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from convatlas._checks import positive_int
from convatlas.layers import LocalResponseNorm
from convatlas.layers.init import init_weights, normal
from convatlas.models.features import FeatureInfo
from convatlas.registry import ModelCard, Published, card_with, register_model

__all__ = ["AlexNet", "AlexNetPaper", "alexnet", "alexnet_paper"]


class AlexNetPaper(nn.Module):
    """AlexNet as in the paper: two towers (groups=2 in conv2/4/5), LRN, overlapping pooling, 227x227.

    Feature maps, the last one at each resolution: ``conv1`` (after ``norm1``, /4), ``conv2``
    (after ``norm2``, /8), ``conv5`` (after ``relu5``, /16) and ``pool5`` (/32).
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        positive_int("num_classes", num_classes)
        self.features = nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(3, 96, kernel_size=11, stride=4),
            relu1=nn.ReLU(inplace=True),
            norm1=LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0),
            pool1=nn.MaxPool2d(kernel_size=3, stride=2),
            conv2=nn.Conv2d(96, 256, kernel_size=5, padding=2, groups=2),
            relu2=nn.ReLU(inplace=True),
            norm2=LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0),
            pool2=nn.MaxPool2d(kernel_size=3, stride=2),
            conv3=nn.Conv2d(256, 384, kernel_size=3, padding=1),
            relu3=nn.ReLU(inplace=True),
            conv4=nn.Conv2d(384, 384, kernel_size=3, padding=1, groups=2),
            relu4=nn.ReLU(inplace=True),
            conv5=nn.Conv2d(384, 256, kernel_size=3, padding=1, groups=2),
            relu5=nn.ReLU(inplace=True),
            pool5=nn.MaxPool2d(kernel_size=3, stride=2),
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
            FeatureInfo("conv1", "features.norm1", 96, 4),
            FeatureInfo("conv2", "features.norm2", 256, 8),
            FeatureInfo("conv5", "features.relu5", 256, 16),
            FeatureInfo("pool5", "features.pool5", 256, 32),
        ]
        # Section 5: N(0, 0.01^2) weights; biases 1 in conv2, conv4, conv5 and the hidden FCs, else 0.
        init_weights(self, conv=normal(std=0.01), linear=normal(std=0.01))
        for layer in (self.features.conv2, self.features.conv4, self.features.conv5,
                      self.classifier.fc6, self.classifier.fc7):
            nn.init.ones_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class AlexNet(nn.Module):
    """torchvision's one-tower AlexNet (same layers and attribute names as ``torchvision.models.alexnet``).

    Feature maps: ``conv1`` (``features.1``, /4), ``conv2`` (``features.4``, /8), ``conv5``
    (``features.11``, /16) and ``pool5`` (``features.12``, /32).
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        positive_int("num_classes", num_classes)
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),  # 0: conv1
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),  # 3: conv2
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),  # 6: conv3
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),  # 8: conv4
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),  # 10: conv5
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.feature_info = [
            FeatureInfo("conv1", "features.1", 64, 4),
            FeatureInfo("conv2", "features.4", 192, 8),
            FeatureInfo("conv5", "features.11", 256, 16),
            FeatureInfo("pool5", "features.12", 256, 32),
        ]
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),  # 1: fc6
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),  # 4: fc7
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),  # 6: fc8
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


_BASE = ModelCard(
    name="alexnet",
    family="alexnet",
    paper="ImageNet Classification with Deep Convolutional Neural Networks",
    authors="Krizhevsky, Sutskever, Hinton",
    year=2012,
    input_size=(3, 224, 224),
    dataset="imagenet",
    idea=(
        "A deep convolutional network trained on 1.2 million images with GPUs, ReLUs, dropout and data "
        "augmentation, cutting the ImageNet top-5 error from 26% to 15%. It made deep CNNs the standard "
        "for image recognition."
    ),
)


@register_model(
    card_with(
        _BASE,
        params=Published(61_100_840, "torchvision AlexNet_Weights.IMAGENET1K_V1 meta num_params"),
        macs=Published(0.714e9, "torchvision AlexNet_Weights.IMAGENET1K_V1 meta _ops (GMACs)"),
        top1=Published(56.522, "torchvision IMAGENET1K_V1, single centre crop 224 of 256, ImageNet val"),
        top5=Published(79.066, "torchvision IMAGENET1K_V1, single centre crop 224 of 256, ImageNet val"),
        torchvision="alexnet",
        notes=(
            "torchvision's one-tower variant (after Krizhevsky 2014, arXiv:1404.5997): 64-192-384-256-256, "
            "no LRN, no groups; not the paper's network -- that is alexnet_paper."
        ),
    )
)
def alexnet(*, num_classes: int = 1000) -> AlexNet:
    """torchvision's one-tower AlexNet (Krizhevsky et al. 2012; Krizhevsky 2014, arXiv:1404.5997):
    torchvision's weights load directly. For the paper's two-GPU network use ``alexnet_paper``."""
    return AlexNet(num_classes=num_classes)


@register_model(
    card_with(
        _BASE,
        name="alexnet_paper",
        input_size=(3, 227, 227),
        params=Published(
            60_965_224,
            "paper: '60 million parameters'; exact count of the two-GPU layout in paper-numbers.md Sec. 2 "
            "(OpenVINO CaffeNet card: 60.965 M)",
        ),
        macs=Published(724.4e6, "paper-numbers.md Sec. 2 (two-GPU layout at 227x227)"),
        top1=Published(
            59.3, "Table 2: 100 - 40.7% top-1 error, 1 CNN, ILSVRC-2012 val, average of 10 patches (5 crops + flips)"
        ),
        top5=Published(
            81.8, "Table 2: 100 - 18.2% top-5 error, 1 CNN, ILSVRC-2012 val, average of 10 patches (5 crops + flips)"
        ),
        notes="The paper's two-tower network: groups=2 in conv2/4/5, LRN after conv1 and conv2, 227x227 input.",
    )
)
def alexnet_paper(*, num_classes: int = 1000) -> AlexNetPaper:
    """AlexNet as in Krizhevsky, Sutskever, Hinton (2012): conv2/4/5 split over two GPUs (groups=2),
    LRN after conv1 and conv2, overlapping 3x3/2 max pooling, dropout on fc6/fc7, 227x227 input."""
    return AlexNetPaper(num_classes=num_classes)
