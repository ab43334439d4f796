"""Compare trained networks: measure parameters, MACs, latency and test accuracy of finished
runs, and draw the charts and the table from those numbers (:func:`compare_runs`).

Training the networks first (or reusing their runs) is the front door's
:func:`convatlas.train.compare_models`.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from convatlas._io import atomic_write_text
from convatlas.analysis import summary
from convatlas.compare.chart import Point, bubble_chart
from convatlas.compare.published import write_table
from convatlas.registry import model_card
from convatlas.tasks import load_run

__all__ = ["measure_latency", "compare_runs", "Comparison", "ComparisonRow"]


def measure_latency(
    model: nn.Module, input_shape: tuple[int, int, int], batch: int = 1, *,
    repeats: int = 10, warmup: int = 2, device: str | torch.device = "cpu",
) -> float:
    """Median wall-clock milliseconds per image of ``model`` in eval mode on ``batch`` images."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    device = torch.device(device)
    model = model.eval().to(device)
    x = torch.randn(batch, *input_shape, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            sync()
            start = time.perf_counter()
            model(x)
            sync()
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times) / batch


@dataclass
class ComparisonRow:
    name: str
    family: str
    params: int
    macs: int
    accuracy: float  # test top-1, percent
    top5: float | None
    latency_ms: float  # CPU, batch 1, per image
    latency_ms_batch: float  # CPU, larger batch, per image
    latency_batch: int
    gpu_latency_ms: float | None
    train_seconds: float
    epochs: int
    run_dir: str
    reused: bool = False


@dataclass
class Comparison:
    rows: list[ComparisonRow]
    out: Path
    files: list[Path] = field(default_factory=list)

    def print(self) -> None:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"comparison ({self.out})")
        for col in ("network", "test acc %", "params", "MACs", "ms/img b1", f"ms/img b{self.rows[0].latency_batch}",
                    "train s", "run"):
            table.add_column(col, justify="left" if col in ("network", "run") else "right")
        for r in self.rows:
            table.add_row(r.name, f"{r.accuracy:.2f}", f"{r.params / 1e6:.3f}M", f"{r.macs / 1e6:.1f}M",
                          f"{r.latency_ms:.2f}", f"{r.latency_ms_batch:.3f}", f"{r.train_seconds:.0f}",
                          "reused" if r.reused else "trained")
        console = Console()
        console.print(table)
        for f in self.files:
            console.print(f"  wrote {f}")


def compare_runs(runs: Sequence[tuple[str, Path, bool]], out: str | Path, *, data: str,
                 latency_batch: int = 32) -> Comparison:
    """Measure each finished run ``(name, run_dir, reused)`` and write the charts and tables to ``out``:
    ``comparison_chart`` (accuracy vs MACs, circle area = parameters), ``latency_chart``,
    ``comparison_table`` and ``comparison.json``."""
    out = Path(out)
    rows = []
    for name, run_dir, reused in runs:
        run = load_run(run_dir)
        summ = json.loads((run_dir / "summary.json").read_text())
        shape = (run.in_channels, run.image_size, run.image_size)
        report = summary(run.model, shape)
        gpu = measure_latency(run.model, shape, 1, device="cuda") if torch.cuda.is_available() else None
        rows.append(ComparisonRow(
            name=name, family=model_card(name).family, params=int(report.total_params), macs=int(report.total_macs),
            accuracy=100.0 * float(summ["test_acc"]),
            top5=None if summ.get("test_top5") is None else 100.0 * float(summ["test_top5"]),
            latency_ms=measure_latency(run.model, shape, 1),
            latency_ms_batch=measure_latency(run.model, shape, latency_batch, repeats=5),
            latency_batch=latency_batch, gpu_latency_ms=gpu,
            train_seconds=float(summ.get("train_seconds", 0.0)), epochs=int(summ.get("epochs", 0)),
            run_dir=str(run_dir), reused=reused,
        ))
    points = [Point(name=r.name, family=r.family, params=r.params, macs=r.macs, accuracy=r.accuracy,
                    latency_ms=r.latency_ms, accuracy_source=f"test top-1 on {data}") for r in rows]
    files = bubble_chart(points, out / "comparison_chart",
                         title=f"Test accuracy on {data} vs MACs (circle area ∝ parameters)")
    files += bubble_chart(points, out / "latency_chart", x="latency",
                          title=f"Test accuracy on {data} vs CPU latency (circle area ∝ parameters)")
    files += write_table(points, out / "comparison_table")
    files.append(atomic_write_text(out / "comparison.json", json.dumps([asdict(r) for r in rows], indent=2) + "\n"))
    return Comparison(rows=rows, out=out, files=files)
