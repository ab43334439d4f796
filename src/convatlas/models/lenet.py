"""LeNet-5: the convolutional network that read cheques.

LeCun, Bottou, Bengio, Haffner (1998). "Gradient-Based Learning Applied to Document Recognition",
Proceedings of the IEEE 86(11):2278-2324. Section II.B and Fig. 2 describe the network:

=======  ============================================================  =============  ==========
layer    what it computes                                              output         trainable
=======  ============================================================  =============  ==========
input    32x32 grey image (a 20x20 MNIST digit centred with a margin)   1 x 32 x 32
C1       6 convolutions 5x5                                            6 x 28 x 28    156
S2       per map: sum of each 2x2 block x coefficient + bias           6 x 14 x 14    12
C3       16 convolutions 5x5, map j sees only the S2 maps of Table I   16 x 10 x 10   1,516
S4       like S2                                                       16 x 5 x 5     32
C5       120 convolutions 5x5 (= fully connected at 32x32 input)       120 x 1 x 1    48,120
F6       84 units, fully connected                                     84             10,164
output   10 Euclidean RBF units, y_i = sum_j (x_j - w_ij)^2, w fixed   10             0
=======  ============================================================  =============  ==========

Every unit up to F6 passes its weighted sum through the squashing function of Appendix A,
``f(a) = A tanh(S a)`` with ``A = 1.7159`` and ``S = 2/3`` (so that ``f(1) = 1`` and ``f(-1) = -1``).
In total 60,000 trainable parameters and 340,908 connections (Section II.B).

**Table I** (C3): map ``j`` of C3 is connected to S2 maps ``C3_TABLE[j]``; the first six take three
neighbouring maps, the next nine four (six neighbouring, three not), the last all six. The paper's
reasons: fewer connections, and broken symmetry -- different maps are forced to extract different
features.

**The output layer.** The paper's RBF parameter vectors were stylised 7x12 bitmaps of the characters
(+1/-1 pixels, chosen by hand and never trained). Here they are deterministic +-1 codes of length 84,
rows 1..K of the Walsh-Hadamard matrix of order 128 (``code[i, j] = (-1)^popcount(i & j)``), held as a
buffer (``output.codes``), so they are in the state_dict but not among the parameters.
:class:`EuclideanRBF` returns **logits** ``-y_i / T``: the largest logit is the nearest code (the
paper's decision), and softmax cross-entropy on ``-y_i`` is the paper's discriminative "MAP" criterion
(Eq. 9) without its extra rubbish-class constant ``j`` -- so ``lenet5`` trains with any ordinary
classification loop. The temperature ``T = sqrt(84)`` (as the ``1/sqrt(d)`` of a scaled dot product:
``y_i - y_k = 2 x . (w_k - w_i)`` is a sum of 84 terms) keeps the logit gaps moderate: at the target
``x = w_c`` the gap to another code is ``2 sqrt(84) ~ 18``, not 168. ``T = 1`` (the paper's scale)
drives F6 into saturation under cross-entropy and trained markedly slower in our runs (MNIST digits,
5 epochs, Adam: about 91% against 95-96% test accuracy). ``argmax`` is the same for every ``T``.

**Initialisation** (Appendix A): every weight and bias is drawn uniformly from
``(-2.4 / F_i, 2.4 / F_i)``, ``F_i`` the number of inputs (fan-in) of the unit it feeds.

``lenet5_modern`` is the network most tutorials call LeNet-5: C3 fully connected to S2, parameter-free
pooling (max or average), ReLU or tanh, and a plain ``Linear(84, 10)`` for the output -- 61,706
parameters.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from convatlas._checks import positive_int
from convatlas.models.features import FeatureInfo
from convatlas.registry import ModelCard, Published, card_with, register_model

__all__ = [
    "C3_TABLE",
    "ScaledTanh",
    "Subsampling",
    "PartiallyConnectedConv",
    "WholeInputConv",
    "EuclideanRBF",
    "walsh_codes",
    "LeNet5",
    "LeNet5Modern",
    "lenet5",
    "lenet5_modern",
]

# Table I of the paper: the S2 feature maps that each of the 16 C3 maps is connected to.
C3_TABLE: tuple[tuple[int, ...], ...] = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (0, 4, 5), (0, 1, 5),  # 3 neighbouring maps
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (0, 3, 4, 5), (0, 1, 4, 5), (0, 1, 2, 5),  # 4 neighbouring
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),  # 4 non-neighbouring
    (0, 1, 2, 3, 4, 5),  # all six
)


def _paper_uniform_(weight: torch.Tensor, bias: torch.Tensor | None, fan_in: int) -> None:
    """Appendix A: weights (and biases) uniform in (-2.4/F_i, 2.4/F_i), F_i the unit's fan-in."""
    bound = 2.4 / fan_in
    with torch.no_grad():
        weight.uniform_(-bound, bound)
        if bias is not None:
            bias.uniform_(-bound, bound)


class ScaledTanh(nn.Module):
    """The squashing function of Appendix A: ``f(a) = A tanh(S a)``, ``A = 1.7159``, ``S = 2/3``."""

    def __init__(self, amplitude: float = 1.7159, slope: float = 2.0 / 3.0) -> None:
        super().__init__()
        self.amplitude, self.slope = amplitude, slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.amplitude * torch.tanh(self.slope * x)

    def extra_repr(self) -> str:
        return f"amplitude={self.amplitude}, slope={self.slope:.4f}"


class Subsampling(nn.Module):
    """Trainable subsampling (S2, S4): ``out_c = coefficient_c * sum(2x2 block of map c) + bias_c``.

    Two trainable numbers per feature map; the squashing function is applied by the network after it.
    """

    def __init__(self, channels: int, kernel_size: int = 2) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.empty(channels))  # the trainable coefficient
        self.bias = nn.Parameter(torch.empty(channels))
        _paper_uniform_(self.weight, self.bias, fan_in=kernel_size * kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # sum of the block x coefficient = mean of the block x (k * k * coefficient): one pass for the
        # pooling, one fused multiply-add over the (large) pooled maps
        area = self.kernel_size * self.kernel_size
        return torch.addcmul(self.bias.view(1, -1, 1, 1), F.avg_pool2d(x, self.kernel_size),
                             (self.weight * area).view(1, -1, 1, 1))

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, kernel_size={self.kernel_size}"


class PartiallyConnectedConv(nn.Module):
    """A convolution whose output map ``j`` sees only the input maps ``table[j]`` (LeNet-5's C3).

    The parameters are those of the table and no more: output maps with the same number of inputs
    form one grouped convolution over their gathered input maps (``groups[k]`` computes the output
    maps ``members[k]``).

    Two equal ways to compute it:

    * eval mode -- the grouped convolutions, doing exactly the table's multiply-accumulates
      (``out_h * out_w * k * k * sum_j |table[j]|``; 150,000 for C3);
    * training mode -- one dense convolution whose weight holds the same parameters and zeros for the
      absent connections (:meth:`dense_weight`). PyTorch's CPU backward for many tiny groups is about
      ten times slower than for one dense convolution; the zeros get zero gradient.

    :meth:`connection_table` gives back the (in_maps x out_maps) boolean table the module computes.
    """

    def __init__(self, in_channels: int, table: tuple[tuple[int, ...], ...], kernel_size: int = 5) -> None:
        super().__init__()
        for j, inputs in enumerate(table):
            if not inputs or any(not 0 <= i < in_channels for i in inputs) or len(set(inputs)) != len(inputs):
                raise ValueError(
                    f"connection table entry {j} must list distinct input maps in 0..{in_channels - 1}, "
                    f"got {inputs}"
                )
        self.in_channels, self.out_channels, self.kernel_size = in_channels, len(table), kernel_size
        self.groups = nn.ModuleList()
        self.members: list[list[int]] = []
        for k, size in enumerate(sorted({len(inputs) for inputs in table})):
            members = [j for j, inputs in enumerate(table) if len(inputs) == size]
            conv = nn.Conv2d(size * len(members), len(members), kernel_size, groups=len(members))
            _paper_uniform_(conv.weight, conv.bias, fan_in=size * kernel_size * kernel_size)
            self.groups.append(conv)
            self.members.append(members)
            # input map and output map of each connection, in the order of conv.weight's (out, in) entries
            inputs = [i for j in members for i in table[j]]
            outputs = [j for j in members for _ in table[j]]
            self.register_buffer(f"inputs{k}", torch.tensor(inputs, dtype=torch.long), persistent=False)
            self.register_buffer(f"outputs{k}", torch.tensor(outputs, dtype=torch.long), persistent=False)
        # order[j] = position of output map j among the groups' concatenated outputs
        concatenated = [j for members in self.members for j in members]
        order = [concatenated.index(j) for j in range(len(table))]
        self.register_buffer("order", torch.tensor(order, dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return F.conv2d(x, self.dense_weight(), self.dense_bias())
        outs = [conv(x.index_select(1, getattr(self, f"inputs{k}"))) for k, conv in enumerate(self.groups)]
        return torch.cat(outs, dim=1).index_select(1, self.order)

    def dense_weight(self) -> torch.Tensor:
        """(out, in, k, k) weight of the equal dense convolution: zero where the table has no connection."""
        k = self.kernel_size
        weight = self.groups[0].weight.new_zeros(self.out_channels, self.in_channels, k, k)
        for g, conv in enumerate(self.groups):
            index = (getattr(self, f"outputs{g}"), getattr(self, f"inputs{g}"))
            weight = weight.index_put(index, conv.weight.reshape(-1, k, k))
        return weight

    def dense_bias(self) -> torch.Tensor:
        return torch.cat([conv.bias for conv in self.groups]).index_select(0, self.order)

    def connection_table(self) -> torch.Tensor:
        """Boolean (in_channels, out_channels): True where input map i feeds output map j."""
        table = torch.zeros(self.in_channels, self.out_channels, dtype=torch.bool)
        for g in range(len(self.groups)):
            table[getattr(self, f"inputs{g}").cpu(), getattr(self, f"outputs{g}").cpu()] = True
        return table

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, partial"


class WholeInputConv(nn.Conv2d):
    """A convolution whose kernel covers its whole input at the paper's input size (LeNet-5's C5).

    Sec. II.B calls C5 a convolutional layer rather than a fully connected one because a larger input
    (all else kept) would give it maps larger than 1x1. When the input is exactly kernel-sized (and
    there is no padding and one group), the convolution *is* a matrix product; in training mode it
    is computed as one -- ``F.linear`` on the flattened maps with the same weight tensor -- whose
    CPU backward is several times faster than the convolution's. Eval mode and every other input
    size run the plain convolution.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.training and x.shape[-2:] == self.weight.shape[-2:] and self.padding == (0, 0)
                and self.groups == 1):
            return F.linear(x.flatten(1), self.weight.flatten(1), self.bias)[:, :, None, None]
        return super().forward(x)


def walsh_codes(num_codes: int, length: int = 84) -> torch.Tensor:
    """Deterministic +-1 codes: rows 1..num_codes of the Sylvester-Hadamard (Walsh) matrix,
    ``code[i, j] = (-1) ** popcount(i & j)``, cut to ``length`` columns.

    Rows of a Hadamard matrix are orthogonal, so the codes lie far apart (about ``length / 2``
    differing signs); the constant row 0 is skipped. Order 128 gives at most 127 distinct codes.
    """
    order = 1 << max(1, (length - 1).bit_length())  # smallest power of two >= length
    if not 1 <= num_codes < order:
        raise ValueError(
            f"Walsh codes of length {length} give 1..{order - 1} distinct classes, got {num_codes}; "
            f"for more classes use lenet5_modern (a linear output layer)"
        )
    rows = [[-1.0 if bin(i & j).count("1") % 2 else 1.0 for j in range(length)] for i in range(1, num_codes + 1)]
    return torch.tensor(rows)


class EuclideanRBF(nn.Module):
    """Output layer of LeNet-5: ``y_i = sum_j (x_j - w_ij)^2`` with fixed +-1 codes ``w`` (a buffer).

    Returns the logits ``-y_i / temperature`` (nearest code = largest logit); see the module docstring.
    """

    def __init__(self, in_features: int, num_classes: int, *, temperature: float | None = None) -> None:
        super().__init__()
        self.register_buffer("codes", walsh_codes(num_classes, in_features))  # fixed, not trained
        self.temperature = math.sqrt(in_features) if temperature is None else float(temperature)
        if not self.temperature > 0:
            raise ValueError(f"RBF temperature must be positive, got {temperature!r}")

    def penalties(self, x: torch.Tensor) -> torch.Tensor:
        """The paper's RBF outputs ``y_i = ||x - w_i||^2``, shape (N, classes)."""
        return (x.unsqueeze(1) - self.codes).square().sum(dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -self.penalties(x) / self.temperature

    def extra_repr(self) -> str:
        return (
            f"in_features={self.codes.shape[1]}, num_classes={self.codes.shape[0]}, fixed codes, "
            f"temperature={self.temperature:.3f}"
        )


# The feature maps of both LeNet-5s: (layer, channels, accumulated stride). At the 32x32 input they
# are 28x28, 14x14, 10x10, 5x5 and 1x1 (the convolutions are unpadded).
_MAPS = (("C1", 6, 1), ("S2", 6, 2), ("C3", 16, 2), ("S4", 16, 4), ("C5", 120, 4))


class LeNet5(nn.Module):
    """LeNet-5 as in the paper: C1, S2, C3 (Table I), S4, C5, F6, Euclidean RBF output.

    ``forward`` returns the negative squared distances to the class codes (usable as logits).
    One ``squash`` module applies the squashing function after every layer; the squashed maps of
    C1 .. C5 pass through the parameter-free ``maps.C1`` .. ``maps.C5`` (identities), so that each
    is the output of a module of its own: those are the feature maps (``feature_info``).
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        positive_int("num_classes", num_classes)
        self.c1 = nn.Conv2d(1, 6, kernel_size=5)
        self.s2 = Subsampling(6)
        self.c3 = PartiallyConnectedConv(6, C3_TABLE, kernel_size=5)
        self.s4 = Subsampling(16)
        self.c5 = WholeInputConv(16, 120, kernel_size=5)
        self.f6 = nn.Linear(120, 84)
        self.output = EuclideanRBF(84, num_classes)
        self.squash = ScaledTanh()
        self.maps = nn.ModuleDict({name: nn.Identity() for name, _, _ in _MAPS})
        self.feature_info = [FeatureInfo(name, f"maps.{name}", c, r) for name, c, r in _MAPS]
        for conv in (self.c1, self.c5):
            _paper_uniform_(conv.weight, conv.bias, fan_in=conv.in_channels * 25)
        _paper_uniform_(self.f6.weight, self.f6.bias, fan_in=120)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f, maps = self.squash, self.maps
        x = maps.S2(f(self.s2(maps.C1(f(self.c1(x))))))
        x = maps.S4(f(self.s4(maps.C3(f(self.c3(x))))))
        x = maps.C5(f(self.c5(x))).flatten(1)
        x = f(self.f6(x))
        return self.output(x)


class LeNet5Modern(nn.Module):
    """The common modern reading of LeNet-5: full C3, parameter-free pooling, ReLU/tanh, linear output.

    Feature maps: ``C1`` (``act1``), ``S2`` (``s2``), ``C3`` (``act3``), ``S4`` (``s4``), ``C5`` (``act5``).
    """

    def __init__(self, num_classes: int = 10, *, pool: str = "max", activation: str = "relu") -> None:
        super().__init__()
        positive_int("num_classes", num_classes)
        pools = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}
        activations = {"relu": nn.ReLU, "tanh": nn.Tanh}
        if pool not in pools:
            raise ValueError(f"pool must be 'max' or 'avg', got {pool!r}")
        if activation not in activations:
            raise ValueError(f"activation must be 'relu' or 'tanh', got {activation!r}")
        act = activations[activation]
        self.c1 = nn.Conv2d(1, 6, kernel_size=5)
        self.act1 = act()
        self.s2 = pools[pool](2)
        self.c3 = nn.Conv2d(6, 16, kernel_size=5)
        self.act3 = act()
        self.s4 = pools[pool](2)
        self.c5 = nn.Conv2d(16, 120, kernel_size=5)
        self.act5 = act()
        self.f6 = nn.Linear(120, 84)
        self.act6 = act()
        self.output = nn.Linear(84, num_classes)
        module_of = {"C1": "act1", "S2": "s2", "C3": "act3", "S4": "s4", "C5": "act5"}
        self.feature_info = [FeatureInfo(name, module_of[name], c, r) for name, c, r in _MAPS]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.s2(self.act1(self.c1(x)))
        x = self.s4(self.act3(self.c3(x)))
        x = self.act5(self.c5(x)).flatten(1)
        x = self.act6(self.f6(x))
        return self.output(x)


_BASE = ModelCard(
    name="lenet5",
    family="lenet",
    paper="Gradient-Based Learning Applied to Document Recognition",
    authors="LeCun, Bottou, Bengio, Haffner",
    year=1998,
    input_size=(1, 32, 32),
    dataset="mnist",
    idea=(
        "Convolutions with shared weights, subsampling and a final classifier learned together by "
        "back-propagation, so the network learns its own features from pixels. Local receptive fields "
        "and weight sharing give shift tolerance with few parameters (60,000)."
    ),
)


@register_model(
    card_with(
        _BASE,
        params=Published(60_000, "Sec. II.B: '60,000 trainable free parameters'"),
        macs=Published(
            325_680,
            "Sec. II.B connection counts (C1 122,304 + C3 151,600 + C5 48,120 + F6 10,164) less their "
            "bias connections; conv + linear only",
        ),
        top1=Published(99.05, "100 - 0.95% MNIST test error (60,000 training digits, no distortions)"),
        recipe="lenet5_digits",
        recipes=("lenet5_mnist",),
        notes=(
            "Output = negative squared Euclidean distances to fixed Walsh +-1 codes (the paper: 7x12 "
            "character bitmaps); they act as logits for cross-entropy."
        ),
    )
)
def lenet5(*, num_classes: int = 10) -> LeNet5:
    """LeNet-5 of LeCun et al. (1998): partial C3 (Table I), trainable subsampling, scaled tanh and
    a fixed Euclidean RBF output; exactly 60,000 trainable parameters. Outputs are logits
    (negative RBF distances)."""
    return LeNet5(num_classes=num_classes)


@register_model(
    card_with(
        _BASE,
        name="lenet5_modern",
        params=Published(61_706, "paper-numbers.md Sec. 1 (full C3, Linear(84, 10))"),
        macs=Published(416_520, "paper-numbers.md Sec. 1, at 32x32"),
        recipe="lenet5_digits",
        notes="Not the paper's network: C3 fully connected, parameter-free pooling, linear output.",
    )
)
def lenet5_modern(*, num_classes: int = 10, pool: str = "max", activation: str = "relu") -> LeNet5Modern:
    """The common modern LeNet-5 (LeCun et al. 1998, simplified): ``pool`` "max" or "avg",
    ``activation`` "relu" or "tanh", C3 fully connected and a linear output layer (61,706 parameters)."""
    return LeNet5Modern(num_classes=num_classes, pool=pool, activation=activation)
