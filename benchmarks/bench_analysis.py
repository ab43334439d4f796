"""Speed of ``convatlas.summary`` against torchinfo and fvcore, in one run.

    python benchmarks/bench_analysis.py                    # the whole zoo and the large cases
    python benchmarks/bench_analysis.py --quick            # a few zoo models, the two headline cases
    python benchmarks/bench_analysis.py --models 'resnet*' --parts zoo

What each tool is timed doing (models are built once, outside the timing, in eval mode):

* **convatlas**: ``convatlas.summary(model, input_size, batch_size=N)`` with its defaults (saved-
  for-backward memory measured), on the same real-weight model the other two receive; and,
  reported alongside, on the same network built with its weights on the meta device
  (``convatlas.analysis.build_on_meta``). The tracer's cache of slow meta kernels' outputs is
  emptied before every repeat, so each repeat costs what a first analysis of that model costs.
* **torchinfo**: ``torchinfo.summary(model, input_size=(N, C, H, W), verbose=0)``: hooks on every
  module and a real forward pass (under ``torch.no_grad``) on a random input it makes itself.
* **fvcore**: ``FlopCountAnalysis(model, x).total()`` on a real random tensor ``x`` (made outside
  the timing), under ``torch.no_grad`` and with its warnings off: a JIT trace of a real forward
  pass, then the count.

Zoo models carry convatlas's input-size guard (a forward pre-hook that checks each new input shape
once); it is run once per case before timing, so no tool pays for it.

Cases: **zoo**, every registered model at its card's input size, batch 1, timed in this process
(the best of ``--repeats``; a tool's repeats stop once they have taken ``--budget`` seconds);
**large**, EfficientNet-B7 at 600x600, VGG-16 at batch 256, ResNet-152 at batch 64, DenseNet-264
and Inception-v4 at 299x299, each tool in a fresh worker process: the first (cold) call and the
best of the repeats are timed, and the worker's peak resident memory above what it held before
the call is recorded. A baseline whose real forward pass would need more than
``--memory-cap-gb`` (lower bound from convatlas's own report: weights plus the largest layer
output), or whose process grows past it, or that runs past ``--timeout`` seconds, is stopped and
reported as skipped, with the reason.

MACs are checked against each other: convatlas's ``total_macs`` (convolutions and matrix products)
must equal fvcore's count of its ``conv``/``linear``/``addmm``/``matmul``/``bmm``/``einsum``
operators, and torchinfo's mult-adds of its convolution and linear layers less their bias terms
(torchinfo charges a bias as one mult-add per output element and counts every parameterised layer,
norms included, in ``total_mult_adds``; that raw total is recorded too). Parameter counts are
checked against torchinfo's. Any difference is printed.

Figures go to ``benchmarks/results/bench_analysis-cpu.json`` (updated part by part); the ratios
(baseline seconds / convatlas seconds, higher is better for convatlas) and a summary are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import logging
import math
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

import convatlas
from convatlas._io import atomic_write_text
from convatlas.analysis import build_on_meta, format_bytes, format_count, tracer

RESULTS = Path(__file__).resolve().parent / "results"
GB = 2**30

# (model, input size C x H x W, batch): the two headline cases first
LARGE_CASES = [
    ("efficientnet_b7", (3, 600, 600), 1),
    ("vgg16", (3, 224, 224), 256),
    ("resnet152", (3, 224, 224), 64),
    ("densenet264", (3, 224, 224), 1),
    ("inception_v4", (3, 299, 299), 1),
]
QUICK_ZOO = ["lenet5", "resnet20", "resnet50", "mobilenet_v2", "densenet121", "efficientnet_b0", "googlenet",
             "squeezenet1_1", "vgg11"]
QUICK_LARGE = ["efficientnet_b7", "vgg16"]
BASELINES = ("torchinfo", "fvcore")
FVCORE_MAC_OPERATORS = ("conv", "linear", "addmm", "matmul", "mm", "bmm", "einsum")


# --------------------------------------------------------------------------------------------
# the three tools


def _fresh_caches() -> None:
    """Forget the tracer's remembered meta-kernel outputs: each repeat is a first analysis."""
    tracer._META_CACHE.clear()


def run_convatlas(model: nn.Module, size: tuple[int, ...], batch: int) -> dict:
    _fresh_caches()
    report = convatlas.summary(model, size, batch_size=batch)
    return {"macs": report.total_macs, "params": report.total_params, "complete": report.complete}


def _torchinfo_conv_linear_macs(stats: Any) -> int:
    """torchinfo's mult-adds of its convolution and linear layers, less the bias terms."""
    total = 0
    for layer in stats.summary_list:
        module = layer.module
        if not layer.is_leaf_layer or not isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
            continue
        macs = layer.macs
        bias = getattr(module, "bias", None)
        if bias is not None and layer.output_size:
            out = layer.output_size
            per_bias = math.prod(out[:1] + out[2:]) if isinstance(module, nn.modules.conv._ConvNd) else out[0]
            macs -= bias.numel() * per_bias
        total += macs
    return total


def run_torchinfo(model: nn.Module, size: tuple[int, ...], batch: int) -> dict:
    import torchinfo

    stats = torchinfo.summary(model, input_size=(batch, *size), verbose=0, device="cpu")
    return {"macs": _torchinfo_conv_linear_macs(stats), "total_mult_adds": int(stats.total_mult_adds),
            "params": int(stats.total_params)}


def _import_fvcore() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script, used by fvcore's imports
        import fvcore
        import fvcore.nn
    return fvcore


def run_fvcore(model: nn.Module, x: torch.Tensor) -> dict:
    FlopCountAnalysis = _import_fvcore().nn.FlopCountAnalysis

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the JIT tracer's TracerWarnings
        analysis = FlopCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        total = analysis.total()
    by_op = analysis.by_operator()
    return {"macs": sum(by_op.get(op, 0) for op in FVCORE_MAC_OPERATORS), "total": int(total)}


def _real_model(name: str, size: tuple[int, ...], batch: int) -> nn.Module:
    """The zoo network with real (initialised) weights, in eval mode, its input guard already run."""
    from convatlas.registry import check_input_size

    torch.manual_seed(0)
    model = convatlas.create_model(name).eval()
    check_input_size(model, (batch, *size))  # the guard remembers the shapes it has checked
    return model


def _timed(fn: Callable[[], dict], repeats: int, budget: float) -> dict:
    """Best of up to ``repeats`` calls, stopping once the calls have taken ``budget`` seconds."""
    times: list[float] = []
    result: dict = {}
    while len(times) < repeats and (not times or sum(times) < budget):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return {"seconds": min(times), "first_seconds": times[0], "runs": len(times), **result}


def _try_timed(fn: Callable[[], dict], repeats: int, budget: float) -> dict:
    try:
        return _timed(fn, repeats, budget)
    except Exception as exc:  # noqa: BLE001 - a baseline that cannot handle a model is reported
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}


# --------------------------------------------------------------------------------------------
# checks and printing


def _mac_checks(case: dict) -> list[str]:
    """Differences between convatlas's figures and the others' (empty when all agree)."""
    problems = []
    ours = case["convatlas"]
    meta = case.get("convatlas_meta") or {}
    for key in ("macs", "params"):
        if key in meta and meta[key] != ours.get(key):
            problems.append(f"convatlas {key} differ between the real ({ours.get(key):,}) and meta ({meta[key]:,}) model")
    if not ours.get("complete", True):
        problems.append("convatlas report incomplete")
    for tool in BASELINES:
        theirs = case.get(tool) or {}
        if "macs" in theirs and theirs["macs"] != ours["macs"]:
            problems.append(f"{tool} MACs {theirs['macs']:,} != convatlas {ours['macs']:,} "
                            f"({theirs['macs'] / max(ours['macs'], 1) - 1:+.3%})")
    ti = case.get("torchinfo") or {}
    if "params" in ti and ti["params"] != ours["params"]:
        problems.append(f"torchinfo params {ti['params']:,} != convatlas {ours['params']:,}")
    return problems


def _ratios(case: dict) -> None:
    ours = case["convatlas"].get("seconds")
    for tool in BASELINES:
        theirs = (case.get(tool) or {}).get("seconds")
        case[f"{tool}_over_convatlas"] = theirs / ours if theirs and ours else None


def _seconds(entry: dict | None) -> str:
    if not entry:
        return "-"
    if "seconds" in entry:
        return f"{entry['seconds']:.3f} s"
    return "skipped" if "skipped" in entry else "error"


def _ratio(value: float | None) -> str:
    return f"{value:,.0f}x" if value and value >= 10 else (f"{value:.1f}x" if value else "-")


def _case_line(case: dict) -> str:
    size = "x".join(map(str, case["input_size"]))
    parts = [f"  {case['model']:<20} {size:>11} b{case['batch']:<4}",
             f"convatlas {_seconds(case['convatlas'])} (meta {_seconds(case.get('convatlas_meta'))})"]
    for tool in BASELINES:
        parts.append(f"{tool} {_seconds(case.get(tool))} ({_ratio(case.get(f'{tool}_over_convatlas'))})")
    parts.append(f"MACs {format_count(case['convatlas'].get('macs'))}")
    parts.append("agree" if not case["mismatches"] else "MISMATCH")
    return "  ".join(parts)


def _print_notes(case: dict) -> None:
    for tool in BASELINES:
        entry = case.get(tool) or {}
        if "skipped" in entry:
            print(f"      {tool} skipped: {entry['skipped']}", flush=True)
        if "error" in entry:
            print(f"      {tool} failed: {entry['error']}", flush=True)
    for problem in case["mismatches"]:
        print(f"      mismatch: {problem}", flush=True)


def _geomean(values: list[float]) -> float | None:
    return math.exp(statistics.fmean(math.log(v) for v in values)) if values else None


def summarise(cases: list[dict]) -> dict:
    """Slower-than counts, geometric mean / median / worst ratio per baseline."""
    out: dict = {"cases": len(cases), "mismatches": sum(1 for c in cases if c["mismatches"])}
    for tool in BASELINES:
        key = f"{tool}_over_convatlas"
        measured = [c for c in cases if c.get(key)]
        ratios = [c[key] for c in measured]
        worst = min(measured, key=lambda c: c[key], default=None)
        out[tool] = {
            "measured": len(measured),
            "convatlas_slower": sum(1 for r in ratios if r < 1),
            "geomean_ratio": _geomean(ratios),
            "median_ratio": statistics.median(ratios) if ratios else None,
            "worst_ratio": worst[key] if worst else None,
            "worst_case": f"{worst['model']} {'x'.join(map(str, worst['input_size']))} b{worst['batch']}" if worst else None,
            "best_ratio": max(ratios, default=None),
        }
    ours = [c["convatlas"]["seconds"] for c in cases if "seconds" in c["convatlas"]]
    out["convatlas_max_seconds"] = max(ours, default=None)
    out["convatlas_total_seconds"] = sum(ours)
    return out


def _print_summary(title: str, s: dict) -> None:
    print(f"{title}: {s['cases']} cases, {s['mismatches']} with a MAC/parameter mismatch, "
          f"slowest convatlas analysis {s['convatlas_max_seconds'] or 0:.3f} s", flush=True)
    for tool in BASELINES:
        t = s[tool]
        if not t["measured"]:
            print(f"  {tool}: no case measured", flush=True)
            continue
        print(f"  {tool}/convatlas over {t['measured']} cases: convatlas slower on {t['convatlas_slower']}; "
              f"geometric mean {t['geomean_ratio']:.1f}x, median {t['median_ratio']:.1f}x, "
              f"worst {t['worst_ratio']:.1f}x ({t['worst_case']}), best {t['best_ratio']:.0f}x", flush=True)


# --------------------------------------------------------------------------------------------
# zoo: every registered model at its native size, in this process


def bench_zoo(names: list[str], repeats: int, budget: float) -> dict:
    cases = []
    for name in names:
        size = tuple(convatlas.model_card(name).input_size)
        case: dict = {"model": name, "input_size": list(size), "batch": 1}
        model = _real_model(name, size, 1)
        meta_model = build_on_meta(name)
        x = torch.randn(1, *size)
        case["convatlas"] = _timed(lambda: run_convatlas(model, size, 1), repeats, budget)
        case["convatlas_meta"] = _timed(lambda: run_convatlas(meta_model, size, 1), repeats, budget)
        case["torchinfo"] = _try_timed(lambda: run_torchinfo(model, size, 1), repeats, budget)
        case["fvcore"] = _try_timed(lambda: run_fvcore(model, x), repeats, budget)
        _ratios(case)
        case["mismatches"] = _mac_checks(case)
        cases.append(case)
        print(_case_line(case), flush=True)
        _print_notes(case)
        del model, meta_model, x
    return {"cases": cases, "summary": summarise(cases)}


# --------------------------------------------------------------------------------------------
# large cases: each tool in its own worker process, with a memory cap and a timeout


def _status_kib(pid: int | str, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def worker(spec: dict) -> dict:
    """Run one tool on one large case (in a fresh process) and return its figures."""
    torch.set_num_threads(spec["threads"])
    name, size, batch, tool = spec["model"], tuple(spec["input_size"]), spec["batch"], spec["tool"]
    if tool == "convatlas_meta":
        model = build_on_meta(name)
    else:
        model = _real_model(name, size, batch)
    if tool == "torchinfo":
        fn = lambda: run_torchinfo(model, size, batch)  # noqa: E731
    elif tool == "fvcore":
        x = torch.randn(batch, *size)
        fn = lambda: run_fvcore(model, x)  # noqa: E731
    else:
        fn = lambda: run_convatlas(model, size, batch)  # noqa: E731
    before = _status_kib("self", "VmRSS") * 1024
    with contextlib.suppress(OSError):  # reset the peak (VmHWM) to the current RSS
        Path("/proc/self/clear_refs").write_text("5")
    result = _timed(fn, spec["repeats"], spec["budget"])
    result["rss_before_bytes"] = before
    result["peak_extra_bytes"] = max(_status_kib("self", "VmHWM") * 1024 - before, 0)
    return result


def _run_worker(spec: dict, cap_bytes: int, timeout: float) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    stdout_file, stderr_file = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")  # never block on a pipe
    process = subprocess.Popen(command, stdout=stdout_file, stderr=stderr_file, text=True)
    start, peak = time.monotonic(), 0
    reason = None
    while process.poll() is None:
        rss = _status_kib(process.pid, "VmRSS") * 1024
        peak = max(peak, rss)
        if rss > cap_bytes:
            reason = f"its process grew past the {cap_bytes / GB:.0f} GB memory cap ({rss / GB:.1f} GB) and was stopped"
        elif time.monotonic() - start > timeout:
            reason = f"still running after the {timeout:.0f} s timeout and was stopped"
        if reason:
            process.kill()
            process.wait()
            return {"skipped": reason, "process_peak_bytes": peak}
        time.sleep(0.02)
    stdout_file.seek(0)
    stderr_file.seek(0)
    stdout, stderr = stdout_file.read(), stderr_file.read()
    stdout_file.close()
    stderr_file.close()
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        tail = (stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"worker exited with status {process.returncode}: {tail}"}
    return json.loads(lines[-1])


def _baseline_need_bytes(name: str, size: tuple[int, ...], batch: int) -> int:
    """A lower bound on what a real forward pass needs: the weights and the largest layer output."""
    report = convatlas.summary(build_on_meta(name), size, batch_size=batch, memory=False)
    largest = max((r.output_bytes for r in report.rows if r.kind == "module"), default=0)
    return report.param_bytes + report.buffer_bytes + largest


def bench_large(cases_in: list[tuple[str, tuple[int, ...], int]], threads: int, repeats: int, budget: float,
                baseline_repeats: int, cap_gb: float, timeout: float) -> dict:
    cap = int(cap_gb * GB)
    cases = []
    for name, size, batch in cases_in:
        case: dict = {"model": name, "input_size": list(size), "batch": batch}
        spec = {"model": name, "input_size": list(size), "batch": batch, "threads": threads, "budget": budget}
        for tool in ("convatlas", "convatlas_meta"):
            case[tool] = _run_worker({**spec, "tool": tool, "repeats": repeats}, cap, timeout)
        if "seconds" not in case["convatlas"]:
            raise RuntimeError(f"convatlas failed on {name}: {case['convatlas']}")
        need = _baseline_need_bytes(name, size, batch)
        case["baseline_lower_bound_bytes"] = need
        for tool in BASELINES:
            if need > cap:
                case[tool] = {"skipped": f"a real forward pass needs at least {need / GB:.1f} GB (weights and the "
                                         f"largest layer output), over the {cap_gb:.0f} GB memory cap"}
            else:
                case[tool] = _run_worker({**spec, "tool": tool, "repeats": baseline_repeats}, cap, timeout)
        _ratios(case)
        case["mismatches"] = _mac_checks(case)
        cases.append(case)
        print(_case_line(case), flush=True)
        memory = "  ".join(
            f"{tool} +{format_bytes(case[tool]['peak_extra_bytes'])}"
            for tool in ("convatlas_meta", "convatlas", *BASELINES) if "peak_extra_bytes" in case[tool])
        print(f"      first call in a fresh process: convatlas {case['convatlas']['first_seconds']:.3f} s, "
              f"meta {case['convatlas_meta'].get('first_seconds', float('nan')):.3f} s; peak memory above the "
              f"model: {memory}", flush=True)
        _print_notes(case)
    return {"cases": cases, "summary": summarise(cases)}


def _merge(previous: dict | None, new: dict, date: str) -> dict:
    """Cases measured now replace the same cases in ``previous``; the others are kept (each case
    carries the date of its run, and its ratios come from that one run). Summary over them all."""
    key = lambda c: (c["model"], tuple(c["input_size"]), c["batch"])  # noqa: E731
    for case in new["cases"]:
        case["date"] = date
    cases = {key(c): c for c in (previous or {}).get("cases", [])}
    cases.update({key(c): c for c in new["cases"]})
    merged = sorted(cases.values(), key=lambda c: (c["model"], c["batch"], c["input_size"]))
    return {"cases": merged, "summary": summarise(merged)}


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=["zoo", "large"], choices=["zoo", "large"])
    parser.add_argument("--quick", action="store_true",
                        help=f"zoo: {', '.join(QUICK_ZOO)}; large: {', '.join(QUICK_LARGE)}")
    parser.add_argument("--models", nargs="+", default=["*"], metavar="PATTERN",
                        help="only models whose name matches one of these shell-style patterns (e.g. 'resnet*')")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (the goal is stated for 2 cores)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per tool and case (the best counts)")
    parser.add_argument("--budget", type=float, default=10.0,
                        help="stop repeating a tool on a case once its calls have taken this many seconds")
    parser.add_argument("--baseline-repeats", type=int, default=1,
                        help="timed calls of torchinfo and fvcore on each large case")
    parser.add_argument("--memory-cap-gb", type=float, default=16.0,
                        help="large cases: skip or stop a baseline that needs more memory than this")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="large cases: stop a tool's worker process after this many seconds")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    logging.getLogger("fvcore").setLevel(logging.ERROR)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))), flush=True)
        return 0
    torch.set_num_threads(args.threads)

    wanted = lambda name: any(fnmatch.fnmatch(name, p.lower()) for p in args.models)  # noqa: E731
    zoo = [n for n in convatlas.list_models() if wanted(n) and (not args.quick or n in QUICK_ZOO)]
    large = [c for c in LARGE_CASES if wanted(c[0]) and (not args.quick or c[0] in QUICK_LARGE)]
    import torchinfo

    fvcore = _import_fvcore()
    report: dict = {
        "device": f"cpu ({args.threads} threads)", "torch": str(torch.__version__),
        "torchinfo": getattr(torchinfo, "__version__", "?"), "fvcore": getattr(fvcore, "__version__", "?"),
        "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    if "zoo" in args.parts and zoo:
        print(f"1. the zoo at native input size, batch 1 ({len(zoo)} models; best of {args.repeats}, "
              f"{args.budget:g} s budget per tool); ratio = baseline seconds / convatlas seconds", flush=True)
        report["zoo"] = bench_zoo(zoo, args.repeats, args.budget)
        _print_summary("zoo", report["zoo"]["summary"])
    if "large" in args.parts and large:
        print(f"2. large cases, each tool in a fresh process (convatlas best of {args.repeats}, baselines "
              f"{args.baseline_repeats} call(s), {args.memory_cap_gb:g} GB cap, {args.timeout:g} s timeout)", flush=True)
        report["large"] = bench_large(large, args.threads, args.repeats, args.budget, args.baseline_repeats,
                                      args.memory_cap_gb, args.timeout)
        _print_summary("large cases", report["large"]["summary"])

    out = RESULTS / "bench_analysis-cpu.json"
    previous = json.loads(out.read_text()) if out.is_file() else {}
    for part in ("zoo", "large"):
        if part in report:
            report[part] = _merge(previous.get(part), report[part], report["date"])
    previous.update(report)
    atomic_write_text(out, json.dumps(previous, indent=2) + "\n")
    print(f"figures written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
