"""The zoo: one module per family, read top to bottom like its paper.

Importing this package imports every module in it, which registers their builders. Every network
declares its feature maps (``model.feature_info``); :class:`FeatureExtractor` turns any of them
into a backbone (:mod:`convatlas.models.features`).
"""

import importlib
import pkgutil

from convatlas.models.features import FeatureExtractor, FeatureInfo, feature_info, forward_intermediates

__all__ = ["FeatureExtractor", "FeatureInfo", "feature_info", "forward_intermediates"]

for _info in pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")
