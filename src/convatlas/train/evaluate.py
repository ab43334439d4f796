"""Using a finished run: ``load_run``, ``evaluate`` and ``predict``.

``load_run(run_dir)`` rebuilds the network with :func:`convatlas.create_model` from the run's
checkpoint and returns it in eval mode with everything needed to feed it: class names, input
size and channels, normalisation constants and a ``preprocess`` function. ``evaluate`` measures
top-1, top-5, per-class accuracy and the confusion matrix on the run's test split;
``predict`` gives the top-k classes of image files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from convatlas.data import BatchPipeline, load_dataset, resize_images
from convatlas.data.augment import adapt_channels, normalize, to_float
from convatlas.data.formats import read_image
from convatlas.registry import create_model
from convatlas.train import rundir
from convatlas.train.checkpoint import CheckpointError, load_checkpoint
from convatlas.train.trainer import evaluate_arrays

__all__ = ["LoadedRun", "load_run", "EvalReport", "evaluate", "Prediction", "predict", "plot_confusion"]


@dataclass
class LoadedRun:
    """A trained network and what it needs: ``model`` (eval mode, CPU unless asked), ``config``
    (the run's config.yaml), ``classes``, ``in_channels`` (what the model takes), ``image_size``,
    ``mean``/``std`` (per model channel, fractions of 255), ``dataset_name``."""

    run_dir: Path
    model: nn.Module = field(repr=False)
    config: dict[str, Any] = field(repr=False)
    classes: list[str]
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    dataset_name: str
    checkpoint: Path
    epoch: int
    fit: str = "resize"
    summary: dict[str, Any] = field(default_factory=dict, repr=False)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(N, C, H, W)`` (grey or RGB, any size) -> normalised float input for the model:
        brought to ``image_size`` as in training (``fit``: resize the short side and centre-crop,
        or pad), channels adapted, ``(x - mean) / std``."""
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"preprocess takes uint8 images (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if tuple(images.shape[-2:]) != (self.image_size, self.image_size):
            images = resize_images(images.cpu(), self.image_size, self.fit)
        x = adapt_channels(to_float(images), self.in_channels)
        device = next(self.model.parameters(), torch.empty(0)).device
        return normalize(x, self.mean, self.std).to(device)


def _checkpoint_path(run_dir: Path, which: str) -> Path:
    if which in ("best", "last"):
        path = run_dir / (rundir.BEST if which == "best" else rundir.LAST)
        if which == "best" and not path.is_file() and (run_dir / rundir.LAST).is_file():
            path = run_dir / rundir.LAST  # no epoch was evaluated: the last state is all there is
        return path
    return Path(which)


def load_run(run_dir: str | os.PathLike, which: str = "best", *, device: str | torch.device = "cpu") -> LoadedRun:
    """Rebuild a run's network from ``checkpoints/<which>.pt`` (``"best"``, ``"last"`` or a path).

    The EMA weights are used when the run kept them (they are what was evaluated).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    path = _checkpoint_path(run_dir, which)
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} holds no checkpoint {path.name} (expected {path}); is it a convatlas run?")
    ckpt = load_checkpoint(path)
    config_path = run_dir / rundir.CONFIG
    config = rundir.read_yaml(config_path) if config_path.is_file() else dict(ckpt["config"])
    model = create_model(ckpt["model_name"], num_classes=ckpt["num_classes"], **ckpt["variant_args"])
    weights = ckpt["ema"] if ckpt.get("ema") is not None else ckpt["model"]
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit {ckpt['model_name']}: {str(exc).splitlines()[0]}") from exc
    model.to(device).eval()
    summary_path = run_dir / rundir.SUMMARY
    summary = {}
    if summary_path.is_file():
        import json

        summary = json.loads(summary_path.read_text())
    return LoadedRun(
        run_dir=run_dir, model=model, config=config, classes=list(ckpt["classes"]),
        in_channels=int(ckpt["in_channels"]), image_size=int(ckpt["image_size"]),
        mean=tuple(ckpt["mean"]), std=tuple(ckpt["std"]), dataset_name=str(ckpt["dataset"]),
        checkpoint=path, epoch=int(ckpt["epoch"]), fit=str(ckpt.get("fit", "resize")), summary=summary,
    )


@dataclass
class EvalReport:
    """Accuracy of a network on a test split (fractions), per class, and the confusion matrix
    (rows: true class, columns: predicted)."""

    top1: float
    top5: float
    loss: float
    count: int
    classes: list[str]
    per_class: dict[str, float]
    confusion: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"top1": self.top1, "top5": self.top5, "loss": self.loss, "count": self.count,
                "per_class": self.per_class, "confusion": self.confusion.tolist(), "classes": self.classes}


def evaluate(run: str | os.PathLike | LoadedRun, *, which: str = "best", data: str | None = None,
             data_root: str | None = None, batch_size: int = 500, device: str | torch.device = "cpu") -> EvalReport:
    """Top-1/top-5, per-class accuracy and confusion matrix of a run on its test split
    (or on the test split of ``data``, which must have the same classes)."""
    loaded = run if isinstance(run, LoadedRun) else load_run(run, which, device=device)
    config = loaded.config
    splits = load_dataset(data or config["data"], root=data_root if data else config.get("data_root"),
                          image_size=loaded.image_size, download=bool(config.get("download", True)), fit=loaded.fit)
    if list(splits.classes) != list(loaded.classes):
        raise ValueError(f"dataset {splits.name!r} has classes {splits.classes[:5]}..., the run was trained on "
                         f"{loaded.classes[:5]}...; evaluate on data with the same classes")
    pipeline = BatchPipeline(mean=loaded.mean, std=loaded.std, channels=loaded.in_channels,
                             num_classes=len(loaded.classes), device=next(loaded.model.parameters()).device)
    result = evaluate_arrays(loaded.model, pipeline, splits.test.images, splits.test.labels, len(loaded.classes),
                             batch_size=batch_size)
    confusion = result["confusion"].numpy()
    totals = confusion.sum(axis=1)
    per_class = {name: (float(confusion[i, i] / totals[i]) if totals[i] else float("nan"))
                 for i, name in enumerate(loaded.classes)}
    return EvalReport(result["acc"], result["top5"], result["loss"], result["count"], list(loaded.classes),
                      per_class, confusion)


def plot_confusion(report: EvalReport, path: str | os.PathLike, title: str = "") -> Path:
    """The confusion matrix as a PNG (counts written in the cells for up to 20 classes)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    n = len(report.classes)
    side = min(4 + 0.45 * n, 30)
    fig = Figure(figsize=(side, side), dpi=100)
    ax = fig.subplots()
    image = ax.imshow(report.confusion, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if n <= 50:
        ax.set_xticks(range(n), report.classes, rotation=90 if n > 10 else 0)
        ax.set_yticks(range(n), report.classes)
    if n <= 20:
        high = report.confusion.max() / 2 if report.confusion.size else 0
        for i in range(n):
            for j in range(n):
                value = int(report.confusion[i, j])
                if value:
                    ax.text(j, i, str(value), ha="center", va="center", fontsize=8,
                            color="white" if value > high else "black")
    ax.set(xlabel="predicted class", ylabel="true class",
           title=title or f"confusion matrix: top-1 {report.top1:.2%}, top-5 {report.top5:.2%}")
    fig.tight_layout()
    path = Path(path)
    rundir.atomic_write(path, lambda f: fig.savefig(f, format="png"), binary=True)
    return path


@dataclass
class Prediction:
    """The top-k classes of one image, most probable first."""

    source: str
    classes: list[str]
    probabilities: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.source, "top": [{"class": c, "probability": p}
                                              for c, p in zip(self.classes, self.probabilities)]}


@torch.no_grad()
def predict(run: str | os.PathLike | LoadedRun, images: Sequence[str | os.PathLike] | torch.Tensor, *, topk: int = 5,
            which: str = "best", device: str | torch.device = "cpu") -> list[Prediction]:
    """Top-``topk`` classes with probabilities for image files (or a uint8 (N, C, H, W) tensor).

    Files are read in the model's channels (grey or RGB), brought to the run's image size as in
    training (resized and centre-cropped, or padded) and normalised as in training.
    """
    loaded = run if isinstance(run, LoadedRun) else load_run(run, which, device=device)
    if isinstance(images, torch.Tensor):
        batch, names = images, [f"image[{i}]" for i in range(len(images))]
    else:
        if not images:
            raise ValueError("predict needs at least one image")
        arrays, names = [], []
        for item in images:
            path = Path(item)
            if not path.is_file():
                raise FileNotFoundError(f"image {path} does not exist")
            array = torch.from_numpy(read_image(path, 1 if loaded.in_channels == 1 else 3))
            arrays.append(resize_images(array[None], loaded.image_size, loaded.fit)[0])
            names.append(str(path))
        batch = torch.stack(arrays)
    k = max(1, min(topk, len(loaded.classes)))
    logits = loaded.model(loaded.preprocess(batch))
    probs = F.softmax(logits.float(), dim=1)
    top = probs.topk(k, dim=1)
    return [
        Prediction(name, [loaded.classes[i] for i in idx.tolist()], [round(float(p), 6) for p in val])
        for name, idx, val in zip(names, top.indices, top.values)
    ]
