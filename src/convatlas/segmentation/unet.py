"""U-Net: a contracting path, an expansive path, and the copies between them.

Ronneberger, Fischer, Brox (2015). "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI 2015, arXiv:1505.04597.

The idea: the decoder of a segmentation network needs the encoder's fine detail, so each step
up concatenates the upsampled map with the map of the same level on the way down ("copy and
crop"). Fig. 1 of the paper, which :func:`unet` builds exactly:

- **contracting path**: five levels of two unpadded ("valid") 3x3 convolutions, each followed by
  a ReLU, with 64, 128, 256, 512 and 1024 channels; between levels a 2x2 max pooling with stride 2;
- **expansive path**: four steps of a 2x2 "up-convolution" (here a 2x2 transposed convolution with
  stride 2) that halves the channels, concatenation with the centre crop of the contracting
  level's map ("the loss of border pixels in every convolution" makes it larger), and two valid
  3x3 convolutions with ReLU;
- a final 1x1 convolution to the classes (2 in the paper).

With valid convolutions the output is smaller than the input: a 572x572 tile gives 388x388
(contracting levels end at 568, 280, 136, 64, 28; expansive steps at 52, 100, 196, 388). The paper
segments large images by overlapping tiles, mirroring the image at its border. :func:`unet_padded`
pads its convolutions instead (``padding=1``): output size equals input size, for **any** input
size - where a pooling meets an odd map, the upsampling is sized to the copied map (one more row
or column), so no "size must be divisible by 16" error.

Module names: ``contracting[i]`` (level ``i + 1``, its two convolutions), ``pool[i]`` (after it),
``up[i]`` (the up-convolution back to level ``i + 1``), ``expansive[i]`` (the two convolutions
after the concatenation) and ``final``. Lists run from the top level down; the expansive path runs
them from the bottom up.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn

from convatlas._checks import positive_int
from convatlas.layers import ConvNormAct
from convatlas.layers.upsample import Upsample2x, check_upsample
from convatlas.models.features import FeatureInfo
from convatlas.registry import ModelCard, Published, register_model
from convatlas.segmentation._decoder import center_crop, init_encoder_decoder

__all__ = ["DoubleConv", "UNet", "unet", "unet_mini", "unet_padded"]

PAPER_WIDTHS = (64, 128, 256, 512, 1024)  # Fig. 1, top level to bottom


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions, each followed by a ReLU (a pair of blue arrows in Fig. 1).

    ``padding``: 0 (the paper's valid convolutions, 2 pixels lost per convolution) or 1 (sizes
    kept). ``batch_norm``: batch normalisation between each convolution and its ReLU (not in the
    paper; the convolutions then have no bias).
    """

    def __init__(self, in_channels: int, out_channels: int, padding: int, batch_norm: bool = False) -> None:
        norm = nn.BatchNorm2d if batch_norm else None
        super().__init__(
            ConvNormAct(in_channels, out_channels, 3, padding=padding, norm=norm),
            ConvNormAct(out_channels, out_channels, 3, padding=padding, norm=norm),
        )
        self.in_channels, self.out_channels = in_channels, out_channels


class UNet(nn.Module):
    """U-Net with level widths ``widths`` (top to bottom; Fig. 1: 64, 128, 256, 512, 1024).

    ``padding``: 0 for the paper's valid convolutions (output smaller than input), 1 for
    same-size convolutions (output size = input size, any input size). ``upsample``: one of
    :data:`convatlas.layers.UPSAMPLE_KINDS` (default ``"transposed"``, the paper's 2x2
    up-convolution). Every step up halves the channels, as Fig. 1's: the learned kinds with their
    own weights, the others with a 1x1 convolution before they upsample
    (:class:`~convatlas.layers.upsample.Upsample2x`), so the expansive convolutions are the same
    for every kind. ``max_unpool`` takes each pooling's switches; in the valid network the map
    coming up is only the centre of the pooled map (28 of 32 at the bottom of Fig. 1, 52 of 68
    one level up), so the centre of the switches is used and the unpooled map is cropped as the
    copy is.
    """

    def __init__(
        self,
        widths: Sequence[int] = PAPER_WIDTHS,
        *,
        in_channels: int = 1,
        num_classes: int = 2,
        padding: int = 0,
        batch_norm: bool = False,
        upsample: str = "transposed",
    ) -> None:
        super().__init__()
        positive_int("in_channels", in_channels)
        positive_int("num_classes", num_classes)
        widths = [positive_int("widths[]", w) for w in widths]
        if len(widths) < 2:
            raise ValueError(f"a U-Net needs at least two levels of widths, got {widths}")
        if padding not in (0, 1):
            raise ValueError(f"padding must be 0 (valid, the paper) or 1 (same size), got {padding!r}")
        check_upsample(upsample)
        self.padding, self.upsample_kind = padding, upsample
        fed = [in_channels, *widths[:-1]]
        self.contracting = nn.ModuleList(DoubleConv(c, w, padding, batch_norm) for c, w in zip(fed, widths))
        self.pool = nn.ModuleList(
            nn.MaxPool2d(2, 2, return_indices=upsample == "max_unpool") for _ in widths[:-1]
        )
        self.up = nn.ModuleList()
        self.expansive = nn.ModuleList()
        for width, below in pairwise(widths):
            self.up.append(Upsample2x(upsample, below, width))  # halves the channels, as Fig. 1's
            self.expansive.append(DoubleConv(2 * width, width, padding, batch_norm))
        self.final = nn.Conv2d(widths[0], num_classes, kernel_size=1)
        self.feature_info = [
            FeatureInfo(f"level{i + 1}", f"contracting.{i}", w, 2 ** i) for i, w in enumerate(widths)
        ]
        init_encoder_decoder(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        copies, switches = [], []
        for level, block in enumerate(self.contracting):
            x = block(x)
            if level < len(self.pool):
                copies.append(x)
                x = self.pool[level](x)
                if isinstance(x, tuple):  # max_unpool: keep the switches
                    x, indices = x
                    switches.append(indices)
        for level in reversed(range(len(self.up))):
            copy = copies[level]
            indices = switches[level] if switches else None
            x = self._up(self.up[level], x, copy, indices)
            x = self.expansive[level](torch.cat([center_crop(copy, x.shape[-2:]), x], dim=1))
        return self.final(x)

    def _up(self, up: Upsample2x, x: torch.Tensor, copy: torch.Tensor, indices: torch.Tensor | None) -> torch.Tensor:
        if self.padding:  # same-size convolutions: come back to the copied map's size exactly
            return up(x, indices, output_size=copy.shape[-2:])
        if indices is None:
            return up(x)
        # valid convolutions: x is the centre of the pooled map; unpool its switches' centre into
        # the copied map's grid, then take the centre as the copy is cropped
        h, w = x.shape[-2:]
        return center_crop(up(x, center_crop(indices, (h, w)), output_size=copy.shape[-2:]), (2 * h, 2 * w))


# --------------------------------------------------------------------------------------------
# Builders

_PAPER = "U-Net: Convolutional Networks for Biomedical Image Segmentation"
_AUTHORS = "Ronneberger, Fischer, Brox"
_IDEA = (
    "An encoder-decoder whose decoder concatenates, at every level, the upsampled map with the "
    "encoder's map of the same resolution (skip connections), so that coarse context and fine "
    "localisation meet; trained end to end from very few annotated images."
)
_PAPER_PARAMS = Published(
    31_030_658,
    "31.0 M commonly quoted for Fig. 1 (reference notes); exact count derived from Fig. 1 in "
    "tests/test_segmentation_encdec.py",
)


@register_model(ModelCard(
    name="unet",
    family="unet",
    paper=_PAPER,
    authors=_AUTHORS,
    year=2015,
    arxiv="1505.04597",
    input_size=(1, 572, 572),
    dataset="cells",
    num_classes=2,
    idea=_IDEA,
    params=_PAPER_PARAMS,
    miou=Published(92.03, "IoU of the cell class on PhC-U373 (ISBI 2015 cell tracking), Table 2 - from "
                          "the reference notes' memory [M], not checked against the paper; DIC-HeLa: 77.56"),
    task="segmentation",
    extra={"output_size": (388, 388)},  # valid convolutions: the output is smaller than the input
    notes="Fig. 1 exactly: valid 3x3 convolutions, a 572x572 tile gives a 388x388 map of 2 classes. "
          "Overlap-tile inference, the border mirroring and the weighted loss (w0 = 10, sigma = 5) "
          "are the training's, not the network's.",
))
def unet(*, num_classes: int = 2, in_channels: int = 1, upsample: str = "transposed") -> UNet:
    """U-Net of Fig. 1 (Ronneberger, Fischer, Brox 2015, arXiv:1505.04597): valid convolutions,
    64 to 1024 channels, 2x2 up-convolutions and copy-and-crop; 572x572 in, 388x388 out.

    The idea: skip connections carry each level's map across to the decoder, so it localises as
    finely as the encoder sees. ``upsample``: how the expansive path doubles the map (default
    ``"transposed"``, the paper's 2x2 up-convolution; see :mod:`convatlas.layers.upsample`).
    """
    return UNet(PAPER_WIDTHS, in_channels=in_channels, num_classes=num_classes, padding=0, upsample=upsample)


@register_model(ModelCard(
    name="unet_padded",
    family="unet",
    paper=_PAPER,
    authors=_AUTHORS,
    year=2015,
    arxiv="1505.04597",
    input_size=(1, 572, 572),
    dataset="cells",
    num_classes=2,
    idea=_IDEA,
    params=_PAPER_PARAMS,
    task="segmentation",
    notes="Not the paper's geometry: Fig. 1's widths and parameters with padded (same-size) "
          "convolutions, as most libraries build U-Net. Output size = input size for any input of "
          "at least 16x16; odd maps are handled by sizing each upsampling to the copied map.",
))
def unet_padded(*, num_classes: int = 2, in_channels: int = 1, upsample: str = "transposed") -> UNet:
    """U-Net of Fig. 1 with padded convolutions (Ronneberger et al. 2015, arXiv:1505.04597):
    same widths and parameter count, but the output has the input's size, for any input size.

    ``upsample``: how the expansive path doubles the map (default ``"transposed"``, the paper's
    2x2 up-convolution; see :mod:`convatlas.layers.upsample`).
    """
    return UNet(PAPER_WIDTHS, in_channels=in_channels, num_classes=num_classes, padding=1, upsample=upsample)


MINI_WIDTHS = (16, 32, 64, 128)


@register_model(ModelCard(
    name="unet_mini",
    family="unet",
    paper=_PAPER,
    authors=_AUTHORS,
    year=2015,
    arxiv="1505.04597",
    input_size=(1, 64, 64),
    dataset="digit-scenes",
    recipe="digit_scenes",
    num_classes=11,
    idea=_IDEA,
    params=Published(482_619, "hand count, tests/test_segmentation_encdec.py"),
    task="segmentation",
    notes="Scaled down for 64x64 digit scenes by convatlas (not in the paper): four levels of "
          "16-32-64-128 channels, padded convolutions, batch norm after every convolution "
          "(not in the paper), 2x2 up-convolutions; 11 classes (background and ten digits).",
))
def unet_mini(*, num_classes: int = 11, in_channels: int = 1, upsample: str = "transposed") -> UNet:
    """U-Net (Ronneberger et al. 2015, arXiv:1505.04597) at a quarter of Fig. 1's widths and one
    level fewer (16-32-64-128), padded, with batch norm: for 64x64 digit scenes on a CPU.

    ``upsample``: how the expansive path doubles the map (default ``"transposed"``).
    """
    return UNet(MINI_WIDTHS, in_channels=in_channels, num_classes=num_classes, padding=1,
                batch_norm=True, upsample=upsample)
