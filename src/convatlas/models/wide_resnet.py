"""Wide Residual Networks (Zagoruyko & Komodakis 2016, BMVC, arXiv:1605.07146).

Make residual networks shallower and wider instead of thinner and deeper: a WRN-d-k has d
layers and k times the filters of a pre-activation ResNet, and WRN-28-10 (36.5M parameters,
28 layers) beats the 1001-layer ResNet on CIFAR. Wide layers also use the GPU better.

CIFAR WRN-d-k (§2, Table 1): ``conv1`` 3x3 with 16 filters, then three groups of
n = (d - 4) / 6 pre-activation "B(3,3)" blocks with 16k, 32k, 64k filters on 32, 16, 8 pixels
(``layer1`` .. ``layer3``, the paper's conv2 .. conv4), BN-ReLU, global average pooling and the
classifier. A block is ``BN-ReLU-conv3x3-BN-ReLU-[dropout]-conv3x3`` plus the identity, or a 1x1
convolution of the activated input where the width or resolution changes; dropout between the
convolutions is the paper's "-dropout" variant (p = 0.3). The depth d = 6n + 4 is how the
authors' code counts it. The block is Fig. 4(e) of He et al. 2016, built by :mod:`.preact_resnet`.

ImageNet WRN-50-2 and WRN-101-2 (§4, the released "WRN-50-2-bottleneck"): ResNet-50/101 whose
bottleneck 1x1-3x3 layers are twice as wide (outer 1x1 unchanged), as torchvision's
``wide_resnet50_2``/``wide_resnet101_2``, whose weights load unchanged.
"""

from __future__ import annotations

from convatlas._checks import positive_int
from convatlas.models._resnet_blocks import Bottleneck
from convatlas.models.preact_resnet import PreActResNet
from convatlas.models.resnet import ResNet
from convatlas.registry import ModelCard, Published, card_with, register_model

__all__ = ["wide_resnet"]


def wide_resnet(depth: int, widen_factor: int, dropout: float = 0.0, *, num_classes: int = 10) -> PreActResNet:
    """CIFAR WRN-``depth``-``widen_factor`` (Zagoruyko & Komodakis 2016, arXiv:1605.07146).

    ``depth`` d = 6n + 4 (10, 16, 22, 28, 40, ...): n = (d - 4) / 6 blocks per group.
    ``widen_factor`` k: the groups have 16k, 32k, 64k filters (k = 1 is a thin pre-activation
    ResNet). ``dropout``: probability of the dropout between a block's two convolutions
    (0 in the paper's main table, 0.3 in its "-dropout" rows).
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
        raise ValueError(
            f"depth must satisfy (depth - 4) divisible by 6, i.e. 6n+4 with n >= 1 "
            f"(10, 16, 22, 28, 40, ...), got {depth!r}"
        )
    positive_int("widen_factor", widen_factor)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")
    n = (depth - 4) // 6
    k = widen_factor
    return PreActResNet(
        (n, n, n), (16 * k, 32 * k, 64 * k), bottleneck=False, unit="full_preact",
        stem="cifar", stem_width=16, dropout=float(dropout), num_classes=num_classes,
    )


_CARD = ModelCard(
    name="wrn_28_10",
    family="wide_resnet",
    paper="Wide Residual Networks",
    authors="Zagoruyko, Komodakis",
    year=2016,
    arxiv="1605.07146",
    input_size=(3, 32, 32),
    dataset="cifar10",
    idea=(
        "Residual networks gain more from width than from depth: widening each block k times "
        "lets a 16- or 28-layer network beat 1000-layer thin ones, and train faster. Dropout "
        "between the block's convolutions regularises the wide blocks."
    ),
)
_TABLE = "paper's final results table (mean/std preprocessing, median of 5 runs), CIFAR-10 error {}%"


@register_model(card_with(
    _CARD,
    name="wrn_28_10",
    params=Published(36_479_194, "exact count, 10 classes (paper: 36.5M)"),
    macs=Published(5.243e9, "conv+fc MACs at 32x32 (5.243 G, paper-numbers.md section 11)"),
    top1=Published(96.00, _TABLE.format("4.00")),
    notes="CIFAR-100: 19.25% error; with dropout 0.3: 3.89% / 18.85%.",
    recipes=("wrn28_10_cifar10",),
))
def wrn_28_10(*, num_classes: int = 10, dropout: float = 0.0) -> PreActResNet:
    """WRN-28-10 (Zagoruyko & Komodakis 2016, arXiv:1605.07146): depth 28, widen factor 10.

    ``dropout``: between the two 3x3 convolutions of each block (paper: 0 or 0.3).
    """
    return wide_resnet(28, 10, dropout, num_classes=num_classes)


@register_model(card_with(
    _CARD,
    name="wrn_16_8",
    params=Published(10_961_370, "exact count, 10 classes (paper: 11.0M)"),
    macs=Published(1.548e9, "conv+fc MACs at 32x32 (1.548 G, paper-numbers.md section 11)"),
    top1=Published(95.73, _TABLE.format("4.27")),
    notes="CIFAR-100: 20.43% error. With dropout, the paper's best SVHN net (1.54%).",
))
def wrn_16_8(*, num_classes: int = 10, dropout: float = 0.0) -> PreActResNet:
    """WRN-16-8 (Zagoruyko & Komodakis 2016, arXiv:1605.07146): depth 16, widen factor 8.

    ``dropout``: between the two 3x3 convolutions of each block (paper: 0 or 0.3).
    """
    return wide_resnet(16, 8, dropout, num_classes=num_classes)


@register_model(card_with(
    _CARD,
    name="wrn_40_4",
    params=Published(8_949_210, "exact count, 10 classes (paper: 8.9M)"),
    macs=Published(1.299e9, "conv+fc MACs at 32x32 (1.299 G, paper-numbers.md section 11)"),
    top1=Published(95.47, _TABLE.format("4.53")),
    notes="CIFAR-100: 21.18% error.",
))
def wrn_40_4(*, num_classes: int = 10, dropout: float = 0.0) -> PreActResNet:
    """WRN-40-4 (Zagoruyko & Komodakis 2016, arXiv:1605.07146): depth 40, widen factor 4.

    ``dropout``: between the two 3x3 convolutions of each block (paper: 0 or 0.3).
    """
    return wide_resnet(40, 4, dropout, num_classes=num_classes)



@register_model(card_with(
    _CARD,
    name="wrn",
    params=Published(36_479_194, "exact count of the default WRN-28-10, 10 classes (paper: 36.5M)"),
    macs=Published(5.243e9, "conv+fc MACs at 32x32 of WRN-28-10 (5.243 G, paper-numbers.md section 11)"),
    top1=Published(96.00, _TABLE.format("4.00") + " (WRN-28-10)"),
    notes="Any WRN-d-k: create_model('wrn', depth=16, widen_factor=4); depth = 6n+4.",
))
def wrn(*, depth: int = 28, widen_factor: int = 10, num_classes: int = 10, dropout: float = 0.0) -> PreActResNet:
    """WRN-d-k of any depth ``d`` = 6n+4 and widen factor ``k`` (Zagoruyko & Komodakis 2016,
    arXiv:1605.07146); the default is WRN-28-10."""
    return wide_resnet(depth, widen_factor, dropout, num_classes=num_classes)


_IMAGENET = card_with(
    _CARD,
    input_size=(3, 224, 224),
    dataset="imagenet",
    notes="Stride in the 3x3 of a down-sampling bottleneck, as the fb.resnet.torch-based release.",
)
_TV_ACC = "torchvision IMAGENET1K_V1 weights, single 224 crop"


@register_model(card_with(
    _IMAGENET,
    name="wide_resnet50_2",
    params=Published(68_883_240, "torchvision meta num_params (WRN README: 68.9M)"),
    macs=Published(11.398e9, "torchvision meta _ops (GFLOPS column = GMACs)"),
    top1=Published(78.468, _TV_ACC),
    top5=Published(94.086, _TV_ACC),
    torchvision="wide_resnet50_2",
    timm="wide_resnet50_2",
    notes="The authors' converted model: 21.9/6.03% top-1/top-5 error, single crop (WRN README). "
    "Stride in the 3x3 of a down-sampling bottleneck.",
))
def wide_resnet50_2(*, num_classes: int = 1000) -> ResNet:
    """WRN-50-2-bottleneck (Zagoruyko & Komodakis 2016, arXiv:1605.07146, ImageNet section).

    ResNet-50 (He et al. 2015, arXiv:1512.03385) with the inner 1x1 and 3x3 layers of every
    bottleneck twice as wide: 128-128-256 .. 1024-1024-2048. No variant arguments.
    """
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes=num_classes, width_per_group=128)


@register_model(card_with(
    _IMAGENET,
    name="wide_resnet101_2",
    params=Published(126_886_696, "torchvision meta num_params"),
    macs=Published(22.753e9, "torchvision meta _ops (GFLOPS column = GMACs)"),
    top1=Published(78.848, _TV_ACC),
    top5=Published(94.284, _TV_ACC),
    torchvision="wide_resnet101_2",
    timm="wide_resnet101_2",
))
def wide_resnet101_2(*, num_classes: int = 1000) -> ResNet:
    """WRN-101-2 (Zagoruyko & Komodakis 2016, arXiv:1605.07146; torchvision's wide_resnet101_2).

    ResNet-101 (He et al. 2015, arXiv:1512.03385) with bottlenecks twice as wide inside.
    No variant arguments.
    """
    return ResNet(Bottleneck, (3, 4, 23, 3), num_classes=num_classes, width_per_group=128)
