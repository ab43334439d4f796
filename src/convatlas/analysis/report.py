"""The result of :func:`convatlas.analysis.summary`: one row per layer, totals, and exports.

A :class:`Report` prints as a table (``report.print(depth=2)`` collapses everything below depth 2
into its parent's row; every number in a row is inclusive of the layers inside it), and exports to
CSV, JSON and Markdown (``report.save("resnet50.csv")``). Files are written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from convatlas._io import atomic_write_text

__all__ = ["LayerRow", "TrainingMemory", "Report", "format_count", "format_bytes"]


def format_count(value: float | None) -> str:
    """1234567 -> '1.23M' (K, M, G, T)."""
    if value is None:
        return "-"
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= div:
            return f"{value / div:.2f}{suffix}"
    return f"{value:g}"


def format_bytes(value: float | None) -> str:
    """Bytes in binary units: 1536 -> '1.50 KiB'."""
    if value is None:
        return "-"
    for div, suffix in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(value) >= div:
            return f"{value / div:.2f} {suffix}"
    return f"{int(value)} B"


def _axes(values: tuple[float, ...] | None) -> str:
    if values is None:
        return ""
    texts = [f"{v:g}" if isinstance(v, float) else str(v) for v in values]
    return texts[0] if len(set(texts)) == 1 else "x".join(texts)


@dataclass(frozen=True, slots=True)
class LayerRow:
    """One module call (``kind="module"``), one functional operator inside a module that has
    children (``"function"``: the ``+`` of a residual block, ``torch.cat``, ``F.interpolate``...),
    or a module the forward pass never reached (``"unused"``, e.g. auxiliary heads in eval mode).

    ``macs``, ``flops`` and ``params`` include everything inside the row's module. ``field`` is
    ``"local"`` (then ``receptive_field``, ``jump`` and ``start`` are per spatial axis, in input
    pixels), ``"global"`` (spatial axes pooled or flattened away), ``"unknown"``, or ``""`` (the
    output does not depend on the input). ``global_context`` marks a local field that a
    global-pooling path (squeeze-excitation) also reaches.
    """

    name: str
    type: str
    kind: str
    depth: int
    output_shapes: tuple[tuple[int, ...], ...]
    params: int
    trainable_params: int
    macs: int
    flops: int
    output_bytes: int
    field: str
    receptive_field: tuple[float, ...] | None
    jump: tuple[float, ...] | None
    start: tuple[float, ...] | None
    global_context: bool = False

    @property
    def output_shape(self) -> tuple[int, ...] | None:
        return self.output_shapes[0] if self.output_shapes else None

    @property
    def frozen_params(self) -> int:
        return self.params - self.trainable_params

    @property
    def field_text(self) -> str:
        if self.field == "local":
            return _axes(self.receptive_field) + ("*" if self.global_context else "")
        return {"global": "global", "unknown": "?"}.get(self.field, "")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["output_shapes"] = [list(s) for s in self.output_shapes]
        d["output_shape"] = list(self.output_shape) if self.output_shape else None
        d["frozen_params"] = self.frozen_params
        for key in ("receptive_field", "jump", "start"):
            d[key] = list(d[key]) if d[key] is not None else None
        return d


@dataclass(frozen=True)
class TrainingMemory:
    """Estimated memory to train with ``batch_size`` images per step::

        total = parameters + buffers + gradients + optimizer state + activations saved for backward

    gradients = bytes of the trainable parameters; optimizer state = ``state_factor`` x that
    (SGD with momentum 1, Adam/AdamW 2, plain SGD 0). ``activations_measured`` is True when the
    saved activations were measured with ``torch.autograd.graph.saved_tensors_hooks`` during the
    meta forward pass (every distinct storage autograd keeps, weights excluded), False when they
    were estimated as the sum of the layers' outputs. Not included: the allocator's rounding and
    fragmentation, cuDNN workspaces, the CUDA context, and the transient buffers of the backward
    pass itself — expect the real peak to be somewhat higher.
    """

    batch_size: int
    optimizer: str
    state_factor: int
    param_bytes: int
    buffer_bytes: int
    gradient_bytes: int
    optimizer_bytes: int
    activation_bytes: int
    activations_measured: bool

    @property
    def total_bytes(self) -> int:
        return self.param_bytes + self.buffer_bytes + self.gradient_bytes + self.optimizer_bytes + self.activation_bytes

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["total_bytes"] = self.total_bytes
        return d


_COLUMNS = ("layer", "type", "output", "params", "MACs", "FLOPs", "out mem", "RF", "jump", "start")


@dataclass
class Report:
    """Per-layer and total cost of one model at one input size (see :func:`summary`)."""

    model: str
    input_shapes: tuple[tuple[int, ...], ...]
    dtype: str
    mode: str
    rows: list[LayerRow]
    total_params: int
    trainable_params: int
    param_bytes: int
    buffer_bytes: int
    total_macs: int
    total_flops: int
    activation_bytes: int
    saved_activation_bytes: int | None
    training_memory: TrainingMemory
    receptive_field: tuple[float, ...] | None
    jump: tuple[float, ...] | None
    start: tuple[float, ...] | None
    receptive_field_layer: str
    output_field: str
    issues: list[str] = field(default_factory=list)
    complete: bool = True
    conventions: str = ""

    # ---- derived numbers ---------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return self.input_shapes[0][0] if self.input_shapes and self.input_shapes[0] else 1

    @property
    def frozen_params(self) -> int:
        return self.total_params - self.trainable_params

    @property
    def macs_per_sample(self) -> float:
        return self.total_macs / max(self.batch_size, 1)

    @property
    def flops_per_sample(self) -> float:
        return self.total_flops / max(self.batch_size, 1)

    def row(self, name: str) -> LayerRow:
        """The first row with this dotted name (e.g. ``"layer1.0.conv1"``)."""
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"no layer named {name!r} in the report of {self.model}")

    def rows_to_depth(self, depth: int | None = None) -> list[LayerRow]:
        if depth is None:
            return list(self.rows)
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        return [r for r in self.rows if r.depth <= depth]

    # ---- text ----------------------------------------------------------------------------
    def _cells(self, r: LayerRow) -> list[str]:
        short = r.name.rsplit(".", 1)[-1] if r.name else self.model
        shape = "" if not r.output_shapes else "x".join(map(str, r.output_shapes[0])) + (
            f" (+{len(r.output_shapes) - 1})" if len(r.output_shapes) > 1 else "")
        if r.kind == "unused":
            shape = "(not run)"
        return [
            "  " * r.depth + short, r.type, shape, format_count(r.params) if r.params else "",
            format_count(r.macs) if r.macs else "", format_count(r.flops) if r.flops else "",
            format_bytes(r.output_bytes) if r.output_bytes else "", r.field_text,
            _axes(r.jump) if r.field == "local" else "", _axes(r.start) if r.field == "local" else "",
        ]

    def _footer(self) -> list[str]:
        tm = self.training_memory
        per = f" ({format_count(self.macs_per_sample)} per sample)" if self.batch_size > 1 else ""
        lines = [
            f"params: {self.total_params:,} (trainable {self.trainable_params:,}, frozen {self.frozen_params:,}), "
            f"{format_bytes(self.param_bytes)}; buffers {format_bytes(self.buffer_bytes)}",
            f"MACs: {format_count(self.total_macs)}{per}   FLOPs: {format_count(self.total_flops)}",
            f"activations: {format_bytes(self.activation_bytes)} written by the forward pass, "
            + (f"{format_bytes(self.saved_activation_bytes)} saved for backward"
               if self.saved_activation_bytes is not None else "saved-for-backward not measured"),
            f"training memory at batch {tm.batch_size} with {tm.optimizer}: {format_bytes(tm.total_bytes)} "
            f"= params {format_bytes(tm.param_bytes)} + buffers {format_bytes(tm.buffer_bytes)} + grads "
            f"{format_bytes(tm.gradient_bytes)} + optimizer {format_bytes(tm.optimizer_bytes)} + activations "
            f"{format_bytes(tm.activation_bytes)} ({'measured' if tm.activations_measured else 'estimated'})",
        ]
        if self.receptive_field is not None:
            lines.append(
                f"largest receptive field: {_axes(self.receptive_field)} px (jump {_axes(self.jump)}, start "
                f"{_axes(self.start)}) in {self.receptive_field_layer or 'the model'}; output: {self.output_field}"
            )
        if any(r.global_context for r in self.rows):
            lines.append("* the layer also sees the whole image through a global-pooling branch (squeeze-excitation)")
        lines.append(f"conventions: {self.conventions}")
        for issue in self.issues:
            lines.append(f"WARNING: {issue}")
        return lines

    def _rich_table(self, depth: int | None):
        from rich.table import Table

        title = (f"{self.model}  input {' + '.join('x'.join(map(str, s)) for s in self.input_shapes)} "
                 f"{self.dtype}, {self.mode} mode" + ("" if self.complete else "  [INCOMPLETE]"))
        table = Table(title=title, show_lines=False)
        for col in _COLUMNS:
            left = col in ("layer", "type", "output")
            table.add_column(col, justify="left" if left else "right", overflow="fold", no_wrap=not left)
        for r in self.rows_to_depth(depth):
            table.add_row(*self._cells(r), style="dim" if r.kind == "unused" else None)
        return table

    def table(self, depth: int | None = None, width: int = 140) -> str:
        """The report as plain text (rows up to ``depth``, then the totals)."""
        from rich.console import Console

        buffer = io.StringIO()
        console = Console(file=buffer, width=width, force_terminal=False, color_system=None)
        console.print(self._rich_table(depth))
        for line in self._footer():
            console.print(line, highlight=False, markup=False)
        return buffer.getvalue()

    def print(self, depth: int | None = None) -> None:
        """Print the table (with colours on a terminal) and the totals to standard output."""
        import sys

        from rich.console import Console

        console = Console(width=None if sys.stdout.isatty() else 160)
        console.print(self._rich_table(depth))
        for line in self._footer():
            console.print(line, highlight=False, markup=False)

    def __str__(self) -> str:
        return self.table()

    # ---- exports -------------------------------------------------------------------------
    def totals(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "input_shapes": [list(s) for s in self.input_shapes],
            "dtype": self.dtype,
            "mode": self.mode,
            "batch_size": self.batch_size,
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "frozen_params": self.frozen_params,
            "param_bytes": self.param_bytes,
            "buffer_bytes": self.buffer_bytes,
            "total_macs": self.total_macs,
            "total_flops": self.total_flops,
            "macs_per_sample": self.macs_per_sample,
            "activation_bytes": self.activation_bytes,
            "saved_activation_bytes": self.saved_activation_bytes,
            "training_memory": self.training_memory.to_dict(),
            "receptive_field": list(self.receptive_field) if self.receptive_field else None,
            "jump": list(self.jump) if self.jump else None,
            "start": list(self.start) if self.start else None,
            "receptive_field_layer": self.receptive_field_layer,
            "output_field": self.output_field,
            "complete": self.complete,
            "issues": list(self.issues),
            "conventions": self.conventions,
        }

    def to_dict(self, depth: int | None = None) -> dict[str, Any]:
        return {**self.totals(), "rows": [r.to_dict() for r in self.rows_to_depth(depth)]}

    def to_json(self, path: str | os.PathLike[str] | None = None, depth: int | None = None) -> str:
        text = json.dumps(self.to_dict(depth), indent=2)
        if path is not None:
            atomic_write_text(path, text + "\n")
        return text

    _CSV_FIELDS = ("name", "type", "kind", "depth", "output_shape", "params", "trainable_params", "frozen_params",
                   "macs", "flops", "output_bytes", "field", "receptive_field", "jump", "start", "global_context")

    def to_csv(self, path: str | os.PathLike[str] | None = None, depth: int | None = None) -> str:
        """One line per row; shapes and per-axis values joined with 'x' (e.g. '1x64x56x56')."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self._CSV_FIELDS)
        for r in self.rows_to_depth(depth):
            shape = r.output_shape
            writer.writerow([
                r.name, r.type, r.kind, r.depth, "x".join(map(str, shape)) if shape else "", r.params,
                r.trainable_params, r.frozen_params, r.macs, r.flops, r.output_bytes, r.field,
                _axes(r.receptive_field), _axes(r.jump), _axes(r.start), int(r.global_context),
            ])
        text = buffer.getvalue()
        if path is not None:
            atomic_write_text(path, text)
        return text

    def to_markdown(self, path: str | os.PathLike[str] | None = None, depth: int | None = None) -> str:
        lines = [
            f"## {self.model}",
            "",
            f"Input {' + '.join('x'.join(map(str, s)) for s in self.input_shapes)} ({self.dtype}, {self.mode} mode).",
            "",
            "| " + " | ".join(_COLUMNS) + " |",
            "|" + "|".join("---" if c in ("layer", "type", "output") else "---:" for c in _COLUMNS) + "|",
        ]
        for r in self.rows_to_depth(depth):
            cells = self._cells(r)
            cells[0] = "&nbsp;" * 2 * r.depth + (r.name.rsplit(".", 1)[-1] if r.name else self.model)
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        lines.append("")
        lines.extend(f"- {line}" for line in self._footer())
        text = "\n".join(lines) + "\n"
        if path is not None:
            atomic_write_text(path, text)
        return text

    def save(self, path: str | os.PathLike[str], format: str | None = None, depth: int | None = None) -> str:
        """Write the report to ``path``; the format comes from ``format`` or the file's suffix
        (.csv, .json, .md, .txt)."""
        fmt = (format or os.path.splitext(str(path))[1].lstrip(".")).lower()
        fmt = {"md": "markdown", "txt": "table"}.get(fmt, fmt)
        if fmt == "csv":
            return self.to_csv(path, depth)
        if fmt == "json":
            return self.to_json(path, depth)
        if fmt == "markdown":
            return self.to_markdown(path, depth)
        if fmt == "table":
            text = self.table(depth)
            atomic_write_text(path, text)
            return text
        raise ValueError(f"unknown report format {fmt!r} for {path}; expected csv, json, markdown (.md) or table (.txt)")
