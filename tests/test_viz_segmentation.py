"""Pictures of segmentations: colours, overlays, per-class IoU bars, and the upsampling figure's
arithmetic (the checkerboard of a 3x3 stride-2 transposed convolution)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convatlas.viz.segmentation import class_colours, colour_mask, overlay, plot_class_iou, upsampling_panels


def test_class_colours_are_distinct_with_a_black_background():
    for n in (2, 11, 21, 40):
        colours = class_colours(n)
        assert colours.shape == (n, 3) and colours.dtype == np.uint8
        assert tuple(colours[0]) == (0, 0, 0)
        assert len({tuple(c) for c in colours}) == n


def test_overlay_blends_each_class_in_its_colour_and_leaves_the_background():
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (1, 12, 10), dtype=torch.uint8, generator=g)
    mask = torch.zeros(12, 10, dtype=torch.long)
    mask[2:5, 3:7] = 4
    mask[8:, :2] = 9
    out = overlay(image, mask, 11, alpha=0.5)
    grey = image[0].float().numpy() / 255
    background = (mask == 0).numpy()
    assert np.allclose(out[background], np.repeat(grey[background][:, None], 3, axis=1), atol=1 / 255)
    for c in (4, 9):
        where = (mask == c).numpy()
        expected = 0.5 * np.repeat(grey[where][:, None], 3, axis=1) + 0.5 * class_colours(11)[c] / 255
        assert np.allclose(out[where], expected, atol=1.5 / 255)
    with pytest.raises(ValueError, match="class map is"):
        overlay(image, mask[:5], 11)


def test_colour_mask_paints_ignored_pixels_white():
    mask = torch.tensor([[0, 1], [255, 2]])
    colours = colour_mask(mask, 3)
    assert np.allclose(colours[1, 0], 1.0) and np.allclose(colours[0, 0], 0.0)
    assert np.allclose(colours[0, 1], class_colours(3)[1] / 255)


def test_per_class_iou_bars_are_written_with_missing_classes(tmp_path):
    path = plot_class_iou({"background": 0.99, "0": 0.7, "1": float("nan")}, tmp_path / "iou.png")
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_upsampling_figure_shows_the_checkerboard_only_where_kernels_overlap_unevenly():
    """On a constant map, a 3x3 stride-2 transposed convolution of ones gives 4 / 2 / 1 times the
    value in a period-2 pattern (output pixels receive 4, 2 or 1 kernel taps); a 2x2 stride-2 one (one tap each)
    tiles the output exactly (constant); nearest neighbour and bilinear stay constant; bed of nails
    keeps a quarter of the pixels."""
    panels = {p.title: p.image for p in upsampling_panels(torch.full((16, 16), 3.0))}
    checker = panels["transposed 3x3 / 2, ones: checkerboard"][2:-2, 2:-2]
    assert set(np.unique(checker)) == {3.0, 6.0, 12.0}
    assert np.all(checker[0::2, 0::2] == checker[0, 0]) and checker[0, 0] != checker[0, 1]
    assert np.all(panels["transposed 2x2 / 2, ones"] == 3.0)  # one tap per output pixel
    assert np.all(panels["nearest neighbour"] == 3.0) and np.allclose(panels["bilinear"], 3.0)
    assert (panels["bed of nails"] != 0).mean() == 0.25
    assert panels["max unpooling (switches)"].shape == (16, 16)
