"""The dense CRF: convatlas's PyTorch mean-field against pydensecrf2 (Krähenbühl's C++), speed and accuracy.

    python benchmarks/bench_crf.py                       # 512x512, 21 labels, 10 iterations, 1 and 2 threads
    python benchmarks/bench_crf.py --threads 1 --rounds 5
    python benchmarks/bench_crf.py --device cuda         # ours on the GPU (pydensecrf2 stays on the CPU)

1. **Time per image.** scikit-image's astronaut (512x512 RGB) with 21-label unaries that follow
   colour clusters plus noise (a stand-in for a network's output), DeepLab v2's parameters, 10
   iterations. Everything a call does counts: building the lattice and the kernels, the mean-field
   iterations. ``dense_crf(method="permutohedral")`` (the default), ``method="pydensecrf"`` (both
   kernels on the lattice) and pydensecrf2's ``DenseCRF2D`` (create, setUnaryEnergy,
   addPairwiseGaussian, addPairwiseBilateral, inference), each the best of ``--rounds`` after a
   warm-up, at each ``--threads`` count (pydensecrf2 runs on one thread whatever the count).
   Ratios (ours / pydensecrf2) are printed.
2. **Accuracy.** At 512x512: each method against pydensecrf2 (max and mean |dQ|, the fraction of
   argmax labels that agree). Against the exact O(N^2) sums (``method="exact"``) on the same
   photo resized to ``--exact-size`` (the exact sums of a 512x512 image are ~7e10 kernel entries
   per pass: out of reach of a CPU benchmark).

Figures go to ``benchmarks/results/bench_crf-<device>.json`` (merged into what is there: a
``--skip-accuracy`` run keeps the last accuracy figures). Time it on a quiet machine: with another
process on one of two cores, 2 threads run several times slower than 1.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from convatlas._io import write_json
from convatlas.segmentation.crf import DEEPLAB_V2, dense_crf

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ["permutohedral", "pydensecrf"]


def photo(height: int, width: int) -> np.ndarray:
    from skimage import data, transform

    image = data.astronaut()
    if image.shape[:2] != (height, width):
        image = (transform.resize(image, (height, width), anti_aliasing=True) * 255).round().astype(np.uint8)
    return np.ascontiguousarray(image)


def colour_unaries(image: np.ndarray, labels: int, seed: int = 0) -> np.ndarray:
    """``(L, H, W)`` probabilities: nearness to ``labels`` colour centres, plus noise."""
    rng = np.random.RandomState(seed)
    h, w, _ = image.shape
    flat = image.reshape(-1, 3).astype(np.float32)
    centres = flat[rng.choice(h * w, labels, replace=False)]
    dist = ((flat[:, None, :] - centres[None]) ** 2).sum(-1).T.reshape(labels, h, w)
    logits = -3 * dist / dist.mean() + 1.5 * rng.randn(labels, h, w).astype(np.float32)
    p = np.exp(logits - logits.max(0))
    return (p / p.sum(0)).astype(np.float32)


def pydensecrf_inference(image: np.ndarray, prob: np.ndarray, params=DEEPLAB_V2) -> np.ndarray:
    import pydensecrf.densecrf as dcrf

    labels, h, w = prob.shape
    crf = dcrf.DenseCRF2D(w, h, labels)
    crf.setUnaryEnergy(np.ascontiguousarray(-np.log(np.maximum(prob, 1e-8)).reshape(labels, -1)))
    crf.addPairwiseGaussian(sxy=params.pos_xy_std, compat=params.pos_w)
    crf.addPairwiseBilateral(sxy=params.bi_xy_std, srgb=params.bi_rgb_std, rgbim=image, compat=params.bi_w)
    return np.array(crf.inference(params.iterations)).reshape(labels, h, w)


def best_seconds(fn, rounds: int, device: torch.device) -> float:
    def once() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    once()  # warm-up
    return min(once() for _ in range(rounds))


def compare(a: np.ndarray, b: np.ndarray) -> dict:
    diff = np.abs(a - b)
    return {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "label_agreement": float((a.argmax(0) == b.argmax(0)).mean())}


def have_pydensecrf() -> bool:
    try:
        import pydensecrf.densecrf  # noqa: F401
    except ImportError:
        return False
    return True


def bench_speed(image: np.ndarray, prob: np.ndarray, threads: list[int], rounds: int, device: torch.device,
                oracle: bool) -> dict:
    img_t = torch.from_numpy(image).to(device)
    prob_t = torch.from_numpy(prob).to(device)
    results = {}
    for n in threads:
        torch.set_num_threads(n)
        row = {}
        for method in METHODS:
            row[f"{method}_seconds"] = best_seconds(lambda: dense_crf(img_t, prob_t, method=method), rounds, device)
        if oracle:
            row["pydensecrf2_seconds"] = best_seconds(lambda: pydensecrf_inference(image, prob), rounds,
                                                      torch.device("cpu"))
            for method in METHODS:
                row[f"{method}_over_pydensecrf2"] = row[f"{method}_seconds"] / row["pydensecrf2_seconds"]
        results[f"{n}_threads"] = row
        line = ", ".join(f"{m} {row[f'{m}_seconds']:.2f} s" for m in METHODS)
        if oracle:
            line += (f"; pydensecrf2 {row['pydensecrf2_seconds']:.2f} s; ratio ours/pydensecrf2: "
                     + ", ".join(f"{m} {row[f'{m}_over_pydensecrf2']:.2f}" for m in METHODS))
        print(f"  {n} thread{'s' if n > 1 else ''}: {line}", flush=True)
    return results


def bench_accuracy(image: np.ndarray, prob: np.ndarray, exact_size: tuple[int, int], labels: int, device: torch.device,
                   oracle: bool) -> dict:
    out: dict = {}
    ours = {m: dense_crf(torch.from_numpy(image).to(device), torch.from_numpy(prob).to(device), method=m).cpu().numpy()
            for m in METHODS}
    if oracle:
        reference = pydensecrf_inference(image, prob)
        out["vs_pydensecrf2_512"] = {m: compare(ours[m], reference) for m in METHODS}
        for m in METHODS:
            c = out["vs_pydensecrf2_512"][m]
            print(f"  {image.shape[0]}x{image.shape[1]}, {m} vs pydensecrf2: max |dQ| {c['max_abs_diff']:.2e}, mean "
                  f"{c['mean_abs_diff']:.2e}, labels agree {c['label_agreement']:.4%}", flush=True)
    small = photo(*exact_size)
    small_prob = colour_unaries(small, labels)
    img_t, prob_t = torch.from_numpy(small).to(device), torch.from_numpy(small_prob).to(device)
    start = time.perf_counter()
    exact = dense_crf(img_t, prob_t, method="exact").cpu().numpy()
    exact_seconds = time.perf_counter() - start
    rows = {m: compare(dense_crf(img_t, prob_t, method=m).cpu().numpy(), exact) for m in METHODS}
    if oracle:
        rows["pydensecrf2"] = compare(pydensecrf_inference(small, small_prob), exact)
    out[f"vs_exact_{exact_size[0]}x{exact_size[1]}"] = {"exact_seconds": exact_seconds, **rows}
    for name, c in rows.items():
        print(f"  {exact_size[0]}x{exact_size[1]}, {name} vs exact ({exact_seconds:.1f} s): max |dQ| "
              f"{c['max_abs_diff']:.2e}, mean {c['mean_abs_diff']:.2e}, labels agree {c['label_agreement']:.4%}",
              flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds after a warm-up (the best counts)")
    parser.add_argument("--size", type=int, nargs=2, default=[512, 512], metavar=("H", "W"))
    parser.add_argument("--labels", type=int, default=21)
    parser.add_argument("--exact-size", type=int, nargs=2, default=[96, 128], metavar=("H", "W"))
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--skip-accuracy", action="store_true")
    args = parser.parse_args(argv)

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    oracle = have_pydensecrf()
    if not oracle:
        print("pydensecrf2 is not installed (pip install pydensecrf2): timing convatlas only", flush=True)
    image = photo(*args.size)
    prob = colour_unaries(image, args.labels)
    report: dict = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": str(torch.__version__), "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M"),
        "image": f"skimage astronaut {args.size[0]}x{args.size[1]}", "labels": args.labels,
        "params": {**DEEPLAB_V2.kwargs(), "source": DEEPLAB_V2.source}, "rounds": args.rounds,
    }
    print(f"1. seconds per {args.size[0]}x{args.size[1]} image, {args.labels} labels, {DEEPLAB_V2.iterations} "
          f"iterations (DeepLab v2 parameters), ours on {report['device']}", flush=True)
    report["speed"] = bench_speed(image, prob, args.threads, args.rounds, device, oracle)
    if not args.skip_accuracy:
        print("2. accuracy", flush=True)
        torch.set_num_threads(max(args.threads))
        report["accuracy"] = bench_accuracy(image, prob, tuple(args.exact_size), args.labels, device, oracle)
    out = RESULTS / f"bench_crf-{'cuda' if device.type == 'cuda' else 'cpu'}.json"
    previous = json.loads(out.read_text()) if out.is_file() else {}
    previous.update(report)  # a --skip-accuracy run keeps the accuracy figures of the last full run
    write_json(out, previous)
    print(f"figures written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
