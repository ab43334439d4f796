"""`convatlas list` and `convatlas card NAME`.

``list`` shows each network's parameters, MACs and receptive field *measured* by
:mod:`convatlas.analysis` at its native input size (built on the meta device; cached), next to its
year and published top-1; ``--published`` shows the cards' own numbers instead.
"""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.table import Table

from convatlas.registry import list_models, model_card


def _fmt_count(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= div:
            return f"{value / div:.2f}{suffix}{unit}"
    return f"{value:g}{unit}"


def _rf_text(rf: tuple[float, ...] | None) -> str:
    if not rf:
        return "-"
    texts = [f"{v:g}" for v in rf]
    return texts[0] if len(set(texts)) == 1 else "x".join(texts)


def cmd_list(args: argparse.Namespace) -> int:
    names = list_models(args.pattern, family=args.family, task=args.task)
    if args.format == "names":
        print("\n".join(names))
        return 0
    measured = {}
    errors: dict[str, str] = {}
    if not args.published:
        from convatlas.analysis.zoo import measure_zoo_models

        measured = measure_zoo_models(names, errors)
        for name, message in errors.items():
            print(f"convatlas: warning: could not measure {name}: {message}", file=sys.stderr)
    rows = []
    for name in names:
        card = model_card(name)
        m = measured.get(name)
        rows.append({
            "name": name, "task": card.task, "family": card.family, "year": card.year,
            "input": "x".join(map(str, card.input_size)),
            "params": m.params if m else None,
            "macs": m.macs if m else None,
            "receptive_field": list(m.receptive_field) if m and m.receptive_field else None,
            "published_params": card.params.value if card.params else None,
            "published_macs": card.macs.value if card.macs else None,
            "top1": card.top1.value if card.top1 else None,
            "miou": card.miou.value if card.miou else None,
            "torchvision": card.torchvision,
            **({"error": errors[name]} if name in errors else {}),
        })
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    source = "published" if args.published else "measured at the native input size"
    table = Table(title=f"convatlas zoo: {len(rows)} networks (params, MACs {source}; top-1 or mIoU published)")
    for col in ("name", "family", "year", "input", "params", "MACs", "RF", "top-1 / mIoU %"):
        table.add_column(col, justify="left" if col in ("name", "family", "input") else "right")
    for r in rows:
        params = r["published_params"] if args.published else r["params"]
        macs = r["published_macs"] if args.published else r["macs"]
        rf = "-" if args.published else _rf_text(tuple(r["receptive_field"]) if r["receptive_field"] else None)
        table.add_row(
            r["name"], r["family"], str(r["year"]), r["input"], _fmt_count(params), _fmt_count(macs), rf,
            "-" if r["top1"] is None and r["miou"] is None else
            f"{r['top1']:.1f}" if r["top1"] is not None else f"{r['miou']:.1f} mIoU",
        )
    Console(width=None if sys.stdout.isatty() else 120).print(table)
    return 0


def print_card(name: str, console: Console | None = None) -> None:
    console = console or Console()
    card = model_card(name)
    console.print(f"[bold]{card.name}[/bold]  ({card.family}, {card.year})")
    console.print(f"  paper:   {card.citation}")
    console.print(f"  idea:    {card.idea}")
    console.print(f"  input:   {'x'.join(map(str, card.input_size))} on {card.dataset}, "
                  f"{card.default_num_classes} classes")
    for label, pub, unit in (("params", card.params, ""), ("MACs", card.macs, ""),
                             ("top-1", card.top1, "%"), ("top-5", card.top5, "%")):
        if pub is not None:
            value = f"{pub.value:,}" if label == "params" else (_fmt_count(pub.value) if label == "MACs" else f"{pub.value}{unit}")
            console.print(f"  {label + ':':9}{value}   [dim]({pub.source})[/dim]")
    try:
        from convatlas.analysis.zoo import measure_zoo_model

        m = measure_zoo_model(name)
        console.print(f"  measured: params {m.params:,}, MACs {_fmt_count(m.macs)}, receptive field "
                      f"{_rf_text(m.receptive_field)} px at {'x'.join(map(str, m.input_size))}   "
                      f"[dim](convatlas summary {card.name})[/dim]")
    except Exception as exc:  # noqa: BLE001 - the card is still worth printing
        console.print(f"  measured: unavailable ({type(exc).__name__}: {exc})")
    feed = card.preprocessing
    size = card.input_size[1]
    fit = (f"resize to {feed.resize_to(size)}, centre crop {size} ({feed.interpolation})" if feed.fit == "resize"
           else f"pad (centre on black) to {size}")
    console.print(f"  feed:    {fit}; mean {feed.mean}, std {feed.std}"
                  + (f"; labels: {feed.labels}" if feed.labels else ""))
    recipes = ([f"default {card.recipe}"] if card.recipe else []) + [f"paper {r}" for r in card.recipes]
    console.print(f"  train:   {card.task}; recipe{'s' if len(recipes) > 1 else ''}: "
                  f"{', '.join(recipes) or 'none (the neutral defaults)'}   [dim](convatlas recipes)[/dim]")
    if card.torchvision or card.timm:
        console.print(f"  same architecture: torchvision {card.torchvision or '-'}, timm {card.timm or '-'}")
    if card.notes:
        console.print(f"  notes:   {card.notes}")


def cmd_card(args: argparse.Namespace) -> int:
    if args.json:
        data = model_card(args.name).to_dict()
        from convatlas.analysis.zoo import measure_zoo_model

        data["measured"] = measure_zoo_model(args.name).to_dict()
        print(json.dumps(data, indent=2, default=str))
    else:
        print_card(args.name)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list the registered networks")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style name pattern, e.g. 'resnet*'")
    p.add_argument("--family", help="only this family (e.g. resnet, vgg)")
    p.add_argument("--task", choices=("classification", "segmentation", "detection"), help="only networks for this task")
    p.add_argument("--format", choices=("table", "json", "names"), default="table")
    p.add_argument("--published", action="store_true",
                   help="show the cards' published params/MACs instead of measuring (no tracing)")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("card", help="print a network's model card (citation and published numbers)")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="print the card as JSON")
    p.set_defaults(func=cmd_card)
