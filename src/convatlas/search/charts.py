"""A search's charts: best-so-far against trials (median and interquartile band when several
seeds are given), the accuracy-against-MACs Pareto front, and the controller's mean reward and
policy entropy per update."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["best_so_far", "pareto_front", "plot_best_so_far", "plot_pareto", "plot_controller", "plot_search"]


def best_so_far(values: Sequence[float]) -> list[float]:
    """The running maximum of ``values``."""
    return list(np.maximum.accumulate(np.asarray(values, dtype=float))) if len(values) else []


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points (cost, score) that no other point beats on both: lower or equal cost
    and higher score, or lower cost and equal score. Sorted by cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -np.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def _figure(width: float = 7, height: float = 4.2) -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110)


def _finish(fig: Any, ax: Any, path: str | Path, xlabel: str, ylabel: str, title: str) -> Path:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def plot_best_so_far(curves: Mapping[str, Sequence[Sequence[float]]], path: str | Path, *,
                     ylabel: str = "best validation accuracy so far", title: str = "") -> Path:
    """``curves``: per strategy, one best-so-far series per seed. The median over seeds is drawn,
    with the 25-75% band when there are several."""
    fig = _figure()
    ax = fig.add_subplot()
    for name, runs in curves.items():
        length = min(len(r) for r in runs)
        data = np.asarray([r[:length] for r in runs], dtype=float)
        x = np.arange(1, length + 1)
        median = np.median(data, axis=0)
        line, = ax.plot(x, median, label=f"{name} (median of {len(runs)})" if len(runs) > 1 else name)
        if len(runs) > 1:
            ax.fill_between(x, np.percentile(data, 25, axis=0), np.percentile(data, 75, axis=0),
                            color=line.get_color(), alpha=0.2, linewidth=0)
    return _finish(fig, ax, path, "trials", ylabel, title or "best so far")


def plot_pareto(rows: Sequence[Mapping[str, Any]], path: str | Path, *, title: str = "") -> Path:
    """Validation accuracy against MACs of every trial, the Pareto front joined."""
    fig = _figure()
    ax = fig.add_subplot()
    macs = [r["macs"] / 1e6 for r in rows]
    acc = [100 * r["val_acc"] for r in rows]
    ax.scatter(macs, acc, s=14, alpha=0.5, label="trials")
    front = pareto_front(list(zip(macs, acc)))
    ax.plot([macs[i] for i in front], [acc[i] for i in front], "o-", color="C3", markersize=4, label="Pareto front")
    return _finish(fig, ax, path, "MACs per image (millions, meta-device analysis)", "validation accuracy (%)",
                   title or "accuracy against cost")


def plot_controller(updates: Sequence[Mapping[str, float]], path: str | Path, *, title: str = "") -> Path:
    """The controller's mean reward (with its baseline) and policy entropy per update."""
    fig = _figure(9, 3.8)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    x = [u["update"] for u in updates]
    left.plot(x, [u["mean_reward"] for u in updates], label="mean reward of the batch")
    left.plot(x, [u["baseline"] for u in updates], "--", label="baseline (EMA)")
    left.set_xlabel("controller update")
    left.set_ylabel("reward")
    left.legend()
    left.grid(alpha=0.3)
    right.plot(x, [u["entropy"] for u in updates], color="C2")
    right.set_xlabel("controller update")
    right.set_ylabel("policy entropy (nats per architecture)")
    right.grid(alpha=0.3)
    fig.suptitle(title or "REINFORCE controller")
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def plot_search(out: str | Path, rows: Sequence[Mapping[str, Any]], stats: Mapping[str, Any]) -> list[Path]:
    """The charts of one search into ``out``: best_so_far.png, pareto.png and, for the
    controller, controller.png."""
    out = Path(out)
    paths = [plot_best_so_far({"this search": [best_so_far([r["val_acc"] for r in rows])]}, out / "best_so_far.png"),
             plot_pareto(rows, out / "pareto.png")]
    if stats.get("updates"):
        paths.append(plot_controller(stats["updates"], out / "controller.png"))
    return paths
