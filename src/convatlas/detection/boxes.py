"""The box toolkit: formats, IoU and GIoU, clipping, non-maximum suppression, and R-CNN's box code.

Boxes are ``(N, 4)`` tensors. The working format is ``xyxy`` = ``(x1, y1, x2, y2)`` in pixel-edge
coordinates (width ``x2 - x1``, no ``+ 1``), as in :mod:`convatlas.metrics.boxes`, whose
:func:`box_area`, :func:`box_intersection` and :func:`box_iou` are re-exported here. The other two
formats are ``xywh`` (COCO's ``x1, y1, width, height``) and ``cxcywh`` (centre, width, height:
YOLO's and DETR's).

Non-maximum suppression (NMS) is the greedy pass of the detectors since Dalal and Triggs (2005)
and R-CNN (Girshick et al. 2014, arXiv:1311.2524, Sec. 2.2): visit the boxes by decreasing score,
keep a box unless a box already kept overlaps it with IoU > threshold.

The box code is R-CNN's regression target (Girshick et al. 2014, appendix C), as Fast and Faster
R-CNN use it: a box ``g`` relative to a proposal (or anchor) ``p`` is

    tx = wx (gx - px) / pw,   ty = wy (gy - py) / ph,   tw = ww log(gw / pw),   th = wh log(gh / ph)

with centres ``x1 + w / 2`` and widths ``x2 - x1`` (torchvision's convention; the Caffe code of
the papers added 1 to widths) and weights ``(wx, wy, ww, wh)``: (1, 1, 1, 1) for the RPN, and
(10, 10, 5, 5) for the second stage, which is dividing the targets by their standard deviations
(0.1, 0.1, 0.2, 0.2) as py-faster-rcnn's ``BBOX_NORMALIZE_STDS`` does.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from convatlas._checks import non_negative, one_of
from convatlas.metrics.boxes import box_area, box_intersection, box_iou

__all__ = ["BOX_FORMATS", "BoxCoder", "batched_nms", "box_area", "box_convert", "box_intersection", "box_iou",
           "clip_boxes", "generalized_box_iou", "nms", "remove_small_boxes"]

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")

# NMS compares each block of boxes against the boxes kept before it, then runs the greedy pass
# inside the block: memory grows as block x kept, never as N x N.
_NMS_BLOCK = 256


def _check_boxes(name: str, boxes: torch.Tensor) -> torch.Tensor:
    if not isinstance(boxes, torch.Tensor) or boxes.dim() != 2 or boxes.shape[-1] != 4:
        shape = tuple(boxes.shape) if isinstance(boxes, torch.Tensor) else type(boxes).__name__
        raise ValueError(f"{name} must be an (N, 4) tensor of boxes, got {shape}")
    return boxes


# --- formats ---------------------------------------------------------------------------------------

def _to_xyxy(boxes: torch.Tensor, fmt: str) -> torch.Tensor:
    a, b, c, d = boxes.unbind(-1)
    if fmt == "xywh":  # x1 + w = x2
        return torch.stack([a, b, a + c, b + d], -1)
    if fmt == "cxcywh":  # cx -+ w / 2
        return torch.stack([a - 0.5 * c, b - 0.5 * d, a + 0.5 * c, b + 0.5 * d], -1)
    return boxes


def _from_xyxy(boxes: torch.Tensor, fmt: str) -> torch.Tensor:
    x1, y1, x2, y2 = boxes.unbind(-1)
    if fmt == "xywh":
        return torch.stack([x1, y1, x2 - x1, y2 - y1], -1)
    if fmt == "cxcywh":
        return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], -1)
    return boxes


def box_convert(boxes: torch.Tensor, in_fmt: str, out_fmt: str) -> torch.Tensor:
    """``(..., 4)`` boxes from ``in_fmt`` to ``out_fmt``, each one of ``xyxy`` (corners),
    ``xywh`` (top-left corner, width, height) or ``cxcywh`` (centre, width, height)::

        xywh -> xyxy:    (x, y, x + w, y + h)
        cxcywh -> xyxy:  (cx - w/2, cy - h/2, cx + w/2, cy + h/2)
    """
    one_of("in_fmt", in_fmt, BOX_FORMATS)
    one_of("out_fmt", out_fmt, BOX_FORMATS)
    if boxes.shape[-1] != 4:
        raise ValueError(f"boxes must have 4 numbers in their last dimension, got shape {tuple(boxes.shape)}")
    if in_fmt == out_fmt:
        return boxes.clone()
    return _from_xyxy(_to_xyxy(boxes, in_fmt), out_fmt)


# --- overlap ---------------------------------------------------------------------------------------

def generalized_box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(N, 4)``, ``(M, 4)`` xyxy -> ``(N, M)`` generalized IoU (Rezatofighi et al. 2019,
    arXiv:1902.09630, Alg. 1)::

        GIoU = IoU - |C \\ (A ∪ B)| / |C| = IoU - (|C| - |A ∪ B|) / |C|

    with ``C`` the smallest box enclosing ``A`` and ``B``. It lies in (-1, 1]: unlike IoU it keeps
    falling as disjoint boxes move apart, so ``1 - GIoU`` is a loss with a gradient everywhere.
    Where ``C`` is empty (two identical degenerate boxes) the value is 0, not NaN.
    """
    _check_boxes("a", a), _check_boxes("b", b)
    if not a.is_floating_point():
        a, b = a.float(), b.float()
    inter = box_intersection(a, b)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    tiny = torch.finfo(inter.dtype).tiny
    iou = torch.where(union > 0, inter / union.clamp(min=tiny), torch.zeros_like(inter))
    top_left = torch.minimum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.maximum(a[:, None, 2:], b[None, :, 2:])
    size = (bottom_right - top_left).clamp(min=0)
    enclosing = size[..., 0] * size[..., 1]
    penalty = torch.where(enclosing > 0, (enclosing - union) / enclosing.clamp(min=tiny), torch.zeros_like(inter))
    return iou - penalty


# --- cleaning --------------------------------------------------------------------------------------

def clip_boxes(boxes: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Boxes clipped to an image of ``size = (height, width)``: x into [0, width], y into
    [0, height] (pixel edges, so a box may end exactly at ``width``)."""
    if len(size) != 2:
        raise ValueError(f"size must be (height, width), got {size!r}")
    height, width = size
    x = boxes[..., 0::2].clamp(min=0, max=width)
    y = boxes[..., 1::2].clamp(min=0, max=height)
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], -1)


def remove_small_boxes(boxes: torch.Tensor, min_size: float) -> torch.Tensor:
    """Indices (int64, increasing) of the boxes whose width and height are both ``>= min_size``
    (py-faster-rcnn's ``_filter_boxes``, there with RPN's ``min_size = 16`` image pixels)."""
    _check_boxes("boxes", boxes)
    non_negative("min_size", min_size)
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return torch.where((width >= min_size) & (height >= min_size))[0]


# --- non-maximum suppression -----------------------------------------------------------------------

def _iou_above(a: torch.Tensor, b: torch.Tensor, threshold: float) -> torch.Tensor:
    """``(N, M)`` bool: ``IoU(a_i, b_j) > threshold``, with the arithmetic of torchvision's NMS kernel
    (``inter / (area_i + area_j - inter)``, areas unclamped, so 0 / 0 is NaN and suppresses nothing).
    Written coordinate by coordinate with in-place steps: NMS spends its time here."""
    x1 = torch.maximum(a[:, None, 0], b[None, :, 0])
    width = torch.minimum(a[:, None, 2], b[None, :, 2]).sub_(x1).clamp_(min=0)
    y1 = torch.maximum(a[:, None, 1], b[None, :, 1])
    height = torch.minimum(a[:, None, 3], b[None, :, 3]).sub_(y1).clamp_(min=0)
    inter = width.mul_(height)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = (area_a[:, None] + area_b[None, :]).sub_(inter)
    return inter.div_(union) > threshold


def _greedy_pass(alive: torch.Tensor, over: torch.Tensor) -> torch.Tensor:
    """The greedy pass inside one block of boxes sorted by score: ``alive[i]`` says box ``i`` is not
    suppressed by an earlier block, ``over[i, j]`` (``j > i`` only) that box ``i`` suppresses ``j``.
    Visit the boxes in order; each survivor removes the boxes it overlaps."""
    alive = alive.cpu().numpy().copy()
    over = over.cpu().numpy()
    for i in range(len(alive)):
        if alive[i]:
            alive &= ~over[i]
    return torch.from_numpy(alive)


def _nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor | None, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS over boxes sorted by decreasing score (stable: equal scores keep their input
    order, as torchvision's CPU kernel does); boxes of different ``idxs`` never suppress each other.

    With ``idxs`` the boxes are visited class by class (by score within a class), so that a block
    need only be compared with the kept boxes of its first class — earlier blocks hold no later
    class — and the survivors are put back in the order of their scores at the end."""
    _check_boxes("boxes", boxes)
    if scores.dim() != 1 or scores.shape[0] != boxes.shape[0]:
        raise ValueError(f"scores must be ({boxes.shape[0]},) to match the boxes, got {tuple(scores.shape)}")
    if idxs is not None and (idxs.dim() != 1 or idxs.shape[0] != boxes.shape[0]):
        raise ValueError(f"idxs must be ({boxes.shape[0]},) to match the boxes, got {tuple(idxs.shape)}")
    by_score = torch.sort(scores, descending=True, stable=True).indices
    order = by_score if idxs is None else by_score[torch.sort(idxs[by_score], stable=True).indices]
    boxes = boxes[order] if boxes.is_floating_point() else boxes[order].float()
    classes = idxs[order] if idxs is not None else None
    kept: list[torch.Tensor] = []  # positions in `order`, one tensor per block
    for start in range(0, len(order), _NMS_BLOCK):
        block = slice(start, start + _NMS_BLOCK)
        alive = torch.ones(len(order[block]), dtype=torch.bool)
        earlier = torch.cat(kept) if kept else order[:0]
        if classes is not None:
            earlier = earlier[classes[earlier] == classes[start]]
        if earlier.numel():  # suppressed by a box kept in an earlier block?
            over = _iou_above(boxes[block], boxes[earlier], iou_threshold)
            if classes is not None:
                over &= classes[block, None] == classes[None, earlier]
            alive = ~over.any(1).cpu()
        over = _iou_above(boxes[block], boxes[block], iou_threshold).triu_(1)
        if classes is not None:
            over &= classes[block, None] == classes[None, block]
        survivors = torch.where(_greedy_pass(alive, over))[0] + start
        kept.append(survivors.to(order.device))
    if not kept:
        return torch.zeros(0, dtype=torch.int64, device=order.device)
    survivors = order[torch.cat(kept)]
    if idxs is None:
        return survivors
    is_kept = torch.zeros(len(order), dtype=torch.bool, device=order.device)
    is_kept[survivors] = True
    return by_score[is_kept[by_score]]


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression: indices (int64) of the boxes kept, by decreasing score.

    Sort the boxes by score (equal scores in input order); going down the list, keep a box unless
    a kept box overlaps it with ``IoU > iou_threshold`` (strictly greater, as torchvision.ops.nms).
    The IoUs are computed a block of 256 boxes at a time, as whole matrices against the block itself
    and against the boxes kept so far; only the greedy walk through a block's boolean matrix is a
    Python loop. Measured on 2 CPU threads: 1.0-1.5 times torchvision's C++ kernel for 1,000-6,000
    boxes, about 0.4 ms of overhead for a hundred.
    """
    return _nms(boxes, scores, None, iou_threshold)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """NMS done independently per category ``idxs`` (e.g. class labels, or image index):
    indices (int64) of the boxes kept, by decreasing score over all categories.

    Neither a loop over classes nor torchvision's coordinate-offset trick (shifting each class's
    boxes by ``idx * (max coordinate + 1)`` so classes cannot overlap, which rounds the coordinates
    of far-off classes in float32): the one greedy pass of :func:`nms` runs with the suppression
    matrix ``IoU > threshold`` masked by ``idxs[i] == idxs[j]``, with the boxes visited class by
    class so that no IoU across classes is computed beyond one block. A box therefore only
    suppresses boxes of its own category, exactly as separate per-class runs would; the result is
    ordered by score, equal scores by index (as torchvision's CPU result up to 1,000 boxes; above
    that torchvision sorts with an unstable sort and equal scores come in any order).
    """
    return _nms(boxes, scores, idxs, iou_threshold)


# --- box code --------------------------------------------------------------------------------------

def _centres(boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(cx, cy, w, h) of xyxy boxes: ``w = x2 - x1``, ``cx = x1 + 0.5 w``."""
    width = boxes[:, 2] - boxes[:, 0]
    height = boxes[:, 3] - boxes[:, 1]
    return boxes[:, 0] + 0.5 * width, boxes[:, 1] + 0.5 * height, width, height


class BoxCoder:
    """R-CNN's box parametrisation (Girshick et al. 2014, arXiv:1311.2524, appendix C) with weights.

    ``encode(gt, p)`` gives the regression targets of ground-truth boxes ``gt`` against proposals
    (or anchors) ``p``::

        tx = wx (gx - px) / pw     ty = wy (gy - py) / ph
        tw = ww log(gw / pw)       th = wh log(gh / ph)

    and ``decode(t, p)`` inverts it: ``gx = tx / wx * pw + px``, ``gw = exp(tw / ww) * pw``, with
    ``tw / ww`` and ``th / wh`` first clamped to at most ``clamp`` = log(1000 / 16), so a wild
    prediction cannot overflow ``exp`` (Detectron's and torchvision's ``bbox_xform_clip``).
    Centres and widths follow torchvision: ``w = x2 - x1``, ``x = x1 + 0.5 w``.
    """

    def __init__(self, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0), clamp: float = math.log(1000.0 / 16)):
        if len(weights) != 4 or any(not isinstance(w, (int, float)) or not w > 0 for w in weights):
            raise ValueError(f"weights must be four positive numbers (wx, wy, ww, wh), got {weights!r}")
        self.weights = tuple(float(w) for w in weights)
        self.clamp = float(clamp)

    def __repr__(self) -> str:
        return f"BoxCoder(weights={self.weights}, clamp={self.clamp:.4f})"

    def encode(self, reference_boxes: torch.Tensor, proposals: torch.Tensor) -> torch.Tensor:
        """``(N, 4)`` targets ``(tx, ty, tw, th)`` of the boxes ``reference_boxes`` (ground truth,
        xyxy) relative to ``proposals`` (xyxy, one per row)."""
        _check_boxes("reference_boxes", reference_boxes), _check_boxes("proposals", proposals)
        if reference_boxes.shape[0] != proposals.shape[0]:
            raise ValueError(f"encode needs one proposal per reference box, got {reference_boxes.shape[0]} "
                             f"reference boxes and {proposals.shape[0]} proposals")
        wx, wy, ww, wh = self.weights
        gx, gy, gw, gh = _centres(reference_boxes)
        px, py, pw, ph = _centres(proposals.to(reference_boxes.dtype))
        return torch.stack([wx * (gx - px) / pw, wy * (gy - py) / ph,
                            ww * torch.log(gw / pw), wh * torch.log(gh / ph)], dim=1)

    def decode(self, deltas: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Boxes (xyxy) from ``deltas`` relative to ``boxes`` (N, 4). ``deltas`` is ``(N, 4)`` or
        ``(N, 4 K)`` (one set of four per class, as a class-specific box head predicts); the result
        has the same shape."""
        _check_boxes("boxes", boxes)
        if deltas.dim() != 2 or deltas.shape[0] != boxes.shape[0] or deltas.shape[1] % 4:
            raise ValueError(f"deltas must be (N, 4 K) with N = {boxes.shape[0]} boxes, got {tuple(deltas.shape)}")
        boxes = boxes.to(deltas.dtype)
        wx, wy, ww, wh = self.weights
        px, py, pw, ph = (v[:, None] for v in _centres(boxes))
        dx, dy = deltas[:, 0::4] / wx, deltas[:, 1::4] / wy
        dw = (deltas[:, 2::4] / ww).clamp(max=self.clamp)
        dh = (deltas[:, 3::4] / wh).clamp(max=self.clamp)
        cx, cy = dx * pw + px, dy * ph + py
        half_w, half_h = 0.5 * torch.exp(dw) * pw, 0.5 * torch.exp(dh) * ph
        decoded = torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=2)
        return decoded.reshape(deltas.shape)
