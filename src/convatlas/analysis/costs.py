"""What each aten operator costs: multiply-accumulates (MACs) and floating-point operations (FLOPs).

Two conventions, kept apart on purpose:

**MACs** count the multiply-accumulates of convolutions and matrix products only (``Conv*d``,
``ConvTranspose*d``, ``Linear``, ``matmul``/``bmm``, attention's two products). This is the
"mult-adds" of the VGG, ResNet, ResNeXt, MobileNet, EfficientNet and NASNet papers and the
"GFLOPS" column (``_ops``) of torchvision's weight tables. For a convolution::

    MACs = N * C_out * H_out * W_out * (C_in / groups) * k_h * k_w
    transposed:  N * C_in * H_in * W_in * (C_out / groups) * k_h * k_w

and for a matrix product (m x k) @ (k x n): ``m * n * k``.

**FLOPs** are ``2 x MACs`` for those operators (a multiply and an add, as
``torch.utils.flop_counter.FlopCounterMode`` counts them) plus the element-wise work everything
else does, counted per element as:

=============================================================  ====================================
operator                                                       FLOPs
=============================================================  ====================================
bias of a convolution or linear layer                          1 per output element
element-wise arithmetic and activations (add, mul, ReLU,       1 per output element
sigmoid, SiLU, hardswish, ...)
batch norm with running statistics (inference)                 2 per element (folded scale + shift)
batch norm with batch statistics, layer/group norm             5 per element (mean 1, variance 2,
                                                               normalise + affine 2)
max / average pooling                                          kernel area per output element
adaptive (global) pooling, mean / sum / max reductions         1 per input element
softmax, log-softmax                                           3 per element (exp, sum, divide)
interpolation                                                  2 per source pixel used: nearest 0,
                                                               linear 4, bilinear 8, bicubic 32
concatenation, padding, views, copies, random masks            0
=============================================================  ====================================

Operators that PyTorch decomposes (local response normalisation, dropout) are counted through
the element-wise and pooling operators they decompose into.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

aten = torch.ops.aten

__all__ = ["op_cost", "rule_for", "FLOP_CONVENTION"]

FLOP_CONVENTION = (
    "MACs: multiply-accumulates of convolutions and matrix products (conv, linear, matmul), the "
    "'mult-adds' of the papers and torchvision's _ops. FLOPs: 2 per MAC plus element-wise work "
    "(bias 1, activations/arithmetic 1, batch norm 2 (inference) or 5, pooling kernel area, "
    "reductions 1 per input, softmax 3, interpolation 2 per tap) per element."
)


def _numel(shape: Any) -> int:
    return math.prod(shape)


def _conv(args: tuple, kwargs: dict, out: Any) -> tuple[int, int]:
    x, w, bias = args[0], args[1], args[2]
    transposed = args[6] if len(args) > 6 else False
    kernel = _numel(w.shape[2:])
    if transposed:
        macs = x.numel() * w.shape[1] * kernel  # weight is (C_in, C_out / groups, k...)
    else:
        macs = out.numel() * w.shape[1] * kernel  # weight is (C_out, C_in / groups, k...)
    return macs, 2 * macs + (out.numel() if bias is not None else 0)


def _addmm(args: tuple, kwargs: dict, out: Any) -> tuple[int, int]:
    m1, m2 = args[1], args[2]
    macs = m1.shape[0] * m1.shape[1] * m2.shape[-1]
    return macs, 2 * macs + out.numel()


def _mm(args: tuple, kwargs: dict, out: Any) -> tuple[int, int]:
    a, b = args[0], args[1]
    macs = a.shape[0] * a.shape[1] * b.shape[-1]
    return macs, 2 * macs


def _bmm(args: tuple, kwargs: dict, out: Any) -> tuple[int, int]:
    a, b = args[0], args[1]
    macs = a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
    return macs, 2 * macs


def _baddbmm(args: tuple, kwargs: dict, out: Any) -> tuple[int, int]:
    macs = _bmm(args[1:], kwargs, out)[0]
    return macs, 2 * macs + out.numel()


def _attention(args: tuple, kwargs: dict, out: Any) -> tuple[int, int]:
    # softmax(q k^T) v with q (..., L, E), k (..., S, E), v (..., S, Ev)
    q, k, v = args[0], args[1], args[2]
    batch = _numel(q.shape[:-2])
    scores = batch * q.shape[-2] * k.shape[-2]
    macs = scores * q.shape[-1] + scores * v.shape[-1]
    return macs, 2 * macs + 3 * scores


def _first_output(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def _per_output_element(n: int) -> Callable[[tuple, dict, Any], tuple[int, int]]:
    def cost(args: tuple, kwargs: dict, out: Any) -> tuple[int, int]:
        return 0, n * _first_output(out).numel()

    return cost


def _per_input_element(args: tuple, kwargs: dict, out: Any) -> tuple[int, int]:
    return 0, args[0].numel()


def _variance(args: tuple, kwargs: dict, out: Any) -> tuple[int, int]:
    # mean, squared difference and sum for every input element
    return 0, 3 * args[0].numel()


def _batch_norm(args: tuple, kwargs: dict, out: Any) -> tuple[int, int]:
    training = bool(args[5]) if len(args) > 5 else False
    return 0, (5 if training else 2) * args[0].numel()


def _pool(args: tuple, kwargs: dict, out: Any) -> tuple[int, int]:
    kernel = args[1]
    area = _numel(kernel) if not isinstance(kernel, int) else kernel * kernel
    return 0, area * _first_output(out).numel()


def _interpolation(taps_per_axis: int) -> Callable[[tuple, dict, Any], tuple[int, int]]:
    def cost(args: tuple, kwargs: dict, out: Any) -> tuple[int, int]:
        spatial = args[0].dim() - 2
        return 0, 2 * taps_per_axis**spatial * out.numel()

    return cost


def _free(args: tuple, kwargs: dict, out: Any) -> tuple[int, int]:
    return 0, 0


_COSTS: dict[Any, Callable[[tuple, dict, Any], tuple[int, int]]] = {
    aten.convolution.default: _conv,
    aten._convolution.default: _conv,
    aten.addmm.default: _addmm,
    aten.mm.default: _mm,
    aten.bmm.default: _bmm,
    aten.baddbmm.default: _baddbmm,
    aten._scaled_dot_product_flash_attention_for_cpu.default: _attention,
    aten._scaled_dot_product_flash_attention.default: _attention,
    aten._scaled_dot_product_efficient_attention.default: _attention,
    aten._scaled_dot_product_cudnn_attention.default: _attention,
    aten.native_batch_norm.default: _batch_norm,
    aten._native_batch_norm_legit.default: _batch_norm,
    aten._native_batch_norm_legit_functional.default: _batch_norm,
    aten._native_batch_norm_legit_no_training.default: _per_output_element(2),
    aten.native_layer_norm.default: _per_output_element(5),
    aten.native_group_norm.default: _per_output_element(5),
    aten.max_pool2d_with_indices.default: _pool,
    aten.max_pool3d_with_indices.default: _pool,
    aten.avg_pool2d.default: _pool,
    aten.avg_pool3d.default: _pool,
    aten._adaptive_avg_pool2d.default: _per_input_element,
    aten._adaptive_avg_pool3d.default: _per_input_element,
    aten.adaptive_max_pool2d.default: _per_input_element,
    aten.mean.dim: _per_input_element,
    aten.mean.default: _per_input_element,
    aten.sum.dim_IntList: _per_input_element,
    aten.sum.default: _per_input_element,
    aten.amax.default: _per_input_element,
    aten.amin.default: _per_input_element,
    aten.var.correction: _variance,
    aten._softmax.default: _per_output_element(3),
    aten._log_softmax.default: _per_output_element(3),
    aten.hardswish.default: _per_output_element(1),
    aten.hardswish_.default: _per_output_element(1),
    aten._prelu_kernel.default: _per_output_element(1),
    aten.log_sigmoid_forward.default: _per_output_element(1),
    aten.native_dropout.default: _per_output_element(1),
    aten.upsample_nearest1d.default: _free,
    aten.upsample_nearest2d.default: _free,
    aten.upsample_nearest2d.vec: _free,
    aten.upsample_nearest3d.default: _free,
    aten.upsample_linear1d.default: _interpolation(2),
    aten.upsample_bilinear2d.default: _interpolation(2),
    aten.upsample_bilinear2d.vec: _interpolation(2),
    aten.upsample_trilinear3d.default: _interpolation(2),
    aten.upsample_bicubic2d.default: _interpolation(4),
    aten.upsample_bicubic2d.vec: _interpolation(4),
}

# operators tagged pointwise that only move or fill data
_NOT_ARITHMETIC = {"copy", "clone", "fill", "zero", "bernoulli", "lift_fresh", "masked_fill", "_to_copy"}

_POINTWISE: dict[Any, bool] = {}


def _is_arithmetic_pointwise(func: Any) -> bool:
    known = _POINTWISE.get(func)
    if known is None:
        name = func.__name__.split(".")[0].rstrip("_")
        known = torch.Tag.pointwise in getattr(func, "tags", ()) and name not in _NOT_ARITHMETIC
        _POINTWISE[func] = known
    return known


def _pointwise_cost(args: tuple, kwargs: dict, out: Any) -> tuple[int, int]:
    result = _first_output(out)
    if isinstance(result, torch.Tensor) and result.dtype.is_floating_point:
        return 0, result.numel()
    return 0, 0


def rule_for(func: Any) -> Callable[[tuple, dict, Any], tuple[int, int]] | None:
    """The cost rule of ``func`` (called as ``rule(args, kwargs, out)``), or None if it is free."""
    cost = _COSTS.get(func)
    if cost is not None:
        return cost
    if _is_arithmetic_pointwise(func):
        return _pointwise_cost
    return None


def op_cost(func: Any, args: tuple, kwargs: dict, out: Any) -> tuple[int, int]:
    """``(MACs, FLOPs)`` of one call of the aten operator ``func`` (see the module docstring)."""
    rule = rule_for(func)
    return rule(args, kwargs, out) if rule is not None else (0, 0)
