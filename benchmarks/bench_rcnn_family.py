"""The notes' timing chart, measured: R-CNN against Fast R-CNN against Faster R-CNN on the same
scenes and the same backbone - training time and test time per image, with and without the
proposal step, and the mAP each reaches.

    python benchmarks/bench_rcnn_family.py                     # 1,600 training / 200 test scenes, 8 epochs
    python benchmarks/bench_rcnn_family.py --train 400 --epochs 3

All three use :class:`~convatlas.detection.faster_rcnn.MiniBackbone` (stride 4, 64 channels),
trained from scratch in the same plain loop (AdamW, lr 2e-3, batches of 16 images, ``--epochs``
epochs) on the 64x64 digit scenes; selective search (``fast``, k = 10, 25) gives R-CNN's and Fast
R-CNN's proposals, computed once and timed per image.

- **R-CNN**: every proposal warped to 32x32 (2.3 px of context, the paper's 16 at 227) through the
  backbone and a global average pool (64 features); the CNN fine-tuned as an 11-way classifier of
  warped proposals (128 per batch, a quarter positive), then one linear SVM per class and the
  class-specific ridge regressors fitted on its features. Training time counts all three stages.
- **Fast R-CNN**: the backbone once per image, RoI Pool 7x7 on the proposals, fc6/fc7 of 256,
  softmax and box deltas, trained jointly (64 RoIs per image).
- **Faster R-CNN**: ``faster_rcnn_mini``'s RPN and head on the same backbone (RoI Pool here too,
  so the heads are the same as Fast R-CNN's).

Test time per image is the forward pass on the test scenes in batches of 16 (R-CNN: all of an
image's proposals together), plus, "with proposals", selective search's time per image; training
time per image and epoch likewise, "with proposals" adding selective search over the training
scenes (run once, spread over the epochs).
Figures go to ``benchmarks/results/bench_rcnn_family-cpu.json`` and the chart to
``benchmarks/results/rcnn_family_timing.png``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch
from torch import nn

import convatlas
from convatlas._io import atomic_save, write_json
from convatlas.data.boxes import load_detection
from convatlas.detection.faster_rcnn import MiniBackbone
from convatlas.detection.rcnn import RCNN, fast_rcnn, scene_proposals
from convatlas.metrics import mean_average_precision
from convatlas.models.features import FeatureExtractor

RESULTS = Path(__file__).resolve().parent / "results"
BATCH = 16


class _Scenes:
    def __init__(self, train: int, test: int) -> None:
        self.splits = load_detection("digit-scenes", num_train=train, num_test=test)
        self.mean, self.std = self.splits.mean[0], self.splits.std[0]

    def x(self, part, index):
        return (part.images[index].float() / 255 - self.mean) / self.std

    @staticmethod
    def targets(part, index):
        return [{k: v for k, v in part.target(int(i)).items() if k in ("boxes", "labels")} for i in index]


def _batches(n: int, epochs: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for s in range(0, n - BATCH + 1, BATCH):
            yield order[s:s + BATCH]


def _score(preds, part) -> dict:
    coco = mean_average_precision(preds, [part.target(i) for i in range(len(part))], protocol="coco")
    return {"map": float(coco["map"]), "map50": float(coco["map_50"]), "map75": float(coco["map_75"])}


def _test_time(detect, part, count: int) -> tuple[list, float]:
    preds, start = [], time.perf_counter()
    with torch.no_grad():
        for s in range(0, count, BATCH):
            preds.extend(detect(torch.arange(s, min(s + BATCH, count))))
    return preds, (time.perf_counter() - start) / count


def _backbone() -> FeatureExtractor:
    return FeatureExtractor(MiniBackbone(1), ["conv5"])


def run_faster(data: _Scenes, epochs: int, seed: int) -> dict:
    torch.manual_seed(seed)
    model = convatlas.create_model("faster_rcnn_mini", roi_pool="pool")
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    train, test = data.splits.train, data.splits.test
    model.train()
    start = time.perf_counter()
    for index in _batches(len(train), epochs, seed):
        loss = sum(model(data.x(train, index), data.targets(train, index)).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    train_seconds = time.perf_counter() - start
    model.eval()
    preds, test_s = _test_time(lambda i: model(data.x(test, i)), test, len(test))
    return {"train_seconds": train_seconds, "train_s_per_image": train_seconds / (epochs * len(train)),
            "train_s_per_image_with_proposals": train_seconds / (epochs * len(train)),
            "test_s_per_image": test_s, "test_s_per_image_with_proposals": test_s, **_score(preds, test)}


def run_fast(data: _Scenes, epochs: int, seed: int, proposals: dict) -> dict:
    torch.manual_seed(seed)
    model = fast_rcnn(_backbone(), 64, "conv5", num_classes=11)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    train, test = data.splits.train, data.splits.test
    model.train()
    start = time.perf_counter()
    for index in _batches(len(train), epochs, seed):
        loss = sum(model(data.x(train, index), [proposals["train"][i] for i in index],
                         data.targets(train, index)).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    train_seconds = time.perf_counter() - start
    model.eval()
    preds, test_s = _test_time(lambda i: model(data.x(test, i), [proposals["test"][j] for j in i]), test, len(test))
    return {"train_seconds": train_seconds, "train_s_per_image": train_seconds / (epochs * len(train)),
            "train_s_per_image_with_proposals": (train_seconds + proposals["train_seconds"]) / (epochs * len(train)),
            "test_s_per_image": test_s, "test_s_per_image_with_proposals": test_s + proposals["seconds"],
            **_score(preds, test)}


class _WarpedCNN(nn.Module):
    """The backbone on a 32x32 warped region, global average pooled: 64 features."""

    def __init__(self) -> None:
        super().__init__()
        self.net = MiniBackbone(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).mean((2, 3))


def run_rcnn(data: _Scenes, epochs: int, seed: int, proposals: dict) -> dict:
    torch.manual_seed(seed)
    model = RCNN(_WarpedCNN(), 64, 11, size=32)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    train, test = data.splits.train, data.splits.test
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    model.train()
    for index in _batches(len(train), epochs, seed):  # fine-tuning: 128 warped regions, a quarter positive
        regions = [torch.cat([proposals["train"][i], train.target(int(i))["boxes"]]) for i in index]
        labels, _, _ = RCNN.label_regions(regions, data.targets(train, index))
        pos, neg = torch.where(labels > 0)[0], torch.where(labels == 0)[0]
        pick = torch.cat([pos[torch.randperm(len(pos), generator=gen)[:32]],
                          neg[torch.randperm(len(neg), generator=gen)[:128 - min(32, len(pos))]]])
        owner = torch.repeat_interleave(torch.arange(len(index)), torch.tensor([len(r) for r in regions]))
        flat = torch.cat(regions)
        chosen = [flat[pick[owner[pick] == b]] for b in range(len(index))]
        order = torch.cat([pick[owner[pick] == b] for b in range(len(index))])
        loss = model.fine_tune_loss(data.x(train, index), chosen, labels[order])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    feats, labels, positive, best, deltas_t = [], [], [], [], []
    with torch.no_grad():  # features of every training proposal and box, for the SVMs and regressors
        for s in range(0, len(train), BATCH):
            index = torch.arange(s, min(s + BATCH, len(train)))
            targets = data.targets(train, index)
            regions = [torch.cat([proposals["train"][i], t["boxes"]]) for i, t in zip(index.tolist(), targets)]
            lab, iou, matched = RCNN.label_regions(regions, targets, threshold=0.3)
            is_gt = torch.cat([torch.cat([torch.zeros(len(proposals["train"][i]), dtype=torch.bool),
                                          torch.ones(len(t["boxes"]), dtype=torch.bool)])
                               for i, t in zip(index.tolist(), targets)])
            feats.append(model.features_of(data.x(train, index), regions))
            # SVM labels: ground truth positive; proposals at IoU >= 0.3 with a box of a class are not
            # that class's negatives (label kept), those below are negatives of every class (0)
            labels.append(lab)
            positive.append(is_gt)
            best.append(iou)
            flat = torch.cat(regions)
            ok = iou > 0
            d = torch.zeros(len(flat), 4)
            d[ok] = model.box_coder.encode(matched[ok], flat[ok])
            deltas_t.append(d)
    feats, labels, positive, best, deltas_t = (torch.cat(v) for v in (feats, labels, positive, best, deltas_t))
    model.fit_svms(feats, labels, positive)
    regress = torch.where(best >= 0.6, labels, torch.zeros_like(labels))
    # the label of a proposal at IoU >= 0.6 is its box's class (label_regions at 0.3 already set it)
    model.fit_regressors(feats, regress, deltas_t)
    train_seconds = time.perf_counter() - start
    preds, test_s = _test_time(lambda i: model(data.x(test, i), [proposals["test"][j] for j in i]), test, len(test))
    return {"train_seconds": train_seconds, "train_s_per_image": train_seconds / (epochs * len(train)),
            "train_s_per_image_with_proposals": (train_seconds + proposals["train_seconds"]) / (epochs * len(train)),
            "test_s_per_image": test_s, "test_s_per_image_with_proposals": test_s + proposals["seconds"],
            **_score(preds, test)}


def chart(results: dict, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(results)
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    x = range(len(names))
    for ax, phase, label in ((left, "train", "ms per training image and epoch"), (right, "test", "ms per test image")):
        ax.bar([i - 0.2 for i in x], [1000 * results[n][f"{phase}_s_per_image_with_proposals"] for n in names], 0.4,
               label="with the proposal step", color="#999")
        ax.bar([i + 0.2 for i in x], [1000 * results[n][f"{phase}_s_per_image"] for n in names], 0.4,
               label="network only", color="#36c")
        ax.set_xticks(list(x), names)
        ax.set(ylabel=label, title=f"{'training' if phase == 'train' else 'test'} time")
        ax.legend(fontsize=8)
    for ax in (left, right):
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("R-CNN vs Fast R-CNN vs Faster R-CNN, the same backbone, 64x64 digit scenes, 2 CPU cores\n" +
                 ", ".join(f"{n}: mAP@0.5 {results[n]['map50']:.2f}" for n in names), fontsize=9)
    return atomic_save(path, lambda f: fig.savefig(f, format="png", dpi=100))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=1600)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = _Scenes(args.train, args.test)
    train_boxes, train_s = scene_proposals(data.splits.train.images)
    test_boxes, test_s = scene_proposals(data.splits.test.images)
    proposals = {"train": train_boxes, "test": test_boxes, "seconds": test_s, "train_seconds": train_s * len(train_boxes)}
    per_image = sum(len(b) for b in test_boxes) / len(test_boxes)
    print(f"selective search (fast, k = 10, 25): {1000 * test_s:.1f} ms and {per_image:.1f} boxes per test scene",
          flush=True)
    results = {}
    for name, run in (("R-CNN", lambda: run_rcnn(data, args.epochs, args.seed, proposals)),
                      ("Fast R-CNN", lambda: run_fast(data, args.epochs, args.seed, proposals)),
                      ("Faster R-CNN", lambda: run_faster(data, args.epochs, args.seed))):
        results[name] = run()
        r = results[name]
        print(f"  {name:<13} train {1000 * r['train_s_per_image']:6.1f} ms/img, test {1000 * r['test_s_per_image']:6.1f} "
              f"ms/img ({1000 * r['test_s_per_image_with_proposals']:6.1f} with proposals); mAP@0.5 {r['map50']:.3f}, "
              f"COCO mAP {r['map']:.3f}", flush=True)
    png = chart(results, RESULTS / "rcnn_family_timing.png")
    report = {"device": f"cpu ({args.threads} threads)", "torch": str(torch.__version__),
              "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M"),
              "settings": vars(args), "proposals_ms_per_image": 1000 * test_s,
              "proposals_per_image": per_image, "train_proposal_seconds": train_s * len(train_boxes),
              "results": results}
    write_json(RESULTS / "bench_rcnn_family-cpu.json", report)
    print(f"figures written to {RESULTS / 'bench_rcnn_family-cpu.json'}, chart {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
