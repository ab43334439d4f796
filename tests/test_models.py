"""Checks every registered network the same way (adding a model adds its tests)."""

from __future__ import annotations

import pytest
import torch

import convatlas
from convatlas.registry import InputTooSmallError, get_builder
from reference import PARAMS

ALL = convatlas.list_models(task="classification")


def _meta_model(name: str):
    card = convatlas.model_card(name)
    with torch.device("meta"):
        return get_builder(name)(num_classes=card.default_num_classes)


def test_zoo_is_not_empty():
    assert len(ALL) >= 10


@pytest.mark.parametrize("name", ALL)
def test_card_is_complete(name):
    card = convatlas.model_card(name)
    assert card.name == name
    assert card.paper and card.authors and card.year >= 1989 and card.idea
    assert len(card.input_size) == 3 and card.input_size[0] in (1, 3)
    assert card.dataset in {"imagenet", "cifar10", "cifar100", "mnist"}


@pytest.mark.parametrize("name", ALL)
def test_param_count_matches_reference(name):
    assert name in PARAMS, f"no reference parameter count for {name} in tests/reference/"
    expected, source = PARAMS[name]
    model = _meta_model(name)
    got = sum(p.numel() for p in model.parameters())
    assert got == expected, f"{name}: {got:,} parameters, reference {expected:,} ({source})"


@pytest.mark.parametrize("name", ALL)
def test_forward_backward_at_smallest_input(name):
    card = convatlas.model_card(name)
    side = convatlas.min_input_size(name)
    torch.manual_seed(0)
    model = convatlas.create_model(name, num_classes=7)
    model.train()
    x = torch.randn(2, card.input_size[0], side, side)
    out = model(x)
    if card.aux_logits:
        assert isinstance(out, tuple) and len(out) >= 2, "aux heads return (logits, *aux) in training"
        for o in out:
            assert o.shape == (2, 7)
        loss = sum(o.square().mean() for o in out)
    else:
        assert isinstance(out, torch.Tensor) and out.shape == (2, 7)
        loss = out.square().mean()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads), "every trainable parameter gets a gradient"
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 7)
    assert torch.isfinite(out).all()
    # One pixel smaller is refused with a message naming the model and the minimum size.
    if side > 1:
        with pytest.raises(InputTooSmallError, match=rf"{name} needs input images of at least {side}x{side}"):
            model(torch.randn(1, card.input_size[0], side - 1, side - 1))


@pytest.mark.parametrize("name", ALL)
def test_equal_seeds_give_equal_weights(name):
    states = []
    for _ in range(2):
        torch.manual_seed(1234)
        states.append(convatlas.create_model(name).state_dict())
    assert states[0].keys() == states[1].keys()
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key


@pytest.mark.parametrize("name", ALL)
def test_default_classes_follow_dataset(name):
    card = convatlas.model_card(name)
    model = _meta_model(name)
    with torch.no_grad():
        out = model.eval()(torch.empty(1, *card.input_size, device="meta"))
    assert out.shape == (1, card.default_num_classes)
