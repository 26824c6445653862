"""The papers' numerics and data handling: per-epoch schedules, ImageNet statistics, layers kept
dense (prune_exclude), He et al.'s LeNet setting, and model sizes without data."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import TINY_VIT, tiny_config
from support import assert_one_error_line, run_cli

from sparsedd.config import round_epochs
from sparsedd.data import datasets as data_mod
from sparsedd.data.datasets import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    dataset_shape,
    load_dataset,
    make_splits,
)
from sparsedd.errors import ConfigError
from sparsedd.models.base import InputSpec, count_parameters, create_model
from sparsedd.presets import preset_config, preset_names
from sparsedd.training.experiment import Experiment
from sparsedd.training.prune import excluded_layers, prunable_parameters
from sparsedd.training.trainer import lr_at

# ---------------------------------------------------------------- schedules


def _torch_scheduler_lrs(cfg, epochs: int) -> list[float]:
    """The lr of each epoch from PyTorch's scheduler stepped once per epoch, as main.py does."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr)
    if cfg.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    else:
        milestones = [epochs // 2, epochs * 3 // 4]
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


@pytest.mark.parametrize("schedule", ["cosine", "step"])
def test_per_epoch_schedule_equals_pytorch_schedulers_stepped_per_epoch(schedule) -> None:
    cfg = tiny_config(schedule=schedule, schedule_every="epoch", lr=0.1)
    epochs, per_epoch = 8, 5
    want = _torch_scheduler_lrs(cfg, epochs)
    got = [
        lr_at(s, epochs * per_epoch, cfg, per_epoch=per_epoch) for s in range(epochs * per_epoch)
    ]
    for epoch in range(epochs):
        for lr in got[epoch * per_epoch : (epoch + 1) * per_epoch]:
            assert lr == pytest.approx(want[epoch], rel=1e-12)


def test_per_step_cosine_changes_within_an_epoch() -> None:
    cfg = tiny_config(schedule="cosine", lr=0.1)
    assert cfg.schedule_every == "step"
    lrs = {lr_at(s, 40, cfg, per_epoch=5) for s in range(5)}
    assert len(lrs) == 5


def test_paper_presets_step_their_schedules_per_epoch() -> None:
    for name in ("vit-cifar10", "swin-cifar100", "resnet18-cifar10"):
        assert preset_config(name).schedule_every == "epoch"


# ---------------------------------------------------------------- numerics and normalization


@pytest.mark.parametrize("name", [n for n in preset_names() if "cifar" in n])
def test_paper_presets_train_fp32_on_imagenet_statistics(name) -> None:
    cfg = preset_config(name)
    assert cfg.precision == "fp32"
    assert cfg.normalize == "imagenet"


def test_imagenet_normalization_reaches_the_splits() -> None:
    data = load_dataset(tiny_config())
    rgb = dataclasses.replace(data, train_x=data.train_x.expand(-1, 3, -1, -1),
                              test_x=data.test_x.expand(-1, 3, -1, -1),
                              mean=(0.5,) * 3, std=(0.3,) * 3)  # fmt: skip
    s = make_splits(rgb, tiny_config(normalize="imagenet"))
    assert (s.mean, s.std) == (IMAGENET_MEAN, IMAGENET_STD)
    s = make_splits(rgb, tiny_config())
    assert (s.mean, s.std) == ((0.5,) * 3, (0.3,) * 3)
    with pytest.raises(ConfigError, match="needs RGB images"):
        make_splits(data, tiny_config(normalize="imagenet"))


# ---------------------------------------------------------------- prune_exclude


def test_excluded_layer_stays_dense_and_the_rest_loses_the_rate(tmp_path) -> None:
    cfg = tiny_config(prune_exclude="output", rounds=3, epochs=1)
    exp = Experiment(cfg, tmp_path)
    rows = exp.run()
    names = list(prunable_parameters(exp.model))
    output = names[-1]
    assert exp.model.get_parameter(output).shape[0] == 4  # the layer giving the 4 logits
    rest = [n for n in names if n != output]
    n_rest = sum(exp.masks[n].numel() for n in rest)
    total = n_rest + exp.masks[output].numel()
    alive = n_rest
    for row in rows[1:]:
        assert row["layer_density"][output] == 1.0
        assert all(row["layer_density"][n] < 1.0 for n in rest)
        alive -= round(0.2 * alive)  # the rate applies to the prunable rest only
        assert row["sparsity"] == pytest.approx((n_rest - alive) / total)
    assert sum(int(exp.masks[n].sum()) for n in rest) == alive
    assert bool((exp.model.get_parameter(output) != 0).all())


def test_without_exclusion_the_output_layer_is_pruned_too(tmp_path) -> None:
    rows = Experiment(tiny_config(rounds=2, epochs=1), tmp_path).run()
    assert min(rows[-1]["layer_density"].values()) < 1.0
    assert all(d < 1.0 for d in rows[-1]["layer_density"].values())


def test_exclusion_patterns_match_module_and_weight_names() -> None:
    torch.manual_seed(0)
    vit = create_model(tiny_config(**TINY_VIT), InputSpec(1, 8, 4))
    assert excluded_layers(vit, "output") == {"head.1.weight"}
    assert excluded_layers(vit, "head.1") == {"head.1.weight"}
    assert excluded_layers(vit, "patch_embed.weight, head.*") == {
        "patch_embed.weight",
        "head.1.weight",
    }
    assert excluded_layers(vit, "blocks.*.to_qkv") == {"blocks.0.to_qkv.weight"}
    assert excluded_layers(vit, "") == set()
    with pytest.raises(ConfigError, match="'fc' matches no prunable layer"):
        excluded_layers(vit, "fc")
    with pytest.raises(ConfigError, match="keeps every prunable layer dense"):
        excluded_layers(vit, "*")


@pytest.mark.parametrize("model", ["vit", "lenet", "resnet18", "swin"])
def test_output_names_the_layer_giving_the_logits(model) -> None:
    # tiny's data is 8×8, too small for Swin: the model is built for 32×32 images here
    cfg = dataclasses.replace(tiny_config(**TINY_VIT), model=model)
    spec = InputSpec(3, 32, 7)
    torch.manual_seed(0)
    net = create_model(cfg, spec)
    (name,) = excluded_layers(net, "output")
    assert net.get_parameter(name).shape[0] == 7
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_unknown_exclusion_is_one_line_before_anything_is_written(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    args = ["run", "--preset", "tiny", "--out", str(out), "--set", "prune_exclude=fc9", "-q"]
    code, _, err = run_cli(args, capsys)
    assert code == 2
    assert_one_error_line(err, ["prune_exclude", "'fc9'"])
    assert not (out / "runs").exists()


# ---------------------------------------------------------------- He et al.'s LeNet


def test_lenet_mnist_is_he_et_al_setting() -> None:
    cfg = preset_config("lenet-mnist")
    # models/mnist_mlp.py default_hparams and foundations/hparams.py defaults
    assert (cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay) == ("sgd", 0.1, 0.0, 0.0)
    assert (cfg.schedule, cfg.epochs, round_epochs(cfg, 0), cfg.batch_size) == (
        "constant",
        160,
        160,
        128,
    )
    assert (cfg.init, cfg.prune_rate, cfg.prune_scope) == ("kaiming_normal", 0.2, "global")
    assert (cfg.noise_kind, cfg.rounds, cfg.augment) == ("random", 30, "none")
    torch.manual_seed(0)
    net = create_model(cfg, InputSpec(1, 28, 10))
    assert excluded_layers(net, cfg.prune_exclude) == {"5.weight"}  # their fc.weight
    assert [tuple(p.shape) for p in prunable_parameters(net).values()] == [
        (300, 784),
        (100, 300),
        (10, 100),
    ]


# ---------------------------------------------------------------- presets NAME --parameters


@pytest.mark.parametrize("name", ["vit-cifar10", "lenet-mnist", "resnet18-cifar100", "demo"])
def test_parameters_reads_no_data_and_matches_the_built_model(name, capsys, monkeypatch) -> None:
    def no_data(*_a, **_k):
        raise AssertionError("presets --parameters must not read data")

    monkeypatch.setattr(data_mod, "load_dataset", no_data)
    for dataset in data_mod.DATASETS.names():
        monkeypatch.setitem(data_mod.DATASETS._items, dataset, no_data)
    code, out, err = run_cli(["presets", name, "--parameters"], capsys)
    assert code == 0, err
    cfg = preset_config(name)
    torch.manual_seed(0)
    model = create_model(cfg, InputSpec(*dataset_shape(cfg.dataset)))
    dense = excluded_layers(model, cfg.prune_exclude)
    prunable = sum(p.numel() for n, p in prunable_parameters(model).items() if n not in dense)
    assert out.splitlines() == [f"parameters {count_parameters(model)}", f"prunable {prunable}"]


def test_parameters_of_the_paper_vit_and_he_lenet(capsys) -> None:
    assert run_cli(["presets", "vit-cifar10", "--parameters"], capsys)[1].split() == [
        "parameters", "9523722", "prunable", "9466880",
    ]  # fmt: skip
    # LeNet-300-100: 784·300 + 300·100 prunable, the 100·10 output layer kept dense.
    assert run_cli(["presets", "lenet-mnist", "--parameters"], capsys)[1].split() == [
        "parameters", "266610", "prunable", "265200",
    ]  # fmt: skip


def test_known_dataset_shapes_are_the_loaded_ones() -> None:
    data = load_dataset(tiny_config())
    assert dataset_shape("synthetic") == (data.channels, data.image_size, data.num_classes)
