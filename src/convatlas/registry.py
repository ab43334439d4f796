"""Name -> builder + model card.

Every network of the zoo is a small public builder function decorated with
:func:`register_model`, next to a :class:`ModelCard` that holds its citation and the
numbers its paper (or the reference implementation) published::

    @register_model(ModelCard(
        name="resnet50", family="resnet", paper="Deep Residual Learning for Image Recognition",
        authors="He, Zhang, Ren, Sun", year=2015, arxiv="1512.03385",
        input_size=(3, 224, 224), dataset="imagenet",
        params=Published(25_557_032, "torchvision meta"),
        macs=Published(4.089e9, "torchvision meta _ops"),
        top1=Published(76.13, "torchvision IMAGENET1K_V1, single crop"),
        torchvision="resnet50",
        idea="Residual connections ... ",
    ))
    def resnet50(*, num_classes: int = 1000, stride_in_3x3: bool = True) -> ResNet:
        ...

``create_model(name, **kwargs)`` and ``list_models(pattern)`` are the whole public surface;
``model_card(name)`` returns the card. The registry is the ground floor: it imports no room of
convatlas. The zoo registers itself when ``convatlas`` is imported (the package's ``__init__``
imports :mod:`convatlas.models`), whichever of its modules is imported first.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Mapping

import torch
from torch import nn

from convatlas._checks import positive_int
from convatlas._meta import build_on_meta

__all__ = [
    "Published",
    "Preprocessing",
    "ModelCard",
    "UnknownModelError",
    "InputTooSmallError",
    "register_model",
    "create_model",
    "list_models",
    "model_card",
    "get_builder",
    "min_input_size",
    "build_meta",
    "check_input_size",
    "label_names",
]


@dataclass(frozen=True)
class Published:
    """A number with the place it was published (``source``: e.g. "Table 6", "torchvision meta")."""

    value: float
    source: str

    def __float__(self) -> float:
        return float(self.value)


# --------------------------------------------------------------------------------------------
# How to feed a network: the statistics of the data it was made for, how a picture reaches its
# input size, and the names of its classes.

# Per-channel mean and standard deviation (fractions of 255) of the training sets the cards name:
# torchvision's ImageNet constants; CIFAR and MNIST measured on their training sets.
_DATASET_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "mnist": ((0.1307,), (0.3081,)),
    "voc": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # VOC networks start from ImageNet backbones
    "digit-scenes": ((0.0643,), (0.2122,)),  # the 4,000 default training scenes (mostly black canvas)
}
_CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def label_names(labels: str | None) -> list[str] | None:
    """The class names of a label set: ``"imagenet"`` (torchvision's 1,000 categories),
    ``"cifar10"``, ``"digits"`` (``"0"``..``"9"``); None for an unknown or unnamed set."""
    if labels == "imagenet":
        import torchvision

        return list(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
    if labels == "cifar10":
        return list(_CIFAR10_CLASSES)
    if labels == "digits":
        return [str(d) for d in range(10)]
    return None


@dataclass(frozen=True)
class Preprocessing:
    """How to feed a network a picture: bring it to the input size, scale to [0, 1], then
    ``(x - mean) / std`` per channel.

    ``fit="resize"``: resize the shorter side to ``input / crop_fraction`` pixels (ImageNet
    evaluation: 256 for a 224 input, ``crop_fraction`` 0.875) with ``interpolation``, then take the
    centre crop of the input size. ``fit="pad"``: centre the picture on black at the input size
    (LeNet-5's 28x28 digits in its 32x32 input). ``labels`` names the class names' set
    (:func:`label_names`).
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    fit: str = "resize"
    crop_fraction: float = 1.0
    interpolation: str = "bilinear"
    labels: str | None = None

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean and std need one value per channel, got {self.mean} and {self.std}")
        if self.fit not in ("resize", "pad"):
            raise ValueError(f"fit must be resize or pad, got {self.fit!r}")
        if not 0 < self.crop_fraction <= 1:
            raise ValueError(f"crop_fraction must be in (0, 1], got {self.crop_fraction}")

    def resize_to(self, side: int) -> int:
        """The shorter side a picture is resized to before the centre crop of ``side``."""
        return int(round(side / self.crop_fraction))

    @property
    def classes(self) -> list[str] | None:
        return label_names(self.labels)

    @classmethod
    def for_dataset(cls, dataset: str, channels: int) -> "Preprocessing":
        """The usual preprocessing of a network made for ``dataset`` with ``channels`` input channels."""
        mean, std = _DATASET_STATS.get(dataset, _DATASET_STATS["imagenet"])
        if len(mean) != channels:  # e.g. a one-channel network described by a three-channel dataset
            mean, std = mean[:1] * channels, std[:1] * channels
        if dataset == "imagenet":
            return cls(mean, std, "resize", 0.875, "bilinear", "imagenet")
        if dataset == "mnist":
            return cls(mean, std, "pad", 1.0, "bilinear", "digits")
        return cls(mean, std, "resize", 1.0, "bilinear", dataset if dataset == "cifar10" else None)


@dataclass(frozen=True)
class ModelCard:
    """Citation and published numbers of one registered network.

    ``params`` are exact counts (PyTorch convention: BN affine included, running stats not),
    ``macs`` multiply-accumulates of conv + linear layers at ``input_size``, ``top1``/``top5`` in
    percent on ``dataset`` with the protocol named in the source. ``task`` is what the network
    does (``"classification"``, ``"segmentation"``, ``"detection"``); ``preprocessing`` how to feed
    it (default: the usual one for ``dataset``); ``recipe`` the packaged recipe
    ``convatlas train NAME`` uses when none is given (``convatlas.train.list_recipes()``), and
    ``recipes`` those that reproduce its paper's training; ``aux_weight`` the weight of its
    auxiliary classifiers' losses in its paper (networks with ``aux_logits``; default
    0.3, GoogLeNet's).
    """

    name: str
    family: str
    paper: str
    authors: str
    year: int
    input_size: tuple[int, int, int]
    dataset: str  # "imagenet", "cifar10", "cifar100", "mnist"
    idea: str
    arxiv: str | None = None
    num_classes: int | None = None  # default classes; derived from dataset when None
    params: Published | None = None
    macs: Published | None = None
    top1: Published | None = None
    top5: Published | None = None
    miou: Published | None = None  # segmentation: mean intersection over union, in percent
    map: Published | None = None  # detection: mean average precision, in percent (the source names the protocol)
    torchvision: str | None = None  # name of the torchvision builder with the same architecture
    timm: str | None = None
    aux_logits: bool = False  # returns (logits, *aux) in training mode
    aux_weight: float | None = None
    task: str = "classification"
    preprocessing: Preprocessing | None = None
    recipe: str | None = None
    recipes: tuple[str, ...] = ()
    notes: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"{self.name}: task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.preprocessing is None:
            object.__setattr__(self, "preprocessing", Preprocessing.for_dataset(self.dataset, self.input_size[0]))
        if self.aux_logits and self.aux_weight is None:  # GoogLeNet's (Szegedy et al. 2014, Sec. 5)
            object.__setattr__(self, "aux_weight", 0.3)

    @property
    def default_num_classes(self) -> int:
        if self.num_classes is not None:
            return self.num_classes
        return _DEFAULT_CLASSES.get(self.dataset, 10)

    @property
    def citation(self) -> str:
        arxiv = f", arXiv:{self.arxiv}" if self.arxiv else ""
        return f'{self.authors} ({self.year}). "{self.paper}"{arxiv}.'

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["citation"] = self.citation
        return d


# Classes of the datasets cards name, where they are not 10 (segmentation counts the background).
_DEFAULT_CLASSES = {"imagenet": 1000, "cifar100": 100, "voc": 21, "digit-scenes": 11, "camvid": 11,
                    "cells": 2}

TASKS = ("classification", "segmentation", "detection")


class UnknownModelError(KeyError, ValueError):
    """A model name that is not registered; the message suggests the closest names."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


class InputTooSmallError(ValueError):
    """An input image smaller than the network can take."""


@dataclass(frozen=True)
class _Entry:
    builder: Callable[..., nn.Module]
    card: ModelCard
    torchvision_keys: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None


_REGISTRY: dict[str, _Entry] = {}


def register_model(
    card: ModelCard,
    *,
    torchvision_keys: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``builder`` under ``card.name``.

    ``torchvision_keys`` maps a torchvision state_dict (of ``card.torchvision``) to this model's
    keys; leave it out when the attribute names are already the same.
    """

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if card.name in _REGISTRY:
            raise ValueError(f"model name {card.name!r} is registered twice")
        _REGISTRY[card.name] = _Entry(builder, card, torchvision_keys)
        builder.card = card  # type: ignore[attr-defined]
        return builder

    return decorate


def _entry(name: str) -> _Entry:
    if not isinstance(name, str):
        raise TypeError(f"model name must be a string, got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    if key in _REGISTRY:
        return _REGISTRY[key]
    close = difflib.get_close_matches(key, _REGISTRY, n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UnknownModelError(
        f"unknown model {name!r}.{hint} `convatlas list` (or convatlas.list_models()) shows all "
        f"{len(_REGISTRY)} registered names."
    )


def get_builder(name: str) -> Callable[..., nn.Module]:
    return _entry(name).builder


def model_card(name: str) -> ModelCard:
    """The card of a registered network (citation, input size, published numbers)."""
    return _entry(name).card


def torchvision_key_map(name: str):
    return _entry(name).torchvision_keys


def list_models(pattern: str = "*", *, family: str | None = None, task: str | None = None) -> list[str]:
    """Registered names matching a shell-style ``pattern`` (e.g. ``"resnet*"``), sorted; ``family``
    and ``task`` (``"classification"``, ``"segmentation"``, ``"detection"``) narrow the list."""
    if task is not None and task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    names = [n for n in _REGISTRY if fnmatch.fnmatch(n, pattern.lower())]
    if family is not None:
        names = [n for n in names if _REGISTRY[n].card.family == family]
    if task is not None:
        names = [n for n in names if _REGISTRY[n].card.task == task]
    return sorted(names)


def _check_kwargs(name: str, builder: Callable[..., nn.Module], kwargs: dict[str, Any]) -> None:
    sig = inspect.signature(builder)
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return
    allowed = [n for n, p in sig.parameters.items() if p.kind is not p.VAR_POSITIONAL]
    bad = [k for k in kwargs if k not in allowed]
    if bad:
        raise ValueError(
            f"{name} does not take {', '.join(repr(b) for b in bad)}; "
            f"its variant arguments are: {', '.join(allowed) or '(none)'}"
        )


def create_model(name: str, num_classes: int | None = None, **variant_args: Any) -> nn.Module:
    """Build a registered network by name, with its paper's configuration or a variant.

    ``num_classes`` defaults to the card's dataset (1000 for ImageNet nets, 10 for CIFAR-10...).
    Other keyword arguments are the variant arguments the builder's paper defines
    (``width_mult``, ``depth``, ``growth_rate``...). The returned module is an ordinary
    ``nn.Module``; ``model.model_name`` and ``model.variant_args`` record how it was built, and an
    input smaller than the network can take raises :class:`InputTooSmallError`.
    """
    entry = _entry(name)
    if num_classes is None:
        num_classes = entry.card.default_num_classes
    positive_int("num_classes", num_classes)
    _check_kwargs(entry.card.name, entry.builder, {"num_classes": num_classes, **variant_args})
    model = entry.builder(num_classes=num_classes, **variant_args)
    model.model_name = entry.card.name
    model.variant_args = dict(variant_args)
    model.num_classes = num_classes
    model.register_forward_pre_hook(_InputSizeGuard(entry.card.name, num_classes, dict(variant_args)))
    return model


# --------------------------------------------------------------------------------------------
# Smallest input a network takes, and a clear error below it.


def _meta_forward(model: nn.Module, shape: tuple[int, ...]) -> tuple[bool, str, str]:
    """Run ``model`` on a meta tensor; return (ok, layer name, error) of the first failure."""
    where: list[str] = []
    handles = []
    for mod_name, module in model.named_modules():
        if mod_name:
            handles.append(
                module.register_forward_pre_hook(lambda m, a, n=mod_name: where.append(n))
            )
    try:
        with torch.no_grad():
            model(torch.empty(shape, device="meta"))
        return True, "", ""
    except Exception as exc:  # noqa: BLE001 - any failure means "too small" here
        return False, (where[-1] if where else "(input)"), f"{type(exc).__name__}: {exc}"
    finally:
        for h in handles:
            h.remove()


def build_meta(name: str, num_classes: int | None = None, **variant_args: Any) -> nn.Module:
    """Build a registered network with every tensor on the meta device, in eval mode, skipping
    the initialisers (EfficientNet-B7 in 0.2 s instead of 2.5 s): for shapes, parameters and
    MACs without memory. It leaves the caller's random stream alone."""
    entry = _entry(name)
    return build_on_meta(entry.builder, num_classes=num_classes or entry.card.default_num_classes, **variant_args)


def min_input_size(name: str, *, num_classes: int | None = None, **variant_args: Any) -> int:
    """Smallest square input side the network accepts (found by tracing on the meta device)."""
    entry = _entry(name)
    channels = entry.card.input_size[0]
    model = build_meta(entry.card.name, num_classes, **variant_args)
    hi = max(entry.card.input_size[1:])
    if not _meta_forward(model, (1, channels, hi, hi))[0]:
        raise ValueError(f"{name} does not run at its own input size {hi}x{hi}")
    lo = 0  # invariant: lo fails (or is 0), hi works
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _meta_forward(model, (1, channels, mid, mid))[0]:
            hi = mid
        else:
            lo = mid
    return hi


class _InputSizeGuard:
    """Forward pre-hook: an input too small raises an error naming the layer that broke.

    Inputs on the meta device pass unchecked: whoever runs a network on meta (the analysis's
    tracer) sees PyTorch's own error, and asks :func:`check_input_size` for the readable one.
    """

    def __init__(self, name: str, num_classes: int, variant_args: dict[str, Any]) -> None:
        self.name, self.num_classes, self.variant_args = name, num_classes, variant_args
        self.checked: set[tuple[int, ...]] = set()

    def __call__(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        if not args or not isinstance(args[0], torch.Tensor) or args[0].dim() != 4 or args[0].is_meta:
            return
        self.check(tuple(args[0].shape))

    def check(self, shape: tuple[int, ...]) -> None:
        key = tuple(shape[1:])
        if key in self.checked or torch.compiler.is_compiling():
            return
        model = build_meta(self.name, self.num_classes, **self.variant_args)
        ok, layer, error = _meta_forward(model, (1, *key))
        if ok:
            self.checked.add(key)
            return
        card = model_card(self.name)
        channels = card.input_size[0]
        if not _meta_forward(model, (1, *card.input_size))[0]:
            self.checked.add(key)  # not traceable on meta: let PyTorch speak for itself
            return
        if key[0] != channels:
            raise ValueError(
                f"{self.name} expects {channels}-channel images (N, {channels}, H, W); "
                f"got input of shape {tuple(shape)}"
            )
        smallest = min_input_size(self.name, num_classes=self.num_classes, **self.variant_args)
        h, w = key[1], key[2]
        if min(h, w) >= smallest:  # square minimum passes but this shape fails: report as is
            raise ValueError(f"{self.name} cannot take input {tuple(shape)}: layer {layer!r}: {error}")
        raise InputTooSmallError(
            f"{self.name} needs input images of at least {smallest}x{smallest} pixels; got {h}x{w}. "
            f"It broke at layer {layer!r} ({error.splitlines()[0]})"
        )


def check_input_size(model: nn.Module, shape: tuple[int, ...]) -> None:
    """Raise the readable error of a zoo network's input-size guard if it cannot take inputs of
    ``shape`` (N, C, H, W); nothing for other modules or inputs it can take."""
    for hook in model._forward_pre_hooks.values():
        if isinstance(hook, _InputSizeGuard):
            hook.check(tuple(shape))


def card_with(card: ModelCard, **changes: Any) -> ModelCard:
    """A copy of ``card`` with some fields changed (for families of near-identical cards).

    A copy for another dataset or input size gets that dataset's usual preprocessing unless
    ``preprocessing`` is among the changes (the original's would feed it the wrong statistics).
    """
    if "preprocessing" not in changes and ({"dataset", "input_size"} & changes.keys()):
        changes["preprocessing"] = None  # filled in again from the new dataset
    return replace(card, **changes)
