"""Feature maps: what a layer computes for one image.

A convolutional layer turns its input into ``C`` feature maps, one per filter; looking at them
for a picture shows which parts of it each filter responds to (Zeiler & Fergus, 2013,
"Visualizing and Understanding Convolutional Networks", arXiv:1311.2901, Sec. 2). The activation
is taken at the output of the named module with a forward hook; a module called several times in
one forward pass (a ReLU shared by the branches of a residual block) reports its last call.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn

from convatlas.viz.source import get_layer, layer_names

__all__ = ["feature_maps", "capture", "default_feature_layer", "spatial_layer_names", "output_shapes", "run_observed"]


@contextlib.contextmanager
def capture(module: nn.Module, *, keep_graph: bool = False) -> Iterator[list[torch.Tensor]]:
    """Collect the output of ``module`` at each call while the block runs.

    With ``keep_graph`` the live output is kept (for gradients); otherwise a detached copy, so
    later in-place operations of the network do not change what was recorded.
    """
    outputs: list[torch.Tensor] = []

    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        if not isinstance(output, torch.Tensor):
            raise ValueError(
                f"layer {type(module).__name__} returns {type(output).__name__}, not a tensor; choose a layer "
                "whose output is one feature tensor"
            )
        outputs.append(output if keep_graph else output.detach().clone())

    handle = module.register_forward_hook(hook)
    try:
        yield outputs
    finally:
        handle.remove()


def run_observed(model: nn.Module, x: torch.Tensor, observe: Callable[[str, nn.Module, Any], None],
                 names: Iterable[str] | None = None) -> None:
    """Run ``model(x)`` once without gradients, calling ``observe(name, module, output)`` after
    every call of every named module (or of those in ``names``); the hooks are removed after."""
    wanted = None if names is None else set(names)
    handles = [module.register_forward_hook(lambda m, i, o, n=name: observe(n, m, o))
               for name, module in model.named_modules() if name and (wanted is None or name in wanted)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()


def output_shapes(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """Output shape of every named module (last call) for input ``x``."""
    shapes: dict[str, tuple[int, ...]] = {}
    run_observed(model, x, lambda n, m, o: shapes.__setitem__(n, tuple(o.shape)) if isinstance(o, torch.Tensor) else None)
    return shapes


def spatial_layer_names(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Layers whose output for ``x`` is a stack of feature maps (N, C, H, W), in forward order."""
    shapes = output_shapes(model, x)
    order = [n for n in layer_names(model) if n in shapes]
    return [n for n in order if len(shapes[n]) == 4]


def default_feature_layer(model: nn.Module, x: torch.Tensor | None = None) -> str:
    """The first convolution: its maps are the easiest to read (edges, colour blobs).

    With an input ``x``, the first ``Conv2d`` to run in the forward pass (a convolution defined
    early but not run -- an auxiliary head in eval mode -- has no maps to show); without, the first
    one defined.
    """
    convs = layer_names(model, (nn.Conv2d,))
    if not convs:
        raise ValueError(f"{type(model).__name__} has no Conv2d layer; name a layer with --layer")
    if x is None:
        return convs[0]
    ran: list[str] = []
    run_observed(model, x, lambda n, m, o: ran.append(n), names=convs)
    if not ran:
        raise ValueError(f"no Conv2d layer of {type(model).__name__} runs for this input; name a layer with --layer")
    return ran[0]


def feature_maps(model: nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    """Activation maps (C, H, W) of the layer called ``layer`` for one input ``x`` (1, C, H, W).

    An unknown layer name raises ValueError listing the valid names; a layer whose output is not
    a stack of maps (a fully connected layer) raises ValueError listing the layers that are.
    """
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"feature_maps takes one image of shape (1, C, H, W), got {tuple(x.shape)}")
    module = get_layer(model, layer)
    with capture(module) as outputs, torch.no_grad():
        model(x)
    if not outputs:
        raise ValueError(f"layer {layer!r} is not used in the forward pass of {type(model).__name__}")
    out = outputs[-1]
    if out.dim() != 4:
        raise ValueError(
            f"layer {layer!r} gives an output of shape {tuple(out.shape)}, not feature maps (N, C, H, W); "
            f"layers with feature maps: {', '.join(spatial_layer_names(model, x))}"
        )
    return out[0]
