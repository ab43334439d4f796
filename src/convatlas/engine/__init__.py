"""The task-agnostic training engine: one loop for classification, segmentation and detection.

:func:`fit` trains a model on a :class:`Task` (which turns index batches into losses and
evaluates into metrics) as a :class:`LoopConfig` says: optimisers and parameter groups,
schedules, EMA, gradient clipping, DistributedDataParallel, the device and the thread count,
Ctrl-C and NaN stops, checkpoints and run directories. It knows nothing of labels, masks, boxes
or model names.
"""

from convatlas.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from convatlas.engine.config import LoopConfig
from convatlas.engine.device import AutoThreads, Runtime, ThreadPicker, runtime
from convatlas.engine.distributed import Dist, setup_distributed, teardown_distributed
from convatlas.engine.loop import FitResult, StepInfo, TrainingDiverged, fit
from convatlas.engine.optim import EMA, make_optimizer, param_groups
from convatlas.engine.schedules import Schedule
from convatlas.engine.task import StepOutput, Task

__all__ = [
    "AutoThreads", "CheckpointError", "Dist", "EMA", "FitResult", "LoopConfig", "Runtime", "Schedule", "StepInfo", "StepOutput",
    "Task", "ThreadPicker", "TrainingDiverged", "fit", "load_checkpoint", "make_optimizer", "param_groups",
    "runtime", "save_checkpoint", "setup_distributed", "teardown_distributed",
]
