"""The teacher's logits of unaugmented batches are computed once per image and reused: the
same runs as computing them per batch, the teacher run once, and never under augmentation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import sparsedd.training.trainer as trainer_module
from sparsedd.components import resolve_config, run_id
from sparsedd.data.batches import channel_stats, epoch_batches, epoch_order, eval_batches
from sparsedd.models.base import InputSpec, create_model
from sparsedd.training.prune import full_masks
from sparsedd.training.teacher import frozen
from sparsedd.training.trainer import Trainer


def cfg_of(*assignments: str):
    return resolve_config("tiny", assignments=assignments)


def test_the_cache_reads_the_epochs_own_order() -> None:
    """Labels 0..n-1 show which sample each batch of epoch_batches holds."""
    n = 300
    x = torch.zeros(n, 1, 2, 2, dtype=torch.uint8)
    y = torch.arange(n)
    zero, one = (
        channel_stats((0.0,), torch.device("cpu")),
        channel_stats((1.0,), torch.device("cpu")),
    )
    for seed in (0, 7):
        seen = torch.cat([yb for _, yb in epoch_batches(x, y, 64, seed, False, zero, one)])
        assert torch.equal(seen, epoch_order(n, seed)[0])


class Counting(nn.Module):
    """A teacher that counts the images it is run on."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.images = inner, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images += len(x)
        return self.inner(x)


@pytest.mark.parametrize(("augment", "cached"), [(False, True), (True, False)])
def test_the_teacher_runs_once_per_image_only_without_augmentation(
    augment: bool, cached: bool
) -> None:
    cfg = cfg_of("remedy=distill", "batch_size=32")
    spec = InputSpec(1, 8, 4)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (100, 1, 8, 8), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 4, (100,), generator=g)
    torch.manual_seed(1)
    teacher = frozen(Counting(create_model(cfg, spec)))
    model = create_model(cfg, spec)
    trainer = Trainer(model, full_masks(model), cfg, torch.device("cpu"), teacher=teacher)
    trainer.refresh_masks()
    for epoch in range(3):
        trainer.train_epoch(x, y, epoch, augment, (0.5,), (0.25,), epoch * 4, 100)
    assert teacher.images == (100 if cached else 300)


def _rows(out: Path, cfg) -> list[tuple]:
    from sparsedd.training.experiment import Experiment

    rows = Experiment(cfg, out).run()
    return [(r["round"], r["test_acc"], r["test_loss"], r["train_acc"], r["val_acc"]) for r in rows]


def test_a_cached_run_records_the_uncached_runs_rows(tmp_path: Path, monkeypatch) -> None:
    """Same rows within 1e-6 (bit-identical with this LeNet on this project's CPU): the cache
    runs the teacher on batches of another size, which may change the last bits of its logits
    (the order of a float sum), never more."""
    cfg = cfg_of("remedy=distill", "rounds=2", "epochs=2")
    cached = _rows(tmp_path / "cached", cfg)
    monkeypatch.setattr(trainer_module, "epoch_teacher_logits", lambda *args: None)
    uncached = _rows(tmp_path / "uncached", cfg)
    assert len(cached) == len(uncached) == 3
    for a, b in zip(cached, uncached, strict=True):
        assert a[0] == b[0] and a[1:] == pytest.approx(b[1:], abs=1e-6)


def test_a_run_fills_the_cache_once_for_all_its_rounds(tmp_path: Path, monkeypatch) -> None:
    import sparsedd.training.teacher_cache as teacher_cache

    fills = []
    fill = eval_batches

    def counting(*args, **kwargs):
        fills.append(1)
        return fill(*args, **kwargs)

    monkeypatch.setattr(teacher_cache, "eval_batches", counting)
    _rows(tmp_path, cfg_of("remedy=distill", f"teacher={_teacher_id(tmp_path)}", "rounds=3"))
    assert len(fills) == 1  # 4 rounds of 2 epochs, one pass of the teacher


def _teacher_id(out: Path) -> str:
    """A recorded dense round in ``out`` to name as the teacher (its own training fills no
    cache: it has no teacher)."""
    cfg = cfg_of("rounds=0")
    _rows(out, cfg)
    return run_id(cfg)
