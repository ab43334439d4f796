"""Segmentation through the front door: train, resume, evaluate and predict a segmentation run
exactly as a classification one, with metrics equal to torchmetrics'."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import torch

import convatlas
from convatlas.train import evaluate, load_run, predict, train

# Small scenes so each run takes seconds: 32x32 canvases with 1-2 digits of 10-20 pixels.
SCENES = {"size": 32, "num_train": 96, "num_test": 32, "max_digits": 2, "digit_size": [10, 20]}
FAST = dict(data_options=SCENES, epochs=2, batch_size=16, quiet=True, threads=1, recipe="none")
MODEL = "unet_mini"


def _state(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)


def test_a_segmentation_run_writes_its_scores_and_they_equal_torchmetrics(tmp_path):
    from torchmetrics.functional.classification import multiclass_accuracy, multiclass_jaccard_index

    result = train(MODEL, out=tmp_path / "run", **FAST)
    s = result.summary
    assert s["task"] == "segmentation" and s["primary_metric"] == "test_miou" and s["dataset"] == "digit-scenes"
    for key in ("test_miou", "test_pixel_acc", "test_mean_acc", "test_fwiou"):
        assert 0 <= s[key] <= 1, key
    assert set(s["test_iou"]) == {"background", *map(str, range(10))}
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert "data: digit-scenes" in config  # a segmentation network's default data

    # the run's own scores, recomputed from its network's predictions with torchmetrics
    loaded = load_run(tmp_path / "run", "last")
    assert loaded.task == "segmentation" and loaded.classes[0] == "background"
    from convatlas.data.masks import load_segmentation

    test = load_segmentation("digit-scenes", **SCENES).test
    with torch.no_grad():
        logits = loaded.model(loaded.preprocess(test.images))
    pred, target = logits.argmax(1), test.masks.long()
    tm = dict(num_classes=11, ignore_index=255)
    assert s["test_miou"] == pytest.approx(float(multiclass_jaccard_index(pred, target, average="macro", **tm)), abs=1e-6)
    assert s["test_fwiou"] == pytest.approx(float(multiclass_jaccard_index(pred, target, average="weighted", **tm)), abs=1e-6)
    assert s["test_pixel_acc"] == pytest.approx(float(multiclass_accuracy(pred, target, average="micro", **tm)), abs=1e-6)

    report = evaluate(tmp_path / "run", which="last")
    assert report.miou == pytest.approx(s["test_miou"]) and report.count == SCENES["num_test"]


def test_ctrl_c_and_resume_are_exact_for_segmentation(tmp_path):
    settings = dict(FAST, epochs=3, scale_range=[0.8, 1.2], affine_degrees=5.0, brightness=0.2)
    straight = train(MODEL, out=tmp_path / "straight", **settings)

    def press_ctrl_c(info):
        if info.global_step == 9:  # in epoch 2 (6 steps an epoch)
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        train(MODEL, out=tmp_path / "cut", on_step=press_ctrl_c, **settings)
    assert json.loads((tmp_path / "cut" / "summary.json").read_text())["status"] == "interrupted"
    resumed = train(MODEL, resume=tmp_path / "cut", quiet=True)
    a, b = _state(tmp_path / "straight"), _state(tmp_path / "cut")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert resumed.summary["test_miou"] == straight.summary["test_miou"]
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in straight.history]


def test_predict_draws_class_maps_and_the_cli_evaluates(tmp_path, capsys):
    from PIL import Image

    from convatlas.cli import main
    from convatlas.data.masks import load_segmentation

    train(MODEL, out=tmp_path / "run", **dict(FAST, epochs=1))
    image = load_segmentation("digit-scenes", **SCENES).test.images[0, 0].numpy()
    Image.fromarray(np.pad(image, ((0, 7), (0, 3)))).save(tmp_path / "scene.png")  # any size: 39x35
    predictions = predict(tmp_path / "run", [tmp_path / "scene.png"], out=tmp_path / "overlay.png")
    assert predictions[0].mask.shape == (39, 35) and predictions[0].figure.is_file()
    assert sum(predictions[0].fractions().values()) == pytest.approx(1.0)
    refined = predict(tmp_path / "run", [tmp_path / "scene.png"], crf=True)[0]  # a grey scene: repeated to RGB
    assert refined.refined.shape == (39, 35) and np.array_equal(refined.mask, predictions[0].mask)
    assert set(np.unique(refined.refined)) <= set(range(11))
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) >= {"miou", "pixel_acc", "mean_acc", "fwiou", "iou", "confusion"}
    assert (tmp_path / "run" / "class_iou.png").is_file()
    assert main(["predict", str(tmp_path / "run"), str(tmp_path / "scene.png"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["size"] == [39, 35]


def test_evaluation_after_the_crf_equals_the_crf_run_image_by_image(tmp_path, capsys):
    """``evaluate(run, crf=...)`` scores the CRF's labels: the same as running dense_crf on each
    test scene's log-probabilities and scoring with torchmetrics."""
    from torchmetrics.functional.classification import multiclass_jaccard_index

    from convatlas.cli import main
    from convatlas.data.masks import load_segmentation
    from convatlas.segmentation.crf import dense_crf

    train(MODEL, out=tmp_path / "run", **dict(FAST, epochs=1))
    options = {"iterations": 3, "bi_xy_std": 8.0, "bi_rgb_std": 20.0}
    report = evaluate(tmp_path / "run", which="last", crf=options)
    loaded = load_run(tmp_path / "run", "last")
    test = load_segmentation("digit-scenes", **SCENES).test
    with torch.no_grad():
        log_probs = torch.log_softmax(loaded.model(loaded.preprocess(test.images)), dim=1)
    labels = torch.stack([dense_crf(img.expand(3, -1, -1), logits=lp, **options).argmax(0)
                          for img, lp in zip(test.images, log_probs)])
    expected = float(multiclass_jaccard_index(labels, test.masks.long(), num_classes=11, average="macro"))
    assert report.crf["miou"] == pytest.approx(expected, abs=1e-6) and report.crf["options"] == options
    assert report.miou == pytest.approx(float(multiclass_jaccard_index(log_probs.argmax(1), test.masks.long(),
                                                                       num_classes=11, average="macro")), abs=1e-6)
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run"), "--which", "last", "--crf"]) == 0
    assert "after the dense CRF: mIoU" in capsys.readouterr().out
    assert "crf" in json.loads((tmp_path / "run" / "eval.json").read_text())
    train("lenet5", data="sklearn_digits", epochs=1, quiet=True, threads=1, out=tmp_path / "cls")
    with pytest.raises(ValueError, match="segmentation runs"):
        evaluate(tmp_path / "cls", crf=True)


def test_the_sliding_window_trains_and_scores_through_the_front_door(tmp_path):
    """The notes' first baseline is a segmentation network like the others: it trains (one
    LeNet-5 pass per pixel), its summary carries mIoU, and its class map equals the classifier
    run on each pixel's own patch."""
    scenes = {"size": 12, "num_train": 4, "num_test": 2, "max_digits": 1, "digit_size": [8, 10]}
    result = train("sliding_window", data_options=scenes, iterations=2, batch_size=2, quiet=True, threads=1,
                   out=tmp_path / "run")
    assert result.summary["task"] == "segmentation" and 0 <= result.summary["test_miou"] <= 1
    loaded = load_run(tmp_path / "run", "last")
    from convatlas.data.masks import load_segmentation

    image = loaded.preprocess(load_segmentation("digit-scenes", **scenes).test.images[:1])
    with torch.no_grad():
        labels = loaded.model(image).argmax(1)[0]
        padded = torch.nn.functional.pad(image, (16, 16, 16, 16))  # zeros around the normalised scene, 32x32 patches
        for i, j in ((0, 0), (5, 7), (11, 11)):
            patch = padded[..., i:i + 32, j:j + 32]
            assert labels[i, j] == loaded.model.classifier(patch).argmax(1)[0]


def test_segmentation_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="num_classes=5 differs from the 11 classes"):
        train(MODEL, num_classes=5, out=tmp_path / "a", **FAST)
    with pytest.raises(ValueError, match="classification network"):
        train("lenet5", data="digit-scenes", data_options=SCENES, quiet=True, out=tmp_path / "b")
    with pytest.raises(ValueError, match="segmentation network"):
        train(MODEL, data="digits", quiet=True, out=tmp_path / "c")
    with pytest.raises(ValueError, match="class_weights needs one weight per class"):
        train(MODEL, class_weights=[1.0, 2.0], out=tmp_path / "d", **FAST)
    with pytest.raises(ValueError, match="scale must be"):
        train(MODEL, scale_range=[2.0, 1.0], out=tmp_path / "e", **FAST)
    with pytest.raises(convatlas.InputTooSmallError, match="unet needs at least"):
        train("unet", out=tmp_path / "f", **FAST)  # the paper's valid-convolution U-Net on 32x32 scenes
    assert not any((tmp_path / n).exists() for n in "abcdef")  # nothing was written


@pytest.mark.slow
def test_unet_mini_learns_well_above_the_all_background_baseline(tmp_path):
    """940 steps on 1,500 small scenes (32x32, one or two digits) with the card's recipe: mIoU
    far above what predicting background everywhere scores (the background's IoU, its pixel
    share, over 11 classes: about 0.09)."""
    options = {"size": 32, "num_train": 1500, "num_test": 300, "max_digits": 2, "digit_size": [12, 24]}
    result = train(MODEL, out=tmp_path / "run", data_options=options, epochs=10, quiet=True)
    from convatlas.data.masks import load_segmentation
    from convatlas.metrics import segmentation_scores

    test = load_segmentation("digit-scenes", **options).test
    baseline = segmentation_scores(torch.zeros_like(test.masks), test.masks, 11)["miou"]
    assert baseline < 0.1
    assert result.summary["recipe"] == "digit_scenes"
    assert result.summary["test_miou"] > baseline + 0.2


def test_the_cli_takes_data_options_as_yaml(tmp_path):
    from convatlas.cli import main

    options = "{size: 32, num_train: 64, num_test: 16, max_digits: 2, digit_size: [10, 20]}"
    assert main(["train", MODEL, "--data-options", options, "--epochs", "1", "--batch-size", "16", "--quiet",
                 "--threads", "1", "--out", str(tmp_path / "run")]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["task"] == "segmentation" and summary["iterations"] == 4  # 64 scenes in batches of 16
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert "num_train: 64" in config and "size: 32" in config
    with pytest.raises(SystemExit):
        main(["train", MODEL, "--data-options", "[1, 2]", "--out", str(tmp_path / "bad")])
    assert not (tmp_path / "bad").exists()
