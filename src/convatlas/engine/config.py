"""What the loop needs to know, and nothing about the task: :class:`LoopConfig`.

Lengths (``epochs``, ``warmup``, ``milestones``) are in epochs, or in iterations when
``iterations`` is set (as the ResNet paper gives them). The defaults are neutral - plain SGD with
Nesterov momentum on a one-cycle schedule, no clipping, no EMA - so that a recipe states what its
paper (or its tuning) changed. Task and data settings live with the front door's configuration,
which extends this one (:class:`convatlas.train.TrainConfig`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from convatlas._checks import non_negative, one_of, positive_int, positive_number

__all__ = ["LoopConfig", "OPTIMIZERS", "SCHEDULES", "option"]

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("step", "cosine", "onecycle", "constant")


def option(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with its ``--help`` text (and ``choices``) in the metadata."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class LoopConfig:
    """Everything the task-agnostic loop decides: length, optimiser, schedule, averaging,
    clipping, evaluation cadence, seed and runtime."""

    # how long
    epochs: float = option(30, "training epochs (ignored when iterations is set)")
    iterations: int | None = option(None, "training iterations (steps); overrides epochs")
    batch_size: int = option(64, "global batch size (split across distributed processes)")
    eval_batch_size: int = option(1000, "batch size for evaluation")
    eval_every: int = option(1, "evaluate on the test split every this many epochs (and at the end)")
    # optimiser
    optimizer: str = option("sgd", "sgd or adamw", choices=OPTIMIZERS)
    lr: float = option(0.1, "peak learning rate")
    momentum: float = option(0.9, "SGD momentum")
    nesterov: bool = option(True, "Nesterov momentum (SGD)")
    betas: list = option([0.9, 0.999], "AdamW betas")
    weight_decay: float = option(5e-4, "L2 weight decay (decoupled for AdamW)")
    decay_norm_and_bias: bool = option(True, "apply weight decay to normalisation weights and biases too")
    # schedule
    schedule: str = option("onecycle", "step, cosine, onecycle or constant", choices=SCHEDULES)
    milestones: list = option([], "step schedule: multiply the lr by gamma at these points")
    gamma: float = option(0.1, "step schedule factor")
    warmup: float = option(0.0, "linear warm-up length from 0 (step/cosine/constant)")
    min_lr: float = option(0.0, "cosine: final learning rate")
    onecycle_pct: float = option(0.25, "one-cycle: fraction of training spent rising to the peak")
    # averaging and clipping
    ema_decay: float | None = option(None, "keep an exponential moving average of the weights with this decay (evaluated instead)")
    clip_grad_norm: float | None = option(None, "clip the gradient norm to this value (0 or none: no clipping)")
    # runtime
    seed: int = option(0, "random seed (weights, data order, augmentation)")
    device: str = option("auto", "cpu, cuda, cuda:N or auto")
    amp: bool | None = option(None, "bf16 autocast (default: on for CUDA)")
    channels_last: bool | None = option(None, "channels_last memory format (default: on for CUDA)")
    compile: bool = option(False, "torch.compile the model")
    deterministic: bool = option(False, "deterministic algorithms (slower on GPU)")
    threads: int | None = option(None, "CPU threads for torch (default: the fastest count, timed on the first steps)")
    quiet: bool = option(False, "log lines instead of a progress bar")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` for a value outside its range, naming the key and what is expected."""
        one_of("optimizer", self.optimizer, OPTIMIZERS)
        one_of("schedule", self.schedule, SCHEDULES)
        positive_number("epochs", self.epochs)
        if self.iterations is not None:
            positive_int("iterations", self.iterations)
        for name in ("batch_size", "eval_batch_size", "eval_every"):
            positive_int(name, getattr(self, name))
        if self.threads is not None:
            positive_int("threads", self.threads)
        positive_number("lr", self.lr)
        for name in ("weight_decay", "warmup", "min_lr", "momentum"):
            non_negative(name, getattr(self, name))
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in (0, 1), got {self.ema_decay}")
        if self.clip_grad_norm is not None and (isinstance(self.clip_grad_norm, bool) or self.clip_grad_norm < 0):
            raise ValueError(f"clip_grad_norm must be a positive number, or 0 / none for no clipping, "
                             f"got {self.clip_grad_norm!r}")
        if sorted(self.milestones) != list(self.milestones):
            raise ValueError(f"milestones must be increasing, got {self.milestones}")

    def loop_config(self) -> "LoopConfig":
        """The loop's own settings (for a configuration that extends this one)."""
        names = [f.name for f in dataclasses.fields(LoopConfig)]
        return LoopConfig(**{name: getattr(self, name) for name in names})
