"""`convatlas compare` over segmentation networks: scored by mIoU, variants by builder arguments
(each upsampling choice is one row), and the notes' argument in the table's numbers."""

from __future__ import annotations

import json

import pytest

from convatlas.analysis import summary
from convatlas.registry import create_model
from convatlas.train.compare import compare_models, parse_spec

SCENES = {"size": 32, "num_train": 48, "num_test": 16, "max_digits": 2, "digit_size": [10, 20]}
FAST = {"data_options": SCENES, "batch_size": 16, "threads": 1, "schedule": "constant", "lr": 0.01}


def test_specs_name_a_network_and_its_builder_arguments():
    assert parse_spec("unet_mini") == ("unet_mini", {})
    assert parse_spec("unet_mini:upsample=nearest") == ("unet_mini", {"upsample": "nearest"})
    assert parse_spec("fullres_fcn:depth=3,width=16") == ("fullres_fcn", {"depth": 3, "width": 16})
    for bad, message in (("unet_mini:upsample", "no key=value"), ("unet_mini:", "nothing after"),
                         ("unet_mni", "unet_mini")):
        with pytest.raises(Exception, match=message):
            parse_spec(bad)


def test_a_segmentation_comparison_scores_miou_and_keeps_each_variant_apart(tmp_path):
    specs = ["unet_mini:upsample=nearest", "unet_mini:upsample=transposed", "fullres_fcn:depth=3,width=16"]
    train_args = {spec: dict(FAST) for spec in specs}
    result = compare_models(specs, epochs=1, recipe="none", out=tmp_path, train_args=train_args)
    rows = {r.name: r for r in result.rows}
    assert list(rows) == specs
    for spec, row in rows.items():
        run = tmp_path / spec.replace(":", "-").replace("=", "-").replace(",", "-")
        assert row.run_dir == str(run)
        s = json.loads((run / "summary.json").read_text())
        assert row.task == "segmentation" and row.metric == "test mIoU %"
        assert row.accuracy == pytest.approx(100 * s["test_miou"]) and row.pixel_acc == pytest.approx(100 * s["test_pixel_acc"])
    # each variant is the network its spec names: parameters and forward activations of the builder's own
    for spec, kwargs in (("unet_mini:upsample=nearest", {"upsample": "nearest"}),
                         ("fullres_fcn:depth=3,width=16", {"depth": 3, "width": 16})):
        report = summary(create_model(spec.split(":")[0], **kwargs), (1, 32, 32))
        assert rows[spec].params == report.total_params and rows[spec].activation_bytes == report.activation_bytes
    assert rows["unet_mini:upsample=nearest"].params != rows["unet_mini:upsample=transposed"].params
    table = (tmp_path / "comparison_table.md").read_text()
    assert "mIoU %" in table and "activations (MiB)" in table and "top-1" not in table
    line = next(l for l in table.splitlines() if l.startswith("| fullres_fcn:depth=3,width=16 |"))
    assert f"| {rows['fullres_fcn:depth=3,width=16'].activation_bytes / 2**20:.2f} |" in line
    assert json.loads((tmp_path / "comparison.json").read_text())[0]["metric"] == "test mIoU %"
    assert (tmp_path / "comparison_chart.png").is_file() and (tmp_path / "latency_chart.svg").is_file()
    # run again: every run is reused, none retrained
    again = compare_models(specs, epochs=1, recipe="none", out=tmp_path, train_args=train_args)
    assert all(r.reused for r in again.rows)


def test_the_sliding_window_costs_a_classifier_pass_per_pixel():
    """The notes' argument, as the comparison's MACs column shows it: the sliding window's cost per
    64x64 scene is one LeNet-5 pass per pixel (1.33 GMACs), over fifty times fcn8s_mini's whole
    pass (25.2 MMACs), which labels every pixel at once."""
    window = summary(create_model("sliding_window"), (1, 64, 64)).total_macs
    lenet = summary(create_model("lenet5"), (1, 32, 32)).total_macs
    fcn = summary(create_model("fcn8s_mini"), (1, 64, 64)).total_macs
    assert window == 64 * 64 * lenet
    assert window > 50 * fcn


def test_a_comparison_covers_one_task(tmp_path):
    with pytest.raises(ValueError, match="one task"):
        compare_models(["lenet5", "unet_mini"], out=tmp_path)
    with pytest.raises(ValueError, match="named twice"):
        compare_models(["unet_mini", "unet_mini"], out=tmp_path)
    with pytest.raises(ValueError, match="builder arguments twice"):
        compare_models(["unet_mini:upsample=nearest"], out=tmp_path,
                       train_args={"unet_mini:upsample=nearest": {"variant_args": {"upsample": "bilinear"}}})
    assert not any(tmp_path.iterdir())
