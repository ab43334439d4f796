"""Faster R-CNN: the paper's counts, equality with torchvision's FasterRCNN (losses in training,
detections at test, with the same weights, anchors, sampling and settings), the paper's anchor
count, bad input, and a detector that learns through the front door."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import convatlas
from convatlas.detection.faster_rcnn import MINI_ANCHORS, FasterRCNN, check_targets
from convatlas.detection.roi import RoIPool
from convatlas.registry import InputTooSmallError, build_meta, create_model, model_card

tv_detection = pytest.importorskip("torchvision.models.detection")
from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchors  # noqa: E402
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor as TVPredictor  # noqa: E402
from torchvision.models.detection.faster_rcnn import TwoMLPHead as TVHead  # noqa: E402
from torchvision.ops import MultiScaleRoIAlign as TVMultiScaleRoIAlign  # noqa: E402
from torchvision.ops import roi_pool as tv_roi_pool  # noqa: E402


def _targets() -> list[dict[str, torch.Tensor]]:
    return [
        {"boxes": torch.tensor([[5.0, 6, 20, 30], [30, 30, 50, 60]]), "labels": torch.tensor([3, 7])},
        {"boxes": torch.tensor([[1.0, 2, 12, 22]]), "labels": torch.tensor([1])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
        {"boxes": torch.tensor([[40.0, 10, 60, 40], [8, 40, 22, 63]]), "labels": torch.tensor([10, 2])},
    ]


class _Backbone(nn.Module):
    """Our backbone as torchvision's detector takes it (an ``out_channels`` attribute)."""

    def __init__(self, extractor: nn.Module, channels: int) -> None:
        super().__init__()
        self.fe = extractor
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.fe(x)


def _torchvision_twin(ours: FasterRCNN) -> nn.Module:
    """torchvision's FasterRCNN with our mini's backbone, anchors, pooling, counts and weights;
    no resizing (64 -> 64) and no normalisation (mean 0, std 1)."""
    p, head = ours.rpn.settings, ours.roi_heads
    tv = tv_detection.FasterRCNN(
        _Backbone(ours.backbone, 64), num_classes=None, min_size=64, max_size=64, image_mean=[0.0], image_std=[1.0],
        rpn_anchor_generator=TVAnchors((MINI_ANCHORS["anchor_sizes"],), (MINI_ANCHORS["aspect_ratios"],)),
        box_roi_pool=TVMultiScaleRoIAlign(["conv5"], 7, 2), box_head=TVHead(64 * 49, 256),
        box_predictor=TVPredictor(256, 11),
        rpn_pre_nms_top_n_train=p.pre_nms_top_n_train, rpn_post_nms_top_n_train=p.post_nms_top_n_train,
        rpn_pre_nms_top_n_test=p.pre_nms_top_n_test, rpn_post_nms_top_n_test=p.post_nms_top_n_test,
        rpn_nms_thresh=p.nms_thresh, rpn_batch_size_per_image=ours.rpn.sampler.batch_size_per_image,
        box_batch_size_per_image=head.sampler.batch_size_per_image, box_score_thresh=head.settings.score_thresh,
        box_nms_thresh=head.settings.nms_thresh, box_detections_per_img=head.settings.detections_per_img)
    state = {k.replace("backbone.", "backbone.fe.", 1).replace("rpn.head.conv.", "rpn.head.conv.0.0."): v
             for k, v in ours.state_dict().items()}
    tv.load_state_dict(state, strict=True)
    return tv


@pytest.fixture(scope="module")
def twins() -> tuple[FasterRCNN, nn.Module]:
    torch.manual_seed(0)
    ours = create_model("faster_rcnn_mini")
    return ours, _torchvision_twin(ours)


def _train_losses(model: nn.Module, x: torch.Tensor, targets: list, *, draws: int) -> dict[str, float]:
    model.train()
    torch.manual_seed(5)
    # torchvision's transform draws one number per image (its random choice of min_size) before
    # anything else: draw as many for ours, so both samplers see the same random stream
    for _ in range(draws):
        torch.empty(1).uniform_(0.0, 1.0)
    return {k: float(v.detach()) for k, v in model(x, targets).items()}


@pytest.mark.parametrize("images", [[0], [1], [2], [3], [0, 1, 2, 3]])
def test_training_losses_equal_torchvision(twins, images):
    ours, tv = twins
    x = torch.randn(4, 1, 64, 64, generator=torch.Generator().manual_seed(1))[images]
    targets = [_targets()[i] for i in images]
    a = _train_losses(ours, x, targets, draws=len(images))
    b = _train_losses(tv, x, targets, draws=0)
    assert set(a) == set(b) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}
    for key in a:
        assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), key


def test_training_gradients_equal_torchvision(twins):
    ours, tv = twins
    x = torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(2))
    targets = _targets()[:2]
    grads = []
    for model, draws in ((ours, 2), (tv, 0)):
        model.zero_grad()
        model.train()
        torch.manual_seed(7)
        for _ in range(draws):
            torch.empty(1).uniform_(0.0, 1.0)
        sum(model(x, targets).values()).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    ours_grads, tv_grads = grads
    renamed = {k.replace("backbone.", "backbone.fe.", 1).replace("rpn.head.conv.", "rpn.head.conv.0.0."): v
               for k, v in ours_grads.items()}
    assert set(renamed) == set(tv_grads)
    for name, g in renamed.items():
        torch.testing.assert_close(g, tv_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_detections_equal_torchvision(twins):
    ours, tv = twins
    # trained a few steps first, so that the detections are not all the initial ones
    opt = torch.optim.SGD(ours.parameters(), lr=0.02, momentum=0.9)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(4, 1, 64, 64, generator=gen)
    ours.train()
    for _ in range(5):
        opt.zero_grad()
        sum(ours(x, _targets()).values()).backward()
        opt.step()
    tv = _torchvision_twin(ours)
    ours.eval(), tv.eval()
    with torch.no_grad():
        found, expected = ours(x), tv(x)
    assert sum(len(d["boxes"]) for d in found) > 0
    for a, b in zip(found, expected):
        assert torch.equal(a["labels"], b["labels"])
        torch.testing.assert_close(a["boxes"], b["boxes"], rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(a["scores"], b["scores"], rtol=1e-5, atol=1e-6)


def test_paper_parameter_counts():
    model = build_meta("faster_rcnn_vgg16")  # 137M parameters: counted without memory
    count = sum(p.numel() for p in model.parameters())
    assert count == 137_078_239 == model_card("faster_rcnn_vgg16").params.value
    # torchvision's objectness (k sigmoid logits instead of 2k softmax scores): 9 x 513 fewer
    sigmoid = build_meta("faster_rcnn_vgg16", objectness="sigmoid")
    assert sum(p.numel() for p in sigmoid.parameters()) == count - 9 * 513
    mini = create_model("faster_rcnn_mini")
    assert sum(p.numel() for p in mini.parameters()) == model_card("faster_rcnn_mini").params.value


def test_vgg16_anchor_count_is_the_papers():
    """"For a typical 1000 x 600 image, there will be roughly 20000 (~60 x 40 x 9) anchors in
    total" (Ren et al. 2015, Sec. 3.1.3): conv5_3 of VGG-16 at stride 16."""
    model = build_meta("faster_rcnn_vgg16")
    with torch.no_grad():
        maps = model.backbone(torch.empty(1, 3, 600, 1000, device="meta"))
    fmap = list(maps.values())[0]
    anchors = model.rpn.anchor_generator([torch.empty(fmap.shape)], (600, 1000))[0]
    assert tuple(fmap.shape[-2:]) == (37, 62)
    assert anchors.shape[0] == 37 * 62 * 9 == 20_646


def test_softmax_objectness_is_a_sigmoid_of_the_difference():
    """The paper's 2k softmax scores and torchvision's k logits are one model: with the
    background scores' weights zero and the object scores' equal to the logits' weights, both
    heads give the same logits and the same losses."""
    torch.manual_seed(0)
    soft = create_model("faster_rcnn_mini", objectness="softmax")
    sig = create_model("faster_rcnn_mini", objectness="sigmoid")
    state = soft.state_dict()
    k = soft.rpn.head.num_anchors
    for name, value in sig.state_dict().items():
        if name.startswith("rpn.head.cls_logits"):
            state[name] = torch.cat([torch.zeros_like(value), value])
        else:
            state[name] = value
    soft.load_state_dict(state)
    assert soft.rpn.head.cls_logits.out_channels == 2 * k
    x = torch.randn(2, 1, 64, 64)
    a = _train_losses(soft, x, _targets()[:2], draws=0)
    b = _train_losses(sig, x, _targets()[:2], draws=0)
    assert a == pytest.approx(b, rel=1e-6)


def test_roi_pool_module_equals_torchvision():
    fmap = torch.randn(2, 8, 16, 16)
    boxes = [torch.tensor([[3.0, 5, 40, 33], [10, 10, 60, 62]]), torch.tensor([[0.0, 0, 64, 64]])]
    ours = RoIPool(["x"], 7)({"x": fmap}, boxes, [(64, 64), (64, 64)])
    expected = tv_roi_pool(fmap, boxes, 7, spatial_scale=0.25)
    torch.testing.assert_close(ours, expected)


def test_bad_targets_and_inputs_are_named():
    model = create_model("faster_rcnn_mini").train()
    x = torch.randn(1, 1, 64, 64)
    with pytest.raises(ValueError, match="needs targets"):
        model(x)
    with pytest.raises(ValueError, match=r"box 0 \[5.0, 6.0, 70.0, 30.0\] lies outside the 64x64 image"):
        model(x, [{"boxes": torch.tensor([[5.0, 6, 70, 30]]), "labels": torch.tensor([1])}])
    with pytest.raises(ValueError, match="x2 <= x1"):
        model(x, [{"boxes": torch.tensor([[20.0, 6, 10, 30]]), "labels": torch.tensor([1])}])
    with pytest.raises(ValueError, match="label 11 is not an object class"):
        model(x, [{"boxes": torch.tensor([[5.0, 6, 20, 30]]), "labels": torch.tensor([11])}])
    with pytest.raises(ValueError, match="label 0 is not an object class"):
        check_targets([{"boxes": torch.tensor([[5.0, 6, 20, 30]]), "labels": torch.tensor([0])}], 1, (64, 64), 11)
    with pytest.raises(ValueError, match="one dict per image"):
        model(x, [])
    with pytest.raises(InputTooSmallError, match="at least 16x16"):
        model.eval()(torch.randn(1, 1, 12, 12))


@pytest.mark.slow
def test_faster_rcnn_mini_learns_through_the_front_door(tmp_path):
    """A short run on a small share of the digit scenes: well above chance (a detector that has
    learned nothing finds no digit: mAP 0), and the run files carry the detection fields."""
    result = convatlas.train("faster_rcnn_mini", epochs=6, data_options={"num_train": 800, "num_test": 150},
                             out=tmp_path / "run", quiet=True, threads=torch.get_num_threads())
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["task"] == "detection"
    assert summary["test_map50"] > 0.3, summary["test_map50"]
    assert 0 < summary["test_map"] < summary["test_map50"]
    assert set(summary["test_ap"]) == set(str(d) for d in range(10))
    assert result.model.training is False
    # the run, loaded again, scores what the trainer logged for its last epoch
    report = convatlas.evaluate(tmp_path / "run", which="last")
    assert report.map == pytest.approx(summary["test_map"], abs=1e-6)
    assert report.map50 == pytest.approx(summary["test_map50"], abs=1e-6)
    assert report.ap == pytest.approx(summary["test_ap"], abs=1e-6)
    assert 0 < report.map_voc07 <= 1 and 0 < report.map_voc <= 1
    # predictions on image files, drawn; the CLI prints them and writes eval.json with the curves
    from PIL import Image

    from convatlas.cli import main
    from convatlas.data.boxes import load_detection

    scenes = load_detection("digit-scenes", num_train=8, num_test=8).test
    files = []
    for i in range(2):
        files.append(tmp_path / f"scene{i}.png")
        Image.fromarray(scenes.images[i, 0].numpy()).save(files[-1])
    found = convatlas.train.predict(tmp_path / "run", files, out=tmp_path / "boxes.png", score_threshold=0.3)
    assert [p.figure.name for p in found] == ["boxes-0.png", "boxes-1.png"]
    assert all(p.figure.stat().st_size > 1000 for p in found)
    assert sum(len(p.boxes) for p in found) >= 1
    assert all(label in [str(d) for d in range(10)] for p in found for label in p.labels)
    assert main(["eval", str(tmp_path / "run"), "--json"]) == 0
    written = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert written["map"] == pytest.approx(convatlas.evaluate(tmp_path / "run").map, abs=1e-6)
    assert (tmp_path / "run" / "precision_recall.png").stat().st_size > 1000


def test_augmented_boxes_follow_their_digits():
    """The task's training batch moves each box with its image: after a random zoom and shift,
    every kept box is the tight box of its digit's pixels, warped by the same map (nearest
    neighbour, so within a pixel and a half), and the labels stay with their boxes."""
    from convatlas.data.boxes import load_detection
    from convatlas.data.geometry import SegmentationAugment
    from convatlas.engine import Dist
    from convatlas.engine.device import Runtime
    from convatlas.tasks.detection import MIN_BOX_SIZE, DetectionData, DetectionTask

    splits = load_detection("digit-scenes", num_train=48, num_test=8)
    augment = SegmentationAugment(scale=(0.7, 1.3), translate=0.15)
    task = DetectionTask(DetectionData(splits, splits.mean, splits.std, 1, []), augment)
    task.setup(Runtime(torch.device("cpu"), False, False), Dist(), seed=3)
    index = torch.tensor([5, 0, 17, 33, 2, 40])
    x, targets = task.train_batch(index)
    assert x.shape == (6, 1, 64, 64) and len(targets) == 6
    # the same maps again (same seed), now moving the instance maps too
    task.setup(Runtime(torch.device("cpu"), False, False), Dist(), seed=3)
    rows, batch_index = task._instances(index)
    warped = task.pipeline.augment_batch(task.images[index], masks=splits.train.instances[index],
                                         boxes=task.boxes[rows], box_index=batch_index, box_min_size=MIN_BOX_SIZE)
    checked = 0
    kept_rows = rows[warped.keep]
    for b, target in enumerate(targets):
        mine = kept_rows[warped.box_index == b]
        assert torch.equal(target["labels"], splits.train.labels[mine])
        for box, row in zip(target["boxes"], mine):
            instance = int(row - splits.train.offsets[index[b]]) + 1
            ys, xs = torch.where(warped.masks[b] == instance)
            if len(xs) == 0:  # pushed out of the picture but for a sliver of its box
                continue
            tight = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
            torch.testing.assert_close(box, tight, atol=1.5, rtol=0)
            checked += 1
    assert checked >= 10
    assert not torch.equal(x, task.pipeline.eval_input(task.images[index]))  # something moved


def test_training_refuses_bad_settings_before_writing(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(InputTooSmallError, match="needs at least 16x16"):
        convatlas.train("faster_rcnn_mini", image_size=12, data_options={"num_train": 16, "num_test": 8}, out=out)
    with pytest.raises(ValueError, match="num_classes=5 differs from the 11 classes"):
        convatlas.train("faster_rcnn_mini", num_classes=5, data_options={"num_train": 16, "num_test": 8}, out=out)
    with pytest.raises(ValueError, match="unknown detection dataset 'digits'"):
        convatlas.train("faster_rcnn_mini", data="digits", out=out)
    assert not out.exists()
