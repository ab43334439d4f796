"""R-CNN and Fast R-CNN on external proposals: labelling, the SVMs, the ridge regressors, the
warp, and Fast R-CNN's background interval."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from convatlas.detection.faster_rcnn import MiniBackbone
from convatlas.detection.rcnn import RCNN, fast_rcnn, warp_regions
from convatlas.models.features import FeatureExtractor


def test_label_regions_by_best_overlap():
    proposals = [torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 5], [30, 30, 40, 40]])]
    targets = [{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([4])}]
    labels, best, matched = RCNN.label_regions(proposals, targets)
    assert labels.tolist() == [4, 4, 0]  # IoU 1, 0.5 (>= 0.5), 0
    assert best.tolist() == pytest.approx([1.0, 0.5, 0.0])
    assert torch.equal(matched[0], targets[0]["boxes"][0])


def test_svms_separate_separable_classes():
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 8, generator=gen) * 4
    labels = torch.arange(4).repeat_interleave(50)  # 0: background, 1..3 objects
    features = centres[labels] + 0.3 * torch.randn(200, 8, generator=gen)
    model = RCNN(nn.Identity(), 8, 4)
    model.fit_svms(features, labels, positive=labels > 0)
    scores = features @ model.fitted.svm_weight.T + model.fitted.svm_bias
    for cls in range(1, 4):
        assert bool((scores[labels == cls, cls - 1] > 0).all()) and bool((scores[labels != cls, cls - 1] < 0).all())


def test_regressors_are_ridge_regression():
    gen = torch.Generator().manual_seed(1)
    features = torch.randn(60, 5, generator=gen)
    labels = torch.tensor([1, 2] * 30)
    targets = torch.randn(60, 4, generator=gen)
    model = RCNN(nn.Identity(), 5, 3)
    model.fit_svms(features, labels, positive=torch.ones(60, dtype=torch.bool), steps=5)
    model.fit_regressors(features, labels, targets, ridge=10.0)
    for cls in (1, 2):  # numpy's solution of the same normal equations, the bias unshrunk
        x = np.concatenate([features[labels == cls].numpy(), np.ones((30, 1))], 1).astype(np.float64)
        reg = 10.0 * np.eye(6)
        reg[-1, -1] = 0
        expected = np.linalg.solve(x.T @ x + reg, x.T @ targets[labels == cls].numpy())
        np.testing.assert_allclose(model.fitted.regressor[cls - 1].numpy(), expected, rtol=1e-4, atol=1e-5)


def test_warp_with_context_reads_around_the_box():
    """A box warped with ``p`` pixels of context: the box itself fills the central ``S - 2p``."""
    image = torch.zeros(1, 1, 64, 64)
    image[..., 20:40, 10:30] = 1.0  # the object fills its box exactly
    box = [torch.tensor([[10.0, 20, 30, 40]])]
    tight = warp_regions(image, box, 16, context=0.0)[0, 0]
    assert torch.allclose(tight[1:-1, 1:-1], torch.ones(14, 14))  # the border cells blend with the outside
    assert float(tight.min()) > 0.75
    padded = warp_regions(image, box, 16, context=4.0)[0, 0]
    expected = torch.zeros(16, 16)
    expected[4:12, 4:12] = 1.0  # 2.5 image pixels per cell: every sample lands inside or outside the object
    assert torch.allclose(padded, expected)


def test_fast_rcnn_background_starts_at_iou_one_tenth():
    """Fast R-CNN Sec. 2.3: background RoIs have IoU in [0.1, 0.5); a proposal overlapping no box
    by 0.1 is left out of the sample."""
    model = fast_rcnn(FeatureExtractor(MiniBackbone(1), ["conv5"]), 64, "conv5", num_classes=11)
    targets = [{"boxes": torch.tensor([[0.0, 0, 20, 20]]), "labels": torch.tensor([3])}]
    proposals = [torch.tensor([[0.0, 0, 20, 20], [0, 0, 20, 8], [40, 40, 60, 60]])]  # IoU 1, 0.4, 0
    _, labels, _ = model.roi_heads.select_training_samples(proposals, targets)
    assert sorted(labels.tolist()) == [0, 3, 3]  # the far box dropped; the ground truth added
    model.train()
    losses = model(torch.randn(1, 1, 64, 64), proposals, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg"} and all(torch.isfinite(v) for v in losses.values())
    with pytest.raises(ValueError, match="one \\(P, 4\\) tensor per image"):
        model(torch.randn(2, 1, 64, 64), proposals, targets)
