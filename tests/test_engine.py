"""The task-agnostic engine: a task that is not classification trains, stops, resumes exactly
and picks its best checkpoint through the same loop; the thread picker; the loop's size."""

from __future__ import annotations

import ast
import os
import signal
from pathlib import Path

import pytest
import torch
from torch import nn

from convatlas.engine import (
    AutoThreads, Dist, LoopConfig, StepOutput, Task, ThreadPicker, fit, load_checkpoint, runtime,
)
from convatlas.engine.device import cpu_cores, thread_candidates

ENGINE = Path(__file__).resolve().parents[1] / "src" / "convatlas" / "engine"


class NoisyRegression(Task):
    """Learn y = x . w from inputs with fresh noise in every batch (the noise is the task's random
    state); two loss terms; the primary metric (test MSE) is better when lower."""

    name = "regression"
    metric_names = ("mse",)
    primary = "mse"
    higher_is_better = False
    metric_label = "test mean squared error"

    def __init__(self, n: int = 256) -> None:
        g = torch.Generator().manual_seed(123)
        self.w = torch.tensor([1.0, -2.0, 0.5, 3.0])
        self.x = torch.randn(n, 4, generator=g)
        self.test_x = torch.randn(64, 4, generator=g)

    @property
    def num_train(self) -> int:
        return len(self.x)

    def setup(self, runtime, env, seed):
        self.generator = torch.Generator().manual_seed(seed)

    def train_batch(self, indices):
        x = self.x[indices]
        return x + 0.1 * torch.randn(x.shape, generator=self.generator), x @ self.w

    def training_step(self, model, batch):
        x, y = batch
        mse = (model(x).squeeze(1) - y).square().mean()
        l1 = 1e-3 * model.weight.abs().sum()
        return StepOutput({"loss": mse + l1, "loss_mse": mse.detach(), "loss_l1": l1.detach()},
                          {"big_errors": ((model(x).squeeze(1) - y).abs() > 1).sum()})

    def train_metrics(self, counts, seen):
        return {"big_error_rate": counts["big_errors"] / seen}

    def evaluate(self, model, env, batch_size, amp):
        with torch.no_grad():
            return {"mse": float((model(self.test_x).squeeze(1) - self.test_x @ self.w).square().mean())}

    def state_dict(self):
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state):
        self.generator.set_state(state["generator"])


def _fit(run_dir: Path, *, checkpoint=None, on_step=None, **changes):
    cfg = LoopConfig(**{"epochs": 6, "batch_size": 32, "lr": 0.05, "schedule": "cosine", "ema_decay": 0.9,
                        "threads": 1, "quiet": True, **changes})
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
    env = Dist()
    return fit(model, NoisyRegression(), cfg, run_dir, env, runtime(cfg, env), describe={"what": "regression"},
               summary_head={"task": "regression"}, record={"epochs": cfg.epochs}, checkpoint=checkpoint,
               on_step=on_step)


def test_a_regression_task_trains_through_the_same_loop(tmp_path):
    result = _fit(tmp_path / "run")
    history = result.history
    assert [row["epoch"] for row in history] == [1, 2, 3, 4, 5, 6]
    assert {"train_loss", "train_loss_mse", "train_loss_l1", "train_big_error_rate", "test_mse"} <= set(history[0])
    assert history[-1]["test_mse"] < 0.1 * history[0]["test_mse"]  # it learns
    best_epoch = min(history, key=lambda row: row["test_mse"])["epoch"]  # lower is better
    assert result.summary["best_epoch"] == best_epoch and result.summary["primary_metric"] == "test_mse"
    assert result.summary["best_test_mse"] == min(row["test_mse"] for row in history)
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    assert saved["epoch"] == best_epoch and saved["what"] == "regression"
    for row in history:  # each term is its batch-weighted mean: the total is their sum
        assert row["train_loss"] == pytest.approx(row["train_loss_mse"] + row["train_loss_l1"], rel=1e-6)


def test_ctrl_c_and_resume_are_exact_for_any_task(tmp_path):
    straight = _fit(tmp_path / "straight")

    def press_ctrl_c(info):
        if info.global_step == 20:  # in epoch 3 (8 steps an epoch)
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path / "cut", on_step=press_ctrl_c)
    saved = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert (saved["epoch"], saved["step_in_epoch"]) == (2, 5)
    resumed = _fit(tmp_path / "cut", checkpoint=saved)
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    for key in ("model", "ema"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)
    assert [r["train_loss"] for r in straight.history] == [r["train_loss"] for r in resumed.history]
    assert [r["test_mse"] for r in straight.history] == [r["test_mse"] for r in resumed.history]


def test_a_nan_loss_stops_any_task(tmp_path):
    from convatlas.engine import TrainingDiverged

    with pytest.raises(TrainingDiverged, match="NaN/infinite"):
        _fit(tmp_path / "run", lr=1e30, schedule="constant", ema_decay=None)


# ------------------------------------------------------------------------------------------
# Threads


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _drive(picker: ThreadPicker, seconds_per_step: dict[int, list[float]]) -> int:
    steps, calls = {n: iter(t) for n, t in seconds_per_step.items()}, 0
    while not picker.done:
        picker.before_step()
        count = torch.get_num_threads()
        picker.after_step(next(steps[count]))
        calls += 1
    return calls


def test_thread_picker_keeps_the_fastest_count(restore_threads):
    # two threads are faster, with one noisy step: the median decides, after every round is done
    picker = ThreadPicker([1, 2], rounds=5)
    calls = _drive(picker, {1: [9, 1.0, 1.1, 0.9, 1.0, 1.0], 2: [9, 0.6, 1.5, 0.5, 0.55, 0.6]})
    assert picker.chosen == 2 and torch.get_num_threads() == 2
    assert calls == 2 + 2 * 5
    assert picker.report() == {"1": 1000.0, "2": 600.0}
    assert picker.cost() == pytest.approx(6 * (1.0 - 0.6))  # six steps (a warm-up, five timed) at 0.4 s too slow


def test_thread_picker_stops_early_when_the_choice_is_clear(restore_threads):
    picker = ThreadPicker([1, 2, 4], rounds=5)
    calls = _drive(picker, {1: [5, 0.2, 0.21, 9, 9, 9], 2: [5, 0.5, 0.6, 9, 9, 9], 4: [5, 0.9, 0.8, 9, 9, 9]})
    assert picker.chosen == 1 and calls == 3 + 3 * 2  # warm-ups, then two rounds


def test_auto_threads_time_again_when_the_load_changes(restore_threads):
    auto = AutoThreads([1, 2], window=20)

    def steps(seconds: dict[int, float], count: int) -> None:
        for _ in range(count):
            auto.before_step()
            auto.after_step(seconds[torch.get_num_threads()])

    quiet, busy = {1: 0.010, 2: 0.006}, {1: 0.011, 2: 0.030}  # another job takes a core
    steps(quiet, 6)  # a warm-up step each, then two rounds that leave no doubt
    assert (auto.chosen, auto.source, auto.retimed, auto.picker) == (2, "probed", 0, None)
    steps(quiet, 20)  # the reference window after the choice
    steps({1: 0.011, 2: 0.0075}, 20)  # within 1.5x of it: no new timing
    assert auto.picker is None and auto.retimed == 0
    steps(busy, 20)  # five times slower: the candidates are timed again ...
    assert auto.retimed == 1 and auto.picker is not None
    steps(busy, 6)  # ... and one thread wins
    assert auto.chosen == 1 and torch.get_num_threads() == 1 and auto.record()["retimed"] == 1
    resumed = AutoThreads([1, 2], chosen=2)
    assert resumed.source == "resumed" and torch.get_num_threads() == 2 and resumed.picker is None


def test_auto_threads_check_their_choice_again_after_recheck_steps(restore_threads):
    """A first timing misled by a passing load (one thread looked faster) is corrected by the
    periodic check, though the steps at the wrong count never change speed."""
    auto = AutoThreads([1, 2], window=20, recheck=100)

    def steps(seconds: dict[int, float], count: int) -> None:
        for _ in range(count):
            auto.before_step()
            auto.after_step(seconds[torch.get_num_threads()])

    steps({1: 0.010, 2: 0.030}, 6)  # misled: another job held a core during the first steps
    assert auto.chosen == 1
    steps({1: 0.010, 2: 0.006}, 99)  # steady at one thread: no window notices anything
    assert auto.chosen == 1 and auto.picker is None and auto.retimed == 0
    steps({1: 0.010, 2: 0.006}, 1)  # the 100th step after the choice: time again
    assert auto.rechecked == 1 and auto.picker is not None
    steps({1: 0.010, 2: 0.006}, 6)
    assert auto.chosen == 2 and torch.get_num_threads() == 2
    assert auto.record()["rechecked"] == 1 and auto.record()["retimed"] == 0


def test_thread_candidates():
    assert thread_candidates(1) == [1]
    assert thread_candidates(2) == [1, 2]
    assert thread_candidates(16) == [1, 2, 4, 8, 16]
    assert thread_candidates(12) == [1, 2, 4, 8, 12]


def test_runs_record_their_thread_count_and_a_resumed_run_keeps_it(tmp_path, restore_threads):
    first = _fit(tmp_path / "run", threads=None, epochs=2)
    chosen = first.summary["threads"]
    assert first.summary["source"] == "probed" and chosen in thread_candidates(cpu_cores())
    assert set(first.summary["timed_ms_per_step"]) == {str(n) for n in thread_candidates(cpu_cores())}
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert saved["threads"] == chosen
    torch.set_num_threads(1)
    again = _fit(tmp_path / "run", threads=None, epochs=3, checkpoint=saved)
    assert (again.summary["threads"], again.summary["source"]) == (chosen, "resumed")
    assert torch.get_num_threads() == 1  # the caller's count is put back
    given = _fit(tmp_path / "given", threads=1, epochs=1)
    assert (given.summary["threads"], given.summary["source"]) == (1, "given")


# ------------------------------------------------------------------------------------------
# The loop reads top to bottom


def test_the_loop_is_short_and_no_engine_function_is_long():
    lengths = {}
    for path in ENGINE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lengths[f"{path.name}:{node.name}"] = node.end_lineno - node.lineno + 1
    assert lengths["loop.py:fit"] <= 150
    assert {name: n for name, n in lengths.items() if n > 80 and name != "loop.py:fit"} == {}
