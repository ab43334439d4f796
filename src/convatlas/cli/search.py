"""`convatlas search`: architecture search (:func:`convatlas.search.runner.run_search`), then a
full training of the best genotype beside it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from convatlas.cli import CliError

_PROXY_FLAGS = ("data", "image_size", "epochs", "train_size", "val_size", "batch_size", "lr", "threads")
_STRATEGY_FLAGS = {"population": "population", "sample_size": "sample_size", "controller_lr": "lr",
                   "controller_batch": "batch", "baseline_decay": "baseline_decay"}


def _list() -> int:
    from convatlas.search import get_space, list_spaces
    from convatlas.search.strategies import list_strategies

    for name in list_spaces():
        print(get_space(name).describe())
    print(f"strategies: {', '.join(list_strategies())}")
    return 0


def _train_best(result: Any, settings: dict[str, Any], epochs: int, quiet: bool) -> Path | None:
    from convatlas.train import train

    best = result.best
    run_dir = result.out / f"best-trial-{best['trial']:04d}"
    summary = run_dir / "summary.json"
    if summary.exists() and json.loads(summary.read_text()).get("status") == "complete":
        print(f"best genotype (trial {best['trial']}) already trained: {run_dir}")
        return run_dir
    if (run_dir / "checkpoints" / "last.pt").exists():
        train(resume=run_dir, quiet=quiet)
    else:
        train("nas", variant_args={"genotype": best["genotype"]}, data=settings["proxy"]["data"], epochs=epochs,
              out=run_dir, quiet=quiet)
    return run_dir


def cmd_search(args: argparse.Namespace) -> int:
    if args.list:
        return _list()
    from convatlas.search.runner import run_search

    if args.resume and args.join:
        raise CliError("--resume continues this machine's search, --join adds a worker to it: give one")
    existing = args.resume or args.join
    if existing and args.out:
        raise CliError("--resume/--join name the search's folder; leave --out out")
    if not existing and not args.space:
        raise CliError("name a search space (`convatlas search --list` shows them), e.g. "
                       "`convatlas search mini --strategy evolution --trials 100 --out runs/search`")
    proxy = {k: getattr(args, k) for k in _PROXY_FLAGS if getattr(args, k) is not None}
    strategy_options = {v: getattr(args, k) for k, v in _STRATEGY_FLAGS.items() if getattr(args, k) is not None}
    from convatlas.cli.train import _parse_variants

    space_options = _parse_variants(args.space_option, "--space-option", "layers=4")
    if existing:
        settings_file = Path(existing) / "search.yaml"
        stored = yaml.safe_load(settings_file.read_text()) if settings_file.exists() else {}
        proxy_arg = {**stored.get("proxy", {}), **proxy} if proxy else None
        strategy_arg = {**stored.get("strategy_options", {}), **strategy_options} if strategy_options else None
    else:
        proxy_arg, strategy_arg = proxy, strategy_options
    result = run_search(
        args.space, strategy=args.strategy, trials=args.trials, out=existing or args.out or "runs/search",
        seed=args.seed, resume=bool(args.resume), join=bool(args.join), objective=args.objective,
        power=args.reward_power, target=args.target, mnas_w=args.mnas_w, latency=args.latency, proxy=proxy_arg,
        space_options=space_options or None, strategy_options=strategy_arg, storage=args.storage, quiet=args.quiet,
    )
    best = result.best
    print(f"{len(result.trials)} trials in {result.out}; best: trial {best['trial']} reward {best['reward']:.4f} "
          f"(val acc {best['val_acc']:.4f}, {best['macs'] / 1e6:.2f}M MACs, {best['params']:,} params)")
    if args.join:
        return 0
    print(f"best genotype: {result.best_genotype_path}  (convatlas train nas --variant genotype={result.best_genotype_path})")
    if args.best_epochs:
        settings = yaml.safe_load((result.out / "search.yaml").read_text())
        run_dir = _train_best(result, settings, args.best_epochs, args.quiet)
        print(f"best genotype trained: {run_dir}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="architecture search: random, regularized evolution or a REINFORCE controller",
                       description="Search a space of networks: each trial trains a proxy of one member on held-out "
                                   "training images; every trial is kept in an Optuna storage (resumable, shareable "
                                   "by several workers), and the best genotype is then trained in full.")
    p.add_argument("space", nargs="?", help="search space: mini, zoph_le, nasnet_a (--list shows them)")
    p.add_argument("--list", action="store_true", help="list the spaces and strategies")
    p.add_argument("--strategy", default=None, help="random (default), evolution or reinforce")
    p.add_argument("--trials", type=int, default=None, help="trials to run in all (default 20)")
    p.add_argument("--out", default=None, help="the search's folder (default runs/search)")
    p.add_argument("--seed", type=int, default=None, help="the search's seed (default 0)")
    p.add_argument("--resume", metavar="DIR", help="continue the search in DIR (after a crash or kill)")
    p.add_argument("--join", metavar="DIR", help="add a worker to the search in DIR (same storage)")
    p.add_argument("--storage", default=None,
                   help="Optuna storage URL (default: a JournalStorage file DIR/optuna.journal); e.g. "
                        "postgresql://... across machines")
    g = p.add_argument_group("objective")
    g.add_argument("--objective", choices=("accuracy", "mnas"), default=None,
                   help="accuracy (default) or MnasNet's ACC*(LAT/T)^w")
    g.add_argument("--reward-power", type=float, default=None, help="reward = accuracy^p (Zoph & Le: 3; default 1)")
    g.add_argument("--target", type=float, default=None, help="mnas: the target T (MACs, or ms with --latency measured)")
    g.add_argument("--mnas-w", type=float, default=None, help="mnas: the exponent w (default -0.07)")
    g.add_argument("--latency", choices=("macs", "measured"), default=None, help="mnas: LAT from MACs (default) or measured")
    g = p.add_argument_group("space and strategy")
    g.add_argument("--space-option", action="append", metavar="KEY=VALUE", help="an option of the space, e.g. layers=4")
    g.add_argument("--population", type=int, default=None, help="evolution: population size (default 20)")
    g.add_argument("--sample-size", type=int, default=None, help="evolution: tournament sample size (default 5)")
    g.add_argument("--controller-lr", type=float, default=None, help="reinforce: Adam lr (paper 6e-4)")
    g.add_argument("--controller-batch", type=int, default=None, help="reinforce: children per update (default 8)")
    g.add_argument("--baseline-decay", type=float, default=None, help="reinforce: EMA baseline decay (default 0.95)")
    g = p.add_argument_group("proxy training of each trial")
    g.add_argument("--data", default=None, help="classification dataset (default digits)")
    g.add_argument("--image-size", type=int, default=None, help="side in pixels (default 14)")
    g.add_argument("--epochs", type=float, default=None, help="epochs per trial (default 2)")
    g.add_argument("--train-size", type=int, default=None, help="training images per trial (default 3000)")
    g.add_argument("--val-size", type=int, default=None, help="held-out training images that score a trial (default 1000)")
    g.add_argument("--batch-size", type=int, default=None, help="batch size (default 32)")
    g.add_argument("--lr", type=float, default=None, help="peak learning rate (default 0.2)")
    g.add_argument("--threads", type=int, default=None, help="CPU threads, fixed (default 2)")
    p.add_argument("--best-epochs", type=int, default=10,
                   help="train the best genotype on the whole training split for this many epochs (0: do not)")
    p.add_argument("--quiet", action="store_true", help="log lines instead of a progress bar")
    p.set_defaults(func=cmd_search)
