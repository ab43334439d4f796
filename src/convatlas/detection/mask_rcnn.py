"""Mask R-CNN (He, Gkioxari, Dollár, Girshick 2017, arXiv:1703.06870): Faster R-CNN plus a third
output per region - a binary mask of the object - which turns detection into instance
segmentation.

The parts, as the paper's Fig. 4 (right, the FPN head) draws them:

1. the region is pooled by **RoI Align** to ``14 x 14`` (no quantisation of the region or its bins:
   the paper's Sec. 3 and Table 2c, about +3 mask AP over RoI Pool);
2. ``mask_head``: four ``3 x 3`` convolutions of 256 channels with ReLU (``mask_fcn1 .. 4``);
3. ``mask_predictor``: a ``2 x 2`` transposed convolution of stride 2 (``conv5_mask``, to ``28 x 28``),
   ReLU, and a ``1 x 1`` convolution to one mask per class (``mask_fcn_logits``).

**Training** (Sec. 3): only the foreground RoIs of Fast R-CNN's sample have a mask loss - the mean
per-pixel binary cross-entropy of the mask of the RoI's *true* class (masks and classes do not
compete: a sigmoid per class, not a softmax over them). The target is the RoI's matched
ground-truth mask cropped to the RoI and resized to ``28 x 28`` (RoI Align of the binary mask, as
torchvision does it). ``L = L_cls + L_box + L_mask``.

**At test time**: the mask branch runs on the detections (the top 100 boxes after NMS), the mask of
the predicted class is taken, resized to its box and pasted into the image (:func:`paste_masks`),
and binarised at 0.5. ``model(images)`` returns per image ``"boxes"``, ``"scores"``, ``"labels"``,
``"masks"`` ``(D, H, W)`` bool and ``"mask_scores"`` ``(D, H, W)`` (the pasted probabilities) -
``"masks"`` is what :func:`convatlas.metrics.mean_average_precision` takes with
``iou_type="segm"``. In training, ``model(images, targets)`` needs ``"masks"`` ``(M, H, W)`` per
image beside the boxes and labels and returns the five losses (``loss_mask`` added).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from convatlas._checks import positive_int
from convatlas.detection.faster_rcnn import (DetectionSettings, FasterRCNN, RoIHeads, build_faster_rcnn, fast_rcnn_loss,
                                             faster_rcnn_fpn_parts, mini_parts)
from convatlas.detection.roi import MultiScaleRoIAlign, roi_align_each
from convatlas.registry import ModelCard, Published, register_model

__all__ = ["MaskHead", "MaskPredictor", "MaskRoIHeads", "MaskRCNN", "mask_targets", "mask_loss", "paste_masks",
           "build_mask_rcnn", "mask_rcnn_resnet50_fpn", "mask_rcnn_resnet101_fpn", "mask_rcnn_mini"]


class MaskHead(nn.Sequential):
    """``mask_fcn1 .. n``: ``3 x 3`` convolutions (``widths``, the paper's four of 256), each
    followed by ReLU; Kaiming-normal weights (fan out), zero biases."""

    def __init__(self, in_channels: int, widths: Sequence[int] = (256, 256, 256, 256)) -> None:
        layers: list[tuple[str, nn.Module]] = []
        previous = positive_int("in_channels", in_channels)
        if not widths:
            raise ValueError("the mask head needs at least one convolution (widths is empty)")
        for i, width in enumerate(widths, 1):
            layers += [(f"mask_fcn{i}", nn.Conv2d(previous, positive_int("widths", width), 3, padding=1)),
                       (f"relu{i}", nn.ReLU(inplace=True))]
            previous = width
        super().__init__(OrderedDict(layers))
        self.out_channels = previous
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)


class MaskPredictor(nn.Module):
    """``conv5_mask`` (``2 x 2`` transposed convolution, stride 2: the mask's side doubles), ReLU,
    ``mask_fcn_logits`` (``1 x 1``, one logit map per class, the background included)."""

    def __init__(self, in_channels: int, hidden: int, num_classes: int) -> None:
        super().__init__()
        self.conv5_mask = nn.ConvTranspose2d(positive_int("in_channels", in_channels),
                                             positive_int("hidden", hidden), 2, stride=2)
        self.mask_fcn_logits = nn.Conv2d(hidden, positive_int("num_classes", num_classes), 1)
        for layer in (self.conv5_mask, self.mask_fcn_logits):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mask_fcn_logits(F.relu(self.conv5_mask(x)))


def mask_targets(gt_masks: torch.Tensor, boxes: torch.Tensor, matched: torch.Tensor, size: int) -> torch.Tensor:
    """``(K, size, size)``: for each RoI ``boxes[k]`` the ground-truth mask ``gt_masks[matched[k]]``
    (``(M, H, W)``, binary) cropped to the RoI and resized by RoI Align (adaptive sampling, not
    aligned - torchvision's ``project_masks_on_boxes``). Values in ``[0, 1]``."""
    if boxes.shape[0] == 0:
        return boxes.new_zeros((0, size, size))
    return roi_align_each(gt_masks[matched].to(boxes.dtype), boxes, size)


def mask_loss(mask_logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The paper's ``L_mask``: the mean binary cross-entropy of each RoI's mask for its true class
    ``labels[k]`` (``mask_logits`` ``(K, C, S, S)``, ``targets`` ``(K, S, S)``); zero (with a
    gradient path) when there is no foreground RoI."""
    if labels.numel() == 0:
        return mask_logits.sum() * 0
    chosen = mask_logits[torch.arange(labels.shape[0], device=labels.device), labels]
    return F.binary_cross_entropy_with_logits(chosen, targets)


def paste_masks(masks: torch.Tensor, boxes: torch.Tensor, image_size: Sequence[int], padding: int = 1) -> torch.Tensor:
    """``(D, H, W)``: each ``S x S`` mask of ``masks`` ``(D, S, S)`` resized (bilinear) to its box and
    placed in an ``image_size = (H, W)`` image of zeros.

    The mask is first padded by ``padding`` cells of zeros and its box grown by ``(S + 2 padding) /
    S`` about its centre, so the resized mask falls to zero at the box's edge instead of being cut;
    the grown box is truncated to integers and spans ``x1 .. x2`` inclusive (Detectron's
    convention, which torchvision's ``paste_masks_in_image`` keeps)."""
    height, width = (int(v) for v in image_size)
    out = masks.new_zeros((masks.shape[0], height, width))
    if masks.shape[0] == 0:
        return out
    side = masks.shape[-1]
    scale = (side + 2 * padding) / side
    padded = F.pad(masks, (padding,) * 4)
    centre = (boxes[:, :2] + boxes[:, 2:]) * 0.5
    half = (boxes[:, 2:] - boxes[:, :2]) * 0.5 * scale
    grown = torch.cat([centre - half, centre + half], dim=1).to(torch.int64).tolist()
    for d, (x1, y1, x2, y2) in enumerate(grown):
        w, h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
        resized = F.interpolate(padded[d][None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        xa, xb, ya, yb = max(x1, 0), min(x2 + 1, width), max(y1, 0), min(y2 + 1, height)
        if xb > xa and yb > ya:
            out[d, ya:yb, xa:xb] = resized[ya - y1:yb - y1, xa - x1:xb - x1]
    return out


class MaskRoIHeads(RoIHeads):
    """Fast R-CNN's head (:class:`~convatlas.detection.faster_rcnn.RoIHeads`) plus the mask branch:
    ``mask_roi_pool`` (RoI Align 14x14), ``mask_head``, ``mask_predictor`` (see the module
    docstring). ``mask_threshold``: the probability a pixel needs to be in the binary mask (0.5)."""

    def __init__(self, box_heads: RoIHeads, mask_roi_pool: nn.Module, mask_head: nn.Module,
                 mask_predictor: MaskPredictor, mask_threshold: float = 0.5) -> None:
        nn.Module.__init__(self)
        # the box heads' parts and settings, taken over as they are
        for name, module in box_heads.named_children():
            self.add_module(name, module)
        self.matcher, self.sampler, self.box_coder = box_heads.matcher, box_heads.sampler, box_heads.box_coder
        self.bg_iou_low, self.settings = box_heads.bg_iou_low, box_heads.settings
        self.mask_roi_pool = mask_roi_pool
        self.mask_head = mask_head
        self.mask_predictor = mask_predictor
        if not 0 < mask_threshold < 1:
            raise ValueError(f"mask_threshold must be a probability in (0, 1), got {mask_threshold}")
        self.mask_threshold = float(mask_threshold)

    def mask_logits(self, features: Mapping[str, torch.Tensor], boxes: Sequence[torch.Tensor],
                    image_sizes: Sequence[Sequence[int]]) -> torch.Tensor:
        """``(sum K_i, C, 28, 28)``: the mask branch on regions ``boxes`` (one tensor per image)."""
        return self.mask_predictor(self.mask_head(self.mask_roi_pool(features, boxes, image_sizes)))

    def forward(self, features: Mapping[str, torch.Tensor], proposals: Sequence[torch.Tensor],
                image_sizes: Sequence[Sequence[int]], targets: Sequence[Mapping[str, torch.Tensor]] | None = None
                ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        if not self.training:
            detections, _ = super().forward(features, proposals, image_sizes)
            return self.add_masks(features, detections, image_sizes), {}
        if targets is None:
            raise ValueError("the RoI heads are in training mode and need targets")
        rois, labels, regression, matched = self.sample(proposals, targets)
        pooled = self.box_roi_pool(features, rois, image_sizes)
        class_logits, box_regression = self.box_predictor(self.box_head(pooled))
        loss_classifier, loss_box_reg = fast_rcnn_loss(class_logits, box_regression, labels, regression)
        # the mask branch on the foreground RoIs of the sample, each against its matched instance
        per_image = labels.split([r.shape[0] for r in rois])
        foreground = [torch.where(lb > 0)[0] for lb in per_image]
        fg_rois = [r[f] for r, f in zip(rois, foreground)]
        logits = self.mask_logits(features, fg_rois, image_sizes)
        side = logits.shape[-1]
        goal = torch.cat([mask_targets(t["masks"], r, m[f], side)
                          for t, r, m, f in zip(targets, fg_rois, matched, foreground)])
        fg_labels = torch.cat([lb[f] for lb, f in zip(per_image, foreground)])
        return [], {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg,
                    "loss_mask": mask_loss(logits, fg_labels, goal)}

    def add_masks(self, features: Mapping[str, torch.Tensor], detections: list[dict[str, torch.Tensor]],
                  image_sizes: Sequence[Sequence[int]]) -> list[dict[str, torch.Tensor]]:
        """Each detection's mask: the mask branch on its box, the predicted class's probabilities,
        pasted into the image, binarised at ``mask_threshold``."""
        boxes = [d["boxes"] for d in detections]
        logits = self.mask_logits(features, boxes, image_sizes)
        labels = torch.cat([d["labels"] for d in detections])
        probs = torch.sigmoid(logits[torch.arange(labels.shape[0], device=labels.device), labels])
        for d, p, size in zip(detections, probs.split([b.shape[0] for b in boxes]), image_sizes):
            d["mask_scores"] = paste_masks(p, d["boxes"], size)
            d["masks"] = d["mask_scores"] > self.mask_threshold
        return detections


class MaskRCNN(FasterRCNN):
    """Faster R-CNN whose RoI heads also predict masks (:class:`MaskRoIHeads`); in training each
    target needs ``"masks"`` ``(M, H, W)`` (binary, one per box) - see the module docstring."""

    predicts_masks = True

    def forward(self, images: torch.Tensor, targets: Sequence[Mapping[str, torch.Tensor]] | None = None) -> Any:
        if self.training and isinstance(targets, (list, tuple)) and torch.is_tensor(images) and images.dim() == 4:
            check_masks(targets, tuple(images.shape[-2:]))
        return super().forward(images, targets)


def check_masks(targets: Sequence[Mapping[str, torch.Tensor]], image_size: Sequence[int]) -> None:
    """Raise a ``ValueError`` naming the image unless each target has ``"masks"`` ``(M, H, W)``
    with one mask per box and the images' size."""
    h, w = (int(v) for v in image_size)
    for i, t in enumerate(targets):
        if not isinstance(t, Mapping) or "masks" not in t:
            raise ValueError(f"target {i} has no 'masks': Mask R-CNN trains on one (H, W) mask per box "
                             f"(the dataset must have instance masks)")
        masks, boxes = t["masks"], t.get("boxes")
        count = boxes.shape[0] if torch.is_tensor(boxes) else None
        if not torch.is_tensor(masks) or masks.dim() != 3 or tuple(masks.shape[1:]) != (h, w) or \
                (count is not None and masks.shape[0] != count):
            got = tuple(masks.shape) if torch.is_tensor(masks) else type(masks).__name__
            raise ValueError(f"target {i}: masks must be ({count}, {h}, {w}) - one binary mask per box at the "
                             f"image's size - got {got}")


def build_mask_rcnn(*, mask_stage: str | Sequence[str], mask_widths: Sequence[int], mask_hidden: int,
                    mask_pool: int = 14, sampling_ratio: int = 2, **faster: Any) -> MaskRCNN:
    """Mask R-CNN: :func:`~convatlas.detection.faster_rcnn.build_faster_rcnn` with ``faster``'s
    settings, its RoI heads given the mask branch (RoI Align ``mask_pool`` on ``mask_stage``, the
    head's ``mask_widths``, the predictor's ``mask_hidden`` channels)."""
    detector = build_faster_rcnn(**faster)
    stages = [mask_stage] if isinstance(mask_stage, str) else list(mask_stage)
    channels = faster["out_channels"]
    head = MaskHead(channels, mask_widths)
    heads = MaskRoIHeads(detector.roi_heads, MultiScaleRoIAlign(stages, mask_pool, sampling_ratio), head,
                         MaskPredictor(head.out_channels, mask_hidden, detector.num_classes))
    return MaskRCNN(detector.backbone, detector.rpn, heads, num_classes=detector.num_classes,
                    min_input=detector.min_input)


# ---------------------------------------------------------------------------------------------
# Registered networks

_PAPER = "Mask R-CNN"
_AUTHORS = "He, Gkioxari, Dollár, Girshick"
_IDEA = ("A small fully convolutional branch predicts a mask for each region beside its class and box; "
         "RoI Align keeps the region's pixels where they are, so the masks line up with the objects.")


def _card(**changes: Any) -> ModelCard:
    base = dict(name="mask_rcnn_resnet50_fpn", family="mask_rcnn", paper=_PAPER, authors=_AUTHORS, year=2017,
                arxiv="1703.06870", input_size=(3, 800, 800), dataset="coco", num_classes=91, idea=_IDEA,
                task="detection", extra={"min_input": 64, "masks": True})
    base.update(changes)
    return ModelCard(**base)


def _fpn_mask_rcnn(backbone: str, num_classes: int) -> MaskRCNN:
    return build_mask_rcnn(**faster_rcnn_fpn_parts(backbone), num_classes=num_classes, roi_pool="align",
                           representation=1024, objectness="sigmoid", mask_stage=["0", "1", "2", "3"],
                           mask_widths=(256, 256, 256, 256), mask_hidden=256)


@register_model(_card(
    params=Published(44_454_513, (
        "exact count here, equal to torchvision's maskrcnn_resnet50_fpn built without weights (trainable batch "
        "norm): Faster R-CNN R50-FPN 41,808,406 + mask head 4 x (3*3*256*256 + 256) = 2,360,320 + conv5_mask "
        "2*2*256*256 + 256 = 262,400 + mask_fcn_logits 256*91 + 91 = 23,387")),
    map=Published(34.6, "COCO val2017 mask mAP@[.5:.95] of torchvision's maskrcnn_resnet50_fpn (box mAP 37.9); "
                         "the reference notes [C: torchvision 0.29]"),
    notes="Mask R-CNN on ResNet-50-FPN as torchvision builds it (maskrcnn_resnet50_fpn): the FPN Faster R-CNN "
          "(faster_rcnn_resnet50_fpn) plus the paper's FPN mask head - RoI Align 14x14, four 3x3 convolutions "
          "of 256, a 2x2 transposed convolution to 28x28, one mask per class.",
))
def mask_rcnn_resnet50_fpn(*, num_classes: int = 91) -> MaskRCNN:
    """Mask R-CNN with a ResNet-50 feature pyramid (He et al. 2017, arXiv:1703.06870; the FPN head
    of Fig. 4)."""
    return _fpn_mask_rcnn("resnet50", num_classes)


@register_model(_card(
    name="mask_rcnn_resnet101_fpn",
    map=Published(35.7, "COCO test-dev mask AP@[.5:.95], ResNet-101-FPN (paper Table 1); X-101-FPN 37.1; "
                         "the reference notes [M]"),
    notes="The paper's ResNet-101-FPN Mask R-CNN (Table 1): as mask_rcnn_resnet50_fpn on ResNet-101.",
))
def mask_rcnn_resnet101_fpn(*, num_classes: int = 91) -> MaskRCNN:
    """Mask R-CNN with a ResNet-101 feature pyramid (He et al. 2017, Table 1: 35.7 mask AP)."""
    return _fpn_mask_rcnn("resnet101", num_classes)


@register_model(_card(
    name="mask_rcnn_mini",
    input_size=(1, 64, 64),
    dataset="digit-scenes",
    num_classes=11,
    recipe="mask_rcnn_digit_scenes",
    extra={"min_input": 16, "masks": True},
    notes="A small network, not in the paper: faster_rcnn_mini (stride-4 backbone, the same anchors, proposal "
          "and RoI counts) with a mask branch of two 3x3 convolutions of 64 on RoI Align 7x7 and a 2x2 "
          "transposed convolution to 14x14 - digits are 8-26 px, so a cell of a 14x14 mask is at most 2 px, "
          "and the branch costs a quarter of the paper's 14x14 -> 28x28 one.",
))
def mask_rcnn_mini(*, num_classes: int = 11, in_channels: int = 1) -> MaskRCNN:
    """A small Mask R-CNN for the 64x64 digit scenes (after He et al. 2017): ``faster_rcnn_mini`` plus
    a mask branch (RoI Align 7x7 on the stride-4 map, two 3x3 convolutions of 64, a 2x2 transposed
    convolution to 14x14, one mask per class).

    Why not the paper's 14x14 -> 28x28: the digits are 8-26 px, so 14x14 masks already resolve
    them to 2 px or better, and on 2 CPU cores the larger branch made a training step about 1.5x
    as long as Faster R-CNN's."""
    return build_mask_rcnn(**mini_parts(in_channels), num_classes=num_classes, roi_pool="align", objectness="sigmoid",
                           mask_stage="conv5", mask_widths=(64, 64), mask_hidden=64, mask_pool=7)
