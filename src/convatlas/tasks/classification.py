"""Classification as the engine sees it: an image batch -> cross-entropy; evaluation -> top-1,
top-5, loss and the confusion matrix.

Loss: cross-entropy with optional label smoothing (Szegedy et al. 2016, arXiv:1512.00567);
networks with auxiliary classifiers add ``aux_weight`` times each auxiliary loss (GoogLeNet,
Szegedy et al. 2014, arXiv:1409.4842: weight 0.3), logged per term (``loss_main``,
``loss_aux``). Images stay in memory as uint8 on the training device and are augmented in whole
batches (:class:`~convatlas.data.BatchPipeline`).

:func:`prepare_data` loads a dataset at a size the network can take (LeNet-5's 28x28 digits are
padded to its 32x32 input, as in the paper) and says what it changed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from convatlas.data import BatchPipeline, DatasetSplits, dataset_info, load_dataset, resize_images
from convatlas.data.augment import AugmentConfig, adapt_channels, to_float
from convatlas.data.datasets import SplitsShape, UnknownDatasetError, channel_stats
from convatlas.engine import Dist, Runtime, StepOutput, Task
from convatlas.engine.distributed import all_sum
from convatlas.metrics import confusion_matrix, topk_correct
from convatlas.registry import InputTooSmallError, min_input_size, model_card

__all__ = ["ClassificationTask", "ClassificationData", "prepare_data", "cross_entropy_loss", "evaluate_classifier"]


def loss_terms(output: torch.Tensor | tuple, targets: torch.Tensor, label_smoothing: float = 0.0,
               aux_weight: float | None = 0.3) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Cross-entropy of the main logits plus ``aux_weight`` x that of each auxiliary head.

    ``targets`` are class indices or soft targets (N, classes). Returns the losses (``"loss"``,
    and for auxiliary heads its terms ``"loss_main"`` and ``"loss_aux"``) and the main logits.
    """
    main, *aux = output if isinstance(output, (tuple, list)) else (output,)
    loss = F.cross_entropy(main.float(), targets, label_smoothing=label_smoothing)
    if not aux:
        return {"loss": loss}, main
    if aux_weight is None:
        raise ValueError("the network returned auxiliary outputs but no aux_weight is set; give one (--aux-weight)")
    main_loss, aux_loss = loss, torch.zeros((), device=loss.device)
    for head in aux:
        term = aux_weight * F.cross_entropy(head.float(), targets, label_smoothing=label_smoothing)
        loss = loss + term
        aux_loss = aux_loss + term.detach()
    return {"loss": loss, "loss_main": main_loss.detach(), "loss_aux": aux_loss}, main


def cross_entropy_loss(output: torch.Tensor | tuple, targets: torch.Tensor, label_smoothing: float = 0.0,
                       aux_weight: float | None = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, main logits) of :func:`loss_terms`."""
    terms, main = loss_terms(output, targets, label_smoothing, aux_weight)
    return terms["loss"], main


@torch.no_grad()
def evaluate_classifier(model: nn.Module, pipeline: BatchPipeline, images: torch.Tensor, labels: torch.Tensor,
                        num_classes: int, *, batch_size: int = 1000, amp: bool = False,
                        env: Dist | None = None) -> dict[str, Any]:
    """Top-1, top-5, mean loss and confusion matrix of ``model`` on uint8 ``images``.

    With several processes each rank evaluates its share (``r::world``) and the sums are added.
    """
    env = env or Dist()
    device = pipeline.device
    was_training = model.training
    model.eval()
    index = torch.arange(env.rank, len(labels), env.world_size)
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top-1, top-5, count
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    for start in range(0, len(index), batch_size):
        idx = index[start:start + batch_size]
        y = labels[idx].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(pipeline.eval_input(images[idx]))
        logits = logits.float()
        top1, top5 = topk_correct(logits, y, (1, 5))
        sums += torch.stack([F.cross_entropy(logits, y, reduction="sum").double(), top1.double(), top5.double(),
                             torch.tensor(float(len(idx)), dtype=torch.float64, device=device)])
        confusion += confusion_matrix(logits.argmax(1), y, num_classes)
    all_sum(sums, env)
    all_sum(confusion, env)
    model.train(was_training)
    n = max(float(sums[3]), 1.0)
    return {"loss": float(sums[0]) / n, "acc": float(sums[1]) / n, "top5": float(sums[2]) / n,
            "count": int(sums[3]), "confusion": confusion.cpu()}


# ---------------------------------------------------------------------------------------------
# Data at a size and in the channels the network takes


@dataclass
class ClassificationData:
    """A dataset ready for a network: the splits, per-model-channel normalisation, how images were
    fitted to the input (``"resize"`` or ``"pad"``), the model's channels, and notes for the user."""

    splits: DatasetSplits
    mean: tuple[float, ...]
    std: tuple[float, ...]
    fit: str
    channels: int
    notes: list[str]

    @property
    def image_size(self) -> int:
        return self.splits.image_size[0]


def _smallest_side(model: str, variant_args: dict[str, Any], num_classes: int | None) -> int | None:
    try:
        return min_input_size(model, num_classes=num_classes, **variant_args)
    except ValueError:
        return None  # not traceable on the meta device: let the forward pass speak


def prepare_data(model: str, variant_args: dict[str, Any], data: str, *, root: str | os.PathLike | None = None,
                 image_size: int | None = None, fit: str = "auto", num_classes: int | None = None,
                 download: bool = True) -> ClassificationData:
    """Load ``data`` at a size ``model`` can take, checking size and classes first.

    ``fit="auto"`` pads when the images are raised to the network's minimum (LeNet-5's 28->32) and
    resizes otherwise."""
    card = model_card(model)  # unknown model: UnknownModelError with close names
    notes: list[str] = []
    try:
        info = dataset_info(data)
    except UnknownDatasetError:
        info = None  # an ImageFolder path (load_dataset checks it)
    smallest = _smallest_side(model, variant_args, num_classes or (info.num_classes if info else None))
    if image_size is not None and smallest is not None and image_size < smallest:
        raise InputTooSmallError(
            f"image_size {image_size} is too small for {model}: it needs images of at least "
            f"{smallest}x{smallest} pixels (use --image-size {smallest} or larger)"
        )
    size = image_size
    if size is None and info is not None and smallest is not None and info.size < smallest:
        size = smallest
    raised = image_size is None and size is not None
    chosen_fit = fit if fit != "auto" else ("pad" if raised else "resize")
    splits = load_dataset(data, root=root, image_size=size, download=download, fit=chosen_fit)
    h, w = (info.size, info.size) if raised and info is not None else splits.image_size
    if image_size is None and smallest is not None and min(splits.image_size) < smallest:  # ImageFolder
        size, raised = smallest, True
        chosen_fit = fit if fit != "auto" else "pad"
        splits.train.images = resize_images(splits.train.images, size, chosen_fit)
        splits.test.images = resize_images(splits.test.images, size, chosen_fit)
    if raised:
        how = "padded (centred on black)" if chosen_fit == "pad" else "resized"
        notes.append(f"{splits.name} images are {h}x{w}; {model} needs at least {smallest}x{smallest}: "
                     f"{how} to {size}x{size} (choose with --image-size and --fit)")
    if num_classes is not None and num_classes != splits.num_classes:
        raise ValueError(
            f"num_classes={num_classes} differs from the {splits.num_classes} classes of dataset "
            f"{splits.name!r}; leave num_classes out to use the dataset's"
        )
    channels = card.input_size[0]
    mean, std = model_channel_stats(splits, channels, model, notes)
    return ClassificationData(splits, mean, std, chosen_fit, channels, notes)


def model_channel_stats(splits: SplitsShape, channels: int, model: str,
                        notes: list[str]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per model-channel mean/std of a dataset's splits (classification's or segmentation's): the
    dataset's, repeated for grey->RGB, recomputed on the grey images for RGB->grey; a mismatch
    of channels adds a note for the user."""
    if splits.in_channels == channels:
        return tuple(splits.mean), tuple(splits.std)
    notes.append(f"{splits.name} has {splits.in_channels}-channel images; {model} takes {channels}: "
                 f"{'repeated to RGB' if channels == 3 else 'converted to grey (BT.601 luma)'}")
    if splits.in_channels == 1:
        return tuple(splits.mean) * channels, tuple(splits.std) * channels
    grey = adapt_channels(to_float(splits.train.images[:10000]), channels)
    return channel_stats((grey * 255).round().to(torch.uint8))


# ---------------------------------------------------------------------------------------------
# The task


class ClassificationTask(Task):
    """Images and class labels in memory; cross-entropy in training; top-1 picks the best epoch."""

    name = "classification"
    metric_names = ("loss", "acc", "top5")
    primary = "acc"
    higher_is_better = True
    percent = ("acc", "top5")
    metric_label = "top-1 accuracy"

    def __init__(self, data: ClassificationData, augment: AugmentConfig, *, label_smoothing: float = 0.0,
                 aux_weight: float | None = None) -> None:
        self.data = data
        self.augment = augment
        self.label_smoothing = label_smoothing
        self.aux_weight = aux_weight
        self.num_classes = data.splits.num_classes
        self.pipeline: BatchPipeline | None = None

    @property
    def num_train(self) -> int:
        return len(self.data.splits.train)

    def setup(self, runtime: Runtime, env: Dist, seed: int) -> None:
        d = self.data
        self.pipeline = BatchPipeline(mean=d.mean, std=d.std, channels=d.channels, num_classes=self.num_classes,
                                      augment=self.augment, device=runtime.device, seed=seed,
                                      channels_last=runtime.channels_last)
        self.images = d.splits.train.images.to(runtime.device)
        self.labels = d.splits.train.labels.to(runtime.device)

    def train_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        labels = self.labels[indices]
        x, targets = self.pipeline.train_batch(self.images[indices], labels)
        return x, targets, labels

    def training_step(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> StepOutput:
        x, targets, labels = batch
        losses, logits = loss_terms(model(x), targets, self.label_smoothing, self.aux_weight)
        return StepOutput(losses, {"correct": (logits.detach().argmax(1) == labels).sum()})

    def train_metrics(self, counts: dict[str, float], seen: int) -> dict[str, float]:
        return {"acc": counts["correct"] / max(seen, 1)}

    def evaluate(self, model: nn.Module, env: Dist, batch_size: int, amp: bool) -> dict[str, float]:
        test = self.data.splits.test
        result = evaluate_classifier(model, self.pipeline, test.images, test.labels, self.num_classes,
                                     batch_size=batch_size, amp=amp, env=env)
        return {k: result[k] for k in self.metric_names}

    def state_dict(self) -> dict[str, Any]:
        return {"pipeline": self.pipeline.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pipeline.load_state_dict(state["pipeline"])
