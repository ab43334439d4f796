"""One call per picture: ``visualize(source, method, out)``.

Loads the network (zoo name, run directory or module), picks the image, runs the method and
writes a labelled figure with the input and the result side by side. ``convatlas visualize`` is
this function on the command line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from convatlas.viz.attribution import gradcam, guided_backprop, predict, saliency
from convatlas.viz.deconvnet import deconvnet, projectable_outputs
from convatlas.viz.features import default_feature_layer, feature_maps
from convatlas.viz.filters import filter_grid, tile
from convatlas.viz.occlusion import occlusion
from convatlas.viz.patches import top_patches
from convatlas.viz.render import Panel, image_to_display, mark_outside, rescale, save_panels, signed_to_display
from convatlas.viz.source import InspectedModel, check_channel, load_image, load_model, sample_images

__all__ = ["METHODS", "Visualization", "visualize"]

METHODS = ("filters", "features", "deconvnet", "top-patches", "occlusion", "gradcam", "saliency", "guided-backprop")


@dataclass
class Visualization:
    """What :func:`visualize` wrote: the file, the method, the layer it looked at, the class it
    explained (if any) and a one-line summary of the numbers behind the picture."""

    path: Path
    method: str
    model: str
    layer: str | None
    target: str | None
    summary: str


def _grid_cols(count: int) -> int:
    return math.ceil(math.sqrt(count))


def _input_panel(inspected: InspectedModel, image: torch.Tensor, caption: str) -> Panel:
    probs = predict(inspected.model, inspected.preprocess(image))[0]
    top = int(probs.argmax())
    return Panel(f"input: {caption}\npredicted {inspected.class_name(top)!r} (p={float(probs[top]):.2f})",
                 image_to_display(image[0]))


def _deepest_projectable(inspected: InspectedModel, x: torch.Tensor) -> str:
    """The last layer the deconvnet can project whose maps, at the call it projects, are larger than 1x1."""
    outputs = projectable_outputs(inspected.model, x)
    names = [n for n, shape in outputs.items() if len(shape) == 4 and shape[2] * shape[3] > 1]
    if not names:
        raise ValueError(f"the deconvnet cannot project any layer of {inspected.name}; name one with layer=")
    return names[-1]


def _filters(inspected: InspectedModel, out: Path, layer: str | None, channel: int | None, **_: Any) -> Visualization:
    grid = filter_grid(inspected.model, layer, channel)
    o, i, kh, kw = grid.weight_shape
    per_input = not grid.colour and i > 1 and channel is None  # a row per filter, a column per input
    what = f"filter {grid.filters[0]}, per input channel" if channel is not None and i > 1 else (
        f"{len(grid.filters)} of {o} filters" + (" (RGB)" if grid.colour else "")
        + (f", {len(grid.inputs)} of {i} input channels" if per_input else ""))
    panel = Panel(f"{grid.layer}: {what}, {kh}x{kw} kernels", grid.image,
                  xlabel="input channel" if per_input else "", ylabel="filter" if per_input else "")
    save_panels([panel], out, f"{inspected.name}: learned filters of {grid.layer}",
                panel_size=6.0 if grid.rows * grid.cols > 36 else 4.0)
    return Visualization(out, "filters", inspected.name, grid.layer, None,
                         f"{grid.layer}: weight {tuple(grid.weight_shape)}, {len(grid.filters)} filters shown")


def _features(inspected: InspectedModel, out: Path, layer: str | None, channel: int | None, image: Any, index: int,
              **_: Any) -> Visualization:
    pixels, _, caption = load_image(inspected, image, index=index)
    x = inspected.preprocess(pixels)
    layer = layer or default_feature_layer(inspected.model, x)
    maps = feature_maps(inspected.model, x, layer)
    if channel is not None:
        channel = check_channel(channel, maps.shape[0], layer)
        shown = maps[channel].numpy()
        title = f"{layer}, channel {channel} ({maps.shape[1]}x{maps.shape[2]})"
    else:
        count = min(64, maps.shape[0])
        shown = tile([m.numpy() for m in maps[:count]], _grid_cols(count), background=float(maps.min()))
        title = f"{layer}: {count} of {maps.shape[0]} maps ({maps.shape[1]}x{maps.shape[2]}), row by row"
    panel = Panel(title, shown, cmap="viridis", vmin=float(maps.min()), vmax=float(maps.max()), colorbar="activation")
    save_panels([_input_panel(inspected, pixels, caption), panel], out, f"{inspected.name}: feature maps of {layer}")
    strongest = int(maps.flatten(1).amax(dim=1).argmax())
    return Visualization(out, "features", inspected.name, layer, None,
                         f"{layer}: {maps.shape[0]} maps of {maps.shape[1]}x{maps.shape[2]}; strongest channel {strongest}")


def _deconvnet(inspected: InspectedModel, out: Path, layer: str | None, channel: int | None, image: Any, index: int,
               top_k: int, keep: str, **_: Any) -> Visualization:
    pixels, _, caption = load_image(inspected, image, index=index)
    x = inspected.preprocess(pixels)
    layer = layer or _deepest_projectable(inspected, x)
    result = deconvnet(inspected.model, x, layer, channel, top_k=top_k, keep=keep)
    tiles = [signed_to_display(p) for p in result.projections]
    cols = _grid_cols(len(tiles))
    h, w = tiles[0].shape[:2]
    notes = [((k % cols) * (w + 1) + 1 + w / 2, (k // cols) * (h + 1) + 1 + h - 1,
              f"ch {c}: {a:.2f}") for k, (c, a) in enumerate(zip(result.channels, result.activations))]
    which = "its strongest unit" if keep == "max" else "its whole map"
    title = (f"channel {result.channels[0]}, {which}" if channel is not None
             else f"top {len(tiles)} channels, each {which}")
    panel = Panel(f"deconvnet projection from {layer}\n{title}", tile(tiles, cols), notes=notes)
    save_panels([_input_panel(inspected, pixels, caption), panel], out,
                f"{inspected.name}: ZFNet deconvnet from {layer}", panel_size=4.2)
    listed = ", ".join(f"{c} ({a:.3g})" for c, a in zip(result.channels, result.activations))
    return Visualization(out, "deconvnet", inspected.name, layer, None, f"{layer}: channels (activation) {listed}")


def _top_patches(inspected: InspectedModel, out: Path, layer: str | None, channel: int | None, top_k: int,
                 num_images: int, **_: Any) -> Visualization:
    images, source_indices, caption = sample_images(inspected, num_images)
    layer = layer or _deepest_projectable(inspected, inspected.preprocess(images[:1]))
    found = top_patches(inspected.model, images, layer, channel, preprocess=inspected.preprocess, top_k=top_k)
    cols = _grid_cols(len(found.image_indices))
    # Patch and projection are the same receptive-field box, drawn pixel for pixel (square pixels);
    # where the box reaches past the image's border both show OUTSIDE_COLOUR.
    inside = [found.inside(k) for k in range(len(found.image_indices))]
    h, w = found.patches.shape[2:]
    # Gaps in proportion to the tiles, so that they show at any receptive-field size: between
    # tiles, and under each row for the captions. Dark grey, since white strokes reach a patch's edge.
    layout = {"pad": max(1, round(h / 40)), "below": max(1, round(h / 5)), "background": 0.3}
    projections = tile([mark_outside(signed_to_display(p), m) for p, m in zip(found.projections, inside)], cols,
                       **layout)
    patches = tile([mark_outside(image_to_display(p), m) for p, m in zip(found.patches, inside)], cols, **layout)
    pad, below = layout["pad"], layout["below"]
    shown = [source_indices[i] for i in found.image_indices]  # index in the test split / crop list
    notes = [(pad + (k % cols) * (w + pad) + w / 2, pad + (k // cols) * (h + pad + below) + h, f"#{i}: {e:+.2f}")
             for k, (i, e) in enumerate(zip(shown, found.excess))]
    outside = "\nblue: outside the image" if not all(bool(m.all()) for m in inside) else ""
    panels = [Panel(f"deconvnet projections ({h}x{w} receptive field){outside}", projections),
              Panel(f"image patches from {caption}\nimage number: activation above the empty image's", patches,
                    notes=notes)]
    save_panels(panels, out, f"{inspected.name}: top {len(found.image_indices)} activations of {layer}, "
                f"channel {found.channel}", panel_size=4.2)
    return Visualization(out, "top-patches", inspected.name, layer, None,
                         f"{layer} channel {found.channel}: images {shown}, "
                         f"activations {[round(a, 3) for a in found.activations]}, "
                         f"above an empty image {[round(e, 3) for e in found.excess]}")


def _occlusion(inspected: InspectedModel, out: Path, image: Any, index: int, target: int | str | None,
               window: int | None, stride: int | None, **_: Any) -> Visualization:
    pixels, label, caption = load_image(inspected, image, index=index)
    target_index = inspected.class_index(target)
    if target_index is None:
        target_index = label  # the correct class when the image comes from the dataset
    result = occlusion(inspected.model, inspected.preprocess(pixels), target_index, window=window, stride=stride)
    name = inspected.class_name(result.target)
    half = result.window / 2
    extent = (result.cols[0] + half - result.stride / 2 - 0.5, result.cols[-1] + half + result.stride / 2 - 0.5,
              result.rows[-1] + half + result.stride / 2 - 0.5, result.rows[0] + half - result.stride / 2 - 0.5)
    display = image_to_display(pixels[0])
    panel = Panel(f"p({name!r}) with a grey {result.window}x{result.window} square centred here\n"
                  f"(stride {result.stride}; unoccluded p={result.base_probability:.2f})",
                  display, overlay=result.probability.numpy(), overlay_extent=extent, overlay_alpha=0.65,
                  overlay_range=(0.0, 1.0), colorbar=f"p({name})")
    save_panels([_input_panel(inspected, pixels, caption), panel], out,
                f"{inspected.name}: occlusion sensitivity (Zeiler & Fergus)")
    low = int(result.probability.argmin())
    r, c = divmod(low, len(result.cols))
    return Visualization(out, "occlusion", inspected.name, None, name,
                         f"p({name}) = {result.base_probability:.3f} unoccluded; lowest "
                         f"{float(result.probability.min()):.3f} with the square at row {result.rows[r]}, "
                         f"column {result.cols[c]}")


def _gradcam(inspected: InspectedModel, out: Path, layer: str | None, image: Any, index: int,
             target: int | str | None, **_: Any) -> Visualization:
    pixels, _, caption = load_image(inspected, image, index=index)
    result = gradcam(inspected.model, inspected.preprocess(pixels), layer, inspected.class_index(target))
    name = inspected.class_name(result.target)
    h, w = result.low_res.shape
    panel = Panel(f"Grad-CAM of {name!r} at {result.layer} ({h}x{w})", image_to_display(pixels[0]),
                  overlay=rescale(result.heatmap), overlay_range=(0.0, 1.0), colorbar="Grad-CAM (scaled to max)")
    save_panels([_input_panel(inspected, pixels, caption), panel], out, f"{inspected.name}: Grad-CAM")
    return Visualization(out, "gradcam", inspected.name, result.layer, name,
                         f"score {result.score:.3f}; peak at (row, col) {divmod(int(result.low_res.argmax()), w)} "
                         f"of the {h}x{w} map")


def _saliency(inspected: InspectedModel, out: Path, image: Any, index: int, target: int | str | None,
              guided: bool = False, **_: Any) -> Visualization:
    pixels, _, caption = load_image(inspected, image, index=index)
    explain = guided_backprop if guided else saliency
    result = explain(inspected.model, inspected.preprocess(pixels), inspected.class_index(target))
    name = inspected.class_name(result.target)
    if guided:
        panel = Panel(f"guided backpropagation of {name!r}\n(grey = 0)", signed_to_display(result.gradient))
        method, title = "guided-backprop", "guided backpropagation (Springenberg et al.)"
    else:
        panel = Panel(f"saliency of {name!r}: max over channels of |dS/dI|", rescale(result.saliency),
                      cmap="hot", vmin=0.0, vmax=1.0, colorbar="scaled to max")
        method, title = "saliency", "saliency (Simonyan et al.)"
    save_panels([_input_panel(inspected, pixels, caption), panel], out, f"{inspected.name}: {title}")
    return Visualization(out, method, inspected.name, None, name,
                         f"score {result.score:.3f}; largest |gradient| {float(result.saliency.max()):.3g}")


def visualize(
    source: str | Path | torch.nn.Module | InspectedModel,
    method: str,
    out: str | Path,
    *,
    weights: Any = None,
    layer: str | None = None,
    channel: int | None = None,
    image: Any = None,
    index: int = 0,
    target: int | str | None = None,
    top_k: int = 9,
    keep: str = "max",
    window: int | None = None,
    stride: int | None = None,
    num_images: int = 500,
) -> Visualization:
    """Write a labelled figure of ``method`` applied to ``source``; return what was written.

    ``method`` is one of :data:`METHODS`. ``source`` is a zoo name (with optional torchvision
    ``weights``), a run directory or a module. ``image`` is a file (default: a bundled picture,
    for a run its dataset's test image ``index``),
    ``layer`` a module name (default per method), ``channel`` a feature map, ``target`` a class
    index or name (default: the predicted class; for occlusion the correct class when known).
    ``top_k`` projections / patches (deconvnet, top-patches), ``keep`` the deconvnet's kept
    activations, ``window`` / ``stride`` the occluding square, ``num_images`` the images searched
    by top-patches.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    out = Path(out)
    if out.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise ValueError(f"output file must end in .png, .svg or .pdf; got {str(out)!r}")
    inspected = load_model(source, weights)
    options = dict(layer=layer, channel=channel, image=image, index=index, target=target, top_k=top_k, keep=keep,
                   window=window, stride=stride, num_images=num_images)
    if method in ("saliency", "guided-backprop"):
        return _saliency(inspected, out, guided=method == "guided-backprop", **options)
    draw = {"filters": _filters, "features": _features, "deconvnet": _deconvnet, "top-patches": _top_patches,
            "occlusion": _occlusion, "gradcam": _gradcam}[method]
    return draw(inspected, out, **options)
