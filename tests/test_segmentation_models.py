"""Checks every registered segmentation network the same way (adding a model adds its tests).

The contract: ``forward(x: (N, C, H, W))`` returns logits ``(N, num_classes, H', W')`` with
``H' = H`` unless the card says otherwise (``card.extra["output_size"]``: the paper's valid
U-Net); the card names its paper, task, classes and exact parameter count; the analysis traces
it completely with the MACs PyTorch counts; it declares its encoder's feature maps. The big
paper networks are only ever built and run on the meta device here; the ``*_mini`` networks also
train one real step.
"""

from __future__ import annotations

import functools
import inspect

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import convatlas
from convatlas.analysis import summary
from convatlas.layers import UPSAMPLE_KINDS, Upsample2x
from convatlas.models import FeatureExtractor, feature_info
from convatlas.registry import build_meta, get_builder

SEG = convatlas.list_models(task="segmentation")
MINIS = [n for n in SEG if n.endswith("_mini")]


@functools.cache
def _meta(name: str):
    """The network on the meta device (no memory, no initialisation), built once per test run."""
    return build_meta(name)


def _expected_hw(name: str) -> tuple[int, int]:
    card = convatlas.model_card(name)
    return tuple(card.extra.get("output_size", card.input_size[1:]))


def _takes_our_upsample(name: str) -> bool:
    """Builders that offer the encoder-decoder family's ``upsample=`` switch (its default is one
    of :data:`convatlas.layers.UPSAMPLE_KINDS`) must take every kind of it."""
    parameter = inspect.signature(get_builder(name)).parameters.get("upsample")
    return parameter is not None and parameter.default in UPSAMPLE_KINDS


def test_segmentation_zoo_has_the_encoder_decoders():
    assert {"unet", "unet_padded", "unet_mini", "segnet", "segnet_mini", "deconvnet", "deconvnet_mini"} <= set(SEG)
    assert all(convatlas.model_card(n).task == "segmentation" for n in SEG)
    assert not set(SEG) & set(convatlas.list_models(task="classification"))


@pytest.mark.parametrize("name", SEG)
def test_card_is_complete(name):
    card = convatlas.model_card(name)
    assert card.name == name and card.task == "segmentation"
    assert card.family and card.paper and card.authors and card.idea and card.year >= 2014
    assert card.arxiv and len(card.arxiv.split(".")) == 2
    assert len(card.input_size) == 3 and card.input_size[0] in (1, 3)
    assert isinstance(card.num_classes, int) and card.num_classes >= 2
    assert card.default_num_classes == card.num_classes
    assert card.params is not None and isinstance(card.params.value, int) and card.params.value > 0
    assert card.params.source
    if card.miou is not None:
        assert 0 < card.miou.value <= 100 and card.miou.source
    if name.endswith("_mini"):
        assert card.dataset == "digit-scenes" and card.num_classes == 11 and card.input_size == (1, 64, 64)
        assert "not in the paper" in card.notes


@pytest.mark.parametrize("name", SEG)
def test_meta_build_output_shape_and_params(name):
    card = convatlas.model_card(name)
    model = _meta(name)
    assert sum(p.numel() for p in model.parameters()) == card.params.value
    with torch.no_grad():
        out = model(torch.empty(2, *card.input_size, device="meta"))
    assert isinstance(out, torch.Tensor)
    assert tuple(out.shape) == (2, card.num_classes, *_expected_hw(name))


@pytest.mark.parametrize("name", SEG)
def test_summary_complete_and_macs_equal_half_flop_counter(name):
    card = convatlas.model_card(name)
    model = _meta(name)
    report = summary(model, card.input_size, memory=False)
    assert report.complete, report.issues
    assert report.total_params == card.params.value
    with FlopCounterMode(display=False) as counter:
        model(torch.empty(1, *card.input_size, device="meta"))
    assert report.total_macs > 0
    assert 2 * report.total_macs == counter.get_total_flops()


@pytest.mark.parametrize("name", SEG)
def test_feature_info_is_where_it_says(name):
    """Each declared stage is one module call whose output has the declared channels and (where
    the tracer can follow its receptive field) the declared accumulated stride, the tracer's
    jump; the extractor returns those maps."""
    card = convatlas.model_card(name)
    model = _meta(name)
    infos = feature_info(model)
    assert [i.reduction for i in infos] == sorted(i.reduction for i in infos)
    report = summary(model, card.input_size, memory=False)
    for info in infos:
        rows = [r for r in report.rows if r.name == info.module and r.kind == "module"]
        assert len(rows) == 1, f"{info}: its module runs {len(rows)} times"
        assert rows[0].output_shapes[0][1] == info.channels
        if rows[0].field == "local":  # the jump is defined where the map's receptive field is local
            assert rows[0].jump == (info.reduction, info.reduction)
    with torch.no_grad():
        maps = FeatureExtractor(model)(torch.empty(1, *card.input_size, device="meta"))
    assert list(maps) == [i.stage for i in infos]
    assert [m.shape[1] for m in maps.values()] == [i.channels for i in infos]


@pytest.mark.parametrize("name", MINIS)
def test_mini_trains_one_real_step(name):
    card = convatlas.model_card(name)
    torch.manual_seed(0)
    model = convatlas.create_model(name)
    model.train()
    x = torch.randn(2, *card.input_size)
    target = torch.randint(0, card.num_classes, (2, *card.input_size[1:]))
    logits = model(x)
    assert logits.shape == (2, card.num_classes, *card.input_size[1:])
    loss = F.cross_entropy(logits, target)
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    optimiser.step()
    with torch.no_grad():
        assert F.cross_entropy(model(x), target) < loss  # one step on the same batch lowers its loss


_UPSAMPLE_CASES = [(n, k) for n in MINIS if _takes_our_upsample(n) for k in UPSAMPLE_KINDS]


def test_encoder_decoder_minis_take_the_upsample_switch():
    assert {n for n, _ in _UPSAMPLE_CASES} >= {"unet_mini", "segnet_mini", "deconvnet_mini"}


@pytest.mark.parametrize("name,kind", _UPSAMPLE_CASES)
def test_mini_every_upsample_kind_gives_the_input_size(name, kind):
    card = convatlas.model_card(name)
    torch.manual_seed(0)
    model = convatlas.create_model(name, upsample=kind).eval()
    assert all(u.kind == kind for u in model.modules() if isinstance(u, Upsample2x))
    channels, h, w = card.input_size
    with torch.no_grad():
        for shape in ((1, channels, h, w), (1, channels, h + 3, w + 7)):  # and sizes a pooling makes odd
            out = model(torch.randn(*shape))
            assert out.shape == (1, card.num_classes, *shape[2:])
            assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", MINIS + ["fullres_fcn", "unet"])
def test_the_summary_command_shows_receptive_field_and_output_geometry(name, capsys):
    from convatlas.cli import main

    card = convatlas.model_card(name)
    assert main(["summary", name]) == 0
    out = capsys.readouterr().out
    report = summary(_meta(name), card.input_size, memory=False)
    final = "x".join(map(str, (1, card.num_classes, *_expected_hw(name))))
    assert final in out  # the class map's shape: the input's size (the paper's U-Net: 388x388)
    assert report.receptive_field is not None
    side = {f"{v:g}" if isinstance(v, float) else str(v) for v in report.receptive_field}
    assert f"largest receptive field: {'x'.join(sorted(side)) if len(side) > 1 else side.pop()} px" in out
    assert f"in {report.receptive_field_layer or 'the model'}; output:" in out
