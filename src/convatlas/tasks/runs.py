"""A finished run, ready to use: :func:`load_run` rebuilds its network from a checkpoint.

``load_run(run_dir)`` rebuilds the network with :func:`convatlas.create_model` from the run's
checkpoint and returns it in eval mode with everything needed to feed it: class names, input
size and channels, normalisation constants and a ``preprocess`` function. (``convatlas.train``
re-exports it; it lives here, below the rooms that look inside runs.)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from convatlas.data import resize_images
from convatlas.data.augment import adapt_channels, normalize, to_float
from convatlas.engine import rundir
from convatlas.engine.checkpoint import CheckpointError, load_checkpoint
from convatlas.registry import create_model

__all__ = ["LoadedRun", "load_run"]


@dataclass
class LoadedRun:
    """A trained network and what it needs: ``model`` (eval mode, CPU unless asked), ``config``
    (the run's config.yaml), ``classes``, ``in_channels`` (what the model takes), ``image_size``,
    ``mean``/``std`` (per model channel, fractions of 255), ``dataset_name``, ``task`` (what the
    network does) and, for segmentation, the masks' ``ignore_index``."""

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
    task: str = "classification"
    ignore_index: int | None = None  # segmentation: the mask value that marks unlabelled pixels

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
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    return LoadedRun(
        run_dir=run_dir, model=model, config=config, classes=list(ckpt["classes"]),
        in_channels=int(ckpt["in_channels"]), image_size=int(ckpt["image_size"]),
        mean=tuple(ckpt["mean"]), std=tuple(ckpt["std"]), dataset_name=str(ckpt["dataset"]),
        checkpoint=path, epoch=int(ckpt["epoch"]), fit=str(ckpt.get("fit", "resize")), summary=summary,
        task=str(ckpt.get("task", "classification")), ignore_index=ckpt.get("ignore_index"),
    )
