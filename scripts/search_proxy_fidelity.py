"""How well the proxy ranks: Kendall's tau (and Spearman's rho) between the tabulated proxy's
validation accuracy and a longer training (all 4,000 training digits at 28 px for 4 epochs, scored
on the 1,000 test digits) of a seeded sample of the ``mini`` space. Writes
docs/search/proxy_fidelity.{md,json,png}.

    python scripts/search_proxy_fidelity.py [SAMPLE]
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

from scipy import stats

from convatlas.search.proxy import ProxyConfig, evaluate_genotype
from convatlas.search.table import load_table

DOCS = Path(__file__).resolve().parents[1] / "docs" / "search"
LONG = ProxyConfig(image_size=28, epochs=4, train_size=4000, holdout="test", batch_size=64, lr=0.1)


def main(sample: int = 20) -> int:
    table = load_table("mini_digits")
    points = random.Random(0).sample(sorted(table.rows), sample)
    work = Path(tempfile.mkdtemp())
    rows = []
    try:
        for k, point in enumerate(points):
            m = evaluate_genotype(table.space.genotype(point), LONG, work / "run", seed=k)
            shutil.rmtree(work / "run", ignore_errors=True)
            rows.append({"point": list(point), "proxy_val_acc": table.lookup(point)["val_acc"],
                         "proxy_val_loss": table.lookup(point)["val_loss"], "long_test_acc": m["val_acc"],
                         "macs": m["macs"]})
            print(f"{k + 1}/{sample}: proxy {rows[-1]['proxy_val_acc']:.4f} long {m['val_acc']:.4f}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    proxy = [r["proxy_val_acc"] for r in rows]
    long = [r["long_test_acc"] for r in rows]
    tau, tau_p = stats.kendalltau(proxy, long)
    rho, rho_p = stats.spearmanr(proxy, long)
    loss_tau, _ = stats.kendalltau([-r["proxy_val_loss"] for r in rows], long)
    macs_tau, _ = stats.kendalltau([r["macs"] for r in rows], long)
    text = (f"Proxy fidelity on {sample} architectures of `mini` drawn with seed 0: the table's proxy (14 px, "
            f"2 epochs on 3,000 training digits, validation accuracy) against a longer training (28 px, 4 epochs "
            f"on all 4,000, test accuracy): Kendall tau {tau:.3f} (p = {tau_p:.2g}), Spearman rho {rho:.3f} "
            f"(p = {rho_p:.2g}); ranking by the proxy's validation loss instead: tau {loss_tau:.3f}; by MACs "
            f"alone: tau {macs_tau:.3f}. Long-training test accuracy {100 * min(long):.2f}-{100 * max(long):.2f}%.\n")
    (DOCS / "proxy_fidelity.md").write_text(text)
    (DOCS / "proxy_fidelity.json").write_text(json.dumps({"kendall_tau": tau, "spearman_rho": rho,
                                                         "tau_val_loss": loss_tau, "tau_macs": macs_tau,
                                                         "rows": rows}, indent=2) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 4.2), dpi=110)
    ax = fig.add_subplot()
    ax.scatter([100 * p for p in proxy], [100 * v for v in long], s=18)
    ax.set_xlabel("proxy validation accuracy (%): 14 px, 2 epochs")
    ax.set_ylabel("test accuracy (%): 28 px, 4 epochs")
    ax.set_title(f"proxy against longer training: Kendall tau {tau:.2f}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(DOCS / "proxy_fidelity.png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(*(int(a) for a in sys.argv[1:])))
