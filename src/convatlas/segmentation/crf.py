"""The fully connected CRF of Krähenbühl & Koltun, in PyTorch: nothing to compile, CPU or GPU.

Philipp Krähenbühl and Vladlen Koltun, "Efficient Inference in Fully Connected CRFs with
Gaussian Edge Potentials", NIPS 2011 (arXiv:1210.5644). DeepLab (Chen et al., ICLR 2015;
PAMI 2018) runs it after its network to snap the coarse, blurry label maps to image edges.

Every pixel is joined to every other. The energy of a labelling ``x`` is

    E(x) = sum_i psi_u(x_i) + sum_{i<j} mu(x_i, x_j) * k(f_i, f_j)
    k(f_i, f_j) = w_1 exp(-|p_i - p_j|^2 / 2 theta_alpha^2 - |I_i - I_j|^2 / 2 theta_beta^2)   appearance
                + w_2 exp(-|p_i - p_j|^2 / 2 theta_gamma^2)                                   smoothness

with ``p`` the pixel position, ``I`` its RGB colour and ``mu`` the label compatibility (Potts:
``mu(l, l') = [l != l']``). Mean-field inference (the paper's Algorithm 1) runs, ``iterations``
times::

    Q_i(l)  = softmax_l(-psi_u(l))                                  initialise
    Qt_i(l) = sum_m w_m sum_j k_m(f_i, f_j) Q_j(l)                  message passing + weighting
    Qh_i(l) = sum_l' mu(l, l') Qt_i(l')                             compatibility transform
    Q_i(l)  = softmax_l(-psi_u(l) - Qh_i(l))                        local update, normalise

Message passing is Gaussian filtering in feature space (5-D for the appearance kernel: x, y, r,
g, b; 2-D for smoothness). Three ways are here, named by ``method``:

- ``"permutohedral"`` (the default): the appearance kernel on the permutohedral lattice of Adams,
  Baek & Davis (Eurographics 2010) - splat, blur, slice, each a sparse (CSR) matrix times the
  ``(N, L)`` values - built exactly as Krähenbühl's ``permutohedral.cpp`` builds it (same scaling,
  rounding, simplex, blur order); the smoothness kernel, which depends on position only, as an
  exact separable Gaussian (two depthwise ``conv2d`` passes, taps out to 4 standard deviations).
- ``"pydensecrf"``: both kernels on the lattice, as pydensecrf does: its results to float
  rounding (measured: mean |dQ| ~1e-7, the same labels).
- ``"exact"``: the sums themselves, over chunks of the N x N kernel matrix - O(N^2), for small
  images, and the reference the other two are measured against (the smoothness kernel as the
  separable filter with taps to the image's edges, which is the same sum).

The lattice is an approximation, pydensecrf's included: on real photos (24x32 to 96x128, 2 to 21
labels, DeepLab's parameters) the exact CRF and the lattice CRF differ by 0.003 - 0.02 in mean
|dQ| and agree on 94 - 99.9% of the labels (96x128, 21 labels: 0.0026, 97.4%);
``"permutohedral"`` and pydensecrf differ by < 2e-3 in mean |dQ| and agree on >= 99.3% (512x512,
21 labels: 6e-4, 99.4%); ``"pydensecrf"`` and pydensecrf agree on every label (``tests/test_crf.py``,
``benchmarks/bench_crf.py``). A 512x512 image, 21 labels, 10 iterations takes 2.6 s on one CPU
thread (pydensecrf: 2.0 s).
Everything is differentiable in the unaries (CRF-as-RNN style), and runs on any device torch does.

What this module does the way pydensecrf (``DenseCRF2D``, Krähenbühl's 2013 code) does, not the
way the paper's formulas read:

- **Normalised kernels** (``NORMALIZE_SYMMETRIC``, pydensecrf's default): each kernel is applied
  as ``D^-1/2 K D^-1/2`` with ``D = diag(K 1)``, so the weights ``w`` are on the scale of the
  unary (a uniform region passes each pixel about ``w`` times its own ``Q``). DeepLab's published
  weights assume this.
- **Self-loops kept**: the paper sums over ``j != i``; pydensecrf's lattice filter includes
  ``j = i`` and subtracts nothing, and so do all three methods here.
- **Potts as a reward**: pydensecrf applies a scalar compatibility ``w`` as ``-w * Qt``
  (``mu = -I``), which gives the same softmax as the paper's ``mu = 1 - I`` (the two differ by
  ``sum_l' Qt(l')``, the same for every label). A matrix ``compatibility`` is the paper's ``mu``
  (a penalty, like pydensecrf's 2-D ``compat``), symmetrised to ``(mu + mu^T) / 2`` as pydensecrf
  does; the weights ``pos_w`` and ``bi_w`` still multiply it.

The defaults are DeepLab v2's (ResNet-101, VOC 2012) as its PyTorch reimplementation configures
them (kazuto1011/deeplab-pytorch ``configs/voc12.yaml``: ITER_MAX 10, POS_W 3, POS_XY_STD 1,
BI_W 4, BI_XY_STD 67, BI_RGB_STD 3): :data:`DEEPLAB_V2`. DeepLab v1 fixed ``w_2 = 3``,
``theta_gamma = 3`` and cross-validated the rest (``w_1`` in 5..10, ``theta_alpha`` in 50..100,
``theta_beta`` in 3..6, about 10 iterations); its released DeepLab-LargeFOV script
(``run_densecrf.sh``) uses ``bi_w 4, bi_xy_std 49, bi_rgb_std 5, pos_w 3, pos_xy_std 3``, 10
iterations: :data:`DEEPLAB_V1`. pydensecrf's README example is ``sxy=3, compat=3`` and
``sxy=80, srgb=13, compat=10``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convatlas._checks import non_negative, non_negative_int, one_of, positive_number

__all__ = [
    "CRFParams", "DEEPLAB_V1", "DEEPLAB_V2", "dense_crf", "dense_crf_batch", "DenseCRF",
    "PermutohedralLattice", "exact_gaussian_filter", "separable_gaussian_filter",
    "bilateral_features", "position_features",
]

METHODS = ("permutohedral", "pydensecrf", "exact")
_CODE_LIMIT = 2.0 ** 62  # lattice keys are packed into one int64 while their box has fewer points than this


@dataclass(frozen=True)
class CRFParams:
    """One set of dense-CRF parameters, as DeepLab's configs name them.

    ``pos_w``/``pos_xy_std`` are the smoothness kernel's ``w_2``/``theta_gamma`` (pixels);
    ``bi_w``/``bi_xy_std``/``bi_rgb_std`` the appearance kernel's ``w_1``/``theta_alpha``
    (pixels)/``theta_beta`` (0..255 intensity units).
    """

    iterations: int = 10
    pos_w: float = 3.0
    pos_xy_std: float = 1.0
    bi_w: float = 4.0
    bi_xy_std: float = 67.0
    bi_rgb_std: float = 3.0
    source: str = ""

    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`dense_crf` (everything but ``source``)."""
        out = asdict(self)
        out.pop("source")
        return out


DEEPLAB_V2 = CRFParams(10, 3.0, 1.0, 4.0, 67.0, 3.0,
                       source="DeepLab v2 ResNet-101 on VOC 2012: kazuto1011/deeplab-pytorch configs/voc12.yaml")
DEEPLAB_V1 = CRFParams(10, 3.0, 3.0, 4.0, 49.0, 5.0,
                       source="DeepLab v1 LargeFOV: run_densecrf.sh of deeplab-public (w_2 = 3, theta_gamma = 3 "
                              "fixed in the paper; w_1, theta_alpha, theta_beta cross-validated)")


# --------------------------------------------------------------------------------------------
# features


def position_features(height: int, width: int, xy_std: float, *, device=None, dtype=torch.float32) -> Tensor:
    """``(H*W, 2)``: ``(x / xy_std, y / xy_std)`` of every pixel, row by row (pydensecrf's order)."""
    y, x = torch.meshgrid(torch.arange(height, device=device, dtype=dtype),
                          torch.arange(width, device=device, dtype=dtype), indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], dim=1) / xy_std


def bilateral_features(image_chw: Tensor, xy_std: float, rgb_std: float, *, dtype=torch.float32) -> Tensor:
    """``(H*W, 5)``: ``(x / xy_std, y / xy_std, r / rgb_std, g / rgb_std, b / rgb_std)``."""
    _, height, width = image_chw.shape
    pos = position_features(height, width, xy_std, device=image_chw.device, dtype=dtype)
    rgb = image_chw.reshape(3, -1).t().to(dtype) / rgb_std
    return torch.cat([pos, rgb], dim=1)


# --------------------------------------------------------------------------------------------
# Gaussian filters: sum_j exp(-|f_i - f_j|^2 / 2) v_j, self included


def exact_gaussian_filter(features: Tensor, values: Tensor, *, chunk_elements: int = 1 << 22) -> Tensor:
    """``sum_j exp(-|f_i - f_j|^2 / 2) values_j`` for every ``i``, exactly: O(N^2 d) work.

    ``features`` is ``(N, d)`` (already divided by the standard deviations), ``values`` ``(N, C)``.
    Rows of the kernel matrix are made ``chunk_elements // N`` at a time.
    """
    n = features.shape[0]
    features = features - features.mean(0)  # the distances do not change; the squares get smaller
    rows = max(1, chunk_elements // max(n, 1))
    return torch.cat([_gaussian_block(features[start:start + rows], features) @ values
                      for start in range(0, n, rows)], 0)


def _gaussian_block(a: Tensor, b: Tensor) -> Tensor:
    """``exp(-|a_i - b_j|^2 / 2)``, ``(len(a), len(b))``. The squared distances are formed as
    ``|a|^2 + |b|^2 - 2 a.b`` in float64 (in float32 that loses digits when the features are large,
    e.g. positions over a 1-pixel standard deviation)."""
    a64, b64 = a.double(), b.double()
    dist2 = (a64 * a64).sum(1)[:, None] + (b64 * b64).sum(1)[None, :] - 2.0 * (a64 @ b64.t())
    return torch.exp(dist2.clamp_(min=0).mul_(-0.5)).to(a.dtype)


def _gaussian_taps(std: float, radius: int, device, dtype) -> Tensor:
    k = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    return torch.exp(-0.5 * (k / std) ** 2)


def separable_gaussian_filter(values_chw: Tensor, std: float, *, truncate: float = 4.0) -> Tensor:
    """``sum_j exp(-|p_i - p_j|^2 / 2 std^2) v_j`` over pixel positions, as two 1-D passes.

    ``values_chw`` is ``(C, H, W)``; outside the image counts as zero (as for the dense sum).
    The taps go out to ``ceil(truncate * std)`` pixels (capped at the image size, where the
    filter is exact); what is cut off weighs at most ``exp(-truncate^2 / 2)`` (3e-4 at 4).
    """
    x = values_chw.unsqueeze(0).contiguous(memory_format=torch.channels_last)
    return _separable_nchw(x, std, truncate).squeeze(0).contiguous()


def _separable_nchw(x: Tensor, std: float, truncate: float = 4.0) -> Tensor:
    """The two passes on ``(1, C, H, W)``: depthwise ``conv2d``, fastest with channels-last strides."""
    channels, height, width = x.shape[1:]
    for axis, size in ((3, width), (2, height)):
        radius = size - 1 if math.isinf(truncate) else min(int(math.ceil(truncate * std)), size - 1)
        taps = _gaussian_taps(std, radius, x.device, x.dtype)
        shape = (1, 1, 1, 2 * radius + 1) if axis == 3 else (1, 1, 2 * radius + 1, 1)
        padding = (0, radius) if axis == 3 else (radius, 0)
        x = F.conv2d(x, taps.reshape(shape).expand(channels, *shape[1:]), padding=padding, groups=channels)
    return x


def _separable_on_pixels(height: int, width: int, std: float, truncate: float = 4.0) -> Callable[[Tensor], Tensor]:
    """The smoothness filter on ``(N, L)`` values (pixels row by row): a channels-last view, no copy."""
    def smooth(q: Tensor) -> Tensor:
        x = q.reshape(1, height, width, q.shape[1]).permute(0, 3, 1, 2)
        return _separable_nchw(x, std, truncate).permute(0, 2, 3, 1).reshape(height * width, q.shape[1])
    return smooth


class PermutohedralLattice:
    """Gaussian filtering in a d-dimensional feature space in O(N d^2): Adams, Baek & Davis 2010.

    ``PermutohedralLattice(features).filter(values)`` approximates
    ``sum_j exp(-|f_i - f_j|^2 / 2) values_j`` (up to a constant factor that the CRF's
    normalisation cancels). Each feature vector is lifted onto the plane ``sum = 0`` of
    ``R^(d+1)``, where the lattice of points with integer coordinates that are all congruent mod
    ``d+1`` tiles it with simplices. A value is **splatted** onto the ``d+1`` corners of its
    simplex with barycentric weights, **blurred** along the ``d+1`` lattice directions with the
    kernel ``[1/2, 1, 1/2]``, and **sliced** back with the same weights. Only the lattice points
    that some feature touches exist (a sorted table of their integer keys stands in for
    pydensecrf's hash table); a neighbour that does not exist counts as zero. The scaling, the
    rounding and the order of the blur are those of Krähenbühl's ``permutohedral.cpp``.
    """

    def __init__(self, features: Tensor) -> None:
        if features.dim() != 2:
            raise ValueError(f"features must be (N, d), got shape {tuple(features.shape)}")
        f = features.to(torch.float32)
        n, d = f.shape
        device = f.device
        self.num_points, self.dim = n, d
        # the diagonal part of the lifting E (p.5 of Adams et al.), scaled so that the lattice's
        # blur approximates a Gaussian of standard deviation 1 in feature units
        inv_std = math.sqrt(2.0 / 3.0) * (d + 1)
        scale = torch.tensor([inv_std / math.sqrt((i + 1) * (i + 2)) for i in range(d)], device=device)
        cf = f * scale
        # elevated_j = sum_{k >= j} cf_k - j cf_{j-1}: the point on the plane sum = 0
        tail = torch.flip(torch.cumsum(torch.flip(cf, [1]), 1), [1])
        tail = torch.cat([tail, torch.zeros(n, 1, device=device)], 1)
        elevated = tail.clone()
        elevated[:, 1:] -= torch.arange(1, d + 1, device=device, dtype=torch.float32) * cf
        # the nearest remainder-0 lattice point, and where the point sits in its simplex
        down = elevated * (1.0 / (d + 1))
        rounded = torch.round(down)
        rem0 = rounded * (d + 1)
        total = rounded.sum(1, keepdim=True)
        diff = elevated - rem0
        less = diff[:, :, None] < diff[:, None, :]
        upper = torch.ones(d + 1, d + 1, dtype=torch.bool, device=device).triu(1)
        rank = (less & upper).sum(2) + (~less & upper).sum(1) + total.long()
        wrap = (rank < 0).long() - (rank > d).long()
        rank = rank + wrap * (d + 1)
        rem0 = rem0 + wrap.to(rem0.dtype) * (d + 1)
        # barycentric coordinates (p.10)
        v = (elevated - rem0) * (1.0 / (d + 1))
        bary = torch.zeros(n, d + 2, device=device)
        bary.scatter_add_(1, d - rank, v)
        bary.scatter_add_(1, d - rank + 1, -v)
        bary[:, 0] += 1.0 + bary[:, d + 1]
        self.weights = bary[:, : d + 1].contiguous()
        # the d+1 corners: key of corner r (first d coordinates; the last follows from sum = 0)
        r = torch.arange(d + 1, device=device).view(1, d + 1, 1)
        rk = rank[:, None, :d]
        keys = rem0.long()[:, None, :d] + torch.where(rk <= d - r, r, r - (d + 1))  # (N, d+1, d)
        self.alpha = 1.0 / (1.0 + 2.0 ** (-d))  # Adams's constant, as pydensecrf slices with it
        self._index(keys.reshape(-1, d))

    def _index(self, keys: Tensor) -> None:
        """Number the distinct corners, find each one's neighbours, and build the three operators."""
        n, d = self.num_points, self.dim
        device = keys.device
        lo = keys.amin(0) - d
        span = keys.amax(0) + d + 1 - lo  # room for every neighbour: a coordinate moves by <= d
        # per direction j, the neighbour one step back: key - 1 in every coordinate but j, key + d in
        # coordinate j (for j = d, the implied last coordinate, key - 1 in all); m where absent
        back = []
        if float(torch.prod(span.double())) < _CODE_LIMIT:  # one int64 code per key: sort and search
            strides = torch.ones(d, dtype=torch.long, device=device)
            for i in range(d - 2, -1, -1):
                strides[i] = strides[i + 1] * span[i + 1]
            codes = ((keys - lo) * strides).sum(1)
            table, inverse = torch.unique(codes, sorted=True, return_inverse=True)
            m = table.numel()
            everyone = int(strides.sum())
            for j in range(d + 1):
                code = table - (everyone - (d + 1) * int(strides[j]) if j < d else everyone)
                at = torch.searchsorted(table, code).clamp_(max=m - 1)
                back.append(torch.where(table[at] == code, at, m))
        else:  # keys too wide for one int64: sort whole rows instead
            table, inverse = torch.unique(keys, dim=0, return_inverse=True)
            m = table.shape[0]
            for j in range(d + 1):
                step = torch.full((d,), -1, dtype=torch.long, device=device)
                if j < d:
                    step[j] = d
                both, inv = torch.unique(torch.cat([table, table + step]), dim=0, return_inverse=True)
                which = torch.full((both.shape[0],), m, dtype=torch.long, device=device)
                which[inv[:m]] = torch.arange(m, device=device)
                back.append(which[inv[m:]])
        self.num_vertices = m
        self.offsets = inverse.view(n, d + 1)
        # slice: N x M, row i holds pixel i's d+1 barycentric weights (alpha folded in)
        cols, order = torch.sort(self.offsets, dim=1)
        weights = torch.gather(self.weights, 1, order)
        crow = torch.arange(0, n * (d + 1) + 1, d + 1, device=device)
        self._slice = _csr(crow, cols.reshape(-1), (weights * self.alpha).reshape(-1), (n, m))
        # splat: M x N, its transpose without alpha
        vertex = self.offsets.reshape(-1)
        order = torch.argsort(vertex, stable=True)
        pixel = torch.arange(n, device=device).repeat_interleave(d + 1)
        crow = _row_starts(vertex, m)
        self._splat = _csr(crow, pixel[order], self.weights.reshape(-1)[order], (m, n))
        # blur along direction j: v_i + (v_back + v_ahead) / 2, absent neighbours left out. The keys
        # are numbered in lexicographic order, and a step back raises coordinate 0 only for j = 0:
        # so each row's columns come sorted as (back, i, ahead), or (ahead, i, back) for j = 0.
        self._blur = []
        me = torch.arange(m, device=device)
        halves = torch.tensor([0.5, 1.0, 0.5], device=device).expand(m, 3)
        for j, behind in enumerate(back):
            ahead = torch.full((m + 1,), m, dtype=torch.long, device=device).scatter_(0, behind, me)[:m]
            cols = torch.stack([ahead, me, behind] if j == 0 else [behind, me, ahead], 1)
            keep = cols < m
            crow = torch.cat([me.new_zeros(1), torch.cumsum(keep.sum(1), 0)])
            self._blur.append(_csr(crow, cols.masked_select(keep), halves.masked_select(keep), (m, m)))

    def filter(self, values: Tensor) -> Tensor:
        """Splat ``values`` ``(N, C)`` onto the lattice, blur, slice back: ``(N, C)``."""
        if values.dim() != 2 or values.shape[0] != self.num_points:
            raise ValueError(f"values must be ({self.num_points}, C), got shape {tuple(values.shape)}")
        grid = self._splat @ values.to(torch.float32)
        for blur in self._blur:
            grid = blur @ grid
        return (self._slice @ grid).to(values.dtype)

    def normalised(self) -> Callable[[Tensor], Tensor]:
        """The filter ``v -> D^-1/2 K D^-1/2 v``, ``D = diag(K 1)`` (pydensecrf's ``NORMALIZE_SYMMETRIC``),
        with the two diagonal scalings folded into the splat and slice matrices (free per call)."""
        norm = (self.filter(torch.ones(self.num_points, 1, device=self.weights.device)) + 1e-20).rsqrt()[:, 0]
        splat = _csr(self._splat.crow_indices(), self._splat.col_indices(),
                     self._splat.values() * norm[self._splat.col_indices()], tuple(self._splat.shape))
        slice_values = (self._slice.values().view(self.num_points, -1) * norm[:, None]).reshape(-1)
        slice_ = _csr(self._slice.crow_indices(), self._slice.col_indices(), slice_values, tuple(self._slice.shape))
        blurs = self._blur

        def apply(values: Tensor) -> Tensor:
            grid = splat @ values.to(torch.float32)
            for blur in blurs:
                grid = blur @ grid
            return (slice_ @ grid).to(values.dtype)
        return apply


def _row_starts(rows: Tensor, num_rows: int) -> Tensor:
    """CSR row pointers of sorted row indices."""
    counts = torch.bincount(rows, minlength=num_rows)
    return torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])


def _csr(crow: Tensor, col: Tensor, values: Tensor, size: tuple[int, int]) -> Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the matrix-times-dense product is all we use
        warnings.simplefilter("ignore")
        return torch.sparse_csr_tensor(crow, col, values, size=size, check_invariants=False)


# --------------------------------------------------------------------------------------------
# the normalised kernels mean-field uses: Q -> D^-1/2 K D^-1/2 Q (pydensecrf's NORMALIZE_SYMMETRIC)


def _exact_filter(features: Tensor) -> Callable[[Tensor], Tensor]:
    """The exact filter; the whole N x N matrix is made once when it has at most 2^24 entries."""
    n = features.shape[0]
    if n * n <= 1 << 24:
        centred = features - features.mean(0)
        kernel = _gaussian_block(centred, centred)
        return lambda q: kernel @ q
    return lambda q: exact_gaussian_filter(features, q)


def _symmetric(filter_: Callable[[Tensor], Tensor], ones: Tensor) -> Callable[[Tensor], Tensor]:
    norm = (filter_(ones) + 1e-20).rsqrt()
    return lambda q: norm * filter_(norm * q)


def _kernels(image_chw: Tensor, num_pixels: int, *, pos_w: float, pos_xy_std: float, bi_w: float,
             bi_xy_std: float, bi_rgb_std: float, method: str, dtype: torch.dtype
             ) -> list[tuple[float, Callable[[Tensor], Tensor]]]:
    """The (weight, normalised filter on ``(N, L)``) pairs of the smoothness and appearance terms."""
    _, height, width = image_chw.shape
    device = image_chw.device
    ones = torch.ones(num_pixels, 1, device=device, dtype=dtype)
    terms = []
    if pos_w > 0:
        if method == "exact":  # separable with taps to the image's edges: the exact sum, in O(N (H + W))
            smooth = _separable_on_pixels(height, width, pos_xy_std, truncate=float("inf"))
            smooth = _symmetric(smooth, ones)
        elif method == "pydensecrf":
            smooth = PermutohedralLattice(position_features(height, width, pos_xy_std, device=device)).normalised()
        else:
            smooth = _symmetric(_separable_on_pixels(height, width, pos_xy_std), ones)
        terms.append((pos_w, smooth))
    if bi_w > 0:
        feats = bilateral_features(image_chw, bi_xy_std, bi_rgb_std, dtype=dtype)
        if method == "exact":
            appearance = _symmetric(_exact_filter(feats), ones)
        else:
            appearance = PermutohedralLattice(feats).normalised()
        terms.append((bi_w, appearance))
    return terms


def _mean_field(unary: Tensor, terms: Sequence[tuple[float, Callable[[Tensor], Tensor]]],
                compatibility: Tensor | None, iterations: int) -> Tensor:
    """Algorithm 1 on ``unary`` ``(N, L)``; ``compatibility`` None means Potts."""
    negative_unary = -unary
    q = torch.softmax(negative_unary, dim=1)
    if not terms:
        return q
    for _ in range(iterations):
        (w, kernel), *others = terms
        message = kernel(q).mul_(w)  # weighted messages, summed over the kernels
        for w, kernel in others:
            message = message.add_(kernel(q), alpha=w)
        # Potts: mu = 1 - I gives sum(message) - message(l); the sum is the same for every label
        if compatibility is None:
            energy = message.add_(negative_unary)
        else:
            energy = negative_unary - message @ compatibility.t()
        q = torch.softmax(energy, dim=1)
    return q


# --------------------------------------------------------------------------------------------
# checking what comes in


def _as_tensor(x: Any, name: str) -> Tensor:
    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    raise TypeError(f"{name} must be a torch.Tensor or a numpy array, got {type(x).__name__}")


def _check_image(image: Any, height: int, width: int) -> Tensor:
    """The image as a ``(3, H, W)`` tensor of 0..255 values, from ``(H, W, 3)`` or ``(3, H, W)``."""
    img = _as_tensor(image, "image")
    grey_hint = ("for a grey image repeat the channel three times (numpy: np.repeat(image[..., None], 3, axis=-1) "
                 "for (H, W); torch: image.expand(3, H, W) for (1, H, W)), for RGBA drop the alpha channel")
    if img.dim() == 2:
        raise ValueError(f"the dense CRF's bilateral (appearance) kernel needs an RGB image with 3 channels, got "
                         f"a single-channel image of shape {tuple(img.shape)}; {grey_hint}")
    if img.dim() != 3:
        raise ValueError(f"image must be (H, W, 3) or (3, H, W), got shape {tuple(img.shape)}")
    if tuple(img.shape[:2]) == (height, width):
        hwc, channels = True, img.shape[2]
    elif tuple(img.shape[1:]) == (height, width):
        hwc, channels = False, img.shape[0]
    else:
        raise ValueError(f"image of shape {tuple(img.shape)} does not match the probabilities' {height}x{width} "
                         f"pixels; resize one to the other first (e.g. F.interpolate the logits to the image size)")
    if channels != 3:
        raise ValueError(f"the dense CRF's bilateral (appearance) kernel needs an RGB image with 3 channels, got "
                         f"{channels} (image shape {tuple(img.shape)}); {grey_hint}")
    chw = img.permute(2, 0, 1) if hwc else img
    if img.dtype == torch.uint8:
        return chw
    if img.dtype.is_floating_point or img.dtype == torch.bool or img.dtype.is_complex:
        hi = float(img.max()) if img.numel() and not img.dtype.is_complex else float("nan")
        hint = (" (its values lie in [0, 1]: multiply by 255 and round)" if 0 <= hi <= 1 else "")
        raise ValueError(f"image must hold 0..255 intensities as uint8 (bi_rgb_std is in those units), got "
                         f"dtype {img.dtype}{hint}; convert with (image * 255).round().to(torch.uint8) or "
                         f"np.uint8 as appropriate")
    lo, hi = int(img.min()), int(img.max())
    if lo < 0 or hi > 255:
        raise ValueError(f"image must hold 0..255 intensities (uint8), got integer values in [{lo}, {hi}]")
    return chw


def _check_scores(probabilities: Any, logits: Any) -> Tensor:
    """The unary energy ``(L, H, W)``: ``-log p`` or ``-logits``."""
    if (probabilities is None) == (logits is None):
        raise ValueError("pass exactly one of probabilities (softmax outputs) and logits=")
    given = "probabilities" if logits is None else "logits"
    x = _as_tensor(probabilities if logits is None else logits, given)
    if x.dim() != 3:
        raise ValueError(f"{given} must be (L, H, W) (labels first), got shape {tuple(x.shape)}")
    if not x.dtype.is_floating_point:
        raise ValueError(f"{given} must be floating point, got dtype {x.dtype}")
    dtype = x.dtype if x.dtype == torch.float64 else torch.float32
    x = x.to(dtype)
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{given} contain NaN or infinite values")
    if logits is not None:
        return -x
    if float(x.min()) < 0 or float(x.max()) > 1 + 1e-4:
        raise ValueError(f"probabilities must lie in [0, 1] (got values in [{float(x.min()):.4g}, "
                         f"{float(x.max()):.4g}]); pass raw network scores as logits= instead")
    sums = x.sum(0)
    if float((sums - 1).abs().max()) > 1e-3:
        raise ValueError(f"probabilities must sum to 1 over the labels (dimension 0), got sums in "
                         f"[{float(sums.min()):.4g}, {float(sums.max()):.4g}]; pass raw scores as logits= instead")
    return -torch.log(x.clamp_min(1e-8))


def _check_params(iterations: Any, pos_w: Any, pos_xy_std: Any, bi_w: Any, bi_xy_std: Any, bi_rgb_std: Any,
                  method: Any) -> None:
    non_negative_int("iterations", iterations)
    non_negative("pos_w", pos_w)
    positive_number("pos_xy_std", pos_xy_std, " (theta_gamma, in pixels)")
    non_negative("bi_w", bi_w)
    positive_number("bi_xy_std", bi_xy_std, " (theta_alpha, in pixels)")
    positive_number("bi_rgb_std", bi_rgb_std, " (theta_beta, in 0..255 intensity units)")
    one_of("method", method, METHODS)


def _check_compatibility(compatibility: Any, num_labels: int, device, dtype) -> Tensor | None:
    if compatibility is None or (isinstance(compatibility, str) and compatibility == "potts"):
        return None
    if isinstance(compatibility, str):
        raise ValueError(f"compatibility must be 'potts' or an (L, L) matrix, got {compatibility!r}")
    mu = _as_tensor(compatibility, "compatibility").to(device=device, dtype=dtype)
    if tuple(mu.shape) != (num_labels, num_labels):
        raise ValueError(f"compatibility must be 'potts' or a ({num_labels}, {num_labels}) matrix for "
                         f"{num_labels} labels, got shape {tuple(mu.shape)}")
    if not bool(torch.isfinite(mu).all()):
        raise ValueError("compatibility contains NaN or infinite values")
    return 0.5 * (mu + mu.t())


# --------------------------------------------------------------------------------------------
# the public front


def dense_crf(image: Tensor | np.ndarray, probabilities: Tensor | np.ndarray | None = None, *,
              logits: Tensor | np.ndarray | None = None, iterations: int = DEEPLAB_V2.iterations,
              pos_w: float = DEEPLAB_V2.pos_w, pos_xy_std: float = DEEPLAB_V2.pos_xy_std,
              bi_w: float = DEEPLAB_V2.bi_w, bi_xy_std: float = DEEPLAB_V2.bi_xy_std,
              bi_rgb_std: float = DEEPLAB_V2.bi_rgb_std, compatibility: str | Tensor | np.ndarray = "potts",
              method: str = "permutohedral") -> Tensor:
    """Refine per-pixel label probabilities with the fully connected CRF (Krähenbühl & Koltun 2011).

    ``image``: uint8 RGB, ``(H, W, 3)`` or ``(3, H, W)``, tensor or array (the appearance kernel
    compares colours in 0..255 units). ``probabilities`` ``(L, H, W)`` (softmax outputs; the
    unary is ``-log p``) or ``logits=`` ``(L, H, W)`` (the unary is ``-logits``). ``pos_w`` and
    ``pos_xy_std`` are the smoothness kernel's ``w_2`` and ``theta_gamma``; ``bi_w``,
    ``bi_xy_std``, ``bi_rgb_std`` the appearance kernel's ``w_1``, ``theta_alpha``,
    ``theta_beta``; the defaults are :data:`DEEPLAB_V2` (``**DEEPLAB_V1.kwargs()`` for v1's).
    ``compatibility``: ``"potts"`` or the paper's ``(L, L)`` matrix ``mu`` (a penalty; pydensecrf's
    2-D ``compat``). ``method``: ``"permutohedral"`` (fast: the appearance kernel on the lattice,
    the smoothness kernel exact), ``"pydensecrf"`` (both on the lattice: pydensecrf's numbers) or
    ``"exact"`` (O(N^2) sums, small images). Returns the refined probabilities ``Q``,
    ``(L, H, W)``, a float tensor (float64 for float64 scores) on the device of the scores; the
    image is moved there. ``Q.argmax(0)`` gives the labels.

    >>> q = dense_crf(image_hw3_uint8, logits=net(x)[0])                   # doctest: +SKIP
    >>> q = dense_crf(image, probs, **DEEPLAB_V1.kwargs(), method="exact")  # doctest: +SKIP
    """
    _check_params(iterations, pos_w, pos_xy_std, bi_w, bi_xy_std, bi_rgb_std, method)
    unary = _check_scores(probabilities, logits)
    num_labels, height, width = unary.shape
    img = _check_image(image, height, width).to(unary.device)
    mu = _check_compatibility(compatibility, num_labels, unary.device, unary.dtype)
    terms = _kernels(img, height * width, pos_w=pos_w, pos_xy_std=pos_xy_std, bi_w=bi_w, bi_xy_std=bi_xy_std,
                     bi_rgb_std=bi_rgb_std, method=method, dtype=unary.dtype)
    q = _mean_field(unary.reshape(num_labels, -1).t(), terms, mu, iterations)
    return q.t().reshape(num_labels, height, width)


def dense_crf_batch(images: Tensor | np.ndarray, probabilities: Tensor | np.ndarray | None = None, *,
                    logits: Tensor | np.ndarray | None = None, **kwargs: Any) -> Tensor:
    """:func:`dense_crf` on each image of a batch: ``images`` ``(B, 3, H, W)`` or ``(B, H, W, 3)``
    uint8, ``probabilities`` or ``logits=`` ``(B, L, H, W)``; returns ``(B, L, H, W)``."""
    scores = _as_tensor(probabilities if logits is None else logits, "probabilities" if logits is None else "logits")
    if scores.dim() != 4:
        raise ValueError(f"{'probabilities' if logits is None else 'logits'} must be (B, L, H, W), "
                         f"got shape {tuple(scores.shape)}")
    imgs = _as_tensor(images, "images")
    if imgs.dim() != 4 or imgs.shape[0] != scores.shape[0]:
        raise ValueError(f"images must be (B, 3, H, W) or (B, H, W, 3) with B = {scores.shape[0]} like the "
                         f"scores, got shape {tuple(imgs.shape)}")
    key = "probabilities" if logits is None else "logits"
    return torch.stack([dense_crf(imgs[b], **{key: scores[b]}, **kwargs) for b in range(scores.shape[0])])


class DenseCRF(nn.Module):
    """The dense CRF as a post-processing module: ``DenseCRF()(images, logits) -> probabilities``.

    It has no parameters to train; the arguments are those of :func:`dense_crf` (defaults
    :data:`DEEPLAB_V2`; ``DenseCRF(**DEEPLAB_V1.kwargs())`` for v1). ``forward`` takes uint8
    ``images`` ``(B, 3, H, W)`` (or ``(B, H, W, 3)``) and a network's ``logits`` ``(B, L, H, W)`` at
    the image size (upsample them first, as DeepLab does) and returns ``(B, L, H, W)`` refined
    probabilities.
    """

    def __init__(self, iterations: int = DEEPLAB_V2.iterations, pos_w: float = DEEPLAB_V2.pos_w,
                 pos_xy_std: float = DEEPLAB_V2.pos_xy_std, bi_w: float = DEEPLAB_V2.bi_w,
                 bi_xy_std: float = DEEPLAB_V2.bi_xy_std, bi_rgb_std: float = DEEPLAB_V2.bi_rgb_std,
                 compatibility: str | Tensor | np.ndarray = "potts", method: str = "permutohedral") -> None:
        super().__init__()
        _check_params(iterations, pos_w, pos_xy_std, bi_w, bi_xy_std, bi_rgb_std, method)
        self.iterations, self.pos_w, self.pos_xy_std = iterations, pos_w, pos_xy_std
        self.bi_w, self.bi_xy_std, self.bi_rgb_std = bi_w, bi_xy_std, bi_rgb_std
        self.compatibility, self.method = compatibility, method

    def forward(self, images: Tensor, logits: Tensor) -> Tensor:
        return dense_crf_batch(images, logits=logits, iterations=self.iterations, pos_w=self.pos_w,
                               pos_xy_std=self.pos_xy_std, bi_w=self.bi_w, bi_xy_std=self.bi_xy_std,
                               bi_rgb_std=self.bi_rgb_std, compatibility=self.compatibility, method=self.method)

    def extra_repr(self) -> str:
        return (f"iterations={self.iterations}, pos_w={self.pos_w}, pos_xy_std={self.pos_xy_std}, "
                f"bi_w={self.bi_w}, bi_xy_std={self.bi_xy_std}, bi_rgb_std={self.bi_rgb_std}, "
                f"method={self.method!r}")
