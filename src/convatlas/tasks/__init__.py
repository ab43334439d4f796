"""Tasks: what a batch means and how a model is judged, for each kind of problem.

Each task implements :class:`convatlas.engine.Task` - a batch of example indices -> a dict of
losses, evaluation -> a dict of metrics, the primary metric - so the one loop of
:mod:`convatlas.engine` trains them all. Classification is here; segmentation and detection plug
in the same way. :func:`load_run` rebuilds any finished run's network.
"""

from convatlas.tasks.classification import (
    ClassificationData,
    ClassificationTask,
    cross_entropy_loss,
    evaluate_classifier,
    prepare_data,
)
from convatlas.tasks.runs import LoadedRun, load_run

__all__ = [
    "ClassificationData", "ClassificationTask", "LoadedRun", "cross_entropy_loss", "evaluate_classifier",
    "load_run", "prepare_data",
]
