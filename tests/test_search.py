"""Architecture search, without training: spaces, genotypes and their networks, strategies."""

from __future__ import annotations

import itertools
import math
import random

import pytest
import torch
import yaml
from torch import nn

import convatlas
from convatlas.search import GenotypeError, build_network, get_space, list_spaces, load_genotype, save_genotype
from convatlas.search.charts import best_so_far, pareto_front
from convatlas.search.network import CellNet, LayerwiseNet
from convatlas.search.runner import reward_of
from convatlas.search.strategies import BudgetError, Controller, RandomSearch, RegularizedEvolution, Reinforce, make_strategy


# --- spaces -----------------------------------------------------------------------------------

def test_the_mini_space_has_512_members_as_its_grammar_says():
    space = get_space("mini")
    # per layer: kernel {3,5} x filters {24,48}; anchors: layer 1 from 0, layer 2 from 0 and 1
    assert space.size == (2 * 2) ** 3 * 2 ** (0 + 1 + 2) == 512
    assert len(set(space.enumerate())) == 512
    assert [d.name for d in space.decisions] == [
        "layer0.kernel", "layer0.filters", "layer1.kernel", "layer1.filters", "layer1.from0",
        "layer2.kernel", "layer2.filters", "layer2.from0", "layer2.from1"]


def test_zoph_le_space_per_layer_tokens_follow_the_paper():
    space = get_space("zoph_le", layers=4, strides=(1, 2, 3))
    first = [d for d in space.decisions if d.group == 0]
    assert [(d.name, d.options) for d in first] == [
        ("layer0.kernel_h", (1, 3, 5, 7)), ("layer0.kernel_w", (1, 3, 5, 7)),
        ("layer0.filters", (24, 36, 48, 64)), ("layer0.stride", (1, 2, 3))]
    anchors = [(d.group, d.anchor) for d in space.decisions if d.anchor is not None]
    assert anchors == [(i, j) for i in range(4) for j in range(i)]
    assert space.size == (4 * 4 * 4 * 3) ** 4 * 2 ** 6
    # with the stride fixed (the paper's first experiment) there is no stride token
    assert not any(d.name.endswith("stride") for d in get_space("zoph_le").decisions)


@pytest.mark.parametrize("name", ["mini", "zoph_le", "nasnet_a"])
def test_random_points_round_trip_through_their_genotype_and_a_file(name, tmp_path):
    space = get_space(name)
    rng = random.Random(7)
    for k in range(5):
        point = space.sample(rng)
        genotype = space.genotype(point)
        path = save_genotype(genotype, tmp_path / f"g{k}.{'json' if k % 2 else 'yaml'}")
        assert space.point(load_genotype(path)) == point


def _forward_hand(net: LayerwiseNet, x: torch.Tensor) -> torch.Tensor:
    """Zoph & Le's wiring, spelled out: concatenation in depth, no input -> the image, dangling
    outputs -> the classifier, smaller maps zero-padded (centred) to the largest."""
    def cat(maps):
        h = max(m.shape[-2] for m in maps)
        w = max(m.shape[-1] for m in maps)
        padded = []
        for m in maps:
            canvas = torch.zeros(m.shape[0], m.shape[1], h, w)
            top, left = (h - m.shape[-2]) // 2, (w - m.shape[-1]) // 2
            canvas[:, :, top:top + m.shape[-2], left:left + m.shape[-1]] = m
            padded.append(canvas)
        return torch.cat(padded, 1)

    outs = []
    for i, layer in enumerate(net.genotype["layers"]):
        inp = cat([outs[j] for j in layer["inputs"]]) if layer["inputs"] else x
        outs.append(net.layers[i](inp))
    used = {j for layer in net.genotype["layers"] for j in layer["inputs"]}
    hidden = cat([o for i, o in enumerate(outs) if i not in used])
    return net.fc(hidden.mean((2, 3)))


def test_layerwise_networks_follow_the_anchor_rules_with_strides_and_padding(seed):
    space = get_space("zoph_le", layers=5, strides=(1, 2, 3))
    rng = random.Random(3)
    for _ in range(6):
        genotype = space.genotype(space.sample(rng))
        net = build_network(genotype).eval()
        x = torch.randn(2, 1, 28, 28)
        torch.testing.assert_close(net(x), _forward_hand(net, x))
        layers = genotype["layers"]
        used = {j for layer in layers for j in layer["inputs"]}
        assert net.fc.in_features == sum(layer["filters"] for i, layer in enumerate(layers) if i not in used)
        for layer, seq in zip(layers, net.layers):
            conv = seq[0]
            want_in = sum(layers[j]["filters"] for j in layer["inputs"]) if layer["inputs"] else 1
            assert (conv.in_channels, conv.out_channels) == (want_in, layer["filters"])
            assert conv.kernel_size == tuple(layer["kernel"]) and conv.stride == (layer["stride"],) * 2


def test_a_layer_with_no_input_takes_the_image_and_unused_layers_reach_the_classifier():
    genotype = {"space": "mini", "layers": [
        {"kernel": [3, 3], "filters": 24, "inputs": []},
        {"kernel": [5, 5], "filters": 48, "inputs": []},      # takes the image too
        {"kernel": [3, 3], "filters": 24, "inputs": [1]}]}    # layer 0 is left dangling
    net = build_network(genotype, in_channels=3)
    assert net.layers[1][0].in_channels == 3
    assert net.outputs == [0, 2] and net.fc.in_features == 24 + 24


def _conv_macs(genotype, side):
    """Hand count of a stride-1 layer-wise network: each convolution H*W*kh*kw*Cin*Cout, the FC
    in*out."""
    widths, total = [], 0
    for layer in genotype["layers"]:
        c_in = sum(widths[j] for j in layer["inputs"]) if layer["inputs"] else 1
        kh, kw = layer["kernel"]
        total += side * side * kh * kw * c_in * layer["filters"]
        widths.append(layer["filters"])
    used = {j for layer in genotype["layers"] for j in layer["inputs"]}
    return total + sum(w for i, w in enumerate(widths) if i not in used) * 10


@pytest.mark.parametrize("name", ["mini", "zoph_le", "nasnet_a"])
def test_random_genotypes_build_run_and_trace(name, seed):
    space = get_space(name)
    rng = random.Random(11)
    for _ in range(3):
        genotype = space.genotype(space.sample(rng))
        net = convatlas.create_model("nas", genotype=genotype).eval()
        x = torch.randn(2, 1, 14, 14)
        y = net(x)
        assert y.shape == (2, 10) and torch.isfinite(y).all()
        traced = torch.export.export(net, (x,)).module()  # the graph at this input size
        torch.testing.assert_close(traced(x), y)
        x2 = torch.randn(2, 1, 14, 14)
        torch.testing.assert_close(traced(x2), net(x2))
        report = convatlas.summary(net, (1, 14, 14))
        assert report.complete
        assert report.total_params == sum(p.numel() for p in net.parameters())
        if name == "mini":  # stride 1 throughout: the hand count holds exactly
            assert report.total_macs == _conv_macs(genotype, 14)


def test_cell_networks_concatenate_the_blocks_no_block_takes():
    space = get_space("nasnet_a")
    genotype = space.genotype(space.sample(random.Random(5)))
    net = build_network(genotype)
    assert isinstance(net, CellNet)
    for k, cell in enumerate(net.cells):  # normal, reduction, normal, reduction, normal
        blocks = genotype["reduction" if k in (1, 3) else "normal"]
        taken = {b[k] for b in blocks for k in (0, 2)}
        assert cell.concat == [i for i in range(2, 2 + len(blocks)) if i not in taken]
    # normal, reduction, normal, reduction, normal with one cell per stack; filters double
    assert len(net.cells) == 5
    assert net(torch.randn(1, 1, 28, 28)).shape == (1, 10)


def test_the_zoo_nasnet_a_cells_are_members_of_the_cell_space():
    from convatlas.models.nasnet import NORMAL_CELL, REDUCTION_CELL

    space = get_space("nasnet_a")
    genotype = {"space": "nasnet_a", "normal": [list(b) for b in NORMAL_CELL],
                "reduction": [list(b) for b in REDUCTION_CELL]}
    point = space.point(genotype)
    assert space.genotype(point)["normal"] == genotype["normal"]
    assert build_network(genotype)(torch.randn(1, 1, 16, 16)).shape == (1, 10)


def test_create_model_nas_from_a_file_and_its_default(tmp_path):
    space = get_space("mini")
    genotype = space.genotype(space.sample(random.Random(2)))
    path = save_genotype(genotype, tmp_path / "best.yaml")
    net = convatlas.create_model("nas", genotype=str(path), num_classes=7)
    assert net.fc.out_features == 7 and net.variant_args["genotype"] == str(path)
    default = convatlas.create_model("nas")
    assert [layer["inputs"] for layer in default.genotype["layers"]] == [[], [0], [1]]
    assert convatlas.model_card("nas").family == "nas"


# --- bad genotypes ------------------------------------------------------------------------------

@pytest.mark.parametrize("change, field", [
    (lambda g: g["layers"][1].update(filters="many"), "layers[1].filters"),
    (lambda g: g["layers"][2].update(inputs=[2]), "layers[2].inputs"),
    (lambda g: g["layers"][0].update(kernel=[3]), "layers[0].kernel"),
    (lambda g: g["layers"][0].pop("inputs"), "layers[0].inputs is missing"),
    (lambda g: g["layers"][0].update(colour="red"), "unknown field(s) colour"),
    (lambda g: g.update(space="minni"), "did you mean mini"),
    (lambda g: g.pop("layers"), "layers is missing"),
])
def test_a_genotype_that_does_not_decode_names_its_field(change, field, tmp_path):
    genotype = get_space("mini").genotype((0,) * 9)
    change(genotype)
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(genotype))
    with pytest.raises(GenotypeError, match=field.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)")) as info:
        load_genotype(path)
    assert str(path) in str(info.value)


def test_cell_genotype_errors_name_the_block_and_suggest_the_operation():
    genotype = get_space("nasnet_a").genotype((0,) * 40)
    genotype["normal"][3][1] = "sep3x4"
    with pytest.raises(GenotypeError, match=r"normal\[3\] left op: 'sep3x4'.*did you mean sep3x3"):
        load_genotype(genotype)
    genotype = get_space("nasnet_a").genotype((0,) * 40)
    genotype["reduction"][0][2] = 4
    with pytest.raises(GenotypeError, match=r"reduction\[0\] right input: expected a hidden state 0..1"):
        load_genotype(genotype)


def test_a_genotype_outside_the_spaces_options_builds_but_is_not_a_point():
    genotype = get_space("mini").genotype((0,) * 9)
    genotype["layers"][1]["filters"] = 30
    assert build_network(genotype).layers[1][0].out_channels == 30
    with pytest.raises(GenotypeError, match=r"layers\[1\].filters: 30 is not one of this space's options \(24, 48\)"):
        get_space("mini").point(genotype)


def test_unreadable_and_missing_genotype_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("layers: [unclosed")
    with pytest.raises(GenotypeError, match="not a YAML or JSON file"):
        load_genotype(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_genotype(tmp_path / "missing.yaml")


def test_unknown_space_suggests_close_names():
    with pytest.raises(KeyError, match="did you mean nasnet_a"):
        get_space("nasnet")
    with pytest.raises(ValueError, match="no option 'depth'"):
        get_space("mini", depth=4)
    assert list_spaces() == ["mini", "nasnet_a", "zoph_le"]


# --- strategies ---------------------------------------------------------------------------------

def test_unknown_strategy_suggests_and_bad_options_are_named():
    space = get_space("mini")
    with pytest.raises(KeyError, match="did you mean evolution"):
        make_strategy("evolve", space)
    with pytest.raises(ValueError, match="takes no population"):
        make_strategy("random", space, population=4)


def test_random_search_is_uniform_and_replays_from_its_seed():
    space = get_space("mini")
    a, b = RandomSearch(space, 3), RandomSearch(space, 3)
    points = [a.ask() for _ in range(4000)]
    assert points[:50] == [b.ask() for _ in range(50)]
    counts = [sum(p[i] for p in points) / len(points) for i in range(len(space.decisions))]
    assert all(abs(c - 0.5) < 0.04 for c in counts)  # every decision binary here: mean 1/2


def test_evolution_keeps_its_population_and_removes_the_oldest():
    space = get_space("mini")
    evo = RegularizedEvolution(space, 0, population=6, sample_size=3)
    told = []
    for k in range(20):
        point = evo.ask()
        if k >= 6:  # a child: one decision away from some member
            assert any(sum(a != b for a, b in zip(point, m)) == 1 for m, _ in evo.population)
        reward = random.Random(k).random()
        evo.tell(point, reward)
        told.append((point, reward))
        assert len(evo.population) == min(k + 1, 6)
        assert list(evo.population) == told[-6:]  # the newest six: the oldest left first
    assert evo.removed == [p for p, _ in told[:14]]


def test_evolution_takes_the_best_of_its_sample_as_the_parent():
    space = get_space("mini")
    evo = RegularizedEvolution(space, 1, population=4, sample_size=4)
    members = [tuple([v] * 9) for v in (0, 1)] + [(0, 1) * 4 + (0,), (1, 0) * 4 + (1,)]
    for m, r in zip(members, (0.1, 0.9, 0.2, 0.3)):
        evo.tell(m, r)
    state = evo.rng.getstate()
    draws = [evo.rng.randrange(4) for _ in range(4)]
    evo.rng.setstate(state)
    child = evo.ask()
    parent = max((members[i] for i in draws), key=lambda m: dict(zip(members, (0.1, 0.9, 0.2, 0.3)))[m])
    assert sum(a != b for a, b in zip(child, parent)) == 1


def test_evolution_budget_too_small_is_a_clear_error():
    evo = RegularizedEvolution(get_space("mini"), population=20)
    with pytest.raises(BudgetError, match="first 20 trials filling its population"):
        evo.check_budget(20)
    evo.check_budget(21)


def test_the_controller_is_a_distribution_over_every_point_of_the_space():
    space = get_space("mini")
    controller = Controller(space)
    with torch.no_grad():
        total = sum(math.exp(float(controller.run(p)[1])) for p in space.enumerate())
    assert total == pytest.approx(1.0, abs=1e-5)
    # Zoph & Le: 2 LSTM layers of 35 units, weights drawn from U(-0.08, 0.08)
    assert (controller.lstm.num_layers, controller.lstm.hidden_size) == (2, 35)
    assert all(float(p.detach().abs().max()) <= 0.08 for p in controller.parameters())


def test_the_controller_samples_its_own_probabilities():
    space = get_space("mini", layers=2)
    strategy = Reinforce(space, 0)
    n = 3000
    samples = [strategy.ask() for _ in range(n)]
    for point in list(space.enumerate())[:8]:
        expected = math.exp(strategy.log_prob(point))
        observed = samples.count(point) / n
        assert abs(observed - expected) < 4 * math.sqrt(expected * (1 - expected) / n) + 1e-3


@pytest.mark.parametrize("reward", [0.9, 0.1])
def test_reinforce_moves_the_policy_with_the_sign_of_r_minus_b(reward):
    space = get_space("mini")
    strategy = Reinforce(space, 0, batch=1, lr=0.01)
    strategy.baseline = 0.5
    point = strategy.ask()
    before = strategy.log_prob(point)
    # the gradient of the loss on log P is -(R - b): an ascent step for R > b
    _, log_p, _ = strategy.controller.run(point)
    strategy.controller.zero_grad()
    (-(reward - 0.5) * log_p).backward()
    grads = [p.grad.clone() for p in strategy.controller.parameters() if p.grad is not None]
    strategy.controller.zero_grad()
    log_p2 = strategy.controller.run(point)[1]
    log_p2.backward()
    dot = sum(float((g * p.grad).sum()) for g, p in zip(grads, [p for p in strategy.controller.parameters() if p.grad is not None]))
    assert math.copysign(1, -dot) == math.copysign(1, reward - 0.5)
    strategy.tell(point, reward)
    after = strategy.log_prob(point)
    assert (after > before) == (reward > 0.5)


def test_reinforce_baseline_is_an_exponential_moving_average():
    space = get_space("mini")
    strategy = Reinforce(space, 0, batch=2, baseline_decay=0.95)
    rewards = [0.3, 0.5, 0.9, 0.2, 0.6, 0.7]
    for r in rewards:
        strategy.tell(strategy.ask(), r)
    b = (0.3 + 0.5) / 2  # starts at the first batch's mean
    expected_before = []
    for k in range(0, 6, 2):
        expected_before.append(b)
        for r in rewards[k:k + 2]:
            b = 0.95 * b + 0.05 * r
    assert strategy.baseline == pytest.approx(b)
    assert [u["baseline"] for u in strategy.history] == pytest.approx(expected_before)
    assert [u["mean_reward"] for u in strategy.history] == pytest.approx([0.4, 0.55, 0.65])


def test_reinforce_learns_a_simple_reward():
    """A reward that favours 48 filters everywhere: the controller's probability of it rises."""
    space = get_space("mini")
    strategy = Reinforce(space, 0, batch=4, lr=0.05)
    target = [i for i, d in enumerate(space.decisions) if d.name.endswith("filters")]
    wide = lambda p: sum(p[i] for i in target) / len(target)  # noqa: E731
    first = [wide(strategy.ask()) for _ in range(200)]
    for _ in range(160):
        point = strategy.ask()
        strategy.tell(point, wide(point))
    last = [wide(strategy.ask()) for _ in range(200)]
    assert sum(last) / 200 > sum(first) / 200 + 0.2
    assert strategy.history[-1]["entropy"] < strategy.history[0]["entropy"]


# --- objective and charts -------------------------------------------------------------------------

def test_rewards_accuracy_cubed_and_mnasnet():
    m = {"val_acc": 0.9, "macs": 2e6}
    assert reward_of(m) == 0.9
    assert reward_of(m, power=3) == pytest.approx(0.729)
    assert reward_of(m, "mnas", target=1e6) == pytest.approx(0.9 * 2 ** -0.07)
    assert reward_of(m, "mnas", target=4e6) > 0.9  # under the target: a bonus, MnasNet's soft constraint


def test_pareto_front_matches_brute_force():
    rng = random.Random(0)
    points = [(rng.randint(0, 20), rng.randint(0, 20)) for _ in range(60)]
    front = set(pareto_front(points))
    dominated = {i for i, (c, s) in enumerate(points)
                 if any((c2 <= c and s2 > s) or (c2 < c and s2 >= s) for c2, s2 in points)}
    # duplicates of a front point: the first kept
    assert front == {i for i in range(len(points)) if i not in dominated and points.index(points[i]) == i}
    assert best_so_far([0.1, 0.5, 0.3, 0.7]) == [0.1, 0.5, 0.5, 0.7]
