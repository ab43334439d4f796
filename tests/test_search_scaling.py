"""EfficientNet's compound-scaling search: the grid, the measured-MAC matching, the released
coefficients against integer phi, and a small live run."""

from __future__ import annotations

import json
import math

import pytest

import convatlas
from convatlas.models.efficientnet import ALPHA, BETA, GAMMA, RELEASED_SCALING, compound_scaling
from convatlas.search.scaling import compound_grid, confidence_interval, match_macs, run_scale, scaled


def test_the_grid_has_108_candidates_and_the_papers_point():
    grid = compound_grid()
    assert len(grid) == 108 and len(set(grid)) == 108
    assert (1.2, 1.1, 1.15) in grid and 1.2 * 1.1 ** 2 * 1.15 ** 2 == pytest.approx(1.920, abs=5e-4)
    for a, b, g in grid:
        assert 1 <= a <= 2 and 1 <= b <= 1.5 and 1 <= g <= 1.5
        assert abs(a * b * b * g * g - 2) < 0.1 + 1e-9
        assert all(abs(round(v / 0.05) * 0.05 - v) < 1e-9 for v in (a, b, g))
    assert (1.9, 1.0, 1.0) not in grid  # exactly 5% off: the bound is strict
    assert len(compound_grid(tolerance=0.10)) > 108


def test_released_b1_to_b7_do_not_follow_integer_phi_and_the_zoo_builds_both():
    implied = {b: RELEASED_SCALING[b].implied_phi() for b in range(8)}
    assert all(abs(p - 1.0) < 0.1 for p in implied[2])  # B2 is the phi = 1 point (resolution 260 vs 258)
    for b in range(2, 8):  # B(n) is not phi = n: some dimension sits well below n
        assert min(implied[b]) < b - 0.6
    for b in range(4, 8):  # and from B4 on the dimensions were rounded separately: they disagree
        assert max(implied[b]) - min(implied[b]) > 0.5
    low, high = min(implied[7]), max(implied[7])
    assert 6.2 <= low < high <= 7.3 and high - low > 1  # B7: three dimensions, three different phi
    b7, phi7 = RELEASED_SCALING[7], compound_scaling(7)
    assert (b7.resolution, phi7.resolution) == (600, round(224 * GAMMA ** 7))
    assert (b7.width_mult, b7.depth_mult) != (pytest.approx(BETA ** 7), pytest.approx(ALPHA ** 7))
    released = convatlas.registry.build_meta("efficientnet_b7")
    literal = convatlas.registry.build_meta("efficientnet", phi=7)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(released) != count(literal)


def test_single_dimension_scaling_matches_the_compound_models_measured_macs():
    compound = scaled("efficientnet_mini", "compound", 1.0, 1.2, 1.1, 1.15)
    assert compound.resolution == 16 and compound.args() == {"width_mult": 1.1, "depth_mult": 1.2, "resolution": 16}
    report = convatlas.summary(convatlas.create_model("efficientnet_mini", **compound.args()), (1, 16, 16))
    assert compound.macs == report.total_macs
    for dim in ("depth", "width", "resolution"):
        best = match_macs("efficientnet_mini", dim, compound.macs, 1.0, max_side=2.0)
        if dim == "resolution":
            sides = range(14, 29)
            others = [scaled("efficientnet_mini", "r", 1, 1.0, 1.0, s / 14).macs for s in sides]
        else:
            others = [scaled("efficientnet_mini", "x", 1, *((v, 1.0) if dim == "depth" else (1.0, v)), 1.0).macs
                      for v in [1 + 3 * i / 60 for i in range(61)]]
        assert abs(best.macs - compound.macs) == min(abs(m - compound.macs) for m in others)
        assert abs(best.macs / compound.macs - 1) < 0.2


def test_confidence_interval_is_students_t():
    mean, half = confidence_interval([0.90, 0.92, 0.94])
    assert mean == pytest.approx(0.92)
    assert half == pytest.approx(4.302653 * 0.02 / math.sqrt(3), rel=1e-5)  # t(0.975, 2 d.f.)


def test_scale_rejects_a_base_it_cannot_scale(tmp_path):
    with pytest.raises(ValueError, match="cannot be scaled here.*efficientnet_mini"):
        run_scale("resnet20", out=tmp_path / "s")
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_a_small_scale_run_writes_its_table_and_continues_where_it_stopped(tmp_path):
    from convatlas.search.proxy import ProxyConfig

    proxy = ProxyConfig(train_size=200, val_size=100, epochs=0.5, threads=1)
    out = tmp_path / "scale"
    summary = run_scale(out=out, phis=(1.0,), candidates=3, seeds=2, proxy=proxy, log=lambda s: None)
    grid = [json.loads(line) for line in (out / "grid.jsonl").read_text().splitlines()]
    assert len(grid) == 3
    best = max(grid, key=lambda r: (r["val_acc"], -r["macs"]))
    assert (summary["coefficients"]["alpha"], summary["coefficients"]["beta"]) == (best["alpha"], best["beta"])
    methods = [(t["method"], t["phi"]) for t in summary["table"]]
    assert methods == [("base", 0.0), ("compound", 1.0), ("depth only", 1.0), ("width only", 1.0),
                       ("resolution only", 1.0)]
    assert all(t["seeds"] == 2 for t in summary["table"])
    assert (out / "scaling.png").exists() and "test acc" in (out / "scaling.md").read_text()
    before = (out / "comparison.jsonl").read_text()
    again = run_scale(out=out, phis=(1.0,), candidates=3, seeds=2, proxy=proxy, log=lambda s: None)
    assert (out / "comparison.jsonl").read_text() == before and again["table"] == summary["table"]
