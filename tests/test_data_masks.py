"""Segmentation data: the VOC and images/masks loaders on small files written in exactly those
formats (checked against torchvision's VOC reader), every bad input's error, and the one warp
that moves images, masks and boxes together (checked against torchvision's affine and flips)."""

from __future__ import annotations

import tarfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import tv_tensors
from torchvision.ops import masks_to_boxes
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from convatlas.data import SegmentationAugment, SegmentationPipeline, augment, geometry, load_segmentation
from convatlas.data.masks import VOC_CLASSES, read_mask, voc_colormap, write_mask


# ------------------------------------------------------------------------------------------
# Files in the formats


def _palette_png(path, values: np.ndarray, palette: np.ndarray | None = None) -> None:
    """A palette PNG as VOC ships them: mode P, the values are palette indices."""
    image = Image.new("P", (values.shape[1], values.shape[0]))
    image.putdata(values.reshape(-1).tolist())
    image.putpalette((voc_colormap() if palette is None else palette).reshape(-1).tolist())
    image.save(path)


def _mask(rng, h, w, classes, border=True) -> np.ndarray:
    mask = np.zeros((h, w), dtype=np.uint8)
    for _ in range(3):
        y, x = rng.integers(0, h - 4), rng.integers(0, w - 4)
        mask[y:y + rng.integers(3, 8), x:x + rng.integers(3, 8)] = rng.integers(1, classes)
    if border:  # VOC's white (void) rims around objects
        edge = (mask != np.roll(mask, 1, 0)) | (mask != np.roll(mask, 1, 1))
        mask[edge] = 255
    return mask


def _write_voc(root, ids=None, size=(16, 20), seed=0, lists=True):
    """root/VOCdevkit/VOC2012 with JPEGImages, SegmentationClass and ImageSets/Segmentation."""
    rng = np.random.default_rng(seed)
    base = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    ids = ids or {"train": ["2007_000032", "2007_000039", "2007_000063"], "val": ["2007_000033", "2007_000042"]}
    masks = {}
    for split, names in ids.items():
        for name in names:
            h, w = size
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(base / "JPEGImages" / f"{name}.jpg",
                                                                                   quality=90)
            masks[name] = _mask(rng, h, w, 21)
            _palette_png(base / "SegmentationClass" / f"{name}.png", masks[name])
        if lists:
            (base / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(names) + "\n")
    return base, ids, masks


def test_voc_folder_reads_like_torchvision(tmp_path):
    from torchvision.datasets import VOCSegmentation

    base, ids, masks = _write_voc(tmp_path)
    for splits in (load_segmentation(str(tmp_path)), load_segmentation("voc", root=tmp_path, download=False),
                   load_segmentation(str(base))):
        assert splits.classes == VOC_CLASSES and splits.num_classes == 21 and splits.ignore_index == 255
        assert (len(splits.train), len(splits.test)) == (3, 2) and splits.in_channels == 3
        assert splits.train.images.shape == (3, 3, 16, 20) and splits.train.masks.dtype == torch.uint8
    for split, part in (("train", splits.train), ("val", splits.test)):
        reference = VOCSegmentation(str(tmp_path), year="2012", image_set=split, download=False)
        for i, name in enumerate(ids[split]):
            image, target = reference[i]
            assert np.array_equal(np.asarray(target), part.masks[i].numpy())  # palette indices, 255 kept
            assert np.array_equal(part.masks[i].numpy(), masks[name])
            assert np.array_equal(np.asarray(image), part.images[i].permute(1, 2, 0).numpy())
    assert 255 in splits.train.masks.unique().tolist()
    pixels = splits.train.images.double() / 255
    assert splits.mean[1] == pytest.approx(pixels[:, 1].mean().item(), abs=1e-6)


def test_voc_resize_without_lists_from_its_tarball_and_rgb_masks(tmp_path):
    src = tmp_path / "src"
    base, ids, masks = _write_voc(src, size=(15, 21), lists=False)
    # a mask saved as VOC colours (RGB) decodes to the same indices
    name = ids["train"][0]
    Image.fromarray(voc_colormap()[masks[name]]).save(base / "SegmentationClass" / f"{name}.png")
    root = tmp_path / "root"
    root.mkdir()
    with tarfile.open(root / "VOCtrainval_11-May-2012.tar", "w") as tar:
        tar.add(src / "VOCdevkit", arcname="VOCdevkit")
    splits = load_segmentation("voc", root=root, image_size=(30, 42), download=False)
    assert (root / "VOCdevkit" / "VOC2012" / "JPEGImages").is_dir()
    assert len(splits.train) + len(splits.test) == 5 and len(splits.test) == 1  # 20% of 5, seeded
    assert "no ImageSets/Segmentation" in splits.notes[0]
    assert splits.train.images.shape[-2:] == (30, 42)
    everything = {**masks}
    originals = [everything[n] for n in sorted(everything)]
    got = torch.cat([splits.train.masks, splits.test.masks])
    # nearest at pixel centres doubles every pixel: a resized mask holds only its values
    assert sorted(bytes(m[::2, ::2].numpy()) for m in got) == sorted(bytes(m) for m in originals)
    assert sorted(bytes(m.numpy()) for m in got) == sorted(bytes(m.repeat(2, 0).repeat(2, 1)) for m in originals)


def test_voc_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"not found in .*none \(download disabled\).*VOCtrainval_11-May-2012\.tar"):
        load_segmentation("voc", root=tmp_path / "none", download=False)
    base, ids, masks = _write_voc(tmp_path / "a")
    bad = masks[ids["val"][1]].copy()
    bad[0, 0] = 30
    _palette_png(base / "SegmentationClass" / f"{ids['val'][1]}.png", bad)
    with pytest.raises(ValueError, match=rf"{ids['val'][1]}\.png holds values \[30\] outside the 21 classes"):
        load_segmentation(str(tmp_path / "a"))
    base, ids, _ = _write_voc(tmp_path / "b")
    (base / "JPEGImages" / f"{ids['train'][1]}.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=rf"'{ids['train'][1]}'.*no image.*JPEGImages"):
        load_segmentation(str(tmp_path / "b"))
    base, ids, _ = _write_voc(tmp_path / "c")
    Image.new("P", (7, 5)).save(base / "SegmentationClass" / f"{ids['train'][0]}.png")
    with pytest.raises(ValueError, match=rf"mask .*{ids['train'][0]}\.png is 7x5.*is 20x16"):
        load_segmentation(str(tmp_path / "c"))
    base, ids, _ = _write_voc(tmp_path / "d")
    (base / "SegmentationClass" / f"{ids['train'][2]}.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(ValueError, match=rf"cannot read mask .*{ids['train'][2]}\.png"):
        load_segmentation(str(tmp_path / "d"))
    base, ids, _ = _write_voc(tmp_path / "e", size=(16, 20))
    Image.fromarray(np.zeros((12, 20, 3), dtype=np.uint8)).save(base / "JPEGImages" / f"{ids['val'][0]}.jpg")
    _palette_png(base / "SegmentationClass" / f"{ids['val'][0]}.png", np.zeros((12, 20), dtype=np.uint8))
    with pytest.raises(ValueError, match="different sizes.*image_size"):
        load_segmentation(str(tmp_path / "e"))
    assert load_segmentation(str(tmp_path / "e"), image_size=16).image_size == (16, 16)


def _write_pairs(folder, n=10, size=(12, 14), values=(0, 1, 2), mode="L", seed=0, image_mode="RGB"):
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    masks = {}
    for i in range(n):
        stem = f"img{i:02d}"
        shape = (*size, 3) if image_mode == "RGB" else size
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / "images" / f"{stem}.png")
        mask = rng.choice(np.array(values, dtype=np.uint8), size=size)
        mask[0, :] = 255  # an ignored row
        masks[stem] = mask
        if mode == "P":
            _palette_png(folder / "masks" / f"{stem}.png", mask)
        else:
            Image.fromarray(mask).save(folder / "masks" / f"{stem}.png")
    return masks


@pytest.mark.parametrize("mode", ["L", "P"])
def test_images_and_masks_pair_split_by_seed(tmp_path, mode):
    masks = _write_pairs(tmp_path / "d", mode=mode)
    splits = load_segmentation(str(tmp_path / "d"))
    assert splits.classes == ["0", "1", "2"] and (len(splits.train), len(splits.test)) == (8, 2)
    assert "seeded split" in splits.notes[0]
    got = {bytes(m.numpy()) for m in torch.cat([splits.train.masks, splits.test.masks])}
    assert got == {bytes(m) for m in masks.values()}  # every pair once, values unchanged, 255 kept
    again = load_segmentation(str(tmp_path / "d"))
    assert torch.equal(again.test.masks, splits.test.masks)
    other = load_segmentation(str(tmp_path / "d"), seed=1)
    assert not torch.equal(other.test.images, splits.test.images)
    assert len(load_segmentation(str(tmp_path / "d"), test_fraction=0.5).test) == 5


def test_pair_values_become_class_indices_unless_classes_txt(tmp_path):
    masks = _write_pairs(tmp_path / "gaps", values=(0, 2, 5), image_mode="L")
    splits = load_segmentation(str(tmp_path / "gaps"))
    assert splits.classes == ["0", "2", "5"] and splits.in_channels == 1
    lut = {0: 0, 2: 1, 5: 2, 255: 255}
    expected = {bytes(np.vectorize(lut.get)(m).astype(np.uint8)) for m in masks.values()}
    assert {bytes(m.numpy()) for m in torch.cat([splits.train.masks, splits.test.masks])} == expected
    (tmp_path / "gaps" / "classes.txt").write_text("sky\n\ntree\nroad\nhouse\ncar\nboat\n")
    named = load_segmentation(str(tmp_path / "gaps"))
    assert named.classes == ["sky", "tree", "road", "house", "car", "boat"]
    assert {bytes(m.numpy()) for m in torch.cat([named.train.masks, named.test.masks])} == \
        {bytes(m) for m in masks.values()}
    (tmp_path / "gaps" / "classes.txt").write_text("sky\ntree\nroad\n")
    with pytest.raises(ValueError, match=r"img\d\d\.png holds values \[5\] outside the 3 classes.*classes\.txt"):
        load_segmentation(str(tmp_path / "gaps"))


def test_train_and_val_folders_of_pairs(tmp_path):
    _write_pairs(tmp_path / "train", n=4, seed=1)
    _write_pairs(tmp_path / "val", n=3, seed=2, values=(0, 1))
    splits = load_segmentation(str(tmp_path))
    assert (len(splits.train), len(splits.test)) == (4, 3) and splits.classes == ["0", "1", "2"]
    assert splits.notes == []


def test_pair_errors_name_the_file_and_what_is_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_segmentation(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="is empty; expected a Pascal VOC folder"):
        load_segmentation(str(tmp_path / "empty"))
    (tmp_path / "other" / "pictures").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"neither.*pictures/.*JPEGImages.*images/ \+ masks/.*train/ and test/"):
        load_segmentation(str(tmp_path / "other"))
    with pytest.raises(ValueError, match="unknown segmentation dataset 'cityscapes'"):
        load_segmentation("cityscapes")

    _write_pairs(tmp_path / "orphan", n=3)
    (tmp_path / "orphan" / "masks" / "img01.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"image .*img01\.png has no mask: expected .*masks/img01\.png"):
        load_segmentation(str(tmp_path / "orphan"))
    _write_pairs(tmp_path / "extra", n=3)
    Image.new("L", (14, 12)).save(tmp_path / "extra" / "masks" / "stray.png")
    with pytest.raises(FileNotFoundError, match=r"mask .*stray\.png has no image"):
        load_segmentation(str(tmp_path / "extra"))
    _write_pairs(tmp_path / "size", n=3)
    Image.new("L", (10, 12)).save(tmp_path / "size" / "masks" / "img02.png")
    with pytest.raises(ValueError, match=r"img02\.png is 10x12 .* its image .*img02\.png is 14x12"):
        load_segmentation(str(tmp_path / "size"))
    _write_pairs(tmp_path / "broken", n=3)
    (tmp_path / "broken" / "images" / "img00.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    with pytest.raises(ValueError, match=r"cannot read image .*img00\.png"):
        load_segmentation(str(tmp_path / "broken"))
    _write_pairs(tmp_path / "rgb", n=3)
    Image.new("RGB", (14, 12)).save(tmp_path / "rgb" / "masks" / "img00.png")
    with pytest.raises(ValueError, match=r"img00\.png has image mode 'RGB'; expected a single-channel \(L\) or palette"):
        load_segmentation(str(tmp_path / "rgb"))
    _write_pairs(tmp_path / "jpeg", n=3)
    (tmp_path / "jpeg" / "masks" / "img00.png").unlink()
    Image.new("L", (14, 12)).save(tmp_path / "jpeg" / "masks" / "img00.jpg")
    with pytest.raises(ValueError, match=r"img00\.jpg is a JPEG.*save masks as PNG"):
        load_segmentation(str(tmp_path / "jpeg"))
    _write_pairs(tmp_path / "binary", n=3, values=(0, 255))
    with pytest.raises(ValueError, match="255 is the ignore index.*0/1"):
        load_segmentation(str(tmp_path / "binary"))
    (tmp_path / "noimages" / "images").mkdir(parents=True)
    (tmp_path / "noimages" / "masks").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        load_segmentation(str(tmp_path / "noimages"))
    _write_pairs(tmp_path / "sizes", n=3)
    Image.new("RGB", (9, 9)).save(tmp_path / "sizes" / "images" / "img01.png")
    Image.new("L", (9, 9)).save(tmp_path / "sizes" / "masks" / "img01.png")
    with pytest.raises(ValueError, match=r"different sizes .*img00\.png is 14x12.*img01\.png is 9x9.*image_size"):
        load_segmentation(str(tmp_path / "sizes"))
    assert load_segmentation(str(tmp_path / "sizes"), image_size=(6, 7)).image_size == (6, 7)
    with pytest.raises(ValueError, match="digit-scenes options"):
        load_segmentation(str(tmp_path / "sizes"), size=32)


def test_write_mask_round_trip(tmp_path):
    values = np.random.default_rng(0).integers(0, 21, (9, 11)).astype(np.uint8)
    values[0] = 255
    path = write_mask(tmp_path / "m.png", values)
    with Image.open(path) as image:
        assert image.mode == "P" and np.array_equal(np.asarray(image), values)
        assert image.getpalette()[15 * 3:15 * 3 + 3] == [192, 128, 128]  # VOC's "person" colour
    assert np.array_equal(read_mask(path), values)
    assert [p.name for p in tmp_path.iterdir()] == ["m.png"]


# ------------------------------------------------------------------------------------------
# The one warp


def _scene(n=3, h=12, w=16, seed=0):
    """Masks of two labelled rectangles (1 in the left half, 2 in the right), an image that is the
    mask's value times 10, and the rectangles' boxes (label k + 1 for the k-th box of an image)."""
    rng = np.random.default_rng(seed)
    masks = torch.zeros(n, h, w, dtype=torch.uint8)
    boxes, index = [], []
    for i in range(n):
        for label, left in ((1, 0), (2, w // 2)):
            bh, bw = int(rng.integers(2, 5)), int(rng.integers(2, w // 2 - 1))
            y, x = int(rng.integers(0, h - bh + 1)), left + int(rng.integers(0, w // 2 - bw + 1))
            masks[i, y:y + bh, x:x + bw] = label
            boxes.append([x, y, x + bw, y + bh])
            index.append(i)
    images = (masks.float() * 10)[:, None].repeat(1, 2, 1, 1)
    return images, masks, torch.tensor(boxes, dtype=torch.float32), torch.tensor(index)


def test_identity_warp_changes_nothing():
    images, masks, boxes, index = _scene()
    theta = geometry.identity_theta(3)
    assert torch.allclose(geometry.warp_images(images, theta), images, atol=1e-4)
    assert torch.equal(geometry.warp_masks(masks, theta), masks)
    moved, keep = geometry.warp_boxes(boxes, theta, (12, 16), index=index)
    assert bool(keep.all()) and torch.allclose(moved, boxes, atol=1e-5)


@pytest.mark.parametrize("shift", [(3, -2), (-5, 4), (0, 7)])
def test_integer_shift_moves_image_mask_and_boxes_alike_and_matches_torchvision(shift):
    images, masks, boxes, index = _scene()
    dx, dy = shift
    theta = geometry.shift_theta(torch.tensor([shift] * 3, dtype=torch.float32), (12, 16))
    warped = geometry.warp(theta, images=images, masks=masks, boxes=boxes, box_index=index)
    # torchvision's affine on the mask, nearest, 255 outside: the same pixels
    reference = TF.affine(masks, angle=0.0, translate=[dx, dy], scale=1.0, shear=[0.0, 0.0],
                          interpolation=InterpolationMode.NEAREST, fill=255)
    assert torch.equal(warped.masks, reference)
    # by hand: out[y, x] = in[y - dy, x - dx], 255 (image: 0) where that is outside
    expected = torch.full_like(masks, 255)
    ys, xs = slice(max(dy, 0), 12 + min(dy, 0)), slice(max(dx, 0), 16 + min(dx, 0))
    yi, xi = slice(max(-dy, 0), 12 + min(-dy, 0)), slice(max(-dx, 0), 16 + min(-dx, 0))
    expected[:, ys, xs] = masks[:, yi, xi]
    assert torch.equal(warped.masks, expected)
    inside = warped.masks != 255
    assert torch.allclose(warped.images[:, 0][inside], warped.masks[inside].float() * 10, atol=1e-3)
    assert torch.allclose(warped.images[:, 0][~inside], torch.zeros(()), atol=1e-3)
    # boxes: shifted, clipped, and dropped where they left the image
    shifted = boxes + torch.tensor([dx, dy, dx, dy], dtype=torch.float32)
    clipped = torch.stack([shifted[:, 0].clamp(0, 16), shifted[:, 1].clamp(0, 12),
                           shifted[:, 2].clamp(0, 16), shifted[:, 3].clamp(0, 12)], 1)
    alive = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    assert torch.equal(warped.keep, alive) and torch.allclose(warped.boxes, clipped[alive], atol=1e-4)
    assert torch.equal(warped.box_index, index[alive])
    # each kept box is the tight box of its moved rectangle (the part left in the image)
    labels = torch.tensor([1, 2] * 3)[alive]
    for box, i, label in zip(warped.boxes, warped.box_index, labels):
        region = warped.masks[i] == label
        assert torch.allclose(masks_to_boxes(region[None])[0] + torch.tensor([0, 0, 1.0, 1.0]), box, atol=1e-4)


def test_box_that_leaves_the_image_is_dropped_and_reported():
    boxes = torch.tensor([[1.0, 1.0, 4.0, 5.0], [10.0, 2.0, 15.0, 6.0]])
    moved, keep = geometry.warp_boxes(boxes, geometry.shift_theta((-10, 0), (8, 16)), (8, 16))
    assert keep.tolist() == [False, True] and torch.allclose(moved, torch.tensor([[0.0, 2.0, 5.0, 6.0]]), atol=1e-5)


def test_horizontal_flip_mirrors_image_mask_and_boxes():
    images, masks, boxes, index = _scene()
    warped = geometry.warp(geometry.hflip_theta(3), images=images, masks=masks, boxes=boxes, box_index=index)
    assert torch.equal(warped.masks, masks.flip(-1)) and torch.equal(warped.masks, TF.horizontal_flip(masks))
    assert torch.allclose(warped.images, images.flip(-1), atol=1e-4)
    flipped = torch.stack([16 - boxes[:, 2], boxes[:, 1], 16 - boxes[:, 0], boxes[:, 3]], 1)
    assert bool(warped.keep.all()) and torch.allclose(warped.boxes, flipped, atol=1e-5)
    assert torch.allclose(warped.boxes, TF.horizontal_flip_bounding_boxes(
        boxes.clone(), format=tv_tensors.BoundingBoxFormat.XYXY, canvas_size=(12, 16)),
                          atol=1e-5)


def test_random_warps_keep_mask_values_and_mark_the_outside_ignored():
    images, masks, boxes, index = _scene(n=6, h=20, w=24)
    g = torch.Generator().manual_seed(0)
    theta = augment._affine_theta(6, g, torch.device("cpu"), 30.0, 0.2, 0.4)
    warped = geometry.warp(theta, images=images, masks=masks, boxes=boxes, box_index=index)
    assert set(warped.masks.unique().tolist()) <= {0, 1, 2, 255} and 255 in warped.masks.unique().tolist()
    # the ignore index marks exactly the points sampled from outside the image
    grid = F.affine_grid(theta, [6, 1, 20, 24], align_corners=False)
    px = ((grid[..., 0] + 1) * 24 - 1) / 2
    py = ((grid[..., 1] + 1) * 20 - 1) / 2
    outside = (px.round() < 0) | (px.round() > 23) | (py.round() < 0) | (py.round() > 19)
    clear = ((px - px.floor() - 0.5).abs() > 1e-3) & ((py - py.floor() - 0.5).abs() > 1e-3)  # no rounding ties
    assert torch.equal((warped.masks == 255)[clear], outside[clear])
    # nearest agrees with a plain per-pixel lookup of the rounded sampling point
    lookup = masks[torch.arange(6)[:, None, None], py.round().clamp(0, 19).long(), px.round().clamp(0, 23).long()]
    assert torch.equal(warped.masks[~outside & clear], lookup[~outside & clear])
    # a zoom out: the border comes from outside
    zoom = geometry.warp_masks(masks, geometry.identity_theta(6) * torch.tensor([[2.0, 2.0, 1.0]]))
    assert bool((zoom[:, 0] == 255).all()) and bool((zoom[:, 8:12, 10:14] != 255).all())
    # instance masks (bool) fill False; a warped box holds its warped region
    region = masks == 1
    moved = geometry.warp_masks(region, theta, fill=False)
    assert moved.dtype == torch.bool
    for k in range(len(boxes)):
        i = int(index[k])
        if not warped.keep[k]:
            continue
        box = warped.boxes[int(warped.keep[:k + 1].sum()) - 1]
        inst = torch.zeros_like(masks[i], dtype=torch.bool)
        x1, y1, x2, y2 = boxes[k].long().tolist()
        inst[y1:y2, x1:x2] = True
        w = geometry.warp_masks(inst[None], theta[i:i + 1], fill=False)[0]
        if w.any():
            tight = masks_to_boxes(w[None])[0] + torch.tensor([0, 0, 1.0, 1.0])
            assert bool((tight[:2] >= box[:2] - 0.5 - 1e-4).all()) and bool((tight[2:] <= box[2:] + 0.5 + 1e-4).all())


def test_pixel_maps_round_trip_and_rotation_by_90_degrees():
    m = torch.tensor([[[0.0, -1.0, 16.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]], dtype=torch.float64)
    theta = geometry.pixel_theta(m, (16, 16))
    assert torch.allclose(geometry.theta_to_pixel(theta, (16, 16)), m)
    images, masks, boxes, index = _scene(n=1, h=16, w=16)
    warped = geometry.warp(theta, images=images, masks=masks, boxes=boxes, box_index=index)
    # x_in = 16 - y_out, y_in = x_out: out[r, c] = in[c, 15 - r], a quarter turn counter-clockwise
    assert torch.equal(warped.masks, torch.rot90(masks, 1, dims=(1, 2)))
    for k in range(len(boxes)):
        label = k + 1
        assert torch.allclose(warped.boxes[k], masks_to_boxes((warped.masks[0] == label)[None])[0]
                              + torch.tensor([0, 0, 1.0, 1.0]), atol=1e-4)


def test_augment_warp_is_the_geometry_warp_unchanged():
    """The classification warps sample through geometry.warp_images, bit for bit what they did
    before it existed (one affine_grid, one bilinear grid_sample, zeros outside)."""
    assert augment._warp is geometry.warp_images
    x = torch.rand(5, 3, 14, 18, generator=torch.Generator().manual_seed(1))
    out = augment.random_warp(x, torch.Generator().manual_seed(2), 15.0, 0.1, 0.2, 6.0, 2.0, shear=5.0, squeeze=0.1)
    g = torch.Generator().manual_seed(2)
    theta = augment._affine_theta(5, g, torch.device("cpu"), 15.0, 0.1, 0.2, 5.0, 0.1)
    field = augment._elastic_field(5, 14, 18, g, torch.device("cpu"), 6.0, 2.0)
    grid = F.affine_grid(theta, [5, 3, 14, 18], align_corners=False) + field
    assert torch.equal(out, F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False))


# ------------------------------------------------------------------------------------------
# Joint augmentation of batches


def _pipeline(augment_config, **kwargs):
    return SegmentationPipeline(mean=(0.5,), std=(0.25,), channels=1, augment=augment_config, seed=3, **kwargs)


def test_pipeline_without_augmentation_only_normalises():
    images = torch.randint(0, 256, (4, 1, 10, 12), dtype=torch.uint8)
    masks = torch.randint(0, 3, (4, 10, 12), dtype=torch.uint8)
    pipe = _pipeline(None)
    x, m = pipe.train_batch(images, masks)
    assert torch.equal(x, pipe.eval_input(images)) and torch.equal(x, (images.float() / 255 - 0.5) / 0.25)
    assert m.dtype == torch.int64 and torch.equal(m, masks.long()) and torch.equal(pipe.eval_masks(masks), m)
    rgb = SegmentationPipeline(mean=(0.5,) * 3, std=(0.25,) * 3, channels=3, channels_last=True)
    assert rgb.eval_input(images).shape == (4, 3, 10, 12)


def test_pipeline_moves_masks_with_images_and_resumes_exactly():
    images, masks, boxes, index = _scene(n=8, h=24, w=24)
    images_u8 = images[:, :1].to(torch.uint8)
    config = SegmentationAugment(scale=(0.5, 2.0), crop_size=(16, 20), translate=0.1, degrees=20.0, hflip=True,
                                 brightness=0.3, contrast=0.3)
    pipe = _pipeline(config)
    pipe.train_batch(images_u8, masks)
    state = pipe.state_dict()
    first = [pipe.train_batch(images_u8, masks) for _ in range(3)]
    pipe.load_state_dict(state)
    second = [pipe.train_batch(images_u8, masks) for _ in range(3)]
    for (xa, ma), (xb, mb) in zip(first, second):
        assert xa.shape == (8, 1, 16, 20) and ma.shape == (8, 16, 20) and ma.dtype == torch.int64
        assert torch.equal(xa, xb) and torch.equal(ma, mb)
        assert set(ma.unique().tolist()) <= {0, 1, 2, 255}
    assert not torch.equal(first[0][1], first[1][1])  # a new draw every batch
    # the batch is the one warp applied with the batch's maps: images, masks and boxes together
    geo = _pipeline(SegmentationAugment(scale=(0.5, 2.0), degrees=20.0, hflip=True))
    batch = geo.augment_batch(images_u8, masks, boxes, index)
    again = geometry.warp(batch.theta, images=images_u8.float() / 255, masks=masks, boxes=boxes, box_index=index)
    assert torch.equal(batch.masks, again.masks.long()) and torch.equal(batch.boxes, again.boxes)
    assert torch.allclose(batch.images, (again.images - 0.5) / 0.25, atol=1e-6)
    # photometric changes touch the image only
    photo = _pipeline(SegmentationAugment(brightness=0.5, contrast=0.5))
    x, m = photo.train_batch(images_u8, masks)
    assert torch.equal(m, masks.long()) and not torch.equal(x, photo.eval_input(images_u8))


def test_flip_only_pipeline_mirrors_each_pair_together_and_presets():
    images, masks, _, _ = _scene(n=16, h=10, w=12)
    images_u8 = images[:, :1].to(torch.uint8)
    pipe = _pipeline(SegmentationAugment(hflip=True))
    x, m = pipe.train_batch(images_u8, masks)
    flipped = torch.tensor([torch.equal(mi, mo.long().flip(-1)) and not torch.equal(mi, mo.long())
                            for mi, mo in zip(m, masks)])
    kept = torch.tensor([torch.equal(mi, mo.long()) for mi, mo in zip(m, masks)])
    assert bool((flipped | kept).all()) and 0 < int(flipped.sum()) < 16
    plain = pipe.eval_input(images_u8)
    for i in range(16):
        assert torch.allclose(x[i], plain[i].flip(-1) if flipped[i] else plain[i], atol=1e-4)
    assert SegmentationAugment().hflip is False and SegmentationAugment.digit_scenes().hflip is False
    deeplab = SegmentationAugment.deeplab(8)
    assert deeplab.scale == (0.5, 2.0) and deeplab.hflip and deeplab.out_size((10, 12)) == (8, 8)
    for bad in ({"scale": (0.0, 2.0)}, {"crop_size": 0}, {"translate": 1.5}, {"degrees": -1.0}, {"brightness": 2.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            SegmentationAugment(**bad)


def test_random_maps_mean_what_the_config_says():
    g = torch.Generator().manual_seed(0)
    n, size = 500, (20, 30)
    zoom = geometry.theta_to_pixel(geometry.random_segmentation_theta(n, size, g, SegmentationAugment(scale=(0.5, 2.0))),
                                   size).float()
    s = 1 / zoom[:, 0, 0]  # output pixel -> input pixel: x_in = (x_out + offset) / s
    assert torch.allclose(zoom[:, 1, 1], zoom[:, 0, 0]) and torch.all(zoom[:, 0, 1] == 0)
    assert s.min() >= 0.5 - 1e-5 and s.max() <= 2.0 + 1e-5 and s.min() < 0.55 and s.max() > 1.95
    offset = zoom[:, 0, 2] * s  # the crop's corner in the zoomed image lies between 0 and sW - W
    low, high = torch.minimum(torch.zeros(n), s * 30 - 30), torch.maximum(torch.zeros(n), s * 30 - 30)
    assert torch.all(offset >= low - 1e-3) and torch.all(offset <= high + 1e-3)
    turn = geometry.theta_to_pixel(geometry.random_segmentation_theta(n, size, g, SegmentationAugment(degrees=15.0)),
                                   size).float()
    centre = turn @ torch.tensor([15.0, 10.0, 1.0])  # rotation about the image's centre
    assert torch.allclose(centre[:, :2], torch.tensor([15.0, 10.0]).expand(n, 2), atol=1e-3)
    angle = torch.rad2deg(torch.atan2(-turn[:, 1, 0], turn[:, 0, 0]))
    assert angle.abs().max() <= 15 + 1e-3 and angle.abs().max() > 14 and torch.allclose(
        turn[:, 0, 0] ** 2 + turn[:, 1, 0] ** 2, torch.ones(n), atol=1e-5)
    flips = geometry.random_segmentation_theta(n, size, g, SegmentationAugment(hflip=True))
    mirrored = torch.all(flips == geometry.hflip_theta(1), dim=(1, 2))
    assert torch.all(mirrored | torch.all(flips == geometry.identity_theta(1), dim=(1, 2)))
    assert 200 < int(mirrored.sum()) < 300
    crop = geometry.random_segmentation_theta(n, size, g, SegmentationAugment(crop_size=(10, 12)))
    corner = geometry.theta_to_pixel(crop, size, (10, 12)).float()[:, :2, 2]  # a crop inside the image
    assert torch.all(corner >= -1e-4) and torch.all(corner[:, 0] <= 18 + 1e-4) and torch.all(corner[:, 1] <= 10 + 1e-4)
