"""`torchrun --nproc-per-node 2 -m convatlas train ...`: DistributedDataParallel with gloo on the
CPU trains, only rank 0 writes, and the result matches one process with the same global batch.

This file is also the script torchrun starts (see the ``__main__`` block): it registers a tiny
network and runs the real ``convatlas train`` command line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from convatlas.train.config import NO_DISTORTIONS

TINY = "zz_ddp_tiny_net"
ARGS = ["--data", "sklearn_digits", "--epochs", "2", "--batch-size", "32", "--lr", "0.05", "--device", "cpu",
        "--threads", "1", "--quiet",
        *[arg for key in NO_DISTORTIONS for arg in ("--" + key.replace("_", "-"), "0")]]


def _register_tiny() -> None:
    from torch import nn

    from convatlas.registry import ModelCard, register_model

    card = ModelCard(name=TINY, family="test", paper="(test network)", authors="convatlas tests", year=2024,
                     input_size=(1, 8, 8), dataset="mnist", idea="A tiny network for the DDP test.")

    @register_model(card)
    def tiny(*, num_classes: int = 10) -> nn.Module:
        return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(8 * 4 * 4, num_classes))


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_two_gloo_processes_train_like_one(tmp_path):
    script = str(Path(__file__).resolve())
    ddp = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", script,
                "--out", str(tmp_path / "ddp"), *ARGS], cwd=tmp_path)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = _run([sys.executable, script, "--out", str(tmp_path / "single"), *ARGS], cwd=tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]

    ddp_summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    single_summary = json.loads((tmp_path / "single" / "summary.json").read_text())
    assert ddp_summary["world_size"] == 2 and single_summary["world_size"] == 1
    assert ddp_summary["test_acc"] > 0.3  # it trains: chance is 0.1
    assert abs(ddp_summary["test_acc"] - single_summary["test_acc"]) <= 0.01
    assert ddp_summary["iterations"] == single_summary["iterations"] == 2 * (1438 // 32)

    # each rank saw its half of every global batch, so the gradients (averaged by DDP) and the
    # weights equal one process's up to the order of floating-point sums
    ddp_weights = torch.load(tmp_path / "ddp" / "checkpoints" / "last.pt", weights_only=True)["model"]
    single_weights = torch.load(tmp_path / "single" / "checkpoints" / "last.pt", weights_only=True)["model"]
    for key, value in single_weights.items():
        assert torch.allclose(ddp_weights[key], value, atol=1e-4, rtol=1e-4), key
    assert not torch.equal(ddp_weights["4.weight"], torch.zeros_like(ddp_weights["4.weight"]))

    # only rank 0 wrote: one run directory, one set of files, nothing under runs/
    files = sorted(p.name for p in (tmp_path / "ddp").iterdir())
    assert files == ["checkpoints", "config.yaml", "curves.png", "metrics.csv", "metrics.jsonl", "summary.json"]
    assert not (tmp_path / "runs").exists()
    rows = (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 2


if __name__ == "__main__":
    torch.set_num_threads(1)
    _register_tiny()
    from convatlas.cli import main

    sys.exit(main(["train", TINY, *sys.argv[1:]]))
