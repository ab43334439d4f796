"""The special convolutions of the notes, as layers: dilated, spatially separable,
depthwise-separable, grouped and transposed.

Each is an ordinary ``nn.Conv2d`` / ``nn.ConvTranspose2d`` (or a short ``nn.Sequential`` of
them) with the arguments that define it spelled out and checked; their shapes and costs are
given in closed form by :mod:`convatlas.arith`.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from convatlas import arith
from convatlas._checks import positive_int
from convatlas.layers.basic import ConvNormAct

__all__ = [
    "DilatedConv2d",
    "SpatiallySeparableConv2d",
    "DepthwiseSeparableConv2d",
    "GroupedConv2d",
    "TransposedConv2d",
    "separate_kernel",
    "bilinear_kernel",
]


def _same(kernel_size: int, dilation: int = 1) -> int:
    """Symmetric padding that keeps the size at stride 1 for an odd (effective) kernel."""
    return dilation * (kernel_size - 1) // 2


class _CheckedConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose hyperparameters are validated by :mod:`convatlas.arith` (a message that
    says which is wrong) and whose ``padding`` defaults to "same" for odd kernels at stride 1."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 padding: int | None, dilation: int, groups: int, bias: bool) -> None:
        arith.conv_params(in_channels, out_channels, kernel_size, groups)
        padding = _same(kernel_size, dilation) if padding is None else padding
        super().__init__(in_channels, out_channels, kernel_size, stride, padding,
                         dilation=dilation, groups=groups, bias=bias)


class DilatedConv2d(_CheckedConv2d):
    """A k×k convolution whose taps are ``dilation`` pixels apart ("atrous" convolution).

    The kernel keeps its k² weights but spans ``d·(k − 1) + 1`` pixels, so stacking 3×3 layers
    at dilations 1, 2, 4 grows the receptive field 3 → 7 → 15 without pooling (Yu & Koltun 2015,
    "Multi-Scale Context Aggregation by Dilated Convolutions", arXiv:1511.07122; DeepLab, Chen et
    al. 2014, arXiv:1412.7062). ``padding`` defaults to ``d·(k − 1)/2``, which keeps the size.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        dilation: int = 2,
        stride: int = 1,
        padding: int | None = None,
        groups: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)

    @property
    def effective_kernel_size(self) -> int:
        """Pixels spanned by the kernel along each axis: ``d·(k − 1) + 1``."""
        return arith.effective_kernel_size(self.kernel_size[0], self.dilation[0])


class SpatiallySeparableConv2d(nn.Sequential):
    """A k×k convolution factored into a k×1 convolution followed by a 1×k one.

    Costs ``2k`` instead of ``k²`` multiplications per position and channel pair (Inception-v3,
    Szegedy et al. 2015, arXiv:1512.00567, §3.2). It can express exactly the kernels of rank 1,
    ``K = column ⊗ row`` — the Sobel kernel ``[1, 2, 1]ᵀ ⊗ [1, 0, −1]`` is one, the Laplacian is
    not (see :func:`separate_kernel`). Children: ``column`` (k×1, no bias) and ``row`` (1×k, the
    bias). ``mid_channels`` (default ``out_channels``) is the width in between; ``padding``
    defaults to ``k // 2`` along the kernel's long axis ("same" for odd k).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        mid_channels: int | None = None,
        bias: bool = True,
    ) -> None:
        mid = out_channels if mid_channels is None else mid_channels
        arith.conv_params(in_channels, mid, (kernel_size, 1))
        arith.conv_params(mid, out_channels, (1, kernel_size))
        padding = kernel_size // 2 if padding is None else padding
        super().__init__()
        self.column = nn.Conv2d(in_channels, mid, (kernel_size, 1), (stride, 1), (padding, 0), bias=False)
        self.row = nn.Conv2d(mid, out_channels, (1, kernel_size), (1, stride), (0, padding), bias=bias)


def separate_kernel(kernel: torch.Tensor, rtol: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a 2-D kernel into ``column`` (k_h) and ``row`` (k_w) vectors with
    ``kernel = column ⊗ row``, or raise ValueError when it is not separable (rank > 1).

    Uses the singular value decomposition: a kernel is separable exactly when only its first
    singular value is non-zero; then ``column = √σ₁·u₁`` and ``row = √σ₁·v₁``.
    """
    if kernel.dim() != 2:
        raise ValueError(f"separate_kernel takes a 2-D kernel, got shape {tuple(kernel.shape)}")
    u, s, vh = torch.linalg.svd(kernel.to(torch.float64))
    if s[0] == 0:
        return torch.zeros(kernel.shape[0], dtype=kernel.dtype), torch.zeros(kernel.shape[1], dtype=kernel.dtype)
    if len(s) > 1 and s[1] > rtol * s[0]:
        raise ValueError(
            f"kernel is not spatially separable: it has rank > 1 (singular values {s.tolist()}); "
            f"only kernels that are an outer product column ⊗ row can be split into k×1 and 1×k"
        )
    root = s[0].sqrt()
    return (u[:, 0] * root).to(kernel.dtype), (vh[0] * root).to(kernel.dtype)


class DepthwiseSeparableConv2d(nn.Sequential):
    """A depthwise k×k convolution (one filter per input channel, ``groups = C_in``) followed by a
    pointwise 1×1 convolution that mixes channels (MobileNet, Howard et al. 2017,
    arXiv:1704.04861, §3.1; Xception, Chollet 2016, arXiv:1610.02357).

    It costs ``1/N + 1/k²`` of a standard convolution (:func:`convatlas.arith.depthwise_separable_ratio`).
    Children ``depthwise`` and ``pointwise`` are :class:`ConvNormAct` blocks; MobileNet puts
    BatchNorm and ReLU after both (``norm=nn.BatchNorm2d, act=nn.ReLU``); by default there is
    neither and the convolutions have biases. ``depth_multiplier`` gives each input channel that
    many depthwise filters.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        depth_multiplier: int = 1,
        norm: Callable[[int], nn.Module] | None = None,
        act: Callable[[], nn.Module] | None = None,
    ) -> None:
        arith.conv_params(in_channels, in_channels, kernel_size)
        positive_int("depth_multiplier", depth_multiplier)
        mid = in_channels * depth_multiplier
        padding = _same(kernel_size, dilation) if padding is None else padding
        super().__init__()
        self.depthwise = ConvNormAct(in_channels, mid, kernel_size, stride, padding, groups=in_channels,
                                     dilation=dilation, norm=norm, act=act)
        self.pointwise = ConvNormAct(mid, out_channels, 1, 1, 0, norm=norm, act=act)


class GroupedConv2d(_CheckedConv2d):
    """A convolution split into ``groups`` independent convolutions on slices of the channels
    (AlexNet's two-GPU layers, Krizhevsky et al. 2012; ResNeXt, Xie et al. 2016, arXiv:1611.05431).

    Parameters and MACs are ``1/groups`` of the standard convolution: ``K²·C·M/g``. ``groups``
    must divide both channel counts (checked here with a message that says which one it does
    not divide). ``padding`` defaults to "same" for odd kernels at stride 1.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        groups: int = 2,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)


def bilinear_kernel(kernel_size: int) -> torch.Tensor:
    """The k×k kernel of bilinear interpolation, for initialising an upsampling transposed
    convolution (FCN, Long, Shelhamer & Darrell 2015, arXiv:1411.4038, §3.3).

    ``w[a, b] = (1 − |a − c|/f)·(1 − |b − c|/f)`` with ``f = ceil(k/2)`` and centre
    ``c = f − 1`` for odd k, ``f − 1/2`` for even k. With ``k = 2s`` and padding ``s/2`` a stride-s
    transposed convolution then interpolates bilinearly.
    """
    positive_int("kernel_size", kernel_size)
    factor = (kernel_size + 1) // 2
    centre = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    taps = 1 - (torch.arange(kernel_size, dtype=torch.float64) - centre).abs() / factor
    return torch.outer(taps, taps)


class TransposedConv2d(nn.ConvTranspose2d):
    """A transposed ("fractionally strided", "deconvolution") convolution that upsamples
    (Dumoulin & Visin 2016, arXiv:1603.07285, §4; FCN, arXiv:1411.4038).

    Output size ``(H − 1)·s − 2p + d·(k − 1) + output_padding + 1``
    (:func:`convatlas.arith.conv_transpose_output_size`). The arguments are checked when the
    layer is built (PyTorch checks ``output_padding`` only at the first forward).
    ``init="bilinear"`` sets each channel's kernel to :func:`bilinear_kernel` (channels are not
    mixed), so the layer starts as bilinear upsampling; it needs ``in_channels == out_channels``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 4,
        stride: int = 2,
        padding: int = 1,
        output_padding: int = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: int = 1,
        init: str = "default",
    ) -> None:
        arith.conv_params(in_channels, out_channels, kernel_size, groups)
        # checks stride, dilation and that output_padding < max(stride, dilation)
        arith.conv_transpose_output_size(1, kernel_size, stride, 0, output_padding, dilation)
        if init not in ("default", "bilinear"):
            raise ValueError(f"init must be 'default' or 'bilinear', got {init!r}")
        if init == "bilinear" and in_channels != out_channels:
            raise ValueError(
                f"bilinear init upsamples each channel on its own, so it needs in_channels == "
                f"out_channels, got {in_channels} and {out_channels}"
            )
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, output_padding,
                         groups, bias, dilation)
        if init == "bilinear":
            self.reset_bilinear()

    @torch.no_grad()
    def reset_bilinear(self) -> None:
        """Set the weights to per-channel bilinear interpolation and the bias to zero."""
        kernel = bilinear_kernel(self.kernel_size[0]).to(self.weight.dtype)
        self.weight.zero_()
        per_group = self.out_channels // self.groups
        for channel in range(self.in_channels):
            self.weight[channel, channel % per_group] = kernel
        if self.bias is not None:
            self.bias.zero_()

    def output_shape(self, height: int, width: int) -> tuple[int, int]:
        """(H_out, W_out) for an H×W input, from :func:`convatlas.arith.conv_transpose_output_size`."""
        return tuple(  # type: ignore[return-value]
            arith.conv_transpose_output_size(n, k, s, p, op, d)
            for n, k, s, p, op, d in zip((height, width), self.kernel_size, self.stride, self.padding,
                                          self.output_padding, self.dilation)
        )
