"""convatlas.arith: every formula against what PyTorch actually does, and the worked examples
of the lecture notes (and of the papers they cite) with their numbers."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from convatlas import arith
from convatlas.cli import main
from convatlas.layers import GlobalAvgPool2d

SETTINGS = settings(max_examples=80, deadline=None)


def _torch_raises(fn) -> tuple[bool, object]:
    try:
        return False, fn()
    except RuntimeError:
        return True, None


def _meta(*shape: int) -> torch.Tensor:
    return torch.empty(*shape, device="meta")


# ------------------------------------------------------------------------------------------
# Output sizes against PyTorch (valid and invalid hyperparameters alike)
# ------------------------------------------------------------------------------------------

axis = st.tuples(
    st.integers(1, 20),  # size
    st.integers(1, 7),   # kernel
    st.integers(1, 4),   # stride
    st.integers(0, 4),   # padding
    st.integers(1, 3),   # dilation
)


@SETTINGS
@given(h=axis, w=axis)
def test_conv_output_size_equals_pytorch(h, w):
    (nh, kh, sh, ph, dh), (nw, kw, sw, pw, dw) = h, w
    raised, out = _torch_raises(lambda: F.conv2d(
        _meta(1, 2, nh, nw), _meta(3, 2, kh, kw), stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw)))
    if raised:
        with pytest.raises(ValueError, match="larger than the padded input"):
            arith.conv_output_size(nh, kh, sh, ph, dh)
            arith.conv_output_size(nw, kw, sw, pw, dw)
    else:
        assert out.shape[2:] == (arith.conv_output_size(nh, kh, sh, ph, dh),
                                 arith.conv_output_size(nw, kw, sw, pw, dw))


@SETTINGS
@given(n=st.integers(1, 20), k=st.integers(1, 6), s=st.integers(1, 4), p=st.integers(0, 3),
       d=st.integers(1, 3), ceil=st.booleans())
def test_max_pool_output_size_equals_pytorch(n, k, s, p, d, ceil):
    raised, out = _torch_raises(lambda: F.max_pool2d(torch.zeros(1, 1, n, n), k, s, p, d, ceil_mode=ceil))
    if raised:
        with pytest.raises(ValueError):
            arith.pool_output_size(n, k, s, p, d, ceil)
    else:
        assert out.shape[-1] == arith.pool_output_size(n, k, s, p, d, ceil)


@SETTINGS
@given(n=st.integers(1, 20), k=st.integers(1, 6), s=st.integers(1, 4), p=st.integers(0, 3), ceil=st.booleans())
def test_avg_pool_output_size_equals_pytorch(n, k, s, p, ceil):
    raised, out = _torch_raises(lambda: F.avg_pool2d(torch.zeros(1, 1, n, n), k, s, p, ceil_mode=ceil))
    if raised:
        with pytest.raises(ValueError):
            arith.pool_output_size(n, k, s, p, 1, ceil)
    else:
        assert out.shape[-1] == arith.pool_output_size(n, k, s, p, 1, ceil)


@SETTINGS
@given(n=st.integers(1, 12), k=st.integers(1, 6), s=st.integers(1, 4), p=st.integers(0, 4),
       op=st.integers(0, 3), d=st.integers(1, 3))
def test_conv_transpose_output_size_equals_pytorch(n, k, s, p, op, d):
    raised, out = _torch_raises(lambda: F.conv_transpose2d(
        torch.zeros(1, 1, n, n), torch.zeros(1, 1, k, k), stride=s, padding=p, output_padding=op, dilation=d))
    if raised or out.shape[-1] == 0:  # an empty output is no output
        with pytest.raises(ValueError):
            arith.conv_transpose_output_size(n, k, s, p, op, d)
    else:
        assert out.shape[-1] == arith.conv_transpose_output_size(n, k, s, p, op, d)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@SETTINGS
@given(n=st.integers(1, 16), k=st.integers(1, 6), s=st.integers(1, 4), d=st.integers(1, 3))
def test_same_padding_gives_ceil_n_over_s_and_matches_pytorch_same(n, k, s, d):
    before, after = arith.same_padding(n, k, s, d)
    x = torch.rand(1, 1, n, n, dtype=torch.float64)
    w = torch.rand(1, 1, k, k, dtype=torch.float64)
    y = F.conv2d(F.pad(x, (before, after, before, after)), w, stride=s, dilation=d)
    assert y.shape[-1] == math.ceil(n / s)
    if s == 1:  # PyTorch's padding="same" exists only at stride 1; the odd pixel goes after
        torch.testing.assert_close(y, F.conv2d(x, w, padding="same", dilation=d), rtol=0, atol=1e-12)


def test_resolve_padding_valid_and_bad_mode():
    assert arith.resolve_padding("valid", 10, 3) == (0, 0)
    assert arith.resolve_padding("same", 10, 3) == (1, 1)
    with pytest.raises(ValueError, match="'same' or 'valid'"):
        arith.resolve_padding("full", 10, 3)


# ------------------------------------------------------------------------------------------
# Parameters and MACs against PyTorch
# ------------------------------------------------------------------------------------------

@SETTINGS
@given(cin=st.integers(1, 12), cout=st.integers(1, 12), kh=st.integers(1, 5), kw=st.integers(1, 5),
       groups=st.integers(1, 4), bias=st.booleans())
def test_conv_params_equal_pytorch(cin, cout, kh, kw, groups, bias):
    if cin % groups or cout % groups:
        with pytest.raises(ValueError, match="does not divide"):
            arith.conv_params(cin, cout, (kh, kw), groups, bias)
        with pytest.raises(ValueError):  # PyTorch refuses it too
            nn.Conv2d(cin, cout, (kh, kw), groups=groups, bias=bias)
        return
    for layer in (nn.Conv2d(cin, cout, (kh, kw), groups=groups, bias=bias, device="meta"),
                  nn.ConvTranspose2d(cin, cout, (kh, kw), groups=groups, bias=bias, device="meta")):
        assert arith.conv_params(cin, cout, (kh, kw), groups, bias) == sum(p.numel() for p in layer.parameters())


@settings(max_examples=30, deadline=None)
@given(fin=st.integers(1, 64), fout=st.integers(1, 64), bias=st.booleans())
def test_linear_params_and_macs_equal_pytorch(fin, fout, bias):
    layer = nn.Linear(fin, fout, bias=bias, device="meta")
    assert arith.linear_params(fin, fout, bias) == sum(p.numel() for p in layer.parameters())
    with FlopCounterMode(display=False) as counter:
        layer(_meta(1, fin))
    assert 2 * arith.linear_macs(fin, fout) == counter.get_total_flops()


@SETTINGS
@given(h=st.integers(1, 16), w=st.integers(1, 16), groups=st.integers(1, 3), cin_g=st.integers(1, 4),
       cout_g=st.integers(1, 4), k=st.integers(1, 5), s=st.integers(1, 3), p=st.integers(0, 2), d=st.integers(1, 2))
def test_conv_cost_macs_equal_pytorch_flop_counter(h, w, groups, cin_g, cout_g, k, s, p, d):
    cin, cout = cin_g * groups, cout_g * groups
    assume(d * (k - 1) + 1 <= min(h, w) + 2 * p)
    cost = arith.conv2d_cost(h, w, cin, cout, k, s, p, d, groups)
    layer = nn.Conv2d(cin, cout, k, s, p, d, groups, device="meta")
    with FlopCounterMode(display=False) as counter:
        y = layer(_meta(1, cin, h, w))
    assert (y.shape[2], y.shape[3], y.shape[1]) == cost.out_shape
    assert 2 * cost.macs == counter.get_total_flops()  # PyTorch counts 2 FLOPs per MAC
    assert cost.params == sum(q.numel() for q in layer.parameters())


@SETTINGS
@given(h=st.integers(1, 8), groups=st.integers(1, 3), cin_g=st.integers(1, 3), cout_g=st.integers(1, 3),
       k=st.integers(1, 4), s=st.integers(1, 3), p=st.integers(0, 1))
def test_conv_transpose_cost_equals_pytorch(h, groups, cin_g, cout_g, k, s, p):
    cin, cout = cin_g * groups, cout_g * groups
    assume((h - 1) * s - 2 * p + k >= 1)
    cost = arith.conv_transpose2d_cost(h, h, cin, cout, k, s, p, groups=groups)
    layer = nn.ConvTranspose2d(cin, cout, k, s, p, groups=groups, device="meta")
    with FlopCounterMode(display=False) as counter:
        y = layer(_meta(1, cin, h, h))
    assert (y.shape[2], y.shape[3], y.shape[1]) == cost.out_shape
    assert 2 * cost.macs == counter.get_total_flops()
    assert cost.params == sum(q.numel() for q in layer.parameters())


# ------------------------------------------------------------------------------------------
# The notes' worked examples, with their numbers
# ------------------------------------------------------------------------------------------

def test_notes_1x1_bottleneck_28x28x192_to_32():
    """Notes (000): 28×28×192 → 28×28×32 with 5×5 costs 28×28×32×(5×5×192); through a 1×1
    layer of 16 it costs 28×28×16×(1×1×192) + 28×28×32×(5×5×16): "10배의 차이"."""
    c = arith.bottleneck_comparison(28, 28, 192, 32, kernel_size=5, bottleneck=16)
    assert c.baseline_macs == 28 * 28 * 32 * (5 * 5 * 192)
    assert c.alternative_macs == 28 * 28 * 16 * (1 * 1 * 192) + 28 * 28 * 32 * (5 * 5 * 16)
    assert round(c.baseline_macs / 1e6) == 120            # ≈120 M
    assert round(c.alternative_macs / 1e6, 1) == 12.4     # ≈12.4 M
    assert 9.5 < c.baseline_macs / c.alternative_macs < 10.5
    assert c.baseline[0].out_shape == c.alternative[-1].out_shape == (28, 28, 32)


def test_notes_three_3x3_equal_one_7x7_receptive_field_and_27_vs_49_weights():
    """Notes (003, VGG): three 3×3 convolutions see 7×7, five see 11×11, two see 5×5;
    3 filters of 3×3 hold 27 weights against 49 for one 7×7."""
    assert arith.receptive_field(arith.parse_stack("c3,c3,c3"))[-1].rf == 7
    assert arith.receptive_field(arith.parse_stack("c3,c3,c3,c3,c3"))[-1].rf == 11
    assert arith.receptive_field(arith.parse_stack("c3,c3"))[-1].rf == 5
    c = arith.stacked_vs_single_comparison(num_layers=3, kernel_size=3, channels=1)
    assert (c.alternative_params, c.baseline_params) == (27, 49)
    # VGG §2.3 with C channels: 3(3²C²) = 27C² against 7²C² = 49C²
    c = arith.stacked_vs_single_comparison(3, 3, channels=64)
    assert (c.alternative_params, c.baseline_params) == (27 * 64**2, 49 * 64**2)


def test_notes_dilation_1_2_4_gives_3_7_15():
    """Notes (002): 1-, 2- and 4-dilated 3×3 convolutions have 3×3, 7×7 and 15×15 receptive
    regions (stacked, Yu & Koltun Fig. 1)."""
    fields = arith.receptive_field(arith.parse_stack("c3d1,c3d2,c3d4"))
    assert [f.rf for f in fields] == [3, 7, 15]


def test_notes_depthwise_separable_costs_1_over_n_plus_1_over_f_squared():
    """Notes (000): a depthwise-separable convolution costs (1/n_c' + 1/f²) of a normal one."""
    for n, f, c_in, size in ((32, 5, 192, 28), (64, 3, 32, 112), (1024, 3, 1024, 7)):
        c = arith.depthwise_separable_comparison(size, size, c_in, n, f)
        assert Fraction(c.alternative_macs, c.baseline_macs) == Fraction(1, n) + Fraction(1, f * f)
        assert c.macs_ratio == pytest.approx(arith.depthwise_separable_ratio(n, f), rel=1e-12)


def test_mobilenet_3x3_separable_is_8_to_9_times_cheaper():
    """MobileNet §3.1: 3×3 depthwise-separable convolutions use "between 8 to 9 times less
    computation than standard convolutions" (at its wide layers, N = 512 and 1024)."""
    for n in (512, 1024):
        assert 8 < 1 / arith.depthwise_separable_ratio(n, 3) < 9


def test_notes_grouped_convolution_k2cm_over_g():
    """Notes (002): standard K²CM parameters and K²CM·HW operations; grouped K²CM/g and K²CM/g·HW."""
    K, C, M, H, W = 3, 64, 128, 14, 14
    for g in (1, 2, 4, 8, 32):
        c = arith.grouped_comparison(H, W, C, M, K, groups=g)
        assert c.alternative_params == K * K * C * M // g
        assert c.alternative_macs == K * K * C * M // g * H * W
        assert c.baseline_macs == K * K * C * M * H * W


def test_notes_conv_parameters_k_k_c_c_plus_bias():
    """Notes (001): k×k×c_{l−1}×c_l + c_l parameters; (002): F²CK + K."""
    assert arith.conv_params(3, 64, 3) == 3 * 3 * 3 * 64 + 64
    assert arith.conv_params(3, 64, 3, bias=False) == 3 * 3 * 3 * 64


def test_notes_global_average_pooling_against_fc_51_3m():
    """Notes (003, GoogLeNet): an FC layer from 7×7×1024 to 1024 needs 7×7×1024×1024 = 51.3M
    weights; global average pooling needs none."""
    weights = arith.linear_params(7 * 7 * 1024, 1024, bias=False)
    assert math.floor(weights / 1e5) / 10 == 51.3
    assert sum(p.numel() for p in GlobalAvgPool2d().parameters()) == 0


def test_spatially_separable_3x1_1x3_is_33_percent_cheaper():
    """Inception-v3 §3.2: a 3×1 then 1×3 convolution is 33% cheaper than a 3×3 with equal
    numbers of input and output filters."""
    c = arith.spatially_separable_comparison(17, 17, 192, 192, 3)
    assert 1 - c.macs_ratio == pytest.approx(1 / 3, rel=1e-12)
    assert 1 - c.params_ratio == pytest.approx(1 / 3, rel=1e-12)


def test_googlenet_table1_output_sizes_need_ceil_mode():
    """GoogLeNet Table 1: 224 → conv 7×7/2 → 112 → max pool 3×3/2 → 56 → … → 28 → 14 → 7.
    Caffe's pools round up; floor mode would give 55."""
    size = arith.conv_output_size(224, 7, 2, 3)
    assert size == 112
    sizes = []
    for _ in range(4):
        size = arith.pool_output_size(size, 3, 2, ceil_mode=True)
        sizes.append(size)
    assert sizes == [56, 28, 14, 7]
    assert arith.pool_output_size(112, 3, 2, ceil_mode=False) == 55


def _measured_macs(module: nn.Module, shape: tuple[int, ...]) -> int:
    with FlopCounterMode(display=False) as counter:
        module(_meta(*shape))
    return counter.get_total_flops() // 2


class _Inception(nn.Module):
    """A plain-PyTorch Inception module (GoogLeNet Fig. 2), built only to be measured."""

    def __init__(self, cin, c1, c3r, c3, c5r, c5, proj):
        super().__init__()
        def conv(i, o, k):
            return nn.Conv2d(i, o, k, padding=k // 2, bias=False, device="meta")
        self.b1 = conv(cin, c1, 1)
        self.b3 = nn.Sequential(conv(cin, c3r, 1), conv(c3r, c3, 3)) if c3r else conv(cin, c3, 3)
        self.b5 = nn.Sequential(conv(cin, c5r, 1), conv(c5r, c5, 5)) if c5r else conv(cin, c5, 5)
        self.pool = nn.MaxPool2d(3, 1, 1)
        self.proj = conv(cin, proj, 1) if proj else nn.Identity()

    def forward(self, x):
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.proj(self.pool(x))], 1)


@pytest.mark.parametrize("table1", [
    # name, input, #1×1, #3×3 reduce, #3×3, #5×5 reduce, #5×5, pool proj, ops (GoogLeNet Table 1)
    ("inception (3a)", (28, 28, 192), 64, 96, 128, 16, 32, 32, 128e6),
    ("inception (3b)", (28, 28, 256), 128, 128, 192, 32, 96, 64, 304e6),
])
def test_googlenet_inception_module_ops_naive_vs_reduced(table1):
    name, (h, w, cin), c1, c3r, c3, c5r, c5, proj, ops = table1
    c = arith.inception_comparison(h, w, cin, c1, c3r, c3, c5r, c5, proj)
    assert round(c.alternative_macs / 1e6) == round(ops / 1e6)
    reduced = _Inception(cin, c1, c3r, c3, c5r, c5, proj)
    naive = _Inception(cin, c1, None, c3, None, c5, None)
    assert c.alternative_macs == _measured_macs(reduced, (1, cin, h, w))
    assert c.baseline_macs == _measured_macs(naive, (1, cin, h, w))
    assert c.alternative_params == sum(p.numel() for p in reduced.parameters())
    assert c.baseline_params == sum(p.numel() for p in naive.parameters())
    assert c.macs_ratio < 0.5  # the reductions at least halve the module's cost


# ------------------------------------------------------------------------------------------
# Receptive field against a gradient-based measurement
# ------------------------------------------------------------------------------------------

layer_specs = st.builds(
    lambda kind, k, s, p, d: arith.LayerSpec(kind, k, s, min(p, k // 2) if kind == "pool" else p,
                                             1 if kind == "pool" else d),
    st.sampled_from(["conv", "conv", "pool"]), st.integers(1, 5), st.integers(1, 3),
    st.integers(0, 2), st.integers(1, 3),
)


def _torch_stack(layers: list[arith.LayerSpec]) -> nn.Sequential:
    """All-positive layers, so no gradient cancels: convolutions with weights 1, average pools."""
    modules = []
    for layer in layers:
        if layer.kind == "conv":
            conv = nn.Conv2d(1, 1, layer.kernel_size, layer.stride, layer.padding, layer.dilation, bias=False)
            nn.init.ones_(conv.weight)
            modules.append(conv)
        else:
            modules.append(nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding))
    return nn.Sequential(*modules).double()


@settings(max_examples=60, deadline=None)
@given(layers=st.lists(layer_specs, min_size=1, max_size=4), extra=st.integers(0, 12))
def test_receptive_field_equals_gradient_measurement(layers, extra):
    """Back-propagate from one output unit; the input pixels with a non-zero gradient span
    exactly the predicted field (for units whose field lies inside the image)."""
    fields = arith.receptive_field(layers)
    jumps_in = [1] + [f.jump for f in fields[:-1]]
    reach_into_padding = sum(l.padding * j for l, j in zip(layers, jumps_in))
    size = fields[-1].rf + 2 * reach_into_padding + extra
    assume(size <= 120)
    try:
        out_size = arith.stack_output_sizes(layers, size)[-1]
    except ValueError:
        assume(False)
    net = _torch_stack(layers)
    x = torch.ones(1, 1, size, size, dtype=torch.float64, requires_grad=True)
    y = net(x)
    assert y.shape[-1] == out_size
    inside = [i for i in range(out_size)
              if arith.receptive_field_span(fields[-1], i)[0] >= 0
              and arith.receptive_field_span(fields[-1], i)[1] < size]
    assume(inside)
    for i in sorted({inside[0], inside[len(inside) // 2], inside[-1]}):
        first, last = arith.receptive_field_span(fields[-1], i)
        (grad,) = torch.autograd.grad(y[0, 0, i, i], x, retain_graph=True)
        rows = torch.nonzero(grad[0, 0].abs().sum(dim=1)).flatten()
        cols = torch.nonzero(grad[0, 0].abs().sum(dim=0)).flatten()
        assert (rows.min().item(), rows.max().item()) == (first, last)
        assert (cols.min().item(), cols.max().item()) == (first, last)
        assert last - first + 1 == fields[-1].rf


# ------------------------------------------------------------------------------------------
# Parser and bad input
# ------------------------------------------------------------------------------------------

def test_parse_stack_tokens_and_defaults():
    layers = arith.parse_stack("c3s1, c3s1p1, p2s2, c3d2, p3, C5S2P2D1")
    assert layers == [
        arith.LayerSpec("conv", 3, 1, 0, 1),
        arith.LayerSpec("conv", 3, 1, 1, 1),
        arith.LayerSpec("pool", 2, 2, 0, 1),
        arith.LayerSpec("conv", 3, 1, 0, 2),
        arith.LayerSpec("pool", 3, 3, 0, 1),   # pool stride defaults to its kernel, as in PyTorch
        arith.LayerSpec("conv", 5, 2, 2, 1),
    ]
    assert arith.parse_stack(",".join(l.token for l in layers)) == layers


@pytest.mark.parametrize("text, fragment", [
    ("c3s1,x3", "'x3' at position 2"),
    ("c3s0", "stride must be a positive integer"),
    ("c0", "kernel_size must be a positive integer"),
    ("c3s1s2", "'s' is given twice"),
    ("c3q1", "'c3q1' at position 1"),
    ("", "empty"),
])
def test_parse_stack_bad_tokens(text, fragment):
    with pytest.raises(ValueError, match=fragment):
        arith.parse_stack(text)


def test_invalid_hyperparameters_say_which_and_why():
    with pytest.raises(ValueError, match=r"kernel is larger than the padded input: effective kernel 5 .* padded input 4"):
        arith.conv_output_size(2, 3, padding=1, dilation=2)
    with pytest.raises(ValueError, match="stride must be a positive integer, got 0"):
        arith.conv_output_size(8, 3, stride=0)
    with pytest.raises(ValueError, match="stride must be a positive integer, got -1"):
        arith.pool_output_size(8, 2, stride=-1)
    with pytest.raises(ValueError, match="groups=3 does not divide in_channels=4"):
        arith.conv_params(4, 6, 3, groups=3)
    with pytest.raises(ValueError, match="groups=2 does not divide out_channels=5"):
        arith.conv2d_cost(8, 8, 4, 5, 3, groups=2)
    with pytest.raises(ValueError, match="output_padding=2 must be smaller than the stride"):
        arith.conv_transpose_output_size(4, 3, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="more than half the kernel 2"):
        arith.pool_output_size(8, 2, 2, padding=2)
    with pytest.raises(ValueError, match=r"layer 3 \(c5s1\)"):
        arith.stack_output_sizes(arith.parse_stack("c3,c3,c5"), 8)


# ------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------

def test_cli_conv_prints_the_notes_numbers(capsys):
    assert main(["arith", "conv", "--input", "28x28x192", "--out-channels", "32", "--kernel", "5",
                 "--bottleneck", "16"]) == 0
    out = capsys.readouterr().out
    assert "28×28×32" in out
    assert f"{28 * 28 * 32 * 5 * 5 * 192:,}" in out                                   # 120,422,400
    assert f"{28 * 28 * 16 * 192 + 28 * 28 * 32 * 5 * 5 * 16:,}" in out               # 12,443,648
    assert f"{5 * 5 * 192 * 32 + 32:,}" in out                                         # parameters


def test_cli_rf_and_errors(capsys):
    assert main(["arith", "rf", "c3d1,c3d2,c3d4", "--input-size", "32"]) == 0
    out = capsys.readouterr().out
    assert "15×15" in out
    assert main(["arith", "rf", "c3,z9"]) == 2
    assert "bad layer token 'z9' at position 2" in capsys.readouterr().err
    assert main(["arith", "conv", "--input", "28x28", "--out-channels", "8", "--kernel", "3"]) == 2
    assert "HxWxC" in capsys.readouterr().err
    assert main(["arith", "conv", "--input", "8x8x6", "--out-channels", "8", "--kernel", "3", "--groups", "4"]) == 2
    assert "groups=4 does not divide in_channels=6" in capsys.readouterr().err
