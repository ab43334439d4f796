"""The run directory, and writing files into it atomically (temp file in the same folder, then
``os.replace``), so a crash never leaves a half-written file where a good one was.

Layout (a contract other parts of convatlas read)::

    RUN_DIR/config.yaml          the resolved TrainConfig (+ what was derived: image size, classes)
    RUN_DIR/summary.json         test_acc (fraction), test_top5, train_seconds, epochs, images_per_second, ...
    RUN_DIR/metrics.csv          one row per epoch
    RUN_DIR/metrics.jsonl        the same rows as JSON lines
    RUN_DIR/checkpoints/last.pt  the state at the end of the last epoch (or at Ctrl-C)
    RUN_DIR/checkpoints/best.pt  the epoch with the best test accuracy
    RUN_DIR/curves.png           loss and accuracy per epoch
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import yaml

__all__ = [
    "CONFIG", "SUMMARY", "METRICS_CSV", "METRICS_JSONL", "CURVES", "LAST", "BEST",
    "atomic_write", "write_text", "write_json", "write_yaml", "read_yaml", "new_run_dir",
    "write_metrics", "plot_curves", "is_run_dir",
]

CONFIG = "config.yaml"
SUMMARY = "summary.json"
METRICS_CSV = "metrics.csv"
METRICS_JSONL = "metrics.jsonl"
CURVES = "curves.png"
LAST = Path("checkpoints") / "last.pt"
BEST = Path("checkpoints") / "best.pt"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file


def atomic_write(path: Path, write: Callable[[Any], None], binary: bool = False) -> None:
    """Call ``write(file)`` on a temp file next to ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, _FILE_MODE)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8", "newline": ""})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text))


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become None (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(_clean(data), indent=2) + "\n")


def write_yaml(path: Path, data: Any) -> None:
    write_text(path, yaml.safe_dump(_clean(data), sort_keys=False))


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


def new_run_dir(out: str | os.PathLike | None, model: str, data: str) -> Path:
    """The folder a new run writes into: ``out``, or ``runs/<model>-<data>-<time>`` (made unique).

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
    data_tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(data).name or data)
    stem = f"runs/{model}-{data_tag}-{time.strftime('%Y%m%d-%H%M%S')}"
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
    write_text(run_dir / METRICS_CSV, buffer.getvalue())
    write_text(run_dir / METRICS_JSONL, "".join(json.dumps(_clean(row)) + "\n" for row in history))


def plot_curves(run_dir: Path, history: list[dict[str, Any]], title: str = "") -> Path:
    """Loss and accuracy per epoch (train and test) as ``curves.png``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    epochs = [row["epoch"] for row in history]
    fig = Figure(figsize=(10, 4), dpi=100)
    ax_loss, ax_acc = fig.subplots(1, 2)
    for key, label, ax, scale in (
        ("train_loss", "train", ax_loss, 1), ("test_loss", "test", ax_loss, 1),
        ("train_acc", "train", ax_acc, 100), ("test_acc", "test", ax_acc, 100),
    ):
        points = [(e, row[key] * scale) for e, row in zip(epochs, history) if row.get(key) is not None]
        if points:
            ax.plot(*zip(*points), marker="o", markersize=3, label=label)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="top-1 accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(run_dir) / CURVES
    atomic_write(path, lambda f: fig.savefig(f, format="png"), binary=True)
    return path
