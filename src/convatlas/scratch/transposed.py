"""Transposed convolution from scratch, in NumPy.

A strided convolution maps a large map to a small one; its transpose maps the small map back to
the large shape. Each input value stamps a copy of the kernel, scaled by the value, into the
output at ``stride``-spaced positions, and overlapping stamps add up:

    Z[n, o, i·s + a·d, j·s + b·d] += X[n, c, i, j] · W[c, o, a, b]

after which ``p`` rows/columns are cut from each border (the padding of the forward convolution)
and ``output_padding`` extra ones are kept at the bottom/right. Output size
``(H − 1)·s − 2p + d·(k − 1) + output_padding + 1``. It is the gradient of
:func:`convatlas.scratch.conv2d` with respect to its input (Dumoulin & Visin 2016,
arXiv:1603.07285, §4), which is why it is also called "deconvolution" (Zeiler et al. 2010;
Long, Shelhamer & Darrell 2015, arXiv:1411.4038).
"""

from __future__ import annotations

import numpy as np

from convatlas import arith

__all__ = ["conv_transpose2d"]


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def conv_transpose2d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    output_padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
) -> np.ndarray:
    """Transposed convolution of an (N, C_in, H, W) array (``torch.nn.functional.conv_transpose2d``).

    ``weight`` is (C_in, C_out/g, k_h, k_w), the layout PyTorch uses (the same tensor as the
    forward convolution's (C_out', C_in'/g, k_h, k_w) weight, read the other way round).
    """
    x, weight = np.asarray(x, dtype=float), np.asarray(weight, dtype=float)
    if x.ndim != 4 or weight.ndim != 4:
        raise ValueError(f"input must be (N, C, H, W) and weight (C_in, C_out/g, kh, kw), got {x.shape} and {weight.shape}")
    n, c_in, h, w = x.shape
    if weight.shape[0] != c_in:
        raise ValueError(f"weight has {weight.shape[0]} input channels but the input has {c_in}")
    _, c_out_group, kh, kw = weight.shape
    c_out = c_out_group * groups
    arith.conv_params(c_in, c_out, (kh, kw), groups)          # checks that groups divides the channels
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = _pair(stride), _pair(padding), _pair(output_padding), _pair(dilation)
    out_h = arith.conv_transpose_output_size(h, kh, sh, ph, oph, dh)
    out_w = arith.conv_transpose_output_size(w, kw, sw, pw, opw, dw)

    # 1. stamp every input value's kernel into a map large enough for all stamps (no cropping yet)
    full_h = (h - 1) * sh + dh * (kh - 1) + 1 + oph
    full_w = (w - 1) * sw + dw * (kw - 1) + 1 + opw
    full = np.zeros((n, c_out, full_h, full_w))
    c_in_group = c_in // groups
    for g in range(groups):
        inputs = slice(g * c_in_group, (g + 1) * c_in_group)
        outputs = slice(g * c_out_group, (g + 1) * c_out_group)
        for i in range(h):
            for j in range(w):
                # (N, C_in/g) values times (C_in/g, C_out/g, kh, kw) kernels -> (N, C_out/g, kh, kw)
                stamp = np.tensordot(x[:, inputs, i, j], weight[inputs], axes=([1], [0]))
                rows = slice(i * sh, i * sh + dh * (kh - 1) + 1, dh)
                cols = slice(j * sw, j * sw + dw * (kw - 1) + 1, dw)
                full[:, outputs, rows, cols] += stamp

    # 2. cut the padding from the borders
    y = full[:, :, ph:ph + out_h, pw:pw + out_w].copy()
    if bias is not None:
        y += np.asarray(bias, dtype=float).reshape(1, c_out, 1, 1)
    return y
