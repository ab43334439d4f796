"""EfficientNet's compound-scaling search (Tan & Le 2019, Sec. 3.3), at a scale two CPU cores
can run.

Step 1 (:func:`compound_grid`): at phi = 1, every (alpha, beta, gamma) on a grid of step 0.05 with
alpha in [1, 2], beta and gamma in [1, 1.5] and |alpha * beta^2 * gamma^2 - 2| within 5% of 2 -- 108
candidates (the bound strict: (1.9, 1, 1) is exactly 5% off), among them the paper's (1.2, 1.1, 1.15), whose product is 1.920. Each candidate
(or an evenly spread subset of ``candidates`` of them) is the base scaled by depth alpha,
width beta and resolution gamma, trained with the proxy; the best validation accuracy wins.

Step 2 (:func:`compare_scaling`): for each phi, the compound model (depth alpha^phi, width
beta^phi, resolution gamma^phi) against depth-only, width-only and resolution-only scaling, each
chosen so that its *measured* MACs (the meta-device analysis, after the rounding of channels,
repeats and pixels) come closest to the compound model's: the analogue of the paper's Table 3 and
Figure 8. Each is trained with ``seeds`` seeds and scored on the test split; the table gives the
mean and a 95% Student-t confidence interval, and says when the intervals overlap.

The base must be a zoo network whose builder takes ``width_mult`` and ``depth_mult`` (and
``resolution``): ``efficientnet_mini`` (14x14 digits, so that resolution can grow to the
digits' own 28 pixels and add real detail).
"""

from __future__ import annotations

import inspect
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from convatlas._io import atomic_write_text, write_json
from convatlas.registry import create_model, get_builder, list_models, model_card
from convatlas.search.proxy import ProxyConfig, cost, evaluate_network

__all__ = ["compound_grid", "Scaled", "scaled", "match_macs", "run_scale", "confidence_interval", "scalable_models"]


def compound_grid(step: float = 0.05, alpha: tuple[float, float] = (1.0, 2.0), beta: tuple[float, float] = (1.0, 1.5),
                  gamma: tuple[float, float] = (1.0, 1.5), target: float = 2.0,
                  tolerance: float = 0.05) -> list[tuple[float, float, float]]:
    """Every (alpha, beta, gamma) on the grid with ``|alpha beta^2 gamma^2 - target| < tolerance *
    target``, in lexicographic order. Computed in exact fractions: with the defaults the point
    (1.9, 1, 1), exactly 5% off, is left out, which leaves 108 candidates."""
    from fractions import Fraction

    if not step > 0:
        raise ValueError(f"step must be positive, got {step}")
    q = Fraction(str(step))

    def axis(lo: float, hi: float) -> list[Fraction]:
        start, stop = Fraction(str(lo)), Fraction(str(hi))
        return [start + q * i for i in range(int((stop - start) / q) + 1)]

    limit, goal = Fraction(str(tolerance)) * Fraction(str(target)), Fraction(str(target))
    return [(float(a), float(b), float(g)) for a in axis(*alpha) for b in axis(*beta) for g in axis(*gamma)
            if abs(a * b * b * g * g - goal) < limit]


def scalable_models() -> list[str]:
    """Zoo networks whose builder takes width_mult, depth_mult and resolution."""
    names = []
    for name in list_models():
        params = inspect.signature(get_builder(name)).parameters
        if {"width_mult", "depth_mult", "resolution"} <= set(params):
            names.append(name)
    return names


@dataclass(frozen=True)
class Scaled:
    """One scaled network: its multipliers, the side in pixels, and its measured cost."""

    method: str
    phi: float
    depth: float
    width: float
    resolution: int
    macs: int
    params: int

    def args(self) -> dict[str, Any]:
        return {"width_mult": self.width, "depth_mult": self.depth, "resolution": self.resolution}


def scaled(base: str, method: str, phi: float, depth: float, width: float, side: float) -> Scaled:
    """``base`` at these multipliers, its side rounded to whole pixels, with measured MACs/params."""
    card = model_card(base)
    resolution = int(round(card.input_size[1] * side))
    model = create_model(base, width_mult=width, depth_mult=depth, resolution=resolution)
    macs, params = cost(model, card.input_size[0], resolution)
    return Scaled(method, phi, depth, width, resolution, macs, params)


def match_macs(base: str, dimension: str, target: int, phi: float, limit: float = 4.0, steps: int = 61,
               max_side: float | None = None) -> Scaled:
    """The single-dimension scaling of ``base`` whose measured MACs come closest to ``target``
    (multipliers tried from 1 to ``limit`` in ``steps``; resolution in whole pixels up to
    ``max_side`` times the base's)."""
    card = model_card(base)
    best: Scaled | None = None
    if dimension == "resolution":
        base_side = card.input_size[1]
        top = int(round(base_side * (max_side or limit)))
        values = [s / base_side for s in range(base_side, top + 1)]
    else:
        values = list(np.linspace(1.0, limit, steps))
    for v in values:
        d, w, r = (v, 1.0, 1.0) if dimension == "depth" else (1.0, v, 1.0) if dimension == "width" else (1.0, 1.0, v)
        s = scaled(base, f"{dimension} only", phi, round(float(d), 4), round(float(w), 4), r)
        if best is None or abs(s.macs - target) < abs(best.macs - target):
            best = s
    assert best is not None
    return best


def confidence_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """(mean, half-width) of a Student-t interval over ``values``."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return float(x.mean()), float("nan")
    half = stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean()), float(half)


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _append(path: Path, rows: list[dict[str, Any]], row: dict[str, Any]) -> None:
    rows.append(row)
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def _train(base: str, s: Scaled, proxy: ProxyConfig, work: Path, seed: int) -> dict[str, Any]:
    p = ProxyConfig.from_dict({**proxy.to_dict(), "image_size": s.resolution})
    m = evaluate_network(lambda classes, channels: create_model(base, num_classes=classes, in_channels=channels, **s.args()),
                         p, work, seed=seed, model_name=base, variant_args=s.args())
    shutil.rmtree(work, ignore_errors=True)
    return m


def run_scale(base: str = "efficientnet_mini", *, out: str | os.PathLike = "runs/scale", data: str = "digits",
              phis: Sequence[float] = (1.0, 2.0), candidates: int = 12, seeds: int = 5,
              proxy: ProxyConfig | None = None, final: ProxyConfig | None = None,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Step 1 and step 2 of the module docstring, into ``out`` (``grid.jsonl``, ``comparison.jsonl``,
    ``scaling.json``, ``scaling.md``, ``scaling.png``); a folder left half done is continued."""
    if base not in scalable_models():
        raise ValueError(f"{base} cannot be scaled here: its builder needs width_mult, depth_mult and resolution "
                         f"arguments (networks that have them: {', '.join(scalable_models())})")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be a positive integer, got {seeds!r}")
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1:
        raise ValueError(f"candidates must be a positive integer, got {candidates!r}")
    if any(not p > 0 for p in phis):
        raise ValueError(f"every phi must be positive, got {list(phis)}")
    proxy = proxy or ProxyConfig(data=data)
    final = final or ProxyConfig.from_dict({**proxy.to_dict(), "holdout": "test", "epochs": 2 * proxy.epochs})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    grid = compound_grid()
    chosen = [grid[round(i * (len(grid) - 1) / max(candidates - 1, 1))] for i in range(min(candidates, len(grid)))]
    chosen = list(dict.fromkeys(chosen))
    grid_rows = _rows(out / "grid.jsonl")
    done = {(r["alpha"], r["beta"], r["gamma"]) for r in grid_rows}
    for k, (a, b, g) in enumerate(chosen):
        if (a, b, g) in done:
            continue
        s = scaled(base, "compound", 1.0, a, b, g)
        m = _train(base, s, proxy, work, seed=k)
        _append(out / "grid.jsonl", grid_rows, {"alpha": a, "beta": b, "gamma": g, "product": a * b * b * g * g,
                                               **s.args(), "macs": s.macs, "params": s.params,
                                               "val_acc": m["val_acc"], "val_loss": m["val_loss"]})
        log(f"grid {len(grid_rows)}/{len(chosen)}: alpha {a}, beta {b}, gamma {g} -> val acc {m['val_acc']:.4f} "
            f"({s.macs / 1e6:.2f}M MACs)")
    best = max(grid_rows, key=lambda r: (r["val_acc"], -r["macs"]))
    alpha, beta, gamma = best["alpha"], best["beta"], best["gamma"]
    log(f"best at phi = 1: alpha {alpha}, beta {beta}, gamma {gamma} (val acc {best['val_acc']:.4f})")

    base_model = scaled(base, "base", 0.0, 1.0, 1.0, 1.0)
    models: list[Scaled] = [base_model]
    for phi in phis:
        compound = scaled(base, "compound", phi, round(alpha ** phi, 4), round(beta ** phi, 4), gamma ** phi)
        max_side = 28 / model_card(base).input_size[1] if data in ("digits", "mnist") else None
        models += [compound] + [match_macs(base, dim, compound.macs, phi, max_side=max_side)
                                for dim in ("depth", "width", "resolution")]
    comp_rows = _rows(out / "comparison.jsonl")
    have = {(r["method"], r["phi"], r["seed"]) for r in comp_rows}
    for s in models:
        for seed in range(seeds):
            if (s.method, s.phi, seed) in have:
                continue
            m = _train(base, s, final, work, seed=1000 + seed)
            _append(out / "comparison.jsonl", comp_rows, {**s.__dict__, "seed": seed, "test_acc": m["val_acc"],
                                                          "test_loss": m["val_loss"]})
            log(f"{s.method} phi {s.phi:g} seed {seed}: test acc {m['val_acc']:.4f} ({s.macs / 1e6:.2f}M MACs)")
    summary = _summarise(models, comp_rows, base_model, (alpha, beta, gamma), best, seeds)
    write_json(out / "scaling.json", summary)
    atomic_write_text(out / "scaling.md", _markdown(summary))
    _plot(summary, out / "scaling.png")
    return summary


def _summarise(models: list[Scaled], rows: list[dict[str, Any]], base: Scaled, coefficients: tuple, best: dict,
               seeds: int) -> dict[str, Any]:
    table = []
    for s in models:
        accs = [r["test_acc"] for r in rows if r["method"] == s.method and r["phi"] == s.phi][:seeds]
        mean, half = confidence_interval(accs)
        table.append({**s.__dict__, "macs_ratio": s.macs / base.macs, "seeds": len(accs), "test_acc_mean": mean,
                      "test_acc_ci95": half, "test_accs": accs})
    verdicts = {}
    for phi in sorted({s.phi for s in models if s.phi > 0}):
        group = [t for t in table if t["phi"] == phi]
        comp = next(t for t in group if t["method"] == "compound")
        others = [t for t in group if t is not comp]
        overlap = [t["method"] for t in others
                   if abs(t["test_acc_mean"] - comp["test_acc_mean"]) <= t["test_acc_ci95"] + comp["test_acc_ci95"]]
        verdicts[str(phi)] = (f"phi {phi:g}: the compound model's interval overlaps {', '.join(overlap)}: "
                              f"those differences are within seed noise" if overlap else
                              f"phi {phi:g}: no interval overlaps the compound model's")
    return {"coefficients": {"alpha": coefficients[0], "beta": coefficients[1], "gamma": coefficients[2],
                             "val_acc": best["val_acc"]}, "table": table, "verdicts": verdicts}


def _markdown(summary: dict[str, Any]) -> str:
    c = summary["coefficients"]
    lines = [f"Compound coefficients found at phi = 1: alpha {c['alpha']}, beta {c['beta']}, gamma {c['gamma']} "
             f"(validation accuracy {100 * c['val_acc']:.2f}%).", "",
             "| phi | scaling | depth | width | side | MACs | x base | params | test acc (mean ± 95% CI) | seeds |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for t in summary["table"]:
        lines.append(f"| {t['phi']:g} | {t['method']} | {t['depth']:.3g} | {t['width']:.3g} | {t['resolution']} | "
                     f"{t['macs'] / 1e6:.2f}M | {t['macs_ratio']:.2f} | {t['params']:,} | "
                     f"{100 * t['test_acc_mean']:.2f} ± {100 * t['test_acc_ci95']:.2f} | {t['seeds']} |")
    lines += ["", *summary["verdicts"].values(), ""]
    return "\n".join(lines)


def _plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2), dpi=110)
    ax = fig.add_subplot()
    for k, method in enumerate(["compound", "depth only", "width only", "resolution only"]):
        pts = sorted((t for t in summary["table"] if t["method"] in (method, "base")), key=lambda t: t["macs"])
        ax.errorbar([t["macs"] / 1e6 for t in pts], [100 * t["test_acc_mean"] for t in pts],
                    yerr=[100 * (t["test_acc_ci95"] if math.isfinite(t["test_acc_ci95"]) else 0) for t in pts],
                    marker="o", capsize=3, label=method, color=f"C{k}")
    ax.set_xlabel("MACs per image (millions, measured)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("scaling one dimension or all three (mean, 95% CI over seeds)")
    fig.tight_layout()
    fig.savefig(path)
