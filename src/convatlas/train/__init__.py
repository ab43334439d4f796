"""Training, evaluation and prediction.

``convatlas.train("lenet5")`` trains a registered network and writes a run directory
(config.yaml, summary.json, metrics.csv/.jsonl, checkpoints/last.pt and best.pt, curves.png);
``load_run(run_dir)`` rebuilds the trained network; ``evaluate`` and ``predict`` use it;
``compare_models`` trains several and charts them. The loop itself is
:mod:`convatlas.engine`, the task :mod:`convatlas.tasks`; this is the front door.

This package is itself callable: ``convatlas.train(...)`` is :func:`train`, while
``convatlas.train.load_run`` and the other names stay reachable as attributes. (Importing
``convatlas.train`` binds the package to that name on ``convatlas``, so the package has to be
the function too.)
"""

from __future__ import annotations

import sys
import types
from typing import Any

from convatlas.engine import CheckpointError, Schedule, save_checkpoint
from convatlas.train.config import NO_DISTORTIONS, TrainConfig, list_recipes, load_recipe
from convatlas.train.evaluate import EvalReport, LoadedRun, Prediction, evaluate, load_run, plot_confusion, predict
from convatlas.train.segment import (
    SegmentationPrediction, SegmentationReport, evaluate_segmentation, predict_segmentation,
)
from convatlas.train.compare import compare_models
from convatlas.train.trainer import StepInfo, TrainingDiverged, TrainResult, load_checkpoint, resolve_config, train

__all__ = [
    "NO_DISTORTIONS",
    "CheckpointError",
    "EvalReport",
    "LoadedRun",
    "Prediction",
    "Schedule",
    "StepInfo",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "compare_models",
    "evaluate",
    "evaluate_segmentation",
    "predict_segmentation",
    "SegmentationPrediction",
    "SegmentationReport",
    "list_recipes",
    "load_checkpoint",
    "load_recipe",
    "load_run",
    "plot_confusion",
    "predict",
    "resolve_config",
    "save_checkpoint",
    "train",
]


class _CallableModule(types.ModuleType):
    """``convatlas.train(...)`` calls :func:`train`."""

    def __call__(self, *args: Any, **kwargs: Any) -> TrainResult:
        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
