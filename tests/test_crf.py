"""The dense CRF (convatlas.segmentation.crf): the formula, the lattice, pydensecrf, and what users get wrong.

Tolerances, as measured on the images below (float32):

- ``method="pydensecrf"`` (both kernels on the permutohedral lattice) reproduces pydensecrf2's
  ``DenseCRF2D`` to < 4e-4 in probability (typically 1e-5) with identical argmax labels (at
  512x512, 21 labels: mean |dQ| 1e-7, max 0.016 at one near-tie pixel, every label the same);
  bilateral-only, ``method="permutohedral"`` does too (its bilateral path is the same lattice).
- ``method="permutohedral"`` (the default: exact separable smoothness kernel) differs from
  pydensecrf only by pydensecrf's lattice approximation of the smoothness kernel: mean |dQ| <
  2e-3, >= 99.5% of the labels agree (a few pixels near ties flip, so the largest |dQ| is large).
- ``method="exact"`` (the O(N^2) sums) differs from both by the lattice's approximation of the 5-D
  bilateral Gaussian: mean |dQ| 0.003 - 0.02, 94 - 99.9% of the labels agree.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from convatlas.segmentation import crf as crf_module
from convatlas.segmentation.crf import (
    DEEPLAB_V1, DEEPLAB_V2, DenseCRF, PermutohedralLattice, bilateral_features, dense_crf, dense_crf_batch,
    exact_gaussian_filter, position_features, separable_gaussian_filter,
)

PARAMS = ["iterations", "pos_w", "pos_xy_std", "bi_w", "bi_xy_std", "bi_rgb_std"]
CONFIGS = {  # (iterations, pos_w, pos_xy_std, bi_w, bi_xy_std, bi_rgb_std)
    "deeplab_v2": (10, 3.0, 1.0, 4.0, 67.0, 3.0),
    "deeplab_v1": (10, 3.0, 3.0, 4.0, 49.0, 5.0),
    "pydensecrf_readme": (5, 3.0, 3.0, 10.0, 80.0, 13.0),
}


def _kwargs(config: tuple) -> dict:
    return dict(zip(PARAMS, config))


def _photo_crop() -> np.ndarray:
    """A real 24x32 RGB patch: the cat's face and the background in scikit-image's chelsea."""
    from skimage import data

    return np.ascontiguousarray(data.chelsea()[100:124, 150:182])


def _colour_unaries(image: np.ndarray, labels: int, seed: int = 0) -> np.ndarray:
    """Probabilities ``(L, H, W)`` that follow colour clusters, with noise: a plausible network output."""
    rng = np.random.RandomState(seed)
    h, w, _ = image.shape
    flat = image.reshape(-1, 3).astype(np.float64)
    centres = flat[rng.choice(h * w, labels, replace=False)]
    dist = ((flat[:, None, :] - centres[None]) ** 2).sum(-1).T.reshape(labels, h, w)
    logits = -3 * dist / dist.mean() + 1.5 * rng.randn(labels, h, w)
    p = np.exp(logits - logits.max(0))
    return (p / p.sum(0)).astype(np.float32)


def _naive_mean_field(image: np.ndarray, prob: np.ndarray, iterations: int, pos_w: float, pos_xy_std: float,
                      bi_w: float, bi_xy_std: float, bi_rgb_std: float, mu: np.ndarray | None = None) -> np.ndarray:
    """Algorithm 1 written out pixel by pixel, in float64, Potts as mu = 1 - I (the paper's form), the
    kernels normalised as D^-1/2 K D^-1/2 with their self-loops (pydensecrf's form)."""
    labels, h, w = prob.shape
    n = h * w
    unary = -np.log(np.maximum(prob.reshape(labels, n).astype(np.float64), 1e-8))
    mu = 1.0 - np.eye(labels) if mu is None else 0.5 * (mu + mu.T)
    pos = [(x, y) for y in range(h) for x in range(w)]
    rgb = image.reshape(n, 3).astype(np.float64)
    k_smooth, k_app = np.zeros((n, n)), np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            dp2 = (pos[i][0] - pos[j][0]) ** 2 + (pos[i][1] - pos[j][1]) ** 2
            k_smooth[i, j] = math.exp(-dp2 / (2 * pos_xy_std ** 2))
            k_app[i, j] = math.exp(-dp2 / (2 * bi_xy_std ** 2) - ((rgb[i] - rgb[j]) ** 2).sum() / (2 * bi_rgb_std ** 2))
    kernels = []
    for weight, k in ((pos_w, k_smooth), (bi_w, k_app)):
        norm = 1 / np.sqrt(k.sum(1))
        kernels.append(weight * norm[:, None] * k * norm[None, :])
    q = np.exp(-unary)
    q /= q.sum(0)
    for _ in range(iterations):
        message = sum(q @ k.T for k in kernels)  # (L, N): sum_m w_m sum_j k_m(i, j) Q_j(l)
        energy = -unary - mu @ message
        q = np.exp(energy - energy.max(0))
        q /= q.sum(0)
    return q.reshape(labels, h, w)


# --------------------------------------------------------------------------------------------
# the formula, and the filters against each other


@pytest.mark.parametrize("config", ["deeplab_v2", "pydensecrf_readme"])
def test_exact_method_is_algorithm_1(config):
    rng = np.random.RandomState(1)
    image = rng.randint(0, 256, (5, 6, 3)).astype(np.uint8)
    prob = rng.dirichlet(np.ones(3), size=(5, 6)).transpose(2, 0, 1).astype(np.float32)
    kw = _kwargs(CONFIGS[config])
    expected = _naive_mean_field(image, prob, **kw)
    got = dense_crf(image, prob, method="exact", **kw)
    assert got.shape == (3, 5, 6) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected, atol=2e-5)
    # float64 in, float64 all the way
    got64 = dense_crf(image, torch.from_numpy(prob).double(), method="exact", **kw)
    assert got64.dtype == torch.float64
    np.testing.assert_allclose(got64.numpy(), expected, atol=1e-6)


def test_matrix_compatibility_is_the_papers_mu():
    rng = np.random.RandomState(2)
    image = rng.randint(0, 256, (4, 5, 3)).astype(np.uint8)
    prob = rng.dirichlet(np.ones(3), size=(4, 5)).transpose(2, 0, 1).astype(np.float32)
    mu = np.array([[0.0, 1.0, 2.5], [0.5, 0.0, 1.0], [2.0, 1.5, 0.0]], np.float32)  # not symmetric: symmetrised
    kw = _kwargs(CONFIGS["pydensecrf_readme"])
    np.testing.assert_allclose(dense_crf(image, prob, compatibility=mu, method="exact", **kw).numpy(),
                               _naive_mean_field(image, prob, mu=mu, **kw), atol=2e-5)
    # Potts written as a matrix is Potts
    potts = 1 - np.eye(3, dtype=np.float32)
    np.testing.assert_allclose(dense_crf(image, prob, compatibility=potts, **kw).numpy(),
                               dense_crf(image, prob, **kw).numpy(), atol=1e-5)


def test_separable_smoothness_filter_is_the_exact_sum():
    values = torch.rand(4, 20, 30, dtype=torch.float64)
    for std in (1.0, 3.0):
        feats = position_features(20, 30, std, dtype=torch.float64)
        exact = exact_gaussian_filter(feats, values.reshape(4, -1).t()).t().reshape(4, 20, 30)
        # taps to the image's edge: exact; the default 4 standard deviations: within exp(-8) per tap
        np.testing.assert_allclose(separable_gaussian_filter(values, std, truncate=math.inf).numpy(), exact.numpy(),
                                   rtol=1e-10)
        np.testing.assert_allclose(separable_gaussian_filter(values, std).numpy(), exact.numpy(), rtol=2e-3)


def test_exact_filter_chunks_agree():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(300, 5, dtype=torch.float64, generator=g)
    values = torch.randn(300, 3, dtype=torch.float64, generator=g)
    whole = exact_gaussian_filter(feats, values)
    chunked = exact_gaussian_filter(feats, values, chunk_elements=1000)
    # chunks sum in another order: equal to rounding (an output near 0 can differ by 1e-15 absolute)
    np.testing.assert_allclose(chunked.numpy(), whole.numpy(), rtol=1e-12, atol=1e-12)
    direct = torch.exp(-0.5 * ((feats[:, None, :] - feats[None, :, :]) ** 2).sum(-1)) @ values
    np.testing.assert_allclose(whole.numpy(), direct.numpy(), rtol=1e-9, atol=1e-9)


def test_lattice_approximates_the_gaussian_where_points_are_dense():
    """On a dense 2-D cloud the lattice's normalised filter is within a few per cent of the exact one;
    its raw response is the Gaussian up to a constant factor (which the normalisation cancels)."""
    feats = position_features(40, 50, 2.0)
    smooth = torch.from_numpy(np.random.RandomState(0).rand(3, 40, 50)).float()
    smooth = separable_gaussian_filter(smooth, 3.0).reshape(3, -1).t()  # a smooth field to filter
    lattice = PermutohedralLattice(feats)
    ones = torch.ones(feats.shape[0], 1)

    def normalised(filter_):
        norm = filter_(ones).rsqrt()
        return norm * filter_(norm * smooth)

    exact = normalised(lambda v: exact_gaussian_filter(feats, v))
    approx = normalised(lattice.filter)
    assert float(((approx - exact).abs() / exact.abs()).max()) < 0.05
    ratio = lattice.filter(ones) / exact_gaussian_filter(feats, ones)
    interior = ratio.reshape(40, 50)[10:-10, 10:-10]
    assert float(interior.std() / interior.mean()) < 0.01  # one constant factor inside the cloud


def test_lattice_keys_too_wide_for_one_integer(monkeypatch):
    feats = bilateral_features(torch.from_numpy(_photo_crop()).permute(2, 0, 1), 5.0, 4.0)
    values = torch.rand(feats.shape[0], 3)
    packed = PermutohedralLattice(feats)
    monkeypatch.setattr(crf_module, "_CODE_LIMIT", 0.0)  # force the row-sorting path
    rows = PermutohedralLattice(feats)
    assert rows.num_vertices == packed.num_vertices
    np.testing.assert_allclose(rows.filter(values).numpy(), packed.filter(values).numpy(), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------
# behaviour


@pytest.mark.parametrize("method", ["permutohedral", "pydensecrf", "exact"])
def test_without_pairwise_terms_the_crf_returns_softmax_of_the_negative_unary(method):
    rng = np.random.RandomState(3)
    image = rng.randint(0, 256, (6, 7, 3)).astype(np.uint8)
    logits = torch.randn(4, 6, 7)
    expected = torch.softmax(logits, 0)
    got = dense_crf(image, logits=logits, pos_w=0, bi_w=0, method=method)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(dense_crf(image, expected, pos_w=0, bi_w=0, method=method), expected, atol=1e-6,
                               rtol=1e-5)
    torch.testing.assert_close(dense_crf(image, logits=logits, iterations=0, method=method), expected)


def _two_regions(h: int = 48, w: int = 64, seed: int = 0):
    """A two-colour image with a sharp slanted edge, its true labels, and noisy logits."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    truth = (xx > 20 + yy // 2).long()
    colours = torch.where(truth.bool()[None], torch.tensor([40, 90, 200])[:, None, None],
                          torch.tensor([210, 160, 50])[:, None, None])
    image = (colours + torch.randint(-12, 13, (3, h, w), generator=g)).clamp(0, 255).to(torch.uint8)
    onehot = torch.nn.functional.one_hot(truth, 2).permute(2, 0, 1).float()
    logits = (2 * onehot - 1) + 2.0 * torch.randn(2, h, w, generator=g)
    return image, truth, logits


def _miou(pred: torch.Tensor, truth: torch.Tensor) -> float:
    return float(np.mean([((pred == c) & (truth == c)).sum().item() / ((pred == c) | (truth == c)).sum().item()
                          for c in (0, 1)]))


@pytest.mark.parametrize("method", ["permutohedral", "exact"])
def test_the_crf_recovers_a_sharp_edge_from_noisy_unaries(method):
    image, truth, logits = _two_regions()
    noisy = _miou(logits.argmax(0), truth)
    refined = _miou(dense_crf(image, logits=logits, method=method).argmax(0), truth)
    assert noisy < 0.65  # measured 0.61
    assert refined > 0.98 and refined > noisy + 0.3  # measured 0.993


def test_layouts_containers_batch_and_module_agree():
    image, _, logits = _two_regions(20, 24)
    reference = dense_crf(image, logits=logits)
    hwc = image.permute(1, 2, 0).contiguous()
    torch.testing.assert_close(dense_crf(hwc, logits=logits), reference)
    torch.testing.assert_close(dense_crf(hwc.numpy(), logits=logits.numpy()), reference)
    torch.testing.assert_close(dense_crf(image, torch.softmax(logits, 0)), reference, atol=1e-5, rtol=1e-4)
    images = torch.stack([image, image.flip(-1)])
    batch_logits = torch.stack([logits, logits.flip(-1)])
    batch = dense_crf_batch(images, logits=batch_logits)
    assert batch.shape == (2, 2, 20, 24)
    torch.testing.assert_close(batch[0], reference)
    torch.testing.assert_close(batch[1], dense_crf(image.flip(-1), logits=logits.flip(-1)))
    module = DenseCRF(**DEEPLAB_V1.kwargs())
    assert "pos_xy_std=3.0" in repr(module) and list(module.parameters()) == []
    torch.testing.assert_close(module(images, batch_logits)[0], dense_crf(image, logits=logits, **DEEPLAB_V1.kwargs()))
    assert DEEPLAB_V2.kwargs() == dict(zip(PARAMS, CONFIGS["deeplab_v2"]))


def test_the_crf_is_differentiable_in_the_logits():
    image, _, logits = _two_regions(4, 5)
    logits = logits.double().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: dense_crf(image, logits=x, iterations=2, method="exact"), (logits,))
    logits32 = logits.detach().float().requires_grad_()
    dense_crf(image, logits=logits32)[0].sum().backward()
    assert logits32.grad is not None and torch.isfinite(logits32.grad).all() and logits32.grad.abs().sum() > 0


# --------------------------------------------------------------------------------------------
# errors a person can act on


def test_a_grey_image_is_refused_with_what_to_do():
    prob = torch.full((2, 6, 7), 0.5)
    grey = np.zeros((6, 7), np.uint8)
    for image in (grey, grey[..., None], grey[None], torch.zeros(1, 6, 7, dtype=torch.uint8)):
        with pytest.raises(ValueError, match=r"bilateral.*3 channels.*repeat the channel"):
            dense_crf(image, prob)
    with pytest.raises(ValueError, match="3 channels.*alpha"):
        dense_crf(np.zeros((6, 7, 4), np.uint8), prob)


def test_bad_images_and_scores_are_refused():
    image = np.zeros((6, 7, 3), np.uint8)
    prob = torch.full((2, 6, 7), 0.5)
    with pytest.raises(ValueError, match="does not match the probabilities' 6x7"):
        dense_crf(np.zeros((6, 8, 3), np.uint8), prob)
    with pytest.raises(ValueError, match=r"uint8.*\[0, 1\]: multiply by 255"):
        dense_crf(image.astype(np.float32) / 255, prob)
    with pytest.raises(ValueError, match=r"0\.\.255.*\[0, 375\]"):
        dense_crf(np.arange(6 * 7 * 3, dtype=np.int32).reshape(6, 7, 3) * 3, prob)
    with pytest.raises(ValueError, match="pass raw network scores as logits="):
        dense_crf(image, torch.randn(2, 6, 7))
    with pytest.raises(ValueError, match="sum to 1"):
        dense_crf(image, torch.full((2, 6, 7), 0.2))
    with pytest.raises(ValueError, match="exactly one of"):
        dense_crf(image, prob, logits=prob)
    with pytest.raises(ValueError, match="exactly one of"):
        dense_crf(image)
    with pytest.raises(ValueError, match=r"\(L, H, W\)"):
        dense_crf(image, prob[0])
    with pytest.raises(ValueError, match="NaN"):
        dense_crf(image, logits=torch.full((2, 6, 7), float("nan")))
    with pytest.raises(ValueError, match=r"\(2, 2\) matrix"):
        dense_crf(image, prob, compatibility=np.ones((3, 3)))
    with pytest.raises(ValueError, match="'potts'"):
        dense_crf(image, prob, compatibility="potts2")
    with pytest.raises(ValueError, match="B = 2"):
        dense_crf_batch(torch.zeros(1, 3, 6, 7, dtype=torch.uint8), logits=torch.zeros(2, 2, 6, 7))


@pytest.mark.parametrize("name, value, message", [
    ("iterations", -1, "iterations must be a non-negative integer"),
    ("iterations", 2.5, "iterations must be a non-negative integer"),
    ("pos_w", -1.0, "pos_w must not be negative"),
    ("bi_w", True, "bi_w must not be negative"),
    ("pos_xy_std", 0, "pos_xy_std must be a positive number"),
    ("bi_xy_std", -3.0, "bi_xy_std must be a positive number"),
    ("bi_rgb_std", "3", "bi_rgb_std must be a positive number"),
    ("method", "lattice", "method must be one of permutohedral, pydensecrf, exact"),
])
def test_bad_parameters_are_refused(name, value, message):
    image = np.zeros((6, 7, 3), np.uint8)
    with pytest.raises(ValueError, match=message):
        dense_crf(image, torch.full((2, 6, 7), 0.5), **{name: value})
    with pytest.raises(ValueError, match=message):
        DenseCRF(**{name: value})


# --------------------------------------------------------------------------------------------
# the oracle: pydensecrf2 (Krähenbühl's C++ code), `pip install pydensecrf2`


def _pydensecrf(image: np.ndarray, prob: np.ndarray, iterations: int, pos_w, pos_xy_std, bi_w, bi_xy_std,
                bi_rgb_std, compat: np.ndarray | None = None) -> np.ndarray:
    dcrf = pytest.importorskip("pydensecrf.densecrf", reason="the oracle needs `pip install pydensecrf2`")
    labels, h, w = prob.shape
    crf = dcrf.DenseCRF2D(w, h, labels)
    crf.setUnaryEnergy(np.ascontiguousarray(-np.log(np.maximum(prob, 1e-8)).reshape(labels, -1)))
    crf.addPairwiseGaussian(sxy=pos_xy_std, compat=pos_w if compat is None else (pos_w * compat).astype(np.float32))
    crf.addPairwiseBilateral(sxy=bi_xy_std, srgb=bi_rgb_std, rgbim=np.ascontiguousarray(image),
                             compat=bi_w if compat is None else (bi_w * compat).astype(np.float32))
    return np.array(crf.inference(iterations)).reshape(labels, h, w)


def _compare(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """(max |dQ|, mean |dQ|, fraction of argmax labels that agree)."""
    diff = np.abs(a - b)
    return float(diff.max()), float(diff.mean()), float((a.argmax(0) == b.argmax(0)).mean())


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("labels", [2, 5])
def test_against_pydensecrf(config, labels):
    image = _photo_crop()
    prob = _colour_unaries(image, labels)
    kw = _kwargs(CONFIGS[config])
    oracle = _pydensecrf(image, prob, **kw)
    # the same lattice for both kernels: pydensecrf to float rounding
    biggest, _, agree = _compare(dense_crf(image, prob, method="pydensecrf", **kw).numpy(), oracle)
    assert biggest < 4e-4 and agree == 1.0  # measured <= 1e-5 here
    # the default: exact smoothness kernel instead of pydensecrf's lattice for it
    _, mean, agree = _compare(dense_crf(image, prob, **kw).numpy(), oracle)
    assert mean < 2e-3 and agree >= 0.995  # measured mean <= 1.4e-3, agreement >= 0.9987
    # the exact sums: pydensecrf's own lattice approximation of the 5-D Gaussian shows
    _, mean, agree = _compare(dense_crf(image, prob, method="exact", **kw).numpy(), oracle)
    assert mean < 0.03 and agree >= 0.94  # measured mean 0.006 - 0.022, agreement 0.945 - 0.999


def test_bilateral_only_and_matrix_compatibility_against_pydensecrf():
    dcrf = pytest.importorskip("pydensecrf.densecrf", reason="the oracle needs `pip install pydensecrf2`")
    image = _photo_crop()
    prob = _colour_unaries(image, 3, seed=1)
    labels, h, w = prob.shape
    crf = dcrf.DenseCRF2D(w, h, labels)
    crf.setUnaryEnergy(np.ascontiguousarray(-np.log(np.maximum(prob, 1e-8)).reshape(labels, -1)))
    crf.addPairwiseBilateral(sxy=30, srgb=10, rgbim=image, compat=5)
    oracle = np.array(crf.inference(8)).reshape(labels, h, w)
    ours = dense_crf(image, prob, iterations=8, pos_w=0, bi_w=5, bi_xy_std=30, bi_rgb_std=10).numpy()
    np.testing.assert_allclose(ours, oracle, atol=1e-4)
    mu = np.array([[0, 1, 3], [1, 0, 0.5], [3, 0.5, 0]], np.float32)
    kw = _kwargs(CONFIGS["deeplab_v1"])
    oracle = _pydensecrf(image, prob, compat=mu, **kw)
    np.testing.assert_allclose(dense_crf(image, prob, compatibility=mu, method="pydensecrf", **kw).numpy(),
                               oracle, atol=4e-4)
