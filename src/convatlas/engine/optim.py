"""Optimisers, parameter groups, the moving average of the weights, and gradient clipping.

* SGD with (Nesterov) momentum, or AdamW (Loshchilov & Hutter 2017, arXiv:1711.05101).
* Weight decay on every parameter, or only on tensors of two or more dimensions (conv and linear
  weights; not biases or normalisation scales).
* EMA: ``w_ema <- d w_ema + (1 - d) w`` after every step, buffers copied (Polyak & Juditsky 1992).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from convatlas.engine.config import LoopConfig

__all__ = ["param_groups", "make_optimizer", "EMA", "clip_gradients"]


def param_groups(model: nn.Module, weight_decay: float, decay_norm_and_bias: bool) -> list[dict[str, Any]]:
    """Weight decay on everything, or (``decay_norm_and_bias=False``) only on tensors with 2+
    dimensions: conv and linear weights, not biases or normalisation scales."""
    params = [p for p in model.parameters() if p.requires_grad]
    if decay_norm_and_bias or weight_decay == 0:
        return [{"params": params, "weight_decay": weight_decay}]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, cfg: LoopConfig) -> torch.optim.Optimizer:
    """The optimiser of ``cfg``, in its multi-tensor (``foreach``) form on every device: PyTorch
    picks it by default on CUDA only; on the CPU it is faster for networks of many small tensors
    and gives the same numbers to the bit (checked for SGD with Nesterov momentum and AdamW)."""
    groups = param_groups(model, cfg.weight_decay, cfg.decay_norm_and_bias)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                               foreach=True)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), foreach=True)


class EMA:
    """Exponential moving average of the parameters (buffers are copied)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ema_params = list(self.module.parameters())
        params = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_params, params, 1.0 - self.decay)
        for e, b in zip(self.module.buffers(), model.buffers()):
            e.copy_(b)


def clip_gradients(model: nn.Module, max_norm: float | None) -> None:
    """Scale the gradients so that their global L2 norm is at most ``max_norm`` (None or 0: leave them)."""
    if max_norm:
        nn.utils.clip_grad_norm_(model.parameters(), max_norm)
