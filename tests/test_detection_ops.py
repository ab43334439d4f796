"""The detection room's box toolkit, each piece held equal to its torchvision counterpart.

torchvision (``torchvision.ops``, ``torchvision.models.detection``) is the oracle here: every test
runs the same random or edge-case input through both and compares. Tolerances: exact equality for
indices, masks, anchors and NMS; float64 results to 1e-10; float32 results to 1e-5 absolute
(RoI Align is computed as two matrix products, so its float32 sums run in another order).
"""

from __future__ import annotations

import math

import pytest
import torch
from torchvision import ops
from torchvision.models.detection import _utils as tv_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator as TvAnchorGenerator
from torchvision.models.detection.image_list import ImageList

from convatlas.detection import (AnchorGenerator, BalancedSampler, BoxCoder, Matcher, MultiScaleRoIAlign, base_anchors,
                                 batched_nms, box_convert, box_iou, cell_anchors, clip_boxes, generalized_box_iou,
                                 grid_anchors, nms, remove_small_boxes, roi_align, roi_pool, rois_from_boxes)
from convatlas.metrics import boxes as metric_boxes


def random_boxes(n: int, extent: float = 100.0, max_size: float = 40.0, *, generator=None,
                 dtype=torch.float32) -> torch.Tensor:
    """``n`` valid xyxy boxes: top-left corners in [0, extent), sizes in [1, max_size]."""
    corner = torch.rand(n, 2, generator=generator, dtype=dtype) * extent
    size = torch.rand(n, 2, generator=generator, dtype=dtype) * (max_size - 1) + 1
    return torch.cat([corner, corner + size], dim=1)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- boxes ------------------------------------------------------------------------------------------

def test_box_iou_is_the_metrics_one():
    assert box_iou is metric_boxes.box_iou


@pytest.mark.parametrize("in_fmt", ["xyxy", "xywh", "cxcywh"])
@pytest.mark.parametrize("out_fmt", ["xyxy", "xywh", "cxcywh"])
def test_box_convert_matches_torchvision(in_fmt, out_fmt):
    boxes = random_boxes(50, generator=gen(1), dtype=torch.float64)
    assert torch.allclose(box_convert(boxes, in_fmt, out_fmt), ops.box_convert(boxes, in_fmt, out_fmt), atol=1e-12)
    back = box_convert(box_convert(boxes, in_fmt, out_fmt), out_fmt, in_fmt)
    assert torch.allclose(back, boxes, atol=1e-12)


def test_box_convert_rejects_an_unknown_format():
    with pytest.raises(ValueError, match="in_fmt must be one of xyxy, xywh, cxcywh, got 'yolo'"):
        box_convert(torch.zeros(1, 4), "yolo", "xyxy")


def test_generalized_box_iou_matches_torchvision():
    a = random_boxes(40, extent=60, generator=gen(2), dtype=torch.float64)  # overlapping, nested, disjoint
    b = random_boxes(30, extent=60, generator=gen(3), dtype=torch.float64)
    b = torch.cat([b, a[:5]])  # identical pairs: GIoU 1
    ours, theirs = generalized_box_iou(a, b), ops.generalized_box_iou(a, b)
    assert torch.allclose(ours, theirs, atol=1e-12)
    assert (ours > -1).all() and (ours <= 1 + 1e-12).all() and (ours < 0).any()
    assert torch.allclose(ours[torch.arange(5), 30 + torch.arange(5)], torch.ones(5, dtype=torch.float64))


def test_generalized_box_iou_of_far_apart_boxes_tends_to_minus_one():
    near = generalized_box_iou(torch.tensor([[0., 0, 1, 1]]), torch.tensor([[2., 0, 3, 1]]))
    far = generalized_box_iou(torch.tensor([[0., 0, 1, 1]]), torch.tensor([[99., 0, 100, 1]]))
    assert near.item() == pytest.approx(-1 / 3) and far.item() == pytest.approx(-0.98)  # -(3 - 2) / 3, -(100 - 2) / 100


def test_clip_and_remove_small_boxes_match_torchvision():
    boxes = random_boxes(100, extent=120, generator=gen(4)) - 20  # many run over the edges
    clipped = clip_boxes(boxes, (70, 90))
    assert torch.equal(clipped, ops.clip_boxes_to_image(boxes, (70, 90)))
    for min_size in (0.0, 5.0, 17.5):
        assert torch.equal(remove_small_boxes(clipped, min_size), ops.remove_small_boxes(clipped, min_size))


# --- NMS --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n, extent", [(1, 50), (30, 50), (300, 200), (1000, 60), (2000, 300)])
@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7, 1.0])
def test_nms_matches_torchvision_on_random_boxes(n, extent, threshold):
    g = gen(n)
    boxes, scores = random_boxes(n, extent, generator=g), torch.rand(n, generator=g)
    expected = ops.nms(boxes, scores, threshold)
    kept = nms(boxes, scores, threshold)
    assert kept.dtype == torch.int64 and torch.equal(kept, expected)
    if 0 < threshold < 1 and n > 1:
        assert 0 < len(kept) < n or extent > 100  # the case suppressed something


@pytest.mark.parametrize("n", [10, 400])  # one block, and ties across blocks of 256
def test_nms_breaks_ties_as_torchvision(n):
    g = gen(10 + n)
    boxes = random_boxes(n // 2, 40, generator=g)
    boxes = torch.cat([boxes, boxes])  # every box twice: IoU 1 with its copy
    scores = torch.randint(0, 4, (n,), generator=g).float()  # few distinct scores: ties everywhere
    for threshold in (0.2, 0.5, 0.9):
        assert torch.equal(nms(boxes, scores, threshold), ops.nms(boxes, scores, threshold))
    equal = torch.ones(n)
    assert torch.equal(nms(boxes, equal, 0.5), ops.nms(boxes, equal, 0.5))
    assert nms(boxes, equal, 0.5)[0] == 0  # equal scores: the first box in input order wins


def test_nms_of_nothing_and_of_degenerate_boxes():
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).shape == (0,)
    assert batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5).shape == (0,)
    flat = torch.tensor([[5., 5, 5, 9], [5., 5, 5, 9], [0, 0, 4, 4]])  # two zero-area copies: IoU 0 / 0
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert torch.equal(nms(flat, scores, 0.5), ops.nms(flat, scores, 0.5))
    assert nms(flat, scores, 0.5).tolist() == [0, 1, 2]


def test_nms_rejects_mismatched_scores():
    with pytest.raises(ValueError, match=r"scores must be \(3,\) to match the boxes, got \(2,\)"):
        nms(torch.zeros(3, 4), torch.zeros(2), 0.5)
    with pytest.raises(ValueError, match=r"boxes must be an \(N, 4\) tensor of boxes, got \(3, 5\)"):
        nms(torch.zeros(3, 5), torch.zeros(3), 0.5)


@pytest.mark.parametrize("n, classes", [(200, 3), (1000, 10), (900, 80)])
def test_batched_nms_matches_torchvision(n, classes):
    """Up to 1000 boxes torchvision's CPU batched_nms takes the coordinate-offset path: one NMS in
    global score order, equal scores by index - the order batched_nms promises."""
    g = gen(20 + n)
    boxes, idxs = random_boxes(n, 60, generator=g), torch.randint(0, classes, (n,), generator=g)
    scores = torch.randint(0, 20, (n,), generator=g).float()  # ties, also across classes
    for threshold in (0.3, 0.6):
        assert torch.equal(batched_nms(boxes, scores, idxs, threshold), ops.batched_nms(boxes, scores, idxs, threshold))


def test_batched_nms_equals_nms_run_class_by_class():
    """Above 1000 boxes torchvision loops over classes and sorts the result with an unstable sort,
    so the oracle here is its nms run on each class; our order is by score (ties by index)."""
    g = gen(5)
    n = 3000
    boxes, idxs, scores = random_boxes(n, 150, generator=g), torch.randint(0, 7, (n,), generator=g), torch.rand(n, generator=g)
    kept = batched_nms(boxes, scores, idxs, 0.5)
    per_class = torch.cat([torch.where(idxs == c)[0][ops.nms(boxes[idxs == c], scores[idxs == c], 0.5)]
                           for c in range(7)])
    assert sorted(kept.tolist()) == sorted(per_class.tolist()) and len(kept) < n
    expected_order = per_class[torch.sort(scores[per_class], descending=True, stable=True).indices]
    assert torch.equal(scores[kept], scores[expected_order])
    assert set(ops.batched_nms(boxes, scores, idxs, 0.5).tolist()) == set(kept.tolist())


def test_batched_nms_never_suppresses_across_classes():
    boxes = torch.tensor([[0., 0, 10, 10]] * 4)
    idxs = torch.tensor([0, 1, 0, 1])
    scores = torch.tensor([0.1, 0.2, 0.3, 0.4])
    assert batched_nms(boxes, scores, idxs, 0.5).tolist() == [3, 2]


# --- box coder --------------------------------------------------------------------------------------

@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_box_coder_matches_torchvision(weights):
    g = gen(6)
    gt, proposals = random_boxes(64, generator=g), random_boxes(64, generator=g)
    ours, theirs = BoxCoder(weights), tv_utils.BoxCoder(weights)
    deltas = ours.encode(gt, proposals)
    assert torch.allclose(deltas, theirs.encode_single(gt, proposals), atol=1e-6)
    assert torch.allclose(ours.decode(deltas, proposals), gt, atol=1e-4)  # decode inverts encode
    several = torch.randn(64, 4 * 3, generator=g) * 2  # three classes' deltas, some beyond the clamp
    several[:5, 2] = 50.0
    assert torch.allclose(ours.decode(several, proposals), theirs.decode_single(several, proposals), atol=1e-4, rtol=1e-6)


def test_box_coder_is_rcnn_parametrisation():
    proposal, gt = torch.tensor([[10., 20, 30, 60]]), torch.tensor([[15., 10, 55, 50]])  # p: w 20 h 40 c (20, 40)
    deltas = BoxCoder((10, 10, 5, 5)).encode(gt, proposal)[0]
    expected = [10 * (35 - 20) / 20, 10 * (30 - 40) / 40, 5 * math.log(40 / 20), 5 * math.log(40 / 40)]
    assert deltas.tolist() == pytest.approx(expected)


# --- anchors ----------------------------------------------------------------------------------------

# The nine anchors printed in py-faster-rcnn's lib/rpn/generate_anchors.py (Ren's MATLAB output,
# 1-based pixels); /work/shared/reference/segmentation-detection.md, Sec. 1.4.
PUBLISHED_ANCHORS = [
    [-83, -39, 100, 56], [-175, -87, 192, 104], [-359, -183, 376, 200],
    [-55, -55, 72, 72], [-119, -119, 136, 136], [-247, -247, 264, 264],
    [-35, -79, 52, 96], [-79, -167, 96, 184], [-167, -343, 184, 360],
]


def test_base_anchors_are_the_published_ones():
    assert base_anchors(first_pixel=1).tolist() == PUBLISHED_ANCHORS
    # The Python code's own windows start at pixel 0: the same boxes, one pixel up and left.
    zero_based = base_anchors()
    assert zero_based.tolist() == [[v - 1 for v in row] for row in PUBLISHED_ANCHORS]
    centre = (zero_based[:, :2] + zero_based[:, 2:]) / 2
    assert torch.equal(centre, torch.full((9, 2), 7.5, dtype=torch.float64))
    widths = zero_based[:, 2] - zero_based[:, 0] + 1  # inclusive pixels
    assert widths[3:6].tolist() == [128, 256, 512]  # 1:1 at scales 8, 16, 32


@pytest.mark.parametrize("sizes, ratios", [((128, 256, 512), (0.5, 1.0, 2.0)), ((32, 40, 50), (0.5, 1.0, 2.0)),
                                           ((16,), (0.25, 1.0, 3.0))])
def test_cell_anchors_match_torchvision(sizes, ratios):
    theirs = TvAnchorGenerator((sizes,), (ratios,)).cell_anchors[0]
    assert torch.equal(cell_anchors(sizes, ratios), theirs)


def test_grid_anchors_order_is_position_major():
    cell = cell_anchors((8,), (0.5, 1.0, 2.0))
    grid = grid_anchors(cell, (2, 3), 4)
    assert grid.shape == (2 * 3 * 3, 4)
    y, x, a = 1, 2, 1  # row (y * W + x) * A + a
    assert torch.equal(grid[(y * 3 + x) * 3 + a], cell[a] + torch.tensor([x * 4, y * 4, x * 4, y * 4]))


@pytest.mark.parametrize("levels", [1, 3])
def test_anchor_generator_matches_torchvision(levels):
    g = gen(7)
    if levels == 1:
        sizes, ratios = ((128, 256, 512),), ((0.5, 1.0, 2.0),)
        maps = [torch.randn(2, 4, 13, 17, generator=g)]
    else:
        sizes, ratios = ((32,), (64,), (128,)), ((0.5, 1.0, 2.0),) * 3
        maps = [torch.randn(2, 4, 25, 33, generator=g), torch.randn(2, 4, 13, 17, generator=g),
                torch.randn(2, 4, 7, 9, generator=g)]
    image_size = (200, 264)  # padded batch size; strides 200 // 13 = 15 and 264 // 17 = 15 ...
    images = ImageList(torch.zeros(2, 3, *image_size), [(200, 250), (190, 264)])
    theirs = TvAnchorGenerator(sizes, ratios)(images, maps)
    generator = AnchorGenerator(sizes, ratios[0])
    ours = generator(maps, image_size)
    assert len(ours) == 2 and all(torch.equal(o, t) for o, t in zip(ours, theirs))
    per_location = generator.num_anchors_per_location()
    assert per_location == ([9] if levels == 1 else [3, 3, 3])
    assert ours[0].shape[0] == sum(m.shape[-2] * m.shape[-1] * a for m, a in zip(maps, per_location))


# --- matcher and sampler ----------------------------------------------------------------------------

@pytest.mark.parametrize("low_quality", [False, True])
@pytest.mark.parametrize("high, low", [(0.7, 0.3), (0.5, 0.5)])
def test_matcher_matches_torchvision(low_quality, high, low):
    g = gen(8)
    for trial in range(20):
        num_gt, num_pred = int(torch.randint(1, 6, (1,), generator=g)), int(torch.randint(1, 40, (1,), generator=g))
        if trial % 2:  # coarse values: ties between boxes and between predictions, values on the thresholds
            iou = torch.randint(0, 11, (num_gt, num_pred), generator=g).float() / 10
        else:
            iou = torch.rand(num_gt, num_pred, generator=g) ** 2
        expected = tv_utils.Matcher(high, low, low_quality)(iou)
        assert torch.equal(Matcher(high, low, low_quality)(iou), expected)


def test_matcher_marks_every_prediction_of_an_empty_image_background():
    assert Matcher(0.7, 0.3)(torch.zeros(0, 5)).tolist() == [-1] * 5
    with pytest.raises(ValueError, match=r"low_threshold \(0.8\) must not exceed high_threshold \(0.5\)"):
        Matcher(0.5, 0.8)


def _labels(g: torch.Generator) -> list[torch.Tensor]:
    """Three images: many positives, few positives, no negatives; -1 ignored."""
    many = torch.randint(-1, 4, (500,), generator=g)
    few = torch.where(torch.rand(800, generator=g) < 0.01, 2, torch.randint(-1, 1, (800,), generator=g))
    none = torch.randint(1, 3, (20,), generator=g)
    return [many, few, none]


def test_balanced_sampler_counts_and_membership():
    labels = _labels(gen(9))
    positive, negative = BalancedSampler(256, 0.25)(labels, generator=gen(10))
    for lab, pos, neg in zip(labels, positive, negative):
        assert pos.dtype == torch.bool and pos.shape == lab.shape
        assert (lab[pos] >= 1).all() and (lab[neg] == 0).all()
        n_pos = min(int((lab >= 1).sum()), 64)
        assert int(pos.sum()) == n_pos and int(neg.sum()) == min(int((lab == 0).sum()), 256 - n_pos)
    assert int(negative[1].sum()) == 256 - int(positive[1].sum())  # few positives: negatives fill the batch


def test_balanced_sampler_chooses_as_torchvision_for_the_same_seed():
    labels = _labels(gen(11))
    theirs = tv_utils.BalancedPositiveNegativeSampler(128, 0.5)
    torch.manual_seed(3)
    expected = theirs(labels)
    torch.manual_seed(3)
    with_global = BalancedSampler(128, 0.5)(labels)
    with_generator = BalancedSampler(128, 0.5)(labels, generator=gen(3))
    for ours in (with_global, with_generator):
        for o, t in zip(ours[0] + ours[1], expected[0] + expected[1]):
            assert torch.equal(o, t.bool())


# --- RoI Pool and RoI Align -------------------------------------------------------------------------

def _random_rois(k: int, images: int, extent: float, g: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    """(k, 5) regions: ordinary ones, ones partly or wholly outside the map, tiny and zero-size ones."""
    corner = torch.rand(k, 2, generator=g, dtype=dtype) * extent * 1.2 - 0.2 * extent
    size = torch.rand(k, 2, generator=g, dtype=dtype) * extent * 0.6
    size[: k // 5] *= 0.02  # tiny
    size[k // 5: k // 5 + 2] = 0  # empty
    index = torch.randint(0, images, (k, 1), generator=g).to(dtype)
    return torch.cat([index, corner, corner + size], dim=1)


def _compare(ours_fn, theirs_fn, features, rois, atol):
    """Forward and gradient w.r.t. the features, ours against theirs. The gradient of a cell sums
    the contributions of several bins and regions, in another order than torchvision's: to 1e-12
    at least, where the forward pass may be exact."""
    a = features.clone().requires_grad_(True)
    b = features.clone().requires_grad_(True)
    out_a, out_b = ours_fn(a, rois), theirs_fn(b, rois)
    assert out_a.shape == out_b.shape
    assert torch.allclose(out_a, out_b, atol=atol, rtol=0), (out_a - out_b).abs().max()
    weight = torch.randn(out_b.shape, generator=gen(12), dtype=out_b.dtype)
    (out_a * weight).sum().backward()
    (out_b * weight).sum().backward()
    assert torch.allclose(a.grad, b.grad, atol=max(atol, 1e-12), rtol=0), (a.grad - b.grad).abs().max()
    assert (a.grad != 0).any()


@pytest.mark.parametrize("scale", [1.0, 0.5, 0.25, 1 / 16])
@pytest.mark.parametrize("output_size", [(7, 7), (3, 5)])
def test_roi_pool_matches_torchvision(scale, output_size):
    g = gen(13)
    features = torch.randn(2, 3, 19, 23, generator=g, dtype=torch.float64)
    rois = _random_rois(40, 2, 23 / scale, g)
    _compare(lambda f, r: roi_pool(f, r, output_size, scale), lambda f, r: ops.roi_pool(f, r, output_size, scale),
             features, rois, atol=0)


def test_roi_pool_float32_and_list_of_boxes():
    g = gen(14)
    features = torch.randn(2, 4, 12, 12, generator=g)
    boxes = [random_boxes(5, 40, 30, generator=g), random_boxes(3, 40, 30, generator=g)]
    expected = ops.roi_pool(features, boxes, 4, 0.25)
    assert torch.equal(roi_pool(features, boxes, 4, 0.25), expected)
    assert torch.equal(rois_from_boxes(boxes)[:, 0], torch.tensor([0.] * 5 + [1.] * 3))


@pytest.mark.parametrize("scale", [1.0, 0.5, 0.25, 1 / 16])
@pytest.mark.parametrize("sampling_ratio", [1, 2, -1])
@pytest.mark.parametrize("aligned", [False, True])
def test_roi_align_matches_torchvision(scale, sampling_ratio, aligned):
    g = gen(15)
    features = torch.randn(2, 3, 17, 21, generator=g, dtype=torch.float64)
    rois = _random_rois(40, 2, 21 / scale, g)
    args = dict(output_size=(7, 5), spatial_scale=scale, sampling_ratio=sampling_ratio, aligned=aligned)
    _compare(lambda f, r: roi_align(f, r, **args), lambda f, r: ops.roi_align(f, r, **args), features, rois, atol=1e-10)


def test_roi_align_adaptive_sampling_with_very_different_regions_in_float32():
    """Adaptive sampling gives each region its own grid (1 sample per bin to 12 here); float32."""
    g = gen(16)
    features = torch.randn(3, 8, 40, 40, generator=g)
    small = random_boxes(10, 30, 3, generator=g)
    large = random_boxes(10, 5, 2, generator=g) + torch.tensor([0., 0, 80, 80])
    boxes = [torch.cat([small, large]), small, large]
    rois = rois_from_boxes(boxes)
    for aligned in (False, True):
        args = dict(output_size=7, spatial_scale=1.0, sampling_ratio=-1, aligned=aligned)
        _compare(lambda f, r: roi_align(f, r, **args), lambda f, r: ops.roi_align(f, r, **args), features, rois, atol=1e-5)
    assert torch.allclose(roi_align(features, boxes, 7), ops.roi_align(features, boxes, 7), atol=1e-5)


def test_roi_align_of_no_regions_and_bad_regions():
    features = torch.randn(1, 2, 5, 5)
    assert roi_align(features, torch.zeros(0, 5), 3).shape == (0, 2, 3, 3)
    assert roi_pool(features, torch.zeros(0, 5), 3).shape == (0, 2, 3, 3)
    with pytest.raises(ValueError, match="rois name batch indices 0..1, but the features hold 1 images"):
        roi_align(features, torch.tensor([[0., 0, 0, 2, 2], [1., 0, 0, 2, 2]]), 3)
    with pytest.raises(ValueError, match=r"rois must be \(K, 5\) rows"):
        roi_pool(features, torch.zeros(2, 4), 3)


def test_multiscale_roi_align_matches_torchvision():
    g = gen(17)
    image_sizes = [(512, 448), (480, 512)]
    names = ["p2", "p3", "p4", "p5"]
    features = {name: torch.randn(2, 4, 512 // 2 ** k, 512 // 2 ** k, generator=g, dtype=torch.float64)
                for name, k in zip(names, range(2, 6))}
    features["pool"] = torch.randn(2, 4, 4, 4, generator=g, dtype=torch.float64)  # not in featmap_names
    sides = torch.tensor([8., 20, 60, 112, 150, 230, 300, 460])  # spread over the four levels
    boxes = []
    for image in range(2):
        corner = torch.rand(len(sides), 2, generator=g, dtype=torch.float64) * 40
        boxes.append(torch.cat([corner, corner + sides[:, None].double()], dim=1))
    theirs = ops.MultiScaleRoIAlign(names, 7, 2)
    ours = MultiScaleRoIAlign(names, 7, 2)
    levels = ours.levels(torch.cat(boxes), 2, 5)
    assert set(levels.tolist()) == {2, 3, 4, 5}  # every level is exercised
    a = {k: v.clone().requires_grad_(True) for k, v in features.items()}
    b = {k: v.clone().requires_grad_(True) for k, v in features.items()}
    out_a, out_b = ours(a, boxes, image_sizes), theirs(b, boxes, image_sizes)
    assert out_a.shape == (16, 4, 7, 7) and torch.allclose(out_a, out_b, atol=1e-10, rtol=0)
    weight = torch.randn(out_a.shape, generator=g, dtype=torch.float64)
    (out_a * weight).sum().backward()
    (out_b * weight).sum().backward()
    for name in names:
        assert torch.allclose(a[name].grad, b[name].grad, atol=1e-10, rtol=0)
    assert a["pool"].grad is None


def test_multiscale_roi_align_level_mapping_is_fpn_eq1():
    mapper = MultiScaleRoIAlign(["p2"], 7, 2)
    sides = torch.tensor([50., 111.9, 112, 223.9, 224, 448, 2000])
    boxes = torch.stack([torch.zeros(7), torch.zeros(7), sides, sides], dim=1)
    assert mapper.levels(boxes, 2, 5).tolist() == [2, 2, 3, 3, 4, 5, 5]  # floor(4 + log2(s / 224)), clamped
