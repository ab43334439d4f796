"""The training configuration: one dataclass, saved resolved as ``config.yaml`` in every run.

The defaults are the recipe of ``convatlas train lenet5`` on the embedded digits (LeNet-5,
LeCun et al. 1998): 30 epochs of SGD with Nesterov momentum, batch 64, a one-cycle schedule
peaking at lr 0.1, weight decay 1e-3, the gradient norm clipped at 5 (without it, runs of a few
epochs, whose one-cycle warm-up is short, can stall at chance); the paper's random distortions
(small rotations, zooms and shifts, horizontal shear up to 15 degrees, squeeze by up to 10%)
plus mild elastic distortions (Simard et al. 2003: alpha 12 pixels, sigma 4; about 0.5 pixel of
displacement). On the 1,000 held-out digits this gave 98.63% (mean of 6 seeds;
``benchmarks/bench_train.py`` measures seeds 0-2); the previous default (20 epochs, lr 0.05,
weight decay 5e-4, no shear, squeeze or clipping) 98.33%. A recipe file (``recipes/*.yaml``)
holds a paper's setup as the same keys; :func:`load_recipe` reads it.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from convatlas.data.augment import AugmentConfig

__all__ = ["TrainConfig", "load_recipe", "RESUME_OVERRIDABLE", "NO_DISTORTIONS"]

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("step", "cosine", "onecycle", "constant")

# What may change when a run is resumed: everything else must stay as it was for the
# continuation to be exact.
RESUME_OVERRIDABLE = ("epochs", "iterations", "quiet", "device", "compile", "eval_every")


# Every geometric distortion switched off (the defaults turn several on, for LeNet-5): pass these
# for a run without warps. Crop, flip and mixing are separate keys, off by default.
NO_DISTORTIONS: dict[str, float] = {
    "affine_degrees": 0.0, "affine_translate": 0.0, "affine_scale": 0.0, "affine_shear": 0.0,
    "affine_squeeze": 0.0, "elastic_alpha": 0.0,
}


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    """Everything that decides a training run. Lengths (``epochs``, ``warmup``, ``milestones``)
    are in epochs, or in iterations when ``iterations`` is set (as the ResNet paper gives them)."""

    # what
    model: str = _f("", "registered model name (`convatlas list`)")
    variant_args: dict = _f({}, "the model's variant arguments, e.g. {depth: 56}")
    data: str = _f("digits", "dataset name (digits, sklearn_digits, mnist, fashion_mnist, cifar10, cifar100) or an ImageFolder path")
    data_root: str | None = _f(None, "folder holding the dataset's files (default: the convatlas cache)")
    image_size: int | None = _f(None, "resize images to this side (default: the data's own size, raised to the model's minimum)")
    fit: str = _f("auto", "how images reach image_size: resize, pad (centre on black), or auto (pad when raised to the model's minimum, as LeNet-5's 28->32, else resize)", choices=("auto", "resize", "pad"))
    num_classes: int | None = _f(None, "classes of the model's output (default: the dataset's)")
    download: bool = _f(True, "download missing standard dataset files where the network allows")
    # how long
    epochs: float = _f(30, "training epochs (ignored when iterations is set)")
    iterations: int | None = _f(None, "training iterations (steps); overrides epochs")
    batch_size: int = _f(64, "global batch size (split across distributed processes)")
    eval_batch_size: int = _f(1000, "batch size for evaluation")
    eval_every: int = _f(1, "evaluate on the test split every this many epochs (and at the end)")
    # optimiser
    optimizer: str = _f("sgd", "sgd or adamw", choices=OPTIMIZERS)
    lr: float = _f(0.1, "peak learning rate")
    momentum: float = _f(0.9, "SGD momentum")
    nesterov: bool = _f(True, "Nesterov momentum (SGD)")
    betas: list = _f([0.9, 0.999], "AdamW betas")
    weight_decay: float = _f(1e-3, "L2 weight decay (decoupled for AdamW)")
    decay_norm_and_bias: bool = _f(True, "apply weight decay to normalisation weights and biases too")
    # schedule
    schedule: str = _f("onecycle", "step, cosine, onecycle or constant", choices=SCHEDULES)
    milestones: list = _f([], "step schedule: multiply the lr by gamma at these points")
    gamma: float = _f(0.1, "step schedule factor")
    warmup: float = _f(0.0, "linear warm-up length from 0 (step/cosine/constant)")
    min_lr: float = _f(0.0, "cosine: final learning rate")
    onecycle_pct: float = _f(0.25, "one-cycle: fraction of training spent rising to the peak")
    # loss and regularisation
    label_smoothing: float = _f(0.0, "label smoothing epsilon")
    aux_weight: float = _f(0.3, "weight of auxiliary-classifier losses (GoogLeNet: 0.3)")
    ema_decay: float | None = _f(None, "keep an exponential moving average of the weights with this decay (evaluated instead)")
    clip_grad_norm: float | None = _f(5.0, "clip the gradient norm to this value (0 or none: no clipping)")
    # augmentation (on whole batches, on the device)
    crop_padding: int = _f(0, "random crop after zero-padding by this many pixels")
    hflip: bool = _f(False, "random horizontal flips")
    rrc_scale: list | None = _f(None, "random resized crop area range, e.g. [0.08, 1.0]")
    affine_degrees: float = _f(5.0, "random rotation range in degrees")
    affine_translate: float = _f(0.05, "random shift range, as a fraction of the size")
    affine_scale: float = _f(0.05, "random zoom range (1 +- this)")
    affine_shear: float = _f(15.0, "random horizontal shear range in degrees (LeCun et al. 1998's distortions)")
    affine_squeeze: float = _f(0.1, "random squeeze range: x scaled by s, y by 1/s, s in 1 +- this")
    elastic_alpha: float = _f(12.0, "elastic distortion strength in pixels (Simard et al. 2003: 34 at sigma 4); 0 = off")
    elastic_sigma: float = _f(4.0, "elastic distortion smoothness: Gaussian sigma in pixels (Simard et al. 2003: 4)")
    mixup_alpha: float = _f(0.0, "mixup Beta(alpha, alpha); 0 = off")
    cutmix_alpha: float = _f(0.0, "cutmix Beta(alpha, alpha); 0 = off")
    mix_prob: float = _f(1.0, "probability that a batch is mixed (when mixup/cutmix is on)")
    # runtime
    seed: int = _f(0, "random seed (weights, data order, augmentation)")
    device: str = _f("auto", "cpu, cuda, cuda:N or auto")
    amp: bool | None = _f(None, "bf16 autocast (default: on for CUDA)")
    channels_last: bool | None = _f(None, "channels_last memory format (default: on for CUDA)")
    compile: bool = _f(False, "torch.compile the model")
    deterministic: bool = _f(False, "deterministic algorithms (slower on GPU)")
    threads: int | None = _f(None, "CPU threads for torch (default: torch's choice)")
    quiet: bool = _f(False, "log lines instead of a progress bar")
    notes: str = _f("", "free text: the recipe's source")

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ``ValueError`` for a value outside its range, naming the key and what is expected."""
        def positive(name: str, value: Any, allow_none: bool = False) -> None:
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")

        if self.fit not in ("auto", "resize", "pad"):
            raise ValueError(f"fit must be auto, resize or pad, got {self.fit!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        positive("epochs", self.epochs)
        positive("iterations", self.iterations, allow_none=True)
        for name in ("batch_size", "eval_batch_size", "eval_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        positive("lr", self.lr)
        if self.image_size is not None and (not isinstance(self.image_size, int) or self.image_size < 1):
            raise ValueError(f"image_size must be a positive integer, got {self.image_size!r}")
        if self.num_classes is not None and (not isinstance(self.num_classes, int) or self.num_classes < 1):
            raise ValueError(f"num_classes must be a positive integer, got {self.num_classes!r}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in (0, 1), got {self.ema_decay}")
        if self.elastic_alpha < 0 or not self.elastic_sigma > 0:
            raise ValueError(f"elastic_alpha must not be negative and elastic_sigma must be positive (pixels), "
                             f"got {self.elastic_alpha} and {self.elastic_sigma}")
        if self.clip_grad_norm is not None and (isinstance(self.clip_grad_norm, bool) or self.clip_grad_norm < 0):
            raise ValueError(f"clip_grad_norm must be a positive number, or 0 / none for no clipping, "
                             f"got {self.clip_grad_norm!r}")
        if not 0 <= self.affine_shear < 90:
            raise ValueError(f"affine_shear must be an angle in [0, 90) degrees, got {self.affine_shear}")
        if not 0 <= self.affine_squeeze < 1:
            raise ValueError(f"affine_squeeze must be in [0, 1) (s in 1 +- it), got {self.affine_squeeze}")
        if self.weight_decay < 0 or self.warmup < 0 or self.crop_padding < 0:
            raise ValueError("weight_decay, warmup and crop_padding must not be negative")
        if self.rrc_scale is not None:
            if len(self.rrc_scale) != 2 or not 0 < self.rrc_scale[0] <= self.rrc_scale[1] <= 1:
                raise ValueError(f"rrc_scale must be [low, high] with 0 < low <= high <= 1, got {self.rrc_scale}")
        if sorted(self.milestones) != list(self.milestones):
            raise ValueError(f"milestones must be increasing, got {self.milestones}")
        if not isinstance(self.variant_args, dict):
            raise ValueError(f"variant_args must be a mapping, got {self.variant_args!r}")

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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

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


def load_recipe(path: str | os.PathLike) -> dict[str, Any]:
    """Read a recipe YAML file into a dict of :class:`TrainConfig` keys (checked)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe file {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"recipe {path} is not valid YAML: {exc}") from exc
    if not isinstance(values, dict):
        raise ValueError(f"recipe {path} must be a mapping of config keys, got {type(values).__name__}")
    check_keys(values, where=f"recipe {path.name}")
    return values
