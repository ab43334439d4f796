"""Semantic segmentation as the engine sees it: a class for every pixel.

Loss: per-pixel cross-entropy (Long, Shelhamer, Darrell 2015, arXiv:1411.4038: "a per-pixel
multinomial logistic loss"), pixels labelled ``ignore_index`` (VOC's 255 on object borders, and
pixels an augmentation brought from outside the image) left out, optional per-class weights
(SegNet's median-frequency balancing is one choice of them), and ``aux_weight`` times the loss of
each auxiliary head of a network that has them (logged per term as ``loss_main``, ``loss_aux``).

Evaluation accumulates one confusion matrix over the whole test set (not a mean of per-image
scores) and reports pixel accuracy, mean class accuracy, mean IoU and frequency-weighted IoU
(:mod:`convatlas.metrics.segmentation`); mean IoU picks the best checkpoint, and the per-class
IoU of the last evaluation goes to ``summary.json``.

A network whose output is smaller than its input (the paper's U-Net with valid convolutions:
572 -> 388) is scored against the centre of the mask, as the paper's overlap-tile strategy
does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from convatlas.data import dataset_info
from convatlas.data.datasets import UnknownDatasetError
from convatlas.data.geometry import SegmentationAugment, SegmentationPipeline
from convatlas.data.masks import SegmentationSplits, load_segmentation
from convatlas.engine import Dist, Runtime, StepOutput, Task
from convatlas.engine.distributed import all_sum
from convatlas.metrics import class_map, scores_from_confusion, segmentation_confusion
from convatlas.registry import InputTooSmallError, min_input_size, model_card
from convatlas.tasks.classification import model_channel_stats

__all__ = ["SegmentationTask", "SegmentationData", "prepare_segmentation_data", "segmentation_loss",
           "centre_crop", "evaluate_segmenter"]


def centre_crop(target: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """The centre ``size`` (h, w) of the last two dimensions of ``target``."""
    h, w = target.shape[-2:]
    th, tw = int(size[0]), int(size[1])
    if th > h or tw > w:
        raise ValueError(f"the network's output ({th}x{tw}) is larger than its input ({h}x{w}); "
                         f"a segmentation network must return at most the input's size")
    top, left = (h - th) // 2, (w - tw) // 2
    return target[..., top:top + th, left:left + tw]


def segmentation_loss(output: torch.Tensor | tuple, masks: torch.Tensor, *, ignore_index: int = 255,
                      class_weights: torch.Tensor | None = None,
                      aux_weight: float | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Per-pixel cross-entropy of the main logits (N, C, h, w) plus ``aux_weight`` x that of each
    auxiliary head. Returns the losses, the main logits and the (centre-cropped) masks they were
    scored against."""
    main, *aux = output if isinstance(output, (tuple, list)) else (output,)
    target = centre_crop(masks, main.shape[-2:]) if main.shape[-2:] != masks.shape[-2:] else masks
    weight = class_weights.to(main.device) if class_weights is not None else None
    loss = F.cross_entropy(main.float(), target, weight=weight, ignore_index=ignore_index)
    if not aux:
        return {"loss": loss}, main, target
    if aux_weight is None:
        raise ValueError("the network returned auxiliary outputs but no aux_weight is set; give one (--aux-weight)")
    main_loss, aux_loss = loss, torch.zeros((), device=loss.device)
    for head in aux:
        if head.shape[-2:] != main.shape[-2:]:
            head = F.interpolate(head, size=main.shape[-2:], mode="bilinear", align_corners=False)
        term = aux_weight * F.cross_entropy(head.float(), target, weight=weight, ignore_index=ignore_index)
        loss = loss + term
        aux_loss = aux_loss + term.detach()
    return {"loss": loss, "loss_main": main_loss.detach(), "loss_aux": aux_loss}, main, target


@torch.no_grad()
def evaluate_segmenter(model: nn.Module, pipeline: SegmentationPipeline, images: torch.Tensor, masks: torch.Tensor,
                       num_classes: int, *, ignore_index: int = 255, batch_size: int = 64, amp: bool = False,
                       env: Dist | None = None,
                       refine: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> dict[str, Any]:
    """The scores of ``model`` on uint8 ``images`` and their ``masks``, from one confusion matrix
    over all of them (each rank counts its share ``r::world``; the counts are added).

    ``refine(logits, images) -> labels``, when given, turns each batch's float logits
    ``(B, C, h, w)`` and its uint8 images (cropped to ``h x w`` where the network's map is smaller)
    into refined class maps ``(B, h, w)`` - e.g. the dense CRF - scored into a second confusion
    matrix, ``"refined_confusion"``, from the same forward passes."""
    env = env or Dist()
    device = pipeline.device
    was_training = model.training
    model.eval()
    index = torch.arange(env.rank, len(images), env.world_size)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    loss_sum = torch.zeros(2, dtype=torch.float64, device=device)  # summed loss, labelled pixels
    refined = torch.zeros_like(confusion)
    for start in range(0, len(index), batch_size):
        idx = index[start:start + batch_size]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(pipeline.eval_input(images[idx]))
        logits = logits.float()
        target = masks[idx].to(device).long()
        if logits.shape[-2:] != target.shape[-2:]:
            target = centre_crop(target, logits.shape[-2:])
        labelled = (target != ignore_index).sum()
        loss_sum += torch.stack([F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="sum").double(),
                                 labelled.double()])
        confusion += segmentation_confusion(class_map(logits), target, num_classes, ignore_index)
        if refine is not None:
            shown = images[idx]
            if shown.shape[-2:] != logits.shape[-2:]:  # a valid-convolution U-Net scores its centre
                shown = centre_crop(shown, logits.shape[-2:])
            refined += segmentation_confusion(refine(logits, shown).to(device), target, num_classes, ignore_index)
    all_sum(confusion, env)
    all_sum(loss_sum, env)
    model.train(was_training)
    scores = scores_from_confusion(confusion.cpu())
    out = {"loss": float(loss_sum[0]) / max(float(loss_sum[1]), 1.0), **scores, "confusion": confusion.cpu()}
    if refine is not None:
        all_sum(refined, env)
        out["refined_confusion"] = refined.cpu()
    return out


# ---------------------------------------------------------------------------------------------
# Data a network can take


@dataclass
class SegmentationData:
    """Splits ready for a network: per-model-channel normalisation, the model's channels, the
    ignore index, and notes for the user."""

    splits: SegmentationSplits
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channels: int
    notes: list[str]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.splits.train.images.shape[-2:])  # type: ignore[return-value]


def _is_classification_dataset(name: str) -> bool:
    try:
        dataset_info(name)
    except UnknownDatasetError:
        return False
    return True


def prepare_segmentation_data(model: str, variant_args: dict[str, Any], data: str, *,
                              root: str | os.PathLike | None = None, image_size: int | None = None,
                              num_classes: int | None = None, download: bool = True,
                              options: dict[str, Any] | None = None) -> SegmentationData:
    """Load the segmentation dataset ``data`` (``"digit-scenes"``, a VOC folder, an
    ``images/`` + ``masks/`` folder) for ``model``, checking sizes and classes first."""
    card = model_card(model)
    if card.task != "segmentation":
        raise ValueError(f"{card.name} is a {card.task} network; segmentation data ({data!r}) needs a segmentation "
                         f"network (`convatlas list --task segmentation`)")
    if _is_classification_dataset(data):
        raise ValueError(f"{data!r} is a classification dataset (one label per image); {card.name} is a segmentation "
                         f"network and needs a mask per image: digit-scenes (the default), voc, or a VOC / "
                         f"images+masks folder")
    splits = load_segmentation(data, root=root, image_size=image_size, download=download, **(options or {}))
    classes = len(splits.classes)
    if num_classes is not None and num_classes != classes:
        raise ValueError(f"num_classes={num_classes} differs from the {classes} classes of dataset {splits.name!r} "
                         f"({', '.join(splits.classes[:12])}{', ...' if classes > 12 else ''}); leave num_classes "
                         f"out to use the dataset's")
    h, w = splits.train.images.shape[-2:]
    try:
        smallest = min_input_size(card.name, num_classes=classes, **variant_args)
    except ValueError:
        smallest = None  # not traceable on the meta device: let the forward pass speak
    if smallest is not None and min(h, w) < smallest:
        raise InputTooSmallError(f"{splits.name} images are {h}x{w}; {card.name} needs at least {smallest}x{smallest} "
                                 f"pixels (choose a larger --image-size)")
    notes: list[str] = list(splits.notes)
    channels = card.input_size[0]
    mean, std = model_channel_stats(splits, channels, card.name, notes)
    return SegmentationData(splits, mean, std, channels, notes)


# ---------------------------------------------------------------------------------------------
# The task


class SegmentationTask(Task):
    """Images and per-pixel masks in memory; per-pixel cross-entropy; mean IoU picks the best epoch."""

    name = "segmentation"
    metric_names = ("loss", "miou", "pixel_acc", "mean_acc", "fwiou")
    primary = "miou"
    higher_is_better = True
    percent = ("miou", "pixel_acc", "mean_acc", "fwiou")
    metric_label = "mean IoU"

    def __init__(self, data: SegmentationData, augment: SegmentationAugment | None = None, *,
                 class_weights: Sequence[float] | None = None, aux_weight: float | None = None) -> None:
        self.data = data
        self.augment = augment or SegmentationAugment()
        self.num_classes = len(data.splits.classes)
        self.ignore_index = data.splits.ignore_index
        if class_weights is not None and len(class_weights) != self.num_classes:
            raise ValueError(f"class_weights needs one weight per class ({self.num_classes}), got {len(class_weights)}")
        self.class_weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights is not None else None
        self.aux_weight = aux_weight
        self.pipeline: SegmentationPipeline | None = None
        self._details: dict[str, Any] = {}

    @property
    def num_train(self) -> int:
        return len(self.data.splits.train.images)

    def setup(self, runtime: Runtime, env: Dist, seed: int) -> None:
        d = self.data
        self.pipeline = SegmentationPipeline(mean=d.mean, std=d.std, channels=d.channels, augment=self.augment,
                                             device=runtime.device, seed=seed, ignore_index=self.ignore_index,
                                             channels_last=runtime.channels_last)
        self.images = d.splits.train.images.to(runtime.device)
        self.masks = d.splits.train.masks.to(runtime.device)

    def train_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.pipeline.train_batch(self.images[indices], self.masks[indices])

    def training_step(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> StepOutput:
        x, masks = batch
        losses, logits, target = segmentation_loss(model(x), masks, ignore_index=self.ignore_index,
                                                   class_weights=self.class_weights, aux_weight=self.aux_weight)
        labelled = target != self.ignore_index
        hit = class_map(logits.detach()) == target
        if self.ignore_index < self.num_classes:  # else no predicted class equals the ignore index: one op less
            hit &= labelled
        return StepOutput(losses, {"correct_pixels": hit.sum(), "pixels": labelled.sum()})

    def train_metrics(self, counts: dict[str, float], seen: int) -> dict[str, float]:
        return {"pixel_acc": counts["correct_pixels"] / max(counts["pixels"], 1)}

    def evaluate(self, model: nn.Module, env: Dist, batch_size: int, amp: bool) -> dict[str, float]:
        test = self.data.splits.test
        result = evaluate_segmenter(model, self.pipeline, test.images, test.masks, self.num_classes,
                                    ignore_index=self.ignore_index, batch_size=min(batch_size, 64), amp=amp, env=env)  # maps, not logits: smaller batches
        classes = list(self.data.splits.classes)
        self._details = {"iou": dict(zip(classes, result["iou"])), "acc": dict(zip(classes, result["acc"]))}
        return {k: result[k] for k in self.metric_names}

    def details(self) -> dict[str, Any]:
        return self._details

    def state_dict(self) -> dict[str, Any]:
        return {"pipeline": self.pipeline.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pipeline.load_state_dict(state["pipeline"])
