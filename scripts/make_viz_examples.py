"""Draw the README's pictures of `convatlas visualize` (docs/images/viz-*.png).

    python scripts/make_viz_examples.py                    # trains LeNet-5 on the digits first (~10 s)
    python scripts/make_viz_examples.py --run runs/lenet5  # or draws from a run you trained

Training is `convatlas train lenet5_modern` for a few epochs on the embedded digits; every
picture is then exactly what the printed `convatlas visualize` command writes.
"""

from __future__ import annotations

import argparse
import shlex
import tempfile
from pathlib import Path

import torch

import convatlas
from convatlas import viz
from convatlas.train import NO_DISTORTIONS

# (file name, method, options): one picture per method of `convatlas visualize`. The test split
# is sorted by class; image 715 is a 7.
SEVEN = 715
EXAMPLES: list[tuple[str, str, dict]] = [
    ("viz-filters.png", "filters", {"layer": "c1"}),
    ("viz-features.png", "features", {"layer": "act1", "index": SEVEN}),
    ("viz-deconvnet.png", "deconvnet", {"layer": "s4", "index": SEVEN}),
    ("viz-top-patches.png", "top-patches", {"layer": "act3"}),
    ("viz-occlusion.png", "occlusion", {"index": SEVEN}),
    ("viz-gradcam.png", "gradcam", {"index": SEVEN}),
    ("viz-saliency.png", "saliency", {"index": SEVEN}),
    ("viz-guided-backprop.png", "guided-backprop", {"index": SEVEN}),
]


def _command(run: Path, method: str, options: dict, out: Path) -> str:
    flags = " ".join(f"--{key.replace('_', '-')} {shlex.quote(str(value))}" for key, value in options.items())
    return f"convatlas visualize {run} --method {method} {flags} -o {out}".replace("  ", " ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="run directory of a digits network (default: train one)")
    parser.add_argument("--epochs", type=float, default=4, help="epochs when training here (4)")
    parser.add_argument("--out", type=Path, default=Path("docs/images"), help="folder for the pictures")
    args = parser.parse_args()
    torch.manual_seed(0)
    run = args.run
    if run is None:
        run = Path(tempfile.mkdtemp(prefix="viz-examples-")) / "lenet5"
        convatlas.train("lenet5_modern", epochs=args.epochs, out=run, quiet=True, optimizer="adamw", lr=3e-3,
                        weight_decay=0.0, **NO_DISTORTIONS)
    inspected = viz.load_model(run)
    for name, method, options in EXAMPLES:
        out = args.out / name
        result = viz.visualize(inspected, method, out, **options)
        size = out.stat().st_size
        if size >= 300_000:
            raise SystemExit(f"{out} is {size:,} bytes; README pictures must stay under 300 KB")
        print(f"{_command(run, method, options, out)}\n    {size / 1000:.0f} KB: {result.summary}")


if __name__ == "__main__":
    main()
