"""The run directory: its layout, a fresh one for a new run, and the per-epoch files.

Layout (a contract other parts of convatlas read)::

    RUN_DIR/config.yaml          the resolved configuration (+ what was derived from the data)
    RUN_DIR/summary.json         status, final and best test metrics, timings, threads, ...
    RUN_DIR/metrics.csv          one row per epoch
    RUN_DIR/metrics.jsonl        the same rows as JSON lines
    RUN_DIR/checkpoints/last.pt  the state at the end of the last epoch (or at Ctrl-C)
    RUN_DIR/checkpoints/best.pt  the epoch with the best primary test metric
    RUN_DIR/curves.png           losses and the primary metric per epoch

Every file is written atomically (:mod:`convatlas._io`).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import yaml

from convatlas._io import atomic_save, atomic_write_text, json_safe

__all__ = [
    "CONFIG", "SUMMARY", "METRICS_CSV", "METRICS_JSONL", "CURVES", "LAST", "BEST",
    "read_yaml", "new_run_dir", "write_metrics", "plot_curves", "is_run_dir",
]

CONFIG = "config.yaml"
SUMMARY = "summary.json"
METRICS_CSV = "metrics.csv"
METRICS_JSONL = "metrics.jsonl"
CURVES = "curves.png"
LAST = Path("checkpoints") / "last.pt"
BEST = Path("checkpoints") / "best.pt"


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a mapping")
    return data


def is_run_dir(path: Path) -> bool:
    path = Path(path)
    return (path / CONFIG).is_file() or (path / LAST).is_file() or (path / BEST).is_file()


def new_run_dir(out: str | os.PathLike | None, *tags: str) -> Path:
    """The folder a new run writes into: ``out``, or ``runs/<tag>-<tag>-<time>`` (made unique).

    An ``out`` that already holds a run is an error (use ``resume`` to continue it), so nothing
    in it is overwritten.
    """
    if out is not None:
        path = Path(out)
        if path.exists() and not path.is_dir():
            raise ValueError(f"--out {path} exists and is not a folder")
        if is_run_dir(path):
            raise ValueError(
                f"{path} already holds a run (config.yaml / checkpoints); continue it with "
                f"resume={str(path)!r} (--resume {path}) or choose another output folder"
            )
        return path
    clean = [re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(tag).name or tag) for tag in tags]
    stem = f"runs/{'-'.join(clean)}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = Path(stem), 1
    while path.exists():
        n += 1
        path = Path(f"{stem}-{n}")
    return path


def write_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """``metrics.csv`` and ``metrics.jsonl``, one row per epoch (rewritten whole, atomically)."""
    columns: list[str] = []
    for row in history:
        columns.extend(k for k in row if k not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in columns})
    atomic_write_text(run_dir / METRICS_CSV, buffer.getvalue())
    atomic_write_text(run_dir / METRICS_JSONL, "".join(json.dumps(json_safe(row)) + "\n" for row in history))


def plot_curves(run_dir: Path, history: list[dict[str, Any]], metric: str, metric_label: str, *,
                percent: bool = False, title: str = "") -> Path:
    """Every loss term (train and test) and the ``metric`` (train and test) per epoch, as ``curves.png``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    epochs = [row["epoch"] for row in history]
    losses = [k for k in dict.fromkeys(k for row in history for k in row) if re.match(r"(train|test)_loss", k)]
    fig = Figure(figsize=(10, 4), dpi=100)
    ax_loss, ax_metric = fig.subplots(1, 2)
    series = [(k, k.replace("_", " ", 1), ax_loss, 1) for k in losses]
    series += [(f"{split}_{metric}", split, ax_metric, 100 if percent else 1) for split in ("train", "test")]
    for key, label, ax, scale in series:
        points = [(e, row[key] * scale) for e, row in zip(epochs, history) if row.get(key) is not None]
        if points:
            ax.plot(*zip(*points), marker="o", markersize=3, label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_metric.set(xlabel="epoch", ylabel=metric_label + (" (%)" if percent else ""), title=metric_label)
    for ax in (ax_loss, ax_metric):
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return atomic_save(Path(run_dir) / CURVES, lambda f: fig.savefig(f, format="png"))
