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
   Neither side augments; both use SGD and per-pixel cross-entropy. The two sides are **paired
   step by step** (this machine's speed drifts by a fifth within minutes, so sides timed a minute
   apart are not comparable): each of ``--rounds`` trainer runs of two epochs of ``--steps`` steps
   takes a plain-loop step inside its ``on_step`` callback after each of its own; epoch 2 is
   timed, each side's steps summed. The ratio is convatlas's images/s over the plain loop's, over
   all rounds (goal >= 1.0); each round's ratio, and the same by the process's CPU time, are
   printed too.
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
from _paired import paired_round, quiet_train  # noqa: E402  (benchmarks/_paired.py)

RESULTS = Path(__file__).resolve().parent / "results"


def bench_default(seeds: list[int], workdir: Path) -> dict:
    runs = []
    for seed in seeds:
        s = quiet_train("unet_mini", seed=seed, out=workdir / f"unet_mini-seed{seed}")
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


def _plain_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
    """The loop everybody writes, one step at a time: one batch in memory, SGD, per-pixel
    cross-entropy. Returns the function that takes one step."""
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def step() -> None:
        out = model(x)
        if isinstance(out, dict):  # torchvision's segmentation models return {"out": ...}
            out = out["out"]
        loss = F.cross_entropy(out, y, ignore_index=255)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def _paired_round(model: str, plain_step, batch: int, steps: int, size: int, workdir: Path, round_: int,
                  channels_last: bool = False) -> dict:
    """One paired trainer run (:func:`_paired.paired_round`) on ``batch * steps`` digit scenes, no
    augmentation, SGD at a constant lr 0.01."""
    return paired_round(model, plain_step, batch, workdir / f"speed-{model}-{int(channels_last)}-{round_}",
                        recipe="none", data_options={"size": size, "num_train": batch * steps, "num_test": batch},
                        batch_size=batch, lr=0.01, schedule="constant", threads=torch.get_num_threads(),
                        channels_last=channels_last)


def bench_speed(batch: int, steps: int, size: int, rounds: int, workdir: Path,
                models: tuple[str, ...] = ("fcn_resnet50", "unet_mini", "unet_mini+channels_last")) -> dict:
    import torchvision

    results = {}
    fcn = lambda: torchvision.models.segmentation.fcn_resnet50(  # noqa: E731
        weights=None, weights_backbone=None, num_classes=11, aux_loss=False)
    unet = lambda: convatlas.create_model("unet_mini")  # noqa: E731
    cases = [  # key, network, input channels, the plain loop's network, its name, the trainer's channels_last
        ("fcn_resnet50", "fcn_resnet50", 3, fcn, "torchvision segmentation.fcn_resnet50", False),
        ("unet_mini", "unet_mini", 1, unet, "the same unet_mini", False),
        # the recipe of `convatlas train unet_mini` stores activations channels-last; the plain loop does not
        ("unet_mini+channels_last", "unet_mini", 1, unet, "the same unet_mini", True),
    ]
    for key, name, channels, reference, what, channels_last in [c for c in cases if c[0] in models]:
        torch.manual_seed(0)
        x = torch.randn(batch, channels, size, size)
        y = torch.randint(0, 11, (batch, size, size))
        step = _plain_step(reference(), x, y)
        measured = [_paired_round(name, step, batch, steps, size, workdir, r, channels_last) for r in range(rounds)]
        ratios = [m["convatlas_images_per_second"] / m["plain_loop_images_per_second"] for m in measured]
        cpu_ratios = [m["convatlas_images_per_cpu_second"] / m["plain_loop_images_per_cpu_second"] for m in measured]
        ours = sum(m["convatlas_images"] for m in measured) / sum(m["convatlas_seconds"] for m in measured)
        theirs = sum(m["plain_loop_images"] for m in measured) / sum(m["plain_loop_seconds"] for m in measured)
        results[key] = {"baseline": what, "channels_last": channels_last, "image_size": size, "batch_size": batch, "steps": steps, "rounds": rounds,
                         "method": "paired: a plain-loop step after each trainer step, epoch 2 timed",
                         "convatlas_images_per_second": ours, "plain_loop_images_per_second": theirs,
                         "ratio": ours / theirs, "round_ratios": [round(r, 3) for r in ratios],
                         "cpu_ratio_rounds": [round(r, 3) for r in cpu_ratios], "rounds_measured": measured}
        print(f"  {key:<23} {size}x{size}, batch {batch}, {rounds} paired rounds of {steps} steps: convatlas trainer "
              f"{ours:7,.1f} img/s, {what} in a plain loop {theirs:7,.1f} img/s, ratio {ours / theirs:.3f} "
              f"(rounds {', '.join(f'{r:.3f}' for r in ratios)}; per CPU second "
              f"{', '.join(f'{r:.3f}' for r in cpu_ratios)})", flush=True)
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
            quiet_train(name, out=run)  # the card's recipe, nothing else (fcn8s_mini: 13 epochs, ~100 s)
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
    parser.add_argument("--steps", type=int, default=30, help="part 2: steps per trainer epoch (paired steps per round)")
    speed_cases = ["fcn_resnet50", "unet_mini", "unet_mini+channels_last"]
    parser.add_argument("--speed-cases", nargs="+", default=speed_cases, choices=speed_cases,
                        help="part 2: the cases timed")
    parser.add_argument("--rounds", type=int, default=3, help="part 2: paired trainer runs")
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
            report["speed"] = bench_speed(args.batch_size, args.steps, args.image_size, args.rounds, workdir,
                                          tuple(args.speed_cases))
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
