"""Detection: the default Faster R-CNN's mAP and time, its training speed against torchvision's
FasterRCNN, and torchvision's mAP after the same training time - in one run.

    python benchmarks/bench_detection.py                       # every part
    python benchmarks/bench_detection.py --parts speed         # only part 2

1. **Default recipe** (``default``). ``convatlas train faster_rcnn_mini`` with no other
   arguments (the digit scenes, the recipe its card names, the thread count the loop chooses):
   COCO mAP@[.5:.95], mAP@0.5 and training seconds, per seed. The goal: mAP@0.5 >= 0.90 and COCO
   mAP >= 0.60 in <= 300 s of training on 2 CPU cores.
2. **Training images/s** (``speed``). The convatlas trainer on ``faster_rcnn_mini`` against
   torchvision's ``FasterRCNN`` built from the same parts' settings - the same backbone module
   (a copy), anchors (10, 16, 26 px x ratios 1, 1.6, 2.6), RoI Align 7x7, fc6/fc7 of 256,
   proposal and RoI counts, 64x64 images, no resizing - in a plain PyTorch loop (AdamW, the sum
   of its four losses) on real digit-scene batches. Paired step by step as in
   ``bench_segmentation.py``: each of ``--rounds`` trainer runs of two epochs of ``--steps``
   steps takes a plain-loop step inside its ``on_step`` callback after each of its own; epoch 2
   is timed. The ratio is convatlas's images/s over the plain loop's (goal >= 1.0).
3. **mAP after the same time** (``same-time``). torchvision's FasterRCNN of part 2, trained from
   scratch in a plain loop on the same 4,000 scenes in batches of 16 with the recipe's optimiser
   (AdamW, weight decay 1e-4) and one-cycle learning rate (peak 4e-3, rising for the first
   quarter) laid over the wall-clock budget - part 1's training seconds - instead of over steps;
   then scored on the 1,000 test scenes with :func:`convatlas.metrics.mean_average_precision`
   (score threshold 0.05, as ours). The goal: convatlas's mAP@0.5 >= torchvision's.
4. **RoI Align against RoI Pool** (``roi``). ``convatlas train faster_rcnn_mini --variant
   roi_pool=pool`` (Fast R-CNN's quantised max pooling) with the same recipe and seed as part 1's
   RoI Align: COCO mAP, AP50 and AP75 side by side - Mask R-CNN's claim (He et al. 2017, Table 2c)
   is that the gain grows with the IoU the boxes must reach.

Figures go to ``benchmarks/results/bench_detection-cpu.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

import convatlas
from convatlas._io import write_json
from convatlas.data.boxes import load_detection
from convatlas.detection.faster_rcnn import MINI_ANCHORS
from convatlas.metrics import mean_average_precision
from _paired import paired_round, quiet_train  # noqa: E402  (benchmarks/_paired.py)

RESULTS = Path(__file__).resolve().parent / "results"
BATCH = 16


def bench_default(seeds: list[int], workdir: Path, model: str = "faster_rcnn_mini",
                  goal: str = ">= 0.90 and >= 0.60 in <= 300 s") -> dict:
    """``convatlas train MODEL`` with no other arguments, once per seed: its scores and time."""
    runs = []
    for seed in seeds:
        s = quiet_train(model, seed=seed, out=workdir / f"{model}-seed{seed}")
        runs.append({"seed": seed, "test_map": s["test_map"], "test_map50": s["test_map50"],
                     "test_map75": s["test_map75"], "test_map_voc07": s["test_map_voc07"],
                     "train_seconds": s["train_seconds"], "images_per_second": s["images_per_second"],
                     "recipe": s["recipe"], "threads": s["threads"], "epochs": s["epochs"]})
        print(f"  {model} seed {seed}: test mAP@0.5 {s['test_map50']:.4f}, COCO mAP {s['test_map']:.4f} "
              f"(AP75 {s['test_map75']:.4f}, VOC07 {s['test_map_voc07']:.4f}) after {s['train_seconds']:.1f} s "
              f"training ({s['images_per_second']:,.1f} img/s, {s['threads']} threads)", flush=True)
    summary = {k: statistics.mean(r[k] for r in runs) for k in ("test_map", "test_map50", "train_seconds")}
    print(f"{model}: mean mAP@0.5 {summary['test_map50']:.4f}, COCO mAP {summary['test_map']:.4f}, "
          f"{summary['train_seconds']:.1f} s training (goal: {goal})", flush=True)
    return {"runs": runs, **{f"mean_{k}": v for k, v in summary.items()},
            "max_train_seconds": max(r["train_seconds"] for r in runs)}


class _Backbone(nn.Module):
    def __init__(self, extractor: nn.Module, channels: int) -> None:
        super().__init__()
        self.body = extractor
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.body(x)


def torchvision_twin(seed: int = 0) -> nn.Module:
    """torchvision's FasterRCNN with faster_rcnn_mini's backbone (a fresh copy), anchors, RoI
    Align, head widths, proposal/RoI counts and test settings; 64x64 in, no resizing, the
    normalisation left to the caller (mean 0, std 1)."""
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign

    torch.manual_seed(seed)
    ours = convatlas.create_model("faster_rcnn_mini")
    p, head = ours.rpn.settings, ours.roi_heads
    return FasterRCNN(
        _Backbone(copy.deepcopy(ours.backbone), 64), num_classes=None, min_size=64, max_size=64,
        image_mean=[0.0], image_std=[1.0],
        rpn_anchor_generator=AnchorGenerator((MINI_ANCHORS["anchor_sizes"],), (MINI_ANCHORS["aspect_ratios"],)),
        box_roi_pool=MultiScaleRoIAlign(["conv5"], 7, 2), box_head=TwoMLPHead(64 * 49, 256),
        box_predictor=FastRCNNPredictor(256, 11),
        rpn_pre_nms_top_n_train=p.pre_nms_top_n_train, rpn_post_nms_top_n_train=p.post_nms_top_n_train,
        rpn_pre_nms_top_n_test=p.pre_nms_top_n_test, rpn_post_nms_top_n_test=p.post_nms_top_n_test,
        rpn_nms_thresh=p.nms_thresh, rpn_batch_size_per_image=ours.rpn.sampler.batch_size_per_image,
        box_batch_size_per_image=head.sampler.batch_size_per_image, box_score_thresh=head.settings.score_thresh,
        box_nms_thresh=head.settings.nms_thresh, box_detections_per_img=head.settings.detections_per_img)


class _Scenes:
    """The digit scenes as normalised float batches with their targets (what both sides train on)."""

    def __init__(self) -> None:
        splits = load_detection("digit-scenes")
        self.splits = splits
        self.mean, self.std = splits.mean[0], splits.std[0]

    def images(self, split: str, index: torch.Tensor) -> torch.Tensor:
        part = getattr(self.splits, split)
        return (part.images[index].float() / 255 - self.mean) / self.std

    def targets(self, split: str, index: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        part = getattr(self.splits, split)
        return [{k: v for k, v in part.target(int(i)).items() if k in ("boxes", "labels")} for i in index]


def _plain_step(model: nn.Module, x: torch.Tensor, targets: list) -> callable:
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)

    def step() -> None:
        loss = sum(model(x, targets).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def bench_speed(steps: int, rounds: int, workdir: Path, model: str = "faster_rcnn_mini", twin=None,
                baseline: str = "torchvision.models.detection.FasterRCNN with faster_rcnn_mini's backbone, anchors, "
                                 "RoI Align, head and counts, plain loop, AdamW") -> dict:
    """The convatlas trainer on ``model`` against ``twin()`` (torchvision's detector with the same
    parts) in a plain loop, paired step by step."""
    scenes = _Scenes()
    index = torch.arange(BATCH)
    step = _plain_step((twin or torchvision_twin)(), scenes.images("train", index), scenes.targets("train", index))
    measured = [paired_round(model, step, BATCH, workdir / f"speed-{r}",
                             data_options={"num_train": BATCH * steps, "num_test": BATCH}, batch_size=BATCH,
                             schedule="constant", threads=torch.get_num_threads()) for r in range(rounds)]
    ratios = [(m["convatlas_images"] / m["convatlas_seconds"]) / (m["plain_loop_images"] / m["plain_loop_seconds"])
              for m in measured]
    ours = sum(m["convatlas_images"] for m in measured) / sum(m["convatlas_seconds"] for m in measured)
    theirs = sum(m["plain_loop_images"] for m in measured) / sum(m["plain_loop_seconds"] for m in measured)
    print(f"  {model} 64x64, batch {BATCH}, {rounds} paired rounds of {steps} steps: convatlas trainer "
          f"{ours:,.1f} img/s, torchvision (same parts) in a plain loop {theirs:,.1f} img/s, ratio "
          f"{ours / theirs:.3f} (rounds {', '.join(f'{r:.3f}' for r in ratios)})", flush=True)
    return {"baseline": baseline,
            "image_size": 64, "batch_size": BATCH, "steps": steps, "rounds": rounds,
            "method": "paired: a plain-loop step after each trainer step, epoch 2 timed",
            "convatlas_images_per_second": ours, "plain_loop_images_per_second": theirs, "ratio": ours / theirs,
            "round_ratios": [round(r, 3) for r in ratios], "rounds_measured": measured}


def _onecycle(fraction: float, peak: float, rise: float = 0.25) -> float:
    """The one-cycle shape (cosine up from peak/25 over ``rise``, cosine down to ~0) at ``fraction``."""
    start, end = peak / 25, peak / 25 / 1e4
    if fraction < rise:
        return start + (peak - start) * (1 - math.cos(math.pi * fraction / rise)) / 2
    f = min((fraction - rise) / (1 - rise), 1.0)
    return end + (peak - end) * (1 + math.cos(math.pi * f)) / 2


def bench_same_time(seconds: float, seed: int = 0, twin=None) -> dict:
    """``twin(seed)`` (default: torchvision's FasterRCNN of part 2) trained from scratch for ``seconds``."""
    scenes = _Scenes()
    model = (twin or torchvision_twin)(seed)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-3, weight_decay=1e-4)
    n = len(scenes.splits.train)
    gen = torch.Generator().manual_seed(seed)
    order, position, steps, images = torch.randperm(n, generator=gen), 0, 0, 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for group in optimizer.param_groups:
            group["lr"] = _onecycle(elapsed / seconds, 4e-3)
        if position + BATCH > n:
            order, position = torch.randperm(n, generator=gen), 0
        index = order[position:position + BATCH]
        position += BATCH
        loss = sum(model(scenes.images("train", index), scenes.targets("train", index)).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps, images = steps + 1, images + BATCH
    trained = time.perf_counter() - start
    model.eval()
    preds = []
    test = scenes.splits.test
    with torch.no_grad():
        for s in range(0, len(test), 64):
            index = torch.arange(s, min(s + 64, len(test)))
            preds.extend({k: v for k, v in d.items()} for d in model(scenes.images("test", index)))
    targets = [test.target(i) for i in range(len(test))]
    coco = mean_average_precision(preds, targets, protocol="coco")
    result = {"train_seconds": trained, "steps": steps, "images": images, "epochs": images / n,
              "test_map": float(coco["map"]), "test_map50": float(coco["map_50"]), "test_map75": float(coco["map_75"])}
    print(f"  torchvision {type(model).__name__} (same parts), plain loop for {trained:.1f} s ({steps} steps, "
          f"{images / n:.2f} epochs): test mAP@0.5 {result['test_map50']:.4f}, COCO mAP {result['test_map']:.4f}",
          flush=True)
    return result


def bench_roi(workdir: Path, seed: int = 0) -> dict:
    rows = {}
    for pool in ("align", "pool"):
        out = workdir / f"faster_rcnn_mini-seed{seed}" if pool == "align" else workdir / f"roi-{pool}-seed{seed}"
        summary_file = out / "summary.json"
        if pool == "align" and summary_file.is_file():
            s = json.loads(summary_file.read_text())
        else:
            s = quiet_train("faster_rcnn_mini", seed=seed, variant_args={"roi_pool": pool}, out=out)
        rows[pool] = {k: s[k] for k in ("test_map", "test_map50", "test_map75", "train_seconds", "images_per_second")}
        print(f"  RoI {pool:<5}: COCO mAP {s['test_map']:.4f}, AP50 {s['test_map50']:.4f}, AP75 {s['test_map75']:.4f} "
              f"({s['train_seconds']:.0f} s, {s['images_per_second']:.0f} img/s)", flush=True)
    gain = {k: rows["align"][k] - rows["pool"][k] for k in ("test_map", "test_map50", "test_map75")}
    print(f"  RoI Align - RoI Pool: mAP {gain['test_map']:+.4f}, AP50 {gain['test_map50']:+.4f}, "
          f"AP75 {gain['test_map75']:+.4f}", flush=True)
    return {"runs": rows, "align_minus_pool": gain}


def main(argv: list[str] | None = None) -> int:
    parts = ["default", "speed", "same-time", "roi"]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=parts, choices=parts)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of parts 2 and 3")
    parser.add_argument("--steps", type=int, default=40, help="part 2: steps per trainer epoch")
    parser.add_argument("--rounds", type=int, default=3, help="part 2: paired trainer runs")
    parser.add_argument("--seconds", type=float, help="part 3: the training budget (default: part 1's mean "
                                                      "training seconds, or 300)")
    parser.add_argument("--workdir", type=Path, help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args(argv)
    report: dict = {"device": f"cpu ({args.threads} threads for parts 2 and 3)", "torch": str(torch.__version__),
                    "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M")}
    with tempfile.TemporaryDirectory(prefix="convatlas-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        if "default" in args.parts:
            print("1. `convatlas train faster_rcnn_mini`, no other arguments", flush=True)
            report["default_recipe"] = bench_default(args.seeds, workdir)
        threads = torch.get_num_threads()
        torch.set_num_threads(args.threads)
        if "speed" in args.parts:
            print("2. training images/s: convatlas trainer vs torchvision's FasterRCNN in a plain loop", flush=True)
            report["speed"] = bench_speed(args.steps, args.rounds, workdir)
        if "same-time" in args.parts:
            seconds = args.seconds or report.get("default_recipe", {}).get("mean_train_seconds") or 300.0
            print(f"3. torchvision's FasterRCNN trained for the same {seconds:.0f} s", flush=True)
            report["same_time"] = bench_same_time(seconds)
            if "default_recipe" in report:
                report["same_time"]["convatlas_test_map50"] = report["default_recipe"]["mean_test_map50"]
                report["same_time"]["convatlas_test_map"] = report["default_recipe"]["mean_test_map"]
        torch.set_num_threads(threads)
        if "roi" in args.parts:
            print("4. RoI Align against RoI Pool, the same recipe and seed", flush=True)
            report["roi"] = bench_roi(workdir, args.seeds[0])
    out = RESULTS / "bench_detection-cpu.json"
    previous = json.loads(out.read_text()) if out.is_file() else {}
    previous.update(report)
    write_json(out, previous)
    print(f"figures written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
