"""Reference numbers for the Inception family (GoogLeNet, Inception-v4, Inception-ResNet-v2).

Sources: shared/reference/paper-numbers.md sections 6 and 7 (counts made there by building the
paper-faithful GoogLeNet and timm's models, conv + linear MACs with forward hooks), torchvision's
GoogLeNet_Weights.IMAGENET1K_V1 meta and timm's model cards. None of them is computed by convatlas.
"""

from __future__ import annotations

# name: (parameter count of the default build, source)
PARAMS: dict[str, tuple[int, str]] = {
    "googlenet_paper": (
        13_378_280,
        "paper-numbers.md s6: paper-faithful GoogLeNet with both aux heads (aux1 3,188,840 + aux2 3,190,888)",
    ),
    "googlenet": (
        13_004_888,
        "paper-numbers.md s6: torchvision googlenet() without weights, aux_logits=True (default)",
    ),
    "inception_v4": (42_679_816, "paper-numbers.md s7: timm inception_v4"),
    "inception_resnet_v2": (55_843_464, "paper-numbers.md s7: timm inception_resnet_v2"),
}

# Variants the family tests check too.
GOOGLENET_PAPER_NO_AUX_PARAMS = (6_998_552, "paper-numbers.md s6: paper-faithful GoogLeNet without aux heads")
GOOGLENET_TORCHVISION_NO_AUX_PARAMS = (6_624_904, "torchvision GoogLeNet_Weights.IMAGENET1K_V1 meta num_params")

# name: (conv + linear multiply-accumulates at the card's input size, relative tolerance, source).
# The auxiliary heads run only in training mode; the counts below are inference (eval) counts,
# and the tolerances also cover the training-mode count with the aux heads.
MACS: dict[str, tuple[float, float, str]] = {
    "googlenet_paper": (
        1.583e9,
        0.01,
        "paper-numbers.md s6: 1.583 G without aux (1.591 G with); the paper's budget is '1.5 billion multiply-adds'",
    ),
    "googlenet": (1.498e9, 0.01, "torchvision GoogLeNet_Weights.IMAGENET1K_V1 meta _ops = 1.498 GMACs"),
    "inception_v4": (12.25e9, 0.005, "paper-numbers.md s7: timm inception_v4 at 299 (timm card 12.3 GMACs)"),
    "inception_resnet_v2": (13.16e9, 0.005, "paper-numbers.md s7: timm inception_resnet_v2 at 299"),
}
