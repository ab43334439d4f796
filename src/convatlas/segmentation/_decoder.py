"""Pieces the encoder-decoder networks (U-Net, SegNet, DeconvNet) share: VGG's Table 1 cut into
its blocks, the mirrored widths of a decoder, a centre crop, and their initialisation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from convatlas.layers.init import init_weights, kaiming_normal
from convatlas.models.features import FeatureInfo
from convatlas.models.vgg import CONFIGS

Entry = int | str


def vgg_blocks(config: str | Sequence[Entry]) -> list[list[int]]:
    """The convolution widths of each block of a VGG configuration (a letter of Table 1 or a list),
    cut at its max pools: ``"D"`` -> ``[[64, 64], [128, 128], [256] * 3, [512] * 3, [512] * 3]``."""
    entries = CONFIGS[config] if isinstance(config, str) else list(config)
    blocks, current = [], []
    for entry in entries:
        if entry == "M":
            blocks.append(current)
            current = []
        elif isinstance(entry, int) and not isinstance(entry, bool) and entry > 0:
            current.append(entry)
        else:
            raise ValueError(f"encoder-decoder blocks take 3x3 widths and 'M' only, got {entry!r}")
    if current or not blocks or not all(blocks):
        raise ValueError(f"a VGG configuration of blocks must end each block with 'M', got {entries!r}")
    return blocks


def mirrored_widths(blocks: Sequence[Sequence[int]]) -> list[list[int]]:
    """The decoder of SegNet and DeconvNet mirrors the encoder: block ``i`` of widths ``[w] * n``
    (fed ``c`` channels) is undone by ``n`` layers of width ``w`` whose last one goes back to ``c``
    (VGG-16: 512-512-512, 512-512-256, 256-256-128, 128-64, and 64-64 for the first block, which
    hands its 64 channels to the classifier instead of going back to the image's channels).
    Returned in encoder order: entry 0 undoes block 1 (and runs last)."""
    widths = []
    for index, block in enumerate(blocks):
        fed = blocks[index - 1][-1] if index else block[-1]
        widths.append([block[-1]] * (len(block) - 1) + [fed])
    return widths


def encoder_feature_info(blocks: Sequence[Sequence[int]], prefix: str) -> list[FeatureInfo]:
    """``conv1`` .. ``convN``: the output of each encoder block, before its pooling (as VGG's)."""
    return [FeatureInfo(f"conv{i + 1}", f"{prefix}.{i}", block[-1], 2 ** i) for i, block in enumerate(blocks)]


def center_crop(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """The centre ``size[0] x size[1]`` of an (N, C, H, W) map (U-Net's "copy and crop")."""
    h, w = x.shape[-2:]
    th, tw = int(size[0]), int(size[1])
    if th > h or tw > w:
        raise ValueError(f"cannot crop a {h}x{w} map to {th}x{tw}")
    top, left = (h - th) // 2, (w - tw) // 2
    return x[..., top:top + th, left:left + tw]


def init_encoder_decoder(model: nn.Module) -> nn.Module:
    """He et al. (2015) normal initialisation, ``N(0, 2 / fan)``, the one the U-Net paper uses
    ("a Gaussian with standard deviation sqrt(2/N), N the incoming nodes of one neuron") and
    Caffe's ``msra`` filler of the SegNet release: convolutions with ``fan = C_in k^2``;
    transposed convolutions with ``fan = C_in k^2`` too (PyTorch's ``fan_out`` of their
    ``(C_in, C_out, k, k)`` weight: the inputs each output pixel sees at stride 1); zero biases,
    batch norm at scale 1, shift 0."""
    init_weights(model, conv=kaiming_normal(mode="fan_in", nonlinearity="relu"))
    for module in model.modules():
        if isinstance(module, nn.ConvTranspose2d) and not module.weight.is_meta:
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model
