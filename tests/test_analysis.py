"""convatlas.analysis: MACs against published numbers, torchvision's ``_ops`` and PyTorch's
FlopCounterMode; receptive fields against the closed form and against gradients; memory, exports,
untraceable models and the CLI."""

from __future__ import annotations

import csv
import io
import json
import resource

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode

import convatlas
from convatlas import arith
from convatlas.analysis import build_on_meta, summary
from convatlas.analysis.shapes import fast_output
from convatlas.analysis.zoo import meta_build
from convatlas.cli import main
from reference import MACS

aten = torch.ops.aten
ZOO = convatlas.list_models()


# ---------------------------------------------------------------------------------------------
# MACs


def test_zoo_has_reference_macs():
    assert ZOO, "no zoo models registered"
    assert set(MACS) & set(ZOO), "tests/reference has no MACs for any registered model"


class _Dense(torch.nn.Module):
    """A single-stage detector up to its dense output (``model.dense``)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        return self.model.dense(x)


@pytest.mark.parametrize("name", ZOO)
def test_zoo_macs_match_reference_and_flop_counter(name):
    """Every zoo model: MACs at the card's input size equal the reference number (where the zoo's
    reference tables give one) and half of FlopCounterMode's FLOPs (conv + matmul, 2 per MAC),
    FlopCounterMode running on PyTorch's own meta kernels. A detector's proposals depend on the
    data (top-k, NMS): its report says so (naming the RPN of a two-stage one), and what comes before
    is checked instead - a two-stage detector's backbone, a single-stage one's dense output (every
    box and score, the whole network but the selection)."""
    card = convatlas.model_card(name)
    model = build_on_meta(name)
    if card.task == "detection":
        whole = summary(model, card.input_size, memory=False)
        stage = "rpn" if hasattr(model, "rpn") else ""
        assert not whole.complete and any(stage in issue and "depends on the data" in issue for issue in whole.issues)
        model = model.backbone if stage else _Dense(model)
    report = summary(model, card.input_size, memory=False)
    assert report.complete, report.issues
    assert report.total_params == sum(p.numel() for p in model.parameters())
    if name in MACS:
        expected, rel_tol, source = MACS[name]
        assert report.total_macs == pytest.approx(expected, rel=rel_tol), source
    with FlopCounterMode(display=False) as counter:
        model(torch.empty(1, *card.input_size, device="meta"))
    assert 2 * report.total_macs == counter.get_total_flops()


def _torchvision_cases() -> list[tuple[str, str]]:
    cases = []
    for module, kind in ((torchvision.models, "cls"), (torchvision.models.segmentation, "seg"),
                         (torchvision.models.video, "video")):
        for name in torchvision.models.list_models(module=module):
            weights = torchvision.models.get_model_weights(name).DEFAULT
            if "_ops" in weights.meta:
                cases.append((name, kind))
    return cases


TORCHVISION = _torchvision_cases()


def test_torchvision_cases_found():
    assert len([c for c in TORCHVISION if c[1] == "cls"]) >= 80


@pytest.mark.parametrize("name,kind", TORCHVISION, ids=[c[0] for c in TORCHVISION])
def test_torchvision_macs_match_ops_meta(name, kind):
    """torchvision's "GFLOPS" (``meta["_ops"]``) are GMACs at the weights' crop size; they include
    the segmentation models' auxiliary heads."""
    weights = torchvision.models.get_model_weights(name).DEFAULT
    transforms = weights.transforms()
    crop = getattr(transforms, "crop_size", None) or transforms.resize_size
    kwargs: dict = {}
    if name.startswith("vit"):
        kwargs["image_size"] = crop[0]
    if kind == "seg":
        kwargs["weights_backbone"] = None
        kwargs["aux_loss"] = not name.startswith("lraspp")
    with meta_build():
        model = torchvision.models.get_model(name, weights=None, **kwargs)
    size = (3, 16, crop[0], crop[1]) if kind == "video" else (3, crop[0], crop[0])
    report = summary(model, size, memory=False)
    assert report.complete, report.issues
    assert round(report.total_macs / 1e9, 3) == pytest.approx(weights.meta["_ops"], abs=1e-9)
    if name != "googlenet":  # googlenet() builds its auxiliary heads, the weights' count leaves them out
        assert report.total_params == weights.meta["num_params"]


# ---------------------------------------------------------------------------------------------
# Shapes computed by arithmetic equal PyTorch's meta kernels


def _m(*shape, dtype=torch.float32):
    return torch.empty(shape, dtype=dtype, device="meta")


_X = _m(2, 8, 15, 17)
_CL = torch.empty_strided((2, 8, 15, 17), (2040, 1, 136, 8), device="meta")
_SHAPE_CASES = [
    (aten.convolution.default, (_X, _m(16, 8, 3, 3), _m(16), [2, 2], [1, 1], [1, 1], False, [0, 0], 1)),
    (aten.convolution.default, (_X, _m(8, 2, 3, 5), None, [1, 2], [2, 1], [2, 1], False, [0, 0], 4)),
    (aten.convolution.default, (_X, _m(8, 4, 4, 4), _m(4), [2, 2], [1, 1], [1, 1], True, [1, 0], 1)),
    (aten.convolution.default, (_CL, _m(16, 8, 1, 1), None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1)),
    (aten.convolution.default, (_m(2, 3, 9, 20, 20), _m(4, 3, 3, 3, 3), None, [1, 2, 2], [1, 1, 1], [1, 1, 1],
                                False, [0, 0, 0], 1)),
    (aten.max_pool2d_with_indices.default, (_X, [3, 3], [2, 2], [1, 1], [1, 1], True)),
    (aten.max_pool2d_with_indices.default, (_X, [2, 2], [2, 2], [0, 0], [1, 1], False)),
    (aten.avg_pool2d.default, (_X, [3, 3], [2, 2], [1, 1], True, False)),
    (aten._adaptive_avg_pool2d.default, (_X, [4, 3])),
    (aten.native_batch_norm.default, (_X, _m(8), _m(8), _m(8), _m(8), True, 0.1, 1e-5)),
    (aten.native_layer_norm.default, (_X, [15, 17], _m(15, 17), _m(15, 17), 1e-5)),
    (aten.native_group_norm.default, (_X, _m(8), _m(8), 2, 8, 255, 4, 1e-5)),
    (aten.addmm.default, (_m(5), _m(3, 7), _m(7, 5))),
    (aten.mm.default, (_m(3, 7), _m(7, 5))),
    (aten.bmm.default, (_m(4, 3, 7), _m(4, 7, 5))),
    (aten.mean.dim, (_X, [2, 3], True)),
    (aten.mean.dim, (_X, [-1])),
    (aten.sum.dim_IntList, (_X, [1])),
    (aten.cat.default, ([_X, _m(2, 3, 15, 17)], 1)),
    (aten.upsample_bilinear2d.default, (_X, [30, 34], False, None, None)),
    (aten.upsample_nearest2d.vec, (_X, None, [2.0, 1.5])),
    (aten.constant_pad_nd.default, (_X, [1, 2, 0, 3], 0.0)),
    (aten._softmax.default, (_X, 1, False)),
    (aten.hardswish.default, (_CL,)),
    (aten.relu.default, (_CL,)),
    (aten.add.Tensor, (_X, _m(2, 8, 1, 1))),
    (aten.mul.Tensor, (_m(8, 1, 1), _X)),
    (aten.sigmoid.default, (_X,)),
    (aten.gt.Scalar, (_X, 0.0)),
    (aten.where.self, (_m(2, 8, 15, 17, dtype=torch.bool), _X, _m(1))),
]


def _meta_of(value):
    if isinstance(value, torch.Tensor):
        return tuple(value.shape), value.stride(), value.dtype
    return tuple(_meta_of(v) for v in value)


@pytest.mark.parametrize("func,args", _SHAPE_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(_SHAPE_CASES)])
def test_fast_shapes_equal_meta_kernels(func, args):
    fast = fast_output(func, args, {})
    assert fast is not NotImplemented
    assert _meta_of(fast) == _meta_of(func(*args))


@pytest.mark.parametrize("func", [aten.native_batch_norm.default, aten._native_batch_norm_legit_no_training.default])
def test_batch_norm_with_running_statistics_matches_cpu_kernel(func):
    """In inference the CPU kernel returns empty batch statistics (the meta kernel returns (C,));
    the analysis follows the CPU, so that memory saved for backward matches a real run."""
    x, g = torch.randn(2, 8, 4, 4), torch.rand(8) + 0.5
    args = (x, g, g, g, g, False, 0.1, 1e-5) if func is aten.native_batch_norm.default else (x, g, g, g, g, 0.1, 1e-5)
    real = func(*args)
    fast = fast_output(func, tuple(a.to("meta") if isinstance(a, torch.Tensor) else a for a in args), {})
    assert [tuple(t.shape) for t in fast] == [tuple(t.shape) for t in real]


def test_inplace_pointwise_returns_its_target():
    x = _m(2, 3)
    assert fast_output(aten.relu_.default, (x,), {}) is x


# ---------------------------------------------------------------------------------------------
# Functional calls are counted, not only modules


class Functional(nn.Module):
    """A module whose work is all in its forward: F.conv2d, +, torch.cat, F.interpolate, .mean()."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(8, 3, 3, 3))
        self.bias = nn.Parameter(torch.zeros(8))
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, self.weight, self.bias, stride=2, padding=1)
        z = self.conv(y) + y
        y = torch.cat([y, z], dim=1)
        y = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
        return self.head(y.mean(dim=(2, 3)))


def test_functional_calls_are_counted():
    torch.manual_seed(0)
    model = Functional()
    x = torch.randn(2, 3, 32, 32)
    report = summary(model, (3, 32, 32), batch_size=2)
    with FlopCounterMode(display=False) as counter:
        model(x)
    assert 2 * report.total_macs == counter.get_total_flops()
    # by hand: F.conv2d 2*8*16*16 outputs x 27; self.conv 2*8*16*16 x 72; head 2 x 16 x 10
    assert report.row("convolution").macs == 2 * 8 * 16 * 16 * 27
    assert report.total_macs == 2 * 8 * 16 * 16 * (27 + 72) + 2 * 16 * 10
    # shapes of the functional rows equal the real computation's
    y = F.conv2d(x, model.weight, model.bias, stride=2, padding=1)
    cat = torch.cat([y, model.conv(y) + y], 1)
    up = F.interpolate(cat, scale_factor=2, mode="bilinear", align_corners=False)
    assert report.row("convolution").output_shape == tuple(y.shape)
    assert report.row("add").output_shape == tuple(y.shape)
    assert report.row("cat").output_shape == tuple(cat.shape)
    assert report.row("upsample_bilinear2d").output_shape == tuple(up.shape)
    assert report.row("mean").output_shape == (2, 16)
    assert report.row("mean").field == "global" and report.row("head").field == "global"
    # element-wise FLOPs of the residual add: one per output element
    assert report.row("add").flops == y.numel()


# ---------------------------------------------------------------------------------------------
# Parameters, memory


def test_params_totals_and_frozen():
    model = torchvision.models.resnet18()
    for p in model.layer1.parameters():
        p.requires_grad_(False)
    report = summary(model, (3, 64, 64))
    assert report.total_params == sum(p.numel() for p in model.parameters())
    assert report.frozen_params == sum(p.numel() for p in model.layer1.parameters())
    assert report.row("layer1").trainable_params == 0
    assert report.row("layer2").params == sum(p.numel() for p in model.layer2.parameters())
    # the model itself is untouched: still real, still in training mode
    assert all(p.device.type == "cpu" for p in model.parameters()) and model.training


def _saved_by_autograd(output: torch.Tensor, params: set[int]) -> int:
    """Bytes autograd keeps for backward, read from the graph's ``_saved_*`` attributes (a route
    independent of saved_tensors_hooks), on a real CPU forward."""
    seen: dict[int, int] = {}
    stack, visited = [output.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in visited:
            continue
        visited.add(node)
        for attr in dir(node):
            if attr.startswith("_saved_"):
                value = getattr(node, attr)
                for t in value if isinstance(value, (tuple, list)) else [value]:
                    if isinstance(t, torch.Tensor) and t.numel():
                        storage = t.untyped_storage()
                        if storage.data_ptr() not in params:
                            seen[storage.data_ptr()] = storage.nbytes()
        stack.extend(n for n, _ in node.next_functions)
    return sum(seen.values())


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_saved_activations_equal_autograd_graph(mode):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).train(mode == "train")
    report = summary(model, (3, 64, 64), batch_size=2, mode=mode)
    out = model(torch.randn(2, 3, 64, 64))
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    params |= {b.untyped_storage().data_ptr() for b in model.buffers()}
    assert report.saved_activation_bytes == _saved_by_autograd(out, params)


def test_training_memory_formula():
    model = nn.Sequential(nn.Linear(100, 50), nn.ReLU(), nn.Linear(50, 10))
    n_params = 100 * 50 + 50 + 50 * 10 + 10
    sgd = summary(model, (100,), batch_size=32, optimizer="sgd").training_memory
    adam = summary(model, (100,), batch_size=32, optimizer="adam").training_memory
    # by hand: the first linear keeps its input (32x100), ReLU keeps its output (32x50), which is
    # also the second linear's input (the same storage)
    assert sgd.activation_bytes == 4 * (32 * 100 + 32 * 50) and sgd.activations_measured
    assert sgd.param_bytes == sgd.gradient_bytes == sgd.optimizer_bytes == 4 * n_params
    assert adam.optimizer_bytes == 2 * 4 * n_params
    assert adam.total_bytes - sgd.total_bytes == 4 * n_params


def test_vgg16_batch_256_takes_no_real_memory():
    with meta_build():
        model = torchvision.models.vgg16()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    report = summary(model, (3, 224, 224), batch_size=256)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert report.activation_bytes > 15 * 2**30  # a real forward would write > 15 GiB
    assert report.total_macs == 256 * report.macs_per_sample
    assert grown < 200 * 1024


# ---------------------------------------------------------------------------------------------
# Receptive fields


def _closed_form(report, layers: list[tuple[str, nn.Module]]) -> None:
    """Each conv/pool row's (rf, jump, start) equals convatlas.arith's closed form for the stack so far."""
    specs = []
    for name, m in layers:
        if isinstance(m, nn.Conv2d):
            spec = arith.LayerSpec("conv", m.kernel_size[0], m.stride[0], m.padding[0], m.dilation[0])
        else:
            k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
            s = m.stride if isinstance(m.stride, int) else m.stride[0]
            p = m.padding if isinstance(m.padding, int) else m.padding[0]
            d = getattr(m, "dilation", 1)
            spec = arith.LayerSpec("pool", k, s or k, p, d if isinstance(d, int) else d[0])
        specs.append(spec)
        expected = arith.receptive_field(specs)[-1]
        row = report.row(name)
        assert row.receptive_field == (expected.rf, expected.rf), name
        assert row.jump == (expected.jump, expected.jump), name
        assert row.start == (expected.start, expected.start), name


@pytest.mark.parametrize("builder", ["vgg16", "alexnet"])
def test_sequential_receptive_fields_equal_closed_form(builder):
    with meta_build():
        model = getattr(torchvision.models, builder)()
    report = summary(model, (3, 224, 224))
    layers = [(f"features.{n}", m) for n, m in model.features.named_children()
              if isinstance(m, (nn.Conv2d, nn.MaxPool2d))]
    _closed_form(report, layers)
    assert report.receptive_field == {"vgg16": (212, 212), "alexnet": (195, 195)}[builder]


def test_dilated_stack_receptive_fields_equal_closed_form():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 5, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, 1, ceil_mode=True),
        nn.Conv2d(8, 8, 3, padding=2, dilation=2), nn.AvgPool2d(2), nn.Conv2d(8, 8, 3, padding=4, dilation=4),
        nn.Conv2d(8, 8, 1), nn.MaxPool2d(2, 1),
    )
    report = summary(model, (3, 97, 97))
    _closed_form(report, [(n, m) for n, m in model.named_children() if not isinstance(m, nn.ReLU)])


class _MaxAsAvg(TorchFunctionMode):
    """Max pooling sends gradient to one pixel per window; for measuring the receptive field
    replace it by average pooling of the same geometry, which reaches every pixel."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.max_pool2d or func is torch.max_pool2d:
            return self._avg(*args, **kwargs)
        return func(*args, **kwargs)

    @staticmethod
    def _avg(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
        assert dilation in (1, (1, 1), [1, 1]) and not return_indices
        return F.avg_pool2d(input, kernel_size, stride, padding, ceil_mode)


class _Stop(Exception):
    pass


def _gradient_field(model: nn.Module, size: int, layer: str) -> tuple[tuple[int, int], list[tuple[int, int]]]:
    """Input pixels that one output pixel of ``layer`` depends on, measured by back-propagating
    from that pixel with positive weights (so no path cancels) on a float64 copy of the model."""
    model = model.double().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif p.dim() == 1:
                p.fill_(1.0)
            else:
                p.copy_((torch.rand_like(p) + 0.5) / p[0].numel())
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.fill_(1.0)
            elif name.endswith("running_mean"):
                b.zero_()
    box = {}

    def stop(module, args, output):
        box["out"] = output
        raise _Stop

    handle = dict(model.named_modules())[layer].register_forward_hook(stop)
    x = (torch.rand(1, 3, size, size, dtype=torch.float64) + 0.5).requires_grad_()
    try:
        with _MaxAsAvg():
            model(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    out = box["out"]
    i, j = out.shape[-2] // 2, out.shape[-1] // 2
    out[0, :, i, j].sum().backward()
    seen = x.grad[0].abs().sum(0) > 0
    rows, cols = torch.nonzero(seen.any(1)).flatten(), torch.nonzero(seen.any(0)).flatten()
    return (i, j), [(rows.min().item(), rows.max().item()), (cols.min().item(), cols.max().item())]


def _expected_span(row, index: tuple[int, int], size: int) -> list[tuple[int, int]]:
    spans = []
    for axis in range(2):
        centre = row.start[axis] + index[axis] * row.jump[axis]
        half = (row.receptive_field[axis] - 1) / 2
        spans.append((max(0, int(centre - half)), min(size - 1, int(centre + half))))
    return spans


class _Branchy(nn.Module):
    """Inception-like branches with asymmetric kernels, a strided shortcut and concatenation."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.tall = nn.Sequential(nn.Conv2d(8, 8, (7, 1), padding=(3, 0)), nn.ReLU(), nn.Conv2d(8, 8, (7, 1), padding=(3, 0)))
        self.wide = nn.Sequential(nn.Conv2d(8, 8, (1, 5), padding=(0, 2)), nn.MaxPool2d(3, 1, 1))
        self.dilated = nn.Conv2d(8, 8, 3, padding=3, dilation=3)
        self.down = nn.Conv2d(24, 16, 3, stride=2, padding=1)
        self.shortcut = nn.Conv2d(24, 16, 1, stride=2)
        self.out = nn.Conv2d(16, 16, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = torch.cat([self.tall(x), self.wide(x), self.dilated(x)], dim=1)
        return self.out(torch.relu(self.down(x) + self.shortcut(x)))


@pytest.mark.parametrize("case", ["branchy", "resnet18", "densenet121", "googlenet_paper"])
def test_branched_receptive_fields_equal_gradient_measurement(case):
    """The largest receptive field over the branches, as tracked on the meta device, is the
    region of input pixels with non-zero gradient from one output pixel."""
    torch.manual_seed(0)
    if case == "branchy":
        model, size, layer = _Branchy(), 64, "out"
    elif case == "resnet18":
        model, size, layer = torchvision.models.resnet18(), 128, "layer2"
    elif case == "densenet121":
        model, size, layer = convatlas.create_model("densenet121"), 128, "features.denseblock1"
    else:
        model, size, layer = convatlas.create_model("googlenet_paper"), 160, "inception3a"
    report = summary(model, (3, size, size))
    index, measured = _gradient_field(model, size, layer)
    row = report.row(layer)
    assert row.field == "local"
    assert measured == _expected_span(row, index, size)
    if case == "branchy":
        assert row.receptive_field[0] != row.receptive_field[1]  # tall 7x1 branch vs wide 1x5


def test_squeeze_excitation_keeps_local_field_with_global_context():
    with meta_build():
        model = torchvision.models.efficientnet_b0()
    report = summary(model, (3, 224, 224))
    assert report.receptive_field == (851, 851)
    assert any(r.global_context for r in report.rows) and report.output_field == "global"


# ---------------------------------------------------------------------------------------------
# Models that cannot be traced


class _Gate(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.mean() > 0:  # data-dependent control flow
            return x * 2
        return x


class _DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3)
        self.gate = _Gate()
        self.conv2 = nn.Conv2d(8, 4, 3)

    def forward(self, x):
        return self.conv2(self.gate(self.conv1(x)))


def test_data_dependent_control_flow_is_named_and_report_goes_on():
    report = summary(_DataDependent(), (3, 16, 16))
    assert any("gate" in issue and "_local_scalar_dense" in issue for issue in report.issues)
    assert report.row("conv2").output_shape == (1, 4, 12, 12)
    assert report.total_macs == 8 * 14 * 14 * 27 + 4 * 12 * 12 * 72


@torch.library.custom_op("convatlas_test::blur", mutates_args=())
def _blur(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 3, 1, 1)


class _Blur(nn.Module):
    def forward(self, x):
        return _blur(x)


class _CustomOp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3)
        self.blur = _Blur()
        self.conv2 = nn.Conv2d(8, 4, 3)

    def forward(self, x):
        return self.conv2(self.blur(self.conv1(x)))


def test_operator_without_meta_kernel_is_named_and_report_goes_on():
    report = summary(_CustomOp(), (3, 16, 16))
    assert any("blur" in issue and "convatlas_test" in issue for issue in report.issues)
    assert report.row("conv2").output_shape == (1, 4, 12, 12)


class _MaskIndexing(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3)
        self.conv2 = nn.Conv2d(8, 4, 3)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        x = self.conv1(x)
        x = x[x > 0].view(1, 8, 14, 14)  # output shape depends on the data
        return self.head(self.conv2(x).mean((2, 3)))


def test_untraceable_model_still_gets_a_report():
    model = _MaskIndexing()
    report = summary(model, (3, 16, 16))
    assert not report.complete
    assert any("nonzero" in issue and "(model)" in issue for issue in report.issues)
    assert report.row("conv1").macs == 8 * 14 * 14 * 27
    unused = {r.name for r in report.rows if r.kind == "unused"}
    assert unused == {"conv2", "head"}
    assert report.total_params == sum(p.numel() for p in model.parameters())
    assert "WARNING" in report.table()


def test_input_too_small_raises_naming_the_layer():
    with meta_build():
        model = torchvision.models.vgg16()
    with pytest.raises(ValueError, match="features"):
        summary(model, (3, 16, 16))
    with pytest.raises(ValueError, match="CxHxW"):
        summary(model, "3xbig")
    with pytest.raises(ValueError, match="optimizer"):
        summary(model, (3, 32, 32), optimizer="lion")


def test_too_small_input_raises_input_too_small():
    with pytest.raises(convatlas.InputTooSmallError, match="at least"):  # the zoo's own message
        summary(convatlas.create_model("lenet5"), (1, 8, 8))
    with pytest.raises(convatlas.InputTooSmallError, match="conv2"):
        summary(_DataDependent(), (3, 4, 4))


# ---------------------------------------------------------------------------------------------
# Report: depth, exports, CLI


def test_depth_collapse_and_exports(tmp_path):
    with meta_build():
        model = torchvision.models.resnet18()
    report = summary(model, (3, 224, 224))
    top = report.rows_to_depth(1)
    assert {r.depth for r in top} == {0, 1}
    assert sum(r.macs for r in top if r.depth == 1) == report.total_macs == report.rows[0].macs
    rows = list(csv.DictReader(io.StringIO(report.to_csv(tmp_path / "r.csv", depth=2))))
    assert len(rows) == len(report.rows_to_depth(2))
    assert rows[0]["output_shape"] == "1x1000" and int(rows[0]["macs"]) == report.total_macs
    assert (tmp_path / "r.csv").read_text() == report.to_csv(depth=2)
    data = json.loads(report.to_json(tmp_path / "r.json"))
    assert data["total_macs"] == report.total_macs and len(data["rows"]) == len(report.rows)
    assert data["receptive_field"] == [435, 435]
    md = report.save(tmp_path / "r.md", depth=1)
    assert md.count("\n|") == len(top) + 2 and "| layer |" in md  # header, rule, rows
    assert "ResNet" in report.table(depth=0) and "layer1" not in report.table(depth=0)
    with pytest.raises(ValueError, match="format"):
        report.save(tmp_path / "r.xyz")


def test_cli_summary_csv_and_torchvision(tmp_path, capsys):
    out = tmp_path / "resnet18.csv"
    assert main(["summary", "resnet18", "--input", "3x64x64", "--depth", "1", "--format", "csv", "-o", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert rows[0]["type"] == type(convatlas.create_model("resnet18")).__name__
    assert all(int(r["depth"]) <= 1 for r in rows)
    capsys.readouterr()
    assert main(["summary", "torchvision:resnet18", "--format", "json", "--batch", "4", "--optimizer", "adam"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["batch_size"] == 4 and data["input_shapes"] == [[4, 3, 224, 224]]
    assert round(data["macs_per_sample"] / 1e9, 3) == 1.814  # torchvision meta _ops
    assert data["training_memory"]["state_factor"] == 2
    assert main(["summary", "no_such_net"]) == 2


def test_cli_list_shows_measured_numbers(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("CONVATLAS_CACHE_DIR", str(tmp_path))
    assert main(["list", "resnet*", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_name = {r["name"]: r for r in rows}
    assert by_name["resnet18"]["params"] == 11_689_512
    assert round(by_name["resnet50"]["macs"] / 1e9, 3) == 4.089
    assert by_name["resnet18"]["receptive_field"] == [435, 435]
    assert (tmp_path / "zoo-measurements.json").exists()
