"""ZFNet's occlusion experiment: does the network look at the object, or at its surroundings?

Zeiler & Fergus (2013), "Visualizing and Understanding Convolutional Networks", arXiv:1311.2901,
Sec. 4.2 and Fig. 7: a grey square is slid over the image, and at each position the probability
of the correct class is recorded. If the network really uses the object, the probability drops
sharply when the square covers it, and hardly moves when it covers the background.

The square is drawn in the network's input space with the value ``fill``; the default 0 is the
dataset's mean colour after normalisation ``(x - mean) / std`` -- the "grey" of the paper.
Positions run every ``stride`` pixels from the top-left corner, ``ceil((H - window) / stride) + 1``
per side, so that the last square touches (or is cut by) the bottom / right edge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from convatlas.viz.attribution import _logits, _target

__all__ = ["OcclusionResult", "occlusion", "default_window"]


@dataclass
class OcclusionResult:
    """``probability[r, c]``: probability of ``target`` with the square's top-left corner at
    (``rows[r]``, ``cols[c]``); ``predicted[r, c]``: the most probable class there.
    ``pixel_drop`` (H, W): for each pixel, the mean over the squares covering it of
    ``base_probability - probability`` (how much hiding that pixel costs)."""

    probability: torch.Tensor
    predicted: torch.Tensor
    pixel_drop: torch.Tensor
    base_probability: float
    target: int
    window: int
    stride: int
    rows: list[int]
    cols: list[int]


def default_window(height: int, width: int) -> tuple[int, int]:
    """(window, stride): a square a quarter of the image's side, moved a quarter of its own side."""
    window = max(1, round(min(height, width) / 4))
    return window, max(1, window // 4)


def _positions(size: int, window: int, stride: int) -> list[int]:
    return [i * stride for i in range(math.ceil((size - window) / stride) + 1)]


def occlusion(
    model: nn.Module,
    x: torch.Tensor,
    target: int | None = None,
    *,
    window: int | None = None,
    stride: int | None = None,
    fill: float = 0.0,
    batch_size: int = 64,
) -> OcclusionResult:
    """Slide a ``window`` x ``window`` square of value ``fill`` over ``x`` (1, C, H, W) with step
    ``stride``; record the softmax probability of ``target`` (default: the predicted class)."""
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"occlusion takes one image of shape (1, C, H, W), got {tuple(x.shape)}")
    height, width = x.shape[2:]
    window = default_window(height, width)[0] if window is None else window
    stride = max(1, window // 4) if stride is None else stride
    if not 1 <= window <= min(height, width):
        raise ValueError(f"occlusion window must be between 1 and {min(height, width)} pixels, got {window}")
    if not 1 <= stride <= window:
        raise ValueError(f"occlusion stride must be between 1 and the window ({window}), got {stride}")
    with torch.no_grad():
        base = _logits(model, x).softmax(dim=1)
    target = _target(base, target)
    rows, cols = _positions(height, window, stride), _positions(width, window, stride)
    squares = [(r, c) for r in rows for c in cols]
    probability = torch.empty(len(squares), dtype=x.dtype)
    predicted = torch.empty(len(squares), dtype=torch.long)
    for start in range(0, len(squares), batch_size):
        chunk = squares[start : start + batch_size]
        batch = x.repeat(len(chunk), 1, 1, 1)
        for k, (r, c) in enumerate(chunk):
            batch[k, :, r : r + window, c : c + window] = fill
        with torch.no_grad():
            probs = _logits(model, batch).softmax(dim=1)
        probability[start : start + len(chunk)] = probs[:, target]
        predicted[start : start + len(chunk)] = probs.argmax(dim=1)
    drop_sum = torch.zeros(height, width, dtype=x.dtype)
    covered = torch.zeros(height, width, dtype=x.dtype)
    p_base = float(base[0, target])
    for (r, c), p in zip(squares, probability.tolist()):
        drop_sum[r : r + window, c : c + window] += p_base - p
        covered[r : r + window, c : c + window] += 1
    return OcclusionResult(
        probability=probability.view(len(rows), len(cols)),
        predicted=predicted.view(len(rows), len(cols)),
        pixel_drop=drop_sum / covered.clamp(min=1),
        base_probability=p_base,
        target=target,
        window=window,
        stride=stride,
        rows=rows,
        cols=cols,
    )
