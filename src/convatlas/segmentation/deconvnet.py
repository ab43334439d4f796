"""DeconvNet: VGG-16 and its mirror image, a network of unpooling and deconvolution layers.

Noh, Hong, Han (2015). "Learning Deconvolution Network for Semantic Segmentation", ICCV 2015,
arXiv:1505.04366.

The idea: FCN's single bilinear upsampling of coarse scores loses the shape of objects, so learn
the upsampling instead with a whole *deconvolution network* that mirrors the convolution network
layer by layer. Its **unpooling** layers put every value back where the matching max pooling found
its maximum (the switches; a sparse, enlarged map that keeps the object's structure), and its
**deconvolution** layers (transposed convolutions) densify the sparse maps. Table 1 of the paper:

- **convolution network**: VGG-16's 13 convolutional layers, conv1_1 .. conv5_3 (3x3), five 2x2/2
  max poolings pool1 .. pool5 that keep their switches, then ``fc6`` as a 7x7 convolution to 4096
  channels (7x7 -> 1x1) and ``fc7`` as a 1x1 convolution (4096);
- **deconvolution network**: ``deconv_fc6`` ("deconv-fc6"), a 7x7 transposed convolution back to
  7x7x512; then for each block, from the fifth to the first, an unpooling (unpool5 .. unpool1)
  and as many 3x3 deconvolution layers (stride 1, padding 1) as the block has convolutions, the
  last going back to the width that fed the block: 512-512-512, 512-512-256, 256-256-128, 128-64,
  64-64;
- a 1x1 convolution to the 21 PASCAL VOC classes ("output").

Batch normalisation follows every convolutional and deconvolutional layer ("we add batch
normalization to the output of every convolutional and deconvolutional layer", Sec. 4.1; the
authors' release has ``bnfc6``, ``bnfc7``, ``fc6-deconv-bn`` too), then ReLU. There is no dropout
here: the release replaced it by batch norm.

Module names: ``conv[i]`` (block ``i + 1`` of the convolution network), ``pool[i]``, ``fc6``,
``fc7``, ``deconv_fc6``, ``unpool[i]`` and ``deconv[i]`` (the block mirroring block ``i + 1``, run
from the bottom up) and ``score``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from convatlas._checks import positive_int
from convatlas.layers import ConvNormAct
from convatlas.layers.upsample import Upsample2x, check_upsample
from convatlas.models.features import FeatureInfo
from convatlas.models.vgg import make_features
from convatlas.registry import ModelCard, Published, register_model
from convatlas.segmentation._decoder import (
    encoder_feature_info,
    init_encoder_decoder,
    mirrored_widths,
    vgg_blocks,
)

__all__ = ["DeconvBlock", "DeconvNet", "deconvnet", "deconvnet_mini"]


class DeconvBlock(nn.Sequential):
    """3x3 deconvolution layers (transposed convolutions, stride 1, padding 1), each followed by
    batch norm and ReLU: ``widths`` are their output channels."""

    def __init__(self, in_channels: int, widths: Sequence[int]) -> None:
        layers: list[nn.Module] = []
        for width in widths:
            layers += [nn.ConvTranspose2d(in_channels, width, kernel_size=3, padding=1),
                       nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            in_channels = width
        super().__init__(*layers)


class DeconvNet(nn.Module):
    """DeconvNet on the convolution network ``blocks`` (VGG-16's by default), with ``fc6`` a
    ``fc_kernel`` x ``fc_kernel`` convolution to ``fc_width`` channels and ``fc7`` 1x1.

    ``fc_kernel`` is the side of pool5's map at the network's input size (7 at 224x224): fc6 then
    sees the whole map, as VGG's first fully connected layer. ``upsample``: how each block of the
    deconvolution network doubles its map, one of :data:`convatlas.layers.UPSAMPLE_KINDS`
    (default ``"max_unpool"``, the paper's unpooling with switches). The learned kinds keep the
    channels.
    """

    def __init__(
        self,
        blocks: Sequence[Sequence[int]],
        *,
        fc_width: int = 4096,
        fc_kernel: int = 7,
        in_channels: int = 3,
        num_classes: int = 21,
        upsample: str = "max_unpool",
    ) -> None:
        super().__init__()
        for name, value in (("fc_width", fc_width), ("fc_kernel", fc_kernel), ("in_channels", in_channels),
                            ("num_classes", num_classes)):
            positive_int(name, value)
        check_upsample(upsample)
        blocks = [list(b) for b in blocks]
        fed = [in_channels] + [b[-1] for b in blocks[:-1]]
        self.conv = nn.ModuleList(make_features(b, batch_norm=True, in_channels=c) for b, c in zip(blocks, fed))
        self.pool = nn.ModuleList(nn.MaxPool2d(2, 2, return_indices=True) for _ in blocks)
        top = blocks[-1][-1]
        self.fc6 = ConvNormAct(top, fc_width, fc_kernel, padding=0, bias=True)
        self.fc7 = ConvNormAct(fc_width, fc_width, 1, padding=0, bias=True)
        self.deconv_fc6 = nn.Sequential(
            nn.ConvTranspose2d(fc_width, top, kernel_size=fc_kernel), nn.BatchNorm2d(top), nn.ReLU(inplace=True)
        )
        self.unpool = nn.ModuleList(Upsample2x(upsample, b[-1]) for b in blocks)
        self.deconv = nn.ModuleList(DeconvBlock(b[-1], w) for b, w in zip(blocks, mirrored_widths(blocks)))
        self.score = nn.Conv2d(blocks[0][-1], num_classes, kernel_size=1)
        self.feature_info = [*encoder_feature_info(blocks, "conv"),
                             FeatureInfo("fc7", "fc7", fc_width, 2 ** len(blocks))]
        init_encoder_decoder(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sizes, switches = [], []
        for block, pool in zip(self.conv, self.pool):
            x = block(x)
            sizes.append(x.shape[-2:])
            x, indices = pool(x)
            switches.append(indices)
        x = self.deconv_fc6(self.fc7(self.fc6(x)))
        for i in reversed(range(len(self.deconv))):
            x = self.deconv[i](self.unpool[i](x, switches[i], output_size=sizes[i]))
        return self.score(x)


_PAPER = "Learning Deconvolution Network for Semantic Segmentation"
_AUTHORS = "Noh, Hong, Han"
_IDEA = (
    "Learn the upsampling: a deconvolution network that mirrors VGG-16 layer by layer, unpooling "
    "with the max-pooling switches and densifying with deconvolution (transposed convolution) "
    "layers, recovers object shape and detail that one bilinear upsampling of coarse scores loses."
)


@register_model(ModelCard(
    name="deconvnet",
    family="deconvnet",
    paper=_PAPER,
    authors=_AUTHORS,
    year=2015,
    arxiv="1505.04366",
    input_size=(3, 224, 224),
    dataset="voc",
    num_classes=21,
    idea=_IDEA,
    params=Published(
        251_805_653,
        "252 M in the paper (reference notes); exact count of Table 1's layers with biases and batch "
        "norm after every layer but the 1x1 output, derived in tests/test_segmentation_encdec.py",
    ),
    miou=Published(69.6, "PASCAL VOC 2012 test, DeconvNet alone without CRF (with CRF 70.5; the abstract's "
                         "72.5 is the ensemble with FCN plus CRF), the paper's table as the reference notes "
                         "recall it [M]"),
    task="segmentation",
    notes="Table 1 of the paper on 224x224 inputs (the paper segments object proposals of that size). "
          "Pooling in floor mode; other input sizes of at least 224 work (fc6 then leaves a map larger "
          "than 1x1, deconv-fc6 takes it back).",
))
def deconvnet(*, num_classes: int = 21, in_channels: int = 3, upsample: str = "max_unpool") -> DeconvNet:
    """DeconvNet (Noh, Hong, Han 2015, arXiv:1505.04366): VGG-16 with batch norm, fc6 (7x7) and fc7
    (1x1) as convolutions, then the mirrored deconvolution network of unpooling and 3x3
    deconvolution layers; 224x224 in, 21 VOC classes out.

    ``upsample``: how the deconvolution network doubles its maps (default ``"max_unpool"``, the
    paper's unpooling with switches; see :mod:`convatlas.layers.upsample`).
    """
    return DeconvNet(vgg_blocks("D"), in_channels=in_channels, num_classes=num_classes, upsample=upsample)


MINI_BLOCKS = ([16, 16], [32, 32], [64, 64], [64, 64])


@register_model(ModelCard(
    name="deconvnet_mini",
    family="deconvnet",
    paper=_PAPER,
    authors=_AUTHORS,
    year=2015,
    arxiv="1505.04366",
    input_size=(1, 64, 64),
    dataset="digit-scenes",
    recipe="digit_scenes",
    num_classes=11,
    idea=_IDEA,
    params=Published(574_395, "hand count, tests/test_segmentation_encdec.py"),
    task="segmentation",
    notes="Scaled down for 64x64 digit scenes by convatlas (not in the paper): four blocks of two "
          "3x3 convolutions (16-32-64-64) with batch norm, fc6 a 4x4 convolution to 128 channels "
          "(pool 4's whole 4x4 map, as the paper's 7x7 fc6 sees pool 5's), fc7 1x1, and the mirrored "
          "deconvolution network.",
))
def deconvnet_mini(*, num_classes: int = 11, in_channels: int = 1, upsample: str = "max_unpool") -> DeconvNet:
    """DeconvNet (Noh et al. 2015, arXiv:1505.04366) with four blocks of two convolutions
    (16-32-64-64), fc6 4x4 and fc7 1x1 at 128 channels, for 64x64 digit scenes.
    ``upsample``: default ``"max_unpool"``, the paper's."""
    return DeconvNet(MINI_BLOCKS, fc_width=128, fc_kernel=4, in_channels=in_channels, num_classes=num_classes,
                     upsample=upsample)
