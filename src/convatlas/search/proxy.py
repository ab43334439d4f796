"""A trial's proxy training: a short run of the engine on a split of the *training* images.

The search never sees the test images: ``val_size`` training images (a stratified, seeded split)
score each trial, ``train_size`` others train it, at ``image_size`` pixels for ``epochs`` epochs
with the loop's one-cycle SGD. The defaults (3,000 / 1,000 digits at 14 px, 2 epochs of batches of
32 at peak lr 0.2) train a member of the ``mini`` space in about 2-3 s on two cores to 75-90%
validation accuracy (1 epoch at batch 64 and lr 0.1: 35-40%, too little to rank by). The thread count is fixed (``threads``), so a trial trained twice
gives the same numbers to the last bit -- a resumed search depends on it. Each trial's run
directory keeps its config, metrics and summary; its checkpoints are removed (a few hundred
trials would otherwise keep a few hundred megabytes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import shutil
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from convatlas.analysis import summary as analyse
from convatlas.data.augment import AugmentConfig
from convatlas.data.datasets import DatasetSplits, channel_stats, load_dataset, stratified_split
from convatlas.engine import Dist, LoopConfig, fit, runtime
from convatlas.search.network import build_network
from convatlas.tasks.classification import ClassificationData, ClassificationTask

__all__ = ["ProxyConfig", "proxy_splits", "evaluate_genotype", "evaluate_network", "cost"]


@dataclass(frozen=True)
class ProxyConfig:
    """How a trial is trained: ``data`` (a classification dataset), its training images split
    into ``train_size`` to train on and ``val_size`` to score on (seed ``split_seed``), resized to
    ``image_size``; ``epochs`` of SGD at peak ``lr`` with batches of ``batch_size`` on
    ``threads`` CPU threads (fixed: the result must not depend on a timing)."""

    data: str = "digits"
    image_size: int = 14
    epochs: float = 2.0
    train_size: int = 3000
    val_size: int = 1000
    split_seed: int = 0
    batch_size: int = 32
    lr: float = 0.2
    weight_decay: float = 5e-4
    threads: int = 2
    device: str = "cpu"
    holdout: str = "val"  # what scores a trial: "val" (held-out training images) or "test" (the test split)

    def __post_init__(self) -> None:
        for name in ("image_size", "train_size", "val_size", "batch_size", "threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"proxy {name} must be a positive integer, got {value!r}")
        if not self.epochs > 0:
            raise ValueError(f"proxy epochs must be positive, got {self.epochs}")
        if not self.lr > 0:
            raise ValueError(f"proxy lr must be positive, got {self.lr}")
        if self.holdout not in ("val", "test"):
            raise ValueError(f"proxy holdout must be val or test, got {self.holdout!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "ProxyConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown proxy setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return cls(**values)


@lru_cache(maxsize=8)
def proxy_splits(data: str, image_size: int, train_size: int, val_size: int, split_seed: int,
                 holdout: str = "val") -> DatasetSplits:
    """The proxy's train and validation images, both drawn from ``data``'s training split (with
    ``holdout="test"``, the test split in place of the validation images)."""
    full = load_dataset(data, image_size=image_size)
    n = len(full.train)
    if holdout == "test":  # the test split scores: no training image is held out
        if train_size > n:
            raise ValueError(f"the proxy asks for {train_size} training images, but {full.name} has {n}")
        keep, val = np.arange(n), np.arange(0)
    else:
        if train_size + val_size > n:
            raise ValueError(f"the proxy asks for {train_size} training + {val_size} validation images, but "
                             f"{full.name} has {n} training images; lower --train-size or --val-size")
        keep, val = stratified_split(full.train.labels.numpy(), val_size / n, seed=split_seed)
        val = val[:val_size]
    keep = torch.from_numpy(keep)[torch.randperm(len(keep), generator=torch.Generator().manual_seed(split_seed))]
    train = full.train.subset(keep[:train_size].sort().values)
    mean, std = channel_stats(train.images)
    scored = full.test if holdout == "test" else full.train.subset(val)
    return DatasetSplits(f"{full.name} (proxy)", train, scored, list(full.classes), mean, std,
                         full.source, [f"{train_size} training images of the training split, scored on "
                                       f"{'the test split' if holdout == 'test' else f'{len(val)} others'}"])


def cost(model: torch.nn.Module, in_channels: int, image_size: int) -> tuple[int, int]:
    """(MACs per image, parameters) from the meta-device analysis: free, nothing runs."""
    report = analyse(model, (in_channels, image_size, image_size), memory=False)
    return int(report.total_macs), sum(p.numel() for p in model.parameters())


def evaluate_genotype(genotype: Mapping[str, Any], proxy: ProxyConfig, run_dir: str | os.PathLike, *,
                      seed: int = 0, title: str = "") -> dict[str, Any]:
    """Train ``genotype``'s network as ``proxy`` says into ``run_dir``; its validation accuracy and
    loss, final training loss, MACs, parameters and seconds."""
    return evaluate_network(lambda classes, channels: build_network(genotype, num_classes=classes, in_channels=channels),
                            proxy, run_dir, seed=seed, title=title, model_name="nas",
                            variant_args={"genotype": dict(genotype)})


def evaluate_network(build: Callable[[int, int], torch.nn.Module], proxy: ProxyConfig, run_dir: str | os.PathLike, *,
                     seed: int = 0, title: str = "", model_name: str = "nas",
                     variant_args: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Train ``build(num_classes, in_channels)`` as ``proxy`` says into ``run_dir`` (see
    :func:`evaluate_genotype`)."""
    start = time.perf_counter()
    splits = proxy_splits(proxy.data, proxy.image_size, proxy.train_size, proxy.val_size, proxy.split_seed,
                          proxy.holdout)
    channels = splits.in_channels
    data = ClassificationData(splits, tuple(splits.mean), tuple(splits.std), "resize", channels, [])
    task = ClassificationTask(data, AugmentConfig())
    torch.manual_seed(seed)
    model = build(splits.num_classes, channels)
    macs, params = cost(model, channels, proxy.image_size)
    variants = dict(variant_args or {})
    cfg = LoopConfig(epochs=proxy.epochs, batch_size=proxy.batch_size, lr=proxy.lr, weight_decay=proxy.weight_decay,
                     seed=seed, device=proxy.device, threads=proxy.threads, quiet=True)
    run_dir = Path(run_dir)
    env = Dist()
    describe = {"task": "classification", "model_name": model_name, "variant_args": variants,
                "num_classes": splits.num_classes, "classes": list(splits.classes), "in_channels": channels,
                "image_size": proxy.image_size, "mean": list(splits.mean), "std": list(splits.std),
                "dataset": splits.name}
    head = {"task": "classification", "model": model_name, "dataset": splits.name, "params": params, "macs": macs}
    record = {"model": model_name, "variant_args": variants, "proxy": proxy.to_dict(), "seed": seed}
    with contextlib.redirect_stdout(io.StringIO()):  # the search shows its own progress
        result = fit(model, task, cfg, run_dir, env, runtime(cfg, env), describe=describe, summary_head=head,
                     record=record, title=title or "nas trial")
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    s = result.summary
    return {"val_acc": s["test_acc"], "val_loss": s["test_loss"], "train_loss": s.get("train_loss"),
            "train_acc": s.get("train_acc"), "macs": macs, "params": params,
            "train_seconds": s["train_seconds"], "seconds": round(time.perf_counter() - start, 3)}
