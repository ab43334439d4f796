"""Reference numbers for the generic model tests, one module per family.

Each module defines ``PARAMS = {name: (count, source)}`` and may define
``MACS = {name: (macs, rel_tolerance, source)}`` (conv + linear multiply-accumulates at the card's
input size). The numbers come from the papers, torchvision/timm metadata or the counts in
shared/reference/paper-numbers.md, never from running convatlas itself.
"""

from __future__ import annotations

import importlib
import pkgutil

PARAMS: dict[str, tuple[int, str]] = {}
MACS: dict[str, tuple[float, float, str]] = {}

for _info in pkgutil.iter_modules(__path__):
    _mod = importlib.import_module(f"{__name__}.{_info.name}")
    for _table, _into in ((getattr(_mod, "PARAMS", {}), PARAMS), (getattr(_mod, "MACS", {}), MACS)):
        _clash = set(_table) & set(_into)
        if _clash:
            raise ValueError(f"reference numbers given twice for {sorted(_clash)}")
        _into.update(_table)
