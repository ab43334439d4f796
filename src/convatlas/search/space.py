"""Search spaces as data: a list of decisions, a point (one option index per decision), and the
genotype a point stands for (a plain mapping, saved as YAML or JSON).

Three spaces ship (:func:`get_space`, :func:`list_spaces`):

``zoph_le``
    Zoph & Le (2017), Sec. 3.1-3.3: a chain of convolutional layers; per layer the filter
    height and width in {1, 3, 5, 7}, the number of filters in {24, 36, 48, 64}, optionally the
    stride in {1, 2, 3} (``strides=(1, 2, 3)``; the paper's first experiment fixes it to 1), and
    skip connections chosen at *anchor points*: layer ``i`` may take the output of every earlier
    layer ``j`` (one yes/no decision each). Its inputs are concatenated in depth; a layer with no
    input takes the image; outputs no layer takes go to the classifier; inputs of different sizes
    are zero-padded to the largest. ``layers`` (default 6, where the paper's schedule starts).
``mini``
    The same grammar sized for two CPU cores: 3 layers (``layers`` 3-5), square kernels in {3, 5},
    filters in {24, 48}, stride 1, anchor-point skips; at 14x14 digits every member trains in
    about two seconds. With 3 layers it has (2 * 2)^3 * 2^3 = 512 members, all tabulated
    (:mod:`convatlas.search.table`).
``nasnet_a``
    Zoph et al. (2018), Sec. 3: a normal and a reduction cell of ``B = 5`` blocks; each block picks
    two hidden states (the two cell inputs or an earlier block) and one operation for each, and
    adds the results. The operations are the zoo's NASNet-A operations
    (:mod:`convatlas.models.nasnet`): identity, 3x3/5x5/7x7 separable convolutions, 3x3 average and
    max pooling -- the six that NASNet-A's cells use, out of the paper's thirteen. The cells are
    stacked as on CIFAR-10: N normal, reduction, N normal, reduction, N normal.

A point is a tuple of ints, one per :class:`Decision`; strategies work on points and never look
inside a genotype. ``space.genotype(point)`` and ``space.point(genotype)`` convert; the second
checks every field and raises :class:`GenotypeError` naming it.
"""

from __future__ import annotations

import abc
import difflib
import itertools
import math
import random
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

__all__ = [
    "Decision",
    "GenotypeError",
    "UnknownSpaceError",
    "SearchSpace",
    "LayerwiseSpace",
    "CellSpace",
    "NASNET_OPS",
    "get_space",
    "list_spaces",
    "space_of",
]

# The zoo's NASNet-A operations (convatlas.models.nasnet._operation), in the paper's order.
NASNET_OPS = ("identity", "sep3x3", "sep5x5", "sep7x7", "avg3x3", "max3x3")


class GenotypeError(ValueError):
    """A genotype that does not decode: the message names the field and what is expected."""


class UnknownSpaceError(KeyError, ValueError):
    """A search space name that is not known; the message suggests the closest names."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class Decision:
    """One choice of a space: ``name`` (e.g. ``"layer2.filters"``), its ``options``, the ``group``
    (layer or block) it belongs to, and for an anchor-point skip the earlier layer ``anchor`` it
    would connect from (its options are then ``(False, True)``)."""

    name: str
    options: tuple
    group: int
    anchor: int | None = None

    @property
    def size(self) -> int:
        return len(self.options)


class SearchSpace(abc.ABC):
    """A space of genotypes: ``decisions`` (one option index each make a point), the conversion
    between points and genotypes, sampling, mutation and enumeration. Subclasses set
    ``name``, ``settings`` (what else the decoder needs, saved in every genotype as ``options``)
    and the decisions, and implement :meth:`genotype` and :meth:`point`."""

    name: str = ""
    has_anchors: bool = False

    def __init__(self, decisions: Sequence[Decision], settings: Mapping[str, Any]) -> None:
        self.decisions = tuple(decisions)
        self.settings = dict(settings)

    # --- size and sampling
    @property
    def size(self) -> int:
        """The number of members (points)."""
        return math.prod(d.size for d in self.decisions)

    def sample(self, rng: random.Random) -> tuple[int, ...]:
        """A point drawn uniformly."""
        return tuple(rng.randrange(d.size) for d in self.decisions)

    def mutate(self, point: Sequence[int], rng: random.Random) -> tuple[int, ...]:
        """``point`` with one decision, drawn uniformly, changed to another of its options (Real et
        al. 2019's mutation: exactly one change; a skip is switched on or off)."""
        choosable = [i for i, d in enumerate(self.decisions) if d.size > 1]
        i = rng.choice(choosable)
        changed = list(point)
        changed[i] = rng.choice([v for v in range(self.decisions[i].size) if v != point[i]])
        return tuple(changed)

    def enumerate(self) -> Iterator[tuple[int, ...]]:
        """Every point, in lexicographic order (for small spaces: :meth:`size` says how many)."""
        return itertools.product(*(range(d.size) for d in self.decisions))

    def check_point(self, point: Sequence[int]) -> tuple[int, ...]:
        if len(point) != len(self.decisions):
            raise GenotypeError(f"a point of {self.name} has {len(self.decisions)} decisions, got {len(point)}")
        for value, d in zip(point, self.decisions):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < d.size:
                raise GenotypeError(f"{d.name}: option index {value!r} is not in 0..{d.size - 1}")
        return tuple(int(v) for v in point)

    # --- genotypes
    @abc.abstractmethod
    def genotype(self, point: Sequence[int]) -> dict[str, Any]:
        """The genotype (a plain mapping) of ``point``."""

    @abc.abstractmethod
    def point(self, genotype: Mapping[str, Any]) -> tuple[int, ...]:
        """The point of ``genotype``; :class:`GenotypeError` names a field outside this space."""

    def describe(self) -> str:
        return f"{self.name}: {len(self.decisions)} decisions, {self.size:,} members"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.settings})"


def _index(options: tuple, value: Any, field: str) -> int:
    for i, option in enumerate(options):
        if option == value and type(option) is type(value):
            return i
    shown = ", ".join(map(str, options))
    raise GenotypeError(f"{field}: {value!r} is not one of this space's options ({shown})")


def _field(mapping: Any, key: str, where: str) -> Any:
    if not isinstance(mapping, Mapping):
        raise GenotypeError(f"{where}: expected a mapping, got {type(mapping).__name__}")
    if key not in mapping:
        raise GenotypeError(f"{where}.{key} is missing" if where else f"{key} is missing")
    return mapping[key]


class LayerwiseSpace(SearchSpace):
    """Zoph & Le's layer-by-layer grammar (``zoph_le``, ``mini``). Per layer: kernel height and
    width (one square ``kernel`` decision when ``square``), ``filters``, ``stride`` when there is
    more than one stride option, then one anchor decision per earlier layer."""

    has_anchors = True

    def __init__(self, name: str, *, layers: int, kernels: Sequence[int], filters: Sequence[int],
                 strides: Sequence[int] = (1,), square: bool = False, skips: bool = True) -> None:
        if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
            raise ValueError(f"layers must be a positive integer, got {layers!r}")
        for label, values in (("kernels", kernels), ("filters", filters), ("strides", strides)):
            if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
                raise ValueError(f"{label} must be a non-empty list of positive integers, got {values!r}")
        self.name = name
        self.layers, self.square, self.skips = layers, bool(square), bool(skips)
        self.kernels, self.filters, self.strides = tuple(kernels), tuple(filters), tuple(strides)
        decisions: list[Decision] = []
        for i in range(layers):
            if self.square:
                decisions.append(Decision(f"layer{i}.kernel", self.kernels, i))
            else:
                decisions.append(Decision(f"layer{i}.kernel_h", self.kernels, i))
                decisions.append(Decision(f"layer{i}.kernel_w", self.kernels, i))
            decisions.append(Decision(f"layer{i}.filters", self.filters, i))
            if len(self.strides) > 1:
                decisions.append(Decision(f"layer{i}.stride", self.strides, i))
            if self.skips:
                decisions.extend(Decision(f"layer{i}.from{j}", (False, True), i, anchor=j) for j in range(i))
        super().__init__(decisions, {"layers": layers, "kernels": list(self.kernels), "filters": list(self.filters),
                                     "strides": list(self.strides), "square": self.square, "skips": self.skips})

    def genotype(self, point: Sequence[int]) -> dict[str, Any]:
        values = iter(d.options[v] for d, v in zip(self.decisions, self.check_point(point)))
        layers = []
        for i in range(self.layers):
            if self.square:
                k = next(values)
                kernel = [k, k]
            else:
                kernel = [next(values), next(values)]
            filters = next(values)
            stride = next(values) if len(self.strides) > 1 else self.strides[0]
            # without searched skips the layers form a chain
            inputs = [j for j in range(i) if next(values)] if self.skips else ([i - 1] if i else [])
            layers.append({"kernel": kernel, "filters": filters, "stride": stride, "inputs": inputs})
        return {"space": self.name, "options": dict(self.settings), "layers": layers}

    def point(self, genotype: Mapping[str, Any]) -> tuple[int, ...]:
        check_layerwise(genotype)
        layers = genotype["layers"]
        if len(layers) != self.layers:
            raise GenotypeError(f"layers: this {self.name} space has {self.layers} layers, the genotype {len(layers)}")
        point: list[int] = []
        for i, layer in enumerate(layers):
            where = f"layers[{i}]"
            kh, kw = layer["kernel"]
            if self.square:
                if kh != kw:
                    raise GenotypeError(f"{where}.kernel: this space has square kernels, got {kh}x{kw}")
                point.append(_index(self.kernels, kh, f"{where}.kernel"))
            else:
                point += [_index(self.kernels, kh, f"{where}.kernel[0]"), _index(self.kernels, kw, f"{where}.kernel[1]")]
            point.append(_index(self.filters, layer["filters"], f"{where}.filters"))
            stride = layer.get("stride", 1)
            if len(self.strides) > 1:
                point.append(_index(self.strides, stride, f"{where}.stride"))
            elif stride != self.strides[0]:
                raise GenotypeError(f"{where}.stride: this space fixes the stride to {self.strides[0]}, got {stride}")
            inputs = set(layer["inputs"])
            if self.skips:
                point += [int(j in inputs) for j in range(i)]
            elif sorted(inputs) != ([i - 1] if i else []):
                raise GenotypeError(f"{where}.inputs: this space chains the layers (inputs [{i - 1}]), got {sorted(inputs)}")
        return tuple(point)


def check_layerwise(genotype: Mapping[str, Any]) -> None:
    """Check a layer-wise genotype's structure (any values, not only a space's options)."""
    layers = _field(genotype, "layers", "")
    if not isinstance(layers, list) or not layers:
        raise GenotypeError(f"layers: expected a non-empty list of layers, got {layers!r}")
    for i, layer in enumerate(layers):
        where = f"layers[{i}]"
        kernel = _field(layer, "kernel", where)
        if isinstance(kernel, int) and not isinstance(kernel, bool):
            kernel = layer["kernel"] = [kernel, kernel]
        if (not isinstance(kernel, list) or len(kernel) != 2
                or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in kernel)):
            raise GenotypeError(f"{where}.kernel: expected [height, width] of positive integers, got {kernel!r}")
        for key, default in (("filters", None), ("stride", 1)):
            value = layer.get(key, default) if default is not None else _field(layer, key, where)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise GenotypeError(f"{where}.{key}: expected a positive integer, got {value!r}")
        inputs = _field(layer, "inputs", where)
        if not isinstance(inputs, list) or any(isinstance(j, bool) or not isinstance(j, int) for j in inputs):
            raise GenotypeError(f"{where}.inputs: expected a list of earlier layer indices, got {inputs!r}")
        bad = [j for j in inputs if not 0 <= j < i]
        if bad:
            raise GenotypeError(f"{where}.inputs: {bad} are not earlier layers (0..{i - 1}); "
                                f"an empty list takes the image")
        unknown = sorted(set(layer) - {"kernel", "filters", "stride", "inputs"})
        if unknown:
            raise GenotypeError(f"{where}: unknown field(s) {', '.join(unknown)} "
                                f"(a layer has kernel, filters, stride, inputs)")


class CellSpace(SearchSpace):
    """NASNet's cell space: a ``normal`` and a ``reduction`` cell, each of ``blocks`` blocks of
    (left input, left operation, right input, right operation); inputs 0 and 1 are the cell
    inputs h_i and h_{i-1}, 2.. the earlier blocks' outputs. ``cells`` normal cells per stack and
    ``filters`` in the first stack say how the decoder stacks them."""

    def __init__(self, name: str = "nasnet_a", *, blocks: int = 5, ops: Sequence[str] = NASNET_OPS,
                 cells: int = 1, filters: int = 16) -> None:
        for label, value in (("blocks", blocks), ("cells", cells), ("filters", filters)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{label} must be a positive integer, got {value!r}")
        unknown = [op for op in ops if op not in NASNET_OPS]
        if unknown or not ops:
            raise ValueError(f"ops must be NASNet operations ({', '.join(NASNET_OPS)}), got {list(ops)}")
        self.name, self.blocks, self.ops = name, blocks, tuple(ops)
        decisions = []
        for c, cell in enumerate(("normal", "reduction")):
            for b in range(blocks):
                group = c * blocks + b
                inputs = tuple(range(b + 2))
                for side in ("left", "right"):
                    decisions.append(Decision(f"{cell}[{b}].{side}_input", inputs, group))
                    decisions.append(Decision(f"{cell}[{b}].{side}_op", self.ops, group))
        super().__init__(decisions, {"blocks": blocks, "ops": list(self.ops), "cells": cells, "filters": filters})

    def genotype(self, point: Sequence[int]) -> dict[str, Any]:
        values = iter(d.options[v] for d, v in zip(self.decisions, self.check_point(point)))
        cells = {cell: [[next(values), next(values), next(values), next(values)] for _ in range(self.blocks)]
                 for cell in ("normal", "reduction")}
        return {"space": self.name, "options": dict(self.settings), **cells}

    def point(self, genotype: Mapping[str, Any]) -> tuple[int, ...]:
        check_cells(genotype)
        point: list[int] = []
        for cell in ("normal", "reduction"):
            blocks = genotype[cell]
            if len(blocks) != self.blocks:
                raise GenotypeError(f"{cell}: this space's cells have {self.blocks} blocks, the genotype {len(blocks)}")
            for b, (left, left_op, right, right_op) in enumerate(blocks):
                where = f"{cell}[{b}]"
                point += [left, _index(self.ops, left_op, f"{where} left op"), right,
                          _index(self.ops, right_op, f"{where} right op")]
        return tuple(point)


def check_cells(genotype: Mapping[str, Any]) -> None:
    """Check a cell genotype's structure: two lists of [input, op, input, op] blocks."""
    for cell in ("normal", "reduction"):
        blocks = _field(genotype, cell, "")
        if not isinstance(blocks, list) or not blocks:
            raise GenotypeError(f"{cell}: expected a non-empty list of blocks [input, op, input, op], got {blocks!r}")
        for b, block in enumerate(blocks):
            where = f"{cell}[{b}]"
            if not isinstance(block, (list, tuple)) or len(block) != 4:
                raise GenotypeError(f"{where}: expected [left input, left op, right input, right op], got {block!r}")
            for k, side in ((0, "left"), (2, "right")):
                j = block[k]
                if isinstance(j, bool) or not isinstance(j, int) or not 0 <= j < b + 2:
                    raise GenotypeError(f"{where} {side} input: expected a hidden state 0..{b + 1} "
                                        f"(0, 1: the cell inputs; 2..: earlier blocks), got {j!r}")
            for k, side in ((1, "left"), (3, "right")):
                if block[k] not in NASNET_OPS:
                    close = difflib.get_close_matches(str(block[k]), NASNET_OPS, n=1)
                    hint = f"; did you mean {close[0]}?" if close else ""
                    raise GenotypeError(f"{where} {side} op: {block[k]!r} is not a NASNet operation "
                                        f"({', '.join(NASNET_OPS)}){hint}")


# --------------------------------------------------------------------------------------------
# The spaces by name

def _zoph_le(layers: int = 6, strides: Sequence[int] = (1,), kernels: Sequence[int] = (1, 3, 5, 7),
             filters: Sequence[int] = (24, 36, 48, 64)) -> LayerwiseSpace:
    return LayerwiseSpace("zoph_le", layers=layers, kernels=kernels, filters=filters, strides=strides)


def _mini(layers: int = 3, kernels: Sequence[int] = (3, 5), filters: Sequence[int] = (24, 48)) -> LayerwiseSpace:
    if isinstance(layers, bool) or not isinstance(layers, int) or not 1 <= layers <= 5:
        raise ValueError(f"the mini space has 1 to 5 layers (sized for two CPU cores), got {layers!r}")
    return LayerwiseSpace("mini", layers=layers, kernels=kernels, filters=filters, square=True)


def _nasnet_a(blocks: int = 5, cells: int = 1, filters: int = 16, ops: Sequence[str] = NASNET_OPS) -> CellSpace:
    return CellSpace("nasnet_a", blocks=blocks, ops=ops, cells=cells, filters=filters)


_SPACES = {"zoph_le": _zoph_le, "mini": _mini, "nasnet_a": _nasnet_a}


def list_spaces() -> list[str]:
    return sorted(_SPACES)


def get_space(name: str, **options: Any) -> SearchSpace:
    """The space ``name`` (:func:`list_spaces`) with its ``options`` (e.g. ``layers=4``)."""
    if name not in _SPACES:
        close = difflib.get_close_matches(str(name), _SPACES, n=3, cutoff=0.4)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise UnknownSpaceError(f"unknown search space {name!r}{hint} (spaces: {', '.join(list_spaces())})")
    import inspect

    accepted = set(inspect.signature(_SPACES[name]).parameters)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(f"the {name} space has no option {', '.join(map(repr, unknown))} "
                         f"(its options: {', '.join(sorted(accepted))})")
    return _SPACES[name](**options)


def space_of(genotype: Mapping[str, Any]) -> SearchSpace:
    """The space a genotype names, with the options it was drawn with."""
    name = _field(genotype, "space", "")
    options = genotype.get("options") or {}
    if not isinstance(options, Mapping):
        raise GenotypeError(f"options: expected a mapping of the space's settings, got {options!r}")
    try:
        if name in ("zoph_le", "mini"):
            keep = {"layers", "strides", "kernels", "filters"} if name == "zoph_le" else {"layers", "kernels", "filters"}
        else:
            keep = {"blocks", "cells", "filters", "ops"}
        return get_space(name, **{k: (tuple(v) if isinstance(v, list) else v) for k, v in options.items() if k in keep})
    except UnknownSpaceError as exc:
        raise GenotypeError(f"space: {exc}") from exc
    except ValueError as exc:
        raise GenotypeError(f"options: {exc}") from exc
