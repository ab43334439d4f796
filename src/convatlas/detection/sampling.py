"""Which predictions learn from which ground-truth box, and which few of them are in a minibatch.

**Matching** (Ren et al. 2015, arXiv:1506.01497, Sec. 3.1.2): an anchor is positive if its IoU with
some ground-truth box is above ``high_threshold`` (0.7 for the RPN), negative if its best IoU is
below ``low_threshold`` (0.3), and ignored in between; and, so that every object has an anchor,
"the anchor/anchors with the highest IoU overlap with a ground-truth box" is positive too
(``allow_low_quality_matches``). Fast R-CNN's second stage uses one threshold (0.5 = 0.5: IoU
>= 0.5 is foreground, below is background; Girshick 2015, arXiv:1504.08083, Sec. 2.3).

**Sampling** (Fast R-CNN Sec. 2.3; Faster R-CNN Sec. 3.1.3): from each image, a minibatch of
``batch_size_per_image`` predictions (256 anchors for the RPN, 128 or 512 RoIs for the head) with
at most ``positive_fraction`` (0.5, 0.25) positives, the rest filled with negatives — because
negatives dominate, and a loss over all of them would learn only "background".
"""

from __future__ import annotations

from typing import Sequence

import torch

from convatlas._checks import fraction, non_negative, positive_int

__all__ = ["BELOW_LOW_THRESHOLD", "BETWEEN_THRESHOLDS", "BalancedSampler", "Matcher"]

BELOW_LOW_THRESHOLD = -1  # background
BETWEEN_THRESHOLDS = -2  # ignored in the loss


class Matcher:
    """Match each prediction (column of an IoU matrix) to a ground-truth box (row).

    ``matcher(iou)`` with ``iou`` of shape ``(G, N)`` (G ground-truth boxes, N predictions) returns
    ``(N,)`` int64: for prediction ``j`` the row ``i = argmax_i iou[i, j]`` (the first on ties) if
    ``iou[i, j] >= high_threshold``; ``-1`` (:data:`BELOW_LOW_THRESHOLD`) if that best IoU is
    ``< low_threshold``; ``-2`` (:data:`BETWEEN_THRESHOLDS`) in between.

    With ``allow_low_quality_matches``, each ground-truth box's best predictions (every column
    ``j`` where ``iou[i, j] == max_j iou[i, j]``, ties included) get their match back even when below
    ``high_threshold`` — the match is the prediction's own argmax ``i``, which is the box that found
    it unless the prediction overlaps another box more (Detectron's and torchvision's rule).

    An image with no ground-truth boxes (G = 0) makes every prediction background (-1).
    """

    def __init__(self, high_threshold: float, low_threshold: float, allow_low_quality_matches: bool = False):
        non_negative("high_threshold", high_threshold)
        non_negative("low_threshold", low_threshold)
        if low_threshold > high_threshold:
            raise ValueError(f"low_threshold ({low_threshold}) must not exceed high_threshold ({high_threshold})")
        self.high_threshold = high_threshold
        self.low_threshold = low_threshold
        self.allow_low_quality_matches = bool(allow_low_quality_matches)

    def __repr__(self) -> str:
        return (f"Matcher(high_threshold={self.high_threshold}, low_threshold={self.low_threshold}, "
                f"allow_low_quality_matches={self.allow_low_quality_matches})")

    def __call__(self, iou: torch.Tensor) -> torch.Tensor:
        if iou.dim() != 2:
            raise ValueError(f"the match quality matrix must be (ground truth, predictions), got {tuple(iou.shape)}")
        num_gt, num_pred = iou.shape
        if num_gt == 0:
            return torch.full((num_pred,), BELOW_LOW_THRESHOLD, dtype=torch.int64, device=iou.device)
        best, matches = iou.max(dim=0)
        best_match = matches.clone()
        matches[best < self.low_threshold] = BELOW_LOW_THRESHOLD
        matches[(best >= self.low_threshold) & (best < self.high_threshold)] = BETWEEN_THRESHOLDS
        if self.allow_low_quality_matches and num_pred:
            best_per_gt = iou.max(dim=1).values
            is_best = (iou == best_per_gt[:, None]).any(dim=0)  # a best prediction of some box
            matches = torch.where(is_best, best_match, matches)
        return matches


class BalancedSampler:
    """Choose ``batch_size_per_image`` training examples per image, at most ``positive_fraction`` of
    them positive (Fast R-CNN Sec. 2.3).

    ``sampler(labels)`` takes one ``(N_i,)`` label tensor per image (``>= 1`` positive, ``0``
    negative, ``< 0`` ignored) and returns ``(positive_masks, negative_masks)``, two lists of bool
    tensors of the same shapes. Per image::

        n_pos = min(#positives, int(batch_size_per_image * positive_fraction))
        n_neg = min(#negatives, batch_size_per_image - n_pos)

    chosen uniformly without replacement (``torch.randperm`` over the positives, then over the
    negatives, from ``generator`` or PyTorch's global generator): with the same seed the same
    choice as torchvision's ``BalancedPositiveNegativeSampler``.
    """

    def __init__(self, batch_size_per_image: int, positive_fraction: float):
        self.batch_size_per_image = positive_int("batch_size_per_image", batch_size_per_image)
        self.positive_fraction = fraction("positive_fraction", positive_fraction, closed=True)

    def __repr__(self) -> str:
        return f"BalancedSampler(batch_size_per_image={self.batch_size_per_image}, positive_fraction={self.positive_fraction})"

    @staticmethod
    def _choose(candidates: torch.Tensor, count: int, generator: torch.Generator | None) -> torch.Tensor:
        """``count`` of ``candidates`` in a random order (the first of a random permutation)."""
        device = generator.device if generator is not None else candidates.device
        order = torch.randperm(candidates.numel(), generator=generator, device=device)
        return candidates[order[:count].to(candidates.device)]

    def __call__(self, labels: Sequence[torch.Tensor],
                 generator: torch.Generator | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        if isinstance(labels, torch.Tensor):
            raise ValueError("labels must be a list with one (N_i,) tensor per image, got a single tensor; "
                             "wrap it in a list")
        positive_masks, negative_masks = [], []
        for image_labels in labels:
            positives = torch.where(image_labels >= 1)[0]
            negatives = torch.where(image_labels == 0)[0]
            n_pos = min(positives.numel(), int(self.batch_size_per_image * self.positive_fraction))
            n_neg = min(negatives.numel(), self.batch_size_per_image - n_pos)
            positive = torch.zeros_like(image_labels, dtype=torch.bool)
            negative = torch.zeros_like(image_labels, dtype=torch.bool)
            positive[self._choose(positives, n_pos, generator)] = True
            negative[self._choose(negatives, n_neg, generator)] = True
            positive_masks.append(positive)
            negative_masks.append(negative)
        return positive_masks, negative_masks
