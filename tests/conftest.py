"""Shared fixtures. Tests run on the CPU with a fixed small thread count."""

from __future__ import annotations

import os

import pytest
import torch

# Under pytest-xdist each worker gets its share of the cores: two workers with two threads each on
# two cores oversubscribe the CPU, and PyTorch's spinning threads then run many times slower.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // _WORKERS)))


@pytest.fixture
def seed() -> int:
    torch.manual_seed(0)
    return 0


@pytest.fixture
def tmp_run_dir(tmp_path):
    return tmp_path / "run"
