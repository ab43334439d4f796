"""`convatlas demo` (what `make demo` runs): train LeNet-5 on the embedded MNIST digits, offline,
and say how well it did and where the run directory and its curves are."""

from __future__ import annotations

import argparse


def cmd_demo(args: argparse.Namespace) -> int:
    from convatlas.train import rundir, train

    overrides = {"epochs": args.epochs} if args.epochs is not None else {}
    result = train(args.model, out=args.out, seed=args.seed, quiet=args.quiet, **overrides)
    s = result.summary
    print()
    print(f"{s['model']} on the embedded MNIST digits ({s['dataset']}: 4,000 training / 1,000 test images)")
    print(f"  test accuracy:  {s['test_acc']:.2%}  (top-5 {s['test_top5']:.2%})")
    print(f"  training time:  {s['train_seconds']:.1f} s for {s['epochs']:g} epochs, "
          f"{s['images_per_second']:,.0f} images/s on {s['device']}")
    print(f"  run directory:  {result.run_dir}")
    print(f"  curves:         {result.run_dir / rundir.CURVES}")
    print(f"  next:           convatlas eval {result.run_dir}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train LeNet-5 on the embedded MNIST digits and show where the results are")
    p.add_argument("--model", default="lenet5", help="model to train (default: lenet5, the paper's LeNet-5)")
    p.add_argument("--out", metavar="DIR", help="run directory (default: runs/<model>-digits-<time>)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=float, help="training epochs (default: the recipe's 20)")
    p.add_argument("--quiet", action="store_true", help="log lines instead of a progress bar")
    p.set_defaults(func=cmd_demo)
