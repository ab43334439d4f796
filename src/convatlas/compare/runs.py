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
from convatlas.compare.published import write_rows, write_table
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
    name: str  # the network as compared: a registered name, or NAME:key=value for a variant
    family: str
    params: int
    macs: int
    accuracy: float  # the run's primary test score, percent: top-1 (classification) or mIoU (segmentation)
    top5: float | None
    latency_ms: float  # CPU, batch 1, per image
    latency_ms_batch: float  # CPU, larger batch, per image
    latency_batch: int
    gpu_latency_ms: float | None
    train_seconds: float
    epochs: float
    run_dir: str
    reused: bool = False
    task: str = "classification"
    metric: str = "test top-1 %"  # what ``accuracy`` is
    pixel_acc: float | None = None  # segmentation: test pixel accuracy, percent
    activation_bytes: int = 0  # what the forward pass of one image writes (the full-resolution net's cost)


# What a comparison reads from each task's summary.json: (key, label of the score).
_SCORE = {"classification": ("test_acc", "test top-1 %"), "segmentation": ("test_miou", "test mIoU %")}


@dataclass
class Comparison:
    rows: list[ComparisonRow]
    out: Path
    files: list[Path] = field(default_factory=list)

    def print(self) -> None:
        from rich.console import Console
        from rich.table import Table

        from convatlas.analysis.report import format_bytes

        segmentation = self.rows[0].task == "segmentation"
        table = Table(title=f"comparison ({self.out})")
        columns = ["network", self.rows[0].metric]
        columns += ["pixel acc %", "activations/img"] if segmentation else []
        columns += ["params", "MACs", "ms/img b1", "ms/img (batch)", "train s", "run"]
        for col in columns:
            table.add_column(col, justify="left" if col in ("network", "run") else "right")
        for r in self.rows:
            cells = [r.name, f"{r.accuracy:.2f}"]
            if segmentation:
                cells += [f"{r.pixel_acc:.2f}" if r.pixel_acc is not None else "-", format_bytes(r.activation_bytes)]
            cells += [f"{r.params / 1e6:.3f}M", f"{r.macs / 1e6:.1f}M", f"{r.latency_ms:.2f}",
                      f"{r.latency_ms_batch:.3f} (b{r.latency_batch})", f"{r.train_seconds:.0f}",
                      "reused" if r.reused else "trained"]
            table.add_row(*cells)
        console = Console()
        console.print(table)
        for f in self.files:
            console.print(f"  wrote {f}")


_SEGMENTATION_COLUMNS = ("name", "family", "accuracy", "pixel_acc", "params", "macs", "activation_bytes", "latency_ms",
                         "train_seconds", "epochs")


def _segmentation_table(rows: Sequence[ComparisonRow], stem: Path) -> list[Path]:
    """``stem.csv``/``.md``/``.json`` for segmentation rows: mIoU and pixel accuracy beside params,
    MACs, the activations one scene's forward pass writes, latency and training time."""
    table = [{k: asdict(r)[k] for k in _SEGMENTATION_COLUMNS} for r in rows]
    md = ["| network | family | mIoU % | pixel acc % | params (M) | MMACs | activations (MiB) | ms/image | train s | epochs |",
          "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in table:
        pixel = "-" if r["pixel_acc"] is None else f"{r['pixel_acc']:.2f}"
        md.append(f"| {r['name']} | {r['family']} | {r['accuracy']:.2f} | {pixel} | {r['params'] / 1e6:.3f} | "
                  f"{r['macs'] / 1e6:,.1f} | {r['activation_bytes'] / 2**20:.2f} | {r['latency_ms']:.2f} | "
                  f"{r['train_seconds']:.0f} | {r['epochs']:g} |")
    return write_rows(table, _SEGMENTATION_COLUMNS, md, stem)


def _batch_for_latency(latency_ms: float, largest: int, budget_ms: float = 400.0) -> int:
    """The larger latency batch, smaller for a network so slow that ``largest`` images would take
    longer than ``budget_ms`` (the sliding window labels a 64x64 scene in about half a second)."""
    return max(1, min(largest, int(budget_ms // max(latency_ms, 1e-6))))


def compare_runs(runs: Sequence[tuple[str, Path, bool]], out: str | Path, *, data: str,
                 latency_batch: int = 32) -> Comparison:
    """Measure each finished run ``(name, run_dir, reused)`` and write the charts and tables to ``out``:
    ``comparison_chart`` (score vs MACs, circle area = parameters), ``latency_chart``,
    ``comparison_table`` and ``comparison.json``.

    The score is the run's task's: test top-1 accuracy for classification, test mIoU for
    segmentation (whose rows also carry pixel accuracy and the activation bytes one image's
    forward pass writes). All runs must be of one task. The larger-batch latency uses
    ``latency_batch`` images, fewer for a network slower than 400 ms per batch of them.
    """
    out = Path(out)
    rows = []
    tasks = set()
    for name, run_dir, reused in runs:
        run = load_run(run_dir)
        tasks.add(run.task)
        if len(tasks) > 1:
            raise ValueError(f"a comparison charts one task's score; {name} ({run_dir}) is a {run.task} run and the "
                             f"others are not - compare classification and segmentation networks separately")
        if run.task not in _SCORE:
            raise ValueError(f"{name} ({run_dir}) is a {run.task} run; comparisons cover {', '.join(_SCORE)}")
        summ = json.loads((run_dir / "summary.json").read_text())
        key, metric = _SCORE[run.task]
        shape = (run.in_channels, run.image_size, run.image_size)
        report = summary(run.model, shape)
        gpu = measure_latency(run.model, shape, 1, device="cuda") if torch.cuda.is_available() else None
        latency = measure_latency(run.model, shape, 1)
        batch = _batch_for_latency(latency, latency_batch)
        rows.append(ComparisonRow(
            name=name, family=model_card(run.config["model"]).family, params=int(report.total_params),
            macs=int(report.total_macs), accuracy=100.0 * float(summ[key]),
            top5=None if summ.get("test_top5") is None else 100.0 * float(summ["test_top5"]),
            latency_ms=latency, latency_ms_batch=measure_latency(run.model, shape, batch, repeats=5),
            latency_batch=batch, gpu_latency_ms=gpu,
            train_seconds=float(summ.get("train_seconds", 0.0)), epochs=float(summ.get("epochs", 0)),
            run_dir=str(run_dir), reused=reused, task=run.task, metric=metric,
            pixel_acc=None if summ.get("test_pixel_acc") is None else 100.0 * float(summ["test_pixel_acc"]),
            activation_bytes=int(report.activation_bytes),
        ))
    metric = rows[0].metric
    points = [Point(name=r.name, family=r.family, params=r.params, macs=r.macs, accuracy=r.accuracy,
                    latency_ms=r.latency_ms, accuracy_source=f"{metric} on {data}") for r in rows]
    what = metric.replace("test ", "Test ").replace(" %", "")
    files = bubble_chart(points, out / "comparison_chart", y_label=f"{metric.replace(' %', '')} (%)",
                         title=f"{what} on {data} vs MACs (circle area ∝ parameters)")
    files += bubble_chart(points, out / "latency_chart", x="latency", y_label=f"{metric.replace(' %', '')} (%)",
                          title=f"{what} on {data} vs CPU latency (circle area ∝ parameters)")
    if rows[0].task == "segmentation":  # the notes' argument needs the activations beside the score
        files += _segmentation_table(rows, out / "comparison_table")
    else:
        files += write_table(points, out / "comparison_table", score=metric.replace("test ", ""))
    files.append(atomic_write_text(out / "comparison.json", json.dumps([asdict(r) for r in rows], indent=2) + "\n"))
    return Comparison(rows=rows, out=out, files=files)
