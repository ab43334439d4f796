"""The single-stage minis learn through the front door: `convatlas.train` on a share of the digit
scenes, mAP@0.5 well above chance (a detector that has learned nothing scores about 0), and the
reloaded run scores what the trainer logged. Their recipes' full figures are the benchmark's
(`benchmarks/bench_single_stage.py`, the README)."""

from __future__ import annotations

import json

import pytest
import torch

import convatlas


@pytest.mark.slow
@pytest.mark.parametrize("model, settings", [
    ("retinanet_mini", {"lr": 0.002}),  # over 400 steps the recipe's peak 4e-3 (best over its 1,750) learns slower
    ("ssd_mini", {}),
    ("yolo_mini", {}),
])
def test_a_single_stage_mini_learns_through_the_front_door(tmp_path, model, settings):
    convatlas.train(model, epochs=4, data_options={"num_train": 1600, "num_test": 150}, out=tmp_path / "run",
                    quiet=True, threads=torch.get_num_threads(), **settings)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["task"] == "detection"
    assert summary["test_map50"] > 0.3, summary["test_map50"]
    report = convatlas.evaluate(tmp_path / "run", which="last")
    assert report.map == pytest.approx(summary["test_map"], abs=1e-6)
