"""The chart of the notes: top-1 accuracy against operations, each network a circle whose area
is proportional to its parameters (after Canziani, Paszke & Culurciello 2016, Fig. 2)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from convatlas._io import atomic_save

__all__ = ["Point", "bubble_chart", "size_legend_values"]


@dataclass(frozen=True)
class Point:
    """One network on the chart."""

    name: str
    family: str
    params: int
    macs: int
    accuracy: float | None  # top-1, percent
    year: int | None = None
    accuracy_source: str = ""
    latency_ms: float | None = None


def size_legend_values(params: Sequence[int], count: int = 4) -> list[int]:
    """Round parameter counts (1-2-5 steps) spanning the data, for the circle-size legend."""
    lo, hi = max(min(params), 1), max(max(params), 1)
    nice = [m * 10**e for e in range(0, 12) for m in (1, 2, 5)]
    inside = [v for v in nice if lo <= v <= hi] or [hi]
    if len(inside) <= count:
        return inside
    step = (len(inside) - 1) / (count - 1)
    return [inside[round(i * step)] for i in range(count)]


def _fmt_params(n: float) -> str:
    return f"{n / 1e6:g}M" if n >= 1e6 else f"{n / 1e3:g}K"


def bubble_chart(
    points: Sequence[Point],
    path: str | Path,
    *,
    x: str = "macs",
    title: str = "Top-1 accuracy vs operations (circle area ∝ parameters)",
    log_x: bool | None = None,
    formats: Sequence[str] = ("png", "svg"),
) -> list[Path]:
    """Draw accuracy (y) against MACs or latency (``x="macs"|"latency"``), circle area ∝ params.

    ``path`` is the file stem; one file per format is written (atomically). Returns the paths.
    Points without an accuracy are left out.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if x not in ("macs", "latency"):
        raise ValueError(f"x must be 'macs' or 'latency', got {x!r}")
    shown = [p for p in points if p.accuracy is not None and (x == "macs" or p.latency_ms is not None)]
    if not shown:
        raise ValueError("no point has an accuracy (and latency, for x='latency') to draw")
    # GMACs for ImageNet-sized networks, MMACs for small ones (the demo's digits networks).
    mac_unit, mac_scale = ("G", 1e9) if max(p.macs for p in shown) >= 1e8 else ("M", 1e6)
    xs = [p.macs / mac_scale if x == "macs" else p.latency_ms for p in shown]
    ys = [p.accuracy for p in shown]
    biggest = max(p.params for p in shown)
    area = lambda n: 30 + 2500 * n / biggest  # noqa: E731 - points^2, proportional to params
    if log_x is None:
        log_x = max(xs) / max(min(xs), 1e-12) > 50

    families = sorted({p.family for p in shown})
    cmap = plt.get_cmap("tab20" if len(families) > 10 else "tab10")
    colour = {f: cmap(i % cmap.N) for i, f in enumerate(families)}
    fig, ax = plt.subplots(figsize=(11, 7), dpi=110)
    for p, xv, yv in zip(shown, xs, ys):
        ax.scatter(xv, yv, s=area(p.params), color=colour[p.family], alpha=0.55, edgecolors="black", linewidths=0.6)
        ax.annotate(p.name, (xv, yv), textcoords="offset points", xytext=(0, 0), ha="center", va="center", fontsize=7)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(f"{mac_unit}MACs per image (multiply-accumulates of conv + linear layers)" if x == "macs"
                  else "CPU latency per image, ms (batch 1)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    pad = (max(ys) - min(ys)) * 0.12 or 1.0
    ax.set_ylim(min(ys) - pad, max(ys) + pad)
    size_handles = [
        ax.scatter([], [], s=area(v), color="grey", alpha=0.4, edgecolors="black", label=_fmt_params(v))
        for v in size_legend_values([p.params for p in shown])
    ]
    legend = ax.legend(handles=size_handles, title="parameters", loc="lower right", labelspacing=1.6,
                       borderpad=1.1, frameon=True)
    ax.add_artist(legend)
    family_handles = [plt.Line2D([], [], marker="o", ls="", color=colour[f], label=f) for f in families]
    # Outside the axes, to the right: inside it would cover the points of the top-left corner.
    ax.legend(handles=family_handles, title="family", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7,
              borderaxespad=0.0)
    fig.tight_layout()
    written = []
    stem = Path(path)
    # SVG keeps its labels as text (searchable, selectable in the atlas), not as glyph paths.
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        for fmt in formats:
            out = stem.with_suffix(f".{fmt}")
            written.append(atomic_save(out, lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt)))
    plt.close(fig)
    return written
