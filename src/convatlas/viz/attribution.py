"""Which pixels a class score depends on: saliency, guided backpropagation and Grad-CAM.

* **Saliency** (Simonyan, Vedaldi & Zisserman, 2013, "Deep Inside Convolutional Networks",
  arXiv:1312.6034, Sec. 3.1): the gradient of the class score ``S_c`` (the logit, before the
  softmax) with respect to the image, ``w = dS_c/dI``; the map is ``M_ij = max_channel |w_ij|``.
* **Guided backpropagation** (Springenberg, Dosovitskiy, Brox & Riedmiller, 2014, "Striving for
  Simplicity: The All Convolutional Net", arXiv:1412.6806, Sec. 3.4): the same gradient, but every
  ReLU passes back only positive gradients through positive inputs,
  ``R_in = [x > 0] * max(R_out, 0)`` -- the ReLU rules of backpropagation (``[x > 0]``) and of the
  deconvnet (``max(R_out, 0)``) at once. It needs the ReLUs to be ``nn.ReLU`` modules.
* **Grad-CAM** (Selvaraju et al., 2017, "Grad-CAM: Visual Explanations from Deep Networks via
  Gradient-based Localization", arXiv:1610.02391, Eq. 1-2): for the feature maps ``A^k`` of a
  convolutional layer, ``alpha_k = mean_ij dS_c/dA^k_ij`` and
  ``L = ReLU(sum_k alpha_k A^k)``, upsampled bilinearly to the image.

All three work for any network that returns class scores (a tuple output counts its first item).
``target=None`` explains the class the network predicts.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from convatlas.viz.features import run_observed
from convatlas.viz.source import get_layer

__all__ = ["SaliencyResult", "GradCamResult", "saliency", "guided_backprop", "gradcam", "default_cam_layer",
           "predict"]


@dataclass
class SaliencyResult:
    """``gradient`` (C, H, W) of the class score with respect to the input; ``saliency`` (H, W)
    its largest magnitude over channels; ``score`` the logit of ``target``."""

    gradient: torch.Tensor
    saliency: torch.Tensor
    target: int
    score: float
    guided: bool


@dataclass
class GradCamResult:
    """``heatmap`` (H, W) at the input's size and ``low_res`` (h, w) at the layer's size, both
    ``ReLU(sum_k alpha_k A^k)`` (not rescaled); ``weights`` the ``alpha_k``."""

    heatmap: torch.Tensor
    low_res: torch.Tensor
    weights: torch.Tensor
    layer: str
    target: int
    score: float


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise ValueError(
            f"{type(model).__name__} must return class scores (N, classes) for this method, got "
            f"{type(out).__name__}{'' if not isinstance(out, torch.Tensor) else tuple(out.shape)}"
        )
    return out


def _check_input(x: torch.Tensor, method: str) -> None:
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"{method} takes one image of shape (1, C, H, W), got {tuple(x.shape)}")


def _target(logits: torch.Tensor, target: int | None) -> int:
    classes = logits.shape[1]
    if target is None:
        return int(logits[0].argmax())
    if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < classes:
        raise ValueError(f"target class must be an integer in 0..{classes - 1}, got {target!r}")
    return target


def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Class probabilities (N, classes): the softmax of the network's scores."""
    with torch.no_grad():
        return _logits(model, x).softmax(dim=1)


class _PositiveGradient(torch.autograd.Function):
    """Identity forward; backward lets through only positive gradients, ``max(R, 0)``.

    Placed right after a ReLU, whose own backward multiplies by ``[x > 0]``, it turns the pair
    into guided backpropagation's rule ``[x > 0] * max(R, 0)``.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return grad.clamp(min=0)


def _input_gradient(model: nn.Module, x: torch.Tensor, target: int | None, guided: bool) -> SaliencyResult:
    handles = []
    if guided:
        relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
        if not relus:
            raise ValueError(
                f"guided backpropagation changes the backward pass of the network's ReLU modules, and "
                f"{type(model).__name__} has no nn.ReLU module (does it call F.relu?)"
            )
        handles = [m.register_forward_hook(lambda m, i, o: _PositiveGradient.apply(o)) for m in relus]
    try:
        image = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            logits = _logits(model, image)
            target = _target(logits, target)
            score = logits[0, target]
            (gradient,) = torch.autograd.grad(score, image)
    finally:
        for h in handles:
            h.remove()
    gradient = gradient[0]
    return SaliencyResult(gradient, gradient.abs().amax(dim=0), target, float(score.detach()), guided)


def saliency(model: nn.Module, x: torch.Tensor, target: int | None = None) -> SaliencyResult:
    """Simonyan et al.'s image-specific class saliency: ``max_c |dS_target/dI|`` for ``x`` (1, C, H, W)."""
    _check_input(x, "saliency")
    return _input_gradient(model, x, target, guided=False)


def guided_backprop(model: nn.Module, x: torch.Tensor, target: int | None = None) -> SaliencyResult:
    """Springenberg et al.'s guided backpropagation of the score of ``target`` to ``x`` (1, C, H, W)."""
    _check_input(x, "guided backpropagation")
    return _input_gradient(model, x, target, guided=True)


def _last_calls(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[int, tuple[int, ...] | None]]:
    """For every named module: (when its last call finished, counted over all calls of all
    modules; the shape of that call's output, None if not a tensor), for input ``x``."""
    finished = itertools.count()
    last: dict[str, tuple[int, tuple[int, ...] | None]] = {}

    def record(name: str, _module: nn.Module, output: object) -> None:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else None
        last[name] = (next(finished), shape)

    run_observed(model, x, record)
    return last


def default_cam_layer(model: nn.Module, x: torch.Tensor) -> str:
    """The layer Grad-CAM explains by default: of the layers whose output at their *last* call
    (the call :func:`gradcam` uses) is a stack of feature maps larger than 1x1, the one whose last
    call finishes last in the forward pass -- the last convolutional block. Adaptive pooling is
    left out (its maps are the pooled summary, not a convolutional block).

    A module called several times, such as LeNet-5's one ``ScaledTanh`` applied after every layer
    or a ReLU shared inside a residual block, counts with its last call only: LeNet-5's ``squash``
    ends on the 84 units of F6, so its default is ``s4``.
    """
    last = _last_calls(model, x)
    modules = dict(model.named_modules())
    spatial = [(order, name) for name, (order, shape) in last.items()
               if shape is not None and len(shape) == 4 and shape[2] * shape[3] > 1
               and not isinstance(modules[name], (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d))]
    if not spatial:
        raise ValueError(f"{type(model).__name__} has no layer with feature maps larger than 1x1 for this input")
    return max(spatial)[1]


def gradcam(model: nn.Module, x: torch.Tensor, layer: str | None = None, target: int | None = None) -> GradCamResult:
    """Grad-CAM of class ``target`` at ``layer`` (default: :func:`default_cam_layer`) for ``x`` (1, C, H, W).

    A layer called several times in one forward pass (a ReLU shared inside a residual block,
    LeNet-5's ``squash``) uses its last call, which must give feature maps (N, C, H, W).
    """
    _check_input(x, "Grad-CAM")
    layer = layer or default_cam_layer(model, x)
    module = get_layer(model, layer)
    activations: list[object] = []  # the output of each call (a copy: later in-place ops may change it)
    gradients: dict[int, torch.Tensor] = {}

    def hook(_m: nn.Module, _i: tuple, output: object) -> None:
        call = len(activations)
        activations.append(output.detach().clone() if isinstance(output, torch.Tensor) else output)
        if isinstance(output, torch.Tensor) and output.requires_grad:
            output.register_hook(lambda g: gradients.__setitem__(call, g))

    handle = module.register_forward_hook(hook)
    try:
        image = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            logits = _logits(model, image)
            target = _target(logits, target)
            score = logits[0, target]
            torch.autograd.grad(score, image)
    finally:
        handle.remove()
    if not activations:
        raise ValueError(f"layer {layer!r} is not used in the forward pass of {type(model).__name__}")
    last = len(activations) - 1
    output = activations[last]
    if not isinstance(output, torch.Tensor) or output.dim() != 4:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        which = f" at its last call (of {len(activations)})" if len(activations) > 1 else ""
        raise ValueError(f"Grad-CAM needs feature maps (N, C, H, W) at layer {layer!r}, got {shape}{which}; "
                         f"leave the layer out for the default, {default_cam_layer(model, x)!r}")
    features = output[0]
    gradient = gradients.get(last, torch.zeros_like(output))[0]
    weights = gradient.mean(dim=(1, 2))                                    # alpha_k
    low_res = F.relu((weights[:, None, None] * features).sum(dim=0))       # ReLU(sum_k alpha_k A^k)
    heatmap = F.interpolate(low_res[None, None], size=x.shape[2:], mode="bilinear", align_corners=False)[0, 0]
    return GradCamResult(heatmap, low_res, weights, layer, target, float(score.detach()))
