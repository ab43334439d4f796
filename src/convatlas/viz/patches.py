"""The image patches that excite a unit most, beside their deconvnet projections.

Zeiler & Fergus (2013), arXiv:1311.2901, Fig. 2: for a feature map of a layer, the nine
strongest activations over the whole validation set are found; each is shown both as the image
patch the unit sees (its receptive field) and as the deconvnet's projection of that single
activation, cropped to the same patch. The patches show what the unit likes; the projections
show which part of each patch it is actually responding to.

**Ranking by what the content adds.** A unit answers even to an empty picture: with its bias,
with the background colour under its receptive field, and, near the border, with the
convolutions' zero padding (which after normalisation is not the background's colour: grey, where
the digits' background is black). ZFNet's photographs have no empty places, so its raw ranking
shows content; on the digits -- 85% black, the 28x28 digits padded to 32x32 with more black -- a
unit that likes dark or padded places tops the raw ranking with black squares. Here a unit's
position is scored by its activation *minus its activation for an empty image at the same
position*: ``a(x)[c, i, j] - a(empty)[c, i, j]``, what the picture's content adds to the unit
there. Places that look like the empty image score 0 whatever the unit does with them, so the
patches found are those whose content excites the unit. The empty image is every pixel at the
background colour: by default the per-channel median of the searched images (black for the
digits, a mid-tone for photos); ``background=None`` ranks by the raw activation, as the paper.
Where the whole layer is constant along positions for an empty image (valid convolutions, no
padding: LeNet-5) the two rankings agree except for ties among empty places.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from convatlas.viz.deconvnet import DeconvnetError, project, receptive_box, trace_chain
from convatlas.viz.source import check_channel, get_layer

__all__ = ["TopPatches", "top_patches", "channel_maxima", "crop", "empty_image", "inside_mask"]


@dataclass
class TopPatches:
    """The ``k`` units of ``channel`` of ``layer`` whose activation most exceeds their activation
    for an empty image, one per image, over a set of images.

    ``image_indices[k]`` is the image, ``positions[k]`` the unit (row, col) in the layer's map,
    ``activations[k]`` its value and ``excess[k]`` that value minus the empty image's there (the
    ranking; equal to ``activations`` when ``background`` is None), ``boxes[k]`` its receptive
    field (top, left, bottom, right; may reach outside the image of ``image_size``);
    ``patches`` (k, C, h, w) the uint8 image crops (zero outside the image) and ``projections``
    (k, C, h, w) the deconvnet projections cropped the same way. ``background`` is the colour of
    the empty image (None: raw ranking).
    """

    layer: str
    channel: int
    image_indices: list[int]
    positions: list[tuple[int, int]]
    activations: list[float]
    boxes: list[tuple[int, int, int, int]]
    patches: torch.Tensor
    projections: torch.Tensor
    excess: list[float] | None = None
    image_size: tuple[int, int] | None = None
    background: tuple[int, ...] | None = None

    def inside(self, k: int) -> torch.Tensor:
        """Boolean (h, w): which pixels of patch ``k`` lie inside the image."""
        if self.image_size is None:
            raise ValueError("image_size is unknown")
        return inside_mask(self.boxes[k], self.image_size)


def inside_mask(box: tuple[int, int, int, int], image_size: tuple[int, int]) -> torch.Tensor:
    """Boolean (bottom - top, right - left): True where ``box`` lies inside an image of ``image_size``."""
    top, left, bottom, right = box
    rows = torch.arange(top, bottom)
    cols = torch.arange(left, right)
    return ((rows >= 0) & (rows < image_size[0]))[:, None] & ((cols >= 0) & (cols < image_size[1]))[None, :]


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


def empty_image(images: torch.Tensor, background: int | Sequence[int] | str = "median") -> torch.Tensor:
    """The empty picture (1, C, H, W) uint8 of the size of ``images``: every pixel the background
    colour -- ``"median"`` (the per-channel median of ``images``' pixels), a grey level or one value
    per channel."""
    channels = images.shape[1]
    if isinstance(background, str):
        if background != "median":
            raise ValueError(f"background must be 'median', a grey level or one value per channel, got {background!r}")
        colour = [int(images[:, c].flatten().median()) for c in range(channels)]
    else:
        colour = [int(background)] * channels if isinstance(background, (int, float)) else [int(v) for v in background]
    if len(colour) != channels or not all(0 <= v <= 255 for v in colour):
        raise ValueError(f"background needs {channels} value(s) in 0..255, got {background!r}")
    return torch.tensor(colour, dtype=torch.uint8).view(1, channels, 1, 1).expand(1, channels, *images.shape[2:]).clone()


class _Done(Exception):
    """Raised by the hook on the layer to stop the forward pass there."""


def _reduce_layer_outputs(
    model: nn.Module,
    images: torch.Tensor,
    layer: str,
    preprocess: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int,
    reduce: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """``reduce`` applied to the output of ``layer`` (its first call) for each batch of
    ``images``, concatenated; the forward pass stops at the layer."""
    module = get_layer(model, layer)
    reduced: list[torch.Tensor] = []

    def hook(_m: nn.Module, _i: tuple, output: torch.Tensor) -> None:
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            raise DeconvnetError(f"layer {layer!r} does not give feature maps (N, C, H, W)")
        reduced.append(reduce(output.detach()))
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
    if not reduced:
        raise DeconvnetError(f"layer {layer!r} is not used in the forward pass of {type(model).__name__}")
    return torch.cat(reduced)


def channel_maxima(
    model: nn.Module,
    images: torch.Tensor,
    layer: str,
    *,
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch_size: int = 64,
    baseline: torch.Tensor | None = None,
) -> torch.Tensor:
    """Strongest activation of every channel of ``layer`` in each image: (N, C).

    With ``baseline`` (C, h, w), the layer's output for an empty image, the strongest of
    ``activation - baseline`` instead. The forward pass stops at ``layer``; images go through in
    batches of ``batch_size``.
    """
    preprocess = preprocess or (lambda batch: batch.float() / 255.0)

    def strongest(output: torch.Tensor) -> torch.Tensor:
        return (output if baseline is None else output - baseline).flatten(2).amax(dim=2)

    return _reduce_layer_outputs(model, images, layer, preprocess, batch_size, strongest)


def top_patches(
    model: nn.Module,
    images: torch.Tensor,
    layer: str,
    channel: int | None = None,
    *,
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    top_k: int = 9,
    batch_size: int = 64,
    background: int | Sequence[int] | str | None = "median",
) -> TopPatches:
    """Find the ``top_k`` images of ``images`` (uint8, N x C x H x W) in which a unit of ``channel``
    at ``layer`` most exceeds its activation for the empty image (see the module's docstring);
    crop each such unit's receptive field from the image and from the deconvnet projection of
    that single activation.

    ``channel=None`` picks the channel with the largest such excess over all the images.
    ``background`` is the empty image's colour (:func:`empty_image`; None ranks by the raw
    activation, as ZFNet). ``preprocess`` maps uint8 images to the network's input (default
    ``x / 255``).
    """
    if images.dtype != torch.uint8 or images.dim() != 4 or len(images) == 0:
        raise ValueError(f"images must be a non-empty uint8 tensor (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    preprocess = preprocess or (lambda batch: batch.float() / 255.0)
    baseline, colour = None, None
    if background is not None:
        empty = empty_image(images, background)
        colour = tuple(int(v) for v in empty[0, :, 0, 0])
        baseline = _reduce_layer_outputs(model, empty, layer, preprocess, 1, lambda output: output.clone())[0]
    maxima = channel_maxima(model, images, layer, preprocess=preprocess, batch_size=batch_size, baseline=baseline)
    if channel is None:
        channel = int(maxima.amax(dim=0).argmax())
    channel = check_channel(channel, maxima.shape[1], layer)
    order = maxima[:, channel].argsort(descending=True)[: min(top_k, len(images))].tolist()
    chosen = images[order]
    steps, activation = trace_chain(model, preprocess(chosen), layer)
    score = activation[:, channel] if baseline is None else activation[:, channel] - baseline[channel]
    signals, positions, values, excess = [], [], [], []
    for k in range(len(order)):
        row, col = divmod(int(score[k].argmax()), score.shape[2])
        signal = torch.zeros_like(activation[k])
        signal[channel, row, col] = activation[k, channel, row, col]  # ZFNet projects the activation itself
        signals.append(signal)
        positions.append((row, col))
        values.append(float(activation[k, channel, row, col]))
        excess.append(float(score[k, row, col]))
    with torch.no_grad():
        projections = project(steps, torch.stack(signals))
    boxes = [receptive_box(steps, r, c) for r, c in positions]
    patches = torch.stack([crop(chosen[k], boxes[k]) for k in range(len(order))])
    projected = torch.stack([crop(projections[k], boxes[k]) for k in range(len(order))])
    return TopPatches(layer, channel, order, positions, values, boxes, patches, projected, excess,
                      (images.shape[2], images.shape[3]), colour)
