"""Datasets in memory and augmentation in batches.

``load_dataset(name, root=None, image_size=None)`` returns :class:`DatasetSplits` (uint8
``train``/``test`` image sets, class names, per-channel mean and std). ``"digits"``, the default,
is embedded and works offline. :class:`BatchPipeline` augments whole batches on the training
device; :class:`EpochBatches` says which examples each step (and each distributed rank) sees.

Segmentation: ``load_segmentation(name_or_path)`` returns :class:`SegmentationSplits` (uint8
images, uint8 class maps with 255 = ignore, optional instances); ``"digit-scenes"``, the
default, is composed from the embedded digits (:func:`digit_scenes`). The one warp of images,
masks and boxes lives in :mod:`convatlas.data.geometry`, with :class:`SegmentationPipeline`.
"""

from convatlas.data.augment import AugmentConfig, BatchPipeline
from convatlas.data.boxes import BoxSet, DetectionSplits, list_detection_datasets, load_detection
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
from convatlas.data.geometry import SegmentationAugment, SegmentationPipeline
from convatlas.data.loader import EpochBatches
from convatlas.data.masks import MaskSet, SegmentationSplits, list_segmentation_datasets, load_segmentation
from convatlas.data.scenes import SceneConfig, digit_scenes, scene_stats

__all__ = [
    "BoxSet",
    "DetectionSplits",
    "list_detection_datasets",
    "load_detection",
    "AugmentConfig",
    "BatchPipeline",
    "DEFAULT_DATASET",
    "DatasetInfo",
    "DatasetSplits",
    "EpochBatches",
    "ImageSet",
    "MaskSet",
    "SceneConfig",
    "SegmentationAugment",
    "SegmentationPipeline",
    "SegmentationSplits",
    "UnknownDatasetError",
    "cache_dir",
    "data_dir",
    "dataset_info",
    "digit_scenes",
    "list_datasets",
    "list_segmentation_datasets",
    "load_dataset",
    "load_segmentation",
    "resize_images",
    "scene_stats",
]
