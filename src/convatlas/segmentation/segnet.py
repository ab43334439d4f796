"""SegNet: a VGG-16 encoder, and a decoder that upsamples with the encoder's pooling indices.

Badrinarayanan, Kendall, Cipolla (2017). "SegNet: A Deep Convolutional Encoder-Decoder
Architecture for Image Segmentation", IEEE TPAMI 39(12), arXiv:1511.00561.

The idea (Fig. 2 and 3 of the paper): every 2x2 max pooling of the encoder remembers where each
maximum came from (the *pooling indices*, or switches: 2 bits per 2x2 window); the decoder
stage that mirrors it upsamples by putting each value back at that position and zeros elsewhere
(max unpooling), then trainable convolutions with batch norm and ReLU densify the sparse map.
Boundaries come back where the encoder saw them, and - unlike U-Net or FCN - no encoder feature
map has to be kept for the decoder, only the indices; the decoder adds no upsampling weights.

- **encoder**: the 13 convolutional layers of VGG-16 (Simonyan and Zisserman 2015, configuration D
  of :data:`convatlas.models.vgg.CONFIGS`), each 3x3 convolution followed by batch norm and ReLU,
  in 5 blocks (64, 128, 256, 512, 512), each ended by a 2x2/2 max pooling that keeps its indices.
  VGG's fully connected layers are dropped (the paper: 134 M to 14.7 M parameters).
- **decoder**: the mirror image. Decoder block ``i`` unpools with pool ``i``'s indices and applies
  as many 3x3 convolution-BN-ReLU layers as encoder block ``i`` has, the last going back to the
  width that fed the encoder block: 512-512-512, 512-512-256, 256-256-128, 128-64, and 64.
- **classifier**: a 3x3 convolution from 64 channels to the classes (``conv1_1_D`` of the
  authors' Caffe model, "SegNet-Tutorial"), whose scores a soft-max turns into per-pixel classes.

Odd sizes: a 360x480 CamVid image pools to 180, 90, 45 and then 22 rows (the last row of 45 is
never pooled, PyTorch's floor mode; the authors' Caffe pooled in ceil mode, 23); each unpooling
is given the size of the map its pooling took, so 22 comes back to 45 and the output is
360x480 again.

Module names: ``encoder[i]`` (block ``i + 1``: conv1_1 .. conv1_2 and so on), ``pool[i]``,
``upsample[i]`` and ``decoder[i]`` (the block that mirrors encoder block ``i + 1``; the decoder
runs them from the bottom up) and ``classifier``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from convatlas._checks import positive_int
from convatlas.layers.upsample import Upsample2x, check_upsample
from convatlas.models.vgg import make_features
from convatlas.registry import ModelCard, Published, register_model
from convatlas.segmentation._decoder import (
    encoder_feature_info,
    init_encoder_decoder,
    mirrored_widths,
    vgg_blocks,
)

__all__ = ["SegNet", "segnet", "segnet_mini"]


class SegNet(nn.Module):
    """SegNet on the encoder ``blocks`` (widths of the 3x3 convolutions of each block, VGG-16's by
    default), with batch norm after every convolution of encoder and decoder.

    ``upsample``: how each decoder block doubles its map, one of
    :data:`convatlas.layers.UPSAMPLE_KINDS` (default ``"max_unpool"``, the paper's: the pooling
    indices of the matching encoder block). The learned kinds keep the channels.
    """

    def __init__(
        self,
        blocks: Sequence[Sequence[int]],
        *,
        in_channels: int = 3,
        num_classes: int = 11,
        upsample: str = "max_unpool",
    ) -> None:
        super().__init__()
        positive_int("in_channels", in_channels)
        positive_int("num_classes", num_classes)
        check_upsample(upsample)
        blocks = [list(b) for b in blocks]
        fed = [in_channels] + [b[-1] for b in blocks[:-1]]
        self.encoder = nn.ModuleList(make_features(b, batch_norm=True, in_channels=c) for b, c in zip(blocks, fed))
        self.pool = nn.ModuleList(nn.MaxPool2d(2, 2, return_indices=True) for _ in blocks)
        self.upsample = nn.ModuleList(Upsample2x(upsample, b[-1]) for b in blocks)
        widths = mirrored_widths(blocks)
        widths[0] = widths[0][:-1]  # the first block's last layer is the classifier
        self.decoder = nn.ModuleList(
            make_features(w, batch_norm=True, in_channels=b[-1]) if w else nn.Identity()
            for w, b in zip(widths, blocks)
        )
        top = widths[0][-1] if widths[0] else blocks[0][-1]
        self.classifier = nn.Conv2d(top, num_classes, kernel_size=3, padding=1)
        self.feature_info = encoder_feature_info(blocks, "encoder")
        init_encoder_decoder(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sizes, switches = [], []
        for block, pool in zip(self.encoder, self.pool):
            x = block(x)
            sizes.append(x.shape[-2:])
            x, indices = pool(x)
            switches.append(indices)
        for i in reversed(range(len(self.decoder))):
            x = self.decoder[i](self.upsample[i](x, switches[i], output_size=sizes[i]))
        return self.classifier(x)


_PAPER = "SegNet: A Deep Convolutional Encoder-Decoder Architecture for Image Segmentation"
_AUTHORS = "Badrinarayanan, Kendall, Cipolla"
_IDEA = (
    "An encoder-decoder whose decoder upsamples with the max-pooling indices the encoder stored "
    "(max unpooling), then densifies with trainable convolutions: sharp boundaries at a fraction "
    "of the memory of keeping encoder feature maps, and no learned upsampling."
)


@register_model(ModelCard(
    name="segnet",
    family="segnet",
    paper=_PAPER,
    authors=_AUTHORS,
    year=2017,
    arxiv="1511.00561",
    input_size=(3, 360, 480),
    dataset="camvid",
    num_classes=11,
    idea=_IDEA,
    params=Published(
        29_449_355,
        "29.5 M in the paper (reference notes); exact count of the 13+13 convolutions with biases, "
        "batch norm (scale, shift) after all but the 3x3 classifier, as the authors' Caffe model; "
        "derived in tests/test_segmentation_encdec.py",
    ),
    miou=Published(55.6, "CamVid test, 11 classes (class average 65.2, global 88.5), the paper's CamVid "
                         "table as the reference notes recall it [M, uncertain]; 60.1 under another protocol"),
    task="segmentation",
    notes="Encoder: VGG-16's 13 convolutions with batch norm (make_features of models.vgg, "
          "configuration D), whose ImageNet weights the paper starts from. Pooling in PyTorch's floor "
          "mode (the Caffe release's ceil mode pools 45 rows to 23, here 22; the output is 360x480 "
          "either way).",
))
def segnet(*, num_classes: int = 11, in_channels: int = 3, upsample: str = "max_unpool") -> SegNet:
    """SegNet (Badrinarayanan, Kendall, Cipolla 2017, arXiv:1511.00561): VGG-16's 13 convolutions
    with batch norm as encoder, a mirrored decoder that unpools with the encoder's max-pooling
    indices, and a 3x3 classifier; CamVid's 360x480 images, 11 classes.

    ``upsample``: how the decoder doubles its maps (default ``"max_unpool"``, the paper's; see
    :mod:`convatlas.layers.upsample`).
    """
    return SegNet(vgg_blocks("D"), in_channels=in_channels, num_classes=num_classes, upsample=upsample)


MINI_BLOCKS = ([16, 16], [32, 32], [64, 64], [128, 128])


@register_model(ModelCard(
    name="segnet_mini",
    family="segnet",
    paper=_PAPER,
    authors=_AUTHORS,
    year=2017,
    arxiv="1511.00561",
    input_size=(1, 64, 64),
    dataset="digit-scenes",
    recipe="digit_scenes",
    num_classes=11,
    idea=_IDEA,
    params=Published(589_451, "hand count, tests/test_segmentation_encdec.py"),
    task="segmentation",
    notes="Scaled down for 64x64 digit scenes by convatlas (not in the paper): four encoder blocks "
          "of two 3x3 convolutions (16-32-64-128) with batch norm, the mirrored decoder, max "
          "unpooling with the stored indices.",
))
def segnet_mini(*, num_classes: int = 11, in_channels: int = 1, upsample: str = "max_unpool") -> SegNet:
    """SegNet (Badrinarayanan et al. 2017, arXiv:1511.00561) with four blocks of two convolutions
    (16-32-64-128) for 64x64 digit scenes. ``upsample``: default ``"max_unpool"``, the paper's."""
    return SegNet(MINI_BLOCKS, in_channels=in_channels, num_classes=num_classes, upsample=upsample)
