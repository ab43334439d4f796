"""A tabulated benchmark: every member of a small space trained once with the proxy, shipped as
package data (as NAS-Bench-201 does for CIFAR), so that strategies can be compared over many
seeds in seconds by lookup.

``mini_digits`` holds the 512 members of the ``mini`` space trained with the default proxy
(3,000 / 1,000 of the embedded digits' training images at 14 px, 2 epochs, seed = the member's
index in :meth:`SearchSpace.enumerate` order): validation accuracy and loss, MACs, parameters
and training seconds. ``scripts/build_search_table.py`` rebuilds it (about half an hour on two
cores). :func:`simulate` runs a strategy against a table: each ask is answered by the table's
validation accuracy, and the regret after ``n`` evaluations is the best accuracy of the table
minus the best found so far.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from convatlas._io import atomic_write_text
from convatlas.search.proxy import ProxyConfig, evaluate_genotype
from convatlas.search.space import SearchSpace, get_space
from convatlas.search.strategies import make_strategy

__all__ = ["Table", "load_table", "list_tables", "build_table", "simulate", "regret_table"]


@dataclass
class Table:
    """Rows of a tabulated space, by point."""

    name: str
    space: SearchSpace
    proxy: dict[str, Any]
    rows: dict[tuple[int, ...], dict[str, Any]]

    def __len__(self) -> int:
        return len(self.rows)

    def lookup(self, point: Sequence[int]) -> dict[str, Any]:
        return self.rows[tuple(point)]

    @property
    def best(self) -> float:
        return max(r["val_acc"] for r in self.rows.values())

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "space": self.space.name, "space_options": {"layers": self.space.settings["layers"]},
                           "proxy": self.proxy, "rows": [{"point": list(p), **r} for p, r in sorted(self.rows.items())]},
                          indent=None, separators=(",", ":")) + "\n"


def list_tables() -> list[str]:
    folder = resources.files("convatlas.search") / "tables"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def load_table(name_or_path: str | os.PathLike = "mini_digits") -> Table:
    """A packaged table by name (:func:`list_tables`) or a table file."""
    path = Path(name_or_path)
    if path.suffix != ".json":
        if str(name_or_path) not in list_tables():
            raise ValueError(f"unknown table {name_or_path!r} (tables: {', '.join(list_tables()) or 'none'})")
        text = (resources.files("convatlas.search") / "tables" / f"{name_or_path}.json").read_text()
    else:
        text = path.read_text()
    data = json.loads(text)
    space = get_space(data["space"], **data.get("space_options", {}))
    rows = {tuple(r.pop("point")): r for r in data["rows"]}
    return Table(data["name"], space, data["proxy"], rows)


def build_table(space: SearchSpace, proxy: ProxyConfig, path: str | os.PathLike, *, name: str,
                points: Iterable[Sequence[int]] | None = None, log: Callable[[str], None] = print) -> Table:
    """Train every point of ``space`` (or ``points``) with ``proxy``; ``path`` is written after
    every member (atomically), and a partial file is continued where it stopped."""
    path = Path(path)
    rows: dict[tuple[int, ...], dict[str, Any]] = {}
    if path.exists():
        rows = load_table(path).rows
    work = Path(tempfile.mkdtemp(prefix="convatlas-table-"))
    try:
        for index, point in enumerate(points if points is not None else space.enumerate()):
            point = tuple(point)
            if point in rows:
                continue
            m = evaluate_genotype(space.genotype(point), proxy, work / "run", seed=index)
            shutil.rmtree(work / "run", ignore_errors=True)
            rows[point] = {k: m[k] for k in ("val_acc", "val_loss", "train_loss", "macs", "params", "train_seconds")}
            table = Table(name, space, proxy.to_dict(), rows)
            atomic_write_text(path, table.to_json())
            log(f"{len(rows)}/{space.size} {list(point)}: val acc {m['val_acc']:.4f}, {m['macs'] / 1e6:.2f}M MACs, "
                f"{m['train_seconds']:.1f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Table(name, space, proxy.to_dict(), rows)


def simulate(table: Table, strategy: str, budget: int, seed: int = 0, **options: Any) -> list[float]:
    """Regret after each of ``budget`` evaluations of ``strategy`` answered by ``table``: the
    table's best validation accuracy minus the best found so far. A repeated point costs an
    evaluation, as it would in a real search."""
    s = make_strategy(strategy, table.space, seed, **options)
    best, regret = -np.inf, []
    for _ in range(budget):
        point = s.ask()
        value = table.lookup(point)["val_acc"]
        s.tell(point, value)
        best = max(best, value)
        regret.append(table.best - best)
    return regret


def regret_table(table: Table, strategies: Mapping[str, Mapping[str, Any]], budgets: Sequence[int],
                 seeds: int = 100) -> dict[str, dict[str, Any]]:
    """Median (and 25/75th percentile) regret after each of ``budgets`` evaluations over
    ``seeds`` seeds, per strategy (``{name: options}``), with every curve for charts."""
    results: dict[str, dict[str, Any]] = {}
    for label, options in strategies.items():
        opts = dict(options)
        name = opts.pop("strategy", label)
        curves = np.asarray([simulate(table, name, max(budgets), seed, **opts) for seed in range(seeds)])
        results[label] = {
            "median": {n: float(np.median(curves[:, n - 1])) for n in budgets},
            "q25": {n: float(np.percentile(curves[:, n - 1], 25)) for n in budgets},
            "q75": {n: float(np.percentile(curves[:, n - 1], 75)) for n in budgets},
            "curves": curves.tolist(),
        }
    return results
