"""`convatlas export RUN --format onnx`: the graph onnxruntime runs gives PyTorch's outputs (another
batch size than the one exported with, normalisation inside), for classification, segmentation and
the single-stage detectors, whose exported boxes and scores hold every detection PyTorch makes;
two-stage detectors are refused, and nothing is written when something is wrong."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from convatlas.export import export_onnx
from convatlas.train import load_run, train

ort = pytest.importorskip("onnxruntime")

SCENES = {"num_train": 32, "num_test": 8}


def _tiny_run(tmp_path, model: str, **kwargs):
    return train(model, iterations=2, batch_size=8, recipe="none", lr=1e-3, quiet=True,
                 threads=torch.get_num_threads(), out=tmp_path / model, **kwargs).run_dir


def _onnx(path, x: torch.Tensor) -> list[torch.Tensor]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [torch.from_numpy(a) for a in session.run(None, {"images": x.numpy()})]


def _normalised(run, x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(run.mean).view(1, -1, 1, 1)
    std = torch.tensor(run.std).view(1, -1, 1, 1)
    return (x - mean) / std


@pytest.mark.parametrize("model, data", [("lenet5", "sklearn_digits"), ("unet_mini", "digit-scenes")])
def test_classifiers_and_segmenters_export_their_logits(tmp_path, model, data):
    run_dir = _tiny_run(tmp_path, model, data=data, **({"data_options": SCENES} if data == "digit-scenes" else {}))
    result = export_onnx(run_dir)
    assert result.path == run_dir / "model.onnx" and result.max_abs_diff < 1e-3
    run = load_run(run_dir)
    x = torch.rand(5, run.in_channels, run.image_size, run.image_size, generator=torch.Generator().manual_seed(1))
    (got,) = _onnx(result.path, x)  # 5 images: the batch axis is free (the check used 2)
    with torch.no_grad():
        expected = run.model.eval()(_normalised(run, x))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    info = json.loads((run_dir / "export.json").read_text())
    assert info["task"] == run.task and info["classes"] == run.classes and info["inputs"]["images"][0] == "batch"
    assert info["mean"] == pytest.approx(list(run.mean)) and info["outputs"]["logits"] == ["batch", *expected.shape[1:]]


@pytest.mark.parametrize("model", ["retinanet_mini", "yolo_mini", "ssd_mini"])
def test_single_stage_detectors_export_every_box_and_score(tmp_path, model):
    run_dir = _tiny_run(tmp_path, model, data="digit-scenes", data_options=SCENES)
    result = export_onnx(run_dir, tmp_path / "out" / f"{model}.onnx", which="last")
    assert result.info_path == tmp_path / "out" / f"{model}.json"
    run = load_run(run_dir, "last")
    x = torch.rand(3, 1, 64, 64, generator=torch.Generator().manual_seed(2))
    boxes, scores = _onnx(result.path, x)
    detector = run.model.eval()
    with torch.no_grad():
        expected_boxes, expected_scores = detector.dense(_normalised(run, x))
    torch.testing.assert_close(boxes, expected_boxes, rtol=1e-4, atol=1e-3)  # pixels
    torch.testing.assert_close(scores, expected_scores, rtol=1e-4, atol=1e-5)
    assert scores.shape[-1] == detector.num_classes - 1  # column k is label k + 1
    # what PyTorch detects (any score, before the cap) is among the exported boxes and scores
    detector.settings = dataclasses.replace(detector.settings, score_thresh=1e-4)
    with torch.no_grad():
        found = detector(_normalised(run, x))
    assert sum(len(d["boxes"]) for d in found) > 0
    for image, d in enumerate(found):
        for box, score, label in zip(d["boxes"], d["scores"], d["labels"]):
            rows = torch.where((boxes[image] - box).abs().amax(-1) < 1e-3)[0]
            assert len(rows) and bool(((scores[image, rows, label - 1] - score).abs() < 1e-5 + 1e-4 * score).any())
    info = json.loads(result.info_path.read_text())
    assert info["postprocess"]["score_column_k_is_label"] == "k + 1" and "nms_thresh" in info["postprocess"]


def test_two_stage_detectors_are_refused_and_nothing_is_written(tmp_path):
    run_dir = _tiny_run(tmp_path, "faster_rcnn_mini", data="digit-scenes", data_options=SCENES)
    with pytest.raises(ValueError, match="two-stage detector .*faster_rcnn_mini.* proposals NMS keeps"):
        export_onnx(run_dir)
    assert not (run_dir / "model.onnx").exists() and not (run_dir / "export.json").exists()


def test_the_cli_exports_and_reports(tmp_path, capsys):
    from convatlas.cli import main

    run_dir = _tiny_run(tmp_path, "lenet5", data="sklearn_digits")
    capsys.readouterr()  # the training's notes
    assert main(["export", str(run_dir), "--format", "onnx", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["path"] == str(run_dir / "model.onnx") and printed["max_abs_diff"] < 1e-4
    assert main(["export", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err
