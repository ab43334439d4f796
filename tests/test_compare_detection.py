"""`convatlas compare` over detectors: scored by COCO mAP (mAP@0.5 and AP75 beside it), MACs
counted on a real forward pass with the proposals the RPN kept, tasks kept apart, and the CLI.

The runs are tiny (96 scenes of 32x32 with one digit, three epochs; the RoI Pool variant one
epoch): enough for a detector that finds some digits, so that the scores compared are not zeros."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
import torch
import yaml
from torch import nn

from convatlas.analysis import summary
from convatlas.compare.runs import compare_runs, forward_macs
from convatlas.data.boxes import load_detection
from convatlas.train import load_run, train
from convatlas.train.compare import compare_models

SCENES = {"size": 32, "num_train": 96, "num_test": 16, "max_digits": 1, "digit_size": [12, 20]}
SPECS = ["faster_rcnn_mini", "faster_rcnn_mini:roi_pool=pool"]
FOLDERS = {"faster_rcnn_mini": "faster_rcnn_mini", "faster_rcnn_mini:roi_pool=pool": "faster_rcnn_mini-roi_pool-pool"}


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """Both detectors trained on the default data (no ``data`` given) under one small recipe and compared."""
    root = tmp_path_factory.mktemp("detection")
    recipe = root / "tiny.yaml"
    recipe.write_text(f"data_options: {json.dumps(SCENES)}\nepochs: 3\nbatch_size: 16\noptimizer: adamw\n"
                      f"lr: 0.015\nweight_decay: 0.0001\nthreads: {torch.get_num_threads()}\n")
    out = root / "compare"
    result = compare_models(SPECS, recipe=str(recipe), out=out, latency_batch=8,
                            train_args={"faster_rcnn_mini:roi_pool=pool": {"epochs": 1}})
    return result, out, recipe


def _summary(out, spec):
    return json.loads((out / FOLDERS[spec] / "summary.json").read_text())


def test_the_table_shows_each_runs_coco_map(compared):
    result, out, _ = compared
    rows = {r.name: r for r in result.rows}
    assert list(rows) == SPECS
    assert _summary(out, "faster_rcnn_mini")["test_map50"] > 0  # a detector that found digits: no all-zero table
    csv_rows = {r["name"]: r for r in csv.DictReader(open(out / "comparison_table.csv"))}
    md = (out / "comparison_table.md").read_text()
    for spec, row in rows.items():
        s = _summary(out, spec)
        assert s["task"] == "detection" and row.task == "detection" and row.metric == "test COCO mAP %"
        assert yaml.safe_load((out / FOLDERS[spec] / "config.yaml").read_text())["data"] == "digit-scenes"  # the default
        assert row.accuracy == pytest.approx(100 * s["test_map"])
        assert row.map50 == pytest.approx(100 * s["test_map50"]) and row.map75 == pytest.approx(100 * s["test_map75"])
        assert row.train_seconds == s["train_seconds"] and row.run_dir == str(out / FOLDERS[spec])
        assert row.params == sum(p.numel() for p in load_run(out / FOLDERS[spec]).model.parameters()) == 1_020_244
        assert row.latency_ms > 0 and row.latency_ms_batch > 0 and 1 <= row.latency_batch <= 8  # fewer when slow
        # the files say the same
        assert float(csv_rows[spec]["map_percent"]) == pytest.approx(100 * s["test_map"])
        assert float(csv_rows[spec]["map50_percent"]) == pytest.approx(100 * s["test_map50"])
        assert float(csv_rows[spec]["map75_percent"]) == pytest.approx(100 * s["test_map75"])
        assert int(csv_rows[spec]["macs"]) == row.macs
        line = next(l for l in md.splitlines() if l.startswith(f"| {spec} |"))
        assert line.split(" | ")[2:5] == [f"{100 * s['test_map']:.2f}", f"{100 * s['test_map50']:.2f}",
                                          f"{100 * s['test_map75']:.2f}"]
    assert "| mAP % | mAP@0.5 % | AP75 % |" in md and "top-1" not in md
    assert "MACs: one forward pass on the first test scene (32x32)" in md
    assert [r["accuracy"] for r in json.loads((out / "comparison.json").read_text())] == [r.accuracy for r in rows.values()]
    for chart in ("comparison_chart", "latency_chart"):
        assert (out / f"{chart}.png").stat().st_size > 10_000 and "faster_rcnn_mini" in (out / f"{chart}.svg").read_text()


def _macs_by_hand(model: nn.Module, x: torch.Tensor, roi_align: bool) -> tuple[int, int]:
    """The MACs of the detector's pass on ``x``, derived part by part, and the proposals it kept:
    every convolution of the backbone and the RPN head (output elements x input channels per group
    x kernel area, shapes read off a real pass), then the second stage on the K proposals the RPN
    returns: RoI Align's two interpolation products per region (``A_y F`` then ``(A_y F) A_x^T``,
    the method of convatlas.detection.roi; RoI Pool takes maxima, no MACs) and the four linear layers."""
    convs = []
    hooks = [m.register_forward_hook(lambda m, a, y: convs.append(y.numel() * m.in_channels // m.groups
                                                                  * m.kernel_size[0] * m.kernel_size[1]))
             for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        features = model.features(x)
        proposals, _ = model.rpn(list(features.values()), tuple(x.shape[-2:]))
    for h in hooks:
        h.remove()
    k = len(proposals[0])
    _, c, h, w = features["conv5"].shape
    s = 7  # the pooled grid
    pooling = k * c * s * h * w + k * c * s * s * w if roi_align else 0
    head = model.roi_heads
    linear = sum(k * layer.in_features * layer.out_features
                 for layer in (head.box_head.fc6, head.box_head.fc7, head.box_predictor.cls_score,
                               head.box_predictor.bbox_pred))
    assert linear == k * (3136 * 256 + 256 * 256 + 256 * 11 + 256 * 44)
    return sum(convs) + pooling + linear, k


def test_a_detectors_macs_count_its_whole_pass_with_the_proposals_kept(compared):
    result, out, _ = compared
    rows = {r.name: r for r in result.rows}
    scene = load_detection("digit-scenes", **SCENES).test.images[:1]
    for spec, align in (("faster_rcnn_mini", True), ("faster_rcnn_mini:roi_pool=pool", False)):
        run = load_run(out / FOLDERS[spec], "last")  # the weights summary.json's scores belong to
        x = run.preprocess(scene)
        expected, kept = _macs_by_hand(run.model, x, roi_align=align)
        assert rows[spec].macs == expected and rows[spec].proposals == kept == forward_macs(run.model, x).proposals
        assert kept > 0
        # the meta-device analysis stops at the proposals: it counts the convolutions only, the
        # backbone and the RPN head, and reports itself incomplete
        partial = summary(run.model, (1, 32, 32))
        assert not partial.complete
        assert partial.total_macs == expected - kept * (3136 * 256 + 256 * 256 + 256 * 11 + 256 * 44) - (
            kept * 64 * 7 * (8 * 8 + 7 * 8) if align else 0)
        assert rows[spec].macs > partial.total_macs
    # RoI Align's interpolation is what the variants' counts differ by (same proposals: 50, the test-time cap)
    assert rows["faster_rcnn_mini"].proposals == rows["faster_rcnn_mini:roi_pool=pool"].proposals == 50
    assert rows["faster_rcnn_mini"].macs - rows["faster_rcnn_mini:roi_pool=pool"].macs == 50 * 64 * 7 * (64 + 56)


def test_forward_macs_takes_real_images_only():
    with pytest.raises(ValueError, match=r"real \(N, C, H, W\) batch, got \(1, 64, 64\)"):
        forward_macs(nn.Conv2d(1, 2, 3), torch.zeros(1, 64, 64))
    with pytest.raises(ValueError, match="on the meta device"):
        forward_macs(nn.Conv2d(1, 2, 3), torch.empty(1, 1, 8, 8, device="meta"))
    conv = nn.Conv2d(1, 2, 3)
    assert forward_macs(conv, torch.zeros(1, 1, 8, 8)).macs == 2 * 6 * 6 * 9  # a plain network: no proposals
    assert forward_macs(conv, torch.zeros(1, 1, 8, 8)).proposals is None


def test_detection_and_classification_are_compared_apart(compared, tmp_path):
    _, out, _ = compared
    with pytest.raises(ValueError, match=r"one task.*detection: test COCO mAP.*lenet5 \(classification\), "
                                         r"faster_rcnn_mini \(detection\)"):
        compare_models(["lenet5", "faster_rcnn_mini"], out=tmp_path / "mixed")
    assert not (tmp_path / "mixed").exists()  # refused before any training
    lenet = train("lenet5", data="sklearn_digits", iterations=2, batch_size=32, recipe="none", quiet=True,
                  threads=torch.get_num_threads(), out=tmp_path / "lenet5").run_dir
    runs = [("faster_rcnn_mini", out / "faster_rcnn_mini", True), ("lenet5", lenet, False)]
    with pytest.raises(ValueError, match=r"faster_rcnn_mini \(.*\) is a detection run, lenet5 \(.*\) is a "
                                         r"classification run - compare each task's networks separately"):
        compare_runs(runs, tmp_path / "measured", data="digit-scenes")
    assert not (tmp_path / "measured").exists()  # refused before anything was measured


def test_the_cli_compares_detectors(compared, tmp_path, capsys, monkeypatch):
    from convatlas.cli import main

    monkeypatch.setenv("COLUMNS", "250")  # the printed table unabridged

    _, out, recipe = compared
    # the run trained above, under the same settings (default data, the recipe): the CLI reuses it
    shutil.copytree(out / "faster_rcnn_mini", tmp_path / "faster_rcnn_mini")
    assert main(["compare", "faster_rcnn_mini", "--recipe", str(recipe), "--latency-batch", "4", "--out",
                 str(tmp_path), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "test COCO mAP %" in printed and "AP75 %" in printed and "proposals" in printed
    row = next(l for l in printed.splitlines() if "faster_rcnn_mini" in l and "reused" in l)
    assert f"{100 * _summary(out, 'faster_rcnn_mini')['test_map']:.2f}" in row
    written = json.loads((tmp_path / "comparison.json").read_text())
    s = _summary(out, "faster_rcnn_mini")
    assert [r["name"] for r in written] == ["faster_rcnn_mini"] and written[0]["reused"]
    assert written[0]["accuracy"] == pytest.approx(100 * s["test_map"])
    assert written[0]["map50"] == pytest.approx(100 * s["test_map50"]) and 1 <= written[0]["latency_batch"] <= 4
    for name in ("comparison_chart.png", "comparison_chart.svg", "latency_chart.png", "latency_chart.svg",
                 "comparison_table.csv", "comparison_table.md", "comparison_table.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert f"| faster_rcnn_mini | faster_rcnn | {100 * s['test_map']:.2f} |" in (tmp_path / "comparison_table.md").read_text()
