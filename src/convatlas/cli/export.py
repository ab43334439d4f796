"""`convatlas export RUN --format onnx`: a thin wrapper over :func:`convatlas.export.export_onnx`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def cmd_export(args: argparse.Namespace) -> int:
    from convatlas.export import export_onnx

    result = export_onnx(args.run_dir, args.output, which=args.which, opset=args.opset, check_batch=args.check_batch)
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    shapes = lambda d: ", ".join(f"{k} ({' x '.join(map(str, v))})" for k, v in d.items())  # noqa: E731
    print(f"wrote {result.path} ({result.task}): takes {shapes(result.inputs)}, returns {shapes(result.outputs)}; "
          f"onnxruntime agrees with PyTorch to {result.max_abs_diff:.2g} on {result.checked_batch} images")
    print(f"wrote {result.info_path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a trained run to ONNX, checked with onnxruntime",
                       description="Write a run's network as ONNX: float images in [0, 1] in, normalised inside "
                                   "the graph; logits for classification and segmentation, every box and score "
                                   "for single-stage detectors (threshold and NMS left to the consumer). "
                                   "onnxruntime's outputs are checked against PyTorch's before anything is written.")
    p.add_argument("run_dir", type=Path, help="a run directory (convatlas train's output)")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="the format (default: onnx)")
    p.add_argument("-o", "--output", type=Path, help="the model file (default: RUN/model.onnx)")
    p.add_argument("--which", choices=("best", "last"), default="best", help="the checkpoint (default: best)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default: 18)")
    p.add_argument("--check-batch", type=int, default=2, help="images for the onnxruntime check (default: 2)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_export)
