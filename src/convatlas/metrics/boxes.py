"""Box geometry the metrics need: areas and pairwise intersection over union.

Boxes are ``(..., 4)`` tensors ``(x1, y1, x2, y2)`` in pixel-edge coordinates: a box covering
pixels 0..9 of a row runs from x1 = 0 to x2 = 10 and has width ``x2 - x1 = 10``. This is
torchvision's and COCO's convention (COCO stores ``x, y, w, h`` of the same edges). The VOC
devkit counts pixels inclusively (width ``x2 - x1 + 1`` of 1-based pixel indices); readers of
VOC files convert at load time, so nothing here adds the ``+ 1``.

The detection room (:mod:`convatlas.detection`) builds its box toolkit on these two functions.
"""

from __future__ import annotations

import torch

__all__ = ["box_area", "box_iou", "box_intersection"]


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` xyxy -> ``(...)``: ``(x2 - x1) * (y2 - y1)``; a degenerate box has area 0."""
    width = (boxes[..., 2] - boxes[..., 0]).clamp(min=0)
    height = (boxes[..., 3] - boxes[..., 1]).clamp(min=0)
    return width * height


def box_intersection(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(N, 4)``, ``(M, 4)`` -> ``(N, M)``: the area each pair of boxes has in common."""
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    size = (bottom_right - top_left).clamp(min=0)
    return size[..., 0] * size[..., 1]


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(N, 4)``, ``(M, 4)`` -> ``(N, M)`` intersection over union,
    ``|A ∩ B| / (|A| + |B| - |A ∩ B|)``; 0 where both boxes are empty (the union is 0)."""
    if a.dim() != 2 or a.shape[-1] != 4 or b.dim() != 2 or b.shape[-1] != 4:
        raise ValueError(f"boxes must be (N, 4) and (M, 4), got {tuple(a.shape)} and {tuple(b.shape)}")
    if not a.is_floating_point():
        a, b = a.float(), b.float()
    inter = box_intersection(a, b)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    safe = union.clamp(min=torch.finfo(union.dtype).tiny)  # no 0 / 0, and no NaN in the gradient
    return torch.where(union > 0, inter / safe, torch.zeros_like(inter))
