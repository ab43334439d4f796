"""The notes' early detection stages: the sliding-window detector (window counts against the closed
form and a brute-force count, patches, training windows, NMS of window scores, and a learned
detector's mAP against random scores on the same windows) and classification + localisation (the
multitask loss against a hand computation, the evaluation by hand, and a learned localiser against
the mean-box and chance baselines).
"""

from __future__ import annotations

import pytest
import torch

from convatlas.data import load_detection
from convatlas.detection.localization import (LocalizationReport, Localizer, evaluate_boxes, evaluate_localizer,
                                              localization_loss, single_object_targets, train_localizer)
from convatlas.detection.sliding_window import (SlidingWindowDetector, WindowClassifier, crop_patches,
                                                detections_from_scores, sample_training_windows, sliding_windows,
                                                train_window_classifier, window_count, window_patches)
from convatlas.metrics.boxes import box_iou
from convatlas.metrics.detection import mean_average_precision


@pytest.fixture(scope="module")
def scenes():
    return load_detection("digit-scenes", num_train=200, num_test=50)


@pytest.fixture(scope="module")
def single_digit():
    return load_detection("digit-scenes", num_train=1500, num_test=300, min_digits=1, max_digits=1)


# --- sliding windows: counts ----------------------------------------------------------------------

def brute_force_count(height, width, sizes, stride):
    """Count the top-left corners one by one."""
    return sum(1 for h, w in sizes for y in range(0, height - h + 1, stride) for x in range(0, width - w + 1, stride))


def test_window_count_is_the_closed_form():
    # 64 x 64, stride 8: 16x16 fits at (48/8 + 1)^2 = 49 places, 32x24 at (32/8 + 1)(40/8 + 1) = 30, 70x8 nowhere
    assert window_count((64, 64), [16, (32, 24), (70, 8)], 8) == 49 + 30 + 0
    # an awkward size and stride: floor((50 - 13) / 3) + 1 = 13 rows, floor((37 - 7) / 3) + 1 = 11 columns
    sizes = [(13, 7), (20, 20), (50, 37)]
    expected = 13 * 11 + (30 // 3 + 1) * (17 // 3 + 1) + 1
    assert window_count((50, 37), sizes, 3) == expected == brute_force_count(50, 37, sizes, 3)
    windows = sliding_windows((50, 37), sizes, 3)
    assert windows.shape == (expected, 4)
    assert bool((windows[:, 2] <= 37).all() and (windows[:, 3] <= 50).all() and (windows[:, :2] >= 0).all())
    assert len({tuple(w) for w in windows.tolist()}) == expected


def test_detector_reports_the_windows_it_classified():
    torch.manual_seed(0)
    sizes = [(14, 10), (20, 8), (40, 40)]
    detector = SlidingWindowDetector(WindowClassifier(11), sizes, stride=5)
    images = torch.randint(0, 256, (3, 1, 48, 56), dtype=torch.uint8)
    result = detector.detect(images)
    assert result.windows_per_image == window_count((48, 56), sizes, 5) == brute_force_count(48, 56, sizes, 5)
    assert detector.window_probabilities(images.float() / 255).shape == (3, result.windows_per_image, 11)
    assert len(result.detections) == 3 and result.seconds_per_image > 0
    for found in result.detections:
        assert set(found) == {"boxes", "scores", "labels"} and found["boxes"].shape[1] == 4
        assert bool((found["scores"][:-1] >= found["scores"][1:]).all())
        assert bool(((found["labels"] >= 1) & (found["labels"] <= 10)).all())


# --- patches and training windows -----------------------------------------------------------------

def test_unfolded_patches_equal_cropped_patches():
    torch.manual_seed(1)
    images = torch.rand(2, 1, 30, 26)
    for size, stride, patch in (((12, 8), 3, 16), ((16, 16), 5, 16)):
        windows = sliding_windows((30, 26), [size], stride)
        unfolded = window_patches(images, size, stride, patch)
        for i in range(2):
            torch.testing.assert_close(unfolded[i], crop_patches(images[i], windows, patch), rtol=0, atol=1e-6)
    # a window of the patch's own size is not resized: the pixels themselves
    windows = sliding_windows((30, 26), [16], 5)
    x1, y1 = int(windows[3, 0]), int(windows[3, 1])
    assert torch.equal(window_patches(images, (16, 16), 5, 16)[0, 3], images[0, :, y1:y1 + 16, x1:x1 + 16])


def test_training_windows_follow_the_iou_rules(scenes):
    data = scenes.train.subset(range(20))
    boxes, labels = sample_training_windows(data, positives_per_box=6, negatives_per_image=10,
                                            generator=torch.Generator().manual_seed(0))
    for i, (b, y) in enumerate(zip(boxes, labels)):
        target = data.target(i)
        iou = box_iou(b, target["boxes"])
        positive = y > 0
        assert int((~positive).sum()) == 10
        assert bool((iou[~positive].max(1).values < 0.3).all())  # negatives: IoU < 0.3 with every box
        best, match = iou[positive].max(1)
        assert bool((best >= 0.5).all())  # positives: IoU >= 0.5, labelled with their box's class
        assert torch.equal(y[positive], target["labels"][match])
        assert int(positive.sum()) <= 6 * len(target["boxes"])
        assert {tuple(g) for g in target["boxes"].tolist()} <= {tuple(p) for p in b[positive].tolist()}


def test_detections_from_scores_by_hand():
    windows = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [30, 30, 40, 40]])
    probs = torch.tensor([[0.1, 0.8, 0.1],   # class 1 at 0.8
                          [0.3, 0.6, 0.1],   # class 1 at 0.6, IoU 81/119 with the first: suppressed
                          [0.2, 0.1, 0.7],   # class 2 at 0.7 on the first's place: another class, kept
                          [0.97, 0.02, 0.01]])  # background: its best object score 0.02 is under the threshold
    found = detections_from_scores(windows, probs, score_threshold=0.05, nms_iou=0.3)
    assert found["boxes"].tolist() == [[0, 0, 10, 10], [0, 0, 10, 10]]
    assert found["scores"].tolist() == pytest.approx([0.8, 0.7])
    assert found["labels"].tolist() == [1, 2]
    assert len(detections_from_scores(windows, probs, max_detections=1)["boxes"]) == 1


@pytest.mark.parametrize("call, message", [
    (lambda: window_count((64, 64), [(0, 4)], 4), "window height must be a positive integer"),
    (lambda: window_count((64, 64), [8], 0), "stride must be a positive integer"),
    (lambda: WindowClassifier(11, patch_size=20), "patch_size must be a multiple of 8"),
    (lambda: SlidingWindowDetector(WindowClassifier(3)).detect(torch.zeros(1, 1, 32, 32)), "images must be uint8"),
])
def test_sliding_window_refuses_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.slow
def test_learned_sliding_window_detector_beats_random_scores(scenes):
    """Measured (200 training scenes, 3 epochs, 778 windows of 5 sizes at stride 4, 16x16 patches):
    VOC mAP@0.5 0.52 on 50 test scenes; the same windows with random scores 0.003."""
    training = train_window_classifier(scenes.train, len(scenes.classes), epochs=3, seed=0)
    assert training.losses[-1] < training.losses[0]
    result = training.detector.detect(scenes.test.images)
    assert result.windows_per_image == 778
    targets = [scenes.test.target(i) for i in range(len(scenes.test))]
    learned = float(mean_average_precision(result.detections, targets, protocol="voc")["map"])
    generator = torch.Generator().manual_seed(0)
    windows = training.detector.windows((64, 64))
    random = [detections_from_scores(windows, torch.rand(len(windows), len(scenes.classes), generator=generator)
                                     .softmax(-1)) for _ in targets]
    baseline = float(mean_average_precision(random, targets, protocol="voc")["map"])
    assert learned >= 0.3 and learned - baseline >= 0.25, (learned, baseline)


# --- classification + localisation ----------------------------------------------------------------

def test_multitask_loss_is_the_hand_computation():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 10, generator=generator)
    labels = torch.randint(0, 10, (6,), generator=generator)
    boxes = torch.rand(6, 4, generator=generator) * 2 - 0.5  # some errors above 1: both pieces of smooth L1
    target = torch.rand(6, 4, generator=generator)
    cross_entropy = -torch.log(torch.exp(logits) / torch.exp(logits).sum(1, keepdim=True))[torch.arange(6), labels]
    difference = (boxes - target).abs()
    smooth = torch.where(difference < 1, 0.5 * difference ** 2, difference - 0.5)
    assert bool((difference >= 1).any() and (difference < 1).any())
    for lam in (0.0, 1.0, 7.5):
        loss = localization_loss(logits, boxes, labels, target, lam=lam, box_loss="smooth_l1")
        torch.testing.assert_close(loss.classification, cross_entropy.mean())
        torch.testing.assert_close(loss.localization, smooth.sum(1).mean())
        torch.testing.assert_close(loss.total, cross_entropy.mean() + lam * smooth.sum(1).mean())
    l2 = localization_loss(logits, boxes, labels, target, lam=2.0, box_loss="l2")
    torch.testing.assert_close(l2.total, cross_entropy.mean() + 2.0 * (difference ** 2).sum(1).mean())


def test_localizer_has_two_heads_on_one_vector():
    model = Localizer(10, in_channels=1, image_size=64, width=8, hidden=32)
    out = model(torch.rand(3, 1, 64, 64))
    assert out["logits"].shape == (3, 10) and out["boxes"].shape == (3, 4)
    vector = model.feature_vector(torch.rand(3, 1, 64, 64))
    assert vector.shape == (3, model.class_head.in_features) == (3, model.box_head[0].in_features)


def test_evaluation_by_hand(single_digit):
    data = single_digit.test.subset(range(4))
    _, truth = single_object_targets(data)
    boxes = truth * 64
    labels = data.labels.clone()
    report = evaluate_boxes(boxes, labels, data)
    assert (report.accuracy, report.mean_iou, report.iou_50, report.num_images) == (1.0, pytest.approx(1.0), 1.0, 4)
    # half of each box: IoU 0.5 exactly, which counts; one label wrong
    half = boxes.clone()
    half[:, 2] = (boxes[:, 0] + boxes[:, 2]) / 2
    labels[0] = labels[0] % 10 + 1
    report = evaluate_boxes(half, labels, data)
    assert report.accuracy == 0.75 and report.mean_iou == pytest.approx(0.5) and report.iou_50 == 1.0


def test_localisation_refuses_scenes_with_several_digits(scenes):
    with pytest.raises(ValueError, match="exactly one object per image; image 0 has 4"):
        single_object_targets(scenes.train)
    with pytest.raises(ValueError, match="box_loss must be one of"):
        localization_loss(torch.zeros(1, 2), torch.zeros(1, 4), torch.zeros(1, dtype=torch.long), torch.zeros(1, 4),
                          box_loss="l1")


@pytest.mark.slow
def test_learned_localizer_beats_the_mean_box_and_chance(single_digit):
    """Measured (1,500 one-digit scenes, 4 epochs, lambda 10, smooth L1; seeds 0 and 1, 2 threads):
    accuracy 0.71 / 0.70 (chance 0.10), mean IoU 0.54 / 0.54, IoU >= 0.5 for 66 / 60% of the 300 test
    scenes; the training set's mean box: mean IoU 0.15, 3% at IoU >= 0.5."""
    _, train_boxes = single_object_targets(single_digit.train)
    mean_box = (train_boxes.mean(0) * 64).expand(len(single_digit.test), 4)
    baseline = evaluate_boxes(mean_box, torch.ones(len(single_digit.test), dtype=torch.long), single_digit.test)
    training = train_localizer(single_digit.train, 10, lam=10.0, epochs=4, seed=0)
    report = evaluate_localizer(training.model, single_digit.test)
    assert isinstance(report, LocalizationReport) and report.num_images == 300
    assert report.accuracy >= 0.35, report
    assert report.mean_iou >= 0.4 and report.mean_iou >= 2 * baseline.mean_iou, (report, baseline)
    assert report.iou_50 - baseline.iou_50 >= 0.3, (report, baseline)
