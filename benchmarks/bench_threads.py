"""The trainer's own thread count against the best fixed one, on a quiet machine and a busy one.

    python benchmarks/bench_threads.py              # every case: quiet, busy, busy from mid-run
    python benchmarks/bench_threads.py --cases lenet5 --loads quiet

For each case - ``convatlas train lenet5`` (its recipe, for 10 of its 30 epochs), ``vgg_mini`` (5 epochs),
ResNet-18 and DenseNet-121 on the digits at 64x64 (a fixed number of steps) - the same run is
trained with the default thread choice (``threads`` unset: the loop times the candidate counts on
its first steps and keeps the fastest; that timing is part of the measured run) and with every
fixed count from 1 to the number of cores. Training images/s come from each run's
``summary.json`` (training time only, evaluation excluded). "busy" runs the same while one other
CPU-bound process (a Python busy loop) runs beside it; "mid" starts that process a few seconds
into each run, after the default has made its first choice (it must notice and time again).

The goal: default / best fixed >= 0.95 in every case and load. The runs of one case alternate
(default, 1, 2, ..., default, 1, 2, ...) and each configuration keeps the best of ``--rounds``,
so a change of load during the benchmark hits every configuration alike. Figures go to
``benchmarks/results/bench_threads-cpu.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing as mp
import platform
import sys
import threading
import tempfile
import time
from pathlib import Path

import torch

from convatlas.engine.device import cpu_cores
from convatlas.train import train

RESULTS = Path(__file__).resolve().parent / "results"

# name -> (model, training arguments, seconds into a run when the "mid" load starts); the lengths
# keep each run between about 10 and 60 s
CASES: dict[str, tuple[str, dict, float]] = {
    "lenet5": ("lenet5", {"epochs": 10}, 4.0),
    "vgg_mini": ("vgg_mini", {"epochs": 5}, 4.0),
    "resnet18_64": ("resnet18", {"image_size": 64, "iterations": 60, "eval_every": 1000}, 10.0),
    "densenet121_64": ("densenet121", {"image_size": 64, "iterations": 40, "eval_every": 1000}, 15.0),
}


def _busy_loop(started, go) -> None:  # pragma: no cover - runs in the other process
    started.set()
    go.wait()
    x = 0
    while True:
        x += 1


@contextlib.contextmanager
def load(kind: str, delay: float):
    """Around one run: nothing beside it ("quiet"); one CPU-bound process spinning from the start
    ("busy"); or one that starts spinning ``delay`` seconds into the run ("mid"). The process is
    spawned (it imports this module, for a few seconds) before the run begins either way."""
    if kind == "quiet":
        yield
        return
    context = mp.get_context("spawn")
    started, go = context.Event(), context.Event()
    process = context.Process(target=_busy_loop, args=(started, go), daemon=True)
    process.start()
    if not started.wait(timeout=120):
        raise RuntimeError("the busy process did not start")
    timer = threading.Timer(delay if kind == "mid" else 0.0, go.set)
    timer.start()
    if kind == "busy":
        time.sleep(1.0)
    try:
        yield
    finally:
        timer.cancel()
        process.terminate()
        process.join()


def run_once(model: str, args: dict, threads: int | None, workdir: Path) -> dict:
    out = Path(tempfile.mkdtemp(dir=workdir))
    with contextlib.redirect_stdout(io.StringIO()):
        summary = train(model, quiet=True, threads=threads, out=out, **args).summary
    return {"images_per_second": summary["images_per_second"], "train_seconds": summary["train_seconds"],
            "threads": summary["threads"], "source": summary["source"],
            "timed_ms_per_step": summary.get("timed_ms_per_step"), "retimed": summary.get("retimed"),
            "timing_cost_seconds": summary.get("thread_timing_cost_seconds")}


def bench_case(name: str, kind: str, rounds: int, workdir: Path) -> dict:
    model, args, delay = CASES[name]
    configs: list[int | None] = [None, *range(1, cpu_cores() + 1)]
    runs: dict[str, list[dict]] = {("default" if c is None else str(c)): [] for c in configs}
    for _ in range(rounds):
        for threads in configs:
            key = "default" if threads is None else str(threads)
            with load(kind, delay):
                runs[key].append(run_once(model, args, threads, workdir))
    best = {key: max(r["images_per_second"] for r in rs) for key, rs in runs.items()}
    fixed = {key: value for key, value in best.items() if key != "default"}
    best_fixed = max(fixed, key=fixed.get)
    ratio = best["default"] / fixed[best_fixed]
    worst = min(r["images_per_second"] for r in runs["default"]) / fixed[best_fixed]
    chosen = [r["threads"] for r in runs["default"]]
    # what the timing itself cost, from the run's own step times (free of the machine's drift)
    cost = max((r["timing_cost_seconds"] or 0.0) / r["train_seconds"] for r in runs["default"])
    print(f"{name:15s} {kind:5s}  default {best['default']:8,.0f} img/s (chose {chosen})  "
          + "  ".join(f"{k} thread{'s' if k != '1' else ''} {v:8,.0f}" for k, v in fixed.items())
          + f"  default / best fixed ({best_fixed}) = {ratio:.2f} (its worst round {worst:.2f}); "
          f"timing cost <= {cost:.1%} of the run", flush=True)
    return {"case": name, "model": model, "args": args, "load": kind, "runs": runs, "best_images_per_second": best,
            "best_fixed": best_fixed, "ratio_default_to_best_fixed": round(ratio, 3),
            "worst_default_round_to_best_fixed": round(worst, 3), "chose_best_fixed":
            all(str(c) == best_fixed for c in chosen), "timing_cost_fraction": round(cost, 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--loads", nargs="+", choices=["quiet", "busy", "mid"], default=["quiet", "busy", "mid"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_threads-cpu.json")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.loads:
            for name in args.cases:
                results.append(bench_case(name, kind, args.rounds, Path(tmp)))
    worst = min(r["ratio_default_to_best_fixed"] for r in results)
    worst_round = min(r["worst_default_round_to_best_fixed"] for r in results)
    print(f"worst default / best fixed: {worst:.2f} (goal >= 0.95); worst single default round: {worst_round:.2f}")
    report = {"machine": {"cores": cpu_cores(), "platform": platform.platform(), "torch": torch.__version__,
                          "python": sys.version.split()[0]},
              "cases": results, "worst_ratio": worst, "worst_single_default_round": worst_round}
    from convatlas._io import write_json

    write_json(args.out, report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
