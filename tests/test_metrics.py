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
