"""`convatlas compare` and `convatlas atlas`."""

from __future__ import annotations

import argparse
from pathlib import Path

from convatlas.cli import CliError


def cmd_compare(args: argparse.Namespace) -> int:
    if args.published:
        from convatlas.compare.published import compare_published

        written = compare_published(args.out, names=args.models or None)
        for kind, paths in written.items():
            print(f"{kind}: {', '.join(str(p) for p in paths)}")
        return 0
    if not args.models:
        raise CliError("name the networks to compare (e.g. `convatlas compare lenet5 resnet20 --data digits`), "
                       "or pass --published for the zoo's published results")
    from convatlas.train.compare import compare_models

    result = compare_models(
        args.models, data=args.data, epochs=args.epochs, recipe=args.recipe, image_size=args.image_size,
        out=args.out, seed=args.seed, quiet=args.quiet, latency_batch=args.latency_batch,
    )
    result.print()
    return 0


def cmd_atlas(args: argparse.Namespace) -> int:
    from convatlas.compare.atlas import build_atlas

    index = build_atlas(args.out, runs=args.runs, names=args.models or None)
    print(f"atlas written: {index}  (open it in a browser; it works offline)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="compare networks: test score vs operations vs parameters",
        description="Train and measure networks of one task on a dataset (cached per network in run directories; "
                    "an interrupted comparison resumes) and chart their test score - top-1 for classifiers, mIoU "
                    "for segmentation, COCO mAP for detectors (with mAP@0.5 and AP75; a detector's MACs are "
                    "counted on a real forward pass on a test scene, proposals included) - against MACs and "
                    "CPU latency; or chart the zoo's published results (--published).",
    )
    p.add_argument("models", nargs="*", help="registered network names of one task, or variants "
                                              "NAME:key=value[,key=value] (e.g. unet_mini:upsample=nearest, "
                                              "faster_rcnn_mini:roi_pool=pool)")
    p.add_argument("--published", action="store_true", help="chart the published ImageNet results of the zoo")
    p.add_argument("--data", default=None, help="dataset name or folder (default: the embedded digits for "
                                                 "classifiers, the digit scenes for segmentation networks and "
                                                 "detectors)")
    p.add_argument("--epochs", type=float, help="epochs per network (default: the trainer's default for the model)")
    p.add_argument("--recipe", help="a recipe YAML applied to every network")
    p.add_argument("--image-size", type=int, help="resize images to this side")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--latency-batch", type=int, default=32, help="the larger batch for latency (default 32)")
    p.add_argument("--out", "-o", type=Path, default=None, help="output folder (default runs/compare or runs/published)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_with_default_out(cmd_compare))

    p = sub.add_parser("atlas", help="write the HTML atlas of every network (works offline)")
    p.add_argument("--out", "-o", type=Path, default=Path("atlas"), help="output folder (default ./atlas)")
    p.add_argument("--runs", type=Path, help="a folder of `convatlas compare` results to add")
    p.add_argument("models", nargs="*", help="only these networks (default: all)")
    p.set_defaults(func=cmd_atlas)


def _with_default_out(func):
    def run(args: argparse.Namespace) -> int:
        if args.out is None:
            args.out = Path("runs") / ("published" if args.published else "compare")
        return func(args)

    return run
