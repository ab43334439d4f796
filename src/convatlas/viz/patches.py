"""The image patches that excite a unit most, beside their deconvnet projections.

Zeiler & Fergus (2013), arXiv:1311.2901, Fig. 2: for a feature map of a layer, the nine
strongest activations over the whole validation set are found; each is shown both as the image
patch the unit sees (its receptive field) and as the deconvnet's projection of that single
activation, cropped to the same patch. The patches show what the unit likes; the projections
show which part of each patch it is actually responding to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from convatlas.viz.deconvnet import DeconvnetError, isolate_unit, project, receptive_box, trace_chain
from convatlas.viz.source import check_channel, get_layer

__all__ = ["TopPatches", "top_patches", "channel_maxima", "crop"]


@dataclass
class TopPatches:
    """The ``k`` strongest activations of ``channel`` of ``layer`` over a set of images.

    ``image_indices[k]`` is the image, ``positions[k]`` the unit (row, col) in the layer's map,
    ``activations[k]`` its value, ``boxes[k]`` its receptive field (top, left, bottom, right);
    ``patches`` (k, C, h, w) the uint8 image crops (zero outside the image) and ``projections``
    (k, C, h, w) the deconvnet projections cropped the same way.
    """

    layer: str
    channel: int
    image_indices: list[int]
    positions: list[tuple[int, int]]
    activations: list[float]
    boxes: list[tuple[int, int, int, int]]
    patches: torch.Tensor
    projections: torch.Tensor


def crop(image: torch.Tensor, box: tuple[int, int, int, int], fill: float = 0) -> torch.Tensor:
    """The part of ``image`` (C, H, W) inside ``box`` (top, left, bottom, right); where the box
    reaches outside the image the crop is ``fill``."""
    top, left, bottom, right = box
    _, height, width = image.shape
    out = image.new_full((image.shape[0], bottom - top, right - left), fill)
    r0, r1, c0, c1 = max(top, 0), min(bottom, height), max(left, 0), min(right, width)
    if r0 < r1 and c0 < c1:
        out[:, r0 - top : r1 - top, c0 - left : c1 - left] = image[:, r0:r1, c0:c1]
    return out


def channel_maxima(
    model: nn.Module,
    images: torch.Tensor,
    layer: str,
    *,
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch_size: int = 64,
) -> torch.Tensor:
    """Strongest activation of every channel of ``layer`` in each image: (N, C).

    The forward pass stops at ``layer``; images go through in batches of ``batch_size``.
    """
    preprocess = preprocess or (lambda batch: batch.float() / 255.0)
    module = get_layer(model, layer)

    class _Done(Exception):
        pass

    maxima: list[torch.Tensor] = []

    def hook(_m: nn.Module, _i: tuple, output: torch.Tensor) -> None:
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            raise DeconvnetError(f"layer {layer!r} does not give feature maps (N, C, H, W)")
        maxima.append(output.flatten(2).amax(dim=2))
        raise _Done  # the rest of the network is not needed

    handle = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                try:
                    model(preprocess(images[start : start + batch_size]))
                except _Done:
                    pass
    finally:
        handle.remove()
    return torch.cat(maxima)


def top_patches(
    model: nn.Module,
    images: torch.Tensor,
    layer: str,
    channel: int | None = None,
    *,
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    top_k: int = 9,
    batch_size: int = 64,
) -> TopPatches:
    """Find the ``top_k`` images of ``images`` (uint8, N x C x H x W) whose strongest activation of
    ``channel`` at ``layer`` is largest; crop each unit's receptive field from the image and from
    the deconvnet projection of that single activation.

    ``channel=None`` picks the channel with the largest activation over all the images.
    ``preprocess`` maps uint8 images to the network's input (default ``x / 255``).
    """
    if images.dtype != torch.uint8 or images.dim() != 4 or len(images) == 0:
        raise ValueError(f"images must be a non-empty uint8 tensor (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    preprocess = preprocess or (lambda batch: batch.float() / 255.0)
    maxima = channel_maxima(model, images, layer, preprocess=preprocess, batch_size=batch_size)
    if channel is None:
        channel = int(maxima.amax(dim=0).argmax())
    channel = check_channel(channel, maxima.shape[1], layer)
    order = maxima[:, channel].argsort(descending=True)[: min(top_k, len(images))].tolist()
    chosen = images[order]
    x = preprocess(chosen)
    steps, activation = trace_chain(model, x, layer)
    signals, positions, values = [], [], []
    for k in range(len(order)):
        signal, position, value = isolate_unit(activation[k], channel, "max")
        signals.append(signal)
        positions.append(position)
        values.append(value)
    with torch.no_grad():
        projections = project(steps, torch.stack(signals))
    boxes = [receptive_box(steps, r, c) for r, c in positions]
    patches = torch.stack([crop(chosen[k], boxes[k]) for k in range(len(order))])
    projected = torch.stack([crop(projections[k], boxes[k]) for k in range(len(order))])
    return TopPatches(layer, channel, order, positions, values, boxes, patches, projected)
