"""The tabulated benchmark shipped as package data, and strategies run against it by lookup."""

from __future__ import annotations

import numpy as np
import pytest

from convatlas.search.proxy import ProxyConfig, evaluate_genotype
from convatlas.search.table import list_tables, load_table, regret_table, simulate


def test_the_mini_digits_table_covers_the_mini_space():
    assert "mini_digits" in list_tables()
    table = load_table("mini_digits")
    assert len(table) == table.space.size == 512
    assert set(table.rows) == set(table.space.enumerate())
    assert table.proxy == {k: v for k, v in ProxyConfig().to_dict().items() if k in table.proxy}
    accs = np.asarray([r["val_acc"] for r in table.rows.values()])
    assert 0.9 < table.best < 1 and accs.min() > 0.1  # every member learned something
    # the cost columns are the analysis' counts for each member's network
    from convatlas.search.network import build_network
    from convatlas.search.proxy import cost

    for point in list(table.rows)[::97]:
        macs, params = cost(build_network(table.space.genotype(point)), 1, 14)
        assert (table.lookup(point)["macs"], table.lookup(point)["params"]) == (macs, params)


@pytest.mark.slow
def test_a_member_trained_again_scores_as_the_table_says(tmp_path):
    table = load_table("mini_digits")
    index, point = next((i, p) for i, p in enumerate(table.space.enumerate()) if i == 37)
    m = evaluate_genotype(table.space.genotype(point), ProxyConfig(), tmp_path / "run", seed=index)
    # the same seed and two fixed threads: the same numbers on this kind of machine (bit for bit
    # where the CPU kernels are the same; a stated tolerance for another CPU)
    assert m["val_acc"] == pytest.approx(table.lookup(point)["val_acc"], abs=0.03)


def test_simulated_regret_falls_to_zero_when_the_whole_space_is_visited():
    table = load_table("mini_digits")
    regret = simulate(table, "random", 3000, seed=0)
    assert all(a >= b >= 0 for a, b in zip(regret, regret[1:]))
    assert regret[-1] == 0  # 3,000 uniform draws from 512 members find the best (chance of missing: ~3e-3)
    # evolution cannot do worse than its random first population on the same draws
    assert simulate(table, "evolution", 20, seed=0, population=20) == simulate(table, "random", 20, seed=0)


def test_regret_table_summarises_every_seed():
    table = load_table("mini_digits")
    result = regret_table(table, {"random": {}}, budgets=(5, 50), seeds=20)["random"]
    curves = np.asarray(result["curves"])
    assert curves.shape == (20, 50)
    assert result["median"][50] == pytest.approx(float(np.median(curves[:, 49])))
    assert result["median"][5] >= result["median"][50]
