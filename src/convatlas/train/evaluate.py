"""Using a finished run: ``load_run``, ``evaluate`` and ``predict``.

``load_run(run_dir)`` rebuilds the network with :func:`convatlas.create_model` from the run's
checkpoint and returns it in eval mode with everything needed to feed it: class names, input
size and channels, normalisation constants and a ``preprocess`` function. ``evaluate`` measures
top-1, top-5, per-class accuracy and the confusion matrix on the run's test split;
``predict`` gives the top-k classes of image files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from convatlas._io import atomic_save
from convatlas.data import BatchPipeline, load_dataset, resize_images
from convatlas.data.formats import read_image_files
from convatlas.metrics import per_class_accuracy
from convatlas.tasks import LoadedRun, evaluate_classifier, load_run

__all__ = ["LoadedRun", "load_run", "EvalReport", "evaluate", "Prediction", "predict", "plot_confusion"]


@dataclass
class EvalReport:
    """Accuracy of a network on a test split (fractions), per class, and the confusion matrix
    (rows: true class, columns: predicted)."""

    top1: float
    top5: float
    loss: float
    count: int
    classes: list[str]
    per_class: dict[str, float]
    confusion: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"top1": self.top1, "top5": self.top5, "loss": self.loss, "count": self.count,
                "per_class": self.per_class, "confusion": self.confusion.tolist(), "classes": self.classes}


def evaluate(run: str | os.PathLike | LoadedRun, *, which: str = "best", data: str | None = None,
             data_root: str | None = None, batch_size: int = 500, device: str | torch.device = "cpu",
             crf: bool | dict = False) -> EvalReport:
    """Top-1/top-5, per-class accuracy and confusion matrix of a run on its test split
    (or on the test split of ``data``, which must have the same classes). A segmentation run gives
    a :class:`~convatlas.train.segment.SegmentationReport` (mIoU, pixel accuracy, ...), with the
    scores after the dense CRF too when ``crf`` is given (True or the CRF's arguments); a detection
    run a :class:`~convatlas.train.detect.DetectionReport` (COCO and VOC mAP, per-class AP)."""
    loaded = run if isinstance(run, LoadedRun) else load_run(run, which, device=device)
    if loaded.task == "segmentation":
        from convatlas.train.segment import evaluate_segmentation

        return evaluate_segmentation(loaded, data=data, data_root=data_root, batch_size=min(batch_size, 32), crf=crf)
    if loaded.task == "detection":
        from convatlas.train.detect import evaluate_detection

        if crf:
            raise ValueError(f"the CRF refines class maps of segmentation runs; {loaded.run_dir} is a detection run")
        return evaluate_detection(loaded, data=data, data_root=data_root, batch_size=min(batch_size, 64))
    if crf:
        raise ValueError(f"the CRF refines class maps of segmentation runs; {loaded.run_dir} is a {loaded.task} run")
    config = loaded.config
    splits = load_dataset(data or config["data"], root=data_root if data else config.get("data_root"),
                          image_size=loaded.image_size, download=bool(config.get("download", True)), fit=loaded.fit)
    if list(splits.classes) != list(loaded.classes):
        raise ValueError(f"dataset {splits.name!r} has classes {splits.classes[:5]}..., the run was trained on "
                         f"{loaded.classes[:5]}...; evaluate on data with the same classes")
    pipeline = BatchPipeline(mean=loaded.mean, std=loaded.std, channels=loaded.in_channels,
                             num_classes=len(loaded.classes), device=next(loaded.model.parameters()).device)
    result = evaluate_classifier(loaded.model, pipeline, splits.test.images, splits.test.labels,
                                 len(loaded.classes), batch_size=batch_size)
    per_class = dict(zip(loaded.classes, per_class_accuracy(result["confusion"]).tolist()))
    return EvalReport(result["acc"], result["top5"], result["loss"], result["count"], list(loaded.classes),
                      per_class, result["confusion"].numpy())


def plot_confusion(report: EvalReport, path: str | os.PathLike, title: str = "") -> Path:
    """The confusion matrix as a PNG (counts written in the cells for up to 20 classes)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    n = len(report.classes)
    side = min(4 + 0.45 * n, 30)
    fig = Figure(figsize=(side, side), dpi=100)
    ax = fig.subplots()
    image = ax.imshow(report.confusion, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if n <= 50:
        ax.set_xticks(range(n), report.classes, rotation=90 if n > 10 else 0)
        ax.set_yticks(range(n), report.classes)
    if n <= 20:
        high = report.confusion.max() / 2 if report.confusion.size else 0
        for i in range(n):
            for j in range(n):
                value = int(report.confusion[i, j])
                if value:
                    ax.text(j, i, str(value), ha="center", va="center", fontsize=8,
                            color="white" if value > high else "black")
    ax.set(xlabel="predicted class", ylabel="true class",
           title=title or f"confusion matrix: top-1 {report.top1:.2%}, top-5 {report.top5:.2%}")
    fig.tight_layout()
    return atomic_save(path, lambda f: fig.savefig(f, format="png"))


@dataclass
class Prediction:
    """The top-k classes of one image, most probable first."""

    source: str
    classes: list[str]
    probabilities: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.source, "top": [{"class": c, "probability": p}
                                              for c, p in zip(self.classes, self.probabilities)]}


@torch.no_grad()
def predict(run: str | os.PathLike | LoadedRun, images: Sequence[str | os.PathLike] | torch.Tensor, *, topk: int = 5,
            which: str = "best", device: str | torch.device = "cpu", crf: bool = False,
            out: str | os.PathLike | None = None, score_threshold: float = 0.5) -> list[Any]:
    """Top-``topk`` classes with probabilities for image files (or a uint8 (N, C, H, W) tensor);
    for a segmentation run, each image's class map
    (:func:`~convatlas.train.segment.predict_segmentation`: ``crf`` refines it with the dense CRF,
    ``out`` draws it over the image); for a detection run, each image's boxes scoring at least
    ``score_threshold`` (:func:`~convatlas.train.detect.predict_detection`; ``out`` draws them).

    Files are read in the model's channels (grey or RGB), brought to the run's image size as in
    training (resized and centre-cropped, or padded) and normalised as in training.
    """
    loaded = run if isinstance(run, LoadedRun) else load_run(run, which, device=device)
    if loaded.task == "segmentation":
        from convatlas.train.segment import predict_segmentation

        return predict_segmentation(loaded, images, crf=crf, out=out)
    if loaded.task == "detection":
        from convatlas.train.detect import predict_detection

        if crf:
            raise ValueError(f"the CRF refines class maps of segmentation runs; {loaded.run_dir} is a detection run")
        return predict_detection(loaded, images, out=out, score_threshold=score_threshold)
    if crf or out is not None:
        raise ValueError("crf and out draw class maps: they are for segmentation runs; "
                         f"{loaded.run_dir} is a {loaded.task} run")
    if isinstance(images, torch.Tensor):
        batch, names = images, [f"image[{i}]" for i in range(len(images))]
    else:
        arrays, names = read_image_files(images, 1 if loaded.in_channels == 1 else 3)
        batch = torch.stack([resize_images(torch.from_numpy(a)[None], loaded.image_size, loaded.fit)[0] for a in arrays])
    k = max(1, min(topk, len(loaded.classes)))
    logits = loaded.model(loaded.preprocess(batch))
    probs = F.softmax(logits.float(), dim=1)
    top = probs.topk(k, dim=1)
    return [
        Prediction(name, [loaded.classes[i] for i in idx.tolist()], [round(float(p), 6) for p in val])
        for name, idx, val in zip(names, top.indices, top.values)
    ]
