"""Classification plus localisation: the notes' first step towards detection, one object per image.

A CNN computes one feature vector of the image; two heads read it (as in OverFeat, Sermanet et al.
2013, arXiv:1312.6229, and the localisation track of ImageNet):

* a class head: ``K`` scores, softmax and cross-entropy, ``L_cls = -log p_y``;
* a box head: 4 numbers, the box ``(x1 / W, y1 / H, x2 / W, y2 / H)`` normalised to the image,
  with an L2 loss ``L_loc = sum_{i=1..4} (b_i - b*_i)^2`` or Fast R-CNN's smooth L1
  ``L_loc = sum_i smoothL1(b_i - b*_i)``, ``smoothL1(d) = 0.5 d^2 / beta`` if ``|d| < beta``, else
  ``|d| - 0.5 beta`` (Girshick 2015, arXiv:1504.08083, Eq. 3, ``beta = 1``).

They are trained together on the multitask loss

    L = L_cls + lambda L_loc

averaged over the images of a batch. ``lambda`` weighs the box against the class: with
normalised coordinates a box off by a tenth of the image in every coordinate costs
``L_loc = 4 x 0.01 = 0.04`` (L2), against a cross-entropy near 2.3 at chance, so it is ``lambda``
that decides how much the shared features serve the box. Fast R-CNN uses ``lambda = 1`` with
its targets normalised to unit variance; here the default is ``lambda = 10``, a balance measured on
the digit-scenes (1,500 one-digit training scenes, 4 epochs, smooth L1, seed 0; 300 test scenes):

=========== ======== ========= ==============
lambda      accuracy mean IoU  IoU >= 0.5
=========== ======== ========= ==============
0           0.75     0.01      0.00
1           0.71     0.48      0.49
3           0.57     0.46      0.42
10          0.66     0.53      0.63
30          0.46     0.58      0.74
10 (L2)     0.51     0.56      0.70
=========== ======== ========= ==============

(the training set's mean box scores a mean IoU of 0.15; chance accuracy is 0.10).

The data are ``digit-scenes`` with exactly one digit each
(``load_detection("digit-scenes", min_digits=1, max_digits=1)``); a :class:`BoxSet` whose images
do not each hold exactly one box is refused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from convatlas._checks import non_negative, non_negative_int, one_of, positive_int, positive_number
from convatlas.data.boxes import BoxSet
from convatlas.layers import ConvNormAct
from convatlas.metrics.boxes import box_iou

__all__ = ["BOX_LOSSES", "LocalizationLoss", "LocalizationReport", "Localizer", "LocalizerTraining",
           "evaluate_boxes", "evaluate_localizer", "localization_loss", "single_object_targets", "train_localizer"]

BOX_LOSSES = ("l2", "smooth_l1")


class Localizer(nn.Module):
    """A small CNN with two heads on one feature vector.

    ``features``: a 5x5 stride-2 conv-BN-ReLU (``width`` channels), then three 2x2 max poolings, each
    followed by a 3x3 conv-BN-ReLU (``2 width``, ``4 width``, ``4 width`` channels): a map of
    ``image_size / 16`` squared cells. The feature vector is that map's global maximum per channel
    (what is in the image, wherever it is) next to the map flattened (where it is).
    ``class_head``: a linear layer to ``num_classes`` scores (the object classes; no background,
    every image holds an object). ``box_head``: a ``hidden``-wide ReLU layer and a linear layer to
    the 4 normalised box coordinates. ``forward`` returns ``{"logits": (N, K), "boxes": (N, 4)}``.
    """

    def __init__(self, num_classes: int, in_channels: int = 1, image_size: int = 64, width: int = 16,
                 hidden: int = 128):
        super().__init__()
        positive_int("num_classes", num_classes)
        positive_int("image_size", image_size)
        if image_size % 16:
            raise ValueError(f"image_size must be a multiple of 16 (a stride 2 and three 2x2 poolings), "
                             f"got {image_size}")
        self.features = nn.Sequential(
            ConvNormAct(in_channels, width, 5, stride=2, padding=2),
            nn.MaxPool2d(2), ConvNormAct(width, 2 * width),
            nn.MaxPool2d(2), ConvNormAct(2 * width, 4 * width),
            nn.MaxPool2d(2), ConvNormAct(4 * width, 4 * width),
        )
        size = 4 * width * (1 + (image_size // 16) ** 2)
        self.class_head = nn.Linear(size, num_classes)
        self.box_head = nn.Sequential(nn.Linear(size, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 4))

    def feature_vector(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, 4 width (1 + cells))``: the map's channel maxima, then the map flattened."""
        cells = self.features(images)
        return torch.cat([cells.amax((2, 3)), cells.flatten(1)], 1)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        vector = self.feature_vector(images)
        return {"logits": self.class_head(vector), "boxes": self.box_head(vector)}


@dataclass
class LocalizationLoss:
    """The multitask loss ``total = classification + lam * localization`` (0-dim tensors)."""

    total: torch.Tensor
    classification: torch.Tensor
    localization: torch.Tensor


def localization_loss(logits: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, target_boxes: torch.Tensor,
                      lam: float = 10.0, box_loss: str = "smooth_l1", beta: float = 1.0) -> LocalizationLoss:
    """``L = L_cls + lam L_loc`` over a batch: ``L_cls`` the mean cross-entropy of ``logits`` ``(N, K)``
    against class indices ``labels`` ``(N,)`` in ``0 .. K - 1`` (a BoxSet's labels minus 1);
    ``L_loc`` the mean over images of the sum over the 4 coordinates of ``box_loss`` (``"l2"``
    squared error or ``"smooth_l1"`` with ``beta``) between ``boxes`` and ``target_boxes`` ``(N, 4)``."""
    one_of("box_loss", box_loss, BOX_LOSSES)
    non_negative("lam", lam)
    positive_number("beta", beta)
    if boxes.shape != target_boxes.shape or boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes and target_boxes must both be (N, 4), got {tuple(boxes.shape)} and "
                         f"{tuple(target_boxes.shape)}")
    if logits.dim() != 2 or labels.shape != (logits.shape[0],) or logits.shape[0] != boxes.shape[0]:
        raise ValueError(f"logits must be (N, K) and labels (N,) for the N = {boxes.shape[0]} boxes, got "
                         f"{tuple(logits.shape)} and {tuple(labels.shape)}")
    classification = F.cross_entropy(logits, labels)
    if box_loss == "l2":
        per_coordinate = F.mse_loss(boxes, target_boxes, reduction="none")
    else:
        per_coordinate = F.smooth_l1_loss(boxes, target_boxes, reduction="none", beta=beta)
    localization = per_coordinate.sum(1).mean()
    return LocalizationLoss(classification + lam * localization, classification, localization)


# --- data --------------------------------------------------------------------------------------------

def single_object_targets(data: BoxSet) -> tuple[torch.Tensor, torch.Tensor]:
    """Class indices ``(N,)`` (label - 1: the object classes from 0) and boxes normalised to the image
    ``(N, 4)`` of a set whose every image holds exactly one object."""
    counts = data.offsets.diff()
    if bool((counts != 1).any()):
        i = int((counts != 1).nonzero()[0, 0])
        raise ValueError(f"classification + localisation needs exactly one object per image; image {i} has "
                         f"{int(counts[i])} (load digit-scenes with min_digits=1, max_digits=1)")
    height, width = data.images.shape[-2:]
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    return data.labels - 1, data.boxes / scale


def _as_input(images: torch.Tensor) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be uint8 (N, C, H, W), got {got}")
    return images.float() / 255


# --- training and evaluation -------------------------------------------------------------------------

@dataclass
class LocalizerTraining:
    """What :func:`train_localizer` made: the ``model`` and, per epoch, the mean total,
    classification and localisation losses."""

    model: Localizer
    losses: list[float] = field(default_factory=list)
    classification_losses: list[float] = field(default_factory=list)
    localization_losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def train_localizer(data: BoxSet, num_classes: int, *, lam: float = 10.0, box_loss: str = "smooth_l1",
                    epochs: int = 4, batch_size: int = 32, lr: float = 2e-3, width: int = 16, hidden: int = 128,
                    seed: int = 0) -> LocalizerTraining:
    """Train a :class:`Localizer` on a one-object-per-image set: ``num_classes`` object classes (the
    labels are ``1 .. num_classes``), the loss of :func:`localization_loss` with ``lam`` and
    ``box_loss``, Adam at ``lr`` for ``epochs`` shuffled passes; everything drawn from ``seed`` (the
    global random state is left as it was)."""
    start = time.perf_counter()
    positive_int("epochs", epochs)
    positive_int("batch_size", batch_size)
    positive_number("lr", lr)
    non_negative_int("seed", seed)
    labels, boxes = single_object_targets(data)
    if len(labels) == 0:
        raise ValueError("data has no images to train on")
    if int(labels.max()) >= num_classes:
        raise ValueError(f"label {int(labels.max()) + 1} is above num_classes = {num_classes}")
    images = _as_input(data.images)
    history: list[list[float]] = []  # per epoch: mean total, classification and localisation losses
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        model = Localizer(num_classes, images.shape[1], images.shape[-1], width, hidden)
        optimiser = torch.optim.Adam(model.parameters(), lr=lr)
        model.train()
        for _ in range(epochs):
            sums = torch.zeros(3)
            for batch in torch.randperm(len(labels), generator=generator).split(batch_size):
                out = model(images[batch])
                loss = localization_loss(out["logits"], out["boxes"], labels[batch], boxes[batch], lam, box_loss)
                optimiser.zero_grad()
                loss.total.backward()
                optimiser.step()
                sums += torch.stack([loss.total, loss.classification, loss.localization]).detach() * len(batch)
            history.append((sums / len(labels)).tolist())
    model.eval()
    total, classification, localization = (list(column) for column in zip(*history))
    return LocalizerTraining(model, total, classification, localization, time.perf_counter() - start)


@dataclass
class LocalizationReport:
    """Classification ``accuracy``, ``mean_iou`` of the predicted with the true box, the fraction of
    boxes with IoU >= 0.5 (``iou_50``, the ImageNet localisation criterion), over ``num_images``."""

    accuracy: float
    mean_iou: float
    iou_50: float
    num_images: int


def evaluate_boxes(boxes: torch.Tensor, labels: torch.Tensor, data: BoxSet) -> LocalizationReport:
    """Score predicted pixel boxes ``(N, 4)`` xyxy and labels ``(N,)`` (``1 .. K``, as the data's)
    against a one-object-per-image set."""
    true_labels, true_boxes = single_object_targets(data)
    if boxes.shape != (len(data), 4) or labels.shape != (len(data),):
        raise ValueError(f"expected (N, 4) boxes and (N,) labels for the {len(data)} images, got "
                         f"{tuple(boxes.shape)} and {tuple(labels.shape)}")
    height, width = data.images.shape[-2:]
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    iou = box_iou(boxes.float(), true_boxes * scale).diagonal()
    return LocalizationReport(float((labels == true_labels + 1).float().mean()), float(iou.mean()),
                              float((iou >= 0.5).float().mean()), len(data))


def _to_pixels(normalised: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Normalised ``(N, 4)`` -> pixel xyxy, corners put in order and clipped to the image."""
    x = (normalised[:, 0::2] * width).clamp(0, width)
    y = (normalised[:, 1::2] * height).clamp(0, height)
    return torch.stack([x.min(1).values, y.min(1).values, x.max(1).values, y.max(1).values], 1)


@torch.no_grad()
def evaluate_localizer(model: Localizer, data: BoxSet, batch_size: int = 256) -> LocalizationReport:
    """The model's accuracy, mean IoU and IoU >= 0.5 fraction on a one-object-per-image set."""
    was_training = model.training
    model.eval()
    images = _as_input(data.images)
    try:
        outputs = [model(part) for part in images.split(batch_size)]
    finally:
        model.train(was_training)
    labels = torch.cat([o["logits"] for o in outputs]).argmax(1) + 1
    boxes = _to_pixels(torch.cat([o["boxes"] for o in outputs]), *images.shape[-2:])
    return evaluate_boxes(boxes, labels, data)
