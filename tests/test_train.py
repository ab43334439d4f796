"""The trainer, the run directory, load_run/evaluate/predict, the CLI and the recipes.

Most runs use a tiny network registered only for these tests, on scikit-learn's 8x8 digits,
so they take a second or two; one fixture trains the paper's LeNet-5 on the embedded MNIST
digits. Outcomes are checked against independent code: torch's schedulers and
AveragedModel, torchmetrics, scikit-learn.
"""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from torch import nn

import convatlas
from convatlas import registry
from convatlas.cli import main
from convatlas.data import load_dataset
from convatlas.registry import InputTooSmallError, ModelCard, UnknownModelError, register_model
from convatlas.train import (
    NO_DISTORTIONS,
    CheckpointError,
    Schedule,
    TrainConfig,
    TrainingDiverged,
    evaluate,
    load_checkpoint,
    load_recipe,
    load_run,
    predict,
    train,
)
from convatlas.engine.optim import EMA, param_groups
from convatlas.tasks.classification import cross_entropy_loss
from convatlas.train import list_recipes, resolve_config

ROOT = Path(__file__).resolve().parents[1]
TINY = "zz_tiny_test_net"
TINY_AUX = "zz_tiny_test_net_aux"
FAST = dict(data="sklearn_digits", epochs=3, batch_size=32, lr=0.05, quiet=True, threads=1)


class TinyNet(nn.Module):
    """conv-relu-pool, conv-relu, 2x2 adaptive pool, linear; optional auxiliary head."""

    def __init__(self, num_classes: int = 10, width: int = 8, aux: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(8 * width, num_classes)
        self.aux = nn.Linear(width, num_classes) if aux else None

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        logits = self.fc(self.pool(F.relu(self.conv2(x))).flatten(1))
        if self.aux is not None and self.training:
            return logits, self.aux(x.mean(dim=(2, 3)))
        return logits


@pytest.fixture(scope="module", autouse=True)
def tiny_models():
    card = ModelCard(name=TINY, family="test", paper="(test network)", authors="convatlas tests", year=2024,
                     input_size=(1, 8, 8), dataset="mnist", idea="A tiny network for trainer tests.")

    def tiny(*, num_classes: int = 10, width: int = 8) -> TinyNet:
        return TinyNet(num_classes, width)

    def tiny_aux(*, num_classes: int = 10) -> TinyNet:
        return TinyNet(num_classes, aux=True)

    register_model(card)(tiny)
    register_model(registry.card_with(card, name=TINY_AUX, aux_logits=True))(tiny_aux)
    yield
    for name in (TINY, TINY_AUX):
        registry._REGISTRY.pop(name, None)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------
# LeNet-5 on the embedded digits


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lenet") / "run"
    result = train("lenet5", epochs=2, out=out, quiet=True, threads=1)
    return result


@pytest.mark.slow
def test_lenet5_learns_the_embedded_digits(lenet_run):
    summary = lenet_run.summary
    assert summary["status"] == "complete" and summary["model"] == "lenet5" and summary["dataset"] == "digits"
    assert summary["test_acc"] > 0.8  # chance is 0.1
    assert summary["test_top5"] >= summary["test_acc"]
    assert summary["image_size"] == 32  # 28x28 digits padded to LeNet-5's 32x32 input, as in the paper


def test_run_directory_follows_the_contract(lenet_run):
    run = lenet_run.run_dir
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"] == "lenet5" and config["variant_args"] == {} and config["data"] == "digits"
    assert config["image_size"] == 32 and config["fit"] == "pad" and config["num_classes"] == 10
    summary = json.loads((run / "summary.json").read_text())
    for key in ("test_acc", "test_top5", "train_seconds", "epochs", "images_per_second"):
        assert isinstance(summary[key], (int, float)), key
    assert 0 <= summary["test_acc"] <= 1 and summary["epochs"] == 2 and summary["images_per_second"] > 0
    lines = (run / "metrics.csv").read_text().strip().splitlines()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and len(rows) == 2 and [r["epoch"] for r in rows] == [1, 2]
    assert lines[0].split(",")[:3] == ["epoch", "step", "lr"]
    assert float(lines[2].split(",")[lines[0].split(",").index("test_acc")]) == rows[1]["test_acc"]
    assert rows[-1]["test_acc"] == summary["test_acc"]
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    last = load_checkpoint(run / "checkpoints" / "last.pt", expect_model="lenet5")
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert last["epoch"] == 2 and best["epoch"] == summary["best_epoch"]
    assert not [p for p in run.rglob("*") if p.name.startswith(".")]  # no temp files left


def test_load_run_rebuilds_the_trained_network(lenet_run):
    loaded = load_run(lenet_run.run_dir, "last")
    assert loaded.classes == [str(i) for i in range(10)] and loaded.in_channels == 1 and loaded.image_size == 32
    assert loaded.dataset_name == "digits" and not loaded.model.training
    digits = load_dataset("digits")
    x = loaded.preprocess(digits.test.images[:16])  # 28x28 in, padded to 32x32 as in training
    assert x.shape == (16, 1, 32, 32)
    padded = F.pad(digits.test.images[:16].float() / 255, (2, 2, 2, 2))
    assert torch.allclose(x, (padded - loaded.mean[0]) / loaded.std[0], atol=1e-6)
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), lenet_run.model(x), atol=1e-5)


def test_evaluate_agrees_with_torchmetrics_and_scikit_learn(lenet_run):
    from sklearn.metrics import confusion_matrix
    from torchmetrics.functional.classification import multiclass_accuracy

    report = evaluate(lenet_run.run_dir, which="last")
    assert report.top1 == pytest.approx(lenet_run.summary["test_acc"])
    loaded = load_run(lenet_run.run_dir, "last")
    test = load_dataset("digits").test
    with torch.no_grad():
        logits = loaded.model(loaded.preprocess(test.images))
    assert report.top1 == pytest.approx(float(multiclass_accuracy(logits, test.labels, 10, average="micro")))
    assert report.top5 == pytest.approx(float(multiclass_accuracy(logits, test.labels, 10, average="micro", top_k=5)))
    expected = confusion_matrix(test.labels.numpy(), logits.argmax(1).numpy(), labels=range(10))
    assert np.array_equal(report.confusion, expected)
    per_class = multiclass_accuracy(logits, test.labels, 10, average=None)
    assert list(report.per_class.values()) == pytest.approx(per_class.tolist())


# ------------------------------------------------------------------------------------------
# Exact resume after Ctrl-C


def _state(run_dir: Path) -> dict:
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")


def test_ctrl_c_saves_a_checkpoint_and_resume_continues_exactly(tmp_path):
    settings = dict(FAST, crop_padding=1, hflip=True, mixup_alpha=0.2, ema_decay=0.9, label_smoothing=0.1,
                    optimizer="adamw", lr=3e-3, weight_decay=0.05, decay_norm_and_bias=False)
    straight = train(TINY, out=tmp_path / "straight", **settings)

    def press_ctrl_c(info):
        if info.global_step == 60:  # in the middle of epoch 2 (44 steps an epoch)
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        train(TINY, out=tmp_path / "cut", on_step=press_ctrl_c, **settings)
    saved = _state(tmp_path / "cut")
    assert saved["epoch"] == 1 and saved["step_in_epoch"] == 61 - 44
    assert json.loads((tmp_path / "cut" / "summary.json").read_text())["status"] == "interrupted"

    resumed = train(TINY, resume=tmp_path / "cut", quiet=True)
    a, b = _state(tmp_path / "straight"), _state(tmp_path / "cut")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in a["ema"]:
        assert torch.equal(a["ema"][key], b["ema"][key]), key
    assert resumed.summary["test_acc"] == straight.summary["test_acc"]
    for row_a, row_b in zip(straight.history, resumed.history):
        assert row_a["train_loss"] == row_b["train_loss"] and row_a["test_loss"] == row_b["test_loss"]


def test_equal_seeds_give_equal_weights_and_other_seeds_do_not(tmp_path):
    runs = [train(TINY, out=tmp_path / f"r{i}", seed=seed, **dict(FAST, epochs=1)) for i, seed in enumerate((4, 4, 5))]
    weights = [_state(r.run_dir)["model"]["fc.weight"] for r in runs]
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])


# ------------------------------------------------------------------------------------------
# Failures


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path):
    # the learning rate becomes infinite after the first epoch: the weights turn NaN
    with pytest.raises(TrainingDiverged, match=r"NaN/infinite.*last good checkpoint \(epoch 1\)"):
        train(TINY, out=tmp_path / "run", schedule="step", milestones=[1], gamma=math.inf, **FAST)
    kept = _state(tmp_path / "run")
    assert kept["epoch"] == 1 and all(torch.isfinite(v).all() for v in kept["model"].values())
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "diverged"


def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(UnknownModelError, match="lenet5"):
        train("lenet6", quiet=True)
    with pytest.raises(ValueError, match="Did you mean: digits"):
        train(TINY, data="digts", quiet=True)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train(TINY, data=str(tmp_path / "no_such_folder"), quiet=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class folders"):
        train(TINY, data=str(tmp_path / "empty"), quiet=True)
    bad = tmp_path / "images"
    for cls in ("a", "b"):
        (bad / cls).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(bad / cls / "ok.png")
    (bad / "b" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    with pytest.raises(ValueError, match="corrupt.png"):
        train(TINY, data=str(bad), quiet=True)
    with pytest.raises(InputTooSmallError, match="at least 32x32"):
        train("lenet5", image_size=16, quiet=True)
    with pytest.raises(ValueError, match="num_classes=7 differs from the 10 classes"):
        train(TINY, num_classes=7, **FAST)
    with pytest.raises(ValueError, match="unknown config key 'learning_rate'.*Did you mean: lr"):
        train(TINY, learning_rate=0.1)
    assert not Path("runs").exists() or not any(Path("runs").glob(f"{TINY}-*"))  # nothing was written


def test_bad_resumes_leave_the_run_directory_as_it_was(tmp_path):
    run = train(TINY, out=tmp_path / "run", **dict(FAST, epochs=1)).run_dir
    before = _snapshot(run)
    with pytest.raises(CheckpointError, match=f"holds a '{TINY}' model, not 'resnet20'"):
        train("resnet20", resume=run)
    with pytest.raises(ValueError, match="only epochs, iterations"):
        train(resume=run, lr=1.0)
    with pytest.raises(ValueError, match="already holds a run"):
        train(TINY, out=run, **FAST)
    assert _snapshot(run) == before

    last = run / "checkpoints" / "last.pt"
    last.write_bytes(before["checkpoints/last.pt"][: len(before["checkpoints/last.pt"]) // 2])
    truncated = _snapshot(run)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        train(resume=run)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_run(run, "last")
    assert _snapshot(run) == truncated
    with pytest.raises(FileNotFoundError, match="no run to resume"):
        train(resume=tmp_path / "nothing_here")


# ------------------------------------------------------------------------------------------
# Pieces, against torch's own implementations


def _torch_lrs(make_scheduler, steps: int, lr: float = 0.1) -> list[float]:
    optimizer = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=lr)
    scheduler = make_scheduler(optimizer)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_schedules_match_torch_schedulers():
    sched = torch.optim.lr_scheduler
    ours = Schedule("onecycle", 0.1, 200, pct=0.3)
    theirs = _torch_lrs(lambda o: sched.OneCycleLR(o, max_lr=0.1, total_steps=200, pct_start=0.3,
                                                   cycle_momentum=False), 200)
    assert [ours(t) for t in range(200)] == pytest.approx(theirs, rel=1e-9, abs=1e-12)
    # a rise of one step (pct x steps = 1; torch divides by zero there): the peak at step 0, then down
    short = [Schedule("onecycle", 0.1, 4, pct=0.25)(t) for t in range(4)]
    assert short[0] == 0.1 and short[1] < 0.1 and short[3] == pytest.approx(0.1 / 25 / 1e4)
    # shorter still (a 2- or 1-step run: pct x steps < 1): the same, from the peak down
    assert [Schedule("onecycle", 0.1, 2, pct=0.25)(t) for t in range(2)] == pytest.approx([0.1, 0.1 / 25 / 1e4])
    assert Schedule("onecycle", 0.1, 1)(0) == 0.1
    with pytest.raises(ValueError, match="0 < pct < 1"):
        Schedule("onecycle", 0.1, 100, pct=1.0)
    ours = Schedule("cosine", 0.1, 100, min_lr=1e-3)
    theirs = _torch_lrs(lambda o: sched.CosineAnnealingLR(o, T_max=100, eta_min=1e-3), 100)
    assert [ours(t) for t in range(100)] == pytest.approx(theirs, rel=1e-9)
    ours = Schedule("step", 0.1, 64000, milestones=(32000, 48000), gamma=0.1)
    assert [ours(t) for t in (0, 31999, 32000, 47999, 48000, 63999)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 1e-3, 1e-3])
    theirs = _torch_lrs(lambda o: sched.MultiStepLR(o, milestones=[30, 45], gamma=0.1), 60)
    assert [Schedule("step", 0.1, 60, milestones=(30, 45))(t) for t in range(60)] == pytest.approx(theirs)
    theirs = _torch_lrs(lambda o: sched.LinearLR(o, start_factor=1 / 8, end_factor=1.0, total_iters=7), 20)
    assert [Schedule("constant", 0.1, 20, warmup_steps=8)(t) for t in range(20)] == pytest.approx(theirs)


def test_ema_matches_torch_averaged_model():
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    ours = EMA(model, 0.9)
    theirs = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=False)
    theirs.update_parameters(model)  # the first call copies, as our EMA starts from a copy
    for _ in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model(torch.randn(8, 4))  # moves the BN running statistics
        ours.update(model)
        theirs.update_parameters(model)
    for a, b in zip(ours.module.parameters(), theirs.module.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    assert torch.equal(ours.module[1].running_mean, model[1].running_mean)


def test_weight_decay_can_spare_norms_and_biases():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    groups = param_groups(model, 5e-4, decay_norm_and_bias=False)
    decayed = {id(p) for p in groups[0]["params"]}
    assert groups[1]["weight_decay"] == 0.0
    assert decayed == {id(model[0].weight), id(model[3].weight)}
    assert len(param_groups(model, 5e-4, decay_norm_and_bias=True)) == 1


def test_auxiliary_losses_are_added_with_their_weight_and_the_aux_net_trains(tmp_path):
    main_logits, aux_logits, y = torch.randn(6, 10), torch.randn(6, 10), torch.randint(0, 10, (6,))
    loss, logits = cross_entropy_loss((main_logits, aux_logits), y, aux_weight=0.3)
    assert torch.allclose(loss, F.cross_entropy(main_logits, y) + 0.3 * F.cross_entropy(aux_logits, y))
    assert logits is main_logits
    result = train(TINY_AUX, out=tmp_path / "aux", **FAST)
    assert result.summary["test_acc"] > 0.3  # chance is 0.1


def test_convatlas_train_is_callable_and_evaluate_is_exported(tmp_path):
    result = convatlas.train(TINY, out=tmp_path / "run", **dict(FAST, epochs=1))
    assert result.run_dir == tmp_path / "run"
    assert convatlas.evaluate is evaluate and convatlas.train.load_run is load_run


# ------------------------------------------------------------------------------------------
# Command line


def test_cli_train_eval_predict_and_demo(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["train", TINY, "--data", "sklearn_digits", "--epochs", "3", "--batch-size", "32", "--lr", "0.05",
                 "--variant", "width=12", "--no-nesterov", "--out", str(out), "--quiet", "--threads", "1"])
    assert code == 0
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["variant_args"] == {"width": 12} and config["nesterov"] is False and config["lr"] == 0.05
    capsys.readouterr()

    assert main(["eval", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert f"{summary['best_test_acc']:.2%}" in printed and "per-class accuracy" in printed
    assert (out / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    report = json.loads((out / "eval.json").read_text())
    assert np.array(report["confusion"]).sum() == 359

    test = load_dataset("sklearn_digits").test
    files = []
    for i in range(4):
        path = tmp_path / f"digit{i}.png"
        Image.fromarray(test.images[i, 0].numpy()).save(path)
        files.append(str(path))
    assert main(["predict", str(out), *files, "--topk", "3", "--json"]) == 0
    answers = json.loads(capsys.readouterr().out)
    loaded = load_run(out)
    with torch.no_grad():
        expected = loaded.model(loaded.preprocess(test.images[:4])).softmax(1)
    for answer, probs in zip(answers, expected):
        top = answer["top"]
        assert len(top) == 3 and top[0]["class"] == str(int(probs.argmax()))
        assert top[0]["probability"] == pytest.approx(float(probs.max()), abs=1e-5)
        assert top[0]["probability"] >= top[1]["probability"] >= top[2]["probability"]
    assert predict(out, files[:1], topk=1)[0].classes == [answers[0]["top"][0]["class"]]

    assert main(["train", "lenet5", "--image-size", "16", "--quiet"]) == 2
    assert "at least 32x32" in capsys.readouterr().err

    demo = tmp_path / "demo"
    assert main(["demo", "--model", TINY, "--epochs", "1", "--out", str(demo), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and str(demo / "comparison_chart.png") in printed
    assert (demo / TINY / "curves.png").is_file()


# ------------------------------------------------------------------------------------------
# Recipes


def test_no_distortions_leaves_the_training_images_unwarped():
    """NO_DISTORTIONS switches off every geometric distortion LeNet-5's default recipe turns on: a
    training batch is then exactly the normalised image, while that recipe really moves pixels."""
    from convatlas.data import BatchPipeline

    images = load_dataset("digits").train.images[:16]
    labels = torch.zeros(16, dtype=torch.long)

    def pipeline(config: TrainConfig) -> BatchPipeline:
        return BatchPipeline(mean=(0.1,), std=(0.3,), channels=1, num_classes=10, augment=config.augment, seed=0)

    lenet_recipe = resolve_config("lenet5")[0]
    plain = pipeline(lenet_recipe.replace(**NO_DISTORTIONS))
    x, _ = plain.train_batch(images, labels)
    assert torch.equal(x, plain.eval_input(images))
    warped, _ = pipeline(lenet_recipe).train_batch(images, labels)
    assert (warped - x).abs().mean() > 0.05


def test_recipes_load_and_reproduce_the_papers_settings(tmp_path):
    recipes = {name: name for name in list_recipes()}
    assert {"lenet5_mnist", "resnet20_cifar10", "resnet56_cifar10", "resnet110_cifar10", "wrn28_10_cifar10",
            "densenet_bc100_cifar10"} <= set(recipes)
    named_on_cards = {convatlas.model_card(m).recipe for m in convatlas.list_models()} - {None}
    assert named_on_cards <= set(recipes)
    for name in set(recipes) - named_on_cards:  # the papers' recipes
        config = TrainConfig.from_dict(load_recipe(recipes[name]))
        assert config.model in convatlas.list_models(), name
        assert not config.clip_grad_norm, f"{name}: none of these papers clips gradients"
    # He et al. 2015, Sec. 4.2: SGD, momentum 0.9, weight decay 1e-4, batch 128, lr 0.1 divided by
    # 10 at 32k and 48k iterations, stopping at 64k
    for depth in (20, 56, 110):
        config = TrainConfig.from_dict(load_recipe(recipes[f"resnet{depth}_cifar10"]))
        assert (config.optimizer, config.lr, config.momentum, config.weight_decay, config.batch_size) == \
            ("sgd", 0.1, 0.9, 1e-4, 128)
        assert config.iterations == 64000 and config.milestones == [32000, 48000] and config.gamma == 0.1
        assert config.crop_padding == 4 and config.hflip
    # The CIFAR papers augment with the 4-pixel crop and the flip only: none of the default
    # (LeNet-5) distortions may leak into their recipes
    for name in ("resnet20_cifar10", "resnet56_cifar10", "resnet110_cifar10", "wrn28_10_cifar10",
                 "densenet_bc100_cifar10"):
        augment = TrainConfig.from_dict(load_recipe(recipes[name])).augment
        assert all(getattr(augment, key) == 0 for key in NO_DISTORTIONS), name
        assert (augment.crop_padding, augment.hflip, augment.rrc_scale, augment.mixes) == (4, True, None, False), name
    # LeNet-5's distortions (Sec. III.C): translation, scaling, squeezing, horizontal shearing
    lenet = TrainConfig.from_dict(load_recipe(recipes["lenet5_mnist"])).augment
    assert min(lenet.affine_translate, lenet.affine_scale, lenet.affine_squeeze, lenet.affine_shear) > 0
    assert lenet.elastic_alpha == 0
    # Zagoruyko & Komodakis 2016: lr 0.1 x0.2 at epochs 60, 120, 160 of 200, wd 5e-4, Nesterov, batch 128
    config = TrainConfig.from_dict(load_recipe(recipes["wrn28_10_cifar10"]))
    assert (config.epochs, config.milestones, config.gamma, config.weight_decay, config.nesterov) == \
        (200, [60, 120, 160], 0.2, 5e-4, True)
    # Huang et al. 2017: 300 epochs, batch 64, lr 0.1 /10 at 50% and 75%, wd 1e-4, Nesterov
    config = TrainConfig.from_dict(load_recipe(recipes["densenet_bc100_cifar10"]))
    assert (config.epochs, config.batch_size, config.milestones, config.weight_decay) == (300, 64, [150, 225], 1e-4)
    typo = tmp_path / "typo.yaml"
    typo.write_text("model: resnet20\nmomentun: 0.9\n")
    with pytest.raises(ValueError, match="unknown recipe typo.yaml key 'momentun'.*Did you mean: momentum"):
        load_recipe(typo)
