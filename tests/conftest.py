"""Shared fixtures. Tests run on the CPU with a fixed small thread count."""

from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def seed() -> int:
    torch.manual_seed(0)
    return 0


@pytest.fixture
def tmp_run_dir(tmp_path):
    return tmp_path / "run"
