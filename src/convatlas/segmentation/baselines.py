"""The two naive ways to label every pixel that the notes rule out before FCN.

Both come from the notes' path to fully convolutional networks (CS231n 2017, Lecture 11):

* **Sliding window** (:class:`SlidingWindow`, ``sliding_window``): cut out the patch centred on
  every pixel and let an ordinary classifier label it (Ciresan et al. 2012 segmented neuronal
  membranes this way). It works, but an H x W image costs H x W classifier evaluations, and
  neighbouring patches, which overlap almost entirely, share no computation.
* **Fully convolutional at full resolution** (:class:`FullResolutionFCN`, ``fullres_fcn``): one
  network of 3x3 convolutions at stride 1 that labels all pixels at once. It shares the
  computation, but every layer keeps a full-resolution map of all its channels, so activation
  memory and multiply-accumulates grow as H x W x channels x layers, and its receptive field only
  grows by 2 pixels per layer. Downsampling and upsampling inside the network (FCN, SegNet,
  U-Net, ...) is the way out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from convatlas._checks import one_of, positive_int
from convatlas.layers.basic import ConvNormAct
from convatlas.layers.init import init_weights, kaiming_normal
from convatlas.models.features import FeatureInfo
from convatlas.registry import ModelCard, Published, model_card, register_model
from convatlas.segmentation._heads import classification_model

__all__ = ["SlidingWindow", "FullResolutionFCN", "PADDINGS", "sliding_window", "fullres_fcn"]

# How the border is padded so that every pixel has a whole patch around it (F.pad modes).
PADDINGS = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate"}


class SlidingWindow(nn.Module):
    """Label every pixel with a classifier run on the patch centred on it.

    ``classifier``: the name of a registered classification network, built for ``num_classes``;
    the patch is its card's input size (32x32 for ``lenet5``) and the image must have its
    channels. The patch of pixel ``(i, j)`` is rows ``i - ph // 2 .. i - ph // 2 + ph - 1`` (and
    likewise for columns) of the image padded by ``padding``: ``"zeros"`` (default; the digit
    scenes' background is black), ``"reflect"`` or ``"replicate"``.

    The patches are cut with ``F.unfold`` a strip of rows at a time, at most ``chunk_size``
    patches (or one row, if the image is wider) per classifier call, so memory stays bounded
    whatever the image size. The cost is :meth:`evaluations_per_image`: one classifier pass per
    pixel.
    """

    def __init__(
        self, classifier: str = "lenet5", *, num_classes: int = 11, padding: str = "zeros", chunk_size: int = 1024
    ) -> None:
        super().__init__()
        positive_int("num_classes", num_classes)
        self.padding = one_of("padding", padding, PADDINGS)
        self.chunk_size = positive_int("chunk_size", chunk_size)
        self.classifier_name = classifier
        key, self.classifier = classification_model(classifier, "classifier", num_classes)
        channels, height, width = model_card(key).input_size
        self.in_channels = channels
        self.patch_size = (height, width)
        self.scores = nn.Identity()  # the assembled score map, the one map of the image it has
        self.feature_info = [FeatureInfo("scores", "scores", num_classes, 1)]

    def evaluations_per_image(self, height: int, width: int) -> int:
        """Classifier passes to label an ``height`` x ``width`` image: one per pixel."""
        return positive_int("height", height) * positive_int("width", width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"sliding window over {self.classifier_name} needs (N, {self.in_channels}, H, W) images, "
                f"got shape {tuple(x.shape)}"
            )
        n, c, height, width = x.shape
        ph, pw = self.patch_size
        top, left = ph // 2, pw // 2
        padded = F.pad(x, (left, pw - 1 - left, top, ph - 1 - top), mode=PADDINGS[self.padding])
        rows = max(1, self.chunk_size // width)
        strips = []
        for start in range(0, height, rows):
            stop = min(height, start + rows)
            columns = F.unfold(padded[:, :, start:stop + ph - 1], (ph, pw))  # (N, C*ph*pw, rows*W)
            patches = columns.transpose(1, 2).reshape(-1, c, ph, pw)  # pixel order: row-major
            logits = self.classifier(patches)
            if isinstance(logits, (tuple, list)):  # a classifier with auxiliary heads, in training
                logits = logits[0]
            strips.append(logits.reshape(n, stop - start, width, -1).permute(0, 3, 1, 2))
        return self.scores(torch.cat(strips, dim=2))

    def extra_repr(self) -> str:
        return f"classifier={self.classifier_name!r}, patch={self.patch_size}, padding={self.padding!r}"


class FullResolutionFCN(nn.Module):
    """``depth`` 3x3 conv-BN-ReLU layers of ``width`` channels at stride 1 and padding 1, then a
    1x1 ``score`` convolution: every layer works on the full H x W image. Its receptive field is
    ``2 depth + 1`` pixels (17 for 8 layers)."""

    def __init__(self, *, num_classes: int = 11, in_channels: int = 1, depth: int = 8, width: int = 64) -> None:
        super().__init__()
        positive_int("num_classes", num_classes)
        positive_int("in_channels", in_channels)
        positive_int("depth", depth)
        positive_int("width", width)
        self.features = nn.Sequential(*[ConvNormAct(in_channels if i == 0 else width, width, 3) for i in range(depth)])
        self.score = nn.Conv2d(width, num_classes, kernel_size=1)
        self.feature_info = [FeatureInfo("features", "features", width, 1)]
        init_weights(self, conv=kaiming_normal(mode="fan_out", nonlinearity="relu"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score(self.features(x))


# The paper cited on both cards is the one that replaced these baselines: FCN (Long, Shelhamer,
# Darrell 2015) shows in Section 3.1 that a convnet run on every patch is the computation of one
# fully convolutional pass, and weighs in Section 3.2 the cost of keeping the resolution.
_NOTES_CARD = dict(
    family="segmentation-baseline",
    paper="Fully Convolutional Networks for Semantic Segmentation",
    authors="Long, Shelhamer, Darrell",
    year=2015,
    arxiv="1411.4038",
    input_size=(1, 64, 64),
    dataset="digit-scenes",
    recipe="digit_scenes",
    num_classes=11,
    task="segmentation",
)


@register_model(ModelCard(
    name="sliding_window",
    idea=(
        "Classify the patch centred on every pixel with an ordinary CNN: the naive segmentation "
        "baseline of the notes. It needs one classifier pass per pixel, and overlapping patches "
        "share no computation."
    ),
    params=Published(60_000, "the wrapped lenet5's count (its Sec. II.B: 60,000; the RBF codes are fixed)"),
    notes=(
        "The notes' first baseline (CS231n 2017, Lecture 11), as Ciresan, Giusti, Gambardella, "
        "Schmidhuber (NIPS 2012) segmented neuronal membranes; the card cites FCN, which replaced it "
        "(Section 3.1: one fully convolutional pass computes every patch's output at once). "
        "classifier='lenet5' by default (32x32 patches); any registered classification network "
        "works. Measured here (reference/segmentation-detection.md): a 0.2M CNN on 28x28 patches "
        "reached mIoU 0.59 at 581 ms per 64x64 scene; a small U-Net 0.82 at 7 ms."
    ),
    **_NOTES_CARD,
))
def sliding_window(
    *, num_classes: int = 11, classifier: str = "lenet5", padding: str = "zeros", chunk_size: int = 1024
) -> SlidingWindow:
    """The sliding-window patch classifier (as in Ciresan, Giusti, Gambardella, Schmidhuber 2012,
    NIPS; the notes' first, naive segmentation network): the classifier labels the patch centred
    on each pixel.

    ``classifier``: name of a registered classification network (its input size is the patch
    size); ``padding``: ``"zeros"``, ``"reflect"`` or ``"replicate"`` at the image border;
    ``chunk_size``: patches per classifier call (memory, not results).
    """
    return SlidingWindow(classifier, num_classes=num_classes, padding=padding, chunk_size=chunk_size)


@register_model(ModelCard(
    name="fullres_fcn",
    idea=(
        "Label all pixels at once with convolutions at the input resolution: no downsampling, so "
        "the computation is shared, but every layer holds an H x W map of all its channels - too "
        "heavy, the notes' argument for downsampling and upsampling inside the network."
    ),
    params=Published(260_363, (
        "exact count here: 3x3 convs 1*9*64 + 7*64*9*64 = 258,624 (no bias, BN follows) + BN 8*2*64 "
        "= 1,024 + score 64*11+11 = 715")),
    notes=(
        "The notes' 'too heavy' baseline (CS231n 2017, Lecture 11); the card cites FCN, whose Section "
        "3.2 weighs it: less subsampling lets filters see finer information, but with smaller "
        "receptive fields and longer to compute. Compare its activation memory with fcn8s_mini's "
        "(convatlas summary) at the same input and a similar parameter count."
    ),
    **_NOTES_CARD,
))
def fullres_fcn(*, num_classes: int = 11, in_channels: int = 1, depth: int = 8, width: int = 64) -> FullResolutionFCN:
    """A fully convolutional network at full resolution (the notes' baseline after CS231n 2017,
    Lecture 11): ``depth`` 3x3 conv-BN-ReLU layers of ``width`` channels at stride 1, then a 1x1
    class score. ``in_channels``: channels of the input images."""
    return FullResolutionFCN(num_classes=num_classes, in_channels=in_channels, depth=depth, width=width)
