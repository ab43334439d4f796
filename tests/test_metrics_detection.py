"""Detection mAP: COCO against torchmetrics (pycocotools and faster-coco-eval backends), VOC
against a devkit computation written here from the devkit's definition, hand-worked cases,
and the errors malformed inputs get."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from convatlas.metrics import mean_average_precision

BACKENDS = ["pycocotools", "faster_coco_eval"]
SIZE = 320  # image side; boxes from 3 to 220 px wide span COCO's small, medium and large


# ---------------------------------------------------------------------------------------------
# Random scenes: ground truths of all sizes (some crowd, some duplicated so IoUs tie), and
# detections that are jittered copies of them (mostly the right class) or strays.


def _random_boxes(g: torch.Generator, n: int) -> torch.Tensor:
    size = torch.exp(torch.empty(n, 2).uniform_(np.log(3), np.log(220), generator=g))
    corner = torch.rand(n, 2, generator=g) * (SIZE - size)
    return torch.cat([corner, corner + size], 1)


def _jitter(g: torch.Generator, boxes: torch.Tensor, amount: float) -> torch.Tensor:
    size = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    moved = (boxes + torch.randn(boxes.shape, generator=g) * amount * size).clamp(0, SIZE)
    return torch.cat([moved[:, :2].minimum(moved[:, 2:]), moved[:, :2].maximum(moved[:, 2:])], 1)


def _scene(seed: int, images: int = 6, classes: int = 4, max_dets: int = 20, integer: bool = False,
           ties: bool = False, crowd: float = 0.2, difficult: float = 0.0, empty: bool = True):
    g = torch.Generator().manual_seed(seed)
    preds, targets = [], []
    for i in range(images):
        n_gt = int(torch.randint(0 if empty else 1, 9, (1,), generator=g))
        gt = _random_boxes(g, n_gt)
        if n_gt > 1:  # a copy of one object: two ground truths the same detection fits equally
            gt[-1] = gt[0]
        gt_labels = torch.randint(0, classes, (n_gt,), generator=g)
        n_det = int(torch.randint(0 if empty else 1, max_dets + 1, (1,), generator=g))
        if n_gt:
            source = torch.randint(0, n_gt, (n_det,), generator=g)
            det = _jitter(g, gt[source], 0.12)
            right = torch.rand(n_det, generator=g) < 0.8
            labels = torch.where(right, gt_labels[source], torch.randint(0, classes + 1, (n_det,), generator=g))
            stray = torch.rand(n_det, generator=g) < 0.15
            det[stray] = _random_boxes(g, int(stray.sum()))
        else:
            det = _random_boxes(g, n_det)
            labels = torch.randint(0, classes + 1, (n_det,), generator=g)  # class `classes`: only in preds
        if integer:
            gt, det = gt.round(), det.round()
        scores = torch.rand(n_det, generator=g)
        if ties:
            scores = (scores * 3).round() / 3
        preds.append({"boxes": det, "scores": scores, "labels": labels})
        target = {"boxes": gt, "labels": gt_labels}
        if crowd:
            target["iscrowd"] = (torch.rand(n_gt, generator=g) < crowd).long()
        if difficult:
            target["difficult"] = torch.rand(n_gt, generator=g) < difficult
        targets.append(target)
    return preds, targets


def _torchmetrics(preds, targets, backend, **options):
    from torchmetrics.detection import MeanAveragePrecision

    metric = MeanAveragePrecision(backend=backend, **options)
    metric.warn_on_many_detections = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric.update(preds, targets)
        return metric.compute()


def _assert_equal_to_torchmetrics(preds, targets, backend, **options):
    expected = _torchmetrics(preds, targets, backend, **options)
    ours = mean_average_precision(preds, targets, **options)
    assert set(expected) <= set(ours)
    for key, value in expected.items():
        got = ours[key]
        if key in ("map_per_class", "mar_100_per_class", "classes"):
            assert got.dim() == 1  # torchmetrics squeezes a one-element list; we do not
            value = value.reshape(-1)
        else:
            assert got.dim() == 0 and got.dtype == torch.float32, key
        assert got.shape == value.shape, key
        assert torch.allclose(got.double(), value.double(), atol=1e-6, rtol=0), (key, got, value)
    return ours


# ---------------------------------------------------------------------------------------------
# COCO


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", range(6))
def test_coco_equals_torchmetrics_on_random_scenes(seed, backend):
    options = [{}, {"integer": True}, {"integer": True, "ties": True}][seed % 3]
    preds, targets = _scene(seed, **options)
    # and an image with an object of a class never predicted, one with a class never present
    preds.append({"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)})
    targets.append({"boxes": torch.tensor([[10.0, 10, 50, 60]]), "labels": torch.tensor([9]), "iscrowd": torch.tensor([0])})
    preds.append({"boxes": torch.tensor([[10.0, 10, 50, 60]]), "scores": torch.tensor([0.3]), "labels": torch.tensor([8])})
    targets.append({"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long), "iscrowd": torch.zeros(0)})
    ours = _assert_equal_to_torchmetrics(preds, targets, backend, class_metrics=True)
    per_class = dict(zip(ours["classes"].tolist(), ours["map_per_class"].tolist()))
    assert per_class[9] == 0 and per_class[8] == -1
    # the case is a real one: some of everything is measured, and not perfectly
    assert 0.05 < float(ours["map"]) < 0.95 and float(ours["map_50"]) > float(ours["map_75"])
    assert min(float(ours[f"map_{a}"]) for a in ("small", "medium", "large")) > -1


@pytest.mark.parametrize("backend", BACKENDS)
def test_coco_equals_torchmetrics_with_more_than_100_detections_per_image(backend):
    preds, targets = _scene(11, images=3, classes=2, max_dets=400, empty=False)
    assert max(len(p["scores"]) for p in preds) > 200
    for p in preds:  # and more than 100 in one class of one image
        p["labels"][:150] = 0
    ours = _assert_equal_to_torchmetrics(preds, targets, backend, class_metrics=True)
    assert float(ours["mar_1"]) < float(ours["mar_10"]) < float(ours["mar_100"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_coco_equals_torchmetrics_with_equal_scores(backend):
    # every detection scores the same: the order is the input order (pycocotools' mergesort)
    preds, targets = _scene(5, images=5, integer=True, empty=False)
    for p in preds:
        p["scores"] = torch.full_like(p["scores"], 0.5)
    _assert_equal_to_torchmetrics(preds, targets, backend, class_metrics=True)
    reversed_preds = [{k: v.flip(0) for k, v in p.items()} for p in preds]
    a = mean_average_precision(preds, targets)["map"]
    b = mean_average_precision(reversed_preds, targets)["map"]
    assert a != b  # the tie order matters here, so matching torchmetrics above tested it


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("options", [
    {"iou_thresholds": [0.3, 0.5, 0.75, 0.9]},
    {"iou_thresholds": [0.0, 1.0]},
    {"max_detection_thresholds": [2, 5, 100]},
])
def test_coco_equals_torchmetrics_with_other_thresholds(options, backend):
    preds, targets = _scene(21, integer=True)
    _assert_equal_to_torchmetrics(preds, targets, backend, class_metrics=True, **options)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_given_area_decides_the_area_range(backend):
    preds, targets = _scene(8)
    g = torch.Generator().manual_seed(8)
    for t in targets:
        n = len(t["labels"])
        given = torch.rand(n, generator=g) * 12000
        t["area"] = torch.where(torch.rand(n, generator=g) < 0.5, given, torch.zeros(n))  # 0: use the box's
    ours = _assert_equal_to_torchmetrics(preds, targets, backend)
    without = mean_average_precision(preds, [{k: v for k, v in t.items() if k != "area"} for t in targets])
    assert ours["map_small"] != without["map_small"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_coco_equals_torchmetrics_on_empty_sides(backend):
    preds, targets = _scene(2, empty=False)
    no_preds = [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}
                for _ in preds]
    no_targets = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)} for _ in targets]
    nothing_found = _assert_equal_to_torchmetrics(no_preds, targets, backend, class_metrics=True)
    assert float(nothing_found["map"]) == 0 and float(nothing_found["mar_100"]) == 0
    nothing_there = _assert_equal_to_torchmetrics(preds, no_targets, backend, class_metrics=True)
    assert float(nothing_there["map"]) == -1 and nothing_there["map_per_class"].eq(-1).all()
    both_empty = _assert_equal_to_torchmetrics(no_preds[:1], no_targets[:1], backend, class_metrics=True)
    assert both_empty["classes"].numel() == 0


def test_no_images_gives_minus_one_everywhere():
    result = mean_average_precision([], [], class_metrics=True)
    assert all(bool((v == -1).all()) for k, v in result.items() if k != "classes")
    assert result["classes"].numel() == 0 and "mar_100" in result


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_area_on_a_range_boundary_counts_in_both_ranges(backend):
    # 32 x 32 = 32² is small and medium; 96 x 96 = 96² medium and large (both ends included)
    boxes = torch.tensor([[0.0, 0, 32, 32], [100, 100, 196, 196], [0, 200, 16, 264]])  # the last: 16 x 64 = 32²
    target = {"boxes": boxes, "labels": torch.tensor([0, 1, 2])}
    pred = {"boxes": boxes, "scores": torch.tensor([0.9, 0.8, 0.7]), "labels": torch.tensor([0, 1, 2])}
    result = _assert_equal_to_torchmetrics([pred], [target], backend, class_metrics=True)
    assert [float(result[f"map_{a}"]) for a in ("small", "medium", "large")] == [1.0, 1.0, 1.0]
    just_over = {"boxes": boxes + torch.tensor([0.0, 0, 0.01, 0]), "scores": pred["scores"], "labels": pred["labels"]}
    shifted = mean_average_precision([just_over], [{"boxes": just_over["boxes"], "labels": target["labels"]}])
    assert float(shifted["map_small"]) == -1  # all three now have area > 32²


def _rasterise(boxes: torch.Tensor, g: torch.Generator, noise: float = 0.1, size: int = SIZE) -> torch.Tensor:
    """Each box as a mask of the pixels whose centres it holds, with some pixels inside flipped."""
    centres = torch.arange(size) + 0.5
    inside_x = (centres >= boxes[:, 0, None]) & (centres < boxes[:, 2, None])
    inside_y = (centres >= boxes[:, 1, None]) & (centres < boxes[:, 3, None])
    masks = inside_y[:, :, None] & inside_x[:, None, :]
    flip = torch.rand(masks.shape, generator=g) < noise
    return masks ^ (flip & masks)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", range(2))
def test_segm_equals_torchmetrics(seed, backend):
    preds, targets = _scene(30 + seed, images=4, empty=False)  # torchmetrics skips images without masks
    g = torch.Generator().manual_seed(seed)
    for item in preds + targets:
        item["masks"] = _rasterise(item.pop("boxes"), g)
    ours = _assert_equal_to_torchmetrics(preds, targets, backend, iou_type="segm", class_metrics=True)
    assert 0.05 < float(ours["map"]) < 0.95


def test_segm_of_rectangle_masks_equals_bbox():
    # integer boxes rasterised exactly: mask areas and IoUs are the boxes', so every number is;
    # images without ground truth included (torchmetrics' segm leaves those out, we do not)
    preds, targets = _scene(40, integer=True, empty=False)
    targets[0] = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}  # its detections: all false
    g = torch.Generator().manual_seed(0)
    as_masks = [{**{k: v for k, v in item.items() if k != "boxes"}, "masks": _rasterise(item["boxes"], g, 0.0)}
                for item in preds + targets]
    boxes = mean_average_precision(preds, targets, class_metrics=True)
    masks = mean_average_precision(as_masks[:len(preds)], as_masks[len(preds):], iou_type="segm", class_metrics=True)
    assert len(preds[0]["labels"]) > 0 and float(boxes["map"]) > 0.05
    for key in boxes:
        assert torch.equal(boxes[key], masks[key]), key


def test_crowd_regions_absorb_detections_and_are_never_used_up():
    # one object and one crowd region; two detections inside the crowd are ignored, not false
    target = {"boxes": torch.tensor([[0.0, 0, 40, 40], [100, 100, 200, 200]]), "labels": torch.tensor([0, 0]),
              "iscrowd": torch.tensor([0, 1])}
    pred = {"boxes": torch.tensor([[110.0, 110, 150, 150], [0, 0, 40, 40], [150, 150, 190, 190]]),
            "scores": torch.tensor([0.9, 0.8, 0.7]), "labels": torch.tensor([0, 0, 0])}
    assert float(mean_average_precision([pred], [target])["map"]) == pytest.approx(1.0)
    # without the flag the region is an object (area 10000): both inner detections overlap it
    # by 1600 / 10000 = 0.16 and are false positives. FP TP FP with 2 objects: precision
    # 0, 1/2, 1/3 at recall 0, 1/2, 1/2; the envelope is 1/2 up to recall 1/2, so 51 of the 101
    # recall points (0, .01, ..., .50) score 1/2 and AP = 25.5 / 101 at every threshold
    plain = {k: v for k, v in target.items() if k != "iscrowd"}
    result = mean_average_precision([pred], [plain], return_curves=True)
    assert float(result["map"]) == pytest.approx(25.5 / 101)
    recall, precision = result["curves"][0]
    assert recall.tolist() == [0.0, 0.5, 0.5] and precision.tolist() == pytest.approx([0.0, 0.5, 1 / 3])


def test_a_hand_worked_coco_case():
    # one object, one detection of IoU 0.62 (width 10 against 6.2): a hit at the thresholds
    # .50, .55 and .60 and a miss at the seven above, so AP = 3/10 and AP50 = 1, AP75 = 0
    target = {"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "labels": torch.tensor([3])}
    pred = {"boxes": torch.tensor([[0.0, 0.0, 10.0, 6.2]]), "scores": torch.tensor([0.7]), "labels": torch.tensor([3])}
    result = mean_average_precision([pred], [target])
    assert float(result["map"]) == pytest.approx(0.3) and float(result["map_50"]) == 1 and float(result["map_75"]) == 0
    assert float(result["map_small"]) == pytest.approx(0.3) and float(result["map_large"]) == -1
    assert result["classes"].tolist() == [3]


def test_coco_curve_at_half_gives_the_101_point_ap():
    preds, targets = _scene(3, classes=1, empty=False)
    result = mean_average_precision(preds, targets, return_curves=True, iou_thresholds=[0.75])
    recall, precision = result["curves"][0]
    assert torch.all(recall[1:] >= recall[:-1]) and 0 < float(recall[-1]) <= 1
    envelope = np.maximum.accumulate(precision.numpy()[::-1])[::-1]
    points = np.array(torch.linspace(0, 1, 101).tolist())
    at = np.searchsorted(recall.numpy(), points, side="left")
    ap = np.where(at < len(recall), envelope[np.minimum(at, len(recall) - 1)], 0.0).mean()
    assert ap == pytest.approx(float(mean_average_precision(preds, targets)["map_50"]), abs=1e-6)


# ---------------------------------------------------------------------------------------------
# VOC: a reference written from the devkit's definition (VOCevaldet.m / voc_eval.py)


def _devkit_ap(preds, targets, label, eleven_point):
    """voc_eval.py's algorithm for one class, in plain loops: sort by confidence, for each
    detection the image's object of largest overlap, difficult ignored, each object found once."""
    objects = {}
    positives = 0
    for i, t in enumerate(targets):
        keep = (t["labels"] == label).numpy()
        difficult = t.get("difficult", torch.zeros(len(t["labels"]), dtype=torch.bool)).numpy().astype(bool)[keep]
        objects[i] = {"boxes": t["boxes"].numpy()[keep].astype(float), "difficult": difficult,
                      "found": np.zeros(keep.sum(), bool)}
        positives += int((~difficult).sum())
    detections = [(float(s), i, p["boxes"][j].numpy().astype(float))
                  for i, p in enumerate(preds) for j, s in enumerate(p["scores"]) if int(p["labels"][j]) == label]
    order = sorted(range(len(detections)), key=lambda d: -detections[d][0])  # Python's sort is stable
    tp, fp = [], []
    for d in order:
        _, image, box = detections[d]
        gt = objects[image]["boxes"]
        best, best_j = -np.inf, -1
        if len(gt):
            w = np.maximum(np.minimum(gt[:, 2], box[2]) - np.maximum(gt[:, 0], box[0]), 0)
            h = np.maximum(np.minimum(gt[:, 3], box[3]) - np.maximum(gt[:, 1], box[1]), 0)
            inter = w * h
            union = (box[2] - box[0]) * (box[3] - box[1]) + (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1]) - inter
            overlaps = inter / union
            best, best_j = overlaps.max(), int(overlaps.argmax())
        if best >= 0.5:  # the MATLAB devkit's >= (voc_eval.py writes >)
            if objects[image]["difficult"][best_j]:
                tp.append(0), fp.append(0)
            elif not objects[image]["found"][best_j]:
                objects[image]["found"][best_j] = True
                tp.append(1), fp.append(0)
            else:
                tp.append(0), fp.append(1)
        else:
            tp.append(0), fp.append(1)
    if positives == 0:
        return None
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    rec = tp / positives
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    if eleven_point:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            ap += (np.max(prec[rec >= t]) if np.sum(rec >= t) else 0) / 11.0
        return ap
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


@pytest.mark.parametrize("protocol", ["voc07", "voc"])
@pytest.mark.parametrize("seed", range(5))
def test_voc_equals_the_devkit_definition(seed, protocol):
    preds, targets = _scene(50 + seed, images=8, integer=seed % 2 == 1, ties=seed == 3, crowd=0.0, difficult=0.25,
                            max_dets=30)
    result = mean_average_precision(preds, targets, protocol=protocol, class_metrics=True)
    classes = result["classes"].tolist()
    expected = [_devkit_ap(preds, targets, c, protocol == "voc07") for c in classes]
    assert sum(e is not None for e in expected) >= 3 and any(e is None for e in expected)  # a preds-only class
    got = result["map_per_class"].tolist()
    for c, e, o in zip(classes, expected, got):
        assert o == pytest.approx(-1 if e is None else e, abs=1e-6), c
    defined = [e for e in expected if e is not None]
    assert float(result["map"]) == pytest.approx(sum(defined) / len(defined), abs=1e-6)
    assert float(result["map"]) == float(result["map_50"]) and 0.05 < float(result["map"]) < 0.95


def test_a_hand_worked_voc_case():
    # Image A: objects G1 [0,0,10,10], G2 [20,0,30,10] and a difficult G3 [40,0,50,10];
    # image B: object G4 [0,0,10,10]. Six detections of the class, best first:
    #   d1 .9 A on G1: TP | d2 .8 A on G1 again: FP | d3 .7 A on G3: difficult, not counted
    #   d4 .6 B on G4: TP | d5 .5 B on nothing: FP  | d6 .4 A on G2: TP
    # 3 positives. Counted: TP FP TP FP TP -> precision 1, 1/2, 2/3, 1/2, 3/5 at recall
    # 1/3, 1/3, 2/3, 2/3, 1. Envelope: 1, 2/3, 2/3, 3/5, 3/5.
    # VOC2010+: 1/3 * 1 + 1/3 * 2/3 + 1/3 * 3/5 = 34/45.
    # VOC2007: t = 0, .1, .2, .3 -> 1; t = .4, .5, .6 -> 2/3; t = .7, .8, .9, 1 -> 3/5;
    #          (4 + 2 + 2.4) / 11 = 42/55.
    targets = [{"boxes": torch.tensor([[0.0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]]),
                "labels": torch.tensor([1, 1, 1]), "difficult": torch.tensor([False, False, True])},
               {"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([1])}]
    preds = [{"boxes": torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [40, 0, 50, 10], [20, 0, 30, 10]]),
              "scores": torch.tensor([0.9, 0.8, 0.7, 0.4]), "labels": torch.tensor([1, 1, 1, 1])},
             {"boxes": torch.tensor([[0.0, 0, 10, 10], [50, 50, 60, 60]]),
              "scores": torch.tensor([0.6, 0.5]), "labels": torch.tensor([1, 1])}]
    area = mean_average_precision(preds, targets, protocol="voc", return_curves=True)
    assert float(area["map"]) == pytest.approx(34 / 45)
    assert float(mean_average_precision(preds, targets, protocol="voc07")["map"]) == pytest.approx(42 / 55)
    recall, precision = area["curves"][1]
    assert recall.tolist() == pytest.approx([1 / 3, 1 / 3, 2 / 3, 2 / 3, 1])
    assert precision.tolist() == pytest.approx([1, 1 / 2, 2 / 3, 1 / 2, 3 / 5])
    assert _devkit_ap(preds, targets, 1, False) == pytest.approx(34 / 45)  # the reference agrees with the hand


@pytest.mark.parametrize("protocol", ["voc07", "voc", "coco"])
def test_an_overlap_of_exactly_one_half_is_a_hit(protocol):
    # 10 x 5 inside 10 x 10: IoU 50 / 100 = 0.5 exactly; the devkit and COCO accept IoU >= 0.5
    target = {"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([0])}
    pred = {"boxes": torch.tensor([[0.0, 0, 10, 5]]), "scores": torch.tensor([0.5]), "labels": torch.tensor([0])}
    assert float(mean_average_precision([pred], [target], protocol=protocol)["map_50"]) == 1.0


def test_voc_ignores_crowd_and_coco_ignores_difficult():
    preds, targets = _scene(60, crowd=0.3, difficult=0.3)
    no_crowd = [{k: v for k, v in t.items() if k != "iscrowd"} for t in targets]
    no_difficult = [{k: v for k, v in t.items() if k != "difficult"} for t in targets]
    assert torch.equal(mean_average_precision(preds, targets, protocol="voc")["map"],
                       mean_average_precision(preds, no_crowd, protocol="voc")["map"])
    assert torch.equal(mean_average_precision(preds, targets)["map"], mean_average_precision(preds, no_difficult)["map"])


# ---------------------------------------------------------------------------------------------
# Errors name the image, the key and the value


def _one():
    return ([{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "scores": torch.tensor([0.5]), "labels": torch.tensor([1])}],
            [{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([1])}])


@pytest.mark.parametrize("change,message", [
    (lambda p, t: p[0].update(boxes=torch.zeros(1, 5)), r"preds\[0\]\['boxes'\] must be \(N, 4\).*\(1, 5\)"),
    (lambda p, t: t[0].update(boxes=torch.tensor([[5.0, 0, 4, 10]])),
     r"targets\[0\]\['boxes'\]\[0\] = \[5.0, 0.0, 4.0, 10.0\] has x2 < x1"),
    (lambda p, t: p[0].update(boxes=torch.tensor([[0.0, 0, float("nan"), 10]])), r"preds\[0\]\['boxes'\]\[0\] is not finite"),
    (lambda p, t: p.append(p[0]), r"2 preds and 1 targets"),
    (lambda p, t: p[0].pop("scores"), r"preds\[0\] has no 'scores'"),
    (lambda p, t: t[0].pop("labels"), r"targets\[0\] has no 'labels'"),
    (lambda p, t: p[0].update(scores=torch.tensor([0.5, 0.6])), r"preds\[0\]\['scores'\] must hold one value per box \(1\)"),
    (lambda p, t: p[0].update(labels=torch.tensor([1.0])), r"preds\[0\]\['labels'\] must be integer"),
    (lambda p, t: p[0].update(scores=torch.tensor([1])), r"preds\[0\]\['scores'\] must be floating-point"),
    (lambda p, t: t[0].update(iscrowd=torch.tensor([2])), r"targets\[0\]\['iscrowd'\] must hold 0/1 \(or bool\) flags, got 2 at box 0"),
    (lambda p, t: t[0].update(boxes=[[0, 0, 1, 1]]), r"targets\[0\]\['boxes'\] must be a torch.Tensor, got list"),
])
def test_malformed_inputs_are_named(change, message):
    preds, targets = _one()
    change(preds, targets)
    with pytest.raises(ValueError, match=message):
        mean_average_precision(preds, targets)


def test_malformed_arguments_and_masks_are_named():
    preds, targets = _one()
    with pytest.raises(ValueError, match="protocol must be one of coco, voc07, voc, got 'voc12'"):
        mean_average_precision(preds, targets, protocol="voc12")
    with pytest.raises(ValueError, match="iou_thresholds must be a non-empty list of numbers in \\[0, 1\\], got \\[1.5\\]"):
        mean_average_precision(preds, targets, iou_thresholds=[1.5])
    with pytest.raises(ValueError, match="max_detection_thresholds must be a list of 3 positive integers"):
        mean_average_precision(preds, targets, max_detection_thresholds=[1, 10])
    with pytest.raises(ValueError, match="iou_thresholds and max_detection_thresholds are for protocol='coco'"):
        mean_average_precision(preds, targets, protocol="voc", iou_thresholds=[0.5])
    with pytest.raises(ValueError, match=r"preds\[0\] has no 'masks'"):
        mean_average_precision(preds, targets, iou_type="segm")
    preds[0]["masks"], targets[0]["masks"] = torch.zeros(1, 8, 8, dtype=torch.bool), torch.zeros(1, 8, 9, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"preds\[0\]\['masks'\] and targets\[0\]\['masks'\] must have one size"):
        mean_average_precision(preds, targets, iou_type="segm")
    targets[0]["masks"] = torch.zeros(1, 8, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"targets\[0\]\['masks'\] must be \(N, H, W\)"):
        mean_average_precision(preds, targets, iou_type="segm")
    with pytest.raises(ValueError, match="preds must be a list with one dict per image, got dict"):
        mean_average_precision(preds[0], targets)
