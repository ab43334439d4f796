"""convatlas: the classic convolutional networks, faithful to their papers.

Build any network of the notes by name, measure it without running it, train and compare it,
and look inside it::

    import convatlas
    model = convatlas.create_model("mobilenet_v1", width_mult=0.5)
    convatlas.model_card("resnet50").params
"""

from __future__ import annotations

import importlib
from typing import Any

import convatlas.models  # noqa: F401  (registers the zoo: every family module of the package)
import convatlas.segmentation  # noqa: F401  (registers the segmentation networks)
import convatlas.detection  # noqa: F401  (registers the detectors)
import convatlas.search.network  # noqa: F401  (registers `nas`, the network of a searched genotype)
from convatlas.registry import (
    InputTooSmallError,
    ModelCard,
    Published,
    UnknownModelError,
    create_model,
    list_models,
    min_input_size,
    model_card,
)
from convatlas.weights import load_torchvision_weights

__version__ = "0.1.0"

# Heavier parts load on first use, so `import convatlas` stays quick.
_LAZY = {
    "summary": "convatlas.analysis",
    "train": "convatlas.train",
    "evaluate": "convatlas.train",
    "compare": "convatlas.compare",
    "arith": "convatlas.arith",
    "scratch": "convatlas.scratch",
    "viz": "convatlas.viz",
    "data": "convatlas.data",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        return module if module.__name__.endswith(name) else getattr(module, name)
    raise AttributeError(f"module 'convatlas' has no attribute {name!r}")


__all__ = [
    "InputTooSmallError",
    "ModelCard",
    "Published",
    "UnknownModelError",
    "create_model",
    "list_models",
    "load_torchvision_weights",
    "min_input_size",
    "model_card",
    *_LAZY,
]
