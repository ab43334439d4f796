"""Detection data: the BoxSet, the digit-scenes boxes, and the Pascal VOC / COCO / YOLO layouts on
small files written here by hand in exactly those formats - read against torchvision's VOC reader,
pycocotools' masks and matplotlib's point-in-polygon test, written and read back in each format,
converted from one to another, every bad input's error, and the `convatlas data convert` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torchvision.ops import masks_to_boxes

from convatlas.cli import main
from convatlas.data import detection_formats as fmt
from convatlas.data.boxes import BoxSet, DetectionSplits, load_detection, resize_box_set
from convatlas.data.masks import VOC_CLASSES
from convatlas.data.scenes import SCENE_CLASSES, SceneConfig, digit_scenes


def _image(path, h, w, seed=0, channels=3):
    rng = np.random.default_rng(seed)
    shape = (h, w) if channels == 1 else (h, w, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
    return path


def _box_set(n=4, h=24, w=32, classes=4, seed=0, masks=False, names=True, integer=False):
    """A random BoxSet: 0-3 boxes per image (at least 2 pixels wide and high), some difficult, some crowd."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(0, 4, (n,), generator=g)
    counts[0] = 2
    m = int(counts.sum())
    x1 = torch.rand(m, generator=g) * (w - 4)
    y1 = torch.rand(m, generator=g) * (h - 4)
    x2 = x1 + 2 + torch.rand(m, generator=g) * (w - 2 - x1 - 0.01)
    y2 = y1 + 2 + torch.rand(m, generator=g) * (h - 2 - y1 - 0.01)
    boxes = torch.stack([x1, y1, x2.clamp(max=w), y2.clamp(max=h)], 1)
    if integer:
        boxes = torch.stack([x1.floor(), y1.floor(), x2.ceil().clamp(max=w), y2.ceil().clamp(max=h)], 1)
    instances = None
    if masks:
        instances = torch.zeros((n, h, w), dtype=torch.uint8)
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
        for i in range(n):
            for j in range(int(counts[i])):
                b = boxes[offsets[i] + j].long()
                instances[i, b[1]:b[3], b[0]:b[2]] = torch.where(torch.rand(b[3] - b[1], b[2] - b[0], generator=g) > 0.3,
                                                                 j + 1, instances[i, b[1]:b[3], b[0]:b[2]])
    return BoxSet(
        images=torch.randint(0, 256, (n, 3, h, w), generator=g, dtype=torch.uint8),
        boxes=boxes.float(),
        labels=torch.randint(1, classes, (m,), generator=g),
        offsets=torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)]),
        instances=instances,
        difficult=torch.rand(m, generator=g) < 0.2,
        iscrowd=torch.rand(m, generator=g) < 0.2,
        names=[f"img{seed}_{i:03d}" for i in range(n)] if names else None,
    )


def _splits(masks=False, integer=False, category_ids=None):
    train, test = _box_set(5, seed=1, masks=masks, integer=integer), _box_set(3, seed=2, masks=masks, integer=integer)
    classes = ["background", "cat", "dog", "bird"]
    return DetectionSplits("random", train, test, classes, (0.5,) * 3, (0.25,) * 3, category_ids=category_ids)


# ------------------------------------------------------------------------------------------
# In memory


def test_digit_scenes_boxes_are_the_mask_sets_instances():
    config = SceneConfig(num_train=40, num_test=12)
    data = load_detection("digit-scenes", num_train=40, num_test=12)
    assert data.classes == SCENE_CLASSES and data.num_classes == 11 and data.in_channels == 1
    for part, split in ((data.train, "train"), (data.test, "test")):
        scenes = digit_scenes(split, config)
        assert len(part) == len(scenes) == config.num_scenes(split)
        assert torch.equal(part.images, scenes.images) and torch.equal(part.instances, scenes.instances)
        assert torch.equal(part.boxes, scenes.boxes) and torch.equal(part.labels, scenes.labels)
        assert torch.equal(part.offsets, scenes.offsets)
        assert not part.difficult.any() and not part.iscrowd.any() and part.labels.min() >= 1
        for i in range(3):
            target = part.target(i)
            assert set(target) == {"boxes", "labels", "masks", "iscrowd", "difficult"}
            tight = masks_to_boxes(target["masks"]) + torch.tensor([0.0, 0.0, 1.0, 1.0])  # torchvision: last pixel
            assert torch.equal(tight, target["boxes"])
    half = load_detection("digit-scenes", image_size=32, num_train=40, num_test=12)
    assert half.train.images.shape[-2:] == (32, 32) and torch.allclose(half.train.boxes, data.train.boxes / 2)


def test_box_set_checks_its_boxes_and_subsets_keep_each_images_rows():
    data = _box_set(6, seed=3, masks=True)
    picked = data.subset([4, 0, 4])
    assert picked.names == [data.names[4], data.names[0], data.names[4]]
    for k, i in enumerate([4, 0, 4]):
        for key, value in data.target(i).items():
            assert torch.equal(picked.target(k)[key], value), key
    ok = dict(images=data.images[:1], labels=torch.tensor([1]), offsets=torch.tensor([0, 1]))
    BoxSet(boxes=torch.tensor([[0.0, 0.0, 32.0, 24.0]]), **ok)  # the whole 32x24 image is a box
    for box, message in (([3.0, 2.0, 3.0, 9.0], "x2 <= x1"), ([5.0, 2.0, 4.0, 9.0], "x2 <= x1"),
                         ([-0.5, 2.0, 4.0, 9.0], "outside the 32x24 image"), ([1.0, 2.0, 32.5, 9.0], "outside"),
                         ([1.0, 2.0, 4.0, 24.01], "outside")):
        with pytest.raises(ValueError, match=message) as info:
            BoxSet(boxes=torch.tensor([box]), names=["frame_7"], **ok)
        assert "image 0 ('frame_7')" in str(info.value)
    with pytest.raises(ValueError, match="label 0; object labels are 1"):
        BoxSet(data.images[:1], torch.tensor([[0.0, 0.0, 4.0, 4.0]]), torch.tensor([0]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="boxes must be float32"):
        BoxSet(data.images[:1], torch.zeros((2, 4)), torch.tensor([1]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"train image 1: label 4 is not a class; expected 1..3"):
        bad = BoxSet(data.images[:2], torch.tensor([[0.0, 0.0, 4.0, 4.0]]), torch.tensor([4]), torch.tensor([0, 0, 1]))
        DetectionSplits("x", bad, bad.subset([]), ["background", "a", "b", "c"], (0.5,), (0.5,))


def test_resize_scales_boxes_and_instance_maps_with_the_image():
    data = _box_set(3, h=24, w=32, seed=4, masks=True)
    small = resize_box_set(data, (12, 8))
    assert small.images.shape == (3, 3, 12, 8) and small.instances.shape == (3, 12, 8)
    assert torch.allclose(small.boxes, data.boxes * torch.tensor([0.25, 0.5, 0.25, 0.5]))
    assert torch.equal(small.labels, data.labels) and small.names == data.names


# ------------------------------------------------------------------------------------------
# Pascal VOC


def _voc_xml(filename, w, h, objects):
    """An annotation as the VOC devkit writes it; objects are (name, xmin, ymin, xmax, ymax, difficult)."""
    body = "".join(
        f"<object><name>{n}</name><pose>Left</pose><truncated>0</truncated><difficult>{d}</difficult>"
        f"<bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax><ymax>{e}</ymax></bndbox></object>"
        for n, a, b, c, e, d in objects)
    return (f"<annotation><folder>VOC2007</folder><filename>{filename}</filename><size><width>{w}</width>"
            f"<height>{h}</height><depth>3</depth></size><segmented>0</segmented>{body}</annotation>")


VOC_FILES = {
    "000005": [("chair", 3, 4, 10, 12, 0), ("person", 1, 1, 32, 24, 1)],
    "000007": [("car", 20, 5, 30, 20, 0)],
    "000009": [],
    "000012": [("dog", 5, 6, 9, 9, 0), ("dog", 10, 2, 10, 2, 0)],  # a one-pixel box: xmin == xmax
}


def _write_voc(root, files=VOC_FILES, lists={"trainval": ["000005", "000009", "000012"], "test": ["000007"]},
               size=(24, 32)):
    base = root / "VOCdevkit" / "VOC2007"
    for k, (image_id, objects) in enumerate(files.items()):
        _image(base / "JPEGImages" / f"{image_id}.jpg", *size, seed=k)
        (base / "Annotations").mkdir(parents=True, exist_ok=True)
        (base / "Annotations" / f"{image_id}.xml").write_text(_voc_xml(f"{image_id}.jpg", size[1], size[0], objects))
    (base / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    for name, ids in lists.items():
        (base / "ImageSets" / "Main" / f"{name}.txt").write_text("\n".join(ids) + "\n")
    return base


def test_voc_folder_reads_as_torchvision_parses_it(tmp_path):
    from torchvision.datasets import VOCDetection

    base = _write_voc(tmp_path)
    for folder in (tmp_path, tmp_path / "VOCdevkit", base):
        assert fmt.find_layout(folder) == ("voc", base)
    data = load_detection(tmp_path)
    assert data.classes == VOC_CLASSES and data.name == f"voc:{base}"
    assert data.train.names == ["000005", "000009", "000012"] and data.test.names == ["000007"]
    for part, image_set in ((data.train, "trainval"), (data.test, "test")):
        reference = VOCDetection(str(tmp_path), year="2007", image_set=image_set, download=False)
        assert len(reference) == len(part)
        for i in range(len(part)):
            image, target = reference[i]
            assert np.array_equal(np.asarray(image).transpose(2, 0, 1), part.images[i].numpy())
            objects = target["annotation"].get("object", [])
            mine = part.target(i)
            assert len(objects) == len(mine["labels"])
            for obj, box, label, difficult in zip(objects, mine["boxes"], mine["labels"], mine["difficult"]):
                b = obj["bndbox"]
                # VOC: 1-based inclusive pixel indices -> pixel edges
                expected = [int(b["xmin"]) - 1, int(b["ymin"]) - 1, int(b["xmax"]), int(b["ymax"])]
                assert box.tolist() == expected and VOC_CLASSES[int(label)] == obj["name"]
                assert bool(difficult) == (obj["difficult"] == "1")
    assert data.train.target(2)["boxes"][1].tolist() == [9.0, 1.0, 10.0, 2.0]  # one pixel wide and high


def test_voc_classes_lists_and_seeded_split(tmp_path):
    files = {"a1": [("zebra", 1, 1, 5, 5, 0)], "a2": [("ant", 2, 2, 9, 9, 0)], "a3": [("zebra", 3, 3, 4, 4, 0)],
             "a4": [], "a5": [("ant", 1, 1, 2, 2, 0)]}
    base = _write_voc(tmp_path / "one", files, lists={})
    data = load_detection(tmp_path / "one")
    assert data.classes == ["background", "ant", "zebra"]  # sorted names found
    assert (len(data.train), len(data.test)) == (4, 1) and "seeded split" in data.notes[-1]
    (base / "classes.txt").write_text("background\nzebra\nant\nunused\n")
    data = load_detection(tmp_path / "one")
    assert data.classes == ["background", "zebra", "ant", "unused"]
    labels = {n: data_part.target(i)["labels"].tolist() for data_part in (data.train, data.test)
              for i, n in enumerate(data_part.names)}
    assert labels["a1"] == [1] and labels["a2"] == [2] and labels["a4"] == []
    _write_voc(tmp_path / "tv", files, lists={"train": ["a1", "a2", "a3"], "val": ["a4", "a5"]})
    data = load_detection(tmp_path / "tv")
    assert data.train.names == ["a1", "a2", "a3"] and data.test.names == ["a4", "a5"]


def _voc_error(tmp_path, files, lists=None):
    _write_voc(tmp_path, files, lists or {"trainval": list(files)})
    with pytest.raises((ValueError, FileNotFoundError)) as info:
        load_detection(tmp_path)
    return str(info.value)


@pytest.mark.parametrize("objects, message", [
    ([("car", 3, 4, 33, 12, 0)], "reaches outside the 32x24 image"),
    ([("car", 0, 4, 10, 12, 0)], "reaches outside"),  # 0 is not a VOC pixel index
    ([("car", 8, 4, 6, 12, 0)], "the box is empty"),
    ([("car", 3, "top", 6, 12, 0)], "<ymin> is 'top'; expected a number"),
])
def test_voc_bad_boxes_name_the_file_and_object(tmp_path, objects, message):
    text = _voc_error(tmp_path, {"000001": [("dog", 1, 1, 4, 4, 0), *objects]})
    assert message in text and "Annotations/000001.xml, object 1 ('car')" in text


def test_voc_bad_files_name_the_file(tmp_path):
    base = _write_voc(tmp_path / "a", {"x": [("dog", 1, 1, 4, 4, 0)], "y": []}, {"trainval": ["x", "y"]})
    (base / "Annotations" / "y.xml").write_text("<annotation><object><name>dog</name></annotation>")
    with pytest.raises(ValueError, match=r"cannot parse VOC annotation .*y\.xml: mismatched tag: line 1"):
        load_detection(tmp_path / "a")
    base = _write_voc(tmp_path / "b", {"x": [("dog", 1, 1, 4, 4, 0)]}, {"trainval": ["x"]})
    (base / "JPEGImages" / "x.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"x\.xml is for a missing image: expected .*JPEGImages/x\.jpg"):
        load_detection(tmp_path / "b")
    _write_voc(tmp_path / "c", {"x": []}, {"trainval": ["x", "nothere"]})
    with pytest.raises(FileNotFoundError, match=r"'nothere' \(in ImageSets/Main/trainval.txt\) has no annotation"):
        load_detection(tmp_path / "c")
    base = _write_voc(tmp_path / "d", {"x": [("dog", 1, 1, 4, 4, 0), ("wolf", 1, 1, 4, 4, 0)]}, {"trainval": ["x"]})
    (base / "classes.txt").write_text("dog\ncat\n")
    with pytest.raises(ValueError, match=r"object 1 \('wolf'\): class 'wolf' is not in the classes of .*classes\.txt"):
        load_detection(tmp_path / "d")
    base = _write_voc(tmp_path / "e", {"x": [("dog", 1, 1, 4, 4, 0)]}, {"trainval": ["x"]})
    (base / "Annotations" / "x.xml").write_text(_voc_xml("x.jpg", 40, 24, [("dog", 1, 1, 4, 4, 0)]))
    with pytest.raises(ValueError, match=r"gives the size 40x24 but its image .*x\.jpg is 32x24"):
        load_detection(tmp_path / "e")


# ------------------------------------------------------------------------------------------
# COCO


def _coco(images, annotations, categories=((3, "cat"), (7, "dog"), (11, "bird"))):
    return {"images": images, "annotations": annotations,
            "categories": [{"id": i, "name": n, "supercategory": "animal"} for i, n in categories]}


def _write_coco(root, h=24, w=32):
    """annotations/instances_{train,val}2017.json with train2017/ and val2017/; non-contiguous category ids."""
    rng = np.random.default_rng(5)
    crowd = np.zeros((h, w), dtype=np.uint8)
    crowd[2:20, 10:30] = 1
    runs = fmt.encode_rle(crowd)  # checked against pycocotools in its own test
    train = _coco(
        [{"id": 10 + k, "file_name": f"{k:012d}.jpg", "width": w, "height": h} for k in range(4)],
        [{"id": 1, "image_id": 10, "category_id": 7, "bbox": [2.5, 3.0, 10.25, 6.0], "iscrowd": 0,
          "segmentation": [[2.4, 3.0, 12.75, 3.0, 12.75, 9.0, 2.4, 9.0]]},
         {"id": 2, "image_id": 10, "category_id": 3, "bbox": [10.0, 2.0, 20.0, 18.0], "iscrowd": 1,
          "segmentation": {"size": [h, w], "counts": runs["counts"]}},
         {"id": 3, "image_id": 12, "category_id": 11, "bbox": [0, 0, 32, 24], "iscrowd": 0,
          "segmentation": [[1.2, 1.7, 30.4, 2.2, 16.1, 22.9], [25.3, 15.0, 31.0, 23.0, 20.0, 21.0]]},
         {"id": 4, "image_id": 13, "category_id": 3, "bbox": [5, 4, 4, 4], "iscrowd": 0,
          "segmentation": {"size": [h, w], "counts": [h * 5 + 4, 4, h - 4, 4, h - 4, 4, h - 4, 4, h * 24 - 8]}}])
    val = _coco([{"id": 1, "file_name": "000000000100.jpg", "width": w, "height": h}],
                [{"id": 9, "image_id": 1, "category_id": 11, "bbox": [1, 1, 5, 5], "iscrowd": 0, "segmentation": []}])
    (root / "annotations").mkdir(parents=True)
    for split, data in (("train2017", train), ("val2017", val)):
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))
        for entry in data["images"]:
            _image(root / split / entry["file_name"], h, w, seed=int(rng.integers(1000)))
    return train, val


def test_coco_folder_boxes_categories_and_masks_against_pycocotools(tmp_path):
    from pycocotools.coco import COCO

    train, _ = _write_coco(tmp_path)
    assert fmt.find_layout(tmp_path) == ("coco", tmp_path)
    data = load_detection(tmp_path)
    assert data.classes == ["background", "cat", "dog", "bird"] and data.category_ids == [3, 7, 11]
    assert data.train.names == [f"{k:012d}" for k in range(4)] and data.test.names == ["000000000100"]
    assert data.train.instance_counts.tolist() == [2, 0, 1, 1]  # image 11 has no annotation and is kept
    t = data.train.target(0)
    assert t["boxes"].tolist() == [[2.5, 3.0, 12.75, 9.0], [10.0, 2.0, 30.0, 20.0]]  # [x, y, w, h] -> xyxy
    assert t["labels"].tolist() == [2, 1] and t["iscrowd"].tolist() == [False, True]
    coco = COCO(str(tmp_path / "annotations" / "instances_train2017.json"))
    masks = {ann["id"]: coco.annToMask(ann).astype(bool) for ann in train["annotations"]}
    rectangle = np.zeros((24, 32), dtype=bool)
    rectangle[3:9, 2:13] = True  # the pixels whose centres lie inside x 2.4..12.75, y 3..9
    # the crowd RLE is painted first, the polygon over it: where they overlap the polygon's object wins
    assert torch.equal(t["masks"][0], torch.from_numpy(rectangle))
    assert torch.equal(t["masks"][1], torch.from_numpy(masks[2] & ~rectangle)) and (masks[2] & rectangle).any()
    assert torch.equal(data.train.target(3)["masks"][0], torch.from_numpy(masks[4]))  # uncompressed RLE
    assert data.train.target(3)["masks"][0].sum() == 16
    assert data.test.target(0)["masks"].shape == (1, 24, 32) and not data.test.target(0)["masks"].any()


def test_polygons_fill_the_pixels_whose_centres_lie_inside():
    from matplotlib.path import Path as PolygonPath
    from pycocotools import mask as coco_mask

    rng = np.random.default_rng(0)
    h, w = 30, 40
    centres = np.stack(np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5), -1).reshape(-1, 2)
    for _ in range(20):
        k = int(rng.integers(3, 9))
        angles = np.sort(rng.uniform(0, 2 * np.pi, k))
        radius = rng.uniform(4, 14, k)
        cx, cy = rng.uniform(10, 30), rng.uniform(10, 20)
        poly = np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], 1)
        mine = fmt.rasterize_polygons([poly.reshape(-1).tolist()], h, w)
        inside = PolygonPath(poly).contains_points(centres).reshape(h, w)
        assert np.array_equal(mine, inside)
        x, y = poly[:, 0], poly[:, 1]
        if 0.5 * abs(x @ np.roll(y, 1) - y @ np.roll(x, 1)) >= 50:  # pycocotools draws the edges its own way:
            theirs = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects([poly.reshape(-1).tolist()], h, w)))
            assert (mine & theirs.astype(bool)).sum() / (mine | theirs.astype(bool)).sum() > 0.95  # close, not equal
    rectangle = fmt.rasterize_polygons([[2, 3, 7, 3, 7, 9, 2, 9]], 12, 12)
    assert rectangle.sum() == 30 and rectangle[3:9, 2:7].all()  # columns 2..6, rows 3..8


def test_rle_matches_pycocotools_both_ways():
    from pycocotools import mask as coco_mask

    rng = np.random.default_rng(1)
    cases = [rng.random((17, 23)) < p for p in (0.05, 0.5, 0.95)]
    cases += [np.zeros((5, 7), bool), np.ones((5, 7), bool), np.eye(9, dtype=bool)]
    big = np.zeros((300, 200), bool)
    big[10:290, 5:195] = True  # runs longer than one 5-bit group, and negative differences
    cases.append(big)
    for mask in cases:
        theirs = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
        mine = fmt.encode_rle(mask)
        assert mine["size"] == list(theirs["size"]) and mine["counts"] == theirs["counts"].decode()
        assert np.array_equal(fmt.decode_rle(theirs), mask)
        counts = fmt.rle_counts_from_string(theirs["counts"])
        assert sum(counts) == mask.size and fmt.rle_counts_to_string(counts) == mine["counts"]
        uncompressed = {"size": list(mask.shape), "counts": counts}
        assert np.array_equal(fmt.decode_rle(uncompressed),
                              coco_mask.decode(coco_mask.frPyObjects(uncompressed, *mask.shape)).astype(bool))
    with pytest.raises(ValueError, match=r"add up to 30 pixels .* expected height x width = 5 x 7 = 35"):
        fmt.decode_rle({"size": [5, 7], "counts": [10, 20]})


def test_coco_single_json_beside_images_is_split_by_seed(tmp_path):
    images = [{"id": k, "file_name": f"p{k}.png", "width": 16, "height": 12} for k in range(10)]
    annotations = [{"id": k, "image_id": k, "category_id": 1, "bbox": [1, 1, 3 + k % 4, 2], "iscrowd": 0}
                   for k in range(10)]
    (tmp_path / "labels.json").write_text(json.dumps(_coco(images, annotations, [(1, "thing")])))
    for entry in images:
        _image(tmp_path / "images" / entry["file_name"], 12, 16, seed=entry["id"])
    first, again = load_detection(tmp_path), load_detection(tmp_path, seed=0)
    assert first.train.names == again.train.names and first.test.names == again.test.names
    assert len(first.test) == 2 and set(first.train.names) | set(first.test.names) == {f"p{k}" for k in range(10)}
    assert not set(first.train.names) & set(first.test.names)
    assert torch.equal(first.train.images, again.train.images) and torch.equal(first.train.boxes, again.train.boxes)
    other = load_detection(tmp_path, seed=1, test_fraction=0.5)
    assert len(other.test) == 5 and not set(other.train.names) & set(other.test.names)
    assert len({tuple(load_detection(tmp_path, seed=s).test.names) for s in range(5)}) > 1  # the seed matters
    k = first.train.names.index("p3")
    assert first.train.target(k)["boxes"].tolist() == [[1.0, 1.0, 7.0, 3.0]] and first.classes == ["background", "thing"]


@pytest.mark.parametrize("change, message", [
    (lambda d: d["annotations"][0].update(bbox=[2, 2, 0, 5]), "annotation 1 (image '000000000000.jpg') bbox "
                                                               "[2, 2, 0, 5] ([x, y, w, h]): the box is empty"),
    (lambda d: d["annotations"][0].update(bbox=[30, 2, 5, 5]), "reaches outside the 32x24 image"),
    (lambda d: d["annotations"][0].update(category_id=5), "category_id 5 is not in the file's categories"),
    (lambda d: d["annotations"][0].update(image_id=99), "is for image_id 99, which is not among the file's images "
                                                        "(an annotation for a missing image)"),
    (lambda d: d["images"][1].update(file_name="gone.jpg"), "file_name 'gone.jpg', is missing"),
    (lambda d: d["images"][1].update(width=50), "image id 11 says width x height 50x24"),
    (lambda d: d["annotations"][1].update(segmentation={"size": [24, 32], "counts": [3, 4]}), "add up to 7 pixels"),
    (lambda d: d["annotations"][0].update(segmentation=[[1, 2, 3, 4]]), "polygon 0 of its segmentation"),
    (lambda d: d.pop("annotations"), "has no 'annotations' list"),
])
def test_coco_bad_annotations_name_the_file_and_value(tmp_path, change, message):
    train, _ = _write_coco(tmp_path)
    change(train)
    path = tmp_path / "annotations" / "instances_train2017.json"
    path.write_text(json.dumps(train))
    with pytest.raises((ValueError, FileNotFoundError)) as info:
        load_detection(tmp_path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_coco_malformed_json_gives_line_and_column(tmp_path):
    _write_coco(tmp_path)
    path = tmp_path / "annotations" / "instances_val2017.json"
    path.write_text('{"images": [\n  {"id": 1,}\n]}')
    with pytest.raises(ValueError, match=r"cannot parse .*instances_val2017\.json: .* at line 2, column 12"):
        load_detection(tmp_path)


# ------------------------------------------------------------------------------------------
# YOLO


def _write_yolo(root, names=("cat", "dog", "bird"), labels=None, h=20, w=40, names_as_dict=False):
    labels = labels if labels is not None else {
        "train/a": "0 0.5 0.5 0.5 0.5\n2 0.125 0.25 0.25 0.5\n", "train/b": "", "train/c": None,
        "val/d": "1 0.9 0.9 0.2 0.2\n"}
    for k, (stem, text) in enumerate(labels.items()):
        split, name = stem.split("/")
        _image(root / "images" / split / f"{name}.jpg", h, w, seed=k)
        if text is not None:
            (root / "labels" / split).mkdir(parents=True, exist_ok=True)
            (root / "labels" / split / f"{name}.txt").write_text(text)
    config = {"path": "." if not names_as_dict else str(root), "train": "images/train", "val": "images/val",
              "names": dict(enumerate(names)) if names_as_dict else list(names)}
    (root / "data.yaml").write_text(yaml.safe_dump(config))
    return root


@pytest.mark.parametrize("names_as_dict", [False, True])
def test_yolo_folder_normalised_boxes_to_pixels(tmp_path, names_as_dict):
    _write_yolo(tmp_path, names_as_dict=names_as_dict)
    assert fmt.find_layout(tmp_path) == ("yolo", tmp_path)
    data = load_detection(tmp_path)
    assert data.classes == ["background", "cat", "dog", "bird"]
    assert data.train.names == ["a", "b", "c"] and data.test.names == ["d"]
    a = data.train.target(0)
    assert a["labels"].tolist() == [1, 3]  # yolo class k -> label k + 1
    assert a["boxes"].tolist() == [[10.0, 5.0, 30.0, 15.0], [0.0, 0.0, 10.0, 10.0]]  # of a 40x20 image
    assert data.train.instance_counts.tolist() == [2, 0, 0]  # an empty label file and none at all: no object
    assert torch.allclose(data.test.boxes, torch.tensor([[32.0, 16.0, 40.0, 20.0]]))


def test_yolo_one_split_and_classes_txt(tmp_path):
    labels = {f"all/i{k}": f"0 0.5 0.5 0.{k + 1} 0.5\n" for k in range(5)}
    _write_yolo(tmp_path, labels=labels)
    (tmp_path / "data.yaml").write_text(yaml.safe_dump({"path": str(tmp_path), "train": "images/all",
                                                        "val": "images/all", "names": ["thing"]}))
    data = load_detection(tmp_path, test_fraction=0.4)
    assert (len(data.train), len(data.test)) == (3, 2) and "seeded split" in data.notes[-1]
    assert sorted(data.train.names + data.test.names) == [f"i{k}" for k in range(5)]
    (tmp_path / "data.yaml").unlink()
    with pytest.raises(ValueError, match="no data YAML naming the classes"):
        load_detection(tmp_path)
    (tmp_path / "classes.txt").write_text("thing\n")
    assert load_detection(tmp_path).classes == ["background", "thing"]


@pytest.mark.parametrize("line, message", [
    ("3 0.5 0.5 0.2 0.2", "line 2: class 3 is not in the 3 names of"),
    ("-1 0.5 0.5 0.2 0.2", "class -1 is not in the 3 names"),
    ("0.5 0.5 0.5 0.2 0.2", "class 0.5 is not in the 3 names"),
    ("1 0.5 0.5 0.2", "line 2: '1 0.5 0.5 0.2' holds 4 values; expected 5: 'class cx cy w h'"),
    ("1 0.1 0.2 0.3 0.4 0.5 0.6 0.7", "a YOLO segmentation polygon?"),
    ("1 0.5 half 0.2 0.2", "is not five numbers"),
    ("1 0.95 0.5 0.2 0.2", "line 2 (cx 0.95 cy 0.5 w 0.2 h 0.2, normalised): the box (x1 34, y1 8, x2 42, y2 12"),
    ("1 0.5 0.5 0 0.2", "the box is empty"),
])
def test_yolo_bad_lines_name_the_file_and_line(tmp_path, line, message):
    _write_yolo(tmp_path, labels={"train/a": f"0 0.5 0.5 0.5 0.5\n{line}\n", "val/b": ""})
    with pytest.raises(ValueError) as info:
        load_detection(tmp_path)
    text = str(info.value)
    assert message in text and str(tmp_path / "labels" / "train" / "a.txt") in text


def test_yolo_bad_files(tmp_path):
    _write_yolo(tmp_path / "orphan")
    (tmp_path / "orphan" / "labels" / "val" / "z.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(FileNotFoundError, match=r"labels/val/z\.txt is for a missing image: expected .*images/val/z"):
        load_detection(tmp_path / "orphan")
    _write_yolo(tmp_path / "yaml")
    (tmp_path / "yaml" / "data.yaml").write_text("names: [cat, dog\ntrain: images/train\n")
    with pytest.raises(ValueError, match=r"cannot parse .*data\.yaml at line"):
        load_detection(tmp_path / "yaml")
    _write_yolo(tmp_path / "nc")
    (tmp_path / "nc" / "data.yaml").write_text("train: images/train\nval: images/val\nnc: 4\nnames: [a, b, c]\n")
    with pytest.raises(ValueError, match="nc is 4 but names lists 3 classes"):
        load_detection(tmp_path / "nc")
    _write_yolo(tmp_path / "split")
    (tmp_path / "split" / "data.yaml").write_text("train: images/training\nnames: [a]\n")
    with pytest.raises(FileNotFoundError, match=r"train is 'images/training' but .* is neither a folder"):
        load_detection(tmp_path / "split")


# ------------------------------------------------------------------------------------------
# Every layout's shared errors


def test_folders_in_no_layout_and_sizes_that_differ(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty\b.* is empty; expected a Pascal VOC folder"):
        load_detection(tmp_path / "empty")
    (tmp_path / "other" / "pictures").mkdir(parents=True)
    (tmp_path / "other" / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"in no detection layout .* \(it holds notes\.txt, pictures/\)"):
        load_detection(tmp_path / "other")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_detection(tmp_path / "missing")
    with pytest.raises(ValueError, match="unknown detection dataset 'coco2017'"):
        load_detection("coco2017")
    with pytest.raises(ValueError, match="are digit-scenes options"):
        load_detection(tmp_path / "other", size=32)
    files = {"a": [("dog", 1, 1, 8, 8, 0)], "b": [("dog", 3, 5, 30, 20, 0)]}
    base = _write_voc(tmp_path / "sizes", files, {"trainval": ["a"], "test": ["b"]})
    _image(base / "JPEGImages" / "b.jpg", 20, 30, seed=9)
    (base / "Annotations" / "b.xml").write_text(_voc_xml("b.jpg", 30, 20, files["b"]))
    with pytest.raises(ValueError, match=r"different sizes \(.*a\.jpg is 32x24, .*b\.jpg is 30x20.*pass image_size"):
        load_detection(tmp_path / "sizes")
    data = load_detection(tmp_path / "sizes", image_size=(12, 16))
    assert data.train.images.shape == (1, 3, 12, 16) and data.test.images.shape == (1, 3, 12, 16)
    assert torch.allclose(data.train.boxes, torch.tensor([[0.0, 0.0, 4.0, 4.0]]))  # 32x24 -> 16x12: halved
    assert torch.allclose(data.test.boxes, torch.tensor([[2 * 16 / 30, 4 * 12 / 20, 16.0, 12.0]]))


# ------------------------------------------------------------------------------------------
# Writing and round trips


def _same_sets(a: BoxSet, b: BoxSet, *, atol=0.0, flags=("difficult", "iscrowd"), images=True):
    assert a.names == b.names and torch.equal(a.offsets, b.offsets) and torch.equal(a.labels, b.labels)
    assert torch.allclose(a.boxes, b.boxes, atol=atol, rtol=0), (a.boxes - b.boxes).abs().max()
    if images:
        assert torch.equal(a.images, b.images)
    for flag in flags:
        assert torch.equal(getattr(a, flag), getattr(b, flag)), flag


def test_coco_round_trip_is_exact_with_masks_flags_and_category_ids(tmp_path):
    from pycocotools.coco import COCO

    data = _splits(masks=True, category_ids=[2, 5, 90])
    written = fmt.write_coco(data, tmp_path / "out")
    assert written.images == 8 and written.boxes == data.train.num_boxes + data.test.num_boxes
    assert any("difficult" in note for note in written.notes)
    back = load_detection(tmp_path / "out")
    assert back.classes == data.classes and back.category_ids == [2, 5, 90]
    for a, b in ((data.train, back.train), (data.test, back.test)):
        _same_sets(a, b, flags=("iscrowd",))
        assert torch.equal(a.instances, b.instances)
    coco = COCO(str(tmp_path / "out" / "annotations" / "instances_val.json"))  # pycocotools reads what we wrote
    ann = coco.loadAnns(coco.getAnnIds(imgIds=[6]))[0]
    assert np.array_equal(coco.annToMask(ann).astype(bool), data.test.target(0)["masks"][0].numpy())
    assert coco.loadCats(ann["category_id"])[0]["name"] == data.classes[int(data.test.labels[0])]


def test_voc_round_trip_rounds_edges_to_whole_pixels(tmp_path):
    data = _splits()
    written = fmt.write_voc(data, tmp_path / "voc", image_format="png")
    assert (tmp_path / "voc" / "classes.txt").read_text() == "cat\ndog\nbird\n"
    assert any("crowd boxes were written difficult" in n for n in written.notes)
    back = load_detection(tmp_path / "voc")
    for a, b in ((data.train, back.train), (data.test, back.test)):
        _same_sets(a, b, atol=0.5, flags=())
        assert torch.equal(b.boxes, b.boxes.round())  # VOC holds whole pixels
        assert torch.equal(b.difficult, a.difficult | a.iscrowd)
    jpeg = fmt.write_voc(data, tmp_path / "jpeg")
    assert jpeg.files[0].name == "trainval.txt" and (tmp_path / "jpeg" / "JPEGImages" / "img1_000.jpg").is_file()
    lossy = load_detection(tmp_path / "jpeg")
    assert torch.equal(lossy.train.boxes, back.train.boxes)
    assert (lossy.train.images.float() - data.train.images.float()).abs().mean() < 6  # JPEG quality 95 on noise


def test_yolo_round_trip_within_float_precision(tmp_path):
    data = _splits()
    written = fmt.write_yolo(data, tmp_path / "yolo")
    config = yaml.safe_load((tmp_path / "yolo" / "data.yaml").read_text())
    assert config["names"] == {0: "cat", 1: "dog", 2: "bird"} and config["nc"] == 3
    assert config["train"] == "images/train" and config["val"] == "images/val"
    assert {n.split(":")[0] for n in written.notes} == {"YOLO has no 'difficult' flag", "YOLO has no 'iscrowd' flag"}
    back = load_detection(tmp_path / "yolo")
    for a, b in ((data.train, back.train), (data.test, back.test)):
        _same_sets(a, b, atol=1e-4, flags=())
    moved = tmp_path / "moved"
    (tmp_path / "yolo").rename(moved)  # an absolute path that no longer exists: the YAML's folder is the root
    assert load_detection(moved).train.names == data.train.names


def test_a_single_box_set_is_written_as_one_split(tmp_path):
    part = _box_set(5, seed=7, integer=True)
    classes = ["background", "a", "b", "c"]
    with pytest.raises(ValueError, match="needs its classes"):
        fmt.write_coco(part, tmp_path / "x")
    for writer in (fmt.write_voc, fmt.write_coco, fmt.write_yolo):
        writer(part, tmp_path / writer.__name__, classes=classes, image_format="png")
        back = load_detection(tmp_path / writer.__name__, test_fraction=0.4)
        assert (len(back.train), len(back.test)) == (3, 2) and back.classes == classes
        merged = sorted(range(5), key=lambda i: (back.train.names + back.test.names)[i])
        together = BoxSet(torch.cat([back.train.images, back.test.images]),
                          torch.cat([back.train.boxes, back.test.boxes]), torch.cat([back.train.labels, back.test.labels]),
                          torch.cat([back.train.offsets[:-1], back.test.offsets + back.train.offsets[-1]]),
                          names=back.train.names + back.test.names).subset(merged)
        _same_sets(part, together, atol=1e-4, flags=())


def test_conversions_between_all_three_formats_keep_the_boxes(tmp_path):
    _write_voc(tmp_path / "voc")
    start = load_detection(tmp_path / "voc")
    previous = tmp_path / "voc"
    for step, to in enumerate(["coco", "yolo", "voc", "yolo", "coco", "voc"]):
        target = tmp_path / f"{step}-{to}"
        written = fmt.convert(previous, target, to, image_format="png")
        assert written.format == to and fmt.find_layout(target)[0] == to
        back = load_detection(target)
        assert back.classes == start.classes
        for a, b in ((start.train, back.train), (start.test, back.test)):
            _same_sets(a, b, atol=1e-4, flags=(), images=False)
            assert (a.images.float() - b.images.float()).abs().max() == 0  # PNG from the second step on
        previous = target
    assert start.train.difficult.any() and not back.train.difficult.any()  # COCO and YOLO have no 'difficult'


def test_writers_refuse_a_folder_that_is_not_empty(tmp_path):
    keep = tmp_path / "out" / "mine.txt"
    keep.parent.mkdir()
    keep.write_text("precious")
    for writer in (fmt.write_voc, fmt.write_coco, fmt.write_yolo):
        with pytest.raises(FileExistsError, match=r"out is not empty \(it holds mine\.txt\)"):
            writer(_splits(), keep.parent)
    with pytest.raises(FileExistsError, match="not empty"):
        fmt.convert("digit-scenes", keep.parent, "coco")
    assert keep.read_text() == "precious" and sorted(p.name for p in keep.parent.iterdir()) == ["mine.txt"]
    with pytest.raises(ValueError, match="to must be one of voc, coco, yolo, got 'csv'"):
        fmt.convert(tmp_path, tmp_path / "new", "csv")


def test_cli_convert_end_to_end(tmp_path, capsys):
    _write_coco(tmp_path / "coco")
    assert main(["data", "convert", str(tmp_path / "coco"), str(tmp_path / "yolo"), "--to", "yolo"]) == 0
    out = capsys.readouterr().out
    assert f"wrote YOLO to {tmp_path / 'yolo'}: 5 images, 5 boxes" in out and "data.yaml" in out
    assert "YOLO holds no instance masks" in out
    source, result = load_detection(tmp_path / "coco"), load_detection(tmp_path / "yolo")
    _same_sets(source.train, result.train, atol=1e-4, flags=(), images=False)
    assert result.classes == source.classes
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "yolo").rglob("*"))
    assert main(["data", "convert", str(tmp_path / "coco"), str(tmp_path / "yolo"), "--to", "voc"]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "yolo").rglob("*")) == before
    assert main(["data", "convert", str(tmp_path / "yolo"), str(tmp_path / "small"), "--to", "voc",
                 "--image-size", "12"]) == 0
    small = load_detection(tmp_path / "small")
    assert small.train.images.shape[-2:] == (12, 12) and "resized to 12x12" in capsys.readouterr().out
    assert main(["data", "convert", str(tmp_path / "nowhere"), str(tmp_path / "z"), "--to", "coco"]) == 2
    assert "does not exist" in capsys.readouterr().err
