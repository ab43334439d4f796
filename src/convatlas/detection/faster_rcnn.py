"""Faster R-CNN (Ren, He, Girshick, Sun 2015, arXiv:1506.01497): a region proposal network and Fast
R-CNN's detector sharing one backbone, trained jointly.

The parts, as torchvision's ``GeneralizedRCNN`` arranges them and as the notes draw them:

1. ``backbone``: a classification network cut at a feature map (VGG-16's conv5_3, stride 16, 512
   channels, in the paper) - any network of the zoo through its feature contract
   (:func:`~convatlas.models.features.zoo_backbone`);
2. ``rpn``: :class:`~convatlas.detection.rpn.RegionProposalNetwork`, anchors of 3 scales x 3
   ratios scored and refined, the best few hundred kept as proposals;
3. ``roi_heads``: :class:`RoIHeads`, Fast R-CNN (Girshick 2015, arXiv:1504.08083) on those
   proposals - each region pooled to a fixed ``7 x 7`` grid (RoI Pool in the paper, RoI Align as
   an option), two fully connected layers (``fc6``, ``fc7``), then ``cls_score`` (``K + 1``
   classes, softmax) and ``bbox_pred`` (``4 (K + 1)`` class-specific box deltas, weights
   (10, 10, 5, 5)).

**Training the head** (Fast R-CNN Sec. 2.3; py-faster-rcnn's end-to-end config): the ground-truth
boxes join the proposals; a proposal with IoU >= 0.5 with a box is that box's class, one with IoU
in ``[bg_iou_low, 0.5)`` is background (Fast R-CNN: 0.1; the end-to-end Faster R-CNN: 0), and
128 RoIs per image are sampled, a quarter foreground. The loss is the cross-entropy over the
sampled RoIs plus the smooth-L1 loss (beta 1/9) of the foreground RoIs' deltas for their true
class, summed and divided by the number of RoIs: ``L = L_cls + lambda [u >= 1] L_loc`` with
``lambda = 1``.

**At test time** (py-faster-rcnn's ``test_net``): softmax scores, class-specific boxes decoded and
clipped, the background dropped, detections scoring over ``score_thresh`` (0.05) kept, NMS per
class (0.3 in Fast R-CNN's test config; torchvision uses 0.5), the best ``detections_per_img``
(100) returned.

``model(images)`` returns one dict per image, ``{"boxes": (D, 4) xyxy, "scores": (D,), "labels":
(D,)}`` (the format of :func:`convatlas.metrics.mean_average_precision`); in training mode
``model(images, targets)`` (one dict with ``"boxes"`` and ``"labels"`` per image) returns the four
losses ``loss_objectness``, ``loss_rpn_box_reg``, ``loss_classifier``, ``loss_box_reg``. Images are
the normalised float batch; unlike torchvision there is no resizing inside the model - the data
pipeline gives every image its size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from convatlas._checks import non_negative, one_of, positive_int
from convatlas.detection.anchors import AnchorGenerator
from convatlas.detection.boxes import BoxCoder, batched_nms, box_iou, clip_boxes, remove_small_boxes
from convatlas.detection.roi import MultiScaleRoIAlign, RoIPool
from convatlas.detection.rpn import ProposalSettings, RegionProposalNetwork, RPNHead
from convatlas.detection.sampling import BalancedSampler, Matcher
from convatlas.models.features import FeatureExtractor, FeatureInfo, stages_at, zoo_backbone
from convatlas.registry import InputTooSmallError, ModelCard, Published, register_model

__all__ = ["FasterRCNN", "RoIHeads", "TwoMLPHead", "FastRCNNPredictor", "DetectionSettings", "fast_rcnn_loss",
           "check_targets", "check_inputs", "Detector", "roi_pooler", "MiniBackbone", "ROI_POOLS", "build_faster_rcnn", "faster_rcnn_vgg16",
           "faster_rcnn_backbone", "faster_rcnn_fpn_parts", "faster_rcnn_resnet50_fpn", "faster_rcnn_mini", "mini_parts",
           "FPN_PROPOSALS"]

ROI_POOLS = ("pool", "align")


# ---------------------------------------------------------------------------------------------
# The second stage: Fast R-CNN on the proposals


class TwoMLPHead(nn.Module):
    """Flatten the pooled region, then ``fc6`` and ``fc7`` with ReLU (VGG-16's two 4,096-wide
    layers in the paper), each followed by dropout ``p`` in training (VGG's 0.5 in
    py-faster-rcnn; 0 in torchvision's head)."""

    def __init__(self, in_features: int, representation: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc6 = nn.Linear(positive_int("in_features", in_features), positive_int("representation", representation))
        self.fc7 = nn.Linear(representation, representation)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(F.relu(self.fc6(x.flatten(1))))
        return self.dropout(F.relu(self.fc7(x)))


class FastRCNNPredictor(nn.Module):
    """``cls_score`` (``num_classes`` scores, the background included) and ``bbox_pred`` (four
    deltas per class), initialised N(0, 0.01) and N(0, 0.001) with zero biases (Fast R-CNN Sec. 2.2)."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.cls_score = nn.Linear(in_features, positive_int("num_classes", num_classes))
        self.bbox_pred = nn.Linear(in_features, 4 * num_classes)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cls_score(x), self.bbox_pred(x)


@dataclass(frozen=True)
class DetectionSettings:
    """What the second stage returns at test time."""

    score_thresh: float = 0.05  # a detection must score more than this
    nms_thresh: float = 0.3  # per-class NMS (Fast R-CNN's test config; torchvision: 0.5)
    detections_per_img: int = 100
    min_size: float = 1e-2  # boxes narrower than this (pixels) are dropped

    def __post_init__(self) -> None:
        non_negative("score_thresh", self.score_thresh)
        non_negative("nms_thresh", self.nms_thresh)
        positive_int("detections_per_img", self.detections_per_img)
        non_negative("min_size", self.min_size)


def fast_rcnn_loss(class_logits: torch.Tensor, box_regression: torch.Tensor, labels: torch.Tensor,
                   regression_targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fast R-CNN's multitask loss (Sec. 2.3, Eq. 1, lambda = 1): the cross-entropy of ``class_logits``
    ``(R, K + 1)`` against ``labels`` ``(R,)``, and the smooth-L1 loss (beta 1/9) of the deltas
    ``box_regression`` ``(R, 4 (K + 1))`` of each foreground RoI's true class against
    ``regression_targets`` ``(R, 4)``, summed and divided by ``R``."""
    classification = F.cross_entropy(class_logits, labels)
    foreground = torch.where(labels > 0)[0]
    deltas = box_regression.reshape(box_regression.shape[0], -1, 4)[foreground, labels[foreground]]
    box_loss = F.smooth_l1_loss(deltas, regression_targets[foreground], beta=1 / 9, reduction="sum")
    return classification, box_loss / max(labels.numel(), 1)


class RoIHeads(nn.Module):
    """Fast R-CNN's detector on proposals: pool each region, ``box_head`` (fc6, fc7),
    ``box_predictor`` (class scores and class-specific deltas); sampling and the loss in training,
    decoding and per-class NMS at test (see the module docstring).

    ``forward(features, proposals, image_sizes, targets=None)`` returns ``(detections, losses)``:
    one dict per image (empty list in training) and the losses ``loss_classifier`` and
    ``loss_box_reg`` (empty at test).
    """

    def __init__(self, box_roi_pool: nn.Module, box_head: nn.Module, box_predictor: FastRCNNPredictor, *,
                 fg_iou_thresh: float = 0.5, bg_iou_thresh: float = 0.5, bg_iou_low: float = 0.0,
                 batch_size_per_image: int = 128, positive_fraction: float = 0.25,
                 bbox_reg_weights: Sequence[float] = (10.0, 10.0, 5.0, 5.0),
                 detections: DetectionSettings | None = None) -> None:
        super().__init__()
        if not 0 <= bg_iou_low <= bg_iou_thresh:
            raise ValueError(f"bg_iou_low must be in [0, bg_iou_thresh = {bg_iou_thresh}], got {bg_iou_low}")
        self.box_roi_pool = box_roi_pool
        self.box_head = box_head
        self.box_predictor = box_predictor
        self.matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=False)
        self.bg_iou_low = float(bg_iou_low)
        self.sampler = BalancedSampler(batch_size_per_image, positive_fraction)
        self.box_coder = BoxCoder(bbox_reg_weights)
        self.settings = detections or DetectionSettings()

    def select_training_samples(self, proposals: Sequence[torch.Tensor], targets: Sequence[Mapping[str, torch.Tensor]]
                                ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """The sampled RoIs of each image (the ground truth added to its proposals), their class
        labels (0: background) and regression targets, the images' RoIs concatenated."""
        rois, labels, regression, _ = self.sample(proposals, targets)
        return rois, labels, regression

    def sample(self, proposals: Sequence[torch.Tensor], targets: Sequence[Mapping[str, torch.Tensor]]
               ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """:meth:`select_training_samples` and, per image, the index of the ground-truth box each
        sampled RoI is matched to (0 for background RoIs; Mask R-CNN's mask targets need it)."""
        rois, labels, regression = [], [], []
        matched_boxes, matched_index = [], []
        for image_proposals, target in zip(proposals, targets):
            gt_boxes, gt_labels = target["boxes"].to(image_proposals.dtype), target["labels"]
            candidates = torch.cat([image_proposals, gt_boxes])
            if gt_boxes.numel() == 0:
                label = torch.zeros(candidates.shape[0], dtype=torch.int64, device=candidates.device)
                matched = torch.zeros_like(candidates)
                match = torch.zeros_like(label)
            else:
                iou = box_iou(gt_boxes, candidates)
                match = self.matcher(iou)
                label = gt_labels[match.clamp(min=0)].to(torch.int64)
                label[match == -1] = 0
                label[match == -2] = -1
                if self.bg_iou_low > 0:  # Fast R-CNN: background only from IoU 0.1 up
                    label[(match == -1) & (iou.max(0).values < self.bg_iou_low)] = -1
                match = match.clamp(min=0)
                matched = gt_boxes[match]
            rois.append(candidates)
            labels.append(label)
            matched_boxes.append(matched)
            matched_index.append(match)
        positive, negative = self.sampler(labels)
        kept = [torch.where(p | n)[0] for p, n in zip(positive, negative)]
        rois = [r[k] for r, k in zip(rois, kept)]
        labels = torch.cat([lb[k] for lb, k in zip(labels, kept)])
        matched = torch.cat([m[k] for m, k in zip(matched_boxes, kept)])
        regression = self.box_coder.encode(matched, torch.cat(rois))
        return rois, labels, regression, [m[k] for m, k in zip(matched_index, kept)]

    def postprocess(self, class_logits: torch.Tensor, box_regression: torch.Tensor, proposals: Sequence[torch.Tensor],
                    image_sizes: Sequence[Sequence[int]]) -> list[dict[str, torch.Tensor]]:
        """Per image: softmax scores, decoded and clipped class-specific boxes, the background and
        low scores dropped, NMS per class, the best ``detections_per_img``."""
        s = self.settings
        num_classes = class_logits.shape[-1]
        counts = [p.shape[0] for p in proposals]
        boxes = self.box_coder.decode(box_regression, torch.cat(proposals)).view(-1, num_classes, 4)
        scores = F.softmax(class_logits, -1)
        out = []
        for b, sc, size in zip(boxes.split(counts), scores.split(counts), image_sizes):
            b = clip_boxes(b.reshape(-1, 4), size).view(-1, num_classes, 4)
            labels = torch.arange(num_classes, device=b.device).expand_as(sc)
            b, sc, labels = b[:, 1:].reshape(-1, 4), sc[:, 1:].reshape(-1), labels[:, 1:].reshape(-1)
            keep = torch.where(sc > s.score_thresh)[0]
            b, sc, labels = b[keep], sc[keep], labels[keep]
            keep = remove_small_boxes(b, s.min_size)
            b, sc, labels = b[keep], sc[keep], labels[keep]
            keep = batched_nms(b, sc, labels, s.nms_thresh)[:s.detections_per_img]
            out.append({"boxes": b[keep], "scores": sc[keep], "labels": labels[keep]})
        return out

    def forward(self, features: Mapping[str, torch.Tensor], proposals: Sequence[torch.Tensor],
                image_sizes: Sequence[Sequence[int]], targets: Sequence[Mapping[str, torch.Tensor]] | None = None
                ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        if self.training:
            if targets is None:
                raise ValueError("the RoI heads are in training mode and need targets")
            proposals, labels, regression = self.select_training_samples(proposals, targets)
        pooled = self.box_roi_pool(features, proposals, image_sizes)
        class_logits, box_regression = self.box_predictor(self.box_head(pooled))
        if self.training:
            loss_classifier, loss_box_reg = fast_rcnn_loss(class_logits, box_regression, labels, regression)
            return [], {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}
        return self.postprocess(class_logits, box_regression, proposals, image_sizes), {}


# ---------------------------------------------------------------------------------------------
# The detector


def check_targets(targets: Any, n: int, image_size: Sequence[int], num_classes: int) -> None:
    """Raise a ``ValueError`` naming the image and the value unless ``targets`` is one dict per
    image with ``"boxes"`` float ``(M, 4)`` xyxy inside the image (``x1 < x2``, ``y1 < y2``) and
    ``"labels"`` int64 ``(M,)`` in ``1 .. num_classes - 1``."""
    if not isinstance(targets, (list, tuple)) or len(targets) != n:
        got = f"{len(targets)} targets" if isinstance(targets, (list, tuple)) else type(targets).__name__
        raise ValueError(f"targets must be a list of one dict per image ({n}), got {got}")
    h, w = (float(v) for v in image_size)
    for i, t in enumerate(targets):
        if not isinstance(t, Mapping) or "boxes" not in t or "labels" not in t:
            raise ValueError(f"target {i} must be a dict with 'boxes' and 'labels'")
        boxes, labels = t["boxes"], t["labels"]
        if not torch.is_tensor(boxes) or boxes.dim() != 2 or boxes.shape[-1] != 4 or not boxes.is_floating_point():
            raise ValueError(f"target {i}: boxes must be a float (M, 4) xyxy tensor, got "
                             f"{tuple(boxes.shape) if torch.is_tensor(boxes) else type(boxes).__name__}")
        if not torch.is_tensor(labels) or labels.shape != (boxes.shape[0],) or labels.dtype != torch.int64:
            raise ValueError(f"target {i}: labels must be int64 with one per box ({boxes.shape[0]})")
        if boxes.numel():
            bad = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
            outside = (boxes[:, 0] < 0) | (boxes[:, 1] < 0) | (boxes[:, 2] > w) | (boxes[:, 3] > h)
            for name, mask in (("has x2 <= x1 or y2 <= y1", bad), (f"lies outside the {w:g}x{h:g} image", outside)):
                if bool(mask.any()):
                    j = int(torch.where(mask)[0][0])
                    raise ValueError(f"target {i}: box {j} {[round(v, 2) for v in boxes[j].tolist()]} {name}")
            wrong = (labels < 1) | (labels >= num_classes)
            if bool(wrong.any()):
                raise ValueError(f"target {i}: label {int(labels[wrong][0])} is not an object class "
                                 f"(1..{num_classes - 1}; 0 is the background)")


def check_inputs(images: Any, targets: Any, *, training: bool, min_input: int, num_classes: int) -> tuple[int, int, int]:
    """What every detector's ``forward`` checks first: ``images`` a ``(N, C, H, W)`` tensor, each
    side at least ``min_input`` (else :class:`~convatlas.registry.InputTooSmallError`), and in
    training ``targets`` given and valid (:func:`check_targets`). Returns ``(N, H, W)``."""
    if not torch.is_tensor(images) or images.dim() != 4:
        raise ValueError(f"images must be a float (N, C, H, W) batch, got "
                         f"{tuple(images.shape) if torch.is_tensor(images) else type(images).__name__}")
    n, _, h, w = images.shape
    if min(h, w) < min_input:
        raise InputTooSmallError(f"images are {h}x{w}; this detector needs at least {min_input}x{min_input} pixels")
    if training:
        if targets is None:
            raise ValueError("in training mode the detector needs targets: one dict with 'boxes' and 'labels' "
                             "per image (call model.eval() to detect)")
        check_targets(targets, n, (h, w), num_classes)
    return n, h, w


class Detector(nn.Module):
    """What the detectors on a backbone share (Faster R-CNN, RetinaNet, SSD): ``features(images)``,
    the backbone's maps as a dict, finest first (one tensor becomes ``{"0": maps}``)."""

    backbone: nn.Module

    def features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        maps = self.backbone(images)
        return maps if isinstance(maps, Mapping) else {"0": maps}


class FasterRCNN(Detector):
    """``backbone`` -> ``rpn`` -> ``roi_heads`` (see the module docstring).

    ``backbone`` returns a dict of feature maps (a :class:`~convatlas.models.features.FeatureExtractor`)
    or one tensor; the RPN sees them all (one level, or an FPN's), the RoI pool the ones it names.
    ``num_classes`` counts the background; ``min_input`` is the smallest image side the backbone
    takes.
    """

    def __init__(self, backbone: nn.Module, rpn: RegionProposalNetwork, roi_heads: RoIHeads, *,
                 num_classes: int, min_input: int = 1) -> None:
        super().__init__()
        self.backbone = backbone
        self.rpn = rpn
        self.roi_heads = roi_heads
        self.num_classes = positive_int("num_classes", num_classes)
        self.min_input = positive_int("min_input", min_input)
        if roi_heads.box_predictor.cls_score.out_features != num_classes:
            raise ValueError(f"the box predictor scores {roi_heads.box_predictor.cls_score.out_features} classes, "
                             f"the detector has {num_classes}")

    def forward(self, images: torch.Tensor, targets: Sequence[Mapping[str, torch.Tensor]] | None = None) -> Any:
        n, h, w = check_inputs(images, targets, training=self.training, min_input=self.min_input,
                               num_classes=self.num_classes)
        image_sizes = [(h, w)] * n
        features = self.features(images)
        proposals, rpn_losses = self.rpn(list(features.values()), (h, w), targets if self.training else None)
        detections, head_losses = self.roi_heads(features, proposals, image_sizes,
                                                 targets if self.training else None)
        if self.training:
            return {**rpn_losses, **head_losses}
        return detections


def roi_pooler(roi_pool: str, stage: str | Sequence[str], output_size: int = 7, sampling_ratio: int = 2) -> nn.Module:
    """The RoI pooling of feature map ``stage`` (or of an FPN's maps, finest first, each region on
    its level): ``"pool"`` (Fast R-CNN's RoI Pool, one map only) or ``"align"`` (RoI Align with
    ``sampling_ratio`` points per bin side)."""
    one_of("roi_pool", roi_pool, ROI_POOLS)
    stages = [stage] if isinstance(stage, str) else list(stage)
    if roi_pool == "pool":
        if len(stages) != 1:
            raise ValueError(f"RoI Pool reads one feature map, got {stages}; use roi_pool='align' on a pyramid")
        return RoIPool(stages, output_size)
    return MultiScaleRoIAlign(stages, output_size, sampling_ratio)


def build_faster_rcnn(backbone: nn.Module, out_channels: int, stage: str | Sequence[str], *, num_classes: int,
                      anchor_sizes: Sequence[float] | Sequence[Sequence[float]], aspect_ratios: Sequence[float],
                      representation: int, roi_pool: str = "pool", objectness: str = "softmax", dropout: float = 0.0,
                      rpn_hidden: int | None = None, rpn_batch_size_per_image: int = 256,
                      proposals: ProposalSettings | None = None, batch_size_per_image: int = 128,
                      positive_fraction: float = 0.25, detections: DetectionSettings | None = None,
                      min_input: int = 1, pool_size: int = 7) -> FasterRCNN:
    """Faster R-CNN from its parts' settings (the builders below fill them in). ``stage``: the map
    the RoI head pools from, or an FPN's maps (then ``anchor_sizes`` holds one tuple per level of
    the backbone's output, the ``"pool"`` level included)."""
    nested = isinstance(anchor_sizes[0], Sequence)
    anchors = AnchorGenerator(tuple(tuple(s) for s in anchor_sizes) if nested else (tuple(anchor_sizes),),
                              tuple(aspect_ratios))
    head = RPNHead(out_channels, anchors.num_anchors_per_location()[0], hidden=rpn_hidden, objectness=objectness)
    rpn = RegionProposalNetwork(anchors, head, batch_size_per_image=rpn_batch_size_per_image, proposals=proposals)
    roi_heads = RoIHeads(roi_pooler(roi_pool, stage, pool_size),
                         TwoMLPHead(out_channels * pool_size * pool_size, representation, dropout),
                         FastRCNNPredictor(representation, num_classes),
                         batch_size_per_image=batch_size_per_image, positive_fraction=positive_fraction,
                         detections=detections)
    return FasterRCNN(backbone, rpn, roi_heads, num_classes=num_classes, min_input=min_input)


# ---------------------------------------------------------------------------------------------
# Registered networks

_PAPER = "Faster R-CNN: Towards Real-Time Object Detection with Region Proposal Networks"
_AUTHORS = "Ren, He, Girshick, Sun"
_IDEA = ("A region proposal network shares the detector's convolutional features, so proposals cost "
         "almost nothing: anchors at 3 scales and 3 ratios are scored and refined, and Fast R-CNN's "
         "RoI-pooled head classifies the best few hundred.")
_VOC = Published(69.9, "VOC 2007 test mAP, VGG-16 trained on VOC 2007 trainval (paper Table 3/4; "
                       "73.2 with 07+12); the reference notes [V: simple-faster-rcnn-pytorch README]")


def _card(**changes: Any) -> ModelCard:
    base = dict(name="faster_rcnn_vgg16", family="faster_rcnn", paper=_PAPER, authors=_AUTHORS, year=2015,
                arxiv="1506.01497", input_size=(3, 600, 1000), dataset="voc", num_classes=21, idea=_IDEA,
                task="detection")
    base.update(changes)
    return ModelCard(**base)


@register_model(_card(
    params=Published(137_078_239, (
        "exact count here of the paper's configuration (py-faster-rcnn VGG16 faster_rcnn_end2end): VGG-16's "
        "13 convolutions 14,714,688 + RPN conv 512*9*512+512 = 2,359,808, cls 512*18+18 = 9,234 (2k softmax "
        "scores), reg 512*36+36 = 18,468 + fc6 25088*4096+4096 = 102,764,544 + fc7 16,781,312 + cls_score "
        "4096*21+21 = 86,037 + bbox_pred 4096*84+84 = 344,148; the reference notes quote about 137M")),
    map=_VOC,
    extra={"min_input": 32, "fps": "5 fps on a K40 (198 ms per image: conv 141, proposals 10, region-wise 47; paper Table 5)"},
    notes="The paper's network: VGG-16 to conv5_3 (stride 16), an RPN of 512 channels with 2k softmax "
          "scores, RoI Pool 7x7, fc6/fc7 of 4,096 with dropout 0.5, 21 VOC classes. Anchors 128, 256, "
          "512 px at ratios 1:2, 1:1, 2:1 (torchvision's zero-centred convention; see "
          "convatlas.detection.anchors for py-faster-rcnn's).",
))
def faster_rcnn_vgg16(*, num_classes: int = 21, roi_pool: str = "pool", objectness: str = "softmax") -> FasterRCNN:
    """Faster R-CNN on VGG-16 as the paper trains it on PASCAL VOC (Ren et al. 2015, arXiv:1506.01497).

    ``roi_pool``: ``"pool"`` (Fast R-CNN's RoI Pool, the paper) or ``"align"`` (Mask R-CNN's RoI
    Align, sampling ratio 2). ``objectness``: ``"softmax"`` (the paper's 2k scores) or
    ``"sigmoid"`` (k logits, torchvision's).
    """
    backbone = zoo_backbone("vgg16", ["conv5"])
    return build_faster_rcnn(backbone, 512, "conv5", num_classes=num_classes, anchor_sizes=(128, 256, 512),
                             aspect_ratios=(0.5, 1.0, 2.0), representation=4096, roi_pool=roi_pool,
                             objectness=objectness, dropout=0.5, min_input=32)


@register_model(_card(
    name="faster_rcnn_backbone",
    input_size=(3, 224, 224),
    dataset="voc",
    notes="Faster R-CNN on any zoo classification network, at the stride it chooses (default 16): the "
          "backbone's last stage at that reduction feeds the RPN and the RoI pool; fc6/fc7 of "
          "``representation`` units. Not a network of the paper: its numbers are not published.",
))
def faster_rcnn_backbone(*, num_classes: int = 21, backbone: str = "resnet50", stride: int = 16,
                         roi_pool: str = "align", representation: int = 1024,
                         objectness: str = "sigmoid", fpn: bool = False) -> FasterRCNN:
    """Faster R-CNN (Ren et al. 2015) on any registered classification network ``backbone`` whose
    ``feature_info`` has a stage at reduction ``stride`` (ResNet-50: layer3 at 16, as in the
    paper's ResNet experiments of He et al. 2016). ``roi_pool``: ``"align"`` or ``"pool"``;
    ``representation``: the width of fc6 and fc7 (torchvision's TwoMLPHead: 1,024).

    ``fpn=True``: a feature pyramid (Lin et al. 2017) on the backbone's stages at strides 4, 8,
    16 and 32 instead of one map (``stride`` is then not used; see :func:`faster_rcnn_fpn_parts`)."""
    if fpn:
        return build_faster_rcnn(**faster_rcnn_fpn_parts(backbone), num_classes=num_classes, roi_pool=roi_pool,
                                 representation=representation, objectness=objectness)
    positive_int("stride", stride)
    extractor = zoo_backbone(backbone, lambda info: stages_at(info, [stride], backbone))
    stage = extractor.feature_info[-1].stage
    return build_faster_rcnn(extractor, extractor.out_channels, stage, num_classes=num_classes,
                             anchor_sizes=(128, 256, 512), aspect_ratios=(0.5, 1.0, 2.0),
                             representation=representation, roi_pool=roi_pool, objectness=objectness,
                             min_input=stride * 2)


# torchvision's settings for FPN (Lin et al. Sec. 5: 2,000 proposals per image in training, 1,000 at
# test, 512 RoIs per image; the proposal counts are per level before NMS and per image after)
FPN_PROPOSALS = ProposalSettings(pre_nms_top_n_train=2000, post_nms_top_n_train=2000, pre_nms_top_n_test=1000,
                                 post_nms_top_n_test=1000, nms_thresh=0.7)


def faster_rcnn_fpn_parts(backbone: str, out_channels: int = 256) -> dict[str, Any]:
    """The FPN detector's parts for :func:`build_faster_rcnn`: ``backbone``'s stages at strides 4,
    8, 16, 32 (ResNet's ``C2 .. C5``) under a :class:`~convatlas.detection.fpn.BackboneWithFPN` of
    ``out_channels``, one anchor size per level (32 .. 512 px on P2 .. P6) at ratios 1:2, 1:1, 2:1,
    RoI Align on P2 .. P5 by FPN's Eq. 1, 512 RoIs per image, the proposal counts above."""
    from convatlas.detection.fpn import FPN_ANCHOR_SIZES, BackboneWithFPN

    body = zoo_backbone(backbone, lambda info: stages_at(info, [4, 8, 16, 32], backbone))
    pyramid = BackboneWithFPN(body, [i.channels for i in body.feature_info], out_channels)
    return dict(backbone=pyramid, out_channels=out_channels, stage=["0", "1", "2", "3"],
                anchor_sizes=FPN_ANCHOR_SIZES, aspect_ratios=(0.5, 1.0, 2.0), proposals=FPN_PROPOSALS,
                batch_size_per_image=512, detections=DetectionSettings(nms_thresh=0.5), min_input=64)


@register_model(_card(
    name="faster_rcnn_resnet50_fpn",
    paper="Feature Pyramid Networks for Object Detection",
    authors="Lin, Dollár, Girshick, He, Hariharan, Belongie",
    year=2017,
    arxiv="1612.03144",
    input_size=(3, 800, 800),
    dataset="coco",
    num_classes=91,
    idea="A top-down pathway with lateral connections gives every level of the backbone's pyramid strong "
         "semantics; the RPN and the RoI head then work on the level that fits each object's size.",
    params=Published(41_808_406, (
        "exact count here, equal to torchvision's fasterrcnn_resnet50_fpn built without weights (trainable batch "
        "norm): ResNet-50 to layer4 23,508,032 + FPN laterals (256+512+1024+2048)*256 + 4*256 = 984,064 and "
        "outputs 4*(9*256*256+256) = 2,360,320 + RPN conv 590,080, cls 256*3+3 = 771, reg 256*12+12 = 3,084 + "
        "fc6 12544*1024+1024 = 12,846,080 + fc7 1,049,600 + cls_score 1024*91+91 = 93,275 + bbox_pred "
        "1024*364+364 = 373,100")),
    map=Published(37.0, "COCO val2017 box mAP@[.5:.95] of torchvision's fasterrcnn_resnet50_fpn (its weights' "
                         "meta); the reference notes [C: torchvision 0.29]"),
    extra={"min_input": 64},
    notes="Faster R-CNN on ResNet-50-FPN as torchvision builds it (fasterrcnn_resnet50_fpn): P2-P5 plus the "
          "max-pooled P6 of 256 channels, anchors 32-512 px (one size per level, three ratios), RoI Align 7x7 "
          "by FPN's Eq. 1, fc6/fc7 of 1,024, 91 COCO ids. Here batch norm trains (torchvision freezes it when "
          "it loads ImageNet weights; untrained it builds the same network with trainable batch norm).",
))
def faster_rcnn_resnet50_fpn(*, num_classes: int = 91, roi_pool: str = "align") -> FasterRCNN:
    """Faster R-CNN with a ResNet-50 feature pyramid (Lin et al. 2017, arXiv:1612.03144), the
    configuration torchvision ships as ``fasterrcnn_resnet50_fpn``."""
    return faster_rcnn_backbone(num_classes=num_classes, backbone="resnet50", roi_pool=roi_pool, fpn=True)


class MiniBackbone(nn.Module):
    """A small VGG-like network for the 64x64 digit scenes: ``conv1`` (16), pool, ``conv2`` (32),
    pool, ``conv3``, ``conv4`` (64) and ``conv5`` (64, dilation 2), each 3x3 with batch norm and
    ReLU. Output stride 4 (a 16x16 map of a 64x64 scene, one cell per 4 pixels, fine enough for
    boxes of 8-26 px) and a receptive field of 42 px, the size of the largest digits; the
    dilation widens the view without a third pooling."""

    def __init__(self, in_channels: int = 1, widths: Sequence[int] = (16, 32, 64, 64, 64)) -> None:
        super().__init__()
        positive_int("in_channels", in_channels)
        c1, c2, c3, c4, c5 = (positive_int("widths", w) for w in widths)

        def block(cin: int, cout: int, dilation: int = 1) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False),
                                 nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

        self.conv1 = block(in_channels, c1)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = block(c1, c2)
        self.pool2 = nn.MaxPool2d(2)
        self.conv3 = block(c2, c3)
        self.conv4 = block(c3, c4)
        self.conv5 = block(c4, c5, dilation=2)
        self.feature_info = [FeatureInfo("conv1", "conv1", c1, 1), FeatureInfo("conv2", "conv2", c2, 2),
                             FeatureInfo("conv5", "conv5", c5, 4)]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.conv1(x))
        x = self.pool2(self.conv2(x))
        return self.conv5(self.conv4(self.conv3(x)))


# The mini's settings, chosen for 64x64 scenes of 1-4 digits whose boxes are 8-26 px (sqrt of the
# area, 2nd-98th percentile; median 16.5) and 0.9-2.0 times taller than wide (4 for a "1"):
MINI_ANCHORS = {"anchor_sizes": (10, 16, 26), "aspect_ratios": (1.0, 1.6, 2.6)}  # 3 scales x 3 ratios (h / w)
MINI_PROPOSALS = ProposalSettings(pre_nms_top_n_train=600, post_nms_top_n_train=128, pre_nms_top_n_test=300,
                                  post_nms_top_n_test=50, nms_thresh=0.7)


@register_model(_card(
    name="faster_rcnn_mini",
    input_size=(1, 64, 64),
    dataset="digit-scenes",
    num_classes=11,
    recipe="faster_rcnn_digit_scenes",
    extra={"min_input": 16},
    params=Published(1_020_244, (
        "exact count here: backbone convs 1*9*16 + 16*9*32 + 32*9*64 + 64*9*64 * 2 = 97,920 + BN 2*(16+32+64*3) = 480 "
        "+ RPN conv 64*9*64+64 = 36,928, cls 64*9+9 = 585, reg 64*36+36 = 2,340 + fc6 3136*256+256 = 803,072 + "
        "fc7 65,792 + cls_score 256*11+11 = 2,827 + bbox_pred 256*44+44 = 11,308")),
    notes="A small network, not in the paper: Faster R-CNN's two stages on a five-layer VGG-like backbone "
          "(output stride 4) with the proposal and RoI counts scaled to 64x64 scenes of at most four digits: "
          "600/128 proposals before/after NMS in training, 300/50 at test, 64 RoIs per image, anchors of "
          "10, 16, 26 px at height/width 1, 1.6, 2.6.",
))
def faster_rcnn_mini(*, num_classes: int = 11, in_channels: int = 1, roi_pool: str = "align",
                     objectness: str = "sigmoid") -> FasterRCNN:
    """A small Faster R-CNN for the 64x64 digit scenes (after Ren et al. 2015): :class:`MiniBackbone`
    (stride 4), an RPN of 64 channels over 9 anchors per cell, RoI Align 7x7 (``roi_pool="pool"``:
    RoI Pool), fc6/fc7 of 256.

    Why these settings: torchvision's defaults (2,000 proposals, 512 RoIs per image) are made for
    800-pixel COCO images with dozens of objects, and on 64x64 scenes they spend the step's time in
    the second stage; a scene holds at most four digits, so 128 proposals and 64 RoIs (a quarter of
    them foreground, Fast R-CNN's fraction) cover them, and 50 proposals at test leave room for
    every digit.
    """
    return build_faster_rcnn(**mini_parts(in_channels), num_classes=num_classes, roi_pool=roi_pool,
                             objectness=objectness)


def mini_parts(in_channels: int = 1) -> dict[str, Any]:
    """The settings of :func:`faster_rcnn_mini` for :func:`build_faster_rcnn` (Mask R-CNN's mini
    shares them): the backbone, its 64 channels, the anchors, proposal and RoI counts."""
    backbone = FeatureExtractor(MiniBackbone(in_channels), ["conv5"])
    return dict(backbone=backbone, out_channels=64, stage="conv5", representation=256, proposals=MINI_PROPOSALS,
                batch_size_per_image=64, rpn_batch_size_per_image=256,
                detections=DetectionSettings(score_thresh=0.05, nms_thresh=0.5), min_input=16, **MINI_ANCHORS)
