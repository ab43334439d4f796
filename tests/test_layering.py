"""The house's floors: no import in ``src/convatlas`` may run back up.

Rooms, from the top down. A room may import the rooms on the lines below its own (the leaves
included); never a room on its own line (a sibling) or above. ``data`` may import only the
leaves, and a leaf only the leaves below it. The package's own ``__init__`` (the public front,
``convatlas.create_model`` ...) stands above everything.

    cli
    train
    search
    compare viz edges export
    segmentation
    detection
    tasks
    engine
    analysis
    metrics
    data                 [leaves only]
    models weights
    layers scratch
    registry
    arith _io _meta      [a leaf]
    _checks              [a leaf]

Every ``import`` and ``from ... import`` counts, at the top of a file or inside a function.
A new room must be given its line here before it can import anything.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "convatlas"
def _table() -> tuple[dict[str, int], set[str]]:
    """Room -> floor (higher imports lower), and the rooms that may import only the leaves."""
    lines = [line.strip() for line in __doc__.splitlines() if line.startswith("    ") and line.strip()]
    floors: dict[str, int] = {}
    leaves_only: set[str] = set()
    for depth, line in enumerate(lines):
        for room in re.sub(r"\[.*?\]", "", line).split():
            floors[room] = len(lines) - depth
            if "[leaves only]" in line:
                leaves_only.add(room)
            if "[a leaf]" in line:
                LEAF_ROOMS.add(room)
    return floors, leaves_only


LEAF_ROOMS: set[str] = set()


FLOORS, LEAVES_ONLY = _table()


def _room(module: str) -> str | None:
    """``convatlas.engine.loop`` -> ``engine``; the package itself -> ``convatlas``; others None."""
    parts = module.split(".")
    if parts[0] != "convatlas":
        return None
    return parts[1] if len(parts) > 1 and parts[1] != "__init__" else "convatlas"


def _imported_modules(tree: ast.AST, here: str) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in ``tree`` (a module named ``here``)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                package = here.split(".")[: -node.level] if here else []
                base = ".".join([*package, base] if base else package)
            if base == "convatlas":  # `from convatlas import arith`: each name may be a room
                found.extend((node.lineno, f"convatlas.{alias.name}") for alias in node.names)
            else:
                found.append((node.lineno, base))
    return found


def violations(sources: dict[str, str]) -> list[str]:
    """Every import in ``sources`` (module name -> code) that breaks the table above."""
    problems = []
    for module, code in sorted(sources.items()):
        room = _room(module)
        if room == "convatlas" or room in ("__main__",):
            continue  # the package's front
        if room not in FLOORS:
            problems.append(f"{module}: room {room!r} is not in the table of tests/test_layering.py")
            continue
        for line, target in _imported_modules(ast.parse(code), module):
            other = _room(target)
            if other is None or other == room:
                continue
            if other not in FLOORS:
                problems.append(f"{module}:{line} imports {target}, which is in no room of the table")
                continue
            below = FLOORS[other] < FLOORS[room]
            allowed = (other in LEAF_ROOMS and below) if room in LEAVES_ONLY | LEAF_ROOMS else below
            if not allowed:
                why = (f"a leaf imports only the leaves below it" if room in LEAF_ROOMS else
                       f"{room} may import only the leaves" if room in LEAVES_ONLY else
                       f"{other} is a sibling of {room}" if FLOORS[other] == FLOORS[room] else f"{other} is above {room}")
                problems.append(f"{module}:{line} imports {target} ({why})")
    return problems


def _package_sources() -> dict[str, str]:
    sources = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts  # a package keeps its "__init__"
        sources[".".join(parts)] = path.read_text(encoding="utf-8")
    return sources


def test_the_table_names_every_room_of_the_package():
    rooms = {_room(m) for m in _package_sources()} - {"convatlas", "__main__"}
    assert rooms - set(FLOORS) == set(), "give these rooms a line in the table"
    assert FLOORS["cli"] > FLOORS["train"] > FLOORS["tasks"] > FLOORS["engine"] > FLOORS["models"] > FLOORS["registry"]
    assert LEAF_ROOMS == {"_io", "_meta", "_checks", "arith"} and FLOORS["_checks"] < FLOORS["_io"]
    assert LEAVES_ONLY == {"data"}


def test_no_import_runs_back_up():
    assert violations(_package_sources()) == []


@pytest.mark.parametrize("module, code, message", [
    ("convatlas.registry", "from convatlas.analysis.zoo import meta_build", "analysis is above registry"),
    ("convatlas.models.vgg", "def f():\n    from convatlas.train import train", "train is above models"),
    ("convatlas.data.augment", "import convatlas.models.resnet", "data may import only the leaves"),
    ("convatlas.viz.source", "from convatlas.compare import chart", "compare is a sibling of viz"),
    ("convatlas._io", "from convatlas.registry import model_card", "a leaf imports only the leaves below it"),
    ("convatlas._checks", "from convatlas.arith import conv_output_size", "a leaf imports only the leaves below it"),
    ("convatlas.engine.loop", "from ..tasks import classification", "tasks is above engine"),
    ("convatlas.newroom.x", "import torch", "room 'newroom' is not in the table"),
])
def test_imports_that_run_back_up_are_caught(module, code, message):
    found = violations({module: code})
    assert len(found) == 1 and message in found[0], found


def test_allowed_imports_pass():
    assert violations({
        "convatlas.engine.loop": "from convatlas.data.loader import EpochBatches\nfrom convatlas._io import write_json",
        "convatlas.cli.train": "from convatlas.train import train",
        "convatlas.models.vgg": "from convatlas.layers import LocalResponseNorm\nfrom convatlas.registry import ModelCard",
        "convatlas.data.formats": "from convatlas._io import atomic_save\nfrom . import datasets",
        "convatlas.arith": "from convatlas._checks import positive_int",
    }) == []
