"""Segmentation: the default U-Net's score and time, training speed against torchvision, the
notes' argument as a comparison, and what the dense CRF adds - in one run.

    python benchmarks/bench_segmentation.py                       # every part
    python benchmarks/bench_segmentation.py --parts default       # only part 1

1. **Default recipe** (``default``). ``convatlas train unet_mini`` with no other arguments (the
   digit scenes, the recipe its card names, the thread count the loop chooses): test mIoU (11
   classes, one confusion matrix over the 1,000 test scenes) and training seconds, per seed. The
   goal: mIoU >= 0.85 in <= 300 s of training on 2 CPU cores.
2. **Training images/s** (``speed``). The convatlas trainer on ``fcn_resnet50`` (torchvision's
   FCN architecture, built from convatlas's ResNet-50) against torchvision's own
   ``segmentation.fcn_resnet50`` in a plain PyTorch loop on the same batches' shape; and the
   trainer on ``unet_mini`` against the same U-Net in the plain loop (torchvision has no U-Net).
   Neither side augments; both use SGD and per-pixel cross-entropy. The sides alternate for
   ``--rounds`` rounds (this machine's speed drifts by a fifth within minutes): a plain-loop
   round of ``--steps`` steps, then a trainer run of two epochs of ``--steps`` steps, its second
   epoch timed. The ratio is the best round of convatlas over the best of the plain loop (a busy
   moment only ever slows a round down; goal >= 1.0); the ratio of the medians is printed too, and
   the ratio of images per CPU second of the process (``time.process_time``: the work done, less
   sensitive to the host taking the cores away than the wall clock).
3. **The notes' argument** (``compare``). ``convatlas compare`` over the minis of each family,
   the full-resolution FCN and unet_mini with each upsampling choice, every one trained with its
   card's recipe for the same ``--compare-epochs``: mIoU, parameters, MACs, activation bytes and
   latency per 64x64 scene. The sliding window is measured (MACs, activations, latency, the time
   of ``--window-steps`` training steps) but not trained: a step labels every pixel of its scenes
   with a LeNet-5 pass, so one epoch would take hours here - which is the notes' point.
4. **The dense CRF on trained networks** (``crf``). The test scenes scored before and after the
   CRF, for ``convatlas train fcn8s_mini`` and the unet_mini of part 1 (seed 0; each trained here
   with its card's recipe when the workdir does not hold it): DeepLab v2's parameters, and the same with the kernels' spatial widths scaled from
   DeepLab's ~500-pixel photos to the 64-pixel scenes (set here, not tuned on the test scenes).

Figures go to ``benchmarks/results/bench_segmentation-<device>.json``; part 3's table and charts to
``benchmarks/results/segmentation-compare/``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import convatlas
from convatlas._io import write_json
from convatlas.train import train

RESULTS = Path(__file__).resolve().parent / "results"


def _quiet_train(model: str, **kwargs) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):
        return train(model, quiet=True, **kwargs).summary


def bench_default(seeds: list[int], workdir: Path) -> dict:
    runs = []
    for seed in seeds:
        s = _quiet_train("unet_mini", seed=seed, out=workdir / f"unet_mini-seed{seed}")
        runs.append({"seed": seed, "test_miou": s["test_miou"], "test_pixel_acc": s["test_pixel_acc"],
                     "train_seconds": s["train_seconds"], "images_per_second": s["images_per_second"],
                     "recipe": s["recipe"], "threads": s["threads"], "epochs": s["epochs"]})
        print(f"  unet_mini seed {seed}: test mIoU {s['test_miou']:.4f} (pixel accuracy {s['test_pixel_acc']:.2%}) "
              f"after {s['train_seconds']:.1f} s training ({s['images_per_second']:,.0f} img/s, {s['threads']} "
              f"threads, recipe {s['recipe']})", flush=True)
    mean_miou = statistics.mean(r["test_miou"] for r in runs)
    mean_time = statistics.mean(r["train_seconds"] for r in runs)
    print(f"unet_mini: mean test mIoU {mean_miou:.4f}, mean {mean_time:.1f} s training "
          f"(goal: >= 0.85 in <= 300 s)", flush=True)
    return {"runs": runs, "mean_test_miou": mean_miou, "mean_train_seconds": mean_time,
            "max_train_seconds": max(r["train_seconds"] for r in runs)}


def _plain_loop(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
    """The loop everybody writes: one batch in memory, SGD, per-pixel cross-entropy. Returns a
    function that times ``steps`` steps: (images per wall second, images per CPU second)."""
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def run(steps: int) -> tuple[float, float]:
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            out = model(x)
            if isinstance(out, dict):  # torchvision's segmentation models return {"out": ...}
                out = out["out"]
            loss = F.cross_entropy(out, y, ignore_index=255)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        images = steps * len(x)
        return images / (time.perf_counter() - start), images / (time.process_time() - cpu)

    return run


def _trainer_images_per_second(model: str, batch: int, steps: int, size: int, workdir: Path,
                               round_: int) -> tuple[float, float]:
    """The convatlas trainer on digit scenes without augmentation: a run of two epochs of
    ``steps`` steps; the second epoch's images per wall second (the loop's own figure) and per CPU
    second (the process's CPU time from the first step of that epoch to its last)."""
    out = workdir / f"speed-{model}-{round_}"
    marks: list[float] = []

    def on_step(info) -> None:  # after each step; epoch 2's first mark starts the CPU clock
        if info.epoch >= 1:
            marks.append(time.process_time())

    _quiet_train(model, recipe="none", data_options={"size": size, "num_train": batch * steps, "num_test": batch},
                 epochs=2, batch_size=batch, lr=0.01, schedule="constant", eval_every=2, out=out,
                 threads=torch.get_num_threads(), on_step=on_step)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return rows[-1]["images_per_second"], (len(marks) - 1) * batch / (marks[-1] - marks[0])


def bench_speed(batch: int, steps: int, size: int, rounds: int, workdir: Path) -> dict:
    import torchvision

    results = {}
    cases = [("fcn_resnet50", 3, lambda: torchvision.models.segmentation.fcn_resnet50(
        weights=None, weights_backbone=None, num_classes=11, aux_loss=False), "torchvision segmentation.fcn_resnet50"),
             ("unet_mini", 1, lambda: convatlas.create_model("unet_mini"), "the same unet_mini")]
    for name, channels, reference, what in cases:
        torch.manual_seed(0)
        x = torch.randn(batch, channels, size, size)
        y = torch.randint(0, 11, (batch, size, size))
        plain = _plain_loop(reference(), x, y)
        plain(steps)  # warm-up
        ours, theirs = [], []
        for r in range(rounds):  # alternated, so both sides see the same stretches of the machine's speed
            theirs.append(plain(steps))
            ours.append(_trainer_images_per_second(name, batch, steps, size, workdir, r))
        wall_ours, wall_theirs = [w for w, _ in ours], [w for w, _ in theirs]
        cpu_ours, cpu_theirs = [c for _, c in ours], [c for _, c in theirs]
        ratio, cpu_ratio = max(wall_ours) / max(wall_theirs), max(cpu_ours) / max(cpu_theirs)
        results[name] = {"baseline": what, "image_size": size, "batch_size": batch, "steps": steps,
                         "convatlas_images_per_second": max(wall_ours), "plain_loop_images_per_second": max(wall_theirs),
                         "convatlas_rounds": [round(v, 1) for v in wall_ours],
                         "plain_loop_rounds": [round(v, 1) for v in wall_theirs], "ratio": ratio,
                         "median_ratio": statistics.median(wall_ours) / statistics.median(wall_theirs),
                         "convatlas_images_per_cpu_second": [round(v, 2) for v in cpu_ours],
                         "plain_loop_images_per_cpu_second": [round(v, 2) for v in cpu_theirs],
                         "cpu_ratio": cpu_ratio}
        print(f"  {name:<13} {size}x{size}, batch {batch}: convatlas trainer {max(wall_ours):7,.1f} img/s, {what} in a "
              f"plain loop {max(wall_theirs):7,.1f} img/s, ratio {ratio:.2f} (of the medians: "
              f"{statistics.median(wall_ours) / statistics.median(wall_theirs):.2f}; rounds "
              f"{', '.join(f'{v:.1f}' for v in wall_ours)} vs {', '.join(f'{v:.1f}' for v in wall_theirs)}); "
              f"per CPU second {max(cpu_ours):.1f} vs {max(cpu_theirs):.1f}, ratio {cpu_ratio:.2f}", flush=True)
    return results


FAMILIES = ["unet_mini", "segnet_mini", "deconvnet_mini", "fcn8s_mini", "deeplab_mini", "fullres_fcn"]
UPSAMPLING = ["nearest", "bed_of_nails", "max_unpool", "unpool_conv", "bilinear"]  # transposed: unet_mini's own


def _sliding_window_cost(size: int, steps: int) -> dict:
    """What the sliding window costs, measured rather than trained: MACs, forward activations and
    latency per scene, and the seconds a training step over 2 scenes takes (one LeNet-5 per pixel)."""
    from convatlas.analysis import summary
    from convatlas.compare.runs import measure_latency

    model = convatlas.create_model("sliding_window")
    report = summary(model, (1, size, size))
    latency = measure_latency(model, (1, size, size), 1, repeats=3, warmup=1)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randn(2, 1, size, size), torch.randint(0, 11, (2, size, size))
    start = time.perf_counter()
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    step = (time.perf_counter() - start) / steps
    return {"network": "sliding_window", "params": report.total_params, "macs": report.total_macs,
            "activation_bytes": report.activation_bytes, "latency_ms": latency,
            "train_seconds_per_scene": step / 2}


def bench_compare(epochs: float, window_steps: int, workdir: Path) -> dict:
    from convatlas.train import compare_models

    specs = FAMILIES + [f"unet_mini:upsample={kind}" for kind in UPSAMPLING]
    out = RESULTS / "segmentation-compare"
    with contextlib.redirect_stdout(io.StringIO()):
        result = compare_models(specs, epochs=epochs, out=workdir / "compare")
    rows = []
    for r in result.rows:
        rows.append({"network": r.name, "test_miou": r.accuracy / 100, "pixel_acc": r.pixel_acc / 100,
                     "params": r.params, "macs": r.macs, "activation_bytes": r.activation_bytes,
                     "latency_ms": r.latency_ms, "train_seconds": r.train_seconds, "epochs": r.epochs})
        print(f"  {r.name:<28} mIoU {r.accuracy / 100:.3f}  params {r.params / 1e6:6.3f}M  MACs {r.macs / 1e6:9.1f}M  "
              f"activations {r.activation_bytes / 2**20:6.2f} MiB  {r.latency_ms:7.2f} ms/scene  "
              f"trained {r.train_seconds:5.0f} s", flush=True)
    window = _sliding_window_cost(64, window_steps)
    epoch_hours = window["train_seconds_per_scene"] * 4000 / 3600
    print(f"  {'sliding_window':<28} (not trained: one epoch of the 4,000 scenes would take {epoch_hours:.1f} h) "
          f"params {window['params'] / 1e6:6.3f}M  MACs {window['macs'] / 1e6:9.1f}M  "
          f"activations {window['activation_bytes'] / 2**20:6.2f} MiB  {window['latency_ms']:7.2f} ms/scene", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    for f in result.files:
        if f.suffix in (".png", ".md"):
            shutil.copyfile(f, out / f.name)
    return {"epochs": epochs, "rows": rows, "sliding_window": {**window, "epoch_hours": epoch_hours}}


def _scaled_crf(side: int) -> dict:
    """DeepLab v2's CRF with its spatial widths scaled from ~500-pixel photos to ``side`` pixels."""
    from convatlas.segmentation.crf import DEEPLAB_V2

    scale = side / 500
    return {"pos_xy_std": max(DEEPLAB_V2.pos_xy_std * scale, 0.5), "bi_xy_std": DEEPLAB_V2.bi_xy_std * scale}


def bench_crf(models: list[str], workdir: Path) -> dict:
    from convatlas.train import evaluate

    results = {}
    for name in models:
        run = workdir / f"{name}-seed0"  # part 1's unet_mini when it ran in this workdir
        if not (run / "summary.json").is_file():
            _quiet_train(name, out=run)  # the card's recipe, nothing else (fcn8s_mini: 13 epochs, ~100 s)
        settings = {"deeplab_v2": True, "deeplab_v2_scaled_to_64px": _scaled_crf(64)}
        row = {}
        for label, crf in settings.items():
            start = time.perf_counter()
            report = evaluate(run, crf=crf)
            seconds = time.perf_counter() - start
            row[label] = {"options": report.crf["options"], "miou_before": report.miou, "miou_after": report.crf["miou"],
                          "pixel_acc_before": report.pixel_acc, "pixel_acc_after": report.crf["pixel_acc"],
                          "seconds": seconds}
            print(f"  {name:<12} CRF {label:<26} mIoU {report.miou:.4f} -> {report.crf['miou']:.4f} "
                  f"({report.crf['miou'] - report.miou:+.4f}), pixel accuracy {report.pixel_acc:.4f} -> "
                  f"{report.crf['pixel_acc']:.4f}  ({seconds:.0f} s for {report.count} scenes)", flush=True)
        results[name] = row
    return results


def main(argv: list[str] | None = None) -> int:
    parts = ["default", "speed", "compare", "crf"]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=parts, choices=parts)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of part 2 (the others choose their own)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20, help="part 2: steps per timed round / trainer epoch")
    parser.add_argument("--rounds", type=int, default=3, help="part 2: alternated rounds of each side")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--compare-epochs", type=float, default=2, help="part 3: epochs of every network")
    parser.add_argument("--workdir", type=Path, help="keep the runs here (default: a temporary folder); part 4 "
                                                     "reuses part 1's and part 3's runs found there")
    parser.add_argument("--window-steps", type=int, default=3, help="part 3: the sliding window's timed training steps")
    args = parser.parse_args(argv)
    report: dict = {"device": f"cpu ({args.threads} threads for part 2)", "torch": str(torch.__version__),
                    "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M")}
    with tempfile.TemporaryDirectory(prefix="convatlas-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        if "default" in args.parts:
            print("1. `convatlas train unet_mini`, no other arguments", flush=True)
            report["default_recipe"] = bench_default(args.seeds, workdir)
        if "speed" in args.parts:
            threads = torch.get_num_threads()
            torch.set_num_threads(args.threads)
            print("2. training images/s: convatlas trainer vs a plain PyTorch loop", flush=True)
            report["speed"] = bench_speed(args.batch_size, args.steps, args.image_size, args.rounds, workdir)
            torch.set_num_threads(threads)
        if "compare" in args.parts:
            print(f"3. the notes' argument: `convatlas compare`, {args.compare_epochs:g} epochs each", flush=True)
            report["compare"] = bench_compare(args.compare_epochs, args.window_steps, workdir)
        if "crf" in args.parts:
            print("4. the dense CRF on trained networks, test scenes before and after", flush=True)
            report["crf"] = bench_crf(["fcn8s_mini", "unet_mini"], workdir)
    out = RESULTS / "bench_segmentation-cpu.json"
    previous = json.loads(out.read_text()) if out.is_file() else {}
    previous.update(report)
    write_json(out, previous)
    print(f"figures written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
