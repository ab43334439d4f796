"""The single-stage minis (``retinanet_mini``, ``ssd_mini``): each default recipe's mAP and time,
its training speed against torchvision's own detector with the same parts, torchvision's mAP after
the same training time, and the inference time against faster_rcnn_mini - in one run.

    python benchmarks/bench_single_stage.py                              # both, every part
    python benchmarks/bench_single_stage.py --models ssd_mini --parts speed

For each model:

1. **Default recipe** (``default``). ``convatlas train MODEL`` with no other arguments: COCO
   mAP@[.5:.95], mAP@0.5 and training seconds per seed. The goal (issue 16): mAP@0.5 >= 0.85 in
   <= 300 s of training on 2 CPU cores.
2. **Training images/s** (``speed``). The convatlas trainer against torchvision's ``RetinaNet`` /
   ``SSD`` with the same parts - the same backbone and pyramid or extra layers (a copy), anchors
   or default boxes (``DefaultBoxGenerator`` with the mini's scales, ratios and steps), heads,
   thresholds, 64x64 images, no resizing - in a plain PyTorch loop (AdamW, the sum of its losses)
   on real digit-scene batches, paired step by step as in ``bench_detection.py``. The ratio is
   convatlas's images/s over the plain loop's (goal >= 1.0). torchvision's RetinaNet scores K + 1
   classes (its background id's logit never fires) and its smooth L1 has beta 1 (ours 1/9);
   torchvision's SSD matches by argmax, convatlas by the paper's bipartite step.
3. **mAP after the same time** (``same-time``). That torchvision detector trained from scratch for
   part 1's training seconds with the recipe's optimiser and one-cycle shape laid over the
   wall-clock budget (``bench_detection.bench_same_time``), scored on the 1,000 test scenes.
4. **Inference** (``latency``). ms per image at batch 1 and batch 16 on the test scenes, eval mode,
   of part 1's trained mini against a trained faster_rcnn_mini (``--faster-run``, or
   ``bench_detection.py``'s run in ``--workdir``, or trained here with its default recipe). The
   goal: the single-stage mini infers faster per image at batch 1.

Figures go to ``benchmarks/results/bench_single_stage-cpu.json`` (one entry per model). For a
quick check that the script works (not for figures): ``--quick`` (every part on a few hundred
scenes and one epoch; nothing written).
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
from convatlas._io import write_json
from convatlas.compare.runs import measure_latency
from bench_detection import _Backbone, _Scenes, bench_default, bench_same_time, bench_speed  # noqa: E402
from _paired import quiet_train  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def retinanet_twin(seed: int = 0) -> nn.Module:
    """torchvision's RetinaNet with retinanet_mini's backbone and pyramid (a fresh copy), anchors,
    subnet depth and width, thresholds and test settings; 64x64 in, no resizing, mean 0 / std 1.
    torchvision scores K + 1 classes (its background id's logit never fires); its box loss is set
    to smooth L1 as ours (its beta is 1, ours 1/9)."""
    from torchvision.models.detection import RetinaNet
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    torch.manual_seed(seed)
    ours = convatlas.create_model("retinanet_mini")
    s = ours.settings
    theirs = RetinaNet(_Backbone(copy.deepcopy(ours.backbone), 64), num_classes=ours.num_classes, min_size=64,
                       max_size=64, image_mean=[0.0], image_std=[1.0],
                       anchor_generator=AnchorGenerator(ours.anchors.sizes, ours.anchors.aspect_ratios),
                       score_thresh=s.score_thresh, nms_thresh=s.nms_thresh, detections_per_img=s.detections_per_img,
                       fg_iou_thresh=s.fg_iou_thresh, bg_iou_thresh=s.bg_iou_thresh,
                       topk_candidates=s.topk_candidates)
    head = theirs.head
    head.classification_head.conv = copy.deepcopy(ours.head.cls_subnet)  # two convolutions, as ours
    head.regression_head.conv = copy.deepcopy(ours.head.box_subnet)
    head.regression_head._loss_type = "smooth_l1"
    return theirs


class _Maps(nn.Module):
    """The mini's source maps as torchvision's SSD takes them (an ordered dict)."""

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base

    def forward(self, x: torch.Tensor):
        return self.base(x)


def ssd_twin(seed: int = 0) -> nn.Module:
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
    return SSD(_Maps(copy.deepcopy(ours.backbone)), generator, (64, 64), ours.num_classes, image_mean=[0.0],
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


def bench_latency(model: str, runs: dict[str, Path], repeats: int = 20) -> dict:
    """ms per image at batch 1 and 16 of each trained run on the first 64 test scenes."""
    x = _Scenes().images("test", torch.arange(64))
    rows = {}
    for name, run_dir in runs.items():
        detector = convatlas.train.load_run(run_dir, "last").model.eval()
        b1 = measure_latency(detector, tuple(x.shape[1:]), 1, repeats=repeats * 5, inputs=x)
        b16 = measure_latency(detector, tuple(x.shape[1:]), 16, repeats=repeats, inputs=x)
        rows[name] = {"ms_per_image_batch1": b1, "ms_per_image_batch16": b16, "run": str(run_dir)}
        print(f"  {name:<17} {b1:6.2f} ms/image at batch 1, {b16:6.2f} at batch 16 ({run_dir})", flush=True)
    ratio = rows["faster_rcnn_mini"]["ms_per_image_batch1"] / rows[model]["ms_per_image_batch1"]
    print(f"  {model} is {ratio:.2f}x as fast as faster_rcnn_mini at batch 1 (goal > 1)", flush=True)
    return {"rows": rows, "speedup_batch1": ratio,
            "method": "convatlas.compare.runs.measure_latency on the first 64 test scenes, eval mode, median"}


TWINS = {  # model: (torchvision twin, its name, the baseline as the results file states it)
    "retinanet_mini": (retinanet_twin, "RetinaNet", "torchvision.models.detection.RetinaNet with retinanet_mini's "
                                                    "backbone, pyramid, anchors, subnets and thresholds, plain loop, AdamW"),
    "ssd_mini": (ssd_twin, "SSD", "torchvision.models.detection.ssd.SSD with ssd_mini's backbone, extra layers, "
                                  "default boxes, heads and thresholds, plain loop, AdamW"),
}


def bench_model(model: str, args: argparse.Namespace, workdir: Path, small: dict) -> dict:
    twin, name, baseline = TWINS[model]
    report: dict = {}
    if "default" in args.parts or "latency" in args.parts:
        print(f"1. `convatlas train {model}`, no other arguments", flush=True)
        if small:
            report["default_recipe"] = {"runs": [quiet_train(model, seed=s, out=workdir / f"{model}-seed{s}", **small)
                                                 for s in args.seeds]}
            print(f"  quick run: test mAP@0.5 {report['default_recipe']['runs'][0]['test_map50']:.4f}", flush=True)
        else:
            report["default_recipe"] = bench_default(args.seeds, workdir, model, ">= 0.85 in <= 300 s")
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    if "speed" in args.parts:
        print(f"2. training images/s: convatlas trainer vs torchvision's {name} in a plain loop", flush=True)
        report["speed"] = bench_speed(args.steps, args.rounds, workdir, model, twin, baseline)
    if "same-time" in args.parts:
        seconds = args.seconds or report.get("default_recipe", {}).get("mean_train_seconds") or 300.0
        print(f"3. torchvision's {name} trained for the same {seconds:.0f} s", flush=True)
        report["same_time"] = bench_same_time(seconds, twin=twin)
        if "mean_test_map50" in report.get("default_recipe", {}):
            report["same_time"]["convatlas_test_map50"] = report["default_recipe"]["mean_test_map50"]
            report["same_time"]["convatlas_test_map"] = report["default_recipe"]["mean_test_map"]
    if "latency" in args.parts:
        print(f"4. inference ms/image: {model} against faster_rcnn_mini", flush=True)
        report["latency"] = bench_latency(model, {model: workdir / f"{model}-seed{args.seeds[0]}",
                                                  "faster_rcnn_mini": _trained_faster(args, workdir, **small)},
                                          repeats=2 if small else 20)
    torch.set_num_threads(threads)
    return report


def main(argv: list[str] | None = None) -> int:
    parts = ["default", "speed", "same-time", "latency"]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(TWINS), choices=list(TWINS))
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
    report: dict = {}
    with tempfile.TemporaryDirectory(prefix="convatlas-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        for model in args.models:
            print(f"== {model}", flush=True)
            report[model] = {"device": f"cpu ({args.threads} threads for parts 2-4)", "torch": str(torch.__version__),
                             "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M"),
                             **bench_model(model, args, workdir, small)}
    if args.quick:
        print("quick check done; figures not written")
        return 0
    out = RESULTS / "bench_single_stage-cpu.json"
    previous = json.loads(out.read_text()) if out.is_file() else {}
    for model, figures in report.items():
        previous.setdefault(model, {}).update(figures)
    write_json(out, previous)
    print(f"figures written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
