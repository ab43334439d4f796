"""Reference numbers for the residual families: ResNet, pre-activation ResNet, Wide ResNet, ResNeXt.

Sources (see shared/reference/paper-numbers.md, sections 8-12 and 20):

* torchvision 0.29.1 ``Weights.meta``: ``num_params`` and ``_ops`` (its "GFLOPS" are GMACs);
* exact [C] counts of paper-numbers.md, which round to the papers' "0.27M", "36.5M", ... ;
* timm 1.0.31's pre-activation ``resnetv2_*`` (an independent implementation with the same layers).

MACs are conv + linear multiply-accumulates at the card's input size. The tolerance is half a
unit of the last published digit.
"""

from __future__ import annotations

_TV = "torchvision 0.29.1 meta num_params"
_TV_OPS = "torchvision 0.29.1 meta _ops (GMACs)"

PARAMS: dict[str, tuple[int, str]] = {
    # ResNet, ImageNet (paper-numbers.md section 8; v1 has the same layers as v1.5, section 20.1)
    "resnet18": (11_689_512, _TV),
    "resnet34": (21_797_672, _TV),
    "resnet50": (25_557_032, _TV),
    "resnet101": (44_549_160, _TV),
    "resnet152": (60_192_808, _TV),
    "resnet50_v1": (25_557_032, _TV + " of resnet50: v1 moves a stride, not a weight (section 20.1)"),
    "resnet101_v1": (44_549_160, _TV + " of resnet101 (section 20.1)"),
    "resnet152_v1": (60_192_808, _TV + " of resnet152 (section 20.1)"),
    # ResNet, CIFAR-10, option A (section 9; paper Table 6: 0.27M, 0.46M, 0.66M, 0.85M, 1.7M, 19.4M)
    "resnet20": (269_722, "paper-numbers.md section 9 [C]; Table 6: 0.27M"),
    "resnet_cifar": (269_722, "default depth 20 = resnet20: paper-numbers.md section 9 [C]; Table 6: 0.27M"),
    "resnet32": (464_154, "paper-numbers.md section 9 [C]; Table 6: 0.46M"),
    "resnet44": (658_586, "paper-numbers.md section 9 [C]; Table 6: 0.66M"),
    "resnet56": (853_018, "paper-numbers.md section 9 [C]; Table 6: 0.85M"),
    "resnet110": (1_727_962, "paper-numbers.md section 9 [C]; Table 6: 1.7M"),
    "resnet1202": (19_421_274, "paper-numbers.md section 9 [C]; Table 6: 19.4M"),
    # Pre-activation ResNet, CIFAR-10 (section 10)
    "preact_resnet110": (1_730_522, "paper-numbers.md section 10 [C]"),
    "preact_resnet164": (1_703_258, "paper-numbers.md section 10 [C]; Table 4: 1.7M"),
    "preact_resnet1001": (10_327_706, "paper-numbers.md section 10 [C] with BN; Table 4: 10.2M without BN"),
    # Pre-activation ResNet, ImageNet: timm 1.0.31 resnetv2_* (200: ResNetV2(layers=[3, 24, 36, 3]))
    "preact_resnet18": (11_687_720, "timm 1.0.31 resnetv2_18"),
    "preact_resnet34": (21_795_880, "timm 1.0.31 resnetv2_34"),
    "preact_resnet50": (25_549_352, "timm 1.0.31 resnetv2_50"),
    "preact_resnet101": (44_541_480, "timm 1.0.31 resnetv2_101"),
    "preact_resnet152": (60_185_128, "timm 1.0.31 resnetv2_152"),
    "preact_resnet200": (64_666_152, "timm 1.0.31 ResNetV2(layers=[3, 24, 36, 3]); WRN README: 64.7M"),
    # Wide ResNet (section 11)
    "wrn_28_10": (36_479_194, "paper-numbers.md section 11 [C]; paper: 36.5M"),
    "wrn": (36_479_194, "default WRN-28-10: paper-numbers.md section 11 [C]; paper: 36.5M"),
    "wrn_16_8": (10_961_370, "paper-numbers.md section 11 [C]; paper: 11.0M"),
    "wrn_40_4": (8_949_210, "paper-numbers.md section 11 [C]; paper: 8.9M"),
    "wide_resnet50_2": (68_883_240, _TV),
    "wide_resnet101_2": (126_886_696, _TV),
    # ResNeXt (section 12)
    "resnext50_32x4d": (25_028_904, _TV),
    "resnext101_32x4d": (44_177_704, "paper-numbers.md section 12 [C] (timm resnext101_32x4d)"),
    "resnext101_32x8d": (88_791_336, _TV),
    "resnext101_64x4d": (83_455_272, _TV),
    "resnext29_8x64d": (34_426_698, "paper-numbers.md section 12 [C]; Table 7: 34.4M"),
    "resnext29_16x64d": (68_155_210, "paper-numbers.md section 12 [C]; Table 7: 68.1M"),
}

# Counts of variants that are not registered names (used by tests/test_models_resnet.py).
VARIANT_PARAMS: dict[str, tuple[int, str]] = {
    "preact_resnet1001 without BN affine": (10_178_490, "paper-numbers.md section 10; Table 4: 10.2M"),
    "wrn_28_10 with 100 classes": (36_536_884, "paper-numbers.md section 11 [C]"),
    "resnext29_16x64d with 100 classes": (68_247_460, "paper-numbers.md section 12 [C]"),
    "wrn_40_1": (563_930, "paper-numbers.md section 11 [C]; paper: 0.6M"),
    "wrn_40_2": (2_243_546, "paper-numbers.md section 11 [C]; paper: 2.2M"),
    "wrn_40_8": (35_748_314, "paper-numbers.md section 11 [C]; paper: 35.7M"),
    "wrn_28_12": (52_517_850, "paper-numbers.md section 11 [C]; paper: 52.5M"),
    "wrn_22_8": (17_158_106, "paper-numbers.md section 11 [C]; paper: 17.2M"),
    "wrn_22_10": (26_797_914, "paper-numbers.md section 11 [C]; paper: 26.8M"),
    "wrn_16_10": (17_116_634, "paper-numbers.md section 11 [C]; paper: 17.1M"),
}


def _macs(value: float, last_digit: float, source: str) -> tuple[float, float, str]:
    """``value`` published to ``last_digit`` (1e6 for "1.814 G"): tolerance half that digit."""
    return value, 0.5 * last_digit / value + 1e-9, source


MACS: dict[str, tuple[float, float, str]] = {
    "resnet18": _macs(1.814e9, 1e6, _TV_OPS + "; paper Table 1: 1.8e9"),
    "resnet34": _macs(3.664e9, 1e6, _TV_OPS + "; paper Table 1: 3.6e9"),
    "resnet50": _macs(4.089e9, 1e6, _TV_OPS + "; ResNeXt paper Table 1: 4.1e9 for this placement"),
    "resnet101": _macs(7.801e9, 1e6, _TV_OPS),
    "resnet152": _macs(11.514e9, 1e6, _TV_OPS),
    "resnet50_v1": _macs(3.858e9, 1e6, "paper-numbers.md section 8 [C]; paper Table 1: 3.8e9"),
    "resnet101_v1": _macs(7.570e9, 1e6, "paper-numbers.md section 8 [C]; paper Table 1: 7.6e9"),
    "resnet152_v1": _macs(11.282e9, 1e6, "paper-numbers.md section 8 [C]; paper Table 1: 11.3e9"),
    "resnet20": _macs(40.6e6, 1e5, "paper-numbers.md section 9 [C]"),
    "resnet_cifar": _macs(40.6e6, 1e5, "default depth 20 = resnet20, paper-numbers.md section 9 [C]"),
    "resnet32": _macs(68.9e6, 1e5, "paper-numbers.md section 9 [C]"),
    "resnet44": _macs(97.2e6, 1e5, "paper-numbers.md section 9 [C]"),
    "resnet56": _macs(125.5e6, 1e5, "paper-numbers.md section 9 [C]"),
    "resnet110": _macs(252.9e6, 1e5, "paper-numbers.md section 9 [C]"),
    "resnet1202": _macs(2.83e9, 1e7, "paper-numbers.md section 9 [C]"),
    # paper-numbers.md section 10 counts 247.6 M / 1.491 G with the stride in the bottleneck's 3x3;
    # the authors' code (KaimingHe/resnet-1k-layers) strides the first 1x1, which saves
    # 64*32*(32*32 - 16*16) + 128*64*(16*16 - 8*8) = 3,145,728 MACs.
    "preact_resnet164": _macs(247.6e6 - 3_145_728, 1e5, "paper-numbers.md section 10 less 3,145,728"),
    "preact_resnet1001": _macs(1.491e9 - 3_145_728, 1e6, "paper-numbers.md section 10 less 3,145,728"),
    # ResNet-110 plus two 1x1 projections: 16*32*16*16 + 32*64*8*8 = 262,144 MACs.
    "preact_resnet110": _macs(252.9e6 + 262_144, 1e5, "paper-numbers.md section 9 resnet110 + 262,144"),
    # A pre-activation network has the convolutions and fc of its ResNet: same MACs.
    "preact_resnet18": _macs(1.814e9, 1e6, _TV_OPS + " of resnet18"),
    "preact_resnet34": _macs(3.664e9, 1e6, _TV_OPS + " of resnet34"),
    "preact_resnet50": _macs(4.089e9, 1e6, _TV_OPS + " of resnet50"),
    "preact_resnet101": _macs(7.801e9, 1e6, _TV_OPS + " of resnet101"),
    "preact_resnet152": _macs(11.514e9, 1e6, _TV_OPS + " of resnet152"),
    "wrn_28_10": _macs(5.243e9, 1e6, "paper-numbers.md section 11 [C]"),
    "wrn": _macs(5.243e9, 1e6, "default WRN-28-10, paper-numbers.md section 11 [C]"),
    "wrn_16_8": _macs(1.548e9, 1e6, "paper-numbers.md section 11 [C]"),
    "wrn_40_4": _macs(1.299e9, 1e6, "paper-numbers.md section 11 [C]"),
    "wide_resnet50_2": _macs(11.398e9, 1e6, _TV_OPS),
    "wide_resnet101_2": _macs(22.753e9, 1e6, _TV_OPS),
    "resnext50_32x4d": _macs(4.230e9, 1e6, _TV_OPS + "; paper Table 1: 4.2e9"),
    "resnext101_32x4d": _macs(7.970e9, 1e6, "paper-numbers.md section 12 [C]"),
    "resnext101_32x8d": _macs(16.414e9, 1e6, _TV_OPS),
    "resnext101_64x4d": _macs(15.460e9, 1e6, _TV_OPS),
    "resnext29_8x64d": _macs(5.387e9, 1e6, "paper-numbers.md section 12 [C]"),
    "resnext29_16x64d": _macs(10.689e9, 1e6, "paper-numbers.md section 12 [C]"),
}
