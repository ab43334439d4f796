"""Object detection, as the notes teach it: the box toolkit first (boxes, anchors, matching and
sampling, RoI Pool and RoI Align), then the notes' progression - one object as classification plus
localisation (:mod:`~convatlas.detection.localization`), the sliding window
(:mod:`~convatlas.detection.sliding_window`), region proposals by selective search
(:mod:`~convatlas.detection.selective_search`), and Faster R-CNN's region proposal network and
Fast R-CNN head (:mod:`~convatlas.detection.rpn`, :mod:`~convatlas.detection.faster_rcnn`), the
feature pyramid (:mod:`~convatlas.detection.fpn`) and Mask R-CNN's mask branch
(:mod:`~convatlas.detection.mask_rcnn`); the single-stage detectors: RetinaNet and the focal loss
(:mod:`~convatlas.detection.retinanet`), YOLO v1 (:mod:`~convatlas.detection.yolo`) and SSD's default boxes,
matching and hard negative mining (:mod:`~convatlas.detection.ssd`). The networks register themselves (``task="detection"``).

Boxes are ``(N, 4)`` xyxy tensors in pixel-edge coordinates throughout (:mod:`convatlas.metrics.boxes`).
"""

from convatlas.detection.faster_rcnn import (DetectionSettings, FasterRCNN, FastRCNNPredictor, RoIHeads,
                                             TwoMLPHead, fast_rcnn_loss)
from convatlas.detection.fpn import BackboneWithFPN, FeaturePyramidNetwork
from convatlas.detection.mask_rcnn import MaskRCNN, MaskRoIHeads, mask_loss, mask_targets, paste_masks
from convatlas.detection.retinanet import RetinaNet, RetinaNetHead, RetinaSettings, sigmoid_focal_loss
from convatlas.detection.yolo import YOLOv1, yolo_loss
from convatlas.detection.ssd import (SSD, DefaultBoxes, L2Norm, SSDHead, SSDSettings, hard_negatives, ssd_loss,
                                     ssd_match)
from convatlas.detection.anchors import AnchorGenerator, base_anchors, cell_anchors, grid_anchors
from convatlas.detection.boxes import (BoxCoder, batched_nms, box_area, box_convert, box_intersection, box_iou,
                                       clip_boxes, generalized_box_iou, nms, remove_small_boxes)
from convatlas.detection.roi import MultiScaleRoIAlign, RoIPool, roi_align, roi_pool, rois_from_boxes
# selective_search (the function) stays in its module: exported here it would hide the module of the same name
from convatlas.detection.rpn import ProposalSettings, RegionProposalNetwork, RPNHead
from convatlas.detection.localization import Localizer, evaluate_localizer, localization_loss, train_localizer
from convatlas.detection.sampling import BalancedSampler, Matcher
from convatlas.detection.selective_search import average_best_overlap, proposal_recall
from convatlas.detection.sliding_window import SlidingWindowDetector, train_window_classifier, window_count

__all__ = ["SSD", "DefaultBoxes", "L2Norm", "SSDHead", "SSDSettings", "hard_negatives", "ssd_loss", "ssd_match",
           "RetinaNet", "RetinaNetHead", "RetinaSettings", "sigmoid_focal_loss", "YOLOv1", "yolo_loss", "BackboneWithFPN", "FeaturePyramidNetwork", "MaskRCNN", "MaskRoIHeads", "mask_loss", "mask_targets",
           "paste_masks", "AnchorGenerator", "BalancedSampler", "BoxCoder", "DetectionSettings", "FastRCNNPredictor", "FasterRCNN",
           "Matcher", "MultiScaleRoIAlign", "ProposalSettings", "RPNHead", "RegionProposalNetwork", "RoIHeads",
           "RoIPool", "SlidingWindowDetector", "TwoMLPHead", "Localizer", "average_best_overlap", "base_anchors",
           "evaluate_localizer", "fast_rcnn_loss", "localization_loss", "proposal_recall",
           "train_localizer", "train_window_classifier", "window_count",
           "batched_nms", "box_area", "box_convert", "box_intersection", "box_iou", "cell_anchors", "clip_boxes",
           "generalized_box_iou", "grid_anchors", "nms", "remove_small_boxes", "roi_align", "roi_pool",
           "rois_from_boxes"]
