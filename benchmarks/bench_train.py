"""Training speed and the default recipe's accuracy, in one run.

    python benchmarks/bench_train.py                 # all three parts, CPU or the GPU
    python benchmarks/bench_train.py --parts lenet   # only part 1

1. **Default recipe.** ``convatlas train lenet5`` with no other arguments on the embedded digits
   (the ``lenet5_digits`` recipe its card names, the thread count the loop times for itself),
   for three seeds: test accuracy (mean of the seeds) and training seconds (the goal: >= 98.5%
   in under 30 s on 2 CPU cores). ``lenet5_modern`` alongside.
2. **Training images/s.** The convatlas trainer on convatlas networks against the torchvision
   network of the same architecture in a plain PyTorch loop (no augmentation on either side,
   the same batch size, input size, optimiser; on CUDA both use bf16 autocast and
   channels_last). The images are random, held in memory. Each side counts its best of three
   timed rounds (epochs of ``--steps`` steps for the trainer) after a warm-up: on a shared
   machine a single round of 8 steps varied by +-30%.
3. **Augmentation cost per epoch.** CIFAR-style random crop (pad 4) + horizontal flip +
   normalisation of 10,000 32x32 RGB images: convatlas's batched augmentation on the device
   against torchvision's ``DataLoader`` with per-image transforms (0 and 2 workers).

Figures go to ``benchmarks/results/bench_train-<device>.json``; ratios are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import pickle
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import convatlas
from convatlas.data import AugmentConfig, BatchPipeline, EpochBatches
from convatlas.train import NO_DISTORTIONS, train

RESULTS = Path(__file__).resolve().parent / "results"
SPEED_MODELS = ["resnet18", "mobilenet_v2", "squeezenet1_1", "densenet121"]


def _quiet_train(model: str, **kwargs) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):
        return train(model, quiet=True, **kwargs).summary


# --------------------------------------------------------------------------------------------
# 1. the default recipe


def bench_default_recipe(models: list[str], seeds: list[int], workdir: Path) -> dict:
    results = {}
    for model in models:
        runs = []
        for seed in seeds:
            s = _quiet_train(model, seed=seed, out=workdir / f"{model}-seed{seed}")
            runs.append({"seed": seed, "test_acc": s["test_acc"], "train_seconds": s["train_seconds"],
                         "wall_seconds": s["wall_seconds"], "images_per_second": s["images_per_second"],
                         "recipe": s["recipe"], "threads": s["threads"], "threads_source": s["source"]})
            print(f"  {model} seed {seed}: test accuracy {s['test_acc']:.2%}, {s['train_seconds']:.1f} s training "
                  f"({s['images_per_second']:,.0f} img/s, recipe {s['recipe']}, {s['threads']} threads "
                  f"{s['source']}), {s['wall_seconds']:.1f} s in all", flush=True)
        mean_acc = statistics.mean(r["test_acc"] for r in runs)
        mean_time = statistics.mean(r["train_seconds"] for r in runs)
        results[model] = {"runs": runs, "mean_test_acc": mean_acc, "mean_train_seconds": mean_time,
                          "max_train_seconds": max(r["train_seconds"] for r in runs)}
        print(f"{model}: mean test accuracy {mean_acc:.2%} over seeds {seeds}, mean {mean_time:.1f} s training "
              f"(goal: >= 98.50% in < 30 s)", flush=True)
        plain = [_plain_loop_digits(model, seed) for seed in seeds]
        results[model]["plain_loop"] = {
            "recipe": "Adam lr 1e-3, batch 64, 15 epochs, no augmentation, same padding and standardisation",
            "runs": plain, "mean_test_acc": statistics.mean(r["test_acc"] for r in plain),
            "mean_train_seconds": statistics.mean(r["train_seconds"] for r in plain)}
        print(f"{model} in a plain PyTorch loop (baseline): mean test accuracy "
              f"{results[model]['plain_loop']['mean_test_acc']:.2%}, mean "
              f"{results[model]['plain_loop']['mean_train_seconds']:.1f} s training; convatlas - plain = "
              f"{100 * (mean_acc - results[model]['plain_loop']['mean_test_acc']):+.2f} points", flush=True)
    return results


def _plain_loop_digits(model_name: str, seed: int, epochs: int = 15, batch: int = 64) -> dict:
    """The baseline of part 1: the same network and data in the textbook PyTorch loop (Adam, no
    augmentation), the images padded to 32x32 and standardised as the trainer does."""
    from convatlas.data import load_dataset

    data = load_dataset("digits")

    def prep(images: torch.Tensor) -> torch.Tensor:
        x = F.pad(images.float() / 255.0, (2, 2, 2, 2))
        return (x - data.mean[0]) / data.std[0]

    x_train, y_train = prep(data.train.images), data.train.labels
    x_test, y_test = prep(data.test.images), data.test.labels
    torch.manual_seed(seed)
    model = convatlas.create_model(model_name, num_classes=10)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x_train))
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        acc = (model(x_test).argmax(1) == y_test).float().mean().item()
    print(f"  {model_name} plain loop seed {seed}: test accuracy {acc:.2%}, {seconds:.1f} s training", flush=True)
    return {"seed": seed, "test_acc": acc, "train_seconds": seconds}


# --------------------------------------------------------------------------------------------
# 2. images/s against torchvision in a plain loop


def _write_random_cifar(folder: Path, n_train: int, n_test: int, seed: int = 0) -> None:
    rng = np.random.RandomState(seed)
    base = folder / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)
    per = n_train // 5
    for i in range(1, 6):
        with open(base / f"data_batch_{i}", "wb") as f:
            pickle.dump({"data": rng.randint(0, 256, (per, 3072), dtype=np.uint8),
                         "labels": list(rng.randint(0, 10, per))}, f)
    with open(base / "test_batch", "wb") as f:
        pickle.dump({"data": rng.randint(0, 256, (n_test, 3072), dtype=np.uint8),
                     "labels": list(rng.randint(0, 10, n_test))}, f)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)


def _plain_loop_images_per_second(model: torch.nn.Module, device: torch.device, image_size: int, batch_size: int,
                                  steps: int, warmup: int, cuda_tricks: bool, rounds: int = 3) -> float:
    """The loop everybody writes: batches already in memory, SGD, cross-entropy. The best of
    ``rounds`` timings of ``steps`` steps each (a busy machine only ever slows a round down)."""
    model.to(device).train()
    if cuda_tricks:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch_size, 3, image_size, image_size, device=device)
    if cuda_tricks:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch_size,), device=device)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda_tricks else contextlib.nullcontext

    def run(n: int) -> float:
        """Seconds for ``n`` steps."""
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(n):
            with autocast():
                out = model(x)
            if isinstance(out, tuple):
                out = out[0]
            loss = F.cross_entropy(out.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    run(warmup)
    return max(steps * batch_size / run(steps) for _ in range(rounds))


def bench_speed(models: list[str], device: torch.device, image_size: int, batch_size: int, steps: int,
                workdir: Path) -> dict:
    import torchvision

    data_dir = workdir / "random_cifar"
    _write_random_cifar(data_dir, n_train=steps * batch_size, n_test=batch_size)
    epochs = 4  # the first warms up; the best of the other three counts, as for the plain loop
    on_cuda = device.type == "cuda"
    results = {}
    for name in models:
        card = convatlas.model_card(name)
        size = max(image_size, convatlas.min_input_size(name))
        _quiet_train(
            name, data="cifar10", data_root=str(data_dir), image_size=size, fit="resize", epochs=epochs,
            batch_size=batch_size, lr=0.01, schedule="constant", device=str(device), out=workdir / f"speed-{name}",
            eval_every=epochs, download=False, threads=torch.get_num_threads(), **NO_DISTORTIONS,
        )  # the same thread count as the plain loop: this part compares the loops, not thread choices
        metrics = [json.loads(line) for line in (workdir / f"speed-{name}" / "metrics.jsonl").read_text().splitlines()]
        ours = max(row["images_per_second"] for row in metrics[1:])  # after the warm-up epoch
        torch.manual_seed(0)
        builder = getattr(torchvision.models, card.torchvision)
        kwargs = {"aux_logits": False, "init_weights": True} if card.torchvision == "googlenet" else {}
        reference = builder(num_classes=10, **kwargs)
        theirs = _plain_loop_images_per_second(reference, device, size, batch_size, steps, warmup=3,
                                               cuda_tricks=on_cuda, rounds=epochs - 1)
        results[name] = {"torchvision": card.torchvision, "image_size": size, "batch_size": batch_size,
                         "convatlas_images_per_second": ours, "torchvision_plain_loop_images_per_second": theirs,
                         "ratio": ours / theirs}
        print(f"  {name:<14} at {size}x{size}, batch {batch_size}: convatlas trainer {ours:8,.0f} img/s, "
              f"torchvision {card.torchvision} in a plain loop {theirs:8,.0f} img/s, ratio {ours / theirs:.2f}",
              flush=True)
    return results


# --------------------------------------------------------------------------------------------
# 3. augmentation cost per epoch


def bench_augmentation(device: torch.device, n: int = 10_000, batch_size: int = 256) -> dict:
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms
    from PIL import Image

    rng = np.random.RandomState(0)
    images = torch.from_numpy(rng.randint(0, 256, (n, 3, 32, 32), dtype=np.uint8))
    labels = torch.from_numpy(rng.randint(0, 10, n)).long()
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)

    pipeline = BatchPipeline(mean=mean, std=std, channels=3, num_classes=10, device=device,
                             augment=AugmentConfig(crop_padding=4, hflip=True))
    on_device, on_device_labels = images.to(device), labels.to(device)
    batches = EpochBatches(n, batch_size)

    def batched_epoch(epoch: int) -> None:
        for idx in batches.epoch(epoch):
            idx = idx.to(device)
            x, _ = pipeline.train_batch(on_device[idx], on_device_labels[idx])
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    class PilImages(Dataset):  # what torchvision.datasets.CIFAR10 hands its transforms
        def __init__(self) -> None:
            self.hwc = images.permute(0, 2, 3, 1).numpy()
            self.transform = transforms.Compose([
                transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                transforms.Normalize(mean, std),
            ])

        def __len__(self) -> int:
            return n

        def __getitem__(self, i: int):
            return self.transform(Image.fromarray(self.hwc[i])), int(labels[i])

    def loader_epoch(workers: int) -> None:
        loader = DataLoader(PilImages(), batch_size=batch_size, shuffle=True, drop_last=True, num_workers=workers,
                            pin_memory=device.type == "cuda", persistent_workers=False)
        for x, y in loader:
            x = x.to(device, non_blocking=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def timed(fn, *args) -> float:
        fn(*args)  # warm-up epoch
        start = time.perf_counter()
        fn(*args)
        return time.perf_counter() - start

    ours = timed(batched_epoch, 1)
    result = {"images": n, "batch_size": batch_size, "convatlas_batched_seconds": ours}
    print(f"  convatlas batched augmentation on {device}: {ours:.3f} s per epoch of {n:,} images", flush=True)
    for workers in (0, 2):
        theirs = timed(loader_epoch, workers)
        result[f"torchvision_dataloader_{workers}_workers_seconds"] = theirs
        result[f"speedup_vs_{workers}_workers"] = theirs / ours
        print(f"  torchvision DataLoader, per-image transforms, {workers} workers: {theirs:.3f} s per epoch "
              f"-> convatlas is {theirs / ours:.1f}x faster", flush=True)
    return result


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=["lenet", "speed", "augment"],
                        choices=["lenet", "speed", "augment"])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (the goal is stated for 2 cores)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--lenet-models", nargs="+", default=["lenet5", "lenet5_modern"])
    parser.add_argument("--speed-models", nargs="+", default=SPEED_MODELS)
    parser.add_argument("--image-size", type=int, help="input side for part 2 (default: 64 on CPU, 224 on CUDA)")
    parser.add_argument("--batch-size", type=int, help="batch for part 2 (default: 32 on CPU, 128 on CUDA)")
    parser.add_argument("--steps", type=int, help="measured steps for part 2 (default: 8 on CPU, 50 on CUDA)")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    on_cuda = device.type == "cuda"
    report: dict = {
        "device": torch.cuda.get_device_name(device) if on_cuda else f"cpu ({args.threads} threads)",
        "torch": str(torch.__version__), "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    with tempfile.TemporaryDirectory(prefix="convatlas-bench-") as tmp:
        workdir = Path(tmp)
        if "lenet" in args.parts:
            print("1. default recipe on the embedded digits (`convatlas train MODEL`, no other arguments)", flush=True)
            report["default_recipe"] = bench_default_recipe(args.lenet_models, args.seeds, workdir)
        if "speed" in args.parts:
            size = args.image_size or (224 if on_cuda else 64)
            batch = args.batch_size or (128 if on_cuda else 32)
            steps = args.steps or (50 if on_cuda else 8)
            print(f"2. training images/s on {report['device']}: convatlas trainer vs torchvision in a plain loop",
                  flush=True)
            report["speed"] = bench_speed(args.speed_models, device, size, batch, steps, workdir)
        if "augment" in args.parts:
            print("3. augmentation cost per epoch (crop 4 + flip + normalise, 10,000 32x32 RGB images)", flush=True)
            report["augmentation"] = bench_augmentation(device)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"bench_train-{'cuda' if on_cuda else 'cpu'}.json"
    previous = json.loads(out.read_text()) if out.is_file() else {}
    previous.update(report)
    tmp_out = out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(previous, indent=2) + "\n")
    tmp_out.replace(out)
    print(f"figures written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
