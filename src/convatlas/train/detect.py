"""Using a finished detection run: its mAP on the test split, and the boxes it finds in new images.

``evaluate_detection(run)`` scores the run's detector on its test split under COCO's protocol
(mAP@[.5:.95], AP50, AP75, AP by size, AR@1/10/100), VOC07's 11-point AP and VOC2010+'s area AP
at IoU 0.5, with per-class AP, and can draw the precision-recall curves;
``predict_detection(run, images)`` gives each image's boxes, classes and scores and can draw them.
:func:`convatlas.train.evaluate` and :func:`convatlas.train.predict` call these for detection runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from convatlas.data.boxes import load_detection
from convatlas.data.geometry import SegmentationPipeline
from convatlas.metrics import mean_average_precision
from convatlas.tasks import LoadedRun, load_run
from convatlas.tasks.detection import detect, detection_scores, image_targets
from convatlas.train.segment import _figure_path, _read_images

__all__ = ["DetectionReport", "evaluate_detection", "DetectionPrediction", "predict_detection"]


@dataclass
class DetectionReport:
    """Scores of a detector on a test split, fractions (-1 where undefined: no ground truth of
    that size or class). ``coco`` holds all of COCO's numbers under torchmetrics' names."""

    map: float
    map50: float
    map75: float
    map_voc07: float
    map_voc: float
    count: int
    classes: list[str]
    ap: dict[str, float]  # per class, COCO mAP@[.5:.95]
    ap50: dict[str, float]  # per class, VOC07 AP@0.5
    coco: dict[str, float] = field(repr=False)
    curves: dict[int, tuple[list[float], list[float]]] = field(default_factory=dict, repr=False)
    figure: Path | None = None
    # Mask R-CNN: COCO's mask AP (iou_type="segm"); None for a box detector
    mask_map: float | None = None
    mask_map50: float | None = None
    mask_map75: float | None = None
    mask_ap: dict[str, float] | None = None  # per class, mask mAP@[.5:.95]

    def to_dict(self) -> dict[str, Any]:
        out = {"map": self.map, "map50": self.map50, "map75": self.map75, "map_voc07": self.map_voc07,
               "map_voc": self.map_voc, "count": self.count, "classes": self.classes, "ap": self.ap,
               "ap50": self.ap50, "coco": self.coco}
        if self.mask_map is not None:
            out.update(mask_map=self.mask_map, mask_map50=self.mask_map50, mask_map75=self.mask_map75,
                       mask_ap=self.mask_ap)
        if self.figure is not None:
            out["figure"] = str(self.figure)
        return out


def _pipeline(loaded: LoadedRun) -> SegmentationPipeline:
    return SegmentationPipeline(mean=loaded.mean, std=loaded.std, channels=loaded.in_channels,
                                device=next(loaded.model.parameters()).device)


def evaluate_detection(run: str | os.PathLike | LoadedRun, *, which: str = "best", data: str | None = None,
                       data_root: str | None = None, batch_size: int = 64, device: str | torch.device = "cpu",
                       curves: str | os.PathLike | None = None) -> DetectionReport:
    """COCO mAP@[.5:.95], AP50, AP75, VOC07 and VOC area AP, per-class AP of a detection run on
    its test split (or that of ``data``, which must have the same classes). ``curves``: a .png /
    .svg / .pdf path for the per-class precision-recall curves at IoU 0.5."""
    loaded = run if isinstance(run, LoadedRun) else load_run(run, which, device=device)
    config = loaded.config
    splits = load_detection(data or config["data"], image_size=config.get("image_size"),
                            root=data_root if data else config.get("data_root"),
                            **(config.get("data_options") or {} if not data else {}))
    if list(splits.classes) != list(loaded.classes):
        raise ValueError(f"dataset {splits.name!r} has classes {splits.classes[:5]}..., the run was trained on "
                         f"{loaded.classes[:5]}...; evaluate on data with the same classes")
    test = splits.test
    masks = bool(getattr(loaded.model, "predicts_masks", False))
    preds = detect(loaded.model, _pipeline(loaded), test.images, batch_size=batch_size)
    targets = image_targets(test, range(len(test)), masks=masks)
    metrics, per_class, raw = detection_scores(preds, targets, loaded.classes, masks=masks)
    coco = raw["coco"]
    voc = mean_average_precision(preds, targets, protocol="voc", return_curves=True)  # VOC2010+ area AP, curves
    pr = {int(k): (r.tolist(), p.tolist()) for k, (r, p) in voc["curves"].items()}
    figure = None
    if curves is not None:
        from convatlas.viz.detection import plot_precision_recall

        figure = plot_precision_recall(voc["curves"], loaded.classes, curves, ap=per_class["ap50"],
                                       title=f"{config.get('model')}: precision-recall at IoU 0.5 "
                                             f"(VOC07 mAP {metrics['map_voc07']:.3f})")
    return DetectionReport(metrics["map"], metrics["map50"], metrics["map75"], metrics["map_voc07"],
                           float(voc["map"]), len(test), list(loaded.classes), per_class["ap"], per_class["ap50"],
                           {k: float(v) for k, v in coco.items() if k.startswith(("map", "mar")) and "per_class" not in k},
                           pr, figure, metrics.get("mask_map"), metrics.get("mask_map50"), metrics.get("mask_map75"),
                           per_class.get("mask_ap"))


@dataclass
class DetectionPrediction:
    """The boxes (xyxy, image pixels), class names and scores found in one image, best first;
    for Mask R-CNN also each instance's mask (``masks`` (D, H, W) bool) and its area in pixels."""

    source: str
    boxes: list[list[float]]
    labels: list[str]
    scores: list[float]
    figure: Path | None = None
    masks: torch.Tensor | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        areas = self.masks.flatten(1).sum(1).tolist() if self.masks is not None else [None] * len(self.boxes)
        out: dict[str, Any] = {"image": self.source, "detections": [
            {"class": c, "score": s, "box": b, **({"mask_pixels": int(a)} if a is not None else {})}
            for b, c, s, a in zip(self.boxes, self.labels, self.scores, areas)]}
        if self.figure is not None:
            out["figure"] = str(self.figure)
        return out


@torch.no_grad()
def predict_detection(run: str | os.PathLike | LoadedRun, images: Sequence[str | os.PathLike] | torch.Tensor, *,
                      score_threshold: float = 0.5, out: str | os.PathLike | None = None, which: str = "best",
                      device: str | torch.device = "cpu") -> list[DetectionPrediction]:
    """The detections scoring at least ``score_threshold`` in each image (files, any size the
    detector takes, or a uint8 (N, C, H, W) tensor), fed at its own size with the run's
    normalisation. ``out`` (a .png/.svg/.pdf path; one file per image, numbered when there are
    several) draws the boxes with their class and score, and Mask R-CNN's masks."""
    if not 0 <= score_threshold <= 1:
        raise ValueError(f"score_threshold must be in [0, 1], got {score_threshold!r}")
    loaded = run if isinstance(run, LoadedRun) else load_run(run, which, device=device)
    pipeline = _pipeline(loaded)
    arrays, names = _read_images(loaded, images)
    results = []
    for i, (image, name) in enumerate(zip(arrays, names)):
        found = detect(loaded.model, pipeline, image[None])[0]
        keep = found["scores"] >= score_threshold
        found = {k: v[keep] for k, v in found.items()}
        figure = None
        if out is not None:
            from convatlas.viz.detection import save_detection_figure

            figure = save_detection_figure(_figure_path(out, i, len(arrays)), image.cpu(), found, loaded.classes,
                                           title=f"{loaded.config.get('model')}: {Path(name).name} "
                                                 f"(score >= {score_threshold:g})")
        results.append(DetectionPrediction(name, [[round(v, 2) for v in b] for b in found["boxes"].tolist()],
                                           [loaded.classes[int(k)] for k in found["labels"]],
                                           [round(float(s), 4) for s in found["scores"]], figure,
                                           found.get("masks")))
    return results
