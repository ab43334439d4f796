"""Feature pyramids and Mask R-CNN: equality with torchvision (the FPN module, the FPN Faster R-CNN's
losses, Mask R-CNN's five losses, gradients and detections with masks, mask targets and pasting),
the parameter counts of torchvision's R50-FPN detectors, and bad input."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from convatlas.detection.faster_rcnn import MINI_ANCHORS
from convatlas.detection.fpn import FPN_ANCHOR_SIZES, FeaturePyramidNetwork
from convatlas.detection.mask_rcnn import MaskRCNN, mask_targets, paste_masks
from convatlas.registry import build_meta, create_model, model_card

MASK_AP50_FLOOR = 0.15  # 6 epochs of 800 scenes reach 0.33 here (box mAP@0.5 0.68); chance is 0

tv_detection = pytest.importorskip("torchvision.models.detection")
from torchvision.models.detection import roi_heads as tv_roi_heads  # noqa: E402
from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchors  # noqa: E402
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor as TVPredictor  # noqa: E402
from torchvision.models.detection.faster_rcnn import TwoMLPHead as TVHead  # noqa: E402
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor  # noqa: E402
from torchvision.ops import MultiScaleRoIAlign as TVMultiScaleRoIAlign  # noqa: E402
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork as TVFPN  # noqa: E402
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool  # noqa: E402


class _Backbone(nn.Module):
    """Our backbone as torchvision's detectors take it (an ``out_channels`` attribute)."""

    def __init__(self, inner: nn.Module, channels: int) -> None:
        super().__init__()
        self.inner = inner
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.inner(x)


def _load_by_position(target: nn.Module, source: nn.Module) -> None:
    """Copy ``source``'s state into ``target`` entry by entry (the two register their parts in the
    same order; only the names differ), checking every shape."""
    ours, theirs = list(source.state_dict().items()), list(target.state_dict().items())
    assert len(ours) == len(theirs)
    state = {}
    for (name, value), (their_name, their_value) in zip(ours, theirs):
        assert value.shape == their_value.shape, (name, their_name)
        state[their_name] = value
    target.load_state_dict(state, strict=True)


def _draw_like_torchvision(draws: int, seed: int) -> None:
    # torchvision's transform draws one number per image (its random choice of min_size) first
    torch.manual_seed(seed)
    for _ in range(draws):
        torch.empty(1).uniform_(0.0, 1.0)


def _losses(model: nn.Module, x: torch.Tensor, targets: list, *, draws: int, seed: int = 5) -> dict[str, torch.Tensor]:
    model.train()
    _draw_like_torchvision(draws, seed)
    return model(x, targets)


# ---------------------------------------------------------------------------------------------
# Parameter counts


@pytest.mark.parametrize("ours, theirs", [("faster_rcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn"),
                                          ("mask_rcnn_resnet50_fpn", "maskrcnn_resnet50_fpn")])
def test_r50_fpn_parameter_counts_equal_torchvision(ours, theirs):
    # untrained, torchvision builds these with trainable batch norm, as ours
    reference = getattr(tv_detection, theirs)(weights=None, weights_backbone=None, num_classes=91)
    expected = sum(p.numel() for p in reference.parameters())
    assert sum(p.numel() for p in build_meta(ours).parameters()) == expected
    assert model_card(ours).params.value == expected


# ---------------------------------------------------------------------------------------------
# The feature pyramid


def test_fpn_equals_torchvision():
    torch.manual_seed(0)
    ours = FeaturePyramidNetwork([8, 16, 32], 12)
    theirs = TVFPN([8, 16, 32], 12, extra_blocks=LastLevelMaxPool())
    _load_by_position(theirs, ours)
    # odd sizes: the top-down upsampling must reach each lateral's exact size
    maps = OrderedDict([("a", torch.randn(2, 8, 33, 29)), ("b", torch.randn(2, 16, 17, 15)),
                        ("c", torch.randn(2, 32, 9, 8))])
    got, expected = ours(maps), theirs(maps)
    assert list(got) == ["a", "b", "c", "pool"] == list(expected)
    for key in got:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-6)


def test_fpn_rejects_the_wrong_number_of_maps():
    with pytest.raises(ValueError, match="takes 2 maps, got 1"):
        FeaturePyramidNetwork([4, 8], 8)({"x": torch.zeros(1, 4, 8, 8)})


def _fpn_targets() -> list[dict[str, torch.Tensor]]:
    return [{"boxes": torch.tensor([[10.0, 12, 60, 90], [70, 20, 120, 70]]), "labels": torch.tensor([1, 3])},
            {"boxes": torch.tensor([[4.0, 40, 30, 64]]), "labels": torch.tensor([2])}]


def test_fpn_faster_rcnn_losses_equal_torchvision():
    torch.manual_seed(0)
    ours = create_model("faster_rcnn_backbone", backbone="resnet18", fpn=True, num_classes=4)
    p, head = ours.rpn.settings, ours.roi_heads
    theirs = tv_detection.FasterRCNN(
        _Backbone(ours.backbone, 256), num_classes=None, min_size=128, max_size=128, image_mean=[0.0] * 3,
        image_std=[1.0] * 3, rpn_anchor_generator=TVAnchors(FPN_ANCHOR_SIZES, ((0.5, 1.0, 2.0),) * 5),
        box_roi_pool=TVMultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2), box_head=TVHead(256 * 49, 1024),
        box_predictor=TVPredictor(1024, 4),
        rpn_pre_nms_top_n_train=p.pre_nms_top_n_train, rpn_post_nms_top_n_train=p.post_nms_top_n_train,
        rpn_pre_nms_top_n_test=p.pre_nms_top_n_test, rpn_post_nms_top_n_test=p.post_nms_top_n_test,
        box_batch_size_per_image=head.sampler.batch_size_per_image, box_nms_thresh=head.settings.nms_thresh)
    _load_by_position(theirs, ours)
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    a = _losses(ours, x, _fpn_targets(), draws=2)
    b = _losses(theirs, x, _fpn_targets(), draws=0)
    assert set(a) == set(b)
    for key in a:
        assert float(a[key].detach()) == pytest.approx(float(b[key].detach()), rel=1e-5, abs=1e-7), key


# ---------------------------------------------------------------------------------------------
# Mask targets and pasting


def test_mask_targets_equal_torchvision():
    gen = torch.Generator().manual_seed(2)
    masks = (torch.rand(3, 40, 50, generator=gen) > 0.5).to(torch.uint8)
    xy = torch.rand(9, 2, generator=gen) * torch.tensor([40.0, 30.0])
    boxes = torch.cat([xy, xy + 2 + torch.rand(9, 2, generator=gen) * 12], 1)
    matched = torch.randint(0, 3, (9,), generator=gen)
    expected = tv_roi_heads.project_masks_on_boxes(masks, boxes, matched, 28)
    torch.testing.assert_close(mask_targets(masks, boxes, matched, 28), expected, rtol=1e-5, atol=1e-6)


def test_paste_masks_equal_torchvision():
    gen = torch.Generator().manual_seed(3)
    probs = torch.rand(12, 28, 28, generator=gen)
    xy = torch.rand(12, 2, generator=gen) * 70 - 10  # some boxes reach past the image's edges
    boxes = torch.cat([xy, xy + 0.5 + torch.rand(12, 2, generator=gen) * 40], 1)
    expected = tv_roi_heads.paste_masks_in_image(probs[:, None], boxes, (48, 64), padding=1)[:, 0]
    got = paste_masks(probs, boxes, (48, 64))
    assert got.shape == (12, 48, 64)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Mask R-CNN against torchvision's


def _mask_targets_batch() -> list[dict[str, torch.Tensor]]:
    boxes = [torch.tensor([[5.0, 6, 20, 30], [30, 30, 50, 60]]), torch.tensor([[1.0, 2, 12, 22]]), torch.zeros(0, 4),
             torch.tensor([[40.0, 10, 60, 40], [8, 40, 22, 63]])]
    labels = [torch.tensor([3, 7]), torch.tensor([1]), torch.zeros(0, dtype=torch.int64), torch.tensor([10, 2])]
    out = []
    gen = torch.Generator().manual_seed(4)
    for b, lb in zip(boxes, labels):
        masks = torch.zeros(len(b), 64, 64, dtype=torch.uint8)
        for j, (x1, y1, x2, y2) in enumerate(b.long().tolist()):  # a random blob inside each box
            masks[j, y1:y2, x1:x2] = (torch.rand(y2 - y1, x2 - x1, generator=gen) > 0.3).to(torch.uint8)
        out.append({"boxes": b, "labels": lb, "masks": masks})
    return out


def _torchvision_mask_twin(ours: MaskRCNN) -> nn.Module:
    p, head = ours.rpn.settings, ours.roi_heads
    theirs = tv_detection.MaskRCNN(
        _Backbone(ours.backbone, 64), num_classes=None, min_size=64, max_size=64, image_mean=[0.0], image_std=[1.0],
        rpn_anchor_generator=TVAnchors((MINI_ANCHORS["anchor_sizes"],), (MINI_ANCHORS["aspect_ratios"],)),
        box_roi_pool=TVMultiScaleRoIAlign(["conv5"], 7, 2), box_head=TVHead(64 * 49, 256),
        box_predictor=TVPredictor(256, 11), mask_roi_pool=TVMultiScaleRoIAlign(["conv5"], 7, 2),
        mask_head=MaskRCNNHeads(64, [64, 64], 1), mask_predictor=MaskRCNNPredictor(64, 64, 11),
        rpn_pre_nms_top_n_train=p.pre_nms_top_n_train, rpn_post_nms_top_n_train=p.post_nms_top_n_train,
        rpn_pre_nms_top_n_test=p.pre_nms_top_n_test, rpn_post_nms_top_n_test=p.post_nms_top_n_test,
        rpn_nms_thresh=p.nms_thresh, rpn_batch_size_per_image=ours.rpn.sampler.batch_size_per_image,
        box_batch_size_per_image=head.sampler.batch_size_per_image, box_score_thresh=head.settings.score_thresh,
        box_nms_thresh=head.settings.nms_thresh, box_detections_per_img=head.settings.detections_per_img)
    _load_by_position(theirs, ours)
    return theirs


@pytest.fixture(scope="module")
def mask_twins() -> tuple[MaskRCNN, nn.Module]:
    torch.manual_seed(0)
    ours = create_model("mask_rcnn_mini")
    return ours, _torchvision_mask_twin(ours)


@pytest.mark.parametrize("images", [[0], [2], [0, 1, 2, 3]])
def test_mask_rcnn_losses_equal_torchvision(mask_twins, images):
    ours, theirs = mask_twins
    x = torch.randn(4, 1, 64, 64, generator=torch.Generator().manual_seed(1))[images]
    targets = [_mask_targets_batch()[i] for i in images]
    a = {k: float(v.detach()) for k, v in _losses(ours, x, targets, draws=len(images)).items()}
    b = {k: float(v.detach()) for k, v in _losses(theirs, x, targets, draws=0).items()}
    assert set(a) == set(b) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask"}
    for key in a:
        assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), key


def test_mask_rcnn_gradients_equal_torchvision(mask_twins):
    ours, theirs = mask_twins
    x = torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(2))
    grads = []
    for model, draws in ((ours, 2), (theirs, 0)):
        model.zero_grad()
        sum(_losses(model, x, _mask_targets_batch()[:2], draws=draws, seed=7).values()).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    assert len(grads[0]) == len(grads[1])
    for g, h in zip(*grads):
        torch.testing.assert_close(g, h, rtol=1e-4, atol=1e-6)


def test_mask_rcnn_detections_and_masks_equal_torchvision(mask_twins):
    ours, _ = mask_twins
    opt = torch.optim.SGD(ours.parameters(), lr=0.02, momentum=0.9)
    x = torch.randn(4, 1, 64, 64, generator=torch.Generator().manual_seed(3))
    ours.train()
    for _ in range(5):  # a few steps, so that the detections are not the initial ones
        opt.zero_grad()
        sum(ours(x, _mask_targets_batch()).values()).backward()
        opt.step()
    theirs = _torchvision_mask_twin(ours)
    ours.eval(), theirs.eval()
    with torch.no_grad():
        found, expected = ours(x), theirs(x)
    assert sum(len(d["boxes"]) for d in found) > 0
    for a, b in zip(found, expected):
        assert torch.equal(a["labels"], b["labels"])
        torch.testing.assert_close(a["boxes"], b["boxes"], rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(a["mask_scores"], b["masks"][:, 0], rtol=1e-4, atol=1e-5)
        assert a["masks"].dtype == torch.bool
        assert torch.equal(a["masks"], a["mask_scores"] > 0.5)


def test_mask_rcnn_needs_masks_in_training():
    model = create_model("mask_rcnn_mini").train()
    x = torch.zeros(1, 1, 64, 64)
    target = {"boxes": torch.tensor([[5.0, 6, 20, 30]]), "labels": torch.tensor([3])}
    with pytest.raises(ValueError, match="target 0 has no 'masks'"):
        model(x, [target])
    with pytest.raises(ValueError, match=r"masks must be \(1, 64, 64\)"):
        model(x, [{**target, "masks": torch.zeros(2, 64, 64)}])


# ---------------------------------------------------------------------------------------------
# Through the front door


def test_training_targets_carry_the_warped_masks_of_the_kept_boxes():
    """The task's batch: each kept box comes with its own instance's mask, moved by the same warp
    (the box is the mask's tight box within the warp's interpolation)."""
    from convatlas.data.geometry import SegmentationAugment
    from convatlas.engine import Dist
    from convatlas.engine.device import Runtime
    from convatlas.tasks.detection import DetectionTask, prepare_detection_data

    data = prepare_detection_data("mask_rcnn_mini", "digit-scenes", options={"num_train": 32, "num_test": 8})
    task = DetectionTask(data, SegmentationAugment(scale=(0.8, 1.2), translate=0.1), masks=True)
    task.setup(Runtime(torch.device("cpu"), False, False), Dist(), seed=0)
    _, targets = task.train_batch(torch.arange(16))
    checked = 0
    for t in targets:
        assert t["masks"].shape == (len(t["boxes"]), 64, 64) and t["masks"].dtype == torch.bool
        for box, mask in zip(t["boxes"], t["masks"]):
            ys, xs = torch.where(mask)
            tight = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
            assert (box - tight).abs().max() <= 1.5, (box, tight)
            checked += 1
    assert checked >= 16


def test_box_detector_data_without_masks_is_refused_for_mask_rcnn():
    from convatlas.data.boxes import BoxSet
    from convatlas.tasks.detection import image_targets

    boxes_only = BoxSet(images=torch.zeros(1, 1, 8, 8, dtype=torch.uint8), boxes=torch.tensor([[1.0, 1, 5, 5]]),
                        labels=torch.tensor([1]), offsets=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="need instance masks"):
        image_targets(boxes_only, [0], masks=True)


@pytest.mark.slow
def test_mask_rcnn_mini_learns_masks_through_the_front_door(tmp_path):
    """A short run on a share of the digit scenes: box and mask AP well above chance (a network
    that has learned nothing scores 0), the reloaded run scores what the trainer logged, and the
    predicted masks are drawn."""
    import json

    import convatlas

    convatlas.train("mask_rcnn_mini", epochs=6, data_options={"num_train": 800, "num_test": 150},
                    out=tmp_path / "run", quiet=True, threads=torch.get_num_threads())
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["test_map50"] > 0.3, summary["test_map50"]
    assert summary["test_mask_map50"] > MASK_AP50_FLOOR, summary["test_mask_map50"]
    assert 0 < summary["test_mask_map"] < summary["test_mask_map50"]
    report = convatlas.evaluate(tmp_path / "run", which="last")
    assert report.mask_map == pytest.approx(summary["test_mask_map"], abs=1e-6)
    assert report.map == pytest.approx(summary["test_map"], abs=1e-6)
    from convatlas.data.boxes import load_detection

    scenes = load_detection("digit-scenes", num_train=8, num_test=8).test
    found = convatlas.train.predict(tmp_path / "run", scenes.images[:1], out=tmp_path / "masks.png",
                                    score_threshold=0.3)
    assert found[0].figure.stat().st_size > 1000
    assert found[0].masks is not None and found[0].masks.shape[0] == len(found[0].boxes) >= 1
    assert all(d["mask_pixels"] > 0 for d in found[0].to_dict()["detections"])
