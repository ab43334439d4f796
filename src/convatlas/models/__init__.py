"""The zoo: one module per family, read top to bottom like its paper.

Importing this package imports every module in it, which registers their builders.
"""

import importlib
import pkgutil

for _info in pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")
