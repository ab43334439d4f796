"""Metrics as pure functions on tensors: nothing here trains, loads or draws.

Classification: :func:`topk_correct`, :func:`confusion_matrix`, :func:`per_class_accuracy`.
(Segmentation's mIoU family and detection's COCO/VOC mAP come with those tasks.)
"""

from convatlas.metrics.classification import confusion_matrix, per_class_accuracy, topk_correct

__all__ = ["confusion_matrix", "per_class_accuracy", "topk_correct"]
