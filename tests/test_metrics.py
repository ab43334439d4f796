"""Metrics against torchmetrics and scikit-learn: top-k accuracy, the confusion matrix, per-class accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convatlas.metrics import confusion_matrix, per_class_accuracy, topk_correct


@pytest.mark.parametrize("classes", [3, 10, 100])
def test_topk_and_confusion_equal_torchmetrics_and_sklearn(classes):
    from sklearn.metrics import confusion_matrix as sk_confusion
    from torchmetrics.functional.classification import multiclass_accuracy

    g = torch.Generator().manual_seed(classes)
    scores = torch.randn(500, classes, generator=g)
    targets = torch.randint(0, classes, (500,), generator=g)
    top1, top5 = topk_correct(scores, targets, (1, 5))
    assert int(top1) / 500 == pytest.approx(float(multiclass_accuracy(scores, targets, classes, average="micro")))
    k = min(5, classes)
    assert int(top5) / 500 == pytest.approx(float(multiclass_accuracy(scores, targets, classes, average="micro", top_k=k)))
    confusion = confusion_matrix(scores.argmax(1), targets, classes)
    assert np.array_equal(confusion.numpy(), sk_confusion(targets.numpy(), scores.argmax(1).numpy(), labels=range(classes)))
    per_class = multiclass_accuracy(scores, targets, classes, average=None)
    present = torch.bincount(targets, minlength=classes) > 0
    assert per_class_accuracy(confusion)[present].tolist() == pytest.approx(per_class[present].tolist())


def test_a_class_with_no_examples_has_no_accuracy():
    confusion = confusion_matrix(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]), 3)
    accuracy = per_class_accuracy(confusion)
    assert accuracy[:2].tolist() == [0.5, 1.0] and torch.isnan(accuracy[2])


# ---------------------------------------------------------------------------------------------
# Segmentation: the FCN paper's four numbers and per-class IoU, against torchmetrics.


def _random_segmentation(seed: int, classes: int, shape=(4, 23, 31), ignore_fraction=0.1, absent=()):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, classes, shape, generator=g)
    # predictions right about 60% of the time, so the scores are far from 0 and 1
    pred = torch.where(torch.rand(shape, generator=g) < 0.6, target, torch.randint(0, classes, shape, generator=g))
    for c in absent:  # a class no pixel has, in truth or prediction
        target[target == c] = (c + 1) % classes
        pred[pred == c] = (c + 1) % classes
    target[torch.rand(shape, generator=g) < ignore_fraction] = 255
    return pred, target


@pytest.mark.parametrize("seed,classes,absent", [(0, 2, ()), (1, 11, ()), (2, 21, ()), (3, 11, (4, 7))])
def test_segmentation_scores_equal_torchmetrics(seed, classes, absent):
    from torchmetrics.functional.classification import multiclass_accuracy, multiclass_jaccard_index

    from convatlas.metrics import segmentation_scores

    pred, target = _random_segmentation(seed, classes, absent=absent)
    scores = segmentation_scores(pred, target, classes, ignore_index=255)
    tm = dict(num_classes=classes, ignore_index=255)
    assert scores["miou"] == pytest.approx(float(multiclass_jaccard_index(pred, target, average="macro", **tm)))
    assert scores["fwiou"] == pytest.approx(float(multiclass_jaccard_index(pred, target, average="weighted", **tm)))
    assert scores["pixel_acc"] == pytest.approx(float(multiclass_accuracy(pred, target, average="micro", **tm)))
    per_class = multiclass_jaccard_index(pred, target, average="none", **tm)
    present = [c for c in range(classes) if c not in absent]
    assert [scores["iou"][c] for c in present] == pytest.approx(per_class[present].tolist())
    assert all(np.isnan(scores["iou"][c]) for c in absent)
    # mean accuracy: every class present in the ground truth here, so torchmetrics' macro agrees
    assert scores["mean_acc"] == pytest.approx(float(multiclass_accuracy(pred, target, average="macro", **tm)))


def test_segmentation_mean_accuracy_leaves_out_classes_absent_from_the_truth():
    """FCN's mean accuracy is nanmean(diag / row sums): a class that is predicted but never true
    has no accuracy (torchmetrics' macro accuracy would count it as 0)."""
    from convatlas.metrics import segmentation_scores

    target = torch.tensor([[0, 0, 1, 1]])
    pred = torch.tensor([[0, 2, 1, 1]])  # class 2 predicted once, never true
    s = segmentation_scores(pred, target, 3)
    assert s["mean_acc"] == pytest.approx((1 / 2 + 1) / 2)
    assert s["pixel_acc"] == pytest.approx(3 / 4)
    assert s["iou"][0] == pytest.approx(1 / 2) and s["iou"][1] == 1 and s["iou"][2] == 0
    assert s["miou"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert s["fwiou"] == pytest.approx((2 * 0.5 + 2 * 1) / 4)


def test_segmentation_scores_take_logits_and_reject_bad_labels():
    from convatlas.metrics import segmentation_confusion, segmentation_scores

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 8, 8, generator=g)
    target = torch.randint(0, 5, (2, 8, 8), generator=g)
    assert segmentation_scores(logits, target, 5) == segmentation_scores(logits.argmax(1), target, 5)
    assert int(segmentation_confusion(logits, target, 5).sum()) == target.numel()
    with pytest.raises(ValueError, match="class 7, outside 0..4"):
        segmentation_confusion(logits, torch.full((2, 8, 8), 7), 5)
    with pytest.raises(ValueError, match="does not match"):
        segmentation_confusion(logits.argmax(1), target[:, :4], 5)


def test_class_map_is_argmax_with_first_index_on_ties():
    from convatlas.metrics import class_map

    torch.manual_seed(0)
    scores = torch.randn(3, 11, 17, 9)
    assert torch.equal(class_map(scores), scores.argmax(1))
    scores[:, 4] = scores[:, 7] = scores.amax(1) + 1  # a tie: the first of the two wins, as argmax's
    assert torch.equal(class_map(scores), torch.full((3, 17, 9), 4)) and torch.equal(class_map(scores), scores.argmax(1))
    assert torch.equal(class_map(scores.contiguous(memory_format=torch.channels_last)), scores.argmax(1))


# ---------------------------------------------------------------------------------------------
# Box geometry


def test_box_iou_and_area_equal_torchvision_ops():
    from torchvision.ops import box_area as tv_area, box_iou as tv_iou

    from convatlas.metrics import box_area, box_iou

    g = torch.Generator().manual_seed(0)
    xy = torch.rand(40, 2, generator=g) * 50
    a = torch.cat([xy, xy + torch.rand(40, 2, generator=g) * 30 + 0.5], 1)
    xy = torch.rand(25, 2, generator=g) * 50
    b = torch.cat([xy, xy + torch.rand(25, 2, generator=g) * 30 + 0.5], 1)
    b[3] = a[5]  # one exact overlap: IoU 1
    assert torch.allclose(box_area(a), tv_area(a))
    iou = box_iou(a, b)
    assert torch.allclose(iou, tv_iou(a, b), atol=1e-6)
    assert iou[5, 3].item() == pytest.approx(1.0)
    assert (iou == 0).any() and (iou > 0).any()


def test_box_iou_of_empty_boxes_is_zero_and_finite_in_the_gradient():
    from convatlas.metrics import box_iou

    a = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 2.0, 2.0]], requires_grad=True)
    b = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 3.0, 3.0]])
    iou = box_iou(a, b)
    assert iou[0, 0].item() == 0.0  # both empty: no union, no overlap
    assert iou[1, 1].item() == pytest.approx(1 / 7)  # 1 in common of 4 + 4 - 1
    iou.sum().backward()
    assert torch.isfinite(a.grad).all()
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        box_iou(torch.zeros(3), b)
