"""Edge detection as a convolution layer.

The first thing the notes do with a convolution is find edges: a 3×3 filter whose left column
is positive and right column negative responds where brightness changes from left to right — a
vertical edge — and its transpose finds horizontal edges (Ng, *Convolutional Neural Networks*,
Coursera deeplearning.ai, week 1). The Sobel filter weights the centre row twice (Sobel &
Feldman 1968); the Laplacian responds to changes in every direction. Here they are the fixed
weights of one ``nn.Conv2d``.

An RGB image is filtered per channel, as the notes describe: the filter for "vertical edges in
red" holds the vertical kernel on the R channel and zeros on G and B, and likewise for G and B.
So with F filters and C channels the layer has F·C output channels, output ``f·C + c`` being
filter ``f`` on channel ``c``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from convatlas._io import atomic_save

__all__ = [
    "EDGE_KERNELS",
    "DEFAULT_FILTERS",
    "SAMPLE_IMAGES",
    "edge_kernel",
    "EdgeConv2d",
    "load_image",
    "edge_maps",
    "render_edges",
    "EdgeResult",
    "detect_edges",
]

# Cross-correlation kernels (applied without flipping, as nn.Conv2d does).
EDGE_KERNELS: dict[str, tuple[tuple[float, ...], ...]] = {
    # bright on the left, dark on the right -> positive (Ng's example; the Prewitt operator)
    "vertical": ((1, 0, -1), (1, 0, -1), (1, 0, -1)),
    # bright above, dark below -> positive
    "horizontal": ((1, 1, 1), (0, 0, 0), (-1, -1, -1)),
    # Sobel: the same with the centre row/column weighted 2 (= [1, 2, 1]ᵀ ⊗ [1, 0, −1])
    "sobel_vertical": ((1, 0, -1), (2, 0, -2), (1, 0, -1)),
    "sobel_horizontal": ((1, 2, 1), (0, 0, 0), (-1, -2, -1)),
    # 4-neighbour Laplacian: Σ neighbours − 4·centre
    "laplacian": ((0, 1, 0), (1, -4, 1), (0, 1, 0)),
}
DEFAULT_FILTERS: tuple[str, ...] = tuple(EDGE_KERNELS)

# scikit-image's sample photos ship inside its wheel, so these work offline.
SAMPLE_IMAGES: tuple[str, ...] = ("astronaut", "coffee", "chelsea", "camera")


def edge_kernel(name: str) -> torch.Tensor:
    """The 3×3 kernel called ``name`` (one of :data:`EDGE_KERNELS`) as a float64 tensor."""
    if name not in EDGE_KERNELS:
        raise ValueError(f"unknown edge filter {name!r}; expected one of {', '.join(EDGE_KERNELS)}")
    return torch.tensor(EDGE_KERNELS[name], dtype=torch.float64)


class EdgeConv2d(nn.Conv2d):
    """A fixed (not trained) convolution that applies each named edge filter to each input
    channel on its own.

    Weight ``[f·C + c, c] = kernel_f`` and zero on the other input channels, so output channel
    ``f·C + c`` is filter ``f`` on channel ``c``. ``padding=1`` (zeros) keeps the image size.
    """

    def __init__(self, in_channels: int = 3, filters: Sequence[str] = DEFAULT_FILTERS, padding: int = 1) -> None:
        if not filters:
            raise ValueError(f"give at least one edge filter, from {', '.join(EDGE_KERNELS)}")
        kernels = [edge_kernel(name) for name in filters]
        super().__init__(in_channels, len(kernels) * in_channels, 3, padding=padding, bias=False)
        self.filters = tuple(filters)
        with torch.no_grad():
            self.weight.zero_()
            for f, kernel in enumerate(kernels):
                for c in range(in_channels):
                    self.weight[f * in_channels + c, c] = kernel
        self.weight.requires_grad_(False)

    def split(self, output: torch.Tensor) -> dict[str, torch.Tensor]:
        """Cut an (N, F·C, H, W) output into ``{filter name: (N, C, H, W)}``."""
        c = self.in_channels
        return {name: output[:, f * c:(f + 1) * c] for f, name in enumerate(self.filters)}


def load_image(source: str | os.PathLike | None = None, gray: bool = False) -> np.ndarray:
    """Read an image as uint8 (H, W, C): a file path, one of scikit-image's bundled photos
    (:data:`SAMPLE_IMAGES`, e.g. "coffee"), or ``None`` for the astronaut photo.

    ``gray`` converts to one luminance channel (ITU-R 601 weights, as PIL's "L" mode).
    """
    from PIL import Image, UnidentifiedImageError

    if source is None or str(source) in SAMPLE_IMAGES:
        import skimage.data

        array = np.asarray(getattr(skimage.data, "astronaut" if source is None else str(source))())
        image = Image.fromarray(array)
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(
                f"image {str(path)!r} does not exist; give an image file or one of the bundled "
                f"photos: {', '.join(SAMPLE_IMAGES)}"
            )
        try:
            with Image.open(path) as opened:
                image = opened.copy()
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(f"cannot read {str(path)!r} as an image ({exc}); expected a PNG, JPEG or similar file") from None
    image = image.convert("L" if gray else "RGB")
    array = np.asarray(image, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def edge_maps(image: np.ndarray, filters: Sequence[str] = DEFAULT_FILTERS) -> dict[str, np.ndarray]:
    """Apply :class:`EdgeConv2d` to an (H, W, C) image (uint8 is scaled to [0, 1]) in float64.

    Returns ``{filter name: (H, W, C) response}``; same size as the image (zero padding).
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3:
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}")
    scale = 255.0 if image.dtype == np.uint8 else 1.0
    x = torch.from_numpy(image.astype(np.float64) / scale).permute(2, 0, 1)[None]
    layer = EdgeConv2d(image.shape[2], filters).double()
    with torch.no_grad():
        maps = layer.split(layer(x))
    return {name: m[0].permute(1, 2, 0).numpy() for name, m in maps.items()}


def _display(response: np.ndarray) -> np.ndarray:
    """|response| scaled to [0, 1] by its 99.5th percentile, for showing as a picture."""
    magnitude = np.abs(response)
    top = np.percentile(magnitude, 99.5)
    shown = np.clip(magnitude / top, 0, 1) if top > 0 else magnitude
    return shown[:, :, 0] if shown.shape[2] == 1 else shown


def render_edges(
    image: np.ndarray, maps: Mapping[str, np.ndarray], output: str | os.PathLike, title: str | None = None
) -> Path:
    """Draw the input and each edge map side by side and write them to ``output`` (.png or
    .svg) atomically (:mod:`convatlas._io`).

    Each map shows the magnitude of the response per channel (an RGB picture for an RGB image:
    red edges appear red).
    """
    from matplotlib.figure import Figure

    path = Path(output)
    if path.suffix.lower() not in (".png", ".svg"):
        raise ValueError(f"output must end in .png or .svg, got {str(path)!r}")
    panels = [("input", image[:, :, 0] if image.shape[2] == 1 else image, None)]
    panels += [(name, _display(m), EDGE_KERNELS.get(name)) for name, m in maps.items()]
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    fig = Figure(figsize=(4 * columns, 4.3 * rows), layout="constrained")
    for index, (name, picture, kernel) in enumerate(panels):
        ax = fig.add_subplot(rows, columns, index + 1)
        ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None,
                  vmin=0 if picture.dtype != np.uint8 else None, vmax=1 if picture.dtype != np.uint8 else None)
        label = name if kernel is None else f"{name}\n" + " ".join(
            "[" + " ".join(f"{v:g}" for v in row) + "]" for row in kernel)
        ax.set_title(label, fontsize=10)
        ax.axis("off")
    fig.suptitle(title or "Edge filters as one convolution layer, applied per channel")
    return atomic_save(path, lambda f: fig.savefig(f, format=path.suffix.lstrip(".").lower()))


@dataclass(frozen=True)
class EdgeResult:
    """What :func:`detect_edges` did: where the picture went and what was measured."""

    path: Path
    image_shape: tuple[int, int, int]
    filters: tuple[str, ...]
    mean_abs_response: dict[str, float]


def detect_edges(
    image: str | os.PathLike | None = None,
    output: str | os.PathLike = "edges.png",
    filters: Sequence[str] = DEFAULT_FILTERS,
    gray: bool = False,
) -> EdgeResult:
    """Load an image (default: scikit-image's astronaut), apply the edge filters as a
    convolution layer per channel and write the input and edge maps side by side."""
    for name in filters:
        edge_kernel(name)                     # unknown names fail before any work
    array = load_image(image, gray=gray)
    maps = edge_maps(array, filters)
    name = "astronaut (scikit-image)" if image is None else Path(str(image)).name
    path = render_edges(array, maps, output, title=f"Edge filters as one convolution layer, per channel: {name}")
    return EdgeResult(
        path=path,
        image_shape=tuple(array.shape),  # type: ignore[arg-type]
        filters=tuple(filters),
        mean_abs_response={k: float(np.abs(v).mean()) for k, v in maps.items()},
    )
