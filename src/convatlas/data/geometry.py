"""The one warp: images, masks and boxes moved together by the same per-image affine maps.

A map is ``theta`` ``(N, 2, 3)``, as :func:`torch.nn.functional.affine_grid` takes it: it sends
each *output* point, in normalised coordinates, to the *input* point it samples,
``u_in = A u_out + t``. Normalised coordinates follow ``align_corners=False``: the left edge of
the image is ``-1``, the right edge ``+1``, so a pixel-edge coordinate ``x`` (``0`` at the left
edge of the first column, ``W`` at the right edge of the last) is ``u = 2 x / W - 1`` and the
centre of column ``i`` is ``u = (2 i + 1) / W - 1``. The output may have another size than the
input (a crop, a resize); the maps stay in each image's own normalised coordinates.

* :func:`warp_images` - bilinear ``grid_sample``, zeros outside the image (the classification
  augmentations in :mod:`convatlas.data.augment` sample through it).
* :func:`warp_masks` - the same sampling points, nearest neighbour, so a warped mask holds only
  values its input held; points the map brings from outside the image get ``fill`` (the ignore
  index 255 for class maps, so a loss skips them instead of learning "background" there).
* :func:`warp_boxes` - xyxy pixel-edge boxes: the four corners go through the forward map, the
  enclosing box is clipped to the output, and boxes left with no width or height (they left the
  image) are dropped and reported. Boxes follow the affine part only (an elastic displacement has
  no box; take the boxes of the warped instance masks instead).
* :func:`warp` - all three at once.
* :class:`SegmentationPipeline` - joint random augmentation of segmentation batches on the
  device (:class:`SegmentationAugment`: zoom, rotation, crop, shift, flip, brightness, contrast),
  with :class:`~convatlas.data.augment.BatchPipeline`'s interface.

The builders :func:`pixel_theta` / :func:`theta_to_pixel` convert between ``theta`` and 3x3 maps
of pixel-edge coordinates, where shifts, flips, zooms and crops are easiest to write;
:func:`identity_theta`, :func:`shift_theta` and :func:`hflip_theta` are the common ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "IGNORE_INDEX",
    "Warped",
    "warp",
    "warp_images",
    "warp_masks",
    "warp_boxes",
    "pixel_theta",
    "theta_to_pixel",
    "identity_theta",
    "shift_theta",
    "hflip_theta",
    "SegmentationAugment",
    "SegmentationBatch",
    "SegmentationPipeline",
    "random_segmentation_theta",
]

IGNORE_INDEX = 255  # the class index a segmentation loss skips (Pascal VOC's white borders)

Size = Sequence[int]  # (H, W)


def _out_size(x_size: Size, size: Size | int | None) -> tuple[int, int]:
    if size is None:
        return int(x_size[0]), int(x_size[1])
    if isinstance(size, int):
        return size, size
    return int(size[0]), int(size[1])


def _grid(theta: torch.Tensor, n: int, c: int, size: tuple[int, int], dtype: torch.dtype,
          displacement: torch.Tensor | None) -> torch.Tensor:
    grid = F.affine_grid(theta.to(dtype), [n, c, *size], align_corners=False)
    if displacement is not None:
        grid = grid + displacement.to(dtype)
    return grid


def warp_images(x: torch.Tensor, theta: torch.Tensor, displacement: torch.Tensor | None = None, *,
                size: Size | int | None = None) -> torch.Tensor:
    """Sample float images ``x`` ``(N, C, H, W)`` through ``theta`` ``(N, 2, 3)``, plus an optional
    ``(N, H_out, W_out, 2)`` ``displacement`` of the sampling points in normalised units (x then
    y); bilinear, zeros outside. ``size`` ``(H_out, W_out)`` defaults to the input's."""
    out = _out_size(x.shape[-2:], size)
    grid = _grid(theta, x.shape[0], x.shape[1], out, x.dtype, displacement)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def warp_masks(masks: torch.Tensor, theta: torch.Tensor, displacement: torch.Tensor | None = None, *,
               size: Size | int | None = None, fill: int | bool = IGNORE_INDEX) -> torch.Tensor:
    """Sample label maps ``masks`` ``(N, H, W)`` (any integer or bool dtype, values below 2**24)
    at the points :func:`warp_images` samples, by nearest neighbour; where a point falls outside
    the image the output is ``fill`` (255, the ignore index, by default; ``False`` / 0 suits
    instance masks). Returns the input's dtype."""
    if masks.dim() != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {tuple(masks.shape)}")
    n = masks.shape[0]
    out = _out_size(masks.shape[-2:], size)
    # the mask and a plane of ones go through one grid_sample: where the ones come back 0 the
    # point was outside, decided by grid_sample's own rounding, so the two can never disagree
    planes = torch.stack([masks.to(torch.float32), torch.ones(masks.shape, device=masks.device)], 1)
    grid = _grid(theta, n, 2, out, torch.float32, displacement)
    sampled = F.grid_sample(planes, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    inside = sampled[:, 1] > 0.5
    if masks.dtype == torch.bool:
        return torch.where(inside, sampled[:, 0] > 0.5, bool(fill))
    values = sampled[:, 0].round().to(masks.dtype)
    return torch.where(inside, values, torch.full_like(values, int(fill)))


def _to_normalised(size: Size, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """3x3 map from pixel-edge coordinates of an ``(H, W)`` image to normalised ones."""
    h, w = float(size[0]), float(size[1])
    return torch.tensor([[2.0 / w, 0.0, -1.0], [0.0, 2.0 / h, -1.0], [0.0, 0.0, 1.0]], dtype=dtype, device=device)


def _to_pixels(size: Size, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    h, w = float(size[0]), float(size[1])
    return torch.tensor([[w / 2.0, 0.0, w / 2.0], [0.0, h / 2.0, h / 2.0], [0.0, 0.0, 1.0]], dtype=dtype, device=device)


def _homogeneous(theta: torch.Tensor) -> torch.Tensor:
    bottom = torch.tensor([0.0, 0.0, 1.0], dtype=theta.dtype, device=theta.device).expand(theta.shape[0], 1, 3)
    return torch.cat([theta, bottom], 1)


def pixel_theta(matrix: torch.Tensor, in_size: Size, out_size: Size | None = None) -> torch.Tensor:
    """``theta`` ``(N, 2, 3)`` from 3x3 maps ``(N, 3, 3)`` (or ``(3, 3)``) that send output
    pixel-edge coordinates ``(x, y, 1)`` to input ones."""
    out_size = in_size if out_size is None else out_size
    matrix = matrix if matrix.dim() == 3 else matrix[None]
    to_in = _to_normalised(in_size, matrix.dtype, matrix.device)
    from_out = _to_pixels(out_size, matrix.dtype, matrix.device)
    return (to_in @ matrix @ from_out)[:, :2]


def theta_to_pixel(theta: torch.Tensor, in_size: Size, out_size: Size | None = None) -> torch.Tensor:
    """The inverse of :func:`pixel_theta`: ``(N, 3, 3)`` maps of pixel-edge coordinates, output to input."""
    out_size = in_size if out_size is None else out_size
    theta = theta if theta.dim() == 3 else theta[None]
    to_px = _to_pixels(in_size, theta.dtype, theta.device)
    from_px = _to_normalised(out_size, theta.dtype, theta.device)
    return to_px @ _homogeneous(theta) @ from_px


def identity_theta(n: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.eye(2, 3, dtype=dtype, device=device).expand(n, 2, 3).clone()


def shift_theta(shift: torch.Tensor | Sequence[float], size: Size) -> torch.Tensor:
    """Maps that move the content by ``shift`` ``(N, 2)`` (or one ``(dx, dy)``) pixels, right and down."""
    shift = torch.as_tensor(shift, dtype=torch.float32)
    shift = shift if shift.dim() == 2 else shift[None]
    theta = identity_theta(shift.shape[0], shift.device)
    theta[:, 0, 2] = -2.0 * shift[:, 0] / size[1]
    theta[:, 1, 2] = -2.0 * shift[:, 1] / size[0]
    return theta


def hflip_theta(n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Maps that mirror left-right (``u_in = -u_out``)."""
    theta = identity_theta(n, device)
    theta[:, 0, 0] = -1.0
    return theta


def warp_boxes(boxes: torch.Tensor, theta: torch.Tensor, in_size: Size, out_size: Size | None = None, *,
               index: torch.Tensor | None = None, min_size: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Move xyxy pixel-edge ``boxes`` ``(M, 4)`` as :func:`warp_images` moves their image.

    ``index`` ``(M,)`` names the image (row of ``theta``) of each box; without it every box
    belongs to image 0. Each box's four corners go through the forward map (the inverse of
    ``theta``), rounded to 1/1024 pixel, the enclosing box is clipped to ``[0, W_out] x [0, H_out]``,
    and boxes whose clipped width or height is ``min_size`` or less are dropped. Returns the kept boxes and a
    bool ``(M,)`` saying which were kept.
    """
    out_size = in_size if out_size is None else out_size
    theta = theta if theta.dim() == 3 else theta[None]
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be (M, 4) xyxy, got shape {tuple(boxes.shape)}")
    if index is None:
        index = torch.zeros(boxes.shape[0], dtype=torch.long, device=boxes.device)
    work = torch.float64 if boxes.device.type != "mps" else torch.float32
    forward = torch.linalg.inv(theta_to_pixel(theta.to(work), in_size, out_size))[index]  # (M, 3, 3) in -> out
    b = boxes.to(work)
    xs = torch.stack([b[:, 0], b[:, 2], b[:, 2], b[:, 0]], 1)
    ys = torch.stack([b[:, 1], b[:, 1], b[:, 3], b[:, 3]], 1)
    corners = torch.stack([xs, ys, torch.ones_like(xs)], 1)  # (M, 3, 4)
    # to 1/1024 of a pixel: a map held in float32 then moves boxes by whole pixels exactly, and a box
    # pushed to the border is cut to no width instead of a sliver of rounding error
    moved = torch.round((forward @ corners) * 1024) / 1024
    h, w = float(out_size[0]), float(out_size[1])
    x1 = moved[:, 0].amin(1).clamp(0, w)
    x2 = moved[:, 0].amax(1).clamp(0, w)
    y1 = moved[:, 1].amin(1).clamp(0, h)
    y2 = moved[:, 1].amax(1).clamp(0, h)
    result = torch.stack([x1, y1, x2, y2], 1).to(boxes.dtype if boxes.is_floating_point() else torch.float32)
    keep = ((x2 - x1) > min_size) & ((y2 - y1) > min_size)
    return result[keep], keep


@dataclass
class Warped:
    """What :func:`warp` returns: the warped images, masks, boxes (the kept ones), the image index
    of each kept box and which input boxes were kept."""

    images: torch.Tensor | None
    masks: torch.Tensor | None
    boxes: torch.Tensor | None
    box_index: torch.Tensor | None
    keep: torch.Tensor | None


def warp(theta: torch.Tensor, *, images: torch.Tensor | None = None, masks: torch.Tensor | None = None,
         boxes: torch.Tensor | None = None, box_index: torch.Tensor | None = None,
         in_size: Size | None = None, size: Size | int | None = None, fill: int = IGNORE_INDEX,
         min_size: float = 0.0) -> Warped:
    """Warp images (bilinear), masks (nearest, ``fill`` outside) and boxes by the same maps.

    ``in_size`` is needed only when neither images nor masks are given; ``size`` is the output
    size (default: the input's)."""
    source = images if images is not None else masks
    if in_size is None:
        if source is None:
            raise ValueError("warp needs images, masks or in_size to know the input size")
        in_size = tuple(source.shape[-2:])
    out = _out_size(in_size, size)
    warped_images = warp_images(images, theta, size=out) if images is not None else None
    warped_masks = warp_masks(masks, theta, size=out, fill=fill) if masks is not None else None
    kept_boxes = kept_index = keep = None
    if boxes is not None:
        if box_index is None:
            box_index = torch.zeros(boxes.shape[0], dtype=torch.long, device=boxes.device)
        kept_boxes, keep = warp_boxes(boxes, theta, in_size, out, index=box_index, min_size=min_size)
        kept_index = box_index[keep]
    return Warped(warped_images, warped_masks, kept_boxes, kept_index, keep)


# ------------------------------------------------------------------------------------------
# Joint augmentation for segmentation, in whole batches on the device


@dataclass
class SegmentationAugment:
    """Which joint augmentations a segmentation batch gets (all off by default).

    Geometry (image, mask and boxes by one map): a zoom by ``s ~ U(scale)``, a rotation by
    ``U(-degrees, degrees)`` about the zoomed image's centre, a crop of ``crop_size`` (default:
    the input size) at a uniformly random place - where the zoomed image is smaller than the
    crop it lands at a random place inside it instead - then a shift of ``U(-translate,
    translate)`` of the crop size and, with ``hflip``, a left-right mirror of half the images.
    The torchvision segmentation references (FCN, DeepLabV3) use ``scale=(0.5, 2.0)``, a random
    crop and ``hflip`` (:meth:`deeplab`). Flipping is off by default: a mirrored digit is
    another shape (and "2" and "5" can trade places), so :meth:`digit_scenes` leaves it off.
    Photometric, on the image only, before the warp: brightness ``x * b``, ``b ~ U(1 - brightness,
    1 + brightness)``, then contrast ``m + c (x - m)`` with ``m`` the image's mean grey,
    ``c ~ U(1 - contrast, 1 + contrast)``, clipped to [0, 1] (torchvision's ``adjust_brightness``
    and ``adjust_contrast``).
    """

    scale: tuple[float, float] = (1.0, 1.0)
    crop_size: int | tuple[int, int] | None = None
    translate: float = 0.0
    degrees: float = 0.0
    hflip: bool = False
    brightness: float = 0.0
    contrast: float = 0.0

    def __post_init__(self) -> None:
        lo, hi = (float(v) for v in self.scale)
        self.scale = (lo, hi)
        if not 0 < lo <= hi:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high, got {self.scale}")
        if self.crop_size is not None:
            crop = (self.crop_size, self.crop_size) if isinstance(self.crop_size, int) else tuple(self.crop_size)
            if len(crop) != 2 or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in crop):
                raise ValueError(f"crop_size must be a positive integer or (H, W), got {self.crop_size!r}")
        if not 0 <= self.translate < 1:
            raise ValueError(f"translate must be a fraction of the size in [0, 1), got {self.translate!r}")
        if not 0 <= self.degrees <= 180:
            raise ValueError(f"degrees must be in [0, 180], got {self.degrees!r}")
        for name in ("brightness", "contrast"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")

    @classmethod
    def digit_scenes(cls) -> "SegmentationAugment":
        """For the 64x64 digit scenes: a mild zoom (0.75-1.25), shifts up to a tenth of the side,
        rotations up to 10 degrees, brightness and contrast 0.2; no flip."""
        return cls(scale=(0.75, 1.25), translate=0.1, degrees=10.0, brightness=0.2, contrast=0.2)

    @classmethod
    def deeplab(cls, crop_size: int | tuple[int, int]) -> "SegmentationAugment":
        """The photo recipe of torchvision's segmentation references: zoom 0.5-2.0, a random
        ``crop_size`` crop, random horizontal flip."""
        return cls(scale=(0.5, 2.0), crop_size=crop_size, hflip=True)

    def out_size(self, in_size: Size) -> tuple[int, int]:
        if self.crop_size is None:
            return int(in_size[0]), int(in_size[1])
        return _out_size(in_size, self.crop_size)

    def moves(self, in_size: Size) -> bool:
        """Whether the geometry does anything to an ``in_size`` batch."""
        return (self.scale != (1.0, 1.0) or self.degrees > 0 or self.translate > 0 or self.hflip
                or self.out_size(in_size) != (int(in_size[0]), int(in_size[1])))


def _work_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def random_segmentation_theta(n: int, in_size: Size, generator: torch.Generator, augment: SegmentationAugment,
                              device: torch.device | str = "cpu") -> torch.Tensor:
    """The random maps ``theta`` ``(N, 2, 3)`` (to ``augment.out_size(in_size)``) of
    :class:`SegmentationAugment`. Drawn from ``generator``, in this order and only where on:
    zoom, angle, crop place (x, y), shift (x, y per image), flip."""
    device = torch.device(device)
    a, dt = augment, _work_dtype(device)
    h, w = float(in_size[0]), float(in_size[1])
    oh, ow = (float(v) for v in a.out_size(in_size))

    def uniform(count: int, low: float, high: float) -> torch.Tensor:
        return (torch.rand(count, generator=generator, device=device) * (high - low) + low).to(dt)

    def matrices(**entries: torch.Tensor) -> torch.Tensor:
        m = torch.eye(3, dtype=dt, device=device).repeat(n, 1, 1)
        for key, value in entries.items():
            m[:, int(key[1]), int(key[2])] = value
        return m

    zoom = uniform(n, *a.scale) if a.scale != (1.0, 1.0) else torch.ones(n, dtype=dt, device=device)
    angle = uniform(n, -a.degrees, a.degrees) * (torch.pi / 180) if a.degrees > 0 else None
    movable = a.scale != (1.0, 1.0) or (oh, ow) != (h, w)
    fx = uniform(n, 0.0, 1.0) if movable else torch.zeros(n, dtype=dt, device=device)
    fy = uniform(n, 0.0, 1.0) if movable else torch.zeros(n, dtype=dt, device=device)
    shift = uniform(2 * n, -a.translate, a.translate).view(n, 2) if a.translate > 0 else None
    flip = (torch.rand(n, generator=generator, device=device) < 0.5) if a.hflip else None

    # output pixel -> input pixel: undo the forward chain zoom, rotate, crop, shift, flip from its end
    m = torch.eye(3, dtype=dt, device=device).repeat(n, 1, 1)
    if flip is not None:
        m = matrices(m00=torch.where(flip, -1.0, 1.0).to(dt), m02=torch.where(flip, ow, 0.0).to(dt)) @ m
    if shift is not None:
        m = matrices(m02=-shift[:, 0] * ow, m12=-shift[:, 1] * oh) @ m
    ox, oy = fx * (zoom * w - ow), fy * (zoom * h - oh)  # the crop's corner in the zoomed image
    m = matrices(m02=ox, m12=oy) @ m
    if angle is not None:
        cx, cy = zoom * w / 2, zoom * h / 2
        cos, sin = angle.cos(), angle.sin()
        # p -> R(-angle) (p - c) + c
        m = matrices(m00=cos, m01=sin, m10=-sin, m11=cos,
                     m02=cx - cos * cx - sin * cy, m12=cy + sin * cx - cos * cy) @ m
    m = matrices(m00=1 / zoom, m11=1 / zoom) @ m
    return pixel_theta(m, in_size, (int(oh), int(ow))).to(torch.float32)


@dataclass
class SegmentationBatch:
    """An augmented batch: normalised float ``images``, int64 ``masks`` (ignore index where the
    warp reached outside), the kept ``boxes`` with their ``box_index`` and ``keep``, and ``theta``."""

    images: torch.Tensor
    masks: torch.Tensor | None
    boxes: torch.Tensor | None = None
    box_index: torch.Tensor | None = None
    keep: torch.Tensor | None = None
    theta: torch.Tensor | None = None


class SegmentationPipeline:
    """uint8 images and masks -> model input (float, normalised) and int64 masks; in training,
    jointly augmented on the device (:class:`SegmentationAugment`). The interface of
    :class:`~convatlas.data.augment.BatchPipeline`: ``eval_input``, ``train_batch``,
    ``state_dict`` / ``load_state_dict`` (the generator's state, for an exact resume)."""

    def __init__(
        self,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        channels: int,
        augment: SegmentationAugment | None = None,
        device: torch.device | str = "cpu",
        seed: int = 0,
        ignore_index: int = IGNORE_INDEX,
        channels_last: bool = False,
        num_classes: int | None = None,
    ) -> None:
        self.mean, self.std = tuple(mean), tuple(std)
        if len(self.mean) != channels or len(self.std) != channels:
            raise ValueError(f"mean/std need {channels} values, got {self.mean} / {self.std}")
        self.channels = channels
        self.num_classes = num_classes
        self.augment = augment or SegmentationAugment()
        self.device = torch.device(device)
        self.ignore_index = int(ignore_index)
        self.channels_last = channels_last
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        from convatlas.data.augment import normalize

        x = normalize(x, self.mean, self.std)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _float(self, images: torch.Tensor) -> torch.Tensor:
        from convatlas.data.augment import adapt_channels, to_float

        return adapt_channels(to_float(images.to(self.device, non_blocking=True)), self.channels)

    def eval_input(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) -> the normalised float input the model takes (no augmentation)."""
        return self._finish(self._float(images))

    def eval_masks(self, masks: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W) -> int64 on the device."""
        return masks.to(self.device, non_blocking=True).long()

    def _photometric(self, x: torch.Tensor) -> torch.Tensor:
        a, g, n = self.augment, self.generator, x.shape[0]
        if a.brightness > 0:
            b = torch.rand(n, generator=g, device=x.device) * (2 * a.brightness) + (1 - a.brightness)
            x = (x * b.view(n, 1, 1, 1)).clamp_(0, 1)
        if a.contrast > 0:
            c = (torch.rand(n, generator=g, device=x.device) * (2 * a.contrast) + (1 - a.contrast)).view(n, 1, 1, 1)
            if x.shape[1] == 3:
                luma = torch.tensor((0.299, 0.587, 0.114), dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
                grey = (x * luma).sum(1, keepdim=True)
            else:
                grey = x.mean(1, keepdim=True)
            m = grey.mean(dim=(1, 2, 3), keepdim=True)
            x = (m + c * (x - m)).clamp_(0, 1)
        return x

    def augment_batch(self, images: torch.Tensor, masks: torch.Tensor | None = None, boxes: torch.Tensor | None = None,
                      box_index: torch.Tensor | None = None, box_min_size: float = 0.0) -> SegmentationBatch:
        """Augment a uint8 batch and, by the same maps, its masks ``(N, H, W)`` and boxes ``(M, 4)``
        (``box_index`` ``(M,)``: the image of each box; a moved box is clipped to the image and
        dropped when its width or height is ``box_min_size`` pixels or less)."""
        a = self.augment
        x = self._float(images)
        in_size = tuple(x.shape[-2:])
        theta = None
        if a.moves(in_size):
            theta = random_segmentation_theta(x.shape[0], in_size, self.generator, a, self.device)
        x = self._photometric(x)
        out_masks = masks.to(self.device, non_blocking=True).long() if masks is not None else None
        kept = kept_index = keep = None
        if boxes is not None:
            boxes = boxes.to(self.device)
            box_index = (box_index.to(self.device) if box_index is not None
                         else torch.zeros(len(boxes), dtype=torch.long, device=self.device))
            kept, kept_index, keep = boxes, box_index, torch.ones(len(boxes), dtype=torch.bool, device=self.device)
        if theta is not None:
            out = a.out_size(in_size)
            x = warp_images(x, theta, size=out)
            if out_masks is not None:
                out_masks = warp_masks(out_masks, theta, size=out, fill=self.ignore_index)
            if boxes is not None:
                kept, keep = warp_boxes(boxes, theta, in_size, out, index=box_index, min_size=box_min_size)
                kept_index = box_index[keep]
        return SegmentationBatch(self._finish(x), out_masks,
                                 kept, kept_index, keep, theta)

    def train_batch(self, images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment a uint8 batch and its uint8 masks for training; returns (input, int64 masks)."""
        batch = self.augment_batch(images, masks)
        return batch.images, batch.masks

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
