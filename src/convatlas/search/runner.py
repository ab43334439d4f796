"""Running a search: every trial in an Optuna storage, the strategy rebuilt from it.

``run_search("mini", strategy="evolution", trials=100, out="runs/search")`` asks the strategy for a
point, records an Optuna trial for it, trains it with the proxy (:mod:`convatlas.search.proxy`),
turns the metrics into a reward (the objective) and tells both the study and the strategy.
The study is the ledger: a JournalStorage file ``DIR/optuna.journal`` by default (safe for several
processes on one machine, or on a shared file system), or any Optuna storage URL
(``postgresql://...`` across machines; SQLite is not safe with more than one worker).

``DIR`` holds ``search.yaml`` (the settings and the search's id), ``trials.jsonl`` (one row per
finished trial: point, genotype, reward, validation accuracy and loss, MACs, parameters,
seconds), ``strategy.pt`` and ``strategy.json`` (the strategy's state and, for the controller,
its mean reward and entropy per update), ``trials/NNNN/`` (each proxy run), ``best.yaml`` and the
charts (:mod:`convatlas.search.charts`).

Resuming replays the finished trials into a fresh strategy in the order they finished: asks are
repeated and must give the recorded points (else the directory belongs to another search), so a
search killed at any moment (``kill -9``) and resumed ends with exactly the trials of an
uninterrupted one. A trial that was running when the process died is marked failed and run
again with the same seed. ``join=True`` adds a worker to a running search (another process or
machine on the same storage): it tells its strategy the other workers' trials before each ask.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import yaml

from convatlas._io import atomic_save, atomic_write_text, write_json, write_yaml
from convatlas.search.network import save_genotype
from convatlas.search.proxy import ProxyConfig, evaluate_genotype
from convatlas.search.space import get_space
from convatlas.search.strategies import Strategy, make_strategy

__all__ = ["SearchError", "SearchResult", "run_search", "read_trials", "OBJECTIVES", "reward_of"]

SETTINGS = "search.yaml"
TRIALS = "trials.jsonl"
JOURNAL = "optuna.journal"
STUDY = "convatlas-search"
OBJECTIVES = ("accuracy", "mnas")
_TIMING = ("seconds", "train_seconds")


class SearchError(ValueError):
    """A search that cannot start or continue as asked; nothing written is touched."""


@dataclass
class SearchResult:
    out: Path
    best: dict[str, Any]  # the best trial's row of trials.jsonl
    trials: list[dict[str, Any]]
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def best_genotype_path(self) -> Path:
        return self.out / "best.yaml"


def reward_of(metrics: Mapping[str, Any], objective: str = "accuracy", *, power: float = 1.0,
              target: float | None = None, w: float = -0.07, latency: str = "macs") -> float:
    """The reward of a trial: validation accuracy (raised to ``power``: Zoph & Le cube it), or
    MnasNet's ACC * (LAT / T)^w with LAT the MACs (``latency="macs"``) or the measured latency in
    ms (``"measured"``), T ``target`` and w = -0.07 (Tan et al. 2019)."""
    acc = float(metrics["val_acc"])
    if objective == "accuracy":
        return acc ** power
    lat = float(metrics["macs"] if latency == "macs" else metrics["latency_ms"])
    return acc * (lat / float(target)) ** w


def _check_settings(s: dict[str, Any], trials: int) -> tuple[Any, Strategy]:
    """The space and the strategy of settings ``s``; every error before anything is written."""
    space = get_space(s["space"], **{k: tuple(v) if isinstance(v, list) else v for k, v in s["space_options"].items()})
    strategy = make_strategy(s["strategy"], space, s["seed"], **s["strategy_options"])
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise SearchError(f"trials must be a positive integer, got {trials!r}")
    try:
        strategy.check_budget(trials)
    except ValueError as exc:
        raise SearchError(str(exc)) from exc
    if s["objective"] not in OBJECTIVES:
        raise SearchError(f"unknown objective {s['objective']!r} (objectives: {', '.join(OBJECTIVES)})")
    if s["objective"] == "mnas":
        if not s.get("target") or s["target"] <= 0:
            raise SearchError("the mnas objective needs a positive target (--target: MACs per image, or ms with "
                              "--latency measured), the T of ACC * (LAT / T)^w")
        if s.get("latency", "macs") not in ("macs", "measured"):
            raise SearchError(f"latency must be macs or measured, got {s.get('latency')!r}")
    ProxyConfig.from_dict(s["proxy"])
    return space, strategy


def _storage(out: Path, url: str | None) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if url:
        return url
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(out / JOURNAL)))


def read_trials(out: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of ``DIR/trials.jsonl``."""
    path = Path(out) / TRIALS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _finished(study: Any, trials: list[Any] | None = None) -> list[Any]:
    """The complete trials (of ``trials``, else the study's), in the order they finished."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False) if trials is None else trials
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    return sorted(done, key=lambda t: (t.datetime_complete, t.number))


def _row(t: Any) -> dict[str, Any]:
    a = t.user_attrs
    return {"trial": a["position"], "number": t.number, "worker": a["worker"], "reward": t.value,
            "point": a["point"], **a["metrics"], "genotype": a["genotype"], "run_dir": a["run_dir"]}


def run_search(space: str | None = None, *, strategy: str | None = None, trials: int | None = None,
               out: str | os.PathLike = "runs/search", seed: int | None = None, resume: bool = False,
               join: bool = False, objective: str | None = None, power: float | None = None,
               target: float | None = None, mnas_w: float | None = None, latency: str | None = None,
               proxy: ProxyConfig | Mapping[str, Any] | None = None, space_options: Mapping[str, Any] | None = None,
               strategy_options: Mapping[str, Any] | None = None, storage: str | None = None,
               quiet: bool = False, on_trial: Callable[[dict[str, Any]], None] | None = None) -> SearchResult:
    """Run (or ``resume``, or ``join``) the search in ``out``; see the module docstring.

    A new search needs ``space`` (:func:`~convatlas.search.space.list_spaces`) and takes
    ``strategy`` (random, evolution, reinforce; default random), ``trials`` (default 20), ``seed``,
    the objective (``objective`` accuracy or mnas, ``power``, ``target``, ``mnas_w``, ``latency``),
    the ``proxy`` training and the space's and strategy's options. Resuming takes them from
    ``out/search.yaml``; a setting given that differs is an error, except a larger ``trials``.
    """
    out = Path(out)
    given = {"space": space, "strategy": strategy, "seed": seed, "objective": objective, "power": power,
             "target": target, "mnas_w": mnas_w, "latency": latency,
             "space_options": dict(space_options) if space_options is not None else None,
             "strategy_options": dict(strategy_options) if strategy_options is not None else None,
             "proxy": (proxy.to_dict() if isinstance(proxy, ProxyConfig) else ProxyConfig.from_dict(proxy).to_dict())
             if proxy is not None else None, "storage": storage}
    settings_path = out / SETTINGS
    if resume or join:
        if not settings_path.exists():
            raise SearchError(f"{out} holds no search ({SETTINGS} is missing); start one with "
                              f"`convatlas search SPACE --out {out}`")
        settings = yaml.safe_load(settings_path.read_text())
        differ = [k for k, v in given.items() if v is not None and settings.get(k) != v]
        if differ:
            shown = "; ".join(f"{k}: {settings.get(k)!r} there, {given[k]!r} asked" for k in differ)
            raise SearchError(f"{out} is another search ({shown}); resume it without these settings, or start a "
                              f"new search with another --out")
        trials = settings["trials"] if trials is None else trials
        if trials < settings["trials"] and not join:
            raise SearchError(f"{out} was asked for {settings['trials']} trials; --trials can only grow on resume")
    else:
        if settings_path.exists():
            raise SearchError(f"{out} already holds a search ({SETTINGS}); continue it with --resume {out}, "
                              f"or choose another --out")
        if space is None:
            raise SearchError("name a search space (e.g. mini, zoph_le, nasnet_a)")
        settings = {"id": uuid.uuid4().hex, "space": space, "strategy": strategy or "random", "seed": seed or 0,
                    "trials": 20 if trials is None else trials, "objective": objective or "accuracy",
                    "power": 1.0 if power is None else power, "target": target, "mnas_w": -0.07 if mnas_w is None else mnas_w,
                    "latency": latency or "macs", "space_options": dict(space_options or {}),
                    "strategy_options": dict(strategy_options or {}), "proxy": given["proxy"] or ProxyConfig().to_dict(),
                    "storage": storage}
        trials = settings["trials"]
    space_obj, strat = _check_settings(settings, trials)
    import optuna
    from optuna.trial import TrialState

    if not resume and not join:
        out.mkdir(parents=True, exist_ok=True)
    settings["trials"] = max(trials, settings["trials"]) if (resume or join) else trials
    study = optuna.create_study(storage=_storage(out, settings.get("storage")), study_name=STUDY,
                                direction="maximize", load_if_exists=True)
    if study.user_attrs.get("search_id", settings["id"]) != settings["id"]:
        raise SearchError(f"the storage of {out} holds the trials of another search "
                          f"(id {study.user_attrs['search_id']}, this one {settings['id']})")
    if not resume and not join:
        if study.get_trials(deepcopy=False):
            raise SearchError(f"the storage {settings.get('storage')} already holds trials; use a fresh one")
        study.set_user_attr("search_id", settings["id"])
    if not join:
        write_yaml(settings_path, settings)
    worker = 0 if not join else uuid.uuid4().hex[:8]
    if join:  # a different stream of asks from the main worker's
        strat = make_strategy(settings["strategy"], space_obj, settings["seed"] * 1000 + int(worker, 16) % 997 + 1,
                              **settings["strategy_options"])
    if resume:  # trials left running by a killed process: failed, to be run again
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)

    known: set[int] = set()
    replayed = 0
    for t in _finished(study):  # rebuild the strategy from the ledger
        point = tuple(t.user_attrs["point"])
        if t.user_attrs["worker"] == worker:
            asked = strat.ask()
            if asked != point:
                raise SearchError(f"replaying {out}: trial {t.user_attrs['position']} was {list(point)} but this "
                                  f"search asks {list(asked)}; the directory holds another search or the code changed")
        strat.tell(point, t.value)
        known.add(t.number)
        replayed += 1

    display = _Progress(quiet, settings, trials, replayed)
    rows: list[dict[str, Any]] | None = None
    try:
        while True:
            ledger = study.get_trials(deepcopy=False)  # read once per trial
            for t in _finished(study, ledger):  # other workers' trials
                if t.number not in known:
                    strat.tell(tuple(t.user_attrs["point"]), t.value)
                    known.add(t.number)
            if sum(t.state in (TrialState.COMPLETE, TrialState.RUNNING) for t in ledger) >= trials:
                break
            point = strat.ask()
            trial = study.ask()
            position = sum(1 for t in study.get_trials(deepcopy=False)
                           if t.number < trial.number and t.state != TrialState.FAIL)
            if position >= trials:  # another worker took the last place meanwhile
                study.tell(trial, state=TrialState.FAIL)
                break
            genotype = space_obj.genotype(point)
            run_dir = f"trials/{position:04d}"
            for key, value in (("point", list(point)), ("genotype", genotype), ("worker", worker),
                               ("position", position), ("run_dir", run_dir)):
                trial.set_user_attr(key, value)
            shutil.rmtree(out / run_dir, ignore_errors=True)  # a run the killed process left half done
            metrics = evaluate_genotype(genotype, ProxyConfig.from_dict(settings["proxy"]), out / run_dir,
                                        seed=settings["seed"] * 100003 + position, title=f"trial {position}")
            if settings["objective"] == "mnas" and settings["latency"] == "measured":
                metrics["latency_ms"] = _latency_ms(genotype, settings["proxy"])
            value = reward_of(metrics, settings["objective"], power=settings["power"], target=settings["target"],
                              w=settings["mnas_w"], latency=settings["latency"])
            if not math.isfinite(value):
                value = 0.0
            trial.set_user_attr("metrics", metrics)
            study.tell(trial, value)
            known.add(trial.number)
            strat.tell(point, value)
            rows = _export(study, out, strat)
            display.trial(rows[-1] if rows else None, rows)
            if on_trial is not None:
                on_trial(rows[-1])
    finally:
        display.close()
    if rows is None:  # nothing ran here (a finished search resumed): the files from the ledger
        rows = _export(study, out, strat)
    if not rows:
        raise SearchError(f"{out}: no trial finished")
    best = max(rows, key=lambda r: (r["reward"], -r["trial"]))
    if not join:
        save_genotype(best["genotype"], out / "best.yaml")
        from convatlas.search.charts import plot_search

        plot_search(out, rows, strat.stats())
    return SearchResult(out, best, rows, strat.stats())


def _export(study: Any, out: Path, strat: Strategy) -> list[dict[str, Any]]:
    """trials.jsonl (finished trials in the order they finished) and the strategy's state, atomically."""
    rows = [_row(t) for t in _finished(study)]
    atomic_write_text(out / TRIALS, "".join(json.dumps(r) + "\n" for r in rows))
    state = strat.state_dict()
    atomic_save(out / "strategy.pt", lambda f: torch.save(state, f))
    write_json(out / "strategy.json", {"strategy": strat.name, "told": strat.told, **strat.stats()})
    return rows


def _latency_ms(genotype: Mapping[str, Any], proxy: Mapping[str, Any], repeats: int = 20) -> float:
    """Median CPU latency of one image through the network, in ms (MnasNet's LAT)."""
    from convatlas.search.network import build_network

    model = build_network(genotype).eval()
    x = torch.randn(1, 1, proxy["image_size"], proxy["image_size"])
    times = []
    with torch.inference_mode():
        for i in range(repeats + 3):
            tick = time.perf_counter()
            model(x)
            if i >= 3:
                times.append(time.perf_counter() - tick)
    return 1000 * sorted(times)[len(times) // 2]


class _Progress:
    """A progress bar (or one line per trial when quiet) with the best reward so far."""

    def __init__(self, quiet: bool, settings: Mapping[str, Any], trials: int, done: int) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.quiet = quiet or not self.console.is_terminal
        self.bar = None
        title = f"{settings['strategy']} search of {settings['space']}"
        if self.quiet:
            self.console.print(f"{title}: {trials} trials, {done} done", highlight=False, soft_wrap=True)
        else:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TextColumn("{task.fields[best]}"), console=self.console)
            self.task = self.bar.add_task(title, total=trials, completed=done, best="")
            self.bar.start()

    def trial(self, row: dict[str, Any] | None, rows: list[dict[str, Any]]) -> None:
        if row is None:
            return
        best = max(r["reward"] for r in rows)
        text = f"best {best:.4f}"
        if self.bar is not None:
            self.bar.update(self.task, completed=len(rows), best=text)
        else:
            self.console.print(f"trial {row['trial']}: reward {row['reward']:.4f} (val acc {row['val_acc']:.4f}, "
                               f"{row['macs'] / 1e6:.2f}M MACs, {row['params']:,} params, {row['seconds']:.1f} s); "
                               f"{text}", highlight=False, soft_wrap=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
