"""The residual families (ResNet, pre-activation ResNet, Wide ResNet, ResNeXt) against
torchvision, timm and the numbers their papers publish."""

from __future__ import annotations

import itertools

import pytest
import timm
import torch
import torchvision
from torch import nn

import convatlas
from convatlas.models._resnet_blocks import ZeroPadShortcut
from convatlas.models.preact_resnet import UNITS, cifar_preact_resnet
from convatlas.models.resnet import cifar_resnet
from convatlas.models.resnext import CifarResNeXt
from convatlas.models.wide_resnet import wide_resnet
from convatlas.registry import get_builder
from reference.resnet import MACS, PARAMS, VARIANT_PARAMS

FAMILIES = ("resnet", "preact_resnet", "wide_resnet", "resnext")
OURS = sorted(n for family in FAMILIES for n in convatlas.list_models(family=family))

TORCHVISION_TWINS = [
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "wide_resnet50_2", "wide_resnet101_2",
    "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d",
]  # fmt: skip


def count_macs(model: nn.Module, input_size: tuple[int, int, int]) -> int:
    """Conv + linear multiply-accumulates of one image, counted by forward hooks.

    ``model`` may live on the meta device; small (CIFAR) inputs are run on the CPU with
    uninitialised weights instead, which is much quicker than tracing 1000 layers on meta.
    """
    total = 0

    def hook(module: nn.Module, inputs, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += output.numel() * (module.in_channels // module.groups) * kh * kw
        else:
            total += output.numel() * module.in_features

    device = "cpu" if max(input_size[1:]) <= 64 else "meta"
    if device == "cpu" and any(p.is_meta for p in model.parameters()):
        model = model.to_empty(device="cpu")
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *input_size, device=device))
    for handle in handles:
        handle.remove()
    return total


def _meta(name: str, **variant_args) -> nn.Module:
    card = convatlas.model_card(name)
    with torch.device("meta"):
        return get_builder(name)(num_classes=card.default_num_classes, **variant_args)


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _randomise_batchnorm(model: nn.Module) -> None:
    """Give every BN non-trivial statistics and affine terms, so a wrong mapping shows."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)


def _empty(name: str, **variant_args) -> nn.Module:
    """A registered model built without initialising its weights (they are overwritten)."""
    with torch.device("meta"):
        model = convatlas.create_model(name, **variant_args)
    return model.to_empty(device="cpu")


# ---------------------------------------------------------------------------------------------
# torchvision's architectures: same state_dict keys, same outputs.


@pytest.mark.parametrize("name", TORCHVISION_TWINS)
def test_torchvision_weights_load_and_give_equal_outputs(name):
    torch.manual_seed(0)
    theirs = getattr(torchvision.models, name)()  # random weights
    _randomise_batchnorm(theirs)
    ours = convatlas.load_torchvision_weights(_empty(name), theirs)
    assert convatlas.model_card(name).torchvision == name
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = theirs.eval()(x)
        got = ours.eval()(x)
    assert expected.shape == (1, 1000) and expected.std() > 0
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Published parameter counts and multiply-accumulates.


def test_reference_tables_cover_the_families():
    assert sorted(PARAMS) == OURS
    assert set(MACS) <= set(OURS)


@pytest.mark.parametrize("name", sorted(MACS))
def test_macs_match_published(name):
    expected, rel_tol, source = MACS[name]
    got = count_macs(_meta(name), convatlas.model_card(name).input_size)
    assert got == pytest.approx(expected, rel=rel_tol), f"{name}: {got:,} MACs, reference {expected:,.0f} ({source})"


@pytest.mark.parametrize("depth", [50, 101, 152])
def test_v1_and_v15_have_equal_weights_but_different_cost(depth):
    v15, v1 = _meta(f"resnet{depth}"), _meta(f"resnet{depth}_v1")
    assert {k: v.shape for k, v in v15.state_dict().items()} == {k: v.shape for k, v in v1.state_dict().items()}
    assert _params(v15) == _params(v1) == PARAMS[f"resnet{depth}"][0]
    # The paper's Table 1 FLOPs (multiply-adds, x 10^9) are those of the v1 placement
    # (to its one decimal: 3.858 is printed as 3.8).
    paper_table1 = {50: 3.8, 101: 7.6, 152: 11.3}[depth]
    macs_v1, macs_v15 = count_macs(v1, (3, 224, 224)) / 1e9, count_macs(v15, (3, 224, 224)) / 1e9
    assert abs(macs_v1 - paper_table1) < 0.06
    assert abs(macs_v15 - paper_table1) > 0.2
    # The variant argument switches either name to the other placement.
    assert count_macs(_meta(f"resnet{depth}", variant="v1"), (3, 224, 224)) / 1e9 == macs_v1
    assert count_macs(_meta(f"resnet{depth}_v1", variant="v1.5"), (3, 224, 224)) / 1e9 == macs_v15


def test_resnet50_v1_against_v15_in_numbers():
    macs_v1 = count_macs(_meta("resnet50_v1"), (3, 224, 224))
    macs_v15 = count_macs(_meta("resnet50"), (3, 224, 224))
    assert macs_v1 / 1e9 == pytest.approx(3.858, abs=5e-4)  # paper: 3.8 x 10^9
    assert macs_v15 / 1e9 == pytest.approx(4.089, abs=5e-4)  # torchvision _ops; ResNeXt paper: 4.1
    # Only the 1x1 reductions of the three down-sampling blocks move: in * mid * (HW - HW/4).
    saved = sum(cin * mid * (hw * hw - (hw // 2) ** 2) for cin, mid, hw in [(256, 128, 56), (512, 256, 28), (1024, 512, 14)])
    assert macs_v15 - macs_v1 == saved


def test_v1_strides_the_first_1x1_and_v15_the_3x3():
    v1, v15 = _meta("resnet50_v1"), _meta("resnet50")
    assert v1.layer2[0].conv1.stride == (2, 2) and v1.layer2[0].conv2.stride == (1, 1)
    assert v15.layer2[0].conv1.stride == (1, 1) and v15.layer2[0].conv2.stride == (2, 2)


@pytest.mark.parametrize("name", sorted(VARIANT_PARAMS))
def test_variant_param_counts(name):
    expected, source = VARIANT_PARAMS[name]
    with torch.device("meta"):
        if name.startswith("preact_resnet1001"):
            model = cifar_preact_resnet(1001)
            got = sum(p.numel() for m in model.modules() if not isinstance(m, nn.BatchNorm2d)
                      for p in m.parameters(recurse=False))
            assert got < _params(model)
        elif name == "wrn_28_10 with 100 classes":
            got = _params(wide_resnet(28, 10, num_classes=100))
        elif name == "resnext29_16x64d with 100 classes":
            got = _params(CifarResNeXt(cardinality=16, bottleneck_width=64, num_classes=100))
        else:
            depth, k = map(int, name.split("_")[1:])
            got = _params(wide_resnet(depth, k))
    assert got == expected, f"{name}: {got:,}, reference {expected:,} ({source})"


# ---------------------------------------------------------------------------------------------
# CIFAR ResNets: option A is parameter-free, option B projects.


def test_option_a_shortcuts_have_no_parameters():
    model = convatlas.create_model("resnet20")
    shortcuts = [b.downsample for stage in (model.layer1, model.layer2, model.layer3) for b in stage if b.downsample is not None]
    assert len(shortcuts) == 2 and all(isinstance(s, ZeroPadShortcut) for s in shortcuts)
    assert all(_params(s) == 0 for s in shortcuts)
    # Every weight sits in a 3x3 convolution, a BN or the classifier: 19 conv + fc = 20 weighted layers.
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 19 and all(c.kernel_size == (3, 3) for c in convs)


def test_option_a_is_identity_on_a_subsampled_grid_padded_with_zeros():
    shortcut = ZeroPadShortcut(16, 32, stride=2)
    x = torch.randn(2, 16, 9, 9)
    y = shortcut(x)
    assert y.shape == (2, 32, 5, 5)
    assert torch.equal(y[:, :16], x[:, :, ::2, ::2])
    assert torch.count_nonzero(y[:, 16:]) == 0


def test_option_b_adds_two_projections():
    a = _params(cifar_resnet(20, shortcut="A"))
    b_model = cifar_resnet(20, shortcut="B")
    # 1x1 conv 16->32 + BN(32), 1x1 conv 32->64 + BN(64)  (paper §3.3, eq. 2)
    assert _params(b_model) - a == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    assert isinstance(b_model.layer2[0].downsample[0], nn.Conv2d)
    assert b_model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("depth,n", [(20, 3), (32, 5), (44, 7), (56, 9), (110, 18)])
def test_cifar_depth_counts_weighted_layers(depth, n):
    model = cifar_resnet(depth)
    assert [len(s) for s in (model.layer1, model.layer2, model.layer3)] == [n, n, n]
    weighted = sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())
    assert weighted == depth


# ---------------------------------------------------------------------------------------------
# Pre-activation units: the five orderings of Fig. 4.


_SHORT = {"BatchNorm2d": "BN", "ReLU": "ReLU", "Conv2d": "conv", "Dropout": "dropout"}


def _unit_signature(model: nn.Module) -> str:
    """The second unit of ``layer1`` (identity shortcut) as "preact | branch | after addition"."""
    unit = model.layer1[1]
    parts = (unit.preact, unit.branch, unit.after_addition)
    return " | ".join(" ".join(_SHORT[type(m).__name__] for m in part) for part in parts)


# Fig. 4 of He et al. 2016, spelled out for units of two weight layers.
FIGURE_4 = {
    "original": " | conv BN ReLU conv BN | ReLU",  # (a)
    "bn_after_addition": " | conv BN ReLU conv | BN ReLU",  # (b)
    "relu_before_addition": " | conv BN ReLU conv BN ReLU | ",  # (c)
    "relu_only_preact": "ReLU | conv BN ReLU conv BN | ",  # (d)
    "full_preact": "BN ReLU | conv BN ReLU conv | ",  # (e)
}


def test_orderings_follow_figure_4():
    assert list(UNITS) == list(FIGURE_4)
    for unit, expected in FIGURE_4.items():
        assert _unit_signature(_meta("preact_resnet110", unit=unit)) == expected


@pytest.mark.parametrize("bottleneck", [False, True], ids=["basic", "bottleneck"])
def test_five_orderings_build_train_and_differ(bottleneck):
    # Small CIFAR nets of each unit type (20 = 6*3+2 basic, 29 = 9*3+2 bottleneck) keep this quick;
    # the registered 110/164/1001 are the same code with more units.
    depth = 29 if bottleneck else 20
    signatures = {}
    for unit in UNITS:
        torch.manual_seed(0)
        model = cifar_preact_resnet(depth, bottleneck=bottleneck, unit=unit)
        signatures[unit] = _unit_signature(model)
        x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
        optimiser = torch.optim.SGD(model.parameters(), lr=0.01)
        before = [p.detach().clone() for p in model.parameters()]
        loss = nn.functional.cross_entropy(model.train()(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        assert torch.isfinite(loss), unit
        assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters())), unit
        assert torch.isfinite(nn.functional.cross_entropy(model(x), y)), unit
    assert len(set(signatures.values())) == 5, signatures
    # The registered ResNet-164 builds in every ordering, always with the same convolutions and
    # fc: 1,679,034 parameters outside BN (paper-numbers.md section 10).
    for unit in UNITS:
        model = _meta("preact_resnet164", unit=unit)
        assert _params(model) - sum(_params(m) for m in model.modules() if isinstance(m, nn.BatchNorm2d)) == 1_679_034


def test_letters_name_the_orderings_of_figure_4():
    for letter, unit in zip("abcde", UNITS):
        assert UNITS[unit].figure == f"Fig. 4({letter})"
        a = _meta("preact_resnet110", unit=letter)
        b = _meta("preact_resnet110", unit=unit)
        assert _unit_signature(a) == _unit_signature(b)


def test_full_preact_has_identity_paths_between_units():
    model = convatlas.create_model("preact_resnet164")
    units = [u for s in (model.layer1, model.layer2, model.layer3) for u in s]
    assert len(units) == 54 and all(len(u.after_addition) == 0 for u in units)
    # Identity shortcut units: x_{l+1} = x_l + F(x_l), checked numerically on one unit.
    unit = model.layer1[3].eval()
    x = torch.randn(2, 64, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(unit(x), x + unit.branch(unit.preact(x)))
    # The extra activation after the last unit (paper §3.2): BN and ReLU before pooling.
    assert [type(m) for m in model.after_last_unit] == [nn.BatchNorm2d, nn.ReLU]


def test_original_ordering_is_torchvision_resnet50():
    torch.manual_seed(0)
    theirs = torchvision.models.resnet50()
    _randomise_batchnorm(theirs)
    ours = _empty("preact_resnet50", unit="original")

    def rename(key: str) -> str:
        key = key.replace("downsample.0", "shortcut.conv").replace("downsample.1", "shortcut.bn")
        if key.startswith("bn1."):
            return "after_conv1.bn." + key[4:]
        parts = key.split(".")
        if parts[0].startswith("layer") and parts[2][:-1] in ("conv", "bn"):
            parts.insert(2, "branch")
        return ".".join(parts)

    ours.load_state_dict({rename(k): v for k, v in theirs.state_dict().items()})
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), theirs.eval()(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["preact_resnet18", "preact_resnet50"])
def test_full_preact_imagenet_equals_timm_resnetv2(name):
    torch.manual_seed(0)
    theirs = timm.create_model(convatlas.model_card(name).timm)
    _randomise_batchnorm(theirs)
    ours = _empty(name)
    names = {"norm1": "preact.bn1", "norm2": "branch.bn2", "norm3": "branch.bn3",
             "conv1": "branch.conv1", "conv2": "branch.conv2", "conv3": "branch.conv3",
             "downsample.conv": "shortcut.conv"}  # fmt: skip
    state = {}
    for key, value in theirs.state_dict().items():
        if key.startswith("stem.conv."):
            key = "conv1." + key[len("stem.conv."):]
        elif key.startswith("stages."):
            _, stage, _, block, rest = key.split(".", 4)
            layer, param = rest.rsplit(".", 1)
            key = f"layer{int(stage) + 1}.{block}.{names[layer]}.{param}"
        elif key.startswith("norm."):
            key = "after_last_unit.bn." + key[len("norm."):]
        elif key == "head.fc.weight":
            key, value = "fc.weight", value.flatten(1)
        elif key == "head.fc.bias":
            key = "fc.bias"
        state[key] = value
    ours.load_state_dict(state)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = theirs.eval()(x)
        torch.testing.assert_close(ours.eval()(x), expected, rtol=1e-5, atol=1e-5)
    assert _params(ours) == _params(theirs) == PARAMS[name][0]


def test_cifar_preact_strides_the_first_1x1_as_the_authors_code():
    model = convatlas.create_model("preact_resnet164")
    first = model.layer2[0]
    assert first.branch.conv1.stride == (2, 2) and first.branch.conv2.stride == (1, 1)
    assert first.is_projection and first.shortcut.conv.stride == (2, 2)
    assert len(first.shortcut) == 1  # a pre-activated projection: no BN of its own


# ---------------------------------------------------------------------------------------------
# Wide ResNet and ResNeXt specifics.


def test_wrn_dropout_sits_between_the_convolutions():
    model = convatlas.create_model("wrn_16_8", dropout=0.3)
    assert _params(model) == PARAMS["wrn_16_8"][0]
    unit = model.layer1[0]
    kinds = [type(m).__name__ for m in itertools.chain(unit.preact, unit.branch)]
    assert kinds == ["BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d", "ReLU", "Dropout", "Conv2d"]
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 6
    x = torch.randn(2, 3, 16, 16)
    torch.manual_seed(1)
    a = model.train()(x)
    b = model(x)
    assert not torch.equal(a, b)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), model(x))


def test_wrn_widths_follow_the_widen_factor():
    model = wide_resnet(22, 3)
    widths = [stage[-1].branch[-1].out_channels for stage in (model.layer1, model.layer2, model.layer3)]
    assert widths == [48, 96, 192] and [len(s) for s in (model.layer1, model.layer2, model.layer3)] == [3, 3, 3]


@pytest.mark.parametrize("name,groups,inner", [
    ("resnext50_32x4d", 32, [128, 256, 512, 1024]),
    ("resnext101_64x4d", 64, [256, 512, 1024, 2048]),
    ("resnext29_8x64d", 8, [512, 1024, 2048]),
])  # fmt: skip
def test_resnext_3x3_is_grouped_by_cardinality(name, groups, inner):
    model = _meta(name)
    stages = [getattr(model, f"layer{i}") for i in range(1, len(inner) + 1)]
    assert [s[0].conv2.out_channels for s in stages] == inner
    assert all(b.conv2.groups == groups for s in stages for b in s)


def test_resnext_variant_arguments_change_the_paths():
    model = convatlas.create_model("resnext29_8x64d", cardinality=4, bottleneck_width=16)
    assert model.layer1[0].conv2.groups == 4 and model.layer1[0].conv2.out_channels == 64
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 10)


# ---------------------------------------------------------------------------------------------
# Errors and documentation.


@pytest.mark.parametrize("call,match", [
    (lambda: cifar_resnet(21), r"depth must be 6n\+2"),
    (lambda: cifar_resnet(2), r"depth must be 6n\+2"),
    (lambda: convatlas.create_model("resnet20", shortcut="C"), r"shortcut must be 'A'.*or 'B'"),
    (lambda: convatlas.create_model("resnet50", variant="v2"), r"variant must be 'v1'.*or 'v1.5'"),
    (lambda: wide_resnet(27, 10), r"\(depth - 4\) divisible by 6"),
    (lambda: wide_resnet(28, 0), r"widen_factor must be a positive integer, got 0"),
    (lambda: wide_resnet(28, 10, dropout=1.5), r"dropout must be a probability"),
    (lambda: convatlas.create_model("wrn_28_10", dropout=-0.1), r"dropout must be a probability"),
    (lambda: convatlas.create_model("resnext50_32x4d", cardinality=0), r"cardinality must be a positive integer"),
    (lambda: convatlas.create_model("resnext29_8x64d", cardinality=2.5), r"cardinality must be a positive integer"),
    (lambda: convatlas.create_model("resnext101_32x8d", bottleneck_width=-4), r"bottleneck_width must be a positive"),
    (lambda: convatlas.create_model("preact_resnet164", unit="z"), r"unit must be one of 'original'"),
    (lambda: cifar_preact_resnet(100), r"depth must be 9n\+2"),
    (lambda: cifar_preact_resnet(101, bottleneck=False), r"depth must be 6n\+2"),
])  # fmt: skip
def test_bad_variant_arguments_raise_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_basic_block_resnets_take_no_variant():
    with pytest.raises(ValueError, match="resnet18 does not take 'variant'"):
        convatlas.create_model("resnet18", variant="v1")


@pytest.mark.parametrize("name", OURS)
def test_builder_docstring_cites_the_paper(name):
    card = convatlas.model_card(name)
    doc = get_builder(name).__doc__ or ""
    assert card.arxiv and f"arXiv:{card.arxiv}" in doc, name
    assert str(card.year) in doc
