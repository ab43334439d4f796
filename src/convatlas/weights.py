"""Load torchvision's weights into the zoo's networks that share torchvision's architecture."""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from convatlas.registry import model_card, torchvision_key_map

__all__ = ["load_torchvision_weights", "WeightMappingError"]


class WeightMappingError(ValueError):
    """The source weights do not fit the model (another architecture, other class count...)."""


def _source_state_dict(source: nn.Module | Mapping[str, torch.Tensor] | str, tv_name: str):
    if isinstance(source, nn.Module):
        return source.state_dict()
    if isinstance(source, Mapping):
        return dict(source)
    if isinstance(source, str):  # a torchvision weights enum name, e.g. "IMAGENET1K_V1" (downloads)
        import torchvision

        weights = torchvision.models.get_weight(f"{torchvision.models.get_model_weights(tv_name).__name__}.{source}")
        return weights.get_state_dict(progress=True)
    raise TypeError(
        f"source must be a torchvision model, its state_dict or a weights name, got {type(source).__name__}"
    )


def load_torchvision_weights(
    model: nn.Module, source: nn.Module | Mapping[str, torch.Tensor] | str
) -> nn.Module:
    """Copy torchvision weights into ``model`` (built by :func:`convatlas.create_model`).

    ``source`` is a torchvision model, its ``state_dict``, or the name of one of torchvision's
    weights for that architecture (``"IMAGENET1K_V1"``; this downloads). After loading, both
    networks give the same outputs. Returns ``model``.
    """
    name = getattr(model, "model_name", None)
    if name is None:
        raise WeightMappingError("model was not built by convatlas.create_model; its architecture is unknown")
    card = model_card(name)
    if card.torchvision is None:
        raise WeightMappingError(
            f"{name} has no torchvision equivalent; models that have one: "
            "see `convatlas list` (the torchvision column)"
        )
    state = _source_state_dict(source, card.torchvision)
    mapper = torchvision_key_map(name)
    if mapper is not None:
        state = mapper(state)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise WeightMappingError(
            f"weights do not fit {name} (torchvision {card.torchvision}): "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    for key, value in state.items():
        if own[key].shape != value.shape:
            raise WeightMappingError(
                f"weights do not fit {name}: {key} has shape {tuple(value.shape)} in the source and "
                f"{tuple(own[key].shape)} in the model (different num_classes or variant?)"
            )
    model.load_state_dict(state, strict=True)
    return model
