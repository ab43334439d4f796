"""The learned filters of a convolutional layer, as a grid of pictures.

The first layer's filters look straight at the pixels, so they can be shown as images: AlexNet's
and ZFNet's RGB kernels are edge, grating and colour-blob detectors (Krizhevsky et al., 2012,
Fig. 3; Zeiler & Fergus, 2013, arXiv:1311.2901, Fig. 6). ZFNet read the problems of AlexNet's
11x11 stride-4 first layer off such a picture -- a mix of extremely high and low frequencies,
few mid frequencies, and aliasing in layer 2 -- and changed it to 7x7 stride 2.

Later layers' kernels act on feature maps, not colours; they are shown one input channel at a
time, as a grey tile per (filter, input channel) pair.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from convatlas.viz.source import check_channel, get_layer, layer_names

__all__ = ["FilterGrid", "filter_grid", "normalise_filter", "tile"]


@dataclass
class FilterGrid:
    """A picture of a layer's kernels. ``image`` is (H, W, 3) for RGB kernels and (H, W) for
    per-input-channel tiles, values in [0, 1]; ``rows`` x ``cols`` tiles of ``tile_size``."""

    image: np.ndarray
    layer: str
    weight_shape: tuple[int, ...]
    rows: int
    cols: int
    tile_size: tuple[int, int]
    colour: bool
    filters: list[int]   # output channel of each tile row (or of each tile, for colour grids)
    inputs: list[int]    # input channels shown as columns (empty for colour grids)


def normalise_filter(weight: torch.Tensor) -> torch.Tensor:
    """Scale one filter to [0, 1] with a single offset and scale, ``(w - min) / (max - min)``,
    so the colours of an RGB filter keep their ratios (a flat filter becomes mid-grey)."""
    low, high = weight.min(), weight.max()
    if float(high - low) == 0.0:
        return torch.full_like(weight, 0.5)
    return (weight - low) / (high - low)


def tile(tiles: list[np.ndarray], cols: int, *, pad: int = 1, background: float = 1.0, below: int = 0) -> np.ndarray:
    """Lay equal-size images (h, w) or (h, w, 3) out in a grid ``cols`` wide with ``pad`` pixels
    between, and ``below`` more pixels under each row of tiles (room for a caption): tile ``k``'s
    top-left corner is at row ``pad + (k // cols) * (h + pad + below)``, column ``pad + (k % cols) * (w + pad)``."""
    if not tiles:
        raise ValueError("nothing to tile")
    h, w = tiles[0].shape[:2]
    rows = math.ceil(len(tiles) / cols)
    step = h + pad + below
    shape = (rows * step + pad, cols * (w + pad) + pad) + tiles[0].shape[2:]
    grid = np.full(shape, background, dtype=np.float32)
    for k, t in enumerate(tiles):
        r, c = divmod(k, cols)
        grid[pad + r * step : pad + r * step + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = t
    return grid


def filter_grid(
    model: nn.Module,
    layer: str | None = None,
    channel: int | None = None,
    *,
    max_filters: int = 96,
    max_inputs: int = 16,
) -> FilterGrid:
    """Kernels of the convolution ``layer`` (default: the first) as a grid.

    Kernels over three input channels of a first layer are shown in colour, one tile per filter
    (up to ``max_filters``); kernels over one input channel in grey, likewise. Other kernels are shown per input channel: a row per filter (up to
    ``max_filters``), a column per input channel (up to ``max_inputs``); each row is scaled as
    one. ``channel`` shows one filter only, all its input channels in a square grid.
    """
    convs = layer_names(model, (nn.Conv2d,))
    if not convs:
        raise ValueError(f"{type(model).__name__} has no Conv2d layer to show filters of")
    layer = layer or convs[0]
    conv = get_layer(model, layer, types=(nn.Conv2d,), what="convolution")
    weight = conv.weight.detach().float().cpu()  # (out, in / groups, kh, kw)
    out_channels, in_per_group, kh, kw = weight.shape
    filters = list(range(out_channels))
    if channel is not None:
        filters = [check_channel(channel, out_channels, layer)]
    filters = filters[:max_filters]
    colour = in_per_group == 3 and conv.groups == 1 and layer == convs[0]
    if colour or in_per_group == 1:  # one picture per filter: RGB, or grey for one input channel
        tiles = [normalise_filter(weight[o]).permute(1, 2, 0).numpy() for o in filters]
        tiles = [t[..., 0] for t in tiles] if in_per_group == 1 else tiles
        cols = math.ceil(math.sqrt(len(tiles)))
        image = tile(tiles, cols)
        return FilterGrid(image, layer, tuple(weight.shape), math.ceil(len(tiles) / cols), cols,
                          (kh, kw), colour, filters, [0] if in_per_group == 1 else [])
    inputs = list(range(in_per_group))
    if channel is not None:  # one filter: all its input slices, laid out square
        slices = normalise_filter(weight[filters[0]])
        tiles = [slices[i].numpy() for i in inputs]
        cols = math.ceil(math.sqrt(len(tiles)))
        image = tile(tiles, cols)
        return FilterGrid(image, layer, tuple(weight.shape), math.ceil(len(tiles) / cols), cols,
                          (kh, kw), False, filters, inputs)
    inputs = inputs[:max_inputs]
    tiles = []
    for o in filters:
        row = normalise_filter(weight[o, inputs])
        tiles.extend(row[i].numpy() for i in range(len(inputs)))
    image = tile(tiles, len(inputs))
    return FilterGrid(image, layer, tuple(weight.shape), len(filters), len(inputs), (kh, kw), False, filters, inputs)
