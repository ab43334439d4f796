"""Features of regions: RoI Pool (Fast R-CNN), RoI Align (Mask R-CNN) and FPN's multi-scale RoI Align.

Each turns a feature map ``(N, C, H, W)`` and ``K`` regions of interest into ``(K, C, PH, PW)``:
a fixed-size feature per region, whatever its size, so one head can classify them all. Regions
are given in image coordinates (xyxy) either as a ``(K, 5)`` tensor ``(batch index, x1, y1, x2,
y2)`` or as a list of ``(K_i, 4)`` tensors, one per image; ``spatial_scale`` (1 / stride) maps
them onto the feature map. Both operations follow torchvision.ops' definitions, and the tests
hold them equal to it, forward and backward.

**RoI Pool** (Girshick 2015, arXiv:1504.08083, Sec. 2.1) quantises twice: the region's corners are
rounded to feature cells (``round(x * scale)``, halves away from zero; inclusive, so the region
is ``x2 - x1 + 1`` cells wide, at least 1), and bin ``(i, j)`` of a ``PH x PW`` grid covers rows
``floor(i h / PH) .. ceil((i + 1) h / PH)`` of it. Each bin outputs the maximum of its cells (0 for
a bin outside the map), and the gradient goes to that one cell.

**RoI Align** (He et al. 2017, arXiv:1703.06870, Sec. 3) quantises nothing: the region is
``(x1 * scale - o, ..., x2 * scale - o)`` with ``o = 0.5`` when ``aligned`` (so that pixel
centres, at half-integers, land on the sampling grid of bilinear interpolation; the paper's
intent, torchvision's option) and ``o = 0`` otherwise (the published Detectron code, in which a
region is also made at least 1 cell wide and high). Each bin is sampled at a regular
``g_h x g_w`` grid of points — ``sampling_ratio`` per side, or ``ceil(region size / PH)``
when it is ``-1`` (adaptive) — each read by bilinear interpolation, and the bin outputs their
mean. A point more than one cell outside the map reads 0; one within a cell of the border reads
the clamped border.

Because the sampling points of bin ``(i, j)`` form a grid (their y depends only on ``i``, their x
only on ``j``) and bilinear interpolation is a product of a weight in y and a weight in x, RoI
Align is separable: for a region on image ``b``::

    output[c] = A_y  F[b, c]  A_x^T,        A_y: (PH, H),  A_x: (PW, W)

where row ``i`` of ``A_y`` holds the interpolation weights of bin ``i``'s sample rows, summed and
divided by ``g_h`` (zero for points outside the map). That is how it is computed here: two matrix
products per image, no loop over regions, and the adaptive grid (a different ``g`` per region)
costs nothing extra, since each region's matrices are built with its own ``g`` and masked beyond
it. The backward pass is the transpose, which autograd derives.

**Multi-scale RoI Align** (Lin et al. 2017, arXiv:1612.03144, Sec. 4.2, Eq. 1) reads each region
from one level of a feature pyramid: ``k = floor(k0 + log2(sqrt(w h) / 224))``, clamped to the
levels present, with ``k0 = 4`` (so a 224-pixel region, ImageNet's size, reads from P4).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from torch import nn

from convatlas._checks import positive_int, positive_number
from convatlas.metrics.boxes import box_area

__all__ = ["MultiScaleRoIAlign", "RoIPool", "roi_align", "roi_pool", "rois_from_boxes"]


def _pair(name: str, value: int | Sequence[int]) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2:
        raise ValueError(f"{name} must be an int or (height, width), got {value!r}")
    return positive_int(name, pair[0]), positive_int(name, pair[1])


def rois_from_boxes(boxes: Sequence[torch.Tensor]) -> torch.Tensor:
    """``(K, 5)`` regions ``(batch index, x1, y1, x2, y2)`` from one ``(K_i, 4)`` box tensor per image."""
    for i, b in enumerate(boxes):
        if b.dim() != 2 or b.shape[1] != 4:
            raise ValueError(f"boxes[{i}] must be a (K, 4) tensor, got {tuple(b.shape)}")
    if not boxes:
        return torch.zeros(0, 5)
    dtype = boxes[0].dtype if boxes[0].is_floating_point() else torch.float32
    index = torch.cat([torch.full((len(b), 1), i, dtype=dtype, device=b.device) for i, b in enumerate(boxes)])
    return torch.cat([index, torch.cat([b.to(dtype) for b in boxes])], dim=1)


def _check_inputs(features: torch.Tensor, rois: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """The regions as a ``(K, 5)`` tensor of the features' dtype and device, checked."""
    if features.dim() != 4:
        raise ValueError(f"features must be (N, C, H, W), got {tuple(features.shape)}")
    if not isinstance(rois, torch.Tensor):
        rois = rois_from_boxes(list(rois))
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise ValueError(f"rois must be (K, 5) rows (batch index, x1, y1, x2, y2) or a list of (K_i, 4) boxes, "
                         f"got {tuple(rois.shape)}")
    rois = rois.to(device=features.device, dtype=features.dtype)
    if rois.numel() and (rois[:, 0].min() < 0 or rois[:, 0].max() >= features.shape[0]):
        raise ValueError(f"rois name batch indices {int(rois[:, 0].min())}..{int(rois[:, 0].max())}, "
                         f"but the features hold {features.shape[0]} images")
    return rois


# --- RoI Pool ---------------------------------------------------------------------------------------

def _round_half_away(x: torch.Tensor) -> torch.Tensor:
    """C's ``round``: halves away from zero (torch.round sends them to the even neighbour)."""
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def _bin_edges(start: torch.Tensor, length: torch.Tensor, bins: int, size: int,
               dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``(K, bins)`` first and one-past-last cell of each bin: ``start + floor(i * length / bins)`` and
    ``start + ceil((i + 1) * length / bins)``, clipped to ``[0, size]`` (in the features' dtype)."""
    bin_size = length.to(dtype)[:, None] / bins
    i = torch.arange(bins, dtype=dtype, device=start.device)[None, :]
    first = torch.floor(i * bin_size).long() + start[:, None]
    last = torch.ceil((i + 1) * bin_size).long() + start[:, None]
    return first.clamp(0, size), last.clamp(0, size)


def roi_pool(features: torch.Tensor, rois: torch.Tensor | Sequence[torch.Tensor], output_size: int | Sequence[int],
             spatial_scale: float = 1.0) -> torch.Tensor:
    """Fast R-CNN's RoI max pooling: ``(K, C, PH, PW)`` from features ``(N, C, H, W)``.

    The region, rounded to cells, spans columns ``x1' = round(x1 s) .. x2' = round(x2 s)`` (``w =
    max(x2' - x1' + 1, 1)``, likewise rows); bin ``(i, j)`` is the maximum over rows
    ``[y1' + floor(i h / PH), y1' + ceil((i + 1) h / PH))`` and the matching columns (clipped to the
    map; an empty bin gives 0). One output row of bins is gathered at a time: each bin's cells, padded
    to the largest bin's size with a cell of -inf, read by one ``index_select`` from the features laid
    out as (cells, channels).
    """
    rois = _check_inputs(features, rois)
    ph, pw = _pair("output_size", output_size)
    positive_number("spatial_scale", spatial_scale)
    n, c, height, width = features.shape
    if rois.shape[0] == 0:
        return features.new_zeros((0, c, ph, pw))
    corners = _round_half_away(rois[:, 1:] * spatial_scale).long()
    x1, y1, x2, y2 = corners.unbind(1)
    row_first, row_last = _bin_edges(y1, (y2 - y1 + 1).clamp(min=1), ph, height, features.dtype)  # (K, PH)
    col_first, col_last = _bin_edges(x1, (x2 - x1 + 1).clamp(min=1), pw, width, features.dtype)  # (K, PW)
    span_h = int((row_last - row_first).max().clamp(min=1))  # the largest bin, to which all are padded
    span_w = int((col_last - col_first).max().clamp(min=1))
    # Every cell of the batch as a row of C numbers, and one row of -inf that padding points to.
    cells = torch.cat([features.permute(0, 2, 3, 1).reshape(n * height * width, c),
                       features.new_full((1, c), float("-inf"))])
    padding = n * height * width
    first_cell = rois[:, 0].long() * (height * width)
    cols = col_first[:, :, None] + torch.arange(span_w, device=features.device)  # (K, PW, span_w)
    col_inside = cols < col_last[:, :, None]
    k = rois.shape[0]
    bin_rows = []
    for i in range(ph):  # one row of bins at a time
        rows = row_first[:, i, None] + torch.arange(span_h, device=features.device)  # (K, span_h)
        inside = (rows < row_last[:, i, None])[:, None, :, None] & col_inside[:, :, None, :]  # (K, PW, span_h, span_w)
        index = first_cell[:, None, None, None] + rows[:, None, :, None] * width + cols[:, :, None, :]
        index = torch.where(inside, index, padding)
        window = cells.index_select(0, index.reshape(-1)).view(k, pw, span_h * span_w, c)  # cells row-major
        best = window.max(dim=2).values  # the first maximum in row-major order takes the gradient
        empty = ~inside.flatten(2).any(dim=2)  # (K, PW): a bin outside the map gives 0
        bin_rows.append(best.masked_fill(empty[:, :, None], 0))
    return torch.stack(bin_rows, dim=1).permute(0, 3, 1, 2).contiguous()  # (K, PH, PW, C) -> (K, C, PH, PW)


# --- RoI Align --------------------------------------------------------------------------------------

def _sampling_matrix(start: torch.Tensor, length: torch.Tensor, bins: int, grid: torch.Tensor, size: int) -> torch.Tensor:
    """``(K, bins, size)``: row ``i`` is the mean over bin ``i``'s ``grid`` sample points
    ``p = start + i * b + (g + 0.5) * b / grid`` (``b = length / bins``) of their linear-interpolation
    weights on the cells ``0 .. size - 1``; a point below -1 or above ``size`` weighs nothing."""
    k = start.shape[0]
    g_max = max(int(grid.max()), 1)
    dtype = start.dtype
    bin_size = (length / bins)[:, None, None]
    i = torch.arange(bins, dtype=dtype, device=start.device)[None, :, None]
    g = torch.arange(g_max, dtype=dtype, device=start.device)[None, None, :]
    steps = grid.clamp(min=1).to(dtype)[:, None, None]
    points = start[:, None, None] + i * bin_size + (g + 0.5) * bin_size / steps  # (K, bins, g_max)
    weight = ((g < grid[:, None, None]) & (points >= -1) & (points <= size)).to(dtype)
    points = points.clamp(min=0)
    low = points.floor().long()
    at_edge = low >= size - 1  # the last cell: no right neighbour, read it as it is
    low = torch.where(at_edge, torch.full_like(low, size - 1), low)
    high = torch.where(at_edge, low, low + 1)
    frac = torch.where(at_edge, torch.zeros_like(points), points - low.to(dtype))
    index = torch.cat([low, high], dim=2).reshape(k, bins, -1)
    values = torch.cat([weight * (1 - frac), weight * frac], dim=2).reshape(k, bins, -1)
    matrix = torch.zeros(k, bins, size, dtype=dtype, device=start.device).scatter_add_(2, index, values)
    return matrix / steps


def _align_matrices(boxes: torch.Tensor, output_size: tuple[int, int], size: tuple[int, int], spatial_scale: float,
                    sampling_ratio: int, aligned: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """RoI Align's row and column sampling matrices ``(K, PH, H)``, ``(K, PW, W)`` of ``boxes`` ``(K, 4)``."""
    (ph, pw), (height, width) = output_size, size
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (boxes * spatial_scale - offset).unbind(1)
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:  # the Detectron convention: a region is at least one cell
        roi_w, roi_h = roi_w.clamp(min=1), roi_h.clamp(min=1)
    if sampling_ratio > 0:
        grid_h = grid_w = torch.full_like(roi_h, sampling_ratio, dtype=torch.long)
    else:
        grid_h, grid_w = torch.ceil(roi_h / ph).long(), torch.ceil(roi_w / pw).long()
    return _sampling_matrix(y1, roi_h, ph, grid_h, height), _sampling_matrix(x1, roi_w, pw, grid_w, width)


def roi_align_each(maps: torch.Tensor, boxes: torch.Tensor, output_size: int | Sequence[int],
                   sampling_ratio: int = -1, aligned: bool = False) -> torch.Tensor:
    """:func:`roi_align` of region ``boxes[k]`` (``(K, 4)`` xyxy, scale 1) on its own map ``maps[k]``
    (``(K, H, W)``), all in one batched product: ``(K, PH, PW)`` (Mask R-CNN's mask targets, each
    RoI on its matched instance's mask)."""
    ph, pw = _pair("output_size", output_size)
    if maps.dim() != 3 or boxes.shape != (maps.shape[0], 4):
        raise ValueError(f"maps must be (K, H, W) with one (K, 4) box each, got {tuple(maps.shape)} and "
                         f"{tuple(boxes.shape)}")
    if boxes.shape[0] == 0:
        return maps.new_zeros((0, ph, pw))
    rows, cols = _align_matrices(boxes, (ph, pw), tuple(maps.shape[-2:]), 1.0, sampling_ratio, aligned)
    return rows @ maps @ cols.transpose(1, 2)


def roi_align(features: torch.Tensor, rois: torch.Tensor | Sequence[torch.Tensor], output_size: int | Sequence[int],
              spatial_scale: float = 1.0, sampling_ratio: int = -1, aligned: bool = False) -> torch.Tensor:
    """Mask R-CNN's RoI Align: ``(K, C, PH, PW)`` from features ``(N, C, H, W)``.

    Region ``(x1 s - o, y1 s - o, x2 s - o, y2 s - o)``, ``o = 0.5`` if ``aligned`` else 0 (and then
    ``w, h >= 1``); bin ``(i, j)`` averages bilinear samples at
    ``y = y1' + i h / PH + (u + 0.5) h / (PH g_h)``, ``x = x1' + j w / PW + (v + 0.5) w / (PW g_w)``,
    ``u < g_h``, ``v < g_w``, with ``g = sampling_ratio`` or, if it is ``<= 0``, ``ceil(h / PH)`` and
    ``ceil(w / PW)`` per region. Computed as ``A_y F A_x^T`` per image (see the module docstring).
    """
    rois = _check_inputs(features, rois)
    ph, pw = _pair("output_size", output_size)
    positive_number("spatial_scale", spatial_scale)
    if isinstance(sampling_ratio, bool) or not isinstance(sampling_ratio, int):
        raise ValueError(f"sampling_ratio must be an int (a positive count, or -1 for adaptive), got {sampling_ratio!r}")
    n, c, height, width = features.shape
    if rois.shape[0] == 0:
        return features.new_zeros((0, c, ph, pw))
    rows, cols = _align_matrices(rois[:, 1:], (ph, pw), (height, width), spatial_scale, sampling_ratio, aligned)
    image = rois[:, 0].long()
    output = features.new_zeros((rois.shape[0], c, ph, pw))
    for b in torch.unique(image).tolist():
        mine = torch.where(image == b)[0]
        across = torch.einsum("kph,chw->kcpw", rows[mine], features[b])
        output[mine] = torch.einsum("kcpw,kqw->kcpq", across, cols[mine])
    return output


# --- FPN --------------------------------------------------------------------------------------------

def _infer_scale(feature_size: Sequence[int], image_size: Sequence[int]) -> float:
    """The power of two nearest ``feature / image`` size; the same for height and width."""
    scales = [2.0 ** round(math.log2(f / i)) for f, i in zip(feature_size, image_size)]
    if scales[0] != scales[1]:
        raise ValueError(f"a feature map of {tuple(feature_size)} on images of {tuple(image_size)} has scales "
                         f"{scales[0]} and {scales[1]} in height and width; expected the same power of 2")
    return scales[0]


class MultiScaleRoIAlign(nn.Module):
    """RoI Align over a feature pyramid, each region on the level FPN's Eq. 1 assigns it:

        k = clamp(floor(k0 + log2(sqrt(w h) / canonical_scale) + 1e-6), k_min, k_max)

    (Lin et al. 2017, arXiv:1612.03144, Sec. 4.2, ``k0 = canonical_level = 4``, ``canonical_scale =
    224``). The level of a map of scale ``1 / 2^k`` (inferred as the power of 2 nearest its size over
    the largest image size) is ``k``; the levels must be consecutive, finest first.

    ``forward(features, boxes, image_sizes)``: ``features`` a dict (the maps named in
    ``featmap_names`` are used, in that order) or a sequence of maps; ``boxes`` one ``(K_i, 4)`` xyxy
    tensor per image in image coordinates; ``image_sizes`` the ``(height, width)`` of each image.
    Returns ``(sum K_i, C, PH, PW)``, regions in order.
    """

    def __init__(self, featmap_names: Sequence[str] | None, output_size: int | Sequence[int], sampling_ratio: int,
                 canonical_scale: float = 224, canonical_level: int = 4):
        super().__init__()
        self.featmap_names = list(featmap_names) if featmap_names is not None else None
        self.output_size = _pair("output_size", output_size)
        self.sampling_ratio = sampling_ratio
        self.canonical_scale = positive_number("canonical_scale", canonical_scale)
        self.canonical_level = canonical_level

    def extra_repr(self) -> str:
        return (f"featmap_names={self.featmap_names}, output_size={self.output_size}, "
                f"sampling_ratio={self.sampling_ratio}")

    def _maps(self, features: Mapping[str, torch.Tensor] | Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if isinstance(features, Mapping):
            if self.featmap_names is None:
                return list(features.values())
            missing = [name for name in self.featmap_names if name not in features]
            if missing:
                raise ValueError(f"feature maps {missing} are not among the features given ({list(features)})")
            return [features[name] for name in self.featmap_names]
        return list(features)

    def levels(self, boxes: torch.Tensor, k_min: int, k_max: int) -> torch.Tensor:
        """FPN's Eq. 1 for ``(K, 4)`` boxes: the level ``k`` of each, clamped to ``[k_min, k_max]``."""
        size = torch.sqrt(box_area(boxes))
        k = torch.floor(self.canonical_level + torch.log2(size / self.canonical_scale)
                        + torch.tensor(1e-6, dtype=size.dtype))
        return k.clamp(min=k_min, max=k_max).long()

    def forward(self, features: Mapping[str, torch.Tensor] | Sequence[torch.Tensor], boxes: Sequence[torch.Tensor],
                image_sizes: Sequence[Sequence[int]]) -> torch.Tensor:
        maps = self._maps(features)
        if not maps:
            raise ValueError("MultiScaleRoIAlign needs at least one feature map")
        if not image_sizes:
            raise ValueError("image_sizes must give the (height, width) of each image")
        largest = (max(int(s[0]) for s in image_sizes), max(int(s[1]) for s in image_sizes))
        scales = [_infer_scale(m.shape[-2:], largest) for m in maps]
        levels = [int(round(-math.log2(s))) for s in scales]
        if levels != list(range(levels[0], levels[0] + len(levels))):
            raise ValueError(f"feature maps have levels {levels} (scales {scales}); expected consecutive levels, finest first")
        rois = rois_from_boxes(list(boxes)).to(device=maps[0].device, dtype=maps[0].dtype)
        align = dict(output_size=self.output_size, sampling_ratio=self.sampling_ratio)
        if len(maps) == 1:
            return roi_align(maps[0], rois, spatial_scale=scales[0], **align)
        assigned = self.levels(rois[:, 1:], levels[0], levels[-1]) - levels[0]
        output = maps[0].new_zeros((rois.shape[0], maps[0].shape[1], *self.output_size))
        for index, (fmap, scale) in enumerate(zip(maps, scales)):
            mine = torch.where(assigned == index)[0]
            if mine.numel():
                output[mine] = roi_align(fmap, rois[mine], spatial_scale=scale, **align)
        return output


class RoIPool(nn.Module):
    """Fast R-CNN's RoI Pool over one feature map, called as :class:`MultiScaleRoIAlign` is:
    ``forward(features, boxes, image_sizes)`` with ``features`` a dict or sequence holding one map
    (the first of ``featmap_names``, or the only one), ``boxes`` one ``(K_i, 4)`` xyxy tensor per
    image. The scale (1 / stride) is inferred as the power of 2 nearest the map's size over the
    image's, as for RoI Align (VGG-16's conv5_3: 1/16)."""

    def __init__(self, featmap_names: Sequence[str] | None, output_size: int | Sequence[int]):
        super().__init__()
        self.featmap_names = list(featmap_names) if featmap_names is not None else None
        self.output_size = _pair("output_size", output_size)

    def extra_repr(self) -> str:
        return f"featmap_names={self.featmap_names}, output_size={self.output_size}"

    def forward(self, features: Mapping[str, torch.Tensor] | Sequence[torch.Tensor], boxes: Sequence[torch.Tensor],
                image_sizes: Sequence[Sequence[int]]) -> torch.Tensor:
        if isinstance(features, Mapping):
            names = self.featmap_names or list(features)
            if names[0] not in features:
                raise ValueError(f"feature map {names[0]!r} is not among the features given ({list(features)})")
            fmap = features[names[0]]
        else:
            fmap = list(features)[0]
        largest = (max(int(s[0]) for s in image_sizes), max(int(s[1]) for s in image_sizes))
        rois = rois_from_boxes(list(boxes)).to(device=fmap.device, dtype=fmap.dtype)
        return roi_pool(fmap, rois, self.output_size, spatial_scale=_infer_scale(fmap.shape[-2:], largest))
