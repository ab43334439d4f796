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

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from convatlas.registry import build_meta, get_builder, list_models, model_card

__all__ = ["FeatureInfo", "feature_info", "FeatureExtractor", "forward_intermediates", "zoo_backbone", "stages_at",
           "classification_model"]


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


# --------------------------------------------------------------------------------------------
# Zoo networks as backbones.


def classification_model(name: str, role: str, num_classes: int | None = None) -> tuple[str, nn.Module]:
    """``(registered name, network)``: the classification network ``name`` built for
    ``num_classes`` (default: its card's). A name that is not a registered classification network
    raises an error that lists the names that are; ``role`` says what it was for."""
    names = list_models(task="classification")
    key = name.strip().lower().replace("-", "_") if isinstance(name, str) else name
    if key not in names:
        raise ValueError(
            f"{role} must be the name of a registered classification network, got {name!r}; "
            f"choices: {', '.join(names)}"
        )
    classes = model_card(key).default_num_classes if num_classes is None else num_classes
    return key, get_builder(key)(num_classes=classes)


def stages_at(info: Sequence[FeatureInfo], reductions: Sequence[int], name: str) -> list[str]:
    """The stage names of ``info`` at each of ``reductions`` (the last declared one where several
    share a reduction); an error naming the network's stages if one is missing."""
    chosen = []
    for reduction in reductions:
        found = [i.stage for i in info if i.reduction == reduction]
        if not found:
            stages = ", ".join(f"{i.stage} (/{i.reduction}, {i.channels} ch)" for i in info)
            raise ValueError(
                f"backbone {name!r} has no stage at reduction {reduction} (needed: "
                f"{', '.join(f'/{r}' for r in reductions)}); its stages are: {stages}"
            )
        chosen.append(found[-1])
    return chosen


def _modules_run(model: nn.Module, stages: Sequence[str], input_size: Sequence[int]) -> set[str]:
    """Names of the submodules of ``model`` that run when a FeatureExtractor over ``stages`` does."""
    ran: set[str] = set()
    handles = [m.register_forward_pre_hook(lambda mod, args, n=n: ran.add(n)) for n, m in model.named_modules()]
    try:
        with torch.no_grad():
            FeatureExtractor(model, stages)(torch.empty(1, *input_size, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    return ran


def zoo_backbone(
    name: str,
    stages: Sequence[str] | Callable[[Sequence[FeatureInfo]], Sequence[str]],
    *,
    prepare: Callable[[nn.Module], None] | None = None,
) -> FeatureExtractor:
    """Registered classification network ``name`` as a backbone returning the maps of ``stages``
    (names, or a function of its ``feature_info`` that picks them).

    ``prepare`` changes the freshly built network first (e.g. :func:`dilate_resnet`). The layers
    that no longer run (global pooling, classifier: everything after the last stage) are replaced
    by ``nn.Identity``, so their parameters neither count nor wait for gradients; they are found by
    running a meta-device copy once.
    """
    key, model = classification_model(name, "backbone")
    ghost = build_meta(key)
    if prepare is not None:
        prepare(model)
        prepare(ghost)
    if callable(stages):
        stages = list(stages(model.feature_info))
    extractor = FeatureExtractor(model, stages)
    ran = _modules_run(ghost, stages, model_card(key).input_size)
    removed: list[str] = []
    for module_name, module in list(model.named_modules()):
        if not module_name or module_name in ran or any(module_name.startswith(r + ".") for r in removed):
            continue
        if next(module.parameters(), None) is None and next(module.buffers(), None) is None:
            continue
        parent_name, _, child = module_name.rpartition(".")
        model.get_submodule(parent_name)._modules[child] = nn.Identity()
        removed.append(module_name)
    extractor.removed = tuple(removed)
    return extractor
