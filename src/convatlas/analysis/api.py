"""``summary(model, input_size)``: shapes, parameters, MACs, FLOPs, memory and receptive field of
any ``nn.Module``, measured on the meta device without computing anything."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from convatlas._checks import positive_int
from convatlas.analysis.costs import FLOP_CONVENTION
from convatlas.analysis.receptive import GLOBAL, UNKNOWN, Field
from convatlas.analysis.report import LayerRow, Report, TrainingMemory
from convatlas.analysis.tracer import Call, Trace, trace_model

__all__ = ["summary", "OPTIMIZER_STATE", "parse_input_size"]

# Tensors of optimizer state per trainable parameter (Kingma & Ba 2014 keep two moments for Adam;
# SGD with momentum keeps one velocity, as in Sutskever et al. 2013).
OPTIMIZER_STATE = {"none": 0, "sgd-nomomentum": 0, "sgd": 1, "rmsprop": 1, "adagrad": 1, "adam": 2, "adamw": 2}

_MODES = ("eval", "train", "same")


def parse_input_size(value: str | Sequence[int] | Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
    """``"3x224x224"`` or ``(3, 224, 224)`` or ``[(3, 224, 224), (10,)]`` -> list of shapes
    (without the batch dimension)."""
    if isinstance(value, str):
        parts = [p for p in value.lower().replace(",", "x").split("x") if p.strip()]
        try:
            shape = tuple(int(p) for p in parts)
        except ValueError:
            raise ValueError(f"input size {value!r} is not of the form CxHxW, e.g. 3x224x224") from None
        shapes = [shape]
    elif isinstance(value, Sequence) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        shapes = [tuple(value)]
    elif isinstance(value, Sequence) and value and all(isinstance(v, Sequence) and not isinstance(v, str) for v in value):
        shapes = [tuple(v) for v in value]
    else:
        raise ValueError(f"input_size must be like (3, 224, 224) or '3x224x224', got {value!r}")
    for shape in shapes:
        if not shape or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
            raise ValueError(f"input size {shape} must be positive integers, e.g. (3, 224, 224)")
    return shapes


def _default_input_size(model: nn.Module) -> tuple[int, ...]:
    name = getattr(model, "model_name", None)
    if isinstance(name, str):
        from convatlas.registry import UnknownModelError, model_card

        try:
            return tuple(model_card(name).input_size)
        except UnknownModelError:
            pass
    cfg = getattr(model, "pretrained_cfg", None)  # timm models
    if isinstance(cfg, dict) and cfg.get("input_size"):
        return tuple(cfg["input_size"])
    raise ValueError(
        f"input_size is required for {type(model).__name__} (e.g. (3, 224, 224)); only zoo and timm "
        f"models know their own"
    )


def _param_counts(named_modules: list[tuple[str, nn.Module]]) -> dict[int, tuple[int, int]]:
    """(params, trainable) of every module, counting each parameter tensor once per subtree."""
    counts: dict[int, tuple[int, int]] = {}
    slots = [p for _, m in named_modules for p in m._parameters.values() if p is not None]
    shared = len({id(p) for p in slots}) != len(slots)

    def visit(module: nn.Module) -> tuple[int, int]:
        key = id(module)
        if key in counts:
            return counts[key]
        if shared:
            unique = {id(p): p for p in module.parameters()}.values()
            total = sum(p.numel() for p in unique)
            train = sum(p.numel() for p in unique if p.requires_grad)
        else:
            total = train = 0
            for p in module._parameters.values():
                if p is not None:
                    total += p.numel()
                    train += p.numel() if p.requires_grad else 0
            for child in module._modules.values():
                if child is not None:
                    t, r = visit(child)
                    total += t
                    train += r
        counts[key] = (total, train)
        return counts[key]

    visit(named_modules[0][1])
    return counts


def _field_columns(value: Any) -> tuple[str, tuple | None, tuple | None, tuple | None, bool]:
    if isinstance(value, Field):
        return "local", value.size, value.jumps, value.start, value.context
    if value is GLOBAL:
        return "global", None, None, None, False
    if value is UNKNOWN:
        return "unknown", None, None, None, False
    return "", None, None, None, False


def _rows(model: nn.Module, calls: list[Call], named_modules: list[tuple[str, nn.Module]]) -> list[LayerRow]:
    counts = _param_counts(named_modules)
    columns: dict[int, tuple] = {}
    macs = [c.macs for c in calls]
    flops = [c.flops for c in calls]
    for i in range(len(calls) - 1, -1, -1):  # children come after their parent: add them upwards
        parent = calls[i].parent
        if parent >= 0:
            macs[parent] += macs[i]
            flops[parent] += flops[i]
    rows = []
    for i, c in enumerate(calls):
        params, trainable = counts.get(id(c.module), (0, 0)) if c.module is not None else (0, 0)
        cols = columns.get(id(c.rf))
        if cols is None:
            cols = columns[id(c.rf)] = _field_columns(c.rf)
        kind, rf, jump, start, context = cols
        rows.append(LayerRow(
            name=c.name, type=c.type, kind=c.kind, depth=c.depth, output_shapes=tuple(c.output_shapes),
            params=params, trainable_params=trainable, macs=macs[i], flops=flops[i], output_bytes=c.output_bytes,
            field=kind, receptive_field=rf, jump=jump, start=start, global_context=context,
        ))
    # modules never reached (auxiliary heads in eval mode, or everything after a tracing failure)
    called = {id(c.module) for c in calls if c.module is not None}
    by_name = dict(named_modules)
    for name, module in by_name.items():
        if id(module) in called or not name:
            continue
        parent = by_name.get(name.rsplit(".", 1)[0] if "." in name else "")
        if parent is not None and id(parent) not in called and parent is not model:
            continue
        params, trainable = counts.get(id(module), (0, 0))
        rows.append(LayerRow(
            name=name, type=type(module).__name__, kind="unused", depth=name.count(".") + 1, output_shapes=(),
            params=params, trainable_params=trainable, macs=0, flops=0, output_bytes=0, field="",
            receptive_field=None, jump=None, start=None,
        ))
    return rows


def summary(
    model: nn.Module,
    input_size: str | Sequence[int] | Sequence[Sequence[int]] | None = None,
    *,
    batch_size: int = 1,
    dtype: torch.dtype = torch.float32,
    mode: str = "eval",
    optimizer: str = "sgd",
    memory: bool = True,
    name: str | None = None,
) -> Report:
    """Analyse ``model`` at ``input_size`` (C, H, W) without running it on real data.

    The model runs once on the ``meta`` device (parameters swapped for empty meta tensors, the
    real ones untouched), and every aten operator is recorded: module calls and functional calls
    (``F.conv2d``, ``torch.cat``, ``+``, ``F.interpolate``, ``x.mean()``) alike. The report has one
    row per layer with output shape, parameters (trainable/frozen), MACs, FLOPs (see
    :mod:`convatlas.analysis.costs` for the convention), output memory and receptive field, and
    totals including a training-memory estimate for ``batch_size`` with ``optimizer``
    (``"sgd"`` with momentum, ``"sgd-nomomentum"``, ``"adam"``, ``"adamw"``, ``"rmsprop"``,
    ``"adagrad"``, ``"none"``).

    ``mode`` is the module mode to analyse in: ``"eval"`` (default; auxiliary heads and dropout
    off), ``"train"`` or ``"same"`` (leave as is); the model's own mode is restored afterwards.
    ``memory=False`` skips the saved-for-backward measurement (a little faster). A model that
    cannot be traced (data-dependent control flow, an operator with no meta kernel) still gets a
    report, with ``report.issues`` naming the operator and the layer and ``report.complete`` False.
    An input too small for the network raises ``ValueError`` naming the layer.

    Example::

        >>> report = summary(torchvision.models.resnet50(), (3, 224, 224))
        >>> report.total_macs, report.receptive_field
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"summary() needs an nn.Module, got {type(model).__name__}")
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {', '.join(_MODES)}, got {mode!r}")
    if optimizer not in OPTIMIZER_STATE:
        raise ValueError(f"unknown optimizer {optimizer!r}; expected one of {', '.join(OPTIMIZER_STATE)}")
    positive_int("batch_size", batch_size)
    shapes = parse_input_size(input_size if input_size is not None else _default_input_size(model))
    inputs = [torch.empty((batch_size, *s), dtype=dtype, device="meta") for s in shapes]

    named_modules = list(model.named_modules())
    flags = [(m, m.training) for _, m in named_modules]
    if mode != "same" and any(m.training != (mode == "train") for _, m in named_modules):
        model.train(mode == "train")
    try:
        trace = trace_model(model, inputs, saved=memory, named_modules=named_modules)
    finally:
        for m, training in flags:
            if m.training != training:
                m.training = training
    model_label = name or getattr(model, "model_name", None) or type(model).__name__
    rows = _rows(model, trace.calls, named_modules)
    return _report(named_modules, model_label, trace, rows, [tuple(x.shape) for x in inputs], dtype, mode, optimizer,
                   batch_size)


def _unique(named_modules: list[tuple[str, nn.Module]], table: str) -> list[torch.Tensor]:
    found: dict[int, torch.Tensor] = {}
    for _, m in named_modules:
        for t in getattr(m, table).values():
            if t is not None:
                found[id(t)] = t
    return list(found.values())


def _report(named_modules: list[tuple[str, nn.Module]], label: str, trace: Trace, rows: list[LayerRow],
            input_shapes: list[tuple[int, ...]], dtype: torch.dtype, mode: str, optimizer: str,
            batch_size: int) -> Report:
    params = _unique(named_modules, "_parameters")
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    trainable_bytes = sum(p.numel() * p.element_size() for p in params if p.requires_grad)
    buffer_bytes = sum(b.numel() * b.element_size() for b in _unique(named_modules, "_buffers"))
    roots = [r for r in rows if r.kind != "unused" and r.depth == 0]
    total_macs = sum(r.macs for r in roots)
    total_flops = sum(r.flops for r in roots)
    if trace.saved_bytes is not None:
        activations, measured = trace.saved_bytes, True
    else:  # estimate: the outputs of the leaf layers
        leaves = [r for r, c in zip(rows, trace.calls) if c.kind == "module" and not c.has_children]
        activations, measured = sum(r.output_bytes for r in leaves), False
    factor = OPTIMIZER_STATE[optimizer]
    training = TrainingMemory(
        batch_size=batch_size, optimizer=optimizer, state_factor=factor, param_bytes=param_bytes,
        buffer_bytes=buffer_bytes, gradient_bytes=trainable_bytes, optimizer_bytes=factor * trainable_bytes,
        activation_bytes=activations, activations_measured=measured,
    )
    largest = trace.largest_field
    output_kind = _field_columns(trace.output_field)[0] or "none"
    if output_kind == "local":
        output_kind = f"local ({'x'.join(f'{v:g}' for v in trace.output_field.size)} px)"
    return Report(
        model=label,
        input_shapes=tuple(input_shapes),
        dtype=str(dtype).replace("torch.", ""),
        mode=mode,
        rows=rows,
        total_params=total,
        trainable_params=trainable,
        param_bytes=param_bytes,
        buffer_bytes=buffer_bytes,
        total_macs=total_macs,
        total_flops=total_flops,
        activation_bytes=trace.written_bytes,
        saved_activation_bytes=trace.saved_bytes,
        training_memory=training,
        receptive_field=largest.size if largest is not None else None,
        jump=largest.jumps if largest is not None else None,
        start=largest.start if largest is not None else None,
        receptive_field_layer=trace.largest_field_layer,
        output_field=output_kind,
        issues=list(trace.issues),
        complete=trace.complete,
        conventions=FLOP_CONVENTION,
    )
