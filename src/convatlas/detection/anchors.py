"""Anchors: the reference boxes a region proposal network scores and refines (Ren et al. 2015,
arXiv:1506.01497, Sec. 3.1.1: "at each sliding-window location, we simultaneously predict multiple
region proposals ... The k proposals are parameterized relative to k reference boxes, which we
call anchors"; 3 scales x 3 aspect ratios, k = 9).

Two conventions are in use and both are here, named plainly.

**py-faster-rcnn's** (:func:`base_anchors`), the code of the paper. Pixels are counted inclusively:
the base cell of a stride-16 feature map is the window ``(0, 0, 15, 15)``, 16 pixels wide with its
centre at ``0 + 0.5 (16 - 1) = 7.5``. For each ratio ``r = h / w`` the cell's area ``16 * 16`` is
kept: ``w = round(sqrt(256 / r))``, ``h = round(w r)`` (numpy's round: halves to even), then
``w`` and ``h`` are multiplied by each scale (8, 16, 32 -> 128, 256, 512 px) and the box is
``(cx - (w - 1) / 2, cy - (h - 1) / 2, cx + (w - 1) / 2, cy + (h - 1) / 2)``. Order: ratio-major,
scale inner. The nine rows printed in py-faster-rcnn's ``generate_anchors.py`` docstring
(``-83, -39, 100, 56`` ...) are Ren's MATLAB output, whose windows start at pixel 1 (centre 8.5);
the Python code itself returns the same boxes shifted by -1 (``-84, -40, 99, 55`` ..., centre 7.5).
``first_pixel`` chooses between the two.

**torchvision's** (:func:`cell_anchors`, :func:`grid_anchors`, :class:`AnchorGenerator`), pixel
edges and zero-centred cells: for a size ``s`` and ratio ``r``, ``h_ratio = sqrt(r)``,
``w = s / h_ratio``, ``h = s * h_ratio`` and the cell anchor is ``round((-w/2, -h/2, w/2, h/2))``
(torch's round: halves to even). Order: ratio-major, size inner. A feature map of ``H x W`` cells
with stride ``(sy, sx)`` places a copy of the cell anchors at every ``(x * sx, y * sy)`` — the
top-left corner of each cell, not its centre — with the positions row-major and the ``A`` anchors
of a position consecutive: row ``(y * W + x) * A + a``. The stride is ``image size // feature
size`` in each dimension.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from convatlas._checks import one_of, positive_int

__all__ = ["AnchorGenerator", "base_anchors", "cell_anchors", "grid_anchors"]


def _positive_numbers(name: str, values: Sequence[float]) -> tuple[float, ...]:
    values = tuple(values)
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 for v in values):
        raise ValueError(f"{name} must be a non-empty sequence of positive numbers, got {values!r}")
    return values


# --- py-faster-rcnn ---------------------------------------------------------------------------------

def base_anchors(base_size: int = 16, ratios: Sequence[float] = (0.5, 1, 2), scales: Sequence[float] = (8, 16, 32),
                 first_pixel: int = 0) -> torch.Tensor:
    """``(len(ratios) * len(scales), 4)`` anchors of one cell as py-faster-rcnn's
    ``generate_anchors`` makes them (inclusive pixel coordinates, x2 = x1 + w - 1), float64.

    The base window is ``(p, p, p + base_size - 1, p + base_size - 1)`` with ``p = first_pixel``:
    0 for the Python code (centre 7.5 for 16 px), 1 for Ren's MATLAB code and the rows printed in
    the Python file's docstring (centre 8.5). For ratio ``r`` (height / width)::

        w_r = round(sqrt(base_size**2 / r)),   h_r = round(w_r * r)
        anchor = centre -+ 0.5 * (scale * (w_r, h_r) - 1)

    rows ordered ratio by ratio, scales inner.
    """
    positive_int("base_size", base_size)
    ratios = _positive_numbers("ratios", ratios)
    scales = _positive_numbers("scales", scales)
    one_of("first_pixel", first_pixel, (0, 1))
    centre = first_pixel + 0.5 * (base_size - 1)
    r = torch.tensor(ratios, dtype=torch.float64)
    widths = torch.round(torch.sqrt(base_size * base_size / r))  # the cell's area kept, rounded
    heights = torch.round(widths * r)
    s = torch.tensor(scales, dtype=torch.float64)
    ws = (widths[:, None] * s[None, :]).reshape(-1)  # ratio-major, scale inner
    hs = (heights[:, None] * s[None, :]).reshape(-1)
    return torch.stack([centre - 0.5 * (ws - 1), centre - 0.5 * (hs - 1),
                        centre + 0.5 * (ws - 1), centre + 0.5 * (hs - 1)], dim=1)


# --- torchvision ------------------------------------------------------------------------------------

def cell_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float], dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """``(len(aspect_ratios) * len(sizes), 4)`` zero-centred xyxy anchors of one cell, torchvision's
    convention: for ratio ``r`` (height / width) and size ``s``::

        h_ratio = sqrt(r),  w = s / h_ratio,  h = s * h_ratio,  anchor = round((-w, -h, w, h) / 2)

    (area ``s**2``), rows ordered ratio by ratio, sizes inner.
    """
    sizes = _positive_numbers("sizes", sizes)
    aspect_ratios = _positive_numbers("aspect_ratios", aspect_ratios)
    s = torch.as_tensor(sizes, dtype=dtype, device=device)
    h_ratios = torch.sqrt(torch.as_tensor(aspect_ratios, dtype=dtype, device=device))
    w_ratios = 1 / h_ratios
    ws = (w_ratios[:, None] * s[None, :]).reshape(-1)
    hs = (h_ratios[:, None] * s[None, :]).reshape(-1)
    return (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()


def grid_anchors(cell: torch.Tensor, feature_size: Sequence[int], stride: int | Sequence[int]) -> torch.Tensor:
    """``(H * W * A, 4)`` anchors of a feature map of ``feature_size = (H, W)`` cells: the ``A`` cell
    anchors shifted to ``(x * stride_x, y * stride_y)`` for every cell, row ``(y * W + x) * A + a``.
    ``stride`` is an int or ``(stride_y, stride_x)`` in image pixels."""
    if cell.dim() != 2 or cell.shape[1] != 4:
        raise ValueError(f"cell anchors must be (A, 4), got {tuple(cell.shape)}")
    height, width = (positive_int("feature_size", int(n)) for n in feature_size)
    stride_y, stride_x = (stride, stride) if isinstance(stride, int) else tuple(stride)
    xs = torch.arange(width, dtype=torch.int64, device=cell.device) * stride_x
    ys = torch.arange(height, dtype=torch.int64, device=cell.device) * stride_y
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    x, y = x.reshape(-1), y.reshape(-1)
    shifts = torch.stack([x, y, x, y], dim=1).to(cell.dtype)
    return (shifts[:, None, :] + cell[None, :, :]).reshape(-1, 4)


def _per_level(aspect_ratios: Sequence, levels: int) -> tuple[tuple[float, ...], ...]:
    """One tuple of ratios per level: a flat tuple of numbers is shared by all levels."""
    if aspect_ratios and all(isinstance(r, (int, float)) for r in aspect_ratios):
        return (tuple(aspect_ratios),) * levels
    aspect_ratios = tuple(tuple(r) for r in aspect_ratios)
    if len(aspect_ratios) != levels:
        raise ValueError(f"aspect_ratios gives {len(aspect_ratios)} levels but sizes gives {levels}; "
                         "give one tuple of ratios per level, or one flat tuple for all")
    return aspect_ratios


class AnchorGenerator(nn.Module):
    """Anchors for a list of feature maps (one level each, e.g. an FPN's), torchvision's convention.

    ``sizes`` holds one tuple of sizes per level, ``aspect_ratios`` one tuple of ratios per level (or
    one flat tuple shared by all). Faster R-CNN's single map: ``sizes=((128, 256, 512),)``,
    ``aspect_ratios=(0.5, 1.0, 2.0)``; FPN: ``sizes=((32,), (64,), (128,), (256,), (512,))``.

    ``forward(feature_maps, image_size)`` returns one ``(sum_l H_l W_l A_l, 4)`` tensor per image of
    the batch (all equal: the batch shares its padded ``image_size = (height, width)``), levels in
    order; the stride of a level is ``image_size // feature size`` in each dimension.
    """

    def __init__(self, sizes: Sequence[Sequence[float]] = ((128, 256, 512),),
                 aspect_ratios: Sequence = (0.5, 1.0, 2.0)):
        super().__init__()
        self.sizes = tuple(tuple(_positive_numbers("sizes", s)) for s in sizes)
        if not self.sizes:
            raise ValueError("sizes must give at least one level")
        self.aspect_ratios = _per_level(aspect_ratios, len(self.sizes))

    def num_anchors_per_location(self) -> list[int]:
        """``A_l = len(sizes[l]) * len(aspect_ratios[l])`` per level."""
        return [len(s) * len(r) for s, r in zip(self.sizes, self.aspect_ratios)]

    def extra_repr(self) -> str:
        return f"sizes={self.sizes}, aspect_ratios={self.aspect_ratios}"

    def forward(self, feature_maps: Sequence[torch.Tensor], image_size: Sequence[int]) -> list[torch.Tensor]:
        if len(feature_maps) != len(self.sizes):
            raise ValueError(f"got {len(feature_maps)} feature maps for {len(self.sizes)} anchor levels "
                             f"(sizes={self.sizes})")
        image_h, image_w = (int(n) for n in image_size)
        levels = []
        for fmap, sizes, ratios in zip(feature_maps, self.sizes, self.aspect_ratios):
            height, width = fmap.shape[-2:]
            cell = cell_anchors(sizes, ratios, device=fmap.device).to(fmap.dtype)  # rounded in float32
            levels.append(grid_anchors(cell, (height, width), (image_h // height, image_w // width)))
        anchors = torch.cat(levels)
        return [anchors] + [anchors.clone() for _ in range(feature_maps[0].shape[0] - 1)]
