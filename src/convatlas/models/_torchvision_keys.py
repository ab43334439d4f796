"""Renaming torchvision's state_dict keys for its inverted-residual networks (MobileNet v2,
EfficientNet), which number every layer where ours name them after the paper."""

from __future__ import annotations

import re

import torch

_PAIR = {"0": "conv", "1": "bn"}


def inverted_residual_keys(
    state: dict[str, torch.Tensor], block_pattern: str, parts: tuple[str, ...], paired: frozenset[str],
) -> dict[str, torch.Tensor]:
    """Rename keys of torchvision's numbered inverted-residual blocks to ours.

    ``block_pattern`` matches ``<block>.<j>.<rest>`` with groups (block prefix, layer index j,
    rest); ``parts`` names the layers of an expanding block in order (a block without the 1x1
    expansion has one index less: it lacks ``parts[0]``). Layers in ``paired`` are torchvision
    conv-BN ``Sequential``s whose ``0``/``1`` become ``conv``/``bn``. Outside the blocks:
    ``features.i.{0,1}`` (stem and head conv-BN) and ``classifier.1`` (the linear layer).
    """
    block_re = re.compile(block_pattern + r"\.(\d+)\.(.*)")
    last = str(len(parts) - 1)
    expanded = {m.group(1) for k in state if (m := block_re.match(k)) and m.group(2) == last}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if m := block_re.match(key):
            block, j, rest = m.groups()
            name = (parts if block in expanded else parts[1:])[int(j)]
            if name in paired:
                sub, rest = rest.split(".", 1)
                name = f"{name}.{_PAIR[sub]}"
            key = f"{block}.{name}.{rest}"
        elif m := re.match(r"features\.(\d+)\.([01])\.(.*)", key):
            key = f"features.{m.group(1)}.{_PAIR[m.group(2)]}.{m.group(3)}"
        elif key.startswith("classifier.1."):
            key = "classifier.fc." + key[len("classifier.1."):]
        out[key] = value
    return out
