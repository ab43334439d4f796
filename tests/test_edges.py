"""Edge filters as a convolution layer: Ng's worked example, equality with scipy/scikit-image
on a real photo, per-channel RGB filtering as the notes describe, and the picture the CLI writes."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import skimage.data
import skimage.filters
import torch
from PIL import Image

from convatlas.cli import main
from convatlas.edges import EDGE_KERNELS, EdgeConv2d, detect_edges, edge_maps, load_image


def test_ng_vertical_edge_example_6x6():
    """Coursera CNN week 1: a 6×6 image, 10 on the left half and 0 on the right, convolved
    (valid) with the vertical filter gives a 4×4 map whose middle columns are 30."""
    x = torch.tensor([[10.0] * 3 + [0.0] * 3] * 6, dtype=torch.float64).view(1, 1, 6, 6)
    layer = EdgeConv2d(1, ["vertical"], padding=0).double()
    expected = torch.tensor([[0.0, 30.0, 30.0, 0.0]] * 4, dtype=torch.float64)
    torch.testing.assert_close(layer(x)[0, 0], expected, rtol=0, atol=0)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage.data.astronaut().astype(np.float64) / 255.0


def test_edge_layer_equals_scipy_correlate_per_channel_on_a_photo(astronaut):
    maps = edge_maps(astronaut)
    assert set(maps) == set(EDGE_KERNELS)
    for name, kernel in EDGE_KERNELS.items():
        for c in range(3):
            expected = ndi.correlate(astronaut[:, :, c], np.array(kernel, dtype=float), mode="constant", cval=0.0)
            np.testing.assert_allclose(maps[name][:, :, c], expected, rtol=0, atol=1e-12)


def test_edge_layer_equals_scikit_image_filters_up_to_scale_and_sign(astronaut):
    """scikit-image convolves (flips the kernel) and normalises: Sobel by 1/4, Prewitt by 1/3;
    its Laplacian is the negative of ours. Compared away from the border (it reflects there)."""
    gray = astronaut.mean(axis=2)
    maps = {k: v[:, :, 0] for k, v in edge_maps(gray[:, :, None]).items()}
    inner = (slice(1, -1), slice(1, -1))
    for ours, theirs, factor in (
        ("sobel_vertical", skimage.filters.sobel_v(gray), -4),
        ("sobel_horizontal", skimage.filters.sobel_h(gray), -4),
        ("vertical", skimage.filters.prewitt_v(gray), -3),
        ("horizontal", skimage.filters.prewitt_h(gray), -3),
        ("laplacian", skimage.filters.laplace(gray, ksize=3), -1),
    ):
        np.testing.assert_allclose(maps[ours][inner], factor * theirs[inner], rtol=0, atol=1e-12)


def test_rgb_filters_hold_the_kernel_on_one_channel_and_zeros_on_the_others():
    """Notes (000): for R, apply the vertical filter to R and fill the G and B filters with 0."""
    layer = EdgeConv2d(3, ["vertical", "laplacian"])
    kernel = torch.tensor(EDGE_KERNELS["vertical"], dtype=layer.weight.dtype)
    torch.testing.assert_close(layer.weight[0, 0], kernel)                 # vertical on R
    assert torch.count_nonzero(layer.weight[0, 1:]) == 0                   # zeros on G, B
    assert not layer.weight.requires_grad
    red_only = torch.zeros(1, 3, 16, 16)
    red_only[:, 0, :, 8:] = 1.0
    maps = layer.split(layer(red_only))
    assert maps["vertical"][:, 0].abs().sum() > 0
    assert maps["vertical"][:, 1:].abs().sum() == 0 and maps["laplacian"][:, 1:].abs().sum() == 0


def _picture_is_not_trivial(path) -> np.ndarray:
    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"))
    assert array.shape[0] > 400 and array.shape[1] > 600
    assert array.std() > 20           # not a blank canvas
    assert len(np.unique(array.reshape(-1, 3), axis=0)) > 100   # a picture, not a few flat colours
    return array


def test_cli_writes_a_labelled_png_with_the_bundled_photo(tmp_path, capsys):
    out = tmp_path / "pics" / "edges.png"
    assert main(["edges", "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    _picture_is_not_trivial(out)
    assert [p.name for p in out.parent.iterdir()] == ["edges.png"]  # no temporary file left behind


def test_cli_with_an_image_file_and_gray(tmp_path):
    source = tmp_path / "camera.png"
    Image.fromarray(skimage.data.camera()).save(source)
    result = detect_edges(source, tmp_path / "out.png", ["sobel_vertical", "laplacian"], gray=True)
    assert result.image_shape == (512, 512, 1)
    assert result.filters == ("sobel_vertical", "laplacian")
    assert all(v > 0 for v in result.mean_abs_response.values())
    _picture_is_not_trivial(result.path)


def test_bad_inputs_leave_existing_output_untouched(tmp_path, capsys):
    out = tmp_path / "edges.png"
    out.write_bytes(b"previous picture")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is not an image")
    assert main(["edges", str(broken), "-o", str(out)]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["edges", str(tmp_path / "missing.png"), "-o", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["edges", "-o", str(out), "--filters", "sobel,vertical"]) == 2
    assert "unknown edge filter 'sobel'" in capsys.readouterr().err
    assert main(["edges", "-o", str(tmp_path / "edges.jpg")]) == 2
    assert out.read_bytes() == b"previous picture"


def test_load_image_sample_names():
    assert load_image("coffee").shape == (400, 600, 3)
    assert load_image("camera", gray=True).shape == (512, 512, 1)
