"""Augmentation on whole batches, on the training device.

The dataset stays in memory as uint8; each step takes a batch of it to the device and applies
every random transform to the whole batch at once (one ``gather`` or one ``grid_sample``
call), instead of running per-image Python transforms in worker processes. Every random
number comes from a :class:`torch.Generator` on the device (and one ``random.Random`` for the
per-batch mixing coefficient), whose states are saved in checkpoints, so a resumed run sees
exactly the augmentations an uninterrupted one would. Every warp samples through
:func:`convatlas.data.geometry.warp_images`, the one warp, which also moves segmentation masks and
boxes with their images.

The transforms and where they come from:

* :func:`random_crop` - pad by ``p`` pixels, crop back to the original size at a random
  offset (He, Zhang, Ren, Sun 2015, arXiv:1512.03385, CIFAR: pad 4, crop 32).
* :func:`random_hflip` - mirror half of the images (Krizhevsky, Sutskever, Hinton 2012).
* :func:`random_resized_crop` - a crop of a random fraction ``s`` of the area and aspect
  ratio ``r``, resized to the full size (Szegedy et al. 2015, arXiv:1409.4842: 8%-100% of the
  area, ratio 3/4-4/3). The box is ``w = sqrt(s r)``, ``h = sqrt(s / r)`` (as fractions of the
  sides, clipped to 1), its centre uniform where the box fits.
* :func:`random_affine` - a small random rotation, scale and shift, and optionally a horizontal
  shear and a squeeze (compress one axis, stretch the other): the "distortions" LeCun et al.
  (1998) trained LeNet-5 with.
* :func:`random_elastic` - elastic distortion (Simard, Steinkraus, Platt 2003, "Best Practices
  for Convolutional Neural Networks Applied to Visual Document Analysis", ICDAR): every pixel
  moves by a random field ``alpha * (G_sigma * U(-1, 1))`` - uniform noise per pixel and axis,
  smoothed by a Gaussian of ``sigma`` pixels and scaled by ``alpha`` pixels (the paper: sigma 4,
  alpha 34 on 29x29 digits). Combined with the affine map, one ``grid_sample`` does both.
* :func:`mixup` - ``x = lam x_i + (1 - lam) x_j``, same for the one-hot targets,
  ``lam ~ Beta(alpha, alpha)`` (Zhang, Cisse, Dauphin, Lopez-Paz 2017, arXiv:1710.09412).
* :func:`cutmix` - paste a box of ``x_j`` covering ``1 - lam`` of the image into ``x_i``; the
  targets mix by the box's true area (Yun et al. 2019, arXiv:1905.04899).
* :func:`normalize` - ``(x - mean) / std`` per channel.
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from convatlas.data.geometry import warp_images

__all__ = [
    "AugmentConfig",
    "BatchPipeline",
    "to_float",
    "adapt_channels",
    "normalize",
    "random_crop",
    "random_hflip",
    "random_resized_crop",
    "random_affine",
    "random_elastic",
    "mixup",
    "cutmix",
]

# ITU-R BT.601 luma weights: grey = 0.299 R + 0.587 G + 0.114 B.
_LUMA = (0.299, 0.587, 0.114)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` -> float32 in [0, 1]."""
    return images.float().div_(255.0)


def adapt_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Make ``x`` have ``channels`` channels: grey -> RGB repeats the channel, RGB -> grey takes
    the BT.601 luma. Other mismatches raise ``ValueError``."""
    have = x.shape[1]
    if have == channels:
        return x
    if have == 1 and channels == 3:
        return x.expand(-1, 3, -1, -1)
    if have == 3 and channels == 1:
        weights = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x * weights).sum(dim=1, keepdim=True)
    raise ValueError(f"cannot turn {have}-channel images into the {channels} channels the model takes")


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(x - mean) / std`` per channel."""
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def _uniform(n: int, low: float, high: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=device) * (high - low) + low


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad each side by ``padding``, then crop every image back to its size at its own
    random offset (one gather for the batch)."""
    if padding <= 0:
        return x
    n, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=x.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chan, rows, cols]


def random_hflip(x: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror each image left-right with probability ``p``."""
    flip = torch.rand(x.shape[0], generator=generator, device=x.device) < p
    return torch.where(flip[:, None, None, None], x.flip(3), x)


# Every warp samples through the one geometry module (masks and boxes move by the same maps there).
_warp = warp_images


def random_resized_crop(
    x: torch.Tensor,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> torch.Tensor:
    """Crop a box of random area fraction ``s ~ U(scale)`` and aspect ratio
    ``log r ~ U(log ratio)`` from each image and resize it to the full size (bilinear)."""
    n, dev = x.shape[0], x.device
    area = _uniform(n, scale[0], scale[1], generator, dev)
    log_r = _uniform(n, math.log(ratio[0]), math.log(ratio[1]), generator, dev)
    aspect = log_r.exp()
    w = (area * aspect).sqrt().clamp(max=1.0)
    h = (area / aspect).sqrt().clamp(max=1.0)
    # centre in normalised coordinates [-1, 1], uniform where the box fits
    cx = (torch.rand(n, generator=generator, device=dev) * 2 - 1) * (1 - w)
    cy = (torch.rand(n, generator=generator, device=dev) * 2 - 1) * (1 - h)
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 2] = w, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    return warp_images(x, theta)


def _affine_theta(n: int, generator: torch.Generator, device: torch.device, degrees: float, translate: float,
                  scale: float, shear: float = 0.0, squeeze: float = 0.0) -> torch.Tensor:
    """(N, 2, 3) random affine maps (output to input coordinates): rotation ``U(-degrees, degrees)``,
    zoom ``U(1 - scale, 1 + scale)``, shift ``U(-translate, translate)`` of the size; then, where
    asked, a horizontal shear by an angle ``U(-shear, shear)`` degrees and a squeeze
    ``diag(s, 1/s)``, ``s ~ U(1 - squeeze, 1 + squeeze)`` (horizontal compression with vertical
    elongation, or the reverse) -- the distortions LeCun et al. (1998, Sec. III.C) trained with."""
    angle = _uniform(n, -degrees, degrees, generator, device) * (math.pi / 180)
    zoom = _uniform(n, 1 - scale, 1 + scale, generator, device)
    shift = _uniform(2 * n, -translate, translate, generator, device).view(n, 2) * 2  # size -> [-1, 1] units
    cos, sin = angle.cos() / zoom, angle.sin() / zoom
    linear = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)  # (N, 2, 2)
    if shear:  # linear @ [[1, tan], [0, 1]]: x_in = x + tan(angle) y
        slant = (_uniform(n, -shear, shear, generator, device) * (math.pi / 180)).tan()
        linear[:, :, 1] += slant[:, None] * linear[:, :, 0]
    if squeeze:
        s = _uniform(n, 1 - squeeze, 1 + squeeze, generator, device)
        linear = linear * torch.stack([s, 1 / s], 1)[:, None, :]  # linear @ diag(s, 1/s)
    return torch.cat([linear, shift[:, :, None]], 2)


@functools.lru_cache(maxsize=16)  # the same few (size, sigma, device) every training step
def _gaussian_matrix(size: int, sigma: float, device: torch.device) -> torch.Tensor:
    """(size, size) matrix ``M`` with ``M @ v`` = ``v`` convolved with a normalised Gaussian of
    ``sigma`` (taps to 3 sigma), reflected at the borders (``...v2 v1 | v0 v1 ... | v_{n-2}...``)."""
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-0.5 * (taps / sigma) ** 2)
    weights /= weights.sum()
    rows = torch.arange(size)[:, None] + taps.long()[None, :]
    if size > 1:  # reflect about both ends (period 2(n - 1))
        period = 2 * (size - 1)
        rows = rows.remainder(period)
        rows = torch.where(rows >= size, period - rows, rows)
    else:
        rows = torch.zeros_like(rows)
    matrix = torch.zeros(size, size, dtype=torch.float64)
    matrix.scatter_add_(1, rows, weights.expand(size, -1).contiguous())
    return matrix.to(device=device, dtype=torch.float32)


def _elastic_field(n: int, h: int, w: int, generator: torch.Generator, device: torch.device, alpha: float,
                   sigma: float) -> torch.Tensor:
    """(N, H, W, 2) displacements in normalised ``[-1, 1]`` units (x then y, as ``grid_sample``
    reads them): uniform noise per pixel and axis, smoothed by a separable Gaussian (two small
    matrix products), times ``alpha`` pixels."""
    noise = torch.rand(n, h, w, 2, generator=generator, device=device) * 2 - 1
    rows, cols = _gaussian_matrix(h, sigma, device), _gaussian_matrix(w, sigma, device)
    smooth = torch.einsum("ij,njkc,lk->nilc", rows, noise, cols)
    pixels_to_unit = torch.tensor([2.0 / w, 2.0 / h], device=device)
    return smooth * (alpha * pixels_to_unit)


def random_warp(
    x: torch.Tensor,
    generator: torch.Generator,
    degrees: float = 0.0,
    translate: float = 0.0,
    scale: float = 0.0,
    elastic_alpha: float = 0.0,
    elastic_sigma: float = 4.0,
    *,
    shear: float = 0.0,
    squeeze: float = 0.0,
) -> torch.Tensor:
    """A random affine map (rotation, zoom, shift, shear, squeeze: see :func:`random_affine`) and
    an elastic distortion, sampled in one ``grid_sample`` (bilinear, zeros outside). With
    everything at 0, ``x`` comes back unchanged."""
    affine = degrees != 0 or translate != 0 or scale != 0 or shear != 0 or squeeze != 0
    if not affine and elastic_alpha == 0:
        return x
    n, _, h, w = x.shape
    if affine:
        theta = _affine_theta(n, generator, x.device, degrees, translate, scale, shear, squeeze)
    else:
        theta = torch.eye(2, 3, device=x.device).expand(n, 2, 3)
    field = _elastic_field(n, h, w, generator, x.device, elastic_alpha, elastic_sigma) if elastic_alpha else None
    return warp_images(x, theta, field)


def random_affine(
    x: torch.Tensor,
    generator: torch.Generator,
    degrees: float = 0.0,
    translate: float = 0.0,
    scale: float = 0.0,
    *,
    shear: float = 0.0,
    squeeze: float = 0.0,
) -> torch.Tensor:
    """Rotate by ``U(-degrees, degrees)``, zoom by ``U(1 - scale, 1 + scale)``, shift by up to
    ``translate`` of the size, shear horizontally by ``U(-shear, shear)`` degrees and squeeze by
    ``diag(s, 1/s)``, ``s ~ U(1 - squeeze, 1 + squeeze)``, per image (bilinear, zeros outside)."""
    return random_warp(x, generator, degrees, translate, scale, shear=shear, squeeze=squeeze)


def random_elastic(x: torch.Tensor, generator: torch.Generator, alpha: float, sigma: float = 4.0) -> torch.Tensor:
    """Elastic distortion (Simard et al. 2003): move every pixel by ``alpha`` times a Gaussian-
    smoothed (``sigma`` pixels) uniform random field; bilinear, zeros outside."""
    if sigma <= 0:
        raise ValueError(f"elastic sigma must be positive (pixels), got {sigma}")
    return random_warp(x, generator, elastic_alpha=alpha, elastic_sigma=sigma)


def mixup(x: torch.Tensor, targets: torch.Tensor, lam: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend every example with a random partner: ``lam x + (1 - lam) x[perm]`` (soft targets too)."""
    perm = torch.randperm(x.shape[0], generator=generator, device=x.device)
    return x.mul(lam).add_(x[perm], alpha=1 - lam), targets.mul(lam).add_(targets[perm], alpha=1 - lam)


def cutmix(x: torch.Tensor, targets: torch.Tensor, lam: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste a box from a random partner covering about ``1 - lam`` of the image; the targets mix
    by the area actually pasted (the box is clipped at the borders)."""
    n, _, h, w = x.shape
    perm = torch.randperm(n, generator=generator, device=x.device)
    cut = math.sqrt(1.0 - lam)
    ch, cw = int(h * cut), int(w * cut)
    cy = int(torch.randint(0, h, (1,), generator=generator, device=x.device))
    cx = int(torch.randint(0, w, (1,), generator=generator, device=x.device))
    y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
    x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
    mixed = x.clone()
    mixed[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
    kept = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
    return mixed, targets.mul(kept).add_(targets[perm], alpha=1 - kept)


@dataclass
class AugmentConfig:
    """Which batch augmentations run in training (all off by default)."""

    crop_padding: int = 0
    hflip: bool = False
    rrc_scale: tuple[float, float] | None = None
    rrc_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    affine_degrees: float = 0.0
    affine_translate: float = 0.0
    affine_scale: float = 0.0
    affine_shear: float = 0.0
    affine_squeeze: float = 0.0
    elastic_alpha: float = 0.0
    elastic_sigma: float = 4.0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mix_prob: float = 1.0

    @property
    def mixes(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0


class BatchPipeline:
    """uint8 batch -> model input (float, normalised, augmented in training) and targets.

    ``mean``/``std`` are per model channel. In training, targets are class indices, or soft
    (N, classes) targets when mixup/cutmix is on. ``state_dict`` holds the random states.
    """

    def __init__(
        self,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        channels: int,
        num_classes: int,
        augment: AugmentConfig | None = None,
        device: torch.device | str = "cpu",
        seed: int = 0,
        channels_last: bool = False,
    ) -> None:
        self.mean, self.std = tuple(mean), tuple(std)
        if len(self.mean) != channels or len(self.std) != channels:
            raise ValueError(f"mean/std need {channels} values, got {self.mean} / {self.std}")
        self.channels, self.num_classes = channels, num_classes
        self.augment = augment or AugmentConfig()
        self.device = torch.device(device)
        self.channels_last = channels_last
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self.scalar_rng = random.Random(seed)

    def eval_input(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) -> the normalised float input the model takes (no augmentation)."""
        x = adapt_channels(to_float(images.to(self.device, non_blocking=True)), self.channels)
        x = normalize(x, self.mean, self.std)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def train_batch(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment a uint8 batch for training; returns (input, targets)."""
        a, g = self.augment, self.generator
        x = adapt_channels(to_float(images.to(self.device, non_blocking=True)), self.channels)
        labels = labels.to(self.device, non_blocking=True)
        if a.rrc_scale is not None:
            x = random_resized_crop(x, g, tuple(a.rrc_scale), tuple(a.rrc_ratio))
        x = random_warp(x, g, a.affine_degrees, a.affine_translate, a.affine_scale, a.elastic_alpha, a.elastic_sigma,
                        shear=a.affine_shear, squeeze=a.affine_squeeze)
        x = random_crop(x, a.crop_padding, g)
        if a.hflip:
            x = random_hflip(x, g)
        x = normalize(x, self.mean, self.std)
        targets: torch.Tensor = labels
        if a.mixes:
            targets = F.one_hot(labels, self.num_classes).to(x.dtype)
            if self.scalar_rng.random() < a.mix_prob:
                use_cutmix = a.cutmix_alpha > 0 and (a.mixup_alpha <= 0 or self.scalar_rng.random() < 0.5)
                alpha = a.cutmix_alpha if use_cutmix else a.mixup_alpha
                lam = self.scalar_rng.betavariate(alpha, alpha)
                x, targets = (cutmix if use_cutmix else mixup)(x, targets, lam, g)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, targets

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "scalar_rng": self.scalar_rng.getstate()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.scalar_rng.setstate(state["scalar_rng"])
