"""Output shapes of the common aten operators, computed by arithmetic instead of by running them.

PyTorch's ``meta`` device runs each operator's *meta kernel* to find the shape of its output.
Many of those kernels are written in Python (decompositions and reference implementations) and
cost 0.3–40 ms per call in the PyTorch this project pins, which would make analysing a large
network slow. For the operators that make up almost every CNN, the output shape is simple
arithmetic, so :func:`fast_output` computes it directly and returns empty meta tensors with the
right shape, strides and dtype; every other operator falls back to its real meta kernel.
``tests/test_analysis.py`` checks each rule here against the real meta kernels.

The output-size formulas are those of the PyTorch documentation (``Conv2d``, ``MaxPool2d``,
``ConvTranspose2d``), e.g. for a convolution along one axis::

    out = floor((in + 2*padding - dilation*(kernel - 1) - 1) / stride) + 1
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Sequence

import torch

aten = torch.ops.aten

__all__ = ["OutputTooSmallError", "fast_output", "rule_for", "contiguous_strides"]

NOT_HANDLED = NotImplemented
_META = torch.device("meta")


class OutputTooSmallError(ValueError):
    """An operator would produce an empty (0 or negative sized) spatial output."""


def contiguous_strides(shape: Sequence[int]) -> tuple[int, ...]:
    strides = []
    step = 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


# the same few shapes come back on every layer of a network: compute their strides once
_dense_strides = functools.lru_cache(maxsize=4096)(contiguous_strides)


def _channels_last_strides(shape: Sequence[int]) -> tuple[int, ...]:
    # (N, C, *spatial) laid out as (N, *spatial, C)
    n, c, *spatial = shape
    strides = [0] * len(shape)
    step = 1
    strides[1] = step
    step *= max(c, 1)
    for i in range(len(shape) - 1, 1, -1):
        strides[i] = step
        step *= max(shape[i], 1)
    strides[0] = step
    return tuple(strides)


def _is_channels_last(t: torch.Tensor) -> bool:
    return t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)


def _new(shape: Sequence[int], dtype: torch.dtype, like: torch.Tensor | None = None) -> torch.Tensor:
    """An empty meta tensor; channels-last when ``like`` is channels-last and 4-d like the result."""
    shape = tuple(shape)
    if like is not None and len(shape) == 4 and _is_channels_last(like):
        strides = _channels_last_strides(shape)
    else:
        strides = _dense_strides(shape)
    return torch.empty_strided(shape, strides, dtype=dtype, device=_META)


def _same_as(t: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A new tensor with the shape (and dense layout) of ``t``."""
    shape = tuple(t.shape)
    if t.is_contiguous():
        strides = _dense_strides(shape)
    elif _is_channels_last(t):
        strides = _channels_last_strides(shape)
    else:
        strides = _dense_strides(shape)
    return torch.empty_strided(shape, strides, dtype=dtype or t.dtype, device=_META)


def _expand(value: Any, n: int) -> list[int]:
    if isinstance(value, int):
        return [value] * n
    value = list(value)
    if len(value) == 1:
        return value * n
    if len(value) != n:
        raise ValueError(f"expected {n} values, got {value}")
    return value


def _check_positive(sizes: Sequence[int], what: str, kernel: Sequence[int] | None, in_sizes: Sequence[int]) -> None:
    if min(sizes, default=1) <= 0:
        if kernel is not None:
            what = f"a {'x'.join(map(str, kernel))} {what}"
        raise OutputTooSmallError(
            f"{what} turns a {'x'.join(map(str, in_sizes))} input into a "
            f"{'x'.join(map(str, sizes))} output: the input is too small here"
        )


# ---------------------------------------------------------------------------------------------
# Convolution and pooling


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool = False) -> int:
    """``floor_or_ceil((size + 2p - d(k-1) - 1) / s) + 1``; with ceil_mode the last window must
    start inside the input or the left padding (PyTorch's rule)."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if ceil_mode:
        out = -(-span // stride) + 1
        if (out - 1) * stride >= size + padding:
            out -= 1
    else:
        out = span // stride + 1
    return out


def _convolution(args: tuple, kwargs: dict) -> torch.Tensor:
    x, w, bias, stride, padding, dilation, transposed, output_padding, groups = args[:9]
    if x.dtype != w.dtype or (bias is not None and bias.dtype != x.dtype):
        return NOT_HANDLED
    nsp = w.dim() - 2
    if x.dim() != w.dim():
        return NOT_HANDLED
    in_channels = w.shape[0] if transposed else w.shape[1] * groups
    if x.shape[1] != in_channels:  # let the meta kernel raise PyTorch's own error
        return NOT_HANDLED
    stride, padding, dilation = _expand(stride, nsp), _expand(padding, nsp), _expand(dilation, nsp)
    spatial_in = list(x.shape[2:])
    kernel = list(w.shape[2:])
    if transposed:
        output_padding = _expand(output_padding, nsp)
        out_channels = w.shape[1] * groups
        spatial = [
            (i - 1) * s - 2 * p + d * (k - 1) + op + 1
            for i, s, p, d, k, op in zip(spatial_in, stride, padding, dilation, kernel, output_padding)
        ]
    else:
        out_channels = w.shape[0]
        spatial = [
            conv_output_size(i, k, s, p, d) for i, k, s, p, d in zip(spatial_in, kernel, stride, padding, dilation)
        ]
    _check_positive(spatial, "convolution", kernel, spatial_in)
    # PyTorch's meta convolution always returns a contiguous tensor (it cannot know the backend)
    return _new((x.shape[0], out_channels, *spatial), x.dtype)


def _pool_sizes(x: torch.Tensor, nsp: int, kernel, stride, padding, dilation, ceil_mode) -> list[int]:
    kernel = _expand(kernel, nsp)
    stride = _expand(stride, nsp) if stride else kernel
    padding = _expand(padding, nsp)
    dilation = _expand(dilation, nsp)
    spatial_in = list(x.shape[-nsp:])
    sizes = [conv_output_size(i, k, s, p, d, ceil_mode) for i, k, s, p, d in zip(spatial_in, kernel, stride, padding, dilation)]
    _check_positive(sizes, "pooling", kernel, spatial_in)
    return sizes


def _max_pool_with_indices(nsp: int, args: tuple, kwargs: dict):
    x, kernel = args[0], args[1]
    stride = args[2] if len(args) > 2 else kwargs.get("stride", ())
    padding = args[3] if len(args) > 3 else kwargs.get("padding", 0)
    dilation = args[4] if len(args) > 4 else kwargs.get("dilation", 1)
    ceil_mode = args[5] if len(args) > 5 else kwargs.get("ceil_mode", False)
    sizes = _pool_sizes(x, nsp, kernel, stride, padding, dilation, ceil_mode)
    shape = (*x.shape[: x.dim() - len(sizes)], *sizes)
    return _new(shape, x.dtype, x), _new(shape, torch.int64, x)


def _avg_pool(nsp: int, args: tuple, kwargs: dict):
    x, kernel = args[0], args[1]
    stride = args[2] if len(args) > 2 else kwargs.get("stride", ())
    padding = args[3] if len(args) > 3 else kwargs.get("padding", 0)
    ceil_mode = args[4] if len(args) > 4 else kwargs.get("ceil_mode", False)
    sizes = _pool_sizes(x, nsp, kernel, stride, padding, 1, ceil_mode)
    return _new((*x.shape[: x.dim() - len(sizes)], *sizes), x.dtype, x)


def _adaptive_avg_pool(args: tuple, kwargs: dict):
    x, size = args[0], list(args[1])
    return _new((*x.shape[: x.dim() - len(size)], *size), x.dtype, x)


def _adaptive_max_pool(args: tuple, kwargs: dict):
    out = _adaptive_avg_pool(args, kwargs)
    return out, _new(out.shape, torch.int64, args[0])


# ---------------------------------------------------------------------------------------------
# Normalisation


def _batch_norm(args: tuple, kwargs: dict):
    x = args[0]
    c = x.shape[1] if x.dim() > 1 else 0
    if any(t is not None and t.shape != (c,) for t in args[1:5]):
        return NOT_HANDLED
    # batch statistics are returned (and saved for backward) only in training; with running
    # statistics the CPU and CUDA kernels return empty ones (the meta kernel returns (C,))
    training = args[5] if len(args) > 5 else kwargs.get("training", False)
    stats = (c,) if training else (0,)
    return _same_as(x), _new(stats, x.dtype), _new(stats, x.dtype)


def _batch_norm_no_training(args: tuple, kwargs: dict):
    return _batch_norm((*args[:5], False), kwargs)


def _batch_norm_legit(args: tuple, kwargs: dict):
    # (input, weight, bias, running_mean, running_var, training, momentum, eps)
    return _batch_norm(args, kwargs)


def _batch_norm_functional(args: tuple, kwargs: dict):
    # _native_batch_norm_legit_functional also returns the new running mean and variance
    x = args[0]
    out, mean, invstd = _batch_norm(args, kwargs)
    c = x.shape[1]
    return out, mean, invstd, _new((c,), x.dtype), _new((c,), x.dtype)


def _layer_norm(args: tuple, kwargs: dict):
    x, normalized = args[0], list(args[1])
    if list(x.shape[x.dim() - len(normalized):]) != normalized:
        return NOT_HANDLED
    stats = (*x.shape[: x.dim() - len(normalized)], *([1] * len(normalized)))
    return _same_as(x), _new(stats, x.dtype), _new(stats, x.dtype)


def _group_norm(args: tuple, kwargs: dict):
    x, n, group = args[0], args[3], args[6]
    return _same_as(x), _new((n, group), x.dtype), _new((n, group), x.dtype)


# ---------------------------------------------------------------------------------------------
# Matrix products, reductions, joins, resampling


def _addmm(args: tuple, kwargs: dict):
    m1, m2 = args[1], args[2]
    if m1.dim() != 2 or m2.dim() != 2 or m1.shape[1] != m2.shape[0] or m1.dtype != m2.dtype:
        return NOT_HANDLED
    return _new((m1.shape[0], m2.shape[1]), m1.dtype)


def _mm(args: tuple, kwargs: dict):
    a, b = args[0], args[1]
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0] or a.dtype != b.dtype:
        return NOT_HANDLED
    return _new((a.shape[0], b.shape[1]), a.dtype)


def _bmm(args: tuple, kwargs: dict):
    a, b = args[0], args[1]
    if a.dim() != 3 or b.dim() != 3 or a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1] or a.dtype != b.dtype:
        return NOT_HANDLED
    return _new((a.shape[0], a.shape[1], b.shape[2]), a.dtype)


def _baddbmm(args: tuple, kwargs: dict):
    return _bmm(args[1:], kwargs)


def _reduce_dim(args: tuple, kwargs: dict):
    x = args[0]
    if not x.dtype.is_floating_point:
        return NOT_HANDLED
    dims = args[1] if len(args) > 1 else kwargs.get("dim")
    keepdim = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
    dtype = kwargs.get("dtype") or (args[3] if len(args) > 3 else None) or x.dtype
    if dims is None or (not isinstance(dims, int) and len(dims) == 0):
        dims = list(range(x.dim()))
    dims = {d % max(x.dim(), 1) for d in ([dims] if isinstance(dims, int) else dims)}
    shape = [1 if i in dims else s for i, s in enumerate(x.shape)] if keepdim else [
        s for i, s in enumerate(x.shape) if i not in dims
    ]
    return _new(shape, dtype)


def _reduce_all(args: tuple, kwargs: dict):
    x = args[0]
    if not x.dtype.is_floating_point:
        return NOT_HANDLED
    return _new((), kwargs.get("dtype") or x.dtype)


def _cat(args: tuple, kwargs: dict):
    tensors = [t for t in args[0] if not (t.dim() == 1 and t.shape[0] == 0)]
    dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    if not tensors:
        return NOT_HANDLED
    dtype = tensors[0].dtype
    if any(t.dtype != dtype for t in tensors):
        return NOT_HANDLED
    first = tensors[0]
    dim %= first.dim()
    for t in tensors[1:]:
        if t.dim() != first.dim() or any(a != b for i, (a, b) in enumerate(zip(t.shape, first.shape)) if i != dim):
            return NOT_HANDLED
    shape = list(first.shape)
    shape[dim] = sum(t.shape[dim] for t in tensors)
    like = first if all(_is_channels_last(t) for t in tensors) else None
    return _new(shape, dtype, like)


def _upsample(args: tuple, kwargs: dict):
    x = args[0]
    output_size = args[1]
    if output_size is None:  # the .vec overloads: (input, output_size, [align_corners,] scale_factors)
        scales = args[-1]
        if scales is None:
            return NOT_HANDLED
        nsp = len(scales)
        output_size = [math.floor(i * s) for i, s in zip(x.shape[-nsp:], scales)]
    output_size = list(output_size)
    _check_positive(output_size, "an interpolation", None, list(x.shape[-len(output_size):]))
    return _new((*x.shape[: x.dim() - len(output_size)], *output_size), x.dtype, x)


def _constant_pad(args: tuple, kwargs: dict):
    x, pad = args[0], list(args[1])
    shape = list(x.shape)
    for i in range(len(pad) // 2):
        shape[-1 - i] += pad[2 * i] + pad[2 * i + 1]
    if any(s < 0 for s in shape):
        return NOT_HANDLED
    return _new(shape, x.dtype, x)


def _empty(args: tuple, kwargs: dict):
    """``torch.empty(size, dtype=...)``: batch norm asks for an empty reserve on every call."""
    size = list(args[0])
    if (kwargs.get("layout") not in (None, torch.strided) or kwargs.get("pin_memory")
            or kwargs.get("memory_format") not in (None, torch.contiguous_format) or any(s < 0 for s in size)):
        return NOT_HANDLED
    return _new(size, kwargs.get("dtype") or torch.get_default_dtype())


def _same_shape(args: tuple, kwargs: dict):
    return _same_as(args[0])


def _same_shape_and_buffer(args: tuple, kwargs: dict):
    return _same_as(args[0]), _same_as(args[0])


# ---------------------------------------------------------------------------------------------
# Element-wise operators (PyTorch tags them ``pointwise``)

_BOOLEAN_RESULT = {
    "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_xor", "logical_not",
    "isnan", "isinf", "isfinite", "isposinf", "isneginf", "signbit",
}


def _broadcast(shapes: list[torch.Size]) -> tuple[int, ...]:
    """Broadcast shapes (aligned on the right, a size 1 stretches to the other); shapes that do not
    broadcast go to ``torch.broadcast_shapes`` for PyTorch's own error."""
    ndim = max(len(shape) for shape in shapes)
    result = [1] * ndim
    for shape in shapes:
        offset = ndim - len(shape)
        for i, size in enumerate(shape):
            current = result[offset + i]
            if size == current or size == 1:
                continue
            if current == 1:
                result[offset + i] = size
            else:
                return tuple(torch.broadcast_shapes(*shapes))
    return tuple(result)


def _pointwise(boolean: bool, inplace: bool, args: tuple, kwargs: dict) -> Any:
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    if kwargs:
        tensors += [v for v in kwargs.values() if isinstance(v, torch.Tensor)]
        if "out" in kwargs:
            return NOT_HANDLED
    if not tensors:
        return NOT_HANDLED
    if inplace:
        return args[0] if isinstance(args[0], torch.Tensor) else NOT_HANDLED
    first = tensors[0]
    dtype = None
    shape = first.shape
    same_shape = True
    for t in tensors:
        if t.dtype != torch.bool:  # booleans promote to any floating type (where's condition)
            if dtype is None:
                dtype = t.dtype
            elif t.dtype != dtype and t.dim() > 0:
                return NOT_HANDLED  # type promotion between tensors: let the meta kernel decide
        if t.shape != shape:
            same_shape = False
    if dtype is None or not dtype.is_floating_point:
        return NOT_HANDLED
    if not same_shape:
        shape = _broadcast([t.shape for t in tensors])
    if boolean:
        dtype = torch.bool
    if tuple(shape) == tuple(first.shape):
        return _same_as(first, dtype)
    full = next((t for t in tensors if tuple(t.shape) == tuple(shape)), None)
    return _new(shape, dtype, full)


_HANDLERS: dict[Any, Callable[[tuple, dict], Any]] = {
    aten.convolution.default: _convolution,
    aten.max_pool2d_with_indices.default: functools.partial(_max_pool_with_indices, 2),
    aten.max_pool3d_with_indices.default: functools.partial(_max_pool_with_indices, 3),
    aten.avg_pool2d.default: functools.partial(_avg_pool, 2),
    aten.avg_pool3d.default: functools.partial(_avg_pool, 3),
    aten._adaptive_avg_pool2d.default: _adaptive_avg_pool,
    aten._adaptive_avg_pool3d.default: _adaptive_avg_pool,
    aten.adaptive_max_pool2d.default: _adaptive_max_pool,
    aten.native_batch_norm.default: _batch_norm,
    aten._native_batch_norm_legit_no_training.default: _batch_norm_no_training,
    aten._native_batch_norm_legit.default: _batch_norm_legit,
    aten._native_batch_norm_legit_functional.default: _batch_norm_functional,
    aten.native_layer_norm.default: _layer_norm,
    aten.native_group_norm.default: _group_norm,
    aten.addmm.default: _addmm,
    aten.mm.default: _mm,
    aten.bmm.default: _bmm,
    aten.baddbmm.default: _baddbmm,
    aten.mean.dim: _reduce_dim,
    aten.sum.dim_IntList: _reduce_dim,
    aten.amax.default: _reduce_dim,
    aten.amin.default: _reduce_dim,
    aten.mean.default: _reduce_all,
    aten.sum.default: _reduce_all,
    aten.cat.default: _cat,
    aten.upsample_nearest2d.default: _upsample,
    aten.upsample_nearest2d.vec: _upsample,
    aten.upsample_bilinear2d.default: _upsample,
    aten.upsample_bilinear2d.vec: _upsample,
    aten.upsample_bicubic2d.default: _upsample,
    aten.upsample_bicubic2d.vec: _upsample,
    aten.constant_pad_nd.default: _constant_pad,
    aten.empty.memory_format: _empty,
    aten._softmax.default: _same_shape,
    aten._log_softmax.default: _same_shape,
    aten.hardswish.default: _same_shape,
    aten._prelu_kernel.default: _same_shape,
    aten.log_sigmoid_forward.default: _same_shape_and_buffer,
}

_INPLACE_SAME_SHAPE = {aten.hardswish_.default}

# func -> "pointwise", "pointwise_inplace" or None (decided once per operator)
_KIND: dict[Any, str | None] = {}


def _kind(func: Any) -> str | None:
    kind = _KIND.get(func, "?")
    if kind == "?":
        tags = getattr(func, "tags", ())
        if func in _INPLACE_SAME_SHAPE:
            kind = "pointwise_inplace"
        elif torch.Tag.pointwise in tags:
            mutable = func._schema.is_mutable
            returns = func._schema.returns
            if not mutable and all(r.alias_info is None for r in returns) and len(returns) == 1:
                kind = "pointwise"
            elif torch.Tag.inplace in tags and len(returns) == 1:
                kind = "pointwise_inplace"
            else:
                kind = None
        else:
            kind = None
        _KIND[func] = kind
    return kind


def rule_for(func: Any) -> Callable[[tuple, dict], Any] | None:
    """The shape rule of ``func`` (called as ``rule(args, kwargs)``), or None when there is none."""
    handler = _HANDLERS.get(func)
    if handler is not None:
        return handler
    kind = _kind(func)
    if kind is None:
        return None
    boolean = func.__name__.split(".")[0] in _BOOLEAN_RESULT
    return functools.partial(_pointwise, boolean, kind == "pointwise_inplace")


def fast_output(func: Any, args: tuple, kwargs: dict) -> Any:
    """The output of ``func(*args, **kwargs)`` on meta tensors, or ``NotImplemented`` when this
    module has no rule for the operator (the caller then runs the real meta kernel)."""
    rule = rule_for(func)
    if rule is None or kwargs.get("out") is not None:
        return NOT_HANDLED
    return rule(args, kwargs)
