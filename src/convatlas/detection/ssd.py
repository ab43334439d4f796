"""SSD, the single shot multibox detector (Liu, Anguelov, Erhan, Szegedy, Reed, Fu, Berg 2016,
"SSD: Single Shot MultiBox Detector", ECCV 2016, arXiv:1512.02325).

One network, one pass: small 3x3 convolutions on several feature maps of decreasing resolution
predict, for a fixed set of **default boxes** at every position of every map, the scores of all
classes (the background included) and four offsets of the box. Early, fine maps see small objects,
late, coarse ones large objects; no proposals, no resampling of features (Sec. 2.1).

**The network** (Fig. 2, Sec. 3): VGG-16 to ``conv5_3`` with ``pool3`` rounding up (Caffe's ceil
mode, so 300 gives 38x38 at ``conv4_3``), ``pool5`` turned into 3x3 stride 1 pad 1, VGG's fc6 and
fc7 as convolutions - ``fc6`` 3x3 of 1,024 with dilation 6 ("atrous"), ``fc7`` 1x1 of 1,024 - then
the extra layers, each a 1x1 convolution that halves the channels and a 3x3 one (stride 2, or
unpadded at the end). The paper names the source maps ``conv4_3``, ``conv7`` (fc7), ``conv8_2``,
``conv9_2``, ``conv10_2``, ``conv11_2`` (Caffe's ``ssd_pascal.py``: fc7, conv6_2 ... conv9_2);
SSD512 has one more, ``conv12_2`` (a 4x4 convolution). ``conv4_3`` is L2-normalised over its
channels and multiplied by a learned per-channel scale, initialised to 20 (ParseNet, Liu et al.
2015), because its values are much larger than the later maps' (Sec. 3.1, PASCAL VOC2007). Every
source map has two 3x3 heads: ``k (C + 1)`` class scores and ``4 k`` offsets for its ``k`` boxes.

**Default boxes** (Sec. 2.2, "Choosing scales and aspect ratios"): map ``k`` has boxes of scale
``s_k`` at aspect ratios ``a in {1, 2, 1/2, 3, 1/3}`` (width ``s_k sqrt(a)``, height
``s_k / sqrt(a)``) and one more square of scale ``s'_k = sqrt(s_k s_(k+1))``; centred on the
cells, ``((i + 0.5) / |f_k|, (j + 0.5) / |f_k|)``. The paper's formula spreads ``s_k`` from 0.2 to
0.9; the official Caffe code (and the trained models; Sec. 3.1 says so for ``conv4_3``) put
``conv4_3`` at 0.1 and the others at 0.2, 0.37, 0.54, 0.71, 0.88 (the ``min_sizes`` 30, 60, 111,
162, 213, 264 px of a 300 image, the ``max_sizes`` 60, 111, ..., 315), use only ``{1, 2, 1/2}``
on ``conv4_3``, ``conv10_2`` and ``conv11_2``, and place the centres by ``steps`` (8, 16, 32, 64,
100, 300 px) - that is what :func:`ssd300_vgg16` builds: 4, 6, 6, 6, 4, 4 boxes per position,
38^2 4 + 19^2 6 + 10^2 6 + 5^2 6 + 3^2 4 + 4 = **8,732 boxes**. SSD512 (``ssd_pascal_512.py``):
``conv4_3`` at 0.07, then 0.15 ... 0.90, steps 8 ... 512, 24,564 boxes.

**Clipping:** the final ``ssd_pascal.py`` sets ``clip = False``, so the large boxes of the 3x3 and
1x1 maps reach past the image; that is the default here. ssd.pytorch clamps ``(cx, cy, w, h)`` to
[0, 1] and torchvision's ``DefaultBoxGenerator`` clamps ``w`` and ``h`` only: ``clip=True`` is
torchvision's.

**Box code**: offsets of the ground truth from its default box with Caffe's variances (0.1, 0.1,
0.2, 0.2), i.e. :class:`~convatlas.detection.boxes.BoxCoder` weights (10, 10, 5, 5) on
``(cx, cy, w, h)``.

**Matching** (Sec. 2.2, "Matching strategy"): "we begin by matching each ground truth box to the
default box with the best jaccard overlap (as in MultiBox). Unlike MultiBox, we then match default
boxes to any ground truth with jaccard overlap higher than a threshold (0.5)". The first step is
Caffe's greedy bipartite matching (``match_type: PER_PREDICTION`` after ``BIPARTITE``): take the
largest overlap left in the (ground truth, default box) matrix, match that pair, remove its row and
column, repeat - so every ground truth has its own default box even when two objects share a best
one. ssd.pytorch and torchvision (``SSDMatcher``) give each ground truth its argmax default box
instead, the later object winning a shared one (``matching="argmax"``): there an object can be left
with no default box at all. Overlaps ``>= 0.5`` match (torchvision's comparison; the paper says
"higher than").

**Training objective** (Sec. 2.2, Eq. 1): ``L = (L_conf + alpha L_loc) / N`` with ``N`` the number
of matched default boxes in the batch and ``alpha = 1``; ``L_loc`` the smooth L1 loss (beta 1) of
the positives' offsets, ``L_conf`` the softmax cross-entropy of the positives and of the **hard
negatives**: per image, the unmatched default boxes ranked by their confidence loss, the top ``3 x``
(number of positives) kept (at most all of them), the rest left out, "which leads to faster
optimization and a more stable training" (Sec. 2.2, "Hard negative mining"). "If N = 0, we set the
loss to 0": a batch without any object gives zero losses (and zero gradients), as Caffe's
``normalization: VALID`` and torchvision do; an image without objects contributes no negatives.

**At test time** (Sec. 3.7, "Inference time"; Caffe's ``DetectionOutput``): softmax scores, the
offsets decoded and clipped to the image, per class the boxes scoring over 0.01 (at most the best
400, Caffe's ``top_k``), NMS at 0.45 per class, the best 200 per image kept. These are torchvision's
``SSD`` defaults too.

``model(images)`` returns one dict per image, ``{"boxes" xyxy pixels, "scores", "labels"}``; in
training mode ``model(images, targets)`` returns ``loss_classifier`` (``L_conf / N``) and
``loss_box_reg`` (``alpha L_loc / N``). Images are the normalised float batch; there is no resizing
inside the model. ``num_classes`` counts the background (21 for VOC).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from convatlas._checks import non_negative, one_of, positive_int
from convatlas.detection.boxes import BoxCoder, batched_nms, box_iou, clip_boxes
from convatlas.detection.faster_rcnn import Detector, MiniBackbone, check_inputs
from convatlas.models.features import FeatureExtractor, stages_at, zoo_backbone
from convatlas.registry import ModelCard, Published, register_model

__all__ = ["L2Norm", "DefaultBoxes", "ssd_match", "hard_negatives", "ssd_loss", "SSDHead", "SSDSettings", "SSD",
           "VGGBase", "MiniSSDBase", "build_ssd", "from_torchvision", "ssd300_vgg16", "ssd512_vgg16", "ssd_mini",
           "MATCHINGS",
           "SSD300_BOXES", "SSD300_COCO_BOXES", "SSD512_BOXES", "MINI_BOXES"]

MATCHINGS = ("bipartite", "argmax")
BACKGROUND = -1  # a default box matched to no ground truth


# ---------------------------------------------------------------------------------------------
# Default boxes


class DefaultBoxes(nn.Module):
    """The default boxes of SSD's source maps (Sec. 2.2), Caffe's ``PriorBox`` layers together.

    ``scales``: one more than the maps, fractions of the image side: map ``k`` has squares of
    ``scales[k]`` and ``sqrt(scales[k] scales[k + 1])`` (Caffe's ``min_size`` and ``max_size``
    over the image side; torchvision's ``DefaultBoxGenerator(scales=...)`` uses the same list).
    ``aspect_ratios``: per map, the ratios ``a > 1`` beside 1; each gives a box of width
    ``s sqrt(a)``, height ``s / sqrt(a)`` and its transpose (Caffe's ``flip``). ``steps``: per
    map, the distance in pixels between neighbouring centres (Caffe's and torchvision's
    ``steps``); ``None``: the image side over the map side, the paper's ``(i + 0.5) / |f_k|``.
    ``clip``: ``False`` (the official Caffe models) or ``True`` (torchvision: widths and heights
    clamped to at most the image, the centres left alone).

    At each position the boxes come in Caffe's and torchvision's order: the square of ``s_k``, the
    square of ``s'_k``, then for each ratio the wide box and the tall one; positions row by row.
    ``forward(grid_sizes, image_size)`` returns the ``(A, 4)`` xyxy boxes in pixels.
    """

    def __init__(self, scales: Sequence[float], aspect_ratios: Sequence[Sequence[float]],
                 steps: Sequence[float] | None = None, clip: bool = False) -> None:
        super().__init__()
        if len(scales) != len(aspect_ratios) + 1:
            raise ValueError(f"scales needs one more entry than there are maps ({len(aspect_ratios)}: the last "
                             f"gives the final map's second square), got {len(scales)}")
        if any(not s > 0 for s in scales):
            raise ValueError(f"scales are fractions of the image side and must be positive, got {list(scales)}")
        if any(not a >= 1 for ratios in aspect_ratios for a in ratios):
            raise ValueError(f"aspect ratios are given as a >= 1 (each adds a and 1/a), got {list(aspect_ratios)}")
        if steps is not None and len(steps) != len(aspect_ratios):
            raise ValueError(f"steps needs one entry per map ({len(aspect_ratios)}), got {len(steps)}")
        self.scales = tuple(float(s) for s in scales)
        self.aspect_ratios = tuple(tuple(float(a) for a in ratios) for ratios in aspect_ratios)
        self.steps = None if steps is None else tuple(float(s) for s in steps)
        self.clip = bool(clip)
        self._cache: dict[tuple, torch.Tensor] = {}

    def num_boxes_per_location(self) -> list[int]:
        """``2 + 2 len(ratios)`` per map: two squares and a wide and a tall box per ratio."""
        return [2 + 2 * len(r) for r in self.aspect_ratios]

    def shapes(self, k: int) -> torch.Tensor:
        """``(B_k, 2)`` widths and heights (fractions of the image) of map ``k``'s boxes."""
        s, s_next = self.scales[k], self.scales[k + 1]
        pairs = [(s, s), (math.sqrt(s * s_next),) * 2]
        for a in self.aspect_ratios[k]:
            pairs += [(s * math.sqrt(a), s / math.sqrt(a)), (s / math.sqrt(a), s * math.sqrt(a))]
        wh = torch.tensor(pairs, dtype=torch.float64)
        return wh.clamp(max=1.0) if self.clip else wh

    def centred(self, grid_sizes: Sequence[Sequence[int]], image_size: Sequence[int]) -> torch.Tensor:
        """``(A, 4)`` boxes as ``(cx, cy, w, h)`` fractions of the image (float64)."""
        if len(grid_sizes) != len(self.aspect_ratios):
            raise ValueError(f"the default boxes are set for {len(self.aspect_ratios)} maps, got {len(grid_sizes)}")
        h_img, w_img = (float(v) for v in image_size)
        out = []
        for k, (rows, cols) in enumerate(grid_sizes):
            step_y = self.steps[k] / h_img if self.steps else 1.0 / rows
            step_x = self.steps[k] / w_img if self.steps else 1.0 / cols
            cy, cx = torch.meshgrid((torch.arange(rows, dtype=torch.float64) + 0.5) * step_y,
                                    (torch.arange(cols, dtype=torch.float64) + 0.5) * step_x, indexing="ij")
            wh = self.shapes(k)
            centres = torch.stack([cx.reshape(-1), cy.reshape(-1)], -1)[:, None].expand(-1, len(wh), 2)
            out.append(torch.cat([centres, wh[None].expand(rows * cols, -1, 2)], -1).reshape(-1, 4))
        return torch.cat(out)

    def forward(self, grid_sizes: Sequence[Sequence[int]], image_size: Sequence[int],
                device: torch.device | str | None = None) -> torch.Tensor:
        key = (tuple(tuple(int(v) for v in g) for g in grid_sizes), tuple(int(v) for v in image_size), str(device))
        if key not in self._cache:
            c = self.centred(*key[:2])
            h_img, w_img = key[1]
            scale = torch.tensor([w_img, h_img], dtype=torch.float64)
            boxes = torch.cat([(c[:, :2] - 0.5 * c[:, 2:]) * scale, (c[:, :2] + 0.5 * c[:, 2:]) * scale], -1)
            self._cache = {key: boxes.float().to(device)}  # one image size at a time
        return self._cache[key]

    def extra_repr(self) -> str:
        return f"scales={self.scales}, aspect_ratios={self.aspect_ratios}, steps={self.steps}, clip={self.clip}"


# ---------------------------------------------------------------------------------------------
# Matching, hard negative mining, the loss


def ssd_match(iou: torch.Tensor, threshold: float = 0.5, matching: str = "bipartite") -> torch.Tensor:
    """``(A,)`` int64: for each default box (column of ``iou``, ``(G, A)``) the ground truth (row)
    it is matched to, or ``-1`` (background).

    ``"bipartite"`` (the paper, Caffe): first, ``G`` times, the largest overlap left in the matrix
    matches its pair and removes its row and column - each ground truth gets a default box of its
    own; then every unmatched default box whose best overlap is ``>= threshold`` takes that ground
    truth (the first on ties). ``"argmax"`` (ssd.pytorch, torchvision's ``SSDMatcher``): the
    threshold step first, then each ground truth, in order, takes its best default box (the first
    on ties), a later one overwriting an earlier one's.
    """
    one_of("matching", matching, MATCHINGS)
    if iou.dim() != 2:
        raise ValueError(f"iou must be (ground truth, default boxes), got {tuple(iou.shape)}")
    num_gt, num_boxes = iou.shape
    if num_gt == 0 or num_boxes == 0:
        return torch.full((num_boxes,), BACKGROUND, dtype=torch.int64, device=iou.device)
    best, matches = iou.max(dim=0)
    matches = torch.where(best >= threshold, matches, torch.full_like(matches, BACKGROUND))
    if matching == "argmax":
        for gt, box in enumerate(iou.argmax(dim=1).tolist()):
            matches[box] = gt
        return matches
    left = iou.clone()
    for _ in range(min(num_gt, num_boxes)):
        flat = int(left.argmax())
        gt, box = divmod(flat, num_boxes)
        matches[box] = gt
        left[gt, :] = -1.0
        left[:, box] = -1.0
    return matches


def hard_negatives(confidence_loss: torch.Tensor, positive: torch.Tensor, ratio: float = 3.0) -> torch.Tensor:
    """``(N, A)`` bool: per image (row), the ``min(ratio x positives, negatives)`` non-positive
    default boxes of highest ``confidence_loss`` (Sec. 2.2, "Hard negative mining")."""
    non_negative("ratio", ratio)
    if confidence_loss.shape != positive.shape or confidence_loss.dim() != 2:
        raise ValueError(f"confidence_loss {tuple(confidence_loss.shape)} and positive {tuple(positive.shape)} must "
                         f"both be (images, default boxes)")
    count = torch.minimum((ratio * positive.sum(1, keepdim=True)).floor().long(), (~positive).sum(1, keepdim=True))
    chosen = torch.zeros_like(positive)
    most = int(count.max()) if count.numel() else 0
    if most == 0:
        return chosen
    # the `most` hardest of each row (positives ranked last), of which row i keeps its first count[i]
    ranked = confidence_loss.detach().masked_fill(positive, -math.inf)
    hardest = ranked.topk(most, dim=1).indices
    rank = torch.arange(most, device=positive.device).expand_as(hardest)
    return chosen.scatter(1, hardest, rank < count)


def ssd_loss(logits: torch.Tensor, deltas: torch.Tensor, default_boxes: torch.Tensor,
             targets: Sequence[Mapping[str, torch.Tensor]], *, box_coder: BoxCoder, threshold: float = 0.5,
             matching: str = "bipartite", neg_pos_ratio: float = 3.0, alpha: float = 1.0
             ) -> dict[str, torch.Tensor]:
    """SSD's objective (Eq. 1) for head outputs ``logits`` ``(N, A, C)`` and ``deltas`` ``(N, A, 4)``
    against the ``(A, 4)`` xyxy ``default_boxes``: ``loss_classifier = L_conf / N_pos`` (positives
    and hard negatives) and ``loss_box_reg = alpha L_loc / N_pos`` (smooth L1, beta 1, summed over
    the positives' four offsets); both 0 when the batch has no positive."""
    matched = []
    for t in targets:
        boxes = t["boxes"].to(default_boxes.dtype)
        iou = box_iou(boxes, default_boxes) if boxes.numel() else default_boxes.new_zeros(0, len(default_boxes))
        matched.append(ssd_match(iou, threshold, matching))
    matched = torch.stack(matched)
    positive = matched >= 0
    labels = torch.zeros_like(matched)
    image, box = torch.where(positive)
    gt = matched[image, box]
    gt_boxes = torch.cat([t["boxes"] for t in targets]).to(default_boxes.dtype)
    gt_labels = torch.cat([t["labels"] for t in targets])
    first = torch.tensor([0] + [len(t["boxes"]) for t in targets], device=matched.device).cumsum(0)[:-1]
    labels[image, box] = gt_labels[first[image] + gt]
    conf = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none")
    conf = conf.view(labels.shape)
    negative = hard_negatives(conf, positive, neg_pos_ratio)
    num_pos = int(positive.sum())
    if num_pos == 0:  # the paper: "If N = 0, we set the loss to 0"
        zero = logits.sum() * 0 + deltas.sum() * 0  # keeps the graph, so backward() still works
        return {"loss_classifier": zero, "loss_box_reg": zero.clone()}
    regression = box_coder.encode(gt_boxes[first[image] + gt], default_boxes[box])
    loc = F.smooth_l1_loss(deltas[image, box].float(), regression, beta=1.0, reduction="sum")
    return {"loss_classifier": (conf[positive].sum() + conf[negative].sum()) / num_pos,
            "loss_box_reg": alpha * loc / num_pos}


# ---------------------------------------------------------------------------------------------
# The network


class L2Norm(nn.Module):
    """Each position's channel vector divided by its L2 norm, times a learned per-channel scale
    initialised to ``scale`` (ParseNet; SSD's ``conv4_3_norm`` with 20)."""

    def __init__(self, channels: int, scale: float = 20.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((positive_int("channels", channels),), float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) * self.weight.view(1, -1, 1, 1)


class SSDHead(nn.Module):
    """One 3x3 convolution per source map for the class scores (``k (C + 1)`` channels) and one for
    the offsets (``4 k``). ``forward(maps)`` returns ``(N, A, C + 1)`` logits and ``(N, A, 4)``
    offsets, rows in the default boxes' order (position, then box). Xavier-uniform weights, zero
    biases (Caffe's ``xavier`` filler, torchvision's)."""

    def __init__(self, in_channels: Sequence[int], boxes_per_location: Sequence[int], num_classes: int) -> None:
        super().__init__()
        if len(in_channels) != len(boxes_per_location):
            raise ValueError(f"one entry per source map: {len(in_channels)} channel counts, "
                             f"{len(boxes_per_location)} box counts")
        self.num_classes = positive_int("num_classes", num_classes)
        self.conf = nn.ModuleList(nn.Conv2d(positive_int("in_channels", c), k * num_classes, 3, padding=1)
                                  for c, k in zip(in_channels, boxes_per_location))
        self.loc = nn.ModuleList(nn.Conv2d(c, k * 4, 3, padding=1) for c, k in zip(in_channels, boxes_per_location))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    @staticmethod
    def _rows(x: torch.Tensor, columns: int) -> torch.Tensor:
        n, _, h, w = x.shape
        return x.view(n, -1, columns, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, columns)

    def forward(self, maps: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if len(maps) != len(self.conf):
            raise ValueError(f"the head has {len(self.conf)} source maps, got {len(maps)}")
        logits = [self._rows(conv(m), self.num_classes) for conv, m in zip(self.conf, maps)]
        deltas = [self._rows(conv(m), 4) for conv, m in zip(self.loc, maps)]
        return torch.cat(logits, 1), torch.cat(deltas, 1)


@dataclass(frozen=True)
class SSDSettings:
    """Training and test settings (the paper's, Sec. 2.2 and 3; Caffe's ``ssd_pascal.py``)."""

    iou_thresh: float = 0.5  # a default box with IoU >= this with a box is that box's
    matching: str = "bipartite"  # or "argmax" (ssd.pytorch, torchvision)
    neg_pos_ratio: float = 3.0  # hard negatives per positive
    alpha: float = 1.0  # weight of the localisation loss
    score_thresh: float = 0.01
    topk_candidates: int = 400  # per class, before NMS (Caffe's nms top_k)
    nms_thresh: float = 0.45
    detections_per_img: int = 200

    def __post_init__(self) -> None:
        if not 0 <= self.iou_thresh <= 1:
            raise ValueError(f"iou_thresh must be in [0, 1], got {self.iou_thresh}")
        one_of("matching", self.matching, MATCHINGS)
        non_negative("neg_pos_ratio", self.neg_pos_ratio)
        non_negative("alpha", self.alpha)
        non_negative("score_thresh", self.score_thresh)
        non_negative("nms_thresh", self.nms_thresh)
        positive_int("topk_candidates", self.topk_candidates)
        positive_int("detections_per_img", self.detections_per_img)


class SSD(Detector):
    """``backbone`` (an ordered dict of source maps, finest first) -> ``head``, on ``default_boxes``;
    the loss in training, decoding and NMS at test (see the module docstring). ``num_classes``
    counts the background; ``min_input`` is the smallest image side the backbone takes."""

    def __init__(self, backbone: nn.Module, default_boxes: DefaultBoxes, head: SSDHead, *, num_classes: int,
                 settings: SSDSettings | None = None, min_input: int = 1) -> None:
        super().__init__()
        self.backbone = backbone
        self.default_boxes = default_boxes
        self.head = head
        self.num_classes = positive_int("num_classes", num_classes)
        if head.num_classes != num_classes:
            raise ValueError(f"the head scores {head.num_classes} classes, the detector has {num_classes}")
        expected = default_boxes.num_boxes_per_location()
        got = [conv.out_channels // 4 for conv in head.loc]
        if got != expected:
            raise ValueError(f"the head predicts {got} boxes per position, the default boxes are {expected}")
        self.settings = settings or SSDSettings()
        self.box_coder = BoxCoder((10.0, 10.0, 5.0, 5.0))  # Caffe's variances 0.1, 0.1, 0.2, 0.2
        self.min_input = positive_int("min_input", min_input)

    def forward(self, images: torch.Tensor, targets: Sequence[Mapping[str, torch.Tensor]] | None = None) -> Any:
        _, h, w = check_inputs(images, targets, training=self.training, min_input=self.min_input,
                               num_classes=self.num_classes)
        maps = list(self.features(images).values())
        logits, deltas = self.head(maps)
        boxes = self.default_boxes([m.shape[-2:] for m in maps], (h, w), images.device)
        if self.training:
            s = self.settings
            return ssd_loss(logits, deltas, boxes, targets, box_coder=self.box_coder, threshold=s.iou_thresh,
                            matching=s.matching, neg_pos_ratio=s.neg_pos_ratio, alpha=s.alpha)
        return self.postprocess(logits, deltas, boxes, (h, w))

    def dense(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every default box's decoded box, clipped to the image, ``(N, D, 4)``, and its object
        classes' softmax scores ``(N, D, K - 1)``, column ``k`` for label ``k + 1``: what
        :meth:`postprocess` thresholds and suppresses - the static-shaped part of detection (ONNX export)."""
        h, w = images.shape[-2:]
        maps = list(self.features(images).values())
        logits, deltas = self.head(maps)
        default_boxes = self.default_boxes([m.shape[-2:] for m in maps], (h, w), images.device)
        n, d = deltas.shape[:2]
        boxes = self.box_coder.decode(deltas.reshape(n * d, 4), default_boxes.repeat(n, 1))
        return clip_boxes(boxes, (h, w)).view(n, d, 4), F.softmax(logits, dim=-1)[..., 1:]

    def postprocess(self, logits: torch.Tensor, deltas: torch.Tensor, default_boxes: torch.Tensor,
                    image_size: Sequence[int]) -> list[dict[str, torch.Tensor]]:
        """Per image: softmax, offsets decoded and clipped to the image, per class the boxes over
        ``score_thresh`` (the best ``topk_candidates``), NMS per class, the best ``detections_per_img``."""
        s = self.settings
        scores = F.softmax(logits.float(), dim=-1)
        out = []
        for sc, dl in zip(scores, deltas.float()):
            decoded = clip_boxes(self.box_coder.decode(dl, default_boxes), image_size)
            boxes, kept, labels = [], [], []
            for label in range(1, sc.shape[-1]):
                index = torch.where(sc[:, label] > s.score_thresh)[0]
                value, top = sc[index, label].topk(min(s.topk_candidates, len(index)))
                boxes.append(decoded[index[top]])
                kept.append(value)
                labels.append(torch.full_like(top, label))
            b, v, lb = torch.cat(boxes), torch.cat(kept), torch.cat(labels)
            keep = batched_nms(b, v, lb, s.nms_thresh)[:s.detections_per_img]
            out.append({"boxes": b[keep], "scores": v[keep], "labels": lb[keep]})
        return out


def _extra(in_channels: int, middle: int, out: int, *, stride: int = 2, padding: int = 1, kernel: int = 3
           ) -> nn.Sequential:
    """An extra layer of Fig. 2: 1x1 to ``middle`` channels, ReLU, ``kernel`` x ``kernel`` to ``out``, ReLU."""
    return nn.Sequential(nn.Conv2d(in_channels, middle, 1), nn.ReLU(inplace=True),
                         nn.Conv2d(middle, out, kernel, stride=stride, padding=padding), nn.ReLU(inplace=True))


def _ceil_pool3(model: nn.Module) -> None:
    """Caffe's pooling rounds the output size up: VGG's pool3 in ceil mode (75 -> 38 at SSD300)."""
    pools = [m for m in model.features if isinstance(m, nn.MaxPool2d)]
    pools[2].ceil_mode = True


class VGGBase(nn.Module):
    """SSD's base network and extra layers (Fig. 2): the zoo's ``vgg16`` to ``conv5_3`` through the
    backbone contract (pool3 in ceil mode), ``pool5`` 3x3/1/1, ``fc6`` (3x3, dilation 6, 1,024),
    ``fc7`` (1x1, 1,024), then ``extras``. Returns the source maps: ``conv4_3`` L2-normalised
    (``conv4_3_norm``, scale 20), ``fc7`` and the second convolution of each extra layer."""

    def __init__(self, extras: Sequence[tuple[str, nn.Module]]) -> None:
        super().__init__()
        self.body = zoo_backbone("vgg16", ["conv4", "conv5"], prepare=_ceil_pool3)
        self.conv4_3_norm = L2Norm(512, 20.0)
        self.pool5 = nn.MaxPool2d(3, stride=1, padding=1)
        self.fc6 = nn.Conv2d(512, 1024, 3, padding=6, dilation=6)
        self.fc7 = nn.Conv2d(1024, 1024, 1)
        self.extras = nn.ModuleDict(extras)
        for m in [self.fc6, self.fc7, *self.extras.modules()]:
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        self.out_channels = [512, 1024] + [seq[2].out_channels for seq in self.extras.values()]

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        vgg = self.body(x)
        out = OrderedDict(conv4_3=self.conv4_3_norm(vgg["conv4"]))
        y = F.relu(self.fc7(F.relu(self.fc6(self.pool5(vgg["conv5"])))))
        out["fc7"] = y
        for name, layer in self.extras.items():
            y = layer(y)
            out[name] = y
        return out


def _ssd300_extras() -> list[tuple[str, nn.Module]]:
    return [("conv8_2", _extra(1024, 256, 512)), ("conv9_2", _extra(512, 128, 256)),
            ("conv10_2", _extra(256, 128, 256, stride=1, padding=0)),
            ("conv11_2", _extra(256, 128, 256, stride=1, padding=0))]


def _ssd512_extras() -> list[tuple[str, nn.Module]]:
    return [("conv8_2", _extra(1024, 256, 512)), ("conv9_2", _extra(512, 128, 256)),
            ("conv10_2", _extra(256, 128, 256)), ("conv11_2", _extra(256, 128, 256)),
            ("conv12_2", _extra(256, 128, 256, stride=1, padding=1, kernel=4))]


def build_ssd(backbone: nn.Module, in_channels: Sequence[int], *, num_classes: int, scales: Sequence[float],
              aspect_ratios: Sequence[Sequence[float]], steps: Sequence[float] | None = None, clip: bool = False,
              settings: SSDSettings | None = None, min_input: int = 1) -> SSD:
    """SSD from its parts' settings: ``backbone`` returns one map per entry of ``in_channels``; the
    default boxes as :class:`DefaultBoxes` takes them."""
    boxes = DefaultBoxes(scales, aspect_ratios, steps, clip)
    head = SSDHead(in_channels, boxes.num_boxes_per_location(), num_classes)
    return SSD(backbone, boxes, head, num_classes=num_classes, settings=settings, min_input=min_input)


def from_torchvision(model: SSD, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision's ``ssd300_vgg16`` state_dict under this module's names, for
    ``model.load_state_dict`` (``model``: :func:`ssd300_vgg16` with the same ``num_classes``).
    torchvision holds the same tensors in another order - the L2 scale first, then conv1_1 ..
    conv5_3, fc6, fc7, the extras, the class heads, the box heads - so they are matched by position,
    each shape checked."""
    ours = list(model.state_dict())
    body = [k for k in ours if k.startswith("backbone.body.")]
    if len(body) != 26:
        raise ValueError(f"from_torchvision needs an SSD on VGG-16 (26 tensors in its base), got {len(body)}")
    rest = [k for k in ours if not k.startswith("backbone.body.") and k != "backbone.conv4_3_norm.weight"]
    order = ["backbone.conv4_3_norm.weight"] + body + rest
    theirs = list(state_dict)
    if len(theirs) != len(order):
        raise ValueError(f"torchvision's state_dict has {len(theirs)} tensors, this SSD {len(order)}")
    mine = model.state_dict()
    out = {}
    for name, key in zip(order, theirs):
        if tuple(mine[name].shape) != tuple(state_dict[key].shape):
            raise ValueError(f"{key} {tuple(state_dict[key].shape)} does not fit {name} {tuple(mine[name].shape)}: "
                             f"build the SSD with torchvision's number of classes")
        out[name] = state_dict[key]
    return out


# The official Caffe configurations (ssd_pascal.py, ssd_pascal_512.py), as DefaultBoxes takes them
SSD300_BOXES = dict(scales=(0.1, 0.2, 0.37, 0.54, 0.71, 0.88, 1.05),
                    aspect_ratios=((2,), (2, 3), (2, 3), (2, 3), (2,), (2,)), steps=(8, 16, 32, 64, 100, 300))
# ssd_coco.py (the paper's COCO setting, Sec. 3.4: conv4_3 at 0.07, s_min 0.15): torchvision's ssd300_vgg16 boxes
SSD300_COCO_BOXES = dict(scales=(0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05),
                         aspect_ratios=((2,), (2, 3), (2, 3), (2, 3), (2,), (2,)), steps=(8, 16, 32, 64, 100, 300))
SSD512_BOXES = dict(scales=(0.07, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9, 1.05),
                    aspect_ratios=((2,), (2, 3), (2, 3), (2, 3), (2, 3), (2,), (2,)),
                    steps=(8, 16, 32, 64, 128, 256, 512))


# ---------------------------------------------------------------------------------------------
# Registered networks

_PAPER = "SSD: Single Shot MultiBox Detector"
_AUTHORS = "Liu, Anguelov, Erhan, Szegedy, Reed, Fu, Berg"
_IDEA = ("One network, one pass: small convolutional heads on feature maps of several resolutions score every "
         "class and regress offsets for a fixed set of default boxes at every position; matching, hard negative "
         "mining and multi-scale maps make a single-stage detector as accurate as Faster R-CNN and much faster.")


def _card(**changes: Any) -> ModelCard:
    base = dict(name="ssd300_vgg16", family="ssd", paper=_PAPER, authors=_AUTHORS, year=2016, arxiv="1512.02325",
                input_size=(3, 300, 300), dataset="voc", num_classes=21, idea=_IDEA, task="detection")
    base.update(changes)
    return ModelCard(**base)


_SSD300_COUNT = (
    "exact count here of the paper's SSD300 for VOC (21 classes), equal to ssd.pytorch's: VGG-16's 13 convolutions "
    "14,714,688 + conv4_3_norm 512 + fc6 512*9*1024+1024 = 4,719,616 + fc7 1024*1024+1024 = 1,049,600 + extras "
    "conv8 (1024*256+256) + (256*9*512+512) = 1,442,560, conv9 (512*128+128) + (128*9*256+256) = 360,832, conv10 "
    "and conv11 (256*128+128) + 295,168 = 328,064 each + loc heads 3x3 to 4k of 512/1024/512/256/256/256 channels "
    "with k = 4,6,6,6,4,4: 534,648 + conf heads to 21k: 2,806,902; with 91 COCO classes the conf heads are "
    "12,163,242 and the total 35,641,826, torchvision's ssd300_vgg16")


@register_model(_card(
    params=Published(26_285_486, _SSD300_COUNT),
    map=Published(74.3, "VOC2007 test mAP, SSD300 trained on VOC07+12 (paper Table 1; 59 fps on a Titan X, "
                        "batch 8, Table 7); the reference notes [V]"),
    torchvision="ssd300_vgg16",
    extra={"min_input": 268, "fps": "59 fps on a Titan X at batch 8 (paper Table 7; 46 fps at batch 1)",
           "default_boxes": 8732},
    notes="The paper's SSD300: VGG-16 (pool3 ceil mode, pool5 3x3/1, atrous fc6, fc7), conv4_3 L2-normalised "
          "with scale 20, extra layers conv8_2-conv11_2, 8,732 default boxes of the official Caffe scales "
          "(conv4_3 at 0.1, then 0.2-0.88), steps 8-300, unclipped; bipartite matching at IoU 0.5, hard "
          "negatives 3:1, smooth L1; at test 0.01 / NMS 0.45 / top 200. torchvision's ssd300_vgg16 is this "
          "network for 91 COCO ids with the COCO scales 0.07-1.05, clipped boxes and argmax matching "
          "(num_classes=91, boxes='coco', clip=True, matching='argmax'); from_torchvision maps its weights.",
))
def ssd300_vgg16(*, num_classes: int = 21, boxes: str = "voc", clip: bool = False,
                 matching: str = "bipartite") -> SSD:
    """SSD300 on VGG-16 for PASCAL VOC (Liu et al. 2016, arXiv:1512.02325). ``boxes``: the default
    box scales of ``"voc"`` (``ssd_pascal.py``: conv4_3 at 0.1, then 0.2-0.88) or ``"coco"``
    (``ssd_coco.py``, the paper's COCO setting and torchvision's: 0.07, then 0.15-0.87); ``clip``:
    clamp the default boxes' widths and heights to the image (torchvision's) instead of the
    official models' unclipped boxes; ``matching``: ``"bipartite"`` (the paper) or ``"argmax"``
    (torchvision's). ``num_classes=91, boxes="coco", clip=True, matching="argmax"`` is
    torchvision's ``ssd300_vgg16``."""
    config = {"voc": SSD300_BOXES, "coco": SSD300_COCO_BOXES}[one_of("boxes", boxes, ("voc", "coco"))]
    return build_ssd(VGGBase(_ssd300_extras()), [512, 1024, 512, 256, 256, 256], num_classes=num_classes,
                     clip=clip, settings=SSDSettings(matching=matching), min_input=268, **config)


@register_model(_card(
    name="ssd512_vgg16",
    input_size=(3, 512, 512),
    map=Published(76.8, "VOC2007 test mAP, SSD512 trained on VOC07+12 (paper Table 1; the abstract says 76.9); "
                        "the reference notes [V, M]"),
    extra={"min_input": 268, "fps": "19 fps on a Titan X at batch 1, 22 at batch 8 (paper Table 7)",
           "default_boxes": 24564},
    notes="The paper's SSD512: SSD300's network with one more extra layer (conv12_2, a 4x4 convolution), source "
          "maps 64, 32, 16, 8, 4, 2, 1, default boxes of ssd_pascal_512.py (conv4_3 at 0.07, then 0.15-0.90, "
          "steps 8-512): 24,564 boxes.",
))
def ssd512_vgg16(*, num_classes: int = 21, clip: bool = False, matching: str = "bipartite") -> SSD:
    """SSD512 on VGG-16 for PASCAL VOC (Liu et al. 2016): seven source maps, 24,564 default boxes."""
    return build_ssd(VGGBase(_ssd512_extras()), [512, 1024, 512, 256, 256, 256, 256], num_classes=num_classes,
                     clip=clip, settings=SSDSettings(matching=matching), min_input=484, **SSD512_BOXES)


class MiniSSDBase(nn.Module):
    """The mini's source maps: ``body``'s map at stride 4 (:class:`MiniBackbone`'s ``conv5``, or a
    zoo network's stage at reduction 4 through the backbone contract), then two extra layers of
    SSD's kind (1x1 to half, 3x3 stride 2 to ``channels``, each with batch norm and ReLU) at
    strides 8 and 16: 16x16, 8x8 and 4x4 maps of a 64x64 scene."""

    def __init__(self, in_channels: int = 1, backbone: str | None = None, channels: int = 64) -> None:
        super().__init__()
        if backbone is None:
            self.body = FeatureExtractor(MiniBackbone(in_channels), ["conv5"])
        else:
            self.body = zoo_backbone(backbone, lambda info: stages_at(info, [4], backbone))
        width = self.body.out_channels
        channels = positive_int("channels", channels)

        def extra(cin: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, channels // 2, 1, bias=False), nn.BatchNorm2d(channels // 2),
                                 nn.ReLU(inplace=True), nn.Conv2d(channels // 2, channels, 3, stride=2, padding=1,
                                                                  bias=False),
                                 nn.BatchNorm2d(channels), nn.ReLU(inplace=True))

        self.extra1 = extra(width)
        self.extra2 = extra(channels)
        for m in [*self.extra1.modules(), *self.extra2.modules()]:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self.out_channels = [width, channels, channels]

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        c4 = list(self.body(x).values())[-1]
        c8 = self.extra1(c4)
        return OrderedDict(s4=c4, s8=c8, s16=self.extra2(c8))


# 64x64 digit scenes: boxes 8-26 px (sqrt of the area, 2nd-98th percentile; median 16.5), 0.9-2 times
# taller than wide (4 for a "1"). Squares of 8, 14, 24 px (and 10.6, 18.3, 31 between) on the 16x16, 8x8
# and 4x4 maps, ratios 2 and 3 for the tall digits.
MINI_BOXES = dict(scales=(0.125, 0.22, 0.38, 0.6), aspect_ratios=((2, 3), (2, 3), (2, 3)), steps=(4, 8, 16))


@register_model(_card(
    name="ssd_mini",
    input_size=(1, 64, 64),
    dataset="digit-scenes",
    num_classes=11,
    recipe="ssd_digit_scenes",
    extra={"min_input": 16, "default_boxes": 2016},
    notes="A small network, not in the paper: SSD's heads, default boxes, matching, hard negative mining and loss "
          "on faster_rcnn_mini's five-layer backbone (stride 4) and two extra layers of 64 (strides 8, 16); "
          "2,016 default boxes on the 16x16, 8x8 and 4x4 maps of a 64x64 scene (squares of 8, 14, 24 px and "
          "their s' squares, ratios 2 and 3).",
))
def ssd_mini(*, num_classes: int = 11, in_channels: int = 1, backbone: str | None = None,
             matching: str = "bipartite") -> SSD:
    """A small SSD for the 64x64 digit scenes (after Liu et al. 2016); ``backbone``: any registered
    classification network with a stage at reduction 4 instead of :class:`MiniBackbone`.

    Why these default boxes: the digits' boxes are 8-26 px, so three maps cover them - squares of
    8 and 10.6 px on the stride-4 map, 14 and 18.3 px on the stride-8 one, 24 and 31 px on the
    stride-16 one (scales 0.125, 0.22, 0.38, 0.6 of the side; the paper's 0.1-0.9 start at 30 px)
    - and the digits are up to twice (a "1": four times) as tall as wide, which SSD's ratios 2 and
    3 give; their wide boxes stay for SSD's form (torchvision's ``DefaultBoxGenerator`` builds the
    same set). Measured on 1,000 training scenes: 93% of the digits have a default box at IoU >= 0.5
    (three on average), the rest get their best one through the bipartite step."""
    base = MiniSSDBase(in_channels, backbone)
    return build_ssd(base, base.out_channels, num_classes=num_classes, settings=SSDSettings(matching=matching),
                     min_input=16, **MINI_BOXES)
