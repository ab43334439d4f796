"""Receptive field, jump and start of every feature map, carried along the traced operators.

For each tensor computed from the input we keep, per spatial axis, the interval ``[lo, hi]`` of
input pixels that the tensor's *first* output pixel can see, and the ``jump`` (distance in input
pixels between neighbouring output pixels). Output pixel ``i`` then sees ``[lo + i*jump, hi + i*jump]``,
so

    receptive field r = hi - lo + 1,      start (centre of pixel 0's field) = (lo + hi) / 2.

This is the recurrence of Dumoulin & Visin (2016, "A guide to convolution arithmetic for deep
learning", arXiv:1603.07285) and Araujo, Norris & Sim (2019, "Computing Receptive Fields of
Convolutional Neural Networks", Distill): a layer with kernel k, stride s, padding p and dilation d
maps ``(lo, hi, j)`` to::

    lo' = lo - p*j,    hi' = hi + (d*(k-1) - p)*j,    j' = s*j

Element-wise operators and concatenation join their inputs: the joined field is the union of the
intervals (the largest receptive field over the paths, e.g. the branches of an Inception module or
the two paths of a residual block). A tensor whose spatial axes were pooled or flattened away is
``GLOBAL``; a feature map that is multiplied by such a tensor (squeeze-and-excitation) keeps its
local field and is flagged ``context`` (some path sees the whole image). Transposed convolutions and
interpolation divide the jump (a continuous approximation for the pixels after the first).
Operators that rearrange the spatial axes in ways not modelled here make the field ``UNKNOWN``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

aten = torch.ops.aten

__all__ = ["Field", "GLOBAL", "UNKNOWN", "input_field", "propagate", "rule_for", "FIELD_ATTR", "span"]

FIELD_ATTR = "_convatlas_field"


@dataclass(frozen=True)
class Field:
    """Receptive field of a feature map along each spatial axis (input-pixel units)."""

    lo: tuple[float, ...]
    hi: tuple[float, ...]
    jump: tuple[float, ...]
    context: bool = False  # a global-pooling path (e.g. squeeze-excitation) also reaches it

    @property
    def size(self) -> tuple[float, ...]:
        return tuple(_clean(h - l + 1) for l, h in zip(self.lo, self.hi))

    @property
    def start(self) -> tuple[float, ...]:
        return tuple(_clean((l + h) / 2) for l, h in zip(self.lo, self.hi))

    @property
    def jumps(self) -> tuple[float, ...]:
        return tuple(_clean(j) for j in self.jump)


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


GLOBAL = _Marker("GLOBAL")  # spatial axes pooled or flattened away
UNKNOWN = _Marker("UNKNOWN")  # spatial axes rearranged in a way not modelled


def _clean(value: float) -> float:
    if isinstance(value, int):
        return value
    rounded = round(value)
    return int(rounded) if abs(value - rounded) < 1e-9 else value


def input_field(spatial_dims: int) -> Field:
    return Field((0,) * spatial_dims, (0,) * spatial_dims, (1,) * spatial_dims)


def _spatial(t: torch.Tensor, nsp: int) -> tuple[int, ...] | None:
    return tuple(t.shape[-nsp:]) if t.dim() >= nsp + 1 else None


def _per_axis(value: Any, n: int, default: int) -> list[int]:
    if value is None or (not isinstance(value, int) and len(value) == 0):
        return [default] * n
    if isinstance(value, int):
        return [value] * n
    value = list(value)
    return value * n if len(value) == 1 else value


def _window(field: Field, nsp: int, kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int],
            dilation: Sequence[int]) -> Field:
    """Apply a sliding window (convolution or pooling) over the last ``len(kernel)`` axes."""
    lo, hi, jump = list(field.lo), list(field.hi), list(field.jump)
    axes = min(nsp, len(kernel))
    for a in range(1, axes + 1):
        k, s, p, d = kernel[-a], stride[-a], padding[-a], dilation[-a]
        j = jump[-a]
        lo[-a] = lo[-a] - p * j
        hi[-a] = hi[-a] + (d * (k - 1) - p) * j
        jump[-a] = j * s
    return Field(tuple(lo), tuple(hi), tuple(jump), field.context)


def _conv(field: Field, args: tuple, nsp: int, out: torch.Tensor) -> Any:
    w = args[1]
    k_nd = w.dim() - 2
    kernel = list(w.shape[2:])
    stride, padding, dilation = _per_axis(args[3], k_nd, 1), _per_axis(args[4], k_nd, 0), _per_axis(args[5], k_nd, 1)
    if not args[6]:  # ordinary convolution
        return _window(field, nsp, kernel, stride, padding, dilation)
    # transposed: output pixel 0 gathers input pixels ceil((p - d(k-1))/s) .. floor(p/s)
    lo, hi, jump = list(field.lo), list(field.hi), list(field.jump)
    for a in range(1, min(nsp, k_nd) + 1):
        k, s, p, d = kernel[-a], stride[-a], padding[-a], dilation[-a]
        j = jump[-a]
        lo[-a] = lo[-a] + math.ceil((p - d * (k - 1)) / s) * j
        hi[-a] = hi[-a] + math.floor(p / s) * j
        jump[-a] = j / s
    return Field(tuple(lo), tuple(hi), tuple(jump), field.context)


def _pool(field: Field, args: tuple, nsp: int, out: torch.Tensor, with_dilation: bool) -> Any:
    kernel = list(args[1])
    n = len(kernel)
    stride = _per_axis(args[2] if len(args) > 2 else None, n, 0)
    stride = [s or k for s, k in zip(stride, kernel)]
    padding = _per_axis(args[3] if len(args) > 3 else 0, n, 0)
    dilation = _per_axis(args[4] if (with_dilation and len(args) > 4) else 1, n, 1)
    return _window(field, nsp, kernel, stride, padding, dilation)


def _adaptive(field: Field, args: tuple, nsp: int, out: torch.Tensor) -> Any:
    x, sizes = args[0], list(args[1])
    ins = list(x.shape[-len(sizes):])
    if all(o == 1 for o in sizes) and any(i > 1 for i in ins):
        return GLOBAL
    lo, hi, jump = list(field.lo), list(field.hi), list(field.jump)
    for a in range(1, min(nsp, len(sizes)) + 1):
        i, o = ins[-a], sizes[-a]
        if i == o:
            continue
        # PyTorch's adaptive windows: pixel 0 covers input 0 .. ceil(i/o) - 1, windows start i/o apart
        hi[-a] = hi[-a] + (math.ceil(i / o) - 1) * jump[-a]
        jump[-a] = jump[-a] * i / o
    return Field(tuple(lo), tuple(hi), tuple(jump), field.context)


def _upsample(field: Field, args: tuple, nsp: int, out: torch.Tensor, taps: int, has_align: bool) -> Any:
    x = args[0]
    align = bool(args[2]) if has_align and len(args) > 2 and isinstance(args[2], bool) else False
    n = out.dim() - 2
    lo, hi, jump = list(field.lo), list(field.hi), list(field.jump)
    for a in range(1, min(nsp, n) + 1):
        i, o = x.shape[-a], out.shape[-a]
        if taps == 1:  # nearest: output pixel q reads input floor(q * i / o)
            scale, first = i / o, 0.0
        elif align:
            scale = (i - 1) / (o - 1) if o > 1 else 0.0
            first = 0.0
        else:  # half-pixel centres
            scale = i / o
            first = 0.5 * scale - 0.5
        base = math.floor(first)
        left = base - (taps // 2 - 1) if taps > 1 else base
        right = left + taps - 1
        lo[-a] = lo[-a] + left * jump[-a]
        hi[-a] = hi[-a] + right * jump[-a]
        jump[-a] = jump[-a] * scale
    return Field(tuple(lo), tuple(hi), tuple(jump), field.context)


def _pad(field: Field, args: tuple, nsp: int, out: torch.Tensor) -> Any:
    pad = list(args[1])
    lo, hi, jump = list(field.lo), list(field.hi), list(field.jump)
    for a in range(1, min(nsp, len(pad) // 2) + 1):
        left = pad[2 * (a - 1)]
        lo[-a] = lo[-a] - left * jump[-a]
        hi[-a] = hi[-a] - left * jump[-a]
    return Field(tuple(lo), tuple(hi), tuple(jump), field.context)


def span(field: Field) -> float:
    """Largest receptive field over the axes (hi - lo + 1)."""
    return max(h - l for l, h in zip(field.lo, field.hi)) + 1


def _slice(field: Field, args: tuple, nsp: int, out: torch.Tensor) -> Any:
    x = args[0]
    dim = (args[1] if len(args) > 1 else 0) % x.dim()
    axis = dim - x.dim()  # negative index
    if axis < -nsp:
        return field
    size = x.shape[dim]
    start = args[2] if len(args) > 2 and args[2] is not None else 0
    step = args[4] if len(args) > 4 else 1
    if start < 0:
        start += size
    start = min(max(start, 0), size)
    lo, hi, jump = list(field.lo), list(field.hi), list(field.jump)
    lo[axis] = lo[axis] + start * jump[axis]
    hi[axis] = hi[axis] + start * jump[axis]
    jump[axis] = jump[axis] * step
    return Field(tuple(lo), tuple(hi), tuple(jump), field.context)


def _pixel_shuffle(field: Field, args: tuple, nsp: int, out: torch.Tensor) -> Any:
    r = args[1]
    return Field(field.lo, field.hi, tuple(j / r for j in field.jump), field.context)


def _pixel_unshuffle(field: Field, args: tuple, nsp: int, out: torch.Tensor) -> Any:
    r = args[1]
    hi = tuple(h + (r - 1) * j for h, j in zip(field.hi, field.jump))
    return Field(field.lo, hi, tuple(j * r for j in field.jump), field.context)


_WINDOWED = {
    aten.convolution.default: _conv,
    aten._convolution.default: _conv,
    aten.max_pool2d_with_indices.default: lambda f, a, n, o: _pool(f, a, n, o, True),
    aten.max_pool3d_with_indices.default: lambda f, a, n, o: _pool(f, a, n, o, True),
    aten.max_pool2d.default: lambda f, a, n, o: _pool(f, a, n, o, True),
    aten.avg_pool2d.default: lambda f, a, n, o: _pool(f, a, n, o, False),
    aten.avg_pool3d.default: lambda f, a, n, o: _pool(f, a, n, o, False),
    aten._adaptive_avg_pool2d.default: _adaptive,
    aten._adaptive_avg_pool3d.default: _adaptive,
    aten.adaptive_max_pool2d.default: _adaptive,
    aten.upsample_nearest2d.default: lambda f, a, n, o: _upsample(f, a, n, o, 1, False),
    aten.upsample_nearest2d.vec: lambda f, a, n, o: _upsample(f, a, n, o, 1, False),
    aten.upsample_bilinear2d.default: lambda f, a, n, o: _upsample(f, a, n, o, 2, True),
    aten.upsample_bilinear2d.vec: lambda f, a, n, o: _upsample(f, a, n, o, 2, True),
    aten.upsample_bicubic2d.default: lambda f, a, n, o: _upsample(f, a, n, o, 4, True),
    aten.upsample_bicubic2d.vec: lambda f, a, n, o: _upsample(f, a, n, o, 4, True),
    aten.constant_pad_nd.default: _pad,
    aten.reflection_pad2d.default: _pad,
    aten.replication_pad2d.default: _pad,
    aten.slice.Tensor: _slice,
    aten.pixel_shuffle.default: _pixel_shuffle,
    aten.pixel_unshuffle.default: _pixel_unshuffle,
}

_REDUCTIONS = {
    aten.mean.dim, aten.sum.dim_IntList, aten.amax.default, aten.amin.default, aten.var.correction,
    aten.std.correction, aten.max.dim, aten.min.dim, aten.logsumexp.default, aten.mean.default,
    aten.sum.default,
}


def _union(fields: list[Field], context: bool) -> Field:
    if len(fields) == 1 and fields[0].context == context:
        return fields[0]
    first = fields[0]
    lo = tuple(min(f.lo[a] for f in fields) for a in range(len(first.lo)))
    hi = tuple(max(f.hi[a] for f in fields) for a in range(len(first.hi)))
    jump = tuple(min(f.jump[a] for f in fields) for a in range(len(first.jump)))
    return Field(lo, hi, jump, context)


def _reduces_space(func: Any, args: tuple, nsp: int) -> bool:
    x = args[0]
    if func in (aten.mean.default, aten.sum.default):
        return True
    dims = args[1] if len(args) > 1 else None
    if dims is None:
        return True
    dims = [dims] if isinstance(dims, int) else list(dims)
    if not dims:
        return True
    nd = x.dim()
    return any((d % nd) >= nd - nsp and x.shape[d % nd] > 1 for d in dims)


def propagate(func: Any, args: tuple, tensors_in: list[tuple[torch.Tensor, Any]], outputs: list[torch.Tensor],
              nsp: int) -> Any:
    """The field of ``func``'s output, given the fields of its inputs that carry one
    (``tensors_in`` = [(tensor, field)]); the caller stores it on every output tensor."""
    return _propagate(func, _WINDOWED.get(func), func in _REDUCTIONS, args, tensors_in, outputs, nsp)


def rule_for(func: Any) -> Callable[[tuple, list, list, int], Any]:
    """:func:`propagate` for one operator, its rule looked up once (called as
    ``rule(args, tensors_in, outputs, nsp)``)."""
    return functools.partial(_propagate, func, _WINDOWED.get(func), func in _REDUCTIONS)


def _propagate(func: Any, rule: Any, reduction: bool, args: tuple, tensors_in: list[tuple[torch.Tensor, Any]],
               outputs: list[torch.Tensor], nsp: int) -> Any:
    main = args[0] if args and isinstance(args[0], torch.Tensor) else None
    out = outputs[0]
    if rule is not None and main is not None:
        field = getattr(main, FIELD_ATTR, None)
        if isinstance(field, Field):
            return rule(field, args, nsp, out)
        return field if field is not None else UNKNOWN
    if reduction and main is not None and isinstance(getattr(main, FIELD_ATTR, None), Field):
        if _reduces_space(func, args, nsp):
            return GLOBAL
    # everything else: element-wise, joins, views, normalisation, matrix products...
    out_space = _spatial(out, nsp)
    fields: list[Field] = []
    context = False
    unknown = False
    changed = False
    for t, field in tensors_in:
        if field is GLOBAL:
            context = True
            continue
        if field is UNKNOWN:
            unknown = True
            continue
        space = _spatial(t, nsp)
        if out_space is not None and space == out_space:
            fields.append(field)
            context = context or field.context
        elif space is not None and all(s == 1 for s in space) and out_space is not None:
            context = True  # a 1x1 map broadcast over the whole feature map
        else:
            changed = True
    if fields:
        return _union(fields, context)
    if unknown:
        return UNKNOWN
    if out_space is None or (changed is False):
        return GLOBAL
    if changed and all(s == 1 for s in out_space):
        return GLOBAL
    return UNKNOWN
