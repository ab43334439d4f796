"""`convatlas summary MODEL`: per-layer shapes, parameters, MACs, memory and receptive field.

    convatlas summary resnet50 --input 3x224x224 --depth 2
    convatlas summary vgg16 --batch 64 --optimizer sgd --format csv --output vgg16.csv
    convatlas summary torchvision:efficientnet_b7
    convatlas summary timm:resnet50d

MODEL is a zoo name, ``torchvision:NAME`` or ``timm:NAME``. The network is built on the meta device
(no weights are allocated) and analysed with :func:`convatlas.analysis.summary`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import torch
import yaml
from torch import nn

from convatlas.cli import CliError

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


def _variant_args(pairs: list[str]) -> dict[str, Any]:
    args: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise CliError(f"--arg takes KEY=VALUE (e.g. width_mult=0.5), got {pair!r}")
        key, value = pair.split("=", 1)
        args[key.strip()] = yaml.safe_load(value)
    return args


def _torchvision_model(name: str, kwargs: dict[str, Any]) -> tuple[nn.Module, tuple[int, ...] | None]:
    try:
        import torchvision
    except ImportError:
        raise CliError("torchvision is not installed; `pip install torchvision` to analyse torchvision:NAME") from None
    from convatlas.analysis.zoo import meta_build

    available = torchvision.models.list_models()
    if name not in available:
        raise CliError(f"torchvision has no model {name!r}; it has e.g. {', '.join(available[:8])}, ...")
    with meta_build():
        model = torchvision.models.get_model(name, weights=None, **kwargs)
    size = None
    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT
        crop = weights.transforms().crop_size
        side = crop[0] if isinstance(crop, (list, tuple)) else int(crop)
        size = (3, side, side)
    except Exception:  # noqa: BLE001 - no weights table: fall back to the caller's default
        size = None
    return model, size


def _timm_model(name: str, kwargs: dict[str, Any]) -> tuple[nn.Module, tuple[int, ...] | None]:
    try:
        import timm
    except ImportError:
        raise CliError("timm is not installed; `pip install timm` to analyse timm:NAME") from None
    from convatlas.analysis.zoo import meta_build

    if not timm.is_model(name):
        raise CliError(f"timm has no model {name!r}; `timm.list_models('{name[:4]}*')` lists similar names")
    try:
        with meta_build():
            model = timm.create_model(name, pretrained=False, **kwargs)
    except Exception:  # noqa: BLE001 - some timm builders compute on their tensors: build on the CPU
        model = timm.create_model(name, pretrained=False, **kwargs)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    size = tuple(cfg["input_size"]) if cfg.get("input_size") else None
    return model, size


def load_model(spec: str, variant_args: dict[str, Any], num_classes: int | None) -> tuple[nn.Module, str, tuple[int, ...] | None]:
    """Build ``spec`` (zoo name, ``torchvision:NAME`` or ``timm:NAME``) on the meta device; return
    the model, its label and its native input size (None when unknown)."""
    kwargs = dict(variant_args)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if spec.startswith("torchvision:"):
        model, size = _torchvision_model(spec.split(":", 1)[1], kwargs)
        return model, spec, size
    if spec.startswith("timm:"):
        model, size = _timm_model(spec.split(":", 1)[1], kwargs)
        return model, spec, size
    from convatlas.analysis.zoo import meta_build
    from convatlas.registry import _check_kwargs, get_builder, model_card

    card = model_card(spec)
    builder = get_builder(card.name)
    kwargs.setdefault("num_classes", card.default_num_classes)
    _check_kwargs(card.name, builder, kwargs)
    with meta_build():
        model = builder(**kwargs)
    return model, card.name, tuple(card.input_size)


def cmd_summary(args: argparse.Namespace) -> int:
    from convatlas.analysis import parse_input_size, summary

    model, label, native = load_model(args.model, _variant_args(args.arg or []), args.num_classes)
    if args.input:
        input_size = parse_input_size(args.input)
    elif native is not None:
        input_size = [native]
    else:
        raise CliError(f"{args.model} does not say its input size; give one with --input, e.g. --input 3x224x224")
    if args.depth is not None and args.depth < 0:
        raise CliError(f"--depth must be >= 0, got {args.depth}")
    report = summary(model, input_size, batch_size=args.batch, dtype=_DTYPES[args.dtype], mode=args.mode,
                     optimizer=args.optimizer, name=label)
    fmt = args.format
    if fmt == "table":
        if args.output:
            report.save(args.output, "table", args.depth)
            print(f"wrote {args.output}")
        else:
            report.print(args.depth)
    else:
        writer = {"csv": report.to_csv, "json": report.to_json, "markdown": report.to_markdown}[fmt]
        text = writer(args.output, args.depth) if args.output else writer(None, args.depth)
        if args.output:
            print(f"wrote {args.output}")
        else:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
        for issue in report.issues:
            print(f"convatlas: warning: {issue}", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "summary",
        help="per-layer shapes, params, MACs, FLOPs, memory and receptive field of a network",
        description=(
            "Analyse a network without running it (meta device): per layer output shape, parameters, "
            "MACs (conv + matrix products), FLOPs (2 x MACs + element-wise work), output memory and "
            "receptive field; totals with a training-memory estimate. MODEL is a zoo name, "
            "torchvision:NAME or timm:NAME."
        ),
    )
    p.add_argument("model", help="zoo name (see `convatlas list`), torchvision:NAME or timm:NAME")
    p.add_argument("--input", help="input size CxHxW, e.g. 3x224x224 (default: the model's own)")
    p.add_argument("--batch", type=int, default=1, help="batch size (shapes, MACs and memory are for the batch)")
    p.add_argument("--depth", type=int, default=None, help="show layers down to this depth (0 = the model)")
    p.add_argument("--format", choices=("table", "csv", "json", "markdown"), default="table")
    p.add_argument("--output", "-o", help="write to this file instead of the terminal")
    p.add_argument("--optimizer", default="sgd",
                   choices=("sgd", "sgd-nomomentum", "adam", "adamw", "rmsprop", "adagrad", "none"),
                   help="optimizer for the training-memory estimate (sgd = with momentum)")
    p.add_argument("--mode", choices=("eval", "train"), default="eval",
                   help="module mode to analyse (train runs auxiliary heads and dropout)")
    p.add_argument("--dtype", choices=tuple(_DTYPES), default="float32")
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--arg", "-a", action="append", metavar="KEY=VALUE",
                   help="variant argument of the builder, e.g. -a width_mult=0.5 (repeatable)")
    p.set_defaults(func=cmd_summary)
