"""Convolution from scratch, in NumPy, written to be read.

A "convolution" layer computes a cross-correlation (the kernel is not flipped):

    Y[n, o, i, j] = b[o] + Σ_c Σ_a Σ_b W[o, c, a, b] · X_pad[n, c, i·s + a·d, j·s + b·d]

with stride ``s``, dilation ``d`` and zero padding ``p`` (``X_pad`` is ``X`` with ``p`` zeros on
every side), the sum over ``c`` running over the input channels of the output channel's group.
This is the layer of Zhang, Lipton, Li & Smola, *Dive into Deep Learning* (2021, arXiv:2106.11342),
ch. 7, which the notes follow; see also Dumoulin & Visin (2016, arXiv:1603.07285).

Three ways to compute it are here, from the most literal to the fastest:
:func:`corr2d` (one channel, two loops), :func:`conv2d` (all options, a loop over output
positions) and :func:`conv2d_im2col` (unfold the windows into columns, one matrix product).
"""

from __future__ import annotations

import numpy as np

from convatlas import arith

__all__ = [
    "corr2d",
    "corr2d_multi_in",
    "corr2d_multi_in_out",
    "conv1x1_as_matmul",
    "pad2d",
    "conv2d",
    "im2col",
    "conv2d_im2col",
]


def corr2d(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """2-D cross-correlation of one channel, no padding, stride 1.

    ``Y[i, j] = Σ_a Σ_b X[i + a, j + b] · K[a, b]``; the output is
    ``(H − k_h + 1) × (W − k_w + 1)``.
    """
    x, kernel = np.asarray(x, dtype=float), np.asarray(kernel, dtype=float)
    if x.ndim != 2 or kernel.ndim != 2:
        raise ValueError(f"corr2d takes a 2-D image and a 2-D kernel, got shapes {x.shape} and {kernel.shape}")
    kh, kw = kernel.shape
    out_h = arith.conv_output_size(x.shape[0], kh)
    out_w = arith.conv_output_size(x.shape[1], kw)
    y = np.zeros((out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            y[i, j] = (x[i:i + kh, j:j + kw] * kernel).sum()
    return y


def corr2d_multi_in(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Several input channels, one output channel: correlate channel by channel and add.

    ``x`` is (C, H, W) and ``kernel`` (C, k_h, k_w): ``Y = Σ_c corr2d(X[c], K[c])``.
    """
    x, kernel = np.asarray(x, dtype=float), np.asarray(kernel, dtype=float)
    if x.ndim != 3 or kernel.ndim != 3 or x.shape[0] != kernel.shape[0]:
        raise ValueError(
            f"corr2d_multi_in takes x (C, H, W) and kernel (C, kh, kw) with the same C, "
            f"got {x.shape} and {kernel.shape}"
        )
    return sum(corr2d(x_c, k_c) for x_c, k_c in zip(x, kernel))


def corr2d_multi_in_out(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Several output channels: one multi-input correlation per output channel, stacked.

    ``x`` is (C_in, H, W) and ``kernel`` (C_out, C_in, k_h, k_w); the result is (C_out, H', W').
    """
    kernel = np.asarray(kernel, dtype=float)
    if kernel.ndim != 4:
        raise ValueError(f"kernel must be (C_out, C_in, kh, kw), got shape {kernel.shape}")
    return np.stack([corr2d_multi_in(x, k_o) for k_o in kernel])


def conv1x1_as_matmul(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """A 1×1 convolution is a matrix product over the channel axis.

    ``[K X]_{o, ij} = Σ_c K[o, c] · X[c, ij]``: flatten the (C_in, H, W) input to (C_in, H·W),
    multiply by the (C_out, C_in) weight matrix, reshape back to (C_out, H, W). Each pixel goes
    through the same fully connected layer (Lin, Chen & Yan 2013, "Network in Network",
    arXiv:1312.4400).
    """
    x, weight = np.asarray(x, dtype=float), np.asarray(weight, dtype=float)
    c_in, h, w = x.shape
    if weight.ndim == 4:
        if weight.shape[2:] != (1, 1):
            raise ValueError(f"a 1x1 convolution needs a (C_out, C_in, 1, 1) weight, got {weight.shape}")
        weight = weight[:, :, 0, 0]
    if weight.ndim != 2 or weight.shape[1] != c_in:
        raise ValueError(f"weight must be (C_out, {c_in}) or (C_out, {c_in}, 1, 1), got {weight.shape}")
    y = weight @ x.reshape(c_in, h * w)
    return y.reshape(weight.shape[0], h, w)


def pad2d(x: np.ndarray, padding: int | tuple[int, int], value: float = 0.0) -> np.ndarray:
    """Pad the last two axes of an array with ``value``: ``padding`` rows above and below and
    ``padding`` columns left and right (an (h, w) pair pads the axes differently)."""
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    if ph < 0 or pw < 0:
        raise ValueError(f"padding must be non-negative, got {padding!r}")
    widths = [(0, 0)] * (x.ndim - 2) + [(ph, ph), (pw, pw)]
    return np.pad(x, widths, mode="constant", constant_values=value)


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _check_conv_args(x: np.ndarray, weight: np.ndarray, groups: int) -> None:
    if x.ndim != 4:
        raise ValueError(f"input must be (N, C, H, W), got shape {x.shape}")
    if weight.ndim != 4:
        raise ValueError(f"weight must be (C_out, C_in / groups, kh, kw), got shape {weight.shape}")
    c_out = weight.shape[0]
    arith.conv_params(x.shape[1], c_out, weight.shape[2:], groups)  # checks that groups divides both
    if weight.shape[1] * groups != x.shape[1]:
        raise ValueError(
            f"weight expects {weight.shape[1]} × groups {groups} = {weight.shape[1] * groups} "
            f"input channels, but the input has {x.shape[1]}"
        )


def conv2d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
) -> np.ndarray:
    """2-D cross-correlation with padding, stride, dilation and groups (``torch.nn.functional.conv2d``).

    ``x`` is (N, C_in, H, W); ``weight`` is (C_out, C_in/g, k_h, k_w); output (N, C_out, H', W')
    with ``H' = floor((H + 2p − d(k − 1) − 1)/s) + 1``. With ``groups = g`` the channels are cut
    into g independent slices: output channels ``[o·C_out/g, (o+1)·C_out/g)`` only see input
    channels ``[o·C_in/g, (o+1)·C_in/g)``.
    """
    x, weight = np.asarray(x, dtype=float), np.asarray(weight, dtype=float)
    _check_conv_args(x, weight, groups)
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    c_out, c_in_group, kh, kw = weight.shape
    out_h = arith.conv_output_size(x.shape[2], kh, sh, ph, dh)
    out_w = arith.conv_output_size(x.shape[3], kw, sw, pw, dw)
    x_pad = pad2d(x, (ph, pw))
    c_out_group = c_out // groups
    y = np.zeros((x.shape[0], c_out, out_h, out_w))
    for g in range(groups):
        x_g = x_pad[:, g * c_in_group:(g + 1) * c_in_group]        # (N, C_in/g, H_pad, W_pad)
        w_g = weight[g * c_out_group:(g + 1) * c_out_group]         # (C_out/g, C_in/g, kh, kw)
        for i in range(out_h):
            for j in range(out_w):
                top, left = i * sh, j * sw
                window = x_g[:, :, top:top + dh * (kh - 1) + 1:dh, left:left + dw * (kw - 1) + 1:dw]
                # (N, C_in/g, kh, kw) · (C_out/g, C_in/g, kh, kw) summed over the last three axes
                y[:, g * c_out_group:(g + 1) * c_out_group, i, j] = np.tensordot(
                    window, w_g, axes=([1, 2, 3], [1, 2, 3])
                )
    if bias is not None:
        y += np.asarray(bias, dtype=float).reshape(1, c_out, 1, 1)
    return y


def im2col(
    x: np.ndarray,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
) -> np.ndarray:
    """Unfold every k_h × k_w window into a column (``torch.nn.functional.unfold``).

    Returns (N, C·k_h·k_w, L) with ``L = H'·W'`` windows in row-major order; the rows are
    ordered channel first, then kernel row, then kernel column — the order of a flattened
    (C, k_h, k_w) filter, so that a convolution becomes ``W.reshape(C_out, −1) @ columns``
    (Chellapilla, Puri & Simard 2006, "High performance convolutional neural networks for
    document processing").
    """
    x = np.asarray(x, dtype=float)
    if x.ndim != 4:
        raise ValueError(f"input must be (N, C, H, W), got shape {x.shape}")
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = _pair(kernel_size), _pair(stride), _pair(padding), _pair(dilation)
    n, c, h, w = x.shape
    out_h = arith.conv_output_size(h, kh, sh, ph, dh)
    out_w = arith.conv_output_size(w, kw, sw, pw, dw)
    x_pad = pad2d(x, (ph, pw))
    columns = np.zeros((n, c, kh, kw, out_h, out_w))
    for a in range(kh):
        for b in range(kw):
            # all windows' element (a, b) at once: rows a·d, a·d + s, …; columns likewise
            rows = slice(a * dh, a * dh + sh * (out_h - 1) + 1, sh)
            cols = slice(b * dw, b * dw + sw * (out_w - 1) + 1, sw)
            columns[:, :, a, b] = x_pad[:, :, rows, cols]
    return columns.reshape(n, c * kh * kw, out_h * out_w)


def conv2d_im2col(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
) -> np.ndarray:
    """The same convolution as :func:`conv2d`, computed as im2col + one matrix product (GEMM)
    per group: ``Y_g = W_g.reshape(C_out/g, C_in/g·k_h·k_w) @ im2col(X_g)``."""
    x, weight = np.asarray(x, dtype=float), np.asarray(weight, dtype=float)
    _check_conv_args(x, weight, groups)
    c_out, c_in_group, kh, kw = weight.shape
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    out_h = arith.conv_output_size(x.shape[2], kh, sh, ph, dh)
    out_w = arith.conv_output_size(x.shape[3], kw, sw, pw, dw)
    c_out_group = c_out // groups
    outputs = []
    for g in range(groups):
        columns = im2col(x[:, g * c_in_group:(g + 1) * c_in_group], (kh, kw), stride, padding, dilation)
        w_matrix = weight[g * c_out_group:(g + 1) * c_out_group].reshape(c_out_group, -1)
        outputs.append(np.matmul(w_matrix, columns))               # (N, C_out/g, L)
    y = np.concatenate(outputs, axis=1).reshape(x.shape[0], c_out, out_h, out_w)
    if bias is not None:
        y += np.asarray(bias, dtype=float).reshape(1, c_out, 1, 1)
    return y
