"""`convatlas demo` (what `make demo` runs): train LeNet-5 and small AlexNet-, VGG-, ResNet-,
MobileNet- and GoogLeNet-style networks on the embedded MNIST digits, offline, then chart test
accuracy against operations and parameters and say where the chart and the table are.

It is one call into the Python API::

    from convatlas.train import compare_models
    compare_models(list(DEMO_TRAIN_ARGS), data="digits", image_size=32,
                   train_args=DEMO_TRAIN_ARGS, out="runs/demo")

Every network trains with the recipe its card names - ``lenet5_digits`` for LeNet-5,
``mini_digits`` for the minis - for the number of epochs in :data:`DEMO_TRAIN_ARGS`, chosen so
that all of them train, are measured and are charted in under five minutes on two CPU cores;
AlexNet, which like LeNet-5 has no batch normalisation, also gets a lower learning rate (at 0.1
it does not learn). Runs are cached in ``<out>/<network>``: a second demo reuses them. The
training loop chooses its thread count by timing (see :mod:`convatlas.engine.device`); latency
is measured on one thread. ``--threads N`` fixes both.
"""

from __future__ import annotations

from convatlas._checks import positive_int

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from convatlas.compare.runs import ComparisonRow

# Trainer arguments per network: epochs enough for each to reach 95-98% on the 1,000 test digits,
# few enough for the whole demo to finish in under five minutes on two CPU cores.
DEMO_TRAIN_ARGS: dict[str, dict[str, Any]] = {
    "lenet5": {"epochs": 8},
    "alexnet_mini": {"epochs": 6, "lr": 0.02},
    "vgg_mini": {"epochs": 5},
    "resnet_mini": {"epochs": 5},
    "mobilenet_mini": {"epochs": 6, "lr": 0.1},
    "googlenet_mini": {"epochs": 5},
}
DEMO_IMAGE_SIZE = 32  # LeNet-5's input; the 28x28 digits are resized to it for every network
DEMO_OUT = Path("runs") / "demo"


def _whole(value: float) -> int | float:
    """3.0 -> 3, so that ``--epochs 3`` and the table's 3 name the same cached runs."""
    return int(value) if float(value).is_integer() else value


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def cmd_demo(args: argparse.Namespace) -> int:
    import torch

    from convatlas.train.compare import compare_models

    if args.threads is not None:
        positive_int("--threads", args.threads)
    # Latency ("CPU ms/image") is measured on one thread unless told: with one thread per core any
    # other busy process stalls every parallel region. Training picks its own count by timing.
    torch.set_num_threads(args.threads or 1)

    models = list(dict.fromkeys(args.models or DEMO_TRAIN_ARGS))
    per_model = {name: dict(DEMO_TRAIN_ARGS[name]) for name in models if name in DEMO_TRAIN_ARGS}
    if args.epochs is not None:  # the same length for every network
        for extra in per_model.values():
            extra.pop("epochs", None)
    start = time.perf_counter()
    result = compare_models(models, data="digits", image_size=DEMO_IMAGE_SIZE,
                            epochs=None if args.epochs is None else _whole(args.epochs),
                            train_args=per_model, out=args.out, seed=args.seed, quiet=args.quiet,
                            threads=args.threads)
    seconds = time.perf_counter() - start

    from convatlas._io import atomic_write_text

    out = result.out
    table = atomic_write_text(out / "demo_table.md", markdown_table(result.rows))
    trained = sum(not r.reused for r in result.rows)
    print()
    print(f"{len(result.rows)} networks on the embedded MNIST digits (4,000 training / 1,000 test images, "
          f"{DEMO_IMAGE_SIZE}x{DEMO_IMAGE_SIZE}): {trained} trained, {len(result.rows) - trained} reused, "
          f"{_duration(seconds)}; " + (f"{args.threads} CPU thread{'s' if args.threads > 1 else ''}" if args.threads
                                        else "training threads timed per network, latency on 1 thread"))
    print()
    print(table.read_text(), end="")
    print()
    print(f"chart:  {out / 'comparison_chart.png'}  (and .svg): test accuracy vs MACs, circle area = parameters")
    print(f"        {out / 'latency_chart.png'}  (and .svg): test accuracy vs CPU latency")
    print(f"table:  {table}  (this table); {out / 'comparison_table.csv'}  (and .md, .json)")
    print(f"runs:   {out}/<network>/  (curves.png, metrics.csv, checkpoints); e.g. "
          f"convatlas eval {Path(result.rows[0].run_dir)}")
    return 0


def markdown_table(rows: Sequence[ComparisonRow]) -> str:
    """The demo's results as a Markdown table (what it prints, and ``demo_table.md``)."""
    lines = ["| network | test accuracy | parameters | MACs | CPU ms/image | epochs | training s |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.name} | {r.accuracy:.2f}% | {r.params:,} | {r.macs / 1e6:.2f} M | {r.latency_ms:.2f} | "
                     f"{r.epochs:g} | {r.train_seconds:.1f} |")
    return "\n".join(lines) + "\n"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="train LeNet-5 and small AlexNet/VGG/ResNet/MobileNet/GoogLeNet nets on the embedded digits, "
             "chart them",
        description="Train LeNet-5 and the scaled-down classic networks (alexnet_mini, vgg_mini, resnet_mini, "
                    "mobilenet_mini, googlenet_mini) on the embedded MNIST digits at 32x32, measure parameters, "
                    "MACs and CPU latency, and draw the accuracy-vs-operations chart and table. Takes under five "
                    "minutes on two CPU cores; runs are cached, so a second demo is quick.",
    )
    p.add_argument("--models", "--model", nargs="+", metavar="NAME",
                   help=f"networks to train (default: {' '.join(DEMO_TRAIN_ARGS)})")
    own = ", ".join(f"{name} {args['epochs']}" for name, args in DEMO_TRAIN_ARGS.items())
    p.add_argument("--epochs", type=float,
                   help=f"epochs for every network (default: each network's own, {own}; others: the trainer's default)")
    p.add_argument("--out", "-o", type=Path, default=DEMO_OUT, metavar="DIR",
                   help=f"output folder: charts, tables and one run directory per network (default: {DEMO_OUT})")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for training and latency (default: training times the candidate counts on "
                        "its first steps and keeps the fastest; latency on 1 thread)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="log lines instead of progress bars")
    p.set_defaults(func=cmd_demo)
