"""Which examples each training step sees.

Epoch ``e`` visits the training set in a permutation drawn from a generator seeded with
``(seed, e)`` alone, so any epoch's order can be recomputed after a restart, and every rank of
a distributed run draws the same one. The permutation is cut into global batches of
``batch_size``; with ``world_size`` ranks, rank ``r`` takes positions ``r, r + W, r + 2W, ...``
of each global batch, so the ranks' shares of global batch ``i`` together are exactly the
examples a single process would see in its batch ``i``.
The incomplete last batch is dropped, so every rank takes the same number of steps.
"""

from __future__ import annotations

from typing import Iterator

import torch

__all__ = ["EpochBatches"]


class EpochBatches:
    """Index batches for one rank: ``EpochBatches(n, batch_size, seed=..., rank=..., world_size=...)``."""

    def __init__(self, num_examples: int, batch_size: int, *, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if batch_size % world_size:
            raise ValueError(
                f"batch_size {batch_size} (the global batch) must be divisible by the {world_size} processes"
            )
        if num_examples < batch_size:
            raise ValueError(
                f"batch_size {batch_size} is larger than the training set ({num_examples} images); "
                f"use a batch size of at most {num_examples}"
            )
        self.num_examples, self.batch_size = num_examples, batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.steps_per_epoch = num_examples // batch_size
        self.local_batch = batch_size // world_size

    def permutation(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % (2**63))
        return torch.randperm(self.num_examples, generator=generator)

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[torch.Tensor]:
        """This rank's index batches of ``epoch``, from step ``start_step`` on."""
        used = self.permutation(epoch)[: self.steps_per_epoch * self.batch_size]
        mine = used.view(self.steps_per_epoch, self.batch_size)[:, self.rank:: self.world_size]
        for step in range(start_step, self.steps_per_epoch):
            yield mine[step]
