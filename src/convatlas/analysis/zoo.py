"""Measured numbers of the zoo's networks at their native input size, cached.

``convatlas list`` and ``convatlas card`` show these next to the published ones. Each network is
built on the meta device (:func:`meta_build`: no weights are allocated, and the initialisers,
which have nothing to write into, are skipped) and traced once. Results are kept in the process
and in a small JSON file (:func:`cache_dir`) keyed by a fingerprint of the code and the torch
version, so a second ``convatlas list`` costs nothing; ``CONVATLAS_NO_CACHE=1`` turns the file off.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from convatlas._io import atomic_write_text
from convatlas._meta import meta_build
from convatlas.analysis.api import summary
from convatlas.registry import build_meta, model_card

__all__ = ["ZooMeasurement", "measure_zoo_model", "measure_zoo_models", "build_on_meta", "meta_build", "cache_dir"]


def build_on_meta(name: str, **variant_args: Any) -> nn.Module:
    """Build a registered network on the meta device (default classes), in eval mode. The small
    tensors :func:`meta_build` leaves on the CPU join the large ones, so the model runs on meta
    inputs under any tracer, PyTorch's FlopCounterMode included."""
    return build_meta(name, **variant_args)


@dataclass(frozen=True)
class ZooMeasurement:
    """Parameters, MACs and receptive field of one registered network at ``input_size``."""

    name: str
    input_size: tuple[int, ...]
    params: int
    macs: int
    receptive_field: tuple[float, ...] | None
    complete: bool

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["receptive_field"] = list(self.receptive_field) if self.receptive_field else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ZooMeasurement":
        rf = d.get("receptive_field")
        return cls(d["name"], tuple(d["input_size"]), int(d["params"]), int(d["macs"]),
                   tuple(rf) if rf else None, bool(d["complete"]))


def _measure(name: str) -> ZooMeasurement:
    card = model_card(name)
    report = summary(build_on_meta(card.name), card.input_size, memory=False, name=card.name)
    return ZooMeasurement(
        name=card.name,
        input_size=tuple(card.input_size),
        params=report.total_params,
        macs=report.total_macs,
        receptive_field=report.receptive_field,
        complete=report.complete,
    )


# ---------------------------------------------------------------------------------------------
# Cache: in the process, and on disk keyed by a fingerprint of the code that decides the numbers
# (the zoo, the layers, the analysis package, the registry) and of the torch version, so that a
# second `convatlas list` is instant and any change to a model re-measures it.

_MEMORY: dict[str, ZooMeasurement] = {}
_CACHE_FILE = "zoo-measurements.json"


def cache_dir() -> Path | None:
    """``$CONVATLAS_CACHE_DIR``, else ``$XDG_CACHE_HOME/convatlas``, else ``~/.cache/convatlas``;
    None when ``CONVATLAS_NO_CACHE`` is set."""
    if os.environ.get("CONVATLAS_NO_CACHE"):
        return None
    if os.environ.get("CONVATLAS_CACHE_DIR"):
        return Path(os.environ["CONVATLAS_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "convatlas"


@functools.lru_cache(maxsize=1)
def _fingerprint() -> str:
    package = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256(f"{torch.__version__}".encode())
    files = [package / "registry.py", package / "_meta.py"]
    for folder in ("models", "layers", "analysis"):
        files.extend(sorted((package / folder).glob("*.py")))
    for f in files:
        digest.update(f.name.encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()[:20]


def _load_disk() -> dict[str, Any]:
    folder = cache_dir()
    if folder is None:
        return {}
    try:
        data = json.loads((folder / _CACHE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("fingerprint") != _fingerprint():
        return {}
    return data.get("models", {}) if isinstance(data.get("models"), dict) else {}


def _save_disk(entries: dict[str, ZooMeasurement]) -> None:
    folder = cache_dir()
    if folder is None:
        return
    data = {"fingerprint": _fingerprint(), "models": {n: m.to_dict() for n, m in sorted(entries.items())}}
    try:
        atomic_write_text(folder / _CACHE_FILE, json.dumps(data, indent=1) + "\n")
    except OSError:
        pass  # a read-only home: measure again next time


def measure_zoo_models(names: list[str], errors: dict[str, str] | None = None) -> dict[str, ZooMeasurement]:
    """Measure several registered networks (in-process and on-disk cache, see above).

    A network that fails to build or trace is left out of the result; with ``errors`` given, its
    message is put there (otherwise the exception propagates).
    """
    missing = [n for n in names if n not in _MEMORY]
    if missing:
        disk = _load_disk()
        for n in missing:
            if n in disk:
                try:
                    _MEMORY[n] = ZooMeasurement.from_dict(disk[n])
                except (KeyError, TypeError, ValueError):
                    pass
        todo = [n for n in missing if n not in _MEMORY]
        try:
            for n in todo:
                try:
                    _MEMORY[n] = _measure(n)
                except Exception as exc:  # noqa: BLE001 - reported by the caller
                    if errors is None:
                        raise
                    errors[n] = f"{type(exc).__name__}: {exc}"
        finally:
            if todo:
                known = {}
                for n, v in disk.items():
                    try:
                        known[n] = ZooMeasurement.from_dict(v)
                    except (KeyError, TypeError, ValueError):
                        pass
                known.update(_MEMORY)
                _save_disk(known)
    return {n: _MEMORY[n] for n in names if n in _MEMORY}


def measure_zoo_model(name: str) -> ZooMeasurement:
    """Measure a registered network at its card's input size (cached; see :func:`measure_zoo_models`)."""
    card = model_card(name)
    return measure_zoo_models([card.name])[card.name]
