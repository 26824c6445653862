"""A run whose loss or weights stop being finite stops with one line and records nothing for that
round; pruning never ranks a non-finite weight."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import torch
from support import run_cli

from sparsedd.errors import UserError
from sparsedd.training import trainer as train
from sparsedd.training.prune import prune_round

TINY = ["run", "--preset", "tiny", "-q", "--set", "threads=1"]


def table(out: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(out / "results.sqlite")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def assert_diverged_line(err: str, round_: int) -> None:
    lines = [line for line in err.strip().splitlines() if line.startswith("sparsedd:")]
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith("sparsedd: error: "), err
    assert f"diverged in round {round_}" in lines[0] and "'lr'" in lines[0], err


def test_huge_learning_rate_stops_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code, _, err = run_cli(
        [*TINY, "--set", "optimizer=sgd", "--set", "lr=1e4", "--out", str(out)], capsys
    )
    assert code == 2, err
    assert_diverged_line(err, 0)
    assert "epoch 1" in err and "lr=1000" in err
    assert table(out, "SELECT COUNT(*) FROM rounds") == [(0,)]
    assert table(out, "SELECT COUNT(*) FROM epochs WHERE train_loss IS NULL") == [(0,)]


def test_divergence_in_a_later_round_keeps_the_earlier_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A weight turns infinite at the start of round 1 (after round 0's two epochs)."""
    original = train.Trainer.train_epoch
    calls = {"n": 0}

    def poisoned(self: train.Trainer, *args, **kwargs):  # noqa: ANN002, ANN003
        calls["n"] += 1
        if calls["n"] == 3:
            with torch.no_grad():
                next(self.model.parameters()).view(-1)[0] = float("inf")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(train.Trainer, "train_epoch", poisoned)
    out = tmp_path / "out"
    code, _, err = run_cli([*TINY, "--out", str(out)], capsys)
    assert code == 2, err
    assert_diverged_line(err, 1)
    assert table(out, "SELECT round FROM rounds") == [(0,)]
    assert table(out, "SELECT COUNT(*) FROM epochs WHERE round = 1") == [(0,)]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_pruning_never_scores_a_non_finite_weight(bad: float) -> None:
    weights = {"a": torch.tensor([1.0, 2.0, bad, 4.0]), "b": torch.tensor([0.5, 3.0])}
    masks = {k: torch.ones_like(v, dtype=torch.bool) for k, v in weights.items()}
    with pytest.raises(UserError, match="layer a"):
        prune_round(weights, masks, 0.2)


def test_pruned_non_finite_weights_are_ignored() -> None:
    """A weight already pruned (masked) may hold anything: it is never scored."""
    weights = {"a": torch.tensor([1.0, 2.0, float("nan"), 4.0])}
    masks = {"a": torch.tensor([True, True, False, True])}
    new = prune_round(weights, masks, 0.34)
    assert new["a"].tolist() == [False, True, False, True]
