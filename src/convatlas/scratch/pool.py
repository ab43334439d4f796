"""Max pooling, average pooling and max unpooling from scratch, in NumPy.

Pooling slides a window over each channel separately and keeps one summary number: the
largest value (max pooling) or the mean (average pooling). It has no parameters and does not
change the number of channels. Max pooling can also return its *switches* — where each maximum
came from — which max unpooling uses to put values back in place (Zeiler & Fergus 2013,
"Visualizing and Understanding Convolutional Networks", arXiv:1311.2901; SegNet, Badrinarayanan
et al. 2015, arXiv:1511.00561).

Window of output ``(i, j)``: input rows ``i·s − p + a·d`` for ``a = 0 … k−1`` (and the same for
columns), keeping only those inside the input. Output sizes are :func:`convatlas.arith.pool_output_size`.
"""

from __future__ import annotations

import numpy as np

from convatlas import arith

__all__ = ["pool2d", "max_pool2d", "avg_pool2d", "max_unpool2d"]


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def pool2d(x: np.ndarray, pool_size: tuple[int, int], mode: str = "max") -> np.ndarray:
    """The simplest pooling, on one 2-D channel: stride 1, no padding.

    ``Y[i, j] = max`` (or ``mean``) of ``X[i : i + p_h, j : j + p_w]``.
    """
    x = np.asarray(x, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"pool2d takes one 2-D channel, got shape {x.shape}")
    if mode not in ("max", "avg"):
        raise ValueError(f"mode must be 'max' or 'avg', got {mode!r}")
    ph, pw = pool_size
    out_h = arith.pool_output_size(x.shape[0], ph, 1)
    out_w = arith.pool_output_size(x.shape[1], pw, 1)
    y = np.zeros((out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            window = x[i:i + ph, j:j + pw]
            y[i, j] = window.max() if mode == "max" else window.mean()
    return y


def _window(start: int, kernel: int, dilation: int, size: int) -> np.ndarray:
    """Input positions ``start + a·dilation`` (a = 0 … kernel−1) that lie inside ``0 … size−1``."""
    positions = start + dilation * np.arange(kernel)
    return positions[(positions >= 0) & (positions < size)]


def _first_tap(start: int, dilation: int) -> int:
    """The first of ``start, start + d, start + 2d, …`` that is not negative."""
    return start + dilation * -(start // dilation) if start < 0 else start


def _check_input(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if x.ndim != 4:
        raise ValueError(f"input must be (N, C, H, W), got shape {x.shape}")
    return x


def max_pool2d(
    x: np.ndarray,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Max pooling of an (N, C, H, W) array (``torch.nn.functional.max_pool2d``).

    ``Y[n, c, i, j] = max_{a, b} X[n, c, i·s − p + a·d, j·s − p + b·d]`` over positions inside the
    input (padding never wins). With ``return_indices`` also returns the switches: for each output,
    the flat index ``row·W + column`` of its maximum in its input channel (the first one, in
    row-major window order, if several are equal). A dilated window that sees only padding
    gives ``-inf``.
    """
    x = _check_input(x)
    (kh, kw) = _pair(kernel_size)
    (sh, sw) = _pair(kernel_size if stride is None else stride)
    (ph, pw), (dh, dw) = _pair(padding), _pair(dilation)
    n, c, h, w = x.shape
    out_h = arith.pool_output_size(h, kh, sh, ph, dh, ceil_mode)
    out_w = arith.pool_output_size(w, kw, sw, pw, dw, ceil_mode)
    y = np.zeros((n, c, out_h, out_w))
    switches = np.zeros((n, c, out_h, out_w), dtype=np.int64)
    for i in range(out_h):
        rows = _window(i * sh - ph, kh, dh, h)
        for j in range(out_w):
            cols = _window(j * sw - pw, kw, dw, w)
            if len(rows) == 0 or len(cols) == 0:
                # a dilated window can fall entirely in the padding: the max of nothing is -inf,
                # and the switch points at the first tap at or after 0, as PyTorch does
                y[:, :, i, j] = -np.inf
                switches[:, :, i, j] = _first_tap(i * sh - ph, dh) * w + _first_tap(j * sw - pw, dw)
                continue
            window = x[:, :, rows][:, :, :, cols].reshape(n, c, -1)   # (N, C, rows·cols)
            best = window.argmax(axis=2)                                # first maximum
            y[:, :, i, j] = np.take_along_axis(window, best[..., None], axis=2)[..., 0]
            switches[:, :, i, j] = rows[best // len(cols)] * w + cols[best % len(cols)]
    return (y, switches) if return_indices else y


def avg_pool2d(
    x: np.ndarray,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> np.ndarray:
    """Average pooling of an (N, C, H, W) array (``torch.nn.functional.avg_pool2d``).

    The sum over the window's positions inside the input is divided by the window's size. With
    ``count_include_pad`` the size counts the zero padding too, but never the part of a window
    that hangs past the padding in ceil mode (PyTorch's rule); without it, only positions
    inside the input count.
    """
    x = _check_input(x)
    (kh, kw) = _pair(kernel_size)
    (sh, sw) = _pair(kernel_size if stride is None else stride)
    (ph, pw) = _pair(padding)
    n, c, h, w = x.shape
    out_h = arith.pool_output_size(h, kh, sh, ph, 1, ceil_mode)
    out_w = arith.pool_output_size(w, kw, sw, pw, 1, ceil_mode)
    y = np.zeros((n, c, out_h, out_w))
    for i in range(out_h):
        top = i * sh - ph
        rows = _window(top, kh, 1, h)
        padded_rows = min(top + kh, h + ph) - top        # window rows inside input + padding
        for j in range(out_w):
            left = j * sw - pw
            cols = _window(left, kw, 1, w)
            padded_cols = min(left + kw, w + pw) - left
            total = x[:, :, rows][:, :, :, cols].sum(axis=(2, 3))
            divisor = padded_rows * padded_cols if count_include_pad else len(rows) * len(cols)
            y[:, :, i, j] = total / divisor
    return y


def max_unpool2d(
    x: np.ndarray,
    indices: np.ndarray,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    output_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Max unpooling: put each value back where its maximum came from, zeros elsewhere
    (``torch.nn.functional.max_unpool2d``).

    ``indices`` are the switches of :func:`max_pool2d`. The output is ``output_size`` (H, W) or,
    by default, ``(H_in − 1)·s − 2p + k`` along each axis (the input size of the pooling, up to
    the rows that pooling dropped).
    """
    x = _check_input(x)
    indices = np.asarray(indices)
    if indices.shape != x.shape:
        raise ValueError(f"indices must have the input's shape {x.shape}, got {indices.shape}")
    (kh, kw) = _pair(kernel_size)
    (sh, sw) = _pair(kernel_size if stride is None else stride)
    (ph, pw) = _pair(padding)
    n, c, h, w = x.shape
    if output_size is None:
        output_size = ((h - 1) * sh - 2 * ph + kh, (w - 1) * sw - 2 * pw + kw)
    out_h, out_w = output_size
    if indices.size and (indices.min() < 0 or indices.max() >= out_h * out_w):
        raise ValueError(
            f"switch indices must lie in 0 … {out_h * out_w - 1} for an output of {out_h}×{out_w}, "
            f"got {indices.min()} … {indices.max()}"
        )
    y = np.zeros((n, c, out_h * out_w))
    np.put_along_axis(y, indices.reshape(n, c, -1), x.reshape(n, c, -1), axis=2)
    return y.reshape(n, c, out_h, out_w)
