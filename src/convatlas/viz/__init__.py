"""Look inside a network: filters, feature maps, ZFNet's deconvnet and occlusion, Grad-CAM, saliency.

Zeiler & Fergus (2013, "Visualizing and Understanding Convolutional Networks", arXiv:1311.2901)
made ZFNet's name not with its architecture but by showing what each layer had learned -- and by
fixing AlexNet's first layer (11x11 stride 4 -> 7x7 stride 2) after seeing aliasing in its
filters. This package lets you do the same with any network of the zoo, trained by
``convatlas train`` or with torchvision's weights::

    from convatlas import viz
    viz.visualize("zfnet", "filters", "filters.png")
    viz.visualize("runs/lenet5", "occlusion", "occlusion.png")

    inspected = viz.load_model("runs/lenet5")
    image, label, _ = viz.load_image(inspected)            # the dataset's first test image
    x = inspected.preprocess(image)
    viz.deconvnet(inspected.model, x, "c3", channel=5).projections   # LeNet-5's second convolution

Every method is also a plain function on ``(model, x)``: :func:`filter_grid`,
:func:`feature_maps`, :func:`deconvnet`, :func:`top_patches`, :func:`occlusion`,
:func:`gradcam`, :func:`saliency`, :func:`guided_backprop`.
"""

from convatlas.viz.attribution import GradCamResult, SaliencyResult, gradcam, guided_backprop, predict, saliency
from convatlas.viz.deconvnet import (
    DeconvnetError,
    DeconvnetResult,
    deconvnet,
    projectable_layers,
    receptive_box,
    trace_chain,
)
from convatlas.viz.features import feature_maps, spatial_layer_names
from convatlas.viz.figures import METHODS, Visualization, visualize
from convatlas.viz.filters import FilterGrid, filter_grid
from convatlas.viz.occlusion import OcclusionResult, occlusion
from convatlas.viz.patches import TopPatches, top_patches
from convatlas.viz.source import InspectedModel, get_layer, layer_names, load_image, load_model, sample_images

__all__ = [
    "METHODS",
    "DeconvnetError",
    "DeconvnetResult",
    "FilterGrid",
    "GradCamResult",
    "InspectedModel",
    "OcclusionResult",
    "SaliencyResult",
    "TopPatches",
    "Visualization",
    "deconvnet",
    "feature_maps",
    "filter_grid",
    "get_layer",
    "gradcam",
    "guided_backprop",
    "layer_names",
    "load_image",
    "load_model",
    "occlusion",
    "predict",
    "projectable_layers",
    "receptive_box",
    "saliency",
    "sample_images",
    "spatial_layer_names",
    "top_patches",
    "trace_chain",
    "visualize",
]
