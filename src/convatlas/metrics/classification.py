"""Classification metrics on tensors: top-k hits, the confusion matrix, per-class accuracy.

Top-k accuracy counts an example as right when its true class is among the ``k`` largest
scores (the ImageNet papers' top-5); the confusion matrix has a row per true class and a
column per predicted class, so its diagonal over its row sums is each class's accuracy.
"""

from __future__ import annotations

import torch

__all__ = ["topk_correct", "confusion_matrix", "per_class_accuracy"]


def topk_correct(scores: torch.Tensor, targets: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> list[torch.Tensor]:
    """For each ``k`` in ``ks``, how many of the (N, classes) ``scores`` have the true class among
    their ``k`` best (``k`` is capped at the number of classes)."""
    largest = min(max(ks), scores.shape[1])
    best = scores.topk(largest, dim=1).indices
    hits = best == targets[:, None]
    return [hits[:, : min(k, largest)].any(dim=1).sum() for k in ks]


def confusion_matrix(predicted: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes, num_classes) counts: row = true class, column = predicted class."""
    flat = torch.bincount(targets * num_classes + predicted, minlength=num_classes * num_classes)
    return flat.view(num_classes, num_classes)


def per_class_accuracy(confusion: torch.Tensor) -> torch.Tensor:
    """Each class's accuracy (recall) from a confusion matrix; NaN for a class with no examples."""
    totals = confusion.sum(dim=1).double()
    return torch.where(totals > 0, confusion.diagonal().double() / totals.clamp(min=1), torch.nan)
