"""The backbone contract: every registered network declares its feature maps, and they are where,
how wide and how coarse it says (adding a model adds its tests)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import convatlas
from convatlas.analysis import summary
from convatlas.models import FeatureExtractor, FeatureInfo, feature_info, forward_intermediates
from convatlas.registry import build_meta

ALL = convatlas.list_models(task="classification")


def _check_declared_stages(model: nn.Module, input_size: tuple[int, int, int]) -> None:
    """Trace ``model`` on meta and check each declared stage against what the tracer measures."""
    infos = feature_info(model)
    assert all(isinstance(i, FeatureInfo) for i in infos)
    stages = [i.stage for i in infos]
    assert len(set(stages)) == len(stages), f"stage names repeat: {stages}"
    reductions = [i.reduction for i in infos]
    assert reductions == sorted(reductions), f"reductions not in forward order: {reductions}"
    report = summary(model, input_size, memory=False)
    positions = []
    for info in infos:
        model.get_submodule(info.module)  # raises if the path is wrong
        calls = [(i, r) for i, r in enumerate(report.rows) if r.name == info.module and r.kind == "module"]
        assert len(calls) == 1, f"{info}: its module runs {len(calls)} times, so its output is not one map"
        position, row = calls[0]
        assert row.output_shapes[0][1] == info.channels, f"{info}: measured {row.output_shapes[0]}"
        assert row.jump == (info.reduction, info.reduction), f"{info}: measured jump {row.jump}"
        positions.append(position)
    assert positions == sorted(positions), "feature_info is not in forward order"


def _check_maps_are_not_overwritten(model: nn.Module, input_size: tuple[int, int, int]) -> None:
    """A later in-place layer (``ReLU(inplace=True)``) must not change a map the extractor returns."""
    versions = {}

    def remember(stage):
        def hook(module, args, output):
            versions[stage] = output._version

        return hook

    handles = [model.get_submodule(i.module).register_forward_hook(remember(i.stage)) for i in feature_info(model)]
    try:
        with torch.no_grad():
            maps = FeatureExtractor(model)(torch.empty(1, *input_size, device="meta"))
    finally:
        for h in handles:
            h.remove()
    changed = [stage for stage, t in maps.items() if t._version != versions[stage]]
    assert not changed, f"maps written in place after their stage: {changed}"


@pytest.mark.parametrize("name", ALL)
def test_declared_stages_match_the_traced_network(name):
    card = convatlas.model_card(name)
    model = build_meta(name)
    _check_declared_stages(model, card.input_size)
    _check_maps_are_not_overwritten(model, card.input_size)


# The feature maps follow the variant arguments (widths, growth rates, depths, orderings).
VARIANTS = [
    ("mobilenet_v1", {"width_mult": 0.5}, None),
    ("mobilenet_v2", {"width_mult": 1.3}, None),
    ("mobilenet_v2", {"width_mult": 0.35}, None),
    ("efficientnet", {"phi": 1.5}, None),
    ("densenet_cifar", {"depth": 40, "growth_rate": 24, "bc": False}, None),
    ("densenet_cifar", {"depth": 190, "growth_rate": 40}, None),
    ("preact_resnet164", {"unit": "original"}, None),
    ("preact_resnet50", {"unit": "relu_only_preact"}, (3, 128, 128)),
    ("preact_resnet18", {"unit": "bn_after_addition"}, (3, 128, 128)),
    ("resnet50", {"variant": "v1"}, (3, 128, 128)),
    ("resnet_cifar", {"depth": 32, "shortcut": "B"}, None),
    ("resnext29_8x64d", {"cardinality": 4, "bottleneck_width": 16}, None),
    ("wrn", {"depth": 16, "widen_factor": 4}, None),
    ("squeezenet1_1", {"bypass": "complex"}, None),
    ("squeezenet1_0", {"bypass": "simple"}, None),
    ("googlenet", {"aux_logits": False}, None),
    ("googlenet_paper", {"naive": True}, None),
    ("nin_cifar10", {"num_classes": 100}, None),
    ("lenet5_modern", {"pool": "avg", "activation": "tanh"}, None),
    ("vgg_mini", {"batch_norm": False}, None),
    ("alexnet_mini", {"in_channels": 3}, (3, 32, 32)),
    ("efficientnet_mini", {"width_mult": 1.3, "depth_mult": 1.5, "resolution": 20}, (1, 20, 20)),
    ("nas", {"genotype": {"space": "nasnet_a", "normal": [[0, "sep3x3", 1, "identity"], [2, "avg3x3", 0, "sep5x5"]],
                          "reduction": [[0, "max3x3", 1, "sep7x7"], [1, "identity", 2, "sep3x3"]]}}, None),
    ("nas", {"genotype": {"space": "zoph_le", "layers": [
        {"kernel": [3, 3], "filters": 24, "stride": 2, "inputs": []},
        {"kernel": [5, 3], "filters": 36, "stride": 1, "inputs": [0]},
        {"kernel": [3, 3], "filters": 48, "stride": 2, "inputs": [0, 1]}]}}, None),
]


@pytest.mark.parametrize("name,args,input_size", VARIANTS, ids=[f"{n}-{a}" for n, a, _ in VARIANTS])
def test_feature_info_follows_variant_arguments(name, args, input_size):
    model = build_meta(name, **args)
    _check_declared_stages(model, input_size or convatlas.model_card(name).input_size)


def test_vgg_stages_follow_any_configuration():
    from convatlas.models.vgg import VGG

    with torch.device("meta"):
        model = VGG([32, "M", 64, 64, "M", 128], batch_norm=True)
    assert [(i.stage, i.module, i.channels, i.reduction) for i in model.feature_info] == [
        ("conv1", "features.2", 32, 1), ("conv2", "features.9", 64, 2), ("conv3", "features.13", 128, 4),
    ]
    _check_declared_stages(model, (3, 32, 32))


# ---------------------------------------------------------------------------------------------
# Real tensors on small networks: shapes, stopping before the head, gradients, modes.

# name, input side, the head's modules (must not run), a module of the first stage (must learn)
SMALL = [
    ("lenet5", 32, ["f6", "output"], "c1"),
    ("lenet5_modern", 32, ["f6", "output"], "c1"),
    ("resnet_mini", 32, ["fc"], "conv1"),
    ("mobilenet_mini", 32, ["fc"], "conv1"),
    ("googlenet_mini", 32, ["fc"], "conv1"),
    ("vgg_mini", 32, ["classifier"], "features.0"),
    ("resnet18", 64, ["fc"], "conv1"),
    ("vgg16", 64, ["classifier"], "features.0"),
]


@pytest.fixture(scope="module")
def small_models():
    built = {}
    for name, *_ in SMALL:
        torch.manual_seed(0)
        built[name] = convatlas.create_model(name)
    return built


def _expected_shapes(model, input_size):
    report = summary(model, input_size, memory=False)
    shapes = {r.name: r.output_shapes[0] for r in report.rows if r.kind == "module"}
    return {info.stage: shapes[info.module][1:] for info in feature_info(model)}


@pytest.mark.parametrize("name,side,head,first", SMALL, ids=[s[0] for s in SMALL])
def test_extractor_returns_the_declared_maps_and_skips_the_head(small_models, name, side, head, first):
    model = small_models[name]
    channels = convatlas.model_card(name).input_size[0]
    expected = _expected_shapes(model, (channels, side, side))
    ran = []
    handles = [model.get_submodule(h).register_forward_hook(lambda m, a, o, h=h: ran.append(h)) for h in head]
    backbone = FeatureExtractor(model).train()
    x = torch.randn(2, channels, side, side)
    try:
        maps = backbone(x)
    finally:
        for handle in handles:
            handle.remove()
    assert list(maps) == [i.stage for i in model.feature_info]
    for info in model.feature_info:
        assert maps[info.stage].shape == (2, *expected[info.stage]), info
        assert maps[info.stage].shape[1] == info.channels
    assert ran == [], f"the head ran: {ran}"
    assert backbone.out_channels == model.feature_info[-1].channels

    model.zero_grad(set_to_none=True)
    sum(t.square().mean() for t in maps.values()).backward()
    grads = [p.grad for p in model.get_submodule(first).parameters()]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads), "the backbone gets gradients"
    for h in head:
        assert all(p.grad is None for p in model.get_submodule(h).parameters()), f"{h} got a gradient"
    for info in model.feature_info:  # the hooks are gone afterwards
        assert not model.get_submodule(info.module)._forward_hooks


def test_extractor_in_train_and_eval_mode_updates_batch_norm_only_in_training(small_models):
    model = small_models["resnet_mini"]
    backbone = FeatureExtractor(model, ["layer2"])
    x = torch.randn(4, 1, 32, 32)
    bn, after_last = model.layer1[0].bn1, model.layer3[0].bn1
    before, before_after_last = int(bn.num_batches_tracked), int(after_last.num_batches_tracked)
    backbone.train()
    train_maps = backbone(x)
    assert model.training and int(bn.num_batches_tracked) == before + 1
    assert int(after_last.num_batches_tracked) == before_after_last, "layer3 ran after the last requested stage"
    backbone.eval()
    with torch.no_grad():
        eval_maps = backbone(x)
    assert not model.training and int(bn.num_batches_tracked) == before + 1
    assert not torch.allclose(train_maps["layer2"], eval_maps["layer2"])


def test_selected_stages_come_in_forward_order(small_models):
    model = small_models["resnet18"]
    backbone = FeatureExtractor(model, ["layer4", "layer2"])
    assert [i.stage for i in backbone.feature_info] == ["layer2", "layer4"]
    assert backbone.out_channels == 512
    maps = backbone(torch.randn(1, 3, 64, 64))
    assert list(maps) == ["layer2", "layer4"]
    assert maps["layer2"].shape == (1, 128, 8, 8) and maps["layer4"].shape == (1, 512, 2, 2)
    with torch.no_grad():
        again = forward_intermediates(model.eval(), torch.ones(1, 3, 64, 64), ["layer2"])
        assert list(again) == ["layer2"]
        assert torch.equal(again["layer2"], FeatureExtractor(model, "layer2")(torch.ones(1, 3, 64, 64))["layer2"])
    assert model(torch.ones(1, 3, 64, 64)).shape == (1, 1000), "the model itself is unchanged"


def test_extractor_state_dict_is_the_models_under_model(small_models):
    model = small_models["resnet_mini"]
    keys = set(FeatureExtractor(model).state_dict())
    assert keys == {f"model.{k}" for k in model.state_dict()}


def test_unknown_stage_and_undeclared_model_are_clear_errors(small_models):
    with pytest.raises(ValueError, match=r"no stage 'layer9'.*layer1, layer2, layer3, layer4"):
        FeatureExtractor(small_models["resnet_mini"], ["layer9"])
    with pytest.raises(TypeError, match="declares no feature_info"):
        FeatureExtractor(nn.Sequential(nn.Conv2d(3, 8, 3)))


def test_hooks_are_removed_when_the_forward_pass_fails(small_models):
    model = small_models["resnet_mini"]
    with pytest.raises(ValueError, match="1-channel"):
        FeatureExtractor(model)(torch.randn(1, 5, 32, 32))  # wrong channel count
    assert all(not model.get_submodule(i.module)._forward_hooks for i in model.feature_info)


def test_lenet5_maps_are_the_squashed_layers(small_models):
    model = small_models["lenet5"].eval()
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        maps = FeatureExtractor(model)(x)
        f = model.squash
        c1 = f(model.c1(x))
        assert torch.equal(maps["C1"], c1)
        assert torch.equal(maps["S2"], f(model.s2(c1)))
    assert [m.shape[-1] for m in maps.values()] == [28, 14, 10, 5, 1]


def test_an_extractor_over_a_network_that_holds_an_extractor_stops_only_its_own_pass():
    """A head on a backbone extractor, itself wrapped in an extractor that stops at the same
    module: each extractor's stop ends only its own forward pass."""
    from convatlas.models import FeatureExtractor

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = FeatureExtractor(convatlas.create_model("resnet_mini"), stages=["layer2", "layer3"])
            self.score = nn.Conv2d(self.backbone.out_channels, 3, 1)
            self.feature_info = [FeatureInfo("layer3", "backbone.model.layer3", self.backbone.out_channels, 0)]

        def forward(self, x):
            return self.score(self.backbone(x)["layer3"])

    head = Head()
    x = torch.randn(2, 1, 32, 32)
    inner = head.backbone(x)
    outer = FeatureExtractor(head)(x)
    assert torch.equal(outer["layer3"], inner["layer3"])
    assert head(x).shape[:2] == (2, 3)  # the inner extractor still completes inside the head
