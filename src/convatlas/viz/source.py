"""The network being looked at, and the images fed to it.

Every method of :mod:`convatlas.viz` takes an :class:`InspectedModel`: a network in eval mode
together with what is needed to turn a picture into its input (channels, size, the mean and
standard deviation it was trained with) and the names of its classes. :func:`load_model` builds
one from

* a zoo name (``"zfnet"``), optionally with torchvision's weights
  (``weights="IMAGENET1K_V1"`` downloads them; a torchvision model or state_dict works offline),
* a run directory written by ``convatlas train`` (``convatlas.train.load_run``),
* any ``nn.Module`` (a torchvision model, your own network).

:func:`load_image` reads a picture file, or picks a bundled one when none is given: one of
scikit-image's sample photos, or the first test image of the dataset for networks trained on
digits.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from convatlas.registry import Preprocessing

__all__ = [
    "InspectedModel",
    "load_model",
    "load_image",
    "sample_images",
    "layer_names",
    "get_layer",
    "check_channel",
    "fit_picture",
]

@dataclass
class InspectedModel:
    """A network in eval mode with what it takes to feed it a picture.

    ``preprocess`` turns uint8 images (N, C, H, W) into the float tensor the network takes:
    ``(x / 255 - mean) / std`` unless the run that trained it brought its own ``preprocess_fn``.
    ``fit``, ``crop_fraction`` and ``interpolation`` say how :func:`load_image` brings a picture to
    ``image_size`` (a zoo model: as its card's :class:`~convatlas.registry.Preprocessing` says).
    """

    model: nn.Module
    name: str
    in_channels: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: list[str] | None = None
    dataset_name: str | None = None
    run_dir: Path | None = None
    data_root: str | None = None
    fit: str = "resize"  # how pictures reach image_size: "resize" or "pad" (as the card says / the run trained)
    crop_fraction: float = 1.0  # "resize": the shorter side goes to side / crop_fraction, then a centre crop
    interpolation: str = "bilinear"
    preprocess_fn: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, repr=False)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) -> normalised float tensor ready for :attr:`model`."""
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(
                f"preprocess expects uint8 images of shape (N, C, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        if images.shape[1] != self.in_channels:
            raise ValueError(f"{self.name} takes {self.in_channels}-channel images, got {images.shape[1]} channels")
        if self.preprocess_fn is not None:
            return self.preprocess_fn(images)
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return (images.float() / 255.0 - mean) / std

    @property
    def preprocessing(self) -> Preprocessing:
        """How a picture is fed to :attr:`model`, as a :class:`~convatlas.registry.Preprocessing`."""
        return Preprocessing(tuple(self.mean), tuple(self.std), self.fit, self.crop_fraction, self.interpolation)

    def class_name(self, index: int) -> str:
        if self.classes is not None and 0 <= index < len(self.classes):
            return self.classes[index]
        return f"class {index}"

    def class_index(self, target: int | str | None) -> int | None:
        """A class given by index or by name (``"7"``, ``"tabby"``) -> its index."""
        if target is None or isinstance(target, int):
            return target
        if self.classes is not None and target in self.classes:
            return self.classes.index(target)
        if str(target).lstrip("-").isdigit():
            return int(target)
        known = "" if self.classes is None else f"; known classes: {', '.join(self.classes[:20])}"
        raise ValueError(f"unknown target class {target!r} for {self.name}{known}")


# --------------------------------------------------------------------------------------------
# Building an InspectedModel from a zoo name, a run directory or a module.


def _first_conv(model: nn.Module) -> nn.Conv2d | None:
    return next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)


def _from_zoo_module(model: nn.Module, *, loaded_imagenet_weights: bool = False) -> InspectedModel:
    """What the card says about feeding the network; ImageNet's preprocessing once torchvision's
    ImageNet weights are loaded into it."""
    from convatlas.registry import model_card

    card = model_card(model.model_name)
    channels = card.input_size[0]
    dataset = "imagenet" if loaded_imagenet_weights else card.dataset
    preprocessing = Preprocessing.for_dataset("imagenet", channels) if loaded_imagenet_weights else card.preprocessing
    classes = preprocessing.classes
    num_classes = getattr(model, "num_classes", None)
    if classes is not None and num_classes is not None and len(classes) != num_classes:
        classes = None  # built with other classes than the card's (create_model(name, num_classes=...))
    return InspectedModel(
        model=model.eval(),
        name=card.name,
        in_channels=channels,
        image_size=(card.input_size[1], card.input_size[2]),
        mean=tuple(preprocessing.mean),
        std=tuple(preprocessing.std),
        classes=classes,
        dataset_name=dataset,
        fit=preprocessing.fit,
        crop_fraction=preprocessing.crop_fraction,
        interpolation=preprocessing.interpolation,
    )


def _from_plain_module(model: nn.Module) -> InspectedModel:
    conv = _first_conv(model)
    channels = conv.in_channels if conv is not None else 3
    if channels == 3:  # most likely an ImageNet network (torchvision's)
        imagenet = Preprocessing.for_dataset("imagenet", channels)
        mean, std = tuple(imagenet.mean), tuple(imagenet.std)
    else:
        mean, std = (0.5,) * channels, (0.5,) * channels
    return InspectedModel(
        model=model.eval(),
        name=type(model).__name__,
        in_channels=channels,
        image_size=(224, 224),
        mean=mean,
        std=std,
    )


def _pair(size: Any) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    size = tuple(int(s) for s in size)
    return (size[-2], size[-1])


def _from_run(run_dir: Path, which: str) -> InspectedModel:
    from convatlas.tasks import load_run

    run = load_run(run_dir, which=which)
    return InspectedModel(
        model=run.model.eval(),
        name=getattr(run.model, "model_name", run_dir.name),
        in_channels=int(run.in_channels),
        image_size=_pair(run.image_size),
        mean=tuple(float(m) for m in run.mean),
        std=tuple(float(s) for s in run.std),
        classes=list(run.classes),
        dataset_name=run.dataset_name,
        run_dir=run_dir,
        data_root=run.config.get("data_root"),
        fit=getattr(run, "fit", "resize"),
        preprocess_fn=run.preprocess,
    )


def load_model(
    source: str | Path | nn.Module | InspectedModel,
    weights: str | nn.Module | Mapping[str, torch.Tensor] | None = None,
    *,
    checkpoint: str = "best",
) -> InspectedModel:
    """The network to look at, from a zoo name, a run directory or a module.

    ``weights`` (zoo names and zoo-built modules only) are torchvision's weights for the same
    architecture, loaded with :func:`convatlas.load_torchvision_weights`: a weights name such as
    ``"IMAGENET1K_V1"`` (downloads), a torchvision model or its state_dict. ``checkpoint`` picks
    ``best`` or ``last`` of a run directory.
    """
    if isinstance(source, InspectedModel):
        if weights is not None:
            raise ValueError("weights cannot be given for an InspectedModel; load them into its model")
        return source
    if isinstance(source, nn.Module):
        if weights is not None:
            return _with_weights(source, weights)
        if getattr(source, "model_name", None) is not None:
            return _from_zoo_module(source)
        return _from_plain_module(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            if not (path / "config.yaml").is_file():
                raise ValueError(
                    f"{str(path)!r} is a directory but not a run directory (no config.yaml); "
                    "give a run directory written by `convatlas train` or a zoo model name"
                )
            if weights is not None:
                raise ValueError("weights cannot be given for a run directory: the run has its own checkpoint")
            return _from_run(path, checkpoint)
        if isinstance(source, Path) or "/" in str(source) or str(source).endswith((".pt", ".yaml")):
            raise FileNotFoundError(f"run directory not found: {str(source)!r}")
        from convatlas.registry import create_model

        model = create_model(str(source))
        if weights is not None:
            return _with_weights(model, weights)
        return _from_zoo_module(model)
    raise TypeError(
        f"source must be a zoo model name, a run directory or an nn.Module, got {type(source).__name__}"
    )


def _with_weights(model: nn.Module, weights: str | nn.Module | Mapping[str, torch.Tensor]) -> InspectedModel:
    from convatlas.weights import load_torchvision_weights

    if getattr(model, "model_name", None) is None:
        raise ValueError(
            "weights can be loaded only into zoo models (built by convatlas.create_model); "
            "load them into your module yourself and pass the module"
        )
    load_torchvision_weights(model, weights)
    return _from_zoo_module(model, loaded_imagenet_weights=True)


# --------------------------------------------------------------------------------------------
# Layers by name.


def layer_names(model: nn.Module, types: tuple[type[nn.Module], ...] | None = None) -> list[str]:
    """Names of the submodules of ``model`` (``model.named_modules()``), optionally of some types."""
    return [n for n, m in model.named_modules() if n and (types is None or isinstance(m, types))]


def describe_layers(names: Sequence[str], model: nn.Module, limit: int = 120) -> str:
    modules = dict(model.named_modules())
    shown = [f"{n} ({type(modules[n]).__name__})" for n in names[:limit]]
    more = f", ... and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(shown) + more


def get_layer(
    model: nn.Module,
    name: str,
    *,
    types: tuple[type[nn.Module], ...] | None = None,
    what: str = "layer",
) -> nn.Module:
    """The submodule called ``name``; an unknown name raises ValueError listing the valid ones."""
    modules = dict(model.named_modules())
    valid = layer_names(model, types)
    if name in modules and name:
        if types is not None and not isinstance(modules[name], types):
            kinds = "/".join(t.__name__ for t in types)
            raise ValueError(
                f"layer {name!r} is a {type(modules[name]).__name__}, but a {kinds} {what} is needed; "
                f"valid choices: {describe_layers(valid, model)}"
            )
        return modules[name]
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    model_name = getattr(model, "model_name", type(model).__name__)
    raise ValueError(
        f"{model_name} has no {what} named {name!r}.{hint} Valid {what} names: {describe_layers(valid, model)}"
    )


def check_channel(channel: int, channels: int, layer: str) -> int:
    """``channel`` if it indexes one of ``channels`` feature maps, else a ValueError saying the range."""
    if isinstance(channel, bool) or not isinstance(channel, (int, np.integer)):
        raise ValueError(f"channel must be an integer, got {channel!r}")
    if not 0 <= channel < channels:
        raise ValueError(
            f"channel {channel} is out of range: layer {layer!r} has {channels} channels (0..{channels - 1})"
        )
    return int(channel)


# --------------------------------------------------------------------------------------------
# Images.

PHOTOS = ("chelsea", "astronaut", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")
GREY_PHOTOS = ("camera", "coins", "moon", "brick", "page", "clock")


def _resample(image: torch.Tensor, size: tuple[int, int], interpolation: str) -> torch.Tensor:
    """uint8 (C, H, W) -> uint8 (C, *size) with ``interpolation`` (antialiased when shrinking)."""
    if tuple(image.shape[1:]) == tuple(size):
        return image
    smooth = interpolation in ("bilinear", "bicubic")
    resized = F.interpolate(image[None].float(), size=size, mode=interpolation, antialias=smooth,
                            align_corners=False if smooth else None)
    return resized[0].round().clamp(0, 255).to(torch.uint8)


def _resize_center_crop(image: torch.Tensor, size: tuple[int, int], *,
                        resize_to: Callable[[int], int] = lambda side: side,
                        interpolation: str = "bilinear") -> torch.Tensor:
    """uint8 (C, H, W) -> uint8 (C, *size): scale the picture so that its shorter side becomes
    ``resize_to(side)`` (just covering ``size`` by default; 256 for a 224 crop with ImageNet's
    crop fraction 0.875), then crop the centre."""
    c, h, w = image.shape
    th, tw = size
    scale = max(resize_to(th) / h, resize_to(tw) / w)
    nh, nw = max(th, round(h * scale)), max(tw, round(w * scale))
    image = _resample(image, (nh, nw), interpolation)
    top, left = (nh - th) // 2, (nw - tw) // 2
    return image[:, top : top + th, left : left + tw].contiguous()


def _pad_to(image: torch.Tensor, size: tuple[int, int], *, interpolation: str = "bilinear") -> torch.Tensor:
    """uint8 (C, H, W) -> uint8 (C, *size): the picture centred on black, as LeNet-5's 28x28 digits
    in its 32x32 input. A picture larger than ``size`` is first shrunk to fit inside it, aspect
    kept (cropping its centre instead would show the network a small piece of it)."""
    c, h, w = image.shape
    th, tw = size
    if h > th or w > tw:
        scale = min(th / h, tw / w)
        h, w = max(1, round(h * scale)), max(1, round(w * scale))
        image = _resample(image, (h, w), interpolation)
    out = image.new_zeros((c, th, tw))
    top, left = (th - h) // 2, (tw - w) // 2
    out[:, top : top + h, left : left + w] = image
    return out


def fit_picture(image: torch.Tensor, inspected: InspectedModel) -> torch.Tensor:
    """uint8 (C, H, W) -> uint8 (C, *image_size) as ``inspected`` is fed: for ``fit="resize"`` the
    shorter side resized to ``preprocessing.resize_to(side)`` then the centre crop, for ``"pad"``
    centred on black (:class:`~convatlas.registry.Preprocessing`)."""
    preprocessing = inspected.preprocessing
    if preprocessing.fit == "pad":
        return _pad_to(image, inspected.image_size, interpolation=preprocessing.interpolation)
    return _resize_center_crop(image, inspected.image_size, resize_to=preprocessing.resize_to,
                               interpolation=preprocessing.interpolation)


def _to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """HxW or HxWxC uint8 -> HxWx``channels``."""
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[2] == 4:
        image = image[..., :3]
    if channels == 1 and image.shape[2] == 3:
        grey = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601 luma
        return grey.round().clip(0, 255).astype(np.uint8)[..., None]
    if channels == 3 and image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return image


def _as_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    array = np.asarray(array, dtype=np.float64)
    if array.max(initial=0) <= 1.0:
        array = array * 255
    return array.round().clip(0, 255).astype(np.uint8)


def _read_file(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {str(path)!r}")
    try:
        with Image.open(path) as img:
            img.load()
            return np.asarray(img.convert("RGB") if img.mode not in ("L", "RGB") else img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(
            f"cannot read image {str(path)!r}: {exc}. Expected a picture file that Pillow can open "
            "(PNG, JPEG, BMP, TIFF...)"
        ) from exc


def _skimage_photo(name: str) -> np.ndarray:
    import skimage.data

    return getattr(skimage.data, name)()


def _dataset_test_split(inspected: InspectedModel) -> tuple[torch.Tensor, torch.Tensor]:
    """Test images (uint8 N,C,H,W) and labels of the network's dataset at its input size:
    the run's dataset, or the embedded digits for a digits network given by zoo name."""
    from convatlas.data import load_dataset

    name = inspected.dataset_name if inspected.run_dir is not None else "digits"
    split = load_dataset(name, root=inspected.data_root, image_size=inspected.image_size[0], fit=inspected.fit).test
    return split.images, split.labels


def _uses_digits(inspected: InspectedModel) -> bool:
    return inspected.in_channels == 1 and (inspected.dataset_name or "") in ("digits", "mnist")


def load_image(
    inspected: InspectedModel,
    image: str | Path | np.ndarray | torch.Tensor | None = None,
    *,
    index: int = 0,
) -> tuple[torch.Tensor, int | None, str]:
    """The picture to look at, as uint8 (1, C, H, W) at the network's input size.

    ``image`` is a file path, an array (H, W[, C]) / tensor (C, H, W), or None for a bundled
    picture: test image ``index`` of the dataset for a run (or a digits network), else
    scikit-image's ``chelsea`` photo (``camera`` for one-channel networks). Returns
    ``(image, label, caption)`` where ``label`` is the true class when it is known (dataset
    images) and None otherwise.
    """
    label: int | None = None
    if image is None:
        if inspected.run_dir is not None or _uses_digits(inspected):
            images, labels = _dataset_test_split(inspected)
            if not 0 <= index < len(images):
                raise ValueError(f"test image index must be in 0..{len(images) - 1}, got {index}")
            pixels, label = images[index], int(labels[index])
            name = inspected.dataset_name if inspected.run_dir is not None else "digits"
            caption = f"{name} test image {index} (label {inspected.class_name(label)})"
        else:
            name = PHOTOS[0] if inspected.in_channels == 3 else GREY_PHOTOS[0]
            pixels = torch.from_numpy(_to_channels(_skimage_photo(name), inspected.in_channels)).permute(2, 0, 1)
            caption = f"skimage.data.{name}()"
    elif isinstance(image, (str, Path)):
        array = _to_channels(_read_file(Path(image)), inspected.in_channels)
        pixels, caption = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1), Path(image).name
    elif isinstance(image, np.ndarray):
        array = _to_channels(_as_uint8(image), inspected.in_channels)
        pixels, caption = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1), "image"
    elif isinstance(image, torch.Tensor):
        pixels = image[0] if image.dim() == 4 else image
        if pixels.dim() == 2:
            pixels = pixels[None]
        if pixels.dim() != 3 or pixels.shape[0] != inspected.in_channels:
            raise ValueError(
                f"image tensor must be (C, H, W) or (1, C, H, W) with C={inspected.in_channels}, "
                f"got {tuple(image.shape)}"
            )
        if pixels.dtype != torch.uint8:
            pixels = torch.from_numpy(_as_uint8(pixels.detach().cpu().numpy()))
        caption = "image"
    else:
        raise TypeError(f"image must be a path, an array, a tensor or None, got {type(image).__name__}")
    return fit_picture(pixels.contiguous(), inspected)[None], label, caption


def sample_images(inspected: InspectedModel, count: int = 500) -> tuple[torch.Tensor, list[int], str]:
    """A set of images to search for the patches that most excite a unit (ZFNet's Fig. 2).

    A run (or a digits network) uses ``count`` test images of its dataset, evenly spaced through
    the split (which may be sorted by class); other networks use crops of scikit-image's sample
    photos, tiled at the network's input size. Returns uint8 (N, C, H, W), the index of each
    image in its source (the test split, or the list of crops) and a caption.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if inspected.run_dir is not None or _uses_digits(inspected):
        images, _ = _dataset_test_split(inspected)
        indices = torch.linspace(0, len(images) - 1, min(count, len(images))).round().long().unique()
        name = inspected.dataset_name if inspected.run_dir is not None else "digits"
        return images[indices], indices.tolist(), f"{len(indices)} of the {len(images)} {name} test images"
    th, tw = inspected.image_size
    crops: list[torch.Tensor] = []
    names = PHOTOS if inspected.in_channels == 3 else GREY_PHOTOS
    for name in names:
        photo = torch.from_numpy(_to_channels(_skimage_photo(name), inspected.in_channels)).permute(2, 0, 1)
        h, w = photo.shape[1:]
        sizes = {(max(th, round(h * scale)), max(tw, round(w * scale))): None for scale in (1.0, 0.5)}
        for size in sizes:  # the photo at full and half size (once, where both come out the same)
            scaled = _resize_center_crop(photo, size)
            for top in range(0, size[0] - th + 1, max(1, th // 2)):
                for left in range(0, size[1] - tw + 1, max(1, tw // 2)):
                    crops.append(scaled[:, top : top + th, left : left + tw])
    images = torch.stack(crops)[:count]
    return images, list(range(len(images))), f"{len(images)} crops of scikit-image sample photos"
