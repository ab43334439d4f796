"""YOLO v1 (Redmon, Divvala, Girshick, Farhadi 2016, "You Only Look Once: Unified, Real-Time Object
Detection", arXiv:1506.02640).

"We reframe object detection as a single regression problem, straight from image pixels to bounding
box coordinates and class probabilities." The image is divided into an ``S x S`` grid; the cell
holding an object's centre is responsible for it. Each cell predicts ``B`` boxes - ``(x, y, w, h,
confidence)`` - and ``C`` conditional class probabilities ``Pr(class_i | object)`` shared by its
boxes: an ``S x S x (5 B + C)`` tensor, ``7 x 7 x 30`` for PASCAL VOC (S = 7, B = 2, C = 20).
``x, y`` are the centre's offset inside its cell, ``w, h`` are relative to the image, and the
network predicts ``sqrt(w)`` and ``sqrt(h)`` ("small deviations in large boxes matter less than in
small boxes"). The confidence is trained towards ``Pr(object) * IoU(pred, truth)``.

**The network** (Sec. 2.2, Fig. 3; :func:`yolo_v1`): 448 x 448 input, 24 convolutional layers -
7x7/2 of 64, max-pool; 3x3 of 192, max-pool; 1x1 128, 3x3 256, 1x1 256, 3x3 512, max-pool; four
times (1x1 256, 3x3 512), 1x1 512, 3x3 1024, max-pool; twice (1x1 512, 3x3 1024), 3x3 1024,
3x3/2 1024; 3x3 1024, 3x3 1024 - then a fully connected layer of 4,096 and one of ``S S (5 B +
C)`` outputs. Leaky ReLU (0.1) after every layer but the last, which is linear; dropout 0.5 after
the first fully connected layer. No batch norm (it came with YOLO v2).

**The loss** (Eq. 3; :func:`yolo_loss`), sum-squared error over the grid::

    lambda_coord sum_ij 1obj_ij [(x - x^)^2 + (y - y^)^2 + (sqrt w - sqrt w^)^2 + (sqrt h - sqrt h^)^2]
    + sum_ij 1obj_ij (C - C^)^2 + lambda_noobj sum_ij 1noobj_ij (C - C^)^2
    + sum_i 1obj_i sum_c (p(c) - p^(c))^2

with ``lambda_coord = 5`` and ``lambda_noobj = 0.5``. ``1obj_i``: an object's centre is in cell
``i``; ``1obj_ij``: box ``j`` of that cell is the one "responsible" for it, the one whose
prediction has the highest IoU with it; ``1noobj_ij`` is every other box. The responsible box's
target confidence ``C`` is that IoU (computed without gradient), everyone else's 0. Where two
objects' centres fall in one cell the cell can hold only one: the larger is kept (the paper says
nothing; darknet keeps the last one written). The sum is divided by the batch size.

**At test time**: each box's class-specific score is ``Pr(class_i | object) * confidence``
(Eq. 1); scores above ``score_thresh`` are kept and per-class non-maximum suppression (0.5)
removes duplicates ("adds 2-3% in mAP").

**The darknet configuration is not the paper** (``cfg/yolov1.cfg`` of pjreddie/darknet): it
predicts ``num = 3`` boxes per cell, has a locally connected layer in place of the first fully
connected one and ``output = 1715 = 7 * 7 * (3 * 5 + 20)``, and lays its output out
class-major (all cells' class probabilities, then all confidences, then all coordinates). Here the
layout is the paper's reading, one ``(5 B + C)`` vector per cell: ``B`` times ``(x, y, sqrt w,
sqrt h, confidence)``, then the ``C`` class probabilities.

``model(images)`` returns one dict per image, ``{"boxes", "scores", "labels"}``; in training mode
``model(images, targets)`` returns the loss's four terms: ``loss_box`` (coordinates),
``loss_object``, ``loss_no_object`` and ``loss_class``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from convatlas._checks import non_negative, positive_int
from convatlas.detection.boxes import batched_nms, box_iou
from convatlas.detection.faster_rcnn import check_inputs
from convatlas.models.features import stages_at, zoo_backbone
from convatlas.registry import ModelCard, Published, register_model

__all__ = ["YOLOv1", "YOLOSettings", "ConvGridHead", "ZooFeatures", "yolo_loss", "yolo_targets", "decode_grid", "darknet_v1", "yolo_v1",
           "yolo_mini", "PAPER_LAYERS"]

# The paper's 24 convolutional layers (Fig. 3): (kernel, channels, stride), "M" a 2x2/2 max-pool.
PAPER_LAYERS: tuple = (
    (7, 64, 2), "M",
    (3, 192, 1), "M",
    (1, 128, 1), (3, 256, 1), (1, 256, 1), (3, 512, 1), "M",
    *[(1, 256, 1), (3, 512, 1)] * 4, (1, 512, 1), (3, 1024, 1), "M",
    *[(1, 512, 1), (3, 1024, 1)] * 2, (3, 1024, 1), (3, 1024, 2),
    (3, 1024, 1), (3, 1024, 1),
)


def darknet_v1(layers: Sequence, in_channels: int = 3, *, batch_norm: bool = False) -> nn.Sequential:
    """The convolutional part: ``layers`` of ``(kernel, channels, stride)`` ("same" padding, leaky
    ReLU 0.1) and ``"M"`` (2x2 max-pool, stride 2). ``batch_norm``: a batch norm after each
    convolution (YOLO v2's addition; the minis use it to train in minutes), its bias then dropped."""
    modules: list[nn.Module] = []
    channels = positive_int("in_channels", in_channels)
    for layer in layers:
        if layer == "M":
            modules.append(nn.MaxPool2d(2, 2))
            continue
        kernel, out, stride = layer
        modules.append(nn.Conv2d(channels, out, kernel, stride=stride, padding=kernel // 2, bias=not batch_norm))
        if batch_norm:
            modules.append(nn.BatchNorm2d(out))
        modules.append(nn.LeakyReLU(0.1, inplace=True))
        channels = out
    return nn.Sequential(*modules)


@dataclass(frozen=True)
class YOLOSettings:
    """The grid, the loss weights and the test-time settings (the paper's)."""

    grid: int = 7  # S
    boxes: int = 2  # B
    lambda_coord: float = 5.0
    lambda_noobj: float = 0.5
    score_thresh: float = 0.01  # a class-specific score must exceed this
    nms_thresh: float = 0.5
    detections_per_img: int = 100

    def __post_init__(self) -> None:
        positive_int("grid", self.grid)
        positive_int("boxes", self.boxes)
        non_negative("lambda_coord", self.lambda_coord)
        non_negative("lambda_noobj", self.lambda_noobj)
        non_negative("score_thresh", self.score_thresh)
        non_negative("nms_thresh", self.nms_thresh)
        positive_int("detections_per_img", self.detections_per_img)


def decode_grid(boxes: torch.Tensor, image_size: Sequence[int]) -> torch.Tensor:
    """``(..., S, S, B, 4)`` predictions ``(x, y, sqrt w, sqrt h)`` -> xyxy boxes in pixels of an
    image of ``image_size = (height, width)``: the centre is ``((col + x) / S, (row + y) / S)`` of
    the image, the size ``(sqrt w)^2``, ``(sqrt h)^2`` of it."""
    s = boxes.shape[-3]
    height, width = (float(v) for v in image_size)
    cells = torch.arange(s, dtype=boxes.dtype, device=boxes.device)
    cx = (cells.view(1, s, 1) + boxes[..., 0]) / s * width  # columns vary along the second grid axis
    cy = (cells.view(s, 1, 1) + boxes[..., 1]) / s * height
    w, h = boxes[..., 2] ** 2 * width, boxes[..., 3] ** 2 * height
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def yolo_targets(targets: Sequence[Mapping[str, torch.Tensor]], grid: int, num_object_classes: int,
                 image_size: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image and cell: ``has`` (N, S, S) bool - an object's centre is in the cell; ``coords``
    (N, S, S, 4) its ``(x, y, sqrt w, sqrt h)``; ``boxes`` (N, S, S, 4) its xyxy box in pixels;
    ``classes`` (N, S, S, C) its one-hot class (label ``k`` is column ``k - 1``). Two centres in one
    cell: the larger box is kept."""
    n, s, c = len(targets), grid, num_object_classes
    height, width = (float(v) for v in image_size)
    device = targets[0]["boxes"].device if n else torch.device("cpu")
    has = torch.zeros(n, s, s, dtype=torch.bool, device=device)
    coords = torch.zeros(n, s, s, 4, device=device)
    boxes = torch.zeros(n, s, s, 4, device=device)
    classes = torch.zeros(n, s, s, c, device=device)
    for i, t in enumerate(targets):
        b = t["boxes"].to(coords.dtype)
        if not b.numel():
            continue
        cx, cy = (b[:, 0] + b[:, 2]) / 2 / width, (b[:, 1] + b[:, 3]) / 2 / height
        w, h = (b[:, 2] - b[:, 0]) / width, (b[:, 3] - b[:, 1]) / height
        col, row = (cx * s).long().clamp(0, s - 1), (cy * s).long().clamp(0, s - 1)
        for k in torch.argsort(w * h).tolist():  # smallest first: a larger box in the same cell overwrites it
            r, q = int(row[k]), int(col[k])
            has[i, r, q] = True
            coords[i, r, q] = torch.stack([cx[k] * s - q, cy[k] * s - r, w[k].sqrt(), h[k].sqrt()])
            boxes[i, r, q] = b[k]
            classes[i, r, q] = 0
            classes[i, r, q, int(t["labels"][k]) - 1] = 1
    return has, coords, boxes, classes


def yolo_loss(output: torch.Tensor, targets: Sequence[Mapping[str, torch.Tensor]], image_size: Sequence[int],
              settings: YOLOSettings, num_object_classes: int) -> dict[str, torch.Tensor]:
    """Eq. 3 on ``output`` ``(N, S, S, 5 B + C)`` (see the module docstring): the coordinate term,
    the confidence terms of the responsible and the other boxes, and the class term, each summed
    over the grid and divided by the batch size."""
    n, s = output.shape[0], settings.grid
    b = settings.boxes
    predicted = output[..., :5 * b].reshape(n, s, s, b, 5)
    probabilities = output[..., 5 * b:]
    has, coords, gt_boxes, classes = yolo_targets(targets, s, num_object_classes, image_size)
    with torch.no_grad():  # which box is responsible, and the IoU its confidence should say
        boxes = decode_grid(predicted[..., :4].detach(), image_size)  # (N, S, S, B, 4)
        iou = _paired_iou(boxes, gt_boxes[..., None, :].expand_as(boxes))  # (N, S, S, B)
        responsible = F.one_hot(iou.argmax(-1), b).bool() & has[..., None]
    obj = responsible.to(output.dtype)
    coord = ((predicted[..., :4] - coords[..., None, :]) ** 2).sum(-1)
    confidence = predicted[..., 4]
    loss_box = settings.lambda_coord * (obj * coord).sum()
    loss_object = (obj * (confidence - iou) ** 2).sum()
    loss_no_object = settings.lambda_noobj * ((1 - obj) * confidence ** 2).sum()
    loss_class = (has[..., None].to(output.dtype) * (probabilities - classes) ** 2).sum()
    return {"loss_box": loss_box / n, "loss_object": loss_object / n, "loss_no_object": loss_no_object / n,
            "loss_class": loss_class / n}


def _paired_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of ``a[..., k, :]`` with ``b[..., k, :]`` (xyxy), elementwise; 0 for empty boxes."""
    wh = (torch.minimum(a[..., 2:], b[..., 2:]) - torch.maximum(a[..., :2], b[..., :2])).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area = lambda x: (x[..., 2] - x[..., 0]).clamp(min=0) * (x[..., 3] - x[..., 1]).clamp(min=0)  # noqa: E731
    union = area(a) + area(b) - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(union))


class YOLOv1(nn.Module):
    """``features`` (convolutions) -> ``head`` (flatten, fully connected layers) -> an ``S x S x
    (5 B + C)`` grid; Eq. 3 in training, class-specific scores and NMS at test. ``num_classes``
    counts the background, as everywhere in convatlas: ``C = num_classes - 1``."""

    def __init__(self, features: nn.Module, head: nn.Module, *, num_classes: int, settings: YOLOSettings | None = None,
                 min_input: int = 1, image_size: int | None = None) -> None:
        super().__init__()
        self.image_size = None if image_size is None else positive_int("image_size", image_size)
        self.features = features
        self.head = head
        self.num_classes = positive_int("num_classes", num_classes)
        self.settings = settings or YOLOSettings()
        self.min_input = positive_int("min_input", min_input)

    @property
    def outputs_per_cell(self) -> int:
        return 5 * self.settings.boxes + self.num_classes - 1

    def grid(self, images: torch.Tensor) -> torch.Tensor:
        """The ``(N, S, S, 5 B + C)`` prediction grid."""
        s = self.settings.grid
        return self.head(self.features(images)).view(images.shape[0], s, s, self.outputs_per_cell)

    def forward(self, images: torch.Tensor, targets: Sequence[Mapping[str, torch.Tensor]] | None = None) -> Any:
        if torch.is_tensor(images) and images.dim() == 4 and self.image_size is not None \
                and tuple(images.shape[-2:]) != (self.image_size, self.image_size):
            h, w = images.shape[-2:]
            raise ValueError(f"images are {h}x{w}; YOLO v1's fully connected layer fixes its input to "
                             f"{self.image_size}x{self.image_size} (resize them, e.g. --image-size {self.image_size})")
        n, h, w = check_inputs(images, targets, training=self.training, min_input=self.min_input,
                               num_classes=self.num_classes)
        output = self.grid(images)
        if self.training:
            return yolo_loss(output, targets, (h, w), self.settings, self.num_classes - 1)
        return self.postprocess(output, (h, w))

    def dense(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every box's xyxy coordinates clipped to the image ``(N, S S B, 4)`` and its class-specific
        scores ``(N, S S B, C)``, column ``k`` for label ``k + 1``: what :meth:`postprocess`
        thresholds and suppresses - the static-shaped part of detection (ONNX export)."""
        size = images.shape[-2:]
        boxes, scores = self._scored(self.grid(images), size)
        height, width = (float(v) for v in size)
        return torch.minimum(boxes.clamp(min=0), boxes.new_tensor([width, height, width, height])), scores

    def _scored(self, output: torch.Tensor, image_size: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        st = self.settings
        n, s, b = output.shape[0], st.grid, st.boxes
        predicted = output[..., :5 * b].reshape(n, s, s, b, 5)
        boxes = decode_grid(predicted[..., :4], image_size).reshape(n, -1, 4)  # (N, S S B, 4)
        scores = (predicted[..., 4:5] * output[..., None, 5 * b:]).reshape(n, s * s * b, -1)  # (N, S S B, C)
        return boxes, scores

    def postprocess(self, output: torch.Tensor, image_size: Sequence[int]) -> list[dict[str, torch.Tensor]]:
        """Per image: every box's class-specific scores ``Pr(class | object) * confidence`` (Eq. 1),
        those over ``score_thresh`` kept, boxes clipped to the image, per-class NMS, the best
        ``detections_per_img``."""
        st = self.settings
        boxes, scores = self._scored(output, image_size)
        height, width = (float(v) for v in image_size)
        limits = boxes.new_tensor([width, height, width, height])
        out = []
        for bx, sc in zip(boxes, scores):
            anchor, label = torch.where(sc > st.score_thresh)
            kept_boxes = torch.minimum(bx[anchor].clamp(min=0), limits)
            kept_scores = sc[anchor, label]
            valid = (kept_boxes[:, 2] > kept_boxes[:, 0]) & (kept_boxes[:, 3] > kept_boxes[:, 1])
            kept_boxes, kept_scores, label = kept_boxes[valid], kept_scores[valid], label[valid]
            keep = batched_nms(kept_boxes, kept_scores, label, st.nms_thresh)[:st.detections_per_img]
            out.append({"boxes": kept_boxes[keep], "scores": kept_scores[keep], "labels": label[keep] + 1})
        return out


def _head(in_features: int, hidden: int, outputs: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.LeakyReLU(0.1, inplace=True),
                         nn.Dropout(dropout), nn.Linear(hidden, outputs))


# ---------------------------------------------------------------------------------------------
# Registered networks

_IDEA = ("Detection as one regression: a single network looks at the whole image once and predicts, for each "
         "cell of an S x S grid, B boxes with confidences and C class probabilities - no proposals, 45 fps.")


def _card(**changes: Any) -> ModelCard:
    base = dict(name="yolo_v1", family="yolo", paper="You Only Look Once: Unified, Real-Time Object Detection",
                authors="Redmon, Divvala, Girshick, Farhadi", year=2016, arxiv="1506.02640",
                input_size=(3, 448, 448), dataset="voc", num_classes=21, idea=_IDEA, task="detection",
                extra={"min_input": 448})
    base.update(changes)
    return ModelCard(**base)


@register_model(_card(
    params=Published(271_703_550, (
        "exact count here of the paper's Fig. 3 (no batch norm, biased convolutions): the 24 convolutions "
        "60,155,968 + fc 7*7*1024*4096 + 4096 = 205,524,992 + fc 4096*1470 + 1470 = 6,022,590; the first fully "
        "connected layer holds 205.5M (the reference notes)")),
    map=Published(63.4, "VOC 2007 test mAP, trained on VOC 2007+2012 (paper Table 1; 45 fps on a Titan X; Fast YOLO "
                        "52.7 at 155 fps); the reference notes [V: abstract, paperswithcode]"),
    notes="The paper's network (Fig. 3): 448x448, 24 convolutions with leaky ReLU, fully connected 4,096 and "
          "7x7x30 (S = 7, B = 2, C = 20), dropout 0.5. Not darknet's cfg/yolov1.cfg (3 boxes per cell, a "
          "locally connected layer, 1,715 outputs).",
))
def yolo_v1(*, num_classes: int = 21, grid: int = 7, boxes: int = 2) -> YOLOv1:
    """YOLO v1 as in the paper (Redmon et al. 2016, arXiv:1506.02640): 448 x 448 input, 24
    convolutional layers, two fully connected ones, an ``S x S x (5 B + C)`` output. The input must
    be 448 x 448 (the fully connected layer fixes it)."""
    settings = YOLOSettings(grid=grid, boxes=boxes)
    outputs = grid * grid * (5 * boxes + num_classes - 1)
    return YOLOv1(darknet_v1(PAPER_LAYERS), _head(7 * 7 * 1024, 4096, outputs, 0.5), num_classes=num_classes,
                  settings=settings, min_input=448, image_size=448)


# The mini for 64x64 digit scenes: an 8x8 grid (8-px cells; boxes are 8-26 px) on an 8x8 map, as the
# paper's 7x7 grid sits on its 7x7 map.
MINI_LAYERS: tuple = ((3, 16, 1), "M", (3, 32, 1), "M", (3, 64, 1), (1, 32, 1), (3, 64, 1), "M",
                      (3, 128, 1), (1, 64, 1), (3, 128, 1))
MINI_HEADS = ("conv", "fc")


class ConvGridHead(nn.Module):
    """A convolutional head on an ``S x S`` map: a 3x3 convolution (leaky ReLU) and a 1x1 one to the
    ``5 B + C`` outputs of each cell - one set of weights for every cell (YOLO v2's step), laid out
    as the fully connected head's ``(N, S S (5 B + C))``, cells row-major."""

    def __init__(self, in_channels: int, outputs_per_cell: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or in_channels
        self.conv = nn.Conv2d(in_channels, hidden, 3, padding=1)
        self.act = nn.LeakyReLU(0.1, inplace=True)
        self.predict = nn.Conv2d(hidden, outputs_per_cell, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict(self.act(self.conv(x))).permute(0, 2, 3, 1).flatten(1)


class ZooFeatures(nn.Module):
    """A zoo classification network's stage at reduction ``stride`` (the backbone contract), as one map."""

    def __init__(self, backbone: str, stride: int) -> None:
        super().__init__()
        self.body = zoo_backbone(backbone, lambda info: stages_at(info, [stride], backbone))
        self.out_channels = self.body.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return list(self.body(x).values())[-1]


@register_model(_card(
    name="yolo_mini",
    input_size=(1, 64, 64),
    dataset="digit-scenes",
    num_classes=11,
    recipe="yolo_digit_scenes",
    extra={"min_input": 64},
    notes="A small network, not in the paper: YOLO v1's grid, loss and fully connected head on 64x64 scenes - "
          "nine darknet-style convolutions with batch norm (YOLO v2's addition, for training in minutes), an 8x8 map "
          "under the 8x8 grid of B = 2 boxes and 10 classes, predicted by a convolutional head shared by the cells "
          "(--variant head=fc: the paper's fully connected head, which learns each cell apart and trains far slower).",
))
def yolo_mini(*, num_classes: int = 11, in_channels: int = 1, grid: int = 8, boxes: int = 2, head: str = "conv",
              backbone: str | None = None) -> YOLOv1:
    """A small YOLO v1 for the 64x64 digit scenes (after Redmon et al. 2016): YOLO v1's grid, loss
    and test-time scores on nine darknet-style convolutions with batch norm.

    Why these settings: the digits are 8-26 px, so an 8x8 grid (8-px cells) rarely puts two centres
    in one cell (the paper's 7x7 grid on 448-px images has 64-px cells for objects of 30-400 px);
    the last map is 8x8, one position per cell, as the paper's 7x7 map under its 7x7 grid; 1x1
    reductions between 3x3 convolutions as the paper's network, batch norm so it trains in minutes.

    ``head``: ``"conv"`` (default) predicts each cell's ``5 B + C`` numbers with convolutions shared
    by the cells; ``"fc"`` is the paper's fully connected head (a 1x1 reduction to 32 channels,
    fully connected 2,048, then the grid). The paper's head learns every cell's weights apart: on
    4,000 scenes, each cell's class outputs see some 16 examples of a class per epoch; a first
    fully connected mini lowered its class term only from 2.4 to 2.0 in six epochs of the recipe,
    the convolutional head to 0.3 (0.1 after ten) - the reason YOLO v2 made the head
    convolutional. Either way the input must be 64 x 64. ``backbone``: any registered
    classification network with a stage at reduction 8 (an 8x8 map of a 64x64 scene) in place of
    the nine convolutions."""
    from convatlas._checks import one_of

    one_of("head", head, MINI_HEADS)
    settings = YOLOSettings(grid=grid, boxes=boxes)
    per_cell = 5 * boxes + num_classes - 1
    if backbone is None:
        features: nn.Module = darknet_v1(MINI_LAYERS, in_channels, batch_norm=True)
        width = 128
    else:
        features = ZooFeatures(backbone, 64 // grid)
        width = features.out_channels
    if head == "conv":
        predictor: nn.Module = ConvGridHead(width, per_cell)
    else:
        reduce = nn.Sequential(nn.Conv2d(width, 32, 1), nn.LeakyReLU(0.1, inplace=True))
        predictor = nn.Sequential(reduce, _head(grid * grid * 32, 2048, grid * grid * per_cell, 0.0))
    return YOLOv1(features, predictor, num_classes=num_classes, settings=settings, min_input=64, image_size=64)
