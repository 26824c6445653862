"""Batched λ: runs differing only in weight_decay, trained as one model, equal separate runs."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from sparsedd.components import run_id, validate
from sparsedd.config import Config
from sparsedd.models.base import InputSpec, create_model
from sparsedd.presets import preset_config
from sparsedd.store import checkpoint as ckpt
from sparsedd.store.results import ResultsStore
from sparsedd.store.results_folder import ResultsFolder
from sparsedd.training.batched import BatchedTrainer, can_batch
from sparsedd.training.experiment import (
    Experiment,
    Interrupted,
    SilentReporter,
    StopFlag,
    run_batched,
)
from sparsedd.training.prune import full_masks
from sparsedd.training.trainer import Trainer

TINY_VIT = dict(
    model="vit", patch_size=4, dim=16, depth=1, heads=2, dim_head=8, mlp_dim=16,
    dropout=0.0, emb_dropout=0.0,
)  # fmt: skip
COMPARED = ("sparsity", "params_remaining", "test_acc", "train_acc", "memorization", "val_acc")


def tiny(**overrides) -> Config:
    """The `tiny` preset with overrides."""
    return validate(dataclasses.replace(preset_config("tiny"), **overrides))


def _rows(out_dir, cfg: Config) -> list[dict]:
    return [r for r in ResultsStore(out_dir).round_rows() if r["run_id"] == run_id(cfg)]


def _assert_same_runs(batched_dir, separate_dir, cfgs: list[Config]) -> None:
    for cfg in cfgs:
        got, want = _rows(batched_dir, cfg), _rows(separate_dir, cfg)
        assert (
            [r["round"] for r in got] == [r["round"] for r in want] == list(range(cfg.rounds + 1))
        )
        for g, w in zip(got, want, strict=True):
            for key in COMPARED:
                assert g[key] == pytest.approx(w[key], abs=2e-3), (cfg.weight_decay, key)
            assert math.isclose(g["test_loss"], w["test_loss"], rel_tol=1e-3)
        for k in range(cfg.rounds + 1):
            a, _ = ckpt.load_tensors(ResultsFolder(batched_dir).run(run_id(cfg)).round_file(k))
            b, _ = ckpt.load_tensors(ResultsFolder(separate_dir).run(run_id(cfg)).round_file(k))
            assert a.keys() == b.keys()
            for name in a:
                if name.startswith("mask."):
                    # a weight at the pruning threshold may fall either way after rounding
                    assert (a[name] != b[name]).float().mean() < 1e-2, name
                else:
                    # Adam turns rounding-level gradient differences near zero into steps of
                    # up to lr: a handful of entries may differ by ~lr, the rest agree closely.
                    diff = (a[name] - b[name]).abs()
                    assert float(diff.max()) <= 4 * cfg.lr, name
                    assert float((diff > 1e-4).float().mean()) <= 0.02, name


@pytest.mark.parametrize("model", [{}, TINY_VIT], ids=["lenet", "vit"])
def test_run_batched_equals_separate_runs(tmp_path, model) -> None:
    cfgs = [tiny(weight_decay=wd, **model) for wd in (0.0, 0.05, 0.5)]
    run_batched(cfgs, tmp_path / "batched")
    for cfg in cfgs:
        Experiment(cfg, tmp_path / "separate").run()
    _assert_same_runs(tmp_path / "batched", tmp_path / "separate", cfgs)
    # each round says how it was computed: in one model for the three λ, or alone
    precision = cfgs[0].precision
    assert {r["execution"] for c in cfgs for r in _rows(tmp_path / "batched", c)} == {
        f"{precision}+batched(3)"
    }
    assert {r["execution"] for c in cfgs for r in _rows(tmp_path / "separate", c)} == {precision}


def test_run_batched_resumes_and_skips_recorded_rounds(tmp_path) -> None:
    cfgs = [tiny(weight_decay=wd) for wd in (0.0, 0.1)]
    # One run is already complete; the other has nothing: both must end complete and equal.
    Experiment(cfgs[0], tmp_path / "batched").run()
    run_batched(cfgs, tmp_path / "batched")
    run_batched(cfgs, tmp_path / "batched")  # nothing left to do
    for cfg in cfgs:
        Experiment(cfg, tmp_path / "separate").run()
    _assert_same_runs(tmp_path / "batched", tmp_path / "separate", cfgs)


@pytest.mark.parametrize("mode", [("adamw", "coupled"), ("sgd", "coupled"), ("sgd", "decoupled")])
def test_batched_trainer_matches_trainer_per_epoch(mode) -> None:
    optimizer, l2 = mode
    cfgs = [tiny(optimizer=optimizer, l2_mode=l2, weight_decay=wd, lr=0.01) for wd in (0.0, 0.3)]
    spec = InputSpec(1, 8, 4)
    x = torch.randint(0, 256, (96, 1, 8, 8), dtype=torch.uint8)
    y = torch.randint(0, 4, (96,))
    models, masks = [], []
    for _ in cfgs:
        torch.manual_seed(0)
        m = create_model(cfgs[0], spec)
        mk = full_masks(m)
        mk["1.weight"][:, ::2] = False  # some pruned weights
        models.append(m)
        masks.append(mk)
    singles = []
    for cfg in cfgs:
        torch.manual_seed(0)
        m = create_model(cfg, spec)
        t = Trainer(m, {k: v.clone() for k, v in masks[0].items()}, cfg, torch.device("cpu"))
        t.refresh_masks()
        singles.append(t)
    bt = BatchedTrainer(models, masks, cfgs, torch.device("cpu"))
    for epoch in range(2):
        got = bt.train_epoch(x, y, epoch, True, (0.5,), (0.3,), epoch * 2, 4)
        want = [t.train_epoch(x, y, epoch, True, (0.5,), (0.3,), epoch * 2, 4) for t in singles]
        for g, w in zip(got, want, strict=True):
            assert g.loss == pytest.approx(w.loss, rel=1e-5)
    bt.write_back()
    for m, t in zip(models, singles, strict=True):
        for (n, a), b in zip(m.named_parameters(), t.model.parameters(), strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=n)
        assert (m[1].weight[:, ::2] == 0).all()
    logits = bt.predict(x, (0.5,), (0.3,))
    assert logits.shape == (2, 96, 4)
    torch.testing.assert_close(logits[1], singles[1].predict(x, (0.5,), (0.3,)), atol=1e-4, rtol=0)


def test_can_batch_only_lambda_differences() -> None:
    a = tiny()
    assert can_batch([a, dataclasses.replace(a, weight_decay=0.1)])
    assert not can_batch([a])
    assert not can_batch([a, dataclasses.replace(a, seed=1)])
    with pytest.raises(ValueError):
        run_batched([a, dataclasses.replace(a, lr=0.1)], "unused")


def test_batched_runs_stop_and_resume_as_single_runs_do(tmp_path) -> None:
    """The one round loop: a stop saves every batched run at its epoch and ends the sweep;
    resuming finishes them equal to separate runs."""
    cfgs = [tiny(weight_decay=wd) for wd in (0.0, 0.1)]
    stop = StopFlag()

    class StopAfterAnEpoch(SilentReporter):
        def epoch_done(self, run, round_, epoch, stats) -> None:
            stop.requested = True

    with pytest.raises(Interrupted, match="round 0 after epoch 1"):
        run_batched(cfgs, tmp_path / "batched", reporter=StopAfterAnEpoch(), stop=stop)
    for cfg in cfgs:
        _, meta = ckpt.load_tensors(ResultsFolder(tmp_path / "batched").run(run_id(cfg)).progress)
        assert (meta["round"], meta["epoch"]) == (0, 0)
    assert not ResultsStore(tmp_path / "batched").round_rows()
    run_batched(cfgs, tmp_path / "batched")
    for cfg in cfgs:
        Experiment(cfg, tmp_path / "separate").run()
    _assert_same_runs(tmp_path / "batched", tmp_path / "separate", cfgs)
