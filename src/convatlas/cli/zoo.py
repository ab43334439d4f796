"""`convatlas list` and `convatlas card NAME`."""

from __future__ import annotations

import argparse
import json

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


def cmd_list(args: argparse.Namespace) -> int:
    names = list_models(args.pattern, family=args.family)
    if args.format == "names":
        print("\n".join(names))
        return 0
    rows = []
    for name in names:
        card = model_card(name)
        rows.append({
            "name": name, "family": card.family, "year": card.year,
            "input": "x".join(map(str, card.input_size)),
            "params": card.params.value if card.params else None,
            "macs": card.macs.value if card.macs else None,
            "top1": card.top1.value if card.top1 else None,
            "torchvision": card.torchvision,
        })
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title=f"convatlas zoo: {len(rows)} networks")
    for col in ("name", "family", "year", "input", "params", "MACs", "top-1 %", "torchvision"):
        table.add_column(col, justify="right" if col in ("params", "MACs", "top-1 %", "year") else "left")
    for r in rows:
        table.add_row(
            r["name"], r["family"], str(r["year"]), r["input"], _fmt_count(r["params"]),
            _fmt_count(r["macs"]), "-" if r["top1"] is None else f"{r['top1']:.1f}", r["torchvision"] or "-",
        )
    Console().print(table)
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
    if card.torchvision or card.timm:
        console.print(f"  same architecture: torchvision {card.torchvision or '-'}, timm {card.timm or '-'}")
    if card.notes:
        console.print(f"  notes:   {card.notes}")


def cmd_card(args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps(model_card(args.name).to_dict(), indent=2, default=str))
    else:
        print_card(args.name)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list the registered networks")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style name pattern, e.g. 'resnet*'")
    p.add_argument("--family", help="only this family (e.g. resnet, vgg)")
    p.add_argument("--format", choices=("table", "json", "names"), default="table")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("card", help="print a network's model card (citation and published numbers)")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="print the card as JSON")
    p.set_defaults(func=cmd_card)
