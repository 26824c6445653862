"""The fast paths compute what the slow ones do: CPU attention, the paper's model, bf16 path."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from sparsedd.models.base import InputSpec, count_parameters, create_model
from sparsedd.models.vit import _math_attention
from sparsedd.presets import preset_config
from sparsedd.training.prune import full_masks
from sparsedd.training.trainer import Trainer

SMALL = dict(patch_size=4, dim=32, depth=2, heads=4, dim_head=8, mlp_dim=48)


def test_math_attention_equals_sdpa() -> None:
    q, k, v = torch.randn(3, 2, 4, 17, 16).unbind(0)
    want = F.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(_math_attention(q, k, v, 0.0), want, atol=1e-5, rtol=1e-5)


def test_our_vit_equals_vit_pytorch_with_the_same_weights() -> None:
    pytest.importorskip("vit_pytorch")
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    import paper_pipeline

    cfg = dataclasses.replace(
        preset_config("vit-cifar10"), vit_layout="modern", dropout=0.0, emb_dropout=0.0, **SMALL
    )
    spec = InputSpec(3, 32, 10)
    torch.manual_seed(0)
    ours = create_model(cfg, spec).eval()
    theirs = paper_pipeline.paper_model(cfg, spec).eval()
    assert count_parameters(ours) == count_parameters(theirs)
    paper_pipeline.load_our_weights(theirs, ours, cfg.depth)
    x = torch.randn(5, 3, 32, 32)
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-4, rtol=1e-4)


def test_bf16_autocast_path_trains_close_to_fp32() -> None:
    """The GPU path's precision setting runs on the CPU and stays near fp32."""
    base = dataclasses.replace(
        preset_config("vit-cifar10"), batch_size=16, dropout=0.0, emb_dropout=0.0, **SMALL
    )
    spec = InputSpec(3, 32, 10)
    x = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, 10, (32,))
    losses = {}
    for precision in ("fp32", "bf16"):
        cfg = dataclasses.replace(base, precision=precision)
        torch.manual_seed(0)
        model = create_model(cfg, spec)
        trainer = Trainer(model, full_masks(model), cfg, torch.device("cpu"))
        trainer.refresh_masks()
        stats = trainer.train_epoch(x, y, 0, True, (0.5,) * 3, (0.25,) * 3, 0, 2)
        losses[precision] = stats.loss
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=2e-2)
