"""analysis/rounds.py: per run, the round behind best validation accuracy, the dip and the peak."""

from __future__ import annotations

import pytest
from support import sweep

from sparsedd.analysis import tables as an
from sparsedd.analysis.rounds import named_round, run_rounds
from sparsedd.analysis.synthetic import synthetic_rounds
from sparsedd.errors import UserError


@pytest.fixture(scope="module")
def result() -> an.Analysis:
    return an.analyze(sweep(rounds=12, n_seeds=2))


def test_each_run_names_the_rounds_at_its_curves_dip_and_peak(result) -> None:
    table = run_rounds(result)
    assert len(table) == 4  # 2 λ × 2 seeds
    curves = result.curves.set_index("curve")
    for _, row in table.iterrows():
        rounds = result.rounds[result.rounds["run_id"] == row["run_id"]].set_index("round")
        curve = curves.loc[row["curve"]]
        val = rounds["val_acc"]
        assert row["best_round"] == max(k for k in val.index if val[k] == val.max())
        assert row["best_test_acc"] == rounds.loc[row["best_round"], "test_acc"]
        if curve["sdd_detected"]:
            assert rounds.loc[row["dip_round"], "sparsity"] == pytest.approx(curve["dip_sparsity"])
            assert rounds.loc[row["peak_round"], "sparsity"] == pytest.approx(
                curve["peak_sparsity"]
            )
            assert row["dip_round"] < row["peak_round"]
        else:
            assert row["dip_round"] is None and row["peak_round"] is None
    assert table["dip_round"].notna().sum() == 2  # the λ = 0 curve's two seeds


def test_named_round_answers_export_and_refuses_what_a_curve_lacks(result) -> None:
    table = run_rounds(result)
    sdd = table[table["dip_round"].notna()].iloc[0]
    flat = table[table["dip_round"].isna()].iloc[0]
    assert named_round(result, sdd["run_id"], "dip") == sdd["dip_round"]
    assert named_round(result, sdd["run_id"], "peak") == sdd["peak_round"]
    assert named_round(result, flat["run_id"], "best") == flat["best_round"]
    with pytest.raises(UserError, match="shows no sparse double descent"):
        named_round(result, flat["run_id"], "peak")


def test_a_run_without_validation_has_no_best_round() -> None:
    df = synthetic_rounds("sdd", rounds=6, n_seeds=1)
    df["val_acc"] = None
    result = an.analyze(df)
    (run_id,) = set(df["run_id"])
    with pytest.raises(UserError, match="val_size"):
        named_round(result, run_id, "best")
