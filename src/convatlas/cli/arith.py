"""`convatlas arith conv` and `convatlas arith rf`: the closed-form arithmetic of
:mod:`convatlas.arith` as tables."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from convatlas import arith


def _count(value: float) -> str:
    """1234567 -> '1,234,567 (1.23 M)'."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= div:
            return f"{value:,.0f} ({value / div:.3g} {suffix})"
    return f"{value:,.0f}"


def parse_shape(text: str) -> tuple[int, int, int]:
    """'28x28x192' -> (28, 28, 192), i.e. H×W×C as the notes write it."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 1:
        raise ValueError(f"--input must be HxWxC with positive integers, e.g. 28x28x192; got {text!r}")
    return values  # type: ignore[return-value]


def _padding(text: str) -> int | str:
    if text.lower() in ("same", "valid"):
        return text.lower()
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"--padding must be an integer, 'same' or 'valid', got {text!r}") from None
    if value < 0:
        raise ValueError(f"--padding must be non-negative, got {value}")
    return value


def _shape(shape: tuple[int, int, int]) -> str:
    return "×".join(map(str, shape))


def _layers_table(title: str, layers: tuple[arith.LayerCost, ...]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("layer", "input", "output", "params", "MACs"):
        table.add_column(column, justify="right" if column in ("params", "MACs") else "left")
    for layer in layers:
        table.add_row(layer.name, _shape(layer.in_shape), _shape(layer.out_shape),
                      _count(layer.params), _count(layer.macs))
    if len(layers) > 1:
        table.add_row("[bold]total[/bold]", "", "", _count(sum(l.params for l in layers)),
                      _count(sum(l.macs for l in layers)))
    return table


def _print_comparison(console: Console, comparison: arith.Comparison) -> None:
    console.print(_layers_table(comparison.baseline_name, comparison.baseline))
    console.print(_layers_table(comparison.alternative_name, comparison.alternative))
    console.print(
        f"{comparison.alternative_name}: {comparison.macs_ratio:.4f}× the MACs "
        f"({1 / comparison.macs_ratio:.2f}× fewer) and {comparison.params_ratio:.4f}× the parameters "
        f"of {comparison.baseline_name} (weights only)"
    )


def cmd_conv(args: argparse.Namespace) -> int:
    height, width, channels = parse_shape(args.input)
    padding = _padding(args.padding)
    cost = arith.conv2d_cost(height, width, channels, args.out_channels, args.kernel, args.stride,
                             padding, args.dilation, args.groups, bias=not args.no_bias)
    console = Console()
    table = Table(title=f"convolution {args.kernel}x{args.kernel}, {channels} -> {args.out_channels} channels",
                  title_justify="left", show_header=False)
    table.add_column("quantity")
    table.add_column("value", justify="right")
    pad_h = arith.resolve_padding(padding, height, args.kernel, args.stride, args.dilation)
    pad_w = arith.resolve_padding(padding, width, args.kernel, args.stride, args.dilation)
    rows = [
        ("input (H×W×C)", _shape(cost.in_shape)),
        ("output (H×W×C)", _shape(cost.out_shape)),
        ("kernel / stride / dilation / groups", f"{args.kernel} / {args.stride} / {args.dilation} / {args.groups}"),
        ("padding (top, bottom) (left, right)", f"{pad_h} {pad_w}"),
        ("effective kernel d·(k−1)+1", str(arith.effective_kernel_size(args.kernel, args.dilation))),
        ("parameters k²·C_in/g·C_out" + ("" if args.no_bias else " + C_out"), _count(cost.params)),
        ("MACs H_out·W_out·C_out·k²·C_in/g", _count(cost.macs)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    if args.bottleneck is not None:
        _print_comparison(console, arith.bottleneck_comparison(
            height, width, channels, args.out_channels, args.kernel, args.bottleneck, args.stride, padding))
    if args.depthwise:
        _print_comparison(console, arith.depthwise_separable_comparison(
            height, width, channels, args.out_channels, args.kernel, args.stride, padding))
        console.print(f"MobileNet's ratio 1/N + 1/k² = {arith.depthwise_separable_ratio(args.out_channels, args.kernel):.4f}")
    return 0


def cmd_rf(args: argparse.Namespace) -> int:
    layers = arith.parse_stack(args.stack)
    fields = arith.receptive_field(layers)
    sizes = arith.stack_output_sizes(layers, args.input_size) if args.input_size else None
    table = Table(title=f"receptive field of {args.stack}", title_justify="left")
    for column in ("#", "layer", "kind", "k", "stride", "pad", "dil", "RF", "jump", "start"):
        table.add_column(column, justify="left" if column in ("layer", "kind") else "right")
    if sizes is not None:
        table.add_column("output size", justify="right")
    for number, (layer, field) in enumerate(zip(layers, fields), start=1):
        row = [str(number), layer.token, layer.kind, str(layer.kernel_size), str(layer.stride),
               str(layer.padding), str(layer.dilation), str(field.rf), str(field.jump), f"{field.start:g}"]
        if sizes is not None:
            row.append(str(sizes[number - 1]))
        table.add_row(*row)
    console = Console()
    console.print(table)
    last = fields[-1]
    console.print(f"one output unit sees {last.rf}×{last.rf} input pixels; neighbouring units are "
                  f"{last.jump} pixels apart; unit 0 is centred on input pixel {last.start:g}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("arith", help="convolution arithmetic: output size, parameters, MACs, receptive field")
    commands = parser.add_subparsers(dest="arith_command", metavar="WHAT", required=True)

    p = commands.add_parser("conv", help="output size, parameters and MACs of one convolution")
    p.add_argument("--input", required=True, help="input as HxWxC, e.g. 28x28x192")
    p.add_argument("--out-channels", type=int, required=True, help="number of filters C_out")
    p.add_argument("--kernel", type=int, required=True, help="kernel size k (k×k)")
    p.add_argument("--stride", type=int, default=1)
    p.add_argument("--padding", default="same",
                   help="pixels on each side, 'same' or 'valid' (default 'same', as in the notes' Inception example)")
    p.add_argument("--dilation", type=int, default=1)
    p.add_argument("--groups", type=int, default=1)
    p.add_argument("--no-bias", action="store_true", help="count no bias parameters")
    p.add_argument("--bottleneck", type=int, metavar="C", help="also compare with a 1x1 reduction to C channels first")
    p.add_argument("--depthwise", action="store_true", help="also compare with a depthwise-separable convolution")
    p.set_defaults(func=cmd_conv)

    p = commands.add_parser("rf", help="receptive field, jump and start of a stack of layers")
    p.add_argument("stack", help="comma-separated layers, e.g. c3s1,c3s1,p2s2,c3d2 "
                                 "(c=conv, p=pool; then s=stride, p=padding, d=dilation)")
    p.add_argument("--input-size", type=int, help="also print each layer's output size for this input size")
    p.set_defaults(func=cmd_rf)
