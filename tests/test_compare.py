"""The comparison charts and tables: data equal to the cards and the analysis, files written,
cached and resumed comparisons."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

import convatlas
from convatlas.compare.chart import Point, bubble_chart, draw_bubble_chart, place_labels, size_legend_values
from convatlas.compare.published import compare_published, published_points
from convatlas.compare.runs import measure_latency


def _is_real_png(path, min_side=300):
    with Image.open(path) as im:
        im.load()
        arr = torch.from_numpy(np.asarray(im.convert("L"), dtype=np.float32))
        return im.size[0] >= min_side and im.size[1] >= min_side and arr.std() > 5  # not a blank canvas


def test_bubble_chart_writes_png_and_svg(tmp_path):
    pts = [Point("a", "f1", 1_000_000, 2_000_000_000, 70.0), Point("b", "f2", 60_000_000, 700_000_000, 57.0),
           Point("c", "f1", 138_000_000, 15_000_000_000, 71.5), Point("d", "f2", 5_000, 400_000, None)]
    png, svg = bubble_chart(pts, tmp_path / "chart")
    assert png.suffix == ".png" and svg.suffix == ".svg"
    assert _is_real_png(png)
    text = svg.read_text()
    for name in ("a", "b", "c"):
        assert f">{name}<" in text or f"{name}</" in text  # every labelled point is in the drawing
    assert not list(tmp_path.glob(".*"))  # no temp files left behind


def test_bubble_chart_rejects_points_without_accuracy(tmp_path):
    with pytest.raises(ValueError, match="no point has an accuracy"):
        bubble_chart([Point("x", "f", 10, 10, None)], tmp_path / "c")
    with pytest.raises(ValueError, match="x must be"):
        bubble_chart([Point("x", "f", 10, 10, 1.0)], tmp_path / "c", x="params")


def test_size_legend_spans_the_data():
    values = size_legend_values([60_000, 1_200_000, 144_000_000])
    assert values[0] >= 60_000 and values[-1] <= 144_000_000
    assert values == sorted(values) and len(values) <= 4


def test_published_points_equal_cards_and_analysis():
    points = published_points()
    names = {p.name for p in points}
    expected = {n for n in convatlas.list_models()
                if convatlas.model_card(n).top1 is not None and convatlas.model_card(n).dataset == "imagenet"}
    assert names == expected and len(names) >= 10
    for p in points:
        card = convatlas.model_card(p.name)
        assert p.accuracy == pytest.approx(card.top1.value)
        with torch.device("meta"):
            model = convatlas.create_model(p.name)
        assert p.params == sum(t.numel() for t in model.parameters())
        report = convatlas.summary(model, card.input_size)
        assert p.macs == report.total_macs


def test_compare_published_writes_chart_and_tables(tmp_path):
    names = [n for n in ("alexnet", "vgg16", "resnet50", "googlenet", "mobilenet_v2") if n in convatlas.list_models()]
    written = compare_published(tmp_path, names=names)
    png = [p for p in written["chart"] if p.suffix == ".png"][0]
    assert _is_real_png(png)
    rows = list(csv.DictReader(open(tmp_path / "published_table.csv")))
    assert [r["name"] for r in rows] == sorted(names, key=lambda n: int(next(x["macs"] for x in rows if x["name"] == n)))
    for r in rows:
        assert float(r["accuracy"]) == pytest.approx(convatlas.model_card(r["name"]).top1.value)
    md = (tmp_path / "published_table.md").read_text()
    assert all(f"| {n} |" in md for n in names)


def test_latency_is_positive_and_checks_batch():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(3))
    model(torch.randn(1, 1, 8, 8))
    assert measure_latency(model, (1, 8, 8), batch=1, repeats=3) > 0
    with pytest.raises(ValueError, match="batch"):
        measure_latency(model, (1, 8, 8), batch=0)


def _label_boxes(drawn):
    """The window extent of every label of a drawn chart, as the figure's renderer draws it."""
    drawn.figure.canvas.draw()
    renderer = drawn.figure.canvas.get_renderer()
    return [text.get_window_extent(renderer) for text in drawn.labels]


def _assert_no_label_collisions(drawn):
    boxes = _label_boxes(drawn)
    assert len(boxes) == len(drawn.points)
    clashes = [(drawn.points[i].name, drawn.points[j].name)
               for i in range(len(boxes)) for j in range(i) if boxes[i].overlaps(boxes[j])]
    assert clashes == []
    frame = drawn.axes.get_window_extent(drawn.figure.canvas.get_renderer())
    for box, p in zip(boxes, drawn.points):  # inside the axes
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, p.name
    return boxes


@pytest.fixture(scope="module")
def published():
    return published_points()


@pytest.mark.slow
def test_published_chart_labels_do_not_collide(published):
    drawn = draw_bubble_chart(published)
    boxes = _assert_no_label_collisions(drawn)
    assert [t.get_text() for t in drawn.labels] == [p.name for p in drawn.points]
    # most labels sit right beside their circle; each of the others has a leader line to it
    assert sum(drawn.moved) <= len(boxes) // 2
    assert len(drawn.axes.lines) == sum(drawn.moved)
    for line, k in zip(drawn.axes.lines, [k for k, m in enumerate(drawn.moved) if m]):
        end = drawn.axes.transData.transform(np.column_stack(line.get_data()))[1]
        box = boxes[k].padded(2)
        assert box.x0 <= end[0] <= box.x1 and box.y0 <= end[1] <= box.y1, drawn.points[k].name


def test_dense_cluster_labels_do_not_collide(tmp_path):
    rng = np.random.default_rng(0)
    pts = [Point(f"net_{k:02d}", f"f{k % 4}", int(rng.integers(1_000_000, 80_000_000)), int(10 ** rng.uniform(9.9, 10.1)),
                 float(rng.uniform(77, 79))) for k in range(30)]
    pts += [Point("far_small", "f0", 2_000_000, 300_000_000, 60.0), Point("far_big", "f1", 140_000_000, 2e10, 70.0)]
    drawn = draw_bubble_chart(pts)
    _assert_no_label_collisions(drawn)
    assert sum(drawn.moved) >= 10  # a cluster this dense needs leader lines
    assert not drawn.moved[drawn.points.index(pts[-2])]  # an isolated point keeps its label beside it
    png, svg = bubble_chart(pts, tmp_path / "dense")
    assert _is_real_png(png) and "net_17" in svg.read_text()


def test_place_labels_keeps_out_of_the_legend_and_beside_lone_circles():
    centres = np.array([[100.0, 100.0], [400.0, 300.0], [405.0, 302.0], [410.0, 298.0]])
    radii = np.array([5.0, 20.0, 20.0, 20.0])
    sizes = np.array([[40.0, 10.0]] * 4)
    legend = (430.0, 250.0, 600.0, 400.0)
    boxes, moved = place_labels(centres, radii, sizes, (0.0, 0.0, 600.0, 400.0), keep_out=[legend])
    assert not moved[0] and boxes[0][0] == pytest.approx(100 + 5 + 2)  # right beside its circle
    for i, box in enumerate(boxes):
        assert not (box[0] < legend[2] and legend[0] < box[2] and box[1] < legend[3] and legend[1] < box[3])
        for j in range(i):
            other = boxes[j]
            assert not (box[0] < other[2] and other[0] < box[2] and box[1] < other[3] and other[1] < box[3])
