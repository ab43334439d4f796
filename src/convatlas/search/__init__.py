"""Architecture search: spaces (genotype -> nn.Module), strategies (ask/tell), the proxy
evaluation of a trial, and the runner that keeps every trial in an Optuna storage.

``convatlas search SPACE --strategy random|evolution|reinforce --trials N --out DIR`` is the
front door; :func:`run_search` its function. :mod:`convatlas.search.space` holds the spaces,
:mod:`~convatlas.search.network` the decoders and the registered network ``nas``,
:mod:`~convatlas.search.strategies` random search, regularized evolution and the REINFORCE
controller.
"""

from __future__ import annotations

import importlib
from typing import Any

from convatlas.search.network import build_network, default_genotype, load_genotype, save_genotype
from convatlas.search.space import (
    CellSpace, Decision, GenotypeError, LayerwiseSpace, SearchSpace, UnknownSpaceError, get_space, list_spaces, space_of,
)

_LAZY = {
    "run_search": "convatlas.search.runner", "SearchResult": "convatlas.search.runner",
    "SearchError": "convatlas.search.runner", "ProxyConfig": "convatlas.search.proxy",
    "make_strategy": "convatlas.search.strategies", "list_strategies": "convatlas.search.strategies",
    "RandomSearch": "convatlas.search.strategies", "RegularizedEvolution": "convatlas.search.strategies",
    "Reinforce": "convatlas.search.strategies", "Controller": "convatlas.search.strategies",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'convatlas.search' has no attribute {name!r}")


__all__ = ["CellSpace", "Decision", "GenotypeError", "LayerwiseSpace", "SearchSpace", "UnknownSpaceError",
           "build_network", "default_genotype", "get_space", "list_spaces", "load_genotype", "save_genotype",
           "space_of", *_LAZY]
