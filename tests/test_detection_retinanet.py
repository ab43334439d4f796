"""RetinaNet and the focal loss: the loss equal to torchvision's ``sigmoid_focal_loss`` and the paper's
claims about it, the prior's bias, the paper's network counted (equal to torchvision's built the same
way), the mini's losses, gradients and detections equal to torchvision's ``RetinaNet`` with the same
parts, and bad input."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from convatlas.detection.retinanet import (RetinaNet, RetinaSettings, build_retinanet, prior_bias,
                                           retina_anchor_sizes, sigmoid_focal_loss)
from convatlas.registry import InputTooSmallError, create_model

tv_detection = pytest.importorskip("torchvision.models.detection")
from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchors  # noqa: E402
from torchvision.ops import sigmoid_focal_loss as tv_focal  # noqa: E402
from torchvision.ops.feature_pyramid_network import LastLevelP6P7 as TVP6P7  # noqa: E402


# ---------------------------------------------------------------------------------------------
# The focal loss


@pytest.mark.parametrize("alpha, gamma", [(0.25, 2.0), (0.5, 0.0), (-1.0, 2.0), (0.75, 1.5), (0.25, 5.0)])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_focal_loss_equals_torchvision(alpha, gamma, reduction):
    g = torch.Generator().manual_seed(int(10 * gamma + 100 * alpha) % 97)
    logits = 6 * torch.randn(300, 7, generator=g, dtype=torch.float64)  # confident ones too
    targets = (torch.rand(300, 7, generator=g) < 0.2).to(torch.float64)
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets, alpha, gamma, reduction),
                               tv_focal(logits, targets, alpha, gamma, reduction), rtol=1e-12, atol=1e-15)


def test_focal_loss_gradients_equal_torchvision():
    logits = torch.randn(50, 5, generator=torch.Generator().manual_seed(3), requires_grad=True)
    targets = (torch.rand(50, 5, generator=torch.Generator().manual_seed(4)) < 0.3).float()
    (ours,) = torch.autograd.grad(sigmoid_focal_loss(logits, targets, reduction="sum"), logits)
    (theirs,) = torch.autograd.grad(tv_focal(logits, targets, reduction="sum"), logits)
    torch.testing.assert_close(ours, theirs)


def test_the_papers_claims_about_the_focal_loss():
    # Sec. 3.2: with gamma = 2, an example at p_t = 0.9 has 100x lower loss than under CE, at ~0.968 1000x
    def ratio(p_t: float) -> float:
        logit = torch.tensor([math.log(p_t / (1 - p_t))], dtype=torch.float64)  # a positive at p = p_t
        one = torch.ones(1, dtype=torch.float64)
        return float(sigmoid_focal_loss(logit, one, alpha=-1, gamma=0) / sigmoid_focal_loss(logit, one, alpha=-1))

    assert ratio(0.9) == pytest.approx(100)
    assert ratio(0.968) == pytest.approx(1000, rel=0.03)
    # gamma = 0 and no alpha is the cross-entropy itself
    x, t = torch.tensor([0.3, -2.0]), torch.tensor([1.0, 0.0])
    torch.testing.assert_close(sigmoid_focal_loss(x, t, alpha=-1, gamma=0),
                               nn.functional.binary_cross_entropy_with_logits(x, t, reduction="none"))


def test_focal_loss_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"logits \(3,\) and targets \(4,\)"):
        sigmoid_focal_loss(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="alpha .* in \\[0, 1\\]"):
        sigmoid_focal_loss(torch.zeros(3), torch.zeros(3), alpha=1.5)
    with pytest.raises(ValueError, match="reduction"):
        sigmoid_focal_loss(torch.zeros(3), torch.zeros(3), reduction="avg")


def test_the_prior_sets_the_first_scores():
    assert prior_bias(0.01) == pytest.approx(-4.59512, abs=1e-5)  # the reference notes' value
    model = create_model("retinanet_mini").eval()
    logits, _ = model.head(list(model.features(torch.randn(2, 1, 64, 64)).values()))
    # the classification layer's weights are N(0, 0.01): every anchor starts near the prior
    assert torch.sigmoid(logits).mean().item() == pytest.approx(0.01, rel=0.05)
    with pytest.raises(ValueError, match="probability in \\(0, 1\\)"):
        prior_bias(1.0)


# ---------------------------------------------------------------------------------------------
# The paper's network


def test_anchor_sizes_are_the_papers_and_torchvisions():
    sizes = retina_anchor_sizes()
    assert sizes[0] == pytest.approx((32, 32 * 2 ** (1 / 3), 32 * 2 ** (2 / 3)))
    assert len(sizes) == 5 and sizes[-1][0] == 512
    # torchvision's retinanet_resnet50_fpn writes them as integers
    tv = tuple((x, int(x * 2 ** (1.0 / 3)), int(x * 2 ** (2.0 / 3))) for x in [32, 64, 128, 256, 512])
    assert retina_anchor_sizes(truncate=True) == tv


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_r50_fpn_parameter_count_equals_torchvision_built_the_same_way():
    from torchvision.models import resnet50
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor

    ours = create_model("retinanet_resnet50_fpn")
    assert _count(ours) == 38_176_142  # the derivation is on the card
    # the paper's P6 from C5 (torchvision's v2 pyramid) with plain heads; 90 logits: K of 91 ids
    body = _resnet_fpn_extractor(resnet50(), 5, returned_layers=[2, 3, 4], extra_blocks=TVP6P7(2048, 256))
    assert _count(tv_detection.RetinaNet(body, num_classes=90)) == 38_176_142
    # torchvision's own retinanet_resnet50_fpn takes P6 from P5 and keeps a logit for the background
    # id: ours with P6 from P5 and one class more is it, parameter for parameter
    theirs = tv_detection.retinanet_resnet50_fpn(weights=None, weights_backbone=None)
    assert _count(create_model("retinanet_resnet50_fpn", num_classes=92, p6_from="p5")) == _count(theirs) == 34_068_119


def test_r50_fpn_scores_nine_anchors_per_position_on_p3_to_p7():
    model = create_model("retinanet_resnet50_fpn", num_classes=3).eval()
    x = torch.randn(1, 3, 128, 160)
    with torch.no_grad():
        maps = model.features(x)
        logits, deltas = model.head(list(maps.values()))
    assert list(maps) == ["0", "1", "2", "p6", "p7"]
    assert [tuple(m.shape[-2:]) for m in maps.values()] == [(16, 20), (8, 10), (4, 5), (2, 3), (1, 2)]
    anchors = 9 * (16 * 20 + 8 * 10 + 4 * 5 + 2 * 3 + 1 * 2)
    assert logits.shape == (1, anchors, 2) and deltas.shape == (1, anchors, 4)
    assert len(model.anchors(list(maps.values()), (128, 160))[0]) == anchors
    assert all(m.shape[1] == 256 for m in maps.values())


# ---------------------------------------------------------------------------------------------
# The mini against torchvision's RetinaNet with the same parts


class _Backbone(nn.Module):
    def __init__(self, inner: nn.Module, channels: int) -> None:
        super().__init__()
        self.inner = inner
        self.out_channels = channels

    def forward(self, x: torch.Tensor):
        return self.inner(x)


def _twin(ours: RetinaNet) -> nn.Module:
    """torchvision's RetinaNet on our backbone (shared), anchors and head weights; its extra logit
    (class id 0, the background) silenced: weight 0, bias -1e4, so its sigmoid and its focal loss are 0."""
    s, a, k = ours.settings, ours.head.num_anchors, ours.head.num_object_classes
    assert s.box_loss == "l1" or s.beta == 1.0, "torchvision's smooth L1 has beta 1"
    theirs = tv_detection.RetinaNet(
        _Backbone(ours.backbone, 64), num_classes=k + 1, min_size=64, max_size=64, image_mean=[0.0],
        image_std=[1.0], anchor_generator=TVAnchors(ours.anchors.sizes, ours.anchors.aspect_ratios),
        score_thresh=s.score_thresh, nms_thresh=s.nms_thresh, detections_per_img=s.detections_per_img,
        fg_iou_thresh=s.fg_iou_thresh, bg_iou_thresh=s.bg_iou_thresh, topk_candidates=s.topk_candidates)
    cls, box = theirs.head.classification_head, theirs.head.regression_head
    cls.conv, box.conv = copy.deepcopy(ours.head.cls_subnet), copy.deepcopy(ours.head.box_subnet)
    box._loss_type = s.box_loss  # "smooth_l1" (beta 1 there) or "l1"
    with torch.no_grad():
        w = cls.cls_logits.weight.view(a, k + 1, *cls.cls_logits.weight.shape[1:])
        b = cls.cls_logits.bias.view(a, k + 1)
        w[:, 1:] = ours.head.cls_logits.weight.view(a, k, *w.shape[2:])
        b[:, 1:] = ours.head.cls_logits.bias.view(a, k)
        w[:, 0], b[:, 0] = 0.0, -1e4
        box.bbox_reg.weight.copy_(ours.head.bbox_pred.weight)
        box.bbox_reg.bias.copy_(ours.head.bbox_pred.bias)
    return theirs


def _targets() -> list[dict[str, torch.Tensor]]:
    return [{"boxes": torch.tensor([[4.0, 6.0, 20.0, 30.0], [30.0, 28.0, 52.0, 60.0]]), "labels": torch.tensor([3, 10])},
            {"boxes": torch.tensor([[10.0, 10.0, 19.0, 26.0]]), "labels": torch.tensor([1])},
            {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},  # nothing in it
            {"boxes": torch.tensor([[0.0, 0.0, 64.0, 64.0], [40.0, 2.0, 48.0, 14.0], [41.0, 3.0, 49.0, 16.0]]),
             "labels": torch.tensor([5, 7, 7])}]


@pytest.fixture(scope="module")
def twins() -> tuple[RetinaNet, nn.Module]:
    torch.manual_seed(0)
    ours = create_model("retinanet_mini")
    ours.settings = RetinaSettings(beta=1.0)  # smooth L1 as torchvision's (ours defaults to 1/9)
    return ours, _twin(ours)


@pytest.mark.parametrize("images", [[0], [2], [0, 1, 2, 3]])
@pytest.mark.parametrize("box_loss, beta", [("smooth_l1", 1.0), ("l1", 1.0)])
def test_mini_losses_equal_torchvision(twins, images, box_loss, beta):
    ours, _ = twins
    ours = copy.deepcopy(ours)
    ours.settings = RetinaSettings(box_loss=box_loss, beta=beta)  # torchvision's smooth L1 has beta 1
    theirs = _twin(ours)
    ours.train(), theirs.train()
    x = torch.randn(4, 1, 64, 64, generator=torch.Generator().manual_seed(1))[images]
    targets = [_targets()[i] for i in images]
    a, b = ours(x, targets), theirs(x, targets)
    a, b = {k: v.detach() for k, v in a.items()}, {k: v.detach() for k, v in b.items()}
    assert set(a) == {"loss_classifier", "loss_box_reg"}
    assert float(a["loss_classifier"]) == pytest.approx(float(b["classification"]), rel=1e-5)
    assert float(a["loss_box_reg"]) == pytest.approx(float(b["bbox_regression"]), rel=1e-5, abs=1e-8)
    if images == [2]:  # no objects: no box loss, and the focal loss of the background alone
        assert float(a["loss_box_reg"]) == 0 and float(a["loss_classifier"]) > 0


def test_mini_gradients_equal_torchvision(twins):
    ours, theirs = twins
    x = torch.randn(4, 1, 64, 64, generator=torch.Generator().manual_seed(2))
    ours.train(), theirs.train()
    ours.zero_grad(), theirs.zero_grad()
    sum(ours(x, _targets()).values()).backward()
    ours_grads = {n: p.grad.clone() for n, p in ours.named_parameters()}
    ours.zero_grad()  # the backbone is shared
    sum(theirs(x, _targets()).values()).backward()
    head = theirs.head
    torch.testing.assert_close(ours_grads["head.bbox_pred.weight"], head.regression_head.bbox_reg.weight.grad)
    a, k = ours.head.num_anchors, ours.head.num_object_classes
    their_cls = head.classification_head.cls_logits.weight.grad.view(a, k + 1, -1, 3, 3)[:, 1:].reshape(a * k, -1, 3, 3)
    torch.testing.assert_close(ours_grads["head.cls_logits.weight"], their_cls, rtol=1e-4, atol=1e-7)
    for name, p in theirs.backbone.inner.named_parameters():
        torch.testing.assert_close(ours_grads[f"backbone.{name}"], p.grad, rtol=1e-4, atol=1e-7)


def test_mini_detections_equal_torchvision(twins):
    ours = copy.deepcopy(twins[0])
    # weights moved off their initial values (scores around 0.5, boxes off their anchors), so that
    # thresholding, the top 1,000 per level, decoding, NMS and the cap all have work to do
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in ours.head.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
        ours.head.cls_logits.bias.zero_()
    x = torch.randn(4, 1, 64, 64, generator=torch.Generator().manual_seed(3))
    theirs = _twin(ours)
    ours.eval(), theirs.eval()
    with torch.no_grad():
        found, expected = ours(x), theirs(x)
    assert [len(d["boxes"]) for d in found] == [100] * 4  # the cap: 100 per image
    for a, b in zip(found, expected):
        assert torch.equal(a["labels"], b["labels"])
        torch.testing.assert_close(a["scores"], b["scores"])
        torch.testing.assert_close(a["boxes"], b["boxes"], rtol=1e-5, atol=1e-4)


def test_the_mini_on_a_zoo_backbone():
    model = create_model("retinanet_mini", backbone="resnet18").eval()  # its layer1: stride 4
    with torch.no_grad():
        maps = model.features(torch.randn(1, 3, 64, 64))  # the zoo's networks take RGB (the trainer adapts grey)
    assert [tuple(m.shape[1:]) for m in maps.values()] == [(64, 16, 16), (64, 8, 8)]
    assert model.backbone.fpn.lateral[0].in_channels == 64  # resnet18's layer1


# ---------------------------------------------------------------------------------------------
# Bad input


def test_bad_input_is_refused_with_a_clear_error():
    model = create_model("retinanet_mini")
    with pytest.raises(InputTooSmallError, match="8x8; this detector needs at least 16x16"):
        model.eval()(torch.zeros(1, 1, 8, 8))
    model.train()
    with pytest.raises(ValueError, match="needs targets"):
        model(torch.zeros(1, 1, 64, 64))
    with pytest.raises(ValueError, match=r"box 0 \[30.0, 5.0, 20.0, 9.0\] has x2 <= x1"):
        model(torch.zeros(1, 1, 64, 64), [{"boxes": torch.tensor([[30.0, 5.0, 20.0, 9.0]]), "labels": torch.tensor([1])}])
    with pytest.raises(ValueError, match="label 11 is not an object class"):
        model(torch.zeros(1, 1, 64, 64), [{"boxes": torch.tensor([[1.0, 1.0, 9.0, 9.0]]), "labels": torch.tensor([11])}])
    with pytest.raises(ValueError, match="head scores 10 object classes; a detector of 5 classes"):
        RetinaNet(model.backbone, model.anchors, model.head, num_classes=5)
    with pytest.raises(ValueError, match="bg_iou_thresh <= fg_iou_thresh"):
        RetinaSettings(fg_iou_thresh=0.4, bg_iou_thresh=0.5)
    with pytest.raises(ValueError, match="box_loss"):
        build_retinanet(model.backbone, 64, num_classes=11, anchor_sizes=((8,), (16,)),
                        settings=RetinaSettings(box_loss="giou"))
