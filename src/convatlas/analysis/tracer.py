"""Run a model on the ``meta`` device and record every aten operator it calls.

The model's parameters and buffers are swapped, for the length of one forward pass, for empty
``meta`` tensors of the same shape (no real storage is copied or allocated), and the input is an
empty meta tensor. A :class:`~torch.utils._python_dispatch.TorchDispatchMode` sees every operator
below autograd — the ones ``nn.Module`` calls and the functional ones (``F.conv2d``, ``torch.cat``,
``+``, ``F.interpolate``, ``x.mean()``) alike — and charges its cost to the innermost module
being called (tracked with global forward pre/post hooks). Shapes come from :mod:`.shapes`
(arithmetic) or, for other operators, from their meta kernels; costs from :mod:`.costs`;
receptive fields from :mod:`.receptive`. With ``saved=True`` the pass runs with autograd on and a
``saved_tensors_hooks`` pair records the bytes autograd keeps for the backward pass.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import nn
from torch.nn.modules import module as module_hooks
from torch.utils._python_dispatch import TorchDispatchMode

from convatlas.analysis import costs, receptive, shapes
from convatlas.analysis.receptive import FIELD_ATTR, GLOBAL, UNKNOWN, Field, input_field, span
from convatlas.analysis.shapes import OutputTooSmallError
from convatlas.registry import InputTooSmallError, check_input_size

aten = torch.ops.aten

__all__ = ["Call", "Trace", "trace_model", "TraceStopped"]

# Function rows are made, inside modules that have children, for operators that compute something
# or that change the layout a reader cares about.
_STRUCTURAL = {
    "cat", "stack", "constant_pad_nd", "reflection_pad2d", "replication_pad2d", "upsample_nearest2d",
    "pixel_shuffle", "pixel_unshuffle", "max_pool2d_with_indices", "avg_pool2d", "_adaptive_avg_pool2d",
}
_FALLBACK_LIMIT_BYTES = 256 * 2**20  # largest op input we run on the CPU when it has no meta kernel


class Call:
    """One row while tracing: a module call or a functional operator inside a module."""

    __slots__ = ("kind", "name", "type", "depth", "parent", "module", "is_container", "output_shapes",
                 "output_bytes", "macs", "flops", "rf", "has_children", "op_counts")

    def __init__(self, kind: str, name: str, type_name: str, depth: int, parent: int, module: nn.Module | None) -> None:
        self.kind = kind  # "module" or "function"
        self.name = name
        self.type = type_name
        self.depth = depth
        self.parent = parent  # index of the enclosing call, -1 for the root
        self.module = module
        self.is_container = module is not None and bool(module._modules)
        self.output_shapes: list[tuple[int, ...]] = []
        self.output_bytes = 0
        self.macs = 0  # own cost while tracing (children excluded)
        self.flops = 0
        self.rf: Any = None  # receptive field of the (first) output
        self.has_children = False
        self.op_counts: dict[str, int] | None = None


class TraceStopped(Exception):
    """The forward pass could not go on; ``layer`` and ``op`` say where."""

    def __init__(self, message: str, layer: str, op: str | None) -> None:
        super().__init__(message)
        self.layer, self.op = layer, op


class InputTooSmall(InputTooSmallError):
    """The input is too small for the network: some layer's output would be empty."""

    def __init__(self, message: str, layer: str) -> None:
        super().__init__(message)
        self.layer = layer


@dataclass
class Trace:
    calls: list[Call]
    written_bytes: int  # bytes of every tensor the forward pass allocates
    saved_bytes: int | None  # bytes autograd keeps for backward (None: not measured)
    largest_field: Field | None
    largest_field_layer: str
    output_field: Any
    issues: list[str]
    complete: bool
    outputs: Any


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        out: list[torch.Tensor] = []
        for v in value:
            out.extend(_tensors(v))
        return out
    if isinstance(value, dict):
        out = []
        for v in value.values():
            out.extend(_tensors(v))
        return out
    return []


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


# --------------------------------------------------------------------------------------------
# Operators whose meta kernel is slow get their outputs' metadata cached by argument signature.

_META_CACHE: dict[Any, Any] = {}
_CHEAP: set[Any] = set()  # operators whose meta kernel is fast enough not to cache
_CHEAP_SECONDS = 5e-5
_META = torch.device("meta")
_LOCAL_SCALAR = aten._local_scalar_dense.default
_ALLOCATES: dict[Any, bool] = {}


class _OpInfo:
    """What the tracer needs to know about one operator, looked up once per operator."""

    __slots__ = ("func", "name", "shape", "cost", "field", "allocates", "structural")

    def __init__(self, func: Any) -> None:
        self.func = func
        self.name = func.__name__.split(".")[0]
        self.shape = shapes.rule_for(func)
        self.cost = costs.rule_for(func)
        self.field = receptive.rule_for(func)
        self.allocates = _allocates(func)
        self.structural = self.name in _STRUCTURAL


# keyed by id(operator): OpOverload hashes in Python, and an _OpInfo keeps its operator alive
_INFO: dict[int, _OpInfo] = {}


def _allocates(func: Any) -> bool:
    """True when ``func`` returns new tensors (not views of, or writes into, its inputs)."""
    known = _ALLOCATES.get(func)
    if known is None:
        schema = func._schema
        known = not schema.is_mutable and all(r.alias_info is None for r in schema.returns)
        _ALLOCATES[func] = known
    return known


def _signature(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return ("T", tuple(value.shape), value.stride(), value.dtype, value.device.type)
    if isinstance(value, (list, tuple)):
        return tuple(_signature(v) for v in value)
    if isinstance(value, dict):
        return tuple((k, _signature(v)) for k, v in sorted(value.items()))
    hash(value)
    return value


def _describe(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return ("T", tuple(value.shape), value.stride(), value.dtype)
    if isinstance(value, (list, tuple)):
        return type(value), tuple(_describe(v) for v in value)
    return ("V", value)


def _rebuild(desc: Any) -> Any:
    kind = desc[0]
    if kind == "T":
        return torch.empty_strided(desc[1], desc[2], dtype=desc[3], device="meta")
    if kind == "V":
        return desc[1]
    return kind(_rebuild(d) for d in desc[1])


def _to_meta(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        if value.device.type == "meta" or value.dim() == 0:
            return value
        return torch.empty_strided(tuple(value.shape), value.stride(), dtype=value.dtype, device="meta")
    if isinstance(value, (list, tuple)):
        return type(value)(_to_meta(v) for v in value)
    return value


def _to_cpu_zeros(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return torch.zeros(tuple(value.shape), dtype=value.dtype, device="cpu")
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu_zeros(v) for v in value)
    return value


# --------------------------------------------------------------------------------------------


class _Tracer(TorchDispatchMode):
    @classmethod
    def _should_skip_dynamo(cls) -> bool:  # no torch.compile inside: skip the per-call wrapper
        return False

    def __init__(self, names: dict[int, str], spatial_dims: int) -> None:
        super().__init__()
        self.names = names
        self.nsp = spatial_dims
        self.calls: list[Call] = []
        self.stack: list[int] = []
        self.written = 0
        self.issues: list[str] = []
        self.largest: Field | None = None
        self.largest_span = 0
        self.largest_layer = ""
        self.last_spanned: Any = None  # the field whose span was compared last
        self.last_op: Any = None
        self._fn_names: dict[tuple[int, str], int] = {}

    # ---- modules -------------------------------------------------------------------------
    def pre_hook(self, module: nn.Module, args: Any) -> None:
        stack, calls = self.stack, self.calls
        parent = stack[-1] if stack else -1
        name = self.names.get(id(module))
        type_name = type(module).__name__
        if name is None:
            base = calls[parent].name if parent >= 0 else ""
            name = f"{base}.<{type_name}>" if base else f"<{type_name}>"
        if parent >= 0:
            calls[parent].has_children = True
        calls.append(Call("module", name, type_name, len(stack), parent, module))
        stack.append(len(calls) - 1)

    def post_hook(self, module: nn.Module, args: Any, output: Any) -> None:
        if not self.stack:
            return
        index = self.stack.pop()
        call = self.calls[index]
        if call.module is not module:  # a module left by an exception; find ours
            while self.stack and self.calls[index].module is not module:
                index = self.stack.pop()
            call = self.calls[index]
        if isinstance(output, torch.Tensor):
            call.output_shapes = [tuple(output.shape)]
            call.output_bytes = output.numel() * output.element_size()
            call.rf = getattr(output, FIELD_ATTR, None)
            return
        tensors = _tensors(output)
        call.output_shapes = [tuple(t.shape) for t in tensors]
        call.output_bytes = sum(_nbytes(t) for t in tensors)
        if tensors:
            call.rf = getattr(tensors[0], FIELD_ATTR, None)

    def current_layer(self) -> str:
        if not self.stack:
            return "(input)"
        call = self.calls[self.stack[-1]]
        return f"{call.name or '(model)'} ({call.type})"

    # ---- operators -----------------------------------------------------------------------
    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        self.last_op = func
        if func is _LOCAL_SCALAR:
            return self._read_value(args[0])
        info = _INFO.get(id(func))
        if info is None:
            info = _INFO[id(func)] = _OpInfo(func)
        try:
            out = NotImplemented
            if info.shape is not None and "out" not in kwargs:
                out = info.shape(args, kwargs)
            if out is NotImplemented:
                out = self._run(func, args, kwargs)
        except OutputTooSmallError as exc:
            raise InputTooSmall(f"layer {self.current_layer()}: {exc}", self.current_layer()) from None
        except (TraceStopped, InputTooSmall):
            raise
        except Exception as exc:  # noqa: BLE001 - reported with the op and the layer
            raise TraceStopped(
                f"layer {self.current_layer()} calls {func}, which cannot run without data: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                self.current_layer(), str(func),
            ) from exc
        self._account(func, info, args, kwargs, out)
        return out

    def _read_value(self, tensor: torch.Tensor) -> Any:
        message = (
            f"layer {self.current_layer()} reads a tensor's value (aten._local_scalar_dense, i.e. "
            f"Tensor.item()/bool()/int()): data-dependent control flow cannot be traced without data. "
            f"The value was taken as 0/False and the rest of the report follows that branch."
        )
        if message not in self.issues:
            self.issues.append(message)
        if tensor.dtype == torch.bool:
            return False
        return 0.0 if tensor.dtype.is_floating_point else 0

    def _run(self, func: Any, args: tuple, kwargs: dict) -> Any:
        """Run the real meta kernel; remember the outputs' metadata of slow kernels."""
        key = None
        if func not in _CHEAP and _allocates(func) and any(isinstance(a, torch.Tensor) for a in args):
            try:
                key = (func, _signature(args), _signature(kwargs))
            except TypeError:
                key = None
            if key is not None:
                desc = _META_CACHE.get(key)
                if desc is not None:
                    return _rebuild(desc)
        margs, mkwargs = _to_meta(args), {k: _to_meta(v) for k, v in kwargs.items()}
        device = mkwargs.get("device")
        if device is not None and torch.device(device).type != "meta":  # factories: torch.zeros(...)
            mkwargs["device"] = _META
        began = time.perf_counter()
        try:
            out = func(*margs, **mkwargs)
        except (NotImplementedError, RuntimeError) as exc:
            text = str(exc).lower()
            if "meta" not in text and "fake impl" not in text:
                raise
            tags = getattr(func, "tags", ())
            if torch.Tag.dynamic_output_shape in tags or torch.Tag.data_dependent_output in tags:
                raise TraceStopped(
                    f"layer {self.current_layer()} calls {func}, whose output shape depends on the data "
                    f"(e.g. boolean-mask indexing, nonzero, unique); it cannot be traced without data",
                    self.current_layer(), str(func),
                ) from None
            return self._run_on_cpu(func, args, kwargs)
        if key is not None:
            if time.perf_counter() - began < _CHEAP_SECONDS:
                _CHEAP.add(func)
            else:
                if len(_META_CACHE) > 20000:
                    _META_CACHE.clear()
                _META_CACHE[key] = _describe(out)
        return out

    def _run_on_cpu(self, func: Any, args: tuple, kwargs: dict) -> Any:
        size = sum(_nbytes(t) for t in _tensors(list(args)) + _tensors(kwargs))
        if size > _FALLBACK_LIMIT_BYTES:
            raise NotImplementedError(f"{func} has no meta kernel and its inputs are too large to run on zeros")
        out = func(*_to_cpu_zeros(args), **{k: _to_cpu_zeros(v) for k, v in kwargs.items()})
        self.issues.append(
            f"layer {self.current_layer()} calls {func}, which has no meta kernel: its output shape was "
            f"found by running it once on zeros on the CPU, and its cost is not counted."
        )
        return _to_meta(out)

    def _account(self, func: Any, info: _OpInfo, args: tuple, kwargs: dict, out: Any) -> None:
        if not self.stack:
            return
        owner_index = self.stack[-1]
        owner = self.calls[owner_index]
        outputs = (out,) if isinstance(out, torch.Tensor) else _tensors(out)
        if info.cost is not None:
            macs, flops = info.cost(args, kwargs, out)
        else:
            macs = flops = 0
        allocated = 0
        if outputs and info.allocates:
            for t in outputs:
                allocated += t.numel() * t.element_size()
            self.written += allocated
        # receptive field
        field = None
        if self.nsp and outputs:
            inputs: list[tuple[torch.Tensor, Any]] = []
            for a in args:
                if isinstance(a, torch.Tensor):
                    f = getattr(a, FIELD_ATTR, None)
                    if f is not None:
                        inputs.append((a, f))
                elif isinstance(a, (list, tuple)):
                    for t in a:
                        if isinstance(t, torch.Tensor):
                            f = getattr(t, FIELD_ATTR, None)
                            if f is not None:
                                inputs.append((t, f))
            if inputs:
                field = info.field(args, inputs, outputs, self.nsp)
                for t in outputs:
                    setattr(t, FIELD_ATTR, field)
                # a field passed on unchanged (norms, activations) was compared already
                if field is not self.last_spanned and isinstance(field, Field):
                    self.last_spanned = field
                    size = span(field)
                    if size > self.largest_span:
                        self.largest, self.largest_span = field, size
                        self.largest_layer = owner.name
        # a function row inside a module that has children (residual +, cat, interpolate...)
        if owner.is_container and (flops or info.structural):
            op = info.name
            if owner.op_counts is None:
                owner.op_counts = {}
            count = owner.op_counts.get(op, 0) + 1
            owner.op_counts[op] = count
            label = op if count == 1 else f"{op}#{count}"
            name = f"{owner.name}.{label}" if owner.name else label
            owner.has_children = True
            row = Call("function", name, f"aten.{op}", owner.depth + 1, owner_index, None)
            row.output_shapes = [tuple(t.shape) for t in outputs]
            row.output_bytes = allocated
            row.macs, row.flops = macs, flops
            row.rf = field
            self.calls.append(row)
        else:
            owner.macs += macs
            owner.flops += flops


def _swap_to_meta(modules: list[nn.Module]) -> list[tuple[dict, str, Any]]:
    """Replace every parameter and buffer by an empty meta tensor of the same shape (a plain
    tensor with the same ``requires_grad``); return what to put back. Tied tensors stay tied."""
    swaps: list[tuple[dict, str, Any]] = []
    memo: dict[int, Any] = {}
    for module in modules:
        for table in (module._parameters, module._buffers):
            for key, value in table.items():
                if value is None or value.is_meta:
                    continue
                if isinstance(value, nn.parameter.UninitializedTensorMixin):
                    raise ValueError(
                        f"{type(module).__name__} has an uninitialised (lazy) parameter {key!r}; run the model "
                        f"once on a real input before analysing it"
                    )
                meta = memo.get(id(value))
                if meta is None:
                    meta = torch.empty_strided(value.shape, value.stride(), dtype=value.dtype, device=_META,
                                               requires_grad=value.requires_grad)
                    memo[id(value)] = meta
                swaps.append((table, key, value))
                table[key] = meta
    return swaps


@contextlib.contextmanager
def _meta_weights(modules: list[nn.Module]) -> Iterator[None]:
    swaps = _swap_to_meta(modules)
    try:
        yield
    finally:
        for table, key, value in reversed(swaps):
            table[key] = value


def trace_model(model: nn.Module, inputs: list[torch.Tensor], *, saved: bool = True,
                named_modules: list[tuple[str, nn.Module]] | None = None) -> Trace:
    """Trace one forward pass of ``model`` on the meta ``inputs`` (see the module docstring)."""
    if named_modules is None:
        named_modules = list(model.named_modules())
    names = {id(m): n for n, m in named_modules}
    modules = [m for _, m in named_modules]
    spatial_dims = max(inputs[0].dim() - 2, 0)
    for x in inputs:
        if x.dim() - 2 == spatial_dims and spatial_dims > 0:
            setattr(x, FIELD_ATTR, input_field(spatial_dims))
    tracer = _Tracer(names, spatial_dims)
    saved_storages: dict[int, int] = {}
    weight_storages: set[int] = set()

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        key = storage._cdata
        if key not in weight_storages and key not in saved_storages:
            saved_storages[key] = storage.nbytes()
        return t

    def unpack(t: torch.Tensor) -> torch.Tensor:
        return t

    complete = True
    outputs = None
    with contextlib.ExitStack() as stack:
        stack.enter_context(_meta_weights(modules))
        for module in modules if saved else ():  # only the saved-tensor hook needs them
            for table in (module._parameters, module._buffers):
                for tensor in table.values():
                    if tensor is not None:
                        weight_storages.add(tensor.untyped_storage()._cdata)
        handles = [
            module_hooks.register_module_forward_pre_hook(tracer.pre_hook),
            module_hooks.register_module_forward_hook(tracer.post_hook),
        ]
        try:
            grad = saved and any(p is not None and p.requires_grad for m in modules for p in m._parameters.values())
            with torch.set_grad_enabled(grad), tracer:
                if grad:
                    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
                        outputs = model(*inputs)
                else:
                    outputs = model(*inputs)
        except InputTooSmall:
            _readable_input_error(model, inputs)  # a zoo model: its guard's message
            raise
        except TraceStopped as exc:
            complete = False
            tracer.issues.append(str(exc))
        except Exception as exc:  # noqa: BLE001 - an error in the model's own Python code
            complete = False
            tracer.issues.append(
                f"tracing stopped in layer {tracer.current_layer()}"
                + (f" after operator {tracer.last_op}" if tracer.last_op is not None else "")
                + f": {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            )
            _readable_input_error(model, inputs)
        finally:
            for h in handles:
                h.remove()
    out_tensors = _tensors(outputs)
    output_field = getattr(out_tensors[0], FIELD_ATTR, None) if out_tensors else None
    return Trace(
        calls=tracer.calls,
        written_bytes=tracer.written,
        saved_bytes=sum(saved_storages.values()) if saved and complete else None,
        largest_field=tracer.largest,
        largest_field_layer=tracer.largest_layer,
        output_field=output_field,
        issues=tracer.issues,
        complete=complete,
        outputs=outputs,
    )


def _readable_input_error(model: nn.Module, inputs: list[torch.Tensor]) -> None:
    """A zoo model that failed: let its input-size guard say if the input was too small."""
    if inputs and inputs[0].dim() == 4:
        check_input_size(model, tuple(inputs[0].shape))


__all__ += ["InputTooSmall", "GLOBAL", "UNKNOWN"]
