"""Object detection, as the notes teach it: the box toolkit first (boxes, anchors, matching and
sampling, RoI Pool and RoI Align), the detectors built on it.

Boxes are ``(N, 4)`` xyxy tensors in pixel-edge coordinates throughout (:mod:`convatlas.metrics.boxes`).
"""

from convatlas.detection.anchors import AnchorGenerator, base_anchors, cell_anchors, grid_anchors
from convatlas.detection.boxes import (BoxCoder, batched_nms, box_area, box_convert, box_intersection, box_iou,
                                       clip_boxes, generalized_box_iou, nms, remove_small_boxes)
from convatlas.detection.roi import MultiScaleRoIAlign, roi_align, roi_pool, rois_from_boxes
from convatlas.detection.sampling import BalancedSampler, Matcher

__all__ = ["AnchorGenerator", "BalancedSampler", "BoxCoder", "Matcher", "MultiScaleRoIAlign", "base_anchors",
           "batched_nms", "box_area", "box_convert", "box_intersection", "box_iou", "cell_anchors", "clip_boxes",
           "generalized_box_iou", "grid_anchors", "nms", "remove_small_boxes", "roi_align", "roi_pool",
           "rois_from_boxes"]
