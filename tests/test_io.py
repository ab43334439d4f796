"""The one atomic writer: ordinary permissions, durability, all or nothing - and every room that
writes files (train, compare, the atlas, viz) writes through it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch
from torch import nn

import convatlas
from convatlas import _io
from convatlas.registry import ModelCard, register_model, _REGISTRY

TINY = "zz_io_tiny_net"


@pytest.fixture
def umask():
    """Run the test under a chosen umask, and put the old one back."""
    previous = os.umask(0o022)
    os.umask(previous)

    def set_mask(mask: int) -> int:
        os.umask(mask)
        return 0o666 & ~mask

    yield set_mask
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_new_files_get_the_mode_open_would_give(tmp_path, umask, mask):
    expected = umask(mask)
    written = _io.atomic_write_text(tmp_path / "a.txt", "hello")
    with open(tmp_path / "plain.txt", "w") as f:  # what open() gives under the same umask
        f.write("hello")
    assert _mode(written) == expected == _mode(tmp_path / "plain.txt")
    assert written.read_text() == "hello"


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = _io.atomic_write_text(tmp_path / "report.json", "old")

    def broken(f):
        f.write("half of the new")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        _io.atomic_write(target, broken)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_writes_are_synced_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    _io.atomic_write_bytes(tmp_path / "x.bin", b"\x00\x01")
    assert events[:2] == ["fsync", "replace"]  # the file's data reaches the disk before it gets its name
    assert (tmp_path / "x.bin").read_bytes() == b"\x00\x01"


def test_json_keeps_no_nan():
    assert _io.json_safe({"a": float("nan"), "b": [1.0, float("inf")], "c": (2, 3)}) == {"a": None, "b": [1.0, None],
                                                                                            "c": [2, 3]}


@pytest.fixture
def tiny_model():
    card = ModelCard(name=TINY, family="test", paper="(test network)", authors="convatlas tests", year=2024,
                     input_size=(1, 8, 8), dataset="mnist", idea="A tiny network for the file-mode test.")

    @register_model(card)
    def tiny(*, num_classes: int = 10) -> nn.Module:
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, num_classes))

    yield TINY
    _REGISTRY.pop(TINY, None)


@pytest.mark.parametrize("mask", [0o022, 0o007])
def test_every_room_writes_readable_files(tmp_path, umask, tiny_model, mask):
    """train (run directory, checkpoints, curves), compare (charts, tables), the atlas (HTML) and
    viz (figures) all give their files the umask's mode - not mkstemp's 0600."""
    expected = umask(mask)
    from convatlas.compare import build_atlas, compare_published
    from convatlas.train import compare_models, evaluate, plot_confusion, train

    run = train(tiny_model, data="sklearn_digits", epochs=1, batch_size=64, quiet=True, threads=1,
                out=tmp_path / "run").run_dir
    plot_confusion(evaluate(run), run / "confusion.png")
    compare_models([tiny_model], data="sklearn_digits", epochs=1, out=tmp_path / "compare")
    compare_published(tmp_path / "published", names=["resnet18", "vgg16", "alexnet"])
    build_atlas(tmp_path / "atlas", names=["lenet5", "resnet18"])
    convatlas.viz.visualize(run, "features", tmp_path / "viz" / "features.png")
    convatlas.viz.visualize("lenet5", "filters", tmp_path / "viz" / "filters.svg")

    folders = ["run", "compare", "published", "atlas", "viz"]
    for folder in folders:
        files = _files(tmp_path / folder)
        assert files, folder
        wrong = {str(p.relative_to(tmp_path)): oct(_mode(p)) for p in files if _mode(p) != expected}
        assert wrong == {}, f"expected {oct(expected)}"
    assert {p.name for p in _files(tmp_path / "run")} >= {"config.yaml", "summary.json", "metrics.csv", "last.pt",
                                                          "best.pt", "curves.png", "confusion.png"}
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1
