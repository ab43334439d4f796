from __future__ import annotations

import pytest
import torch

import convatlas
from convatlas.registry import UnknownModelError


def test_unknown_name_suggests_close_names():
    name = convatlas.list_models()[0]
    typo = name[:-1] + ("x" if name[-1] != "x" else "y")
    with pytest.raises(UnknownModelError, match="Did you mean") as info:
        convatlas.create_model(typo)
    assert name in str(info.value)


def test_unknown_variant_argument_names_the_allowed_ones():
    name = convatlas.list_models()[0]
    with pytest.raises(ValueError, match="does not take 'no_such_arg'"):
        convatlas.create_model(name, no_such_arg=3)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_num_classes_must_be_positive_int(bad):
    with pytest.raises(ValueError, match="num_classes"):
        convatlas.create_model(convatlas.list_models()[0], num_classes=bad)


def test_list_models_pattern_and_card_roundtrip():
    names = convatlas.list_models("*")
    assert names == sorted(names)
    for name in names:
        assert convatlas.model_card(name).name == name
    assert convatlas.list_models("no_such_family_*") == []


def test_model_records_how_it_was_built():
    name = convatlas.list_models()[0]
    with torch.device("meta"):
        model = convatlas.create_model(name, num_classes=3)
    assert model.model_name == name and model.num_classes == 3 and model.variant_args == {}


def test_input_size_guard_leaves_the_random_stream_alone():
    """The first forward at a new input size builds the network on meta to check the size; that
    must not advance the user's CPU generator (dropout masks, augmentations would change)."""
    model = convatlas.create_model("googlenet").eval()
    torch.manual_seed(3)
    before = torch.get_rng_state()
    with torch.no_grad():
        model(torch.zeros(1, 3, 96, 96))
    assert torch.equal(torch.get_rng_state(), before)
