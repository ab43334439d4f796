"""FCN, DeepLab and the naive baselines: exact parameter counts (derived here from the papers'
layer tables), output geometry for any input size, FCN's crops, bilinear upsampling, torchvision's
fcn_resnet50, FCN on zoo backbones, atrous rates and output stride, and the sliding window
against its classifier. The big networks only run on the meta device."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import convatlas
from convatlas.analysis import summary
from convatlas.analysis.zoo import meta_build
from convatlas.layers import TransposedConv2d
from convatlas.models.vgg import CONFIGS
from convatlas.registry import build_meta
from convatlas.segmentation._heads import BilinearUpsample, coord_map, fit_to_size
from convatlas.segmentation.baselines import SlidingWindow
from convatlas.segmentation.deeplab import vgg16_to_deeplab
from convatlas.segmentation.fcn import FCN, torchvision_fcn_keys, vgg16_to_fcn
from convatlas.weights import load_torchvision_weights


@functools.lru_cache(maxsize=None)
def _meta(name: str, **kwargs) -> nn.Module:
    return build_meta(name, **kwargs)


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _conv(cin: int, cout: int, k: int, bias: bool = True) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def _vgg16_convs() -> int:
    """The 13 3x3 convolutions of VGG-16 (configuration D of Table 1), with biases."""
    total, cin = 0, 3
    for entry in CONFIGS["D"]:
        if entry != "M":
            total, cin = total + _conv(cin, entry, 3), entry
    return total


def _shape_on_meta(model: nn.Module, *shape: int) -> tuple[int, ...]:
    with torch.no_grad():
        return tuple(model(torch.empty(*shape, device="meta")).shape)


def _output_of(model: nn.Module, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    seen = []
    handle = module.register_forward_hook(lambda m, a, out: seen.append(out))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return seen[-1]


# ---------------------------------------------------------------------------------------------
# FCN on VGG-16: parameters, crops, any input size


def test_vgg16_conv_count_is_torchvision_minus_its_classifier():
    # torchvision vgg16: 138,357,544 = convs + FC 25088->4096, 4096->4096, 4096->1000
    assert _vgg16_convs() == 138_357_544 - (25088 * 4096 + 4096) - (4096 * 4096 + 4096) - (4096 * 1000 + 1000)
    assert _vgg16_convs() == 14_714_688


@pytest.mark.parametrize("name,learned", [("fcn32s", True), ("fcn16s", True), ("fcn8s", True),
                                          ("fcn16s", False), ("fcn8s", False)])
def test_fcn_exact_parameter_counts(name, learned):
    """VGG-16 convs + fc6 (7x7, 512->4096) + fc7 (1x1, 4096) + score_fr (1x1, 21) is FCN-32s's
    134,346,581 (Table 1: "134M"); the skips add 1x1 score layers on pool4 (512) and pool3 (256)
    and, when learned, a 21x21x4x4 transposed convolution each (no bias). The final bilinear
    upsamplings are fixed and hold no parameters."""
    k = 21
    expected = _vgg16_convs() + _conv(512, 4096, 7) + _conv(4096, 4096, 1) + _conv(4096, k, 1)
    assert expected == 134_346_581 and round(expected / 1e6) == 134
    if name in ("fcn16s", "fcn8s"):
        expected += _conv(512, k, 1) + (k * k * 4 * 4 if learned else 0)
    if name == "fcn8s":
        expected += _conv(256, k, 1) + (k * k * 4 * 4 if learned else 0)
    kwargs = {} if name == "fcn32s" else {"learned_upsampling": learned}
    assert _params(_meta(name, **kwargs)) == expected
    if learned:
        assert convatlas.model_card(name).params.value == expected
        assert expected == {"fcn8s": 134_376_863, "fcn16s": 134_364_410, "fcn32s": 134_346_581}[name]


def test_fcn_crop_offsets_are_the_reference_nets():
    """Offsets of the Caffe Crop layers in voc-fcn32s/16s/8s, derived from the layers' geometry."""
    assert _meta("fcn32s").offsets == {"score": 19}
    assert _meta("fcn16s").offsets == {"score_pool4c": 5, "score": 27}
    assert _meta("fcn8s").offsets == {"score_pool4c": 5, "score_pool3c": 9, "score": 31}
    assert _meta("fcn8s", learned_upsampling=False).offsets == _meta("fcn8s").offsets


def test_fcn_coordinate_maps_by_hand():
    """conv1_1 (pad 100) shifts by -99, each 2x2/2 pool maps v -> 2v + 1/2, so pool5 sits at
    32 v - 83.5; fc6 (7x7, no pad) adds 3 pixels: score_fr at 32 v + 12.5; the 64/32 transposed
    convolution maps v -> (v - 31.5)/32, so upscore sits at v - 19."""
    model = _meta("fcn32s")
    pool5 = coord_map(model.features)
    assert (pool5.scale, pool5.shift) == (32, -83.5)
    score = coord_map([*model.features, model.fc6, model.fc7, model.score_fr])
    assert (score.scale, score.shift) == (32, 12.5)
    upscore = score.then(coord_map([model.upscore]))
    assert (upscore.scale, upscore.shift) == (1, -19)


@pytest.mark.parametrize("name", ["fcn32s", "fcn16s", "fcn8s"])
@pytest.mark.parametrize("size", [(64, 64), (100, 100), (127, 200), (500, 500), (1, 1), (33, 7), (333, 101)])
def test_fcn_output_is_the_input_size(name, size):
    assert _shape_on_meta(_meta(name), 2, 3, *size) == (2, 21, *size)


def test_fcn_any_size_sweep_and_caffe_pooling():
    """Every side from 1 to 96: output == input (the pools round up, as Caffe's do)."""
    model = _meta("fcn8s")
    assert all(p.ceil_mode for p in model.features if isinstance(p, nn.MaxPool2d))
    assert model.features[0].padding == (100, 100)
    for side in range(1, 97, 5):
        assert _shape_on_meta(model, 1, 3, side, side + 3)[2:] == (side, side + 3)


def test_fcn_layers_and_what_is_learned():
    model = _meta("fcn8s")
    assert isinstance(model.fc6, nn.Conv2d) and model.fc6.kernel_size == (7, 7) and model.fc6.out_channels == 4096
    assert model.fc7.kernel_size == (1, 1) and model.fc7.out_channels == 4096
    assert model.drop6.p == model.drop7.p == 0.5
    for learned in (model.upscore2, model.upscore_pool4):
        assert isinstance(learned, nn.ConvTranspose2d) and learned.bias is None
        assert learned.kernel_size == (4, 4) and learned.stride == (2, 2) and learned.padding == (0, 0)
        assert all(p.requires_grad for p in learned.parameters())
    assert isinstance(model.upscore8, BilinearUpsample) and _params(model.upscore8) == 0
    assert (model.upscore8.kernel_size, model.upscore8.factor, model.upscore8.padding) == (16, 8, 0)
    assert (_meta("fcn16s").upscore16.kernel_size, _meta("fcn16s").upscore16.factor) == (32, 16)
    assert (_meta("fcn32s").upscore.kernel_size, _meta("fcn32s").upscore.factor) == (64, 32)
    fixed = _meta("fcn8s", learned_upsampling=False)
    assert isinstance(fixed.upscore2, BilinearUpsample) and _params(fixed.upscore2) == 0
    assert [i.stage for i in model.feature_info] == ["pool3", "pool4", "pool5", "fc7"]


def test_torchvision_vgg16_weights_map_onto_fcn():
    """features.* load by name; classifier.0/.3 become fc6/fc7 (convolutionalization)."""
    with meta_build():
        vgg = torchvision.models.vgg16()
    mapped = vgg16_to_fcn(vgg.state_dict())
    own = _meta("fcn8s").state_dict()
    assert set(mapped) <= set(own)
    assert all(own[k].shape == v.shape for k, v in mapped.items())
    assert sorted({k.split(".")[0] for k in set(own) - set(mapped)}) == [
        "score_fr", "score_pool3", "score_pool4", "upscore2", "upscore_pool4"]


def test_convolutionalized_fc6_equals_the_linear_layer(seed):
    linear = nn.Linear(512 * 7 * 7, 8)
    state = {"classifier.0.weight": linear.weight.detach(), "classifier.0.bias": linear.bias.detach()}
    conv_state = vgg16_to_fcn(state)
    x = torch.randn(2, 512, 7, 7)
    conv = F.conv2d(x, conv_state["fc6.weight"], conv_state["fc6.bias"])
    torch.testing.assert_close(conv.flatten(1), linear(x.flatten(1)))


# ---------------------------------------------------------------------------------------------
# Bilinear upsampling


def _caffe_bilinear(size: int) -> np.ndarray:
    """Independent formula: fcn.berkeleyvision.org surgery.upsample_filt."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    og = np.ogrid[:size, :size]
    return (1 - abs(og[0] - center) / factor) * (1 - abs(og[1] - center) / factor)


@pytest.mark.parametrize("factor", [2, 8, 16, 32])
def test_fixed_upsampling_kernel_is_bilinear(factor):
    up = BilinearUpsample(3, factor)
    np.testing.assert_allclose(up.kernel.numpy(), _caffe_bilinear(2 * factor), rtol=0, atol=1e-7)
    assert not list(up.parameters())


def test_learned_upsampling_starts_bilinear_on_the_diagonal(seed):
    model = convatlas.create_model("fcn8s_mini")
    weight = model.upscore_32.weight.detach()
    kernel = torch.from_numpy(_caffe_bilinear(4)).float()
    for i in range(11):
        for j in range(11):
            torch.testing.assert_close(weight[i, j], kernel if i == j else torch.zeros(4, 4))
    assert model.upscore_32.stride == (2, 2) and model.upscore_32.padding == (1, 1)


def _ramp(h: int, w: int) -> torch.Tensor:
    rows = torch.arange(h, dtype=torch.float64).view(h, 1)
    cols = torch.arange(w, dtype=torch.float64).view(1, w)
    return torch.stack([3 * rows - 2 * cols + 1, torch.full((h, w), 5.0, dtype=torch.float64)])[None]


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_bilinear_transposed_conv_is_interpolation_in_the_interior(factor):
    """A ramp and a constant, upsampled by a bilinear-initialised transposed convolution
    (kernel 2s, stride s, padding s/2), equal F.interpolate(align_corners=False) away from the
    border (where the transposed convolution sees zeros and interpolate repeats the edge)."""
    x = _ramp(6, 9)
    expected = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    layers = [BilinearUpsample(2, factor).double()]
    learned = TransposedConv2d(2, 2, 2 * factor, factor, factor // 2, bias=False, init="bilinear").double()
    layers.append(learned)
    for layer in layers:
        with torch.no_grad():
            out = layer(x)
        assert out.shape == expected.shape
        s = factor
        torch.testing.assert_close(out[..., s:-s, s:-s], expected[..., s:-s, s:-s])
        assert torch.allclose(out[0, 1, s:-s, s:-s], torch.tensor(5.0, dtype=torch.float64))
    # the reference nets' padding 0 is the same upsampling shifted by s/2, which their crops undo
    unpadded = BilinearUpsample(2, factor, padding=0).double()(x)
    torch.testing.assert_close(unpadded[..., s // 2: s // 2 + 6 * s, s // 2: s // 2 + 9 * s], layers[0](x))


def test_fit_to_size_crops_and_extends_at_the_bottom_right():
    x = torch.arange(12.0).view(1, 1, 3, 4)
    assert torch.equal(fit_to_size(x, (2, 3)), x[..., :2, :3])
    grown = fit_to_size(x, (4, 5))
    assert grown.shape[-2:] == (4, 5) and torch.equal(grown[..., :3, :4], x)
    assert torch.equal(grown[..., 3, :4], x[..., 2, :]) and torch.equal(grown[..., :3, 4], x[..., :, 3])


# ---------------------------------------------------------------------------------------------
# fcn8s_mini, and FCN on zoo backbones


def test_fcn8s_mini_count_and_real_forward(seed):
    k = 11
    encoder = (_conv(1, 16, 3) + _conv(16, 32, 3) + _conv(32, 64, 3) + _conv(64, 64, 3) + _conv(64, 96, 3)
               + _conv(96, 128, 3) + 2 * (16 + 32 + 64 + 64 + 96 + 128))
    head = _conv(128, 256, 1, bias=False) + 2 * 256 + _conv(256, k, 1) + _conv(96, k, 1) + _conv(64, k, 1) + 2 * k * k * 16
    model = convatlas.create_model("fcn8s_mini")
    assert _params(model) == encoder + head == convatlas.model_card("fcn8s_mini").params.value
    assert 100_000 <= _params(model) <= 500_000
    model.eval()
    for size in [(64, 64), (50, 70), (33, 33), (97, 64)]:
        with torch.no_grad():
            assert model(torch.randn(1, 1, *size)).shape == (1, k, *size)


BACKBONES = {
    "vgg16": ("conv4", "conv5", "pool5"),
    "resnet50": ("layer2", "layer3", "layer4"),
    "mobilenet_v2": ("stage4", "stage6", "stage9"),
}


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_fcn_on_zoo_backbones_gives_the_input_size(backbone):
    model = _meta("fcn_backbone", backbone=backbone)
    assert [i.stage for i in model.backbone.feature_info] == list(BACKBONES[backbone])
    assert [i.reduction for i in model.backbone.feature_info] == [8, 16, 32]
    for size in [(224, 224), (127, 200), (64, 96)]:
        assert _shape_on_meta(model, 1, 3, *size) == (1, 21, *size)
    assert model.backbone.removed  # the classifier is gone: no parameters without gradients
    names = [n for n, _ in model.named_parameters()]
    assert not any(n.startswith(("backbone.model.fc.", "backbone.model.classifier.")) for n in names)


def test_fcn_backbone_variants_and_interpolation():
    for variant, stages in (("32s", ["layer4"]), ("16s", ["layer3", "layer4"])):
        model = _meta("fcn_backbone", backbone="resnet50", variant=variant)
        assert [i.stage for i in model.backbone.feature_info] == stages
        assert _shape_on_meta(model, 1, 3, 100, 130) == (1, 21, 100, 130)
    plain = _meta("fcn_backbone", backbone="resnet50", upsample="bilinear")
    learned = _meta("fcn_backbone", backbone="resnet50")
    assert _params(learned) - _params(plain) == 2 * 21 * 21 * 16
    assert _shape_on_meta(plain, 1, 3, 99, 101) == (1, 21, 99, 101)


def test_fcn_backbone_resnet50_count():
    resnet50_without_fc = 25_557_032 - (2048 * 1000 + 1000)
    scores = _conv(512, 21, 1) + _conv(1024, 21, 1) + _conv(2048, 21, 1)
    assert _params(_meta("fcn_backbone")) == resnet50_without_fc + scores + 2 * 21 * 21 * 16
    assert convatlas.model_card("fcn_backbone").params.value == _params(_meta("fcn_backbone"))


def test_fcn_backbone_real_forward_and_backward_on_a_small_backbone(seed):
    """vgg_mini (one channel; conv4, conv5, pool5 at /8, /16, /32): every parameter left gets a
    gradient, and any size comes back (its pools round down: the upsampled maps are extended)."""
    model = convatlas.create_model("fcn_backbone", backbone="vgg_mini", num_classes=11)
    assert model.backbone.removed == ("classifier",)
    for size in [(64, 64), (45, 70)]:
        out = model(torch.randn(2, 1, *size))
        assert out.shape == (2, 11, *size)
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_bad_backbone_names_the_stages_or_the_choices():
    with pytest.raises(ValueError, match=r"lenet5.*no stage at reduction 32 \(needed: /32, /16, /8\).*C1 \(/1") as info:
        convatlas.create_model("fcn_backbone", backbone="lenet5")
    assert "S4 (/4, 16 ch)" in str(info.value)
    with pytest.raises(ValueError, match=r"resnet20.*layer1 \(/1, 16 ch\), layer2 \(/2"):
        convatlas.create_model("fcn_backbone", backbone="resnet20")
    with pytest.raises(ValueError, match="registered classification network.*choices:.*resnet50.*vgg16"):
        convatlas.create_model("fcn_backbone", backbone="resnet_9000")
    with pytest.raises(ValueError, match="got 'fcn8s'; choices:"):  # a segmentation network is no backbone
        convatlas.create_model("fcn_backbone", backbone="fcn8s")
    with pytest.raises(ValueError, match="variant must be one of 32s, 16s, 8s"):
        convatlas.create_model("fcn_backbone", variant="4s")
    with pytest.raises(ValueError, match="upsample must be one of transposed, bilinear"):
        convatlas.create_model("fcn_backbone", backbone="mobilenet_v2", upsample="nearest")


# ---------------------------------------------------------------------------------------------
# torchvision's fcn_resnet50


def test_fcn_resnet50_equals_torchvision(seed):
    tv = torchvision.models.segmentation.fcn_resnet50(weights=None, weights_backbone=None, num_classes=21,
                                                      aux_loss=False).eval()
    with torch.no_grad():  # batch-norm statistics that are not the identity
        for m in tv.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    ours = convatlas.create_model("fcn_resnet50").eval()
    assert _params(ours) == _params(tv) == 32_957_013 == convatlas.model_card("fcn_resnet50").params.value
    load_torchvision_weights(ours, tv)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = tv(x)["out"]
        out = ours(x)
    assert out.shape == (1, 21, 64, 64)
    torch.testing.assert_close(out, expected)


def test_fcn_resnet_geometry_and_aux_head():
    model = _meta("fcn_resnet50", aux=True)
    layer3, layer4 = model.backbone.model.layer3, model.backbone.model.layer4
    # torchvision's replace_stride_with_dilation: a stage's first block keeps the previous dilation
    assert [b.conv2.dilation[0] for b in layer3] == [1, 2, 2, 2, 2, 2]
    assert [b.conv2.dilation[0] for b in layer4] == [2, 4, 4]
    assert layer3[0].conv2.stride == layer4[0].conv2.stride == layer3[0].downsample[0].stride == (1, 1)
    assert {i.stage: i.reduction for i in model.feature_info} == {
        "conv1": 2, "layer1": 4, "layer2": 8, "layer3": 8, "layer4": 8}
    with meta_build():
        tv = torchvision.models.segmentation.fcn_resnet50(weights=None, weights_backbone=None, num_classes=21,
                                                          aux_loss=True)
    mapped = torchvision_fcn_keys(tv.state_dict())
    own = model.state_dict()
    assert set(mapped) == set(own) and all(own[k].shape == v.shape for k, v in mapped.items())
    model.train()
    with torch.no_grad():
        out, aux = model(torch.empty(2, 3, 65, 90, device="meta"))
    assert out.shape == aux.shape == (2, 21, 65, 90)
    model.eval()
    assert _shape_on_meta(model, 1, 3, 65, 90) == (1, 21, 65, 90)
    assert _params(_meta("fcn_resnet101")) == 51_949_141


# ---------------------------------------------------------------------------------------------
# DeepLab


def test_deeplab_v1_count_and_table2_variants():
    k = 21
    largefov = _vgg16_convs() + _conv(512, 1024, 3) + _conv(1024, 1024, 1) + _conv(1024, k, 1)
    assert _params(_meta("deeplab_v1_largefov")) == largefov == 20_505_429
    assert round(largefov / 1e6, 1) == 20.5  # Table 2
    for kernel, rate, channels, published in ((7, 4, 4096, 134.3), (4, 4, 4096, 65.1), (4, 8, 4096, 65.1)):
        model = _meta("deeplab_v1_largefov", fc6_kernel=kernel, fc6_rate=rate, fc6_channels=channels)
        expected = _vgg16_convs() + _conv(512, channels, kernel) + _conv(channels, channels, 1) + _conv(channels, k, 1)
        assert _params(model) == expected and round(expected / 1e6, 1) == published
        assert _shape_on_meta(model, 1, 3, 321, 321) == (1, 21, 321, 321)


def test_deeplab_v1_atrous_geometry_and_output_stride_8():
    model = _meta("deeplab_v1_largefov")
    pools = [m for m in model.features if isinstance(m, nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride, p.padding) for p in pools] == [(3, 2, 1)] * 3 + [(3, 1, 1)] * 2
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.dilation[0] for c in convs] == [1] * 10 + [2] * 3
    assert [c.padding[0] for c in convs[-3:]] == [2, 2, 2]
    assert (model.fc6.kernel_size, model.fc6.dilation, model.fc6.padding, model.fc6.out_channels) == (
        (3, 3), (12, 12), (12, 12), 1024)
    for side, scores in ((321, 41), (513, 65), (64, 9)):
        x = torch.empty(1, 3, side, side, device="meta")
        assert _output_of(model, model.fc8, x).shape[-2:] == (scores, scores)  # (side - 1) / 8 + 1
        assert _shape_on_meta(model, 1, 3, side, side) == (1, 21, side, side)
    assert _shape_on_meta(model, 2, 3, 100, 77) == (2, 21, 100, 77)


def test_vgg16_weights_decimate_onto_deeplab_v1():
    with meta_build():
        vgg = torchvision.models.vgg16()
    mapped = vgg16_to_deeplab(vgg.state_dict())
    own = _meta("deeplab_v1_largefov").state_dict()
    assert set(own) - set(mapped) == {"fc8.weight", "fc8.bias"}
    assert all(own[k].shape == v.shape for k, v in mapped.items())
    # decimation on a small stand-in (8 filters of 2 x 7 x 7): every 4th filter, taps 0, 3, 6
    weight = torch.arange(8 * 2 * 49, dtype=torch.float32).view(8, 2 * 49)
    fc7 = torch.arange(64, dtype=torch.float32).view(8, 8)
    small = vgg16_to_deeplab({"classifier.0.weight": weight, "classifier.0.bias": torch.arange(8.0),
                              "classifier.3.weight": fc7, "classifier.3.bias": torch.zeros(8)}, fc6_channels=2)
    assert small["fc6.weight"].shape == (2, 2, 3, 3)
    assert small["fc6.weight"][1, 1, 1, 2] == weight.view(8, 2, 7, 7)[4, 1, 3, 6]
    assert small["fc6.bias"].tolist() == [0.0, 4.0]
    assert small["fc7.weight"].flatten().tolist() == [0.0, 4.0, 32.0, 36.0]


def test_deeplab_v2_count_equals_a_counted_construction():
    """torchvision's ResNet-101 without its fc (same layers as the MSRA net's, dilated or not)
    plus four 3x3 atrous convolutions 2048 -> 21 with bias."""
    with meta_build():
        resnet = torchvision.models.resnet101(replace_stride_with_dilation=[False, True, True])
        resnet.fc = nn.Identity()
        aspp = nn.ModuleList(nn.Conv2d(2048, 21, 3, padding=r, dilation=r) for r in (6, 12, 18, 24))
    expected = _params(resnet) + _params(aspp)
    assert expected == 42_500_160 + 4 * _conv(2048, 21, 3)
    assert _params(_meta("deeplab_v2")) == expected == convatlas.model_card("deeplab_v2").params.value


def test_deeplab_v2_atrous_geometry_and_output_stride_8():
    model = _meta("deeplab_v2")
    resnet = model.backbone.model
    assert all(b.conv2.dilation == (2, 2) and b.conv2.padding == (2, 2) for b in resnet.layer3)  # every block
    assert all(b.conv2.dilation == (4, 4) for b in resnet.layer4)
    assert resnet.layer3[0].conv1.stride == resnet.layer4[0].conv1.stride == (1, 1)  # v1: stride was in the 1x1
    assert resnet.layer2[0].conv1.stride == (2, 2) and resnet.layer2[0].conv2.stride == (1, 1)
    assert [(c.dilation[0], c.padding[0], c.out_channels) for c in model.aspp.children()] == [
        (6, 6, 21), (12, 12, 21), (18, 18, 21), (24, 24, 21)]
    for side, scores in ((321, 41), (513, 65)):
        x = torch.empty(1, 3, side, side, device="meta")
        assert _output_of(model, model.aspp, x).shape[-2:] == (scores, scores)
        assert _shape_on_meta(model, 1, 3, side, side) == (1, 21, side, side)
    assert [i.reduction for i in model.feature_info] == [2, 4, 8, 8, 8]


def test_deeplab_mini_real_forward_and_atrous_head(seed):
    model = convatlas.create_model("deeplab_mini").eval()
    assert [c.dilation[0] for c in model.aspp.children()] == [1, 2, 3, 4]
    with torch.no_grad():
        assert model(torch.randn(2, 1, 64, 64)).shape == (2, 11, 64, 64)
        assert model(torch.randn(1, 1, 45, 70)).shape == (1, 11, 45, 70)
    assert _output_of(model, model.aspp, torch.randn(1, 1, 64, 64)).shape[-2:] == (8, 8)


# ---------------------------------------------------------------------------------------------
# The naive baselines


def test_sliding_window_pixel_is_the_classifier_on_its_patch(seed):
    model = convatlas.create_model("sliding_window", chunk_size=50).eval()  # 50 patches: strips of 2 rows
    assert model.patch_size == (32, 32) and model.in_channels == 1
    x = torch.randn(2, 1, 20, 23)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 11, 20, 23)
    padded = F.pad(x, (16, 15, 16, 15))  # zeros; the patch of (i, j) is rows i-16 .. i+15
    classifier = model.classifier
    for i, j in [(0, 0), (19, 22), (7, 13), (10, 0), (3, 21)]:
        with torch.no_grad():
            expected = classifier(padded[:, :, i:i + 32, j:j + 32])
        torch.testing.assert_close(out[:, :, i, j], expected)
    assert model.evaluations_per_image(64, 64) == 64 * 64 == 4096


def test_sliding_window_reflect_padding_and_chunks_do_not_change_results(seed):
    x = torch.randn(1, 1, 18, 18)
    reflect = convatlas.create_model("sliding_window", padding="reflect").eval()
    with torch.no_grad():
        out = reflect(x)
        expected = reflect.classifier(F.pad(x, (16, 15, 16, 15), mode="reflect")[:, :, 2:34, 5:37])
    torch.testing.assert_close(out[:, :, 2, 5], expected)
    small = SlidingWindow("lenet5", num_classes=11, padding="reflect", chunk_size=7)
    small.load_state_dict(reflect.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(small.eval()(x), out)


def test_sliding_window_bad_classifier_names_the_choices():
    with pytest.raises(ValueError, match="classifier must be the name of a registered classification network.*"
                                         "choices:.*lenet5.*resnet50"):
        convatlas.create_model("sliding_window", classifier="lenet9")
    with pytest.raises(ValueError, match="got 'fcn8s_mini'; choices"):
        convatlas.create_model("sliding_window", classifier="fcn8s_mini")
    with pytest.raises(ValueError, match="padding must be one of zeros, reflect, replicate"):
        convatlas.create_model("sliding_window", padding="circular")
    model = convatlas.create_model("sliding_window")
    with pytest.raises(ValueError, match="expects 1-channel images"):
        model(torch.randn(1, 3, 16, 16))


def test_fullres_fcn_count_and_activation_memory_against_fcn8s_mini():
    k = 11
    expected = _conv(1, 64, 3, bias=False) + 7 * _conv(64, 64, 3, bias=False) + 8 * 2 * 64 + _conv(64, k, 1)
    fullres, mini = convatlas.create_model("fullres_fcn"), convatlas.create_model("fcn8s_mini")
    assert _params(fullres) == expected == 260_363 == convatlas.model_card("fullres_fcn").params.value
    assert abs(_params(fullres) - _params(mini)) < 0.1 * _params(mini)  # a similar parameter count
    heavy, light = summary(fullres, (1, 64, 64)), summary(mini, (1, 64, 64))
    assert heavy.activation_bytes > 5 * light.activation_bytes
    # every layer holds a full 64-channel 64x64 map: conv, BN and ReLU outputs of 8 layers
    assert heavy.activation_bytes >= 8 * 64 * 64 * 64 * 4
    assert heavy.total_macs > 10 * light.total_macs
    with torch.no_grad():
        assert fullres.eval()(torch.randn(1, 1, 30, 41)).shape == (1, k, 30, 41)
