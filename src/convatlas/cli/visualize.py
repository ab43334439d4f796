"""`convatlas visualize MODEL_OR_RUN --method METHOD -o out.png`: look inside a network."""

from __future__ import annotations

import argparse

import torch

from convatlas.cli import CliError

EPILOG = """\
methods:
  filters          the first layer's kernels as an image grid (RGB in colour); later layers
                   per input channel (--layer, --channel = one filter)
  features         the activation maps of --layer for the image (--channel = one map)
  deconvnet        ZFNet's projection of --layer's strongest activations back to pixels:
                   unpooling with max-pool switches, rectification, transposed filters
                   (--channel = one channel, else the --top-k strongest channels)
  top-patches      the dataset patches whose content most excites --channel of --layer (its
                   activation above an empty image's), beside their deconvnet projections
                   (ZFNet's Fig. 2; --num-images searched; blue: outside the image)
  occlusion        the probability of the correct class as a grey --window square slides
                   over the image (ZFNet's occlusion experiment), as a heat map
  gradcam          Grad-CAM of --target at --layer (default: the last layer whose output, at
                   its last call, is a map larger than 1x1: the last convolutional block)
  saliency         the vanilla gradient |dS/dI| (Simonyan et al.)
  guided-backprop  guided backpropagation (Springenberg et al.)

MODEL_OR_RUN is a zoo name (`convatlas list`; add --weights IMAGENET1K_V1 for torchvision's
weights, which downloads) or a run directory written by `convatlas train`. Without --image a
bundled picture is used: scikit-image's cat photo, or the dataset's test image --index (0) for
a run or a digits network. --list-layers prints the layer names to choose from.

examples:
  convatlas visualize zfnet --method filters -o filters.png
  convatlas visualize runs/lenet5 --method occlusion -o occlusion.png
  convatlas visualize alexnet --weights IMAGENET1K_V1 --method deconvnet --layer features.10 -o d.png
The README's pictures (docs/images/viz-*.png) come from `python scripts/make_viz_examples.py`.
"""


def _list_layers(source, weights, checkpoint: str) -> int:
    from rich.console import Console
    from rich.table import Table

    from convatlas.viz import load_image, load_model, projectable_layers
    from convatlas.viz.features import output_shapes

    inspected = load_model(source, weights, checkpoint=checkpoint)
    pixels, _, caption = load_image(inspected)
    x = inspected.preprocess(pixels)
    shapes = output_shapes(inspected.model, x)
    projectable = set(projectable_layers(inspected.model, x))
    table = Table(title=f"{inspected.name}: layers (output shapes for {caption})")
    for col in ("layer", "type", "output", "deconvnet"):
        table.add_column(col)
    for name, module in inspected.model.named_modules():
        if name:
            shape = shapes.get(name)
            table.add_row(name, type(module).__name__, "-" if shape is None else "x".join(map(str, shape)),
                          "yes" if name in projectable else "")
    Console().print(table)
    return 0


def cmd_visualize(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.list_layers:
        return _list_layers(args.source, args.weights, args.checkpoint)
    if args.method is None or args.out is None:
        raise CliError("--method and -o/--out are required (or use --list-layers)")
    from convatlas.viz import load_model, visualize

    inspected = load_model(args.source, args.weights, checkpoint=args.checkpoint)
    result = visualize(
        inspected, args.method, args.out, layer=args.layer, channel=args.channel, image=args.image, index=args.index,
        target=args.target, top_k=args.top_k, keep=args.keep, window=args.window, stride=args.stride,
        num_images=args.num_images,
    )
    print(f"wrote {result.path}: {result.method} of {result.model}: {result.summary}")
    return 0


def _target(text: str) -> int | str:
    return int(text) if text.lstrip("-").isdigit() else text


def register(sub: argparse._SubParsersAction) -> None:
    from convatlas.viz.figures import METHODS

    p = sub.add_parser(
        "visualize", help="look inside a network: filters, feature maps, deconvnet, occlusion, Grad-CAM, saliency",
        description="Look inside a network of the zoo or a trained run; writes the input and the result "
                    "side by side, labelled.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", metavar="MODEL_OR_RUN", help="zoo model name or run directory")
    p.add_argument("--method", choices=METHODS, help="what to show (see below)")
    p.add_argument("-o", "--out", help="output picture (.png, .svg or .pdf)")
    p.add_argument("--layer", help="module name, e.g. features.3 (see --list-layers)")
    p.add_argument("--channel", type=int, help="feature map / filter index")
    p.add_argument("--image", help="picture file (default: a bundled one)")
    p.add_argument("--index", type=int, default=0,
                   help="without --image: which test image of a run's dataset (0)")
    p.add_argument("--weights", help="torchvision weights for a zoo model, e.g. IMAGENET1K_V1 (downloads)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best", help="checkpoint of a run (best)")
    p.add_argument("--target", type=_target, help="class index or name to explain (default: predicted / correct)")
    p.add_argument("--top-k", type=int, default=9, help="projections or patches to show (9)")
    p.add_argument("--keep", choices=("max", "map"), default="max",
                   help="deconvnet: keep the strongest unit only (max, ZFNet) or the whole map")
    p.add_argument("--window", type=int, help="occlusion square side in pixels (default: a quarter of the image)")
    p.add_argument("--stride", type=int, help="occlusion step in pixels (default: a quarter of the window)")
    p.add_argument("--num-images", type=int, default=500, help="top-patches: images searched (500)")
    p.add_argument("--threads", type=int, default=0, help="limit CPU threads (0: PyTorch's default)")
    p.add_argument("--list-layers", action="store_true", help="print the layer names and exit")
    p.set_defaults(func=cmd_visualize)
