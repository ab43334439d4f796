"""Genotype -> ``nn.Module``, and the registered network ``nas``.

``convatlas.create_model("nas", genotype=PATH)`` builds the network a genotype file describes
(YAML or JSON; :func:`load_genotype`), or ``genotype=`` a mapping; with no genotype, a three-layer
chain of the ``mini`` space. ``summary``, ``train``, ``compare`` and ``visualize`` take it like any
zoo network (``convatlas train nas --variant genotype=best.yaml``).

Two decoders:

:class:`LayerwiseNet` (``zoph_le``, ``mini``; Zoph & Le 2017, Sec. 3.3)
    every layer is convolution -> batch norm -> ReLU with "same" padding and its stride; its input
    is the depth-concatenation of the layers it names in ``inputs`` (none: the image), smaller
    maps zero-padded to the largest (centred); every output that no layer takes is concatenated
    the same way into the classifier. Deviation: the classifier is global average pooling and one
    linear layer (the paper feeds the final hidden state to a softmax without saying how it is
    pooled).
:class:`CellNet` (``nasnet_a``; Zoph et al. 2018)
    a 3x3 stem convolution, then N normal cells, a reduction cell, N normal cells, a reduction
    cell and N normal cells (filters doubled at each reduction), each cell the zoo's
    :class:`~convatlas.models.nasnet.Cell` on the two previous cells' outputs; a cell outputs the
    concatenation of its blocks that no block takes (the paper's rule); ReLU, global average pool
    and a linear classifier.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from convatlas._io import atomic_write_text
from convatlas.models.features import FeatureInfo
from convatlas.models.nasnet import Cell
from convatlas.registry import ModelCard, Published, register_model
from convatlas.search.space import GenotypeError, check_cells, check_layerwise, get_space, space_of

__all__ = ["LayerwiseNet", "CellNet", "build_network", "load_genotype", "save_genotype", "default_genotype", "nas"]


def load_genotype(source: str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
    """A genotype from a YAML/JSON file or a mapping, checked: a field that does not decode raises
    :class:`GenotypeError` naming it (and the file)."""
    if isinstance(source, Mapping):
        genotype, where = copy.deepcopy(dict(source)), "genotype"
    else:
        path = Path(source).expanduser()
        where = str(path)
        if not path.is_file():
            raise FileNotFoundError(f"genotype file {path} does not exist (a YAML or JSON file, as "
                                    f"`convatlas search` writes best.yaml)")
        try:
            genotype = yaml.safe_load(path.read_text())  # JSON is YAML
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise GenotypeError(f"{path}: not a YAML or JSON file ({str(exc).splitlines()[0]})") from exc
        if not isinstance(genotype, dict):
            raise GenotypeError(f"{path}: expected a mapping with space and its fields, got {type(genotype).__name__}")
    try:
        space_of(genotype)
        if genotype["space"] == "nasnet_a":
            check_cells(genotype)
        else:
            check_layerwise(genotype)
    except GenotypeError as exc:
        raise GenotypeError(f"{where}: {exc}" if where != "genotype" else str(exc)) from exc
    return genotype


def save_genotype(genotype: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write ``genotype`` as YAML (or JSON for a ``.json`` path), atomically."""
    path = Path(path)
    plain = json.loads(json.dumps(dict(genotype)))
    text = json.dumps(plain, indent=2) + "\n" if path.suffix == ".json" else yaml.safe_dump(plain, sort_keys=False)
    atomic_write_text(path, text)
    return path


def default_genotype() -> dict[str, Any]:
    """Three 3x3 layers of 24 filters in a chain: the ``mini`` space's first member with skips off."""
    space = get_space("mini")
    return space.genotype([0, 0] + [0, 0, 1] + [0, 0, 0, 1])


def _pad_to(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    dh, dw = height - x.shape[-2], width - x.shape[-1]
    if dh == 0 and dw == 0:
        return x
    return F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))


def _concat(maps: list[torch.Tensor]) -> torch.Tensor:
    """Depth-concatenation, smaller maps zero-padded (centred) to the largest (Zoph & Le)."""
    if len(maps) == 1:
        return maps[0]
    height = max(m.shape[-2] for m in maps)
    width = max(m.shape[-1] for m in maps)
    return torch.cat([_pad_to(m, height, width) for m in maps], dim=1)


class LayerwiseNet(nn.Module):
    """Zoph & Le's child network for a layer-wise genotype (see the module docstring)."""

    def __init__(self, genotype: Mapping[str, Any], *, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        check_layerwise(genotype)
        self.genotype = copy.deepcopy(dict(genotype))
        specs = self.genotype["layers"]
        self.inputs = [list(layer["inputs"]) for layer in specs]
        widths: list[int] = []
        layers = []
        for i, layer in enumerate(specs):
            kh, kw = layer["kernel"]
            c_in = sum(widths[j] for j in self.inputs[i]) if self.inputs[i] else in_channels
            stride = layer.get("stride", 1)
            layers.append(nn.Sequential(
                nn.Conv2d(c_in, layer["filters"], (kh, kw), stride=stride, padding=(kh // 2, kw // 2), bias=False),
                nn.BatchNorm2d(layer["filters"]),
                nn.ReLU(inplace=True),
            ))
            widths.append(layer["filters"])
        self.layers = nn.ModuleList(layers)
        taken = {j for inputs in self.inputs for j in inputs}
        self.outputs = [i for i in range(len(specs)) if i not in taken]  # dangling: to the classifier
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(sum(widths[i] for i in self.outputs), num_classes)
        # the backbone contract: a layer's map is declared when every later layer is coarser (so the
        # declared maps run from fine to coarse), the last layer always
        reductions: list[int] = []
        for i, layer in enumerate(specs):
            source = min(reductions[j] for j in self.inputs[i]) if self.inputs[i] else 1  # padded to the largest
            reductions.append(source * layer.get("stride", 1))
        self.feature_info = [FeatureInfo(f"layer{i}", f"layers.{i}", widths[i], reductions[i])
                             for i in range(len(specs))
                             if i == len(specs) - 1 or reductions[i] < min(reductions[i + 1:])]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs: list[torch.Tensor] = []
        for layer, inputs in zip(self.layers, self.inputs):
            outs.append(layer(_concat([outs[j] for j in inputs]) if inputs else x))
        hidden = _concat([outs[i] for i in self.outputs])
        return self.fc(torch.flatten(self.pool(hidden), 1))


def _unused(blocks: list) -> tuple[int, ...]:
    taken = {block[k] for block in blocks for k in (0, 2)}
    return tuple(i for i in range(2, 2 + len(blocks)) if i not in taken)


class CellNet(nn.Module):
    """A NASNet-style network of searched normal and reduction cells (see the module docstring)."""

    def __init__(self, genotype: Mapping[str, Any], *, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        check_cells(genotype)
        self.genotype = copy.deepcopy(dict(genotype))
        options = self.genotype.get("options") or {}
        cells_per_stack, filters = int(options.get("cells", 1)), int(options.get("filters", 16))
        normal = [tuple(b) for b in self.genotype["normal"]]
        reduction = [tuple(b) for b in self.genotype["reduction"]]
        stem = 3 * filters  # NASNet's CIFAR stem multiplier
        self.stem = nn.Sequential(nn.Conv2d(in_channels, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem))
        cells, prev, cur, prev_larger = [], None, stem, False
        reducing: list[int] = []
        for stack in range(3):
            width = filters * 2 ** stack
            if stack:
                cell = Cell(reduction, cur, prev, width, stride=2, concat=_unused(reduction), prev_is_larger=prev_larger)
                reducing.append(len(cells))
                cells.append(cell)
                prev, cur, prev_larger = cur, cell.out_channels, True
            for _ in range(cells_per_stack):
                cell = Cell(normal, cur, prev, width, concat=_unused(normal), prev_is_larger=prev_larger)
                cells.append(cell)
                prev, cur, prev_larger = cur, cell.out_channels, False
        self.cells = nn.ModuleList(cells)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cur, num_classes)
        # the last cell at each resolution: before each reduction cell, and the last
        last = [k for k in range(len(cells)) if k == len(cells) - 1 or k + 1 in reducing]
        self.feature_info = [FeatureInfo(f"cell{k}", f"cells.{k}", cells[k].out_channels, 2 ** stage)
                             for stage, k in enumerate(last)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prev, cur = None, self.stem(x)
        for cell in self.cells:
            prev, cur = cur, cell(cur, prev)
        return self.fc(torch.flatten(self.pool(F.relu(cur)), 1))


def build_network(genotype: str | os.PathLike | Mapping[str, Any], *, num_classes: int = 10,
                  in_channels: int = 1) -> nn.Module:
    """The network of ``genotype`` (a file or a mapping)."""
    genotype = load_genotype(genotype)
    cls = CellNet if genotype["space"] == "nasnet_a" else LayerwiseNet
    return cls(genotype, num_classes=num_classes, in_channels=in_channels)


@register_model(ModelCard(
    name="nas",
    family="nas",
    paper="Neural Architecture Search with Reinforcement Learning",
    authors="Zoph, Le",
    year=2017,
    arxiv="1611.01578",
    input_size=(1, 28, 28),
    dataset="mnist",
    recipe="mini_digits",
    params=Published(10_978, "hand count of the default genotype, tests/reference/mini.py"),
    macs=Published(8_298_096, "hand count of the default genotype at 1x28x28, tests/reference/mini.py"),
    idea=(
        "A network found by architecture search, built from its genotype: a controller (or evolution, or "
        "chance) chose each layer's filter size, filter count, stride and skip connections, or a NASNet cell's "
        "inputs and operations; `convatlas search` writes the genotype, this builds it."
    ),
    notes="genotype=PATH (YAML/JSON as `convatlas search` writes it) or a mapping; spaces zoph_le, mini "
          "(Zoph & Le's layer-wise grammar) and nasnet_a (Zoph et al. 2018's cells). in_channels: 1 or 3.",
))
def nas(*, num_classes: int = 10, genotype: str | os.PathLike | Mapping[str, Any] | None = None,
        in_channels: int = 1) -> nn.Module:
    """The network of a searched genotype (default: a three-layer chain of the ``mini`` space)."""
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be a positive integer, got {in_channels!r}")
    return build_network(default_genotype() if genotype is None else genotype, num_classes=num_classes,
                         in_channels=in_channels)
