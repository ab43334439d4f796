"""What the loop asks of a task - and all it knows of one.

A task (classification, segmentation, detection; :mod:`convatlas.tasks`) holds its data in
memory on the training device and turns a batch of example indices into a dict of losses; it
evaluates a model into a dict of metrics and names the one that chooses the best checkpoint.
The loop (:func:`convatlas.engine.fit`) does the rest - optimiser, schedule, averaging,
clipping, several processes, threads, Ctrl-C, NaN, checkpoints, run files - the same way for
every task.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from convatlas.engine.device import Runtime
from convatlas.engine.distributed import Dist

__all__ = ["Task", "StepOutput"]


@dataclass
class StepOutput:
    """What one training step of a task computed.

    ``losses``: scalar means over the batch; ``"loss"`` is the one that is backpropagated, every
    other entry a term of it (logged per term as ``train_<name>``). ``counts``: scalar sums over
    the batch (the number of correct predictions, ...) that :meth:`Task.train_metrics` turns into
    the epoch's training metrics.
    """

    losses: dict[str, torch.Tensor]
    counts: dict[str, torch.Tensor] = field(default_factory=dict)


class Task(ABC):
    """The loop's view of a task. Subclasses set the class attributes and the methods below."""

    name: str = "task"
    metric_names: tuple[str, ...] = ("loss",)  # what evaluate() returns, in column order
    primary: str = "loss"  # the metric that picks best.pt
    higher_is_better: bool = False
    percent: tuple[str, ...] = ()  # metrics that are fractions, shown as percentages
    metric_label: str = "loss"  # the primary metric, in words, for charts

    @property
    @abstractmethod
    def num_train(self) -> int:
        """Examples in the training split (the loop draws index batches from 0..num_train-1)."""

    @abstractmethod
    def setup(self, runtime: Runtime, env: Dist, seed: int) -> None:
        """Move the data to ``runtime.device`` and seed this rank's augmentation from ``seed``."""

    @abstractmethod
    def train_batch(self, indices: torch.Tensor) -> Any:
        """The augmented training batch of these example indices (on the device)."""

    @abstractmethod
    def training_step(self, model: nn.Module, batch: Any) -> StepOutput:
        """Forward ``batch`` through ``model`` (in train mode) and compute the losses."""

    def train_metrics(self, counts: dict[str, float], seen: int) -> dict[str, float]:
        """The epoch's training metrics from the summed ``counts`` of ``seen`` examples."""
        return {}

    @abstractmethod
    def evaluate(self, model: nn.Module, env: Dist, batch_size: int, amp: bool) -> dict[str, float]:
        """The metrics of ``model`` (eval mode) on the test split, added up over the ranks."""

    def details(self) -> dict[str, Any]:
        """What the last :meth:`evaluate` found beyond its metrics (per-class scores...), for
        ``summary.json`` as ``test_<name>``; plain JSON values."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Random state of this rank's augmentation (saved in checkpoints)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def better(self, value: float, best: float | None) -> bool:
        return best is None or (value > best if self.higher_is_better else value < best)
