"""Mean average precision of a detector: the COCO protocol and the two Pascal VOC protocols.

One public function, :func:`mean_average_precision`, taking what torchmetrics'
``MeanAveragePrecision`` takes (one dict per image) and returning its key names.

**Average precision.** Rank a class's detections by score. After the ``n`` best, with ``TP(n)``
of them true positives, precision is ``TP(n) / n`` and recall ``TP(n) / P`` (``P`` positives,
the ground-truth objects that count). AP summarises the precision-recall curve:

* COCO (Lin et al. 2014, arXiv:1405.0312; cocodataset.org/#detection-eval): the precision is
  made monotone, ``p_interp(r) = max_{r' >= r} p(r')``, and averaged over the 101 recall points
  ``0, 0.01, ..., 1`` (``p_interp(r) = 0`` past the largest recall reached). AP is then averaged
  over 10 IoU thresholds ``.50:.05:.95`` and over the classes (``map``); ``map_50``/``map_75`` at
  one threshold; ``map_small``/``medium``/``large`` count only objects of area ``< 32²``,
  ``32²..96²``, ``> 96²``. AR (``mar_1``/``mar_10``/``mar_100``) is the recall reached with at most
  1/10/100 detections per image and class, averaged over thresholds and classes.
* VOC2007 (Everingham et al. 2010, IJCV, Sec. 4.2): the 11-point interpolated AP,
  ``(1/11) sum_{t in {0, .1, ..., 1}} max_{r >= t} p(r)``, at IoU ``>= 0.5`` (``protocol="voc07"``).
* VOC2010+ (the devkit's ``VOCap``): the area under the monotone envelope of the curve, all
  points, ``sum_i (r_{i+1} - r_i) p_interp(r_{i+1})`` (``protocol="voc"``).

**Matching**, per image and class, detections in decreasing score:

* COCO (what ``COCOeval.evaluate`` documents and does): only the ``maxDets[-1]`` best-scored
  detections of each image and class are kept. At each IoU threshold, a detection takes the
  still-unmatched ground truth of highest IoU ``>= t`` (the last of equals), preferring ordinary
  objects to "ignored" ones. Ignored: crowd regions (``iscrowd``; their IoU is
  ``|D ∩ G| / |D|``, and they are never used up) and, for an area range, objects outside it. A
  detection matched to an ignored object is ignored (neither true nor false), and so is an
  unmatched detection outside the area range.
* VOC (the devkit's ``VOCevaldet`` / ``voc_eval.py``): over the whole class and all images,
  detections in decreasing score; each looks at the object of its image with the largest IoU
  (the first of equals). IoU ``>= 0.5`` with a ``difficult`` object: ignored; with an object not
  yet detected: a true positive, and the object is used; otherwise a false positive (a second
  detection of one object included). ``difficult`` objects are not positives.

Ties in score keep input order: images in order, and each image's detections in order, as
pycocotools' ``mergesort`` and MATLAB's stable ``sort`` do.

**Equal to torchmetrics.** The COCO numbers equal torchmetrics' ``MeanAveragePrecision`` with
the pycocotools or faster-coco-eval backend (tested on random cases): its default thresholds are
used (``torch.linspace`` in float32, so 0.55 is ``0.550000011920929``), a box is seen as COCO
stores it (``x, y, w, h`` with ``w = x2 - x1`` in the boxes' dtype) and an object's area is the
``area`` given with the targets where positive, else the box's ``w * h`` (the mask's pixel count
for ``iou_type="segm"``). Where they differ, on purpose:

* ``map`` is taken at the largest ``max_detection_thresholds``; pycocotools looks for exactly
  100 and gives -1 when the list lacks it (faster-coco-eval agrees with us);
* ``iou_type="segm"``: torchmetrics leaves out of the evaluation an image whose targets have no
  mask (so its detections count nowhere) and returns -1 everywhere when no image has a predicted
  mask; here such an image is evaluated like any other (its detections are false positives, as
  with boxes);
* ``map_per_class``, ``mar_*_per_class`` and ``classes`` are always 1-D (torchmetrics squeezes a
  one-element list to a 0-dim tensor).

The VOC devkit counts pixels inclusively (``x2 - x1 + 1``); boxes here are pixel edges (see
:mod:`convatlas.metrics.boxes`), so readers of VOC files convert at load time. ``voc_eval.py``
accepts IoU ``> 0.5``, the MATLAB devkit ``>= 0.5``; we follow the devkit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from convatlas._checks import one_of
from convatlas.metrics.boxes import box_area, box_intersection

__all__ = ["mean_average_precision", "COCO_AREA_RANGES", "coco_iou_thresholds", "coco_recall_thresholds"]

COCO_AREA_RANGES = {"all": (0.0, 1e10), "small": (0.0, 32.0**2), "medium": (32.0**2, 96.0**2), "large": (96.0**2, 1e10)}
"""Area ranges in pixels², both ends included (an area of exactly 32² is small and medium)."""

_EPS = 2.220446049250313e-16  # np.spacing(1): COCO's precision is TP / (FP + TP + eps)
_SCORE_KEYS = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large"]


def coco_iou_thresholds() -> list[float]:
    """``0.50, 0.55, ..., 0.95`` as torchmetrics builds them (float32 ``linspace``)."""
    return torch.linspace(0.5, 0.95, 10).tolist()


def coco_recall_thresholds() -> list[float]:
    """The 101 recall points ``0, 0.01, ..., 1`` as torchmetrics builds them (float32)."""
    return torch.linspace(0.0, 1.0, 101).tolist()


# ---------------------------------------------------------------------------------------------
# Input: checked where it is first seen, then flattened into one table for all images
# ---------------------------------------------------------------------------------------------

@dataclass
class _Flat:
    """All images' detections and ground truths; ``*_image`` says which image each row is in."""

    det_image: torch.Tensor   # (D,) long
    det_label: torch.Tensor   # (D,) long, a class index into ``classes``
    det_score: torch.Tensor   # (D,) float64
    det_area: torch.Tensor    # (D,) float64
    gt_image: torch.Tensor    # (G,) long
    gt_label: torch.Tensor    # (G,) long
    gt_crowd: torch.Tensor    # (G,) bool: COCO's iscrowd
    gt_difficult: torch.Tensor  # (G,) bool: VOC's difficult
    gt_area: torch.Tensor     # (G,) float64
    det_shapes: list[torch.Tensor]  # per image: (D_i, 4) float64 corners, or (D_i, H*W) masks
    gt_shapes: list[torch.Tensor]
    classes: torch.Tensor     # (K,) the distinct labels, sorted


def _tensor(item: dict, key: str, where: str) -> torch.Tensor:
    if key not in item:
        raise ValueError(f"{where} has no {key!r} (it has {', '.join(map(repr, item)) or 'no keys'})")
    value = item[key]
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{where}[{key!r}] must be a torch.Tensor, got {type(value).__name__}")
    return value.detach().cpu()


def _vector(item: dict, key: str, where: str, length: int, kind: str) -> torch.Tensor:
    """A 1-D tensor of ``length`` values; ``kind``: "int" (labels), "float" (scores), "number"
    (areas), "flag" (0/1)."""
    value = _tensor(item, key, where)
    if value.dim() != 1 or value.numel() != length:
        raise ValueError(f"{where}[{key!r}] must hold one value per box ({length}), got shape {tuple(value.shape)}")
    if kind == "int" and (value.is_floating_point() or value.is_complex() or value.dtype == torch.bool):
        raise ValueError(f"{where}[{key!r}] must be integer class labels, got dtype {value.dtype}")
    if kind == "float" and not value.is_floating_point():
        raise ValueError(f"{where}[{key!r}] must be floating-point scores, got dtype {value.dtype}")
    if kind == "number" and (value.is_complex() or value.dtype == torch.bool):
        raise ValueError(f"{where}[{key!r}] must be real numbers, got dtype {value.dtype}")
    if kind in ("float", "number") and not bool(torch.isfinite(value.double()).all()):
        raise ValueError(f"{where}[{key!r}] must be finite, got {value[~torch.isfinite(value.double())][0].item()}")
    if kind == "flag":
        wrong = ~((value == 0) | (value == 1))
        if wrong.any():
            i = int(wrong.nonzero()[0])
            raise ValueError(f"{where}[{key!r}] must hold 0/1 (or bool) flags, got {value[i].item()} at box {i}")
        value = value.bool()
    return value


def _coco_corners(boxes: torch.Tensor) -> torch.Tensor:
    """xyxy -> float64 xyxy as COCO sees a box: ``x, y, w, h`` with ``w = x2 - x1`` computed in
    the boxes' own dtype (torchmetrics' conversion), the far corner then ``x + w`` in float64."""
    if not boxes.is_floating_point():
        boxes = boxes.double()
    xy, wh = boxes[:, :2].double(), (boxes[:, 2:] - boxes[:, :2]).double()
    return torch.cat([xy, xy + wh], dim=1)


def _boxes(item: dict, where: str) -> torch.Tensor:
    boxes = _tensor(item, "boxes", where)
    if boxes.numel() == 0 and boxes.dim() <= 2:
        return torch.zeros(0, 4, dtype=torch.float64)
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{where}['boxes'] must be (N, 4) x1, y1, x2, y2, got shape {tuple(boxes.shape)}")
    if boxes.is_complex() or boxes.dtype == torch.bool:
        raise ValueError(f"{where}['boxes'] must be real numbers, got dtype {boxes.dtype}")
    bad = ~torch.isfinite(boxes.double()).all(1)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise ValueError(f"{where}['boxes'][{i}] is not finite: {boxes[i].tolist()}")
    flipped = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if flipped.any():
        i = int(flipped.nonzero()[0])
        raise ValueError(f"{where}['boxes'][{i}] = {boxes[i].tolist()} has x2 < x1 or y2 < y1; boxes are "
                         "x1, y1, x2, y2 with x2 >= x1 and y2 >= y1 (convert xywh or cxcywh first)")
    return _coco_corners(boxes)


def _masks(item: dict, where: str) -> torch.Tensor:
    masks = _tensor(item, "masks", where)
    if masks.numel() == 0 and masks.dim() != 3:
        return torch.zeros(0, 0, 0, dtype=torch.bool)
    if masks.dim() != 3:
        raise ValueError(f"{where}['masks'] must be (N, H, W) bool, got shape {tuple(masks.shape)}")
    if masks.dtype != torch.bool:
        if masks.is_floating_point() or not bool(((masks == 0) | (masks == 1)).all()):
            raise ValueError(f"{where}['masks'] must be bool (or 0/1 integers), got dtype {masks.dtype}")
        masks = masks.bool()
    return masks


@dataclass
class _Side:
    """One image's detections or ground truths, checked."""

    shapes: torch.Tensor      # (N, 4) float64 corners, or (N, H*W) bool masks
    size: tuple[int, ...]     # the masks' (H, W); () for boxes
    labels: torch.Tensor      # (N,) long
    area: torch.Tensor        # (N,) float64
    scores: torch.Tensor      # (N,) float64 (zeros for ground truth)
    crowd: torch.Tensor       # (N,) bool (False for detections)
    difficult: torch.Tensor   # (N,) bool (False for detections)


def _read_side(item: Any, where: str, iou_type: str, protocol: str, target: bool) -> _Side:
    if not isinstance(item, dict):
        raise ValueError(f"{where} must be a dict, got {type(item).__name__}")
    if iou_type == "bbox":
        shapes, size = _boxes(item, where), ()
        area = box_area(shapes)
    else:
        masks = _masks(item, where)
        shapes, size = masks.flatten(1), tuple(masks.shape[1:])
        area = shapes.sum(1).double()
    n = shapes.shape[0]
    labels = _vector(item, "labels", where, n, "int").long()
    no = torch.zeros(n, dtype=torch.bool)
    if not target:
        return _Side(shapes, size, labels, area, _vector(item, "scores", where, n, "float").double(), no, no)
    crowd = _vector(item, "iscrowd", where, n, "flag") if "iscrowd" in item else no
    difficult = _vector(item, "difficult", where, n, "flag") if "difficult" in item else no
    if "area" in item and protocol == "coco":
        given = _vector(item, "area", where, n, "number").double()
        area = torch.where(given > 0, given, area)  # torchmetrics: a given area wins where positive
    return _Side(shapes, size, labels, area, torch.zeros(n, dtype=torch.float64), crowd, difficult)


def _flatten(preds: Sequence[dict], targets: Sequence[dict], iou_type: str, protocol: str) -> _Flat:
    for name, value in (("preds", preds), ("targets", targets)):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{name} must be a list with one dict per image, got {type(value).__name__}")
    if len(preds) != len(targets):
        raise ValueError(f"preds and targets must have one dict per image each, got {len(preds)} preds "
                         f"and {len(targets)} targets")
    dets, gts = [], []
    for i, (pred, target) in enumerate(zip(preds, targets)):
        dets.append(_read_side(pred, f"preds[{i}]", iou_type, protocol, target=False))
        gts.append(_read_side(target, f"targets[{i}]", iou_type, protocol, target=True))
        sizes = {side.size for side in (dets[-1], gts[-1]) if side.shapes.shape[0]}
        if len(sizes) > 1:
            raise ValueError(f"preds[{i}]['masks'] and targets[{i}]['masks'] must have one size (H, W), "
                             f"got {sorted(sizes)}")
    labels = [side.labels for side in dets + gts]
    classes = torch.cat(labels).unique() if labels else torch.zeros(0, dtype=torch.long)

    def column(sides: list[_Side], name: str) -> torch.Tensor:
        return torch.cat([getattr(side, name) for side in sides]) if sides else torch.zeros(0)

    def image_of(sides: list[_Side]) -> torch.Tensor:
        counts = torch.tensor([side.shapes.shape[0] for side in sides], dtype=torch.long)
        return torch.repeat_interleave(torch.arange(len(sides)), counts)

    def class_index(sides: list[_Side]) -> torch.Tensor:
        return torch.searchsorted(classes, column(sides, "labels").long())

    return _Flat(det_image=image_of(dets), det_label=class_index(dets), det_score=column(dets, "scores").double(),
                 det_area=column(dets, "area").double(), gt_image=image_of(gts), gt_label=class_index(gts),
                 gt_crowd=column(gts, "crowd").bool(), gt_difficult=column(gts, "difficult").bool(),
                 gt_area=column(gts, "area").double(), det_shapes=[side.shapes for side in dets],
                 gt_shapes=[side.shapes for side in gts], classes=classes)


# ---------------------------------------------------------------------------------------------
# IoU within one image
# ---------------------------------------------------------------------------------------------

def _iou_matrix(det: torch.Tensor, gt: torch.Tensor, crowd: torch.Tensor, iou_type: str) -> torch.Tensor:
    """(D, G) IoU of one image's detections and ground truths: ``|D ∩ G| / |D ∪ G|``, and
    ``|D ∩ G| / |D|`` against a crowd region; 0 where the denominator is 0. ``det``/``gt`` are
    float64 xyxy boxes or flattened bool masks."""
    if det.shape[0] == 0 or gt.shape[0] == 0:
        return torch.zeros(det.shape[0], gt.shape[0], dtype=torch.float64)
    if iou_type == "bbox":
        inter = box_intersection(det, gt)
        det_area, gt_area = box_area(det), box_area(gt)
    else:
        exact = torch.float32 if det.shape[1] <= 2**24 else torch.float64  # integer counts stay exact
        inter = (det.to(exact) @ gt.to(exact).T).double()
        det_area, gt_area = det.sum(1).double(), gt.sum(1).double()
    union = det_area[:, None] + gt_area[None, :] - inter
    union = torch.where(crowd[None, :], det_area[:, None].expand_as(union), union)
    return torch.where(union > 0, inter / union.clamp(min=_EPS), torch.zeros_like(inter))


def _image_ious(flat: _Flat, det_rows: torch.Tensor, iou_type: str) -> list[torch.Tensor]:
    """Per image, the IoU of the detections ``det_rows`` (global indices, grouped by image in
    image order) with all the image's ground truths; -1 between different classes, so that
    they never match."""
    edges = torch.arange(len(flat.det_shapes) + 1)
    det_bounds = torch.searchsorted(flat.det_image[det_rows], edges).tolist()
    gt_bounds = torch.searchsorted(flat.gt_image, edges).tolist()
    first_det = torch.searchsorted(flat.det_image, edges).tolist()
    out = []
    for i in range(len(flat.det_shapes)):
        rows = det_rows[det_bounds[i]:det_bounds[i + 1]]
        gts = torch.arange(gt_bounds[i], gt_bounds[i + 1])
        iou = _iou_matrix(flat.det_shapes[i][rows - first_det[i]], flat.gt_shapes[i], flat.gt_crowd[gts], iou_type)
        same = flat.det_label[rows][:, None] == flat.gt_label[gts][None, :]
        out.append(torch.where(same, iou, torch.full_like(iou, -1.0)))
    return out


# ---------------------------------------------------------------------------------------------
# COCO
# ---------------------------------------------------------------------------------------------

def _lexsort(*keys: torch.Tensor) -> torch.Tensor:
    """Indices sorting by ``keys[0]``, then ``keys[1]``, ... (ties keep input order)."""
    order = torch.arange(keys[0].numel())
    for key in reversed(keys):
        order = order[torch.argsort(key[order], stable=True)]
    return order


def _ranks(group: torch.Tensor) -> torch.Tensor:
    """For a sorted group id per row, each row's position inside its group (0, 1, 2, ...)."""
    if group.numel() == 0:
        return group.clone()
    _, counts = torch.unique_consecutive(group, return_counts=True)
    starts = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    return torch.arange(group.numel()) - starts


def _last_best(iou: torch.Tensor, allowed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Along the last dim: the index of the largest ``iou`` where ``allowed`` (the last of equals,
    as COCOeval's ``>=`` update does) and whether there is one."""
    key = torch.where(allowed, iou, torch.full_like(iou, -2.0))
    last = key.shape[-1] - 1 - key.flip(-1).argmax(-1)
    return last, allowed.any(-1)


@dataclass
class _CocoMatches:
    det: torch.Tensor       # (n,) the kept detections (global rows), sorted by image, class, score
    rank: torch.Tensor      # (n,) the position of each among its image's detections of its class
    matched: torch.Tensor   # (T, A, n) bool
    ignored: torch.Tensor   # (T, A, n) bool
    gt_ignored: torch.Tensor  # (A, G) bool


def _outside(area: torch.Tensor) -> torch.Tensor:
    """(N,) areas -> (A, N): whether each lies outside each of COCO's area ranges."""
    ranges = torch.tensor(list(COCO_AREA_RANGES.values()), dtype=torch.float64)
    return (area[None, :] < ranges[:, :1]) | (area[None, :] > ranges[:, 1:])


@dataclass
class _IouRows:
    """All images' IoU matrices in one flat tensor: detection ``k``'s IoU with the ``j``-th
    ground truth of its image is ``values[row_start[k] + j]`` for ``j < gt_count[k]``, and that
    ground truth's global row is ``gt_start[k] + j``."""

    values: torch.Tensor
    row_start: torch.Tensor
    gt_count: torch.Tensor
    gt_start: torch.Tensor

    @classmethod
    def build(cls, flat: _Flat, det: torch.Tensor, iou_type: str) -> "_IouRows":
        ious = _image_ious(flat, det, iou_type)
        per_image = torch.tensor([m.shape[1] for m in ious])
        sizes = torch.tensor([m.numel() for m in ious])
        image = flat.det_image[det]
        row_in_image = _ranks(image)  # det is grouped by image, in the matrices' row order
        return cls(values=torch.cat([m.reshape(-1) for m in ious]),
                   row_start=(torch.cumsum(sizes, 0) - sizes)[image] + row_in_image * per_image[image],
                   gt_count=per_image[image], gt_start=(torch.cumsum(per_image, 0) - per_image)[image])

    def lookup(self, k: torch.Tensor, slots: int, no_gt: int) -> tuple[torch.Tensor, torch.Tensor]:
        """For detections ``k``: (len(k), slots) IoUs (-1 past the image's ground truths) and
        ground-truth rows (``no_gt`` there)."""
        j = torch.arange(slots)
        valid = j[None, :] < self.gt_count[k][:, None]
        iou = torch.where(valid, self.values[torch.where(valid, self.row_start[k][:, None] + j, 0)], -1.0)
        return iou, torch.where(valid, self.gt_start[k][:, None] + j, no_gt)


def _match_step(iou: torch.Tensor, gt_id: torch.Tensor, taken: torch.Tensor, crowd: torch.Tensor,
                ignored: torch.Tensor, thr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One detection per row of ``iou`` (k, S) picks, at every threshold ``thr`` (T, 1, 1, 1) and
    area range, the free ground truth of highest IoU >= the threshold, an ordinary one if any
    fits, else an ignored one (``ignored`` (A, G+1)). Returns (T, A, k): matched, matched to an
    ignored object, and the ground-truth row taken (``G``, the spare slot, where none)."""
    free = ~taken[:, :, gt_id] | crowd[gt_id]  # (T, A, k, S): a crowd region is never used up
    fits = free & (iou >= thr)
    gt_ignored = ignored[:, gt_id]  # (A, k, S)
    best_regular, has_regular = _last_best(iou, fits & ~gt_ignored)
    best_ignored, has_ignored = _last_best(iou, fits & gt_ignored)
    pick = torch.where(has_regular, best_regular, best_ignored)
    hit = has_regular | has_ignored
    chosen = gt_id.expand(*pick.shape, -1).gather(-1, pick[..., None])[..., 0]
    return hit, hit & ~has_regular, torch.where(hit, chosen, taken.shape[-1] - 1)


def _coco_match(flat: _Flat, iou_type: str, thresholds: list[float], max_det: int) -> _CocoMatches:
    """COCOeval.evaluate's greedy matching, for all thresholds and area ranges at once.

    A detection competes only with the detections of its image and class that scored higher,
    so step ``r`` takes the ``r``-th best detection of every (image, class) together and lets
    each pick its ground truth among those still free."""
    order = _lexsort(flat.det_image, flat.det_label, -flat.det_score)
    rank = _ranks((flat.det_image * max(len(flat.classes), 1) + flat.det_label)[order])
    det, rank = order[rank < max_det], rank[rank < max_det]
    gt_ignored = flat.gt_crowd[None, :] | _outside(flat.gt_area)
    t_count, a_count, n, g = len(thresholds), len(COCO_AREA_RANGES), det.numel(), flat.gt_image.numel()
    matched = torch.zeros(t_count, a_count, n, dtype=torch.bool)
    on_ignored = torch.zeros_like(matched)
    if n and g:
        rows = _IouRows.build(flat, det, iou_type)
        slots = int(rows.gt_count.max())
        thr = torch.tensor([min(t, 1 - 1e-10) for t in thresholds], dtype=torch.float64)[:, None, None, None]
        taken = torch.zeros(t_count, a_count, g + 1, dtype=torch.bool)  # slot g: "no match"
        crowd = torch.cat([flat.gt_crowd, torch.zeros(1, dtype=torch.bool)])
        ignored = torch.cat([gt_ignored, torch.zeros(a_count, 1, dtype=torch.bool)], 1)
        chunk = max(1, 2**22 // (t_count * a_count * max(slots, 1)))
        for r in range(int(rank.max()) + 1):
            for k in (rank == r).nonzero().flatten().split(chunk):  # rows of one step never compete
                iou, gt_id = rows.lookup(k, slots, g)
                hit, hit_ignored, chosen = _match_step(iou, gt_id, taken, crowd, ignored, thr)
                matched[:, :, k], on_ignored[:, :, k] = hit, hit_ignored
                taken.scatter_(2, chosen, torch.ones_like(chosen, dtype=torch.bool))
    ignored_det = on_ignored | (~matched & _outside(flat.det_area[det])[None])
    return _CocoMatches(det=det, rank=rank, matched=matched, ignored=ignored_det, gt_ignored=gt_ignored)


def _coco_curves(flat: _Flat, m: _CocoMatches, max_dets: list[int], rec_thresholds: torch.Tensor):
    """COCOeval.accumulate: ``precision`` (T, R, K, A, M) at the recall points and ``recall``
    (T, K, A, M); -1 where a class has no (unignored) ground truth in the area range."""
    t_count, a_count, _ = m.matched.shape
    k_count, r_count, m_count = len(flat.classes), rec_thresholds.numel(), len(max_dets)
    precision = torch.full((t_count, r_count, k_count, a_count, m_count), -1.0, dtype=torch.float64)
    recall = torch.full((t_count, k_count, a_count, m_count), -1.0, dtype=torch.float64)
    within = m.rank[None, :] < torch.tensor(max_dets)[:, None]  # (M, n)
    true_pos = m.matched & ~m.ignored
    false_pos = ~m.matched & ~m.ignored
    label = flat.det_label[m.det]
    for k in range(k_count):
        positives = (~m.gt_ignored[:, flat.gt_label == k]).sum(1).double()  # (A,)
        rows = (label == k).nonzero().flatten()
        rows = rows[torch.argsort(-flat.det_score[m.det[rows]], stable=True)]  # by score over all images
        keep = within[None, None, :, rows]  # (1, 1, M, n_k)
        tp = torch.cumsum((true_pos[:, :, None, rows] & keep).double(), -1)  # (T, A, M, n_k)
        fp = torch.cumsum((false_pos[:, :, None, rows] & keep).double(), -1)
        if rows.numel():
            rc = tp / positives[None, :, None, None]
            pr = tp / (fp + tp + _EPS)
            envelope = pr.flip(-1).cummax(-1).values.flip(-1)
            at = torch.searchsorted(rc.contiguous(), rec_thresholds.expand(*rc.shape[:-1], -1).contiguous())
            q = torch.where(at < rows.numel(), envelope.gather(-1, at.clamp(max=rows.numel() - 1)), 0.0)
            final = rc[..., -1]
        else:
            q = torch.zeros(t_count, a_count, m_count, r_count, dtype=torch.float64)
            final = torch.zeros(t_count, a_count, m_count, dtype=torch.float64)
        defined = (positives > 0)[None, :, None]  # (1, A, 1)
        precision[:, :, k] = torch.where(defined[..., None], q, -1.0).permute(0, 3, 1, 2)
        recall[:, k] = torch.where(defined, final, -1.0)
    return precision, recall


def _mean_defined(values: torch.Tensor) -> float:
    """COCOeval.summarize's mean: over the entries > -1, and -1 when there are none."""
    kept = values[values > -1]
    return float(kept.mean()) if kept.numel() else -1.0


def _coco_summary(precision: torch.Tensor, recall: torch.Tensor, thresholds: list[float],
                  max_dets: list[int], class_metrics: bool) -> dict[str, torch.Tensor]:
    area = {name: i for i, name in enumerate(COCO_AREA_RANGES)}
    last = len(max_dets) - 1
    at = lambda value: [i for i, t in enumerate(thresholds) if t == value]  # COCOeval: exact equality
    out = {
        "map": _mean_defined(precision[:, :, :, 0, last]),
        "map_50": _mean_defined(precision[at(0.5)][:, :, :, 0, last]),
        "map_75": _mean_defined(precision[at(0.75)][:, :, :, 0, last]),
    }
    for name in ("small", "medium", "large"):
        out[f"map_{name}"] = _mean_defined(precision[:, :, :, area[name], last])
    for i, limit in enumerate(max_dets):
        out[f"mar_{limit}"] = _mean_defined(recall[:, :, 0, i])
    for name in ("small", "medium", "large"):
        out[f"mar_{name}"] = _mean_defined(recall[:, :, area[name], last])
    result = {key: torch.tensor(value, dtype=torch.float32) for key, value in out.items()}
    k_count = precision.shape[2]
    per_class_ap = [_mean_defined(precision[:, :, k, 0, last]) for k in range(k_count)] if class_metrics else [-1.0]
    per_class_ar = [_mean_defined(recall[:, k, 0, last]) for k in range(k_count)] if class_metrics else [-1.0]
    result["map_per_class"] = torch.tensor(per_class_ap, dtype=torch.float32)
    result[f"mar_{max_dets[-1]}_per_class"] = torch.tensor(per_class_ar, dtype=torch.float32)
    return result


def _coco_pr_curves(flat: _Flat, m: _CocoMatches, t: int) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Per class with ground truth: recall and precision after each unignored detection, by
    score, at threshold index ``t``, all areas, the largest detection limit."""
    curves = {}
    label = flat.det_label[m.det]
    for k, name in enumerate(flat.classes.tolist()):
        positives = int((~m.gt_ignored[0, flat.gt_label == k]).sum())
        if positives == 0:
            continue
        rows = (label == k).nonzero().flatten()
        rows = rows[torch.argsort(-flat.det_score[m.det[rows]], stable=True)]
        rows = rows[~m.ignored[t, 0, rows]]
        tp = torch.cumsum(m.matched[t, 0, rows].double(), 0)
        seen = torch.arange(1, rows.numel() + 1, dtype=torch.float64)
        curves[name] = (tp / positives, tp / seen)
    return curves


def _coco(flat: _Flat, iou_type: str, thresholds: list[float], max_dets: list[int], class_metrics: bool,
          return_curves: bool) -> dict[str, Any]:
    evaluated = thresholds + ([0.5] if return_curves and 0.5 not in thresholds else [])
    matches = _coco_match(flat, iou_type, evaluated, max_dets[-1])
    if len(evaluated) > len(thresholds):  # 0.5 was added only for the curves
        curves = _coco_pr_curves(flat, matches, len(thresholds))
        matches.matched, matches.ignored = matches.matched[:-1], matches.ignored[:-1]
    elif return_curves:
        curves = _coco_pr_curves(flat, matches, thresholds.index(0.5))
    rec_thresholds = torch.tensor(coco_recall_thresholds(), dtype=torch.float64)
    precision, recall = _coco_curves(flat, matches, max_dets, rec_thresholds)
    result: dict[str, Any] = _coco_summary(precision, recall, thresholds, max_dets, class_metrics)
    result["classes"] = flat.classes.to(torch.int32)
    if return_curves:
        result["curves"] = curves
    return result


# ---------------------------------------------------------------------------------------------
# Pascal VOC
# ---------------------------------------------------------------------------------------------

def _ap_eleven_point(recall: torch.Tensor, precision: torch.Tensor) -> float:
    """VOC2007: ``(1/11) sum_{t = 0, .1, ..., 1} max_{r >= t} p(r)`` (0 where no recall reaches
    ``t``); ``t`` as ``voc_eval.py``'s ``np.arange(0, 1.1, 0.1)`` (``k * 0.1``, so 0.3 is
    0.30000000000000004)."""
    total = 0.0
    for t in (torch.arange(11, dtype=torch.float64) * 0.1).tolist():
        reached = precision[recall >= t]
        total += float(reached.max()) if reached.numel() else 0.0
    return total / 11


def _ap_area(recall: torch.Tensor, precision: torch.Tensor) -> float:
    """VOC2010+: ``sum_i (r_{i+1} - r_i) p_interp(r_{i+1})`` over the curve framed by (0, 0) and
    (1, 0), with ``p_interp(r) = max_{r' >= r} p(r')`` (the devkit's ``VOCap``)."""
    zero = torch.zeros(1, dtype=torch.float64)
    rec = torch.cat([zero, recall, zero + 1])
    prec = torch.cat([zero, precision, zero])
    envelope = prec.flip(0).cummax(0).values.flip(0)
    return float(((rec[1:] - rec[:-1]) * envelope[1:]).sum())


def _best_overlaps(flat: _Flat, iou_type: str) -> tuple[torch.Tensor, torch.Tensor]:
    """For each detection, the largest IoU with an object of its class in its image (-1 where
    there is none) and that object's row (the first of equals, as MATLAB's ``max`` and
    ``np.argmax`` choose)."""
    count = flat.det_image.numel()
    best, best_gt = torch.full((count,), -1.0, dtype=torch.float64), torch.zeros(count, dtype=torch.long)
    ious = _image_ious(flat, torch.arange(count), iou_type)  # rows in input order: grouped by image
    edges = torch.arange(len(ious))
    gt_start, det_start = torch.searchsorted(flat.gt_image, edges), torch.searchsorted(flat.det_image, edges)
    for i, iou in enumerate(ious):
        if iou.numel():
            value, index = iou.max(1)
            rows = slice(int(det_start[i]), int(det_start[i]) + iou.shape[0])
            best[rows], best_gt[rows] = value, index + gt_start[i]
    return best, best_gt


def _voc(flat: _Flat, iou_type: str, eleven_point: bool, class_metrics: bool, return_curves: bool,
         iou_threshold: float = 0.5) -> dict[str, Any]:
    """The devkit's evaluation of every class; ``map`` is the mean over classes with positives."""
    best, best_gt = _best_overlaps(flat, iou_type)
    order = _lexsort(flat.det_label, -flat.det_score)  # by class, then score over all images
    hit = best[order] >= iou_threshold
    difficult = hit & flat.gt_difficult[best_gt[order]]
    claims = hit & ~difficult
    position = torch.arange(order.numel())
    first = torch.full((flat.gt_image.numel() + 1,), order.numel(), dtype=torch.long)
    target = torch.where(claims, best_gt[order], flat.gt_image.numel())
    first.scatter_reduce_(0, target, position, reduce="amin")
    true_pos = claims & (first[target] == position)  # the first claim of an object wins it
    label = flat.det_label[order]
    ap_of = _ap_eleven_point if eleven_point else _ap_area
    per_class, curves = [], {}
    for k, name in enumerate(flat.classes.tolist()):
        positives = int(((flat.gt_label == k) & ~flat.gt_difficult).sum())
        counted = (label == k) & ~difficult
        tp = torch.cumsum(true_pos[counted].double(), 0)
        seen = torch.arange(1, tp.numel() + 1, dtype=torch.float64)
        if positives == 0:
            per_class.append(-1.0)
            continue
        recall, precision = tp / positives, tp / seen
        per_class.append(ap_of(recall, precision))
        curves[name] = (recall, precision)
    defined = [ap for ap in per_class if ap > -1]
    mean = sum(defined) / len(defined) if defined else -1.0
    result: dict[str, Any] = {"map": torch.tensor(mean, dtype=torch.float32),
                              "map_50": torch.tensor(mean, dtype=torch.float32),
                              "map_per_class": torch.tensor(per_class if class_metrics else [-1.0], dtype=torch.float32),
                              "classes": flat.classes.to(torch.int32)}
    if return_curves:
        result["curves"] = curves
    return result


# ---------------------------------------------------------------------------------------------
# The public function
# ---------------------------------------------------------------------------------------------

def _check_thresholds(iou_thresholds: Any, max_detection_thresholds: Any) -> tuple[list[float], list[int]]:
    if iou_thresholds is None:
        thresholds = coco_iou_thresholds()
    else:
        thresholds = list(iou_thresholds) if isinstance(iou_thresholds, (list, tuple)) else None
        if not thresholds or not all(isinstance(t, (int, float)) and not isinstance(t, bool) and 0 <= t <= 1
                                     for t in thresholds):
            raise ValueError(f"iou_thresholds must be a non-empty list of numbers in [0, 1], got {iou_thresholds!r}")
        thresholds = [float(t) for t in thresholds]
    if max_detection_thresholds is None:
        max_dets = [1, 10, 100]
    else:
        max_dets = list(max_detection_thresholds) if isinstance(max_detection_thresholds, (list, tuple)) else None
        if (not max_dets or len(max_dets) != 3
                or not all(isinstance(m, int) and not isinstance(m, bool) and m >= 1 for m in max_dets)):
            raise ValueError("max_detection_thresholds must be a list of 3 positive integers (e.g. [1, 10, 100]), "
                             f"got {max_detection_thresholds!r}")
        max_dets = sorted(max_dets)
    return thresholds, max_dets


def _undefined(max_dets: list[int], protocol: str) -> dict[str, torch.Tensor]:
    minus_one = lambda: torch.tensor(-1.0)
    if protocol != "coco":
        keys = ["map", "map_50", "map_per_class"]
    else:
        keys = _SCORE_KEYS + [f"mar_{m}" for m in max_dets] + ["mar_small", "mar_medium", "mar_large",
                                                               "map_per_class", f"mar_{max_dets[-1]}_per_class"]
    out = {key: minus_one() for key in keys}
    for key in out:
        if key.endswith("per_class"):
            out[key] = torch.tensor([-1.0])
    out["classes"] = torch.zeros(0, dtype=torch.int32)
    return out


def mean_average_precision(preds: Sequence[dict[str, torch.Tensor]], targets: Sequence[dict[str, torch.Tensor]],
                           protocol: str = "coco", iou_type: str = "bbox", class_metrics: bool = False,
                           iou_thresholds: Sequence[float] | None = None,
                           max_detection_thresholds: Sequence[int] | None = None,
                           return_curves: bool = False) -> dict[str, Any]:
    """Mean average precision of detections against ground truth (see the module's formulas).

    ``preds``: one dict per image with ``boxes`` (N, 4) xyxy pixel edges, ``scores`` (N,) and
    ``labels`` (N,) integers (``iou_type="segm"``: ``masks`` (N, H, W) bool instead of boxes).
    ``targets``: one dict per image with ``boxes`` (or ``masks``) and ``labels``, optionally
    ``iscrowd`` (COCO), ``difficult`` (VOC) and ``area`` (COCO; used where positive). Each protocol
    reads its own flag and ignores the other's.

    ``protocol``: ``"coco"`` (mAP@[.5:.95] and the rest), ``"voc07"`` (11-point AP at IoU 0.5)
    or ``"voc"`` (VOC2010+ area AP at IoU 0.5). ``iou_thresholds`` (default .50:.05:.95) and
    ``max_detection_thresholds`` (default [1, 10, 100]) are COCO's.

    Returns 0-dim float32 tensors under torchmetrics' names, -1 where a value is undefined (no
    ground truth to find): COCO ``map``, ``map_50``, ``map_75``, ``map_small``, ``map_medium``,
    ``map_large``, ``mar_1``, ``mar_10``, ``mar_100``, ``mar_small``, ``mar_medium``,
    ``mar_large``; VOC ``map`` (= ``map_50``) and ``map_50``. Both: ``classes`` (the labels seen,
    sorted) and ``map_per_class`` (COCO also ``mar_100_per_class``), per class of ``classes``
    with ``class_metrics`` (else ``[-1]``). ``return_curves`` adds ``curves``:
    ``{label: (recall, precision)}`` after each counted detection in score order, at IoU 0.5,
    for each class with ground truth (not made monotone: the AP comes from their envelope).
    """
    one_of("protocol", protocol, ("coco", "voc07", "voc"))
    one_of("iou_type", iou_type, ("bbox", "segm"))
    for name, flag in (("class_metrics", class_metrics), ("return_curves", return_curves)):
        if not isinstance(flag, bool):
            raise ValueError(f"{name} must be True or False, got {flag!r}")
    if protocol != "coco" and (iou_thresholds is not None or max_detection_thresholds is not None):
        raise ValueError(f"protocol={protocol!r} fixes IoU >= 0.5 and has no detection limit; iou_thresholds and "
                         "max_detection_thresholds are for protocol='coco'")
    thresholds, max_dets = _check_thresholds(iou_thresholds, max_detection_thresholds)
    flat = _flatten(preds, targets, iou_type, protocol)
    if not flat.det_shapes:  # no images at all
        result: dict[str, Any] = _undefined(max_dets, protocol)
        if return_curves:
            result["curves"] = {}
        return result
    if protocol == "coco":
        return _coco(flat, iou_type, thresholds, max_dets, class_metrics, return_curves)
    return _voc(flat, iou_type, protocol == "voc07", class_metrics, return_curves)
