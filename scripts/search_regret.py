"""Strategies compared on the tabulated benchmark ``mini_digits`` by lookup: median regret (the
table's best validation accuracy minus the best found) after N evaluations over 100 seeds, per
strategy; writes docs/search/regret.{md,json,png}.

    python scripts/search_regret.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from convatlas.search.charts import plot_best_so_far
from convatlas.search.table import load_table, regret_table

DOCS = Path(__file__).resolve().parents[1] / "docs" / "search"
BUDGETS = (10, 25, 50, 100, 200)
STRATEGIES = {
    "random": {"strategy": "random"},
    "evolution (P=20, S=5)": {"strategy": "evolution", "population": 20, "sample_size": 5},
    "reinforce (paper: Adam 6e-4, m=8)": {"strategy": "reinforce"},
    "reinforce (Adam 1e-2, m=8)": {"strategy": "reinforce", "lr": 1e-2},
}


def main(seeds: int = 100) -> int:
    table = load_table("mini_digits")
    start = time.perf_counter()
    results = regret_table(table, STRATEGIES, BUDGETS, seeds=seeds)
    seconds = time.perf_counter() - start
    accs = np.asarray([r["val_acc"] for r in table.rows.values()])
    lines = [f"Regret on `mini_digits` ({len(table)} architectures; best validation accuracy {100 * table.best:.2f}%, "
             f"median {100 * np.median(accs):.2f}%), in percentage points of validation accuracy: median "
             f"[25th-75th percentile] over {seeds} seeds, after N evaluations ({seconds:.0f} s by lookup).", "",
             "| strategy | " + " | ".join(f"N={n}" for n in BUDGETS) + " |",
             "|---|" + "---|" * len(BUDGETS)]
    for name, r in results.items():
        cells = [f"{100 * r['median'][n]:.2f} [{100 * r['q25'][n]:.2f}-{100 * r['q75'][n]:.2f}]" for n in BUDGETS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    (DOCS / "regret.md").write_text(text)
    (DOCS / "regret.json").write_text(json.dumps({k: {m: v[m] for m in ("median", "q25", "q75")}
                                                   for k, v in results.items()}, indent=2) + "\n")
    curves = {name: [list(100 * np.asarray(c)) for c in r["curves"]] for name, r in results.items()}
    plot_best_so_far(curves, DOCS / "regret.png", ylabel="regret (points of validation accuracy)",
                     title=f"strategies on the mini_digits table (median, IQR over {seeds} seeds)")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
