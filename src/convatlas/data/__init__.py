"""Datasets in memory and augmentation in batches.

``load_dataset(name, root=None, image_size=None)`` returns :class:`DatasetSplits` (uint8
``train``/``test`` image sets, class names, per-channel mean and std). ``"digits"``, the default,
is embedded and works offline. :class:`BatchPipeline` augments whole batches on the training
device; :class:`EpochBatches` says which examples each step (and each distributed rank) sees.
"""

from convatlas.data.augment import AugmentConfig, BatchPipeline
from convatlas.data.datasets import (
    DEFAULT_DATASET,
    DatasetInfo,
    DatasetSplits,
    ImageSet,
    UnknownDatasetError,
    cache_dir,
    data_dir,
    dataset_info,
    list_datasets,
    load_dataset,
    resize_images,
)
from convatlas.data.loader import EpochBatches

__all__ = [
    "AugmentConfig",
    "BatchPipeline",
    "DEFAULT_DATASET",
    "DatasetInfo",
    "DatasetSplits",
    "EpochBatches",
    "ImageSet",
    "UnknownDatasetError",
    "cache_dir",
    "data_dir",
    "dataset_info",
    "list_datasets",
    "load_dataset",
    "resize_images",
]
