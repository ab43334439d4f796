"""RetinaNet and the focal loss (Lin, Goyal, Girshick, He, Dollár 2017, "Focal Loss for Dense
Object Detection", arXiv:1708.02002).

A one-stage detector scores some 100k anchors per image, and almost all of them are easy
background: summed, their small cross-entropies swamp the few objects (Sec. 3). The **focal loss**
scales each anchor's cross-entropy down by how well it is already classified::

    FL(p_t) = -alpha_t (1 - p_t)^gamma log(p_t),   p_t = p if y = 1 else 1 - p   (Eq. 5)

with ``alpha_t = alpha`` for positives and ``1 - alpha`` for negatives; ``gamma = 2``,
``alpha = 0.25`` work best (Table 1). With ``gamma = 2`` an example at ``p_t = 0.9`` weighs 100
times less than under cross-entropy, at ``p_t ~ 0.968`` 1,000 times less (Sec. 3.2).
:func:`sigmoid_focal_loss` is it, one sigmoid per class (no softmax, no background class).

**The network** (Sec. 4, Fig. 3):

1. ``backbone``: a feature pyramid on ResNet (:class:`RetinaPyramid`) - FPN's top-down pathway on
   ``C3 .. C5`` gives ``P3 .. P5`` (stride 8 .. 32, 256 channels), ``P6`` is a 3x3 stride-2
   convolution on ``C5`` and ``P7`` a ReLU then a 3x3 stride-2 convolution on ``P6``
   (:class:`LastLevelP6P7`; torchvision's ``retinanet_resnet50_fpn`` takes ``P6`` from ``P5``,
   its v2 and the paper from ``C5``: ``p6_from`` chooses);
2. anchors: 9 per position, areas ``32^2 .. 512^2`` on ``P3 .. P7`` times scales ``2^0, 2^(1/3),
   2^(2/3)`` at ratios 1:2, 1:1, 2:1 (:func:`retina_anchor_sizes`); an anchor with IoU >= 0.5 with
   a box is that box's, one below 0.4 background, the rest ignored; as torchvision (and Detectron),
   each box's best anchors are kept as its positives even below 0.5;
3. ``head`` (:class:`RetinaNetHead`): two subnets shared by every level, each four 3x3
   convolutions of 256 with ReLU, then a 3x3 convolution to ``K A`` class logits (the
   classification subnet) or ``4 A`` box deltas (the box subnet, class-agnostic, weights 1).
   Weights ``N(0, 0.01)``, biases 0, but the last classification layer's bias is
   ``-log((1 - pi) / pi)`` with the prior ``pi = 0.01`` (:func:`prior_bias`): at the start every
   anchor says "object" with probability 0.01, so the background does not blow up the first
   steps' loss (Sec. 4.1, "Initialization").

**Training** (Sec. 4.1): the focal loss summed over all non-ignored anchors of an image, divided
by its number of positive anchors, plus the box loss of the positives (smooth L1 with beta 1/9,
about Detectron's 0.11; torchvision's default is L1, its smooth-L1 option has beta 1: ``box_loss``,
``beta``), divided by the same number; each averaged over the batch's images.

**At test time** (Sec. 4, "Inference"): per level, sigmoid scores over 0.05, the best 1,000
(anchor, class) pairs decoded, the levels merged, NMS at 0.5 per class, the best 100 kept
(torchvision: 300).

``K`` counts the object classes only: a detector for ``num_classes`` (the background included, as
everywhere in convatlas) has ``num_classes - 1`` logits per anchor, the paper's ``K``, and label
``k`` is logit ``k - 1``. torchvision keeps a logit for the background id that never fires.

``model(images)`` returns one dict per image, ``{"boxes", "scores", "labels"}``; in training mode
``model(images, targets)`` returns ``loss_classifier`` (the focal loss) and ``loss_box_reg``.
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
from convatlas.detection.anchors import AnchorGenerator
from convatlas.detection.boxes import BoxCoder, batched_nms, box_iou, clip_boxes
from convatlas.detection.faster_rcnn import Detector, MiniBackbone, check_inputs
from convatlas.detection.fpn import FeaturePyramidNetwork
from convatlas.detection.sampling import BETWEEN_THRESHOLDS, Matcher
from convatlas.models.features import FeatureExtractor, stages_at, zoo_backbone
from convatlas.registry import ModelCard, Published, register_model

__all__ = ["sigmoid_focal_loss", "prior_bias", "LastLevelP6P7", "RetinaPyramid", "RetinaNetHead", "RetinaNet",
           "RetinaSettings", "retina_anchor_sizes", "build_retinanet", "retinanet_resnet50_fpn",
           "retinanet_resnet101_fpn", "retinanet_backbone", "retinanet_backbone_parts", "retinanet_mini",
           "MiniPyramid", "BOX_LOSSES"]

BOX_LOSSES = ("smooth_l1", "l1")


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0,
                       reduction: str = "none") -> torch.Tensor:
    """The focal loss of Eq. 5 for independent binary ``targets`` (0 or 1, any shape of ``logits``):
    ``-alpha_t (1 - p_t)^gamma log p_t`` with ``p = sigmoid(logits)``; ``alpha < 0`` leaves out the
    ``alpha_t`` weighting, ``gamma = 0`` gives the (alpha-weighted) cross-entropy. ``log p_t`` is the
    binary cross-entropy with logits, so it is exact where ``p`` rounds to 0 or 1. ``reduction``:
    ``"none"``, ``"mean"`` or ``"sum"``."""
    one_of("reduction", reduction, ("none", "mean", "sum"))
    non_negative("gamma", gamma)
    if alpha > 1:
        raise ValueError(f"alpha weights the positives and must be in [0, 1] (or negative: no weighting), got {alpha}")
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} must have one shape")
    targets = targets.to(logits.dtype)
    p = torch.sigmoid(logits)
    cross_entropy = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")  # -log p_t
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = cross_entropy * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    if reduction == "mean":
        return loss.mean()
    return loss.sum() if reduction == "sum" else loss


def prior_bias(prior: float = 0.01) -> float:
    """The classification layer's bias that makes every anchor's initial score ``prior``:
    ``b = -log((1 - pi) / pi)`` (Sec. 4.1; -4.595 for pi = 0.01)."""
    if not 0 < prior < 1:
        raise ValueError(f"the prior is a probability in (0, 1), got {prior}")
    return -math.log((1 - prior) / prior)


def retina_anchor_sizes(base_sizes: Sequence[float] = (32, 64, 128, 256, 512), scales: int = 3,
                        truncate: bool = False) -> tuple[tuple[float, ...], ...]:
    """One tuple of anchor sizes per level: each base size times ``2^(i / scales)``, ``i = 0 ..
    scales - 1`` (the paper's 2^0, 2^(1/3), 2^(2/3): 32, 40.3, 50.8 on P3). ``truncate``: to
    integers, as torchvision writes them (32, 40, 50)."""
    positive_int("scales", scales)
    levels = []
    for base in base_sizes:
        sizes = [base * 2 ** (i / scales) for i in range(scales)]
        levels.append(tuple(float(int(s)) if truncate else s for s in sizes))
    return tuple(levels)


class LastLevelP6P7(nn.Module):
    """``P6 = conv3x3/2(x)``, ``P7 = conv3x3/2(ReLU(P6))`` (Sec. 4, "Feature Pyramid Network
    Backbone"), ``x`` being ``C5`` (the paper) or ``P5``. Kaiming-uniform weights (a = 1), zero
    biases, as the FPN's."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.p6 = nn.Conv2d(positive_int("in_channels", in_channels), positive_int("out_channels", out_channels),
                            3, stride=2, padding=1)
        self.p7 = nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1)
        for layer in (self.p6, self.p7):
            nn.init.kaiming_uniform_(layer.weight, a=1)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p6 = self.p6(x)
        return p6, self.p7(F.relu(p6))


class RetinaPyramid(nn.Module):
    """``body`` (a :class:`~convatlas.models.features.FeatureExtractor` of ``C3 .. C5``, finest
    first), an FPN of ``out_channels`` on its maps, then ``P6``, ``P7``: an ordered dict
    ``"0" .. "n-1", "p6", "p7"`` (torchvision's names). ``p6_from``: ``"c5"`` (the paper; the last
    map of ``body``) or ``"p5"`` (torchvision's ``retinanet_resnet50_fpn``)."""

    def __init__(self, body: nn.Module, in_channels: Sequence[int], out_channels: int = 256, *,
                 p6_from: str = "c5") -> None:
        super().__init__()
        self.p6_from = one_of("p6_from", p6_from, ("c5", "p5"))
        self.body = body
        self.fpn = FeaturePyramidNetwork(in_channels, out_channels, extra_pool=False)
        self.extra = LastLevelP6P7(in_channels[-1] if p6_from == "c5" else out_channels, out_channels)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        maps = self.body(x)
        maps = maps if isinstance(maps, Mapping) else {"0": maps}
        pyramid = self.fpn(OrderedDict((str(i), m) for i, m in enumerate(maps.values())))
        last = list(maps.values())[-1] if self.p6_from == "c5" else list(pyramid.values())[-1]
        pyramid["p6"], pyramid["p7"] = self.extra(last)
        return pyramid


def _subnet(channels: int, depth: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class RetinaNetHead(nn.Module):
    """The classification and box subnets (Sec. 4, Fig. 3 c, d), shared by every level: each
    ``depth`` 3x3 convolutions of ``in_channels`` with ReLU, then ``cls_logits`` (3x3, ``K A``) or
    ``bbox_pred`` (3x3, ``4 A``). ``forward(maps)`` returns ``(N, sum H W A, K)`` logits and
    ``(N, sum H W A, 4)`` deltas, rows in the anchors' order ``(y W + x) A + a``, levels in turn."""

    def __init__(self, in_channels: int, num_anchors: int, num_object_classes: int, *, depth: int = 4,
                 prior: float = 0.01) -> None:
        super().__init__()
        channels = positive_int("in_channels", in_channels)
        self.num_anchors = positive_int("num_anchors", num_anchors)
        self.num_object_classes = positive_int("num_object_classes", num_object_classes)
        depth = int(depth)
        if depth < 0:
            raise ValueError(f"depth is the number of hidden convolutions per subnet, >= 0, got {depth}")
        self.cls_subnet = _subnet(channels, depth)
        self.cls_logits = nn.Conv2d(channels, num_anchors * num_object_classes, 3, padding=1)
        self.box_subnet = _subnet(channels, depth)
        self.bbox_pred = nn.Conv2d(channels, num_anchors * 4, 3, padding=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        nn.init.constant_(self.cls_logits.bias, prior_bias(prior))

    def forward(self, maps: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits, deltas = [], []
        a, k = self.num_anchors, self.num_object_classes
        for fmap in maps:
            n, _, h, w = fmap.shape
            score = self.cls_logits(self.cls_subnet(fmap))
            logits.append(score.view(n, a, k, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, k))
            delta = self.bbox_pred(self.box_subnet(fmap))
            deltas.append(delta.view(n, a, 4, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, 4))
        return torch.cat(logits, 1), torch.cat(deltas, 1)


@dataclass(frozen=True)
class RetinaSettings:
    """Training and test-time settings (the paper's, Sec. 4 and 4.1)."""

    fg_iou_thresh: float = 0.5  # an anchor at IoU >= this with a box is positive
    bg_iou_thresh: float = 0.4  # below this, background; in between, ignored
    alpha: float = 0.25
    gamma: float = 2.0
    box_loss: str = "smooth_l1"  # or "l1" (torchvision's default)
    beta: float = 1 / 9  # smooth L1's (Detectron: 0.11; torchvision's smooth_l1 option: 1)
    score_thresh: float = 0.05
    topk_candidates: int = 1000  # per level, before NMS
    nms_thresh: float = 0.5
    detections_per_img: int = 100

    def __post_init__(self) -> None:
        if not 0 <= self.bg_iou_thresh <= self.fg_iou_thresh <= 1:
            raise ValueError(f"need 0 <= bg_iou_thresh <= fg_iou_thresh <= 1, got {self.bg_iou_thresh} and "
                             f"{self.fg_iou_thresh}")
        one_of("box_loss", self.box_loss, BOX_LOSSES)
        non_negative("beta", self.beta)
        non_negative("score_thresh", self.score_thresh)
        non_negative("nms_thresh", self.nms_thresh)
        positive_int("topk_candidates", self.topk_candidates)
        positive_int("detections_per_img", self.detections_per_img)


class RetinaNet(Detector):
    """``backbone`` (a dict of maps, finest first) -> ``anchors`` -> ``head``; the loss in training,
    decoding and NMS at test (see the module docstring). ``num_classes`` counts the background;
    ``min_input`` is the smallest image side the backbone takes."""

    def __init__(self, backbone: nn.Module, anchors: AnchorGenerator, head: RetinaNetHead, *, num_classes: int,
                 settings: RetinaSettings | None = None, min_input: int = 1) -> None:
        super().__init__()
        self.backbone = backbone
        self.anchors = anchors
        self.head = head
        self.num_classes = positive_int("num_classes", num_classes)
        if head.num_object_classes != num_classes - 1:
            raise ValueError(f"the head scores {head.num_object_classes} object classes; a detector of "
                             f"{num_classes} classes (background included) needs {num_classes - 1}")
        if len(set(anchors.num_anchors_per_location())) != 1 or anchors.num_anchors_per_location()[0] != head.num_anchors:
            raise ValueError(f"the head predicts {head.num_anchors} anchors per position, the anchor generator "
                             f"makes {anchors.num_anchors_per_location()} per level")
        self.settings = settings or RetinaSettings()
        self.matcher = Matcher(self.settings.fg_iou_thresh, self.settings.bg_iou_thresh, allow_low_quality_matches=True)
        self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.min_input = positive_int("min_input", min_input)

    def forward(self, images: torch.Tensor, targets: Sequence[Mapping[str, torch.Tensor]] | None = None) -> Any:
        n, h, w = check_inputs(images, targets, training=self.training, min_input=self.min_input,
                               num_classes=self.num_classes)
        maps = list(self.features(images).values())
        logits, deltas = self.head(maps)
        anchors = self.anchors(maps, (h, w))[0]
        if self.training:
            return self.loss(logits, deltas, anchors, targets)
        counts = [m.shape[-2] * m.shape[-1] * self.head.num_anchors for m in maps]
        return [self.postprocess(lg, dl, anchors, counts, (h, w)) for lg, dl in zip(logits, deltas)]

    def dense(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every anchor's decoded box, clipped to the image, ``(N, A, 4)``, and its class scores
        (sigmoids) ``(N, A, K)``, column ``k`` for label ``k + 1``: what :meth:`postprocess`
        thresholds, ranks and suppresses - the static-shaped part of detection (ONNX export)."""
        h, w = images.shape[-2:]
        maps = list(self.features(images).values())
        logits, deltas = self.head(maps)
        anchors = self.anchors(maps, (h, w))[0]
        n, a = deltas.shape[:2]
        boxes = self.box_coder.decode(deltas.reshape(n * a, 4), anchors.repeat(n, 1))
        return clip_boxes(boxes, (h, w)).view(n, a, 4), torch.sigmoid(logits)

    def match(self, anchors: torch.Tensor, targets: Sequence[Mapping[str, torch.Tensor]]) -> torch.Tensor:
        """``(N, A)``: per image, the index of the box each anchor is matched to, ``-1`` background,
        ``-2`` ignored (IoU between the thresholds)."""
        matched = []
        for target in targets:
            boxes = target["boxes"].to(anchors.dtype)
            matched.append(self.matcher(box_iou(boxes, anchors) if boxes.numel() else boxes.new_zeros(0, len(anchors))))
        return torch.stack(matched)

    def loss(self, logits: torch.Tensor, deltas: torch.Tensor, anchors: torch.Tensor,
             targets: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """The focal loss over the non-ignored anchors and the box loss over the positives, each
        divided by the image's number of positive anchors (at least 1), averaged over the images."""
        s = self.settings
        matched = self.match(anchors, targets)
        positive = matched >= 0
        per_image = positive.sum(1).clamp(min=1).to(logits.dtype)
        gt_boxes = torch.stack([t["boxes"].to(anchors.dtype)[m.clamp(min=0)] if t["boxes"].numel()
                                else anchors.new_zeros(len(anchors), 4) for t, m in zip(targets, matched)])
        gt_labels = torch.stack([t["labels"][m.clamp(min=0)] if t["labels"].numel()
                                 else m.new_zeros(len(anchors)) for t, m in zip(targets, matched)])
        onehot = torch.zeros_like(logits)
        image, anchor = torch.where(positive)
        onehot[image, anchor, gt_labels[image, anchor] - 1] = 1.0
        focal = sigmoid_focal_loss(logits, onehot, s.alpha, s.gamma)
        focal = (focal.sum(-1) * (matched != BETWEEN_THRESHOLDS)).sum(1)
        regression = self.box_coder.encode(gt_boxes[image, anchor], anchors[anchor])
        predicted = deltas[image, anchor]
        if s.box_loss == "l1":
            box = F.l1_loss(predicted, regression, reduction="none")
        else:
            box = F.smooth_l1_loss(predicted, regression, beta=s.beta, reduction="none")
        box = torch.zeros(len(targets), dtype=box.dtype, device=box.device).index_add(0, image, box.sum(1))
        return {"loss_classifier": (focal / per_image).mean(), "loss_box_reg": (box / per_image).mean()}

    def postprocess(self, logits: torch.Tensor, deltas: torch.Tensor, anchors: torch.Tensor, counts: Sequence[int],
                    image_size: Sequence[int]) -> dict[str, torch.Tensor]:
        """One image's detections: per level the (anchor, class) pairs scoring over
        ``score_thresh``, the best ``topk_candidates`` decoded and clipped; the levels merged, NMS
        per class, the best ``detections_per_img``."""
        s = self.settings
        k = logits.shape[-1]
        boxes, scores, labels = [], [], []
        for lg, dl, an in zip(logits.split(list(counts)), deltas.split(list(counts)), anchors.split(list(counts))):
            sc = torch.sigmoid(lg).flatten()
            index = torch.where(sc > s.score_thresh)[0]
            sc, top = sc[index].topk(min(s.topk_candidates, len(index)))
            index = index[top]
            which = torch.div(index, k, rounding_mode="floor")
            boxes.append(clip_boxes(self.box_coder.decode(dl[which], an[which]), image_size))
            scores.append(sc)
            labels.append(index % k + 1)
        b, sc, lb = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
        keep = batched_nms(b, sc, lb, s.nms_thresh)[:s.detections_per_img]
        return {"boxes": b[keep], "scores": sc[keep], "labels": lb[keep]}


def build_retinanet(backbone: nn.Module, out_channels: int, *, num_classes: int,
                    anchor_sizes: Sequence[Sequence[float]], aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
                    depth: int = 4, prior: float = 0.01, settings: RetinaSettings | None = None,
                    min_input: int = 1) -> RetinaNet:
    """RetinaNet from its parts' settings: ``anchor_sizes`` one tuple per level of ``backbone``'s
    output, ratios (height / width) shared by the levels."""
    anchors = AnchorGenerator(tuple(tuple(s) for s in anchor_sizes), tuple(aspect_ratios))
    head = RetinaNetHead(out_channels, anchors.num_anchors_per_location()[0], num_classes - 1, depth=depth,
                         prior=prior)
    return RetinaNet(backbone, anchors, head, num_classes=num_classes, settings=settings, min_input=min_input)


# ---------------------------------------------------------------------------------------------
# Registered networks

_PAPER = "Focal Loss for Dense Object Detection"
_AUTHORS = "Lin, Goyal, Girshick, He, Dollár"
_IDEA = ("A one-stage detector loses to two-stage ones because easy background anchors swamp its loss; "
         "the focal loss scales each anchor's cross-entropy by (1 - p_t)^gamma, and a dense detector on a "
         "feature pyramid matches two-stage accuracy at one-stage speed.")


def _card(**changes: Any) -> ModelCard:
    base = dict(name="retinanet_resnet50_fpn", family="retinanet", paper=_PAPER, authors=_AUTHORS, year=2017,
                arxiv="1708.02002", input_size=(3, 800, 800), dataset="coco", num_classes=91, idea=_IDEA,
                task="detection", extra={"min_input": 64})
    base.update(changes)
    return ModelCard(**base)


def retinanet_backbone_parts(backbone: str, out_channels: int = 256, p6_from: str = "c5") -> dict[str, Any]:
    """The pyramid of :func:`build_retinanet` on a zoo network: its stages at strides 8, 16, 32
    (ResNet's ``C3 .. C5``) under :class:`RetinaPyramid`, the paper's anchors on ``P3 .. P7``."""
    body = zoo_backbone(backbone, lambda info: stages_at(info, [8, 16, 32], backbone))
    pyramid = RetinaPyramid(body, [i.channels for i in body.feature_info], out_channels, p6_from=p6_from)
    return dict(backbone=pyramid, out_channels=out_channels, anchor_sizes=retina_anchor_sizes(), min_input=128)


_R50_COUNT = (
    "exact count here, equal to torchvision's RetinaNet on resnet50 with LastLevelP6P7(2048, 256) (its v2 pyramid) "
    "and plain heads, built for 90 classes (torchvision keeps a logit for the background id 0; here K = 90 of "
    "the 91 COCO ids): ResNet-50 to layer4 23,508,032 + FPN laterals (512+1024+2048)*256 + 3*256 = 918,272 "
    "and outputs 3*(9*256*256+256) = 1,770,240 + P6 9*2048*256+256 = 4,718,848, P7 590,080 + two subnets "
    "8*(9*256*256+256) = 4,720,640 + cls_logits 9*256*810+810 = 1,867,050 + bbox_pred 9*256*36+36 = 82,980")


@register_model(_card(
    params=Published(38_176_142, _R50_COUNT),
    map=Published(36.4, "COCO val2017 box mAP@[.5:.95] of torchvision's retinanet_resnet50_fpn (P6 from P5, "
                         "L1 box loss; its weights' meta); the paper's R-50-FPN at 800 px: 35.7 on test-dev "
                         "(Table 2); the reference notes [C: torchvision 0.29]"),
    notes="RetinaNet on ResNet-50-FPN as the paper builds it: P3-P7 of 256 channels (P6 from C5), 9 anchors per "
          "position (32-512 px times 2^0, 2^(1/3), 2^(2/3), ratios 1:2, 1:1, 2:1), subnets of four 3x3 convolutions "
          "of 256, the focal loss (alpha 0.25, gamma 2), smooth L1 on the boxes, the prior 0.01. Batch norm trains "
          "(torchvision freezes it with ImageNet weights).",
))
def retinanet_resnet50_fpn(*, num_classes: int = 91, p6_from: str = "c5", box_loss: str = "smooth_l1") -> RetinaNet:
    """RetinaNet on a ResNet-50 feature pyramid (Lin et al. 2017, arXiv:1708.02002). ``p6_from="p5"``
    and ``box_loss="l1"`` give torchvision's ``retinanet_resnet50_fpn``."""
    parts = retinanet_backbone_parts("resnet50", p6_from=p6_from)
    return build_retinanet(**parts, num_classes=num_classes, settings=RetinaSettings(box_loss=box_loss))


@register_model(_card(
    name="retinanet_resnet101_fpn",
    map=Published(39.1, "COCO test-dev AP, RetinaNet-101-800 (paper Table 2, 198 ms per image on an M40 GPU); "
                         "the reference notes [M]"),
    notes="The paper's RetinaNet-101: as retinanet_resnet50_fpn on ResNet-101.",
))
def retinanet_resnet101_fpn(*, num_classes: int = 91) -> RetinaNet:
    """RetinaNet on a ResNet-101 feature pyramid (Lin et al. 2017, Table 2: 39.1 AP on COCO test-dev at 800 px)."""
    return build_retinanet(**retinanet_backbone_parts("resnet101"), num_classes=num_classes)


@register_model(_card(
    name="retinanet_backbone",
    input_size=(3, 224, 224),
    notes="RetinaNet on any zoo classification network with stages at strides 8, 16 and 32 (through the "
          "backbone contract), P3-P7 of ``out_channels``. Not a network of the paper: its numbers are not "
          "published.",
))
def retinanet_backbone(*, num_classes: int = 91, backbone: str = "resnet50", out_channels: int = 256,
                       depth: int = 4) -> RetinaNet:
    """RetinaNet (Lin et al. 2017) on the registered classification network ``backbone``: its stages
    at strides 8, 16, 32 feed the pyramid; ``depth`` convolutions per subnet."""
    parts = retinanet_backbone_parts(backbone, positive_int("out_channels", out_channels))
    return build_retinanet(**parts, num_classes=num_classes, depth=depth)


class MiniPyramid(nn.Module):
    """The mini's two levels: ``P_4`` = the FPN's lateral and output layers on the stride-4 map
    (:class:`MiniBackbone`'s ``conv5``, or a zoo network's stage at reduction 4 through the
    backbone contract), ``P_8`` = a 3x3 stride-2 convolution on that map (RetinaNet's P6 rule one
    level down), both ``channels`` wide."""

    def __init__(self, in_channels: int = 1, channels: int = 64, backbone: str | None = None) -> None:
        super().__init__()
        if backbone is None:
            self.body = FeatureExtractor(MiniBackbone(in_channels), ["conv5"])
        else:
            self.body = zoo_backbone(backbone, lambda info: stages_at(info, [4], backbone))
        width = self.body.out_channels
        self.fpn = FeaturePyramidNetwork([width], channels, extra_pool=False)
        self.down = nn.Conv2d(width, channels, 3, stride=2, padding=1)
        nn.init.kaiming_uniform_(self.down.weight, a=1)
        nn.init.zeros_(self.down.bias)
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        c = list(self.body(x).values())[-1]
        out = self.fpn(OrderedDict(conv5=c))
        out["p8"] = self.down(c)
        return out


# 64x64 digit scenes: boxes 8-26 px (sqrt of the area), 0.9-2 times taller than wide (4 for a "1")
MINI_RETINA_ANCHORS = dict(anchor_sizes=retina_anchor_sizes((8, 16)), aspect_ratios=(1.0, 1.6, 2.6))


@register_model(_card(
    name="retinanet_mini",
    input_size=(1, 64, 64),
    dataset="digit-scenes",
    num_classes=11,
    recipe="retinanet_digit_scenes",
    extra={"min_input": 16},
    notes="A small network, not in the paper: RetinaNet's head and focal loss on faster_rcnn_mini's five-layer "
          "backbone, two levels at strides 4 and 8 (16x16 and 8x8 maps of a 64x64 scene), anchors of 8 and 16 px "
          "times 2^0, 2^(1/3), 2^(2/3) at height/width 1, 1.6, 2.6, subnets of one 3x3 convolution of 64 "
          "(--variant depth=4: the paper's four).",
))
def retinanet_mini(*, num_classes: int = 11, in_channels: int = 1, depth: int = 1,
                   backbone: str | None = None) -> RetinaNet:
    """A small RetinaNet for the 64x64 digit scenes (after Lin et al. 2017).

    Why these settings: the digits' boxes are 8-26 px, so two levels cover them - 8-13 px anchors
    on the stride-4 map and 16-25 px on the stride-8 one (the paper's P3-P7 start at 32 px); the
    height/width ratios 1, 1.6, 2.6 are the digits' (faster_rcnn_mini's), and subnets of one
    convolution of 64 keep the head's cost near the backbone's (the paper's four of 256 would
    cost some 30 times the backbone on these maps). Measured with the recipe: ``depth=2`` gave
    mAP@0.5 0.919 and COCO mAP 0.654 against depth 1's 0.922 and 0.639, at 1.17 times the
    inference time (3.75 against 3.2 ms per scene at batch 1) - and only 1.04 times as fast as
    faster_rcnn_mini, where depth 1 is 1.25 times as fast. ``backbone``: any registered classification
    network with a stage at reduction 4 instead of :class:`MiniBackbone`."""
    return build_retinanet(MiniPyramid(in_channels, backbone=backbone), 64, num_classes=num_classes, depth=depth, min_input=16,
                           **MINI_RETINA_ANCHORS)
