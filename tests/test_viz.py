"""convatlas.viz against independent implementations: captum (deconvnet, Grad-CAM, saliency,
guided backprop, occlusion), torchvision's feature extractor (feature maps), and PyTorch's own
max_unpool2d / autograd (unpooling, receptive fields); plus ZFNet's occlusion experiment on a
LeNet-5 trained here on the embedded digits."""

from __future__ import annotations

import copy
import functools
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from captum.attr import GuidedBackprop, LayerAttribution, LayerGradCam, NeuronDeconvolution, Occlusion, Saliency
from torch import nn
from torchvision.models import vgg
from torchvision.models.feature_extraction import create_feature_extractor

import convatlas
from convatlas import viz
from convatlas.cli import main
from convatlas.data import load_dataset
from convatlas.train import NO_DISTORTIONS
from convatlas.viz.deconvnet import DeconvnetError, unpool

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # captum's notes on hooks and grads


# --------------------------------------------------------------------------------------------
# Networks and data.


def zfnet_like(dtype: torch.dtype = torch.float64) -> nn.Sequential:
    """A small ZFNet-shaped chain: 7x7/2 conv, overlapping 3x3/2 max-pools, BN folded, nn.ReLU."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 7, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(8, 16, 5, stride=2, padding=2), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.Conv2d(16, 12, 3, padding=1, groups=2), nn.ReLU(), nn.Dropout(),
        nn.Flatten(), nn.Linear(12 * 4 * 4, 5),
    )
    with torch.no_grad():  # make BN's transpose non-trivial
        net[4].running_mean.uniform_(-1, 1)
        net[4].running_var.uniform_(0.5, 2.0)
        net[4].weight.uniform_(0.5, 2.0)
    return net.to(dtype).eval()


def without_inplace(model: nn.Module) -> nn.Module:
    """A copy whose ReLUs are not in-place (captum's backward hooks need that)."""
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    return model


@functools.cache
def _random_alexnet() -> nn.Module:
    """torchvision's AlexNet, random weights, 7 classes (built once; the tests do not change it)."""
    torch.manual_seed(0)
    return torchvision.models.alexnet(weights=None, num_classes=7).eval()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These tests are small; one thread avoids the cost of spinning threads on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits(lenet) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The embedded digits as the trained LeNet-5 sees them (32x32): train images, labels, test
    images, labels."""
    splits = load_dataset("digits", image_size=lenet.image_size[0], fit=lenet.fit)
    return splits.train.images, splits.train.labels, splits.test.images, splits.test.labels


@pytest.fixture(scope="module")
def lenet(tmp_path_factory) -> viz.InspectedModel:
    """lenet5_modern (ReLU, max-pool) trained by `convatlas train` for two epochs on the
    embedded digits, loaded back from its run directory."""
    run_dir = tmp_path_factory.mktemp("runs") / "lenet5"
    convatlas.train("lenet5_modern", epochs=2, out=run_dir, quiet=True, optimizer="adamw", lr=3e-3,
                    weight_decay=0.0, device="cpu", **NO_DISTORTIONS)
    return viz.load_model(run_dir)


def test_lenet_fixture_learned_the_digits(lenet, digits):
    _, _, test_x, test_y = digits
    probs = viz.predict(lenet.model, lenet.preprocess(test_x))
    assert (probs.argmax(1) == test_y).float().mean() > 0.9


def _assert_close(ours: torch.Tensor, reference: torch.Tensor, rel: float) -> None:
    scale = float(reference.abs().max())
    assert scale > 0, "reference is all zeros: the comparison would prove nothing"
    torch.testing.assert_close(ours, reference, rtol=0, atol=rel * scale)


# --------------------------------------------------------------------------------------------
# Deconvnet.


@pytest.mark.parametrize("layer", ["0", "2", "3", "4", "6", "8"])
@pytest.mark.parametrize("keep", ["max", "map"])
def test_deconvnet_equals_captum_neuron_deconvolution(layer, keep):
    net = zfnet_like()
    torch.manual_seed(1)
    x = torch.randn(1, 3, 67, 67, dtype=torch.float64)
    module = dict(net.named_modules())[layer]
    result = viz.deconvnet(net, x, layer, top_k=3, keep=keep)
    assert len(result.channels) == 3
    for k, channel in enumerate(result.channels):
        row, col = result.positions[k]
        if keep == "max":  # captum's gradient starts at 1; ZFNet's projection at the activation
            reference = NeuronDeconvolution(net, module).attribute(x, neuron_selector=(channel, row, col))
            reference = reference * result.activations[k]
        else:
            reference = NeuronDeconvolution(net, module).attribute(
                x, neuron_selector=lambda out, c=channel: (out[:, c] * out[:, c].detach()).sum())
        _assert_close(result.projections[k : k + 1], reference, 1e-12)


def _vgg11_features() -> nn.Module:
    """torchvision's VGG-11 (configuration A) feature extractor, without the 120M-weight classifier."""
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(features=vgg.make_layers(vgg.cfgs["A"]))).eval()


@pytest.mark.parametrize("arch, size, layer", [("alexnet", 224, "features.10"), ("vgg11", 64, "features.13")])
def test_deconvnet_equals_captum_on_torchvision_networks(arch, size, layer):
    net = _random_alexnet() if arch == "alexnet" else _vgg11_features()  # in-place ReLUs
    torch.manual_seed(0)
    x = torch.randn(1, 3, size, size)
    result = viz.deconvnet(net, x, layer, top_k=2)
    reference_net = without_inplace(net)
    module = dict(reference_net.named_modules())[layer]
    for k, channel in enumerate(result.channels):
        reference = NeuronDeconvolution(reference_net, module).attribute(
            x, neuron_selector=(channel, *result.positions[k])) * result.activations[k]
        _assert_close(result.projections[k : k + 1], reference, 1e-5)


def test_deconvnet_on_the_zoo_zfnet_passes_contrast_normalisation_through():
    """The zoo's ZFNet has local response normalisation after pool1 and pool2. Below it the
    projection equals captum's; above it, captum's with the LRN's backward made the identity --
    the deconvnet passes normalisation through, as documented."""
    net = convatlas.create_model("zfnet").eval()
    torch.manual_seed(0)
    x = torch.randn(1, 3, 207, 207)  # the smallest input ZFNet takes
    modules = dict(net.named_modules())
    for layer, skip_lrn in [("features.pool1", False), ("features.relu5", True)]:
        result = viz.deconvnet(net, x, layer, top_k=2)
        handles = [m.register_full_backward_hook(lambda module, grad_in, grad_out: grad_out)
                   for m in net.modules() if isinstance(m, nn.LocalResponseNorm)] if skip_lrn else []
        try:
            for k, channel in enumerate(result.channels):
                reference = NeuronDeconvolution(net, modules[layer]).attribute(
                    x, neuron_selector=(channel, *result.positions[k])) * result.activations[k]
                _assert_close(result.projections[k : k + 1], reference, 1e-5)
        finally:
            for h in handles:
                h.remove()


def test_deconvnet_equals_captum_on_trained_lenet(lenet, digits):
    x = lenet.preprocess(digits[2][:1])
    for layer in ("act3", "s4", "c5"):
        result = viz.deconvnet(lenet.model, x, layer, channel=3)
        module = dict(lenet.model.named_modules())[layer]
        reference = NeuronDeconvolution(lenet.model, module).attribute(
            x, neuron_selector=(3, *result.positions[0])) * result.activations[0]
        _assert_close(result.projections, reference, 1e-5)


def test_unpooling_equals_max_unpool2d_for_non_overlapping_windows():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 12, 12)
    pooled, switches = F.max_pool2d(x, 2, return_indices=True)
    signal = torch.randn_like(pooled)
    torch.testing.assert_close(unpool(signal, switches, tuple(x.shape)), F.max_unpool2d(signal, switches, 2))


def test_receptive_box_equals_the_gradient_support():
    """With positive filters, positive inputs and average pooling every path is active, so the
    pixels a unit's gradient reaches are exactly its receptive field (clipped to the image)."""

    def chain(pool: type[nn.Module]) -> nn.Sequential:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(1, 2, 5, stride=2, padding=2), nn.ReLU(), pool(2, 2),
                            nn.Conv2d(2, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 1, 3, stride=2, dilation=2))
        for p in net.parameters():
            p.data.uniform_(0.1, 1.0)
        return net

    x = torch.rand(1, 1, 40, 40) + 0.1
    steps, out = viz.trace_chain(chain(nn.MaxPool2d), x, "5")  # the deconvnet's chain has max-pools
    averaging = chain(nn.AvgPool2d)
    for row, col in [(0, 0), (1, 2), (out.shape[2] - 1, out.shape[3] - 1)]:
        image = x.clone().requires_grad_(True)
        averaging(image)[0, 0, row, col].backward()
        rows, cols = torch.nonzero(image.grad[0, 0], as_tuple=True)
        top, left, bottom, right = viz.receptive_box(steps, row, col)
        assert (int(rows.min()), int(cols.min())) == (max(top, 0), max(left, 0))
        assert (int(rows.max()) + 1, int(cols.max()) + 1) == (min(bottom, 40), min(right, 40))


def test_deconvnet_projection_stays_inside_the_receptive_field(lenet, digits):
    x = lenet.preprocess(digits[2][1:2])
    result = viz.deconvnet(lenet.model, x, "act3", top_k=4)
    for projection, (top, left, bottom, right) in zip(result.projections, result.boxes):
        rows, cols = torch.nonzero(projection[0], as_tuple=True)
        assert len(rows) > 0
        assert rows.min() >= top and rows.max() < bottom and cols.min() >= left and cols.max() < right


def test_deconvnet_names_the_layer_it_cannot_invert():
    resnet = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(1, 3, 64, 64)
    with pytest.raises(DeconvnetError, match=r"'layer1.0.relu'.*residual addition.*can project: conv1, bn1"):
        viz.deconvnet(resnet, x, "layer2.0.conv1")
    assert viz.projectable_layers(resnet, x)[-1] == "layer1.0.bn2"
    paper_lenet = convatlas.create_model("lenet5").eval()
    with pytest.raises(DeconvnetError, match=r"cannot invert layer 'squash' \(ScaledTanh\).*can project: c1"):
        viz.deconvnet(paper_lenet, torch.randn(1, 1, 32, 32), "c3")

    class FunctionalRelu(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3)

        def forward(self, x):
            return self.conv2(F.relu(self.conv1(x)))

    with pytest.raises(DeconvnetError, match=r"'conv2' \(Conv2d\) does not take the output of 'conv1'"):
        viz.deconvnet(FunctionalRelu(), torch.randn(1, 3, 9, 9), "conv2")


# --------------------------------------------------------------------------------------------
# Grad-CAM, saliency, guided backpropagation.


def test_gradcam_equals_captum_layer_gradcam(lenet, digits):
    torch.manual_seed(2)
    cases = [(_random_alexnet(), torch.randn(1, 3, 128, 128), "features.10", 3),
             (lenet.model, lenet.preprocess(digits[2][:1]), "act3", None),
             (zfnet_like(), torch.randn(1, 3, 67, 67, dtype=torch.float64), "6", 2)]
    for model, x, layer, target in cases:
        result = viz.gradcam(model, x, layer, target)
        reference_net = without_inplace(model)
        module = dict(reference_net.named_modules())[layer]
        low = LayerGradCam(reference_net, module).attribute(x, target=result.target, relu_attributions=True)
        _assert_close(result.low_res, low[0, 0], 1e-5)
        up = LayerAttribution.interpolate(low, tuple(x.shape[2:]), interpolate_mode="bilinear")
        _assert_close(result.heatmap, up[0, 0], 1e-5)


def test_default_gradcam_layer_is_the_last_convolutional_block():
    resnet = torchvision.models.resnet18(weights=None).eval()
    assert viz.gradcam(resnet, torch.randn(1, 3, 64, 64)).layer == "layer4"
    assert viz.gradcam(_random_alexnet(), torch.randn(1, 3, 128, 128)).layer == "features"


def test_saliency_equals_captum_saliency(lenet, digits):
    torch.manual_seed(3)
    for model, x in [(_random_alexnet(), torch.randn(1, 3, 96, 96)), (lenet.model, lenet.preprocess(digits[2][:1]))]:
        result = viz.saliency(model, x)
        assert result.target == int(viz.predict(model, x).argmax())
        reference = Saliency(model).attribute(x, target=result.target, abs=True)
        _assert_close(result.gradient.abs(), reference[0], 1e-6)
        _assert_close(result.saliency, reference[0].amax(dim=0), 1e-6)


def test_guided_backprop_equals_captum_guided_backprop(lenet, digits):
    torch.manual_seed(4)
    cases = [(_random_alexnet(), torch.randn(1, 3, 96, 96)), (lenet.model, lenet.preprocess(digits[2][:1])),
             (zfnet_like(), torch.randn(1, 3, 67, 67, dtype=torch.float64))]
    for model, x in cases:
        result = viz.guided_backprop(model, x, target=1)
        reference = GuidedBackprop(without_inplace(model)).attribute(x, target=1)
        _assert_close(result.gradient, reference[0], 1e-5)
        plain = viz.saliency(model, x, target=1).gradient
        assert not torch.allclose(result.gradient, plain), "guided backprop must differ from the plain gradient"


# --------------------------------------------------------------------------------------------
# Occlusion.


def _probabilities(model):
    return lambda inputs: model(inputs).softmax(dim=1)


def test_occlusion_equals_captum_occlusion(lenet, digits):
    x = lenet.preprocess(digits[2][:1])
    target = int(digits[3][0])
    # non-overlapping squares: captum's attribution at a square is p(x) - p(occluded)
    result = viz.occlusion(lenet.model, x, target, window=8, stride=8)
    reference = Occlusion(_probabilities(lenet.model)).attribute(
        x, sliding_window_shapes=(1, 8, 8), strides=(1, 8, 8), baselines=0.0, target=target)
    expected = result.base_probability - reference[0, 0, ::8, ::8]
    _assert_close(result.probability, expected, 1e-5)
    # overlapping squares cut by the border: per-pixel mean drop equals captum's attribution
    net, x = zfnet_like(), torch.randn(1, 3, 67, 67, dtype=torch.float64)  # float64: drops are ~1e-3
    result = viz.occlusion(net, x, 2, window=20, stride=8)
    assert result.rows == [0, 8, 16, 24, 32, 40, 48]  # ceil((67 - 20) / 8) + 1 = 7 positions
    reference = Occlusion(_probabilities(net)).attribute(
        x, sliding_window_shapes=(3, 20, 20), strides=(3, 8, 8), baselines=0.0, target=2)
    for channel in range(3):  # captum sums its attributions in float32
        _assert_close(result.pixel_drop.float(), reference[0, channel], 1e-5)


def test_occluding_the_strokes_lowers_the_correct_class_more_than_the_border(lenet, digits):
    """ZFNet's occlusion experiment on digits: the network looks at the digit, not the margin."""
    _, _, test_x, test_y = digits
    stroke_drops, border_drops = [], []
    for image, label in zip(test_x[::50], test_y[::50]):  # two of each class
        result = viz.occlusion(lenet.model, lenet.preprocess(image[None]), int(label), window=8, stride=4)
        ink = torch.tensor([[float(image[0, r : r + 8, c : c + 8].float().sum()) for c in result.cols]
                            for r in result.rows])
        drop = result.base_probability - result.probability
        stroke_drops.append(float(drop[ink >= 0.5 * ink.max()].mean()))
        assert (ink <= 0.02 * ink.max()).any(), "the 32x32 digits have an empty margin"
        border_drops.append(float(drop[ink <= 0.02 * ink.max()].mean()))
    stroke, border = np.array(stroke_drops), np.array(border_drops)
    assert stroke.mean() > border.mean() + 0.1, (stroke.mean(), border.mean())
    assert (stroke > border).mean() >= 0.8


# --------------------------------------------------------------------------------------------
# Feature maps, filters, top patches.


def test_feature_maps_equal_torchvision_feature_extractor(lenet, digits):
    alexnet, x = _random_alexnet(), torch.randn(1, 3, 128, 128)
    for model, x, layer in [(alexnet, x, "features.4"), (lenet.model, lenet.preprocess(digits[2][:1]), "act3")]:
        extractor = create_feature_extractor(model, return_nodes={layer: "out"})
        torch.testing.assert_close(viz.feature_maps(model, x, layer), extractor(x)["out"][0])
    with pytest.raises(ValueError, match=r"not feature maps.*layers with feature maps: c1, act1"):
        viz.feature_maps(lenet.model, lenet.preprocess(digits[2][:1]), "f6")


def test_first_layer_filters_in_colour_and_later_layers_per_input_channel(lenet):
    alexnet = _random_alexnet()
    grid = viz.filter_grid(alexnet)
    assert grid.colour and grid.layer == "features.0" and grid.image.shape[2] == 3
    weight = alexnet.features[0].weight.detach().numpy()
    k = 11  # tile 0 sits at (1, 1); tile 1 to its right
    for index, (top, left) in enumerate([(1, 1), (1, 2 + k)]):
        w = weight[index].transpose(1, 2, 0)
        np.testing.assert_allclose(grid.image[top : top + k, left : left + k], (w - w.min()) / (w.max() - w.min()),
                                   rtol=0, atol=1e-6)
    later = viz.filter_grid(lenet.model, "c3", max_inputs=6)
    assert not later.colour and (later.rows, later.cols) == (16, 6) and later.image.ndim == 2
    w = lenet.model.c3.weight.detach().numpy()[2]  # filter 2, input channel 4: row 2, column 4
    np.testing.assert_allclose(later.image[1 + 2 * 6 : 1 + 2 * 6 + 5, 1 + 4 * 6 : 1 + 4 * 6 + 5],
                               (w[4] - w.min()) / (w.max() - w.min()), rtol=0, atol=1e-6)


def test_top_patches_are_the_strongest_units_with_their_projections(lenet, digits):
    images = digits[2][::5]  # 200 images, 20 of each class
    found = viz.top_patches(lenet.model, images, "act3", 5, preprocess=lenet.preprocess, top_k=4)
    extractor = create_feature_extractor(lenet.model, return_nodes={"act3": "out"})
    with torch.no_grad():
        maxima = extractor(lenet.preprocess(images))["out"][:, 5].flatten(1).amax(dim=1)
    assert found.image_indices == maxima.argsort(descending=True)[:4].tolist()
    np.testing.assert_allclose(found.activations, maxima.sort(descending=True).values[:4].numpy(), rtol=1e-5)
    module = lenet.model.act3
    for k, index in enumerate(found.image_indices):
        x = lenet.preprocess(images[index : index + 1])
        reference = NeuronDeconvolution(lenet.model, module).attribute(
            x, neuron_selector=(5, *found.positions[k])) * found.activations[k]
        top, left, bottom, right = found.boxes[k]
        assert bottom - top == 14 and right - left == 14  # LeNet's C3 sees 14x14 pixels
        padded = F.pad(reference[0], (14, 14, 14, 14))
        _assert_close(found.projections[k], padded[:, top + 14 : bottom + 14, left + 14 : right + 14], 1e-5)
        assert torch.equal(found.patches[k], F.pad(images[index], (14, 14, 14, 14))[:, top + 14 : bottom + 14,
                                                                                   left + 14 : right + 14])


# --------------------------------------------------------------------------------------------
# Sources, bad input, pictures, command line.


def test_zoo_model_with_torchvision_weights_matches_torchvision():
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).eval()  # stands in for IMAGENET1K_V1 (offline)
    inspected = viz.load_model("resnet18", weights=reference)
    assert inspected.classes is not None and len(inspected.classes) == 1000 and inspected.in_channels == 3
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(viz.predict(inspected.model, x), reference(x).softmax(1))
    with pytest.raises(ValueError, match="zoo models"):
        viz.load_model(reference, weights=reference)


def test_bad_input_gets_clear_errors(lenet, tmp_path):
    x = torch.randn(1, 1, 32, 32)
    with pytest.raises(ValueError, match=r"no layer named 'conv9'.*Valid layer names: c1 \(Conv2d\), act1 \(ReLU\)"):
        viz.feature_maps(lenet.model, x, "conv9")
    with pytest.raises(ValueError, match=r"Did you mean 'c3'"):
        viz.deconvnet(lenet.model, x, "c33")
    with pytest.raises(ValueError, match=r"channel 16 is out of range: layer 'c3' has 16 channels \(0..15\)"):
        viz.deconvnet(lenet.model, x, "c3", channel=16)
    with pytest.raises(ValueError, match=r"channel 6 is out of range"):
        viz.filter_grid(lenet.model, "c1", channel=6)
    with pytest.raises(ValueError, match=r"'act1' is a ReLU, but a Conv2d convolution is needed"):
        viz.filter_grid(lenet.model, "act1")
    garbage = tmp_path / "digit.png"
    garbage.write_bytes(b"this is not a picture")
    with pytest.raises(ValueError, match=r"cannot read image .*digit.png.*Pillow can open"):
        viz.load_image(lenet, garbage)
    with pytest.raises(FileNotFoundError, match="image file not found"):
        viz.load_image(lenet, tmp_path / "missing.png")
    with pytest.raises(ValueError, match="unknown method 'lrp'"):
        viz.visualize(lenet, "lrp", tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"target class must be an integer in 0..9"):
        viz.gradcam(lenet.model, x, target=10)
    with pytest.raises(ValueError, match="occlusion stride must be between 1 and the window"):
        viz.occlusion(lenet.model, x, window=4, stride=5)
    with pytest.raises(ValueError, match="not a run directory"):
        viz.load_model(tmp_path)


def _is_png(path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_directory_brings_its_dataset_image_and_label(lenet, digits):
    assert lenet.run_dir is not None and lenet.dataset_name == "digits" and lenet.classes == [str(d) for d in range(10)]
    image, label, caption = viz.load_image(lenet)
    assert torch.equal(image[0], digits[2][0]) and label == int(digits[3][0]) and "test image 0" in caption
    images, indices, _ = viz.sample_images(lenet, 50)  # evenly spaced: the split is sorted by class
    assert indices == [round(i * 999 / 49) for i in range(50)] and torch.equal(images, digits[2][indices])


def test_visualize_writes_labelled_pngs(lenet, digits, tmp_path):
    for method in viz.METHODS:
        out = tmp_path / f"{method}.png"
        result = viz.visualize(lenet, method, out, num_images=100)
        assert _is_png(out) and out.stat().st_size < 300_000 and result.method == method
        if method == "occlusion":  # the correct class of the dataset's image 0
            assert result.target == str(int(digits[3][0])) and "unoccluded" in result.summary
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary files left


def test_cli_visualize(tmp_path, capsys):
    from PIL import Image

    picture = tmp_path / "digit.png"
    Image.fromarray((np.random.default_rng(0).random((28, 28)) * 255).astype(np.uint8)).save(picture)
    out = tmp_path / "deconv.png"
    code = main(["visualize", "lenet5_modern", "--method", "deconvnet", "--layer", "c3", "--channel", "2",
                 "--image", str(picture), "-o", str(out)])
    assert code == 0 and _is_png(out)
    assert "wrote" in capsys.readouterr().out
    code = main(["visualize", "lenet5_modern", "--method", "features", "--layer", "nope", "--image", str(picture),
                 "-o", str(tmp_path / "f.png")])
    err = capsys.readouterr().err
    assert code == 2 and "no layer named 'nope'" in err and "c1 (Conv2d)" in err
    code = main(["visualize", "lenet5_modern", "--method", "features", "--image", str(tmp_path / "none.png"),
                 "-o", str(tmp_path / "f.png")])
    assert code == 2 and "image file not found" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# Every method with its default layer, on one network of every family.

# The smallest / fastest member of each family at its card's input size (all the minis, both
# LeNets); test_every_family_has_a_network_here keeps the table complete.
FAMILY_NETWORKS = {
    "alexnet": ["alexnet"],
    "densenet": ["densenet40_k12"],
    "efficientnet": ["efficientnet_b0"],
    "inception": ["googlenet"],
    "lenet": ["lenet5", "lenet5_modern"],
    "nas": ["nas"],
    "mini": ["alexnet_mini", "googlenet_mini", "mobilenet_mini", "resnet_mini", "vgg_mini"],
    "mobilenet": ["mobilenet_v1_025"],
    "nasnet": ["nasnet_a_mobile"],
    "nin": ["nin_cifar10"],
    "preact_resnet": ["preact_resnet110"],
    "resnet": ["resnet20"],
    "resnext": ["resnext50_32x4d"],
    "squeezenet": ["squeezenet1_1"],
    "vgg": ["vgg11"],
    "wide_resnet": ["wrn_16_8"],
    "zfnet": ["zfnet"],
}


def test_every_family_has_a_network_here():
    families = {convatlas.model_card(n).family for n in convatlas.list_models(task="classification")}
    assert families == set(FAMILY_NETWORKS)
    for family, names in FAMILY_NETWORKS.items():
        assert all(convatlas.model_card(n).family == family for n in names)


def _output_shapes_per_call(model: nn.Module, x: torch.Tensor) -> dict[str, list[tuple[int, ...] | None]]:
    """The output shape of every call of every named module for ``x``, in call order."""
    shapes: dict[str, list] = {}
    handles = [m.register_forward_hook(lambda m, i, o, n=n: shapes.setdefault(n, []).append(
        tuple(o.shape) if isinstance(o, torch.Tensor) else None)) for n, m in model.named_modules() if n]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return shapes


def _is_map(shape, larger_than_1x1: bool = True) -> bool:
    return shape is not None and len(shape) == 4 and (not larger_than_1x1 or shape[2] * shape[3] > 1)


def _first_conv_to_run(model: nn.Module, x: torch.Tensor) -> str:
    ran: list[str] = []
    handles = [m.register_forward_hook(lambda m, i, o, n=n: ran.append(n))
               for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return ran[0]


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for names in FAMILY_NETWORKS.values() for n in names])
def test_every_method_runs_with_its_default_layer(name, tmp_path):
    """Each method's default layer is one it can use, at the call it uses: Grad-CAM and feature
    maps the last call of the layer, the deconvnet (and top patches) the first."""
    torch.manual_seed(0)
    model = convatlas.create_model(name).eval()
    inspected = viz.load_model(model)
    x = inspected.preprocess(viz.load_image(inspected)[0])
    calls = _output_shapes_per_call(model, x)
    projectable = viz.projectable_layers(model, x)
    side = inspected.image_size[0]
    modules = dict(model.named_modules())
    has_relu = any(isinstance(m, nn.ReLU) for m in model.modules())
    for method in viz.METHODS:
        out = tmp_path / f"{method}.png"
        if method == "guided-backprop" and not has_relu:  # its rule changes the backward pass of nn.ReLU
            with pytest.raises(ValueError, match="has no nn.ReLU module"):
                viz.visualize(inspected, method, out)
            continue
        result = viz.visualize(inspected, method, out, num_images=6, top_k=4, window=side // 2, stride=side // 2)
        assert _is_png(out) and out.stat().st_size > 5_000, method
        layer = result.layer
        if method == "filters":
            assert isinstance(modules[layer], nn.Conv2d) and layer == _first_conv_to_run(model, x)
        elif method == "features":
            assert _is_map(calls[layer][-1], larger_than_1x1=False), (method, layer, calls[layer])
        elif method == "gradcam":
            assert _is_map(calls[layer][-1]), (method, layer, calls[layer])
        elif method in ("deconvnet", "top-patches"):
            assert layer in projectable and _is_map(calls[layer][0]), (method, layer, calls[layer])
        else:
            assert layer is None, method


@pytest.fixture(scope="module")
def paper_lenet_run(tmp_path_factory):
    """The paper's LeNet-5 (one ScaledTanh `squash` after every layer, RBF output) trained for one
    epoch by `convatlas train` on the embedded digits: its run directory."""
    run_dir = tmp_path_factory.mktemp("runs") / "lenet5_paper"
    convatlas.train("lenet5", epochs=1, out=run_dir, quiet=True, threads=1, device="cpu")
    return run_dir


@pytest.mark.slow
def test_gradcam_on_a_trained_paper_lenet_uses_the_last_spatial_layer(paper_lenet_run, tmp_path, capsys):
    """`squash` runs last with the 84 units of F6; Grad-CAM's default is the last layer whose last
    call gives maps: S4 after its squashing (`maps.S4`, 16 x 5 x 5)."""
    inspected = viz.load_model(paper_lenet_run)
    x = inspected.preprocess(viz.load_image(inspected)[0])
    assert viz.gradcam(inspected.model, x).layer == "maps.S4"
    out = tmp_path / "gradcam.png"
    code = main(["visualize", str(paper_lenet_run), "--method", "gradcam", "-o", str(out)])
    assert code == 0 and _is_png(out) and "gradcam of lenet5" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"at layer 'squash', got \(1, 84\) at its last call .*default, 'maps.S4'"):
        viz.gradcam(inspected.model, x, "squash")


# --------------------------------------------------------------------------------------------
# Top patches: what the content adds, square boxes, honest borders.


@pytest.mark.slow
def test_top_patches_of_paper_lenet_c1_contain_strokes(paper_lenet_run):
    inspected = viz.load_model(paper_lenet_run)
    images, _, _ = viz.sample_images(inspected, 200)
    for channel in range(6):
        found = viz.top_patches(inspected.model, images, "c1", channel, preprocess=inspected.preprocess)
        assert found.background == (0,)  # the digits' empty image is black
        for patch in found.patches:
            assert patch.shape[1:] == (5, 5) and int((patch > 127).sum()) >= 3, (channel, patch)


def _brightness_unit() -> nn.Module:
    """One 3x3 all-ones filter with zero padding: it adds up the brightness it sees. On black
    (-1 after normalisation) it is -9 inside the image but -4 in a corner, where five of its
    inputs are the padding's 0 -- it answers most to the border, not to any content."""
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    nn.init.ones_(conv.weight)
    return nn.Sequential(conv).eval()


def test_top_patches_rank_by_the_content_not_the_padding():
    images = torch.zeros(12, 1, 16, 16, dtype=torch.uint8)
    for k in range(12):  # a short faint stroke (grey 140, +0.1 after normalisation) inside each image
        row, col = 3 + k % 9, 4 + k % 7
        images[k, 0, row, col : col + 3] = 140
    preprocess = lambda batch: (batch.float() / 255 - 0.5) / 0.5  # noqa: E731
    model = _brightness_unit()
    raw = viz.top_patches(model, images, "0", 0, preprocess=preprocess, top_k=4, background=None)
    for patch, box in zip(raw.patches, raw.boxes):  # the paper's ranking: an empty corner wins
        assert patch.max() == 0 and min(box) < 0
    found = viz.top_patches(model, images, "0", 0, preprocess=preprocess, top_k=4)
    assert found.background == (0,)
    for k, patch in enumerate(found.patches):
        assert int((patch == 140).sum()) == 3, patch  # the unit centred on the stroke
        assert found.inside(k).all()
        assert found.excess[k] == pytest.approx(found.activations[k] + 9, abs=1e-4)  # -9: an empty interior
    assert found.activations[0] < raw.activations[0]  # the stroke's raw activation is below the corner's


def test_top_patches_mark_the_part_of_the_box_outside_the_image(lenet, digits, tmp_path):
    """A unit at the map's corner sees past the image: the figure paints that part the same
    distinct colour in the patch and in its projection, pixel for pixel."""
    from convatlas.viz.render import OUTSIDE_COLOUR, image_to_display, mark_outside

    images = digits[2][:20].clone()
    images[:, :, :8, :8] = 255  # bright top-left corners
    found = viz.top_patches(lenet.model, images, "act3", None, preprocess=lenet.preprocess, top_k=3)
    box = found.boxes[0]
    assert box[2] - box[0] == box[3] - box[1] == 14  # a square receptive field
    inside = found.inside(0)
    expected = (torch.arange(box[0], box[2]) >= 0)[:, None] & (torch.arange(box[1], box[3]) >= 0)[None, :]
    expected &= (torch.arange(box[0], box[2]) < 32)[:, None] & (torch.arange(box[1], box[3]) < 32)[None, :]
    assert torch.equal(inside, expected)
    shown = mark_outside(image_to_display(found.patches[0]), inside)
    assert shown.shape == (14, 14, 3)
    assert np.allclose(shown[~inside.numpy()], OUTSIDE_COLOUR) and not np.allclose(shown[inside.numpy()], OUTSIDE_COLOUR)
    out = tmp_path / "patches.png"
    viz.visualize(lenet, "top-patches", out, layer="c1", num_images=50)
    assert _is_png(out)


def test_top_patches_figure_of_lenet_c1(lenet, tmp_path):
    out = tmp_path / "top.png"
    result = viz.visualize(lenet, "top-patches", out, layer="c1", num_images=200)
    assert _is_png(out) and result.layer == "c1" and "above an empty image" in result.summary


# --------------------------------------------------------------------------------------------
# Cards say how to feed a model.


@pytest.mark.slow
def test_zoo_models_are_fed_as_their_cards_say():
    for name in convatlas.list_models(task="classification"):
        card = convatlas.model_card(name)
        with torch.device("meta"):
            model = convatlas.create_model(name)
        inspected = viz.load_model(model)
        p = card.preprocessing
        assert (inspected.mean, inspected.std, inspected.fit) == (p.mean, p.std, p.fit), name
        assert (inspected.crop_fraction, inspected.interpolation) == (p.crop_fraction, p.interpolation), name
        assert inspected.classes == p.classes, name
    assert viz.load_model(convatlas.create_model("resnet20")).classes[:2] == ["airplane", "automobile"]
    assert viz.load_model(convatlas.create_model("lenet5", num_classes=5)).classes is None  # not the card's labels


def test_pictures_are_resized_or_padded_as_the_card_says():
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    alexnet = viz.load_model(convatlas.create_model("alexnet"))
    image, _, _ = viz.load_image(alexnet, photo)
    # ImageNet evaluation: the shorter side to 224 / 0.875 = 256, then the centre 224 x 224
    resized = F.interpolate(torch.from_numpy(photo).permute(2, 0, 1)[None].float(), size=(256, 341),
                            mode="bilinear", antialias=True, align_corners=False).round().clamp(0, 255).to(torch.uint8)
    assert torch.equal(image, resized[:, :, 16:240, 58:282])
    digit = rng.integers(1, 256, (28, 28), dtype=np.uint8)
    lenet5 = viz.load_model(convatlas.create_model("lenet5"))
    image, _, _ = viz.load_image(lenet5, digit)
    assert image.shape == (1, 1, 32, 32) and torch.equal(image[0, 0, 2:30, 2:30], torch.from_numpy(digit))
    assert int(image[0, 0].sum()) == int(digit.astype(np.int64).sum())  # a black frame around it
    big = viz.load_image(lenet5, rng.integers(1, 256, (64, 128), dtype=np.uint8))[0]
    assert big.shape == (1, 1, 32, 32) and (big[0, 0, :8] == 0).all() and (big[0, 0, 8:24] > 0).all()
