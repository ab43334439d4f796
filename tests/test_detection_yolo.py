"""YOLO v1: the paper's network counted and its output geometry, the loss of Eq. 3 on cases computed
by hand, the grid's encoding and decoding, the test-time scores, bad input, and learning through the
front door."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from convatlas.detection.yolo import YOLOSettings, YOLOv1, decode_grid, yolo_loss, yolo_targets
from convatlas.registry import create_model

# ---------------------------------------------------------------------------------------------
# The paper's network


def test_the_papers_network_counted_and_its_output():
    model = create_model("yolo_v1")
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert len(convs) == 24  # "24 convolutional layers followed by 2 fully connected layers"
    linear = [m for m in model.head if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(7 * 7 * 1024, 4096), (4096, 7 * 7 * 30)]
    assert linear[0].weight.numel() + linear[0].bias.numel() == 205_524_992  # "205.5M" in the first FC alone
    conv_params = sum(p.numel() for m in convs for p in m.parameters())
    assert conv_params == 60_155_968
    assert sum(p.numel() for p in model.parameters()) == conv_params + 205_524_992 + 4096 * 1470 + 1470 == 271_703_550
    assert [m.negative_slope for m in model.modules() if isinstance(m, nn.LeakyReLU)] == [0.1] * 25
    # 448 -> 7x7x1024 -> 7x7x30 (S = 7, B = 2, C = 20)
    meta = create_model("yolo_v1").to("meta")
    grid = meta.grid(torch.empty(2, 3, 448, 448, device="meta"))
    assert tuple(meta.features(torch.empty(1, 3, 448, 448, device="meta")).shape) == (1, 1024, 7, 7)
    assert tuple(grid.shape) == (2, 7, 7, 30)


# ---------------------------------------------------------------------------------------------
# The loss, by hand


def _case(x0: float) -> tuple[torch.Tensor, list, YOLOSettings]:
    """A 64x64 image, S = 2 (32-px cells), B = 2, C = 2 (num_classes 3); one box [8, 8, 40, 24] of
    label 2: its centre (24, 16) is in cell (0, 0) at x = 0.75, y = 0.5; w = 0.5, h = 0.25."""
    settings = YOLOSettings(grid=2, boxes=2)
    out = torch.zeros(1, 2, 2, 12)
    out[0, 0, 0, 0:5] = torch.tensor([x0, 0.5, math.sqrt(0.5), 0.5, 0.8])  # box 0
    out[0, 0, 0, 5:10] = torch.tensor([0.5, 0.5, 0.5, 0.5, 0.3])  # box 1: [8, 8, 24, 24], IoU 0.5
    out[0, 0, 0, 10:] = torch.tensor([0.1, 0.7])  # Pr(class | object)
    out[0, 1, 1, 4] = 0.2  # a confidence where there is no object
    out[0, 1, 0, 10:] = 0.5  # class probabilities of an empty cell: not in the loss
    targets = [{"boxes": torch.tensor([[8.0, 8.0, 40.0, 24.0]]), "labels": torch.tensor([2])}]
    return out, targets, settings


def test_the_loss_of_a_perfect_box():
    out, targets, settings = _case(0.75)  # box 0 is exactly the object: IoU 1, responsible
    loss = yolo_loss(out, targets, (64, 64), settings, 2)
    assert float(loss["loss_box"]) == pytest.approx(0.0, abs=1e-12)
    assert float(loss["loss_object"]) == pytest.approx((0.8 - 1.0) ** 2)
    assert float(loss["loss_no_object"]) == pytest.approx(0.5 * (0.3 ** 2 + 0.2 ** 2))  # lambda_noobj = 0.5
    assert float(loss["loss_class"]) == pytest.approx(0.1 ** 2 + (0.7 - 1) ** 2)


def test_the_loss_of_a_shifted_box():
    out, targets, settings = _case(0.65)  # x off by 0.1 of a cell: [4.8, 8, 36.8, 24], IoU 460.8 / 563.2
    loss = yolo_loss(out, targets, (64, 64), settings, 2)
    iou = (36.8 - 8) * 16 / (2 * 32 * 16 - (36.8 - 8) * 16)
    assert float(loss["loss_box"]) == pytest.approx(5 * 0.1 ** 2)  # lambda_coord = 5
    assert float(loss["loss_object"]) == pytest.approx((0.8 - iou) ** 2, rel=1e-5)  # the target is the IoU
    # box 1 (IoU 0.5) is not responsible: its confidence goes to 0
    assert float(loss["loss_no_object"]) == pytest.approx(0.5 * (0.3 ** 2 + 0.2 ** 2))


def test_the_box_with_the_higher_iou_is_responsible_and_sizes_go_by_square_roots():
    out, targets, settings = _case(0.75)
    out[0, 0, 0, 0:5] = torch.tensor([0.5, 0.5, 0.5, 0.5, 0.8])  # box 0 now IoU 0.5
    out[0, 0, 0, 5:10] = torch.tensor([0.75, 0.5, 0.6, 0.5, 0.3])  # box 1: w = 0.36 (sqrt 0.6), IoU 0.72
    loss = yolo_loss(out, targets, (64, 64), settings, 2)
    assert float(loss["loss_box"]) == pytest.approx(5 * (0.6 - math.sqrt(0.5)) ** 2)  # on sqrt(w), not w
    assert float(loss["loss_object"]) == pytest.approx((0.3 - 0.72) ** 2, rel=1e-5)
    assert float(loss["loss_no_object"]) == pytest.approx(0.5 * (0.8 ** 2 + 0.2 ** 2))


def test_the_loss_is_divided_by_the_batch_and_an_empty_image_has_only_no_object_terms():
    out, targets, settings = _case(0.65)
    one = yolo_loss(out, targets, (64, 64), settings, 2)
    two = yolo_loss(out.repeat(2, 1, 1, 1), targets * 2, (64, 64), settings, 2)
    for key in one:
        assert float(two[key]) == pytest.approx(float(one[key]))
    empty = yolo_loss(out, [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}], (64, 64),
                      settings, 2)
    assert float(empty["loss_box"]) == float(empty["loss_object"]) == float(empty["loss_class"]) == 0
    assert float(empty["loss_no_object"]) == pytest.approx(0.5 * (0.8 ** 2 + 0.3 ** 2 + 0.2 ** 2))


def test_the_grid_encodes_and_decodes_the_same_boxes():
    boxes = torch.tensor([[3.0, 5.0, 17.0, 30.0], [40.0, 33.0, 60.0, 63.0], [28.0, 0.0, 34.0, 10.0]])
    has, coords, gt, classes = yolo_targets([{"boxes": boxes, "labels": torch.tensor([1, 4, 10])}], 8, 10, (64, 64))
    assert int(has.sum()) == 3
    rows, cols = torch.where(has[0])
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(0, 3), (2, 1), (6, 6)]  # the centres' cells
    assert ((coords[has][:, :2] >= 0) & (coords[has][:, :2] < 1)).all()  # offsets inside the cell
    decoded = decode_grid(coords[0][:, :, None, :], (64, 64))[..., 0, :]
    torch.testing.assert_close(decoded[has[0]], gt[0][has[0]])
    assert sorted(classes[0][has[0]].argmax(-1).tolist()) == [0, 3, 9]
    # two centres in one cell: the larger box is kept
    two = torch.tensor([[1.0, 1.0, 7.0, 7.0], [0.0, 0.0, 8.0, 8.0]])
    has, _, gt, classes = yolo_targets([{"boxes": two, "labels": torch.tensor([2, 3])}], 8, 10, (64, 64))
    assert int(has.sum()) == 1 and gt[0, 0, 0].tolist() == [0.0, 0.0, 8.0, 8.0] and int(classes[0, 0, 0].argmax()) == 2


def test_test_time_scores_are_class_probability_times_confidence():
    out, _, settings = _case(0.75)
    model = YOLOv1(nn.Identity(), nn.Identity(), num_classes=3, settings=settings).eval()
    found = model.postprocess(out, (64, 64))[0]
    # box 0: 0.8 x (0.1, 0.7); box 1: 0.3 x (0.1, 0.7); cell (1, 1): 0.2 x (0, 0); cell (1, 0): 0
    assert found["scores"].tolist() == pytest.approx([0.56, 0.21, 0.08, 0.03])
    assert found["labels"].tolist() == [2, 2, 1, 1]  # box 1 overlaps box 0 at IoU 0.5: kept at NMS 0.5
    torch.testing.assert_close(found["boxes"][0], torch.tensor([8.0, 8.0, 40.0, 24.0]))
    strict = YOLOv1(nn.Identity(), nn.Identity(), num_classes=3,
                    settings=YOLOSettings(grid=2, boxes=2, nms_thresh=0.4)).postprocess(out, (64, 64))[0]
    assert strict["scores"].tolist() == pytest.approx([0.56, 0.08])  # NMS per class removed box 1


def test_the_mini_on_a_zoo_backbone():
    model = create_model("yolo_mini", backbone="resnet18").eval()  # its layer2, stride 8: an 8x8 map
    with torch.no_grad():
        grid = model.grid(torch.randn(2, 3, 64, 64))  # the zoo's networks take RGB (the trainer adapts grey)
    assert tuple(grid.shape) == (2, 8, 8, 20) and model.head.conv.in_channels == 128
    paper_head = create_model("yolo_mini", head="fc")
    assert [m.out_features for m in paper_head.head.modules() if isinstance(m, nn.Linear)] == [2048, 8 * 8 * 20]


# ---------------------------------------------------------------------------------------------
# Bad input


def test_bad_input_is_refused_with_a_clear_error():
    model = create_model("yolo_mini")
    with pytest.raises(ValueError, match="96x96; YOLO v1's fully connected layer fixes its input to 64x64"):
        model.eval()(torch.zeros(1, 1, 96, 96))
    model.train()
    with pytest.raises(ValueError, match="needs targets"):
        model(torch.zeros(1, 1, 64, 64))
    with pytest.raises(ValueError, match="label 0 is not an object class"):
        model(torch.zeros(1, 1, 64, 64), [{"boxes": torch.tensor([[1.0, 1.0, 9.0, 9.0]]), "labels": torch.tensor([0])}])
    with pytest.raises(ValueError, match="grid must be a positive"):
        YOLOSettings(grid=0)
