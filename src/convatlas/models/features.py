"""The backbone contract: every network of the zoo says where its feature maps are.

Segmentation and detection heads need a classification network's intermediate feature maps, not
its logits. Each registered model declares them in ``model.feature_info``, a list of
:class:`FeatureInfo` in forward order, and :class:`FeatureExtractor` returns them::

    backbone = FeatureExtractor(create_model("resnet50"), stages=["layer2", "layer3", "layer4"])
    maps = backbone(images)            # {"layer2": (N, 512, H/8, W/8), ..., "layer4": (N, 2048, H/32, W/32)}
    backbone.out_channels              # 2048

**Which maps are stages.** One entry per resolution: the *last* feature map at each accumulated
stride, i.e. the output just before the spatial size drops (before a pooling layer or a strided
block), plus the last feature map before global pooling and the classifier. So ResNet declares
``conv1`` (after its ReLU, /2), ``layer1`` (/4), ``layer2`` (/8), ``layer3`` (/16), ``layer4`` (/32),
and VGG the last ReLU of each block ``conv1`` .. ``conv5`` (/1 .. /16) plus ``pool5`` (/32). Stage
names are the paper's (Table 1 rows, ``inception4e``, ``denseblock3``...). Networks whose paper
names every layer a feature map (LeNet-5's C1, S2, C3, S4, C5) list each of them. Where a stage
ends in a normalisation that the next stage applies first (pre-activation ResNets, DenseNet),
the intermediate stages are the blocks' raw outputs and the last one is taken after the final
BN-ReLU, the map the classifier sees.

``reduction`` is the accumulated stride: the distance, in input pixels, between neighbouring
pixels of the map. For networks that pad to keep sizes ("same") it is the input side divided by
the map side (a 224 input gives 7x7 maps at reduction 32); for unpadded ("valid") layers the map is
a little smaller (Inception's 299 input gives 8x8 at 32, LeNet-5's C1 is 28x28 at 1).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["FeatureInfo", "feature_info", "FeatureExtractor", "forward_intermediates"]


@dataclass(frozen=True)
class FeatureInfo:
    """One feature map of a backbone.

    ``stage``: the name a reader finds in the paper (``"layer2"``, ``"inception4e"``, ``"stage6"``);
    ``module``: dotted path (as ``model.get_submodule`` takes it) of the submodule whose output is
    the map; ``channels``: its channel count; ``reduction``: its accumulated stride (2, 4, 8, ...).
    """

    stage: str
    module: str
    channels: int
    reduction: int


def feature_info(model: nn.Module) -> list[FeatureInfo]:
    """The feature maps ``model`` declares (``model.feature_info``), in forward order."""
    info = getattr(model, "feature_info", None)
    if not info:
        raise TypeError(
            f"{type(model).__name__} declares no feature_info; zoo networks "
            f"(convatlas.create_model) list their feature maps in model.feature_info"
        )
    return list(info)


class _StopForward(Exception):
    """Raised by the hook on the last requested stage, so the rest of the network does not run.
    It names the extractor that raised it: an extractor over a network that holds another one
    (a segmentation head on a backbone) lets the other's pass through."""

    def __init__(self, owner: nn.Module) -> None:
        super().__init__()
        self.owner = owner


class FeatureExtractor(nn.Module):
    """A backbone: ``model``'s feature maps of ``stages`` (default: all it declares) as an ordered
    ``{stage: tensor}`` dict.

    How it works: ``forward`` puts a forward hook on the module of each requested stage, runs the
    model's own ``forward`` and keeps what each hook sees. The hook of the last stage then raises a
    private exception that ``forward`` catches: the layers after it (global pooling, classifier)
    never run. Nothing else changes, so the extractor trains like the model (train/eval modes,
    gradients, batch-norm statistics) and the model's state_dict keys appear under ``model.``.
    Auxiliary heads that branch off before the last stage (GoogLeNet's, in training mode) still
    run; their outputs are dropped.

    ``feature_info`` lists the selected stages, ``out_channels`` is the channel count of the last.
    """

    def __init__(self, model: nn.Module, stages: Sequence[str] | None = None) -> None:
        super().__init__()
        declared = feature_info(model)
        if stages is None:
            selected = declared
        else:
            names = [info.stage for info in declared]
            if isinstance(stages, str):
                stages = [stages]
            unknown = [s for s in stages if s not in names]
            if unknown or not stages:
                raise ValueError(
                    f"{type(model).__name__} has no stage {', '.join(map(repr, unknown)) or '(none given)'}; "
                    f"its stages are: {', '.join(names)}"
                )
            selected = [info for info in declared if info.stage in set(stages)]  # forward order
        self.model = model
        self.feature_info = selected
        self.out_channels = selected[-1].channels

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features: dict[str, torch.Tensor] = {}
        last = self.feature_info[-1].stage

        def keep(stage: str):
            def hook(module: nn.Module, args: object, output: torch.Tensor) -> None:
                if stage in features:
                    raise RuntimeError(f"the module of stage {stage!r} ran twice in one forward pass")
                features[stage] = output
                if stage == last:
                    raise _StopForward(self)

            return hook

        handles = [self.model.get_submodule(info.module).register_forward_hook(keep(info.stage))
                   for info in self.feature_info]
        try:
            self.model(x)
        except _StopForward as stop:
            if stop.owner is not self:
                raise
        finally:
            for handle in handles:
                handle.remove()
        missing = [info.stage for info in self.feature_info if info.stage not in features]
        if missing:
            raise RuntimeError(f"the forward pass ended without reaching stage(s) {', '.join(missing)}")
        return {info.stage: features[info.stage] for info in self.feature_info}


def forward_intermediates(
    model: nn.Module, x: torch.Tensor, stages: Iterable[str] | None = None
) -> dict[str, torch.Tensor]:
    """``model``'s feature maps of ``stages`` (default: all) for input ``x``, as
    ``{stage: tensor}`` in forward order; the classifier does not run."""
    return FeatureExtractor(model, None if stages is None else list(stages))(x)
