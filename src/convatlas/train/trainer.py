"""The training loop: ``train("lenet5")`` or ``convatlas train lenet5``.

One loop serves one CPU, one GPU and many processes (``torchrun``, DistributedDataParallel):

1. resolve the configuration (defaults < recipe < arguments) and check everything a user can
   get wrong - model, dataset, image size, number of classes, a checkpoint to resume - before
   anything is written;
2. hold the dataset in memory as uint8 on the device; each step takes a batch of indices
   (:class:`~convatlas.data.EpochBatches`), augments the whole batch on the device
   (:class:`~convatlas.data.BatchPipeline`) and takes an optimiser step with the learning rate
   of a pure schedule function (:class:`~convatlas.train.schedules.Schedule`);
3. after each epoch, evaluate on the test split, append a metrics row, and write
   ``checkpoints/last.pt`` (and ``best.pt``) atomically;
4. a non-finite loss stops the run (the last good checkpoint stays); Ctrl-C (SIGINT/SIGTERM)
   stops at the next step boundary and saves a checkpoint from which ``resume`` continues
   exactly - the data order of epoch ``e`` depends on ``(seed, e)`` only and every random state
   is in the checkpoint.

Loss: cross-entropy with optional label smoothing (Szegedy et al. 2016, arXiv:1512.00567);
networks with auxiliary classifiers add ``aux_weight`` times each auxiliary loss (GoogLeNet,
Szegedy et al. 2014, arXiv:1409.4842: weight 0.3). Optional exponential moving average of the
weights, ``w_ema <- d w_ema + (1 - d) w`` after every step (Polyak & Juditsky 1992).
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from convatlas.data import BatchPipeline, DatasetSplits, EpochBatches, dataset_info, load_dataset, resize_images
from convatlas.data.augment import adapt_channels, to_float
from convatlas.data.datasets import UnknownDatasetError, channel_stats
from convatlas.registry import InputTooSmallError, create_model, min_input_size, model_card
from convatlas.train import rundir
from convatlas.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from convatlas.train.config import RESUME_OVERRIDABLE, TrainConfig, load_recipe
from convatlas.train.schedules import Schedule

__all__ = ["train", "TrainResult", "TrainingDiverged", "StepInfo", "evaluate_arrays", "compute_loss"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class StepInfo:
    """What an ``on_step`` callback sees after each optimiser step."""

    epoch: int  # the epoch being trained (0-based)
    step_in_epoch: int  # steps done in it
    global_step: int
    loss: float
    lr: float


@dataclass
class TrainResult:
    """What :func:`train` returns: the run directory, its summary and metrics, and the model
    (eval mode, on the training device; the EMA weights when EMA was on)."""

    run_dir: Path
    summary: dict[str, Any]
    history: list[dict[str, Any]]
    model: nn.Module = field(repr=False)
    config: TrainConfig = field(repr=False)

    @property
    def test_acc(self) -> float:
        return float(self.summary["test_acc"])


# --------------------------------------------------------------------------------------------
# Distributed set-up


@dataclass
class _Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    created: bool = False  # we called init_process_group (so we destroy it)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def _setup_distributed(device_request: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    use_cuda = device_request != "cpu" and torch.cuda.is_available()
    created = False
    if not dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if use_cuda:
            torch.cuda.set_device(local)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        created = True
    return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), created)


def _pick_device(request: str, env: _Dist) -> torch.device:
    if request == "auto":
        return torch.device(f"cuda:{env.local_rank}" if torch.cuda.is_available() else "cpu")
    device = torch.device(request)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for, but PyTorch sees no CUDA GPU; use --device cpu")
        if device.index is None:
            device = torch.device(f"cuda:{env.local_rank}")
    return device


def _all_ranks_any(flag: bool, env: _Dist, device: torch.device) -> bool:
    """True when ``flag`` is true on any rank (a collective: every rank must call it)."""
    if not env.active:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


# --------------------------------------------------------------------------------------------
# Ctrl-C: stop at the next step boundary


class _GracefulStop:
    """SIGINT/SIGTERM set a flag the loop checks after each step; a second signal stops at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> "_GracefulStop":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


# --------------------------------------------------------------------------------------------
# Loss, optimiser, EMA


def compute_loss(output: torch.Tensor | tuple, targets: torch.Tensor, label_smoothing: float = 0.0,
                 aux_weight: float = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of the main logits plus ``aux_weight`` x that of each auxiliary head.

    ``targets`` are class indices or soft targets (N, classes). Returns (loss, main logits).
    """
    if isinstance(output, (tuple, list)):
        main, *aux = output
    else:
        main, aux = output, []
    loss = F.cross_entropy(main.float(), targets, label_smoothing=label_smoothing)
    for head in aux:
        loss = loss + aux_weight * F.cross_entropy(head.float(), targets, label_smoothing=label_smoothing)
    return loss, main


def _param_groups(model: nn.Module, weight_decay: float, decay_norm_and_bias: bool) -> list[dict[str, Any]]:
    """Weight decay on everything, or (``decay_norm_and_bias=False``) only on tensors with 2+
    dimensions: conv and linear weights, not biases or normalisation scales."""
    params = [p for p in model.parameters() if p.requires_grad]
    if decay_norm_and_bias or weight_decay == 0:
        return [{"params": params, "weight_decay": weight_decay}]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = _param_groups(model, cfg.weight_decay, cfg.decay_norm_and_bias)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=cfg.nesterov and cfg.momentum > 0)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))


class _EMA:
    """Exponential moving average of the parameters (buffers are copied)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ema_params = list(self.module.parameters())
        params = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_params, params, 1.0 - self.decay)
        for e, b in zip(self.module.buffers(), model.buffers()):
            e.copy_(b)


# --------------------------------------------------------------------------------------------
# Evaluation


@torch.no_grad()
def evaluate_arrays(model: nn.Module, pipeline: BatchPipeline, images: torch.Tensor, labels: torch.Tensor,
                    num_classes: int, *, batch_size: int = 1000, amp: bool = False,
                    env: _Dist | None = None) -> dict[str, Any]:
    """Top-1, top-5, loss and confusion matrix of ``model`` on uint8 ``images``.

    With several processes each rank evaluates its share (``r::world``) and the sums are added.
    """
    env = env or _Dist()
    device = pipeline.device
    was_training = model.training
    model.eval()
    index = torch.arange(env.rank, len(labels), env.world_size)
    k = min(5, num_classes)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    top1 = torch.zeros((), dtype=torch.int64, device=device)
    top5 = torch.zeros((), dtype=torch.int64, device=device)
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
    for start in range(0, len(index), batch_size):
        idx = index[start:start + batch_size]
        y = labels[idx].to(device)
        x = pipeline.eval_input(images[idx])
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        best = logits.topk(k, dim=1).indices
        top1 += (best[:, 0] == y).sum()
        top5 += (best == y[:, None]).any(dim=1).sum()
        confusion += torch.bincount(y * num_classes + best[:, 0], minlength=num_classes * num_classes)
    sums = torch.stack([loss_sum, top1.double(), top5.double(), torch.tensor(float(len(index)), device=device,
                                                                          dtype=torch.float64)])
    if env.active:
        dist.all_reduce(sums)
        dist.all_reduce(confusion)
    model.train(was_training)
    n = max(float(sums[3]), 1.0)
    return {
        "loss": float(sums[0]) / n,
        "acc": float(sums[1]) / n,
        "top5": float(sums[2]) / n,
        "count": int(sums[3]),
        "confusion": confusion.view(num_classes, num_classes).cpu(),
    }


# --------------------------------------------------------------------------------------------
# Resolving what to train on


def _resolve_config(model: str | None, recipe: str | os.PathLike | None, config: TrainConfig | dict | None,
                    overrides: dict[str, Any]) -> TrainConfig:
    values: dict[str, Any] = {}
    if recipe is not None:
        values.update(load_recipe(recipe))
    if config is not None:
        values.update(config.to_dict() if isinstance(config, TrainConfig) else dict(config))
    values.update(overrides)
    if model is not None:
        values["model"] = model
    cfg = TrainConfig.from_dict(values)
    if not cfg.model:
        raise ValueError("no model given: name one (e.g. train('lenet5'), `convatlas train lenet5`); "
                         "`convatlas list` shows them all")
    return cfg


def _smallest_side(cfg: TrainConfig, num_classes: int | None) -> int | None:
    try:
        return min_input_size(cfg.model, num_classes=num_classes, **cfg.variant_args)
    except ValueError:
        return None  # not traceable on the meta device: let the forward pass speak


def _load_data(cfg: TrainConfig) -> tuple[DatasetSplits, list[str], str]:
    """Load the dataset at the size the model can take; check size and classes first.

    Returns the splits, notes for the user, and how images were fitted ("resize" or "pad")."""
    card = model_card(cfg.model)  # unknown model: UnknownModelError with close names
    notes: list[str] = []
    try:
        info = dataset_info(cfg.data)
    except UnknownDatasetError:
        info = None  # an ImageFolder path (load_dataset checks it)
    smallest = _smallest_side(cfg, cfg.num_classes or (info.num_classes if info else None))
    if cfg.image_size is not None and smallest is not None and cfg.image_size < smallest:
        raise InputTooSmallError(
            f"image_size {cfg.image_size} is too small for {cfg.model}: it needs images of at least "
            f"{smallest}x{smallest} pixels (use --image-size {smallest} or larger)"
        )
    size = cfg.image_size
    if size is None and info is not None and smallest is not None and info.size < smallest:
        size = smallest
    raised = cfg.image_size is None and size is not None
    fit = cfg.fit if cfg.fit != "auto" else ("pad" if raised else "resize")
    splits = load_dataset(cfg.data, root=cfg.data_root, image_size=size, download=cfg.download, fit=fit)
    h, w = (info.size, info.size) if raised and info is not None else splits.image_size
    if cfg.image_size is None and smallest is not None and min(splits.image_size) < smallest:  # ImageFolder
        size, raised = smallest, True
        fit = cfg.fit if cfg.fit != "auto" else "pad"
        splits.train.images = resize_images(splits.train.images, size, fit)
        splits.test.images = resize_images(splits.test.images, size, fit)
    if raised:
        how = "padded (centred on black)" if fit == "pad" else "resized"
        notes.append(f"{splits.name} images are {h}x{w}; {cfg.model} needs at least {smallest}x{smallest}: "
                     f"{how} to {size}x{size} (choose with --image-size and --fit)")
    if cfg.num_classes is not None and cfg.num_classes != splits.num_classes:
        raise ValueError(
            f"num_classes={cfg.num_classes} differs from the {splits.num_classes} classes of dataset "
            f"{splits.name!r}; leave num_classes out to use the dataset's"
        )
    channels = card.input_size[0]
    if splits.in_channels != channels:
        notes.append(f"{splits.name} has {splits.in_channels}-channel images; {cfg.model} takes {channels}: "
                     f"{'repeated to RGB' if channels == 3 else 'converted to grey (BT.601 luma)'}")
    return splits, notes, fit


def _model_stats(splits: DatasetSplits, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per model-channel mean/std: the dataset's, repeated for grey->RGB, recomputed for RGB->grey."""
    if splits.in_channels == channels:
        return splits.mean, splits.std
    if splits.in_channels == 1:
        return splits.mean * channels, splits.std * channels
    grey = adapt_channels(to_float(splits.train.images[:10000]), channels)
    return channel_stats((grey * 255).round().to(torch.uint8))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


# --------------------------------------------------------------------------------------------
# Display


class _Display:
    """A rich progress bar (loss, accuracy, lr, images/s), or one log line per epoch (quiet)."""

    def __init__(self, enabled: bool, quiet: bool, total_epochs: int, steps_per_epoch: int) -> None:
        self.enabled, self.quiet = enabled, quiet
        self.total_epochs, self.steps = total_epochs, steps_per_epoch
        self.progress = None
        self.task = None
        self.last_update = 0.0

    def __enter__(self) -> "_Display":
        if self.enabled and not self.quiet:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]:.4f}  acc {task.fields[acc]:6.2%}  "
                           "lr {task.fields[lr]:.3g}  {task.fields[ips]:,.0f} img/s"),
                TimeRemainingColumn(), transient=True,
            )
            self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)

    def log(self, text: str) -> None:
        if not self.enabled:
            return
        if self.progress is not None:
            self.progress.console.print(text)
        else:
            print(text, flush=True)

    def start_epoch(self, epoch: int, done: int) -> None:
        if self.progress is None:
            return
        description = f"epoch {epoch + 1}/{self.total_epochs}"
        if self.task is None:
            self.task = self.progress.add_task(description, total=self.steps, completed=done,
                                               loss=0.0, acc=0.0, lr=0.0, ips=0.0)
        else:
            self.progress.reset(self.task, total=self.steps, completed=done, description=description)

    def step(self, done: int, loss_fn: Callable[[], tuple[float, float]], lr: float, ips: float) -> None:
        if self.progress is None:
            return
        now = time.perf_counter()
        if now - self.last_update < 0.2 and done < self.steps:
            return
        self.last_update = now
        loss, acc = loss_fn()
        self.progress.update(self.task, completed=done, loss=loss, acc=acc, lr=lr, ips=ips)


# --------------------------------------------------------------------------------------------
# The loop


def train(
    model: str | None = None,
    *,
    recipe: str | os.PathLike | None = None,
    config: TrainConfig | dict | None = None,
    out: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    on_step: Callable[[StepInfo], None] | None = None,
    **overrides: Any,
) -> TrainResult:
    """Train a registered network and write a run directory.

    ``train("lenet5")`` trains LeNet-5 on the embedded digits with the default recipe. Keyword
    arguments are :class:`TrainConfig` keys (``epochs=5``, ``data="cifar10"``, ``lr=0.1`` ...);
    ``recipe`` is a YAML file of such keys (arguments win over it). ``out`` is the run directory
    (default ``runs/<model>-<data>-<time>``); ``resume`` continues the run in that directory from
    its last checkpoint (only ``epochs``, ``iterations`` and display settings may change).
    Under ``torchrun`` each process trains on its share of every batch (DistributedDataParallel)
    and only rank 0 writes.
    """
    run_start = time.perf_counter()
    checkpoint: dict[str, Any] | None = None
    if resume is not None:
        run_dir = Path(resume)
        if out is not None and Path(out) != run_dir:
            raise ValueError(f"resume={str(run_dir)!r} continues that run in place; do not also give out={str(out)!r}")
        if not (run_dir / rundir.CONFIG).is_file() or not (run_dir / rundir.LAST).is_file():
            raise FileNotFoundError(
                f"no run to resume in {run_dir}: expected {run_dir / rundir.CONFIG} and {run_dir / rundir.LAST}"
            )
        checkpoint = load_checkpoint(run_dir / rundir.LAST, expect_model=model)
        bad = [k for k in overrides if k not in RESUME_OVERRIDABLE]
        if bad or recipe is not None or config is not None:
            raise ValueError(
                f"a resumed run keeps its configuration; only {', '.join(RESUME_OVERRIDABLE)} may change "
                f"(got {', '.join(bad) or 'a recipe/config'})"
            )
        cfg = TrainConfig.from_dict({**checkpoint["config"], **overrides})
    else:
        cfg = _resolve_config(model, recipe, config, overrides)

    env = _setup_distributed(cfg.device)
    try:
        return _train(cfg, env, out, checkpoint, Path(resume) if resume is not None else None, on_step, run_start)
    finally:
        if env.created and dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg: TrainConfig, env: _Dist, out: Any, checkpoint: dict[str, Any] | None, resume_dir: Path | None,
           on_step: Callable[[StepInfo], None] | None, run_start: float) -> TrainResult:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = _pick_device(cfg.device, env)
    on_cuda = device.type == "cuda"
    amp = on_cuda if cfg.amp is None else (cfg.amp and on_cuda)
    channels_last = on_cuda if cfg.channels_last is None else cfg.channels_last
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif on_cuda:
        torch.backends.cudnn.benchmark = True

    # --- everything a user can get wrong is checked before anything is written
    splits, notes, fit = _load_data(cfg)
    card = model_card(cfg.model)
    channels = card.input_size[0]
    num_classes = splits.num_classes
    image_size = splits.image_size[0]
    cfg = cfg.replace(model=card.name, num_classes=num_classes, fit=fit,
                      image_size=image_size if splits.image_size[0] == splits.image_size[1] else cfg.image_size)
    mean, std = _model_stats(splits, channels)
    if checkpoint is not None and (checkpoint["num_classes"] != num_classes or
                                   list(checkpoint["classes"]) != list(splits.classes)):
        raise CheckpointError(f"the checkpoint's classes ({checkpoint['num_classes']}) do not match the dataset's "
                              f"({num_classes}); was the dataset changed?")

    _seed_everything(cfg.seed)
    net = create_model(cfg.model, num_classes=num_classes, **cfg.variant_args)
    if checkpoint is not None:
        try:
            net.load_state_dict(checkpoint["model"])
        except RuntimeError as exc:
            raise CheckpointError(f"the checkpoint's weights do not fit {cfg.model}: {str(exc).splitlines()[0]}") from exc
    torch.manual_seed(cfg.seed * 65537 + env.rank + 1)  # dropout etc.: its own stream per rank
    net.to(device)
    if channels_last:
        net.to(memory_format=torch.channels_last)
    params = sum(p.numel() for p in net.parameters())

    batches = EpochBatches(len(splits.train), cfg.batch_size, seed=cfg.seed, rank=env.rank, world_size=env.world_size)
    steps_per_epoch = batches.steps_per_epoch
    unit = 1 if cfg.iterations else steps_per_epoch  # lengths are in iterations or in epochs
    total_steps = int(cfg.iterations or max(1, round(cfg.epochs * steps_per_epoch)))
    total_epochs = math.ceil(total_steps / steps_per_epoch)
    schedule = Schedule(cfg.schedule, cfg.lr, total_steps, tuple(round(m * unit) for m in cfg.milestones),
                        cfg.gamma, round(cfg.warmup * unit), cfg.min_lr, cfg.onecycle_pct)
    pipeline = BatchPipeline(mean=mean, std=std, channels=channels, num_classes=num_classes, augment=cfg.augment,
                             device=device, seed=cfg.seed * 65537 + env.rank, channels_last=channels_last)
    optimizer = _make_optimizer(net, cfg)
    ema = _EMA(net, cfg.ema_decay) if cfg.ema_decay else None

    # --- state to continue from
    history: list[dict[str, Any]] = []
    epoch, step_in_epoch, global_step = 0, 0, 0
    best = {"test_acc": -1.0, "epoch": None}
    train_seconds = 0.0
    partial = {"loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
    if checkpoint is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        if ema is not None and checkpoint.get("ema") is not None:
            ema.module.load_state_dict(checkpoint["ema"])
        epoch, step_in_epoch = checkpoint["epoch"], checkpoint["step_in_epoch"]
        global_step, history = checkpoint["global_step"], list(checkpoint["history"])
        best, train_seconds, partial = dict(checkpoint["best"]), checkpoint["train_seconds"], dict(checkpoint["partial"])
        rng = checkpoint["rng"]
        mine = rng[env.rank] if env.rank < len(rng) else None
        if mine is not None:
            torch.set_rng_state(mine["torch"])
            pipeline.load_state_dict(mine["pipeline"])
            if on_cuda and mine.get("cuda") is not None:
                torch.cuda.set_rng_state(mine["cuda"], device)
        if len(rng) != env.world_size:
            notes.append(f"resumed with {env.world_size} processes, saved with {len(rng)}: the data order is the "
                         f"same, the augmentation draws are not")

    # --- the run directory (rank 0 names it and writes it)
    if resume_dir is not None:
        run_dir = resume_dir
    else:
        run_dir = rundir.new_run_dir(out, cfg.model, cfg.data) if env.main else None
        if env.active:
            holder = [str(run_dir) if run_dir else None]
            dist.broadcast_object_list(holder, src=0)
            run_dir = Path(holder[0])
    derived = {
        "classes": splits.classes, "in_channels": channels, "data_channels": splits.in_channels,
        "mean": list(mean), "std": list(std), "dataset": splits.name, "params": params,
        "train_images": len(splits.train), "test_images": len(splits.test), "steps_per_epoch": steps_per_epoch,
        "total_steps": total_steps, "world_size": env.world_size, "device": str(device), "amp_bf16": amp,
        "channels_last": channels_last, "torch": str(torch.__version__), "notes": notes,
    }
    if env.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        rundir.write_yaml(run_dir / rundir.CONFIG, {**cfg.to_dict(), "derived": derived})

    # --- wrap for speed and for several processes
    forward_model: nn.Module = net
    if env.active:
        forward_model = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if on_cuda else None)
    if cfg.compile:
        forward_model = torch.compile(forward_model)
    eval_model = ema.module if ema is not None else net

    train_images = splits.train.images.to(device)
    train_labels = splits.train.labels.to(device)

    display = _Display(env.main, cfg.quiet, total_epochs, steps_per_epoch)
    for note in notes:
        display.log(f"note: {note}")
    if env.main:
        display.log(f"training {cfg.model} ({params:,} parameters) on {splits.name} "
                    f"({len(splits.train)} train / {len(splits.test)} test, {channels}x{image_size}x{image_size}) "
                    f"on {device}{f' x{env.world_size}' if env.active else ''}, {total_steps} steps; run dir {run_dir}")

    def payload(status_partial: dict[str, Any]) -> dict[str, Any]:
        state = {"torch": torch.get_rng_state(), "pipeline": pipeline.state_dict(),
                 "cuda": torch.cuda.get_rng_state(device) if on_cuda else None}
        states = [state]
        if env.active:
            states = [None] * env.world_size
            dist.all_gather_object(states, state)
        return {
            "model_name": cfg.model, "variant_args": dict(cfg.variant_args), "num_classes": num_classes,
            "in_channels": channels, "data_channels": splits.in_channels, "image_size": image_size, "fit": fit,
            "classes": list(splits.classes), "mean": list(mean), "std": list(std), "dataset": splits.name,
            "config": cfg.to_dict(), "epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": global_step,
            "model": net.state_dict(), "ema": ema.module.state_dict() if ema is not None else None,
            "optimizer": optimizer.state_dict(), "rng": states, "history": history, "partial": status_partial,
            "best": best, "train_seconds": train_seconds,
        }

    def write_summary(status: str, final: dict[str, Any] | None) -> dict[str, Any]:
        last = history[-1] if history else {}
        images = global_step * cfg.batch_size
        summary = {
            "status": status, "model": cfg.model, "variant_args": dict(cfg.variant_args), "dataset": splits.name,
            "num_classes": num_classes, "image_size": image_size, "params": params,
            "test_acc": (final or last).get("test_acc"), "test_top5": (final or last).get("test_top5"),
            "test_loss": (final or last).get("test_loss"), "train_acc": last.get("train_acc"),
            "train_loss": last.get("train_loss"), "best_test_acc": best["test_acc"] if best["epoch"] else None,
            "best_epoch": best["epoch"], "epochs": round(global_step / steps_per_epoch, 4),
            "iterations": global_step, "train_seconds": round(train_seconds, 3),
            "wall_seconds": round(time.perf_counter() - run_start, 3),
            "images_per_second": round(images / train_seconds, 1) if train_seconds > 0 else None,
            "batch_size": cfg.batch_size, "device": str(device), "world_size": env.world_size, "seed": cfg.seed,
            "ema": cfg.ema_decay is not None, "run_dir": str(run_dir),
        }
        if env.main:
            rundir.write_json(run_dir / rundir.SUMMARY, summary)
        return summary

    def finish_files(title: str) -> None:
        if env.main and history:
            rundir.write_metrics(run_dir, history)
            rundir.plot_curves(run_dir, history, title)

    # --- train
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if amp else contextlib.nullcontext
    check_every = 1 if device.type == "cpu" else 10
    loss_sum = torch.tensor(partial["loss_sum"], dtype=torch.float64, device=device)
    correct = torch.tensor(partial["correct"], dtype=torch.int64, device=device)
    seen, epoch_seconds = partial["seen"], partial["seconds"]
    status = "complete"
    title = f"{cfg.model} on {splits.name}"
    with _GracefulStop() as stop, display:
        while global_step < total_steps:
            forward_model.train()
            display.start_epoch(epoch, step_in_epoch)
            tick = time.perf_counter()
            for idx in batches.epoch(epoch, step_in_epoch):
                lr = schedule(global_step)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                idx = idx.to(device)
                labels = train_labels[idx]
                x, targets = pipeline.train_batch(train_images[idx], labels)
                with autocast():
                    output = forward_model(x)
                loss, logits = compute_loss(output, targets, cfg.label_smoothing, cfg.aux_weight)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.clip_grad_norm:
                    nn.utils.clip_grad_norm_(net.parameters(), cfg.clip_grad_norm)
                optimizer.step()
                if ema is not None:
                    ema.update(net)
                global_step += 1
                step_in_epoch += 1
                loss_sum += loss.detach().double() * len(idx)
                correct += (logits.detach().argmax(1) == labels).sum()
                seen += len(idx)
                if global_step % check_every == 0 or step_in_epoch == steps_per_epoch:
                    bad = not bool(torch.isfinite(loss_sum))
                    halt = _all_ranks_any(bad or stop.requested, env, device) if env.active else (bad or stop.requested)
                    if halt and env.active:
                        bad = _all_ranks_any(bad, env, device)
                    if bad:
                        status = "diverged"
                        break
                    if halt:
                        status = "interrupted"
                        break
                elapsed = epoch_seconds + time.perf_counter() - tick
                display.step(step_in_epoch, lambda: (float(loss_sum) / max(seen, 1), float(correct) / max(seen, 1)),
                             lr, seen * env.world_size / max(elapsed, 1e-9))
                if on_step is not None:
                    on_step(StepInfo(epoch, step_in_epoch, global_step, float(loss.detach()), lr))
                if global_step >= total_steps:
                    break
            if on_cuda:
                torch.cuda.synchronize(device)
            spent = time.perf_counter() - tick
            train_seconds += spent
            epoch_seconds += spent
            if status == "diverged":
                finish_files(title)
                summary = write_summary("diverged", None)
                kept = run_dir / rundir.LAST
                where = (f"the last good checkpoint (epoch {history[-1]['epoch']}) is kept in {kept}"
                         if history else "no epoch had finished, so there is no checkpoint")
                raise TrainingDiverged(
                    f"the training loss became NaN/infinite in epoch {epoch + 1} by step {global_step} "
                    f"(lr {lr:.3g}); training stopped and {where}. Try a lower learning rate (--lr) or "
                    f"gradient clipping (--clip-grad-norm)."
                )
            if status == "interrupted":
                sums = _reduce_sums(loss_sum, correct, env, seen)
                state = payload({"loss_sum": float(loss_sum), "correct": int(correct), "seen": seen,
                                 "seconds": epoch_seconds})
                if env.main:
                    save_checkpoint(run_dir / rundir.LAST, state)
                finish_files(title)
                write_summary("interrupted", None)
                display.log(f"interrupted in epoch {epoch + 1} after {global_step} steps "
                            f"(train loss so far {sums[0]:.4f}); checkpoint saved to {run_dir / rundir.LAST}. "
                            f"Continue with: convatlas train --resume {run_dir}")
                raise KeyboardInterrupt(f"training interrupted; resume with --resume {run_dir}")

            # --- end of an epoch: evaluate, record, checkpoint
            train_loss, train_acc = _reduce_sums(loss_sum, correct, env, seen)
            epoch += 1
            finished = global_step >= total_steps
            row: dict[str, Any] = {
                "epoch": epoch, "step": global_step, "lr": schedule(max(global_step - 1, 0)),
                "train_loss": train_loss, "train_acc": train_acc,
                "test_loss": None, "test_acc": None, "test_top5": None,
                "epoch_seconds": round(epoch_seconds, 4),
                "images_per_second": round(seen * env.world_size / epoch_seconds, 1) if epoch_seconds > 0 else None,
                "train_seconds": round(train_seconds, 4),
            }
            if epoch % cfg.eval_every == 0 or finished:
                result = evaluate_arrays(eval_model, pipeline, splits.test.images, splits.test.labels, num_classes,
                                         batch_size=cfg.eval_batch_size, amp=amp, env=env)
                row.update(test_loss=result["loss"], test_acc=result["acc"], test_top5=result["top5"])
            history.append(row)
            step_in_epoch, seen, epoch_seconds = 0, 0, 0.0
            loss_sum.zero_()
            correct.zero_()
            improved = row["test_acc"] is not None and row["test_acc"] > best["test_acc"]
            if improved:
                best = {"test_acc": row["test_acc"], "epoch": epoch}
            state = payload({"loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0})
            if env.main:
                save_checkpoint(run_dir / rundir.LAST, state)
                if improved:
                    save_checkpoint(run_dir / rundir.BEST, state)
                rundir.write_metrics(run_dir, history)
            test_text = (f"  test loss {row['test_loss']:.4f} acc {row['test_acc']:.2%} top-5 {row['test_top5']:.2%}"
                         if row["test_acc"] is not None else "")
            display.log(f"epoch {epoch}/{total_epochs}  train loss {train_loss:.4f} acc {train_acc:.2%}{test_text}  "
                        f"lr {row['lr']:.3g}  {row['images_per_second'] or 0:,.0f} img/s")

    final = None
    if history and history[-1]["test_acc"] is None:  # (only when training was already complete)
        final = evaluate_arrays(eval_model, pipeline, splits.test.images, splits.test.labels, num_classes,
                                batch_size=cfg.eval_batch_size, amp=amp, env=env)
        final = {"test_acc": final["acc"], "test_top5": final["top5"], "test_loss": final["loss"]}
    finish_files(title)
    summary = write_summary(status, final)
    if env.main:
        display.log(f"test accuracy {summary['test_acc']:.2%} (top-5 {summary['test_top5']:.2%}) after "
                    f"{summary['epochs']:g} epochs, {summary['train_seconds']:.1f} s training "
                    f"({summary['images_per_second'] or 0:,.0f} img/s); run dir {run_dir}, curves {run_dir / rundir.CURVES}")
    eval_model.eval()
    return TrainResult(run_dir, summary, history, eval_model, cfg)


def _reduce_sums(loss_sum: torch.Tensor, correct: torch.Tensor, env: _Dist, seen: int | None = None) -> tuple[float, float]:
    """Mean training loss and accuracy over every rank's examples."""
    sums = torch.stack([loss_sum.double(), correct.double(),
                        torch.tensor(float(seen or 0), dtype=torch.float64, device=loss_sum.device)])
    if env.active:
        dist.all_reduce(sums)
    n = max(float(sums[2]), 1.0)
    return float(sums[0]) / n, float(sums[1]) / n
