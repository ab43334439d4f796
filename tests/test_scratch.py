"""convatlas.scratch: every from-scratch NumPy operation equals its PyTorch counterpart in
float64, for random valid hyperparameters, and refuses invalid ones as PyTorch does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from convatlas import scratch

SETTINGS = settings(max_examples=60, deadline=None)
TOL = dict(rtol=1e-10, atol=1e-10)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


def _close(ours: np.ndarray, theirs: torch.Tensor) -> None:
    np.testing.assert_allclose(ours, theirs.detach().numpy(), **TOL)


@st.composite
def conv_case(draw):
    groups = draw(st.integers(1, 3))
    cin, cout = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(draw(st.integers(1, 2)), cin, h, w))
    weight = rng.normal(size=(cout, cin // groups, kh, kw))
    bias = rng.normal(size=cout) if draw(st.booleans()) else None
    return x, weight, bias, stride, padding, dilation, groups


def _torch_conv(x, weight, bias, stride, padding, dilation, groups):
    return F.conv2d(_t(x), _t(weight), None if bias is None else _t(bias), stride, padding, dilation, groups)


@SETTINGS
@given(case=conv_case())
def test_conv2d_and_im2col_gemm_equal_pytorch(case):
    x, weight, bias, stride, padding, dilation, groups = case
    try:
        expected = _torch_conv(*case)
    except RuntimeError:  # kernel larger than the padded input: we must refuse it too
        with pytest.raises(ValueError, match="larger than the padded input"):
            scratch.conv2d(*case)
        with pytest.raises(ValueError, match="larger than the padded input"):
            scratch.conv2d_im2col(*case)
        return
    _close(scratch.conv2d(*case), expected)
    _close(scratch.conv2d_im2col(*case), expected)


@SETTINGS
@given(case=conv_case())
def test_im2col_equals_unfold(case):
    x, weight, _, stride, padding, dilation, _ = case
    kernel = weight.shape[2:]
    try:
        expected = F.unfold(_t(x), kernel, dilation, padding, stride)
    except RuntimeError:
        with pytest.raises(ValueError):
            scratch.im2col(x, kernel, stride, padding, dilation)
        return
    _close(scratch.im2col(x, kernel, stride, padding, dilation), expected)


def test_corr2d_d2l_example():
    """Dive into Deep Learning, "Convolutions for Images": X = 0…8 (3×3), K = 0…3 (2×2) gives [[19, 25], [37, 43]]."""
    y = scratch.corr2d(np.arange(9.0).reshape(3, 3), np.arange(4.0).reshape(2, 2))
    np.testing.assert_array_equal(y, [[19.0, 25.0], [37.0, 43.0]])


@settings(max_examples=40, deadline=None)
@given(cin=st.integers(1, 4), cout=st.integers(1, 4), h=st.integers(2, 8), w=st.integers(2, 8),
       k=st.integers(1, 2), seed=st.integers(0, 2**16))
def test_multi_channel_correlation_and_1x1_matmul_equal_pytorch(cin, cout, h, w, k, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(cin, h, w))
    kernel = rng.normal(size=(cout, cin, k, k))
    expected = F.conv2d(_t(x)[None], _t(kernel))[0]
    _close(scratch.corr2d_multi_in_out(x, kernel), expected)
    _close(scratch.corr2d_multi_in(x, kernel[0]), expected[0])
    _close(scratch.corr2d(x[0], kernel[0, 0]), F.conv2d(_t(x[:1])[None], _t(kernel[:1, :1]))[0, 0])
    ones = rng.normal(size=(cout, cin, 1, 1))
    _close(scratch.conv1x1_as_matmul(x, ones), F.conv2d(_t(x)[None], _t(ones))[0])


@st.composite
def pool_case(draw, dilated: bool = True):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if dilated else (1, 1)
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    x = np.random.default_rng(draw(st.integers(0, 2**16))).normal(size=shape)
    return x, (kh, kw), stride, padding, dilation, draw(st.booleans())


@SETTINGS
@given(case=pool_case())
def test_max_pool2d_and_switches_equal_pytorch(case):
    x, kernel, stride, padding, dilation, ceil = case
    try:
        y, idx = F.max_pool2d(_t(x), kernel, stride, padding, dilation, ceil, return_indices=True)
    except RuntimeError:
        with pytest.raises(ValueError):
            scratch.max_pool2d(x, kernel, stride, padding, dilation, ceil)
        return
    ours, switches = scratch.max_pool2d(x, kernel, stride, padding, dilation, ceil, return_indices=True)
    _close(ours, y)
    np.testing.assert_array_equal(switches, idx.numpy())


@SETTINGS
@given(case=pool_case(dilated=False), include_pad=st.booleans())
def test_avg_pool2d_equals_pytorch(case, include_pad):
    x, kernel, stride, padding, _, ceil = case
    try:
        expected = F.avg_pool2d(_t(x), kernel, stride, padding, ceil, include_pad)
    except RuntimeError:
        with pytest.raises(ValueError):
            scratch.avg_pool2d(x, kernel, stride, padding, ceil, include_pad)
        return
    _close(scratch.avg_pool2d(x, kernel, stride, padding, ceil, include_pad), expected)


@settings(max_examples=30, deadline=None)
@given(h=st.integers(2, 8), w=st.integers(2, 8), ph=st.integers(1, 3), pw=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_notes_pool2d_equals_pytorch(h, w, ph, pw, seed):
    assume(ph <= h and pw <= w)
    x = np.random.default_rng(seed).normal(size=(h, w))
    _close(scratch.pool2d(x, (ph, pw), "max"), F.max_pool2d(_t(x)[None, None], (ph, pw), 1)[0, 0])
    _close(scratch.pool2d(x, (ph, pw), "avg"), F.avg_pool2d(_t(x)[None, None], (ph, pw), 1)[0, 0])


@SETTINGS
@given(case=pool_case(dilated=False))
def test_max_unpool2d_equals_pytorch(case):
    x, kernel, stride, padding, _, _ = case
    try:
        y, idx = F.max_pool2d(_t(x), kernel, stride, padding, return_indices=True)
    except RuntimeError:
        return  # no pooling, nothing to unpool (pooling's refusal is tested above)
    size = x.shape[2:]
    expected = F.max_unpool2d(y, idx, kernel, stride, padding, output_size=size)
    _close(scratch.max_unpool2d(y.numpy(), idx.numpy(), kernel, stride, padding, output_size=size), expected)
    default_size = [(n - 1) * s - 2 * p + k for n, s, p, k in zip(y.shape[2:], stride, padding, kernel)]
    if all(i < default_size[0] * default_size[1] for i in idx.flatten().tolist()):
        _close(scratch.max_unpool2d(y.numpy(), idx.numpy(), kernel, stride, padding),
               F.max_unpool2d(y, idx, kernel, stride, padding))


@st.composite
def transposed_case(draw):
    groups = draw(st.integers(1, 3))
    cin, cout = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.normal(size=(draw(st.integers(1, 2)), cin, draw(st.integers(1, 5)), draw(st.integers(1, 5))))
    weight = rng.normal(size=(cin, cout // groups, kh, kw))
    bias = rng.normal(size=cout) if draw(st.booleans()) else None
    return x, weight, bias, stride, padding, output_padding, dilation, groups


@SETTINGS
@given(case=transposed_case())
def test_conv_transpose2d_equals_pytorch(case):
    x, weight, bias, stride, padding, output_padding, dilation, groups = case
    try:
        expected = F.conv_transpose2d(_t(x), _t(weight), None if bias is None else _t(bias),
                                      stride, padding, output_padding, groups, dilation)
    except RuntimeError:
        expected = None
    if expected is None or 0 in expected.shape[2:]:  # padding cut away every output pixel
        with pytest.raises(ValueError, match="output would be"):
            scratch.conv_transpose2d(*case)
        return
    _close(scratch.conv_transpose2d(*case), expected)


@settings(max_examples=40, deadline=None)
@given(case=conv_case())
def test_transposed_convolution_is_the_adjoint_of_convolution(case):
    """<conv(x), y> = <x, conv_transpose(y)> with the same weight: the transpose is the gradient."""
    x, weight, _, stride, padding, dilation, groups = case
    try:
        y_shape = scratch.conv2d(x, weight, None, stride, padding, dilation, groups).shape
    except ValueError:
        assume(False)
    y = np.random.default_rng(1).normal(size=y_shape)
    # the transposed output must have x's size: pick output_padding to recover the rows stride dropped
    out_pad = tuple(
        (n + 2 * p - d * (k - 1) - 1) % s for n, p, d, k, s in zip(x.shape[2:], padding, dilation, weight.shape[2:], stride)
    )
    assume(all(op < max(s, d) for op, s, d in zip(out_pad, stride, dilation)))
    back = scratch.conv_transpose2d(y, weight, None, stride, padding, out_pad, dilation, groups)
    assert back.shape == x.shape
    lhs = float((scratch.conv2d(x, weight, None, stride, padding, dilation, groups) * y).sum())
    assert lhs == pytest.approx(float((x * back).sum()), rel=1e-9, abs=1e-9)


def test_invalid_hyperparameters_raise_value_errors():
    x = np.zeros((1, 4, 5, 5))
    with pytest.raises(ValueError, match="larger than the padded input"):
        scratch.conv2d(x, np.zeros((2, 4, 7, 7)))
    with pytest.raises(ValueError, match="stride must be a positive integer"):
        scratch.conv2d(x, np.zeros((2, 4, 3, 3)), stride=0)
    with pytest.raises(ValueError, match="groups=3 does not divide in_channels=4"):
        scratch.conv2d(x, np.zeros((3, 1, 3, 3)), groups=3)
    with pytest.raises(ValueError, match="input channels, but the input has 4"):
        scratch.conv2d(x, np.zeros((2, 3, 3, 3)))
    with pytest.raises(ValueError, match="more than half the kernel"):
        scratch.max_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match="output_padding=2 must be smaller"):
        scratch.conv_transpose2d(x, np.zeros((4, 1, 3, 3)), stride=2, output_padding=2)
    with pytest.raises(ValueError, match="switch indices"):
        scratch.max_unpool2d(np.ones((1, 1, 1, 1)), np.array([[[[9]]]]), 2)
