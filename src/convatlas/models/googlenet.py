"""GoogLeNet (Inception v1): the paper's network and torchvision's BatchNorm variant.

Szegedy, Liu, Jia, Sermanet, Reed, Anguelov, Erhan, Vanhoucke, Rabinovich (2015),
"Going Deeper with Convolutions", CVPR 2015, arXiv:1409.4842.

The idea: an **Inception module** (Figure 2b) runs 1x1, 3x3 and 5x5 convolutions and a 3x3 max
pool side by side on the same input and concatenates their outputs along the channel axis, so
the next layer sees features at several scales at once. 1x1 convolutions in front of the 3x3 and
5x5 convolutions (and behind the pool) reduce the channel count first, which keeps the cost of a
22-layer network at "1.5 billion multiply-adds at inference time" (Section 5). Two auxiliary
classifiers on inception (4a) and (4d) add gradient to the middle of the network during training
(loss weight 0.3) and are discarded at inference.

Read this file with Table 1 of the paper open: every row of the table is an attribute here
(``conv1``, ``maxpool1``, ``conv2``, ``conv3``, ``maxpool2``, ``inception3a`` ... ``inception5b``,
``avgpool``, ``dropout``, ``fc``), and the auxiliary classifiers are ``aux1`` (on 4a) and ``aux2``
(on 4d). Inside a module, ``branch1`` is the "#1x1" column, ``branch2`` the "#3x3 reduce" and
"#3x3" columns, ``branch3`` the "#5x5 reduce" and "#5x5" columns and ``branch4`` the pool with its
"pool proj" column. These are also torchvision's names, so torchvision's weights map one to one.

Two networks are registered, named plainly:

``googlenet_paper``
    The network of the paper: true 5x5 convolutions, convolutions with biases and ReLU, local
    response normalisation after the first max pool and after ``conv3`` (Figure 3), no batch
    norm, 40% dropout before the classifier, auxiliary heads as in Section 5 (average pool 5x5
    stride 3, 1x1 conv 128, FC 1024, 70% dropout, FC). 6,998,552 parameters without the
    auxiliary heads, 13,378,280 with them. ``naive=True`` builds it from the naive module of
    Figure 2a instead (see :class:`NaiveInceptionModule` for what that costs).

``googlenet``
    torchvision's ``googlenet``: batch norm (eps 1e-3) after every bias-free convolution, a 3x3
    convolution where the paper has the 5x5 (torchvision's source calls this "a known bug",
    pytorch/vision#906), a 2x2 last max pool, 20% dropout, and auxiliary heads that pool to 4x4
    adaptively. 13,004,888 parameters with the auxiliary heads (torchvision's default without
    weights), 6,624,904 without (torchvision's ``num_params`` meta).

In training mode a network with auxiliary heads returns ``GoogLeNetOutputs(logits, aux1, aux2)``;
in eval mode it returns the logits alone. (torchvision's namedtuple orders them
``(logits, aux_logits2, aux_logits1)``; here they follow the paper's numbering.)
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from convatlas.layers.init import init_weights, truncated_normal, xavier_uniform
from convatlas.models.features import FeatureInfo
from convatlas.registry import ModelCard, Published, register_model

__all__ = [
    "INCEPTION_V1_TABLE",
    "GoogLeNetConfig",
    "GoogLeNetOutputs",
    "ConvBlock",
    "InceptionModule",
    "NaiveInceptionModule",
    "AuxiliaryClassifier",
    "GoogLeNet",
    "googlenet_paper",
    "googlenet",
]


# Table 1 of the paper, the Inception rows:
# name: (input channels, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj).
# The output of a module is #1x1 + #3x3 + #5x5 + pool proj channels (the next row's input).
INCEPTION_V1_TABLE: dict[str, tuple[int, int, int, int, int, int, int]] = {
    "inception3a": (192, 64, 96, 128, 16, 32, 32),     # 28x28x256
    "inception3b": (256, 128, 128, 192, 32, 96, 64),   # 28x28x480
    "inception4a": (480, 192, 96, 208, 16, 48, 64),    # 14x14x512
    "inception4b": (512, 160, 112, 224, 24, 64, 64),   # 14x14x512
    "inception4c": (512, 128, 128, 256, 24, 64, 64),   # 14x14x512
    "inception4d": (512, 112, 144, 288, 32, 64, 64),   # 14x14x528
    "inception4e": (528, 256, 160, 320, 32, 128, 128),  # 14x14x832
    "inception5a": (832, 256, 160, 320, 32, 128, 128),  # 7x7x832
    "inception5b": (832, 384, 192, 384, 48, 128, 128),  # 7x7x1024
}


@dataclass(frozen=True)
class GoogLeNetConfig:
    """What distinguishes the paper's GoogLeNet from torchvision's.

    ``batch_norm``: batch norm (eps 1e-3) after every convolution, convolutions without bias
    (torchvision); otherwise convolutions with bias and ReLU only (paper).
    ``local_response_norm``: LRN after ``maxpool1`` and after ``conv3`` (paper, Figure 3).
    ``branch3_kernel``: kernel of the "#5x5" convolution: 5 (paper) or 3 (torchvision).
    ``maxpool4_kernel``: the max pool between 4e and 5a: 3x3/2 (paper) or 2x2/2 (torchvision).
    ``dropout``: before the last linear layer: 0.4 (paper) or 0.2 (torchvision).
    ``aux_pool``: "paper" = average pool 5x5 stride 3 (14x14 -> 4x4); "adaptive" = adaptive
    average pool to 4x4 (torchvision).
    ``aux_logits``: build the auxiliary classifiers on 4a and 4d (used in training mode only).
    ``naive``: build every Inception module as the naive module of Figure 2a.
    ``transform_input``: torchvision's input re-normalisation (see :meth:`GoogLeNet._transform`).
    """

    batch_norm: bool
    local_response_norm: bool
    branch3_kernel: int
    maxpool4_kernel: int
    dropout: float
    aux_pool: str
    aux_logits: bool = True
    naive: bool = False
    transform_input: bool = False


PAPER = GoogLeNetConfig(
    batch_norm=False, local_response_norm=True, branch3_kernel=5, maxpool4_kernel=3,
    dropout=0.4, aux_pool="paper",
)
TORCHVISION = GoogLeNetConfig(
    batch_norm=True, local_response_norm=False, branch3_kernel=3, maxpool4_kernel=2,
    dropout=0.2, aux_pool="adaptive",
)


class GoogLeNetOutputs(NamedTuple):
    """Training-mode outputs of a GoogLeNet with auxiliary classifiers (a tuple)."""

    logits: torch.Tensor
    aux1: torch.Tensor  # classifier on inception (4a)
    aux2: torch.Tensor  # classifier on inception (4d)


class ConvBlock(nn.Sequential):
    """``conv -> [bn] -> relu``, children named ``conv``, ``bn``, ``act`` (torchvision's
    ``BasicConv2d`` names, so state_dicts match).

    With ``batch_norm`` the convolution has no bias and batch norm uses eps 1e-3 (the
    TensorFlow default that torchvision's and timm's Inception ports keep); without it the
    convolution has a bias (the paper's GoogLeNet). ``padding=None`` means "same" at stride 1.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int = 1,
        padding: int | tuple[int, int] | None = None,
        *,
        batch_norm: bool = True,
    ) -> None:
        if padding is None:
            kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
            padding = ((kh - 1) // 2, (kw - 1) // 2)
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv=nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=not batch_norm)
        )
        if batch_norm:
            layers["bn"] = nn.BatchNorm2d(out_channels, eps=1e-3)
        layers["act"] = nn.ReLU(inplace=True)
        super().__init__(layers)
        self.in_channels, self.out_channels = in_channels, out_channels


def _conv_block(batch_norm: bool):
    """Conv + ReLU with bias (paper) or conv + BN(eps 1e-3) + ReLU without bias (torchvision)."""
    return partial(ConvBlock, batch_norm=batch_norm)


# --------------------------------------------------------------------------------------------
# The Inception module (Figure 2b) and its naive form (Figure 2a)


class InceptionModule(nn.Module):
    """Inception module with dimension reductions (Figure 2b).

    ``out = concat[ 1x1(x), 3x3(1x1(x)), 5x5(1x1(x)), 1x1(maxpool3x3(x)) ]`` along channels,
    every convolution followed by ReLU (and batch norm in torchvision's variant); all branches
    keep the spatial size (stride 1, "same" padding). Output channels:
    ``ch1x1 + ch3x3 + ch5x5 + pool_proj``.
    """

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3_reduce: int,
        ch3x3: int,
        ch5x5_reduce: int,
        ch5x5: int,
        pool_proj: int,
        *,
        batch_norm: bool = False,
        branch3_kernel: int = 5,
    ) -> None:
        super().__init__()
        conv = _conv_block(batch_norm)
        self.branch1 = conv(in_channels, ch1x1, 1)
        self.branch2 = nn.Sequential(conv(in_channels, ch3x3_reduce, 1), conv(ch3x3_reduce, ch3x3, 3))
        self.branch3 = nn.Sequential(
            conv(in_channels, ch5x5_reduce, 1), conv(ch5x5_reduce, ch5x5, branch3_kernel)
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True), conv(in_channels, pool_proj, 1)
        )
        self.in_channels = in_channels
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class NaiveInceptionModule(nn.Module):
    """The naive Inception module (Figure 2a): 1x1, 3x3 and 5x5 convolutions and a 3x3 max
    pool on the same input, concatenated, with no 1x1 reductions.

    ``out = concat[ 1x1(x), 3x3(x), 5x5(x), maxpool3x3(x) ]``; output channels
    ``ch1x1 + ch3x3 + ch5x5 + in_channels``: the pool branch passes every input channel on, so
    the width can only grow from module to module, and the 3x3 and 5x5 convolutions act on the
    full input width. This is the "computational blow up within a few stages" of Section 4.

    Its cost inside GoogLeNet (widths of Table 1, 224x224 input, without auxiliary heads; counted
    as conv + linear multiply-accumulates): the width grows 192 -> 416 -> 832 (3a, 3b) ->
    1280 -> 1728 -> 2176 -> 2640 -> 3344 (4a-4e) -> 4048 -> 4944 (5a, 5b), and the network has
    **97,526,008 parameters and 12.57 G MACs**, against 6,998,552 and 1.58 G MACs for the paper's
    network with reductions: about 14x the parameters and 8x the operations (most of it in the
    5x5 convolutions of stages 4 and 5, which see up to 4048 input channels).
    """

    def __init__(
        self, in_channels: int, ch1x1: int, ch3x3: int, ch5x5: int, *, batch_norm: bool = False
    ) -> None:
        super().__init__()
        conv = _conv_block(batch_norm)
        self.branch1 = conv(in_channels, ch1x1, 1)
        self.branch2 = conv(in_channels, ch3x3, 3)
        self.branch3 = conv(in_channels, ch5x5, 5)
        self.branch4 = nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True)
        self.in_channels = in_channels
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


# --------------------------------------------------------------------------------------------
# Auxiliary classifier (Section 5)


class AuxiliaryClassifier(nn.Module):
    """Auxiliary classifier on inception (4a) / (4d) (Section 5, Figure 3).

    "An average pooling layer with 5x5 filter size and stride 3, resulting in a 4x4x512 output
    for the (4a), and 4x4x528 for the (4d) stage. A 1x1 convolution with 128 filters for
    dimension reduction and rectified linear activation. A fully connected layer with 1024
    units and rectified linear activation. A dropout layer with 70% ratio of dropped outputs.
    A linear layer with softmax loss as the classifier."

    ``pool="paper"`` pools 5x5 with stride 3 whenever that gives the 4x4 map the FC layer needs
    (maps of 14-16 pixels, i.e. inputs near 224x224) and pools adaptively to 4x4 otherwise, so
    the network still trains at other input sizes; ``pool="adaptive"`` always pools adaptively
    (torchvision).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        batch_norm: bool = False,
        pool: str = "paper",
        dropout: float = 0.7,
    ) -> None:
        super().__init__()
        if pool not in ("paper", "adaptive"):
            raise ValueError(f"aux pool must be 'paper' or 'adaptive', got {pool!r}")
        self.pool = pool
        self.conv = _conv_block(batch_norm)(in_channels, 128, 1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(1024, num_classes)

    def _pool_to_4x4(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if self.pool == "paper" and (h - 5) // 3 + 1 == 4 and (w - 5) // 3 + 1 == 4:
            return F.avg_pool2d(x, kernel_size=5, stride=3)
        return F.adaptive_avg_pool2d(x, (4, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self._pool_to_4x4(x))
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(self.dropout(x))


# --------------------------------------------------------------------------------------------
# The network (Table 1, Figure 3)


class GoogLeNet(nn.Module):
    """GoogLeNet, Table 1 of Szegedy et al. (2015), arXiv:1409.4842.

    Shapes at 224x224 (Table 1): conv1 7x7/2 -> 112x112x64; maxpool1 3x3/2 -> 56x56x64;
    conv2 1x1 -> 56x56x64; conv3 3x3 -> 56x56x192; maxpool2 3x3/2 -> 28x28x192; inception 3a,
    3b -> 28x28x480; maxpool3 3x3/2 -> 14x14x480; inception 4a-4e -> 14x14x832; maxpool4 ->
    7x7x832; inception 5a, 5b -> 7x7x1024; avgpool (7x7/1 at 224, global at any size) ->
    1x1x1024; dropout; fc -> num_classes. Max pools round up (``ceil_mode``), which gives
    Table 1's 56/28/14/7 sizes.

    Feature maps, the last one at each resolution: ``conv1`` (/2), ``conv3`` (after ``lrn2``, an
    identity in torchvision's variant, /4), ``inception3b`` (/8), ``inception4e`` (/16) and
    ``inception5b`` (/32).
    """

    def __init__(self, config: GoogLeNetConfig, num_classes: int = 1000) -> None:
        super().__init__()
        self.config = config
        self.aux_logits = config.aux_logits
        self.transform_input = config.transform_input
        conv = _conv_block(config.batch_norm)
        # LRN constants are not in the paper; these are the BVLC Caffe reproduction's:
        # b = a / (k + alpha/n * sum of a^2 over n=5 neighbouring channels) ** beta.
        def lrn() -> nn.Module:
            if config.local_response_norm:
                return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
            return nn.Identity()

        self.conv1 = conv(3, 64, 7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.lrn1 = lrn()
        self.conv2 = conv(64, 64, 1)
        self.conv3 = conv(64, 192, 3)
        self.lrn2 = lrn()
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        channels = 192
        for name, (_, ch1x1, ch3x3_reduce, ch3x3, ch5x5_reduce, ch5x5, pool_proj) in INCEPTION_V1_TABLE.items():
            if config.naive:
                module: nn.Module = NaiveInceptionModule(
                    channels, ch1x1, ch3x3, ch5x5, batch_norm=config.batch_norm
                )
            else:
                module = InceptionModule(
                    channels, ch1x1, ch3x3_reduce, ch3x3, ch5x5_reduce, ch5x5, pool_proj,
                    batch_norm=config.batch_norm, branch3_kernel=config.branch3_kernel,
                )
            setattr(self, name, module)
            channels = module.out_channels
            if name == "inception3b":
                self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            elif name == "inception4e":
                self.maxpool4 = nn.MaxPool2d(config.maxpool4_kernel, stride=2, ceil_mode=True)

        if config.aux_logits:
            aux = partial(
                AuxiliaryClassifier, num_classes=num_classes, batch_norm=config.batch_norm,
                pool=config.aux_pool,
            )
            self.aux1 = aux(self.inception4a.out_channels)
            self.aux2 = aux(self.inception4d.out_channels)
        else:
            self.aux1 = None
            self.aux2 = None

        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(channels, num_classes)
        self.feature_info = [
            FeatureInfo("conv1", "conv1", 64, 2),
            FeatureInfo("conv3", "lrn2", 192, 4),
            *(FeatureInfo(name, name, getattr(self, name).out_channels, reduction)
              for name, reduction in (("inception3b", 8), ("inception4e", 16), ("inception5b", 32))),
        ]
        self._init_weights()

    def _init_weights(self) -> None:
        """The paper does not state its initialisation (DistBelief). Paper variant: Glorot
        uniform weights, zero biases. torchvision variant: torchvision's choice, normal(0, 0.01)
        truncated at +-2 for conv/linear weights (biases as PyTorch made them), batch norm at (1, 0)."""
        if self.config.batch_norm:
            scheme = truncated_normal(std=0.01, a=-2.0, b=2.0)
            init_weights(self, conv=scheme, linear=scheme, zero_bias=False)
        else:
            init_weights(self, conv=xavier_uniform(), linear=xavier_uniform())

    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        """torchvision's ``transform_input``: turn an image normalised with the card's mean/std
        (ImageNet's) into one normalised as ``(x - 0.5) / 0.5``, the input the ported weights expect."""
        mean, std = _TORCHVISION_CARD.preprocessing.mean, _TORCHVISION_CARD.preprocessing.std
        channels = [x[:, c : c + 1] * (std[c] / 0.5) + (mean[c] - 0.5) / 0.5 for c in range(3)]
        return torch.cat(channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor | GoogLeNetOutputs:
        if self.transform_input:
            x = self._transform(x)
        x = self.maxpool1(self.conv1(x))
        x = self.lrn1(x)
        x = self.lrn2(self.conv3(self.conv2(x)))
        x = self.maxpool2(x)

        x = self.inception3b(self.inception3a(x))
        x = self.maxpool3(x)
        x = self.inception4a(x)
        use_aux = self.training and self.aux1 is not None
        aux1 = self.aux1(x) if use_aux else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if use_aux else None
        x = self.inception4e(x)
        x = self.maxpool4(x)
        x = self.inception5b(self.inception5a(x))

        x = torch.flatten(self.avgpool(x), 1)
        logits = self.fc(self.dropout(x))
        if use_aux:
            return GoogLeNetOutputs(logits, aux1, aux2)
        return logits


# --------------------------------------------------------------------------------------------
# Builders

_PAPER = "Going Deeper with Convolutions"
_AUTHORS = "Szegedy, Liu, Jia, Sermanet, Reed, Anguelov, Erhan, Vanhoucke, Rabinovich"
_IDEA = (
    "The Inception module runs 1x1, 3x3 and 5x5 convolutions and max pooling in parallel and "
    "concatenates them, with 1x1 convolutions reducing the channels first so that a 22-layer "
    "network costs only 1.5 G multiply-adds. Auxiliary classifiers on intermediate layers add "
    "gradient to the middle of the network during training."
)
# Section 5: the auxiliary classifiers' "loss gets added to the total loss of the network with a
# discount weight (the losses of the auxiliary classifiers were weighted by 0.3)".
_AUX_WEIGHT = 0.3
# Table 3: ILSVRC 2014 classification, top-5 error on the validation set.
_TABLE3_TOP5_ERROR = {
    (1, 1): 10.07, (1, 10): 9.15, (1, 144): 7.89,
    (7, 1): 8.09, (7, 10): 7.62, (7, 144): 6.67,
}


@register_model(
    ModelCard(
        name="googlenet_paper",
        family="inception",
        paper=_PAPER,
        authors=_AUTHORS,
        year=2015,
        arxiv="1409.4842",
        input_size=(3, 224, 224),
        dataset="imagenet",
        params=Published(
            13_378_280,
            "paper-faithful count with both auxiliary heads (6,998,552 without); "
            "shared/reference/paper-numbers.md section 6",
        ),
        macs=Published(1.5e9, "Section 5: 'a computational budget of 1.5 billion multiply-adds at inference time'"),
        top5=Published(
            round(100.0 - 10.07, 2),
            "Table 3: 1 model, 1 crop, top-5 error 10.07% on ILSVRC 2014 validation (no top-1 reported)",
        ),
        aux_logits=True,
        aux_weight=_AUX_WEIGHT,
        idea=_IDEA,
        notes=(
            "No batch norm, true 5x5 branch, conv biases, LRN after maxpool1 and conv3. LRN "
            "constants are not in the paper; n=5, alpha=1e-4, beta=0.75, k=1 with alpha divided "
            "by n (Caffe's formula, as in the BVLC reproduction). torchvision has no model with "
            "this architecture (its googlenet is registered here as 'googlenet')."
        ),
        extra={"top5_error_table3": {f"{m} model(s), {c} crop(s)": e for (m, c), e in _TABLE3_TOP5_ERROR.items()}},
    )
)
def googlenet_paper(*, num_classes: int = 1000, aux_logits: bool = True, naive: bool = False) -> GoogLeNet:
    """GoogLeNet as in Szegedy et al. (2015), "Going Deeper with Convolutions", arXiv:1409.4842.

    ``aux_logits``: build the two auxiliary classifiers of Section 5 (on 4a and 4d); in
    training mode the network then returns ``(logits, aux1, aux2)`` (train with
    ``loss = CE(logits) + 0.3 * (CE(aux1) + CE(aux2))``), in eval mode the logits.
    13,378,280 parameters with them, 6,998,552 without.
    ``naive``: use the naive Inception module of Figure 2a (no 1x1 reductions) in place of
    every module; 97,526,008 parameters and 12.57 G MACs at 224x224 without the auxiliary
    heads (14x and 8x the paper network's), which is why the paper adds the reductions.
    """
    return GoogLeNet(GoogLeNetConfig(**{**PAPER.__dict__, "aux_logits": aux_logits, "naive": naive}), num_classes)


_TORCHVISION_CARD = ModelCard(
    name="googlenet",
    family="inception",
    paper=_PAPER,
    authors=_AUTHORS,
    year=2015,
    arxiv="1409.4842",
    input_size=(3, 224, 224),
    dataset="imagenet",
    params=Published(
        13_004_888,
        "torchvision googlenet() without weights (aux_logits=True); 6,624,904 without the "
        "auxiliary heads = torchvision meta num_params",
    ),
    macs=Published(1.498e9, "torchvision GoogLeNet_Weights.IMAGENET1K_V1 meta _ops"),
    top1=Published(69.778, "torchvision IMAGENET1K_V1, single center crop 224 (resize 256)"),
    top5=Published(89.530, "torchvision IMAGENET1K_V1, single center crop 224 (resize 256)"),
    torchvision="googlenet",
    aux_logits=True,
    aux_weight=_AUX_WEIGHT,
    idea=_IDEA,
    notes=(
        "torchvision's variant, not the paper's network: batch norm after every conv, the "
        "'5x5' branch is a 3x3 conv (pytorch/vision#906), 2x2 last max pool, dropout 0.2, "
        "adaptive 4x4 pooling in the auxiliary heads. See googlenet_paper for the paper's. "
        "torchvision sets transform_input=True when it loads IMAGENET1K_V1; build with "
        "transform_input=True to feed those weights ImageNet-mean/std-normalised images."
    ),
)


@register_model(_TORCHVISION_CARD)
def googlenet(*, num_classes: int = 1000, aux_logits: bool = True, transform_input: bool = False) -> GoogLeNet:
    """torchvision's GoogLeNet (batch norm variant) of Szegedy et al. (2015), arXiv:1409.4842.

    Same architecture and attribute names as ``torchvision.models.googlenet``, so
    :func:`convatlas.load_torchvision_weights` copies its weights and the outputs are equal.
    ``aux_logits`` (default True, as torchvision's default without weights: 13,004,888
    parameters; False: 6,624,904) builds the auxiliary heads; torchvision's IMAGENET1K_V1
    checkpoint contains (untrained) auxiliary heads, so load it into the default model.
    ``transform_input`` (default False, torchvision's default without weights) re-normalises an
    ImageNet-mean/std input to ``(x - 0.5) / 0.5`` inside the network; torchvision turns it on
    when it loads IMAGENET1K_V1, so use True with those weights.
    """
    config = GoogLeNetConfig(**{**TORCHVISION.__dict__, "aux_logits": aux_logits, "transform_input": transform_input})
    return GoogLeNet(config, num_classes)
