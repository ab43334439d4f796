"""The training loop, for any task: :func:`fit`.

One loop serves one CPU, one GPU and many processes (``torchrun``, DistributedDataParallel):

1. each step takes a batch of example indices (:class:`~convatlas.data.EpochBatches`: the order
   of epoch ``e`` depends on ``(seed, e)`` only), asks the task for the augmented batch and its
   losses, and takes an optimiser step at the learning rate of a pure schedule function;
2. after each epoch it asks the task to evaluate, appends a metrics row, and writes
   ``checkpoints/last.pt`` (and ``best.pt`` when the task's primary metric improved) atomically;
3. a non-finite loss stops the run (the last good checkpoint stays); Ctrl-C (SIGINT/SIGTERM)
   stops at the next step boundary and saves a checkpoint from which the run continues exactly:
   every random state - torch's, every rank's augmentation - is in the checkpoint.

The loop knows nothing of labels, masks, boxes or model names: what was trained is described by
the caller (``describe``, saved in every checkpoint; ``summary_head``, at the top of
``summary.json``).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from convatlas._io import write_json, write_yaml
from convatlas.data.loader import EpochBatches
from convatlas.engine import rundir
from convatlas.engine.checkpoint import FORMAT, CheckpointError, save_checkpoint
from convatlas.engine.config import LoopConfig
from convatlas.engine.device import AutoThreads, Runtime, cpu_cores, thread_candidates
from convatlas.engine.display import Display, format_values
from convatlas.engine.distributed import Dist, all_sum, any_rank, gather
from convatlas.engine.optim import EMA, clip_gradients, make_optimizer
from convatlas.engine.schedules import Schedule
from convatlas.engine.signals import GracefulStop
from convatlas.engine.task import Task

__all__ = ["fit", "FitResult", "StepInfo", "TrainingDiverged"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class StepInfo:
    """What an ``on_step`` callback sees after each optimiser step."""

    epoch: int  # the epoch being trained (0-based)
    step_in_epoch: int  # steps done in it
    global_step: int
    loss: float
    lr: float


@dataclass
class FitResult:
    """The run directory, its summary and metrics rows, and the model that was evaluated (eval
    mode, on the training device; the EMA weights when EMA was on)."""

    run_dir: Path
    summary: dict[str, Any]
    history: list[dict[str, Any]]
    model: nn.Module = field(repr=False)


@dataclass
class _State:
    """Where the run is: what a checkpoint saves besides the weights and the optimiser."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"value": None, "epoch": None})
    train_seconds: float = 0.0
    partial: dict[str, Any] = field(default_factory=lambda: {"sums": {}, "seen": 0, "seconds": 0.0})
    threads: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _Sums:
    """Running sums of an epoch's losses (times the batch size) and counts, on the device."""

    def __init__(self, partial: dict[str, Any], device: torch.device) -> None:
        self.device = device
        self.values = {k: torch.tensor(v, dtype=torch.float64, device=device) for k, v in partial["sums"].items()}
        self.seen, self.seconds = partial["seen"], partial["seconds"]

    def add(self, losses: dict[str, torch.Tensor], counts: dict[str, torch.Tensor], n: int) -> None:
        for key, value in [*((k, v.detach().double() * n) for k, v in losses.items()), *counts.items()]:
            if key not in self.values:
                self.values[key] = torch.zeros((), dtype=torch.float64, device=self.device)
            self.values[key] += value
        self.seen += n

    def finite(self) -> bool:
        return bool(torch.isfinite(self.values["loss"])) if "loss" in self.values else True

    def local(self) -> dict[str, float]:
        return {k: float(v) / max(self.seen, 1) for k, v in self.values.items()}

    def reduced(self, env: Dist) -> tuple[dict[str, float], int]:
        """Every rank's sums added up, and the examples they cover."""
        keys = sorted(self.values)
        stacked = torch.stack([*(self.values[k] for k in keys),
                               torch.tensor(float(self.seen), dtype=torch.float64, device=self.device)])
        all_sum(stacked, env)
        return {k: float(v) for k, v in zip(keys, stacked[:-1])}, int(stacked[-1])

    def partial(self) -> dict[str, Any]:
        return {"sums": {k: float(v) for k, v in self.values.items()}, "seen": self.seen, "seconds": self.seconds}

    def reset(self) -> None:
        self.values, self.seen, self.seconds = {}, 0, 0.0


@dataclass
class _Run:
    """Everything the loop's helpers share."""

    cfg: LoopConfig
    task: Task
    net: nn.Module
    optimizer: torch.optim.Optimizer
    ema: EMA | None
    env: Dist
    rt: Runtime
    run_dir: Path
    describe: dict[str, Any]
    summary_head: dict[str, Any]
    schedule: Schedule
    batches: EpochBatches
    total_steps: int
    state: _State
    start: float
    threads: dict[str, Any] = field(default_factory=dict)

    @property
    def steps_per_epoch(self) -> int:
        return self.batches.steps_per_epoch

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.net


def fit(model: nn.Module, task: Task, cfg: LoopConfig, run_dir: Path, env: Dist, rt: Runtime, *,
        describe: dict[str, Any], summary_head: dict[str, Any], record: dict[str, Any], title: str = "",
        intro: tuple[str, ...] = (),
        checkpoint: dict[str, Any] | None = None, on_step: Callable[[StepInfo], None] | None = None,
        start: float | None = None) -> FitResult:
    """Train ``model`` on ``task`` as ``cfg`` says, writing ``run_dir``; continue from
    ``checkpoint`` when given (the weights, optimiser, random states and sums it holds).

    ``describe`` goes into every checkpoint, ``summary_head`` heads ``summary.json`` and
    ``record`` is written as ``config.yaml`` once everything is set up (nothing is written
    before; the loop adds ``steps_per_epoch`` and ``total_steps`` to its ``derived``); ``title`` names the run on its curves and ``intro`` lines are shown first."""
    task.setup(rt, env, cfg.seed * 65537 + env.rank)
    run = _prepare(model, task, cfg, run_dir, env, rt, describe, summary_head, checkpoint, start)
    if env.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        loop_facts = {"steps_per_epoch": run.steps_per_epoch, "total_steps": run.total_steps}
        write_yaml(run_dir / rundir.CONFIG, {**record, "derived": {**record.get("derived", {}), **loop_facts}})
    previous_threads = torch.get_num_threads()
    state, auto = run.state, _threads(run, resumed=checkpoint is not None)
    forward_model = _wrap(run)
    sums = _Sums(state.partial, rt.device)
    autocast = (lambda: torch.autocast(rt.device.type, dtype=torch.bfloat16)) if rt.amp else contextlib.nullcontext
    check_every = 1 if rt.device.type == "cpu" else 10
    display = Display(env.main, cfg.quiet, math.ceil(run.total_steps / run.steps_per_epoch), run.steps_per_epoch,
                      task.percent)
    status, lr = "complete", cfg.lr
    try:
        with GracefulStop() as stop, display:
            for line in intro:
                display.log(line)
            threads = (f"timing {', '.join(map(str, auto.candidates))} threads on the first steps" if auto and auto.picker
                       else f"{run.threads['threads']} threads ({run.threads['source']})")
            display.log(f"{run.total_steps} steps on {rt.device}{f' x{env.world_size}' if env.active else ''}, "
                        f"{threads}; run dir {run_dir}")
            while state.global_step < run.total_steps:
                forward_model.train()
                display.start_epoch(state.epoch, state.step_in_epoch)
                tick = time.perf_counter()
                for idx in run.batches.epoch(state.epoch, state.step_in_epoch):
                    lr = run.schedule(state.global_step)
                    for group in run.optimizer.param_groups:
                        group["lr"] = lr
                    step_start = time.perf_counter()
                    if auto is not None:
                        auto.before_step()
                    with autocast():
                        out = task.training_step(forward_model, task.train_batch(idx.to(rt.device)))
                    _optimise(run, out.losses["loss"])
                    if auto is not None and auto.after_step(time.perf_counter() - step_start):
                        state.threads, run.threads = auto.chosen, auto.record()
                    state.global_step += 1
                    state.step_in_epoch += 1
                    sums.add(out.losses, out.counts, len(idx))
                    if state.global_step % check_every == 0 or state.step_in_epoch == run.steps_per_epoch:
                        bad = not sums.finite()
                        halt = any_rank(bad or stop.requested, env, rt.device)
                        if halt and env.active:
                            bad = any_rank(bad, env, rt.device)
                        if bad or halt:
                            status = "diverged" if bad else "interrupted"
                            break
                    elapsed = sums.seconds + time.perf_counter() - tick
                    display.step(state.step_in_epoch, sums.local, lr, sums.seen * env.world_size / max(elapsed, 1e-9))
                    if on_step is not None:
                        on_step(StepInfo(state.epoch, state.step_in_epoch, state.global_step,
                                         float(out.losses["loss"].detach()), lr))
                    if state.global_step >= run.total_steps:
                        break
                if rt.on_cuda:
                    torch.cuda.synchronize(rt.device)
                spent = time.perf_counter() - tick
                state.train_seconds += spent
                sums.seconds += spent
                if auto is not None:  # settle a timing the epoch cut short, or watch for a change of load
                    auto.end_epoch()
                    state.threads, run.threads = auto.chosen, auto.record()
                if status == "diverged":
                    _stop_diverged(run, lr, title)
                if status == "interrupted":
                    _stop_interrupted(run, sums, display, title)
                _end_epoch(run, sums, display)
        final = None
        if state.history and state.history[-1].get(f"test_{task.primary}") is None:  # already complete
            final = {f"test_{k}": v for k, v in _evaluate(run).items()}
        _finish_files(run, title)
        summary = _write_summary(run, status, final)
        display.log(f"test {format_values({k: summary.get(f'test_{k}') for k in task.metric_names}, task.percent)} "
                    f"after {summary['epochs']:g} epochs, {summary['train_seconds']:.1f} s training "
                    f"({summary['images_per_second'] or 0:,.0f} img/s); run dir {run_dir}")
    finally:
        torch.set_num_threads(previous_threads)
    run.eval_model.eval()
    return FitResult(run_dir, summary, state.history, run.eval_model)


# ---------------------------------------------------------------------------------------------
# Setting up


def _prepare(model: nn.Module, task: Task, cfg: LoopConfig, run_dir: Path, env: Dist, rt: Runtime,
             describe: dict[str, Any], summary_head: dict[str, Any], checkpoint: dict[str, Any] | None,
             start: float | None) -> _Run:
    """The model on its device, the optimiser, the schedule, and the state to continue from."""
    net = model.to(rt.device)
    if rt.channels_last:
        net.to(memory_format=torch.channels_last)
    batches = EpochBatches(task.num_train, cfg.batch_size, seed=cfg.seed, rank=env.rank, world_size=env.world_size)
    steps_per_epoch = batches.steps_per_epoch
    unit = 1 if cfg.iterations else steps_per_epoch  # lengths are in iterations or in epochs
    total_steps = int(cfg.iterations or max(1, round(cfg.epochs * steps_per_epoch)))
    schedule = Schedule(cfg.schedule, cfg.lr, total_steps, tuple(round(m * unit) for m in cfg.milestones),
                        cfg.gamma, round(cfg.warmup * unit), cfg.min_lr, cfg.onecycle_pct)
    optimizer = make_optimizer(net, cfg)
    ema = EMA(net, cfg.ema_decay) if cfg.ema_decay else None
    state = _State()
    if checkpoint is not None:
        state = _restore(checkpoint, net, optimizer, ema, task, env, rt)
    return _Run(cfg, task, net, optimizer, ema, env, rt, run_dir, describe, summary_head, schedule, batches,
                total_steps, state, time.perf_counter() if start is None else start)


def _restore(checkpoint: dict[str, Any], net: nn.Module, optimizer: torch.optim.Optimizer, ema: EMA | None,
             task: Task, env: Dist, rt: Runtime) -> _State:
    if checkpoint.get("format") != FORMAT:
        raise CheckpointError(f"this checkpoint was written by an earlier convatlas ({checkpoint.get('format')}); "
                              f"its model can be loaded (load_run) but its training cannot be resumed")
    optimizer.load_state_dict(checkpoint["optimizer"])
    if ema is not None and checkpoint.get("ema") is not None:
        ema.module.load_state_dict(checkpoint["ema"])
    state = _State(**{k: checkpoint[k] for k in _State().to_dict()})
    state.history, state.best, state.partial = list(state.history), dict(state.best), dict(state.partial)
    mine = checkpoint["rng"][env.rank] if env.rank < len(checkpoint["rng"]) else None
    if mine is not None:
        torch.set_rng_state(mine["torch"])
        task.load_state_dict(mine["task"])
        if rt.on_cuda and mine.get("cuda") is not None:
            torch.cuda.set_rng_state(mine["cuda"], rt.device)
    return state


def _threads(run: _Run, resumed: bool) -> AutoThreads | None:
    """Set the intra-op thread count (see :mod:`convatlas.engine.device`): given, shared by
    several processes, CUDA's default - or chosen by timing (then the chooser is returned)."""
    cfg, env, state = run.cfg, run.env, run.state
    if run.rt.on_cuda or (cfg.compile and cfg.threads is None):
        run.threads = {"threads": torch.get_num_threads(), "source": "default"}
        return None
    if cfg.threads or env.active:
        per_machine = int(os.environ.get("LOCAL_WORLD_SIZE", env.world_size))
        count = cfg.threads or max(1, cpu_cores() // per_machine)
        torch.set_num_threads(count)
        state.threads = count
        run.threads = {"threads": count, "source": "given" if cfg.threads else "shared by processes"}
        return None
    auto = AutoThreads(thread_candidates(cpu_cores()), chosen=state.threads if resumed else None)
    state.threads, run.threads = auto.chosen, auto.record()
    return auto


def _wrap(run: _Run) -> nn.Module:
    """The module the steps call: the network, wrapped for several processes and compiled if asked."""
    forward_model: nn.Module = run.net
    if run.env.active:
        ids = [run.rt.device.index] if run.rt.on_cuda else None
        forward_model = nn.parallel.DistributedDataParallel(run.net, device_ids=ids)
    if run.cfg.compile:
        forward_model = torch.compile(forward_model)
    return forward_model


# ---------------------------------------------------------------------------------------------
# A step, an epoch's end, and the two ways to stop early


def _optimise(run: _Run, loss: torch.Tensor) -> None:
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    clip_gradients(run.net, run.cfg.clip_grad_norm)
    run.optimizer.step()
    if run.ema is not None:
        run.ema.update(run.net)


def _evaluate(run: _Run) -> dict[str, float]:
    return run.task.evaluate(run.eval_model, run.env, run.cfg.eval_batch_size, run.rt.amp)


def _end_epoch(run: _Run, sums: _Sums, display: Display) -> None:
    """Evaluate, append the metrics row, checkpoint, and log the epoch."""
    state, task, env = run.state, run.task, run.env
    totals, seen = sums.reduced(env)
    train = {f"train_{k}": v / max(seen, 1) for k, v in totals.items() if k.startswith("loss")}
    train.update({f"train_{k}": v for k, v in task.train_metrics(totals, seen).items()})
    state.epoch += 1
    finished = state.global_step >= run.total_steps
    row: dict[str, Any] = {"epoch": state.epoch, "step": state.global_step, "lr": run.schedule(max(state.global_step - 1, 0)),
                           **train, **{f"test_{k}": None for k in task.metric_names},
                           "epoch_seconds": round(sums.seconds, 4),
                           "images_per_second": round(sums.seen * env.world_size / sums.seconds, 1) if sums.seconds > 0 else None,
                           "train_seconds": round(state.train_seconds, 4)}
    if state.epoch % run.cfg.eval_every == 0 or finished:
        row.update({f"test_{k}": v for k, v in _evaluate(run).items() if k in task.metric_names})
    state.history.append(row)
    state.step_in_epoch = 0
    sums.reset()
    state.partial = sums.partial()
    value = row[f"test_{task.primary}"]
    improved = value is not None and task.better(value, state.best["value"])
    if improved:
        state.best = {"metric": task.primary, "value": value, "epoch": state.epoch}
    payload = _payload(run)
    if env.main:
        save_checkpoint(run.run_dir / rundir.LAST, payload)
        if improved:
            save_checkpoint(run.run_dir / rundir.BEST, payload)
        rundir.write_metrics(run.run_dir, state.history)
    tested = {k: row[f"test_{k}"] for k in task.metric_names}
    test_text = f"  test {format_values(tested, task.percent)}" if value is not None else ""
    display.log(f"epoch {state.epoch}/{math.ceil(run.total_steps / run.steps_per_epoch)}  "
                f"train {format_values(train, task.percent)}{test_text}  lr {row['lr']:.3g}  "
                f"{row['images_per_second'] or 0:,.0f} img/s")


def _stop_diverged(run: _Run, lr: float, title: str) -> None:
    state = run.state
    _finish_files(run, title)
    _write_summary(run, "diverged", None)
    kept = run.run_dir / rundir.LAST
    where = (f"the last good checkpoint (epoch {state.history[-1]['epoch']}) is kept in {kept}"
             if state.history else "no epoch had finished, so there is no checkpoint")
    raise TrainingDiverged(
        f"the training loss became NaN/infinite in epoch {state.epoch + 1} by step {state.global_step} "
        f"(lr {lr:.3g}); training stopped and {where}. Try a lower learning rate (--lr) or "
        f"gradient clipping (--clip-grad-norm)."
    )


def _stop_interrupted(run: _Run, sums: _Sums, display: Display, title: str) -> None:
    state = run.state
    totals, seen = sums.reduced(run.env)
    state.partial = sums.partial()
    payload = _payload(run)
    if run.env.main:
        save_checkpoint(run.run_dir / rundir.LAST, payload)
    _finish_files(run, title)
    _write_summary(run, "interrupted", None)
    display.log(f"interrupted in epoch {state.epoch + 1} after {state.global_step} steps (train loss so far "
                f"{totals.get('loss', math.nan) / max(seen, 1):.4f}); checkpoint saved to {run.run_dir / rundir.LAST}. "
                f"Continue with: convatlas train --resume {run.run_dir}")
    raise KeyboardInterrupt(f"training interrupted; resume with --resume {run.run_dir}")


# ---------------------------------------------------------------------------------------------
# What is written


def _payload(run: _Run) -> dict[str, Any]:
    """The checkpoint: the caller's description, the weights, the optimiser, every rank's random state."""
    mine = {"torch": torch.get_rng_state(), "task": run.task.state_dict(),
            "cuda": torch.cuda.get_rng_state(run.rt.device) if run.rt.on_cuda else None}
    return {**run.describe, **run.state.to_dict(), "model": run.net.state_dict(),
            "ema": run.ema.module.state_dict() if run.ema is not None else None,
            "optimizer": run.optimizer.state_dict(), "rng": gather(mine, run.env)}


def _finish_files(run: _Run, title: str) -> None:
    if run.env.main and run.state.history:
        rundir.write_metrics(run.run_dir, run.state.history)
        rundir.plot_curves(run.run_dir, run.state.history, run.task.primary, run.task.metric_label,
                           percent=run.task.primary in run.task.percent, title=title)


def _write_summary(run: _Run, status: str, final: dict[str, Any] | None) -> dict[str, Any]:
    state, task, cfg = run.state, run.task, run.cfg
    last = state.history[-1] if state.history else {}
    tested = {f"test_{k}": (final or last).get(f"test_{k}") for k in task.metric_names}
    trained = {k: v for k, v in last.items() if k.startswith("train_") and k != "train_seconds"}
    summary = {
        "status": status, **run.summary_head, **tested, **{f"test_{k}": v for k, v in task.details().items()},
        **trained,
        "primary_metric": f"test_{task.primary}",
        f"best_test_{task.primary}": state.best["value"] if state.best["epoch"] else None,
        "best_epoch": state.best["epoch"], "epochs": round(state.global_step / run.steps_per_epoch, 4),
        "iterations": state.global_step, "train_seconds": round(state.train_seconds, 3),
        "wall_seconds": round(time.perf_counter() - run.start, 3),
        "images_per_second": round(state.global_step * cfg.batch_size / state.train_seconds, 1)
        if state.train_seconds > 0 else None,
        "batch_size": cfg.batch_size, "device": str(run.rt.device), "world_size": run.env.world_size,
        "seed": cfg.seed, "ema": cfg.ema_decay is not None, **run.threads, "run_dir": str(run.run_dir),
    }
    if run.env.main:
        write_json(run.run_dir / rundir.SUMMARY, summary)
    return summary
