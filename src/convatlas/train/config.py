"""The front door's configuration: one dataclass, saved resolved as ``config.yaml`` in every run.

:class:`TrainConfig` is the loop's :class:`~convatlas.engine.LoopConfig` (length, optimiser,
schedule, EMA, clipping, runtime) plus what to train on what: the model and its variant, the
data, and the classification task's loss and augmentation keys. Its defaults are task-neutral -
no geometric distortions, no gradient clipping, no auxiliary loss weight unless the network has
auxiliary heads - and a recipe (a YAML file of the same keys) states what a paper, or our own
tuning, changes. Recipes ship with the package (:func:`list_recipes`); a model's card names the
one ``convatlas train NAME`` uses when no other is given (``lenet5`` -> ``lenet5_digits``).
Resolution order: defaults < recipe < ``config`` < keyword arguments.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from convatlas._checks import fraction, non_negative, non_negative_int, one_of, positive_int
from convatlas.data.augment import AugmentConfig
from convatlas.data.geometry import SegmentationAugment
from convatlas.engine.config import LoopConfig, option

__all__ = ["TrainConfig", "load_recipe", "list_recipes", "recipe_path", "RESUME_OVERRIDABLE", "NO_DISTORTIONS"]

# What may change when a run is resumed: everything else must stay as it was for the
# continuation to be exact.
RESUME_OVERRIDABLE = ("epochs", "iterations", "quiet", "device", "compile", "eval_every", "threads")


# Every geometric distortion switched off (the neutral defaults; recipes such as LeNet-5's turn
# several on). Crop, flip and mixing are separate keys, off by default.
NO_DISTORTIONS: dict[str, float] = {
    "affine_degrees": 0.0, "affine_translate": 0.0, "affine_scale": 0.0, "affine_shear": 0.0,
    "affine_squeeze": 0.0, "elastic_alpha": 0.0,
}

# The keys that say what is trained on what; config.yaml lists them first.
_WHAT = ("model", "variant_args", "data", "data_options", "data_root", "image_size", "fit", "num_classes", "download")


@dataclass
class TrainConfig(LoopConfig):
    """Everything that decides a training run: the loop's keys (:class:`LoopConfig`) and these.
    Lengths (``epochs``, ``warmup``, ``milestones``) are in epochs, or in iterations when
    ``iterations`` is set (as the ResNet paper gives them)."""

    # what
    model: str = option("", "registered model name (`convatlas list`)")
    variant_args: dict = option({}, "the model's variant arguments, e.g. {depth: 56}")
    data: str = option("digits", "dataset name (classification: digits, sklearn_digits, mnist, fashion_mnist, cifar10, cifar100, or an ImageFolder path; segmentation: digit-scenes (its default), voc, or a VOC / images+masks folder)")
    data_options: dict = option({}, "options of the dataset, e.g. for digit-scenes {size: 96, num_train: 2000, max_digits: 6}")
    data_root: str | None = option(None, "folder holding the dataset's files (default: the convatlas cache)")
    image_size: int | None = option(None, "resize images to this side (default: the data's own size, raised to the model's minimum)")
    fit: str = option("auto", "how images reach image_size: resize, pad (centre on black), or auto (pad when raised to the model's minimum, as LeNet-5's 28->32, else resize)", choices=("auto", "resize", "pad"))
    num_classes: int | None = option(None, "classes of the model's output (default: the dataset's)")
    download: bool = option(True, "download missing standard dataset files where the network allows")
    # loss and regularisation
    label_smoothing: float = option(0.0, "label smoothing epsilon")
    aux_weight: float | None = option(None, "weight of auxiliary-classifier losses (default: the card's, for networks with auxiliary heads: GoogLeNet 0.3)")
    # augmentation (on whole batches, on the device)
    crop_padding: int = option(0, "random crop after zero-padding by this many pixels")
    hflip: bool = option(False, "random horizontal flips")
    rrc_scale: list | None = option(None, "random resized crop area range, e.g. [0.08, 1.0]")
    affine_degrees: float = option(0.0, "random rotation range in degrees")
    affine_translate: float = option(0.0, "random shift range, as a fraction of the size")
    affine_scale: float = option(0.0, "random zoom range (1 +- this)")
    affine_shear: float = option(0.0, "random horizontal shear range in degrees (LeCun et al. 1998's distortions)")
    affine_squeeze: float = option(0.0, "random squeeze range: x scaled by s, y by 1/s, s in 1 +- this")
    elastic_alpha: float = option(0.0, "elastic distortion strength in pixels (Simard et al. 2003: 34 at sigma 4); 0 = off")
    elastic_sigma: float = option(4.0, "elastic distortion smoothness: Gaussian sigma in pixels (Simard et al. 2003: 4)")
    mixup_alpha: float = option(0.0, "mixup Beta(alpha, alpha); 0 = off")
    cutmix_alpha: float = option(0.0, "cutmix Beta(alpha, alpha); 0 = off")
    mix_prob: float = option(1.0, "probability that a batch is mixed (when mixup/cutmix is on)")
    # segmentation (image and mask move together; affine_degrees, affine_translate and hflip apply too)
    scale_range: list | None = option(None, "segmentation: random zoom range [low, high] of image and mask, e.g. [0.5, 2.0] (FCN/DeepLab photos)")
    crop_size: int | None = option(None, "segmentation: random crop of this side after the zoom (default: the image size)")
    brightness: float = option(0.0, "segmentation: random brightness change, x * U(1 - b, 1 + b), image only")
    contrast: float = option(0.0, "segmentation: random contrast change around the mean grey, image only")
    class_weights: list | None = option(None, "segmentation: one loss weight per class (default: all 1)")
    notes: str = option("", "free text: the recipe's source")

    def validate(self) -> None:
        """Raise ``ValueError`` for a value outside its range, naming the key and what is expected."""
        super().validate()
        one_of("fit", self.fit, ("auto", "resize", "pad"))
        if self.image_size is not None:
            positive_int("image_size", self.image_size)
        if self.num_classes is not None:
            positive_int("num_classes", self.num_classes)
        fraction("label_smoothing", self.label_smoothing)
        if self.aux_weight is not None:
            non_negative("aux_weight", self.aux_weight)
        non_negative("elastic_alpha", self.elastic_alpha, " (pixels)")
        if not self.elastic_sigma > 0:
            raise ValueError(f"elastic_sigma must be positive (pixels), got {self.elastic_sigma}")
        if not 0 <= self.affine_shear < 90:
            raise ValueError(f"affine_shear must be an angle in [0, 90) degrees, got {self.affine_shear}")
        if not 0 <= self.affine_squeeze < 1:
            raise ValueError(f"affine_squeeze must be in [0, 1) (s in 1 +- it), got {self.affine_squeeze}")
        non_negative_int("crop_padding", self.crop_padding)
        if self.rrc_scale is not None:
            if len(self.rrc_scale) != 2 or not 0 < self.rrc_scale[0] <= self.rrc_scale[1] <= 1:
                raise ValueError(f"rrc_scale must be [low, high] with 0 < low <= high <= 1, got {self.rrc_scale}")
        if not isinstance(self.variant_args, dict):
            raise ValueError(f"variant_args must be a mapping, got {self.variant_args!r}")
        if not isinstance(self.data_options, dict):
            raise ValueError(f"data_options must be a mapping, got {self.data_options!r}")
        if self.class_weights is not None and any(not w >= 0 for w in self.class_weights):
            raise ValueError(f"class_weights must be non-negative numbers, got {self.class_weights}")
        if self.crop_size is not None:
            positive_int("crop_size", self.crop_size)
        self.segment_augment  # checks the segmentation keys (scale_range, brightness, contrast)

    @property
    def augment(self) -> AugmentConfig:
        return AugmentConfig(
            crop_padding=self.crop_padding, hflip=self.hflip,
            rrc_scale=tuple(self.rrc_scale) if self.rrc_scale else None,
            affine_degrees=self.affine_degrees, affine_translate=self.affine_translate,
            affine_scale=self.affine_scale, affine_shear=self.affine_shear,
            affine_squeeze=self.affine_squeeze, elastic_alpha=self.elastic_alpha,
            elastic_sigma=self.elastic_sigma, mixup_alpha=self.mixup_alpha,
            cutmix_alpha=self.cutmix_alpha, mix_prob=self.mix_prob,
        )

    @property
    def segment_augment(self) -> SegmentationAugment:
        """The joint image-and-mask augmentation of a segmentation run."""
        scale = self.scale_range if self.scale_range else (1.0, 1.0)
        if len(scale) != 2:
            raise ValueError(f"scale_range must be [low, high], got {self.scale_range}")
        return SegmentationAugment(scale=tuple(scale), crop_size=self.crop_size, translate=self.affine_translate,
                                   degrees=self.affine_degrees, hflip=self.hflip, brightness=self.brightness,
                                   contrast=self.contrast)

    def to_dict(self) -> dict[str, Any]:
        """Every key, those saying what is trained on what first."""
        values = dataclasses.asdict(self)
        return {**{k: values[k] for k in _WHAT}, **{k: v for k, v in values.items() if k not in _WHAT}}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Build from a mapping; an unknown key is an error that suggests the closest key."""
        check_keys(values)
        return cls(**values)

    def replace(self, **changes: Any) -> "TrainConfig":
        check_keys(changes)
        return dataclasses.replace(self, **changes)


def config_keys() -> list[str]:
    return [f.name for f in fields(TrainConfig)]


# Names people often use for a key (from other trainers), for the "did you mean" hint.
_SYNONYMS = {"learning_rate": "lr", "base_lr": "lr", "wd": "weight_decay", "bs": "batch_size",
             "epoch": "epochs", "max_epochs": "epochs", "steps": "iterations", "max_steps": "iterations",
             "lr_schedule": "schedule", "scheduler": "schedule", "dataset": "data", "arch": "model",
             "opt": "optimizer", "ema": "ema_decay", "mixup": "mixup_alpha", "cutmix": "cutmix_alpha"}


def check_keys(values: dict[str, Any], where: str = "config") -> None:
    known = config_keys()
    for key in values:
        if key not in known:
            close = ([_SYNONYMS[key]] if key in _SYNONYMS else []) + difflib.get_close_matches(key, known, n=3, cutoff=0.5)
            close = list(dict.fromkeys(close))[:3]
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ValueError(f"unknown {where} key {key!r}.{hint} Known keys: {', '.join(known)}")


def _packaged_recipes() -> Any:
    return resources.files("convatlas") / "recipes"


def list_recipes() -> list[str]:
    """The names of the recipes that ship with convatlas (``convatlas train --recipe NAME``)."""
    return sorted(p.name[: -len(".yaml")] for p in _packaged_recipes().iterdir() if p.name.endswith(".yaml"))


def recipe_path(recipe: str | os.PathLike) -> Path:
    """The file of a recipe given by path, or by the name of a packaged recipe."""
    path = Path(recipe)
    if path.is_file():
        return path
    name = str(recipe)
    packaged = _packaged_recipes() / f"{name}.yaml"
    if "/" not in name and not name.endswith((".yaml", ".yml")) and packaged.is_file():
        return Path(str(packaged))
    known = list_recipes()
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise FileNotFoundError(f"recipe {name!r} is neither a file nor a packaged recipe.{hint} "
                            f"Packaged recipes: {', '.join(known)}")


def load_recipe(recipe: str | os.PathLike) -> dict[str, Any]:
    """Read a recipe (a YAML file, or a packaged recipe's name) into a dict of :class:`TrainConfig`
    keys (checked)."""
    path = recipe_path(recipe)
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"recipe {path} is not valid YAML: {exc}") from exc
    if not isinstance(values, dict):
        raise ValueError(f"recipe {path} must be a mapping of config keys, got {type(values).__name__}")
    check_keys(values, where=f"recipe {path.name}")
    return values
