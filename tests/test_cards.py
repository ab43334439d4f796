"""What the cards say about feeding a network and training it: preprocessing that matches the
reference implementations' evaluation transforms, recipes, auxiliary-loss weights."""

from __future__ import annotations

import math

import pytest
import torchvision

import convatlas
from convatlas.registry import Preprocessing

ALL = convatlas.list_models(task="classification")
# Cards whose preprocessing is that of their reference weights, not their dataset's default.
CUSTOM = {f"efficientnet_b{i}" for i in range(8)} | {
    "efficientnet", "inception_v4", "inception_resnet_v2", "nasnet_a_mobile", "nasnet_a_large",
}


@pytest.mark.parametrize("name", ALL)
def test_preprocessing_is_the_datasets_unless_the_reference_differs(name):
    card = convatlas.model_card(name)
    if name not in CUSTOM:
        assert card.preprocessing == Preprocessing.for_dataset(card.dataset, card.input_size[0])
    assert len(card.preprocessing.mean) == card.input_size[0]


@pytest.mark.parametrize("i", range(8))
def test_efficientnet_preprocessing_is_torchvisions(i):
    card = convatlas.model_card(f"efficientnet_b{i}")
    transforms = getattr(torchvision.models, f"EfficientNet_B{i}_Weights").IMAGENET1K_V1.transforms()
    (resize,), (crop,) = transforms.resize_size, transforms.crop_size
    assert card.preprocessing.crop_fraction == pytest.approx(crop / resize)
    assert card.preprocessing.resize_to(crop) == resize
    assert card.preprocessing.interpolation == transforms.interpolation.value
    assert card.preprocessing.mean == tuple(transforms.mean) and card.preprocessing.std == tuple(transforms.std)


@pytest.mark.parametrize("name,timm_name", [
    ("inception_v4", "inception_v4"), ("inception_resnet_v2", "inception_resnet_v2"), ("nasnet_a_large", "nasnetalarge"),
])
def test_tf_slim_ports_are_fed_as_timm_feeds_them(name, timm_name):
    timm = pytest.importorskip("timm")
    cfg = timm.models.get_pretrained_cfg(timm_name)
    card = convatlas.model_card(name)
    side = card.input_size[1]
    assert side == cfg.input_size[1]
    assert card.preprocessing.resize_to(side) == math.floor(side / cfg.crop_pct)  # timm's scale size
    assert card.preprocessing.mean == cfg.mean and card.preprocessing.std == cfg.std
    assert card.preprocessing.interpolation == cfg.interpolation


def test_recipes_on_the_cards():
    card = convatlas.model_card
    assert card("lenet5").recipe == card("lenet5_modern").recipe == "lenet5_digits"
    assert card("lenet5").recipes == ("lenet5_mnist",)
    for name in ("alexnet_mini", "vgg_mini", "resnet_mini", "mobilenet_mini", "googlenet_mini"):
        assert card(name).recipe == "mini_digits", name
    for name, recipe in [("resnet20", "resnet20_cifar10"), ("resnet56", "resnet56_cifar10"),
                         ("resnet110", "resnet110_cifar10"), ("wrn_28_10", "wrn28_10_cifar10"),
                         ("densenet_bc100_k12", "densenet_bc100_cifar10")]:
        assert card(name).recipes == (recipe,), name


def test_auxiliary_heads_and_their_loss_weight():
    for name in ALL:
        card = convatlas.model_card(name)
        assert (card.aux_weight is not None) == card.aux_logits, name
    assert convatlas.model_card("googlenet").aux_weight == convatlas.model_card("googlenet_paper").aux_weight == 0.3
    assert not hasattr(convatlas.create_model("googlenet_mini"), "aux1")  # no auxiliary heads, no weight


def test_googlenet_transform_input_uses_the_cards_statistics():
    import torch

    model = convatlas.create_model("googlenet", transform_input=True)
    pre = convatlas.model_card("googlenet").preprocessing
    x = torch.rand(1, 3, 8, 8)
    normalised = (x - torch.tensor(pre.mean).view(1, 3, 1, 1)) / torch.tensor(pre.std).view(1, 3, 1, 1)
    assert torch.allclose(model._transform(normalised), (x - 0.5) / 0.5, atol=1e-6)
