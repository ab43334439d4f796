"""ZFNet's deconvnet: project a unit's activation back to pixel space.

Zeiler & Fergus (2013), "Visualizing and Understanding Convolutional Networks", arXiv:1311.2901,
Sec. 2.1. To see what excites one unit of a layer, every other activation of that layer is set to
zero and the map is passed down a "deconvnet" attached to the network, which undoes each layer in
turn, from the layer down to the image:

* **unpooling** -- max pooling cannot be inverted, but the *switches* recorded in the forward pass
  (where in each pooling region the maximum was) put each value back where it came from;
  everything else stays zero. Where overlapping windows (3x3 stride 2) chose the same pixel the
  values add up, which makes unpooling the exact transpose of the max selection;
* **rectification** -- the reconstruction is passed through a ReLU, ``r = max(0, r)``, because
  the feature maps of the forward pass are always positive;
* **filtering** -- a convolution is undone with the transposed version of the same filters
  (each flipped vertically and horizontally, input and output channels swapped):
  ``r_in = conv_transpose2d(r_out, W)``, the bias left out.

The deconvnet here is generic: it records the modules the forward pass runs, one after another,
and inverts any *chain* of ``Conv2d``, ``ReLU`` and ``MaxPool2d`` (ZFNet, AlexNet, VGG, LeNet
with max pooling). Other layers are handled as follows:

* ``BatchNorm2d`` (eval mode) is a per-channel affine map ``y = g (x - m)/s + b``; its transpose
  multiplies by ``g / s`` -- as if it were folded into the convolution before it;
* local response normalisation, dropout and identity layers are passed through unchanged: the
  paper's deconvnet has only the three operations above (its contrast normalisation is not
  inverted);
* anything else (a Tanh, an average pool, a residual addition, a concatenation, a functional
  call such as ``F.relu`` between modules) stops the deconvnet with a :class:`DeconvnetError`
  naming the layer, and the layers it can still project.

The projection of a unit equals the gradient of that unit with respect to the image in which
every ReLU passes back ``max(0, r)`` instead of ``r * [x > 0]``, times the unit's activation --
the definition captum's ``NeuronDeconvolution`` implements; the tests check the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from convatlas.viz.source import check_channel, get_layer

__all__ = ["DeconvnetError", "DeconvnetResult", "deconvnet", "project", "trace_chain", "ChainStep",
           "receptive_box", "projectable_layers", "projectable_outputs", "isolate_unit"]

INVERTED = (nn.Conv2d, nn.ReLU, nn.MaxPool2d)
FOLDED = (nn.BatchNorm2d,)
PASSED_THROUGH = (nn.LocalResponseNorm, nn.Dropout, nn.Dropout2d, nn.Identity)


class DeconvnetError(ValueError):
    """The deconvnet cannot go down through a layer of the network."""


@dataclass
class ChainStep:
    """One module of the forward chain, with what the deconvnet needs to undo it."""

    name: str
    module: nn.Module
    input_shape: tuple[int, ...]
    switches: torch.Tensor | None = field(default=None, repr=False)  # max-pool argmax, flat per map


@dataclass
class DeconvnetResult:
    """Projections of ``len(channels)`` units of ``layer`` into pixel space.

    ``projections[k]`` (C, H, W) is the reconstruction of the unit of channel ``channels[k]`` at
    ``positions[k]`` (row, column) of the layer's map, whose activation is ``activations[k]``;
    ``boxes[k]`` = (top, left, bottom, right) is that unit's receptive field in the image
    (bottom/right exclusive, may reach outside the image).
    """

    layer: str
    projections: torch.Tensor
    channels: list[int]
    positions: list[tuple[int, int]]
    activations: list[float]
    boxes: list[tuple[int, int, int, int]]
    keep: str


def _supported(module: nn.Module) -> bool:
    return isinstance(module, INVERTED + FOLDED + PASSED_THROUGH)


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if n and next(m.children(), None) is None]


class _Reached(Exception):
    """Raised by the hook on the target layer to stop the forward pass there."""


def _record_calls(model: nn.Module, x: torch.Tensor, target: nn.Module) -> tuple[list[dict], torch.Tensor | None]:
    """Run ``model`` on ``x`` until ``target`` returns; record every leaf module's call.

    A record holds the module, its input and output tensors and their version counters (which
    PyTorch bumps at every in-place change, so ``out += identity`` between two modules shows).
    Max-pool switches are computed from the pool's input on the way.
    """
    calls: list[dict] = []
    reached: list[torch.Tensor] = []

    def pre_hook(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            tensor = args[0] if len(args) == 1 and isinstance(args[0], torch.Tensor) else None
            call = {"name": name, "module": module, "input": tensor,
                    "version": None if tensor is None else tensor._version}
            if isinstance(module, nn.MaxPool2d) and tensor is not None and tensor.dim() == 4:
                _, call["switches"] = F.max_pool2d(
                    tensor, module.kernel_size, module.stride, module.padding, module.dilation,
                    ceil_mode=module.ceil_mode, return_indices=True,
                )
            calls.append(call)
        return hook

    def post_hook(module: nn.Module, args: tuple, output) -> None:
        calls[-1]["output"] = output
        calls[-1]["out_version"] = output._version if isinstance(output, torch.Tensor) else None

    def target_hook(module: nn.Module, args: tuple, output) -> None:
        reached.append(output)
        raise _Reached

    handles = []
    for name, module in _leaves(model):
        handles.append(module.register_forward_pre_hook(pre_hook(name)))
        handles.append(module.register_forward_hook(post_hook))
    handles.append(target.register_forward_hook(target_hook))
    try:
        with torch.no_grad():
            model(x)
    except _Reached:
        pass
    finally:
        for h in handles:
            h.remove()
    return calls, (reached[0] if reached else None)


def _valid_prefix(calls: list[dict], x: torch.Tensor) -> tuple[list[ChainStep], str | None, dict]:
    """The chain steps up to the first call the deconvnet cannot undo, why it stopped there
    (None if it did not), and the last good call (its output is where the chain ends)."""
    steps: list[ChainStep] = []
    last = {"name": "the input image", "output": x, "out_version": x._version}
    for call in calls:
        name, module, tensor = call["name"], call["module"], call["input"]
        kind = type(module).__name__
        if tensor is None or tensor is not last["output"] or call["version"] != last["out_version"]:
            return steps, (
                f"layer {name!r} ({kind}) does not take the output of {last['name']!r} unchanged; the forward "
                "pass computes something between them that is not a module (a residual addition, a "
                "concatenation, torch.flatten, F.relu...), and the deconvnet inverts plain chains of modules."
            ), last
        if not _supported(module) or (isinstance(module, nn.BatchNorm2d) and module.training):
            return steps, (
                f"it cannot invert layer {name!r} ({kind}): it inverts Conv2d (transposed filters), ReLU "
                "(rectification) and MaxPool2d (unpooling with switches), folds BatchNorm2d in eval mode into "
                "the filters, and passes LocalResponseNorm, Dropout and Identity through."
            ), last
        steps.append(ChainStep(name, module, tuple(tensor.shape), call.get("switches")))
        last = call
    return steps, None, last


def trace_chain(model: nn.Module, x: torch.Tensor, layer: str) -> tuple[list[ChainStep], torch.Tensor]:
    """Run ``model`` on ``x`` up to ``layer``; return the chain of modules it ran and the layer's output.

    Each module must take as input exactly the tensor the previous one returned, unmodified (the
    first one: ``x``); otherwise the forward pass did something the deconvnet cannot undo and a
    :class:`DeconvnetError` says where, and which layers it can project.
    """
    target = get_layer(model, layer)
    calls, output = _record_calls(model, x, target)
    if output is None:
        raise DeconvnetError(f"layer {layer!r} is not used in the forward pass of {type(model).__name__}")
    if not isinstance(output, torch.Tensor):
        raise DeconvnetError(f"layer {layer!r} returns {type(output).__name__}, not a feature tensor")
    steps, problem, last = _valid_prefix(calls, x)
    if problem is None and (output is not last["output"] or output._version != last["out_version"]):
        problem = f"its output is computed from {last['name']!r} by something that is not a module."
    if problem is not None:
        raise DeconvnetError(
            f"the deconvnet cannot reach layer {layer!r}: {problem} Layers it can project: "
            f"{', '.join(s.name for s in steps) or '(none)'}"
        )
    return steps, output.detach().clone()


def projectable_outputs(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """Leaf layers the deconvnet can project from for input ``x``, in forward order, each with the
    shape of its output at the call the deconvnet projects: its first (:func:`trace_chain` stops
    the forward pass there)."""
    calls, _ = _record_calls(model, x, model)
    steps, _, _ = _valid_prefix(calls, x)
    outputs: dict[str, tuple[int, ...]] = {}
    for step, call in zip(steps, calls):  # steps[i] undoes calls[i]; a module called twice counts once
        output = call.get("output")
        if step.name not in outputs and isinstance(output, torch.Tensor):
            outputs[step.name] = tuple(output.shape)
    return outputs


def projectable_layers(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Leaf layers the deconvnet can project from for input ``x``, in forward order."""
    return list(projectable_outputs(model, x))


# --------------------------------------------------------------------------------------------
# The three operations of the deconvnet (and BatchNorm folded into the filters).


def _numeric_padding(conv: nn.Conv2d) -> tuple[int, int]:
    if not isinstance(conv.padding, str):
        return tuple(conv.padding)  # type: ignore[return-value]
    if conv.padding == "valid":
        return (0, 0)
    totals = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size)]
    if any(t % 2 for t in totals):
        raise DeconvnetError(f"padding='same' with an even kernel pads unevenly; the deconvnet cannot undo {conv}")
    return (totals[0] // 2, totals[1] // 2)


def transposed_filtering(signal: torch.Tensor, conv: nn.Conv2d, input_shape: tuple[int, ...]) -> torch.Tensor:
    """Undo a convolution with its transposed filters: ``conv_transpose2d(r, W)`` (no bias)."""
    if conv.padding_mode != "zeros":
        raise DeconvnetError(f"the deconvnet handles zero padding only; {conv} pads with {conv.padding_mode!r}")
    padding = _numeric_padding(conv)
    output_padding = []
    for dim in range(2):
        size = (signal.shape[2 + dim] - 1) * conv.stride[dim] - 2 * padding[dim] \
            + conv.dilation[dim] * (conv.kernel_size[dim] - 1) + 1
        output_padding.append(input_shape[2 + dim] - size)  # rows the forward stride left unread
    return F.conv_transpose2d(signal, conv.weight, None, conv.stride, padding, tuple(output_padding),
                              conv.groups, conv.dilation)


def unpool(signal: torch.Tensor, switches: torch.Tensor, input_shape: tuple[int, ...]) -> torch.Tensor:
    """Put each value back at the position its max-pool switch recorded; zeros elsewhere."""
    n, c = signal.shape[:2]
    height, width = input_shape[2], input_shape[3]
    index = switches.expand(n, -1, -1, -1).reshape(n, c, -1)
    out = signal.new_zeros(n, c, height * width)
    out.scatter_add_(2, index, signal.reshape(n, c, -1))
    return out.view(n, c, height, width)


def rectify(signal: torch.Tensor) -> torch.Tensor:
    """The deconvnet's ReLU: ``max(0, r)``, whatever the forward pass's mask was."""
    return F.relu(signal)


def _batchnorm_transpose(signal: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    if bn.running_var is None:
        raise DeconvnetError(f"{bn} has no running statistics; the deconvnet needs them to fold it")
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    return signal * scale.view(1, -1, 1, 1)


def project(steps: list[ChainStep], signal: torch.Tensor) -> torch.Tensor:
    """Pass ``signal`` (N, C, h, w), the top layer's map with all but the chosen units zeroed,
    down the deconvnet to pixel space (N, C_in, H, W)."""
    for step in reversed(steps):
        module = step.module
        if isinstance(module, nn.Conv2d):
            signal = transposed_filtering(signal, module, step.input_shape)
        elif isinstance(module, nn.ReLU):
            signal = rectify(signal)
        elif isinstance(module, nn.MaxPool2d):
            assert step.switches is not None
            signal = unpool(signal, step.switches, step.input_shape)
        elif isinstance(module, nn.BatchNorm2d):
            signal = _batchnorm_transpose(signal, module)
        # PASSED_THROUGH layers leave the signal as it is
    return signal


def _window(module: nn.Module) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]] | None:
    """(kernel, stride, padding, dilation) of a conv / pool step, or None for point-wise layers."""
    def pair(v):
        return (v, v) if isinstance(v, int) else tuple(v)

    if isinstance(module, nn.Conv2d):
        return module.kernel_size, module.stride, _numeric_padding(module), module.dilation
    if isinstance(module, nn.MaxPool2d):
        stride = module.stride if module.stride is not None else module.kernel_size
        return pair(module.kernel_size), pair(stride), pair(module.padding), pair(module.dilation)
    return None


def receptive_box(steps: list[ChainStep], row: int, col: int) -> tuple[int, int, int, int]:
    """Image pixels that the unit at (``row``, ``col``) of the last step can see.

    Going down the chain, output positions ``[a, b]`` of a layer with kernel ``k``, stride ``s``,
    padding ``p`` and dilation ``d`` see inputs ``[a s - p, b s - p + d (k - 1)]``.
    Returns (top, left, bottom, right), bottom/right exclusive, not clipped to the image.
    """
    rows, cols = [row, row], [col, col]
    for step in reversed(steps):
        window = _window(step.module)
        if window is None:
            continue
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = window
        rows = [rows[0] * sh - ph, rows[1] * sh - ph + dh * (kh - 1)]
        cols = [cols[0] * sw - pw, cols[1] * sw - pw + dw * (kw - 1)]
    return rows[0], cols[0], rows[1] + 1, cols[1] + 1


# --------------------------------------------------------------------------------------------
# The public entry point.


def isolate_unit(activation: torch.Tensor, channel: int, keep: str) -> tuple[torch.Tensor, tuple[int, int], float]:
    """Zero every activation of one image's layer output (C, h, w) except those of ``channel``
    that are kept: its strongest unit (``keep="max"``) or its whole map (``keep="map"``).
    Returns the signal, the strongest unit's (row, col) and its activation."""
    fmap = activation[channel]
    flat = int(fmap.argmax())
    row, col = divmod(flat, fmap.shape[1])
    signal = torch.zeros_like(activation)
    if keep == "max":
        signal[channel, row, col] = fmap[row, col]
    else:
        signal[channel] = fmap
    return signal, (row, col), float(fmap[row, col])


def deconvnet(
    model: nn.Module,
    x: torch.Tensor,
    layer: str,
    channel: int | None = None,
    *,
    top_k: int = 9,
    keep: str = "max",
) -> DeconvnetResult:
    """Project the strongest activations of ``layer`` for input ``x`` (1, C, H, W) to pixel space.

    With ``channel``, its strongest unit is projected; without, the ``top_k`` channels whose
    strongest unit is largest, one projection each (ZFNet shows the top 9). ``keep="max"`` keeps
    only that single strongest activation (the paper's choice); ``keep="map"`` keeps the whole
    feature map of the channel.
    """
    if keep not in ("max", "map"):
        raise ValueError(f"keep must be 'max' (strongest unit) or 'map' (whole feature map), got {keep!r}")
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"deconvnet takes one image of shape (1, C, H, W), got {tuple(x.shape)}")
    steps, activation = trace_chain(model, x, layer)
    if activation.dim() != 4:
        raise DeconvnetError(f"layer {layer!r} gives shape {tuple(activation.shape)}, not feature maps (N, C, H, W)")
    activation = activation[0]
    if channel is not None:
        channels = [check_channel(channel, activation.shape[0], layer)]
    else:
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        strongest = activation.flatten(1).amax(dim=1)
        channels = strongest.argsort(descending=True)[: min(top_k, activation.shape[0])].tolist()
    signals, positions, values = [], [], []
    for c in channels:
        signal, position, value = isolate_unit(activation, c, keep)
        signals.append(signal)
        positions.append(position)
        values.append(value)
    with torch.no_grad():
        projections = project(steps, torch.stack(signals))
    boxes = [receptive_box(steps, r, c) for r, c in positions]
    return DeconvnetResult(layer, projections, channels, positions, values, boxes, keep)
