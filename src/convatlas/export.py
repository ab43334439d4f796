"""Export a trained run to ONNX (:func:`export_onnx`, ``convatlas export RUN --format onnx``),
checked with onnxruntime against PyTorch.

The exported graph takes what a camera or a file gives after resizing: ``images``, float32
``(N, C, H, W)`` in ``[0, 1]`` at the run's size and channels, any batch size. The run's
normalisation ``(x - mean) / std`` is inside the graph. Its outputs:

- classification: ``logits`` ``(N, K)``;
- segmentation: ``logits`` ``(N, K, H, W)`` (the class map is their argmax);
- detection, single-stage networks (RetinaNet, YOLO v1, SSD): ``boxes`` ``(N, A, 4)`` (xyxy pixels,
  every anchor's or grid box's decoded box clipped to the image) and ``scores`` ``(N, A, K)``
  (column ``k`` is label ``k + 1``; 0 is the background) - the network's ``dense`` output. What
  follows in PyTorch, the score threshold, the top-k and per-class NMS, keeps a number of boxes
  that depends on the image; it is left to the consumer (ONNX's ``NonMaxSuppression`` op or any
  NMS), with the thresholds written to ``export.json``.
- two-stage detectors (Faster and Mask R-CNN) are refused: their second stage runs on the
  proposals NMS keeps, so no static graph holds them.

``export.json`` beside the model says what the graph takes and returns, the classes, the
normalisation, the test-time settings, and the largest difference from PyTorch that onnxruntime
gave on a check batch.
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from convatlas._io import atomic_write_bytes, write_json

__all__ = ["export_onnx", "ExportResult", "FORMATS"]

FORMATS = ("onnx",)


class _Normalised(nn.Module):
    """``(x - mean) / std`` then the network; for detectors its ``dense`` output."""

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...], dense: bool) -> None:
        super().__init__()
        self.model = model
        self.dense = dense
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> Any:
        x = (images - self.mean) / self.std
        return self.model.dense(x) if self.dense else self.model(x)


@dataclass
class ExportResult:
    """Where the model went, what it takes and returns, and how far onnxruntime was from PyTorch."""

    path: Path
    info_path: Path
    task: str
    inputs: dict[str, list]
    outputs: dict[str, list]
    max_abs_diff: float
    checked_batch: int

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["path"], d["info_path"] = str(self.path), str(self.info_path)
        return d


def _settings(model: nn.Module) -> dict[str, Any]:
    settings = getattr(model, "settings", None)
    return dataclasses.asdict(settings) if dataclasses.is_dataclass(settings) else {}


def export_onnx(run_dir: str | Path, out: str | Path | None = None, *, which: str = "best", opset: int = 18,
                check_batch: int = 2, atol: float = 1e-4, rtol: float = 1e-4) -> ExportResult:
    """Write run ``run_dir``'s network (checkpoint ``which``) as ONNX to ``out`` (default
    ``RUN/model.onnx``) with ``export.json`` beside it, then run ``check_batch`` random images
    through onnxruntime and PyTorch: a ``RuntimeError`` if any output differs by more than
    ``atol + rtol |value|`` (nothing is left at ``out`` then). See the module docstring for the graph's
    inputs and outputs."""
    from convatlas.tasks import load_run

    try:
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - the dev extra installs it
        raise RuntimeError("ONNX export checks the graph with onnxruntime: pip install 'convatlas[export]' "
                           "(onnx, onnxruntime, onnxscript)") from exc
    run = load_run(Path(run_dir), which)
    model = run.model.eval().cpu()
    dense = run.task == "detection"
    if dense and not hasattr(model, "dense"):
        raise ValueError(f"{run_dir} is a two-stage detector ({run.config.get('model')}): its second stage runs on "
                         f"the proposals NMS keeps, a number that depends on the image, so no static ONNX graph "
                         f"holds it; single-stage detectors (retinanet_*, yolo_*, ssd*) export")
    if check_batch < 1:
        raise ValueError(f"check_batch must be >= 1, got {check_batch}")
    wrapped = _Normalised(model, run.mean, run.std, dense).eval()
    shape = (run.in_channels, run.image_size, run.image_size)
    example = torch.rand(check_batch, *shape, generator=torch.Generator().manual_seed(0))
    names = ["boxes", "scores"] if dense else ["logits"]
    out = Path(out) if out is not None else Path(run_dir) / "model.onnx"
    with torch.no_grad():
        expected = wrapped(example)
    expected = list(expected) if isinstance(expected, (tuple, list)) else [expected]
    with tempfile.TemporaryDirectory(prefix="convatlas-onnx-") as tmp:
        staged = Path(tmp) / "model.onnx"
        _export(wrapped, example, staged, names, opset)
        session = onnxruntime.InferenceSession(str(staged), providers=["CPUExecutionProvider"])
        got = session.run(names, {"images": example.numpy()})
        diff = max(float((torch.from_numpy(g) - e).abs().max()) if e.numel() else 0.0
                   for g, e in zip(got, expected))
        worst = max(float(((torch.from_numpy(g) - e).abs() / (atol + rtol * e.abs())).max()) if e.numel() else 0.0
                    for g, e in zip(got, expected))
        if not worst <= 1:
            raise RuntimeError(f"onnxruntime's outputs differ from PyTorch's by up to {diff:.3g} (more than "
                               f"{atol:g} + {rtol:g} x |value|); nothing was written")
        path = atomic_write_bytes(out, staged.read_bytes())
    inputs = {"images": ["batch", *shape]}
    outputs = {n: ["batch", *list(e.shape[1:])] for n, e in zip(names, expected)}
    info = {"format": "onnx", "opset": opset, "run": str(run_dir), "checkpoint": run.checkpoint.name,
            "model": run.config.get("model"), "task": run.task, "classes": run.classes,
            "inputs": inputs, "outputs": outputs,
            "input": "float32 images in [0, 1] at the run's size and channels; normalised inside the graph",
            "mean": list(run.mean), "std": list(run.std), "max_abs_diff_onnxruntime": diff,
            "checked_batch": check_batch}
    if dense:
        info["postprocess"] = {"left_out": "score threshold, top-k and per-class NMS (data-dependent sizes)",
                               "score_column_k_is_label": "k + 1", **_settings(model)}
    info_path = write_json(out.with_name("export.json") if out.name == "model.onnx" else out.with_suffix(".json"), info)
    return ExportResult(path=path, info_path=info_path, task=run.task, inputs=inputs, outputs=outputs,
                        max_abs_diff=diff, checked_batch=check_batch)


def _export(module: nn.Module, example: torch.Tensor, path: Path, names: list[str], opset: int) -> None:
    """torch.onnx.export with a dynamic batch axis. The TorchScript-based exporter traces the
    network as it runs, which the zoo's feature extractors need (they stop a network with an
    exception after its last stage, which torch.export cannot follow); where a torch release
    no longer has it, the torch.export-based one."""
    import inspect
    import warnings

    kwargs: dict[str, Any] = dict(input_names=["images"], output_names=names, opset_version=opset)
    axes = {n: {0: "batch"} for n in ["images", *names]}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter's notice (torch >= 2.9)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape arithmetic read as constants
        torch.onnx.export(module, (example,), str(path), dynamic_axes=axes, **kwargs)
