"""Family tests for the Inception networks: GoogLeNet (paper and torchvision), Inception-v4 and
Inception-ResNet-v2.

Oracles: the paper's Table 1 (GoogLeNet shapes and widths), paper-numbers.md counts,
torchvision's ``googlenet`` (weights, outputs, meta) and timm's ``inception_v4`` /
``inception_resnet_v2`` (weights and outputs).
"""

from __future__ import annotations

import math

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import convatlas
from convatlas.registry import get_builder
from convatlas.models.googlenet import (
    INCEPTION_V1_TABLE,
    GoogLeNetOutputs,
    InceptionModule,
    NaiveInceptionModule,
)
from convatlas.models.inception_v4 import inception_resnet_v2_from_timm, inception_v4_from_timm
from convatlas.weights import WeightMappingError
from reference.inception import GOOGLENET_PAPER_NO_AUX_PARAMS, PARAMS

TV_META = torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1.meta


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _build_meta(name: str, **variant_args) -> nn.Module:
    with torch.device("meta"):
        return get_builder(name)(**variant_args)


def _calibrate_batch_norm(model: nn.Module, x: torch.Tensor) -> None:
    """Give a randomly initialised network BN running statistics of real activations (one
    training-mode pass with momentum 1), so that its eval-mode outputs are of order one and a
    comparison of outputs means something."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 1.0
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()


# --------------------------------------------------------------------------------------------
# GoogLeNet as in the paper


def test_paper_googlenet_parameter_counts_with_and_without_aux():
    with_aux = _count(_build_meta("googlenet_paper"))
    without_aux = _count(_build_meta("googlenet_paper", aux_logits=False))
    assert with_aux == PARAMS["googlenet_paper"][0] == 13_378_280
    assert without_aux == GOOGLENET_PAPER_NO_AUX_PARAMS[0] == 6_998_552
    # paper-numbers.md s6: aux1 3,188,840 + aux2 3,190,888
    model = _build_meta("googlenet_paper")
    assert _count(model.aux1) == 3_188_840 and _count(model.aux2) == 3_190_888


def test_paper_googlenet_follows_table1_shapes():
    """Every row of Table 1 (output size) at 224x224, and true 5x5 kernels, LRN, no BN."""
    model = _build_meta("googlenet_paper").eval()
    table1 = {  # Table 1, "output size" column
        "conv1": (64, 112), "maxpool1": (64, 56), "conv3": (192, 56), "maxpool2": (192, 28),
        "inception3a": (256, 28), "inception3b": (480, 28), "maxpool3": (480, 14),
        "inception4a": (512, 14), "inception4b": (512, 14), "inception4c": (512, 14),
        "inception4d": (528, 14), "inception4e": (832, 14), "maxpool4": (832, 7),
        "inception5a": (832, 7), "inception5b": (1024, 7), "avgpool": (1024, 1),
    }
    seen = {}
    for name in table1:
        getattr(model, name).register_forward_hook(lambda m, i, o, n=name: seen.__setitem__(n, tuple(o.shape)))
    with torch.no_grad():
        out = model(torch.empty(1, 3, 224, 224, device="meta"))
    assert out.shape == (1, 1000)
    for name, (channels, side) in table1.items():
        assert seen[name] == (1, channels, side, side), name
    assert model.inception3a.branch3[1].conv.kernel_size == (5, 5)
    assert model.inception3a.branch1.conv.bias is not None
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in model.modules()) == 2
    assert model.dropout.p == 0.4 and model.aux1.dropout.p == 0.7


def test_paper_googlenet_aux_heads_in_train_mode_and_logits_only_in_eval():
    torch.manual_seed(0)
    model = convatlas.create_model("googlenet_paper", num_classes=10)
    features = {}
    model.inception4a.register_forward_hook(lambda m, i, o: features.__setitem__("4a", o))
    model.inception4d.register_forward_hook(lambda m, i, o: features.__setitem__("4d", o))
    x = torch.randn(1, 3, 224, 224)

    model.train()
    for m in model.modules():  # dropout off, so the heads can be recomputed from the features
        if isinstance(m, nn.Dropout):
            m.eval()
    with torch.no_grad():
        out = model(x)
        assert isinstance(out, GoogLeNetOutputs) and isinstance(out, tuple) and len(out) == 3
        assert all(o.shape == (1, 10) for o in out)
        # aux1 sits on inception (4a), 14x14x512; aux2 on (4d), 14x14x528 (Section 5).
        assert features["4a"].shape == (1, 512, 14, 14) and features["4d"].shape == (1, 528, 14, 14)
        torch.testing.assert_close(out.aux1, model.aux1(features["4a"]))
        torch.testing.assert_close(out.aux2, model.aux2(features["4d"]))
        # "average pooling layer with 5x5 filter size and stride 3" -> 4x4 at 14x14
        aux = model.aux1
        by_hand = aux.fc2(F.relu(aux.fc1(torch.flatten(aux.conv(F.avg_pool2d(features["4a"], 5, 3)), 1))))
        torch.testing.assert_close(out.aux1, by_hand)

    model.eval()
    with torch.no_grad():
        logits = model(x)
    assert isinstance(logits, torch.Tensor) and logits.shape == (1, 10)
    torch.testing.assert_close(logits, out.logits)  # same network, the heads only add outputs

    no_aux = convatlas.create_model("googlenet_paper", num_classes=10, aux_logits=False).train()
    assert no_aux.aux1 is None and isinstance(no_aux(torch.randn(1, 3, 64, 64)), torch.Tensor)


def test_naive_module_has_the_paper_modules_conv_widths_and_passes_the_input_through():
    torch.manual_seed(0)
    in_ch, ch1, ch3r, ch3, ch5r, ch5, pool_proj = INCEPTION_V1_TABLE["inception3a"]
    reduced = InceptionModule(in_ch, ch1, ch3r, ch3, ch5r, ch5, pool_proj)
    naive = NaiveInceptionModule(in_ch, ch1, ch3, ch5)
    # The convolution branches keep Table 1's #1x1, #3x3 and #5x5 widths of the module ...
    assert naive.branch1.conv.out_channels == reduced.branch1.conv.out_channels == 64
    assert naive.branch2.conv.out_channels == reduced.branch2[1].conv.out_channels == 128
    assert naive.branch3.conv.out_channels == reduced.branch3[1].conv.out_channels == 32
    # ... but see all 192 input channels, and the pool branch passes all of them on (Figure 2a).
    assert naive.branch3.conv.in_channels == 192 and naive.branch3.conv.kernel_size == (5, 5)
    x = torch.randn(1, in_ch, 28, 28)
    with torch.no_grad():
        out, out_reduced = naive(x), reduced(x)
    assert out_reduced.shape == (1, 256, 28, 28)  # Table 1: 28x28x256
    assert out.shape == (1, 64 + 128 + 32 + 192, 28, 28) and naive.out_channels == out.shape[1]
    with torch.no_grad():
        first = F.relu(F.conv2d(x, naive.branch1.conv.weight, naive.branch1.conv.bias))
    torch.testing.assert_close(out[:, :64], first)
    torch.testing.assert_close(out[:, -192:], F.max_pool2d(x, 3, stride=1, padding=1))


def test_naive_googlenet_widths_grow_as_the_paper_warns():
    model = _build_meta("googlenet_paper", naive=True, aux_logits=False).eval()
    channels = 192
    for name, (_, ch1, _, ch3, _, ch5, _) in INCEPTION_V1_TABLE.items():
        channels = ch1 + ch3 + ch5 + channels  # each naive module adds its convs to its input
        assert getattr(model, name).out_channels == channels, name
    with torch.no_grad():
        assert model(torch.empty(1, 3, 224, 224, device="meta")).shape == (1, 1000)
    assert _count(model) > 10 * GOOGLENET_PAPER_NO_AUX_PARAMS[0]


# --------------------------------------------------------------------------------------------
# torchvision's GoogLeNet


def test_torchvision_googlenet_parameter_counts_and_min_size():
    with torch.device("meta"):
        tv = torchvision.models.googlenet(weights=None, init_weights=False)  # aux_logits=True by default
    assert _count(_build_meta("googlenet")) == _count(tv) == PARAMS["googlenet"][0]
    assert _count(_build_meta("googlenet", aux_logits=False)) == TV_META["num_params"]
    assert convatlas.min_input_size("googlenet") == TV_META["min_size"][0]


@pytest.fixture(scope="module")
def random_torchvision_googlenet() -> nn.Module:
    """torchvision's GoogLeNet with random weights of order one and calibrated BN statistics."""
    torch.manual_seed(0)
    tv = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)
    for m in tv.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=1 / math.sqrt(m.in_features))
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.normal_(m.bias, std=0.1)
    _calibrate_batch_norm(tv, torch.randn(4, 3, 64, 64))
    return tv


@pytest.mark.parametrize("transform_input", [False, True])
def test_googlenet_equals_torchvision_after_loading_its_weights(random_torchvision_googlenet, transform_input):
    tv = random_torchvision_googlenet.eval()
    tv.transform_input = transform_input
    ours = convatlas.create_model("googlenet", transform_input=transform_input)
    convatlas.load_torchvision_weights(ours, tv)
    ours.eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected, got = tv(x), ours(x)
    assert isinstance(got, torch.Tensor) and got.shape == (1, 1000)
    assert expected.std() > 0.1  # a real signal, not near-zero outputs
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_googlenet_training_outputs_equal_torchvisions_aux_logits(random_torchvision_googlenet):
    tv = random_torchvision_googlenet.train()
    tv.transform_input = False
    ours = convatlas.load_torchvision_weights(convatlas.create_model("googlenet"), tv).train()
    x = torch.randn(2, 3, 128, 128)
    torch.manual_seed(7)  # same dropout masks: both draw aux1, aux2, then the final dropout
    with torch.no_grad():
        expected = tv(x)
    torch.manual_seed(7)
    with torch.no_grad():
        got = ours(x)
    tv.eval()
    assert isinstance(got, GoogLeNetOutputs)
    torch.testing.assert_close(got.logits, expected.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.aux1, expected.aux_logits1, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.aux2, expected.aux_logits2, atol=1e-5, rtol=1e-5)


def test_torchvision_weights_do_not_fit_the_other_variants():
    with torch.device("meta"):
        tv_state = torchvision.models.googlenet(weights=None, init_weights=False).state_dict()
    no_aux = convatlas.create_model("googlenet", aux_logits=False)
    with pytest.raises(WeightMappingError, match="unexpected"):
        convatlas.load_torchvision_weights(no_aux, tv_state)
    with pytest.raises(WeightMappingError, match="no torchvision equivalent"):
        convatlas.load_torchvision_weights(convatlas.create_model("googlenet_paper"), tv_state)


# --------------------------------------------------------------------------------------------
# Inception-v4 and Inception-ResNet-v2 against timm


@pytest.mark.parametrize(
    "name, from_timm",
    [("inception_v4", inception_v4_from_timm), ("inception_resnet_v2", inception_resnet_v2_from_timm)],
)
def test_equals_timm_after_mapping_its_weights(name, from_timm):
    torch.manual_seed(0)
    theirs = timm.create_model(name, pretrained=False)
    _calibrate_batch_norm(theirs, torch.randn(2, 3, 75, 75))
    with torch.device("meta"):
        ours = convatlas.create_model(name)
    assert _count(ours) == _count(theirs) == PARAMS[name][0]
    ours.load_state_dict(from_timm(theirs.state_dict()), strict=True, assign=True)
    ours.eval()

    shapes = {}
    if name == "inception_v4":  # Figure 9: grid sizes and widths between the stages
        for stage in ("stem", "inception_a", "reduction_a", "inception_b", "reduction_b", "inception_c"):
            getattr(ours, stage).register_forward_hook(
                lambda m, i, o, s=stage: shapes.__setitem__(s, tuple(o.shape[1:]))
            )
    x = torch.randn(1, 3, 299, 299)
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    assert got.shape == (1, 1000) and expected.std() > 0.1
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    if name == "inception_v4":
        assert shapes == {
            "stem": (384, 35, 35), "inception_a": (384, 35, 35), "reduction_a": (1024, 17, 17),
            "inception_b": (1024, 17, 17), "reduction_b": (1536, 8, 8), "inception_c": (1536, 8, 8),
        }


def test_inception_resnet_v2_residual_scales_are_a_checked_variant():
    model = _build_meta("inception_resnet_v2", residual_scales=(0.1, 0.2, 0.3))
    blocks = (model.inception_resnet_a, model.inception_resnet_b, model.inception_resnet_c)
    assert [stage[0].scale for stage in blocks] == [0.1, 0.2, 0.3]
    assert model.inception_resnet_c[-1].scale == 1.0 and isinstance(model.inception_resnet_c[-1].act, nn.Identity)
    assert [len(stage) for stage in blocks] == [10, 20, 10]
    with pytest.raises(ValueError, match="residual_scales"):
        convatlas.create_model("inception_resnet_v2", residual_scales=(0.1, 0.2))
    with pytest.raises(ValueError, match="residual_scales"):
        convatlas.create_model("inception_resnet_v2", residual_scales=(0.1, 0.2, 0.0))
