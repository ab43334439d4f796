"""Unpooling: the upsampling layers of encoder-decoder segmentation networks.

- :class:`NearestUnpool2d` repeats each value over its s×s block ("nearest neighbour");
- :class:`BedOfNailsUnpool2d` puts each value in the top-left corner of its block and zeros in
  the rest;
- :class:`MaxUnpool2d` puts each value back where max pooling found it, using the switches
  (indices) that ``nn.MaxPool2d(..., return_indices=True)`` returns, zeros elsewhere (Zeiler &
  Fergus 2013, arXiv:1311.2901; SegNet, Badrinarayanan et al. 2015, arXiv:1511.00561).

The names and pictures are those of Stanford CS231n (2017), lecture 11, which the notes follow.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["NearestUnpool2d", "BedOfNailsUnpool2d", "MaxUnpool2d"]


def _scale_pair(scale_factor: int | tuple[int, int]) -> tuple[int, int]:
    pair = (scale_factor, scale_factor) if isinstance(scale_factor, int) else tuple(scale_factor)
    if len(pair) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in pair):
        raise ValueError(f"scale_factor must be a positive integer or a pair of them, got {scale_factor!r}")
    return pair  # type: ignore[return-value]


def _check_nchw(x: torch.Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f"unpooling takes an (N, C, H, W) tensor, got shape {tuple(x.shape)}")


class NearestUnpool2d(nn.Module):
    """Nearest-neighbour unpooling: ``Y[i, j] = X[i // s, j // s]``, each value copied over an
    s×s block (the same as ``nn.Upsample(scale_factor=s, mode="nearest")``)."""

    def __init__(self, scale_factor: int | tuple[int, int] = 2) -> None:
        super().__init__()
        self.scale_factor = _scale_pair(scale_factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_nchw(x)
        sh, sw = self.scale_factor
        return x.repeat_interleave(sh, dim=2).repeat_interleave(sw, dim=3)

    def extra_repr(self) -> str:
        return f"scale_factor={self.scale_factor}"


class BedOfNailsUnpool2d(nn.Module):
    """"Bed of nails" unpooling: ``Y[s·i, s·j] = X[i, j]`` and zero everywhere else — zero
    insertion, a stride-s transposed convolution with a single 1 as its kernel."""

    def __init__(self, scale_factor: int | tuple[int, int] = 2) -> None:
        super().__init__()
        self.scale_factor = _scale_pair(scale_factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_nchw(x)
        sh, sw = self.scale_factor
        n, c, h, w = x.shape
        y = x.new_zeros(n, c, h * sh, w * sw)
        y[:, :, ::sh, ::sw] = x
        return y

    def extra_repr(self) -> str:
        return f"scale_factor={self.scale_factor}"


class MaxUnpool2d(nn.Module):
    """Max unpooling with the switches of max pooling: ``Y.flat[switch] = X``, zeros elsewhere.

    ``forward(x, switches, output_size=None)``: ``switches`` are the indices returned by
    ``nn.MaxPool2d(kernel_size, stride, padding, return_indices=True)`` — for each pooled value,
    the flat position ``row·W + column`` of its maximum in the input channel. The output is
    ``output_size`` ((H, W), or a full shape whose last two entries are used) or, by default,
    ``(H_in − 1)·s − 2p + k`` along each axis. Written as a scatter so it can be read; it equals
    ``torch.nn.functional.max_unpool2d``.
    """

    def __init__(
        self,
        kernel_size: int | tuple[int, int] = 2,
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
    ) -> None:
        super().__init__()
        self.kernel_size = _scale_pair(kernel_size)
        self.stride = self.kernel_size if stride is None else _scale_pair(stride)
        self.padding = (padding, padding) if isinstance(padding, int) else tuple(padding)
        if any(p < 0 for p in self.padding):
            raise ValueError(f"padding must be non-negative, got {padding!r}")

    def forward(
        self, x: torch.Tensor, switches: torch.Tensor, output_size: tuple[int, ...] | torch.Size | None = None
    ) -> torch.Tensor:
        _check_nchw(x)
        if switches.shape != x.shape:
            raise ValueError(
                f"switches must have the pooled tensor's shape {tuple(x.shape)}, got {tuple(switches.shape)}; "
                f"pass the indices from nn.MaxPool2d(..., return_indices=True)"
            )
        n, c, h, w = x.shape
        if output_size is None:
            out_h, out_w = ((size - 1) * s - 2 * p + k for size, s, p, k
                            in zip((h, w), self.stride, self.padding, self.kernel_size))
        else:
            out_h, out_w = tuple(output_size)[-2:]
        flat_switches = switches.reshape(n, c, h * w)
        # (on the meta device there are no values to check: shapes only)
        if flat_switches.numel() and not flat_switches.is_meta and (
                int(flat_switches.min()) < 0 or int(flat_switches.max()) >= out_h * out_w):
            raise ValueError(
                f"switches must index an output of {out_h}×{out_w} (0 … {out_h * out_w - 1}), got "
                f"{int(flat_switches.min())} … {int(flat_switches.max())}; pass the pooling input's size as output_size"
            )
        y = x.new_zeros(n, c, out_h * out_w)
        y = y.scatter(2, flat_switches, x.reshape(n, c, h * w))
        return y.reshape(n, c, out_h, out_w)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
