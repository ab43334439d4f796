"""Compare networks on the user's data: train each (or reuse its finished run), then measure
parameters, MACs, latency and test accuracy, and draw the charts from those numbers.

Every network gets its own run directory under ``out``; a finished run (``summary.json`` with the
same settings) is reused, an interrupted one (``checkpoints/last.pt``) is resumed, so re-running a
comparison only trains what is missing.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from convatlas.compare.chart import Point, bubble_chart
from convatlas.compare.published import write_table
from convatlas.registry import model_card

__all__ = ["measure_latency", "compare_models", "Comparison", "ComparisonRow"]


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
    name: str
    family: str
    params: int
    macs: int
    accuracy: float  # test top-1, percent
    top5: float | None
    latency_ms: float  # CPU, batch 1, per image
    latency_ms_batch: float  # CPU, larger batch, per image
    latency_batch: int
    gpu_latency_ms: float | None
    train_seconds: float
    epochs: int
    run_dir: str
    reused: bool = False


@dataclass
class Comparison:
    rows: list[ComparisonRow]
    out: Path
    files: list[Path] = field(default_factory=list)

    def print(self) -> None:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"comparison ({self.out})")
        for col in ("network", "test acc %", "params", "MACs", "ms/img b1", f"ms/img b{self.rows[0].latency_batch}",
                    "train s", "run"):
            table.add_column(col, justify="left" if col in ("network", "run") else "right")
        for r in self.rows:
            table.add_row(r.name, f"{r.accuracy:.2f}", f"{r.params / 1e6:.3f}M", f"{r.macs / 1e6:.1f}M",
                          f"{r.latency_ms:.2f}", f"{r.latency_ms_batch:.3f}", f"{r.train_seconds:.0f}",
                          "reused" if r.reused else "trained")
        console = Console()
        console.print(table)
        for f in self.files:
            console.print(f"  wrote {f}")


def _settings(name: str, data: str, epochs: float | None, recipe: str | None, image_size: int | None, seed: int,
              extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    settings = {"model": name, "data": data, "epochs": epochs, "recipe": recipe, "image_size": image_size, "seed": seed}
    if extra:  # only when given, so that runs cached before train_args existed keep their settings
        settings["train_args"] = dict(extra)
    return settings


def _settings_digest(settings: dict[str, Any]) -> str:
    """Eight hex digits naming a run of other settings; the same in every process (unlike
    ``hash()``, which Python salts per process), so a later comparison finds the run again."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]


def _finished(run_dir: Path, settings: dict[str, Any]) -> bool:
    marker = run_dir / "compare_settings.json"
    return (run_dir / "summary.json").is_file() and marker.is_file() and json.loads(marker.read_text()) == settings


def compare_models(
    models: Sequence[str], *, data: str = "digits", epochs: int | None = None, recipe: str | None = None,
    image_size: int | None = None, out: str | Path = "runs/compare", seed: int = 0, quiet: bool = True,
    latency_batch: int = 32, train_args: Mapping[str, Mapping[str, Any]] | None = None,
) -> Comparison:
    """Train (or reuse) each network on ``data`` and chart accuracy vs MACs vs params, and vs latency.

    ``epochs`` and ``recipe`` apply to every network. ``train_args`` gives some networks their own
    trainer arguments (:class:`~convatlas.train.TrainConfig` keys), which win over those:
    ``{"lenet5": {"epochs": 8}, "alexnet_mini": {"epochs": 6, "lr": 0.02}}``. They are part of the
    settings a cached run must match to be reused.
    """
    from convatlas._io import atomic_write_text
    from convatlas.analysis import summary
    from convatlas.train import load_run, train
    from convatlas.train.config import RESUME_OVERRIDABLE, check_keys

    if not models:
        raise ValueError("give at least one network to compare")
    for name in models:
        model_card(name)  # unknown names fail here, before any training
    train_args = {name: dict(args) for name, args in (train_args or {}).items()}
    stray = sorted(set(train_args) - set(models))
    if stray:
        raise ValueError(f"train_args names {', '.join(stray)}, which are not among the networks compared "
                         f"({', '.join(models)})")
    for name, args in train_args.items():
        check_keys(args, where=f"train_args[{name!r}]")
        shared = sorted({"model", "data"} & set(args))
        if shared:
            raise ValueError(f"train_args[{name!r}] sets {', '.join(shared)}, which every network of a comparison "
                             f"shares; pass data= to compare_models")
    out = Path(out)
    rows = []
    for name in models:
        run_dir = out / name
        extra = dict(train_args.get(name, {}))
        model_epochs = extra.pop("epochs", epochs)
        settings = _settings(name, data, model_epochs, recipe, image_size, seed, extra)
        reused = _finished(run_dir, settings)
        if not reused:
            resume = (run_dir / "checkpoints" / "last.pt").is_file() and (run_dir / "compare_settings.json").is_file() \
                and json.loads((run_dir / "compare_settings.json").read_text()) == settings
            if not resume and run_dir.exists() and any(run_dir.iterdir()):
                # A run of other settings: keep it, train beside it.
                run_dir = out / f"{name}-{_settings_digest(settings)}"
                reused = _finished(run_dir, settings)
                resume = not reused and (run_dir / "checkpoints" / "last.pt").is_file()
        if not reused:
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(run_dir / "compare_settings.json", json.dumps(settings, sort_keys=True))
            kwargs: dict[str, Any] = {"data": data, "out": run_dir, "seed": seed, "quiet": quiet}
            if recipe is not None:
                kwargs["recipe"] = recipe
            if image_size is not None:
                kwargs["image_size"] = image_size
            kwargs.update(extra)
            if model_epochs is not None:
                kwargs["epochs"] = model_epochs
            if resume:  # the run keeps its configuration; only the length and the display may be given
                kwargs = {k: v for k, v in kwargs.items() if k in RESUME_OVERRIDABLE}
                kwargs["resume"] = run_dir
            train(name, **kwargs)
        run = load_run(run_dir)
        summ = json.loads((run_dir / "summary.json").read_text())
        shape = (run.in_channels, run.image_size, run.image_size)
        report = summary(run.model, shape)
        gpu = measure_latency(run.model, shape, 1, device="cuda") if torch.cuda.is_available() else None
        rows.append(ComparisonRow(
            name=name, family=model_card(name).family, params=int(report.total_params), macs=int(report.total_macs),
            accuracy=100.0 * float(summ["test_acc"]),
            top5=None if summ.get("test_top5") is None else 100.0 * float(summ["test_top5"]),
            latency_ms=measure_latency(run.model, shape, 1),
            latency_ms_batch=measure_latency(run.model, shape, latency_batch, repeats=5),
            latency_batch=latency_batch, gpu_latency_ms=gpu,
            train_seconds=float(summ.get("train_seconds", 0.0)), epochs=int(summ.get("epochs", 0)),
            run_dir=str(run_dir), reused=reused,
        ))
    points = [Point(name=r.name, family=r.family, params=r.params, macs=r.macs, accuracy=r.accuracy,
                    latency_ms=r.latency_ms, accuracy_source=f"test top-1 on {data}") for r in rows]
    files = bubble_chart(points, out / "comparison_chart",
                         title=f"Test accuracy on {data} vs MACs (circle area ∝ parameters)")
    files += bubble_chart(points, out / "latency_chart", x="latency",
                          title=f"Test accuracy on {data} vs CPU latency (circle area ∝ parameters)")
    files += write_table(points, out / "comparison_table")
    files.append(atomic_write_text(out / "comparison.json", json.dumps([asdict(r) for r in rows], indent=2) + "\n"))
    return Comparison(rows=rows, out=out, files=files)
