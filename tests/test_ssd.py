"""SSD: the paper's networks counted (SSD300 for VOC layer by layer, and equal to torchvision's
ssd300_vgg16 for COCO's 91 ids), the paper's default box counts (8,732 and 24,564) and boxes equal to
torchvision's ``DefaultBoxGenerator``, matching and hard negative mining invariants, the loss and the
detections equal to torchvision's ``SSD`` with the same parts, bad input, and the mini learning
through the front door."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import convatlas.detection.ssd  # noqa: F401  (registers the SSD builders)
from convatlas.detection.boxes import box_iou
from convatlas.detection.ssd import (MINI_BOXES, SSD, SSD300_BOXES, SSD512_BOXES, DefaultBoxes, SSDSettings,
                                     hard_negatives, ssd_loss, ssd_match)
from convatlas.registry import InputTooSmallError, create_model, model_card

tv_detection = pytest.importorskip("torchvision.models.detection")
from torchvision.models.detection import _utils as tv_utils  # noqa: E402
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator  # noqa: E402
from torchvision.models.detection.image_list import ImageList  # noqa: E402
from torchvision.models.detection import ssd as tv_ssd  # noqa: E402
from torchvision.models.detection.ssd import SSDHead as TVSSDHead  # noqa: E402


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------
# The paper's networks


def test_ssd300_voc_parameter_count_derived_layer_by_layer():
    model = create_model("ssd300_vgg16")
    assert _count(model) == 26_285_486 == model_card("ssd300_vgg16").params.value
    vgg = 14_714_688  # VGG-16's 13 convolutions
    fc = (512 * 9 * 1024 + 1024) + (1024 * 1024 + 1024)
    extras = ((1024 * 256 + 256) + (256 * 9 * 512 + 512) + (512 * 128 + 128) + (128 * 9 * 256 + 256)
              + 2 * ((256 * 128 + 128) + (128 * 9 * 256 + 256)))
    sources, boxes = [512, 1024, 512, 256, 256, 256], [4, 6, 6, 6, 4, 4]
    loc = sum(c * 9 * 4 * k + 4 * k for c, k in zip(sources, boxes))
    conf = sum(c * 9 * 21 * k + 21 * k for c, k in zip(sources, boxes))
    assert vgg + 512 + fc + extras + loc + conf == 26_285_486  # 512: conv4_3_norm's scales
    assert _count(model.backbone.body) == vgg and _count(model.head) == loc + conf
    assert torch.all(model.backbone.conv4_3_norm.weight == 20)


def test_ssd300_for_coco_has_torchvisions_parameter_count():
    ours = create_model("ssd300_vgg16", num_classes=91)
    theirs = tv_detection.ssd300_vgg16(weights=None, weights_backbone=None)
    assert _count(ours) == _count(theirs) == 35_641_826  # the reference notes' figure
    # layer for layer: the same shapes in the same order (VGG, fc6/fc7, extras, heads)
    ours_shapes = sorted(tuple(p.shape) for p in ours.parameters())
    assert ours_shapes == sorted(tuple(p.shape) for p in theirs.parameters())


def test_the_cards_cite_the_paper_and_name_the_recipe():
    from convatlas.train.config import load_recipe

    for name, value in (("ssd300_vgg16", 74.3), ("ssd512_vgg16", 76.8)):
        card = model_card(name)
        assert card.map.value == value and card.arxiv == "1512.02325" and card.task == "detection"
    assert "59 fps" in model_card("ssd300_vgg16").extra["fps"]
    card = model_card("ssd_mini")
    assert (card.task, card.dataset, card.recipe) == ("detection", "digit-scenes", "ssd_digit_scenes")
    assert load_recipe(card.recipe)["data"] == "digit-scenes"


def test_ssd512_parameter_count():
    # SSD300 + conv12 (1x1 256->128, 4x4 128->256) + conv10_2's two more boxes + the 7th map's heads
    extra = (256 * 128 + 128) + (128 * 16 * 256 + 256)
    more = (256 * 9 * 4 * 2 + 4 * 2) + (256 * 9 * 21 * 2 + 21 * 2) + (256 * 9 * 16 + 16) + (256 * 9 * 84 + 84)
    assert _count(create_model("ssd512_vgg16")) == 26_285_486 + extra + more == 27_188_676


@pytest.mark.parametrize("name, size, maps, per_location, total", [
    ("ssd300_vgg16", 300, [38, 19, 10, 5, 3, 1], [4, 6, 6, 6, 4, 4], 8732),
    ("ssd512_vgg16", 512, [64, 32, 16, 8, 4, 2, 1], [4, 6, 6, 6, 6, 4, 4], 24564),
])
def test_the_papers_source_maps_and_default_box_counts(name, size, maps, per_location, total):
    model = create_model(name).to("meta").eval()  # the geometry without the arithmetic
    with torch.no_grad():
        features = model.features(torch.empty(1, 3, size, size, device="meta"))
        logits, deltas = model.head(list(features.values()))
    assert [f.shape[-1] for f in features.values()] == maps
    assert model.default_boxes.num_boxes_per_location() == per_location
    assert sum(m * m * k for m, k in zip(maps, per_location)) == total
    assert len(model.default_boxes([(m, m) for m in maps], (size, size))) == total
    assert logits.shape == (1, total, 21) and deltas.shape == (1, total, 4)
    assert model_card(name).extra["default_boxes"] == total


def test_the_smallest_input_is_enforced():
    model = create_model("ssd300_vgg16").to("meta").eval()
    with torch.no_grad():
        maps = model.features(torch.empty(1, 3, 268, 268, device="meta"))  # the smallest that runs
    assert list(maps.values())[-1].shape[-1] == 1
    with pytest.raises(InputTooSmallError, match="needs at least 268x268"):
        model(torch.empty(1, 3, 267, 267, device="meta"))


# ---------------------------------------------------------------------------------------------
# Default boxes


def _tv_boxes(config: dict, grids: list[int], size: int, clip: bool) -> torch.Tensor:
    generator = DefaultBoxGenerator([list(map(int, r)) for r in config["aspect_ratios"]], scales=list(config["scales"]),
                                    steps=list(config["steps"]) if config.get("steps") else None, clip=clip)
    images = ImageList(torch.zeros(1, 1, size, size), [(size, size)])
    return generator(images, [torch.zeros(1, 1, g, g) for g in grids])[0]


@pytest.mark.parametrize("config, grids, size", [(SSD300_BOXES, [38, 19, 10, 5, 3, 1], 300),
                                                 (SSD512_BOXES, [64, 32, 16, 8, 4, 2, 1], 512),
                                                 (MINI_BOXES, [16, 8, 4], 64),
                                                 ({**MINI_BOXES, "steps": None}, [16, 8, 4], 64)])
@pytest.mark.parametrize("clip", [False, True])
def test_default_boxes_equal_torchvisions_generator(config, grids, size, clip):
    ours = DefaultBoxes(config["scales"], config["aspect_ratios"], config.get("steps"), clip)
    torch.testing.assert_close(ours([(g, g) for g in grids], (size, size)), _tv_boxes(config, grids, size, clip),
                               rtol=1e-5, atol=1e-4)


def test_default_boxes_are_the_official_sizes():
    boxes = DefaultBoxes(**SSD300_BOXES)
    first = boxes([(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)], (300, 300))[:4]
    wh = first[:, 2:] - first[:, :2]
    # conv4_3 at (4, 4) px: min_size 30, sqrt(30 x 60), then 30 sqrt(2) x 30 / sqrt(2) and its transpose
    expected = torch.tensor([[30, 30], [42.4264, 42.4264], [42.4264, 21.2132], [21.2132, 42.4264]])
    torch.testing.assert_close(wh, expected, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close((first[:, :2] + first[:, 2:]) / 2, torch.full((4, 2), 4.0))
    # unclipped (the official models): the last map's wide box (0.88 sqrt 2 = 1.24 of the side) reaches
    # past the 300x300 image; torchvision's clip makes it 300 wide
    grids = [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]
    wide = boxes(grids, (300, 300))[-2]
    assert wide[0] < 0 and wide[2] > 300 and float(wide[2] - wide[0]) == pytest.approx(0.88 * 2 ** 0.5 * 300)
    clipped = DefaultBoxes(**SSD300_BOXES, clip=True)(grids, (300, 300))[-2]
    assert float(clipped[2] - clipped[0]) == pytest.approx(300)
    with pytest.raises(ValueError, match="one more entry"):
        DefaultBoxes((0.1, 0.2), ((2,), (2,)))
    with pytest.raises(ValueError, match="a >= 1"):
        DefaultBoxes((0.1, 0.2), ((0.5,),))


# ---------------------------------------------------------------------------------------------
# Matching and hard negative mining


def _random_boxes(n: int, generator: torch.Generator, size: float = 64.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=generator) * size * 0.7
    wh = 6 + torch.rand(n, 2, generator=generator) * size * 0.3
    return torch.cat([xy, (xy + wh).clamp(max=size)], 1)


def _mini_default_boxes() -> torch.Tensor:
    return DefaultBoxes(**MINI_BOXES)([(16, 16), (8, 8), (4, 4)], (64, 64))


@pytest.mark.parametrize("seed", range(6))
def test_argmax_matching_equals_torchvisions_ssd_matcher(seed):
    g = torch.Generator().manual_seed(seed)
    iou = box_iou(_random_boxes(1 + seed, g), _mini_default_boxes())
    assert torch.equal(ssd_match(iou, 0.5, "argmax"), tv_utils.SSDMatcher(0.5)(iou))


@pytest.mark.parametrize("seed", range(6))
def test_bipartite_matching_gives_every_ground_truth_a_default_box(seed):
    g = torch.Generator().manual_seed(100 + seed)
    boxes = _random_boxes(2 + seed, g)
    boxes = torch.cat([boxes, boxes[:1] + 0.5])  # two near-identical objects want the same best box
    iou = box_iou(boxes, _mini_default_boxes())
    matches = ssd_match(iou)
    assert set(matches[matches >= 0].tolist()) == set(range(len(boxes)))  # nobody left out
    # beyond the forced ones, a default box is matched iff its best IoU reaches 0.5, to that box
    best, argbest = iou.max(0)
    forced = matches != torch.where(best >= 0.5, argbest, torch.full_like(argbest, -1))
    assert int(forced.sum()) <= len(boxes)


def test_argmax_matching_can_leave_an_object_without_a_default_box():
    """Two objects whose one best default box is the same, and no other box at IoU 0.5: torchvision's
    rule gives it to the later object and the first has no positive; the paper's bipartite step
    gives the first the next best."""
    default = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 20.0], [30.0, 30.0, 40.0, 40.0]])
    objects = torch.tensor([[0.0, 0.0, 10.0, 14.0], [0.0, 0.0, 10.0, 13.0]])
    iou = box_iou(objects, default)
    assert iou.argmax(1).tolist() == [0, 0] and iou.max() < 0.8
    argmax = ssd_match(iou, 0.8, "argmax")
    assert torch.equal(argmax, tv_utils.SSDMatcher(0.8)(iou)) and 0 not in argmax.tolist()
    assert sorted(ssd_match(iou, 0.8).tolist()) == [-1, 0, 1]


def test_hard_negative_mining_keeps_the_hardest_three_per_positive():
    g = torch.Generator().manual_seed(7)
    loss = torch.rand(3, 200, generator=g)
    positive = torch.zeros(3, 200, dtype=torch.bool)
    positive[0, :5] = True
    positive[1, :100] = True  # 3 x 100 > the 100 negatives: all of them
    chosen = hard_negatives(loss, positive, 3.0)
    assert chosen.sum(1).tolist() == [15, 100, 0]  # no positive in image 2: no negatives either
    assert not (chosen & positive).any()
    negatives = ~positive[0] & ~chosen[0]
    assert loss[0][chosen[0]].min() > loss[0][negatives].max()  # the hardest ones
    assert torch.equal(chosen[0], torch.zeros_like(chosen[0]).index_fill(
        0, loss[0].masked_fill(positive[0], -1).topk(15).indices, True))


# ---------------------------------------------------------------------------------------------
# The mini against torchvision's SSD with the same parts


def _twin(ours: SSD) -> nn.Module:
    """torchvision's SSD on our backbone (shared), default boxes and head weights; 64x64 in, no
    resizing, mean 0 / std 1."""
    b, s = ours.default_boxes, ours.settings
    generator = DefaultBoxGenerator([list(map(int, r)) for r in b.aspect_ratios], scales=list(b.scales),
                                    steps=list(b.steps), clip=b.clip)
    channels = [conv.in_channels for conv in ours.head.conf]
    head = TVSSDHead(channels, b.num_boxes_per_location(), ours.num_classes)
    with torch.no_grad():
        for mine, theirs in zip(ours.head.conf, head.classification_head.module_list):
            theirs.weight.copy_(mine.weight), theirs.bias.copy_(mine.bias)
        for mine, theirs in zip(ours.head.loc, head.regression_head.module_list):
            theirs.weight.copy_(mine.weight), theirs.bias.copy_(mine.bias)
    return tv_ssd.SSD(ours.backbone, generator, (64, 64), ours.num_classes, image_mean=[0.0], image_std=[1.0],
                            head=head, score_thresh=s.score_thresh, nms_thresh=s.nms_thresh,
                            detections_per_img=s.detections_per_img, iou_thresh=s.iou_thresh,
                            topk_candidates=s.topk_candidates, positive_fraction=1 / (1 + s.neg_pos_ratio))


def _targets() -> list[dict[str, torch.Tensor]]:
    return [{"boxes": torch.tensor([[4.0, 6.0, 20.0, 30.0], [30.0, 28.0, 52.0, 60.0]]),
             "labels": torch.tensor([3, 10])},
            {"boxes": torch.tensor([[10.0, 10.0, 19.0, 26.0]]), "labels": torch.tensor([1])},
            {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},  # nothing in it
            {"boxes": torch.tensor([[0.0, 0.0, 64.0, 64.0], [40.0, 2.0, 48.0, 14.0], [41.0, 3.0, 49.0, 16.0]]),
             "labels": torch.tensor([5, 7, 7])}]


@pytest.fixture(scope="module")
def mini() -> SSD:
    torch.manual_seed(0)
    return create_model("ssd_mini", matching="argmax")


@pytest.mark.parametrize("images", [[0], [2], [0, 1, 2, 3]])
def test_mini_losses_equal_torchvision(mini, images):
    ours = copy.deepcopy(mini).train()
    theirs = _twin(ours).train()
    x = torch.randn(4, 1, 64, 64, generator=torch.Generator().manual_seed(1))[images]
    targets = [_targets()[i] for i in images]
    a, b = ours(x, targets), theirs(x, targets)
    assert set(a) == {"loss_classifier", "loss_box_reg"}
    assert a["loss_classifier"].item() == pytest.approx(b["classification"].item(), rel=1e-5)
    assert a["loss_box_reg"].item() == pytest.approx(b["bbox_regression"].item(), rel=1e-5)
    if images == [2]:  # no positive in the batch: N = 0, the paper sets the loss to 0 (torchvision too)
        assert a["loss_classifier"].item() == 0 == a["loss_box_reg"].item()
        sum(a.values()).backward()  # and it still backpropagates (zero gradients)


def test_the_papers_bipartite_loss_equals_torchvisions_compute_loss_given_its_matches(mini):
    """The default (bipartite) matching fed to torchvision's ``SSD.compute_loss``: the same losses,
    so the two differ in the matching only."""
    ours = copy.deepcopy(mini).train()
    ours.settings = SSDSettings()  # bipartite
    theirs = _twin(ours)
    x = torch.randn(4, 1, 64, 64, generator=torch.Generator().manual_seed(5))
    targets = _targets()
    targets[1] = {"boxes": torch.tensor([[10.0, 10.0, 19.0, 26.0], [10.5, 10.5, 19.5, 26.5]]),
                  "labels": torch.tensor([1, 2])}  # two objects with one best default box
    with torch.no_grad():
        maps = list(ours.features(x).values())
        logits, deltas = ours.head(maps)
        boxes = ours.default_boxes([m.shape[-2:] for m in maps], (64, 64))
        a = ssd_loss(logits, deltas, boxes, targets, box_coder=ours.box_coder)
        matched = [ssd_match(box_iou(t["boxes"], boxes) if len(t["boxes"]) else boxes.new_zeros(0, len(boxes)))
                   for t in targets]
        b = theirs.compute_loss(targets, {"cls_logits": logits, "bbox_regression": deltas}, [boxes] * 4, matched)
    assert float(a["loss_classifier"]) == pytest.approx(float(b["classification"]), rel=1e-5)
    assert float(a["loss_box_reg"]) == pytest.approx(float(b["bbox_regression"]), rel=1e-5)
    assert set(matched[1].tolist()) >= {0, 1}  # both objects have a default box


def test_mini_gradients_equal_torchvision(mini):
    ours = copy.deepcopy(mini).train()
    theirs = _twin(ours).train()
    x = torch.randn(4, 1, 64, 64, generator=torch.Generator().manual_seed(2))
    sum(ours(x, _targets()).values()).backward()
    grads = {n: p.grad.clone() for n, p in ours.named_parameters()}
    ours.zero_grad()  # the backbone is shared
    sum(theirs(x, _targets()).values()).backward()
    for i, conv in enumerate(theirs.head.classification_head.module_list):
        torch.testing.assert_close(grads[f"head.conf.{i}.weight"], conv.weight.grad, rtol=1e-4, atol=1e-6)
    for i, conv in enumerate(theirs.head.regression_head.module_list):
        torch.testing.assert_close(grads[f"head.loc.{i}.weight"], conv.weight.grad, rtol=1e-4, atol=1e-6)
    for name, p in theirs.backbone.named_parameters():
        torch.testing.assert_close(grads[f"backbone.{name}"], p.grad, rtol=1e-4, atol=1e-6)


def test_mini_detections_equal_torchvision(mini):
    ours = copy.deepcopy(mini)
    opt = torch.optim.Adam(ours.parameters(), lr=0.01)
    x = torch.randn(4, 1, 64, 64, generator=torch.Generator().manual_seed(3))
    ours.train()
    for _ in range(10):  # some steps on the one batch, so that the scores spread out
        opt.zero_grad()
        sum(ours(x, _targets()).values()).backward()
        opt.step()
    theirs = _twin(ours)
    ours.eval(), theirs.eval()
    with torch.no_grad():
        found, expected = ours(x), theirs(x)
    assert sum(len(d["boxes"]) for d in found) >= 50
    for a, b in zip(found, expected):
        assert len(a["boxes"]) <= 200
        assert torch.equal(a["labels"], b["labels"])
        torch.testing.assert_close(a["scores"], b["scores"])
        torch.testing.assert_close(a["boxes"], b["boxes"], rtol=1e-5, atol=1e-4)
        assert a["boxes"].min() >= 0 and a["boxes"].max() <= 64  # clipped to the image


def test_mini_on_a_zoo_backbone():
    model = create_model("ssd_mini", backbone="resnet18").eval()
    with torch.no_grad():
        maps = model.features(torch.randn(1, 1, 64, 64).expand(1, 3, 64, 64))
    assert [m.shape[-1] for m in maps.values()] == [16, 8, 4]
    with pytest.raises(ValueError, match="registered classification network"):
        create_model("ssd_mini", backbone="resnet_18x")


# ---------------------------------------------------------------------------------------------
# Bad input


def test_bad_input_is_refused_with_a_clear_error():
    model = create_model("ssd_mini")
    with pytest.raises(InputTooSmallError, match="8x8; this detector needs at least 16x16"):
        model.eval()(torch.zeros(1, 1, 8, 8))
    model.train()
    with pytest.raises(ValueError, match="needs targets"):
        model(torch.zeros(1, 1, 64, 64))
    x = torch.zeros(1, 1, 64, 64)
    with pytest.raises(ValueError, match=r"box 0 \[30.0, 5.0, 20.0, 9.0\] has x2 <= x1"):
        model(x, [{"boxes": torch.tensor([[30.0, 5.0, 20.0, 9.0]]), "labels": torch.tensor([1])}])
    with pytest.raises(ValueError, match="label 11 is not an object class"):
        model(x, [{"boxes": torch.tensor([[1.0, 1.0, 9.0, 9.0]]), "labels": torch.tensor([11])}])
    with pytest.raises(ValueError, match="head scores 11 classes, the detector has 5"):
        SSD(model.backbone, model.default_boxes, model.head, num_classes=5)
    with pytest.raises(ValueError, match="matching must be one of"):
        SSDSettings(matching="hungarian")
    with pytest.raises(ValueError, match="iou_thresh"):
        SSDSettings(iou_thresh=1.5)


def test_ssd300_equals_torchvisions_ssd300_vgg16_with_its_weights():
    """torchvision's ssd300_vgg16 is the paper's network for COCO's 91 ids with the COCO scales,
    clipped default boxes and argmax matching: with its weights, the same head outputs, default
    boxes, losses and detections."""
    from convatlas.detection.ssd import from_torchvision

    torch.manual_seed(0)
    theirs = tv_detection.ssd300_vgg16(weights=None, weights_backbone=None).eval()
    ours = create_model("ssd300_vgg16", num_classes=91, boxes="coco", clip=True, matching="argmax").eval()
    ours.load_state_dict(from_torchvision(ours, theirs.state_dict()))
    x = torch.randn(1, 3, 300, 300, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        maps = list(ours.features(x).values())
        logits, deltas = ours.head(maps)
        their_maps = list(theirs.backbone(x).values())
        out = theirs.head(their_maps)
        torch.testing.assert_close(logits, out["cls_logits"], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(deltas, out["bbox_regression"], rtol=1e-4, atol=1e-4)
        boxes = ours.default_boxes([m.shape[-2:] for m in maps], (300, 300))
        their_boxes = theirs.anchor_generator(ImageList(x, [(300, 300)]), their_maps)
        torch.testing.assert_close(boxes, their_boxes[0], rtol=1e-5, atol=1e-3)
        targets = [{"boxes": torch.tensor([[20.0, 30.0, 120.0, 200.0], [150.0, 40.0, 290.0, 120.0]]),
                    "labels": torch.tensor([1, 18])}]
        a = ssd_loss(logits, deltas, boxes, targets, box_coder=ours.box_coder, matching="argmax")
        matched = [theirs.proposal_matcher(box_iou(t["boxes"], their_boxes[0])) for t in targets]
        b = theirs.compute_loss(targets, out, their_boxes, matched)
        assert a["loss_classifier"].item() == pytest.approx(b["classification"].item(), rel=1e-4)
        assert a["loss_box_reg"].item() == pytest.approx(b["bbox_regression"].item(), rel=1e-4)
        found = ours.postprocess(logits, deltas, boxes, (300, 300))
        expected = theirs.postprocess_detections(out, their_boxes, [(300, 300)])
    for d, e in zip(found, expected):
        assert len(d["boxes"]) == len(e["boxes"]) == 200  # untrained: 91 classes all over 0.01
        assert torch.equal(d["labels"], e["labels"])
        torch.testing.assert_close(d["scores"], e["scores"], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(d["boxes"], e["boxes"], rtol=1e-4, atol=1e-2)
