"""Reference numbers for the classic families: LeNet-5, AlexNet, ZFNet, VGG, Network-in-Network.

Sources: /work/shared/reference/paper-numbers.md sections 1-5 ("[C]" counts made there by building
the networks independently), the papers, and torchvision's weights meta
(``torchvision.models.get_model_weights(name).IMAGENET1K_V1.meta["num_params"]`` and ``["_ops"]``,
which is GMACs). MACs are conv + linear multiply-accumulates at the card's input size.
"""

from __future__ import annotations

PARAMS: dict[str, tuple[int, str]] = {
    # LeNet-5 (paper-numbers.md section 1)
    "lenet5": (60_000, "LeCun et al. 1998 Sec. II.B: '60,000 trainable free parameters'"),
    "lenet5_modern": (61_706, "paper-numbers.md Sec. 1 [C]: full C3, Linear(84, 10)"),
    # AlexNet (section 2)
    "alexnet": (61_100_840, "torchvision AlexNet_Weights.IMAGENET1K_V1 meta num_params"),
    "alexnet_paper": (60_965_224, "paper-numbers.md Sec. 2 [C], OpenVINO CaffeNet card 60.965 M"),
    # ZFNet (section 3)
    "zfnet": (62_357_608, "paper-numbers.md Sec. 3 [C], Fig. 3 widths of arXiv:1311.2901v3"),
    # VGG (section 4; Table 2 of the paper in millions: A 133, A-LRN 133, B 133, C 134, D 138, E 144)
    "vgg11": (132_863_336, "torchvision VGG11_Weights meta num_params"),
    "vgg11_lrn": (132_863_336, "paper-numbers.md Sec. 4 [C] (A-LRN: LRN has no parameters)"),
    "vgg13": (133_047_848, "torchvision VGG13_Weights meta num_params"),
    "vgg16_c": (133_638_952, "paper-numbers.md Sec. 4 [C] (configuration C)"),
    "vgg16": (138_357_544, "torchvision VGG16_Weights meta num_params; Keras VGG16"),
    "vgg19": (143_667_240, "torchvision VGG19_Weights meta num_params; Keras VGG19"),
    "vgg11_bn": (132_868_840, "torchvision VGG11_BN_Weights meta num_params"),
    "vgg13_bn": (133_053_736, "torchvision VGG13_BN_Weights meta num_params"),
    "vgg16_bn": (138_365_992, "torchvision VGG16_BN_Weights meta num_params"),
    "vgg19_bn": (143_678_248, "torchvision VGG19_BN_Weights meta num_params"),
    # Network-in-Network (section 5)
    "nin_cifar10": (966_986, "paper-numbers.md Sec. 5 [C] (authors' Caffe CIFAR-10 model)"),
    "nin_imagenet": (7_595_176, "paper-numbers.md Sec. 5 [C] (Caffe Model Zoo NIN-ImageNet)"),
}

MACS: dict[str, tuple[float, float, str]] = {
    # LeNet-5: the paper's connection counts (Sec. II.B) less one bias connection per output unit:
    # C1 122,304 - 4,704 = 117,600; C3 151,600 - 1,600 = 150,000 (Table I's partial connections);
    # C5 48,120 - 120 = 48,000; F6 10,164 - 84 = 10,080. The RBF layer's 840 distance terms are
    # neither conv nor linear; the tolerance admits a counter that adds them.
    "lenet5": (325_680, 3e-3, "LeCun et al. 1998 Sec. II.B connection counts, minus biases"),
    "lenet5_modern": (416_520, 1e-6, "paper-numbers.md Sec. 1 [C]"),
    "alexnet": (0.714e9, 1e-3, "torchvision AlexNet_Weights meta _ops"),
    "alexnet_paper": (724.4e6, 1e-3, "paper-numbers.md Sec. 2 [C], 227x227"),
    "zfnet": (1.168e9, 1e-3, "paper-numbers.md Sec. 3 [C]"),
    "vgg11": (7.609e9, 1e-3, "torchvision VGG11_Weights meta _ops"),
    "vgg11_lrn": (7.609e9, 1e-3, "paper-numbers.md Sec. 4 [C]"),
    "vgg13": (11.308e9, 1e-3, "torchvision VGG13_Weights meta _ops"),
    "vgg16_c": (11.771e9, 1e-3, "paper-numbers.md Sec. 4 [C]"),
    "vgg16": (15.470e9, 1e-3, "torchvision VGG16_Weights meta _ops; ResNet paper quotes 15.3 G"),
    "vgg19": (19.632e9, 1e-3, "torchvision VGG19_Weights meta _ops; ResNet paper quotes 19.6 G"),
    "vgg11_bn": (7.609e9, 1e-3, "torchvision VGG11_BN_Weights meta _ops"),
    "vgg13_bn": (11.308e9, 1e-3, "torchvision VGG13_BN_Weights meta _ops"),
    "vgg16_bn": (15.470e9, 1e-3, "torchvision VGG16_BN_Weights meta _ops"),
    "vgg19_bn": (19.632e9, 1e-3, "torchvision VGG19_BN_Weights meta _ops"),
    "nin_cifar10": (222.5e6, 1e-3, "paper-numbers.md Sec. 5 [C], 32x32"),
    "nin_imagenet": (1.100e9, 1e-3, "paper-numbers.md Sec. 5 [C], 224x224"),
}
