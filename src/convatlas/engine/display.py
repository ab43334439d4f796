"""What a training run shows: a rich progress bar (running loss, the task's running figures, lr,
images/s), or one log line per epoch when quiet; only the main process shows anything."""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping

__all__ = ["Display", "format_values"]


def format_values(values: Mapping[str, float | None], percent: tuple[str, ...] = ()) -> str:
    """``loss 0.1234  acc 97.10%``: fractions named in ``percent`` as percentages (``n/a`` where
    one is undefined, -1: COCO's AP of a size no object has). ``train_`` and ``test_`` prefixes
    are dropped, and ``loss_`` before a loss term (``train_loss_box_reg`` -> ``box_reg``)."""
    parts = []
    for key, value in values.items():
        if value is None:
            continue
        name = key.split("_", 1)[1] if key.startswith(("train_", "test_")) else key
        shown = name[len("loss_"):] if name.startswith("loss_") else name
        if name in percent:
            parts.append(f"{shown} {value:.2%}" if value >= 0 else f"{shown} n/a")
        else:
            parts.append(f"{shown} {value:.4f}")
    return "  ".join(parts)


class Display:
    """The progress bar (or log lines) of one run."""

    def __init__(self, enabled: bool, quiet: bool, total_epochs: int, steps_per_epoch: int,
                 percent: tuple[str, ...] = ()) -> None:
        self.enabled, self.quiet, self.percent = enabled, quiet, percent
        self.total_epochs, self.steps = total_epochs, steps_per_epoch
        self.progress: Any = None
        self.task: Any = None
        self.last_update = 0.0

    def __enter__(self) -> "Display":
        if self.enabled and not self.quiet:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[running]}  lr {task.fields[lr]:.3g}  {task.fields[ips]:,.0f} img/s"),
                TimeRemainingColumn(), transient=True,
            )
            self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)

    def log(self, text: str) -> None:
        if not self.enabled:
            return
        if self.progress is not None:
            self.progress.console.print(text)
        else:
            print(text, flush=True)

    def start_epoch(self, epoch: int, done: int) -> None:
        if self.progress is None:
            return
        description = f"epoch {epoch + 1}/{self.total_epochs}"
        if self.task is None:
            self.task = self.progress.add_task(description, total=self.steps, completed=done, running="", lr=0.0,
                                               ips=0.0)
        else:
            self.progress.reset(self.task, total=self.steps, completed=done, description=description)

    def step(self, done: int, running: Callable[[], Mapping[str, float]], lr: float, ips: float) -> None:
        """Update the bar at most five times a second (``running`` is only called then)."""
        if self.progress is None:
            return
        now = time.perf_counter()
        if now - self.last_update < 0.2 and done < self.steps:
            return
        self.last_update = now
        self.progress.update(self.task, completed=done, running=format_values(running(), self.percent), lr=lr, ips=ips)
