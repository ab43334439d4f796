"""From-scratch NumPy reference operations, written to be read (and checked against PyTorch
in ``tests/test_scratch.py``).

- :mod:`convatlas.scratch.conv`: ``corr2d`` (the notes' two loops), multi-input / multi-output
  channels, the 1×1 convolution as a matrix product, ``conv2d`` with padding, stride, dilation and
  groups, and ``conv2d_im2col`` (im2col + GEMM).
- :mod:`convatlas.scratch.pool`: ``pool2d``, ``max_pool2d`` (with switches), ``avg_pool2d``,
  ``max_unpool2d``.
- :mod:`convatlas.scratch.transposed`: ``conv_transpose2d``.

All functions take and return float64 NumPy arrays in PyTorch's (N, C, H, W) layout.
"""

from convatlas.scratch.conv import (
    conv1x1_as_matmul,
    conv2d,
    conv2d_im2col,
    corr2d,
    corr2d_multi_in,
    corr2d_multi_in_out,
    im2col,
    pad2d,
)
from convatlas.scratch.pool import avg_pool2d, max_pool2d, max_unpool2d, pool2d
from convatlas.scratch.transposed import conv_transpose2d

__all__ = [
    "avg_pool2d",
    "conv1x1_as_matmul",
    "conv2d",
    "conv2d_im2col",
    "conv_transpose2d",
    "corr2d",
    "corr2d_multi_in",
    "corr2d_multi_in_out",
    "im2col",
    "max_pool2d",
    "max_unpool2d",
    "pad2d",
    "pool2d",
]
