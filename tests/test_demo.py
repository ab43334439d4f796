"""`convatlas demo` (what `make demo` runs) on a tiny budget: two networks, one epoch each.

The outcomes are checked against what the runs wrote (summary.json, config.yaml) and against the
analysis of freshly built networks, not against the comparison's own numbers.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import xml.etree.ElementTree as ET

import pytest
import torch
import yaml
from PIL import Image

import convatlas
from convatlas.analysis import summary
from convatlas.cli import main
from convatlas.cli.demo import DEMO_IMAGE_SIZE, DEMO_TRAIN_ARGS
from convatlas.train.compare import compare_models

NETS = ["lenet5", "alexnet_mini"]  # the two cheapest; alexnet_mini also has its own learning rate


def run_demo(out) -> str:
    """``convatlas demo`` on the two networks for one epoch; returns what it printed. The demo
    sets torch's thread count for its process; the test's own count is put back afterwards."""
    threads = torch.get_num_threads()
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            code = main(["demo", "--models", *NETS, "--epochs", "1", "--out", str(out), "--quiet"])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    return printed.getvalue()


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, run_demo(out)


def test_demo_writes_real_charts_and_says_where(demo_run):
    out, printed = demo_run
    for stem in ("comparison_chart", "latency_chart"):
        png = out / f"{stem}.png"
        with Image.open(png) as image:
            assert image.format == "PNG" and image.width > 500 and image.height > 300
        root = ET.parse(out / f"{stem}.svg").getroot()
        assert root.tag.endswith("svg")
        text = "".join(root.itertext())
        assert all(name in text for name in NETS), "every network is labelled on the chart"
    for path in (out / "comparison_chart.png", out / "latency_chart.png", out / "demo_table.md",
                 out / "comparison_table.csv"):
        assert str(path) in printed
    assert (out / "demo_table.md").read_text() in printed  # the table printed is the table written


def test_demo_table_matches_runs_and_analysis(demo_run):
    out, printed = demo_run
    with open(out / "comparison_table.csv", newline="") as f:
        rows = {row["name"]: row for row in csv.DictReader(f)}
    assert list(rows) == NETS
    markdown = (out / "demo_table.md").read_text().splitlines()
    assert markdown[0].startswith("| network | test accuracy |") and len(markdown) == 2 + len(NETS)
    for name in NETS:
        run_summary = json.loads((out / name / "summary.json").read_text())
        assert run_summary["status"] == "complete" and run_summary["epochs"] == 1
        assert float(rows[name]["accuracy"]) == pytest.approx(100 * run_summary["test_acc"])
        report = summary(convatlas.create_model(name), (1, DEMO_IMAGE_SIZE, DEMO_IMAGE_SIZE))
        assert int(rows[name]["params"]) == report.total_params == convatlas.model_card(name).params.value
        assert int(rows[name]["macs"]) == report.total_macs
        assert float(rows[name]["latency_ms"]) > 0
        assert f"| {name} | {100 * run_summary['test_acc']:.2f}% | {report.total_params:,} |" in printed
    # One epoch of LeNet-5 is already far above chance (10%) on the digits.
    assert float(rows["lenet5"]["accuracy"]) > 30
    # The demo's own trainer arguments reach the run (all but the epochs, which --epochs replaced).
    config = yaml.safe_load((out / "alexnet_mini" / "config.yaml").read_text())
    assert config["lr"] == DEMO_TRAIN_ARGS["alexnet_mini"]["lr"] and config["epochs"] == 1
    assert config["image_size"] == DEMO_IMAGE_SIZE


def test_second_demo_reuses_the_runs(demo_run):
    out, _ = demo_run
    before = {name: (out / name / "summary.json").stat().st_mtime_ns for name in NETS}
    assert "0 trained, 2 reused" in run_demo(out)
    rows = json.loads((out / "comparison.json").read_text())
    assert [r["reused"] for r in rows] == [True, True]
    assert {name: (out / name / "summary.json").stat().st_mtime_ns for name in NETS} == before


def test_interrupted_comparison_resumes(tmp_path):
    """A run with a checkpoint but no summary (as Ctrl-C leaves it) is continued, not retrained."""
    first = compare_models(["lenet5"], epochs=1, out=tmp_path, image_size=DEMO_IMAGE_SIZE)
    run_dir = tmp_path / "lenet5"
    (run_dir / "summary.json").unlink()
    again = compare_models(["lenet5"], epochs=1, out=tmp_path, image_size=DEMO_IMAGE_SIZE)
    assert not again.rows[0].reused and again.rows[0].run_dir == str(run_dir)
    assert again.rows[0].accuracy == pytest.approx(first.rows[0].accuracy)
    steps_per_epoch = yaml.safe_load((run_dir / "config.yaml").read_text())["derived"]["steps_per_epoch"]
    assert json.loads((run_dir / "summary.json").read_text())["iterations"] == steps_per_epoch  # not twice


@pytest.mark.parametrize(
    "train_args, message",
    [
        ({"vgg_mini": {"epochs": 2}}, "not among the networks compared"),
        ({"lenet5": {"learning_rate": 0.1}}, "unknown train_args\\['lenet5'\\] key 'learning_rate'"),
        ({"lenet5": {"data": "cifar10"}}, "every network of a comparison shares"),
    ],
)
def test_bad_train_args_fail_before_training(tmp_path, train_args, message):
    with pytest.raises(ValueError, match=message):
        compare_models(["lenet5"], out=tmp_path, train_args=train_args)
    assert not any(tmp_path.iterdir())
