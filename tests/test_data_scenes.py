"""digit-scenes: composed deterministically from the real MNIST digits, train scenes from the
training digits only; labels checked against an independent re-composition of every scene and
against torchvision's box conversion."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import masks_to_boxes

from convatlas.data import MaskSet, SceneConfig, digit_scenes, load_dataset, load_segmentation, scene_stats
from convatlas.data import scenes

SMALL = SceneConfig(num_train=120, num_test=40)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")  # read (from the usual cache) before the tests move the cache


@pytest.fixture(autouse=True)
def _private_cache(digits, tmp_path, monkeypatch):
    monkeypatch.setenv("CONVATLAS_CACHE", str(tmp_path / "cache"))


def _fields(s: MaskSet) -> dict[str, torch.Tensor]:
    return {"images": s.images, "masks": s.masks, "instances": s.instances, "boxes": s.boxes, "labels": s.labels,
            "offsets": s.offsets, **s.extra}


def _same(a: MaskSet, b: MaskSet) -> bool:
    fa, fb = _fields(a), _fields(b)
    return fa.keys() == fb.keys() and all(fa[k].dtype == fb[k].dtype and torch.equal(fa[k], fb[k]) for k in fa)


def _recompose(s: MaskSet, source: torch.Tensor, threshold: int):
    """Each scene again, from its recorded digits (``source`` (D, 1, 28, 28)) and pastes, with
    plain per-digit code: the maximum of the pasted digits, and the later digit's label wherever its
    own stroke (>= threshold) lies."""
    n, _, h, w = s.images.shape
    image = torch.zeros(n, h, w, dtype=torch.uint8)
    owner = torch.zeros(n, h, w, dtype=torch.long)  # instance id, 0 = none
    for i in range(n):
        for j, row in enumerate(range(int(s.offsets[i]), int(s.offsets[i + 1]))):
            x0, y0, side = (int(v) for v in s.extra["paste"][row])
            digit = source[int(s.extra["digit_index"][row])].float()[None]
            patch = F.interpolate(digit, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
            patch = patch[0, 0].round().clamp(0, 255).to(torch.uint8)
            region = image[i, y0:y0 + side, x0:x0 + side]
            image[i, y0:y0 + side, x0:x0 + side] = torch.maximum(region, patch)
            owner[i, y0:y0 + side, x0:x0 + side][patch >= threshold] = j + 1
    return image, owner


def test_scenes_are_deterministic_seeded_and_prefix_stable():
    a = digit_scenes("train", SMALL, cache=False)
    b = digit_scenes("train", SMALL, cache=False)
    assert _same(a, b)
    other = digit_scenes("train", SceneConfig(num_train=120, seed=1), cache=False)
    assert not torch.equal(a.images, other.images)
    # the test split has its own stream (and its own digits)
    test = digit_scenes("test", SceneConfig(num_test=120), cache=False)
    assert not torch.equal(a.images, test.images)
    # the first n scenes of a larger set are the n scenes of a smaller one
    few = digit_scenes("train", SceneConfig(num_train=30), cache=False)
    assert _same(few, a.subset(range(30)))


@pytest.mark.parametrize("split", ["train", "test"])
def test_scenes_are_made_of_their_splits_digits_only(split, digits):
    s = digit_scenes(split, SMALL, cache=False)
    part = digits.train if split == "train" else digits.test
    assert int(s.extra["digit_index"].max()) < len(part) and int(s.extra["digit_index"].min()) >= 0
    image, owner = _recompose(s, part.images, SMALL.threshold)
    assert torch.equal(image, s.images[:, 0])  # every pixel explained by that split's digits
    assert torch.equal(owner, s.instances.long())  # later digits on top, strokes at >= 128
    assert torch.equal(s.labels, part.labels[s.extra["digit_index"]] + 1)
    # the same indices into the other split do not explain the scenes
    wrong = digits.test if split == "train" else digits.train
    index = s.extra["digit_index"].clamp(max=len(wrong) - 1)
    fake = MaskSet(s.images, s.masks, s.instances, s.boxes, s.labels, s.offsets,
                   {"digit_index": index, "paste": s.extra["paste"]})
    assert not torch.equal(_recompose(fake, wrong.images, SMALL.threshold)[0], s.images[:, 0])


def test_labels_boxes_and_counts_are_consistent():
    s = digit_scenes("train", SMALL, cache=False)
    counts = s.instance_counts
    assert counts.min() >= 1 and counts.max() <= 4 and set(counts.tolist()) == {1, 2, 3, 4}
    assert s.images.shape == (120, 1, 64, 64) and s.masks.dtype == torch.uint8 and s.boxes.dtype == torch.float32
    # a pixel is labelled a digit exactly where the composed image reaches the threshold
    assert torch.equal(s.masks > 0, s.images[:, 0] >= SMALL.threshold)
    for i in range(len(s)):
        inst = s.instance_masks(i)
        labels = s.instance_labels(i)
        assert inst.shape == (int(counts[i]), 64, 64) and inst.dtype == torch.bool
        assert bool(inst.any(dim=(1, 2)).all())  # no empty instance
        assert int(inst.sum(0).max()) <= 1  # disjoint
        union = (inst.long() * labels[:, None, None]).sum(0)  # the class map is the union by label
        assert torch.equal(union, s.masks[i].long())
        # tight boxes in pixel-edge coordinates: torchvision's box (last pixel's index) plus one
        expected = masks_to_boxes(inst) + torch.tensor([0.0, 0.0, 1.0, 1.0])
        assert torch.equal(s.instance_boxes(i), expected)
        assert torch.all((labels >= 1) & (labels <= 10))
        target = s.target(i)
        assert set(target) == {"boxes", "labels", "masks"} and torch.equal(target["masks"], inst)


def test_the_overlap_rule_holds_for_every_pair(digits):
    config = SceneConfig(num_train=200, max_cover=0.25)
    s = digit_scenes("train", config, cache=False)
    placed = s.extra["placed_box"]
    checked = 0
    for i in range(len(s)):
        rows = range(int(s.offsets[i]), int(s.offsets[i + 1]))
        for b in rows:
            for a in rows:
                if a >= b:
                    continue
                earlier, later = placed[a], placed[b]
                iw = (torch.minimum(earlier[2], later[2]) - torch.maximum(earlier[0], later[0])).clamp(min=0)
                ih = (torch.minimum(earlier[3], later[3]) - torch.maximum(earlier[1], later[1])).clamp(min=0)
                area = (earlier[2] - earlier[0]) * (earlier[3] - earlier[1])
                assert iw * ih <= 0.25 * area + 1e-6
                checked += 1
    assert checked > 200
    # the judged box is the whole stroke box of the pasted digit (>= 128), before any occlusion
    for row in (0, 5, 17):
        x0, y0, side = (int(v) for v in s.extra["paste"][row])
        digit = digits.train.images[int(s.extra["digit_index"][row])].float()[None]
        patch = F.interpolate(digit, size=(side, side), mode="bilinear", antialias=True, align_corners=False)[0, 0]
        box = masks_to_boxes((patch.round() >= 128)[None])[0] + torch.tensor([x0, y0, x0 + 1.0, y0 + 1.0])
        assert torch.equal(placed[row], box)
    # no overlap allowed at all: stroke boxes never intersect
    strict = digit_scenes("train", SceneConfig(num_train=60, max_cover=0.0), cache=False)
    for i in range(len(strict)):
        boxes = strict.extra["placed_box"][int(strict.offsets[i]):int(strict.offsets[i + 1])]
        for a in range(len(boxes)):
            for b in range(a):
                iw = min(boxes[a, 2], boxes[b, 2]) - max(boxes[a, 0], boxes[b, 0])
                ih = min(boxes[a, 3], boxes[b, 3]) - max(boxes[a, 1], boxes[b, 1])
                assert iw <= 0 or ih <= 0


def test_default_scenes_statistics():
    train = digit_scenes("train", cache=False)
    stats = scene_stats(train)
    assert stats.scenes == 4000 and set(stats.count_histogram) == {1, 2, 3, 4}
    assert 2.3 < stats.digits_per_scene <= 2.5  # 1-4 drawn uniformly, a few left out by the overlap rule
    assert 0.05 < stats.foreground_fraction < 0.09
    assert len(stats.class_pixels) == 11 and min(stats.class_pixels[1:]) > 0
    test = digit_scenes("test", cache=False)
    assert len(test) == 1000 and 2.3 < scene_stats(test).digits_per_scene <= 2.5


def test_cache_round_trip_and_corrupt_or_stale_files_are_regenerated(tmp_path, monkeypatch):
    calls = []
    real = scenes.compose_scenes

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(scenes, "compose_scenes", counting)
    config = SceneConfig(num_train=25, size=48, digit_size=(12, 30))
    first = digit_scenes("train", config)
    folder = tmp_path / "cache" / "digit_scenes"
    files = sorted(p.name for p in folder.iterdir())
    assert len(calls) == 1 and files == [f"{config.cache_key('train')}.npz"]  # and no temporary file left
    second = digit_scenes("train", config)
    assert len(calls) == 1 and _same(first, second)
    path = folder / files[0]
    for damage in (b"not an npz", path.read_bytes()[: len(path.read_bytes()) // 2]):
        path.write_bytes(damage)
        again = digit_scenes("train", config)
        assert _same(first, again)
    assert len(calls) == 3
    assert digit_scenes("train", config) is not None and len(calls) == 3  # the rewritten file is good
    # every parameter is in the key; a new generator version does not read old files
    assert config.cache_key("train") != SceneConfig(num_train=25, size=48, digit_size=(12, 30), seed=1).cache_key("train")
    assert config.cache_key("train") != config.cache_key("test")
    monkeypatch.setattr(scenes, "SCENES_VERSION", scenes.SCENES_VERSION + 1)
    assert _same(first, digit_scenes("train", config)) and len(calls) == 4
    # a file under the right name whose key inside differs (e.g. copied by hand) is not trusted
    monkeypatch.setattr(scenes, "SCENES_VERSION", scenes.SCENES_VERSION - 1)
    other = SceneConfig(num_train=25, size=48, digit_size=(12, 30), seed=3)
    digit_scenes("train", other)
    (folder / f"{config.cache_key('train')}.npz").write_bytes((folder / f"{other.cache_key('train')}.npz").read_bytes())
    assert _same(first, digit_scenes("train", config)) and len(calls) == 6


def test_load_segmentation_digit_scenes_options_and_resize():
    splits = load_segmentation("digit-scenes", num_train=30, num_test=10, size=48, digit_size=(12, 30))
    assert splits.classes == ["background", *map(str, range(10))] and splits.num_classes == 11
    assert splits.ignore_index == 255 and splits.image_size == (48, 48) and splits.in_channels == 1
    assert len(splits.train) == 30 and len(splits.test) == 10 and splits.train.has_instances
    pixels = splits.train.images.double() / 255
    assert splits.mean[0] == pytest.approx(pixels.mean().item(), abs=1e-6)
    big = load_segmentation("digit_scenes", num_train=30, num_test=10, size=48, digit_size=(12, 30), image_size=96)
    assert big.image_size == (96, 96) and big.train.masks.shape == (30, 96, 96)
    assert torch.equal(big.train.boxes, splits.train.boxes * 2)
    assert set(big.train.masks.unique().tolist()) <= set(splits.train.masks.unique().tolist())
    assert torch.equal(big.train.masks[:, ::2, ::2], splits.train.masks)  # nearest, pixel centres, x2
    with pytest.raises(ValueError, match="unknown digit-scenes option.*num_digits.*max_digits"):
        load_segmentation("digit-scenes", num_digits=3)
    with pytest.raises(ValueError, match="digit_size"):
        SceneConfig(size=32)  # 40-pixel digits do not fit a 32-pixel canvas
    with pytest.raises(ValueError, match="min_digits"):
        SceneConfig(min_digits=5)
    with pytest.raises(ValueError, match="split"):
        digit_scenes("val", SMALL)


def test_mask_set_subset_keeps_each_images_instances():
    s = digit_scenes("test", SMALL, cache=False)
    part = s.subset([7, 2, 7])
    assert len(part) == 3 and torch.equal(part.images[0], s.images[7])
    for new, old in ((0, 7), (1, 2), (2, 7)):
        a, b = part.target(new), s.target(old)
        assert all(torch.equal(a[k], b[k]) for k in a)
        assert torch.equal(part.extra["digit_index"][part._rows(new)], s.extra["digit_index"][s._rows(old)])
    with pytest.raises(ValueError, match="masks must be uint8"):
        MaskSet(s.images, s.masks.long())
    with pytest.raises(ValueError, match="come together"):
        MaskSet(s.images, s.masks, boxes=s.boxes)
