"""Checkpoint files: everything needed to continue a run exactly, written atomically.

A checkpoint is a plain dict saved with ``torch.save`` and read back with
``torch.load(weights_only=True)`` (tensors, numbers, strings, lists, dicts only):

* what was trained: ``model_name``, ``variant_args``, ``num_classes``, ``in_channels`` (the
  model's), ``image_size``, ``classes``, ``mean``/``std`` (per model channel), ``dataset``,
  ``config`` (the resolved TrainConfig);
* where: ``epoch`` (completed epochs), ``step_in_epoch`` (steps done in the next one, non-zero
  only after Ctrl-C), ``global_step``;
* state: ``model``, ``ema`` (or None), ``optimizer``, ``rng`` (torch's global generators and
  every rank's augmentation generators), ``history`` (metrics rows), ``partial`` (the running
  sums of an unfinished epoch), ``best``, ``train_seconds``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from convatlas.train.rundir import atomic_write

__all__ = ["CheckpointError", "FORMAT", "save_checkpoint", "load_checkpoint"]

FORMAT = "convatlas-checkpoint-v1"


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated, corrupt, or of another model."""


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically (temp file in the same folder, then rename)."""
    payload = {"format": FORMAT, **payload}
    atomic_write(Path(path), lambda f: torch.save(payload, f), binary=True)


def load_checkpoint(path: str | os.PathLike, *, expect_model: str | None = None) -> dict[str, Any]:
    """Read a checkpoint on the CPU; a truncated or foreign file raises :class:`CheckpointError`.

    ``expect_model`` (a registered name) checks that the checkpoint holds that network.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - zip, pickle and EOF errors all mean a bad file
        size = path.stat().st_size
        raise CheckpointError(
            f"checkpoint {path} ({size:,} bytes) is truncated or corrupt and cannot be read "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). Nothing was changed."
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a convatlas checkpoint (expected format {FORMAT!r})")
    if expect_model is not None and payload["model_name"] != expect_model:
        raise CheckpointError(
            f"checkpoint {path} holds a {payload['model_name']!r} model, not {expect_model!r}; "
            f"resume it without naming a model, or start a new run for {expect_model!r}"
        )
    return payload
