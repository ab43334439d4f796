"""What the benchmarks share: a quiet training run, and the paired step-by-step timing of the
convatlas trainer against a plain PyTorch loop.

Pairing: this machine's speed drifts by a fifth within minutes, so two sides timed a minute apart
are not comparable. A trainer run of two epochs takes one plain-loop step inside its ``on_step``
callback after each of its own steps, so both sides see the same moments of the machine. Epoch 1
warms both up; in epoch 2 the trainer's step is the time from the end of one callback to the start
of the next (batch, forward, backward, optimiser, the loop's bookkeeping), the plain loop's the
time of its step inside the callback - wall clock and the process's CPU time.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from convatlas.train import train


def quiet_train(model: str, **kwargs: Any) -> dict:
    """``convatlas.train(model, quiet=True, **kwargs)``'s summary, its printing swallowed."""
    with contextlib.redirect_stdout(io.StringIO()):
        return train(model, quiet=True, **kwargs).summary


def paired_round(model: str, plain_step: Callable[[], None], batch: int, out: Path, **train_kwargs: Any) -> dict:
    """One paired trainer run of two epochs (``train_kwargs`` choose the data and settings; the
    run directory ``out`` is removed afterwards): images and seconds of each side in epoch 2."""
    ours, theirs, ours_cpu, theirs_cpu = [], [], [], []
    last: list[tuple[float, float]] = []

    def on_step(info) -> None:
        now = (time.perf_counter(), time.process_time())
        if info.epoch >= 1 and info.step_in_epoch >= 2:  # epoch 2's first step follows epoch 1's end
            ours.append(now[0] - last[0][0])
            ours_cpu.append(now[1] - last[0][1])
        plain_step()
        done = (time.perf_counter(), time.process_time())
        if info.epoch >= 1:
            theirs.append(done[0] - now[0])
            theirs_cpu.append(done[1] - now[1])
        last[:] = [done]

    quiet_train(model, epochs=2, eval_every=2, out=out, on_step=on_step, **train_kwargs)
    shutil.rmtree(out, ignore_errors=True)
    return {"convatlas_images_per_second": len(ours) * batch / sum(ours),
            "plain_loop_images_per_second": len(theirs) * batch / sum(theirs),
            "convatlas_images_per_cpu_second": len(ours) * batch / sum(ours_cpu),
            "plain_loop_images_per_cpu_second": len(theirs) * batch / sum(theirs_cpu),
            "convatlas_images": len(ours) * batch, "convatlas_seconds": sum(ours),
            "plain_loop_images": len(theirs) * batch, "plain_loop_seconds": sum(theirs)}
