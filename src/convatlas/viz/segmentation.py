"""Pictures of segmentations: class maps in colour, overlaid on their image, and per-class IoU.

The overlay is torchvision's :func:`torchvision.utils.draw_segmentation_masks` (one boolean mask
per class, blended with ``alpha``); background (class 0) is left uncoloured, and pixels labelled
``ignore_index`` are drawn white in a colour map and left alone in an overlay.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from convatlas._io import atomic_save
from convatlas.viz.render import Panel, image_to_display, save_panels

__all__ = ["class_colours", "colour_mask", "overlay", "save_segmentation_figure", "plot_class_iou"]


def class_colours(num_classes: int) -> np.ndarray:
    """(num_classes, 3) uint8 colours: black for the background (class 0), then matplotlib's
    ``tab20`` (then ``hsv`` for more than 21 classes)."""
    from matplotlib import colormaps

    if num_classes <= 21:
        table = colormaps["tab20"](np.arange(max(num_classes - 1, 0)) % 20)[:, :3]
    else:
        table = colormaps["hsv"](np.linspace(0, 1, num_classes - 1, endpoint=False))[:, :3]
    colours = np.concatenate([np.zeros((1, 3)), table])[:num_classes]
    return (colours * 255).round().astype(np.uint8)


def colour_mask(mask: torch.Tensor | np.ndarray, num_classes: int, ignore_index: int | None = 255) -> np.ndarray:
    """A class map (H, W) as colours (H, W, 3) in [0, 1]; ``ignore_index`` white."""
    m = np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask).astype(np.int64)
    colours = class_colours(num_classes).astype(np.float64) / 255
    out = np.ones((*m.shape, 3))
    valid = (m >= 0) & (m < num_classes)
    out[valid] = colours[m[valid]]
    if ignore_index is None and not valid.all():
        raise ValueError(f"the class map holds values outside 0..{num_classes - 1}")
    return out


def overlay(image: torch.Tensor, mask: torch.Tensor | np.ndarray, num_classes: int, *, alpha: float = 0.5) -> np.ndarray:
    """uint8 image (C, H, W) with each non-background class of ``mask`` (H, W) blended in its
    colour -> (H, W, 3) in [0, 1]."""
    from torchvision.utils import draw_segmentation_masks

    if image.dtype != torch.uint8 or image.dim() != 3:
        raise ValueError(f"overlay takes a uint8 image (C, H, W), got {image.dtype} {tuple(image.shape)}")
    m = torch.as_tensor(np.asarray(mask)).long()
    if tuple(m.shape) != tuple(image.shape[-2:]):
        raise ValueError(f"the class map is {tuple(m.shape)}, the image {tuple(image.shape[-2:])}")
    rgb = image.expand(3, -1, -1) if image.shape[0] == 1 else image
    present = [c for c in range(1, num_classes) if bool((m == c).any())]
    if not present:
        return image_to_display(rgb.contiguous())
    masks = torch.stack([m == c for c in present])
    colours = [tuple(int(v) for v in class_colours(num_classes)[c]) for c in present]
    drawn = draw_segmentation_masks(rgb.contiguous(), masks, alpha=alpha, colors=colours)
    return image_to_display(drawn)


def save_segmentation_figure(path: str | os.PathLike, image: torch.Tensor, prediction: torch.Tensor | np.ndarray,
                             classes: Sequence[str], *, truth: torch.Tensor | np.ndarray | None = None,
                             refined: torch.Tensor | np.ndarray | None = None, title: str = "",
                             ignore_index: int | None = 255) -> Path:
    """Image | (ground truth) | prediction overlaid | (prediction after the CRF), in one figure."""
    n = len(classes)
    panels = [Panel("image", image_to_display(image))]
    if truth is not None:
        panels.append(Panel("ground truth", colour_mask(truth, n, ignore_index)))
    panels.append(Panel("prediction", overlay(image, prediction, n)))
    if refined is not None:
        panels.append(Panel("prediction + dense CRF", overlay(image, refined, n)))
    present = sorted({int(v) for v in np.unique(np.asarray(prediction))} |
                     ({int(v) for v in np.unique(np.asarray(truth))} if truth is not None else set()))
    legend = ", ".join(classes[c] for c in present if 0 < c < n)
    return save_panels(panels, path, title + (f"\nclasses shown: {legend}" if legend else ""))


def plot_class_iou(iou: dict[str, float], path: str | os.PathLike, title: str = "") -> Path:
    """Per-class IoU as horizontal bars (classes without pixels marked "n/a"), with the mean."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(iou)
    values = np.array([iou[k] if iou[k] is not None else np.nan for k in names], dtype=float)
    fig = Figure(figsize=(6, 0.32 * len(names) + 1.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    colours = class_colours(len(names)).astype(float) / 255
    colours[0] = (0.6, 0.6, 0.6)  # the background bar in grey, not black
    ax.barh(range(len(names)), np.nan_to_num(values), color=colours)
    for i, v in enumerate(values):
        ax.text(min(np.nan_to_num(v), 1.0) + 0.01, i, "n/a" if np.isnan(v) else f"{v:.3f}", va="center", fontsize=8)
    mean = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    ax.axvline(mean, color="black", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.12)
    ax.set_xlabel("IoU")
    ax.set_title(title or f"per-class IoU (mean {mean:.3f}, dashed)", fontsize=10)
    path = Path(path)
    return atomic_save(path, lambda f: fig.savefig(f, format=path.suffix.lower()[1:] or "png", dpi=100))


def upsampling_panels(image: torch.Tensor) -> list[Panel]:
    """The notes' upsampling choices side by side on one input: ``image`` (H, W) float is max-pooled
    2x2 (keeping the switches) and brought back to (H, W) by nearest neighbour, bed of nails,
    max unpooling, bilinear interpolation, and two transposed convolutions with all-ones kernels
    (weights a network could start from): 2x2 stride 2, whose kernels tile the output exactly,
    and 3x3 stride 2, whose kernels overlap unevenly - the checkerboard (Odena, Dumoulin & Olah,
    Distill 2016). Each panel is the same pooled map, upsampled."""
    import torch.nn.functional as F

    from convatlas.layers.unpool import BedOfNailsUnpool2d, MaxUnpool2d, NearestUnpool2d

    x = image.float()[None, None]
    pooled, switches = F.max_pool2d(x, 2, 2, return_indices=True)
    size = tuple(x.shape[-2:])
    transposed_2 = F.conv_transpose2d(pooled, torch.ones(1, 1, 2, 2), stride=2)
    transposed_3 = F.conv_transpose2d(pooled, torch.ones(1, 1, 3, 3), stride=2, padding=1, output_padding=1)
    outputs = [
        ("input", x), ("2x2 max pooling", pooled),
        ("nearest neighbour", NearestUnpool2d(2)(pooled)),
        ("bed of nails", BedOfNailsUnpool2d(2)(pooled)),
        ("max unpooling (switches)", MaxUnpool2d(2)(pooled, switches, output_size=size)),
        ("bilinear", F.interpolate(pooled, size=size, mode="bilinear", align_corners=False)),
        ("transposed 2x2 / 2, ones", transposed_2),
        ("transposed 3x3 / 2, ones: checkerboard", transposed_3),
    ]
    return [Panel(title, out[0, 0].detach().numpy(), cmap="magma", colorbar="value" if i == len(outputs) - 1 else None)
            for i, (title, out) in enumerate(outputs)]


def save_upsampling_figure(image: torch.Tensor, path: str | os.PathLike) -> Path:
    """:func:`upsampling_panels` in one figure."""
    return save_panels(upsampling_panels(image), path, "one pooled map, upsampled six ways", panel_size=2.4)
