"""The encoder-decoder family (U-Net, SegNet, DeconvNet) and its upsampling switch: parameter
counts derived from the papers, U-Net's geometry, any input size, max unpooling at the switches,
each upsampling kind against PyTorch's own operators."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import convatlas
from convatlas.layers import UPSAMPLE_KINDS, Upsample2x, make_upsample
from convatlas.registry import InputTooSmallError, build_meta, min_input_size
from convatlas.segmentation.segnet import SegNet
from convatlas.segmentation.unet import UNet

# ---------------------------------------------------------------------------------------------
# Parameter counts, from the papers' figures and tables


def conv(c_in: int, c_out: int, k: int) -> int:
    """A k x k convolution (or transposed convolution) with bias: ``c_in c_out k^2 + c_out``."""
    return c_in * c_out * k * k + c_out


def bn(c: int) -> int:
    """Batch norm's scale and shift (running statistics are buffers, not parameters)."""
    return 2 * c


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_unet_parameters_from_fig1():
    """Fig. 1: two valid 3x3 convolutions (+ReLU) per level, 1 -> 64 -> 128 -> 256 -> 512 -> 1024;
    four 2x2 up-convolutions halving the channels, each followed by two 3x3 convolutions on the
    concatenation (2w -> w, w -> w); a final 1x1 convolution to 2 classes. No batch norm."""
    widths = [64, 128, 256, 512, 1024]
    contracting = sum(conv(c, w, 3) + conv(w, w, 3) for c, w in zip([1, *widths[:-1]], widths))
    up_convs = sum(conv(below, w, 2) for w, below in pairwise(widths))
    expansive = sum(conv(2 * w, w, 3) + conv(w, w, 3) for w in widths[:-1])
    final = conv(64, 2, 1)
    assert contracting == 18_842_048 and up_convs == 2_786_240 and expansive == 9_402_240 and final == 130
    total = contracting + up_convs + expansive + final
    assert total == 31_030_658  # "31.0 M"
    assert _params(build_meta("unet")) == total == convatlas.model_card("unet").params.value
    # the padded variant only pads: same weights
    assert _params(build_meta("unet_padded")) == total == convatlas.model_card("unet_padded").params.value


def test_unet_parameters_per_upsample_kind():
    """Every step up halves the channels: the kinds without weights through a 1x1 convolution,
    ``unpool_conv`` through its 3x3 convolution, instead of the 2x2 up-convolution."""
    widths = [64, 128, 256, 512, 1024]
    up_convs = sum(conv(below, w, 2) for w, below in pairwise(widths))
    projections = sum(conv(below, w, 1) for w, below in pairwise(widths))
    resize_convs = sum(conv(below, w, 3) for w, below in pairwise(widths))
    for kind in UPSAMPLE_KINDS:
        swap = {"transposed": up_convs, "unpool_conv": resize_convs}.get(kind, projections)
        assert _params(build_meta("unet", upsample=kind)) == 31_030_658 - up_convs + swap


VGG16_BLOCKS = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]


def _vgg16_convs_with_bn(in_channels: int = 3) -> int:
    total, c = 0, in_channels
    for block in VGG16_BLOCKS:
        for w in block:
            total += conv(c, w, 3) + bn(w)
            c = w
    return total


def test_vgg16_encoder_count():
    """VGG-16's 13 convolutions hold 14,714,688 parameters (the SegNet paper's "14.7 M"); batch
    norm adds 2 x 4,224."""
    assert _vgg16_convs_with_bn() == 14_714_688 + 8_448


def test_segnet_parameters_from_the_paper():
    """Encoder: VGG-16's 13 convolutions, each with batch norm. Decoder (mirrored, each 3x3
    convolution with BN): 512-512-512 | 512-512-256 | 256-256-128 | 128-64 | 64, then the 3x3
    classifier 64 -> 11 (``conv1_1_D``, no BN). "29.5 M"."""
    encoder = _vgg16_convs_with_bn()
    decoder_layers = [(512, 512), (512, 512), (512, 512),
                      (512, 512), (512, 512), (512, 256),
                      (256, 256), (256, 256), (256, 128),
                      (128, 128), (128, 64),
                      (64, 64)]
    decoder = sum(conv(c, w, 3) + bn(w) for c, w in decoder_layers)
    classifier = conv(64, 11, 3)
    assert encoder == 14_723_136 and decoder == 14_719_872 and classifier == 6_347
    total = encoder + decoder + classifier
    assert total == 29_449_355
    assert _params(build_meta("segnet")) == total == convatlas.model_card("segnet").params.value
    # max unpooling, nearest, bed of nails and bilinear add no weights to the decoder
    for kind in ("nearest", "bed_of_nails", "bilinear"):
        assert _params(build_meta("segnet", upsample=kind)) == total
    # a learned 2x2/2 transposed convolution per decoder block, channels kept
    assert _params(build_meta("segnet", upsample="transposed")) == total + sum(
        conv(b[-1], b[-1], 2) for b in VGG16_BLOCKS)


def test_deconvnet_parameters_from_table1():
    """Table 1: VGG-16's convolutions; fc6 7x7 512 -> 4096; fc7 1x1 4096 -> 4096; deconv-fc6 7x7
    4096 -> 512; deconvolution layers (3x3) 512-512-512 | 512-512-256 | 256-256-128 | 128-64 |
    64-64; a 1x1 output to 21 classes. Batch norm after every layer but the output. "252 M"."""
    encoder = _vgg16_convs_with_bn()
    fc = conv(512, 4096, 7) + bn(4096) + conv(4096, 4096, 1) + bn(4096)
    deconv_fc6 = conv(4096, 512, 7) + bn(512)
    deconv_layers = [(512, 512), (512, 512), (512, 512),
                     (512, 512), (512, 512), (512, 256),
                     (256, 256), (256, 256), (256, 128),
                     (128, 128), (128, 64),
                     (64, 64), (64, 64)]
    deconvs = sum(conv(c, w, 3) + bn(w) for c, w in deconv_layers)
    output = conv(64, 21, 1)
    assert fc == 119_545_856 + 16_384 and deconv_fc6 == 102_761_984
    total = encoder + fc + deconv_fc6 + deconvs + output
    assert total == 251_805_653
    assert _params(build_meta("deconvnet")) == total == convatlas.model_card("deconvnet").params.value


# ---------------------------------------------------------------------------------------------
# Geometry


def _output_sides(model: nn.Module, modules: list[nn.Module], x: torch.Tensor) -> list[int]:
    sides: list[int] = []
    handles = [m.register_forward_hook(lambda m, a, out: sides.append(
        (out[0] if isinstance(out, tuple) else out).shape[-1])) for m in modules]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return sides


def test_unet_572_gives_388_with_fig1_sizes():
    model = build_meta("unet")
    x = torch.empty(1, 1, 572, 572, device="meta")
    assert _output_sides(model, list(model.contracting), x) == [568, 280, 136, 64, 28]
    assert _output_sides(model, list(model.pool), x) == [284, 140, 68, 32]
    assert _output_sides(model, list(model.up)[::-1], x) == [56, 104, 200, 392]
    assert _output_sides(model, list(model.expansive)[::-1], x) == [52, 100, 196, 388]
    assert tuple(model(x).shape) == (1, 2, 388, 388)


@pytest.mark.parametrize("kind", UPSAMPLE_KINDS)
def test_unet_valid_geometry_for_every_upsample_kind(kind):
    model = build_meta("unet", upsample=kind)
    assert tuple(model(torch.empty(1, 1, 572, 572, device="meta")).shape) == (1, 2, 388, 388)


@pytest.mark.parametrize("h,w", [(37, 53), (100, 100), (16, 16), (572, 572), (101, 250), (360, 480)])
def test_unet_padded_any_size_returns_the_input_size(h, w):
    model = build_meta("unet_padded")
    assert tuple(model(torch.empty(1, 1, h, w, device="meta")).shape) == (1, 2, h, w)


@pytest.mark.parametrize("kind", UPSAMPLE_KINDS)
def test_padded_unet_real_forward_on_odd_sizes(kind):
    torch.manual_seed(0)
    model = UNet((4, 8, 8, 8, 8), padding=1, num_classes=3, upsample=kind)  # 4 poolings, as Fig. 1
    for h, w in ((37, 53), (100, 100), (17, 31)):
        assert model(torch.randn(2, 1, h, w)).shape == (2, 3, h, w)


def test_unet_smallest_inputs():
    """Four poolings need 16 pixels; the mini's three need 8 - below that a readable error."""
    assert min_input_size("unet_padded") == 16
    assert min_input_size("unet_mini") == 8
    model = convatlas.create_model("unet_mini")
    with pytest.raises(InputTooSmallError, match="unet_mini needs input images of at least 8x8"):
        model(torch.randn(1, 1, 7, 7))


def test_segnet_camvid_odd_sizes_come_back():
    """360x480 pools to 180, 90, 45, 22 (floor) and 11 rows; the unpoolings take them back to
    22, 45, 90, 180, 360."""
    model = build_meta("segnet")
    x = torch.empty(1, 3, 360, 480, device="meta")
    pooled = []
    handles = [p.register_forward_hook(lambda m, a, out: pooled.append(tuple(out[0].shape[-2:]))) for p in model.pool]
    ups = _output_sides(model, list(model.upsample)[::-1], x)  # widths: 30, 60, 120, 240, 480
    for h in handles:
        h.remove()
    assert pooled == [(180, 240), (90, 120), (45, 60), (22, 30), (11, 15)]
    assert ups == [30, 60, 120, 240, 480]
    assert tuple(model(x).shape) == (1, 11, 360, 480)


def test_deconvnet_fc6_is_1x1_and_deconv_fc6_takes_it_back_to_7x7():
    model = build_meta("deconvnet")
    x = torch.empty(1, 3, 224, 224, device="meta")
    assert _output_sides(model, [model.pool[4], model.fc6, model.fc7, model.deconv_fc6], x) == [7, 1, 1, 7]
    assert _output_sides(model, list(model.unpool)[::-1], x) == [14, 28, 56, 112, 224]
    assert tuple(model(x).shape) == (1, 21, 224, 224)
    assert min_input_size("deconvnet") == 224  # fc6 needs pool5's full 7x7


# ---------------------------------------------------------------------------------------------
# Max unpooling puts the values back at the switches


def test_segnet_decoder_unpools_at_the_encoder_switches():
    """Record the deepest pooling's indices and the first unpooling's input and output in
    segnet_mini: the output is PyTorch's max_unpool2d of that input at those indices."""
    torch.manual_seed(0)
    model = convatlas.create_model("segnet_mini").eval()
    seen = {}
    model.pool[-1].register_forward_hook(lambda m, a, out: seen.update(pool_in=a[0], indices=out[1]))
    model.upsample[-1].register_forward_hook(lambda m, a, out: seen.update(up_in=a[0], up_out=out))
    with torch.no_grad():
        model(torch.rand(2, 1, 67, 75))  # 8x9 at the deepest pooling's input
    expected = F.max_unpool2d(seen["up_in"], seen["indices"], 2, 2, output_size=seen["pool_in"].shape[-2:])
    torch.testing.assert_close(seen["up_out"], expected, rtol=0, atol=0)
    assert seen["up_out"].shape[-2:] == seen["pool_in"].shape[-2:] == (8, 9)
    # exactly one position of each 2x2 window may be non-zero, and it is the switch's
    hit = torch.zeros_like(seen["up_out"], dtype=torch.bool).flatten(2)
    hit.scatter_(2, seen["indices"].flatten(2), True)
    assert not (seen["up_out"].flatten(2)[~hit]).any()


@pytest.mark.parametrize("h,w", [(8, 8), (9, 13), (45, 30)])
def test_max_unpool_kind_equals_pytorch(h, w):
    x = torch.randn(2, 5, h, w, dtype=torch.float64)
    pooled, switches = nn.MaxPool2d(2, 2, return_indices=True)(x)
    ours = Upsample2x("max_unpool", 5)(pooled, switches, output_size=x.shape)
    torch.testing.assert_close(ours, F.max_unpool2d(pooled, switches, 2, 2, output_size=(h, w)), rtol=0, atol=0)
    mask = ours != 0
    torch.testing.assert_close(ours[mask], x[mask], rtol=0, atol=0)  # each maximum back where it was


# ---------------------------------------------------------------------------------------------
# The upsampling kinds against PyTorch


def test_each_kind_against_pytorch():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    nearest = F.interpolate(x, scale_factor=2, mode="nearest")
    layer = lambda kind, out=None: make_upsample(kind, 3, out).double()
    torch.testing.assert_close(layer("nearest")(x), nearest, rtol=0, atol=0)
    torch.testing.assert_close(layer("bilinear")(x), F.interpolate(x, scale_factor=2, mode="bilinear",
                                                                    align_corners=False))
    nails = layer("bed_of_nails")(x)
    torch.testing.assert_close(nails[..., ::2, ::2], x, rtol=0, atol=0)
    assert torch.count_nonzero(nails) == torch.count_nonzero(x)
    up = layer("transposed", 4)
    torch.testing.assert_close(up(x), F.conv_transpose2d(x, up.deconv.weight, up.deconv.bias, stride=2))
    assert up.deconv.kernel_size == (2, 2) and up(x).shape == (2, 4, 10, 14)
    resize = layer("unpool_conv", 4)
    torch.testing.assert_close(resize(x), F.conv2d(nearest, resize.conv.weight, resize.conv.bias, padding=1))
    projected = layer("bilinear", 4)  # no weights of its own: a 1x1 convolution first
    expected = F.interpolate(F.conv2d(x, projected.project.weight, projected.project.bias), scale_factor=2,
                             mode="bilinear", align_corners=False)
    torch.testing.assert_close(projected(x), expected)


def test_odd_output_sizes():
    x = torch.rand(1, 2, 4, 5) + 1
    for kind in UPSAMPLE_KINDS:
        layer = Upsample2x(kind, 2)
        switches = F.max_pool2d(torch.rand(1, 2, 9, 11), 2, return_indices=True)[1]
        y = layer(x, switches, output_size=(9, 11))
        assert y.shape == (1, 2, 9, 11), kind
    nails = Upsample2x("bed_of_nails", 2)(x, output_size=(9, 11))
    assert not nails[..., 8, :].any() and not nails[..., :, 10].any()  # the added row and column: zeros
    near = Upsample2x("nearest", 2)(x, output_size=(9, 11))
    torch.testing.assert_close(near[..., 8, :], near[..., 7, :])  # the last row repeated
    with pytest.raises(ValueError, match=r"takes 4x5 to 8x10 \(or one more row"):
        Upsample2x("nearest", 2)(x, output_size=(12, 10))


def test_transposed_2x2_overlaps_evenly_3x3_does_not():
    """Why 2x2 with stride 2: on a constant map with all-one kernels, every output pixel of the
    2x2/2 transposed convolution gets exactly one input; a 3x3/2 kernel gives 1, 2 and 4 inputs
    in a checkerboard (Odena, Dumoulin, Olah, Distill 2016)."""
    ones = torch.ones(1, 1, 6, 6)
    even = F.conv_transpose2d(ones, torch.ones(1, 1, 2, 2), stride=2)
    assert torch.equal(even, torch.ones(1, 1, 12, 12))
    uneven = F.conv_transpose2d(ones, torch.ones(1, 1, 3, 3), stride=2, padding=1, output_padding=1)
    assert set(uneven[0, 0, 1:-1, 1:-1].unique().tolist()) == {1.0, 2.0, 4.0}  # away from the border
    # even rows get one input row, odd rows two: (even, even) 1, mixed 2, (odd, odd) 4
    assert uneven[0, 0, 2, 2] == 1 and uneven[0, 0, 1, 2] == 2 and uneven[0, 0, 1, 1] == 4


def test_bad_upsample_kind_names_the_choices():
    allowed = "nearest, bed_of_nails, max_unpool, transposed, unpool_conv, bilinear"
    for name in ("unet", "segnet_mini", "deconvnet_mini"):
        with pytest.raises(ValueError, match=f"upsample must be one of {allowed}, got 'pixel_shuffle'"):
            convatlas.create_model(name, upsample="pixel_shuffle")
    with pytest.raises(ValueError, match="upsample must be one of"):
        make_upsample("Nearest", 8)


def test_max_unpool_without_switches_says_what_it_needs():
    with pytest.raises(ValueError, match=r"needs the switches .* return_indices=True"):
        Upsample2x("max_unpool", 3)(torch.rand(1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"takes \(N, 3, H, W\)"):
        Upsample2x("nearest", 3)(torch.rand(1, 4, 4, 4))


def test_segnet_default_upsample_has_no_weights_and_keeps_channels():
    model = SegNet([[8, 8], [16, 16]], in_channels=1, num_classes=4)
    assert all(u.kind == "max_unpool" and not list(u.parameters()) for u in model.upsample)
    assert [u.out_channels for u in model.upsample] == [8, 16]


# ---------------------------------------------------------------------------------------------
# The minis' counts, by hand


def test_unet_mini_parameters():
    """16-32-64-128, padded; batch norm after every 3x3 convolution, which then has no bias."""
    def double_conv(c: int, w: int) -> int:
        return 9 * c * w + bn(w) + 9 * w * w + bn(w)

    widths = [16, 32, 64, 128]
    contracting = sum(double_conv(c, w) for c, w in zip([1, *widths[:-1]], widths))
    up_convs = sum(conv(below, w, 2) for w, below in pairwise(widths))
    expansive = sum(double_conv(2 * w, w) for w in widths[:-1])
    total = contracting + up_convs + expansive + conv(16, 11, 1)
    assert (contracting, up_convs, expansive) == (293_712, 43_120, 145_600)
    assert total == 482_619 == convatlas.model_card("unet_mini").params.value == _params(build_meta("unet_mini"))


def _vgg_like(blocks: list[list[int]], c: int) -> int:
    total = 0
    for block in blocks:
        for w in block:
            total += conv(c, w, 3) + bn(w)
            c = w
    return total


def test_segnet_mini_parameters():
    """Encoder 16,16 | 32,32 | 64,64 | 128,128 (conv + BN); mirrored decoder 128-64 | 64-32 | 32-16 | 16;
    3x3 classifier 16 -> 11."""
    encoder = _vgg_like([[16, 16], [32, 32], [64, 64], [128, 128]], 1)
    decoder = sum(conv(c, w, 3) + bn(w) for c, w in [(128, 128), (128, 64), (64, 64), (64, 32),
                                                     (32, 32), (32, 16), (16, 16)])
    total = encoder + decoder + conv(16, 11, 3)
    assert total == 589_451 == convatlas.model_card("segnet_mini").params.value == _params(build_meta("segnet_mini"))


def test_deconvnet_mini_parameters():
    """Convolution network 16,16 | 32,32 | 64,64 | 64,64; fc6 4x4 64 -> 128, fc7 1x1, deconv-fc6 4x4
    128 -> 64 (each + BN); deconvolution layers 64-64 | 64-32 | 32-16 | 16-16 (+ BN); 1x1 output."""
    encoder = _vgg_like([[16, 16], [32, 32], [64, 64], [64, 64]], 1)
    fc = conv(64, 128, 4) + bn(128) + conv(128, 128, 1) + bn(128) + conv(128, 64, 4) + bn(64)
    deconvs = sum(conv(c, w, 3) + bn(w) for c, w in [(64, 64), (64, 64), (64, 64), (64, 32),
                                                     (32, 32), (32, 16), (16, 16), (16, 16)])
    total = encoder + fc + deconvs + conv(16, 11, 1)
    assert total == 574_395 == convatlas.model_card("deconvnet_mini").params.value
    assert _params(build_meta("deconvnet_mini")) == total
