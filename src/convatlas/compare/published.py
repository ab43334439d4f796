"""The zoo's published ImageNet results on one chart, with parameters and MACs measured by the
analysis (not copied from the papers), and the same numbers as CSV and Markdown tables."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from convatlas._io import atomic_write_text
from convatlas.compare.chart import Point, bubble_chart
from convatlas.registry import list_models, model_card

__all__ = ["measured_cost", "published_points", "write_table", "compare_published"]


def measured_cost(name: str) -> tuple[int, int]:
    """(parameters, MACs) of a registered network at its native input size, measured by the
    analysis on the meta device (no weights are allocated)."""
    from convatlas.analysis import measure_zoo_model

    m = measure_zoo_model(name)
    return int(m.params), int(m.macs)


def published_points(names: Sequence[str] | None = None) -> list[Point]:
    """One point per ImageNet network whose card has a published top-1 accuracy."""
    points = []
    for name in names if names is not None else list_models():
        card = model_card(name)
        if card.top1 is None or card.dataset != "imagenet":
            continue
        params, macs = measured_cost(name)
        points.append(Point(name=name, family=card.family, params=params, macs=macs,
                            accuracy=float(card.top1.value), year=card.year, accuracy_source=card.top1.source))
    return sorted(points, key=lambda p: p.macs)


_COLUMNS = ("name", "family", "year", "params", "macs", "accuracy", "latency_ms", "accuracy_source")


def write_rows(rows: Sequence[dict], columns: Sequence[str], markdown: Sequence[str], stem: str | Path) -> list[Path]:
    """Write one table three ways: ``stem.csv`` (``columns`` of ``rows``), ``stem.md`` (the
    given ``markdown`` lines) and ``stem.json`` (``rows``), each atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    stem = Path(stem)
    return [
        atomic_write_text(stem.with_suffix(".csv"), buf.getvalue()),
        atomic_write_text(stem.with_suffix(".md"), "\n".join(markdown) + "\n"),
        atomic_write_text(stem.with_suffix(".json"), json.dumps(list(rows), indent=2) + "\n"),
    ]


def write_table(points: Sequence[Point], stem: str | Path, score: str = "top-1 %") -> list[Path]:
    """Write ``stem.csv``, ``stem.md`` and ``stem.json`` with one row per point; ``score`` heads
    the markdown column of :attr:`Point.accuracy`."""
    rows = [{k: asdict(p)[k] for k in _COLUMNS} for p in points]
    md = [f"| network | family | year | params (M) | GMACs | {score} | latency ms | accuracy source |",
          "|---|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.2f}"
        lat = "-" if r["latency_ms"] is None else f"{r['latency_ms']:.2f}"
        md.append(f"| {r['name']} | {r['family']} | {r['year'] or '-'} | {r['params'] / 1e6:.3f} | "
                  f"{r['macs'] / 1e9:.3f} | {acc} | {lat} | {r['accuracy_source']} |")
    return write_rows(rows, _COLUMNS, md, stem)


def compare_published(out_dir: str | Path, names: Sequence[str] | None = None) -> dict[str, list[Path]]:
    """Chart (PNG + SVG) and table (CSV, Markdown, JSON) of the published results, in ``out_dir``."""
    points = published_points(names)
    if not points:
        raise ValueError("none of the chosen networks has a published ImageNet top-1 accuracy")
    out = Path(out_dir)
    chart = bubble_chart(points, out / "published_chart",
                         title="Published ImageNet top-1 vs measured MACs (circle area ∝ parameters)")
    return {"chart": chart, "table": write_table(points, out / "published_table")}
