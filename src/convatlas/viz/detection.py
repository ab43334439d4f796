"""Pictures of detections: boxes with their class and score drawn on the image, and the
precision-recall curve of each class.

Boxes are drawn by torchvision's :func:`torchvision.utils.draw_bounding_boxes`, each class in its
colour of :func:`~convatlas.viz.segmentation.class_colours` (the colours of the segmentation
pictures, so a digit has one colour everywhere). Small images (the 64x64 digit scenes) are
enlarged by a whole factor first, nearest neighbour, so that the labels can be read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from convatlas._io import atomic_save
from convatlas.viz.render import Panel, save_panels
from convatlas.viz.segmentation import class_colours

__all__ = ["draw_detections", "save_detection_figure", "plot_precision_recall"]

_DRAW_SIDE = 320  # images are enlarged to about this many pixels on their longer side


def draw_detections(image: torch.Tensor, boxes: torch.Tensor, labels: Sequence[int], classes: Sequence[str], *,
                    scores: Sequence[float] | None = None, width: int = 2,
                    masks: torch.Tensor | None = None, alpha: float = 0.45) -> np.ndarray:
    """uint8 image (C, H, W) with ``boxes`` (N, 4) xyxy, ``"class score"`` above each -> (H', W', 3)
    in [0, 1], enlarged by ``max(1, 320 // max(H, W))``. ``masks`` (N, H, W) bool: each instance's
    pixels tinted in its class colour (torchvision's ``draw_segmentation_masks``, opacity ``alpha``)."""
    from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

    if image.dtype != torch.uint8 or image.dim() != 3:
        raise ValueError(f"draw_detections takes a uint8 image (C, H, W), got {image.dtype} {tuple(image.shape)}")
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    labels = [int(v) for v in labels]
    if len(labels) != len(boxes) or (scores is not None and len(scores) != len(boxes)):
        raise ValueError(f"{len(boxes)} boxes need as many labels (got {len(labels)}) and scores")
    if any(not 0 < k < len(classes) for k in labels):
        raise ValueError(f"labels must be object classes 1..{len(classes) - 1}, got {labels}")
    factor = max(1, _DRAW_SIDE // max(image.shape[-2:]))
    rgb = image.expand(3, -1, -1) if image.shape[0] == 1 else image[:3]
    big = rgb.repeat_interleave(factor, 1).repeat_interleave(factor, 2).contiguous()
    colours = class_colours(len(classes))
    if masks is not None and len(boxes):
        masks = torch.as_tensor(masks)
        if masks.dtype != torch.bool or tuple(masks.shape) != (len(boxes), *image.shape[-2:]):
            raise ValueError(f"masks must be bool ({len(boxes)}, {image.shape[-2]}, {image.shape[-1]}), one per box, "
                             f"got {masks.dtype} {tuple(masks.shape)}")
        big_masks = masks.repeat_interleave(factor, 1).repeat_interleave(factor, 2)
        big = draw_segmentation_masks(big, big_masks, alpha=alpha,
                                      colors=[tuple(int(c) for c in colours[k]) for k in labels])
    text = [classes[k] + (f" {float(s):.2f}" if scores is not None else "") for k, s in
            zip(labels, scores if scores is not None else [None] * len(labels))]
    drawn = draw_bounding_boxes(big, boxes * factor, labels=text,
                                colors=[tuple(int(c) for c in colours[k]) for k in labels], width=width) \
        if len(boxes) else big
    return drawn.permute(1, 2, 0).numpy().astype(np.float64) / 255


def save_detection_figure(path: str | os.PathLike, image: torch.Tensor, prediction: Mapping[str, torch.Tensor],
                          classes: Sequence[str], *, truth: Mapping[str, torch.Tensor] | None = None,
                          title: str = "") -> Path:
    """(Ground truth |) detections with scores, in one figure (.png, .svg or .pdf)."""
    panels = []
    if truth is not None:
        panels.append(Panel("ground truth", draw_detections(image, truth["boxes"], truth["labels"].tolist(), classes)))
    found = len(prediction["boxes"])
    panels.append(Panel(f"detections ({found})", draw_detections(image, prediction["boxes"],
                                                                 prediction["labels"].tolist(), classes,
                                                                 scores=prediction["scores"].tolist(),
                                                                 masks=prediction.get("masks"))))
    return save_panels(panels, path, title)


def plot_precision_recall(curves: Mapping[int, tuple[torch.Tensor, torch.Tensor]], classes: Sequence[str],
                          path: str | os.PathLike, *, ap: Mapping[str, float] | None = None,
                          title: str = "") -> Path:
    """One precision-recall curve per class (``curves``: label -> (recall, precision), as
    :func:`~convatlas.metrics.mean_average_precision` returns them with ``return_curves``), with
    its AP in the legend when ``ap`` (class name -> AP) is given."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    colours = class_colours(len(classes)).astype(np.float64) / 255
    for label, (recall, precision) in sorted(curves.items()):
        name = classes[int(label)]
        legend = name + (f" (AP {ap[name]:.3f})" if ap is not None and name in ap else "")
        ax.step(np.asarray(recall), np.asarray(precision), where="post", color=colours[int(label)], label=legend)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.01), ylim=(0, 1.01),
           title=title or "precision-recall at IoU 0.5")
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=8, loc="lower left", ncols=2)
    fmt = path.suffix.lower()[1:] or "png"
    return atomic_save(path, lambda f: fig.savefig(f, format=fmt, dpi=100))
