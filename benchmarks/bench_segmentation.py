"""Segmentation: the default U-Net's score and time, and training speed against torchvision, in one run.

    python benchmarks/bench_segmentation.py                    # both parts
    python benchmarks/bench_segmentation.py --parts default    # only part 1

1. **Default recipe.** ``convatlas train unet_mini`` with no other arguments (the digit scenes,
   the recipe its card names, the thread count the loop chooses): test mIoU (11 classes, one
   confusion matrix over the 1,000 test scenes) and training seconds, per seed. The goal:
   mIoU >= 0.85 in <= 300 s of training on 2 CPU cores.
2. **Training images/s.** The convatlas trainer on ``fcn_resnet50`` (torchvision's FCN
   architecture, built from convatlas's ResNet-50) against torchvision's own
   ``segmentation.fcn_resnet50`` in a plain PyTorch loop on the same batches' shape; and the
   trainer on ``unet_mini`` against the same U-Net in the plain loop (torchvision has no U-Net).
   Neither side augments; both use SGD and per-pixel cross-entropy; each side counts its best of
   three timed rounds after a warm-up round (a busy machine only ever slows a round down). The
   ratio is convatlas / plain loop (goal >= 1.0).

Figures go to ``benchmarks/results/bench_segmentation-<device>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
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


def _plain_loop_images_per_second(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int,
                                  rounds: int = 3) -> float:
    """The loop everybody writes: one batch in memory, SGD, per-pixel cross-entropy; the best of
    ``rounds`` timings of ``steps`` steps (after one warm-up round)."""
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def run() -> float:
        start = time.perf_counter()
        for _ in range(steps):
            out = model(x)
            if isinstance(out, dict):  # torchvision's segmentation models return {"out": ...}
                out = out["out"]
            loss = F.cross_entropy(out, y, ignore_index=255)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return time.perf_counter() - start

    run()
    return max(steps * len(x) / run() for _ in range(rounds))


def _trainer_images_per_second(model: str, batch: int, steps: int, size: int, workdir: Path, **variant) -> float:
    """The convatlas trainer on digit scenes without augmentation: the best epoch after the first."""
    epochs = 4
    out = workdir / f"speed-{model}"
    _quiet_train(model, recipe="none", data_options={"size": size, "num_train": batch * steps, "num_test": batch},
                 epochs=epochs, batch_size=batch, lr=0.01, schedule="constant", eval_every=epochs, out=out,
                 threads=torch.get_num_threads(), variant_args=variant)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return max(r["images_per_second"] for r in rows[1:])


def bench_speed(batch: int, steps: int, size: int, workdir: Path) -> dict:
    import torchvision

    results = {}
    cases = [("fcn_resnet50", 3, lambda: torchvision.models.segmentation.fcn_resnet50(
        weights=None, weights_backbone=None, num_classes=11, aux_loss=False), "torchvision segmentation.fcn_resnet50"),
             ("unet_mini", 1, lambda: convatlas.create_model("unet_mini"), "the same unet_mini")]
    for name, channels, reference, what in cases:
        ours = _trainer_images_per_second(name, batch, steps, size, workdir)
        torch.manual_seed(0)
        x = torch.randn(batch, channels, size, size)
        y = torch.randint(0, 11, (batch, size, size))
        theirs = _plain_loop_images_per_second(reference(), x, y, steps)
        results[name] = {"baseline": what, "image_size": size, "batch_size": batch, "steps": steps,
                         "convatlas_images_per_second": ours, "plain_loop_images_per_second": theirs,
                         "ratio": ours / theirs}
        print(f"  {name:<13} {size}x{size}, batch {batch}: convatlas trainer {ours:7,.1f} img/s, {what} in a plain "
              f"loop {theirs:7,.1f} img/s, ratio {ours / theirs:.2f}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=["default", "speed"], choices=["default", "speed"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of part 2 (part 1 chooses its own)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--image-size", type=int, default=64)
    args = parser.parse_args(argv)
    report: dict = {"device": f"cpu ({args.threads} threads for part 2)", "torch": str(torch.__version__),
                    "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M")}
    with tempfile.TemporaryDirectory(prefix="convatlas-bench-") as tmp:
        workdir = Path(tmp)
        if "default" in args.parts:
            print("1. `convatlas train unet_mini`, no other arguments", flush=True)
            report["default_recipe"] = bench_default(args.seeds, workdir)
        if "speed" in args.parts:
            torch.set_num_threads(args.threads)
            print("2. training images/s: convatlas trainer vs a plain PyTorch loop", flush=True)
            report["speed"] = bench_speed(args.batch_size, args.steps, args.image_size, workdir)
    out = RESULTS / "bench_segmentation-cpu.json"
    previous = json.loads(out.read_text()) if out.is_file() else {}
    previous.update(report)
    write_json(out, previous)
    print(f"figures written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
