"""The sliding-window detector of the notes: a classifier of fixed-size patches run at every
window position of several window sizes, then non-maximum suppression.

This is detection as it was done before proposals (Viola and Jones 2001; Dalal and Triggs 2005;
with a CNN, Sermanet et al.'s OverFeat 2013, arXiv:1312.6229, which also showed how to share the
computation): slide windows of sizes ``(h_1, w_1) .. (h_S, w_S)`` with stride ``s`` over an
``H x W`` image, cut each window out, resize it to the classifier's ``p x p`` input, and classify
it as background or one of the object classes. A window's score is the softmax probability of its
best object class, its label that class; NMS per class keeps the best of overlapping windows.

The number of windows is what makes it slow (the notes' point, and why R-CNN turned to a few
thousand proposals): a window of ``h x w`` fits at ``floor((H - h) / s) + 1`` rows and
``floor((W - w) / s) + 1`` columns, so an image has

    N = sum_k (floor((H - h_k) / s) + 1) (floor((W - w_k) / s) + 1)     (0 for a window larger than the image)

windows, each a full forward pass of the classifier.

Training (a plain small loop, seeded): patches cut from a :class:`~convatlas.data.boxes.BoxSet` -
positives are jittered windows around each ground-truth box with IoU >= 0.5 to it (labelled with
its class), negatives are random windows of the sliding grid with IoU < 0.3 to every ground-truth
box (labelled background, 0); windows in between are not used, as in R-CNN's SVM training.

Windows are cut and resized the same way in training and detection: the integer window of the
image, resized to ``p x p`` with antialiased bilinear interpolation. In detection the windows of
one size come out of the whole batch at once with ``unfold``.

The defaults fit the 64 x 64 ``digit-scenes``: windows of 14x10, 20x14, 26x20, 20x8 and 28x12
(height x width) pixels at stride 4 (778 windows; 96% of the test boxes have a window with IoU >= 0.5).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from convatlas._checks import fraction, non_negative_int, positive_int, positive_number
from convatlas.data.boxes import BoxSet
from convatlas.detection.boxes import batched_nms
from convatlas.layers import ConvNormAct
from convatlas.metrics.boxes import box_iou

__all__ = ["DEFAULT_WINDOW_SIZES", "SlidingWindowDetector", "SlidingWindowResult", "WindowClassifier",
           "WindowTraining", "crop_patches", "detections_from_scores", "sample_training_windows", "sliding_windows",
           "train_window_classifier", "window_count", "window_patches"]

DEFAULT_WINDOW_SIZES = ((14, 10), (20, 14), (26, 20), (20, 8), (28, 12))  # (height, width), pixels


def _check_sizes(window_sizes: Sequence[int | Sequence[int]]) -> tuple[tuple[int, int], ...]:
    """Window sizes as ``(height, width)`` pairs (an int is a square)."""
    sizes = []
    for size in window_sizes:
        pair = (size, size) if isinstance(size, int) else tuple(size)
        if len(pair) != 2:
            raise ValueError(f"a window size must be an int or (height, width), got {size!r}")
        sizes.append((positive_int("window height", pair[0]), positive_int("window width", pair[1])))
    if not sizes:
        raise ValueError("window_sizes must name at least one window size")
    return tuple(sizes)


def window_count(image_size: Sequence[int], window_sizes: Sequence[int | Sequence[int]], stride: int) -> int:
    """The closed form ``sum_k (floor((H - h_k) / s) + 1) (floor((W - w_k) / s) + 1)`` over the
    window sizes that fit in the ``(H, W)`` image."""
    height, width = (positive_int("image height", image_size[0]), positive_int("image width", image_size[1]))
    positive_int("stride", stride)
    return sum(((height - h) // stride + 1) * ((width - w) // stride + 1)
               for h, w in _check_sizes(window_sizes) if h <= height and w <= width)


def sliding_windows(image_size: Sequence[int], window_sizes: Sequence[int | Sequence[int]],
                    stride: int) -> torch.Tensor:
    """``(N, 4)`` float32 xyxy windows: for each size in turn, positions row by row (top-left corners
    ``(x, y) = (j s, i s)``), the order :func:`window_patches` cuts them in."""
    height, width = int(image_size[0]), int(image_size[1])
    positive_int("stride", stride)
    out = []
    for h, w in _check_sizes(window_sizes):
        if h > height or w > width:
            continue
        ys = torch.arange(0, height - h + 1, stride, dtype=torch.float32)
        xs = torch.arange(0, width - w + 1, stride, dtype=torch.float32)
        y, x = torch.meshgrid(ys, xs, indexing="ij")
        out.append(torch.stack([x, y, x + w, y + h], -1).reshape(-1, 4))
    return torch.cat(out) if out else torch.zeros(0, 4)


# --- cutting patches ---------------------------------------------------------------------------------

def _resize(patches: torch.Tensor, patch_size: int) -> torch.Tensor:
    return F.interpolate(patches, size=(patch_size, patch_size), mode="bilinear", align_corners=False, antialias=True)


def window_patches(images: torch.Tensor, size: tuple[int, int], stride: int, patch_size: int) -> torch.Tensor:
    """Every ``h x w`` window at stride ``s`` of float ``(N, C, H, W)`` images, resized to ``p x p``:
    ``(N, L, C, p, p)`` with the ``L`` positions row by row (``unfold``, one batched resize)."""
    n, c = images.shape[:2]
    h, w = size
    columns = F.unfold(images, kernel_size=(h, w), stride=stride)  # (N, C h w, L)
    count = columns.shape[-1]
    patches = columns.transpose(1, 2).reshape(n * count, c, h, w)
    return _resize(patches, patch_size).view(n, count, c, patch_size, patch_size)


def crop_patches(image: torch.Tensor, boxes: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Integer xyxy ``boxes`` ``(K, 4)`` cut from one float ``(C, H, W)`` image and resized to
    ``p x p``: ``(K, C, p, p)``, boxes of one size resized together."""
    boxes = boxes.round().long()
    height, width = image.shape[-2:]
    inside = (boxes[:, 0] >= 0) & (boxes[:, 1] >= 0) & (boxes[:, 2] <= width) & (boxes[:, 3] <= height)
    if boxes.numel() and not bool((inside & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all()):
        raise ValueError(f"boxes must be non-empty and inside the {width}x{height} image once rounded to pixels")
    out = image.new_zeros((len(boxes), image.shape[0], patch_size, patch_size))
    sizes = torch.stack([boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]], 1)
    for h, w in torch.unique(sizes, dim=0).tolist():
        mine = torch.where((sizes[:, 0] == h) & (sizes[:, 1] == w))[0]
        crops = torch.stack([image[:, y1:y1 + h, x1:x1 + w] for x1, y1, _, _ in boxes[mine].tolist()])
        out[mine] = _resize(crops, patch_size)
    return out


# --- the classifier ----------------------------------------------------------------------------------

class WindowClassifier(nn.Module):
    """A small CNN over ``p x p`` patches: three blocks of 3x3 conv-BN-ReLU and 2x2 max pooling
    (``width``, ``2 width``, ``4 width`` channels), then a linear layer to ``num_classes`` logits
    (class 0 the background)."""

    def __init__(self, num_classes: int, in_channels: int = 1, patch_size: int = 16, width: int = 8):
        super().__init__()
        positive_int("num_classes", num_classes)
        positive_int("patch_size", patch_size)
        if patch_size % 8:
            raise ValueError(f"patch_size must be a multiple of 8 (three 2x2 poolings), got {patch_size}")
        self.patch_size = patch_size
        self.features = nn.Sequential(
            ConvNormAct(in_channels, width), nn.MaxPool2d(2),
            ConvNormAct(width, 2 * width), nn.MaxPool2d(2),
            ConvNormAct(2 * width, 4 * width), nn.MaxPool2d(2),
        )
        self.classifier = nn.Linear(4 * width * (patch_size // 8) ** 2, num_classes)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(patches).flatten(1))


# --- detection ---------------------------------------------------------------------------------------

@dataclass
class SlidingWindowResult:
    """Detections per image in torchvision's format (``boxes`` ``(D, 4)`` xyxy, ``scores``,
    ``labels``), with the ``windows_per_image`` classified and the ``seconds_per_image`` it took."""

    detections: list[dict[str, torch.Tensor]]
    windows_per_image: int
    seconds_per_image: float
    image_size: tuple[int, int]


def detections_from_scores(windows: torch.Tensor, probabilities: torch.Tensor, score_threshold: float = 0.05,
                           nms_iou: float = 0.3, max_detections: int = 100) -> dict[str, torch.Tensor]:
    """One image's detections from its windows ``(K, 4)`` and class probabilities ``(K, C)`` (column
    0 the background): score ``max_{c >= 1} p_c``, label its ``c``; windows scoring at most
    ``score_threshold`` dropped; NMS per class at ``IoU > nms_iou``; the best ``max_detections`` kept."""
    fraction("score_threshold", score_threshold)
    fraction("nms_iou", nms_iou, closed=True)
    positive_int("max_detections", max_detections)
    scores, labels = probabilities[:, 1:].max(1)
    labels = labels + 1
    keep = torch.where(scores > score_threshold)[0]
    boxes, scores, labels = windows[keep], scores[keep], labels[keep]
    kept = batched_nms(boxes, scores, labels, nms_iou)[:max_detections]
    return {"boxes": boxes[kept], "scores": scores[kept], "labels": labels[kept]}


def _as_float_images(images: torch.Tensor) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be uint8 (N, C, H, W), got {got}")
    return images.float() / 255


class SlidingWindowDetector(nn.Module):
    """A :class:`WindowClassifier` and the windows it is slid over (``window_sizes`` as
    ``(height, width)``, ``stride``); :meth:`detect` runs it on uint8 images."""

    def __init__(self, classifier: WindowClassifier, window_sizes: Sequence[int | Sequence[int]] = DEFAULT_WINDOW_SIZES,
                 stride: int = 4):
        super().__init__()
        self.classifier = classifier
        self.window_sizes = _check_sizes(window_sizes)
        self.stride = positive_int("stride", stride)

    def windows(self, image_size: Sequence[int]) -> torch.Tensor:
        return sliding_windows(image_size, self.window_sizes, self.stride)

    @torch.no_grad()
    def window_probabilities(self, images: torch.Tensor, batch_windows: int = 4096) -> torch.Tensor:
        """``(N, K, C)`` softmax class probabilities of every window of float ``(N, C_in, H, W)`` images,
        windows in the order of :meth:`windows`; at most about ``batch_windows`` patches per forward pass."""
        height, width = images.shape[-2:]
        per_size = []
        for h, w in self.window_sizes:
            if h > height or w > width:
                continue
            count = ((height - h) // self.stride + 1) * ((width - w) // self.stride + 1)
            chunk = max(1, batch_windows // count)
            probs = []
            for part in images.split(chunk):
                patches = window_patches(part, (h, w), self.stride, self.classifier.patch_size)
                logits = self.classifier(patches.flatten(0, 1)).view(len(part), count, -1)
                probs.append(logits.softmax(-1))
            per_size.append(torch.cat(probs))
        return torch.cat(per_size, 1)

    @torch.no_grad()
    def detect(self, images: torch.Tensor, score_threshold: float = 0.05, nms_iou: float = 0.3,
               max_detections: int = 100, batch_windows: int = 4096) -> SlidingWindowResult:
        """Detections on uint8 ``(N, C, H, W)`` images (see :func:`detections_from_scores`)."""
        start = time.perf_counter()
        x = _as_float_images(images)
        was_training = self.training
        self.eval()
        try:
            probabilities = self.window_probabilities(x, batch_windows)
        finally:
            self.train(was_training)
        windows = self.windows(x.shape[-2:])
        detections = [detections_from_scores(windows, p, score_threshold, nms_iou, max_detections)
                      for p in probabilities]
        seconds = (time.perf_counter() - start) / max(len(images), 1)
        return SlidingWindowResult(detections, len(windows), seconds, (int(x.shape[-2]), int(x.shape[-1])))


# --- training ----------------------------------------------------------------------------------------

def _jitter(boxes: torch.Tensor, copies: int, generator: torch.Generator, shift: float = 0.2,
            log_scale: float = 0.3) -> torch.Tensor:
    """``copies`` random boxes around each box: centre moved by up to ``shift`` of the size, width and
    height scaled by ``exp(U(-log_scale, log_scale))``, rounded to whole pixels. ``(copies, K, 4)``."""
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    cx, cy = boxes[:, 0] + width / 2, boxes[:, 1] + height / 2
    u = torch.rand(copies, len(boxes), 4, generator=generator) * 2 - 1
    cx, cy = cx + u[..., 0] * shift * width, cy + u[..., 1] * shift * height
    width, height = width * torch.exp(u[..., 2] * log_scale), height * torch.exp(u[..., 3] * log_scale)
    out = torch.stack([cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2], -1)
    return out.round()


def sample_training_windows(data: BoxSet, window_sizes: Sequence[int | Sequence[int]] = DEFAULT_WINDOW_SIZES,
                            stride: int = 4, positives_per_box: int = 8, negatives_per_image: int = 16,
                            positive_iou: float = 0.5, negative_iou: float = 0.3,
                            generator: torch.Generator | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per image, training windows ``(K_i, 4)`` and their labels ``(K_i,)``.

    Positives: each ground-truth box itself and up to ``positives_per_box - 1`` jittered windows whose
    best-overlapping ground truth is that box with IoU >= ``positive_iou``, labelled with its class.
    Negatives: ``negatives_per_image`` windows of the sliding grid drawn at random among those with
    IoU < ``negative_iou`` to every ground-truth box, labelled 0 (background).
    """
    positive_int("positives_per_box", positives_per_box)
    non_negative_int("negatives_per_image", negatives_per_image)
    if not 0 <= negative_iou <= positive_iou <= 1:
        raise ValueError(f"expected 0 <= negative_iou <= positive_iou <= 1, got {negative_iou} and {positive_iou}")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    height, width = data.images.shape[-2:]
    grid = sliding_windows((height, width), window_sizes, stride)
    limit = torch.tensor([width, height, width, height], dtype=torch.float32)
    all_boxes, all_labels = [], []
    for i in range(len(data)):
        target = data.target(i)
        gt, gt_labels = target["boxes"], target["labels"]
        boxes, labels = [grid[:0]], [gt_labels[:0]]
        if len(gt):
            candidates = _jitter(gt, 4 * positives_per_box, generator)  # (copies, G, 4)
            candidates = torch.minimum(candidates.clamp(min=0), limit)
            source = torch.arange(len(gt)).expand(candidates.shape[:2])
            candidates, source = candidates.reshape(-1, 4), source.reshape(-1)
            valid = (candidates[:, 2] - candidates[:, 0] >= 2) & (candidates[:, 3] - candidates[:, 1] >= 2)
            candidates, source = candidates[valid], source[valid]
            best, match = box_iou(candidates, gt).max(1)
            good = (best >= positive_iou) & (match == source)
            whole = gt.round()
            whole_ok = (whole[:, 2] > whole[:, 0]) & (whole[:, 3] > whole[:, 1])
            for g in range(len(gt)):
                mine = candidates[good & (source == g)][: positives_per_box - 1]
                mine = torch.cat([whole[g:g + 1], mine]) if whole_ok[g] else mine
                boxes.append(mine)
                labels.append(gt_labels[g].repeat(len(mine)))
        far = box_iou(grid, gt).max(1).values < negative_iou if len(gt) else torch.ones(len(grid), dtype=torch.bool)
        pool = torch.where(far)[0]
        chosen = pool[torch.randperm(len(pool), generator=generator)[:negatives_per_image]]
        boxes.append(grid[chosen])
        labels.append(torch.zeros(len(chosen), dtype=torch.int64))
        all_boxes.append(torch.cat(boxes))
        all_labels.append(torch.cat(labels))
    return all_boxes, all_labels


@dataclass
class WindowTraining:
    """What :func:`train_window_classifier` made: the ``detector``, the loss of each epoch (mean over
    its batches), the number of positive and negative patches, and the seconds it took."""

    detector: SlidingWindowDetector
    losses: list[float] = field(default_factory=list)
    num_positives: int = 0
    num_negatives: int = 0
    seconds: float = 0.0


def train_window_classifier(data: BoxSet, num_classes: int, *,
                            window_sizes: Sequence[int | Sequence[int]] = DEFAULT_WINDOW_SIZES, stride: int = 4,
                            patch_size: int = 16, width: int = 8, epochs: int = 4, batch_size: int = 128,
                            lr: float = 3e-3, positives_per_box: int = 8, negatives_per_image: int = 16,
                            seed: int = 0) -> WindowTraining:
    """Train a :class:`WindowClassifier` (``num_classes`` including the background, as
    ``len(DetectionSplits.classes)``) on windows of ``data`` (see :func:`sample_training_windows`):
    Adam at ``lr``, cross-entropy, ``epochs`` passes in shuffled batches, everything drawn from
    ``seed`` (the global random state is left as it was)."""
    start = time.perf_counter()
    positive_int("epochs", epochs)
    positive_int("batch_size", batch_size)
    positive_number("lr", lr)
    non_negative_int("seed", seed)
    if len(data) == 0:
        raise ValueError("data has no images to cut training windows from")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        boxes, labels = sample_training_windows(data, window_sizes, stride, positives_per_box, negatives_per_image,
                                                generator=generator)
        images = _as_float_images(data.images)
        patches = torch.cat([crop_patches(images[i], b, patch_size) for i, b in enumerate(boxes)])
        targets = torch.cat(labels)
        classifier = WindowClassifier(num_classes, images.shape[1], patch_size, width)
        optimiser = torch.optim.Adam(classifier.parameters(), lr=lr)
        losses = []
        classifier.train()
        for _ in range(epochs):
            order = torch.randperm(len(targets), generator=generator)
            total = 0.0
            for batch in order.split(batch_size):
                loss = F.cross_entropy(classifier(patches[batch]), targets[batch])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += loss.item() * len(batch)
            losses.append(total / len(targets))
    classifier.eval()
    detector = SlidingWindowDetector(classifier, window_sizes, stride)
    positives = int((targets > 0).sum())
    return WindowTraining(detector, losses, positives, len(targets) - positives, time.perf_counter() - start)
