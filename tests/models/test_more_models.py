"""timm models by name (optional extra) and the built-in VGG-11/16 of He et al."""

from __future__ import annotations

import pytest
import torch
from support import run_process, tiny_config
from torch import nn

from sparsedd.config import FIELDS, Config
from sparsedd.errors import ConfigError
from sparsedd.models.base import MODELS, InputSpec, count_parameters, create_model
from sparsedd.models.timm_models import timm_available
from sparsedd.training.experiment import Experiment
from sparsedd.training.prune import prunable_parameters

needs_timm = pytest.mark.skipif(
    not timm_available(), reason="timm is not installed (pip install 'sparsedd[timm]')"
)


sparsedd = run_process  # `sparsedd ARGS`, as a user runs it


# ---------------------------------------------------------------- VGG


def _vgg_parameter_count(plan: list, channels: int, classes: int) -> int:
    """Conv (weight + bias) and BatchNorm (scale + shift) per block, then the Linear head."""
    total, cin = 0, channels
    for item in plan:
        if item != "M":
            total += 9 * cin * item + item + 2 * item
            cin = item
    return total + cin * classes + classes


@pytest.mark.parametrize(
    "name, convs, plan",
    [
        ("vgg11", 8, [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512]),
        (
            "vgg16",
            13,
            [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
        ),
    ],
)
def test_vgg_has_he_et_al_cifar_layout(name: str, convs: int, plan: list) -> None:
    torch.manual_seed(0)
    model = create_model(Config(model=name), InputSpec(3, 32, 10))
    conv_layers = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(conv_layers) == convs and all(c.kernel_size == (3, 3) for c in conv_layers)
    assert all(c.bias is not None for c in conv_layers)
    assert len([m for m in model.modules() if isinstance(m, nn.MaxPool2d)]) == 4
    assert count_parameters(model) == _vgg_parameter_count(plan, 3, 10)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(512, 10)]
    bn = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(
        float(b.weight.detach().min()) >= 0 and float(b.weight.detach().max()) < 1 for b in bn
    )
    assert float(bn[0].weight.detach().std()) > 0.1  # uniform in [0, 1), not torch's all-ones
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert set(prunable_parameters(model)) == {
        f"{n}.weight" for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))
    }


def test_vgg_refuses_images_too_small_for_four_pools() -> None:
    proc = sparsedd("run", "--preset", "tiny", "--set", "model=vgg11", "--out", "/nonexistent/x")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "at least 16×16" in proc.stderr


# ---------------------------------------------------------------- timm


def test_timm_names_are_refused_with_the_install_hint_without_timm(monkeypatch) -> None:
    import sparsedd.models.timm_models as tm

    monkeypatch.setattr(tm, "timm_available", lambda: False)
    with pytest.raises(ConfigError, match=r"sparsedd\[timm\]"):
        MODELS.get("timm:resnet18")
    assert "timm:NAME" in MODELS.names()


@needs_timm
def test_timm_vit_is_built_for_the_data_with_our_patch_size() -> None:
    cfg = Config(model="timm:deit_tiny_patch16_224", patch_size=4)
    model = create_model(cfg, InputSpec(1, 8, 4))
    assert model.patch_embed.proj.weight.shape == (192, 1, 4, 4)
    assert model(torch.zeros(3, 1, 8, 8)).shape == (3, 4)
    names = set(prunable_parameters(model))
    expected = {
        f"{n}.weight" for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))
    }
    assert names == expected
    assert {"patch_embed.proj.weight", "head.weight", "blocks.0.attn.qkv.weight"} <= names
    assert not any("pos_embed" in n or "cls_token" in n or "norm" in n for n in names)


@needs_timm
def test_timm_resnet_takes_one_channel_and_the_classes() -> None:
    model = create_model(Config(model="timm:resnet18"), InputSpec(1, 8, 4))
    assert model.conv1.in_channels == 1 and model.fc.out_features == 4


@needs_timm
def test_timm_model_is_pruned_and_trained_like_ours(tmp_path) -> None:
    cfg = tiny_config(
        model="timm:resnet18", train_size=96, val_size=0, rounds=1, epochs=1, batch_size=32
    )
    rows = Experiment(cfg, tmp_path).run()
    assert [r["round"] for r in rows] == [0, 1]
    assert rows[1]["sparsity"] == pytest.approx(0.2, abs=1e-4)
    assert "conv1.weight" in rows[1]["layer_density"] and "fc.weight" in rows[1]["layer_density"]
    from sparsedd.store.checkpoint import load_tensors

    exp = Experiment(cfg, tmp_path)
    tensors, _ = load_tensors(exp.files.round_file(1))
    mask = tensors["mask.conv1.weight"]
    assert not mask.all() and (tensors["model.conv1.weight"][~mask] == 0).all()
    # The exported pruned model (CSR conv weights) gives the trained round's logits.
    from sparsedd.export.pruned import export_pruned, load_pruned
    from sparsedd.store.checkpoint import restore

    export_pruned(tmp_path, exp.id, 1, tmp_path / "m.safetensors")
    restore(exp.folder, tensors, exp.model, exp.masks)
    images = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    expected = exp.model.eval()(images)
    assert torch.equal(load_pruned(tmp_path / "m.safetensors")(images), expected)


@needs_timm
def test_timm_unknown_or_unfit_models_are_refused_in_one_line(tmp_path) -> None:
    proc = sparsedd(
        "run", "--preset", "tiny", "--set", "model=timm:resnet181", "--out", str(tmp_path)
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "timm:resnet18" in proc.stderr and "did you mean" in proc.stderr
    proc = sparsedd(
        "run",
        "--preset",
        "tiny",
        "--set",
        "model=timm:deit_tiny_patch16_224",
        "--set",
        "patch_size=16",
        "--out",
        str(tmp_path),
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "cannot be built for 1×8×8 images and 4 classes" in proc.stderr
    assert not (tmp_path / "runs").exists()


@needs_timm
@pytest.mark.skipif("prune_exclude" not in FIELDS, reason="config key prune_exclude not merged")
def test_timm_model_respects_prune_exclude(tmp_path) -> None:
    cfg = tiny_config(
        model="timm:resnet18",
        train_size=96,
        val_size=0,
        rounds=1,
        epochs=1,
        batch_size=32,
        prune_exclude="output,conv1",
    )
    density = Experiment(cfg, tmp_path).run()[1]["layer_density"]
    assert density["fc.weight"] == 1.0 and density["conv1.weight"] == 1.0
    assert density["layer1.0.conv1.weight"] < 1.0
