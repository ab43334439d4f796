"""Checkpoint files: everything needed to continue a run exactly, written atomically.

A checkpoint is a plain dict saved with ``torch.save`` and read back with
``torch.load(weights_only=True)`` (tensors, numbers, strings, lists, dicts only). The loop writes
its own state - ``epoch`` (completed epochs), ``step_in_epoch`` (steps done in the next one,
non-zero only after Ctrl-C), ``global_step``, ``model``, ``ema`` (or None), ``optimizer``, ``rng``
(every rank's torch generators and the task's augmentation state), ``history`` (metrics rows),
``partial`` (the running sums of an unfinished epoch), ``best``, ``train_seconds`` and
``threads`` - next to whatever the caller passes to describe what was trained (the front door:
the model's name and variant, classes, input size, normalisation, the resolved configuration).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from convatlas._io import atomic_save

__all__ = ["CheckpointError", "FORMAT", "READABLE_FORMATS", "save_checkpoint", "load_checkpoint"]

FORMAT = "convatlas-checkpoint-v2"
# v1 (before the loop knew no task) holds the same description and weights: readable, not resumable.
READABLE_FORMATS = ("convatlas-checkpoint-v1", FORMAT)


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated, corrupt, or of another model."""


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically (temp file in the same folder, then rename)."""
    payload = {"format": FORMAT, **payload}
    atomic_save(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint on the CPU; a truncated or foreign file raises :class:`CheckpointError`."""
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
    if not isinstance(payload, dict) or payload.get("format") not in READABLE_FORMATS:
        raise CheckpointError(f"{path} is not a convatlas checkpoint (expected format {FORMAT!r})")
    return payload
