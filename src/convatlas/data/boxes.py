"""Detection datasets in memory: images with boxes, labels and (optionally) instance masks.

``load_detection(name_or_path)`` returns :class:`DetectionSplits`: a train and a test
:class:`BoxSet`, the class names (``"background"`` at index 0, never an object's label), the
per-channel mean and standard deviation of the training images (fractions of 255) and, for a
COCO source, the category id of each label (so a COCO file written back keeps its ids).

**Coordinates.** Every box in memory is ``(x1, y1, x2, y2)`` float32 in *pixel-edge*
coordinates: the image spans ``[0, W] x [0, H]``, pixel column ``c`` covers ``[c, c + 1)``, a box
is non-empty (``x1 < x2``, ``y1 < y2``) and lies inside its image (``0 <= x1``, ``x2 <= W``,
likewise for ``y``). The formats convert into it on reading and out of it on writing
(:mod:`convatlas.data.detection_formats`): Pascal VOC's 1-based inclusive pixel indices
(``x1 = xmin - 1``, ``x2 = xmax``), COCO's ``[x, y, w, h]`` (``x2 = x + w``) and YOLO's normalised
``cx cy w h`` (``x1 = (cx - w / 2) * W``).

What it reads:

* ``"digit-scenes"`` (the default; embedded, offline): the scenes of
  :func:`convatlas.data.scenes.digit_scenes`, the very ones segmentation uses; keyword options
  go to its :class:`~convatlas.data.scenes.SceneConfig` (``size=96, num_train=500, ...``).
* a folder in one of the three layouts (recognised in this order):

  - **Pascal VOC** - ``Annotations/<id>.xml``, ``JPEGImages/<id>.jpg`` and
    ``ImageSets/Main/{train,val,trainval,test}.txt``; the folder may also be the ``VOCdevkit``
    above it or hold ``VOCdevkit/VOC2007``;
  - **COCO** - ``annotations/instances_<split>.json`` with the images in ``<split>/`` or
    ``images/``, or a single ``.json`` beside an ``images/`` folder;
  - **YOLO** - ``images/{train,val}/`` and ``labels/{train,val}/*.txt`` (``class cx cy w h``
    per line) with a data YAML (``path``, ``train``, ``val``, ``names``).

  A dataset that comes as one split is divided by a fixed seeded split (``test_fraction`` of
  its images, 20%, to test), as :func:`~convatlas.data.masks.load_segmentation` does.

**Sizes.** ``image_size`` (an int for a square, or ``(H, W)``) resizes every image (bilinear,
antialiased) and its instance id map (nearest) at load time, without keeping the aspect ratio,
and scales its boxes by the same factors. Without it, images of different sizes are an error
naming two of them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from convatlas._checks import fraction, non_negative_int
from convatlas.data import formats
from convatlas.data.datasets import InstanceRows, SplitsShape, channel_stats
from convatlas.data.masks import MaskSet, resize_uint8_images, resize_label_maps, seeded_split, size_pair

if TYPE_CHECKING:
    from convatlas.data.detection_formats import FormatRecords, ImageRecord

__all__ = [
    "BoxSet",
    "DetectionSplits",
    "load_detection",
    "list_detection_datasets",
    "resize_box_set",
]


# ------------------------------------------------------------------------------------------
# In memory


def _check_tensor(name: str, value: torch.Tensor, dtype: torch.dtype, shape: tuple[int, ...]) -> None:
    if not isinstance(value, torch.Tensor) or value.dtype != dtype or tuple(value.shape) != shape:
        got = f"{value.dtype} {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"{name} must be {str(dtype).replace('torch.', '')} of shape {shape}, got {got}")


@dataclass
class BoxSet(InstanceRows):
    """One split of a detection dataset.

    ``images`` uint8 ``(N, C, H, W)``. Per instance, all images together: ``boxes`` float32
    ``(M, 4)`` xyxy in pixel-edge coordinates (inside the image, ``x1 < x2``, ``y1 < y2``),
    ``labels`` int64 ``(M,)`` class indices ``>= 1`` (0 is the background, never an object),
    ``difficult`` and ``iscrowd`` bool ``(M,)`` (all False when not given); image ``i``'s
    instances are rows ``offsets[i]:offsets[i + 1]`` of ``offsets`` int64 ``(N + 1,)``.
    Optional ``instances`` uint8 ``(N, H, W)``: 0 where no instance and ``j + 1`` on the pixels
    of image ``i``'s ``j``-th instance (masks are disjoint; where a source's masks overlap, the
    later instance holds the pixel). ``names``: optional per-image file stems.
    """

    images: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor
    offsets: torch.Tensor
    instances: torch.Tensor | None = None
    difficult: torch.Tensor | None = None
    iscrowd: torch.Tensor | None = None
    names: list[str] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.images, torch.Tensor) or self.images.dtype != torch.uint8 or self.images.dim() != 4:
            got = f"{self.images.dtype} {tuple(self.images.shape)}" if isinstance(self.images, torch.Tensor) else \
                type(self.images).__name__
            raise ValueError(f"images must be uint8 (N, C, H, W), got {got}")
        n, _, h, w = self.images.shape
        _check_tensor("offsets", self.offsets, torch.int64, (n + 1,))
        if int(self.offsets[0]) != 0 or bool((self.offsets.diff() < 0).any()):
            raise ValueError(f"offsets must start at 0 and never decrease, got {self.offsets.tolist()[:8]}")
        m = int(self.offsets[-1])
        _check_tensor("boxes", self.boxes, torch.float32, (m, 4))
        _check_tensor("labels", self.labels, torch.int64, (m,))
        for flag in ("difficult", "iscrowd"):
            if getattr(self, flag) is None:
                setattr(self, flag, torch.zeros(m, dtype=torch.bool))
            _check_tensor(flag, getattr(self, flag), torch.bool, (m,))
        if self.instances is not None:
            _check_tensor("instances", self.instances, torch.uint8, (n, h, w))
        if self.names is not None:
            self.names = [str(s) for s in self.names]
            if len(self.names) != n:
                raise ValueError(f"names must give one name per image ({n}), got {len(self.names)}")
        self._check_boxes(h, w)

    def _where(self, i: int) -> str:
        return f"image {i}" + (f" ({self.names[i]!r})" if self.names is not None else "")

    def _check_boxes(self, h: int, w: int) -> None:
        """Every box non-empty and inside its ``w x h`` image; every label an object class (>= 1)."""
        if len(self.labels) == 0:
            return
        image = self.image_index
        b = self.boxes
        empty = ~((b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1]))  # NaN counts as empty
        outside = (b[:, 0] < 0) | (b[:, 1] < 0) | (b[:, 2] > w) | (b[:, 3] > h) | ~torch.isfinite(b).all(1)
        for bad, why in ((empty, "has x2 <= x1 or y2 <= y1; expected x1 < x2 and y1 < y2"),
                         (outside, f"lies outside the {w}x{h} image; expected 0 <= x1 < x2 <= {w} and "
                                   f"0 <= y1 < y2 <= {h} (pixel-edge coordinates)")):
            if bool(bad.any()):
                j = int(bad.nonzero()[0, 0])
                i = int(image[j])
                box = [round(float(v), 4) for v in b[j]]
                raise ValueError(f"{self._where(i)}: box {j - int(self.offsets[i])} {box} (xyxy) {why}")
        if bool((self.labels < 1).any()):
            j = int((self.labels < 1).nonzero()[0, 0])
            raise ValueError(f"{self._where(int(image[j]))}: label {int(self.labels[j])}; object labels are "
                             f"1..num_classes - 1 (0 is the background)")
        if self.instances is not None and len(self):
            highest = self.instances.reshape(len(self), -1).amax(1).long()
            over = highest > self.instance_counts
            if bool(over.any()):
                i = int(over.nonzero()[0, 0])
                raise ValueError(f"{self._where(i)}: its instance id map holds id {int(highest[i])} but the image has "
                                 f"{int(self.instance_counts[i])} instances")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_boxes(self) -> int:
        return int(self.offsets[-1])

    @property
    def image_index(self) -> torch.Tensor:
        """The image of each instance, int64 ``(M,)``."""
        return torch.repeat_interleave(torch.arange(len(self)), self.instance_counts)

    def target(self, i: int) -> dict[str, torch.Tensor]:
        """Image ``i``'s instances as torchvision's detection models take them:
        ``{"boxes", "labels", "iscrowd", "difficult"}`` and ``"masks"`` where the set has them."""
        rows = self._rows(i)
        out = {"boxes": self.boxes[rows], "labels": self.labels[rows], "iscrowd": self.iscrowd[rows],
               "difficult": self.difficult[rows]}
        if self.instances is not None:
            out["masks"] = self.instance_masks(i)
        return out

    def subset(self, indices: torch.Tensor | np.ndarray | Sequence[int]) -> "BoxSet":
        """The images ``indices`` (in that order) with their instances."""
        index = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        offsets, rows = self.instance_rows(index)
        return BoxSet(self.images[index], self.boxes[rows], self.labels[rows], offsets,
                      self.instances[index] if self.instances is not None else None,
                      self.difficult[rows], self.iscrowd[rows],
                      [self.names[int(i)] for i in index] if self.names is not None else None)

    @classmethod
    def from_mask_set(cls, data: MaskSet, names: list[str] | None = None) -> "BoxSet":
        """The boxes, labels and instance id map of a segmentation :class:`MaskSet` that has instances."""
        if not data.has_instances:
            raise ValueError("this MaskSet has no instances (boxes, labels, offsets) to make a BoxSet of")
        return cls(data.images, data.boxes.to(torch.float32), data.labels, data.offsets, data.instances, names=names)


@dataclass
class DetectionSplits(SplitsShape):
    """A detection dataset in memory: train and test :class:`BoxSet`, class names (index 0 is
    ``"background"``, the labels are 1..K), per-channel ``mean`` and ``std`` of the training images
    (fractions of 255) and, for a COCO source, ``category_ids[k - 1]``, the category id of label ``k``
    (increasing: the labels are the categories in id order)."""

    name: str
    train: BoxSet
    test: BoxSet
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str = ""
    notes: list[str] = field(default_factory=list)
    category_ids: list[int] | None = None

    def __post_init__(self) -> None:
        if len(self.classes) < 2 or self.classes[0] != "background":
            raise ValueError(f"classes must be 'background' then at least one object class, got {self.classes[:5]}")
        for split, part in (("train", self.train), ("test", self.test)):
            over = part.labels >= len(self.classes)
            if bool(over.any()):
                j = int(over.nonzero()[0, 0])
                raise ValueError(f"{split} {part._where(int(part.image_index[j]))}: label {int(part.labels[j])} is not "
                                 f"a class; expected 1..{len(self.classes) - 1} ({len(self.classes)} classes)")
        if tuple(self.train.images.shape[1:]) != tuple(self.test.images.shape[1:]) and len(self.test):
            raise ValueError(f"train images are {tuple(self.train.images.shape[1:])} but test images "
                             f"{tuple(self.test.images.shape[1:])}; expected one (C, H, W)")
        if self.category_ids is not None:
            ids = [int(c) for c in self.category_ids]
            if len(ids) != len(self.classes) - 1 or any(b <= a for a, b in zip(ids, ids[1:])):
                raise ValueError(f"category_ids must give each of the {len(self.classes) - 1} object classes an id, "
                                 f"increasing with the label (COCO's categories in id order), got {ids[:8]}")
            self.category_ids = ids

    def __repr__(self) -> str:
        h, w = self.image_size
        return (f"DetectionSplits({self.name!r}: train {len(self.train)} images / {self.train.num_boxes} boxes, "
                f"test {len(self.test)} / {self.test.num_boxes}, {self.in_channels}x{h}x{w}, "
                f"{self.num_classes} classes)")


# ------------------------------------------------------------------------------------------
# Sizes


def _scale_boxes(boxes: torch.Tensor, size: tuple[int, int], target: tuple[int, int]) -> torch.Tensor:
    """Boxes of an ``(h, w)`` image for the image resized to ``target``: ``x * W' / w``,
    ``y * H' / h`` (in float64, clipped to the new image against rounding, back to float32)."""
    (h, w), (th, tw) = size, target
    scale = torch.tensor([tw / w, th / h, tw / w, th / h], dtype=torch.float64)
    limit = torch.tensor([tw, th, tw, th], dtype=torch.float64)
    return (boxes.double() * scale).clamp(min=0).minimum(limit).to(torch.float32)


def resize_box_set(data: BoxSet, size: int | Sequence[int]) -> BoxSet:
    """Every image to ``size`` (bilinear, antialiased), the instance id maps nearest
    (``"nearest-exact"``), the boxes scaled by the same factors; the aspect ratio is not kept."""
    target = size_pair(size)
    h, w = data.images.shape[-2:]
    if (h, w) == target:
        return data
    images = torch.cat([resize_uint8_images(c, target) for c in data.images.split(512)]) if len(data) else \
        data.images.new_zeros((0, data.images.shape[1], *target))
    instances = None
    if data.instances is not None:
        instances = resize_label_maps(data.instances, target) if len(data) else data.instances.new_zeros((0, *target))
    return BoxSet(images, _scale_boxes(data.boxes, (h, w), target), data.labels, data.offsets, instances,
                  data.difficult, data.iscrowd, data.names)


# ------------------------------------------------------------------------------------------
# From the records of a file format to a BoxSet


def _check_sizes(records: list["ImageRecord"]) -> None:
    first: dict[tuple[int, int], Path] = {}
    for r in records:
        first.setdefault((r.height, r.width), r.image)
        if len(first) > 1:
            (s1, p1), (s2, p2) = list(first.items())[:2]
            raise ValueError(
                f"images have different sizes ({p1} is {s1[1]}x{s1[0]}, {p2} is {s2[1]}x{s2[0]}, width x height); "
                f"pass image_size=N or (H, W) to resize them all (their boxes scale with them)"
            )


def _read_one(record: "ImageRecord", channels: int, target: tuple[int, int] | None,
              with_masks: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """One image (C, H, W), its boxes float32 (k, 4) and its instance id map (H, W), resized to ``target``."""
    from convatlas.data.detection_formats import instance_id_map

    image = torch.from_numpy(formats.read_image(record.image, channels))
    if tuple(image.shape[1:]) != (record.height, record.width):
        raise ValueError(f"image {record.image} is {image.shape[2]}x{image.shape[1]} (width x height) but "
                         f"{record.source} says {record.width}x{record.height}")
    boxes = torch.from_numpy(record.boxes).to(torch.float32)
    ids = torch.from_numpy(instance_id_map(record)) if with_masks else None
    size = (record.height, record.width)
    if target is not None and size != target:
        boxes = _scale_boxes(torch.from_numpy(record.boxes), size, target)
        image = resize_uint8_images(image[None], target)[0]
        ids = resize_label_maps(ids[None], target)[0] if ids is not None else None
    return image, boxes, ids


def _box_set(records: list["ImageRecord"], channels: int, target: tuple[int, int] | None,
             shape: tuple[int, int], with_masks: bool) -> BoxSet:
    if not records:
        return BoxSet(torch.zeros((0, channels, *shape), dtype=torch.uint8), torch.zeros((0, 4)),
                      torch.zeros(0, dtype=torch.long), torch.zeros(1, dtype=torch.long),
                      torch.zeros((0, *shape), dtype=torch.uint8) if with_masks else None, names=[])
    read = [_read_one(r, channels, target, with_masks) for r in records]
    counts = torch.tensor([len(r.labels) for r in records], dtype=torch.long)
    return BoxSet(
        images=torch.stack([image for image, _, _ in read]),
        boxes=torch.cat([boxes.reshape(-1, 4) for _, boxes, _ in read]),
        labels=torch.from_numpy(np.concatenate([r.labels for r in records]).astype(np.int64)),
        offsets=torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)]),
        instances=torch.stack([ids for _, _, ids in read]) if with_masks else None,
        difficult=torch.from_numpy(np.concatenate([r.difficult for r in records]).astype(bool)),
        iscrowd=torch.from_numpy(np.concatenate([r.iscrowd for r in records]).astype(bool)),
        names=[r.name for r in records],
    )


def splits_from_records(records: "FormatRecords", image_size: int | Sequence[int] | None = None,
                        test_fraction: float = 0.2, seed: int = 0) -> DetectionSplits:
    """Read the images the ``records`` of a file format annotate into :class:`DetectionSplits`
    (a single split ``"all"`` is divided by a fixed seeded split)."""
    target = size_pair(image_size) if image_size is not None else None
    notes = list(records.notes)
    parts = dict(records.splits)
    if "all" in parts:
        items = parts.pop("all")
        train_idx, test_idx = seeded_split(len(items), test_fraction, seed)
        parts = {"train": [items[i] for i in train_idx], "test": [items[i] for i in test_idx]}
        notes.append(f"one split in {records.root}: fixed seeded split ({test_fraction:.0%} of the images to test, "
                     f"seed {seed})")
    everything = parts["train"] + parts["test"]
    if not parts["train"]:
        raise ValueError(f"{records.root} annotates no training images; expected at least one")
    if target is None:
        _check_sizes(everything)
    channels = max(formats.image_mode_channels(r.image) for r in everything)
    with_masks = any(s is not None for r in everything for s in (r.segmentations or []))
    shape = target or (everything[0].height, everything[0].width)
    data = {s: _box_set(items, channels, target, shape, with_masks) for s, items in parts.items()}
    if target is not None:
        notes.append(f"every image resized to {target[0]}x{target[1]} (height x width), its boxes scaled with it")
    mean, std = channel_stats(data["train"].images)
    return DetectionSplits(f"{records.format}:{records.root}", data["train"], data["test"], list(records.classes),
                           mean, std, records.source, notes, records.category_ids)


# ------------------------------------------------------------------------------------------
# The front door

_SCENE_NAMES = {"digit-scenes", "digit_scenes", "digitscenes", "scenes"}


def list_detection_datasets() -> list[str]:
    """Names :func:`load_detection` knows (any folder in a recognised layout also works)."""
    return ["digit-scenes"]


def _load_scenes(image_size: int | Sequence[int] | None, options: dict[str, Any]) -> DetectionSplits:
    """The digit-scenes of segmentation as boxes (resized here, boxes in float64 then clipped, so
    that no edge lands a rounding error outside the new image)."""
    from convatlas.data.masks import load_segmentation

    seg = load_segmentation("digit-scenes", **options)
    train, test = BoxSet.from_mask_set(seg.train), BoxSet.from_mask_set(seg.test)
    notes, (mean, std) = list(seg.notes), (seg.mean, seg.std)
    if image_size is not None and size_pair(image_size) != seg.image_size:
        target = size_pair(image_size)
        train, test = resize_box_set(train, target), resize_box_set(test, target)
        mean, std = channel_stats(train.images)
        notes.append(f"{seg.image_size[0]}x{seg.image_size[1]} scenes resized to {target[0]}x{target[1]}, "
                     f"their boxes scaled with them")
    return DetectionSplits("digit-scenes", train, test, list(seg.classes), mean, std,
                           seg.source + "; boxes are the tight boxes of the instance masks", notes)


def load_detection(
    name_or_path: str | os.PathLike = "digit-scenes",
    image_size: int | Sequence[int] | None = None,
    *,
    root: str | os.PathLike | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    **options: Any,
) -> DetectionSplits:
    """Load a detection dataset into memory (see the module docstring for the layouts).

    ``name_or_path``: ``"digit-scenes"`` (``options`` go to its
    :class:`~convatlas.data.scenes.SceneConfig`) or a folder in the Pascal VOC, COCO or YOLO
    layout; a relative folder is looked for in ``root`` first, when given. ``image_size`` resizes every image (bilinear) and scales its boxes. ``test_fraction``
    and ``seed`` divide a dataset that comes as one split.
    """
    fraction("test_fraction", test_fraction)
    non_negative_int("seed", seed)
    if image_size is not None:
        size_pair(image_size)
    name = os.fspath(name_or_path)
    key = name.strip().lower()
    if key in _SCENE_NAMES:
        return _load_scenes(image_size, options)
    if options:
        raise ValueError(f"options {sorted(options)} are digit-scenes options; the folder {name!r} takes none")
    from convatlas.data import detection_formats

    folder = Path(name).expanduser()
    if root is not None and not folder.is_absolute() and (Path(root).expanduser() / folder).exists():
        folder = Path(root).expanduser() / folder
    if not folder.exists() and os.sep not in name and "/" not in name:
        raise ValueError(f"unknown detection dataset {name!r}: the names are "
                         f"{', '.join(list_detection_datasets())}, or give a folder path ({detection_formats.LAYOUTS})")
    records = detection_formats.read_records(folder)
    return splits_from_records(records, image_size, test_fraction, seed)
