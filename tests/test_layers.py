"""convatlas.layers special convolutions and unpooling: each against PyTorch's own operator
or an independent construction, and their sizes and costs against convatlas.arith."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from convatlas import arith
from convatlas.edges import edge_kernel
from convatlas.layers import (
    BedOfNailsUnpool2d,
    DepthwiseSeparableConv2d,
    DilatedConv2d,
    GroupedConv2d,
    MaxUnpool2d,
    NearestUnpool2d,
    SpatiallySeparableConv2d,
    TransposedConv2d,
    separate_kernel,
)

SETTINGS = settings(max_examples=50, deadline=None)


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _macs(module: nn.Module, shape: tuple[int, ...]) -> int:
    """Multiply-accumulates PyTorch's FlopCounterMode counts (2 FLOPs per MAC), on the meta device."""
    meta = copy.deepcopy(module).to(device="meta", dtype=torch.float32)
    with FlopCounterMode(display=False) as counter:
        meta(torch.zeros(shape, device="meta"))
    return counter.get_total_flops() // 2


# ------------------------------------------------------------------------------------------
# Dilated
# ------------------------------------------------------------------------------------------

def test_dilated_stack_1_2_4_sees_3_7_15_pixels_by_gradient():
    """Notes (002): 1-, 2-, 4-dilated 3×3 layers have 3×3, 7×7, 15×15 receptive regions —
    measured here by back-propagating from the centre output pixel."""
    torch.manual_seed(0)
    layers = [DilatedConv2d(1, 1, 3, dilation=d, bias=False).double() for d in (1, 2, 4)]
    for layer in layers:
        nn.init.ones_(layer.weight)
    x = torch.ones(1, 1, 31, 31, dtype=torch.float64, requires_grad=True)
    widths, h = [], x
    for layer in layers:
        h = layer(h)
        assert h.shape == x.shape  # padding d·(k−1)/2 keeps the size
        (grad,) = torch.autograd.grad(h[0, 0, 15, 15], x, retain_graph=True)
        rows = torch.nonzero(grad[0, 0].sum(dim=1)).flatten()
        widths.append(int(rows.max() - rows.min() + 1))
    assert widths == [3, 7, 15]
    assert [layer.effective_kernel_size for layer in layers] == [3, 5, 9]


def test_dilated_conv_equals_conv_with_zero_stuffed_kernel():
    torch.manual_seed(0)
    layer = DilatedConv2d(2, 3, 3, dilation=2).double()
    stuffed = torch.zeros(3, 2, 5, 5, dtype=torch.float64)
    stuffed[:, :, ::2, ::2] = layer.weight.detach()
    x = torch.randn(1, 2, 9, 9, dtype=torch.float64)
    torch.testing.assert_close(layer(x), F.conv2d(x, stuffed, layer.bias, padding=2), rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------
# Spatially separable
# ------------------------------------------------------------------------------------------

def test_sobel_is_separable_and_the_layer_reproduces_it():
    sobel = edge_kernel("sobel_vertical")
    column, row = separate_kernel(sobel)
    torch.testing.assert_close(torch.outer(column, row), sobel, rtol=0, atol=1e-12)
    layer = SpatiallySeparableConv2d(1, 1, 3, bias=False).double()
    with torch.no_grad():
        layer.column.weight.copy_(column.view(1, 1, 3, 1))
        layer.row.weight.copy_(row.view(1, 1, 1, 3))
    x = torch.rand(2, 1, 12, 10, dtype=torch.float64)
    torch.testing.assert_close(layer(x), F.conv2d(x, sobel.view(1, 1, 3, 3), padding=1), rtol=1e-12, atol=1e-12)


def test_laplacian_is_not_separable():
    """Notes (002): not every kernel can be split into two 1-D kernels."""
    with pytest.raises(ValueError, match="not spatially separable"):
        separate_kernel(edge_kernel("laplacian"))


@SETTINGS
@given(cin=st.integers(1, 6), cout=st.integers(1, 6), k=st.sampled_from([1, 3, 5]), size=st.integers(5, 10))
def test_spatially_separable_costs_equal_arith(cin, cout, k, size):
    layer = SpatiallySeparableConv2d(cin, cout, k, bias=False)
    c = arith.spatially_separable_comparison(size, size, cin, cout, k)
    assert _params(layer) == c.alternative_params
    assert _macs(layer, (1, cin, size, size)) == c.alternative_macs
    assert layer(torch.zeros(1, cin, size, size)).shape[2:] == (size, size)


# ------------------------------------------------------------------------------------------
# Depthwise-separable and grouped
# ------------------------------------------------------------------------------------------

@SETTINGS
@given(cin=st.integers(1, 6), cout=st.integers(1, 8), k=st.sampled_from([1, 3, 5]), stride=st.integers(1, 2),
       size=st.integers(5, 10))
def test_depthwise_separable_equals_depthwise_then_pointwise(cin, cout, k, stride, size):
    torch.manual_seed(cin * 100 + cout)
    layer = DepthwiseSeparableConv2d(cin, cout, k, stride).double()
    x = torch.randn(1, cin, size, size, dtype=torch.float64)
    dw, pw = layer.depthwise.conv, layer.pointwise.conv
    expected = F.conv2d(F.conv2d(x, dw.weight, dw.bias, stride, k // 2, groups=cin), pw.weight, pw.bias)
    torch.testing.assert_close(layer(x), expected, rtol=1e-12, atol=1e-12)
    c = arith.depthwise_separable_comparison(size, size, cin, cout, k, stride, padding=k // 2, bias=True)
    assert _params(layer) == c.alternative_params
    assert _macs(layer, (1, cin, size, size)) == c.alternative_macs


def test_depthwise_separable_mobilenet_block_with_bn_relu():
    """MobileNet Fig. 3: 3×3 depthwise → BN → ReLU → 1×1 → BN → ReLU; the convs then have no bias."""
    block = DepthwiseSeparableConv2d(32, 64, norm=nn.BatchNorm2d, act=nn.ReLU)
    assert block.depthwise.conv.bias is None and block.pointwise.conv.bias is None
    assert _params(block) == 3 * 3 * 32 + 2 * 32 + 32 * 64 + 2 * 64
    assert block(torch.randn(2, 32, 8, 8)).min() >= 0


@SETTINGS
@given(groups=st.sampled_from([1, 2, 4]), cin_g=st.integers(1, 3), cout_g=st.integers(1, 3), k=st.sampled_from([1, 3]))
def test_grouped_conv_equals_separate_convs_on_channel_slices(groups, cin_g, cout_g, k):
    torch.manual_seed(groups * 10 + cin_g)
    cin, cout = groups * cin_g, groups * cout_g
    layer = GroupedConv2d(cin, cout, k, groups=groups).double()
    x = torch.randn(2, cin, 6, 6, dtype=torch.float64)
    pieces = [
        F.conv2d(x[:, g * cin_g:(g + 1) * cin_g], layer.weight[g * cout_g:(g + 1) * cout_g],
                 layer.bias[g * cout_g:(g + 1) * cout_g], padding=k // 2)
        for g in range(groups)
    ]
    torch.testing.assert_close(layer(x), torch.cat(pieces, 1), rtol=1e-12, atol=1e-12)
    assert _params(layer) == k * k * cin * cout // groups + cout  # K²CM/g + bias


def test_special_layers_refuse_bad_hyperparameters():
    with pytest.raises(ValueError, match="groups=4 does not divide in_channels=6"):
        GroupedConv2d(6, 8, groups=4)
    with pytest.raises(ValueError, match="groups=3 does not divide out_channels=8"):
        GroupedConv2d(6, 8, groups=3)
    with pytest.raises(ValueError, match="output_padding=2 must be smaller than the stride"):
        TransposedConv2d(4, 4, 3, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="in_channels == out_channels"):
        TransposedConv2d(4, 8, init="bilinear")
    with pytest.raises(ValueError, match="depth_multiplier"):
        DepthwiseSeparableConv2d(4, 8, depth_multiplier=0)


# ------------------------------------------------------------------------------------------
# Transposed convolution
# ------------------------------------------------------------------------------------------

@SETTINGS
@given(k=st.integers(1, 5), s=st.integers(1, 3), p=st.integers(0, 2), size=st.integers(1, 7), data=st.data())
def test_transposed_conv_shape_and_cost_equal_arith(k, s, p, size, data):
    op = data.draw(st.integers(0, s - 1))
    expected = (size - 1) * s - 2 * p + k + op
    if expected < 1:
        return
    layer = TransposedConv2d(2, 3, k, s, p, op)
    y = layer(torch.zeros(1, 2, size, size))
    assert tuple(y.shape[2:]) == layer.output_shape(size, size)
    cost = arith.conv_transpose2d_cost(size, size, 2, 3, k, s, p, op)
    assert _params(layer) == cost.params
    assert _macs(layer, (1, 2, size, size)) == cost.macs


def test_bilinear_transposed_conv_equals_bilinear_upsampling():
    """FCN §3.3: a stride-2, 4×4 transposed convolution initialised to the bilinear kernel
    upsamples like bilinear interpolation (away from the one-pixel border)."""
    layer = TransposedConv2d(3, 3, 4, 2, 1, init="bilinear").double()
    x = torch.rand(2, 3, 7, 9, dtype=torch.float64)
    expected = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    y = layer(x)
    assert y.shape == expected.shape
    torch.testing.assert_close(y[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1], rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------
# Unpooling
# ------------------------------------------------------------------------------------------

@SETTINGS
@given(sh=st.integers(1, 3), sw=st.integers(1, 3), h=st.integers(1, 5), w=st.integers(1, 5))
def test_nearest_unpool_equals_interpolate_nearest(sh, sw, h, w):
    x = torch.rand(2, 3, h, w, dtype=torch.float64)
    expected = F.interpolate(x, scale_factor=(sh, sw), mode="nearest")
    torch.testing.assert_close(NearestUnpool2d((sh, sw))(x), expected, rtol=0, atol=0)


@SETTINGS
@given(s=st.integers(1, 4), h=st.integers(1, 5), w=st.integers(1, 5))
def test_bed_of_nails_equals_zero_insertion_transposed_conv(s, h, w):
    """Bed of nails = ConvTranspose2d with a single 1 as kernel, stride s, output_padding s−1."""
    x = torch.rand(2, 3, h, w, dtype=torch.float64)
    one = torch.ones(3, 1, 1, 1, dtype=torch.float64)
    expected = F.conv_transpose2d(x, one, stride=s, output_padding=s - 1, groups=3)
    y = BedOfNailsUnpool2d(s)(x)
    torch.testing.assert_close(y, expected, rtol=0, atol=0)
    assert torch.count_nonzero(y) == torch.count_nonzero(x)


@SETTINGS
@given(k=st.integers(1, 4), s=st.integers(1, 3), data=st.data(), h=st.integers(4, 9), w=st.integers(4, 9))
def test_max_unpool_with_switches_equals_pytorch(k, s, data, h, w):
    p = data.draw(st.integers(0, k // 2))
    x = torch.randn(2, 3, h, w, dtype=torch.float64)
    pooled, switches = nn.MaxPool2d(k, s, p, return_indices=True)(x)
    ours = MaxUnpool2d(k, s, p)(pooled, switches, output_size=x.shape)
    torch.testing.assert_close(ours, F.max_unpool2d(pooled, switches, k, s, p, output_size=x.shape[2:]), rtol=0, atol=0)
    # every non-zero lands where x has that value: the switches remember where each maximum was
    mask = ours != 0
    torch.testing.assert_close(ours[mask], x[mask], rtol=0, atol=0)


def test_max_unpool_refuses_mismatched_switches():
    pooled, switches = F.max_pool2d(torch.rand(1, 1, 4, 4), 2, return_indices=True)
    with pytest.raises(ValueError, match="switches must have the pooled tensor's shape"):
        MaxUnpool2d(2)(pooled, switches[..., :1])
    with pytest.raises(ValueError, match="switches must index an output of 2×2"):
        MaxUnpool2d(2)(pooled, switches, output_size=(2, 2))
