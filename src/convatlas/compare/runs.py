"""Compare trained networks: measure parameters, MACs, latency and the test score of finished
runs, and draw the charts and the table from those numbers (:func:`compare_runs`).

The score is the task's: test top-1 for classification, test mIoU for segmentation, test COCO
mAP@[.5:.95] for detection. A detector's MACs are counted on a real forward pass
(:func:`forward_macs`), since how much work its second stage does depends on the proposals the
first one keeps; the meta-device analysis (:func:`convatlas.analysis.summary`) stops there.

Training the networks first (or reusing their runs) is the front door's
:func:`convatlas.train.compare_models`.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from convatlas._io import atomic_write_text
from convatlas.analysis import summary
from convatlas.compare.chart import Point, bubble_chart
from convatlas.compare.published import write_rows, write_table
from convatlas.engine import rundir
from convatlas.registry import model_card
from convatlas.tasks import LoadedRun, load_run

__all__ = ["measure_latency", "forward_macs", "ForwardCount", "compare_runs", "Comparison", "ComparisonRow"]


def measure_latency(
    model: nn.Module, input_shape: tuple[int, int, int], batch: int = 1, *,
    repeats: int = 10, warmup: int = 2, device: str | torch.device = "cpu", inputs: torch.Tensor | None = None,
) -> float:
    """Median wall-clock milliseconds per image of ``model`` in eval mode on ``batch`` images.

    The images are random noise unless ``inputs`` gives real ones, ``(N, *input_shape)`` and
    ready for the model (normalised): the first ``batch`` of them, cycled when there are fewer.
    A detector needs real ones, since what it does after its proposals depends on what it sees.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    device = torch.device(device)
    model = model.eval().to(device)
    if inputs is None:
        x = torch.randn(batch, *input_shape, device=device)
    else:
        if inputs.dim() != 4 or tuple(inputs.shape[1:]) != tuple(input_shape) or len(inputs) == 0:
            raise ValueError(f"inputs must be a batch (N >= 1, {', '.join(map(str, input_shape))}), "
                             f"got {tuple(inputs.shape)}")
        x = inputs[torch.arange(batch) % len(inputs)].to(device)
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
class ForwardCount:
    """What :func:`forward_macs` counted: ``macs`` of the whole pass, and ``proposals``, how many
    regions the detector's RPN handed its second stage (``None`` for a network without an ``rpn``)."""

    macs: int
    proposals: int | None = None


def forward_macs(model: nn.Module, images: torch.Tensor) -> ForwardCount:
    """MACs of one real forward pass of ``model`` (eval mode, no gradients) on ``images``.

    Counted by :class:`torch.utils.flop_counter.FlopCounterMode`: its FLOPs of convolutions,
    linear layers and matrix products, halved - the multiply-accumulates of those layers, the
    convention of :func:`convatlas.analysis.summary` (biases, activations, pooling, sorting and
    NMS are not counted). Unlike that meta-device analysis, which stops where a detector's work
    starts to depend on the data, this sees the whole pass as ``images`` make it run: for Faster
    R-CNN the backbone, the RPN head, and the RoI head on the proposals the RPN kept (RoI Align's
    interpolation is two matrix products per region, and counts). An uncounted pass goes first:
    the zoo's input-size check traces each new input shape once on the meta device, and those
    operators would be counted too.
    """
    from torch.utils.flop_counter import FlopCounterMode

    if not torch.is_tensor(images) or images.dim() != 4 or images.is_meta:
        raise ValueError(f"forward_macs takes a real (N, C, H, W) batch, got "
                         f"{tuple(images.shape) if torch.is_tensor(images) else type(images).__name__}"
                         f"{' on the meta device' if torch.is_tensor(images) and images.is_meta else ''}")
    model.eval()
    kept: list[int] = []
    rpn = getattr(model, "rpn", None)
    handle = None

    def count_proposals(module: nn.Module, args: object, output: object) -> None:
        # Faster R-CNN's RPN returns (one (K, 4) tensor of proposals per image, its losses)
        if isinstance(output, tuple) and output and isinstance(output[0], (list, tuple)):
            kept.append(sum(len(p) for p in output[0]))

    if isinstance(rpn, nn.Module):
        handle = rpn.register_forward_hook(count_proposals)
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad():
            model(images)  # the warm-up: the input-size check's meta trace happens here, uncounted
            kept.clear()
            with counter:
                model(images)
    finally:
        if handle is not None:
            handle.remove()
    return ForwardCount(macs=counter.get_total_flops() // 2, proposals=kept[0] if kept else None)


@dataclass
class ComparisonRow:
    name: str  # the network as compared: a registered name, or NAME:key=value for a variant
    family: str
    params: int
    macs: int  # per image; what was counted: ``macs_counted``
    accuracy: float  # the run's primary test score, percent: top-1, mIoU (segmentation) or COCO mAP (detection)
    top5: float | None
    latency_ms: float  # CPU, batch 1, per image
    latency_ms_batch: float  # CPU, larger batch, per image
    latency_batch: int
    gpu_latency_ms: float | None
    train_seconds: float
    epochs: float
    run_dir: str
    reused: bool = False
    task: str = "classification"
    metric: str = "test top-1 %"  # what ``accuracy`` is
    pixel_acc: float | None = None  # segmentation: test pixel accuracy, percent
    # what the forward pass of one image writes (the full-resolution net's cost); None for a detector,
    # whose meta-device trace stops at the proposals
    activation_bytes: int | None = 0
    map50: float | None = None  # detection: test mAP at IoU 0.5, percent
    map75: float | None = None  # detection: test AP at IoU 0.75, percent
    proposals: int | None = None  # detection: regions the RPN kept in the pass whose MACs were counted
    macs_counted: str = ""  # what ``macs`` counts


# What a comparison reads from each task's summary.json: (key, label of the score).
_SCORE = {"classification": ("test_acc", "test top-1 %"), "segmentation": ("test_miou", "test mIoU %"),
          "detection": ("test_map", "test COCO mAP %")}


@dataclass
class Comparison:
    rows: list[ComparisonRow]
    out: Path
    files: list[Path] = field(default_factory=list)

    def print(self) -> None:
        from rich.console import Console
        from rich.table import Table

        from convatlas.analysis.report import format_bytes

        task = self.rows[0].task
        table = Table(title=f"comparison ({self.out})")
        if task == "detection":
            table.caption = f"MACs: {self.rows[0].macs_counted}"
        columns = ["network", self.rows[0].metric]
        columns += {"segmentation": ["pixel acc %", "activations/img"],
                    "detection": ["mAP@0.5 %", "AP75 %"]}.get(task, [])
        columns += ["params", "MACs"] + (["proposals"] if task == "detection" else [])
        columns += ["ms/img b1", "ms/img (batch)", "train s", "run"]
        for col in columns:
            table.add_column(col, justify="left" if col in ("network", "run") else "right")
        for r in self.rows:
            cells = [r.name, f"{r.accuracy:.2f}"]
            if task == "segmentation":
                cells += [_percent(r.pixel_acc), format_bytes(r.activation_bytes or 0)]
            if task == "detection":
                cells += [_percent(r.map50), _percent(r.map75)]
            cells += [f"{r.params / 1e6:.3f}M", f"{r.macs / 1e6:.1f}M"]
            if task == "detection":
                cells += ["-" if r.proposals is None else str(r.proposals)]
            cells += [f"{r.latency_ms:.2f}", f"{r.latency_ms_batch:.3f} (b{r.latency_batch})",
                      f"{r.train_seconds:.0f}", "reused" if r.reused else "trained"]
            table.add_row(*cells)
        console = Console()
        console.print(table)
        for f in self.files:
            console.print(f"  wrote {f}")


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


_SEGMENTATION_COLUMNS = ("name", "family", "accuracy", "pixel_acc", "params", "macs", "activation_bytes", "latency_ms",
                         "train_seconds", "epochs")


def _segmentation_table(rows: Sequence[ComparisonRow], stem: Path) -> list[Path]:
    """``stem.csv``/``.md``/``.json`` for segmentation rows: mIoU and pixel accuracy beside params,
    MACs, the activations one scene's forward pass writes, latency and training time."""
    table = [{k: asdict(r)[k] for k in _SEGMENTATION_COLUMNS} for r in rows]
    md = ["| network | family | mIoU % | pixel acc % | params (M) | MMACs | activations (MiB) | ms/image | train s | epochs |",
          "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in table:
        pixel = "-" if r["pixel_acc"] is None else f"{r['pixel_acc']:.2f}"
        md.append(f"| {r['name']} | {r['family']} | {r['accuracy']:.2f} | {pixel} | {r['params'] / 1e6:.3f} | "
                  f"{r['macs'] / 1e6:,.1f} | {r['activation_bytes'] / 2**20:.2f} | {r['latency_ms']:.2f} | "
                  f"{r['train_seconds']:.0f} | {r['epochs']:g} |")
    return write_rows(table, _SEGMENTATION_COLUMNS, md, stem)


_DETECTION_COLUMNS = ("name", "family", "map_percent", "map50_percent", "map75_percent", "params", "macs",
                      "proposals", "macs_counted", "latency_ms", "latency_ms_batch", "latency_batch", "train_seconds",
                      "epochs")


def _detection_table(rows: Sequence[ComparisonRow], stem: Path) -> list[Path]:
    """``stem.csv``/``.md``/``.json`` for detection rows: COCO mAP@[.5:.95], mAP@0.5 and AP75
    (percent) beside params, the MACs of a real forward pass (what they count is stated in
    ``macs_counted`` and under the Markdown table), latency at batch 1 and the larger batch, and
    training time."""
    table = [{"name": r.name, "family": r.family, "map_percent": r.accuracy, "map50_percent": r.map50,
              "map75_percent": r.map75, "params": r.params, "macs": r.macs, "proposals": r.proposals,
              "macs_counted": r.macs_counted, "latency_ms": r.latency_ms, "latency_ms_batch": r.latency_ms_batch,
              "latency_batch": r.latency_batch, "train_seconds": r.train_seconds, "epochs": r.epochs} for r in rows]
    md = ["| network | family | mAP % | mAP@0.5 % | AP75 % | params (M) | MMACs | proposals | ms/image b1 | "
          "ms/image (batch) | train s | epochs |",
          "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in table:
        proposals = "-" if r["proposals"] is None else str(r["proposals"])
        md.append(f"| {r['name']} | {r['family']} | {r['map_percent']:.2f} | {_percent(r['map50_percent'])} | "
                  f"{_percent(r['map75_percent'])} | {r['params'] / 1e6:.3f} | {r['macs'] / 1e6:,.1f} | {proposals} | "
                  f"{r['latency_ms']:.2f} | {r['latency_ms_batch']:.3f} (b{r['latency_batch']}) | "
                  f"{r['train_seconds']:.0f} | {r['epochs']:g} |")
    md += ["", f"mAP: COCO mAP@[.5:.95] on the test split. MACs: {rows[0].macs_counted}."]
    return write_rows(table, _DETECTION_COLUMNS, md, stem)


def _batch_for_latency(latency_ms: float, largest: int, budget_ms: float = 400.0) -> int:
    """The larger latency batch, smaller for a network so slow that ``largest`` images would take
    longer than ``budget_ms`` (the sliding window labels a 64x64 scene in about half a second)."""
    return max(1, min(largest, int(budget_ms // max(latency_ms, 1e-6))))


def _run_task(run_dir: Path) -> str:
    """What a run's network does, read without loading it: its config's network's card."""
    config = run_dir / rundir.CONFIG
    if config.is_file():
        name = rundir.read_yaml(config).get("model")
        if isinstance(name, str):
            return model_card(name).task
    return load_run(run_dir).task  # no config.yaml: the checkpoint knows


def _test_scenes(run: LoadedRun, count: int) -> torch.Tensor:
    """The first ``count`` scenes of a detection run's test split (all, when it holds fewer), as the
    normalised input the detector saw in its evaluation."""
    from convatlas.data.boxes import load_detection
    from convatlas.data.geometry import SegmentationPipeline

    config = run.config
    splits = load_detection(config["data"], image_size=config.get("image_size"), root=config.get("data_root"),
                            **(config.get("data_options") or {}))
    if len(splits.test) == 0:
        raise ValueError(f"{run.run_dir}: the test split of {splits.name!r} is empty; a detector's MACs and "
                         f"latency are measured on its test scenes")
    pipeline = SegmentationPipeline(mean=run.mean, std=run.std, channels=run.in_channels)
    return pipeline.eval_input(splits.test.images[:count])


def _measure(name: str, run_dir: Path, reused: bool, latency_batch: int) -> ComparisonRow:
    """One row: the run's scores from its summary.json, the network measured."""
    task = _run_task(run_dir)
    # A detector is measured with the weights summary.json's scores belong to (the last), since
    # its MACs and latency depend on the proposals those weights keep.
    run = load_run(run_dir, "last" if task == "detection" else "best")
    summ = json.loads((run_dir / rundir.SUMMARY).read_text())
    key, metric = _SCORE[run.task]
    if summ.get(key) is None:
        raise ValueError(f"{name}: {run_dir / rundir.SUMMARY} has no {key} (the test score); did the run finish?")
    shape = (run.in_channels, run.image_size, run.image_size)
    extra: dict = {}
    if run.task == "detection":
        scenes = _test_scenes(run, max(latency_batch, 1))
        shape = tuple(scenes.shape[1:])
        count = forward_macs(run.model, scenes[:1])
        params, macs, activations = sum(p.numel() for p in run.model.parameters()), count.macs, None
        extra = dict(map50=_fraction_to_percent(summ.get("test_map50")),
                     map75=_fraction_to_percent(summ.get("test_map75")), proposals=count.proposals,
                     macs_counted=f"one forward pass on the first test scene ({shape[1]}x{shape[2]}), "
                                  f"the RoI head on the proposals the RPN kept included (FlopCounterMode: "
                                  f"conv, linear and matrix-product FLOPs / 2)")
    else:
        scenes = None
        report = summary(run.model, shape)
        params, macs, activations = int(report.total_params), int(report.total_macs), int(report.activation_bytes)
        extra = dict(macs_counted=f"one {'x'.join(map(str, shape))} image traced on the meta device "
                                  f"(convatlas.analysis.summary)")
    gpu = measure_latency(run.model, shape, 1, device="cuda", inputs=scenes) if torch.cuda.is_available() else None
    latency = measure_latency(run.model, shape, 1, inputs=scenes)
    batch = _batch_for_latency(latency, latency_batch)
    return ComparisonRow(
        name=name, family=model_card(run.config["model"]).family, params=int(params), macs=int(macs),
        accuracy=100.0 * float(summ[key]), top5=_fraction_to_percent(summ.get("test_top5")),
        latency_ms=latency, latency_ms_batch=measure_latency(run.model, shape, batch, repeats=5, inputs=scenes),
        latency_batch=batch, gpu_latency_ms=gpu,
        train_seconds=float(summ.get("train_seconds", 0.0)), epochs=float(summ.get("epochs", 0)),
        run_dir=str(run_dir), reused=reused, task=run.task, metric=metric,
        pixel_acc=_fraction_to_percent(summ.get("test_pixel_acc")), activation_bytes=activations, **extra,
    )


def _fraction_to_percent(value: float | None) -> float | None:
    return None if value is None else 100.0 * float(value)


def compare_runs(runs: Sequence[tuple[str, Path, bool]], out: str | Path, *, data: str,
                 latency_batch: int = 32) -> Comparison:
    """Measure each finished run ``(name, run_dir, reused)`` and write the charts and tables to ``out``:
    ``comparison_chart`` (score vs MACs, circle area = parameters), ``latency_chart``,
    ``comparison_table`` and ``comparison.json``.

    The score is the run's task's (its summary.json's, in percent): test top-1 accuracy for
    classification, test mIoU for segmentation (whose rows also carry pixel accuracy and the
    activation bytes one image's forward pass writes), test COCO mAP@[.5:.95] for detection
    (whose rows also carry mAP@0.5 and AP75). All runs must be of one task; this is checked
    before anything is measured.

    MACs and latency are per image. A classifier's or segmenter's MACs are the meta-device
    analysis of one image (:func:`convatlas.analysis.summary`); a detector's are counted on one
    real forward pass on the first scene of its test split (:func:`forward_macs`: the RoI head on
    the proposals the RPN kept included), its last checkpoint's weights, those its scores belong
    to, and its latency is timed on its test scenes rather than noise. The larger-batch latency
    uses ``latency_batch`` images, fewer for a network slower than 400 ms per batch of them.
    """
    if latency_batch < 1:
        raise ValueError(f"latency_batch must be >= 1, got {latency_batch}")
    if not runs:
        raise ValueError("give at least one finished run to compare")
    out = Path(out)
    runs = [(name, Path(run_dir), reused) for name, run_dir, reused in runs]
    tasks = {name: _run_task(run_dir) for name, run_dir, _ in runs}
    if len(set(tasks.values())) > 1:
        raise ValueError("a comparison charts one task's score (classification: test top-1, segmentation: test "
                         "mIoU, detection: test COCO mAP); these runs are of several: "
                         + ", ".join(f"{name} ({run_dir}) is a {tasks[name]} run" for name, run_dir, _ in runs)
                         + " - compare each task's networks separately")
    for name, run_dir, _ in runs:
        if tasks[name] not in _SCORE:
            raise ValueError(f"{name} ({run_dir}) is a {tasks[name]} run; comparisons cover {', '.join(_SCORE)}")
    rows = [_measure(name, run_dir, reused, latency_batch) for name, run_dir, reused in runs]
    metric = rows[0].metric
    points = [Point(name=r.name, family=r.family, params=r.params, macs=r.macs, accuracy=r.accuracy,
                    latency_ms=r.latency_ms, accuracy_source=f"{metric} on {data}") for r in rows]
    what = metric.replace("test ", "Test ").replace(" %", "")
    macs = "MACs per scene, proposals included" if rows[0].task == "detection" else "MACs"
    files = bubble_chart(points, out / "comparison_chart", y_label=f"{metric.replace(' %', '')} (%)",
                         title=f"{what} on {data} vs {macs} (circle area ∝ parameters)")
    files += bubble_chart(points, out / "latency_chart", x="latency", y_label=f"{metric.replace(' %', '')} (%)",
                          title=f"{what} on {data} vs CPU latency (circle area ∝ parameters)")
    if rows[0].task == "segmentation":  # the notes' argument needs the activations beside the score
        files += _segmentation_table(rows, out / "comparison_table")
    elif rows[0].task == "detection":
        files += _detection_table(rows, out / "comparison_table")
    else:
        files += write_table(points, out / "comparison_table", score=metric.replace("test ", ""))
    files.append(atomic_write_text(out / "comparison.json", json.dumps([asdict(r) for r in rows], indent=2) + "\n"))
    return Comparison(rows=rows, out=out, files=files)
