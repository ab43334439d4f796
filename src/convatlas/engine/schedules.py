"""Learning-rate schedules as pure functions of the step, so a resumed run needs no schedule state.

``lr(t)`` for step ``t`` of ``T`` total steps, peak rate ``lr0``:

* **step** - ``lr0 * gamma ** (number of milestones <= t)``: the papers' schedule (AlexNet,
  VGG, ResNet: divide by 10 at fixed points; He et al. 2015 CIFAR: at 32k and 48k of 64k
  iterations).
* **cosine** - ``min_lr + (lr0 - min_lr) * (1 + cos(pi t / T)) / 2`` (Loshchilov & Hutter 2016,
  SGDR, arXiv:1608.03983, without restarts).
* **onecycle** - rise from ``lr0 / 25`` to ``lr0`` over the first ``pct`` of training, then fall
  to ``lr0 / 25 / 1e4``, both halves cosine-shaped (Smith & Topin 2017, arXiv:1708.07120; the shape
  of ``torch.optim.lr_scheduler.OneCycleLR``).
* **constant** - ``lr0``.

``warmup`` steps of linear warm-up from 0 multiply step, cosine and constant schedules
(Goyal et al. 2017, arXiv:1706.02677). One-cycle has its own warm-up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["Schedule"]


@dataclass(frozen=True)
class Schedule:
    """``Schedule(kind, lr, total_steps, ...)(step) -> learning rate``; all lengths in steps."""

    kind: str
    lr: float
    total_steps: int
    milestones: tuple[int, ...] = field(default_factory=tuple)
    gamma: float = 0.1
    warmup_steps: int = 0
    min_lr: float = 0.0
    pct: float = 0.25

    def __post_init__(self) -> None:
        if self.kind not in ("step", "cosine", "onecycle", "constant"):
            raise ValueError(f"unknown schedule {self.kind!r}; use step, cosine, onecycle or constant")
        if self.total_steps < 1:
            raise ValueError(f"a schedule needs at least one step, got total_steps={self.total_steps}")
        if self.kind == "onecycle" and not 0 < self.pct < 1:
            raise ValueError(f"one-cycle's rise is a fraction of the run, 0 < pct < 1; got pct={self.pct}")

    def __call__(self, step: int) -> float:
        if self.kind == "onecycle":
            return self._onecycle(step)
        if self.kind == "step":
            lr = self.lr * self.gamma ** sum(step >= m for m in self.milestones)
        elif self.kind == "cosine":
            progress = min(step / self.total_steps, 1.0)
            lr = self.min_lr + (self.lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
        else:
            lr = self.lr
        if self.warmup_steps and step < self.warmup_steps:
            lr *= (step + 1) / self.warmup_steps
        return lr

    def _onecycle(self, step: int) -> float:
        # phase ends as in torch.optim.lr_scheduler.OneCycleLR: the peak at step pct*T - 1, the
        # floor at step T - 1
        start, peak = self.lr / 25.0, self.lr
        end = start / 1e4
        # a rise of one step or less (a short run; torch divides by zero there) starts at the peak
        peak_step = max(self.pct * self.total_steps - 1, 0.0)
        if step <= peak_step:
            a, b, progress = start, peak, step / peak_step if peak_step > 0 else 1.0
        else:
            a, b, progress = peak, end, min((step - peak_step) / max(self.total_steps - 1 - peak_step, 1e-9), 1.0)
        return b + (a - b) * 0.5 * (1 + math.cos(math.pi * progress))
