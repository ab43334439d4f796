"""Selective search: class-independent object proposals by hierarchical grouping
(Uijlings, van de Sande, Gevers and Smeulders, "Selective Search for Object Recognition", IJCV 2013,
104:154-171), the proposals R-CNN classifies.

**Initial regions** (Sec. 3.1): Felzenszwalb and Huttenlocher's graph segmentation (IJCV 2004),
here :func:`skimage.segmentation.felzenszwalb` with smoothing ``sigma = 0.8`` (FH's value) and
smallest region ``min_size = k``; ``k`` is FH's scale on the 0..255 intensity scale.

**Hierarchical grouping** (Sec. 3.1, Algorithm 1): compute the similarity ``s(r_i, r_j)`` of every
pair of neighbouring regions; merge the most similar pair into ``r_t = r_i ∪ r_j``; drop the
similarities of ``r_i`` and ``r_j``, add those of ``r_t`` with its neighbours; repeat until one
region is left. Every region ever made (the initial ones included) gives a box.

**Similarity** (Sec. 3.2), all in [0, 1], summed over the measures a strategy uses
(``s = a1 s_colour + a2 s_texture + a3 s_size + a4 s_fill``, ``a_i`` in {0, 1}):

* colour: one 25-bin histogram per colour channel, L1-normalised over all channels together,
  ``s_colour = sum_k min(c_i^k, c_j^k)`` (histogram intersection);
* texture: Gaussian derivatives with ``sigma = 1`` in eight orientations per colour channel, one
  10-bin histogram per orientation and channel, L1-normalised, histogram intersection (read here as
  the positive part of the directional derivative at 0, 45, ..., 315 degrees, binned up to the
  channel's largest response);
* size: ``s_size = 1 - (size(r_i) + size(r_j)) / size(im)`` - small regions merge early;
* fill: ``s_fill = 1 - (size(BB_ij) - size(r_i) - size(r_j)) / size(im)`` with ``BB_ij`` the box
  around both - regions that fill each other's gaps merge early.

A merged region's histograms are the size-weighted average of its parts,
``C_t = (size(r_i) C_i + size(r_j) C_j) / (size(r_i) + size(r_j))``, so no pixel is read again.

**Diversification** (Sec. 3.2): colour spaces, ``k`` of the initial segmentation, and the set of
similarity measures; every combination is one strategy. The presets are the paper's Table 5:

============ ========================== ========================= ================
mode         colour spaces              similarities              k
============ ========================== ========================= ================
``single``   HSV                        C+T+S+F                   100
``fast``     HSV, Lab                   C+T+S+F, T+S+F            50, 100
``quality``  HSV, Lab, rgI, H, I        C+T+S+F, T+S+F, F, S      50, 100, 150, 300
============ ========================== ========================= ================

(the paper, on Pascal VOC 2007 test: "fast" 2,134 boxes per image, recall 98.0% at IoU 0.5, MABO
0.804; "quality" 10,097 boxes, 99.1%, 0.879). RGB is offered besides (``colour_spaces=("rgb", ...)``).
On a grey image every colour space reduces to intensity (HSV: H = S = 0, V = I; Lab: a = b = 0;
rgI: r = g = 1/3), so a grey image is searched in intensity ``i`` alone and the strategies differ in
``k`` and the similarities only.

**Ranking** (Sec. 3.3): in each strategy, the region made last (the whole image) has position 1,
the one made before it 2, and so on down to the initial regions; a region's value is ``RND x
position`` with ``RND`` uniform in [0, 1) (seeded); all strategies' boxes are sorted by value,
and only then are lower-ranked duplicates removed, so that a box several strategies agree on has
several chances of a high rank.

**Measures** (Sec. 4): recall at IoU >= 0.5 (the Pascal criterion) and the average best overlap
``ABO = 1/|G| sum_{g in G} max_{l in L} IoU(g, l)``; its mean over classes is the paper's MABO.
"""

from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from convatlas._checks import non_negative_int, one_of, positive_int, positive_number
from convatlas.metrics.boxes import box_iou

__all__ = ["COLOUR_BINS", "COLOUR_SPACES", "MODES", "Proposals", "Strategy", "TEXTURE_BINS", "TEXTURE_ORIENTATIONS",
           "average_best_overlap", "best_overlaps", "colour_histograms", "colour_similarity", "fill_similarity",
           "gaussian_derivatives", "hierarchical_grouping", "histogram_intersection", "initial_regions",
           "merge_histograms", "proposal_recall", "selective_search", "size_similarity", "strategies",
           "texture_histograms", "texture_similarity", "to_colour_space"]

COLOUR_SPACES = ("rgb", "hsv", "lab", "rgi", "h", "i")
COLOUR_BINS = 25  # per channel (Sec. 3.2)
TEXTURE_ORIENTATIONS = 8
TEXTURE_BINS = 10  # per orientation and channel (Sec. 3.2)
TEXTURE_SIGMA = 1.0
FH_SIGMA = 0.8
MEASURES = "CTSF"  # colour, texture, size, fill

# Table 5 of the paper: (colour spaces, similarity sets, k of Felzenszwalb-Huttenlocher).
MODES: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[int, ...]]] = {
    "single": (("hsv",), ("CTSF",), (100,)),
    "fast": (("hsv", "lab"), ("CTSF", "TSF"), (50, 100)),
    "quality": (("hsv", "lab", "rgi", "h", "i"), ("CTSF", "TSF", "F", "S"), (50, 100, 150, 300)),
}


@dataclass(frozen=True)
class Strategy:
    """One grouping strategy: a colour space, FH's ``k`` and the similarity measures summed
    (letters of ``"CTSF"``: colour, texture, size, fill)."""

    colour_space: str
    k: int
    similarity: str


@dataclass
class Proposals:
    """Selective search's output for one image: ``boxes`` ``(K, 4)`` float32 xyxy in pixel-edge
    coordinates, best-ranked first and without duplicates; the ``strategies`` that were run; the
    ``image_size`` ``(height, width)``; ``seconds`` the search took."""

    boxes: torch.Tensor
    strategies: tuple[Strategy, ...]
    image_size: tuple[int, int]
    seconds: float

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


# --- input and colour spaces -------------------------------------------------------------------------

def _as_hwc(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """uint8 ``(H, W)``, ``(H, W, C)`` or ``(C, H, W)`` (C 1 or 3) -> uint8 ``(H, W, C)`` numpy.

    A 3-d input whose last dimension is 1 or 3 is read as ``(H, W, C)`` (a torch tensor whose first
    dimension is 1 or 3 as ``(C, H, W)`` first, as torch lays images out)."""
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (0..255), got dtype {array.dtype}")
    if array.ndim == 2:
        array = array[:, :, None]
    elif array.ndim == 3:
        channels_first = array.shape[0] in (1, 3) and (isinstance(image, torch.Tensor) or array.shape[-1] not in (1, 3))
        if channels_first:
            array = array.transpose(1, 2, 0)
        elif array.shape[-1] not in (1, 3):
            raise ValueError(f"image must be (H, W), (H, W, C) or (C, H, W) with C = 1 or 3, got shape {array.shape}")
    else:
        raise ValueError(f"image must be (H, W), (H, W, C) or (C, H, W) with C = 1 or 3, got shape {array.shape}")
    if array.shape[0] < 2 or array.shape[1] < 2:
        raise ValueError(f"image must be at least 2x2 pixels, got {array.shape[0]}x{array.shape[1]}")
    return np.ascontiguousarray(array)


def to_colour_space(image: np.ndarray, space: str) -> np.ndarray:
    """uint8 ``(H, W, 3)`` RGB -> float64 ``(H, W, C)`` in [0, 1] in colour space ``space``:

    ``rgb``; ``hsv`` (skimage's ``rgb2hsv``); ``lab`` (``L / 100``, ``(a + 128) / 256``,
    ``(b + 128) / 256``); ``rgi`` (normalised ``r = R / (R + G + B)``, ``g = G / (R + G + B)`` and
    intensity ``I = (R + G + B) / 3``); ``h`` (hue alone); ``i`` (intensity alone). A grey
    ``(H, W, 1)`` image is its intensity in every space.
    """
    from skimage import color

    one_of("colour_space", space, COLOUR_SPACES)
    rgb = image.astype(np.float64) / 255.0
    if rgb.shape[-1] == 1:
        return rgb
    if space == "rgb":
        return rgb
    if space == "hsv":
        return color.rgb2hsv(rgb)
    if space == "lab":
        lab = color.rgb2lab(rgb)
        return np.clip(np.stack([lab[..., 0] / 100, (lab[..., 1] + 128) / 256, (lab[..., 2] + 128) / 256], -1), 0, 1)
    if space == "h":
        return color.rgb2hsv(rgb)[..., :1]
    total = rgb.sum(-1, keepdims=True)
    intensity = total / 3
    if space == "i":
        return intensity
    normalised = np.divide(rgb[..., :2], total, out=np.full_like(rgb[..., :2], 1 / 3), where=total > 0)
    return np.concatenate([normalised, intensity], -1)


# --- initial regions and their histograms ------------------------------------------------------------

def initial_regions(channels: np.ndarray, k: float, sigma: float = FH_SIGMA, min_size: int | None = None) -> np.ndarray:
    """Felzenszwalb-Huttenlocher segmentation of float ``(H, W, C)`` channels in [0, 1]: int64
    ``(H, W)`` labels ``0 .. n - 1``, each region connected. ``k`` is FH's scale (on 0..255
    intensities, as skimage reads it); ``min_size`` defaults to ``k`` pixels."""
    from skimage.segmentation import felzenszwalb

    positive_number("k", k)
    size = int(k) if min_size is None else non_negative_int("min_size", min_size)
    labels = felzenszwalb(channels, scale=float(k), sigma=sigma, min_size=size, channel_axis=-1)
    return np.unique(labels, return_inverse=True)[1].reshape(labels.shape).astype(np.int64)


def _region_histograms(bins: np.ndarray, labels: np.ndarray, width: int) -> np.ndarray:
    """``(H, W, B)`` bin indices in ``0 .. width - 1`` -> ``(n, width)`` counts per region, L1-normalised."""
    n = int(labels.max()) + 1
    index = (labels[:, :, None] * width + bins).ravel()
    counts = np.bincount(index, minlength=n * width).reshape(n, width).astype(np.float64)
    return counts / counts.sum(1, keepdims=True)


def _colour_bins(channels: np.ndarray) -> np.ndarray:
    """``(H, W, C)`` values in [0, 1] -> bin of each value, offset by ``25 c`` for channel ``c``."""
    bins = np.minimum((channels * COLOUR_BINS).astype(np.int64), COLOUR_BINS - 1)
    return bins + COLOUR_BINS * np.arange(channels.shape[-1])


def colour_histograms(channels: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``(n, 25 C)``: per region, a 25-bin histogram of each channel over [0, 1], the whole
    L1-normalised (Sec. 3.2; ``n = 75`` bins for three channels)."""
    return _region_histograms(_colour_bins(channels), labels, COLOUR_BINS * channels.shape[-1])


def _gaussian_kernels(sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """The sampled Gaussian ``g(x) ∝ exp(-x^2 / 2 sigma^2)`` (sum 1) and its derivative
    ``g'(x) = -x / sigma^2 g(x)`` on ``|x| <= 4 sigma``."""
    radius = int(math.ceil(4 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    gauss = np.exp(-x ** 2 / (2 * sigma ** 2))
    gauss /= gauss.sum()
    return gauss, -x / sigma ** 2 * gauss


def _convolve(values: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    """``(f * k)(p) = sum_t k(t) f(p - t)`` along ``axis`` (0 rows, 1 columns), edges mirrored
    (``d c b | a b c d``), the same size out: one shifted slice per tap."""
    radius = len(kernel) // 2
    pad = [(0, 0)] * values.ndim
    pad[axis] = (radius, radius)
    padded = np.pad(values, pad, mode="reflect" if values.shape[axis] > radius else "edge")
    length = values.shape[axis]
    out = np.zeros_like(values)
    for tap, weight in enumerate(kernel[::-1]):  # kernel[::-1][tap] = k(tap - radius) read at p + tap - radius
        out += weight * np.take(padded, np.arange(tap, tap + length), axis=axis)
    return out


def gaussian_derivatives(channels: np.ndarray, sigma: float = TEXTURE_SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """``(d/dx, d/dy)`` of the Gaussian-smoothed float ``(H, W, C)`` channels, each ``(H, W, C)``:
    the separable filters ``g'(x) g(y)`` and ``g(x) g'(y)`` on ``|x| <= 4 sigma``, edges mirrored."""
    gauss, derivative = _gaussian_kernels(sigma)
    dx = _convolve(_convolve(channels, derivative, axis=1), gauss, axis=0)
    dy = _convolve(_convolve(channels, gauss, axis=1), derivative, axis=0)
    return dx, dy


def _texture_bins(channels: np.ndarray) -> np.ndarray:
    """``(H, W, 8 C)`` bin indices: for channel ``c`` and orientation ``o`` (angle ``o * 45°``), the
    positive part of the directional derivative ``cos θ d/dx + sin θ d/dy`` (θ and θ + 180° are the
    two signs of one edge), in 10 bins over ``[0, largest response of the channel]``; offset by
    ``10 (8 c + o)``."""
    dx, dy = (d.astype(np.float32) for d in gaussian_derivatives(channels))
    angles = np.arange(TEXTURE_ORIENTATIONS) * (2 * np.pi / TEXTURE_ORIENTATIONS)
    response = dx[..., None] * np.cos(angles).astype(np.float32) + dy[..., None] * np.sin(angles).astype(np.float32)
    np.maximum(response, 0, out=response)  # (H, W, C, 8)
    top = response.max(axis=(0, 1, 3), keepdims=True)
    scale = np.divide(TEXTURE_BINS, top, out=np.zeros_like(top), where=top > 0)
    bins = np.minimum((response * scale).astype(np.int64), TEXTURE_BINS - 1)
    offsets = TEXTURE_BINS * np.arange(channels.shape[-1] * TEXTURE_ORIENTATIONS).reshape(channels.shape[-1], -1)
    return (bins + offsets).reshape(*channels.shape[:2], -1)


def texture_histograms(channels: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``(n, 80 C)``: per region, 10-bin histograms of the Gaussian derivatives (sigma 1) in 8
    orientations of each channel, the whole L1-normalised (Sec. 3.2; ``n = 240`` for three channels)."""
    width = TEXTURE_BINS * TEXTURE_ORIENTATIONS * channels.shape[-1]
    return _region_histograms(_texture_bins(channels), labels, width)


def _region_boxes(labels: np.ndarray) -> np.ndarray:
    """``(n, 4)`` xyxy pixel-edge box of each label: ``(min col, min row, max col + 1, max row + 1)``
    (the pixels sorted by label, then one minimum and maximum per run of a label)."""
    order = np.argsort(labels.ravel(), kind="stable")
    starts = np.searchsorted(labels.ravel()[order], np.arange(int(labels.max()) + 1))
    rows, cols = np.divmod(order, labels.shape[1])
    corners = [np.minimum.reduceat(cols, starts), np.minimum.reduceat(rows, starts),
               np.maximum.reduceat(cols, starts) + 1, np.maximum.reduceat(rows, starts) + 1]
    return np.stack(corners, 1).astype(np.float64)


def _neighbour_pairs(labels: np.ndarray) -> np.ndarray:
    """``(P, 2)`` pairs ``i < j`` of regions that touch (4-connected pixels)."""
    pairs = [np.stack([labels[:, :-1].ravel(), labels[:, 1:].ravel()], 1),
             np.stack([labels[:-1, :].ravel(), labels[1:, :].ravel()], 1)]
    pairs = np.concatenate(pairs)
    pairs = np.sort(pairs[pairs[:, 0] != pairs[:, 1]], axis=1)
    return np.unique(pairs, axis=0)


# --- similarities ------------------------------------------------------------------------------------

def histogram_intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``sum_k min(a_k, b_k)`` over the last axis (1 for equal L1-normalised histograms, 0 for disjoint)."""
    return np.minimum(a, b).sum(-1)


def colour_similarity(colour_i: np.ndarray, colour_j: np.ndarray) -> np.ndarray:
    """``s_colour(r_i, r_j) = sum_k min(c_i^k, c_j^k)`` of the regions' colour histograms."""
    return histogram_intersection(colour_i, colour_j)


def texture_similarity(texture_i: np.ndarray, texture_j: np.ndarray) -> np.ndarray:
    """``s_texture(r_i, r_j) = sum_k min(t_i^k, t_j^k)`` of the regions' texture histograms."""
    return histogram_intersection(texture_i, texture_j)


def size_similarity(size_i: np.ndarray | float, size_j: np.ndarray | float, image_size: float) -> np.ndarray:
    """``s_size(r_i, r_j) = 1 - (size(r_i) + size(r_j)) / size(im)`` (sizes in pixels)."""
    return 1 - (np.asarray(size_i, dtype=np.float64) + size_j) / image_size


def fill_similarity(box_i: np.ndarray, box_j: np.ndarray, size_i: np.ndarray | float, size_j: np.ndarray | float,
                    image_size: float) -> np.ndarray:
    """``s_fill(r_i, r_j) = 1 - (size(BB_ij) - size(r_i) - size(r_j)) / size(im)``, ``BB_ij`` the
    tight box around both regions' boxes (``(..., 4)`` xyxy)."""
    box_i, box_j = np.asarray(box_i, dtype=np.float64), np.asarray(box_j, dtype=np.float64)
    width = np.maximum(box_i[..., 2], box_j[..., 2]) - np.minimum(box_i[..., 0], box_j[..., 0])
    height = np.maximum(box_i[..., 3], box_j[..., 3]) - np.minimum(box_i[..., 1], box_j[..., 1])
    return 1 - (width * height - size_i - size_j) / image_size


def merge_histograms(histogram_i: np.ndarray, size_i: float, histogram_j: np.ndarray, size_j: float) -> np.ndarray:
    """The histogram of ``r_i ∪ r_j`` from its parts: ``(size_i H_i + size_j H_j) / (size_i + size_j)``
    (exact for L1-normalised histograms of disjoint regions)."""
    return (size_i * histogram_i + size_j * histogram_j) / (size_i + size_j)


def _check_similarity(similarity: str) -> str:
    if not isinstance(similarity, str) or not similarity or any(m not in MEASURES for m in similarity) \
            or len(set(similarity)) != len(similarity):
        raise ValueError(f"similarity must be letters of 'CTSF' (colour, texture, size, fill), each at most once, "
                         f"e.g. 'CTSF' or 'TSF', got {similarity!r}")
    return similarity


# --- hierarchical grouping ---------------------------------------------------------------------------

class _Hierarchy:
    """The regions of one grouping, in arrays with a row per region ever made (``2n - 1``)."""

    def __init__(self, labels: np.ndarray, colour: np.ndarray, texture: np.ndarray, similarity: str):
        n = int(labels.max()) + 1
        total = 2 * n - 1
        self.similarity = similarity
        self.image_size = float(labels.size)
        self.sizes = np.zeros(total)
        self.sizes[:n] = np.bincount(labels.ravel(), minlength=n)
        self.boxes = np.zeros((total, 4))
        self.boxes[:n] = _region_boxes(labels)
        self.colour = np.zeros((total, colour.shape[1]))
        self.colour[:n] = colour
        self.texture = np.zeros((total, texture.shape[1]))
        self.texture[:n] = texture
        self.count = n

    def similarities(self, i: np.ndarray | int, j: np.ndarray) -> np.ndarray:
        """``s(r_i, r_j)``: the sum of the chosen measures."""
        total = np.zeros(len(j))
        if "C" in self.similarity:
            total += colour_similarity(self.colour[i], self.colour[j])
        if "T" in self.similarity:
            total += texture_similarity(self.texture[i], self.texture[j])
        if "S" in self.similarity:
            total += size_similarity(self.sizes[i], self.sizes[j], self.image_size)
        if "F" in self.similarity:
            total += fill_similarity(self.boxes[i], self.boxes[j], self.sizes[i], self.sizes[j], self.image_size)
        return total

    def merge(self, i: int, j: int) -> int:
        """``r_t = r_i ∪ r_j``: sizes add, boxes join, histograms average weighted by size."""
        t = self.count
        si, sj = self.sizes[i], self.sizes[j]
        self.sizes[t] = si + sj
        self.boxes[t, :2] = np.minimum(self.boxes[i, :2], self.boxes[j, :2])
        self.boxes[t, 2:] = np.maximum(self.boxes[i, 2:], self.boxes[j, 2:])
        self.colour[t] = merge_histograms(self.colour[i], si, self.colour[j], sj)
        self.texture[t] = merge_histograms(self.texture[i], si, self.texture[j], sj)
        self.count += 1
        return t


def hierarchical_grouping(labels: np.ndarray, colour: np.ndarray, texture: np.ndarray,
                          similarity: str = "CTSF") -> np.ndarray:
    """Algorithm 1 of the paper on an initial segmentation: ``(2n - 1, 4)`` boxes of every region, in
    the order they were made (the ``n`` initial regions by label, then one per merge; the last is the
    whole image).

    ``labels`` int ``(H, W)`` in ``0 .. n - 1``; ``colour`` ``(n, Dc)`` and ``texture`` ``(n, Dt)`` the
    initial regions' histograms; ``similarity`` the measures summed (letters of ``"CTSF"``). The most
    similar pair is taken from a heap (ties: the lowest region numbers); a pair whose region has
    been merged away is skipped when it surfaces.
    """
    _check_similarity(similarity)
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.min() < 0:
        raise ValueError(f"labels must be a (H, W) map of region numbers 0 .. n - 1, got shape {labels.shape}")
    n = int(labels.max()) + 1
    if int(np.bincount(labels.ravel(), minlength=n).min()) == 0:
        raise ValueError(f"labels must use every region number 0 .. {n - 1}; some are missing")
    if colour.shape[0] != n or texture.shape[0] != n:
        raise ValueError(f"colour and texture must have one row per region ({n}), got {colour.shape[0]} and "
                         f"{texture.shape[0]}")
    regions = _Hierarchy(labels, colour, texture, similarity)
    pairs = _neighbour_pairs(labels)
    neighbours: list[set[int]] = [set() for _ in range(2 * n - 1)]
    for i, j in pairs.tolist():
        neighbours[i].add(j)
        neighbours[j].add(i)
    heap = [(-s, i, j) for s, (i, j) in zip(regions.similarities(pairs[:, 0], pairs[:, 1]).tolist(), pairs.tolist())]
    heapq.heapify(heap)
    alive = np.zeros(2 * n - 1, dtype=bool)
    alive[:n] = True
    while heap:
        _, i, j = heapq.heappop(heap)
        if not (alive[i] and alive[j]):
            continue
        t = regions.merge(i, j)
        alive[i] = alive[j] = False
        alive[t] = True
        around = (neighbours[i] | neighbours[j]) - {i, j}
        for m in around:
            neighbours[m] -= {i, j}
            neighbours[m].add(t)
        neighbours[t] = around
        if around:
            others = np.fromiter(around, dtype=np.int64)
            for s, m in zip(regions.similarities(t, others).tolist(), others.tolist()):
                heapq.heappush(heap, (-s, m, t))
    return regions.boxes[:regions.count].copy()


# --- strategies and the search -----------------------------------------------------------------------

def strategies(mode: str = "fast", *, colour_spaces: Sequence[str] | None = None, ks: Sequence[int] | None = None,
               similarities: Sequence[str] | None = None, grey: bool = False) -> tuple[Strategy, ...]:
    """The strategies of preset ``mode`` (``single``, ``fast``, ``quality``: the paper's Table 5),
    with any of its colour spaces, ``k`` values or similarity sets replaced. ``grey``: the image has
    one channel, so every colour space is intensity ``i`` (duplicates dropped)."""
    one_of("mode", mode, tuple(MODES))
    preset_spaces, preset_similarities, preset_ks = MODES[mode]
    spaces = tuple(colour_spaces) if colour_spaces is not None else preset_spaces
    for space in spaces:
        one_of("colour space", space, COLOUR_SPACES)
    ks = tuple(ks) if ks is not None else preset_ks
    for k in ks:
        positive_int("k", k, " (Felzenszwalb-Huttenlocher's scale)")
    sims = tuple(similarities) if similarities is not None else preset_similarities
    for similarity in sims:
        _check_similarity(similarity)
    if not spaces or not ks or not sims:
        raise ValueError("colour_spaces, ks and similarities must each name at least one choice")
    if grey:
        spaces = ("i",)
    found = [Strategy(space, k, similarity) for space in spaces for k in ks for similarity in sims]
    return tuple(dict.fromkeys(found))


def _rank(boxes_per_strategy: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """All strategies' boxes by ``RND x position`` (position 1 = the last region made), then the
    lower-ranked duplicates removed."""
    values, boxes = [], []
    for made in boxes_per_strategy:
        position = np.arange(len(made), 0, -1, dtype=np.float64)
        values.append(rng.random(len(made)) * position)
        boxes.append(made)
    values, boxes = np.concatenate(values), np.concatenate(boxes)
    boxes = boxes[np.argsort(values, kind="stable")]
    _, first = np.unique(boxes, axis=0, return_index=True)
    return boxes[np.sort(first)]


def selective_search(image: torch.Tensor | np.ndarray, mode: str = "fast", *,
                     colour_spaces: Sequence[str] | None = None, ks: Sequence[int] | None = None,
                     similarities: Sequence[str] | None = None, sigma: float = FH_SIGMA,
                     min_size: int | None = None, seed: int = 0) -> Proposals:
    """Selective search's proposals for one uint8 image (``(H, W)``, ``(H, W, 3)`` or ``(C, H, W)``).

    ``mode`` picks the paper's preset (``single``, ``fast``, ``quality``, see the module docstring);
    ``colour_spaces`` (of ``rgb hsv lab rgi h i``), ``ks`` (FH scales) and ``similarities`` (e.g.
    ``("CTSF", "TSF")``) replace the preset's. ``sigma`` and ``min_size`` (default ``k``) go to the
    FH segmentation; ``seed`` draws the ``RND`` of the ranking.
    """
    start = time.perf_counter()
    pixels = _as_hwc(image)
    positive_number("sigma", sigma)
    non_negative_int("seed", seed)
    grey = pixels.shape[-1] == 1
    plan = strategies(mode, colour_spaces=colour_spaces, ks=ks, similarities=similarities, grey=grey)
    made: list[np.ndarray] = []
    for space in dict.fromkeys(s.colour_space for s in plan):
        channels = to_colour_space(pixels, space)
        texture_bins = _texture_bins(channels)
        for k in dict.fromkeys(s.k for s in plan if s.colour_space == space):
            labels = initial_regions(channels, k, sigma, min_size)
            colour = colour_histograms(channels, labels)
            texture = _region_histograms(texture_bins, labels, TEXTURE_BINS * texture_bins.shape[-1])
            for s in plan:
                if s.colour_space == space and s.k == k:
                    made.append(hierarchical_grouping(labels, colour, texture, s.similarity))
    boxes = _rank(made, np.random.default_rng(seed))
    return Proposals(torch.from_numpy(boxes).to(torch.float32), plan, pixels.shape[:2], time.perf_counter() - start)


# --- measures ----------------------------------------------------------------------------------------

def _per_image(proposals, gt_boxes) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Pairs (proposal boxes, ground-truth boxes), one per image, from one image or sequences."""
    single = isinstance(gt_boxes, torch.Tensor)
    props = [proposals] if single else list(proposals)
    gts = [gt_boxes] if single else list(gt_boxes)
    if len(props) != len(gts):
        raise ValueError(f"proposals for {len(props)} images but ground truth for {len(gts)}")
    pairs = []
    for p, g in zip(props, gts):
        p = p.boxes if isinstance(p, Proposals) else torch.as_tensor(p)
        g = torch.as_tensor(g)
        for name, boxes in (("proposals", p), ("gt_boxes", g)):
            if boxes.dim() != 2 or boxes.shape[1] != 4:
                raise ValueError(f"{name} must be (N, 4) xyxy boxes per image, got shape {tuple(boxes.shape)}")
        pairs.append((p.to(torch.float64), g.to(torch.float64)))
    return pairs


def best_overlaps(proposals, gt_boxes, top: int | None = None) -> torch.Tensor:
    """For each ground-truth box, ``max_l IoU(g, l)`` over the (first ``top``) proposals of its image
    (0 where the image has none); all images' boxes concatenated, float64. ``proposals``: a
    :class:`Proposals` or ``(K, 4)`` tensor, or a sequence of them with ``gt_boxes`` a sequence of
    ``(G_i, 4)`` tensors."""
    if top is not None:
        positive_int("top", top)
    best = []
    for p, g in _per_image(proposals, gt_boxes):
        p = p[:top] if top is not None else p
        if len(p) == 0 or len(g) == 0:
            best.append(torch.zeros(len(g), dtype=torch.float64))
        else:
            best.append(box_iou(g, p).max(1).values)
    return torch.cat(best) if best else torch.zeros(0, dtype=torch.float64)


def proposal_recall(proposals, gt_boxes, iou: float = 0.5, top: int | None = None) -> float:
    """The fraction of ground-truth boxes that some proposal covers with ``IoU >= iou`` (the
    Pascal criterion at 0.5); arguments as :func:`best_overlaps`."""
    if not 0 < iou <= 1:
        raise ValueError(f"iou must be in (0, 1], got {iou!r}")
    best = best_overlaps(proposals, gt_boxes, top)
    if best.numel() == 0:
        raise ValueError("recall needs at least one ground-truth box")
    return float((best >= iou).double().mean())


def average_best_overlap(proposals, gt_boxes, labels=None, top: int | None = None) -> float:
    """ABO ``= 1/|G| sum_g max_l IoU(g, l)`` over all ground-truth boxes; with ``labels`` (the class
    of each ground-truth box, a tensor or one per image) the paper's MABO, the mean over classes of
    each class's ABO."""
    best = best_overlaps(proposals, gt_boxes, top)
    if best.numel() == 0:
        raise ValueError("the average best overlap needs at least one ground-truth box")
    if labels is None:
        return float(best.mean())
    labels = torch.as_tensor(labels) if isinstance(labels, torch.Tensor) or isinstance(gt_boxes, torch.Tensor) \
        else torch.cat([torch.as_tensor(x).reshape(-1) for x in labels])
    labels = labels.reshape(-1)
    if labels.numel() != best.numel():
        raise ValueError(f"labels must give one class per ground-truth box ({best.numel()}), got {labels.numel()}")
    return float(torch.stack([best[labels == c].mean() for c in torch.unique(labels)]).mean())
