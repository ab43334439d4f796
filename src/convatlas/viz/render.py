"""Labelled pictures: panels side by side in one figure, written atomically.

Drawing uses matplotlib's object API (``Figure`` + the Agg canvas), so no window opens and no
global pyplot state is touched. The file is written beside its target and renamed into place, so
an interrupted run never leaves half a PNG.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from convatlas._io import atomic_save

__all__ = ["Panel", "save_panels", "image_to_display", "signed_to_display", "rescale", "mark_outside",
           "OUTSIDE_COLOUR", "FORMATS"]

FORMATS = (".png", ".svg", ".pdf")


@dataclass
class Panel:
    """One labelled picture: ``image`` (H, W) with ``cmap`` or (H, W, 3) in [0, 1].

    ``overlay`` is a heat map drawn over the image with ``overlay_alpha``, stretched over
    ``overlay_extent`` (left, right, bottom, top in image pixels; default the whole image).
    ``colorbar`` labels a colour bar for the heat map (or for ``image`` with a ``cmap``).
    ``notes`` are small labels (x, y, text) placed on the picture, e.g. under grid tiles.
    """

    title: str
    image: np.ndarray
    cmap: str | None = None
    vmin: float | None = None
    vmax: float | None = None
    overlay: np.ndarray | None = None
    overlay_cmap: str = "jet"
    overlay_alpha: float = 0.5
    overlay_extent: tuple[float, float, float, float] | None = None
    overlay_range: tuple[float, float] | None = None
    colorbar: str | None = None
    xlabel: str = ""
    ylabel: str = ""
    notes: list[tuple[float, float, str]] = field(default_factory=list)


def image_to_display(image: torch.Tensor) -> np.ndarray:
    """uint8 (C, H, W) -> (H, W) grey or (H, W, 3) colour in [0, 1]."""
    array = image.detach().cpu().float().numpy() / 255.0
    return array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)


def signed_to_display(signal: torch.Tensor) -> np.ndarray:
    """A signed reconstruction (C, H, W) -> [0, 1] with 0 at mid-grey: ``0.5 + 0.5 r / max|r|``."""
    signal = signal.detach().cpu().float()
    peak = float(signal.abs().max())
    shown = 0.5 + 0.5 * signal / peak if peak > 0 else torch.full_like(signal, 0.5)
    array = shown.numpy()
    return array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)


# Where a receptive field reaches past the image's border: a colour no picture of the zoo's
# datasets is made of (the digits are grey, the deconvnet's projections grey around mid-grey).
OUTSIDE_COLOUR = (0.42, 0.62, 0.92)


def mark_outside(display: np.ndarray, inside: torch.Tensor | np.ndarray,
                 colour: tuple[float, float, float] = OUTSIDE_COLOUR) -> np.ndarray:
    """A displayable picture (H, W) grey or (H, W, 3), as colour (H, W, 3) with the pixels where
    ``inside`` (H, W) is False painted ``colour``."""
    rgb = np.repeat(display[..., None], 3, axis=2) if display.ndim == 2 else display.copy()
    mask = inside.numpy() if isinstance(inside, torch.Tensor) else np.asarray(inside)
    rgb[~mask.astype(bool)] = colour
    return rgb


def rescale(values: torch.Tensor | np.ndarray) -> np.ndarray:
    """Min-max scale to [0, 1] (a constant map becomes 0)."""
    array = values.detach().cpu().float().numpy() if isinstance(values, torch.Tensor) else np.asarray(values, float)
    low, high = float(array.min()), float(array.max())
    return (array - low) / (high - low) if high > low else np.zeros_like(array)


def _draw(fig, ax, panel: Panel) -> None:
    grey = panel.image.ndim == 2 and panel.cmap is None
    shown = ax.imshow(panel.image, cmap="gray" if grey else panel.cmap, vmin=0 if grey else panel.vmin,
                      vmax=1 if grey else panel.vmax, interpolation="nearest", aspect="equal")  # square pixels
    height, width = panel.image.shape[:2]
    if panel.overlay is not None:
        extent = panel.overlay_extent or (-0.5, width - 0.5, height - 0.5, -0.5)
        low, high = panel.overlay_range or (None, None)
        shown = ax.imshow(panel.overlay, cmap=panel.overlay_cmap, alpha=panel.overlay_alpha, extent=extent,
                          vmin=low, vmax=high, interpolation="bilinear")
        ax.set_xlim(-0.5, width - 0.5)
        ax.set_ylim(height - 0.5, -0.5)
    if panel.colorbar is not None:
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label=panel.colorbar)
    for x, y, text in panel.notes:
        ax.text(x, y, text, fontsize=6, color="black", ha="center", va="top",
                bbox={"facecolor": "white", "alpha": 0.7, "pad": 0.5, "linewidth": 0})
    ax.set_title(panel.title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(panel.xlabel, fontsize=8)
    ax.set_ylabel(panel.ylabel, fontsize=8)


def save_panels(panels: list[Panel], path: str | Path, title: str, *, panel_size: float = 3.6,
                dpi: int = 100) -> Path:
    """Draw ``panels`` side by side under ``title`` and write the figure to ``path`` (.png, .svg or .pdf)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"output file must end in {', '.join(FORMATS)}; got {str(path)!r}")
    fig = Figure(figsize=(panel_size * len(panels), panel_size + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels):
        _draw(fig, ax, panel)
    fig.suptitle(title, fontsize=10)
    return atomic_save(path, lambda tmp: fig.savefig(tmp, format=path.suffix.lower()[1:], dpi=dpi))
