"""The front door: ``train("lenet5")`` or ``convatlas train lenet5``.

:func:`train` resolves the configuration (defaults < recipe < arguments; with no recipe given,
the one the model's card names), checks everything a user can get wrong - model, dataset, image
size, number of classes, a checkpoint to resume - before anything is written, builds the task
and the network, and hands them to the task-agnostic loop (:func:`convatlas.engine.fit`), which
trains on one CPU, one GPU or many processes (``torchrun``) and writes the run directory.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from convatlas.engine import (
    CheckpointError, Dist, StepInfo, TrainingDiverged, fit, rundir, runtime, setup_distributed, teardown_distributed,
)
from convatlas.engine.checkpoint import load_checkpoint as _read_checkpoint
from convatlas.engine.distributed import broadcast
from convatlas.registry import create_model, model_card
from convatlas.tasks import ClassificationTask, prepare_data
from convatlas.tasks.detection import DetectionTask, prepare_detection_data
from convatlas.tasks.segmentation import SegmentationTask, prepare_segmentation_data
from convatlas.train.config import RESUME_OVERRIDABLE, TrainConfig, load_recipe

__all__ = ["train", "TrainResult", "TrainingDiverged", "StepInfo", "load_checkpoint", "resolve_config"]

DEFAULT_SEGMENTATION_DATA = "digit-scenes"  # what a segmentation network trains on when no data is named
DEFAULT_DATA = {"segmentation": DEFAULT_SEGMENTATION_DATA, "detection": "digit-scenes"}
NO_RECIPE = "none"  # recipe="none": the neutral defaults, even where the card names a recipe


@dataclass
class TrainResult:
    """What :func:`train` returns: the run directory, its summary and metrics, and the model
    (eval mode, on the training device; the EMA weights when EMA was on)."""

    run_dir: Path
    summary: dict[str, Any]
    history: list[dict[str, Any]]
    model: nn.Module = field(repr=False)
    config: TrainConfig = field(repr=False)

    @property
    def test_acc(self) -> float:
        return float(self.summary["test_acc"])


def load_checkpoint(path: str | os.PathLike, *, expect_model: str | None = None) -> dict[str, Any]:
    """Read a run's checkpoint (:func:`convatlas.engine.load_checkpoint`); ``expect_model`` (a
    registered name) checks that it holds that network."""
    payload = _read_checkpoint(path)
    if expect_model is not None and payload["model_name"] != expect_model:
        raise CheckpointError(
            f"checkpoint {path} holds a {payload['model_name']!r} model, not {expect_model!r}; "
            f"resume it without naming a model, or start a new run for {expect_model!r}"
        )
    return payload


def resolve_config(model: str | None = None, recipe: str | os.PathLike | None = None,
                   config: TrainConfig | dict | None = None, **overrides: Any) -> tuple[TrainConfig, str | None]:
    """The configuration a new run would use, and the recipe it came from.

    Defaults < recipe < ``config`` < ``overrides``. With no ``recipe``, the model's card names one
    (``lenet5`` -> ``lenet5_digits``); ``recipe="none"`` keeps the neutral defaults.
    """
    values: dict[str, Any] = {}
    if config is not None:
        values.update(config.to_dict() if isinstance(config, TrainConfig) else dict(config))
    values.update(overrides)
    if model is not None:
        values["model"] = model
    if recipe is None and values.get("model"):
        recipe = model_card(values["model"]).recipe  # unknown model: UnknownModelError with close names
    used = None if recipe is None or str(recipe) == NO_RECIPE else recipe
    merged = {**(load_recipe(used) if used is not None else {}), **values}
    if "data" not in merged and merged.get("model") and model_card(merged["model"]).task in DEFAULT_DATA:
        merged["data"] = DEFAULT_DATA[model_card(merged["model"]).task]
    cfg = TrainConfig.from_dict(merged)
    if not cfg.model:
        raise ValueError("no model given: name one (e.g. train('lenet5'), `convatlas train lenet5`); "
                         "`convatlas list` shows them all")
    return cfg, None if used is None else str(used)


def train(
    model: str | None = None,
    *,
    recipe: str | os.PathLike | None = None,
    config: TrainConfig | dict | None = None,
    out: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    on_step: Callable[[StepInfo], None] | None = None,
    **overrides: Any,
) -> TrainResult:
    """Train a registered network and write a run directory.

    ``train("lenet5")`` trains LeNet-5 on the embedded digits with the recipe its card names.
    Keyword arguments are :class:`TrainConfig` keys (``epochs=5``, ``data="cifar10"``, ``lr=0.1``
    ...); ``recipe`` is a packaged recipe's name or a YAML file of such keys (arguments win over
    it; ``"none"``: the neutral defaults). ``out`` is the run directory (default
    ``runs/<model>-<data>-<time>``); ``resume`` continues the run in that directory from its last
    checkpoint (only ``epochs``, ``iterations`` and display settings may change). Under
    ``torchrun`` each process trains on its share of every batch (DistributedDataParallel) and
    only rank 0 writes.
    """
    start = time.perf_counter()
    checkpoint: dict[str, Any] | None = None
    used_recipe = None
    if resume is not None:
        checkpoint, cfg = _resumable(Path(resume), model, recipe, config, out, overrides)
    else:
        cfg, used_recipe = resolve_config(model, recipe, config, **overrides)
    env = setup_distributed(cfg.device)
    try:
        return _train(cfg, used_recipe, env, out, checkpoint, Path(resume) if resume is not None else None,
                      on_step, start)
    finally:
        teardown_distributed(env)


def _resumable(run_dir: Path, model: str | None, recipe: Any, config: Any, out: Any,
               overrides: dict[str, Any]) -> tuple[dict[str, Any], TrainConfig]:
    """The checkpoint and configuration of a run to continue; nothing but its length may change."""
    if out is not None and Path(out) != run_dir:
        raise ValueError(f"resume={str(run_dir)!r} continues that run in place; do not also give out={str(out)!r}")
    if not (run_dir / rundir.CONFIG).is_file() or not (run_dir / rundir.LAST).is_file():
        raise FileNotFoundError(f"no run to resume in {run_dir}: expected {run_dir / rundir.CONFIG} and "
                                f"{run_dir / rundir.LAST}")
    checkpoint = load_checkpoint(run_dir / rundir.LAST, expect_model=model)
    bad = [k for k in overrides if k not in RESUME_OVERRIDABLE]
    if bad or recipe is not None or config is not None:
        raise ValueError(f"a resumed run keeps its configuration; only {', '.join(RESUME_OVERRIDABLE)} may change "
                         f"(got {', '.join(bad) or 'a recipe/config'})")
    return checkpoint, TrainConfig.from_dict({**checkpoint["config"], **overrides})


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _aux_weight(cfg: TrainConfig) -> float | None:
    card = model_card(cfg.model)
    if cfg.aux_weight is not None and not card.aux_logits:
        raise ValueError(f"aux_weight weighs the losses of auxiliary classifiers, and {card.name} has none; "
                         f"leave it out (networks with them: GoogLeNet's 0.3 is on their cards)")
    return cfg.aux_weight if cfg.aux_weight is not None else card.aux_weight


@dataclass
class _Prepared:
    """A task with its data, and what the run files say about that data."""

    task: Any
    cfg: TrainConfig
    num_classes: int
    classes: list[str]
    facts: dict[str, Any]  # describe()'s data fields: channels, image size, statistics, dataset
    train_count: int
    test_count: int
    shape: str  # "1x32x32", for the opening line
    notes: list[str]


def _prepare_classification(card: Any, cfg: TrainConfig) -> _Prepared:
    if cfg.data_options:
        raise ValueError(f"data_options ({cfg.data_options}) are options of segmentation datasets (digit-scenes); "
                         f"{card.name} is a classification network")
    data = prepare_data(card.name, cfg.variant_args, cfg.data, root=cfg.data_root, image_size=cfg.image_size,
                        fit=cfg.fit, num_classes=cfg.num_classes, download=cfg.download)
    splits, num_classes, image_size = data.splits, data.splits.num_classes, data.image_size
    cfg = cfg.replace(model=card.name, num_classes=num_classes, fit=data.fit,
                      image_size=image_size if splits.image_size[0] == splits.image_size[1] else cfg.image_size)
    task = ClassificationTask(data, cfg.augment, label_smoothing=cfg.label_smoothing, aux_weight=_aux_weight(cfg))
    facts = {"in_channels": data.channels, "data_channels": splits.in_channels, "image_size": image_size,
             "fit": data.fit, "mean": list(data.mean), "std": list(data.std), "dataset": splits.name}
    return _Prepared(task, cfg, num_classes, list(splits.classes), facts, len(splits.train), len(splits.test),
                     f"{data.channels}x{image_size}x{image_size}", data.notes)


def _prepare_segmentation(card: Any, cfg: TrainConfig) -> _Prepared:
    data = prepare_segmentation_data(card.name, cfg.variant_args, cfg.data, root=cfg.data_root,
                                     image_size=cfg.image_size, num_classes=cfg.num_classes, download=cfg.download,
                                     options=cfg.data_options)
    splits = data.splits
    num_classes = len(splits.classes)
    h, w = data.image_size
    cfg = cfg.replace(model=card.name, num_classes=num_classes, image_size=h if h == w else cfg.image_size)
    task = SegmentationTask(data, cfg.segment_augment, class_weights=cfg.class_weights, aux_weight=_aux_weight(cfg))
    facts = {"in_channels": data.channels, "data_channels": int(splits.train.images.shape[1]), "image_size": h,
             "image_shape": [h, w], "mean": list(data.mean), "std": list(data.std), "dataset": splits.name,
             "ignore_index": splits.ignore_index}
    return _Prepared(task, cfg, num_classes, list(splits.classes), facts, len(splits.train.images),
                     len(splits.test.images), f"{data.channels}x{h}x{w}", data.notes)


def _prepare_detection(card: Any, cfg: TrainConfig) -> _Prepared:
    if cfg.class_weights is not None or cfg.aux_weight is not None:
        raise ValueError(f"class_weights and aux_weight are segmentation/classification settings; {card.name} is a "
                         f"detector and weighs its own loss terms")
    data = prepare_detection_data(card.name, cfg.data, image_size=cfg.image_size, num_classes=cfg.num_classes,
                                  options=cfg.data_options, root=cfg.data_root)
    splits = data.splits
    h, w = data.image_size
    cfg = cfg.replace(model=card.name, num_classes=len(splits.classes), image_size=h if h == w else cfg.image_size)
    task = DetectionTask(data, cfg.segment_augment, masks=bool(card.extra.get("masks")))
    facts = {"in_channels": data.channels, "data_channels": int(splits.train.images.shape[1]), "image_size": h,
             "image_shape": [h, w], "mean": list(data.mean), "std": list(data.std), "dataset": splits.name}
    return _Prepared(task, cfg, len(splits.classes), list(splits.classes), facts, len(splits.train),
                     len(splits.test), f"{data.channels}x{h}x{w}", data.notes)


_PREPARE = {"classification": _prepare_classification, "segmentation": _prepare_segmentation,
            "detection": _prepare_detection}


def _train(cfg: TrainConfig, used_recipe: str | None, env: Dist, out: Any, checkpoint: dict[str, Any] | None,
           resume_dir: Path | None, on_step: Callable[[StepInfo], None] | None, start: float) -> TrainResult:
    rt = runtime(cfg, env)
    # --- everything a user can get wrong is checked before anything is written
    card = model_card(cfg.model)
    if card.task not in _PREPARE:
        raise NotImplementedError(f"{card.name} is a {card.task} network; training {card.task} networks is not "
                                  f"built yet (tasks: {', '.join(_PREPARE)})")
    prep = _PREPARE[card.task](card, cfg)
    cfg, task, num_classes = prep.cfg, prep.task, prep.num_classes
    if checkpoint is not None and (checkpoint["num_classes"] != num_classes or
                                   list(checkpoint["classes"]) != prep.classes):
        raise CheckpointError(f"the checkpoint's classes ({checkpoint['num_classes']}) do not match the dataset's "
                              f"({num_classes}); was the dataset changed?")
    _seed_everything(cfg.seed)
    net = create_model(cfg.model, num_classes=num_classes, **cfg.variant_args)
    if checkpoint is not None:
        try:
            net.load_state_dict(checkpoint["model"])
        except RuntimeError as exc:
            raise CheckpointError(f"the checkpoint's weights do not fit {cfg.model}: {str(exc).splitlines()[0]}") from exc
    torch.manual_seed(cfg.seed * 65537 + env.rank + 1)  # dropout etc.: its own stream per rank
    params = sum(p.numel() for p in net.parameters())

    run_dir = resume_dir or Path(broadcast(str(rundir.new_run_dir(out, cfg.model, cfg.data)) if env.main else None, env))
    dataset = prep.facts["dataset"]
    describe = {"task": task.name, "model_name": cfg.model, "variant_args": dict(cfg.variant_args),
                "num_classes": num_classes, **prep.facts, "classes": prep.classes, "config": cfg.to_dict()}
    derived = {k: describe[k] for k in ("task", "classes", "in_channels", "data_channels", "mean", "std", "dataset")}
    derived.update(recipe=used_recipe if resume_dir is None else (checkpoint.get("recipe") if checkpoint else None),
                   params=params, train_images=prep.train_count, test_images=prep.test_count,
                   world_size=env.world_size, device=str(rt.device), amp_bf16=rt.amp, channels_last=rt.channels_last,
                   torch=str(torch.__version__), notes=prep.notes)
    describe["recipe"] = derived["recipe"]
    head = {"task": task.name, "model": cfg.model, "variant_args": dict(cfg.variant_args), "dataset": dataset,
            "num_classes": num_classes, "image_size": prep.facts["image_size"], "params": params,
            "recipe": derived["recipe"]}
    intro = [f"note: {note}" for note in prep.notes]
    intro.append(f"training {cfg.model} ({params:,} parameters) on {dataset} ({prep.train_count} train / "
                 f"{prep.test_count} test, {prep.shape})"
                 + (f" with recipe {derived['recipe']}" if derived["recipe"] else ""))
    result = fit(net, task, cfg.loop_config(), run_dir, env, rt, describe=describe, summary_head=head,
                 record={**cfg.to_dict(), "derived": derived}, title=f"{cfg.model} on {dataset}",
                 intro=tuple(intro), checkpoint=checkpoint, on_step=on_step, start=start)
    return TrainResult(result.run_dir, result.summary, result.history, result.model, cfg)
