"""Closed-form convolution arithmetic: output sizes, parameters, multiply-accumulates and
receptive fields, as pure functions (no torch needed).

The formulas follow Dumoulin & Visin, "A guide to convolution arithmetic for deep learning"
(2016, arXiv:1603.07285) and PyTorch's documented shape rules for ``Conv2d``, ``MaxPool2d`` and
``ConvTranspose2d``; receptive fields follow Araujo, Norris & Sim, "Computing Receptive Fields of
Convolutional Neural Networks" (Distill, 2019). The cost comparisons are the ones the lecture
notes make: the 1×1 bottleneck of GoogLeNet (Szegedy et al. 2014, arXiv:1409.4842), the
depthwise-separable convolution of MobileNet (Howard et al. 2017, arXiv:1704.04861), grouped
convolution (Krizhevsky et al. 2012; Xie et al. 2016, arXiv:1611.05431), the spatially separable
k×1 + 1×k factorisation (Szegedy et al. 2015, arXiv:1512.00567) and VGG's stack of 3×3 layers
(Simonyan & Zisserman 2014, arXiv:1409.1556).

Conventions: ``n`` input size along one axis, ``k`` kernel size, ``s`` stride, ``p`` padding on
each side, ``d`` dilation, ``g`` groups. A MAC is one multiply-accumulate; bias additions,
normalisation, activation and pooling are not counted (the "mult-adds" of the papers).
Shapes in the cost functions are written (H, W, C), as in the notes ("28×28×192").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple, Sequence

from convatlas._checks import non_negative_int, positive_int

__all__ = [
    "effective_kernel_size",
    "conv_output_size",
    "pool_output_size",
    "conv_transpose_output_size",
    "same_padding",
    "resolve_padding",
    "conv_params",
    "conv_macs",
    "linear_params",
    "linear_macs",
    "LayerCost",
    "Comparison",
    "conv2d_cost",
    "conv_transpose2d_cost",
    "linear_cost",
    "bottleneck_comparison",
    "depthwise_separable_comparison",
    "depthwise_separable_ratio",
    "grouped_comparison",
    "spatially_separable_comparison",
    "inception_comparison",
    "inception_cost",
    "stacked_vs_single_comparison",
    "LayerSpec",
    "ReceptiveField",
    "receptive_field",
    "receptive_field_span",
    "parse_stack",
    "stack_output_sizes",
]

Pair = tuple[int, int]
IntOrPair = int | tuple[int, int]
Padding = int | tuple[int, int] | str


# --------------------------------------------------------------------------------------------
# Checking hyperparameters
# --------------------------------------------------------------------------------------------

def _pair(name: str, value: IntOrPair) -> Pair:
    """``3 -> (3, 3)``; ``(3, 1)`` stays; anything else is a ValueError."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return int(value[0]), int(value[1])
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    raise ValueError(f"{name} must be an int or a pair of ints (height, width), got {value!r}")


def _check_groups(in_channels: int, out_channels: int, groups: int) -> None:
    positive_int("in_channels", in_channels)
    positive_int("out_channels", out_channels)
    positive_int("groups", groups)
    if in_channels % groups:
        raise ValueError(
            f"groups={groups} does not divide in_channels={in_channels}: each group must see "
            f"the same number of input channels (in_channels / groups must be a whole number)"
        )
    if out_channels % groups:
        raise ValueError(
            f"groups={groups} does not divide out_channels={out_channels}: each group must "
            f"produce the same number of output channels (out_channels / groups must be a whole number)"
        )


def effective_kernel_size(kernel_size: int, dilation: int = 1) -> int:
    """Span of a dilated kernel: ``k_eff = d·(k − 1) + 1`` (a 3×3 kernel at dilation 2 spans 5)."""
    positive_int("kernel_size", kernel_size)
    positive_int("dilation", dilation)
    return dilation * (kernel_size - 1) + 1


def _padding_pair(padding: int | tuple[int, int]) -> Pair:
    """Padding on one axis as ``(before, after)``; an int pads both sides equally."""
    if isinstance(padding, (tuple, list)):
        if len(padding) != 2:
            raise ValueError(f"padding must be an int or (before, after), got {padding!r}")
        before, after = padding
    else:
        before = after = padding
    non_negative_int("padding", before)
    non_negative_int("padding", after)
    return before, after


# --------------------------------------------------------------------------------------------
# Output sizes
# --------------------------------------------------------------------------------------------

def conv_output_size(
    size: int,
    kernel_size: int,
    stride: int = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int = 1,
) -> int:
    """Output size of a convolution along one axis.

    ``o = floor((n + 2p − d·(k − 1) − 1) / s) + 1``  (PyTorch ``Conv2d``; with d = 1 this is the
    notes' ``floor((n + 2p − f) / s) + 1``). ``padding`` may be ``(before, after)``, in which case
    ``2p`` is replaced by ``before + after``.

    Raises ValueError when the (dilated) kernel is larger than the padded input, or when a size,
    stride or dilation is not positive.
    """
    positive_int("input size", size)
    positive_int("stride", stride)
    k_eff = effective_kernel_size(kernel_size, dilation)
    before, after = _padding_pair(padding)
    padded = size + before + after
    if k_eff > padded:
        raise ValueError(
            f"kernel is larger than the padded input: effective kernel {k_eff} "
            f"(= dilation {dilation} × (kernel {kernel_size} − 1) + 1) > padded input {padded} "
            f"(= size {size} + padding {before} + {after}); use a smaller kernel or dilation, "
            f"or more padding"
        )
    return (padded - k_eff) // stride + 1


def pool_output_size(
    size: int,
    kernel_size: int,
    stride: int | None = None,
    padding: int = 0,
    dilation: int = 1,
    ceil_mode: bool = False,
) -> int:
    """Output size of max/average pooling along one axis (PyTorch ``MaxPool2d`` rules).

    ``o = floor((n + 2p − d·(k − 1) − 1) / s) + 1``, or with ``ceil`` in place of ``floor`` when
    ``ceil_mode`` (Caffe's rule, used by GoogLeNet: 112 → 56 with a 3×3/2 pool). In ceil mode the
    last window must start inside the input or its left padding, so when
    ``(o − 1)·s ≥ n + p`` one window is dropped; a window may then hang past the input.
    ``stride`` defaults to ``kernel_size``. Padding may be at most half the (undilated) kernel,
    ``p ≤ k // 2``, and there must be at least one output.
    """
    stride = kernel_size if stride is None else stride
    positive_int("input size", size)
    positive_int("stride", stride)
    non_negative_int("padding", padding)
    k_eff = effective_kernel_size(kernel_size, dilation)
    if padding > kernel_size // 2:
        raise ValueError(
            f"pooling padding {padding} is more than half the kernel {kernel_size}: "
            f"a window could see only padding; expected padding ≤ {kernel_size // 2}"
        )
    span = size + 2 * padding - k_eff
    if ceil_mode:
        out = -(-span // stride) + 1
        if (out - 1) * stride >= size + padding:
            out -= 1
    else:
        out = span // stride + 1
    if out < 1:
        raise ValueError(
            f"pooling window is larger than the padded input: effective kernel {k_eff} "
            f"(= dilation {dilation} × (kernel {kernel_size} − 1) + 1) > padded input "
            f"{size + 2 * padding} (= size {size} + 2 × padding {padding}), so there is no output"
        )
    return out


def conv_transpose_output_size(
    size: int,
    kernel_size: int,
    stride: int = 1,
    padding: int = 0,
    output_padding: int = 0,
    dilation: int = 1,
) -> int:
    """Output size of a transposed convolution along one axis (PyTorch ``ConvTranspose2d``).

    ``o = (n − 1)·s − 2p + d·(k − 1) + output_padding + 1`` — the input size of the convolution
    whose gradient it is (Dumoulin & Visin 2016, §4). ``output_padding`` picks one of the ``s``
    input sizes a strided convolution maps to the same output, so it must be smaller than the
    stride or the dilation.
    """
    positive_int("input size", size)
    positive_int("stride", stride)
    non_negative_int("padding", padding)
    non_negative_int("output_padding", output_padding)
    k_eff = effective_kernel_size(kernel_size, dilation)
    if output_padding >= max(stride, dilation):
        raise ValueError(
            f"output_padding={output_padding} must be smaller than the stride ({stride}) or the "
            f"dilation ({dilation}); it only chooses among the sizes a strided convolution merges"
        )
    out = (size - 1) * stride - 2 * padding + k_eff + output_padding
    if out < 1:
        raise ValueError(
            f"transposed convolution output would be {out} (< 1): padding {padding} removes "
            f"more than the {(size - 1) * stride + k_eff + output_padding} positions it produces"
        )
    return out


def same_padding(size: int, kernel_size: int, stride: int = 1, dilation: int = 1) -> Pair:
    """Padding ``(before, after)`` that makes the output size ``ceil(n / s)`` ("same").

    Total padding ``P = max((ceil(n/s) − 1)·s + d·(k − 1) + 1 − n, 0)``, with ``before = P // 2``
    and the odd pixel after (TensorFlow's "SAME", and PyTorch's ``padding="same"`` at stride 1).
    For an odd kernel at stride 1 this is the familiar ``p = d·(k − 1)/2`` on both sides, which
    solves the notes' ``floor((n + 2p − f)/s) + 1 = n``.
    """
    positive_int("input size", size)
    positive_int("stride", stride)
    k_eff = effective_kernel_size(kernel_size, dilation)
    out = -(-size // stride)
    total = max((out - 1) * stride + k_eff - size, 0)
    return total // 2, total - total // 2


def resolve_padding(
    padding: Padding, size: int, kernel_size: int, stride: int = 1, dilation: int = 1
) -> Pair:
    """Padding as ``(before, after)`` from an int, a pair, ``"same"`` or ``"valid"`` (no padding)."""
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "same":
            return same_padding(size, kernel_size, stride, dilation)
        if mode == "valid":
            return 0, 0
        raise ValueError(f"padding must be an int, 'same' or 'valid', got {padding!r}")
    return _padding_pair(padding)


# --------------------------------------------------------------------------------------------
# Parameters and multiply-accumulates
# --------------------------------------------------------------------------------------------

def conv_params(
    in_channels: int, out_channels: int, kernel_size: IntOrPair, groups: int = 1, bias: bool = True
) -> int:
    """Parameters of a convolution: ``k_h·k_w·(C_in/g)·C_out + C_out`` (the bias).

    With g = 1 this is the notes' ``k×k×c_{l−1}×c_l + c_l`` (or ``F²CK + K``); with g groups the
    weights are ``K²·(C/g)·(M/g)·g = K²CM/g``. Transposed convolutions have the same count.
    """
    _check_groups(in_channels, out_channels, groups)
    kh, kw = _pair("kernel_size", kernel_size)
    positive_int("kernel height", kh)
    positive_int("kernel width", kw)
    return kh * kw * (in_channels // groups) * out_channels + (out_channels if bias else 0)


def conv_macs(
    out_height: int,
    out_width: int,
    in_channels: int,
    out_channels: int,
    kernel_size: IntOrPair,
    groups: int = 1,
) -> int:
    """MACs of a convolution: ``H_out·W_out·C_out·k_h·k_w·C_in/g``.

    Every output value is a dot product of a ``k_h × k_w × C_in/g`` window with one filter
    (the notes: ``k·k·c_l·c_{l−1}·m_l``, and ``K²CM/g·HW`` for grouped convolution).
    """
    _check_groups(in_channels, out_channels, groups)
    kh, kw = _pair("kernel_size", kernel_size)
    return out_height * out_width * out_channels * kh * kw * (in_channels // groups)


def linear_params(in_features: int, out_features: int, bias: bool = True) -> int:
    """Parameters of a fully connected layer: ``in·out + out``."""
    positive_int("in_features", in_features)
    positive_int("out_features", out_features)
    return in_features * out_features + (out_features if bias else 0)


def linear_macs(in_features: int, out_features: int) -> int:
    """MACs of a fully connected layer on one sample: ``in·out``."""
    positive_int("in_features", in_features)
    positive_int("out_features", out_features)
    return in_features * out_features


@dataclass(frozen=True)
class LayerCost:
    """One layer's shapes (H, W, C), parameters and multiply-accumulates."""

    name: str
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    params: int
    macs: int


def conv2d_cost(
    height: int,
    width: int,
    in_channels: int,
    out_channels: int,
    kernel_size: IntOrPair,
    stride: IntOrPair = 1,
    padding: Padding | tuple[Pair, Pair] = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
    bias: bool = True,
    name: str = "conv",
) -> LayerCost:
    """Output shape, parameters and MACs of one 2-D convolution on an H×W×C input.

    ``padding`` is an int, an (h, w) pair, "same", "valid", or ``((top, bottom), (left, right))``.
    """
    kh, kw = _pair("kernel_size", kernel_size)
    sh, sw = _pair("stride", stride)
    dh, dw = _pair("dilation", dilation)
    if isinstance(padding, str):
        pad_h = resolve_padding(padding, height, kh, sh, dh)
        pad_w = resolve_padding(padding, width, kw, sw, dw)
    elif isinstance(padding, (tuple, list)) and len(padding) == 2 and all(
        isinstance(p, (tuple, list)) for p in padding
    ):
        pad_h, pad_w = _padding_pair(padding[0]), _padding_pair(padding[1])
    else:
        ph, pw = _pair("padding", padding)
        pad_h, pad_w = _padding_pair(ph), _padding_pair(pw)
    _check_groups(in_channels, out_channels, groups)
    out_h = conv_output_size(height, kh, sh, pad_h, dh)
    out_w = conv_output_size(width, kw, sw, pad_w, dw)
    return LayerCost(
        name=name,
        in_shape=(height, width, in_channels),
        out_shape=(out_h, out_w, out_channels),
        params=conv_params(in_channels, out_channels, (kh, kw), groups, bias),
        macs=conv_macs(out_h, out_w, in_channels, out_channels, (kh, kw), groups),
    )


def conv_transpose2d_cost(
    height: int,
    width: int,
    in_channels: int,
    out_channels: int,
    kernel_size: IntOrPair,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    output_padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
    bias: bool = True,
    name: str = "conv_transpose",
) -> LayerCost:
    """Shapes, parameters and MACs of a transposed convolution.

    Every input value is multiplied into a whole ``k_h × k_w × C_out/g`` patch of the output,
    so MACs are ``H_in·W_in·C_in·k_h·k_w·C_out/g`` (the same count as the convolution it is the
    gradient of).
    """
    kh, kw = _pair("kernel_size", kernel_size)
    sh, sw = _pair("stride", stride)
    ph, pw = _pair("padding", padding)
    oph, opw = _pair("output_padding", output_padding)
    dh, dw = _pair("dilation", dilation)
    _check_groups(in_channels, out_channels, groups)
    out_h = conv_transpose_output_size(height, kh, sh, ph, oph, dh)
    out_w = conv_transpose_output_size(width, kw, sw, pw, opw, dw)
    return LayerCost(
        name=name,
        in_shape=(height, width, in_channels),
        out_shape=(out_h, out_w, out_channels),
        params=conv_params(in_channels, out_channels, (kh, kw), groups, bias),
        macs=height * width * in_channels * kh * kw * (out_channels // groups),
    )


def linear_cost(in_features: int, out_features: int, bias: bool = True, name: str = "linear") -> LayerCost:
    """A fully connected layer as a :class:`LayerCost` (shapes written 1×1×features)."""
    return LayerCost(
        name=name,
        in_shape=(1, 1, in_features),
        out_shape=(1, 1, out_features),
        params=linear_params(in_features, out_features, bias),
        macs=linear_macs(in_features, out_features),
    )


# --------------------------------------------------------------------------------------------
# The comparisons of the notes
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Comparison:
    """Two ways to compute an output: ``baseline`` layers against ``alternative`` layers."""

    baseline_name: str
    baseline: tuple[LayerCost, ...]
    alternative_name: str
    alternative: tuple[LayerCost, ...]

    @property
    def baseline_params(self) -> int:
        return sum(layer.params for layer in self.baseline)

    @property
    def baseline_macs(self) -> int:
        return sum(layer.macs for layer in self.baseline)

    @property
    def alternative_params(self) -> int:
        return sum(layer.params for layer in self.alternative)

    @property
    def alternative_macs(self) -> int:
        return sum(layer.macs for layer in self.alternative)

    @property
    def macs_ratio(self) -> float:
        """alternative MACs / baseline MACs (below 1 means the alternative is cheaper)."""
        return self.alternative_macs / self.baseline_macs

    @property
    def params_ratio(self) -> float:
        """alternative parameters / baseline parameters."""
        return self.alternative_params / self.baseline_params


def bottleneck_comparison(
    height: int,
    width: int,
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    bottleneck: int,
    stride: int = 1,
    padding: Padding = "same",
    bias: bool = False,
) -> Comparison:
    """A k×k convolution against a 1×1 reduction to ``bottleneck`` channels followed by it.

    GoogLeNet's "dimension reduction" (Szegedy et al. 2014, arXiv:1409.4842, §4). The notes'
    example: 28×28×192 → 28×28×32 with a 5×5 filter costs 28·28·32·(5·5·192) ≈ 120 M MACs;
    through 16 channels it costs 28·28·16·192 + 28·28·32·(5·5·16) ≈ 12.4 M, ten times less.
    Parameters count weights only unless ``bias``.
    """
    positive_int("bottleneck", bottleneck)
    direct = conv2d_cost(height, width, in_channels, out_channels, kernel_size, stride, padding,
                         bias=bias, name=f"{kernel_size}x{kernel_size} conv")
    reduce = conv2d_cost(height, width, in_channels, bottleneck, 1, bias=bias, name="1x1 reduce")
    conv = conv2d_cost(height, width, bottleneck, out_channels, kernel_size, stride, padding,
                       bias=bias, name=f"{kernel_size}x{kernel_size} conv")
    return Comparison("direct", (direct,), f"1x1 bottleneck to {bottleneck}", (reduce, conv))


def depthwise_separable_ratio(out_channels: int, kernel_size: int) -> float:
    """MACs of a depthwise-separable convolution over those of a standard one: ``1/N + 1/k²``.

    MobileNet (Howard et al. 2017, arXiv:1704.04861, Eq. 5): depthwise ``k²·M·D_F²`` plus
    pointwise ``M·N·D_F²`` over standard ``k²·M·N·D_F²``.
    """
    positive_int("out_channels", out_channels)
    positive_int("kernel_size", kernel_size)
    return 1 / out_channels + 1 / kernel_size**2


def depthwise_separable_comparison(
    height: int,
    width: int,
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    padding: Padding = "same",
    bias: bool = False,
) -> Comparison:
    """A standard k×k convolution against depthwise k×k (groups = C_in) + pointwise 1×1.

    MobileNet (Howard et al. 2017, arXiv:1704.04861, §3.1); the MAC ratio is
    :func:`depthwise_separable_ratio`.
    """
    standard = conv2d_cost(height, width, in_channels, out_channels, kernel_size, stride, padding,
                           bias=bias, name=f"{kernel_size}x{kernel_size} conv")
    depthwise = conv2d_cost(height, width, in_channels, in_channels, kernel_size, stride, padding,
                            groups=in_channels, bias=bias, name=f"{kernel_size}x{kernel_size} depthwise")
    h, w, _ = depthwise.out_shape
    pointwise = conv2d_cost(h, w, in_channels, out_channels, 1, bias=bias, name="1x1 pointwise")
    return Comparison("standard", (standard,), "depthwise-separable", (depthwise, pointwise))


def grouped_comparison(
    height: int,
    width: int,
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    groups: int,
    stride: int = 1,
    padding: Padding = "same",
    bias: bool = False,
) -> Comparison:
    """A standard convolution against the same one split into ``groups`` groups.

    Parameters ``K²CM`` become ``K²(C/g)(M/g)·g = K²CM/g`` and MACs ``K²CM·HW`` become
    ``K²CM/g·HW`` (AlexNet's two-GPU split, Krizhevsky et al. 2012; ResNeXt, arXiv:1611.05431).
    """
    standard = conv2d_cost(height, width, in_channels, out_channels, kernel_size, stride, padding,
                           bias=bias, name="standard conv")
    grouped = conv2d_cost(height, width, in_channels, out_channels, kernel_size, stride, padding,
                          groups=groups, bias=bias, name=f"grouped conv (g={groups})")
    return Comparison("standard", (standard,), f"{groups} groups", (grouped,))


def spatially_separable_comparison(
    height: int,
    width: int,
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    mid_channels: int | None = None,
    bias: bool = False,
) -> Comparison:
    """A k×k convolution against a k×1 convolution followed by a 1×k one ("same" padding).

    Inception-v3 (Szegedy et al. 2015, arXiv:1512.00567, §3.2): with equal input and output
    widths, 3×1 + 1×3 costs 6C² per position instead of 9C², "33% cheaper". ``mid_channels``
    (default ``out_channels``) is the width between the two halves.
    """
    mid = out_channels if mid_channels is None else mid_channels
    k = kernel_size
    full = conv2d_cost(height, width, in_channels, out_channels, k, padding="same", bias=bias,
                       name=f"{k}x{k} conv")
    column = conv2d_cost(height, width, in_channels, mid, (k, 1), padding="same", bias=bias,
                         name=f"{k}x1 conv")
    row = conv2d_cost(height, width, mid, out_channels, (1, k), padding="same", bias=bias,
                      name=f"1x{k} conv")
    return Comparison(f"{k}x{k}", (full,), f"{k}x1 + 1x{k}", (column, row))


def inception_cost(
    height: int,
    width: int,
    in_channels: int,
    ch1x1: int,
    ch3x3: int,
    ch5x5: int,
    ch3x3_reduce: int | None = None,
    ch5x5_reduce: int | None = None,
    pool_proj: int | None = None,
    bias: bool = False,
) -> tuple[LayerCost, ...]:
    """The convolutions of one Inception module (GoogLeNet, Szegedy et al. 2014, Fig. 2).

    Four parallel branches on an H×W×C input, all "same" padded and concatenated: 1×1; (1×1
    reduce →) 3×3; (1×1 reduce →) 5×5; 3×3 max-pool (→ 1×1 projection). Leaving all reductions
    ``None`` gives the naive module of Fig. 2(a), whose pool branch passes all C channels on.
    """
    layers = [conv2d_cost(height, width, in_channels, ch1x1, 1, bias=bias, name="1x1")]
    for size, out, reduce in ((3, ch3x3, ch3x3_reduce), (5, ch5x5, ch5x5_reduce)):
        source = in_channels
        if reduce is not None:
            layers.append(conv2d_cost(height, width, in_channels, reduce, 1, bias=bias,
                                      name=f"{size}x{size} reduce"))
            source = reduce
        layers.append(conv2d_cost(height, width, source, out, size, padding="same", bias=bias,
                                  name=f"{size}x{size}"))
    if pool_proj is not None:
        layers.append(conv2d_cost(height, width, in_channels, pool_proj, 1, bias=bias, name="pool proj"))
    return tuple(layers)


def inception_comparison(
    height: int,
    width: int,
    in_channels: int,
    ch1x1: int,
    ch3x3_reduce: int,
    ch3x3: int,
    ch5x5_reduce: int,
    ch5x5: int,
    pool_proj: int,
    bias: bool = False,
) -> Comparison:
    """The naive Inception module (Fig. 2a) against the one with 1×1 reductions (Fig. 2b).

    Arguments are the columns of GoogLeNet's Table 1 (e.g. inception (3a): 28×28×192 input,
    64, 96, 128, 16, 32, 32). The naive module uses the same branch widths without reductions.
    """
    naive = inception_cost(height, width, in_channels, ch1x1, ch3x3, ch5x5, bias=bias)
    reduced = inception_cost(height, width, in_channels, ch1x1, ch3x3, ch5x5,
                             ch3x3_reduce, ch5x5_reduce, pool_proj, bias=bias)
    return Comparison("naive", naive, "with 1x1 reductions", reduced)


def stacked_vs_single_comparison(
    num_layers: int = 3,
    kernel_size: int = 3,
    channels: int = 1,
    height: int = 1,
    width: int = 1,
    bias: bool = False,
) -> Comparison:
    """``num_layers`` stacked k×k convolutions against the one k'×k' kernel with the same
    receptive field, ``k' = num_layers·(k − 1) + 1`` (VGG, Simonyan & Zisserman 2014,
    arXiv:1409.1556, §2.3).

    Three 3×3 layers see 7×7 with ``3·(3²C²) = 27C²`` weights, against ``7²C² = 49C²``;
    all layers keep C channels and "same" padding.
    """
    positive_int("num_layers", num_layers)
    single_k = num_layers * (kernel_size - 1) + 1
    stack = tuple(
        conv2d_cost(height, width, channels, channels, kernel_size, padding="same", bias=bias,
                    name=f"{kernel_size}x{kernel_size} conv #{i + 1}")
        for i in range(num_layers)
    )
    single = conv2d_cost(height, width, channels, channels, single_k, padding="same", bias=bias,
                         name=f"{single_k}x{single_k} conv")
    return Comparison(f"one {single_k}x{single_k}", (single,),
                      f"{num_layers} x {kernel_size}x{kernel_size}", stack)


# --------------------------------------------------------------------------------------------
# Receptive fields
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerSpec:
    """One layer of a stack for receptive-field arithmetic, along one spatial axis.

    ``kind`` is "conv" or "pool" (they have the same geometry; pooling's stride defaults to its
    kernel size in :func:`parse_stack`, as in PyTorch).
    """

    kind: str
    kernel_size: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1

    def __post_init__(self) -> None:
        if self.kind not in ("conv", "pool"):
            raise ValueError(f"layer kind must be 'conv' or 'pool', got {self.kind!r}")
        positive_int("kernel_size", self.kernel_size)
        positive_int("stride", self.stride)
        non_negative_int("padding", self.padding)
        positive_int("dilation", self.dilation)

    @property
    def token(self) -> str:
        """The layer in the text notation of :func:`parse_stack`, e.g. ``c3s1p1``."""
        text = f"{self.kind[0]}{self.kernel_size}s{self.stride}"
        if self.padding:
            text += f"p{self.padding}"
        if self.dilation != 1:
            text += f"d{self.dilation}"
        return text


class ReceptiveField(NamedTuple):
    """Receptive field after a layer, in input pixels, along one axis.

    ``rf``: how many input pixels one output unit sees; ``jump``: the distance in input pixels
    between neighbouring output units (the product of the strides so far); ``start``: the input
    coordinate of the centre of the first output unit's field (pixel centres are 0, 1, …, n−1;
    negative values lie in the padding).
    """

    rf: int
    jump: int
    start: float


def receptive_field(layers: Sequence[LayerSpec]) -> list[ReceptiveField]:
    """Receptive field, jump and start after each layer of a stack (one spatial axis).

    Starting from ``rf = 1, jump = 1, start = 0`` (the input itself), each layer with effective
    kernel ``k_eff = d·(k − 1) + 1``, stride ``s`` and padding ``p`` gives

    - ``rf_out    = rf_in + (k_eff − 1)·jump_in``
    - ``jump_out  = jump_in · s``
    - ``start_out = start_in + ((k_eff − 1)/2 − p)·jump_in``

    (Araujo, Norris & Sim, Distill 2019). Output unit ``i`` of the last layer sees input pixels
    ``start + i·jump ± (rf − 1)/2`` (see :func:`receptive_field_span`). Three 3×3 convolutions
    give 7 (VGG); 3×3 convolutions at dilation 1, 2, 4 give 3, 7, 15 (Yu & Koltun 2015,
    arXiv:1511.07122). Returns one :class:`ReceptiveField` (a named ``(rf, jump, start)``) per layer.
    """
    rf, jump, start = 1, 1, 0.0
    result: list[ReceptiveField] = []
    for layer in layers:
        k_eff = effective_kernel_size(layer.kernel_size, layer.dilation)
        start = start + ((k_eff - 1) / 2 - layer.padding) * jump
        rf = rf + (k_eff - 1) * jump
        jump = jump * layer.stride
        result.append(ReceptiveField(rf, jump, start))
    return result


def receptive_field_span(field: ReceptiveField, index: int = 0) -> tuple[int, int]:
    """Input pixels ``(first, last)`` (inclusive) seen by output unit ``index``; they may lie
    outside ``0 … n−1`` where the field reaches into the padding."""
    centre = field.start + index * field.jump
    half = (field.rf - 1) / 2
    return int(round(centre - half)), int(round(centre + half))


_TOKEN = re.compile(r"^([cp])(\d+)((?:[spd]\d+)*)$")
_OPTION = re.compile(r"([spd])(\d+)")


def parse_stack(text: str) -> list[LayerSpec]:
    """Parse a stack written as comma-separated tokens, e.g. ``"c3s1,c3s1,p2s2,c3d2"``.

    A token is ``c<k>`` (convolution) or ``p<k>`` (pooling), followed in any order by optional
    ``s<stride>``, ``p<padding>`` and ``d<dilation>``: ``c3s1p1`` is a 3×3 convolution, stride 1,
    padding 1; ``c3d2`` a 3×3 convolution at dilation 2; ``p2`` a 2×2 pool with stride 2.
    Convolutions default to stride 1, pools to stride = kernel; padding defaults to 0, dilation
    to 1. A bad token raises ValueError naming it and its position.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("layer stack is empty; expected comma-separated tokens such as 'c3s1,p2s2,c3d2'")
    layers: list[LayerSpec] = []
    for position, raw in enumerate(text.split(","), start=1):
        token = raw.strip().lower()
        match = _TOKEN.match(token)
        problem = None
        if match is None:
            problem = "expected c<kernel> or p<kernel> followed by optional s<stride>, p<padding>, d<dilation>"
        else:
            kind = "conv" if match.group(1) == "c" else "pool"
            kernel = int(match.group(2))
            options: dict[str, int] = {}
            for key, value in _OPTION.findall(match.group(3)):
                if key in options:
                    problem = f"'{key}' is given twice"
                options[key] = int(value)
            if problem is None:
                try:
                    layers.append(LayerSpec(
                        kind, kernel,
                        stride=options.get("s", 1 if kind == "conv" else kernel),
                        padding=options.get("p", 0),
                        dilation=options.get("d", 1),
                    ))
                except ValueError as exc:
                    problem = str(exc)
        if problem is not None:
            raise ValueError(
                f"bad layer token {raw.strip()!r} at position {position} of {text!r}: {problem} "
                f"(e.g. 'c3s1p1', 'p2s2', 'c3d2')"
            )
    return layers


def stack_output_sizes(layers: Sequence[LayerSpec], size: int) -> list[int]:
    """Output size along one axis after each layer of a stack, for an input of ``size``.

    Convolutions use :func:`conv_output_size`, pools :func:`pool_output_size` (floor mode).
    """
    sizes: list[int] = []
    for number, layer in enumerate(layers, start=1):
        try:
            if layer.kind == "conv":
                size = conv_output_size(size, layer.kernel_size, layer.stride, layer.padding, layer.dilation)
            else:
                size = pool_output_size(size, layer.kernel_size, layer.stride, layer.padding, layer.dilation)
        except ValueError as exc:
            raise ValueError(f"layer {number} ({layer.token}): {exc}") from None
        sizes.append(size)
    return sizes

