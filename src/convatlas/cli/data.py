"""`convatlas data convert SRC DST --to voc|coco|yolo`: a thin wrapper over
:func:`convatlas.data.detection_formats.convert` (read any detection layout, write another)."""

from __future__ import annotations

import argparse

from convatlas.cli import CliError


def cmd_convert(args: argparse.Namespace) -> int:
    from convatlas.data.detection_formats import convert, refuse_existing

    try:
        refuse_existing(args.dst)
    except FileExistsError as exc:
        raise CliError(str(exc)) from None
    written = convert(args.src, args.dst, args.to, image_size=args.image_size, test_fraction=args.test_fraction,
                      seed=args.seed, image_format=args.image_format)
    print(f"read {args.src}: {written.source}")
    print(written.summary())
    for path in written.files:
        print(f"  {path}")
    for note in written.notes:
        print(f"  note: {note}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="dataset tools: convert detection datasets between VOC, COCO and YOLO")
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    c = data_sub.add_parser(
        "convert", help="read a detection dataset (VOC, COCO, YOLO folder or digit-scenes) and write it in another format",
        description="Read SRC (a Pascal VOC, COCO or YOLO folder, recognised by its layout, or digit-scenes) and "
                    "write it to DST, a new or empty folder (nothing existing is overwritten).")
    c.add_argument("src", help="the dataset: a folder in VOC, COCO or YOLO layout, or digit-scenes")
    c.add_argument("dst", help="a new or empty folder to write into")
    c.add_argument("--to", required=True, choices=["voc", "coco", "yolo"], help="the format to write")
    c.add_argument("--image-size", type=int, default=None, metavar="N",
                   help="resize every image to NxN (boxes scale with it); needed when the images differ in size")
    c.add_argument("--test-fraction", type=float, default=0.2,
                   help="share of the images to test when SRC comes as one split (default: 0.2)")
    c.add_argument("--seed", type=int, default=0, help="seed of that split (default: 0)")
    c.add_argument("--image-format", choices=["png", "jpg"], default=None,
                   help="image files to write (default: jpg for VOC, png for COCO and YOLO)")
    c.set_defaults(func=cmd_convert)
