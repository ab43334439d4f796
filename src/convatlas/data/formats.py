"""Readers for the standard dataset files, and their download.

Each reader returns plain uint8 arrays ``(N, C, H, W)`` and int64 labels, so the rest of
convatlas never sees a file format:

* **MNIST / Fashion-MNIST** - the IDX files of LeCun et al. (1998): a big-endian header
  ``0x00 0x00 <type=0x08 ubyte> <ndim>``, then ``ndim`` int32 sizes, then the raw bytes.
* **CIFAR-10 / CIFAR-100** - Krizhevsky (2009)'s "python version": pickled dicts whose
  ``b"data"`` is an ``(N, 3072)`` uint8 array (1024 red, 1024 green, 1024 blue values per
  image, row-major 32x32) and whose ``b"labels"`` / ``b"fine_labels"`` are lists of ints.
* **ImageFolder** - one sub-folder per class holding image files (any format Pillow reads).

Where a file is missing and the network allows, :func:`download` fetches the official
archive (checking its MD5); otherwise the error says which files to put where.
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
import tarfile
import urllib.request
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Sequence

import numpy as np

from convatlas._io import atomic_save

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


@dataclass(frozen=True)
class RemoteFile:
    """A file of a standard dataset: its name, MD5 and the mirrors that serve it."""

    name: str
    md5: str
    urls: tuple[str, ...]


# ------------------------------------------------------------------------------------------
# Download


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(remote: RemoteFile, folder: Path, timeout: float = 30.0) -> Path:
    """Fetch ``remote`` into ``folder`` (atomically, after an MD5 check); return its path.

    Raises ``OSError`` with every mirror's failure when none of them works.
    """
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / remote.name
    errors = []
    for url in remote.urls:
        def fetch(out: IO[bytes], url: str = url) -> None:
            digest = hashlib.md5()
            with urllib.request.urlopen(url, timeout=timeout) as response:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
                    digest.update(chunk)
            if digest.hexdigest() != remote.md5:
                raise OSError(f"MD5 {digest.hexdigest()} differs from the published {remote.md5}")

        try:
            return atomic_save(target, fetch)
        except Exception as exc:  # noqa: BLE001 - every failure is reported below
            errors.append(f"{url}: {exc}")
    raise OSError("download failed: " + "; ".join(errors))


# ------------------------------------------------------------------------------------------
# IDX (MNIST, Fashion-MNIST)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into a uint8 array of the shape its header gives."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"cannot read IDX file {path}: {exc}") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file (its first two bytes must be zero)")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != 0x08:
        raise ValueError(f"{path}: IDX type code 0x{dtype_code:02x}; only unsigned bytes (0x08) are supported")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path} is truncated: its header is incomplete")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape)) if shape else 0
    if len(raw) - header != expected:
        raise ValueError(
            f"{path} is truncated or corrupt: header says shape {shape} ({expected} bytes), "
            f"file holds {len(raw) - header} bytes of data"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()


def find_file(folders: list[Path], name: str) -> Path | None:
    """The first of ``folder/name`` or ``folder/name.gz`` (or without ``.gz``) that exists."""
    stem = name[:-3] if name.endswith(".gz") else name
    for folder in folders:
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    return None


# ------------------------------------------------------------------------------------------
# CIFAR python pickles


def _unpickle(path: Path, what: str) -> dict[str, Any]:
    """Load a CIFAR pickle (written by Python 2) with string keys."""
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
    except Exception as exc:  # noqa: BLE001 - unpickling fails in many ways on a bad file
        raise ValueError(f"cannot read CIFAR {what} {path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(entry, dict):
        raise ValueError(f"{path} is not a CIFAR {what} (expected a pickled dict)")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}


def read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR pickle -> (uint8 images (N, 3, 32, 32), int64 labels (N,))."""
    entry = _unpickle(path, "batch")
    if "data" not in entry or label_key not in entry:
        raise ValueError(f"{path} is not a CIFAR python batch (needs keys 'data' and {label_key!r})")
    data = np.asarray(entry["data"], dtype=np.uint8)
    labels = np.asarray(entry[label_key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise ValueError(f"{path}: data of shape {data.shape} with {len(labels)} labels; expected (N, 3072) and N labels")
    return data.reshape(-1, 3, 32, 32), labels


def read_cifar_meta(path: Path, key: str) -> list[str]:
    meta = _unpickle(path, "meta file")
    if key not in meta:
        raise ValueError(f"{path} is not a CIFAR meta file (needs key {key!r})")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in meta[key]]


def extract_tar(archive: Path, folder: Path) -> None:
    """Extract a ``.tar.gz`` archive into ``folder`` (only plain files and folders inside it)."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(folder, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ValueError(f"cannot extract {archive}: {exc}") from exc


# ------------------------------------------------------------------------------------------
# ImageFolder


def list_image_folder(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """Classes (sorted sub-folder names) and (file, class index) pairs of an ImageFolder tree."""
    if not root.exists():
        raise FileNotFoundError(f"image folder {root} does not exist")
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder; expected one sub-folder per class holding images")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(
            f"{root} holds no class folders; expected one sub-folder per class, e.g. {root}/cat/1.png"
        )
    samples: list[tuple[Path, int]] = []
    for index, name in enumerate(classes):
        files = sorted(
            p for p in (root / name).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        if not files:
            raise ValueError(
                f"class folder {root / name} holds no images (looked for {', '.join(IMAGE_EXTENSIONS)})"
            )
        samples.extend((f, index) for f in files)
    return classes, samples


def read_image(path: Path, channels: int | None = None) -> np.ndarray:
    """Decode one image file to uint8 (C, H, W); ``channels`` 1 (grey) or 3 (RGB), or as stored.

    A file Pillow cannot decode raises ``ValueError`` naming the file.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            if channels is None:
                channels = 1 if img.mode in ("1", "L", "LA", "I", "I;16", "F") else 3
            img = img.convert("L" if channels == 1 else "RGB")
            array = np.array(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from exc
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def read_image_files(paths: Sequence[str | os.PathLike], channels: int | None = None) -> tuple[list[np.ndarray], list[str]]:
    """Decode image files (:func:`read_image`) for a prediction: the arrays and the paths as text.
    No file is an error, and so is a path that does not exist."""
    if not paths:
        raise ValueError("predict needs at least one image")
    arrays, names = [], []
    for item in paths:
        path = Path(item)
        if not path.is_file():
            raise FileNotFoundError(f"image {path} does not exist")
        arrays.append(read_image(path, channels))
        names.append(str(path))
    return arrays, names


def image_mode_channels(path: Path) -> int:
    """1 for a grey-level image file, 3 otherwise (reads only the header)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return 1 if img.mode in ("1", "L", "LA", "I", "I;16", "F") else 3
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from exc


def visible_entries(folder: Path) -> list[Path]:
    """The entries of ``folder`` whose names do not start with a dot, sorted."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def dataset_folder(folder: Path, what: str, expected: str) -> list[Path]:
    """The visible entries of a dataset ``folder``, or an error saying why it cannot be one:
    missing, not a folder, or empty (``what`` names the kind of dataset, ``expected`` the layouts)."""
    if not folder.exists():
        raise FileNotFoundError(f"{what} folder {folder} does not exist")
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder; expected {expected}")
    entries = visible_entries(folder)
    if not entries:
        raise ValueError(f"{folder} is empty; expected {expected}")
    return entries
