"""Measure any ``nn.Module`` without running it: shapes, parameters, MACs, FLOPs, memory and
receptive fields, per layer and in total.

    >>> import convatlas
    >>> report = convatlas.summary(convatlas.create_model("resnet50"), (3, 224, 224))
    >>> report.print(depth=2)
    >>> report.save("resnet50.csv")

The model runs once on PyTorch's ``meta`` device under a dispatch-level tracer
(:mod:`convatlas.analysis.tracer`), so functional calls count as well as modules, and analysing
EfficientNet-B7 at 600x600 or VGG-16 at batch 256 takes no real memory. Conventions: MACs are the
multiply-accumulates of convolutions and matrix products (the papers' "mult-adds", torchvision's
``_ops``); FLOPs are 2 x MACs plus element-wise work (:mod:`convatlas.analysis.costs`); receptive
fields follow :mod:`convatlas.analysis.receptive`.
"""

from convatlas.analysis.api import OPTIMIZER_STATE, parse_input_size, summary
from convatlas.analysis.costs import FLOP_CONVENTION
from convatlas.analysis.report import LayerRow, Report, TrainingMemory, format_bytes, format_count
from convatlas.analysis.zoo import ZooMeasurement, build_on_meta, measure_zoo_model, measure_zoo_models

__all__ = [
    "summary",
    "Report",
    "LayerRow",
    "TrainingMemory",
    "OPTIMIZER_STATE",
    "FLOP_CONVENTION",
    "parse_input_size",
    "format_bytes",
    "format_count",
    "measure_zoo_model",
    "measure_zoo_models",
    "build_on_meta",
    "ZooMeasurement",
]
