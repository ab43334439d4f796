"""Family tests for DenseNet, SqueezeNet, MobileNet v1/v2 and EfficientNet.

Independent references: torchvision's implementations (same outputs after loading their weights,
same stage structure), the papers' tables (MobileNet Tables 6/7/9, DenseNet depth rule) and the
reference counts in tests/reference/efficient.py.
"""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torch import nn

import convatlas
from convatlas.registry import get_builder
from convatlas.weights import WeightMappingError
from reference.efficient import MACS, MOBILENET_V1_PAPER, PARAMS

FAMILIES = ("densenet", "squeezenet", "mobilenet", "efficientnet")


def count_macs(model: nn.Module, input_size: tuple[int, int, int]) -> int:
    """Conv + linear multiply-accumulates of one image, counted with forward hooks on the meta device."""
    total = 0

    def hook(module: nn.Module, inputs, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += output.numel() * (module.in_channels // module.groups) * k
        else:
            total += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model.eval()(torch.empty(1, *input_size, device="meta"))
    finally:
        for h in handles:
            h.remove()
    return total


def meta_build(name: str, **variant_args) -> nn.Module:
    with torch.device("meta"):
        return get_builder(name)(**variant_args)


def n_params(model: nn.Module, skip_norm: bool = False) -> int:
    return sum(
        p.numel()
        for m in model.modules()
        if not (skip_norm and isinstance(m, nn.BatchNorm2d))
        for p in m.parameters(recurse=False)
    )


def calibrate_batchnorm(model: nn.Module, x: torch.Tensor) -> None:
    """Set BN running statistics to those of ``x`` so that eval-mode outputs are of order 1."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # cumulative average: after one batch, the batch's statistics
            m.reset_running_stats()
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()


def test_every_family_model_has_reference_numbers():
    names = [n for n in convatlas.list_models() if convatlas.model_card(n).family in FAMILIES]
    assert len(names) >= 30
    assert set(names) <= set(PARAMS) and set(names) <= set(MACS)


@pytest.mark.parametrize("name", sorted(MACS))
def test_macs_match_reference(name):
    expected, rel_tol, source = MACS[name]
    card = convatlas.model_card(name)
    got = count_macs(meta_build(name), card.input_size)
    assert got == pytest.approx(expected, rel=rel_tol), f"{name}: {got:,} MACs, reference {expected:,.0f} ({source})"


# --------------------------------------------------------------------------------------------
# Same architecture as torchvision: weights load, outputs agree.

# (name, input side). EfficientNet B4-B7 run at 224 instead of 380-600 to keep the test fast;
# the architecture is fully convolutional, so the check is the same.
TORCHVISION_SHARED = [
    ("densenet121", 224),
    ("densenet169", 224),
    ("densenet201", 224),
    ("squeezenet1_0", 224),
    ("squeezenet1_1", 224),
    ("mobilenet_v2", 224),
    ("efficientnet_b0", 224),
    ("efficientnet_b1", 240),
    ("efficientnet_b2", 260),
    ("efficientnet_b3", 300),
    ("efficientnet_b4", 224),
    ("efficientnet_b5", 224),
    ("efficientnet_b6", 224),
    ("efficientnet_b7", 224),
]


@pytest.mark.parametrize("name,side", TORCHVISION_SHARED)
def test_outputs_equal_torchvision_after_loading_its_weights(name, side):
    card = convatlas.model_card(name)
    if side == card.input_size[1]:
        assert card.input_size == (3, side, side)
    torch.manual_seed(0)
    reference = torchvision.models.get_model(card.torchvision, weights=None)
    x = torch.randn(2, 3, side, side)
    calibrate_batchnorm(reference, x)
    model = convatlas.create_model(name)
    convatlas.load_torchvision_weights(model, reference)
    model.eval()
    with torch.no_grad():
        expected = reference(x)
        got = model(x)
    assert expected.abs().max() > 0.1, "calibrated network gives logits of order 1"
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_densenet264_is_torchvisions_densenet_class_with_paper_blocks():
    torch.manual_seed(0)
    reference = torchvision.models.densenet.DenseNet(32, (6, 12, 64, 48), 64)
    model = convatlas.create_model("densenet264")
    x = torch.randn(2, 3, 64, 64)  # small input: 264 layers at 224 would be slow
    calibrate_batchnorm(reference, x)
    model.load_state_dict(reference.state_dict())
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("width_mult", [0.35, 0.5, 0.75, 1.3, 1.4])
def test_mobilenet_v2_width_multipliers_match_torchvision(width_mult):
    model = meta_build("mobilenet_v2", width_mult=width_mult)
    with torch.device("meta"):
        reference = torchvision.models.mobilenet_v2(width_mult=width_mult)
    mapper = convatlas.registry.torchvision_key_map("mobilenet_v2")
    mapped = {k: v.shape for k, v in mapper(reference.state_dict()).items()}
    assert mapped == {k: v.shape for k, v in model.state_dict().items()}


def test_loading_weights_of_another_width_is_refused():
    model = convatlas.create_model("mobilenet_v2_050")
    with pytest.raises(WeightMappingError, match="shape"):
        convatlas.load_torchvision_weights(model, torchvision.models.mobilenet_v2(weights=None))


# --------------------------------------------------------------------------------------------
# DenseNet: the depth L counts the weighted layers.

DEPTHS = {
    "densenet121": 121, "densenet161": 161, "densenet169": 169, "densenet201": 201, "densenet264": 264,
    "densenet40_k12": 40, "densenet100_k12": 100, "densenet100_k24": 100,
    "densenet_bc100_k12": 100, "densenet_bc250_k24": 250, "densenet_bc190_k40": 190,
}


@pytest.mark.parametrize("name,depth", sorted(DEPTHS.items()))
def test_densenet_depth_is_number_of_weighted_layers(name, depth):
    model = meta_build(name)
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(layers) == depth + (name == "densenet264")


@pytest.mark.parametrize("depth,bc,k", [(40, False, 12), (100, True, 12), (250, True, 24)])
def test_densenet_cifar_growth(depth, bc, k):
    """Each dense layer adds k channels; BC transitions halve the width (theta = 0.5)."""
    model = meta_build("densenet_cifar", depth=depth, growth_rate=k, bc=bc)
    per_block = (depth - 4) // (6 if bc else 3)
    stem = 2 * k if bc else 16
    block1 = model.features.denseblock1
    assert len(block1) == per_block
    assert model.features.conv0.out_channels == stem
    width = stem + per_block * k
    assert model.features.transition1.conv.out_channels == (width // 2 if bc else width)


# --------------------------------------------------------------------------------------------
# SqueezeNet bypass variants (Section 6).


def test_squeezenet_bypass_parameter_counts():
    assert n_params(meta_build("squeezenet1_0", bypass="simple")) == 1_248_424  # paper-numbers s.14
    assert n_params(meta_build("squeezenet1_0", bypass="complex")) == 1_589_672  # paper-numbers s.14 [C]


def test_squeezenet_simple_bypass_adds_the_input():
    torch.manual_seed(0)
    vanilla = convatlas.create_model("squeezenet1_0").eval()
    simple = convatlas.create_model("squeezenet1_0", bypass="simple").eval()
    simple.load_state_dict(vanilla.state_dict())
    x = torch.randn(1, 128, 27, 27)
    with torch.no_grad():
        for fire in ("fire3", "fire5"):
            y = torch.randn(1, getattr(simple.features, fire).squeeze.in_channels, 13, 13)
            torch.testing.assert_close(getattr(simple.features, fire)(y), getattr(vanilla.features, fire)(y) + y)
        # fire2, fire4 keep no shortcut in the simple variant
        torch.testing.assert_close(simple.features.fire4(x), vanilla.features.fire4(x))


# --------------------------------------------------------------------------------------------
# MobileNet v1: width and resolution multipliers reproduce Tables 6, 7 and 9.


@pytest.mark.parametrize("alpha,side", sorted(MOBILENET_V1_PAPER))
def test_mobilenet_v1_matches_paper_tables(alpha, side):
    mmacs, mparams, params_tol, source = MOBILENET_V1_PAPER[(alpha, side)]
    model = meta_build("mobilenet_v1", width_mult=alpha, resolution_mult=side / 224)
    assert model.input_size == (3, side, side)
    macs = count_macs(model, model.input_size)
    assert abs(macs / 1e6 - mmacs) <= 1.0, f"{macs / 1e6:.2f}M mult-adds, paper {mmacs}M ({source})"
    params = n_params(model, skip_norm=True) / 1e6
    assert abs(params - mparams) <= params_tol, f"{params:.3f}M parameters, paper {mparams}M ({source})"


def test_mobilenet_v1_named_widths_equal_width_mult():
    for name, alpha in [("mobilenet_v1_075", 0.75), ("mobilenet_v1_050", 0.5), ("mobilenet_v1_025", 0.25)]:
        named = meta_build(name).state_dict()
        generic = meta_build("mobilenet_v1", width_mult=alpha).state_dict()
        assert {k: v.shape for k, v in named.items()} == {k: v.shape for k, v in generic.items()}


# --------------------------------------------------------------------------------------------
# EfficientNet: widths and depths follow from the coefficients.


@pytest.mark.parametrize("b", range(8))
def test_efficientnet_released_stages_match_torchvision(b):
    name = f"efficientnet_b{b}"
    model = meta_build(name)
    with torch.device("meta"):
        reference = torchvision.models.get_model(name, weights=None)
    ours = [(len(stage), stage[-1].project.conv.out_channels) for stage in list(model.features)[1:-1]]
    theirs = [(len(stage), stage[-1].out_channels) for stage in list(reference.features)[1:-1]]
    assert ours == theirs
    assert model.features[0].conv.out_channels == reference.features[0][0].out_channels
    assert model.features[-1].conv.out_channels == reference.features[-1][0].out_channels


def _round_filters(channels: float) -> int:
    """The release's channel rounding, written out: nearest multiple of 8, at most 10% down."""
    rounded = max(8, int(channels + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * channels else rounded


@pytest.mark.parametrize("phi", [1, 2.5, 4])
def test_efficientnet_phi_follows_compound_scaling(phi):
    model = meta_build("efficientnet", phi=phi)
    depth, width, resolution = 1.2**phi, 1.1**phi, 1.15**phi  # Eq. 3
    assert model.input_size == (3, round(224 * resolution), round(224 * resolution))
    base = [(1, 16), (2, 24), (2, 40), (3, 80), (3, 112), (4, 192), (1, 320)]  # Table 1
    stages = list(model.features)[1:-1]
    assert [len(s) for s in stages] == [math.ceil(n * depth) for n, _ in base]
    assert [s[-1].project.conv.out_channels for s in stages] == [_round_filters(c * width) for _, c in base]
    assert model.features[0].conv.out_channels == _round_filters(32 * width)
    assert model.features[-1].conv.out_channels == _round_filters(1280 * width)


def test_efficientnet_phi_zero_is_b0_and_released_b2_b3_sit_near_phi_1_2():
    assert n_params(meta_build("efficientnet", phi=0)) == PARAMS["efficientnet_b0"][0]
    from convatlas.models.efficientnet import RELEASED_SCALING

    for b, phi in [(2, 1.0), (3, 2.0)]:
        assert all(abs(p - phi) < 0.2 for p in RELEASED_SCALING[b].implied_phi())


# --------------------------------------------------------------------------------------------
# Bad variant arguments: a ValueError naming the argument and what is allowed.


@pytest.mark.parametrize(
    "name,args,pattern",
    [
        ("mobilenet_v1", {"width_mult": 0}, r"width_mult .*alpha.* positive number, got 0"),
        ("mobilenet_v1", {"width_mult": -0.5}, r"width_mult .*positive"),
        ("mobilenet_v1", {"resolution_mult": 0.0}, r"resolution_mult .*rho.*positive"),
        ("mobilenet_v2", {"width_mult": -1.0}, r"width_mult .*positive"),
        ("squeezenet1_0", {"bypass": "full"}, r"bypass must be one of 'none', 'simple', 'complex'.*'full'"),
        ("squeezenet1_1", {"bypass": None}, r"bypass must be one of"),
        ("densenet_cifar", {"depth": 41, "bc": False}, r"depth=41 .*DenseNet \(no bottleneck\).*3n \+ 4"),
        ("densenet_cifar", {"depth": 43, "bc": True}, r"depth=43 .*DenseNet-BC.*6n \+ 4"),
        ("densenet_cifar", {"depth": 4}, r"depth=4 .*n >= 1"),
        ("densenet_cifar", {"growth_rate": 0}, r"growth_rate must be a positive integer"),
        ("efficientnet", {"phi": -1}, r"phi must be a finite number >= 0"),
        ("efficientnet", {"phi": float("nan")}, r"phi must be a finite number >= 0"),
    ],
)
def test_bad_variant_arguments_raise_value_error(name, args, pattern):
    with pytest.raises(ValueError, match=pattern):
        convatlas.create_model(name, **args)
