"""Running searches: seeds replay, a killed search resumes to the same trials, workers share one
Optuna storage, and bad requests are clear errors that leave the folder as it was."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import convatlas
from convatlas.cli import main as cli
from convatlas.search.runner import SearchError, read_trials, run_search

# a proxy of a fraction of a second per trial (the ranking is not the point here)
TINY = {"train_size": 200, "val_size": 100, "epochs": 1, "threads": 1}
TINY_FLAGS = ["--train-size", "200", "--val-size", "100", "--epochs", "1", "--threads", "1"]
pytestmark = pytest.mark.slow


def _same(rows):
    """A trial's row without its timings (which differ from run to run) and its Optuna number (a
    trial killed while running keeps its number, failed; its place is run again under a new one)."""
    return [{k: v for k, v in r.items() if k not in ("seconds", "train_seconds", "number")} for r in rows]


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_search_replays_identically_from_its_seed(tmp_path):
    kwargs = dict(strategy="evolution", trials=6, proxy=TINY, strategy_options={"population": 3, "sample_size": 2},
                  quiet=True, seed=5)
    a = run_search("mini", out=tmp_path / "a", **kwargs)
    b = run_search("mini", out=tmp_path / "b", **kwargs)
    assert _same(a.trials) == _same(b.trials)
    assert [r["trial"] for r in a.trials] == list(range(6))
    c = run_search("mini", out=tmp_path / "c", **{**kwargs, "seed": 6})
    assert [r["point"] for r in c.trials] != [r["point"] for r in a.trials]
    # the files say the same as the result
    assert _same(read_trials(tmp_path / "a")) == _same(a.trials)
    assert (tmp_path / "a" / "best.yaml").exists() and (tmp_path / "a" / "pareto.png").exists()
    best = max(a.trials, key=lambda r: r["reward"])
    assert a.best["reward"] == best["reward"]


def test_a_search_killed_with_sigkill_resumes_to_the_same_trials(tmp_path):
    whole = run_search("mini", strategy="reinforce", trials=8, out=tmp_path / "whole", proxy=TINY,
                       strategy_options={"batch": 2}, quiet=True)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "convatlas", "search", "mini", "--strategy", "reinforce", "--trials", "8",
           "--controller-batch", "2", "--out", str(out), "--best-epochs", "0", "--quiet", *TINY_FLAGS]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while len(read_trials(out)) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(read_trials(out))
    assert 3 <= done < 8, f"the search should have been killed mid-way, it had {done} trials"
    assert cli(["search", "--resume", str(out), "--best-epochs", "0", "--quiet"]) == 0
    assert _same(read_trials(out)) == _same(whole.trials)
    assert json.loads((out / "strategy.json").read_text())["updates"] == whole.stats["updates"]


def test_two_workers_share_one_optuna_storage_without_losing_a_trial(tmp_path):
    out = tmp_path / "shared"
    run_search("mini", trials=1, out=out, proxy=TINY, quiet=True)  # the search, its storage and one trial
    trials = 11
    # two workers start together on the same journal and share the remaining places
    cmd = [sys.executable, "-m", "convatlas", "search", "--join", str(out), "--trials", str(trials), "--quiet"]
    workers = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(2)]
    for w in workers:
        assert w.wait(timeout=600) == 0, w.stderr.read().decode()
    import optuna

    from convatlas.search.runner import _finished, _storage

    study = optuna.load_study(study_name="convatlas-search", storage=_storage(out, None))
    complete = _finished(study)
    rows = read_trials(out)
    assert len(complete) == trials == len(rows)
    assert sorted(r["trial"] for r in rows) == list(range(trials))  # each place once: none lost, none twice
    assert {r["number"] for r in rows} == {t.number for t in complete}
    assert len({r["worker"] for r in rows}) == 3  # the first trial's and both workers'
    assert all((out / r["run_dir"] / "summary.json").exists() for r in rows)


def test_resume_grows_the_budget_and_refuses_other_settings(tmp_path):
    out = tmp_path / "s"
    run_search("mini", trials=3, out=out, proxy=TINY, quiet=True)
    before = _digest(out)
    with pytest.raises(SearchError, match=r"another search \(strategy: 'random' there, 'evolution' asked"):
        run_search("mini", strategy="evolution", out=out, resume=True, quiet=True)
    with pytest.raises(SearchError, match="already holds a search"):
        run_search("mini", trials=3, out=out, proxy=TINY, quiet=True)
    with pytest.raises(SearchError, match="can only grow"):
        run_search(out=out, resume=True, trials=2, quiet=True)
    assert _digest(out) == before  # nothing written was touched
    grown = run_search(out=out, resume=True, trials=5, quiet=True)
    fresh = run_search("mini", trials=5, out=tmp_path / "fresh", proxy=TINY, quiet=True)
    assert _same(grown.trials) == _same(fresh.trials)


def test_resume_of_a_folder_holding_another_search_is_refused(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    run_search("mini", trials=2, out=a, proxy=TINY, quiet=True)
    run_search("mini", trials=2, out=b, proxy=TINY, quiet=True, seed=1)
    (a / "optuna.journal").write_bytes((b / "optuna.journal").read_bytes())  # a's settings, b's trials
    with pytest.raises(SearchError, match="holds the trials of another search"):
        run_search(out=a, resume=True, quiet=True)


def test_cli_errors_name_what_was_wrong(tmp_path, capsys):
    assert cli(["search", "minni", "--out", str(tmp_path / "x")]) == 2
    assert "did you mean mini" in capsys.readouterr().err
    assert cli(["search", "mini", "--strategy", "reinfroce", "--out", str(tmp_path / "x")]) == 2
    assert "did you mean reinforce" in capsys.readouterr().err
    assert cli(["search", "mini", "--strategy", "evolution", "--trials", "10", "--out", str(tmp_path / "x")]) == 2
    assert "filling its population" in capsys.readouterr().err
    assert cli(["search", "--resume", str(tmp_path / "nothing")]) == 2
    assert "holds no search" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # a refused search writes nothing


def test_cli_search_trains_the_best_genotype_and_the_zoo_commands_take_it(tmp_path, capsys):
    out = tmp_path / "s"
    assert cli(["search", "mini", "--trials", "3", "--out", str(out), "--best-epochs", "1", "--quiet", *TINY_FLAGS]) == 0
    text = capsys.readouterr().out
    best = json.loads((out / "trials.jsonl").read_text().splitlines()[0])  # any row names the layout
    runs = list(out.glob("best-trial-*"))
    assert len(runs) == 1 and (runs[0] / "summary.json").exists(), text
    summary = json.loads((runs[0] / "summary.json").read_text())
    assert summary["model"] == "nas" and summary["status"] == "complete" and summary["test_acc"] > 0.1
    assert best["genotype"]["space"] == "mini"
    assert cli(["summary", "nas", "-a", f"genotype={out / 'best.yaml'}"]) == 0
    table = capsys.readouterr().out
    params = sum(p.numel() for p in convatlas.create_model("nas", genotype=str(out / "best.yaml")).parameters())
    assert f"{params:,}" in table
