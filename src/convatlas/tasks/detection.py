"""Object detection as the engine sees it: boxes and classes for every object of an image.

A detector is a module that, in training mode, takes ``(images, targets)`` - the normalised float
batch and one dict per image with ``"boxes"`` ``(M, 4)`` xyxy and ``"labels"`` ``(M,)`` - and
returns a dict of loss terms (Faster R-CNN's ``loss_objectness``, ``loss_rpn_box_reg``,
``loss_classifier``, ``loss_box_reg``); in eval mode it takes the images and returns one dict per
image with ``"boxes"``, ``"scores"`` and ``"labels"``. The task backpropagates the sum of the
terms and logs each (``train_loss_classifier`` ...).

Augmentation moves the boxes with their image through the one geometry module
(:class:`~convatlas.data.geometry.SegmentationPipeline`): zoom, rotation, crop, shift and flip by
one map per image; a box is clipped to the new image and dropped when less than
``MIN_BOX_SIZE`` pixels of it remain in width or height.

Evaluation runs the detector over the whole test split and scores it with
:func:`convatlas.metrics.mean_average_precision` under COCO's protocol (``map`` = mAP@[.5:.95],
``map50``, ``map75``, by size, ``mar_100``) and VOC's 11-point protocol (``map_voc07``), all
fractions; COCO's mAP picks the best checkpoint, and the per-class AP of the last evaluation goes
to ``summary.json`` (``test_ap``, ``test_ap50``). ``difficult`` boxes count as VOC's do, ``iscrowd``
as COCO's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from convatlas.data.boxes import BoxSet, DetectionSplits, load_detection
from convatlas.data.geometry import SegmentationAugment, SegmentationPipeline
from convatlas.engine import Dist, Runtime, StepOutput, Task
from convatlas.metrics import mean_average_precision
from convatlas.registry import InputTooSmallError, model_card
from convatlas.tasks.classification import model_channel_stats
from convatlas.tasks.segmentation import SegmentationData

__all__ = ["DetectionTask", "DetectionData", "prepare_detection_data", "detect", "detection_scores",
           "image_targets", "require_instances", "MIN_BOX_SIZE", "MASK_METRICS"]

MIN_BOX_SIZE = 2.0  # pixels: an augmented box narrower or lower than this is dropped
MASK_METRICS = ("mask_map", "mask_map50", "mask_map75")  # Mask R-CNN's COCO mask AP, beside the box AP


def image_targets(data: BoxSet, indices: Sequence[int] | torch.Tensor,
                  device: torch.device | str | None = None, *, masks: bool = False) -> list[dict[str, torch.Tensor]]:
    """The ground truth of images ``indices`` of ``data``, one dict per image with ``boxes``,
    ``labels``, ``difficult`` and ``iscrowd`` (the format of :func:`mean_average_precision`);
    ``masks=True`` adds each instance's ``masks`` ``(M, H, W)`` bool (the dataset must have them)."""
    if masks:
        require_instances(data, "masks of the ground truth")
    out = []
    for i in (indices.tolist() if isinstance(indices, torch.Tensor) else list(indices)):
        t = data.target(int(i))
        item = {k: t[k] for k in ("boxes", "labels", "difficult", "iscrowd")}
        if masks:
            count = int(data.offsets[int(i) + 1] - data.offsets[int(i)])
            ids = torch.arange(1, count + 1, dtype=data.instances.dtype)
            item["masks"] = data.instances[int(i)][None] == ids[:, None, None]
        out.append({k: v.to(device) if device is not None else v for k, v in item.items()})
    return out


def require_instances(data: BoxSet, what: str) -> None:
    """A clear error unless ``data`` has instance masks."""
    if data.instances is None:
        raise ValueError(f"{what} need instance masks, and this dataset has only boxes: use digit-scenes, a COCO "
                         f"folder with polygon or RLE segmentations, or a box detector (faster_rcnn_mini)")


@torch.no_grad()
def detect(model: nn.Module, pipeline: SegmentationPipeline, images: torch.Tensor, *, batch_size: int = 64,
           amp: bool = False, mask_scores: bool = False) -> list[dict[str, torch.Tensor]]:
    """The detections of ``model`` (put in eval mode for the call) on uint8 ``images`` ``(N, C, H, W)``,
    one dict per image, on the CPU. Mask R-CNN's bool ``masks`` stay bool; its pasted
    probabilities (``mask_scores``, four bytes a pixel per detection) are kept only if asked."""
    was_training = model.training
    model.eval()
    device = pipeline.device
    out: list[dict[str, torch.Tensor]] = []
    try:
        for start in range(0, len(images), batch_size):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                found = model(pipeline.eval_input(images[start:start + batch_size]))
            out.extend({k: v.cpu() if k == "labels" or v.dtype == torch.bool else v.detach().float().cpu()
                        for k, v in d.items() if mask_scores or k != "mask_scores"} for d in found)
    finally:
        model.train(was_training)
    return out


def detection_scores(preds: Sequence[dict[str, torch.Tensor]], targets: Sequence[dict[str, torch.Tensor]],
                     classes: Sequence[str], *, masks: bool = False
                     ) -> tuple[dict[str, float], dict[str, Any], dict[str, Any]]:
    """COCO and VOC07 scores (fractions) of ``preds`` against ``targets``, the per-class AP
    (COCO mAP@[.5:.95] as ``ap``, VOC07 AP@0.5 as ``ap50``) by class name (-1 where a class has no
    ground truth), and :func:`mean_average_precision`'s whole results (``"coco"``, ``"voc07"``).

    ``masks=True`` (Mask R-CNN; ``masks`` in both) adds COCO's mask AP (``iou_type="segm"``):
    ``mask_map``, ``mask_map50``, ``mask_map75``, per class ``mask_ap``, and ``"segm"``."""
    coco = mean_average_precision(preds, targets, protocol="coco", class_metrics=True)
    voc = mean_average_precision(preds, targets, protocol="voc07", class_metrics=True)
    metrics = {"map": float(coco["map"]), "map50": float(coco["map_50"]), "map75": float(coco["map_75"]),
               "map_small": float(coco["map_small"]), "map_medium": float(coco["map_medium"]),
               "map_large": float(coco["map_large"]), "mar_100": float(coco["mar_100"]),
               "map_voc07": float(voc["map"])}
    raw = {"coco": coco, "voc07": voc}
    if masks:
        raw["segm"] = mean_average_precision(preds, targets, protocol="coco", iou_type="segm", class_metrics=True)
        metrics.update(mask_map=float(raw["segm"]["map"]), mask_map50=float(raw["segm"]["map_50"]),
                       mask_map75=float(raw["segm"]["map_75"]))

    def by_name(result: dict[str, Any]) -> dict[str, float]:
        labels = result["classes"].reshape(-1).tolist()
        values = result["map_per_class"].reshape(-1).tolist()
        named = {classes[int(k)]: float(v) for k, v in zip(labels, values) if 0 < int(k) < len(classes)}
        return {name: named.get(name, -1.0) for name in classes[1:]}

    per_class = {"ap": by_name(coco), "ap50": by_name(voc)}
    if masks:
        per_class["mask_ap"] = by_name(raw["segm"])
    return metrics, per_class, raw


# ---------------------------------------------------------------------------------------------
# Data a network can take


@dataclass
class DetectionData(SegmentationData):
    """Splits ready for a detector: segmentation's fields (per-model-channel normalisation, the
    model's channels, notes for the user, ``image_size``) over detection splits."""

    splits: DetectionSplits


def prepare_detection_data(model: str, data: str, *, image_size: int | None = None,
                           num_classes: int | None = None, options: dict[str, Any] | None = None,
                           root: str | os.PathLike | None = None) -> DetectionData:
    """Load the detection dataset ``data`` (``"digit-scenes"`` or a VOC / COCO / YOLO folder) for
    ``model``, checking the image size and the classes first."""
    card = model_card(model)
    if card.task != "detection":
        raise ValueError(f"{card.name} is a {card.task} network; detection data ({data!r}) needs a detector "
                         f"(`convatlas list --task detection`)")
    splits = load_detection(data, image_size=image_size, root=root, **(options or {}))
    classes = len(splits.classes)
    if num_classes is not None and num_classes != classes:
        raise ValueError(f"num_classes={num_classes} differs from the {classes} classes of dataset {splits.name!r} "
                         f"(background, {', '.join(splits.classes[1:12])}{', ...' if classes > 12 else ''}); leave "
                         f"num_classes out to use the dataset's")
    h, w = splits.train.images.shape[-2:]
    smallest = card.extra.get("min_input") if card.extra else None
    if smallest is not None and min(h, w) < smallest:
        raise InputTooSmallError(f"{splits.name} images are {h}x{w}; {card.name} needs at least "
                                 f"{smallest}x{smallest} pixels (choose a larger --image-size)")
    notes: list[str] = list(splits.notes)
    channels = card.input_size[0]
    mean, std = model_channel_stats(splits, channels, card.name, notes)
    return DetectionData(splits, mean, std, channels, notes)


# ---------------------------------------------------------------------------------------------
# The task


class DetectionTask(Task):
    """Images and boxes in memory; the detector's own losses; COCO mAP picks the best epoch."""

    name = "detection"
    metric_names = ("map", "map50", "map75", "map_small", "map_medium", "map_large", "mar_100", "map_voc07")
    primary = "map"
    higher_is_better = True
    percent = metric_names
    metric_label = "COCO mAP@[.5:.95]"

    def __init__(self, data: DetectionData, augment: SegmentationAugment | None = None, *,
                 masks: bool = False) -> None:
        self.data = data
        self.augment = augment or SegmentationAugment()
        self.masks = bool(masks)
        if self.masks:  # Mask R-CNN: instance masks in the targets, mask AP in the scores
            require_instances(data.splits.train, "Mask R-CNN's training targets")
            require_instances(data.splits.test, "Mask R-CNN's mask AP")
            self.metric_names = type(self).metric_names + MASK_METRICS
            self.percent = self.metric_names
        self.classes = list(data.splits.classes)
        self.pipeline: SegmentationPipeline | None = None
        self._details: dict[str, Any] = {}

    @property
    def num_train(self) -> int:
        return len(self.data.splits.train)

    def setup(self, runtime: Runtime, env: Dist, seed: int) -> None:
        d = self.data
        self.pipeline = SegmentationPipeline(mean=d.mean, std=d.std, channels=d.channels, augment=self.augment,
                                             device=runtime.device, seed=seed, channels_last=runtime.channels_last)
        train = d.splits.train
        self.images = train.images.to(runtime.device)
        self.boxes = train.boxes.to(runtime.device)
        self.labels = train.labels.to(runtime.device)
        self.offsets = train.offsets.to(runtime.device)
        self.instances = train.instances.to(runtime.device) if self.masks else None

    def _instances(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows of the instances of images ``indices`` and, for each, its place in the batch."""
        offsets, rows = self.data.splits.train.instance_rows(indices.cpu())
        batch_index = torch.repeat_interleave(torch.arange(len(indices)), offsets.diff())
        device = self.boxes.device
        return rows.to(device), batch_index.to(device)

    def train_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
        rows, batch_index = self._instances(indices)
        instances = self.instances[indices] if self.masks else None
        batch = self.pipeline.augment_batch(self.images[indices], instances, boxes=self.boxes[rows],
                                            box_index=batch_index, box_min_size=MIN_BOX_SIZE)
        labels = self.labels[rows][batch.keep]
        per_image = torch.bincount(batch.box_index, minlength=len(indices)).tolist()
        targets = [{"boxes": b, "labels": lb} for b, lb in zip(batch.boxes.split(per_image), labels.split(per_image))]
        if self.masks:  # instance j of an image is the pixels of value j + 1 of its warped instance map
            ids = (rows - self.offsets[indices.to(rows.device)][batch_index] + 1)[batch.keep]
            masks = batch.masks[batch.box_index] == ids[:, None, None]
            for target, m in zip(targets, masks.split(per_image)):
                target["masks"] = m
        return batch.images, targets

    def training_step(self, model: nn.Module, batch: tuple[torch.Tensor, list[dict[str, torch.Tensor]]]) -> StepOutput:
        images, targets = batch
        terms = model(images, targets)
        if not isinstance(terms, dict) or not terms:
            raise TypeError(f"a detector in training mode must return a dict of losses, got {type(terms).__name__}")
        total = sum(terms.values())
        return StepOutput({"loss": total, **{k: v.detach() for k, v in terms.items()}})

    def evaluate(self, model: nn.Module, env: Dist, batch_size: int, amp: bool) -> dict[str, float]:
        # mAP ranks every detection of the split at once: each rank scores the whole test split
        test = self.data.splits.test
        preds = detect(model, self.pipeline, test.images, batch_size=min(batch_size, 64), amp=amp)
        targets = image_targets(test, range(len(test)), masks=self.masks)
        metrics, self._details, _ = detection_scores(preds, targets, self.classes, masks=self.masks)
        return metrics

    def details(self) -> dict[str, Any]:
        return self._details

    def state_dict(self) -> dict[str, Any]:
        return {"pipeline": self.pipeline.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pipeline.load_state_dict(state["pipeline"])
