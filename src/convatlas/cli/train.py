"""`convatlas train`, `convatlas eval` and `convatlas predict`: thin wrappers over
:func:`convatlas.train.train`, :func:`~convatlas.train.evaluate` and :func:`~convatlas.train.predict`.

Every key of :class:`~convatlas.train.TrainConfig` is a flag (``lr`` -> ``--lr``,
``crop_padding`` -> ``--crop-padding``, booleans as ``--hflip`` / ``--no-hflip``); a flag given
on the command line wins over the recipe (a packaged recipe's name, ``convatlas recipes`` lists
them, or a YAML file; by default the one the model's card names), which wins over the neutral
defaults. Under
``torchrun --nproc-per-node N -m convatlas train ...`` every process runs this command and
trains its share (DistributedDataParallel).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import yaml

from convatlas.cli import CliError


def _flag_type(annotation: str, default: Any) -> tuple[str, Any]:
    """(kind, python type) of a TrainConfig field, from its annotation."""
    text = str(annotation)
    if text.startswith("bool"):
        return "bool", bool
    if text.startswith("list"):
        return "list", float
    if text.startswith("dict"):
        return "scalar", _yaml_mapping
    for name, kind in (("int", int), ("float", float), ("str", str)):
        if text.startswith(name):
            return "scalar", kind
    return "scalar", type(default) if default not in (None, MISSING) else str


def _yaml_mapping(text: str) -> dict:
    """A flag's value as a YAML mapping, e.g. ``--data-options '{size: 96, max_digits: 6}'``."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise argparse.ArgumentTypeError(f"not valid YAML: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a mapping such as '{{size: 96}}', got {text!r}")
    return value


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    from convatlas.train.config import TrainConfig

    group = parser.add_argument_group(
        "training configuration (the defaults shown are the neutral ones; the model's recipe and these flags change them)")
    for f in fields(TrainConfig):
        if f.name in ("model", "variant_args"):
            continue
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        kind, kind_type = _flag_type(f.type, default)
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        if "default" not in help_text:
            help_text += f" (default: {default})"
        if kind == "bool":
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif kind == "list":
            group.add_argument(flag, dest=f.name, nargs="*", type=kind_type, default=None, metavar="X", help=help_text)
        else:
            group.add_argument(flag, dest=f.name, type=kind_type, default=None, help=help_text,
                               choices=f.metadata.get("choices"))


def _parse_variants(items: list[str] | None, flag: str = "--variant", example: str = "depth=56") -> dict[str, Any]:
    """``KEY=VALUE`` items (values read as YAML) as a mapping."""
    variants: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"{flag} takes KEY=VALUE (e.g. {flag} {example}), got {item!r}")
        variants[key.strip()] = yaml.safe_load(value)
    return variants


def cmd_train(args: argparse.Namespace) -> int:
    from convatlas.train import TrainingDiverged, train
    from convatlas.train.config import config_keys

    overrides = {k: getattr(args, k) for k in config_keys() if getattr(args, k, None) is not None}
    overrides.pop("model", None)
    variants = _parse_variants(args.variant)
    if variants:
        overrides["variant_args"] = variants
    if args.model is None and args.recipe is None and args.resume is None:
        raise CliError("name a model (e.g. `convatlas train lenet5`), a --recipe or a run to --resume; "
                       "`convatlas list` shows the models")
    try:
        train(args.model, recipe=args.recipe, out=args.out, resume=args.resume, **overrides)
    except TrainingDiverged as exc:
        print(f"convatlas: training stopped: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from convatlas.train import evaluate, load_run, plot_confusion

    loaded = load_run(args.run_dir, args.which)
    if args.crf and loaded.task != "segmentation":
        raise CliError(f"--crf refines class maps of segmentation runs; {args.run_dir} is a {loaded.task} run")
    report = evaluate(loaded, data=args.data, data_root=args.data_root, batch_size=args.batch_size, crf=args.crf)
    if loaded.task == "segmentation":
        return _print_segmentation_eval(args, loaded, report)
    if loaded.task == "detection":
        return _print_detection_eval(args, loaded, report)
    run_dir = _write_eval(args, loaded, report)
    png = plot_confusion(report, run_dir / "confusion.png",
                         f"{loaded.config.get('model')} on {loaded.dataset_name}: top-1 {report.top1:.2%}")
    if args.json:
        print(json.dumps(report.to_dict()))
        return 0
    console = Console()
    console.print(f"[bold]{loaded.config.get('model')}[/bold] ({loaded.checkpoint.name}, epoch {loaded.epoch}) on "
                  f"{report.count} test images of {loaded.dataset_name}: top-1 [bold]{report.top1:.2%}[/bold], "
                  f"top-5 {report.top5:.2%}, loss {report.loss:.4f}")
    table = Table(title="per-class accuracy")
    table.add_column("class")
    table.add_column("accuracy", justify="right")
    table.add_column("images", justify="right")
    for i, (name, acc) in enumerate(report.per_class.items()):
        table.add_row(name, f"{acc:.2%}", str(int(report.confusion[i].sum())))
    console.print(table)
    console.print(f"confusion matrix: {png}\nfigures: {run_dir / 'eval.json'}")
    return 0


def _write_eval(args: argparse.Namespace, loaded: Any, report: Any) -> Path:
    """The report as the run's eval.json; returns the run directory."""
    from convatlas._io import write_json

    run_dir = Path(args.run_dir)
    write_json(run_dir / "eval.json", {"checkpoint": str(loaded.checkpoint), "epoch": loaded.epoch,
                                       "data": args.data or loaded.config.get("data"), **report.to_dict()})
    return run_dir


def _print_segmentation_eval(args: argparse.Namespace, loaded: Any, report: Any) -> int:
    from rich.console import Console
    from rich.table import Table

    from convatlas.viz.segmentation import plot_class_iou

    run_dir = _write_eval(args, loaded, report)
    png = plot_class_iou(report.iou, run_dir / "class_iou.png",
                         f"{loaded.config.get('model')} on {loaded.dataset_name}: mIoU {report.miou:.3f}")
    if args.json:
        print(json.dumps(report.to_dict()))
        return 0
    console = Console()
    console.print(f"[bold]{loaded.config.get('model')}[/bold] ({loaded.checkpoint.name}, epoch {loaded.epoch}) on "
                  f"{report.count} test images of {loaded.dataset_name}: mIoU [bold]{report.miou:.2%}[/bold], "
                  f"pixel accuracy {report.pixel_acc:.2%}, mean accuracy {report.mean_acc:.2%}, "
                  f"fwIoU {report.fwiou:.2%}")
    table = Table(title="per-class scores")
    for column in ("class", "IoU", "accuracy", "pixels"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for i, name in enumerate(report.classes):
        iou, acc = report.iou[name], report.acc[name]
        table.add_row(name, "n/a" if iou != iou else f"{iou:.2%}", "n/a" if acc != acc else f"{acc:.2%}",
                      f"{int(report.confusion[i].sum()):,}")
    console.print(table)
    if report.crf is not None:
        after = report.crf
        console.print(f"after the dense CRF: mIoU [bold]{after['miou']:.2%}[/bold] ({after['miou'] - report.miou:+.2%}), "
                      f"pixel accuracy {after['pixel_acc']:.2%}, mean accuracy {after['mean_acc']:.2%}, "
                      f"fwIoU {after['fwiou']:.2%}")
    console.print(f"per-class IoU: {png}\nfigures: {run_dir / 'eval.json'}")
    return 0


def _print_detection_eval(args: argparse.Namespace, loaded: Any, report: Any) -> int:
    from rich.console import Console
    from rich.table import Table

    from convatlas.viz.detection import plot_precision_recall

    run_dir = _write_eval(args, loaded, report)
    png = plot_precision_recall(report.curves, report.classes, run_dir / "precision_recall.png", ap=report.ap50,
                                title=f"{loaded.config.get('model')} on {loaded.dataset_name}: precision-recall at "
                                      f"IoU 0.5 (VOC07 mAP {report.map_voc07:.3f})")
    if args.json:
        print(json.dumps(report.to_dict()))
        return 0

    def pct(value: float) -> str:
        return "n/a" if value < 0 else f"{value:.2%}"

    console = Console()
    console.print(f"[bold]{loaded.config.get('model')}[/bold] ({loaded.checkpoint.name}, epoch {loaded.epoch}) on "
                  f"{report.count} test images of {loaded.dataset_name}: COCO mAP@[.5:.95] "
                  f"[bold]{pct(report.map)}[/bold], AP50 {pct(report.map50)}, AP75 {pct(report.map75)}; "
                  f"VOC07 11-point mAP {pct(report.map_voc07)}, VOC2010+ area mAP {pct(report.map_voc)}")
    console.print("COCO: " + ", ".join(f"{k} {pct(v)}" for k, v in report.coco.items()
                                        if k not in ("map", "map_50", "map_75")))
    masks = report.mask_map is not None
    if masks:
        console.print(f"masks: COCO mask mAP@[.5:.95] [bold]{pct(report.mask_map)}[/bold], "
                      f"AP50 {pct(report.mask_map50)}, AP75 {pct(report.mask_map75)}")
    table = Table(title="per-class AP")
    for column in ("class", "AP@[.5:.95]", "AP50 (VOC07)") + (("mask AP@[.5:.95]",) if masks else ()):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name in report.classes[1:]:
        table.add_row(name, pct(report.ap[name]), pct(report.ap50[name]),
                      *((pct(report.mask_ap[name]),) if masks else ()))
    console.print(table)
    console.print(f"precision-recall curves: {png}\nfigures: {run_dir / 'eval.json'}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from convatlas.train import load_run, predict

    loaded = load_run(args.run_dir, args.which)
    if loaded.task == "segmentation":
        predictions = predict(loaded, args.images, crf=args.crf, out=args.out)
        if args.json:
            print(json.dumps([p.to_dict() for p in predictions], indent=2))
            return 0
        for p in predictions:
            shares = ", ".join(f"{c} {f:.1%}" for c, f in p.fractions().items())
            crf = (", after the CRF: " + ", ".join(f"{c} {f:.1%}" for c, f in p.fractions(True).items())
                   if p.refined is not None else "")
            print(f"{p.source}: {shares}{crf}" + (f" -> {p.figure}" if p.figure else ""))
        return 0
    if loaded.task == "detection":
        if args.crf:
            raise CliError(f"--crf refines class maps of segmentation runs; {args.run_dir} is a detection run")
        predictions = predict(loaded, args.images, out=args.out, score_threshold=args.score_threshold)
        if args.json:
            print(json.dumps([p.to_dict() for p in predictions], indent=2))
            return 0
        for p in predictions:
            found = ", ".join(f"{c} {s:.2f} at {[round(v) for v in b]}" for b, c, s in zip(p.boxes, p.labels, p.scores))
            print(f"{p.source}: {found or 'nothing'}" + (f" -> {p.figure}" if p.figure else ""))
        return 0
    if args.crf or args.out:
        raise CliError(f"--crf and -o draw class maps or boxes of segmentation and detection runs; {args.run_dir} "
                       f"is a {loaded.task} run")
    predictions = predict(loaded, args.images, topk=args.topk)
    if args.json:
        print(json.dumps([p.to_dict() for p in predictions], indent=2))
        return 0
    for p in predictions:
        ranked = ", ".join(f"{c} {prob:.1%}" for c, prob in zip(p.classes, p.probabilities))
        print(f"{p.source}: {ranked}")
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    from convatlas.registry import list_models, model_card
    from convatlas.train import list_recipes, load_recipe
    from convatlas.train.config import recipe_path

    if args.name:
        print(recipe_path(args.name).read_text(), end="")
        return 0
    users: dict[str, list[str]] = {}
    for name in list_models():
        card = model_card(name)
        for recipe in ((card.recipe,) if card.recipe else ()) + tuple(card.recipes):
            users.setdefault(recipe, []).append(name + ("" if recipe == card.recipe else " (paper)"))
    for name in list_recipes():
        values = load_recipe(name)
        models = users.get(name) or ([values["model"]] if values.get("model") else [])
        print(f"{name:24s} {', '.join(models) or '-'}")
        if values.get("notes"):
            print(f"{'':24s} {' '.join(str(values['notes']).split())[:150]}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a network (default: on the embedded MNIST digits)",
        description="Train a registered network and write a run directory (config.yaml, summary.json, "
                    "metrics.csv, checkpoints/, curves.png). Works under torchrun for several processes.",
    )
    p.add_argument("model", nargs="?", help="registered model name (`convatlas list`)")
    p.add_argument("--recipe", help="a packaged recipe (`convatlas recipes`), e.g. resnet20_cifar10, or a YAML file of "
                                    "configuration keys; default: the one the model's card names; none: the neutral "
                                    "defaults")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--out", metavar="DIR", help="run directory (default: runs/<model>-<data>-<time>)")
    p.add_argument("--variant", action="append", metavar="KEY=VALUE",
                   help="a variant argument of the model, e.g. --variant pool=avg (repeatable)")
    _add_config_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("recipes", help="list the packaged training recipes (or print one)",
                       description="The recipes that ship with convatlas, the networks whose cards name them "
                                   "(their default recipe, or their paper's), and their notes.")
    p.add_argument("name", nargs="?", help="print this recipe's YAML")
    p.set_defaults(func=cmd_recipes)

    p = sub.add_parser("eval", help="evaluate a run: top-1, top-5, per-class accuracy, confusion matrix "
                                    "(segmentation: mIoU, pixel and mean accuracy, fwIoU, per-class IoU; "
                                    "detection: COCO and VOC mAP, per-class AP, precision-recall curves)")
    p.add_argument("run_dir")
    p.add_argument("--which", default="best", help="checkpoint: best, last or a path (default: best)")
    p.add_argument("--data", help="evaluate on this dataset's test split instead of the run's")
    p.add_argument("--data-root", help="folder of --data's files")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--crf", action="store_true", help="segmentation: score the dense CRF's refinement too "
                                                      "(DeepLab v2's parameters)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="top-k classes of image files with a trained run (segmentation: class maps; "
                                       "detection: boxes)")
    p.add_argument("run_dir")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("-o", "--out", metavar="FIGURE", help="segmentation and detection: draw image and prediction "
                                                          "(class map, or boxes with classes and scores) into this "
                                                          ".png/.svg/.pdf (numbered per image when several)")
    p.add_argument("--score-threshold", type=float, default=0.5,
                   help="detection: keep the boxes scoring at least this (default 0.5)")
    p.add_argument("--crf", action="store_true", help="segmentation: refine the prediction with the dense CRF")
    p.add_argument("--which", default="best", help="checkpoint: best, last or a path (default: best)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict)
