"""SSD: the default mini's mAP and time, its training speed against torchvision's SSD, torchvision's
mAP after the same training time, and the inference time against faster_rcnn_mini - in one run.

    python benchmarks/bench_ssd.py                             # every part
    python benchmarks/bench_ssd.py --parts speed               # only part 2

1. **Default recipe** (``default``). ``convatlas train ssd_mini`` with no other arguments: COCO
   mAP@[.5:.95], mAP@0.5 and training seconds per seed. The goal (issue 16): mAP@0.5 >= 0.85 in
   <= 300 s of training on 2 CPU cores.
2. **Training images/s** (``speed``). The convatlas trainer on ``ssd_mini`` against torchvision's
   ``SSD`` with the same parts - the same backbone and extra layers (a copy), default boxes
   (``DefaultBoxGenerator`` with the mini's scales, ratios and steps), 3x3 heads, IoU threshold,
   3:1 hard negatives, 64x64 images, no resizing - in a plain PyTorch loop (AdamW, the sum of its
   two losses) on real digit-scene batches, paired step by step as in ``bench_detection.py``. The
   ratio is convatlas's images/s over the plain loop's (goal >= 1.0). torchvision matches by argmax
   (its only rule), convatlas by the paper's bipartite matching (its default).
3. **mAP after the same time** (``same-time``). That torchvision SSD trained from scratch for part
   1's training seconds with the recipe's optimiser and one-cycle shape laid over the wall-clock
   budget (``bench_detection.bench_same_time``), scored on the 1,000 test scenes (score threshold
   0.01 on both sides).
4. **Inference** (``latency``). ms per image at batch 1 and batch 16 on the test scenes, eval mode,
   of part 1's trained ssd_mini against a trained faster_rcnn_mini (``--faster-run``, or
   ``bench_detection.py``'s run in ``--workdir``, or trained here with its default recipe). The
   goal: the single-stage mini infers faster per image at batch 1.

Figures go to ``benchmarks/results/bench_ssd-cpu.json``. For a quick check that the script works
(not for figures): ``--parts speed --steps 3 --rounds 1`` or ``--quick`` (every part on a few
hundred scenes and one epoch).
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

import convatlas
import convatlas.detection.ssd  # noqa: F401  (registers ssd_mini until the package imports it)
from convatlas._io import write_json
from convatlas.compare.runs import measure_latency
from bench_detection import _Scenes, bench_default, bench_same_time, bench_speed  # noqa: E402
from _paired import quiet_train  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


class _Backbone(nn.Module):
    """The mini's source maps as torchvision's SSD takes them (an ordered dict)."""

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base

    def forward(self, x: torch.Tensor):
        return self.base(x)


def torchvision_twin(seed: int = 0) -> nn.Module:
    """torchvision's SSD with ssd_mini's backbone and extra layers (a fresh copy), default boxes,
    heads, thresholds and test settings; 64x64 in, no resizing, mean 0 / std 1."""
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
    from torchvision.models.detection.ssd import SSD, SSDHead

    torch.manual_seed(seed)
    ours = convatlas.create_model("ssd_mini")
    b, s = ours.default_boxes, ours.settings
    generator = DefaultBoxGenerator([[int(a) for a in r] for r in b.aspect_ratios], scales=list(b.scales),
                                    steps=[int(v) for v in b.steps], clip=b.clip)
    head = SSDHead([conv.in_channels for conv in ours.head.conf], b.num_boxes_per_location(), ours.num_classes)
    return SSD(_Backbone(copy.deepcopy(ours.backbone)), generator, (64, 64), ours.num_classes, image_mean=[0.0],
               image_std=[1.0], head=head, score_thresh=s.score_thresh, nms_thresh=s.nms_thresh,
               detections_per_img=s.detections_per_img, iou_thresh=s.iou_thresh, topk_candidates=s.topk_candidates,
               positive_fraction=1 / (1 + s.neg_pos_ratio))


def _trained_faster(args: argparse.Namespace, workdir: Path, **train_kwargs) -> Path:
    if args.faster_run:
        return args.faster_run
    candidate = workdir / "faster_rcnn_mini-seed0"
    if not (candidate / "summary.json").is_file():
        quiet_train("faster_rcnn_mini", seed=0, out=candidate, **train_kwargs)
    return candidate


def bench_latency(runs: dict[str, Path], repeats: int = 20) -> dict:
    """ms per image at batch 1 and 16 of each trained run on the first 64 test scenes."""
    x = _Scenes().images("test", torch.arange(64))
    rows = {}
    for name, run_dir in runs.items():
        model = convatlas.train.load_run(run_dir, "last").model.eval()
        b1 = measure_latency(model, tuple(x.shape[1:]), 1, repeats=repeats * 5, inputs=x)
        b16 = measure_latency(model, tuple(x.shape[1:]), 16, repeats=repeats, inputs=x)
        rows[name] = {"ms_per_image_batch1": b1, "ms_per_image_batch16": b16, "run": str(run_dir)}
        print(f"  {name:<17} {b1:6.2f} ms/image at batch 1, {b16:6.2f} at batch 16 ({run_dir})", flush=True)
    ratio = rows["faster_rcnn_mini"]["ms_per_image_batch1"] / rows["ssd_mini"]["ms_per_image_batch1"]
    print(f"  ssd_mini is {ratio:.2f}x as fast as faster_rcnn_mini at batch 1 (goal > 1)", flush=True)
    return {"rows": rows, "speedup_batch1": ratio,
            "method": "convatlas.compare.runs.measure_latency on the first 64 test scenes, eval mode, median"}


def main(argv: list[str] | None = None) -> int:
    parts = ["default", "speed", "same-time", "latency"]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=parts, choices=parts)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of parts 2-4")
    parser.add_argument("--steps", type=int, default=40, help="part 2: steps per trainer epoch")
    parser.add_argument("--rounds", type=int, default=3, help="part 2: paired trainer runs")
    parser.add_argument("--seconds", type=float, help="part 3: the training budget (default: part 1's mean "
                                                      "training seconds, or 300)")
    parser.add_argument("--faster-run", type=Path, help="part 4: a trained faster_rcnn_mini run")
    parser.add_argument("--workdir", type=Path, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--quick", action="store_true", help="check that the script runs: tiny settings, and the "
                                                             "figures are not written")
    args = parser.parse_args(argv)
    small = {"epochs": 1, "data_options": {"num_train": 160, "num_test": 64}} if args.quick else {}
    if args.quick:
        args.steps, args.rounds, args.seconds = min(args.steps, 3), 1, args.seconds or 5.0
    report: dict = {"device": f"cpu ({args.threads} threads for parts 2-4)", "torch": str(torch.__version__),
                    "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M")}
    with tempfile.TemporaryDirectory(prefix="convatlas-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        if "default" in args.parts or "latency" in args.parts:
            print("1. `convatlas train ssd_mini`, no other arguments", flush=True)
            if small:
                report["default_recipe"] = {"runs": [quiet_train("ssd_mini", seed=s, out=workdir / f"ssd_mini-seed{s}",
                                                                 **small) for s in args.seeds]}
                print(f"  quick run: test mAP@0.5 {report['default_recipe']['runs'][0]['test_map50']:.4f}", flush=True)
            else:
                report["default_recipe"] = bench_default(args.seeds, workdir, "ssd_mini", ">= 0.85 in <= 300 s")
        threads = torch.get_num_threads()
        torch.set_num_threads(args.threads)
        if "speed" in args.parts:
            print("2. training images/s: convatlas trainer vs torchvision's SSD in a plain loop", flush=True)
            report["speed"] = bench_speed(args.steps, args.rounds, workdir, "ssd_mini", torchvision_twin,
                                          "torchvision.models.detection.ssd.SSD with ssd_mini's backbone, extra "
                                          "layers, default boxes, heads and thresholds, plain loop, AdamW")
        if "same-time" in args.parts:
            seconds = args.seconds or report.get("default_recipe", {}).get("mean_train_seconds") or 300.0
            print(f"3. torchvision's SSD trained for the same {seconds:.0f} s", flush=True)
            report["same_time"] = bench_same_time(seconds, twin=torchvision_twin)
            if "mean_test_map50" in report.get("default_recipe", {}):
                report["same_time"]["convatlas_test_map50"] = report["default_recipe"]["mean_test_map50"]
                report["same_time"]["convatlas_test_map"] = report["default_recipe"]["mean_test_map"]
        if "latency" in args.parts:
            print("4. inference ms/image: ssd_mini against faster_rcnn_mini", flush=True)
            report["latency"] = bench_latency({"ssd_mini": workdir / f"ssd_mini-seed{args.seeds[0]}",
                                               "faster_rcnn_mini": _trained_faster(args, workdir, **small)},
                                              repeats=2 if args.quick else 20)
        torch.set_num_threads(threads)
    if args.quick:
        print("quick check done; figures not written")
        return 0
    out = RESULTS / "bench_ssd-cpu.json"
    previous = json.loads(out.read_text()) if out.is_file() else {}
    previous.update(report)
    write_json(out, previous)
    print(f"figures written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
