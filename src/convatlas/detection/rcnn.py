"""R-CNN and Fast R-CNN: the detectors before the region proposal network, on selective search's
proposals - the two steps of the notes that Faster R-CNN's timing is measured against.

**R-CNN** (Girshick, Donahue, Darrell, Malik 2014, arXiv:1311.2524). For every proposal: warp the
region, with ``p`` pixels of context around it in the warped frame (the paper's ``p = 16`` at
227 px; here scaled to the warp size), to the CNN's fixed input; compute its features; score
them with one linear SVM per class; refine the box with a class-specific linear regressor on the
features (appendix C: ridge regression, ``lambda = 1000``, from proposals with IoU >= 0.6). Training
is three stages: fine-tune the CNN as a ``K + 1``-way classifier of warped proposals (IoU >= 0.5
with a box: its class; else background; mini-batches a quarter positive, Sec. 2.3); train the SVMs
on its features (positives: the ground-truth boxes; negatives: proposals with IoU < 0.3 with every
box of the class); fit the regressors. At test: per-class NMS at 0.3. The CNN runs once per
proposal: that is its cost.

**Fast R-CNN** (Girshick 2015, arXiv:1504.08083). The image goes through the CNN once; each
proposal's features are pooled from the shared map (RoI Pool, 7x7); the head of
:class:`~convatlas.detection.faster_rcnn.RoIHeads` classifies (softmax) and regresses, trained
jointly with the multitask loss; background RoIs are those with IoU in ``[0.1, 0.5)`` (Sec. 2.3).
Faster R-CNN keeps this head and replaces the external proposals with the RPN's.

Both take the proposals per image as a list of ``(P_i, 4)`` xyxy tensors;
:func:`scene_proposals` runs selective search over a batch and reports its time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from convatlas._checks import positive_int, positive_number
from convatlas.detection.boxes import BoxCoder, batched_nms, box_iou, clip_boxes
from convatlas.detection.faster_rcnn import (DetectionSettings, FastRCNNPredictor, RoIHeads, TwoMLPHead,
                                             check_targets, roi_pooler)
from convatlas.detection.roi import roi_align
from convatlas.detection.selective_search import selective_search

__all__ = ["scene_proposals", "FastRCNN", "fast_rcnn", "RCNN", "warp_regions"]


def scene_proposals(images: torch.Tensor, *, mode: str = "fast", ks: Sequence[int] | None = (10, 25),
                    limit: int | None = None) -> tuple[list[torch.Tensor], float]:
    """Selective search's boxes for each uint8 image of ``(N, C, H, W)`` (best-ranked first, at most
    ``limit``), and the seconds per image it took. ``ks`` (10, 25) suits 64x64 digit scenes: the
    paper's 50, 100 merge small digits into the background (see
    :mod:`~convatlas.detection.selective_search`)."""
    start = time.perf_counter()
    boxes = []
    for image in images:
        found = selective_search(image, mode, ks=ks).boxes
        boxes.append(found[:limit] if limit is not None else found)
    return boxes, (time.perf_counter() - start) / max(len(images), 1)


class FastRCNN(nn.Module):
    """Fast R-CNN: ``backbone`` once per image, ``roi_heads`` on the given proposals.

    ``forward(images, proposals, targets=None)``: in training the losses ``loss_classifier`` and
    ``loss_box_reg``; at test one dict of ``boxes``, ``scores``, ``labels`` per image."""

    def __init__(self, backbone: nn.Module, roi_heads: RoIHeads, *, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.roi_heads = roi_heads
        self.num_classes = positive_int("num_classes", num_classes)

    def forward(self, images: torch.Tensor, proposals: Sequence[torch.Tensor],
                targets: Sequence[Mapping[str, torch.Tensor]] | None = None):
        n, _, h, w = images.shape
        if len(proposals) != n:
            raise ValueError(f"proposals must give one (P, 4) tensor per image ({n}), got {len(proposals)}")
        if self.training:
            if targets is None:
                raise ValueError("in training mode Fast R-CNN needs targets (one dict with 'boxes' and 'labels' per image)")
            check_targets(targets, n, (h, w), self.num_classes)
        maps = self.backbone(images)
        features = maps if isinstance(maps, Mapping) else {"0": maps}
        proposals = [p.to(images.dtype) for p in proposals]
        detections, losses = self.roi_heads(features, proposals, [(h, w)] * n, targets if self.training else None)
        return losses if self.training else detections


def fast_rcnn(backbone: nn.Module, out_channels: int, stage: str, *, num_classes: int, representation: int = 256,
              roi_pool: str = "pool", batch_size_per_image: int = 64,
              detections: DetectionSettings | None = None) -> FastRCNN:
    """Fast R-CNN's head (RoI Pool 7x7, fc6/fc7 of ``representation``, softmax and box deltas;
    RoIs a quarter foreground, background from IoU 0.1) on ``backbone``'s map ``stage``."""
    heads = RoIHeads(roi_pooler(roi_pool, stage), TwoMLPHead(out_channels * 49, representation),
                     FastRCNNPredictor(representation, num_classes), bg_iou_low=0.1,
                     batch_size_per_image=batch_size_per_image, positive_fraction=0.25,
                     detections=detections or DetectionSettings(nms_thresh=0.3))
    return FastRCNN(backbone, heads, num_classes=num_classes)


def warp_regions(images: torch.Tensor, boxes: Sequence[torch.Tensor], size: int, context: float) -> torch.Tensor:
    """R-CNN's warp (Sec. 2.1, appendix A): each box enlarged so that, warped anisotropically to
    ``size x size``, it has ``context`` pixels of the image around it on every side, then resampled
    bilinearly (RoI Align with pixel-centred sampling, 2x2 points per output pixel; outside the
    image reads 0, the paper's mean-padding after normalisation). ``(sum P_i, C, size, size)``."""
    positive_int("size", size)
    scale = size / (size - 2 * context)
    grown = []
    for b in boxes:
        centre = (b[:, :2] + b[:, 2:]) / 2
        half = (b[:, 2:] - b[:, :2]) / 2 * scale
        grown.append(torch.cat([centre - half, centre + half], 1).to(images.dtype))
    return roi_align(images, grown, size, spatial_scale=1.0, sampling_ratio=2, aligned=True)


@dataclass
class _Fitted:
    svm_weight: torch.Tensor  # (K, D): one linear SVM per object class
    svm_bias: torch.Tensor  # (K,)
    regressor: torch.Tensor  # (K, D + 1, 4): class-specific ridge regression of the box deltas


class RCNN(nn.Module):
    """R-CNN over a CNN ``cnn`` (images ``size x size`` -> a feature vector of ``features``
    numbers): ``classifier`` is its ``K + 1``-way fine-tuning layer. After :meth:`fit_svms` and
    :meth:`fit_regressors`, ``forward(images, proposals)`` returns one dict of detections per image
    (eval mode), scored by the SVMs."""

    def __init__(self, cnn: nn.Module, features: int, num_classes: int, *, size: int = 32,
                 context: float | None = None, nms_thresh: float = 0.3, score_thresh: float = -1.0,
                 detections_per_img: int = 100) -> None:
        super().__init__()
        self.cnn = cnn
        self.classifier = nn.Linear(positive_int("features", features), positive_int("num_classes", num_classes))
        self.num_classes, self.size = num_classes, positive_int("size", size)
        self.context = 16 * size / 227 if context is None else positive_number("context", context)  # the paper's 16 at 227
        self.nms_thresh, self.score_thresh, self.detections_per_img = nms_thresh, score_thresh, detections_per_img
        self.box_coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
        self.fitted: _Fitted | None = None

    def features_of(self, images: torch.Tensor, boxes: Sequence[torch.Tensor], chunk: int = 512) -> torch.Tensor:
        """The CNN's features of every region (warped one by one: the CNN runs per region)."""
        crops = warp_regions(images, boxes, self.size, self.context)
        return torch.cat([self.cnn(crops[i:i + chunk]) for i in range(0, len(crops), chunk)]) if len(crops) else \
            images.new_zeros((0, self.classifier.in_features))

    @staticmethod
    def label_regions(proposals: Sequence[torch.Tensor], targets: Sequence[Mapping[str, torch.Tensor]],
                      threshold: float = 0.5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per proposal (all images): its class (the best box's at IoU >= ``threshold``, else 0),
        its best IoU and the box it overlaps most (zeros when the image has none)."""
        labels, best, matched = [], [], []
        for p, t in zip(proposals, targets):
            if len(t["boxes"]) == 0:
                labels.append(torch.zeros(len(p), dtype=torch.int64))
                best.append(torch.zeros(len(p)))
                matched.append(torch.zeros(len(p), 4))
                continue
            iou = box_iou(t["boxes"], p)
            value, index = iou.max(0)
            labels.append(torch.where(value >= threshold, t["labels"][index], torch.zeros_like(index)))
            best.append(value)
            matched.append(t["boxes"][index])
        return torch.cat(labels), torch.cat(best), torch.cat(matched)

    def fit_svms(self, features: torch.Tensor, labels: torch.Tensor, positive: torch.Tensor, *, c: float = 1e-3,
                 steps: int = 200) -> None:
        """One linear SVM per object class on ``features``: positives the rows of that class with
        ``positive`` set (the ground-truth boxes), negatives the rows whose label is not the class
        and that are not positives of it (proposals under IoU 0.3 with its boxes are given label 0
        by the caller). Hinge loss plus ``c/2 |w|^2``, minimised by L-BFGS on the whole set
        (the paper's hard-negative mining is unnecessary when every negative fits in memory)."""
        k, d = self.num_classes - 1, features.shape[1]
        weight = torch.zeros(k, d, requires_grad=True)
        bias = torch.zeros(k, requires_grad=True)
        y = torch.full((len(labels), k), -1.0)
        pos = torch.where(positive)[0]
        y[pos, labels[pos] - 1] = 1.0
        use = torch.ones(len(labels), k, dtype=torch.bool)
        use[torch.where(~positive & (labels > 0))[0], (labels[~positive & (labels > 0)] - 1)] = False
        x = features.detach()
        optimiser = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimiser.zero_grad()
            margin = (1 - y * (x @ weight.T + bias)).clamp(min=0) ** 2  # squared hinge: smooth for L-BFGS
            loss = (margin * use).sum(0).div(use.sum(0).clamp(min=1)).sum() + c / 2 * (weight ** 2).sum()
            loss.backward()
            return loss

        optimiser.step(closure)
        regressor = self.fitted.regressor if self.fitted is not None else torch.zeros(k, d + 1, 4)
        self.fitted = _Fitted(weight.detach(), bias.detach(), regressor)

    def fit_regressors(self, features: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor, *,
                       ridge: float = 1000.0) -> None:
        """Class-specific ridge regression (appendix C, ``lambda = 1000``) of the box deltas
        ``targets`` ``(R, 4)`` from ``[features, 1]``, for the rows of each class."""
        if self.fitted is None:
            raise RuntimeError("fit the SVMs first")
        k, d = self.num_classes - 1, features.shape[1]
        x = torch.cat([features.detach(), torch.ones(len(features), 1)], 1).double()
        regressor = torch.zeros(k, d + 1, 4)
        eye = torch.eye(d + 1, dtype=torch.float64)
        eye[-1, -1] = 0  # the bias is not shrunk
        for cls in range(1, self.num_classes):
            rows = torch.where(labels == cls)[0]
            if len(rows):
                a = x[rows]
                regressor[cls - 1] = torch.linalg.solve(a.T @ a + ridge * eye, a.T @ targets[rows].double()).float()
        self.fitted.regressor = regressor

    @torch.no_grad()
    def forward(self, images: torch.Tensor, proposals: Sequence[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        if self.fitted is None:
            raise RuntimeError("R-CNN detects after fit_svms and fit_regressors")
        h, w = images.shape[-2:]
        f = self.fitted
        feats = self.features_of(images, proposals)
        scores = feats @ f.svm_weight.T + f.svm_bias  # (R, K)
        x = torch.cat([feats, torch.ones(len(feats), 1)], 1)
        deltas = torch.einsum("rd,kdj->rkj", x, f.regressor).reshape(len(feats), -1)  # (R, 4 K)
        out = []
        for b, s, d in zip(torch.cat(proposals).split([len(p) for p in proposals]),
                           scores.split([len(p) for p in proposals]), deltas.split([len(p) for p in proposals])):
            k = s.shape[1]
            boxes = clip_boxes(self.box_coder.decode(d, b).reshape(-1, 4), (h, w))
            labels = torch.arange(1, k + 1).repeat(len(b))
            s = s.reshape(-1)
            keep = torch.where(s > self.score_thresh)[0]
            boxes, s, labels = boxes[keep], s[keep], labels[keep]
            wide = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            boxes, s, labels = boxes[wide], s[wide], labels[wide]
            keep = batched_nms(boxes, s, labels, self.nms_thresh)[:self.detections_per_img]
            out.append({"boxes": boxes[keep], "scores": s[keep], "labels": labels[keep]})
        return out

    def fine_tune_loss(self, images: torch.Tensor, proposals: Sequence[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the ``K + 1``-way classifier over warped ``proposals``."""
        return F.cross_entropy(self.classifier(self.features_of(images, proposals)), labels)
