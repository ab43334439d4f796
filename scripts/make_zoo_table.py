"""Write docs/zoo.md: every registered network with its measured and published numbers.

    python scripts/make_zoo_table.py            # -> docs/zoo.md

Parameters, MACs and receptive field are measured by the analysis at each network's native input
size (``convatlas list`` shows the same); the published columns come from the model cards, with
their sources.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import convatlas
from convatlas._io import atomic_write_text
from convatlas.analysis import measure_zoo_models


def _count(value: float | None) -> str:
    if value is None:
        return "–"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:g}"


def build_table() -> str:
    names = convatlas.list_models()
    measured = measure_zoo_models(names)
    lines = [
        "# The convatlas zoo",
        "",
        f"{len(names)} registered networks. *Measured* = `convatlas summary` at the native input size "
        "(MACs: conv + linear multiply-accumulates); *published* = the paper's (or the reference "
        "implementation's) number, source in `convatlas card NAME`; a detector's published score is its "
        "mAP (the protocol on its card: VOC07 or COCO). MACs marked * stop where the analysis can trace no "
        "further without data (a two-stage detector's proposals, a detector's NMS): the backbone and "
        "the heads before them. Written by `scripts/make_zoo_table.py`.",
        "",
        "| network | task | family | year | input | params (measured) | MACs (measured) | receptive field | "
        "published params | published MACs | published top-1 / mIoU / mAP % | torchvision |",
        "|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name in names:
        card = convatlas.model_card(name)
        m = measured.get(name)
        rf = "–"
        score = (card.top1.value if card.top1 else f"{card.miou.value} mIoU" if card.miou else
                 f"{card.map.value} mAP" if card.map else "–")
        if m is not None and m.receptive_field:
            rf = f"{max(m.receptive_field):g}"
        lines.append(
            f"| `{name}` | {card.task} | {card.family} | {card.year} | {'×'.join(map(str, card.input_size))} | "
            f"{m.params:,} | {_count(m.macs)}{'' if m.complete else '*'} | {rf} | "
            f"{_count(card.params.value) if card.params else '–'} | {_count(card.macs.value) if card.macs else '–'} | "
            f"{score} | {card.torchvision or '–'} |"
            if m is not None else
            f"| `{name}` | {card.task} | {card.family} | {card.year} | {'×'.join(map(str, card.input_size))} | "
            "– | – | – | – | – | – | – |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, default=Path("docs/zoo.md"))
    args = parser.parse_args()
    atomic_write_text(args.out, build_table())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
