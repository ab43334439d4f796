"""`convatlas edges [IMAGE] -o out.png`: edge filters applied as a convolution layer."""

from __future__ import annotations

import argparse

from rich.console import Console

from convatlas.edges import DEFAULT_FILTERS, EDGE_KERNELS, SAMPLE_IMAGES, detect_edges


def cmd_edges(args: argparse.Namespace) -> int:
    filters = [f.strip() for f in args.filters.split(",") if f.strip()]
    result = detect_edges(args.image, args.output, filters, gray=args.gray)
    console = Console()
    h, w, c = result.image_shape
    console.print(f"applied {', '.join(result.filters)} to a {h}×{w}×{c} image, per channel")
    for name, value in result.mean_abs_response.items():
        console.print(f"  {name:17} mean |response| {value:.4f}")
    console.print(f"wrote {result.path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("edges", help="apply vertical/horizontal/Sobel/Laplacian filters to a photo as a conv layer")
    p.add_argument("image", nargs="?", default=None,
                   help=f"image file, or a bundled photo ({', '.join(SAMPLE_IMAGES)}); default: astronaut")
    p.add_argument("-o", "--output", default="edges.png", help="picture to write (.png or .svg)")
    p.add_argument("--filters", default=",".join(DEFAULT_FILTERS),
                   help=f"comma-separated, from: {', '.join(EDGE_KERNELS)}")
    p.add_argument("--gray", action="store_true", help="convert to one gray channel first")
    p.set_defaults(func=cmd_edges)
