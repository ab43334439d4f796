"""Object detection, as the notes teach it: the box toolkit first (boxes, anchors, matching and
sampling, RoI Pool and RoI Align), the detectors built on it.

Boxes are ``(N, 4)`` xyxy tensors in pixel-edge coordinates throughout (:mod:`convatlas.metrics.boxes`).
"""

from convatlas.detection.faster_rcnn import (DetectionSettings, FasterRCNN, FastRCNNPredictor, RoIHeads,
                                             TwoMLPHead, fast_rcnn_loss)
from convatlas.detection.anchors import AnchorGenerator, base_anchors, cell_anchors, grid_anchors
from convatlas.detection.boxes import (BoxCoder, batched_nms, box_area, box_convert, box_intersection, box_iou,
                                       clip_boxes, generalized_box_iou, nms, remove_small_boxes)
from convatlas.detection.roi import MultiScaleRoIAlign, RoIPool, roi_align, roi_pool, rois_from_boxes
from convatlas.detection.rpn import ProposalSettings, RegionProposalNetwork, RPNHead
from convatlas.detection.sampling import BalancedSampler, Matcher

__all__ = ["AnchorGenerator", "BalancedSampler", "BoxCoder", "DetectionSettings", "FastRCNNPredictor", "FasterRCNN",
           "Matcher", "MultiScaleRoIAlign", "ProposalSettings", "RPNHead", "RegionProposalNetwork", "RoIHeads",
           "RoIPool", "TwoMLPHead", "base_anchors", "fast_rcnn_loss",
           "batched_nms", "box_area", "box_convert", "box_intersection", "box_iou", "cell_anchors", "clip_boxes",
           "generalized_box_iou", "grid_anchors", "nms", "remove_small_boxes", "roi_align", "roi_pool",
           "rois_from_boxes"]
