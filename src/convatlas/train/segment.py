"""Using a finished segmentation run: its scores on the test split, and class maps of new images.

``evaluate_segmentation(run)`` scores the run's network on its test split (one confusion matrix
over every pixel: mIoU, pixel and mean accuracy, frequency-weighted IoU, per-class IoU);
``predict_segmentation(run, images)`` gives each image's class map (optionally refined by the
dense CRF, :func:`convatlas.segmentation.crf.dense_crf`) and can draw it over the image.
:func:`convatlas.train.evaluate` and :func:`convatlas.train.predict` call these for segmentation
runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from convatlas.data.formats import read_image_files
from convatlas.data.geometry import SegmentationPipeline
from convatlas.data.masks import load_segmentation
from convatlas.tasks import LoadedRun, load_run
from convatlas.metrics.segmentation import class_map, scores_from_confusion
from convatlas.tasks.segmentation import evaluate_segmenter

__all__ = ["SegmentationReport", "evaluate_segmentation", "SegmentationPrediction", "predict_segmentation"]


@dataclass
class SegmentationReport:
    """Scores of a segmentation network on a test split (fractions) and the confusion matrix
    (rows: true class, columns: predicted; pixels)."""

    miou: float
    pixel_acc: float
    mean_acc: float
    fwiou: float
    loss: float
    count: int
    classes: list[str]
    iou: dict[str, float]
    acc: dict[str, float]
    confusion: np.ndarray = field(repr=False)
    crf: dict[str, Any] | None = None  # the same scores after the dense CRF, when asked for

    def to_dict(self) -> dict[str, Any]:
        out = {"miou": self.miou, "pixel_acc": self.pixel_acc, "mean_acc": self.mean_acc, "fwiou": self.fwiou,
               "loss": self.loss, "count": self.count, "classes": self.classes, "iou": self.iou, "acc": self.acc,
               "confusion": self.confusion.tolist()}
        if self.crf is not None:
            out["crf"] = self.crf
        return out


def _pipeline(loaded: LoadedRun) -> SegmentationPipeline:
    return SegmentationPipeline(mean=loaded.mean, std=loaded.std, channels=loaded.in_channels,
                                device=next(loaded.model.parameters()).device)


def evaluate_segmentation(run: str | os.PathLike | LoadedRun, *, which: str = "best", data: str | None = None,
                          data_root: str | None = None, batch_size: int = 32,
                          device: str | torch.device = "cpu",
                          crf: bool | Mapping[str, Any] = False) -> SegmentationReport:
    """mIoU, pixel accuracy, mean accuracy, fwIoU and per-class IoU of a segmentation run on its
    test split (or that of ``data``, which must have the same classes).

    ``crf``: also score the network's probabilities refined by the dense CRF - ``True`` for
    :func:`~convatlas.segmentation.crf.dense_crf`'s defaults (DeepLab v2's), or a dict of its
    arguments - into ``report.crf`` (the same scores, after the CRF; grey images are repeated to
    RGB for the appearance kernel)."""
    loaded = run if isinstance(run, LoadedRun) else load_run(run, which, device=device)
    config = loaded.config
    splits = load_segmentation(data or config["data"], root=data_root if data else config.get("data_root"),
                               image_size=config.get("image_size"), download=bool(config.get("download", True)),
                               **(config.get("data_options") or {} if not data else {}))
    if list(splits.classes) != list(loaded.classes):
        raise ValueError(f"dataset {splits.name!r} has classes {splits.classes[:5]}..., the run was trained on "
                         f"{loaded.classes[:5]}...; evaluate on data with the same classes")
    options = ({} if crf is True else dict(crf)) if crf else None
    result = evaluate_segmenter(loaded.model, _pipeline(loaded), splits.test.images, splits.test.masks,
                                len(loaded.classes), ignore_index=splits.ignore_index, batch_size=batch_size,
                                refine=_crf_refiner(options) if options is not None else None)
    names = list(loaded.classes)
    refined = None
    if options is not None:
        scores = scores_from_confusion(result["refined_confusion"])
        refined = {"miou": scores["miou"], "pixel_acc": scores["pixel_acc"], "mean_acc": scores["mean_acc"],
                   "fwiou": scores["fwiou"], "iou": dict(zip(names, scores["iou"])), "options": options}
    return SegmentationReport(result["miou"], result["pixel_acc"], result["mean_acc"], result["fwiou"],
                              result["loss"], len(splits.test.images), names, dict(zip(names, result["iou"])),
                              dict(zip(names, result["acc"])), result["confusion"].numpy(), crf=refined)


def _rgb(image: torch.Tensor) -> torch.Tensor:
    """uint8 (C, H, W) -> the (3, H, W) image the CRF's appearance kernel compares (grey repeated)."""
    return image.expand(3, -1, -1).contiguous() if image.shape[0] == 1 else image


def _crf_refiner(options: Mapping[str, Any]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``(logits, uint8 images) -> labels`` after the dense CRF with ``options``, image by image
    (the unary is ``-log p``, finite where ``p`` underflows)."""
    from convatlas.segmentation.crf import dense_crf

    def refine(logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        log_probs = F.log_softmax(logits.float(), dim=1).cpu()
        return torch.stack([class_map(dense_crf(_rgb(image.cpu()), logits=lp, **options), 0)
                            for image, lp in zip(images, log_probs)])

    return refine


@dataclass
class SegmentationPrediction:
    """One image's class map (H, W) at the image's own size, its per-class pixel fractions and,
    when the CRF ran, the refined map."""

    source: str
    mask: np.ndarray = field(repr=False)
    classes: list[str] = field(repr=False)
    refined: np.ndarray | None = field(default=None, repr=False)
    figure: Path | None = None

    def fractions(self, refined: bool = False) -> dict[str, float]:
        m = self.refined if refined and self.refined is not None else self.mask
        counts = np.bincount(m.reshape(-1), minlength=len(self.classes))
        return {c: round(float(n) / m.size, 6) for c, n in zip(self.classes, counts) if n}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"image": self.source, "size": list(self.mask.shape), "classes": self.fractions()}
        if self.refined is not None:
            out["classes_crf"] = self.fractions(refined=True)
        if self.figure is not None:
            out["figure"] = str(self.figure)
        return out


def _read_images(loaded: LoadedRun, images: Sequence[str | os.PathLike] | torch.Tensor) -> tuple[list[torch.Tensor], list[str]]:
    if isinstance(images, torch.Tensor):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        return list(images), [f"image[{i}]" for i in range(len(images))]
    arrays, names = read_image_files(images)
    return [torch.from_numpy(a) for a in arrays], names


def _figure_path(out: str | os.PathLike, index: int, count: int) -> Path:
    path = Path(out)
    return path if count == 1 else path.with_name(f"{path.stem}-{index}{path.suffix}")


@torch.no_grad()
def predict_segmentation(run: str | os.PathLike | LoadedRun, images: Sequence[str | os.PathLike] | torch.Tensor, *,
                         crf: bool = False, out: str | os.PathLike | None = None, which: str = "best",
                         device: str | torch.device = "cpu") -> list[SegmentationPrediction]:
    """The class map of each image (files, any size, or a uint8 (N, C, H, W) tensor).

    Each image is fed at its own size (the networks are fully convolutional) with the run's
    normalisation; ``crf=True`` refines the probabilities with the dense CRF (the image must be
    RGB; a grey image is repeated to three channels for it). ``out`` (a .png/.svg/.pdf path; one
    file per image, numbered when there are several) draws the image, the prediction overlaid and
    the CRF's refinement.
    """
    from convatlas.viz.segmentation import save_segmentation_figure

    loaded = run if isinstance(run, LoadedRun) else load_run(run, which, device=device)
    pipeline = _pipeline(loaded)
    arrays, names = _read_images(loaded, images)
    results = []
    for i, (image, name) in enumerate(zip(arrays, names)):
        logits = loaded.model(pipeline.eval_input(image[None]))
        if logits.shape[-2:] != image.shape[-2:]:  # a valid-convolution U-Net: scale back to the image
            logits = F.interpolate(logits, size=image.shape[-2:], mode="bilinear", align_corners=False)
        log_probs = F.log_softmax(logits.float(), dim=1)[0]  # unary -log p, finite where p underflows
        mask = class_map(log_probs, 0).cpu().numpy().astype(np.int64)
        refined = None
        if crf:
            from convatlas.segmentation.crf import dense_crf

            refined = class_map(dense_crf(_rgb(image).cpu(), logits=log_probs.cpu()), 0).numpy().astype(np.int64)
        figure = None
        if out is not None:
            figure = save_segmentation_figure(_figure_path(out, i, len(arrays)), image.cpu(), mask, loaded.classes,
                                              refined=refined, title=f"{loaded.config.get('model')}: {Path(name).name}")
        results.append(SegmentationPrediction(name, mask, list(loaded.classes), refined, figure))
    return results
