"""Several processes (``torchrun``): set-up, and the few collectives the loop needs.

Under ``torchrun`` every process runs the same loop on its share of each batch; the gradients are
averaged by DistributedDataParallel, and the loop itself only needs to agree on when to stop, to
add up its running sums, and to name the run directory once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["Dist", "setup_distributed", "teardown_distributed", "any_rank", "all_sum", "broadcast", "gather"]


@dataclass
class Dist:
    """Where this process stands: ``rank`` of ``world_size``; ``created`` when we started the group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    created: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def setup_distributed(device_request: str) -> Dist:
    """Join the process group ``torchrun`` describes (gloo on CPU, NCCL on GPU); one process otherwise."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Dist()
    use_cuda = device_request != "cpu" and torch.cuda.is_available()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    created = False
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        created = True
    return Dist(dist.get_rank(), dist.get_world_size(), local, created)


def teardown_distributed(env: Dist) -> None:
    if env.created and dist.is_initialized():
        dist.destroy_process_group()


def any_rank(flag: bool, env: Dist, device: torch.device) -> bool:
    """True when ``flag`` is true on any rank (a collective: every rank must call it)."""
    if not env.active:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def all_sum(t: torch.Tensor, env: Dist) -> torch.Tensor:
    """``t`` summed over the ranks (in place)."""
    if env.active:
        dist.all_reduce(t)
    return t


def broadcast(value: Any, env: Dist) -> Any:
    """Rank 0's ``value`` on every rank."""
    if not env.active:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def gather(value: Any, env: Dist) -> list[Any]:
    """Every rank's ``value``, in rank order."""
    if not env.active:
        return [value]
    values: list[Any] = [None] * env.world_size
    dist.all_gather_object(values, value)
    return values
