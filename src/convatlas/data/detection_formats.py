"""The three detection file formats - Pascal VOC XML, COCO JSON, YOLO txt - read and written.

In memory a box is ``(x1, y1, x2, y2)`` in *pixel-edge* coordinates (the image spans
``[0, W] x [0, H]``; see :mod:`convatlas.data.boxes`). Each format says it another way:

* **Pascal VOC** (Everingham et al. 2010, IJCV; the devkit's ``VOCdevkit/VOC2007`` layout):
  one ``Annotations/<id>.xml`` per image, holding ``<size>`` and per ``<object>`` its ``<name>``,
  ``<difficult>`` and ``<bndbox>`` with ``xmin ymin xmax ymax`` as **1-based inclusive pixel
  indices**: the first pixel column is 1 and column ``xmax`` belongs to the box. So
  ``x1 = xmin - 1``, ``y1 = ymin - 1``, ``x2 = xmax``, ``y2 = ymax``, and writing rounds each
  edge to a whole pixel (``xmin = round(x1) + 1``, ``xmax = round(x2)``). Images are
  ``JPEGImages/<id>.jpg``; the splits are ``ImageSets/Main/{trainval,test}.txt`` (trained on
  ``trainval`` - or ``train`` plus ``val`` - and tested on ``test``, as VOC2007 is) or, without a
  ``test`` list, ``train.txt`` and ``val.txt``. Classes: a ``classes.txt`` beside ``Annotations/``
  (one object class per line) where there is one; else VOC's 20 classes when every name is one
  of them; else the sorted names found.
* **COCO** (Lin et al. 2014, "Microsoft COCO", arXiv:1405.0312; the format of
  cocodataset.org/#format-data): ``annotations/instances_<split>.json`` holding ``images``
  (``id``, ``file_name``, ``width``, ``height``), ``annotations`` (``image_id``, ``category_id``,
  ``bbox = [x, y, w, h]`` with ``(x, y)`` the top-left corner in pixel-edge coordinates, so
  ``x2 = x + w``; ``iscrowd``; ``segmentation``) and ``categories`` (``id``, ``name``). The
  categories, by increasing id, become the labels 1..K (their ids are kept, so a file written
  back has the same ids). A segmentation is a list of polygons ``[x1, y1, x2, y2, ...]``
  (rasterised: a pixel belongs to the object where its centre lies inside a polygon) or a
  run-length encoding (RLE, see :func:`decode_rle`), as a list of counts or COCO's compressed
  string.
* **YOLO** (the darknet / ultralytics layout): ``images/<split>/<stem>.jpg`` and
  ``labels/<split>/<stem>.txt`` with one line ``class cx cy w h`` per object, the centre and size
  **normalised** by the image's width and height (``x1 = (cx - w / 2) * W``) and ``class``
  0-based (class ``k`` is label ``k + 1``); a data YAML names the classes (``names:`` a list, or
  a mapping ``0: name``), the root (``path``) and the splits (``train``, ``val``: folders of
  images or ``.txt`` lists of them). An image without a label file holds no object.

Every box must be non-empty and inside its image: a box outside by less than
:data:`EDGE_TOLERANCE` pixels (the rounding of the numbers in a file) is clipped to the edge;
anything else is an error naming the file, the box and what was expected. So is a class not
in the list, an annotation for a missing image, a malformed XML/JSON/YAML file or txt line
(with its line number), an empty folder and a folder in none of the layouts.

The writers (:func:`write_voc`, :func:`write_coco`, :func:`write_yolo`) write a whole dataset
into a new or empty folder - nothing existing is ever overwritten - through the atomic
writers of :mod:`convatlas._io`; :func:`convert` is :func:`~convatlas.data.boxes.load_detection`
followed by one of them.
"""

from __future__ import annotations

import json
import math
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from convatlas._checks import one_of
from convatlas._io import atomic_save, atomic_write_text, write_json, write_yaml
from convatlas.data import formats
from convatlas.data.boxes import BoxSet, DetectionSplits, load_detection
from convatlas.data.masks import VOC_CLASSES

__all__ = [
    "EDGE_TOLERANCE",
    "FORMATS",
    "LAYOUTS",
    "ImageRecord",
    "FormatRecords",
    "WrittenDataset",
    "find_layout",
    "read_records",
    "read_voc",
    "read_coco",
    "read_yolo",
    "write_voc",
    "write_coco",
    "write_yolo",
    "convert",
    "refuse_existing",
    "decode_rle",
    "encode_rle",
    "rasterize_polygons",
    "instance_id_map",
]

EDGE_TOLERANCE = 0.01  # pixels a box may reach past the image edge (rounding in a file) before it is an error
FORMATS = ("voc", "coco", "yolo")
LAYOUTS = (
    "a Pascal VOC folder (Annotations/<id>.xml, JPEGImages/<id>.jpg, ImageSets/Main/{trainval,test}.txt; "
    "or a VOCdevkit holding VOC2007/), a COCO folder (annotations/instances_<split>.json with the images in "
    "<split>/ or images/; or a single .json beside images/), or a YOLO folder (images/{train,val}/, "
    "labels/{train,val}/<stem>.txt and a data YAML with names:)"
)


# ------------------------------------------------------------------------------------------
# What a reader returns


@dataclass
class ImageRecord:
    """One annotated image as a file format describes it, before its pixels are read.

    ``boxes`` float64 ``(k, 4)`` xyxy pixel edges (checked against ``width x height``),
    ``labels`` int64 ``(k,)`` 1..K, ``difficult`` and ``iscrowd`` bool ``(k,)``; ``segmentations``
    (COCO only) one checked COCO segmentation (or None) per instance; ``source`` the annotation
    file, for messages; ``name`` the image's file stem.
    """

    image: Path
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    iscrowd: np.ndarray
    segmentations: list[Any] | None = None
    source: str = ""
    name: str = ""


@dataclass
class FormatRecords:
    """A dataset as a reader found it: per split (``"train"`` and ``"test"``, or ``"all"`` when it
    comes as one), its images' records; the classes (``"background"`` first); for COCO the category
    id of each label 1..K."""

    format: str
    root: Path
    splits: dict[str, list[ImageRecord]]
    classes: list[str]
    source: str
    category_ids: list[int] | None = None
    notes: list[str] = field(default_factory=list)


def _record(image: Path, width: int, height: int, boxes: list[list[float]], labels: list[int],
            difficult: list[bool] | None = None, iscrowd: list[bool] | None = None, **more: Any) -> ImageRecord:
    k = len(labels)
    return ImageRecord(image, width, height, np.asarray(boxes, dtype=np.float64).reshape(k, 4),
                       np.asarray(labels, dtype=np.int64).reshape(k), np.asarray(difficult or [False] * k, dtype=bool),
                       np.asarray(iscrowd or [False] * k, dtype=bool), **more)


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file, from its header."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return int(img.width), int(img.height)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from exc


def _checked_box(box: Sequence[float], width: int, height: int, image: Path, where: str) -> list[float]:
    """``box`` xyxy if it is non-empty and inside the ``width x height`` image (within
    :data:`EDGE_TOLERANCE`, then clipped to it); else an error beginning with ``where``."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise ValueError(f"{where}: a coordinate is not a finite number")
    if not (x2 > x1 and y2 > y1):
        raise ValueError(f"{where}: the box is empty (x2 = {x2:g} <= x1 = {x1:g} or y2 = {y2:g} <= y1 = {y1:g} in "
                         f"pixel edges); expected a box of positive width and height")
    t = EDGE_TOLERANCE
    if x1 < -t or y1 < -t or x2 > width + t or y2 > height + t:
        raise ValueError(f"{where}: the box (x1 {x1:g}, y1 {y1:g}, x2 {x2:g}, y2 {y2:g} in pixel edges) reaches outside "
                         f"the {width}x{height} image {image}; expected 0 <= x1 < x2 <= {width} and "
                         f"0 <= y1 < y2 <= {height}")
    return [min(max(x1, 0.0), width), min(max(y1, 0.0), height), min(max(x2, 0.0), width), min(max(y2, 0.0), height)]


def _class_names(path: Path) -> list[str]:
    """Object class names of a ``classes.txt`` (one per non-blank line; a first line naming the
    background, ``background`` or ``__background__``, is dropped)."""
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    if names and names[0] in ("background", "__background__"):
        names = names[1:]
    if not names:
        raise ValueError(f"{path} names no class; expected one object class name per line")
    seen: set[str] = set()
    for n, name in enumerate(names, 1):
        if name in seen:
            raise ValueError(f"{path}: class {name!r} is named twice (line {n}); expected each class once")
        seen.add(name)
    return names


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in formats.IMAGE_EXTENSIONS
                  and not p.name.startswith("."))


# ------------------------------------------------------------------------------------------
# COCO masks: run-length encoding and polygons


def rle_counts_from_string(text: str | bytes) -> list[int]:
    """COCO's compressed RLE string -> its run lengths.

    Each count is written in 5-bit groups, least significant first, one character per group
    (``chr(group + 48)``); bit ``0x20`` of a group says that another group follows, and bit
    ``0x10`` of the last group is the sign. From the fourth count on, what is stored is the
    difference ``counts[i] - counts[i - 2]``.
    """
    data = text.decode("ascii") if isinstance(text, bytes) else text
    counts: list[int] = []
    p = 0
    while p < len(data):
        value, shift, more = 0, 0, True
        while more:
            if p >= len(data):
                raise ValueError(f"compressed RLE ends inside a count (at character {p})")
            group = ord(data[p]) - 48
            if not 0 <= group < 64:
                raise ValueError(f"compressed RLE holds {data[p]!r} at character {p}; expected characters '0'..'o'")
            value |= (group & 0x1F) << shift
            more = bool(group & 0x20)
            p += 1
            shift += 5
            if not more and group & 0x10:
                value |= -1 << shift  # the sign bit: extend it
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def rle_counts_to_string(counts: Sequence[int]) -> str:
    """Run lengths -> COCO's compressed RLE string (the inverse of :func:`rle_counts_from_string`)."""
    chars: list[str] = []
    for i, count in enumerate(counts):
        value = int(count) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            group = value & 0x1F
            value >>= 5  # arithmetic shift: a negative value tends to -1
            more = value != -1 if group & 0x10 else value != 0
            chars.append(chr((group | (0x20 if more else 0)) + 48))
    return "".join(chars)


def _rle_size(rle: dict, where: str) -> tuple[int, int]:
    size = rle.get("size")
    if (not isinstance(size, (list, tuple)) or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in size)):
        raise ValueError(f"{where}: RLE size {size!r}; expected [height, width]")
    return int(size[0]), int(size[1])


def _rle_counts(rle: dict, where: str) -> list[int]:
    """The run lengths of an RLE (a list of counts, or the compressed string), checked to cover the mask."""
    h, w = _rle_size(rle, where)
    counts = rle.get("counts")
    if isinstance(counts, (str, bytes)):
        try:
            counts = rle_counts_from_string(counts)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"{where}: {exc}") from None
    elif not isinstance(counts, list) or not all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
        raise ValueError(f"{where}: RLE counts must be a list of integers or COCO's compressed string, "
                         f"got {type(counts).__name__}")
    if any(c < 0 for c in counts) or sum(counts) != h * w:
        raise ValueError(f"{where}: RLE counts add up to {sum(counts)} pixels (or hold a negative run); "
                         f"expected height x width = {h} x {w} = {h * w}")
    return list(counts)


def decode_rle(rle: dict) -> np.ndarray:
    """A COCO run-length encoding -> bool mask ``(height, width)``.

    ``rle = {"size": [height, width], "counts": ...}``. The pixels are taken in column-major
    order (down the first column, then the second, ...) and ``counts`` gives the lengths of the
    alternating runs of 0s and 1s, starting with 0s (a mask whose first pixel is set begins with
    a run of zero 0s). ``counts`` is that list of integers, or COCO's compressed string of it
    (:func:`rle_counts_from_string`).
    """
    h, w = _rle_size(rle, "RLE")
    counts = np.asarray(_rle_counts(rle, "RLE"), dtype=np.int64)
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    return np.repeat(values, counts).reshape(w, h).T.copy()


def encode_rle(mask: np.ndarray | torch.Tensor) -> dict[str, Any]:
    """bool mask ``(height, width)`` -> ``{"size": [height, width], "counts": <compressed string>}``."""
    array = np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask).astype(bool)
    if array.ndim != 2:
        raise ValueError(f"a mask must be (height, width), got shape {array.shape}")
    h, w = array.shape
    flat = array.T.reshape(-1)  # column-major
    if flat.size == 0:
        return {"size": [h, w], "counts": ""}
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    if flat[0]:
        runs = [0, *runs]
    return {"size": [h, w], "counts": rle_counts_to_string(runs)}


def rasterize_polygons(polygons: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """COCO polygons ``[[x1, y1, x2, y2, ...], ...]`` (pixel-edge coordinates) -> bool mask
    ``(height, width)``: pixel ``(row, col)`` is set where its centre ``(col + 0.5, row + 0.5)``
    lies inside one of the polygons (their union, for an object in several parts)."""
    from skimage.draw import polygon as fill_polygon

    mask = np.zeros((height, width), dtype=bool)
    for poly in polygons:
        xy = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        rows, cols = fill_polygon(xy[:, 1] - 0.5, xy[:, 0] - 0.5, shape=(height, width))
        mask[rows, cols] = True
    return mask


def _checked_segmentation(seg: Any, height: int, width: int, where: str) -> Any:
    """A COCO segmentation checked to decode to a ``height x width`` mask (None when it is empty)."""
    if seg is None or (isinstance(seg, list) and not seg):
        return None
    if isinstance(seg, list):
        for n, poly in enumerate(seg):
            ok = isinstance(poly, list) and len(poly) >= 6 and len(poly) % 2 == 0 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in poly)
            if not ok:
                raise ValueError(f"{where}: polygon {n} of its segmentation is {str(poly)[:60]}; expected a list "
                                 f"[x1, y1, x2, y2, ...] of at least 3 points")
        return seg
    if isinstance(seg, dict):
        if _rle_size(seg, where) != (height, width):
            raise ValueError(f"{where}: RLE size {seg.get('size')} differs from its image's [height, width] "
                             f"[{height}, {width}]")
        _rle_counts(seg, where)
        return seg
    raise ValueError(f"{where}: segmentation is a {type(seg).__name__}; expected a list of polygons or an RLE "
                     f"{{'size': [h, w], 'counts': ...}}")


def instance_id_map(record: ImageRecord) -> np.ndarray:
    """uint8 ``(height, width)``: 0 where no instance, ``j + 1`` on the pixels of the record's
    ``j``-th instance. Crowd regions are painted first and the others over them in file order, so
    where masks overlap the later (non-crowd) instance holds the pixel."""
    k = len(record.labels)
    if k > 255:
        raise ValueError(f"{record.source}: image {record.image} has {k} instances; an instance id map holds at "
                         f"most 255")
    ids = np.zeros((record.height, record.width), dtype=np.uint8)
    segs = record.segmentations or [None] * k
    order = [j for j in range(k) if record.iscrowd[j]] + [j for j in range(k) if not record.iscrowd[j]]
    for j in order:
        seg = segs[j]
        if seg is None:
            continue
        mask = rasterize_polygons(seg, record.height, record.width) if isinstance(seg, list) else decode_rle(seg)
        ids[mask] = j + 1
    return ids


# ------------------------------------------------------------------------------------------
# Which layout


def _voc_roots(folder: Path) -> list[Path]:
    candidates = [folder]
    for base in (folder, folder / "VOCdevkit"):
        if base.is_dir():
            candidates += [p for p in sorted(base.iterdir()) if p.is_dir() and p.name.upper().startswith("VOC")
                           and p.name != "VOCdevkit"]
    return [c for c in candidates if (c / "Annotations").is_dir() and (c / "JPEGImages").is_dir()]


def _top_files(folder: Path, *suffixes: str) -> list[Path]:
    return [p for p in formats.visible_entries(folder) if p.is_file() and p.suffix.lower() in suffixes]


def find_layout(folder: str | os.PathLike) -> tuple[str, Path]:
    """``("voc" | "coco" | "yolo", root)`` of a dataset folder, or an error saying what it holds."""
    folder = Path(folder).expanduser()
    entries = formats.dataset_folder(folder, "detection dataset", LAYOUTS)
    voc = _voc_roots(folder)
    if voc:
        return "voc", voc[0]
    if (folder / "annotations").is_dir() and any((folder / "annotations").glob("instances_*.json")):
        return "coco", folder
    has_json = bool(_top_files(folder, ".json"))
    if (folder / "labels").is_dir() or (_top_files(folder, ".yaml", ".yml") and not has_json):
        return "yolo", folder
    if has_json:
        return "coco", folder
    found = ", ".join(p.name + ("/" if p.is_dir() else "") for p in entries[:10])
    raise ValueError(f"{folder} is in no detection layout convatlas reads (it holds {found}); expected {LAYOUTS}")


def read_records(folder: str | os.PathLike) -> FormatRecords:
    """The records of the dataset in ``folder``, whichever of the three layouts it is in."""
    layout, root = find_layout(folder)
    return {"voc": read_voc, "coco": read_coco, "yolo": read_yolo}[layout](root)


# ------------------------------------------------------------------------------------------
# Pascal VOC


def _id_list(path: Path) -> list[str]:
    """The image ids of an ``ImageSets/Main`` list: the first word of each non-blank line."""
    ids = [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not ids:
        raise ValueError(f"{path} lists no image ids; expected one id (e.g. 000005) per line")
    return ids


def _voc_splits(root: Path) -> tuple[dict[str, list[tuple[str, str]]], list[str]]:
    """Per split, (id, the list that names it); and a note on where the split came from."""
    main = root / "ImageSets" / "Main"
    have = {n for n in ("train", "val", "trainval", "test") if (main / f"{n}.txt").is_file()}

    def listed(*names: str) -> list[tuple[str, str]]:
        return [(i, f"ImageSets/Main/{n}.txt") for n in names for i in _id_list(main / f"{n}.txt")]

    if "test" in have and have & {"trainval", "train"}:
        train_lists = ("trainval",) if "trainval" in have else tuple(n for n in ("train", "val") if n in have)
        splits = {"train": listed(*train_lists), "test": listed("test")}
        note = f"splits: ImageSets/Main/{' + '.join(train_lists)} to train, test to test"
    elif {"train", "val"} <= have:
        splits, note = {"train": listed("train"), "test": listed("val")}, "splits: ImageSets/Main/train and val"
    elif have:
        only = next(n for n in ("trainval", "train", "val", "test") if n in have)
        splits, note = {"all": listed(only)}, f"one list, ImageSets/Main/{only}.txt"
    else:
        stems = sorted(p.stem for p in (root / "Annotations").glob("*.xml"))
        if not stems:
            raise ValueError(f"{root / 'Annotations'} holds no .xml annotations and {main} no lists; expected "
                             f"Annotations/<id>.xml for each image")
        splits, note = {"all": [(s, "Annotations/") for s in stems]}, "no ImageSets/Main lists: every annotation"
    if "test" in splits:
        both = {i for i, _ in splits["train"]} & {i for i, _ in splits["test"]}
        if both:
            raise ValueError(f"VOC id {sorted(both)[0]!r} is listed both to train and to test in {main}; expected "
                             f"disjoint splits")
    return splits, [note]


def _voc_xml(path: Path) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ValueError(f"cannot parse VOC annotation {path}: {exc}; expected Pascal VOC XML "
                         f"(<annotation><object><name>...<bndbox><xmin>...)") from None
    except OSError as exc:
        raise ValueError(f"cannot read VOC annotation {path}: {exc}") from None


def _voc_number(element: ET.Element, tag: str, where: str) -> float:
    child = element.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise ValueError(f"{where} has no <{tag}>; expected a number there")
    try:
        return float(child.text.strip())
    except ValueError:
        raise ValueError(f"{where}: <{tag}> is {child.text.strip()!r}; expected a number") from None


def _voc_image(root: Path, image_id: str, filename: str | None) -> Path | None:
    folder = root / "JPEGImages"
    candidates = [folder / f"{image_id}.jpg"] + ([folder / filename] if filename else [])
    candidates += [folder / f"{image_id}{ext}" for ext in formats.IMAGE_EXTENSIONS]
    return next((c for c in candidates if c.is_file()), None)


def _voc_objects(xml: Path, annotation: ET.Element) -> list[tuple[str, list[float], bool, str]]:
    """Per ``<object>``: (name, [xmin, ymin, xmax, ymax] as written, difficult, where)."""
    objects = []
    for n, obj in enumerate(annotation.findall("object")):
        where = f"VOC annotation {xml}, object {n}"
        name_element = obj.find("name")
        if name_element is None or not (name_element.text or "").strip():
            raise ValueError(f"{where} has no <name>; expected the object's class name")
        name = name_element.text.strip()
        where += f" ({name!r})"
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise ValueError(f"{where} has no <bndbox>; expected <bndbox><xmin>..<ymin>..<xmax>..<ymax>..</bndbox>")
        values = [_voc_number(bndbox, tag, where) for tag in ("xmin", "ymin", "xmax", "ymax")]
        difficult = obj.find("difficult")
        flag = difficult is not None and (difficult.text or "0").strip() not in ("0", "", "false", "False")
        objects.append((name, values, flag, where))
    return objects


def read_voc(root: str | os.PathLike) -> FormatRecords:
    """The records of a Pascal VOC folder (``root`` holds ``Annotations/`` and ``JPEGImages/``, or a
    ``VOCdevkit`` above them)."""
    root = Path(root)
    found = _voc_roots(root)
    if not found:
        raise ValueError(f"{root} is not a Pascal VOC folder: expected Annotations/ and JPEGImages/ in it")
    root, others = found[0], found[1:]
    splits, notes = _voc_splits(root)
    if others:
        notes.append(f"read {root}; also found {', '.join(str(o) for o in others)}")
    parsed: dict[str, list[tuple[str, Path, int, int, list]]] = {}
    for split, ids in splits.items():
        parsed[split] = []
        for image_id, listed_in in ids:
            xml = root / "Annotations" / f"{image_id}.xml"
            if not xml.is_file():
                raise FileNotFoundError(f"VOC id {image_id!r} (in {listed_in}) has no annotation: expected {xml}")
            annotation = _voc_xml(xml)
            filename = (annotation.findtext("filename") or "").strip() or None
            image = _voc_image(root, image_id, filename)
            if image is None:
                raise FileNotFoundError(f"VOC annotation {xml} is for a missing image: expected "
                                        f"{root / 'JPEGImages' / (image_id + '.jpg')}")
            width, height = _image_size(image)
            size = annotation.find("size")
            if size is not None and size.find("width") is not None and size.find("height") is not None:
                said = (int(_voc_number(size, "width", f"{xml} <size>")), int(_voc_number(size, "height", f"{xml} <size>")))
                if said != (width, height):
                    raise ValueError(f"VOC annotation {xml} gives the size {said[0]}x{said[1]} but its image {image} "
                                     f"is {width}x{height} (width x height)")
            parsed[split].append((image_id, image, width, height, _voc_objects(xml, annotation)))
    classes_file = root / "classes.txt"
    names = sorted({o[0] for items in parsed.values() for *_, objects in items for o in objects})
    if classes_file.is_file():
        classes, where_classes = ["background", *_class_names(classes_file)], str(classes_file)
    elif names and set(names) <= set(VOC_CLASSES[1:]):
        classes, where_classes = list(VOC_CLASSES), "Pascal VOC's 20 classes"
    else:
        classes, where_classes = ["background", *names], "the names found"
        if not names:
            raise ValueError(f"the VOC annotations in {root / 'Annotations'} hold no object; expected at least one "
                             f"(or name the classes in {classes_file})")
        notes.append(f"classes: the {len(names)} names found, sorted (no classes.txt)")
    index = {name: k for k, name in enumerate(classes) if k > 0}
    records: dict[str, list[ImageRecord]] = {}
    for split, items in parsed.items():
        records[split] = []
        for image_id, image, width, height, objects in items:
            boxes, labels, difficult = [], [], []
            for name, (xmin, ymin, xmax, ymax), flag, where in objects:
                if name not in index:
                    raise ValueError(f"{where}: class {name!r} is not in the classes of {where_classes} "
                                     f"({', '.join(classes[1:8])}{', ...' if len(classes) > 8 else ''})")
                where_box = f"{where}: bndbox xmin {xmin:g} ymin {ymin:g} xmax {xmax:g} ymax {ymax:g} (1-based, inclusive)"
                boxes.append(_checked_box((xmin - 1, ymin - 1, xmax, ymax), width, height, image, where_box))
                labels.append(index[name])
                difficult.append(flag)
            records[split].append(_record(image, width, height, boxes, labels, difficult,
                                          source=str(root / "Annotations" / f"{image_id}.xml"), name=image_id))
    return FormatRecords("voc", root, records, classes, f"Pascal VOC folder {root}", None, notes)


# ------------------------------------------------------------------------------------------
# COCO


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"cannot parse {path}: {exc.msg} at line {exc.lineno}, column {exc.colno}; "
                         f"expected COCO JSON") from None


def _coco_files(folder: Path) -> dict[str, tuple[Path, str | None]]:
    """Per split, (annotation file, the split's name for its image folder)."""
    annotations = folder / "annotations"
    files = sorted(annotations.glob("instances_*.json")) if annotations.is_dir() else []
    if files:
        names = {f.stem[len("instances_"):]: f for f in files}
        if len(files) == 1:
            (name, file), = names.items()
            return {"all": (file, name)}
        train = [n for n in names if "train" in n.lower()]
        test = [n for n in names if "val" in n.lower()] or [n for n in names if "test" in n.lower()]
        if len(train) == 1 and len(test) == 1:
            return {"train": (names[train[0]], train[0]), "test": (names[test[0]], test[0])}
        raise ValueError(f"{annotations} holds {', '.join(f.name for f in files)}; expected one instances_<split>.json, "
                         f"or one whose split names 'train' and one 'val' (or 'test')")
    found = _top_files(folder, ".json")
    if len(found) != 1:
        raise ValueError(f"{folder} holds {len(found)} .json files ({', '.join(p.name for p in found[:5])}); expected "
                         f"one COCO annotation file beside images/, or annotations/instances_<split>.json")
    return {"all": (found[0], None)}


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _coco_categories(path: Path, data: dict) -> list[tuple[int, str]]:
    categories = data["categories"]
    out: dict[int, str] = {}
    for n, cat in enumerate(categories):
        if not isinstance(cat, dict) or not _int(cat.get("id")) or not isinstance(cat.get("name"), str):
            raise ValueError(f"{path}: categories[{n}] is {str(cat)[:80]}; expected {{'id': <int>, 'name': <str>}}")
        if cat["id"] in out:
            raise ValueError(f"{path}: category id {cat['id']} is given twice; expected distinct ids")
        out[cat["id"]] = cat["name"]
    if not out:
        raise ValueError(f"{path} has no categories; expected at least one {{'id', 'name'}}")
    return sorted(out.items())


def _coco_image_path(folder: Path, split: str | None, file_name: str) -> tuple[Path | None, list[Path]]:
    bases = ([folder / split, folder / "images" / split] if split else []) + [folder / "images", folder]
    candidates = [b / file_name for b in bases]
    return next((c for c in candidates if c.is_file()), None), candidates


def _coco_split(folder: Path, path: Path, split: str | None, data: dict,
                label_of: dict[int, int]) -> list[ImageRecord]:
    images: dict[int, dict] = {}
    for n, entry in enumerate(data["images"]):
        if not isinstance(entry, dict) or not _int(entry.get("id")) or not isinstance(entry.get("file_name"), str):
            raise ValueError(f"{path}: images[{n}] is {str(entry)[:80]}; expected {{'id': <int>, 'file_name': <str>, "
                             f"'width', 'height'}}")
        if entry["id"] in images:
            raise ValueError(f"{path}: image id {entry['id']} is given twice; expected distinct ids")
        images[entry["id"]] = entry
    per_image: dict[int, list[dict]] = {i: [] for i in images}
    for n, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise ValueError(f"{path}: annotations[{n}] is a {type(ann).__name__}; expected an object")
        name = f"{path}: annotation {ann.get('id', f'[{n}]')}"
        if ann.get("image_id") not in images:
            raise ValueError(f"{name} is for image_id {ann.get('image_id')!r}, which is not among the file's images "
                             f"(an annotation for a missing image)")
        if ann.get("category_id") not in label_of:
            raise ValueError(f"{name}: category_id {ann.get('category_id')!r} is not in the file's categories "
                             f"(ids {', '.join(str(c) for c in list(label_of)[:10])})")
        per_image[ann["image_id"]].append(ann)
    records = []
    for image_id, entry in images.items():
        image, tried = _coco_image_path(folder, split, entry["file_name"])
        if image is None:
            raise FileNotFoundError(f"{path}: image id {image_id}, file_name {entry['file_name']!r}, is missing: "
                                    f"looked for {' and '.join(str(t) for t in tried[:3])}")
        width, height = _image_size(image)
        said = (entry.get("width"), entry.get("height"))
        if said != (None, None) and said != (width, height):
            raise ValueError(f"{path}: image id {image_id} says width x height {said[0]}x{said[1]} but {image} is "
                             f"{width}x{height}")
        boxes, labels, crowd, segs = [], [], [], []
        for ann in per_image[image_id]:
            bbox = ann.get("bbox")
            where = f"{path}: annotation {ann.get('id', '?')} (image {entry['file_name']!r}) bbox {bbox}"
            if not isinstance(bbox, list) or len(bbox) != 4 or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
                raise ValueError(f"{where}: expected [x, y, width, height], four numbers")
            x, y, w, h = (float(v) for v in bbox)
            boxes.append(_checked_box((x, y, x + w, y + h), width, height, image, where + " ([x, y, w, h])"))
            labels.append(label_of[ann["category_id"]])
            flag = ann.get("iscrowd", 0)
            if flag not in (0, 1, True, False):
                raise ValueError(f"{where}: iscrowd is {flag!r}; expected 0 or 1")
            crowd.append(bool(flag))
            segs.append(_checked_segmentation(ann.get("segmentation"), height, width,
                                              f"{path}: annotation {ann.get('id', '?')}"))
        records.append(_record(image, width, height, boxes, labels, None, crowd, segmentations=segs,
                               source=str(path), name=Path(entry["file_name"]).stem))
    return records


def read_coco(folder: str | os.PathLike) -> FormatRecords:
    """The records of a COCO folder: ``annotations/instances_<split>.json`` (one, or a train and a
    val/test one) with the images in ``<split>/``, ``images/<split>/`` or ``images/``; or a single
    ``.json`` beside ``images/``."""
    folder = Path(folder)
    files = _coco_files(folder)
    loaded = {}
    for split, (path, _) in files.items():
        data = _read_json(path)
        if not isinstance(data, dict):
            raise ValueError(f"{path} holds a {type(data).__name__}; expected a COCO object with images, "
                             f"annotations and categories")
        for key in ("images", "annotations", "categories"):
            if not isinstance(data.get(key), list):
                raise ValueError(f"{path} has no {key!r} list; expected COCO instances JSON with 'images', "
                                 f"'annotations' and 'categories'")
        loaded[split] = (path, data, _coco_categories(path, data))
    (first_path, _, categories), *rest = loaded.values()
    for path, _, other in rest:
        if other != categories:
            raise ValueError(f"{first_path} and {path} give different categories; expected the same ids and names")
    label_of = {cid: k for k, (cid, _) in enumerate(categories, 1)}
    splits = {split: _coco_split(folder, path, files[split][1], data, label_of)
              for split, (path, data, _) in loaded.items()}
    notes = [f"annotations: {', '.join(str(p) for p, _, _ in loaded.values())}"]
    return FormatRecords("coco", folder, splits, ["background", *(name for _, name in categories)],
                         f"COCO folder {folder}", [cid for cid, _ in categories], notes)


# ------------------------------------------------------------------------------------------
# YOLO


def _read_yaml(path: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ValueError(f"cannot parse {path}{at}: {exc}; expected a YOLO data YAML (path, train, val, names)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a {type(data).__name__}; expected a mapping with path, train, val and names")
    return data


def _yolo_names(data: dict, path: Path) -> list[str]:
    names = data.get("names")
    if isinstance(names, dict):
        keys = sorted(names, key=lambda k: (not _int(k), k if _int(k) else 0))
        if keys != list(range(len(names))):
            raise ValueError(f"{path}: names has the keys {keys[:8]}; expected the class ids 0..{len(names) - 1}")
        names = [names[k] for k in keys]
    if not isinstance(names, list) or not names:
        raise ValueError(f"{path}: names is {names!r}; expected a list of class names (or a mapping 0: name, ...)")
    nc = data.get("nc")
    if nc is not None and nc != len(names):
        raise ValueError(f"{path}: nc is {nc!r} but names lists {len(names)} classes; expected them to agree")
    return [str(n) for n in names]


def _yolo_yaml(folder: Path) -> Path | None:
    found = _top_files(folder, ".yaml", ".yml")
    if len(found) > 1:
        named = [p for p in found if "names" in _read_yaml(p)]
        if len(named) != 1:
            raise ValueError(f"{folder} holds {len(found)} YAML files ({', '.join(p.name for p in found[:5])}); "
                             f"expected one YOLO data YAML with names:")
        return named[0]
    return found[0] if found else None


def _yolo_sources(root: Path, spec: Any, path: Path, key: str) -> list[Path]:
    """The images of a split: ``spec`` is a folder of images or a ``.txt`` list of them (or a list of such)."""
    items = spec if isinstance(spec, list) else [spec]
    images: list[Path] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"{path}: {key} is {item!r}; expected a folder of images or a .txt list of them")
        source = Path(item) if Path(item).is_absolute() else root / item
        if source.is_dir():
            found = _image_files(source)
            if not found:
                raise ValueError(f"{source} ({key} of {path}) holds no images "
                                 f"(looked for {', '.join(formats.IMAGE_EXTENSIONS)})")
            images += found
        elif source.is_file() and source.suffix == ".txt":
            lines = [line.strip() for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
            images += [Path(line) if Path(line).is_absolute() else (source.parent / line) for line in lines]
        else:
            raise FileNotFoundError(f"{path}: {key} is {item!r} but {source} is neither a folder nor a .txt list")
    return images


def _label_path(image: Path) -> Path:
    """``.../images/<...>/<stem>.jpg`` -> ``.../labels/<...>/<stem>.txt`` (the last ``images`` part);
    an image outside any ``images`` folder has its label file beside it."""
    parts = list(image.parts)
    if "images" in parts[:-1]:
        at = len(parts) - 2 - parts[:-1][::-1].index("images")
        parts[at] = "labels"
    return Path(*parts).with_suffix(".txt")


def _yolo_line(line: str, n: int, path: Path, names: list[str], names_from: Path, width: int, height: int,
               image: Path) -> tuple[int, list[float]]:
    where = f"YOLO label file {path}, line {n}"
    values = line.split()
    if len(values) != 5:
        extra = " (a YOLO segmentation polygon? only boxes are read)" if len(values) > 5 else ""
        raise ValueError(f"{where}: {line.strip()!r} holds {len(values)} values{extra}; expected 5: 'class cx cy w h' "
                         f"(centre and size normalised to [0, 1])")
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        raise ValueError(f"{where}: {line.strip()!r} is not five numbers; expected 'class cx cy w h'") from None
    k = numbers[0]
    if not k.is_integer() or not 0 <= k < len(names):
        raise ValueError(f"{where}: class {values[0]} is not in the {len(names)} names of {names_from}; expected a "
                         f"class id 0..{len(names) - 1}")
    cx, cy, w, h = numbers[1:]
    where += f" (cx {cx:g} cy {cy:g} w {w:g} h {h:g}, normalised)"
    box = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
    return int(k) + 1, _checked_box(box, width, height, image, where)


def _yolo_records(images: list[Path], names: list[str], names_from: Path) -> list[ImageRecord]:
    records = []
    for image in images:
        if not image.is_file():
            raise FileNotFoundError(f"image {image} (listed for YOLO) does not exist")
        width, height = _image_size(image)
        label = _label_path(image)
        boxes, labels = [], []
        if label.is_file():
            for n, line in enumerate(label.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    k, box = _yolo_line(line, n, label, names, names_from, width, height, image)
                    labels.append(k)
                    boxes.append(box)
        records.append(_record(image, width, height, boxes, labels, source=str(label), name=image.stem))
    return records


def _orphan_labels(images: list[Path]) -> None:
    """A label file whose image does not exist (in the images folder its folder mirrors) is an
    annotation for a missing image."""
    mirrors: dict[Path, Path] = {}
    for image in images:
        mirrors.setdefault(_label_path(image).parent, image.parent)
    for labels, image_folder in sorted(mirrors.items()):
        stems = {p.stem for p in image_folder.iterdir() if p.suffix.lower() in formats.IMAGE_EXTENSIONS}
        for label in sorted(labels.glob("*.txt")):
            if label.name != "classes.txt" and label.stem not in stems:
                raise FileNotFoundError(f"YOLO label file {label} is for a missing image: expected "
                                        f"{image_folder / label.stem}.<jpg|png|...>")


def read_yolo(folder: str | os.PathLike) -> FormatRecords:
    """The records of a YOLO folder: a data YAML (``path``, ``train``, ``val``, ``names``) with
    ``images/<split>/`` and ``labels/<split>/``; without a YAML, ``images/`` and ``labels/`` (with
    ``train/`` and ``val/`` in them, or flat) and a ``classes.txt`` naming the classes."""
    folder = Path(folder)
    notes: list[str] = []
    config = _yolo_yaml(folder)
    if config is not None:
        data = _read_yaml(config)
        names, names_from = _yolo_names(data, config), config
        root = folder
        if data.get("path") is not None:
            given = Path(str(data["path"])).expanduser()
            given = given if given.is_absolute() else config.parent / given
            if given.is_dir():
                root = given
            else:
                notes.append(f"path {data['path']!r} of {config} does not exist; read the splits relative to {folder}")
        if "train" not in data:
            raise ValueError(f"{config} has no train; expected train: images/train (and val: images/val)")
        train = _yolo_sources(root, data["train"], config, "train")
        test_key = "val" if data.get("val") is not None else "test" if data.get("test") is not None else None
        test = _yolo_sources(root, data[test_key], config, test_key) if test_key else []
        if test and {p.resolve() for p in test} == {p.resolve() for p in train}:
            test = []
    else:
        classes_file = next((p for p in (folder / "classes.txt", folder / "labels" / "classes.txt") if p.is_file()), None)
        if classes_file is None:
            raise ValueError(f"YOLO folder {folder} has no data YAML naming the classes (names: [...]) and no "
                             f"classes.txt; expected data.yaml with path, train, val and names")
        names, names_from = _class_names(classes_file), classes_file
        base = folder / "images"
        if not base.is_dir():
            raise ValueError(f"YOLO folder {folder} has no images/ folder; expected images/{{train,val}}/")
        split_dirs = {s: base / s for s in ("train", "val", "test") if (base / s).is_dir()}
        if "train" in split_dirs and len(split_dirs) > 1:
            train = _image_files(split_dirs["train"])
            test = _image_files(split_dirs.get("val", split_dirs.get("test")))
        else:
            train, test = _image_files(base), []
        if not train:
            raise ValueError(f"{base} holds no images (looked for {', '.join(formats.IMAGE_EXTENSIONS)})")
    _orphan_labels(train + test)
    splits = {"train": _yolo_records(train, names, names_from), "test": _yolo_records(test, names, names_from)} \
        if test else {"all": _yolo_records(train, names, names_from)}
    return FormatRecords("yolo", folder, splits, ["background", *names], f"YOLO folder {folder}", None, notes)


# ------------------------------------------------------------------------------------------
# Writing


@dataclass
class WrittenDataset:
    """What a writer wrote: the format, the folder, counts, the index files (lists, JSON, YAML)
    and what the format could not hold (``notes``)."""

    format: str
    folder: Path
    images: int
    boxes: int
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    source: str = ""

    def summary(self) -> str:
        return f"wrote {self.format.upper()} to {self.folder}: {self.images} images, {self.boxes} boxes"


_SAFE_STEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def refuse_existing(folder: str | os.PathLike) -> Path:
    """``folder`` if it does not exist or is an empty folder; else ``FileExistsError`` (nothing is overwritten)."""
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder} exists and is not a folder; give a new or empty folder to write into")
    if folder.is_dir():
        entries = list(folder.iterdir())
        if entries:
            raise FileExistsError(f"{folder} is not empty (it holds {entries[0].name}"
                                  f"{f' and {len(entries) - 1} more' if len(entries) > 1 else ''}); a dataset is written "
                                  f"only into a new or empty folder, so nothing there is overwritten")
    return folder


def _fresh_folder(folder: str | os.PathLike) -> Path:
    """``folder``, created, if it does not exist or is empty; refuses to write into anything else."""
    folder = refuse_existing(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _parts(data: DetectionSplits | BoxSet, classes: Sequence[str] | None
           ) -> tuple[dict[str, BoxSet], list[str], list[int] | None]:
    """The splits to write (``"train"`` and ``"test"``, or ``"all"`` for one BoxSet), classes, category ids."""
    if isinstance(data, DetectionSplits):
        parts = {"train": data.train, "test": data.test} if len(data.test) else {"all": data.train}
        return parts, list(classes or data.classes), data.category_ids
    if isinstance(data, BoxSet):
        if classes is None:
            raise ValueError("writing a BoxSet needs its classes: classes=['background', 'cat', ...]")
        classes = list(classes)
        if len(classes) < 2 or classes[0] != "background":
            raise ValueError(f"classes must be 'background' then the object classes, got {classes[:5]}")
        if data.num_boxes and int(data.labels.max()) >= len(classes):
            raise ValueError(f"label {int(data.labels.max())} is not a class; expected 1..{len(classes) - 1}")
        return {"all": data}, classes, None
    raise ValueError(f"expected DetectionSplits or a BoxSet to write, got {type(data).__name__}")


def _stems(parts: dict[str, BoxSet]) -> dict[str, list[str]]:
    """A file stem per image: the images' names where all are present, distinct and plain, else 000000, 000001, ..."""
    names = [n for part in parts.values() for n in (part.names or [None] * len(part))]
    if all(isinstance(n, str) and _SAFE_STEM.match(n) for n in names) and len(set(names)) == len(names):
        pool = names
    else:
        pool = [f"{k:06d}" for k in range(len(names))]
    out, start = {}, 0
    for split, part in parts.items():
        out[split] = pool[start:start + len(part)]
        start += len(part)
    return out


def _save_image(path: Path, image: torch.Tensor, image_format: str) -> None:
    from PIL import Image

    array = image.cpu().numpy()
    if array.shape[0] not in (1, 3):
        raise ValueError(f"cannot write a {array.shape[0]}-channel image to {path}; expected 1 (grey) or 3 (RGB)")
    pil = Image.fromarray(array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0))
    if image_format == "jpg":
        atomic_save(path, lambda f: pil.save(f, format="JPEG", quality=95, subsampling=0))  # 4:4:4, no chroma halving
    else:
        atomic_save(path, lambda f: pil.save(f, format="PNG"))


def _image_format(image_format: str | None, default: str) -> str:
    value = (image_format or default).lower().lstrip(".")
    value = "jpg" if value == "jpeg" else value
    return one_of("image_format", value, ("png", "jpg"))


def _lost(parts: dict[str, BoxSet], *, masks: bool = False, difficult: bool = False, crowd: bool = False,
          fmt: str) -> list[str]:
    notes = []
    sets = list(parts.values())
    if masks and any(p.instances is not None for p in sets):
        notes.append(f"{fmt} holds no instance masks: the masks were not written")
    if difficult and any(bool(p.difficult.any()) for p in sets):
        notes.append(f"{fmt} has no 'difficult' flag: {sum(int(p.difficult.sum()) for p in sets)} difficult boxes "
                     f"were written as ordinary ones")
    if crowd and any(bool(p.iscrowd.any()) for p in sets):
        notes.append(f"{fmt} has no 'iscrowd' flag: {sum(int(p.iscrowd.sum()) for p in sets)} crowd boxes were "
                     f"written as ordinary ones")
    return notes


def _voc_edges(box: torch.Tensor, width: int, height: int) -> list[int]:
    """A pixel-edge box -> VOC's 1-based inclusive ``xmin ymin xmax ymax``, each edge rounded to a
    whole pixel (a box thinner than a pixel keeps one pixel)."""
    out = []
    for lo, hi, size in ((float(box[0]), float(box[2]), width), (float(box[1]), float(box[3]), height)):
        a, b = math.floor(lo + 0.5), math.floor(hi + 0.5)
        if b <= a:
            a, b = (a, a + 1) if a < size else (a - 1, a)
        out.append((a + 1, b))
    (xmin, xmax), (ymin, ymax) = out
    return [xmin, ymin, xmax, ymax]


def _voc_xml_text(stem: str, filename: str, folder_name: str, part: BoxSet, i: int, classes: list[str]) -> str:
    _, c, h, w = part.images.shape
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = folder_name
    ET.SubElement(root, "filename").text = filename
    ET.SubElement(ET.SubElement(root, "source"), "database").text = "written by convatlas"
    size = ET.SubElement(root, "size")
    for tag, value in (("width", w), ("height", h), ("depth", c)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    target = part.target(i)
    for box, label, difficult, crowd in zip(target["boxes"], target["labels"], target["difficult"], target["iscrowd"]):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = classes[int(label)]
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = "1" if bool(difficult) or bool(crowd) else "0"
        bndbox = ET.SubElement(obj, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), _voc_edges(box, w, h)):
            ET.SubElement(bndbox, tag).text = str(value)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def write_voc(data: DetectionSplits | BoxSet, folder: str | os.PathLike, *, classes: Sequence[str] | None = None,
              image_format: str | None = None) -> WrittenDataset:
    """Write ``data`` as a Pascal VOC folder: ``Annotations/<id>.xml``, ``JPEGImages/<id>.jpg``
    (quality 95, full-resolution colour; ``image_format="png"`` for lossless files),
    ``ImageSets/Main/trainval.txt`` and ``test.txt`` (one ``trainval.txt`` for a single split) and,
    unless the classes are VOC's 20, ``classes.txt``.
    Box edges are rounded to whole pixels (VOC's integer 1-based inclusive indices); crowd boxes
    are written ``difficult``; masks are not written."""
    parts, classes, _ = _parts(data, classes)
    fmt = _image_format(image_format, "jpg")
    folder = _fresh_folder(folder)
    stems = _stems(parts)
    files = []
    for split, part in parts.items():
        for i, stem in enumerate(stems[split]):
            filename = f"{stem}.{fmt}"
            _save_image(folder / "JPEGImages" / filename, part.images[i], fmt)
            atomic_write_text(folder / "Annotations" / f"{stem}.xml",
                              _voc_xml_text(stem, filename, folder.name, part, i, classes))
        listed = "test" if split == "test" else "trainval"
        files.append(atomic_write_text(folder / "ImageSets" / "Main" / f"{listed}.txt",
                                       "".join(f"{s}\n" for s in stems[split])))
    if classes != VOC_CLASSES:
        files.append(atomic_write_text(folder / "classes.txt", "".join(f"{c}\n" for c in classes[1:])))
    notes = _lost(parts, masks=True, fmt="Pascal VOC")
    if any(bool(p.iscrowd.any()) for p in parts.values()):
        notes.append("Pascal VOC has no 'iscrowd' flag: crowd boxes were written difficult (both are left out of "
                     "the evaluation)")
    notes.append("box edges rounded to whole pixels (VOC's integer coordinates)")
    return WrittenDataset("voc", folder, sum(len(p) for p in parts.values()),
                          sum(p.num_boxes for p in parts.values()), files, notes)


def _coco_json(part: BoxSet, stems: list[str], fmt: str, classes: list[str], category_ids: list[int],
               first_image_id: int) -> dict:
    _, _, h, w = part.images.shape
    images, annotations = [], []
    for i, stem in enumerate(stems):
        image_id = first_image_id + i
        images.append({"id": image_id, "file_name": f"{stem}.{fmt}", "width": w, "height": h})
        target = part.target(i)
        masks = target.get("masks")
        for j, (box, label, crowd) in enumerate(zip(target["boxes"].tolist(), target["labels"].tolist(),
                                                    target["iscrowd"].tolist())):
            x1, y1, x2, y2 = box
            ann = {"id": len(annotations) + 1, "image_id": image_id, "category_id": category_ids[label - 1],
                   "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": int(crowd),
                   "segmentation": []}
            if masks is not None:
                ann["segmentation"] = encode_rle(masks[j])
                ann["area"] = int(masks[j].sum())
            annotations.append(ann)
    return {"info": {"description": "written by convatlas", "version": "1.0"}, "licenses": [], "images": images,
            "annotations": annotations,
            "categories": [{"id": cid, "name": name, "supercategory": "object"}
                           for cid, name in zip(category_ids, classes[1:])]}


def write_coco(data: DetectionSplits | BoxSet, folder: str | os.PathLike, *, classes: Sequence[str] | None = None,
               image_format: str | None = None) -> WrittenDataset:
    """Write ``data`` as a COCO folder: ``annotations/instances_train.json`` and ``instances_val.json``
    with the images in ``train/`` and ``val/`` (a single split: ``annotations.json`` beside ``images/``).
    Boxes are ``[x, y, w, h]`` at full precision; the category ids are the source's
    (``DetectionSplits.category_ids``) or 1..K; instance masks are compressed RLEs; ``difficult`` is lost."""
    parts, classes, category_ids = _parts(data, classes)
    category_ids = category_ids or list(range(1, len(classes)))
    fmt = _image_format(image_format, "png")
    folder = _fresh_folder(folder)
    stems = _stems(parts)
    files, first_id = [], 1
    for split, part in parts.items():
        name = {"train": "train", "test": "val"}.get(split)
        image_folder = folder / name if name else folder / "images"
        for i, stem in enumerate(stems[split]):
            _save_image(image_folder / f"{stem}.{fmt}", part.images[i], fmt)
        index = folder / "annotations" / f"instances_{name}.json" if name else folder / "annotations.json"
        files.append(write_json(index, _coco_json(part, stems[split], fmt, classes, category_ids, first_id), indent=None))
        first_id += len(part)
    return WrittenDataset("coco", folder, sum(len(p) for p in parts.values()), sum(p.num_boxes for p in parts.values()),
                          files, _lost(parts, difficult=True, fmt="COCO"))


def _yolo_lines(part: BoxSet, i: int) -> str:
    _, _, h, w = part.images.shape
    target = part.target(i)
    lines = []
    for (x1, y1, x2, y2), label in zip(target["boxes"].double().tolist(), target["labels"].tolist()):
        cx, cy, bw, bh = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h
        lines.append(f"{label - 1} {cx:.10f} {cy:.10f} {bw:.10f} {bh:.10f}\n")
    return "".join(lines)


def write_yolo(data: DetectionSplits | BoxSet, folder: str | os.PathLike, *, classes: Sequence[str] | None = None,
               image_format: str | None = None) -> WrittenDataset:
    """Write ``data`` as a YOLO folder: ``images/{train,val}/<stem>.png``, ``labels/{train,val}/<stem>.txt``
    (``class cx cy w h``, 0-based class, normalised to 10 decimals; an image without objects gets an
    empty file) and ``data.yaml`` (absolute ``path``, ``train``, ``val``, ``nc``, ``names``). A single split
    goes to ``images/`` and ``labels/``, named both train and val. Masks, difficult and crowd flags are lost."""
    parts, classes, _ = _parts(data, classes)
    fmt = _image_format(image_format, "png")
    folder = _fresh_folder(folder)
    stems = _stems(parts)
    where = {}
    for split, part in parts.items():
        sub = {"train": "train", "test": "val"}.get(split)
        images, labels = (folder / "images" / sub, folder / "labels" / sub) if sub else \
            (folder / "images", folder / "labels")
        where[split] = images.relative_to(folder).as_posix()
        for i, stem in enumerate(stems[split]):
            _save_image(images / f"{stem}.{fmt}", part.images[i], fmt)
            atomic_write_text(labels / f"{stem}.txt", _yolo_lines(part, i))
    config = {"path": str(folder.resolve()), "train": where.get("train", where.get("all")),
              "val": where.get("test", where.get("all")), "nc": len(classes) - 1,
              "names": {k: name for k, name in enumerate(classes[1:])}}
    files = [write_yaml(folder / "data.yaml", config)]
    return WrittenDataset("yolo", folder, sum(len(p) for p in parts.values()), sum(p.num_boxes for p in parts.values()),
                          files, _lost(parts, masks=True, difficult=True, crowd=True, fmt="YOLO"))


_WRITERS: dict[str, Callable[..., WrittenDataset]] = {"voc": write_voc, "coco": write_coco, "yolo": write_yolo}


def convert(src: str | os.PathLike, dst: str | os.PathLike, to: str, *, image_size: int | Sequence[int] | None = None,
            test_fraction: float = 0.2, seed: int = 0, image_format: str | None = None) -> WrittenDataset:
    """Read the dataset ``src`` (a folder in any layout, or ``"digit-scenes"``) and write it to the new or
    empty folder ``dst`` in format ``to`` (``"voc"``, ``"coco"`` or ``"yolo"``)."""
    one_of("to", to, FORMATS)
    target = refuse_existing(dst)  # before reading anything
    data = load_detection(src, image_size=image_size, test_fraction=test_fraction, seed=seed)
    written = _WRITERS[to](data, target, image_format=image_format)
    written.source = repr(data)
    written.notes = [*data.notes, *written.notes]
    return written
