"""Where the loop runs: the device, its numeric settings, and the number of CPU threads.

**Threads.** On a small CPU machine PyTorch's default (one intra-op thread per core) is often
not the fastest: on two cores LeNet-5 trained at 1,250-1,460 images/s with two threads and at
4,350 with one, and one other busy process made a two-thread run ten times slower, while a 64x64
U-Net is 1.9x faster with two. No fixed rule fits every network and every load, so unless told
(``threads``), a fresh CPU run *times* the candidates on its own first training steps:
:class:`ThreadPicker` runs the first steps at each candidate count in turn - one warm-up step
each, then up to ``rounds`` timed steps each, interleaved so that a change of load hits every
candidate alike (it stops after two rounds when every step of one candidate was faster than
every step of the others) - and keeps the count with the lowest median step time for the rest
of the run. The timed
steps are ordinary training steps (nothing is repeated or thrown away). The count is recorded in
the summary and the checkpoint, and a resumed run keeps it, so a resumed run continues exactly.
Runs are bit-for-bit reproducible for a fixed thread count; pass ``threads`` to fix it.
Distributed CPU processes share the cores (``cores // processes`` each); CUDA runs keep torch's
default.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, field

import torch

from convatlas.engine.config import LoopConfig
from convatlas.engine.distributed import Dist

__all__ = ["Runtime", "pick_device", "runtime", "cpu_cores", "thread_candidates", "ThreadPicker", "AutoThreads"]


@dataclass
class Runtime:
    """The device and how to use it: bf16 autocast, channels_last."""

    device: torch.device
    amp: bool
    channels_last: bool

    @property
    def on_cuda(self) -> bool:
        return self.device.type == "cuda"


def pick_device(request: str, env: Dist) -> torch.device:
    if request == "auto":
        return torch.device(f"cuda:{env.local_rank}" if torch.cuda.is_available() else "cpu")
    device = torch.device(request)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for, but PyTorch sees no CUDA GPU; use --device cpu")
        if device.index is None:
            device = torch.device(f"cuda:{env.local_rank}")
    return device


def runtime(cfg: LoopConfig, env: Dist) -> Runtime:
    """The device of ``cfg.device`` and its settings (deterministic algorithms, cuDNN autotuning)."""
    device = pick_device(cfg.device, env)
    on_cuda = device.type == "cuda"
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif on_cuda:
        torch.backends.cudnn.benchmark = True
    amp = on_cuda if cfg.amp is None else (cfg.amp and on_cuda)
    channels_last = on_cuda if cfg.channels_last is None else cfg.channels_last
    return Runtime(device, amp, channels_last)


def cpu_cores() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def thread_candidates(cores: int) -> list[int]:
    """1, 2, 4, ... up to the core count, and the core count itself (at most six candidates)."""
    counts = {1, cores}
    n = 2
    while n < cores and len(counts) < 5:
        counts.add(n)
        n *= 2
    return sorted(counts)


@dataclass
class ThreadPicker:
    """Time the first training steps at each candidate thread count, then keep the fastest.

    The loop calls :meth:`before_step` and :meth:`after_step` around every step while
    :attr:`done` is false. ``timings`` holds the measured seconds per step of each candidate.
    """

    candidates: list[int]
    rounds: int = 5
    timings: dict[int, list[float]] = field(default_factory=dict)
    chosen: int | None = None
    _schedule: list[tuple[int, bool]] = field(default_factory=list)

    def __post_init__(self) -> None:
        warm = [(n, False) for n in self.candidates]
        timed = [(n, True) for _ in range(self.rounds) for n in self.candidates]
        self._schedule = warm + timed
        self.timings = {n: [] for n in self.candidates}
        if len(self.candidates) == 1:
            self._finish()

    @property
    def done(self) -> bool:
        return self.chosen is not None

    def before_step(self) -> None:
        torch.set_num_threads(self._schedule[0][0])

    def after_step(self, seconds: float) -> None:
        count, timed = self._schedule.pop(0)
        if timed:
            self.timings[count].append(seconds)
        if not self._schedule or self._separated():
            self._finish()

    def _separated(self) -> bool:
        """After two or more whole rounds: is every step of one candidate faster than every step
        of all the others? Then more rounds would not change the choice."""
        rounds = {len(t) for t in self.timings.values()}
        if len(rounds) != 1 or rounds.pop() < 2:
            return False
        fastest = min(self.timings, key=lambda n: statistics.median(self.timings[n]))
        slowest_of_fastest = max(self.timings[fastest])
        return all(min(t) > slowest_of_fastest for n, t in self.timings.items() if n != fastest)

    def finish_early(self) -> None:
        """The run ended (or the epoch ended and the picker must settle): choose from what was timed."""
        if not self.done:
            self._finish()

    def _finish(self) -> None:
        measured = {n: statistics.median(t) for n, t in self.timings.items() if t}
        self.chosen = min(measured, key=measured.get) if measured else self.candidates[0]
        torch.set_num_threads(self.chosen)

    def report(self) -> dict[str, float]:
        """Median milliseconds per step of each timed candidate."""
        return {str(n): round(1000 * statistics.median(t), 3) for n, t in self.timings.items() if t}

    def cost(self) -> float:
        """Seconds the timing spent beyond running all its steps at the chosen count (its warm-up
        and timed steps at slower counts), from the medians."""
        best = statistics.median(self.timings[self.chosen]) if self.timings.get(self.chosen) else 0.0
        return sum((len(t) + 1) * max(statistics.median(t) - best, 0.0) for t in self.timings.values() if t)


@dataclass
class AutoThreads:
    """The thread count chosen by timing, and timed again when the load changes.

    Start it with ``chosen`` (a resumed run's count) or without (time the candidates now). The
    loop calls :meth:`before_step` / :meth:`after_step` around every step and :meth:`end_epoch`
    after each epoch; :meth:`record` says what was chosen and how. After a choice, the median
    step time of each ``window`` of steps is compared with the first window's (a change of load
    starts a new timing), and every ``recheck`` steps the candidates are timed again anyway: a
    first timing that a passing load misled (it picked one thread where two run 1.5x faster, and
    the steps at one thread stay steady, so no window notices) is corrected within that many steps,
    for about a dozen steps at the other counts.
    """

    candidates: list[int]
    chosen: int | None = None
    tolerance: float = 1.5
    window: int = 20
    recheck: int = 500
    source: str = "probed"
    picker: ThreadPicker | None = None
    reference: float | None = None  # median seconds per step of the first window after a choice
    retimed: int = 0
    rechecked: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    timing_seconds: float = 0.0  # what choosing cost, beyond running those steps at the chosen count
    _recent: list[float] = field(default_factory=list)
    _since_choice: int = 0

    def __post_init__(self) -> None:
        if self.chosen is None:
            self._start_timing()
        else:
            self.source = "resumed"
            torch.set_num_threads(self.chosen)

    def _start_timing(self) -> None:
        self.picker = ThreadPicker(self.candidates)
        self._recent.clear()
        self._since_choice = 0
        self._settle()

    def _settle(self) -> None:
        if self.picker is not None and self.picker.done:
            self.chosen, self.timings = self.picker.chosen, self.picker.report()
            self.timing_seconds += self.picker.cost()
            self.picker, self.reference, self.source = None, None, "probed"

    def before_step(self) -> None:
        if self.picker is not None:
            self.picker.before_step()

    def after_step(self, seconds: float) -> bool:
        """Count a step; every ``window`` steps after a choice, compare their median with the
        first window's, and time the candidates again when it moved more than ``tolerance``.
        True when the count or the timing changed (the record is new)."""
        if self.picker is not None:
            self.picker.after_step(seconds)
            self._settle()
            return True
        self._recent.append(seconds)
        self._since_choice += 1
        if self._since_choice >= self.recheck:
            self.rechecked += 1
            self._start_timing()
            return True
        if len(self._recent) < self.window:
            return False
        now = statistics.median(self._recent)
        self._recent.clear()
        if self.reference is None:
            self.reference = now
        elif not 1 / self.tolerance < now / self.reference < self.tolerance:
            self.retimed += 1
            self._start_timing()
            return True
        return False

    def end_epoch(self) -> None:
        """An epoch shorter than the timing: choose from what was timed (evaluation runs next)."""
        if self.picker is not None:
            self.picker.finish_early()
            self._settle()

    def record(self) -> dict[str, object]:
        return {"threads": self.chosen, "source": self.source, "timed_ms_per_step": self.timings,
                "retimed": self.retimed, "rechecked": self.rechecked, "thread_timing_cost_seconds": round(self.timing_seconds, 3)}
