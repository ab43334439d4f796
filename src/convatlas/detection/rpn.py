"""The region proposal network of Faster R-CNN (Ren, He, Girshick, Sun 2015, arXiv:1506.01497, Sec. 3.1).

"An RPN takes an image (of any size) as input and outputs a set of rectangular object proposals,
each with an objectness score." A small network slides over the backbone's feature map: a 3x3
convolution (512 channels on VGG-16) and ReLU, then two sibling 1x1 convolutions, the *cls* layer
(objectness of each of the ``k`` anchors of a position) and the *reg* layer (``4 k`` box deltas,
:class:`~convatlas.detection.boxes.BoxCoder` with weights 1).

**Objectness.** The paper's cls layer gives ``2 k`` scores, a two-class softmax per anchor;
torchvision's gives ``k`` logits and a sigmoid. The two are one model: a softmax over the logits
``(b, f)`` is ``sigmoid(f - b)``, and its cross-entropy is the binary cross-entropy of ``f - b``.
``objectness="softmax"`` builds the paper's layer (and its parameter count), ``"sigmoid"``
torchvision's; both are trained and read through the logit ``f - b`` (or ``f``).

**Training** (Sec. 3.1.2-3.1.3). Each anchor is matched to the ground truth
(:class:`~convatlas.detection.sampling.Matcher`: positive at IoU > 0.7 and the best anchor of each
box, negative below 0.3, the rest ignored); 256 anchors per image are sampled, at most half
positive (:class:`~convatlas.detection.sampling.BalancedSampler`). The loss is the mean binary
cross-entropy over the sampled anchors plus the smooth-L1 loss of the positives' deltas summed
and divided by the number sampled - the paper's ``lambda = 10`` with ``N_reg ~ 2,400`` is, as its
text says, about equal weights (py-faster-rcnn normalises both by the sample, as here). Smooth L1
has ``beta = 1/9`` (py-faster-rcnn's ``rpn_loss_bbox`` sigma 3, ``beta = 1 / sigma^2``).

**Proposals** (Sec. 3.3). The deltas decode the anchors; per feature level the ``pre_nms_top_n``
best by objectness are kept, clipped to the image, boxes narrower than ``min_size`` dropped, then
non-maximum suppression at IoU ``nms_thresh`` (0.7) per level, and the ``post_nms_top_n`` best
(2,000 in training, 300 at test in the paper) are the proposals. Proposals carry no gradient
(approximate joint training, Sec. 3.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from convatlas._checks import non_negative, one_of, positive_int
from convatlas.detection.anchors import AnchorGenerator
from convatlas.detection.boxes import BoxCoder, batched_nms, box_iou, clip_boxes, remove_small_boxes
from convatlas.detection.sampling import BalancedSampler, Matcher

__all__ = ["RPNHead", "RegionProposalNetwork", "ProposalSettings", "OBJECTNESS"]

OBJECTNESS = ("softmax", "sigmoid")


class RPNHead(nn.Module):
    """The sliding network: ``conv`` (3x3, ReLU), then ``cls_logits`` (1x1, ``k`` or ``2 k``
    outputs) and ``bbox_pred`` (1x1, ``4 k``), all initialised from N(0, 0.01) with zero biases
    (Sec. 3.1.3). ``forward(maps)`` returns per map the objectness logits ``(N, k, H, W)`` and the
    deltas ``(N, 4 k, H, W)``; in ``"softmax"`` mode the ``2 k`` scores are read as ``k``
    background then ``k`` object scores (py-faster-rcnn's ``rpn_cls_score`` layout) and the
    logit is their difference."""

    def __init__(self, in_channels: int, num_anchors: int, *, hidden: int | None = None,
                 objectness: str = "sigmoid") -> None:
        super().__init__()
        self.objectness = one_of("objectness", objectness, OBJECTNESS)
        hidden = positive_int("hidden", hidden if hidden is not None else in_channels)
        self.num_anchors = positive_int("num_anchors", num_anchors)
        self.conv = nn.Conv2d(positive_int("in_channels", in_channels), hidden, 3, padding=1)
        scores = num_anchors * (2 if objectness == "softmax" else 1)
        self.cls_logits = nn.Conv2d(hidden, scores, 1)
        self.bbox_pred = nn.Conv2d(hidden, 4 * num_anchors, 1)
        for layer in (self.conv, self.cls_logits, self.bbox_pred):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, maps: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        logits, deltas = [], []
        for fmap in maps:
            t = F.relu(self.conv(fmap))
            score = self.cls_logits(t)
            if self.objectness == "softmax":
                k = self.num_anchors
                score = score[:, k:] - score[:, :k]  # object minus background: the softmax's logit
            logits.append(score)
            deltas.append(self.bbox_pred(t))
        return logits, deltas


def _flatten(logits: list[torch.Tensor], deltas: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-level ``(N, A, H, W)`` logits and ``(N, 4 A, H, W)`` deltas -> ``(N, sum H W A)`` and
    ``(N, sum H W A, 4)``, rows in the anchors' order ``(y W + x) A + a``."""
    flat_logits, flat_deltas = [], []
    for score, delta in zip(logits, deltas):
        n, a, h, w = score.shape
        flat_logits.append(score.permute(0, 2, 3, 1).reshape(n, -1))
        flat_deltas.append(delta.view(n, a, 4, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, 4))
    return torch.cat(flat_logits, 1), torch.cat(flat_deltas, 1)


@dataclass(frozen=True)
class ProposalSettings:
    """How many proposals the RPN keeps, in training and at test (the paper's: 12,000 / 6,000 best
    before NMS, 2,000 / 300 after, NMS at 0.7; py-faster-rcnn's config)."""

    pre_nms_top_n_train: int = 12000
    post_nms_top_n_train: int = 2000
    pre_nms_top_n_test: int = 6000
    post_nms_top_n_test: int = 300
    nms_thresh: float = 0.7
    min_size: float = 1e-3  # boxes narrower than this (pixels) are dropped; py-faster-rcnn: 16 at scale 1
    score_thresh: float = 0.0  # objectness probability a proposal needs

    def __post_init__(self) -> None:
        for name in ("pre_nms_top_n_train", "post_nms_top_n_train", "pre_nms_top_n_test", "post_nms_top_n_test"):
            positive_int(name, getattr(self, name))
        non_negative("nms_thresh", self.nms_thresh)
        non_negative("min_size", self.min_size)
        non_negative("score_thresh", self.score_thresh)


class RegionProposalNetwork(nn.Module):
    """Anchors, the head, the proposals and (in training) the two losses.

    ``forward(maps, image_size, targets=None)``: ``maps`` the backbone's feature maps (one level or
    an FPN's, finest first), ``image_size`` the batch's ``(height, width)``, ``targets`` one dict
    per image with ``"boxes"`` ``(M, 4)`` xyxy. Returns the proposals (one ``(P_i, 4)`` tensor per
    image, best first) and a dict of losses (empty unless training): ``loss_objectness``,
    ``loss_rpn_box_reg``.
    """

    def __init__(self, anchor_generator: AnchorGenerator, head: RPNHead, *,
                 fg_iou_thresh: float = 0.7, bg_iou_thresh: float = 0.3, batch_size_per_image: int = 256,
                 positive_fraction: float = 0.5, proposals: ProposalSettings | None = None) -> None:
        super().__init__()
        if head.num_anchors != anchor_generator.num_anchors_per_location()[0] or \
                len(set(anchor_generator.num_anchors_per_location())) != 1:
            raise ValueError(f"the head scores {head.num_anchors} anchors per position but the anchor generator "
                             f"places {anchor_generator.num_anchors_per_location()} per level; they must agree")
        self.anchor_generator = anchor_generator
        self.head = head
        self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=True)
        self.sampler = BalancedSampler(batch_size_per_image, positive_fraction)
        self.settings = proposals or ProposalSettings()

    def _top_n(self) -> tuple[int, int]:
        s = self.settings
        return (s.pre_nms_top_n_train, s.post_nms_top_n_train) if self.training else \
            (s.pre_nms_top_n_test, s.post_nms_top_n_test)

    def filter_proposals(self, boxes: torch.Tensor, logits: torch.Tensor, image_size: Sequence[int],
                         per_level: Sequence[int]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The proposals of decoded ``boxes`` ``(N, R, 4)`` scored by ``logits`` ``(N, R)``: the best
        ``pre_nms_top_n`` of each level, clipped, small and low boxes dropped, NMS per level, the
        best ``post_nms_top_n`` kept. Returns boxes and objectness probabilities per image."""
        pre, post = self._top_n()
        s = self.settings
        n = logits.shape[0]
        logits = logits.detach()
        level = torch.cat([torch.full((count,), i, dtype=torch.int64, device=logits.device)
                           for i, count in enumerate(per_level)])
        chosen, start = [], 0
        for count in per_level:
            top = logits[:, start:start + count].topk(min(pre, count), dim=1).indices
            chosen.append(top + start)
            start += count
        index = torch.cat(chosen, 1)
        rows = torch.arange(n, device=logits.device)[:, None]
        boxes, logits, level = boxes[rows, index], logits[rows, index], level[index]
        probs = torch.sigmoid(logits).reshape(-1)
        boxes = clip_boxes(boxes.reshape(-1, 4), image_size)
        image = torch.arange(n, device=logits.device).repeat_interleave(index.shape[1])
        group = image * len(per_level) + level.reshape(-1)  # NMS per image and level, all in one call
        keep = remove_small_boxes(boxes, s.min_size)
        keep = keep[probs[keep] >= s.score_thresh]
        boxes, probs, group, image = boxes[keep], probs[keep], group[keep], image[keep]
        keep = batched_nms(boxes, probs, group, s.nms_thresh)  # by decreasing score over all images
        keep = keep[torch.sort(image[keep], stable=True).indices]  # image by image, by score within each
        counts = torch.bincount(image[keep], minlength=n).tolist()
        kept_boxes, kept_scores = [], []
        for chosen in keep.split(counts):
            kept_boxes.append(boxes[chosen[:post]])
            kept_scores.append(probs[chosen[:post]])
        return kept_boxes, kept_scores

    def assign_targets(self, anchors: Sequence[torch.Tensor],
                       gt_boxes: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per image, each anchor's label (1 object, 0 background, -1 ignored) and the box it
        regresses to (its best ground truth; zeros where there is none)."""
        labels, matched = [], []
        for image_anchors, boxes in zip(anchors, gt_boxes):
            if boxes.numel() == 0:
                labels.append(torch.zeros(image_anchors.shape[0], device=image_anchors.device))
                matched.append(torch.zeros_like(image_anchors))
                continue
            match = self.matcher(box_iou(boxes, image_anchors))
            matched.append(boxes[match.clamp(min=0)])
            label = (match >= 0).to(torch.float32)
            label[match == -1] = 0.0  # below the low threshold: background
            label[match == -2] = -1.0  # between the thresholds: left out
            labels.append(label)
        return labels, matched

    def losses(self, logits: torch.Tensor, deltas: torch.Tensor, labels: list[torch.Tensor],
               targets: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Binary cross-entropy over the sampled anchors, smooth L1 (beta 1/9) over the positive
        ones, both divided by the number sampled."""
        positive, negative = self.sampler(labels)
        positive = torch.where(torch.cat(positive))[0]
        sampled = torch.cat([positive, torch.where(torch.cat(negative))[0]])
        logits, deltas = logits.flatten(), deltas.reshape(-1, 4)
        labels_all, targets_all = torch.cat(labels), torch.cat(targets)
        box_loss = F.smooth_l1_loss(deltas[positive], targets_all[positive], beta=1 / 9, reduction="sum")
        return {"loss_objectness": F.binary_cross_entropy_with_logits(logits[sampled], labels_all[sampled]),
                "loss_rpn_box_reg": box_loss / max(sampled.numel(), 1)}

    def forward(self, maps: Sequence[torch.Tensor], image_size: Sequence[int],
                targets: Sequence[dict[str, torch.Tensor]] | None = None
                ) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        maps = list(maps)
        logits_per_level, deltas_per_level = self.head(maps)
        anchors = self.anchor_generator(maps, image_size)
        per_level = [s.shape[1] * s.shape[2] * s.shape[3] for s in logits_per_level]
        logits, deltas = _flatten(logits_per_level, deltas_per_level)
        n = logits.shape[0]
        decoded = self.box_coder.decode(deltas.detach().reshape(-1, 4), torch.cat(anchors)).view(n, -1, 4)
        proposals, _ = self.filter_proposals(decoded, logits, image_size, per_level)
        losses: dict[str, torch.Tensor] = {}
        if self.training:
            if targets is None:
                raise ValueError("the RPN is in training mode and needs targets (one dict with 'boxes' per image)")
            labels, matched = self.assign_targets(anchors, [t["boxes"] for t in targets])
            regression = [self.box_coder.encode(m, a) for m, a in zip(matched, anchors)]
            losses = self.losses(logits, deltas, labels, regression)
        return proposals, losses
