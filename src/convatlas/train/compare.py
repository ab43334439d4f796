"""Train several networks on the same data and compare them: :func:`compare_models`.

Every network gets its own run directory under ``out``; a finished run (``summary.json`` with the
same settings) is reused, an interrupted one (``checkpoints/last.pt``) is resumed, so re-running a
comparison only trains what is missing. The measuring and charting of the finished runs is
:func:`convatlas.compare.compare_runs`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from convatlas._io import atomic_write_text
from convatlas.compare.runs import Comparison, compare_runs
from convatlas.registry import model_card
from convatlas.train.config import RESUME_OVERRIDABLE, check_keys
from convatlas.train.trainer import DEFAULT_DATA, train

__all__ = ["compare_models", "parse_spec"]


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"unet_mini:upsample=nearest,depth=3"`` -> ``("unet_mini", {"upsample": "nearest", "depth": 3})``:
    a registered network and the builder arguments of a variant of it (values read as YAML)."""
    import yaml

    name, colon, rest = spec.partition(":")
    model_card(name)  # unknown names fail here, before any training
    variant: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"{spec!r}: a variant is NAME:key=value[,key=value...]; {item!r} has no key=value")
        variant[key.strip()] = yaml.safe_load(value)
    if colon and not variant:
        raise ValueError(f"{spec!r}: nothing after ':' (expected NAME:key=value[,key=value...])")
    return name, variant


def _run_folder(spec: str) -> str:
    """A run directory's name for a network spec: ``unet_mini:upsample=nearest`` -> ``unet_mini-upsample-nearest``."""
    return "".join(c if c.isalnum() or c in "._" else "-" for c in spec)


def _settings(name: str, data: str, epochs: float | None, recipe: str | None, image_size: int | None, seed: int,
              extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    settings = {"model": name, "data": data, "epochs": epochs, "recipe": recipe, "image_size": image_size, "seed": seed}
    if extra:  # only when given, so that runs cached before train_args existed keep their settings
        settings["train_args"] = dict(extra)
    return settings


def _settings_digest(settings: dict[str, Any]) -> str:
    """Eight hex digits naming a run of other settings; the same in every process (unlike
    ``hash()``, which Python salts per process), so a later comparison finds the run again."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]


def _finished(run_dir: Path, settings: dict[str, Any]) -> bool:
    marker = run_dir / "compare_settings.json"
    return (run_dir / "summary.json").is_file() and marker.is_file() and json.loads(marker.read_text()) == settings


def compare_models(
    models: Sequence[str], *, data: str | None = None, epochs: int | None = None, recipe: str | None = None,
    image_size: int | None = None, out: str | Path = "runs/compare", seed: int = 0, quiet: bool = True,
    latency_batch: int = 32, train_args: Mapping[str, Mapping[str, Any]] | None = None, threads: int | None = None,
) -> Comparison:
    """Train (or reuse) each network on ``data`` and chart its score vs MACs vs params, and vs latency.

    ``models`` are registered names, or variants written ``NAME:key=value[,key=value]`` (builder
    arguments, e.g. ``unet_mini:upsample=nearest``, ``faster_rcnn_mini:roi_pool=pool``; each spec is
    one row and one run). All must be of one task: classification networks are scored by test
    top-1, segmentation networks by test mIoU, detectors by test COCO mAP@[.5:.95] (with mAP@0.5
    and AP75 beside it, and MACs counted on a real forward pass on a test scene, proposals
    included: see :func:`convatlas.compare.runs.compare_runs`). ``data`` defaults to the task's:
    the embedded ``digits`` for classification, ``digit-scenes`` for segmentation and detection.

    ``epochs`` and ``recipe`` apply to every network. ``train_args`` gives some networks their own
    trainer arguments (:class:`~convatlas.train.TrainConfig` keys), which win over those:
    ``{"lenet5": {"epochs": 8}, "alexnet_mini": {"epochs": 6, "lr": 0.02}}``. They are part of the
    settings a cached run must match to be reused. ``threads`` fixes the training thread count
    (default: each run times the candidates on its first steps).
    """
    if not models:
        raise ValueError("give at least one network to compare")
    specs = {spec: parse_spec(spec) for spec in models}
    if len(specs) < len(models):
        raise ValueError(f"a network is named twice in {', '.join(models)}")
    tasks = {spec: model_card(name).task for spec, (name, _) in specs.items()}
    if len(set(tasks.values())) > 1:
        raise ValueError("a comparison covers one task, scored one way (classification: test top-1, segmentation: "
                         "test mIoU, detection: test COCO mAP); got " + ", ".join(f"{k} ({v})" for k, v in tasks.items())
                         + " - compare each task's networks separately")
    task = next(iter(tasks.values()))
    if data is None:  # the task's embedded default, the one the trainer would pick
        data = DEFAULT_DATA.get(task, "digits")
    train_args = {name: dict(args) for name, args in (train_args or {}).items()}
    stray = sorted(set(train_args) - set(models))
    if stray:
        raise ValueError(f"train_args names {', '.join(stray)}, which are not among the networks compared "
                         f"({', '.join(models)})")
    for name, args in train_args.items():
        check_keys(args, where=f"train_args[{name!r}]")
        shared = sorted({"model", "data"} & set(args))
        if shared:
            raise ValueError(f"train_args[{name!r}] sets {', '.join(shared)}, which every network of a comparison "
                             f"shares; pass data= to compare_models")
    out = Path(out)
    runs = []
    for spec in models:
        name, variant = specs[spec]
        run_dir = out / _run_folder(spec)
        extra = dict(train_args.get(spec, {}))
        if variant:
            if "variant_args" in extra:
                raise ValueError(f"{spec!r} gives builder arguments twice: in the name and in train_args' variant_args")
            extra["variant_args"] = variant
        model_epochs = extra.pop("epochs", epochs)
        settings = _settings(name, data, model_epochs, recipe, image_size, seed, extra)
        reused = _finished(run_dir, settings)
        if not reused:
            resume = (run_dir / "checkpoints" / "last.pt").is_file() and (run_dir / "compare_settings.json").is_file() \
                and json.loads((run_dir / "compare_settings.json").read_text()) == settings
            if not resume and run_dir.exists() and any(run_dir.iterdir()):
                # A run of other settings: keep it, train beside it.
                run_dir = out / f"{_run_folder(spec)}-{_settings_digest(settings)}"
                reused = _finished(run_dir, settings)
                resume = not reused and (run_dir / "checkpoints" / "last.pt").is_file()
        if not reused:
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(run_dir / "compare_settings.json", json.dumps(settings, sort_keys=True))
            kwargs: dict[str, Any] = {"data": data, "out": run_dir, "seed": seed, "quiet": quiet}
            if threads is not None:
                kwargs["threads"] = threads
            if recipe is not None:
                kwargs["recipe"] = recipe
            if image_size is not None:
                kwargs["image_size"] = image_size
            kwargs.update(extra)
            if model_epochs is not None:
                kwargs["epochs"] = model_epochs
            if resume:  # the run keeps its configuration; only the length and the display may be given
                kwargs = {k: v for k, v in kwargs.items() if k in RESUME_OVERRIDABLE}
                kwargs["resume"] = run_dir
            train(name, **kwargs)
        runs.append((spec, run_dir, reused))
    return compare_runs(runs, out, data=data, latency_batch=latency_batch)
