"""Reference numbers for the efficient families: DenseNet, SqueezeNet, MobileNet v1/v2, EfficientNet,
NASNet-A.

Sources: torchvision 0.29.1 ``Weights.meta`` (``num_params``; ``_ops`` is GMACs), the papers' tables,
and the independent counts of shared/reference/paper-numbers.md (sections 13-18; "[C]" there means
counted on torchvision/timm/Keras builds, not on convatlas). MACs are conv + linear
multiply-accumulates at the card's input size.
"""

from __future__ import annotations

TV = "torchvision 0.29.1 meta num_params"
PN = "paper-numbers.md"

PARAMS: dict[str, tuple[int, str]] = {
    # DenseNet (section 13)
    "densenet121": (7_978_856, TV),
    "densenet161": (28_681_000, TV),
    "densenet169": (14_149_480, TV),
    "densenet201": (20_013_928, TV),
    "densenet264": (33_337_704, f"{PN} s.13 [C]: torchvision DenseNet(32, (6,12,64,48), 64)"),
    "densenet40_k12": (1_019_722, f"{PN} s.13 [C], Table 2 DenseNet (L=40, k=12), 10 classes"),
    "densenet100_k12": (6_979_642, f"{PN} s.13 [C], Table 2 DenseNet (L=100, k=12)"),
    "densenet100_k24": (27_249_082, f"{PN} s.13 [C], Table 2 DenseNet (L=100, k=24)"),
    "densenet_bc100_k12": (769_162, f"{PN} s.13 [C], Table 2 DenseNet-BC (L=100, k=12); bearpaw 0.77M"),
    "densenet_bc250_k24": (15_324_406, f"{PN} s.13 [C], Table 2 DenseNet-BC (L=250, k=24)"),
    "densenet_bc190_k40": (25_624_430, f"{PN} s.13 [C], Table 2 DenseNet-BC (L=190, k=40); bearpaw 25.62M"),
    "densenet_cifar": (769_162, f"{PN} s.13 [C], defaults = DenseNet-BC (L=100, k=12)"),
    # SqueezeNet (section 14)
    "squeezenet1_0": (1_248_424, f"{TV}; SqueezeNet Table 1 total"),
    "squeezenet1_1": (1_235_496, TV),
    # MobileNet v1 (section 15; with BN, = timm mobilenetv1_100 and Keras trainable)
    "mobilenet_v1": (4_231_976, f"{PN} s.15 [C] with BN; timm mobilenetv1_100"),
    "mobilenet_v1_075": (2_585_560, f"{PN} s.15 [C] with BN"),
    "mobilenet_v1_050": (1_331_592, f"{PN} s.15 [C] with BN"),
    "mobilenet_v1_025": (470_072, f"{PN} s.15 [C] with BN"),
    # MobileNet v2 (section 16)
    "mobilenet_v2": (3_504_872, TV),
    "mobilenet_v2_140": (6_108_776, f"{PN} s.16, timm mobilenetv2_140"),
    "mobilenet_v2_075": (2_636_424, f"{PN} s.16, timm mobilenetv2_075"),
    "mobilenet_v2_050": (1_968_680, f"{PN} s.16, timm mobilenetv2_050"),
    "mobilenet_v2_035": (1_677_128, f"{PN} s.16, timm mobilenetv2_035"),
    # EfficientNet (section 17)
    "efficientnet": (5_288_548, f"{TV} efficientnet_b0 (phi=0 is B0)"),
    "efficientnet_b0": (5_288_548, TV),
    "efficientnet_b1": (7_794_184, TV),
    "efficientnet_b2": (9_109_994, TV),
    "efficientnet_b3": (12_233_232, TV),
    "efficientnet_b4": (19_341_616, TV),
    "efficientnet_b5": (30_389_784, TV),
    "efficientnet_b6": (43_040_704, TV),
    "efficientnet_b7": (66_347_960, TV),
    # NASNet-A (section 18)
    "nasnet_a_mobile": (5_289_978, f"{PN} s.18: Cadene pretrainedmodels nasnetamobile"),
    "nasnet_a_large": (88_753_150, f"{PN} s.18: timm nasnetalarge"),
}

MACS: dict[str, tuple[float, float, str]] = {
    "nasnet_a_mobile": (564e6, 0.002, "NASNet Table 2 (564M mult-adds)"),
    "nasnet_a_large": (23.78e9, 0.001, f"{PN} s.18: timm nasnetalarge 23.78 G MACs (Table 2: 23.8B)"),
    "densenet121": (2.834e9, 0.001, "torchvision meta _ops"),
    "densenet161": (7.728e9, 0.001, "torchvision meta _ops"),
    "densenet169": (3.360e9, 0.001, "torchvision meta _ops"),
    "densenet201": (4.291e9, 0.001, "torchvision meta _ops"),
    "densenet264": (5.752e9, 0.001, f"{PN} s.13 [C]"),
    "densenet40_k12": (264.8e6, 0.001, f"{PN} s.13 [C]"),
    "densenet100_k12": (1.770e9, 0.001, f"{PN} s.13 [C]"),
    "densenet100_k24": (6.889e9, 0.001, f"{PN} s.13 [C]"),
    "densenet_bc100_k12": (287.9e6, 0.001, f"{PN} s.13 [C]"),
    "densenet_bc250_k24": (5.419e9, 0.001, f"{PN} s.13 [C]"),
    "densenet_bc190_k40": (9.302e9, 0.001, f"{PN} s.13 [C]"),
    "densenet_cifar": (287.9e6, 0.001, f"{PN} s.13 [C]"),
    "squeezenet1_0": (0.819e9, 0.002, "torchvision meta _ops"),
    "squeezenet1_1": (0.349e9, 0.002, "torchvision meta _ops"),
    "mobilenet_v1": (569e6, 0.005, "MobileNet Table 6 (million mult-adds)"),
    "mobilenet_v1_075": (325e6, 0.005, "MobileNet Table 6"),
    "mobilenet_v1_050": (149e6, 0.005, "MobileNet Table 6"),
    "mobilenet_v1_025": (41e6, 0.005, "MobileNet Table 6"),
    "mobilenet_v2": (0.301e9, 0.002, "torchvision meta _ops (Table 4: 300M)"),
    "mobilenet_v2_140": (582e6, 0.005, "TF-slim README (Table 4 prints 585M)"),
    "mobilenet_v2_075": (209e6, 0.01, "TF-slim README"),
    "mobilenet_v2_050": (97e6, 0.01, "TF-slim README"),
    "mobilenet_v2_035": (59e6, 0.01, "TF-slim README"),
    "efficientnet": (0.386e9, 0.002, "torchvision meta _ops of efficientnet_b0"),
    "efficientnet_b0": (0.386e9, 0.002, "torchvision meta _ops"),
    "efficientnet_b1": (0.687e9, 0.002, "torchvision meta _ops"),
    "efficientnet_b2": (993.6e6, 0.001, f"{PN} s.17 [C] at 260 (torchvision's _ops is at 288)"),
    "efficientnet_b3": (1.827e9, 0.002, "torchvision meta _ops"),
    "efficientnet_b4": (4.394e9, 0.002, "torchvision meta _ops"),
    "efficientnet_b5": (10.266e9, 0.002, "torchvision meta _ops"),
    "efficientnet_b6": (19.068e9, 0.002, "torchvision meta _ops"),
    "efficientnet_b7": (37.746e9, 0.002, "torchvision meta _ops"),
}

# MobileNet v1, paper Tables 6, 7 and 9: (alpha, input side) -> (million mult-adds, million
# parameters, half a unit of the printed parameter precision, source). The paper's parameter counts
# leave out BatchNorm (Table 9's 1.32M is the conv + FC count of 0.5 MobileNet; with BN it is 1.33M).
# Mult-adds are printed in whole millions.
MOBILENET_V1_PAPER = {
    (1.0, 224): (569, 4.2, 0.05, "Table 6/7"),
    (0.75, 224): (325, 2.6, 0.05, "Table 6"),
    (0.5, 224): (149, 1.3, 0.05, "Table 6"),
    (0.25, 224): (41, 0.5, 0.05, "Table 6"),
    (1.0, 192): (418, 4.2, 0.05, "Table 7"),
    (1.0, 160): (290, 4.2, 0.05, "Table 7"),
    (1.0, 128): (186, 4.2, 0.05, "Table 7"),
    (0.5, 160): (76, 1.32, 0.005, "Table 9"),
}
