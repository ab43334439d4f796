"""NASNet-A: convolutional cells found by neural architecture search, stacked by hand.

Zoph, Vasudevan, Shlens, Le (2018). "Learning Transferable Architectures for Scalable Image
Recognition", CVPR 2018, arXiv:1707.07012.

A controller RNN trained with reinforcement learning searched, on CIFAR-10, for two cells (Fig. 4):
a **Normal cell** that keeps the feature-map size and a **Reduction cell** that halves it (its ops
on the cell inputs use stride 2). Both take the outputs of the two previous cells, ``h_i`` and
``h_{i-1}``, and build ``B = 5`` blocks; each block picks two hidden states, applies one operation
to each and adds the results. The cell's output concatenates hidden states (which ones: :data:`NORMAL_CONCAT`,
:data:`REDUCTION_CONCAT`).
The cells transfer to ImageNet by stacking: ``N`` normal cells, a reduction cell, ``N`` normal
cells, a reduction cell, ``N`` normal cells, with the filter count doubled at each reduction. A
network is written "NASNet-A (N @ P)" with ``P`` the filters of the penultimate layer; NASNet-A
Mobile is (4 @ 1056): ``P / 24 = 44`` filters per op in the first stack.

Details that the paper leaves to its released code (TensorFlow models ``nasnet_utils.py``), kept here:

* at the start of every cell ``h_i`` goes through ReLU-1x1 conv-BN to the cell's filter count, and
  ``h_{i-1}`` through ReLU-1x1 conv-BN too when its width differs, or through a *factorized
  reduction* when it is twice as large (two 1x1 convs on the even and on the one-pixel-shifted
  odd pixels, concatenated, then BN);
* ``sep k x k`` is applied twice: (ReLU, depthwise k x k, pointwise 1x1, BN) x 2, the first with the
  cell's stride;
* the ImageNet stem is a 3x3/2 convolution (32 filters, no padding) followed by two reduction
  cells with 1/4 and 1/2 of the filters;
* the classifier is ReLU, global average pooling, dropout 0.5 and a linear layer.

The release pads "SAME" (asymmetrically for stride 2); this implementation pads symmetrically,
which gives the same shapes, parameters and multiply-adds. The auxiliary head and drop-path of
training are left out (as in the reference PyTorch port, Cadene's ``nasnetamobile``).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from convatlas.models.features import FeatureInfo
from convatlas.registry import ModelCard, Preprocessing, Published, register_model

__all__ = [
    "NORMAL_CELL",
    "REDUCTION_CELL",
    "NORMAL_CONCAT",
    "REDUCTION_CONCAT",
    "SeparableStack",
    "FactorizedReduction",
    "Cell",
    "NASNetA",
    "nasnet_a_mobile",
    "nasnet_a_large",
]

BN_EPS = 1e-3

# Fig. 4 as the release writes it: five blocks of (left input, left op, right input, right op).
# Inputs 0 and 1 are the cell inputs h_i and h_{i-1}; 2.. are the outputs of earlier blocks.
NORMAL_CELL = [
    (0, "sep5x5", 1, "sep3x3"),
    (1, "sep5x5", 1, "sep3x3"),
    (0, "avg3x3", 1, "identity"),
    (1, "avg3x3", 1, "avg3x3"),
    (0, "sep3x3", 0, "identity"),
]
REDUCTION_CELL = [
    (0, "sep5x5", 1, "sep7x7"),
    (0, "max3x3", 1, "sep7x7"),
    (0, "avg3x3", 1, "sep5x5"),
    (3, "identity", 2, "avg3x3"),
    (2, "sep3x3", 0, "max3x3"),
]
# The hidden states each cell concatenates into its output (the release's ``used_hiddenstates``
# marks the others): the normal cell keeps h_{i-1} and all five blocks, the reduction cell the
# last four blocks.
NORMAL_CONCAT = (1, 2, 3, 4, 5, 6)
REDUCTION_CONCAT = (3, 4, 5, 6)


def _relu_conv_bn(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(OrderedDict(
        relu=nn.ReLU(),
        conv=nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
        bn=nn.BatchNorm2d(out_channels, eps=BN_EPS),
    ))


class SeparableStack(nn.Module):
    """``sep k x k``: (ReLU, depthwise k x k, pointwise 1x1, BN) twice; the first with ``stride``
    and ``in -> out`` channels, the second ``out -> out``."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int) -> None:
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        channels = in_channels
        for i in (1, 2):
            layers[f"relu{i}"] = nn.ReLU()
            layers[f"depthwise{i}"] = nn.Conv2d(channels, channels, kernel, stride if i == 1 else 1,
                                                kernel // 2, groups=channels, bias=False)
            layers[f"pointwise{i}"] = nn.Conv2d(channels, out_channels, 1, bias=False)
            layers[f"bn{i}"] = nn.BatchNorm2d(out_channels, eps=BN_EPS)
            channels = out_channels
        self.layers = nn.Sequential(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Pool(nn.Module):
    """3x3 max or average pooling (average over the valid pixels only), then a 1x1 conv-BN when
    the input width differs from the cell's filter count."""

    def __init__(self, kind: str, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if kind == "max":
            self.pool: nn.Module = nn.MaxPool2d(3, stride, 1)
        else:
            self.pool = nn.AvgPool2d(3, stride, 1, count_include_pad=False)
        self.project = None
        if in_channels != out_channels:
            self.project = nn.Sequential(OrderedDict(
                conv=nn.Conv2d(in_channels, out_channels, 1, bias=False),
                bn=nn.BatchNorm2d(out_channels, eps=BN_EPS),
            ))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x)
        return self.project(x) if self.project is not None else x


class FactorizedReduction(nn.Module):
    """Halve the resolution without losing pixels: ReLU, then a 1x1 conv on the even pixels and
    another on the pixels shifted by one (the odd ones), concatenated (``out`` channels), BN."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.relu = nn.ReLU()
        self.path1 = nn.Conv2d(in_channels, out_channels // 2, 1, bias=False)
        self.path2 = nn.Conv2d(in_channels, out_channels - out_channels // 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        even = self.path1(x[:, :, ::2, ::2])
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]  # pad right/bottom, drop first row/column
        odd = self.path2(shifted[:, :, ::2, ::2])
        return self.bn(torch.cat([even, odd], dim=1))


def _operation(name: str, in_channels: int, out_channels: int, stride: int) -> nn.Module:
    if name.startswith("sep"):
        return SeparableStack(in_channels, out_channels, int(name[3]), stride)
    if name in ("avg3x3", "max3x3"):
        return Pool(name[:3], in_channels, out_channels, stride)
    if name == "identity":
        if stride == 1 and in_channels == out_channels:
            return nn.Identity()
        return _relu_conv_bn(in_channels, out_channels, stride)
    raise ValueError(f"unknown NASNet operation {name!r}")


class Cell(nn.Module):
    """A NASNet-A normal or reduction cell on inputs ``h_i`` (``cur``) and ``h_{i-1}`` (``prev``).

    Args:
        spec: :data:`NORMAL_CELL` or :data:`REDUCTION_CELL`.
        cur_channels: width of ``h_i``.
        prev_channels: width of ``h_{i-1}``; ``None`` for the first stem cell, which has no
            ``h_{i-1}`` and uses ``h_i`` itself (unreduced) in its place.
        prev_is_larger: ``h_{i-1}`` has twice the resolution of ``h_i`` (it came before a reduction).
        filters: channels of every operation in the cell.
        stride: 2 for a reduction cell (ops on the cell inputs are strided), else 1.
        concat: hidden states concatenated into the output (default: :data:`NORMAL_CONCAT`, or
            :data:`REDUCTION_CONCAT` when ``stride`` is 2).
    """

    def __init__(
        self,
        spec: list[tuple[int, str, int, str]],
        cur_channels: int,
        prev_channels: int | None,
        filters: int,
        *,
        prev_is_larger: bool = False,
        stride: int = 1,
        concat: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        self.conv_1x1 = _relu_conv_bn(cur_channels, filters)
        if prev_channels is None:
            self.prev_reduce: nn.Module | None = None
            widths = [filters, cur_channels]
        elif prev_is_larger:
            self.prev_reduce = FactorizedReduction(prev_channels, filters)
            widths = [filters, filters]
        elif prev_channels != filters:
            self.prev_reduce = _relu_conv_bn(prev_channels, filters)
            widths = [filters, filters]
        else:
            self.prev_reduce = nn.Identity()
            widths = [filters, filters]

        self.spec = [tuple(block) for block in spec]
        for b, (left, left_op, right, right_op) in enumerate(self.spec):
            for side, index, op in (("left", left, left_op), ("right", right, right_op)):
                if index >= 2 + b:
                    raise ValueError(f"block {b} uses hidden state {index}, which does not exist yet")
                op_stride = stride if index < 2 else 1  # only the cell inputs are strided
                self.add_module(f"comb_iter_{b}_{side}", _operation(op, widths[index], filters, op_stride))
            widths.append(filters)
        self.concat = list(REDUCTION_CONCAT if stride == 2 else NORMAL_CONCAT) if concat is None else list(concat)
        self.out_channels = sum(widths[i] for i in self.concat)

    def forward(self, cur: torch.Tensor, prev: torch.Tensor | None) -> torch.Tensor:
        if self.prev_reduce is None:
            prev = cur
        else:
            prev = self.prev_reduce(prev)
        states = [self.conv_1x1(cur), prev]
        for b, (left, _, right, _) in enumerate(self.spec):
            h = getattr(self, f"comb_iter_{b}_left")(states[left]) + getattr(self, f"comb_iter_{b}_right")(states[right])
            states.append(h)
        return torch.cat([states[i] for i in self.concat], dim=1)


class NASNetA(nn.Module):
    """NASNet-A (N @ P) for ImageNet: stem conv, two stem reduction cells, then three stacks of
    ``num_cells`` normal cells separated by two reduction cells. ``filters = P / 24``.

    Feature maps, the last one at each resolution: ``conv0`` (/2), ``cell_stem_0`` (/4), the last
    normal cell of each stack (/8, /16) and, at /32, the last cell after ``relu``: the map the
    classifier pools."""

    def __init__(
        self,
        num_cells: int = 4,
        penultimate_filters: int = 1056,
        stem_filters: int = 32,
        num_classes: int = 1000,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if penultimate_filters % 24:
            raise ValueError(f"penultimate_filters must be a multiple of 24 (6 states x 4 filters), got {penultimate_filters}")
        filters = penultimate_filters // 24
        self.conv0 = nn.Sequential(OrderedDict(
            conv=nn.Conv2d(3, stem_filters, 3, stride=2, bias=False),
            bn=nn.BatchNorm2d(stem_filters, eps=BN_EPS),
        ))
        self.cells = nn.ModuleDict()
        # (channels, resolution level) of h_{i-1} and h_i; level counts the halvings after conv0.
        prev, cur = None, (stem_filters, 0)
        last = ("conv0", "conv0")  # (stage name, module) of the map cur
        self.feature_info: list[FeatureInfo] = []

        def add(name: str, spec, width: int, stride: int) -> None:
            nonlocal prev, cur, last
            if stride == 2:  # the map before a reduction is the last one at its resolution
                self.feature_info.append(FeatureInfo(*last, cur[0], 2 ** (cur[1] + 1)))
            larger = prev is not None and prev[1] < cur[1]
            cell = Cell(spec, cur[0], None if prev is None else prev[0], width,
                        prev_is_larger=larger, stride=stride)
            self.cells[name] = cell
            prev, cur, last = cur, (cell.out_channels, cur[1] + (stride == 2)), (name, f"cells.{name}")

        add("cell_stem_0", REDUCTION_CELL, filters // 4, 2)
        add("cell_stem_1", REDUCTION_CELL, filters // 2, 2)
        index = 0
        for stack in range(3):
            if stack > 0:
                add(f"reduction_cell_{stack - 1}", REDUCTION_CELL, filters * 2**stack, 2)
                index += 2
            for _ in range(num_cells):
                add(f"cell_{index}", NORMAL_CELL, filters * 2**stack, 1)
                index += 1
        self.relu = nn.ReLU()
        self.feature_info.append(FeatureInfo(last[0], "relu", cur[0], 2 ** (cur[1] + 1)))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.last_linear = nn.Linear(cur[0], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cur, prev = self.conv0(x), None
        for cell in self.cells.values():
            cur, prev = cell(cur, prev), cur
        x = torch.flatten(self.pool(self.relu(cur)), 1)
        return self.last_linear(self.dropout(x))


@register_model(ModelCard(
    name="nasnet_a_mobile",
    family="nasnet",
    paper="Learning Transferable Architectures for Scalable Image Recognition",
    authors="Zoph, Vasudevan, Shlens, Le",
    year=2018,
    arxiv="1707.07012",
    input_size=(3, 224, 224),
    dataset="imagenet",
    # Cadene's pretrainedmodels, whose nasnetamobile weights give the parameter count: pixels scaled
    # to [-1, 1] (mean = std = 0.5), resize 256 (bilinear), centre crop 224 (TransformImage, scale 0.875).
    preprocessing=Preprocessing((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "resize", 224 / 256, "bilinear", "imagenet"),
    params=Published(5_289_978, "Cadene pretrainedmodels nasnetamobile (paper-numbers.md s.18); Table 2: 5.3M"),
    macs=Published(564e6, "Table 2 (564M mult-adds)"),
    top1=Published(74.0, "Table 2, NASNet-A (4 @ 1056)"),
    top5=Published(91.6, "Table 2, NASNet-A (4 @ 1056)"),
    idea=(
        "The architecture is searched, not designed: a controller RNN trained with reinforcement "
        "learning proposes a normal and a reduction cell on CIFAR-10, which are then stacked to "
        "build ImageNet networks of any size."
    ),
    notes="No torchvision equivalent; timm has only nasnetalarge. Keras NASNetMobile 74.4/91.9. "
          "Auxiliary head and drop-path (training only) are not included.",
))
def nasnet_a_mobile(*, num_classes: int = 1000) -> NASNetA:
    """NASNet-A Mobile, (4 @ 1056) (Zoph et al. 2018, arXiv:1707.07012, Table 2 and Fig. 4):
    44 filters per operation in the first stack, 4 normal cells per stack."""
    return NASNetA(num_cells=4, penultimate_filters=1056, num_classes=num_classes)


@register_model(ModelCard(
    name="nasnet_a_large",
    family="nasnet",
    paper="Learning Transferable Architectures for Scalable Image Recognition",
    authors="Zoph, Vasudevan, Shlens, Le",
    year=2018,
    arxiv="1707.07012",
    input_size=(3, 331, 331),
    dataset="imagenet",
    # timm's nasnetalarge (the TF-slim weights): mean = std = 0.5, crop_pct 0.911, so resize
    # floor(331 / 0.911) = 363 (bicubic), centre crop 331.
    preprocessing=Preprocessing((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "resize", 331 / 363, "bicubic", "imagenet"),
    params=Published(88_753_150, "timm nasnetalarge (paper-numbers.md s.18); Table 2: 88.9M"),
    macs=Published(23.8e9, "Table 2 (23.8B mult-adds)"),
    top1=Published(82.7, "Table 2, NASNet-A (6 @ 4032)"),
    top5=Published(96.2, "Table 2, NASNet-A (6 @ 4032)"),
    timm="nasnetalarge",
    idea=(
        "The same searched cells as NASNet-A Mobile, stacked six per stage and four times wider: "
        "the search transfers from CIFAR-10 to a state-of-the-art ImageNet network by scaling alone."
    ),
    notes="Stem of 96 filters. Auxiliary head and drop-path (training only) are not included.",
))
def nasnet_a_large(*, num_classes: int = 1000) -> NASNetA:
    """NASNet-A Large, (6 @ 4032) at 331x331 (Zoph et al. 2018, Table 2): 168 filters per
    operation in the first stack, 6 normal cells per stack, a 96-filter stem."""
    return NASNetA(num_cells=6, penultimate_filters=4032, stem_filters=96, num_classes=num_classes)
