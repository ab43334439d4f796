"""Metrics as pure functions on tensors: nothing here trains, loads or draws.

Classification: :func:`topk_correct`, :func:`confusion_matrix`, :func:`per_class_accuracy`.
Segmentation: :func:`segmentation_scores` (mIoU, pixel and mean accuracy, frequency-weighted IoU,
per-class IoU) from one confusion matrix (:func:`segmentation_confusion`,
:func:`scores_from_confusion`). Boxes: :func:`box_area`, :func:`box_iou` (xyxy, pixel edges).
Detection: :func:`mean_average_precision` (COCO mAP@[.5:.95] and its family, VOC07 11-point
and VOC2010+ area AP), torchmetrics' input format and key names.
"""

from convatlas.metrics.boxes import box_area, box_intersection, box_iou
from convatlas.metrics.classification import confusion_matrix, per_class_accuracy, topk_correct
from convatlas.metrics.detection import mean_average_precision
from convatlas.metrics.segmentation import class_map, scores_from_confusion, segmentation_confusion, segmentation_scores

__all__ = ["box_area", "box_intersection", "box_iou", "class_map", "confusion_matrix", "mean_average_precision",
           "per_class_accuracy", "scores_from_confusion", "segmentation_confusion", "segmentation_scores",
           "topk_correct"]
