"""Semantic segmentation, as the notes teach it: one class per pixel.

From the naive baselines (a classifier slid over patches; a fully convolutional network at full
resolution) to the networks that downsample and upsample again (FCN, SegNet, DeconvNet, U-Net,
DeepLab) and the dense CRF that sharpens their boundaries. Each family file reads like its paper
and registers its networks (``task="segmentation"`` on their cards); backbones come from the zoo
through its feature contract (:mod:`convatlas.models.features`).

Importing this package imports every module in it, which registers their builders.
"""

import importlib
import pkgutil

for _info in pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")
