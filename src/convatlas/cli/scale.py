"""`convatlas scale`: EfficientNet's compound-scaling search (:func:`convatlas.search.scaling.run_scale`)."""

from __future__ import annotations

import argparse


def cmd_scale(args: argparse.Namespace) -> int:
    from convatlas.search.proxy import ProxyConfig
    from convatlas.search.scaling import run_scale

    proxy = {k: getattr(args, k) for k in ("train_size", "val_size", "epochs", "threads") if getattr(args, k) is not None}
    base = ProxyConfig.from_dict({"data": args.data, **proxy})
    summary = run_scale(args.base, out=args.out, data=args.data, phis=args.phi, candidates=args.candidates,
                        seeds=args.seeds, proxy=base,
                        final=ProxyConfig.from_dict({**base.to_dict(), "holdout": "test",
                                                     "epochs": args.final_epochs or 2 * base.epochs}),
                        log=lambda line: print(line, flush=True) if not args.quiet else None)
    c = summary["coefficients"]
    print(f"alpha {c['alpha']}, beta {c['beta']}, gamma {c['gamma']}; table: {args.out}/scaling.md, "
          f"chart: {args.out}/scaling.png")
    for verdict in summary["verdicts"].values():
        print(verdict)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scale", help="compound-scaling search (EfficientNet): alpha, beta, gamma at phi = 1, "
                                     "then compound against single-dimension scaling at equal MACs",
                       description="Grid-search depth, width and resolution multipliers at phi = 1 under "
                                   "alpha*beta^2*gamma^2 ~ 2 (step 0.05, within 5%: 108 candidates), train the "
                                   "candidates with a proxy, then compare compound scaling with depth-, width- and "
                                   "resolution-only scaling at equal measured MACs over several seeds.")
    p.add_argument("base", nargs="?", default="efficientnet_mini",
                   help="a zoo network with width_mult, depth_mult and resolution arguments (default efficientnet_mini)")
    p.add_argument("--data", default="digits", help="classification dataset (default digits)")
    p.add_argument("--phi", type=float, nargs="+", default=[1.0, 2.0], help="compound coefficients to compare at (default 1 2)")
    p.add_argument("--candidates", type=int, default=12, help="grid candidates to train, spread evenly over the 108 (default 12)")
    p.add_argument("--seeds", type=int, default=5, help="seeds per scaled network in the comparison (default 5)")
    p.add_argument("--out", default="runs/scale", help="output folder (a half-done one is continued)")
    p.add_argument("--epochs", type=float, default=None, help="proxy epochs of a grid candidate (default 2)")
    p.add_argument("--final-epochs", type=float, default=None, help="epochs of each compared network (default twice --epochs)")
    p.add_argument("--train-size", type=int, default=None, help="training images (default 3000)")
    p.add_argument("--val-size", type=int, default=None, help="held-out training images that score the grid (default 1000)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads, fixed (default 2)")
    p.add_argument("--quiet", action="store_true", help="only the result")
    p.set_defaults(func=cmd_scale)
