"""Build the tabulated benchmark ``mini_digits``: all 512 members of the ``mini`` space trained
once with the default proxy, written to ``src/convatlas/search/tables/mini_digits.json``
(continued where it stopped if interrupted). About half an hour on two cores.

    python scripts/build_search_table.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from convatlas.search.proxy import ProxyConfig
from convatlas.search.space import get_space
from convatlas.search.table import build_table

OUT = Path(__file__).resolve().parents[1] / "src" / "convatlas" / "search" / "tables" / "mini_digits.json"


def main() -> int:
    table = build_table(get_space("mini"), ProxyConfig(), OUT, name="mini_digits", log=lambda s: print(s, flush=True))
    print(f"{len(table)} members; best validation accuracy {table.best:.4f}; written to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
