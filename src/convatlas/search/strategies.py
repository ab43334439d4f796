"""Search strategies behind one ask/tell interface: ``point = strategy.ask()``, train it, then
``strategy.tell(point, reward)``. A strategy may be told points it did not ask for (another
worker's trials), and its whole state is its seed plus the sequence of asks and tells: replaying
a search's trials rebuilds it exactly (that is how ``--resume`` works).

* :class:`RandomSearch` -- uniform points.
* :class:`RegularizedEvolution` -- Real, Aggarwal, Huang & Le (2019), Algorithm 1: a population
  of ``population`` points, filled with random ones; then each child is a one-decision mutation
  of the best of ``sample_size`` members drawn at random (with replacement), and each new member
  pushes out the *oldest* (aging), not the worst. Paper: P = 100, S = 25; at a few hundred trials
  P = 20, S = 5.
* :class:`Reinforce` -- Zoph & Le (2017), Sec. 3.2: an LSTM controller samples the decisions one
  after another; after every ``batch`` children (the paper's m) it takes one Adam step on
  ``-sum_k (R_k - b) sum_t log P(a_t | a_<t)`` / m, with ``b`` an exponential moving average of the
  rewards. The paper's controller is 2 layers of 35 LSTM units, Adam at 6e-4, weights drawn from
  U(-0.08, 0.08), reward the validation accuracy cubed; skip connections are chosen at anchor
  points, P(layer j -> layer i) = sigmoid(v^T tanh(W_prev h_j + W_curr h_i)). It gives no
  baseline decay: 0.95 is NASNet's (Zoph et al. 2018). Deviations, stated: the baseline starts at
  the first batch's mean reward (not 0), and the step after an anchor point feeds a learned
  embedding (the paper does not say what).
"""

from __future__ import annotations

import abc
import difflib
import math
import random
from collections import deque
from typing import Any, Sequence

import torch
from torch import nn

from convatlas.search.space import SearchSpace

__all__ = ["Strategy", "RandomSearch", "RegularizedEvolution", "Reinforce", "Controller", "make_strategy",
           "list_strategies", "UnknownStrategyError", "BudgetError"]


class UnknownStrategyError(KeyError, ValueError):
    def __str__(self) -> str:
        return str(self.args[0])


class BudgetError(ValueError):
    """A trial budget too small for the strategy (evolution's population)."""


class Strategy(abc.ABC):
    """ask/tell over the points of ``space``; deterministic given ``seed`` and the calls made."""

    name = ""

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        self.space = space
        self.seed = seed
        self.rng = random.Random(seed)
        self.told = 0

    @abc.abstractmethod
    def ask(self) -> tuple[int, ...]:
        """The next point to evaluate."""

    def tell(self, point: Sequence[int], reward: float) -> None:
        if not math.isfinite(reward):
            raise ValueError(f"a reward must be a finite number, got {reward}")
        self.told += 1

    def check_budget(self, trials: int) -> None:
        """Raise :class:`BudgetError` if ``trials`` cannot do what this strategy needs."""

    def stats(self) -> dict[str, Any]:
        """What to chart about the strategy itself (the controller's reward and entropy)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "seed": self.seed, "told": self.told, "rng": self.rng.getstate()}


class RandomSearch(Strategy):
    """Uniform points: the baseline every search strategy has to beat (Li & Talwalkar 2019)."""

    name = "random"

    def ask(self) -> tuple[int, ...]:
        return self.space.sample(self.rng)


class RegularizedEvolution(Strategy):
    """Aging evolution (Real et al. 2019, Algorithm 1); see the module docstring."""

    name = "evolution"

    def __init__(self, space: SearchSpace, seed: int = 0, *, population: int = 20, sample_size: int = 5) -> None:
        super().__init__(space, seed)
        if isinstance(population, bool) or not isinstance(population, int) or population < 2:
            raise ValueError(f"population must be an integer of at least 2, got {population!r}")
        if isinstance(sample_size, bool) or not isinstance(sample_size, int) or not 1 <= sample_size <= population:
            raise ValueError(f"sample_size must be an integer in 1..population ({population}), got {sample_size!r}")
        self.population_size, self.sample_size = population, sample_size
        self.population: deque[tuple[tuple[int, ...], float]] = deque()
        self.removed: list[tuple[int, ...]] = []  # the members aged out, oldest first

    def check_budget(self, trials: int) -> None:
        if trials <= self.population_size:
            raise BudgetError(
                f"regularized evolution spends its first {self.population_size} trials filling its population "
                f"(--population {self.population_size}), so {trials} trials would never evolve anything; ask for "
                f"more --trials or a smaller --population (Real et al. 2019 use 100 with samples of 25; "
                f"20 and 5 suit a few hundred trials)")

    def ask(self) -> tuple[int, ...]:
        if len(self.population) < self.population_size:
            return self.space.sample(self.rng)
        members = list(self.population)
        sample = [members[self.rng.randrange(len(members))] for _ in range(self.sample_size)]
        parent = max(sample, key=lambda m: m[1])[0]  # first best on ties: the order of the draw
        return self.space.mutate(parent, self.rng)

    def tell(self, point: Sequence[int], reward: float) -> None:
        super().tell(point, reward)
        self.population.append((tuple(point), float(reward)))
        if len(self.population) > self.population_size:
            self.removed.append(self.population.popleft()[0])

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "population": [[list(p), r] for p, r in self.population],
                "population_size": self.population_size, "sample_size": self.sample_size}


class Controller(nn.Module):
    """Zoph & Le's controller: a stacked LSTM that emits one decision of ``space`` per step.

    A categorical decision is a softmax over its options from the LSTM's output; the next step's
    input is the chosen option's embedding. In a space with anchor points, each layer's decisions
    are followed by one anchor step whose output ``h_i`` is that layer's anchor; the skip from an
    earlier layer ``j`` has P = sigmoid(v^T tanh(W_prev h_j + W_curr h_i)).
    """

    def __init__(self, space: SearchSpace, *, hidden: int = 35, layers: int = 2, init_range: float = 0.08) -> None:
        super().__init__()
        self.space = space
        self.hidden = hidden
        self.choice_steps = [i for i, d in enumerate(space.decisions) if d.anchor is None]
        self.lstm = nn.LSTM(hidden, hidden, num_layers=layers)
        self.start = nn.Parameter(torch.zeros(1, hidden))
        self.embed = nn.ModuleList(nn.Embedding(d.size, hidden) if d.anchor is None else nn.Identity()
                                   for d in space.decisions)
        self.heads = nn.ModuleList(nn.Linear(hidden, d.size) if d.anchor is None else nn.Identity()
                                   for d in space.decisions)
        if space.has_anchors:
            self.w_prev = nn.Linear(hidden, hidden, bias=False)
            self.w_curr = nn.Linear(hidden, hidden, bias=False)
            self.v = nn.Linear(hidden, 1, bias=False)
            self.after_anchor = nn.Parameter(torch.zeros(1, hidden))
        for p in self.parameters():
            nn.init.uniform_(p, -init_range, init_range)

    def _groups(self) -> list[list[int]]:
        groups: dict[int, list[int]] = {}
        for i, d in enumerate(self.space.decisions):
            groups.setdefault(d.group, []).append(i)
        return [groups[g] for g in sorted(groups)]

    def run(self, point: Sequence[int] | None = None, generator: torch.Generator | None = None
            ) -> tuple[tuple[int, ...], torch.Tensor, torch.Tensor]:
        """Sample a point (``point=None``, drawing from ``generator``) or score a given one:
        (point, sum of log-probabilities, sum of the per-step entropies along it)."""
        decisions = self.space.decisions
        chosen = [0] * len(decisions) if point is None else list(point)
        log_p = torch.zeros(())
        entropy = torch.zeros(())
        state = None
        x = self.start
        anchors: list[torch.Tensor] = []
        for group in self._groups():
            for i in (i for i in group if decisions[i].anchor is None):
                out, state = self.lstm(x, state)
                dist = torch.distributions.Categorical(logits=self.heads[i](out[-1]))
                if point is None:
                    chosen[i] = int(torch.multinomial(dist.probs, 1, generator=generator))
                log_p = log_p + dist.log_prob(torch.tensor(chosen[i]))
                entropy = entropy + dist.entropy()
                x = self.embed[i](torch.tensor([chosen[i]]))
            if self.space.has_anchors:
                out, state = self.lstm(x, state)
                h_i = out[-1]
                for i in (i for i in group if decisions[i].anchor is not None):
                    logit = self.v(torch.tanh(self.w_prev(anchors[decisions[i].anchor]) + self.w_curr(h_i))).squeeze()
                    dist = torch.distributions.Bernoulli(logits=logit)
                    if point is None:
                        chosen[i] = int(torch.rand((), generator=generator) < dist.probs)
                    log_p = log_p + dist.log_prob(torch.tensor(float(chosen[i])))
                    entropy = entropy + dist.entropy()
                anchors.append(h_i)
                x = self.after_anchor
        return tuple(chosen), log_p.reshape(()), entropy.reshape(())


class Reinforce(Strategy):
    """The REINFORCE controller of Zoph & Le (2017); see the module docstring."""

    name = "reinforce"

    def __init__(self, space: SearchSpace, seed: int = 0, *, lr: float = 6e-4, batch: int = 8,
                 baseline_decay: float = 0.95, hidden: int = 35, layers: int = 2) -> None:
        super().__init__(space, seed)
        if not lr > 0:
            raise ValueError(f"the controller's lr must be positive, got {lr}")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"the controller's batch (children per update) must be a positive integer, got {batch!r}")
        if not 0 <= baseline_decay < 1:
            raise ValueError(f"baseline_decay must be in [0, 1), got {baseline_decay}")
        self.lr, self.batch, self.decay = lr, batch, baseline_decay
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.controller = Controller(space, hidden=hidden, layers=layers)
        self.optimizer = torch.optim.Adam(self.controller.parameters(), lr=lr)
        self.generator = torch.Generator().manual_seed(seed)
        self.baseline: float | None = None
        self.pending: list[tuple[tuple[int, ...], float]] = []
        self.history: list[dict[str, float]] = []  # one row per controller update
        self.entropies: list[float] = []  # per ask: entropy along the sampled sequence

    def ask(self) -> tuple[int, ...]:
        with torch.no_grad():
            point, _, entropy = self.controller.run(generator=self.generator)
        self.entropies.append(float(entropy))
        return point

    def tell(self, point: Sequence[int], reward: float) -> None:
        super().tell(point, reward)
        self.pending.append((tuple(point), float(reward)))
        if len(self.pending) >= self.batch:
            self.update(self.pending)
            self.pending = []

    def update(self, batch: list[tuple[tuple[int, ...], float]]) -> float:
        """One policy-gradient step on ``batch`` of (point, reward); returns the loss. The advantage
        is R - b with the baseline before this batch; then b <- decay b + (1 - decay) R per reward."""
        rewards = [r for _, r in batch]
        if self.baseline is None:
            self.baseline = sum(rewards) / len(rewards)
        b = self.baseline
        self.optimizer.zero_grad()
        loss = torch.zeros(())
        entropy = 0.0
        for point, reward in batch:
            _, log_p, ent = self.controller.run(point)
            loss = loss - (reward - b) * log_p
            entropy += float(ent.detach())
        loss = loss / len(batch)
        loss.backward()
        self.optimizer.step()
        for r in rewards:
            self.baseline = self.decay * self.baseline + (1 - self.decay) * r
        self.history.append({"update": len(self.history) + 1, "trials": self.told, "mean_reward": sum(rewards) / len(rewards),
                             "baseline": b, "entropy": entropy / len(batch), "loss": float(loss.detach())})
        return float(loss.detach())

    def log_prob(self, point: Sequence[int]) -> float:
        with torch.no_grad():
            return float(self.controller.run(point)[1])

    def stats(self) -> dict[str, Any]:
        return {"updates": self.history, "baseline": self.baseline}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "controller": self.controller.state_dict(),
                "optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state(),
                "baseline": self.baseline, "pending": [[list(p), r] for p, r in self.pending],
                "history": self.history}


_STRATEGIES = {"random": RandomSearch, "evolution": RegularizedEvolution, "reinforce": Reinforce}


def list_strategies() -> list[str]:
    return list(_STRATEGIES)


def make_strategy(name: str, space: SearchSpace, seed: int = 0, **options: Any) -> Strategy:
    """The strategy ``name`` (:func:`list_strategies`) on ``space``; options: evolution's
    ``population`` and ``sample_size``, the controller's ``lr``, ``batch``, ``baseline_decay``."""
    if name not in _STRATEGIES:
        close = difflib.get_close_matches(str(name), _STRATEGIES, n=2, cutoff=0.4)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise UnknownStrategyError(f"unknown search strategy {name!r}{hint} (strategies: {', '.join(_STRATEGIES)})")
    cls = _STRATEGIES[name]
    import inspect

    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "space", "seed")]
    unknown = sorted(k for k in options if k not in accepted)
    if unknown:
        raise ValueError(f"the {name} strategy takes no {', '.join(unknown)}"
                         + (f" (its options: {', '.join(accepted)})" if accepted else " (it has no options)"))
    return cls(space, seed, **options)
