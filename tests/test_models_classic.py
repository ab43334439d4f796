"""Family tests for the classic networks: LeNet-5, AlexNet, ZFNet, VGG, Network-in-Network.

Checked against independent sources: torchvision's implementations (same outputs after loading
their weights), the papers' tables and figures (LeNet-5 Table I, feature-map sizes of AlexNet's and
ZFNet's figures, VGG's depths), PyTorch's own LRN, and a short training run on real digits.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import convatlas
from convatlas.registry import get_builder
from convatlas.models.alexnet import AlexNetPaper
from convatlas.models.vgg import VGG

# ----------------------------------------------------------------------------------------------
# torchvision equivalents: same architecture -> same outputs after loading torchvision's weights

TORCHVISION_TWINS = [
    "alexnet", "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
]


_POOL = torch.rand(1_000_003, generator=torch.Generator().manual_seed(0))  # a prime length


def _fill(tensor: torch.Tensor, low: float, high: float, offset: int) -> None:
    """Fill with uniform(low, high) numbers cut from a random pool of prime length (tiled), which is
    much cheaper than drawing 140 M fresh numbers and still gives every row a different pattern."""
    flat, pool = tensor.view(-1), _POOL.roll(-offset)
    for start in range(0, flat.numel(), pool.numel()):
        chunk = flat[start:start + pool.numel()]
        chunk.copy_(pool[: chunk.numel()])
    flat.mul_(high - low).add_(low)


def _random_torchvision(name: str) -> nn.Module:
    """torchvision's model with random weights (He-uniform scale, non-trivial batch-norm statistics),
    built on the meta device and filled once instead of running torchvision's initialisation."""
    with torch.device("meta"):
        model = getattr(torchvision.models, name)(weights=None)
    model.to_empty(device="cpu")
    with torch.no_grad():
        for k, module in enumerate(model.modules()):
            offset = 7919 * k  # a different cut of the pool for every layer
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                bound = math.sqrt(6.0 / module.weight[0].numel())
                _fill(module.weight, -bound, bound, offset)
                _fill(module.bias, -0.1, 0.1, offset + 1)
            elif isinstance(module, nn.BatchNorm2d):
                _fill(module.weight, 0.5, 1.5, offset)
                _fill(module.bias, -0.1, 0.1, offset + 1)
                _fill(module.running_mean, -0.1, 0.1, offset + 2)
                _fill(module.running_var, 0.5, 1.5, offset + 3)
                module.num_batches_tracked.zero_()
    return model.eval()


@pytest.mark.parametrize("name", TORCHVISION_TWINS)
def test_torchvision_weights_give_torchvision_outputs(name):
    assert convatlas.model_card(name).torchvision == name
    theirs = _random_torchvision(name)
    with torch.device("meta"):  # our weights are all replaced by the loading, so skip initialising them
        ours = convatlas.create_model(name)
    ours.to_empty(device="cpu")
    convatlas.load_torchvision_weights(ours, theirs)
    ours.eval()
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    assert got.shape == (1, 1000)
    assert expected.abs().max() > 0.1, "a non-trivial output"
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# LeNet-5

# Table I of LeCun et al. (1998), as printed: rows are the S2 maps 0-5, columns the C3 maps 0-15.
TABLE_I = """
X...XXX..XXXX.XX
XX...XXX..XXXX.X
XXX...XXX..X.XXX
.XXX..XXXX..X.XX
..XXX..XXXX.XX.X
...XXX..XXXX.XXX
"""


def _table_i() -> torch.Tensor:
    rows = TABLE_I.split()
    return torch.tensor([[c == "X" for c in row] for row in rows])


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_lenet5_c3_connections_are_table_i(mode):
    torch.manual_seed(0)
    model = convatlas.create_model("lenet5")
    c3 = model.c3.train(mode == "train")
    assert torch.equal(c3.connection_table(), _table_i())
    # The same table, read from behaviour: which C3 maps change when one S2 map changes.
    x = torch.randn(2, 6, 14, 14)
    with torch.no_grad():
        base = c3(x)
        seen = torch.zeros(6, 16, dtype=torch.bool)
        for i in range(6):
            poked = x.clone()
            poked[:, i] += torch.randn(2, 14, 14)
            seen[i] = (c3(poked) - base).abs().amax(dim=(0, 2, 3)) > 0
    assert torch.equal(seen, _table_i())


def test_lenet5_c3_train_and_eval_paths_agree():
    torch.manual_seed(0)
    c3 = convatlas.create_model("lenet5").c3
    x = torch.randn(4, 6, 14, 14)
    with torch.no_grad():
        dense, grouped = c3.train()(x), c3.eval()(x)
    torch.testing.assert_close(dense, grouped, atol=1e-5, rtol=1e-5)


def test_lenet5_c5_trains_as_the_equal_matrix_product():
    """C5 covers its whole 5x5 input, so training computes it with F.linear; outputs and every
    gradient equal F.conv2d's. A larger input gets the real convolution (maps larger than 1x1)."""
    torch.manual_seed(0)
    c5 = convatlas.create_model("lenet5").c5.train()
    x = torch.randn(4, 16, 5, 5, requires_grad=True)
    fast = c5(x)
    slow = F.conv2d(x, c5.weight, c5.bias)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    upstream = torch.randn_like(slow)
    fast_grads = torch.autograd.grad(fast, (x, c5.weight, c5.bias), upstream)
    slow_grads = torch.autograd.grad(slow, (x, c5.weight, c5.bias), upstream)
    for a, b in zip(fast_grads, slow_grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(c5.eval()(x), slow, atol=1e-5, rtol=1e-5)
        big = torch.randn(2, 16, 9, 9)
        torch.testing.assert_close(c5.train()(big), F.conv2d(big, c5.weight, c5.bias), atol=1e-5, rtol=1e-5)
    assert c5(big).shape == (2, 120, 5, 5)


def test_lenet5_subsampling_is_block_sum_times_coefficient_plus_bias():
    torch.manual_seed(0)
    s2 = convatlas.create_model("lenet5").s2
    x = torch.randn(3, 6, 28, 28)
    with torch.no_grad():
        out = s2(x)
    block_sum = x[:, :, 0::2, 0::2] + x[:, :, 1::2, 0::2] + x[:, :, 0::2, 1::2] + x[:, :, 1::2, 1::2]
    expected = block_sum * s2.weight.detach().view(1, 6, 1, 1) + s2.bias.detach().view(1, 6, 1, 1)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_lenet5_paper_parameters_and_fixed_rbf():
    torch.manual_seed(0)
    model = convatlas.create_model("lenet5")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == 60_000  # Sec. II.B
    per_layer = {name: sum(p.numel() for p in getattr(model, name).parameters()) for name in
                 ("c1", "s2", "c3", "s4", "c5", "f6", "output")}
    # Sec. II.B: C1 156, S2 12, C3 1,516, S4 32, C5 48,120, F6 10,164, output none trainable
    assert per_layer == {"c1": 156, "s2": 12, "c3": 1516, "s4": 32, "c5": 48120, "f6": 10164, "output": 0}
    codes = model.output.codes
    assert codes.shape == (10, 84) and not codes.requires_grad
    assert set(codes.unique().tolist()) == {-1.0, 1.0}
    assert "output.codes" in model.state_dict()
    assert all(p is not codes for p in model.parameters())
    # The codes stay fixed while training, and the logits are the negative RBF penalties.
    before = codes.clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 1, 32, 32), torch.randint(0, 10, (8,))
    F.cross_entropy(model(x), y).backward()
    opt.step()
    assert torch.equal(model.output.codes, before)
    f6 = {}
    model.f6.register_forward_hook(lambda m, i, o: f6.update(out=o))
    model.eval()
    with torch.no_grad():
        logits = model(x)
    squashed = 1.7159 * torch.tanh(2.0 / 3.0 * f6["out"])
    penalties = ((squashed[:, None, :] - before[None]) ** 2).sum(dim=2)  # y_i = sum_j (x_j - w_ij)^2
    torch.testing.assert_close(logits, -penalties / math.sqrt(84), atol=1e-4, rtol=1e-5)


def test_lenet5_squashing_function_maps_one_to_one():
    f = convatlas.create_model("lenet5").squash
    out = f(torch.tensor([-1.0, 0.0, 1.0, 50.0]))
    # Appendix A: A = 1.7159, S = 2/3 chosen so that f(+-1) = +-1; the asymptote is A.
    torch.testing.assert_close(out, torch.tensor([-1.0, 0.0, 1.0, 1.7159]), atol=1e-4, rtol=0)


def test_lenet5_modern_is_the_common_simplification():
    model = convatlas.create_model("lenet5_modern", pool="avg", activation="tanh")
    assert isinstance(model.output, nn.Linear) and model.output.in_features == 84
    assert isinstance(model.s2, nn.AvgPool2d) and isinstance(model.act1, nn.Tanh)
    assert model.c3.in_channels == 6 and model.c3.out_channels == 16 and model.c3.groups == 1
    with pytest.raises(ValueError, match="pool must be"):
        convatlas.create_model("lenet5_modern", pool="median")


def _digits_32() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)
    x = F.pad(x, (2, 2, 2, 2))  # a 28x28 digit in a 32x32 field, as MNIST in the paper
    x = (x - x.mean()) / x.std()
    y = torch.tensor(digits.target)
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(y), generator=g)
    train, test = order[:1300], order[1300:]
    return x[train], y[train], x[test], y[test]


def test_lenet5_learns_real_digits():
    torch.manual_seed(0)
    x_train, y_train, x_test, y_test = _digits_32()
    model = convatlas.create_model("lenet5").train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(150):
        idx = torch.randint(0, len(y_train), (32,), generator=g)
        loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(dim=1) == y_test).float().mean().item()
    assert accuracy > 0.85, f"lenet5 reached only {accuracy:.1%} on held-out digits (chance 10%)"


def test_lenet5_rejects_more_classes_than_codes():
    with pytest.raises(ValueError, match="lenet5_modern"):
        convatlas.create_model("lenet5", num_classes=200)


# ----------------------------------------------------------------------------------------------
# AlexNet (paper) and ZFNet


def test_lrn_is_pytorch_formula_with_the_paper_constants():
    norm = AlexNetPaper().features.norm1
    x = 20.0 * torch.randn(2, 9, 4, 4)  # large enough for the denominator to matter
    # b_i = a_i / (k + alpha * sum_{j=max(0,i-n/2)}^{min(N-1,i+n/2)} a_j^2) ** beta, Sec. 3.3
    k, n, alpha, beta = 2.0, 5, 1e-4, 0.75
    expected = torch.empty_like(x)
    for i in range(x.shape[1]):
        lo, hi = max(0, i - n // 2), min(x.shape[1] - 1, i + n // 2)
        expected[:, i] = x[:, i] / (k + alpha * x[:, lo:hi + 1].square().sum(dim=1)) ** beta
    with torch.no_grad():
        got = norm(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # PyTorch's LRN divides alpha by the window size, so the paper's alpha is passed as alpha * n.
    torch.testing.assert_close(got, F.local_response_norm(x, n, alpha=alpha * n, beta=beta, k=k))
    assert (got - x).abs().max() > 0.1


def test_alexnet_paper_towers_are_grouped():
    model = AlexNetPaper()
    f = model.features
    assert [f.conv1.groups, f.conv2.groups, f.conv3.groups, f.conv4.groups, f.conv5.groups] == [1, 2, 1, 2, 2]
    assert f.conv2.weight.shape == (256, 48, 5, 5)
    assert f.conv4.weight.shape == (384, 192, 3, 3)
    assert f.conv5.weight.shape == (256, 192, 3, 3)
    # One GPU's half of conv2 sees only its own half of the 96 conv1 maps.
    x = torch.randn(1, 96, 27, 27)
    poked = x.clone()
    poked[:, 48:] += 1.0
    with torch.no_grad():
        change = (f.conv2(poked) - f.conv2(x)).abs().amax(dim=(0, 2, 3))
    assert change[:128].max() == 0 and change[128:].min() > 0


def _map_sizes(model: nn.Module, side: int, names: list[str]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    modules = dict(model.named_modules())

    def record(name: str):
        def hook(module: nn.Module, inputs, output: torch.Tensor) -> None:
            sizes[name] = output.shape[-1]
        return hook

    for name in names:
        modules[name].register_forward_hook(record(name))
    with torch.no_grad():
        model.eval()(torch.empty(1, 3, side, side, device="meta"))
    return sizes


def test_alexnet_paper_map_sizes_follow_figure_2():
    with torch.device("meta"):
        model = get_builder("alexnet_paper")()
    names = ["features.conv1", "features.pool1", "features.conv2", "features.pool2", "features.conv5", "features.pool5"]
    assert _map_sizes(model, 227, names) == dict(zip(names, [55, 27, 27, 13, 13, 6]))
    assert convatlas.model_card("alexnet_paper").input_size == (3, 227, 227)


def test_zfnet_map_sizes_follow_figure_3():
    with torch.device("meta"):
        model = get_builder("zfnet")()
    names = ["features.conv1", "features.pool1", "features.conv2", "features.pool2", "features.pool5"]
    assert _map_sizes(model, 224, names) == dict(zip(names, [110, 55, 26, 13, 6]))
    f = model.features
    assert f.conv1.kernel_size == (7, 7) and f.conv1.stride == (2, 2)
    assert all(getattr(f, f"conv{i}").groups == 1 for i in range(1, 6))  # dense layers 3-5


# ----------------------------------------------------------------------------------------------
# VGG


@pytest.mark.parametrize(
    "name, weight_layers, one_by_one, has_lrn",
    [("vgg11", 11, 0, False), ("vgg11_lrn", 11, 0, True), ("vgg13", 13, 0, False), ("vgg16_c", 16, 3, False),
     ("vgg16", 16, 0, False), ("vgg19", 19, 0, False), ("vgg19_bn", 19, 0, False)],
)
def test_vgg_configurations_have_the_papers_depths(name, weight_layers, one_by_one, has_lrn):
    with torch.device("meta"):
        model = get_builder(name)()
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    assert len(convs) + len(linears) == weight_layers  # Table 1 / Table 2 depth
    assert sum(c.kernel_size == (1, 1) for c in convs) == one_by_one
    assert all(c.kernel_size in {(1, 1), (3, 3)} and c.stride == (1, 1) for c in convs)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.features) == 5
    assert any(isinstance(m, nn.LocalResponseNorm) for m in model.features) == has_lrn


def test_vgg_bad_configuration_is_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown VGG configuration 'Z'.*A, A-LRN, B, C, D, E"):
        VGG("Z")
    with pytest.raises(ValueError, match="bad VGG configuration entry 'conv5-64'"):
        VGG([64, "conv5-64", "M"])
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        VGG("A", num_classes=0)
    assert isinstance(VGG("a_lrn").features[2], nn.LocalResponseNorm)  # letters are case-insensitive


@pytest.mark.parametrize("name", ["lenet5", "lenet5_modern", "alexnet", "alexnet_paper", "zfnet", "vgg16",
                                  "nin_cifar10", "nin_imagenet"])
@pytest.mark.parametrize("bad", [0, -1, 2.5])
def test_builders_reject_bad_num_classes(name, bad):
    with pytest.raises(ValueError, match="num_classes"):
        get_builder(name)(num_classes=bad)
    with pytest.raises(ValueError, match="num_classes"):
        convatlas.create_model(name, num_classes=bad)


# ----------------------------------------------------------------------------------------------
# Network-in-Network


def test_nin_ends_in_global_average_pooling_of_class_maps():
    torch.manual_seed(0)
    model = convatlas.create_model("nin_cifar10").eval()
    assert not any(isinstance(m, nn.Linear) for m in model.modules())  # no fully connected layer
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        maps = model.features(x)
        out = model(x)
    assert maps.shape == (2, 10, 8, 8)  # 32 -> 16 -> 8 with Caffe's rounded-up pools
    torch.testing.assert_close(out, maps.mean(dim=(2, 3)))
    block = model.features.mlpconv1
    assert [m.kernel_size for m in block if isinstance(m, nn.Conv2d)] == [(5, 5), (1, 1), (1, 1)]
