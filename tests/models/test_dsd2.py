"""DSD²'s VGG-like student and the `dsd2` study."""

from pathlib import Path

import pytest
import torch
from support import run_cli

from sparsedd.components import resolve_config
from sparsedd.errors import ConfigError
from sparsedd.models.base import InputSpec, create_model


def test_vgg_like_has_dsd2s_layout_and_size() -> None:
    """δ = 5, width 32 on CIFAR-10 shapes: 4,967,082 parameters, as DSD²'s VGGlikeModel
    (counted by building theirs from utils/models.py once; their layer order is ours)."""
    cfg = resolve_config("dsd2-vgg-cifar10")
    model = create_model(cfg, InputSpec(3, 32, 10))
    assert sum(p.numel() for p in model.parameters()) == 4_967_082
    names = [n for n, _ in model.named_parameters()]
    assert names[:4] == [
        "features.conv_block1_1.0.weight",
        "features.conv_block1_1.0.bias",
        "features.conv_block1_1.2.weight",  # BatchNorm after the ReLU, as their conv_block
        "features.conv_block1_1.2.bias",
    ]
    assert names[-2:] == ["classifier.0.weight", "classifier.0.bias"]
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_vgg_like_depth_and_width_are_keys_of_its_own() -> None:
    small = resolve_config("tiny", assignments=["model=vgg-like", "vgg_depth=2", "vgg_width=4"])
    model = create_model(small, InputSpec(1, 8, 4))
    widths = [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert widths == [4, 4, 8, 8]
    with pytest.raises(ConfigError, match="needs images of at least 16×16.*vgg_depth=3 or less"):
        resolve_config("tiny", assignments=["model=vgg-like", "vgg_depth=4"])


def test_the_dsd2_study_dry_run_counts_its_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(["run", "--preset", "dsd2", "--out", str(tmp_path), "--dry-run"], capsys)
    # 2 models × 2 datasets × 3 noise levels × 2 remedies × 2 λ × 3 seeds
    assert code == 0 and "144 runs: 0 done, 0 partial, 144 new" in out
    assert "preset=dsd2-vgg-cifar100 noise=0.5 remedy=distill weight_decay=0.0001 seed=2" in out
