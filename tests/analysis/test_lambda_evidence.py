"""λ* a user can prune with: how far the chosen λ holds, its validation edge over the runner-up
with an interval paired by seed, a one-seed verdict kept indicative, and other λ that compress
further said. The verdicts are set by hand: these tests are about the choice, not the verdict."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support import run_cli, write_store

from sparsedd.analysis.lambda_evidence import holds_to, paired_difference
from sparsedd.analysis.lambdas import choose_weight_decay, lambda_groups
from sparsedd.analysis.load import add_curve_column, curve_keys
from sparsedd.analysis.report_sections import lambda_verdicts
from sparsedd.analysis.stats import curve_stats
from sparsedd.analysis.tables import Analysis, curve_table

ROUNDS = 12


def _runs(
    weight_decay: float,
    seeds: list[int],
    test: list[float],
    val: list[float],
    seed_shift: float = 0.0,
    stop: int | None = None,
) -> list[dict]:
    """Round rows of one λ: ``test``/``val`` per round plus each seed's level (``seed_shift``
    times a seeded draw), shared by every λ for that seed; from round ``stop`` on collapsed."""
    rows = []
    for s in seeds:
        level = seed_shift * np.random.default_rng(s).normal()
        for k in range(ROUNDS + 1):
            gone = stop is not None and k >= stop
            rows.append(
                {
                    "model": "m", "dataset": "d", "noise": 0.2, "weight_decay": weight_decay,
                    "seed": s, "run_id": f"wd{weight_decay}-s{s}", "round": k,
                    "sparsity": 1 - 0.8**k, "n_test": 10_000, "collapsed": int(gone),
                    "test_acc": None if gone else test[k] + level,
                    "val_acc": None if gone else val[k] + level,
                    "memorization": None, "activation_entropy": None,
                }
            )  # fmt: skip
    return rows


def _choose(rows: list[dict], verdicts: dict[float, str], rule: str = "avoid-sdd", **kw):
    """(λ choices, Analysis) of ``rows`` with the verdicts set by hand."""
    df = add_curve_column(pd.DataFrame(rows))
    keys = curve_keys(df)
    stats = curve_stats(df)
    table = curve_table(df)
    table["verdict"] = table["weight_decay"].map(verdicts)
    table["lambda_group"] = lambda_groups(table, keys)
    lambdas = choose_weight_decay(table, keys, rule, kw.get("target"), stats, df)
    result = Analysis(df, stats, table, lambdas, keys)
    return lambdas.iloc[0], result


FLAT = [0.80] * (ROUNDS + 1)
DIP = [0.80, 0.76, 0.72, 0.70, 0.72, 0.75, 0.78, 0.80, 0.81, 0.81, 0.80, 0.79, 0.78]


def test_the_line_says_how_far_lambda_holds_and_who_compresses_further() -> None:
    """λ = 2 (no SDD) stops as collapsed at round 5; λ = 0 (SDD) stays near dense to the end."""
    rows = _runs(0.0, [0, 1], DIP, [v - 0.2 for v in DIP]) + _runs(
        2.0, [0, 1], [0.82] * (ROUNDS + 1), [0.66] * (ROUNDS + 1), stop=5
    )
    choice, result = _choose(rows, {0.0: "SDD", 2.0: "no SDD"})
    assert choice["best_weight_decay"] == 2.0
    assert choice["holds_to"] == pytest.approx(1 - 0.8**4)
    assert choice["collapse_at"] == pytest.approx(1 - 0.8**5)
    assert choice["compressible_beyond"] == [(0.0, pytest.approx(1 - 0.8**11))]  # 0.79 there
    line = lambda_verdicts(result)[0]
    assert "λ* = 2 holds to 59.0% sparsity (it collapses from 67.2%)" in line
    assert "Past 59.0% it does not apply" in line and "λ = 0 to 91.4%" in line
    assert line.endswith("λ = 2: no SDD, best test accuracy 82.0% at 0.0% sparsity.")


def test_a_lambda_that_never_collapses_holds_to_its_last_round_and_nothing_is_said() -> None:
    rows = _runs(0.0, [0, 1], DIP, [v - 0.2 for v in DIP]) + _runs(
        2.0, [0, 1], [0.82] * (ROUNDS + 1), [0.66] * (ROUNDS + 1)
    )
    choice, result = _choose(rows, {0.0: "SDD", 2.0: "no SDD"})
    assert choice["holds_to"] == pytest.approx(1 - 0.8**12) and math.isnan(choice["collapse_at"])
    assert choice["compressible_beyond"] == [] and not choice["indicative"]
    line = lambda_verdicts(result)[0]
    assert "holds to 93.1% sparsity." in line and "does not apply" not in line


def test_the_validation_edge_is_paired_by_seed() -> None:
    """Seeds differ by ±3 points in level, λ = 1 beats λ = 0 by 0.5 points in every seed: the
    paired interval is narrow and excludes 0 (unpaired, the seeds' spread would swamp it)."""
    val1 = [0.60 + 0.005 * (k == 6) for k in range(ROUNDS + 1)]
    val0 = [v - 0.005 for v in val1]
    rows = _runs(0.0, [0, 1, 2, 3], FLAT, val0, seed_shift=0.03)
    rows += _runs(1.0, [0, 1, 2, 3], FLAT, val1, seed_shift=0.03)
    choice, result = _choose(rows, {0.0: "no SDD", 1.0: "no SDD"})
    assert choice["best_weight_decay"] == 1.0 and choice["runner_up"] == 0.0
    assert choice["val_diff"] == pytest.approx(0.005, abs=1e-9)
    assert choice["n_paired"] == 4 and choice["val_diff_low"] == pytest.approx(0.005, abs=1e-9)
    line = lambda_verdicts(result)[0]
    assert (
        "+0.50 points over λ = 0 (no SDD) [95% interval +0.50, +0.50, paired over 4 seeds]" in line
    )


def test_a_near_tie_shows_an_interval_around_zero() -> None:
    rng = np.random.default_rng(3)
    rows = []
    for wd, edge in ((0.0, 0.0), (1.0, 0.0005)):
        for s in range(3):
            rows += _runs(wd, [s], FLAT, [0.6 + edge + rng.normal(0, 0.004)] * (ROUNDS + 1))
    choice, result = _choose(rows, {0.0: "no SDD", 1.0: "no SDD"})
    assert choice["val_diff_low"] < 0 < choice["val_diff_high"]
    assert "paired over 3 seeds: a tie within it]" in lambda_verdicts(result)[0]


def test_a_one_seed_no_sdd_does_not_beat_an_inconclusive_lambda_with_better_validation() -> None:
    rows = _runs(1.0, [0], FLAT, [0.60] * (ROUNDS + 1))
    rows += _runs(3.0, [0, 1, 2], FLAT, [0.62] * (ROUNDS + 1))
    choice, result = _choose(rows, {1.0: "no SDD", 3.0: "inconclusive"})
    assert choice["best_weight_decay"] == 3.0
    assert "chosen among inconclusive and one-seed curves" in choice["note"]
    # with only the one seed's λ: chosen, and its line says the verdict is indicative
    choice, result = _choose(_runs(1.0, [0], FLAT, FLAT), {1.0: "no SDD"})
    assert choice["best_weight_decay"] == 1.0 and choice["indicative"]
    assert "rests on one seed: indicative" in lambda_verdicts(result)[0]


@pytest.mark.parametrize("rule", ["best-val", "at-sparsity"])
def test_every_rule_keeps_a_one_seed_choice_indicative(rule: str) -> None:
    rows = _runs(1.0, [0], FLAT, [0.70] * (ROUNDS + 1))
    rows += _runs(3.0, [0, 1, 2], FLAT, [0.62] * (ROUNDS + 1))
    choice, result = _choose(rows, {1.0: "no SDD", 3.0: "no SDD"}, rule, target=0.5)
    assert choice["best_weight_decay"] == 1.0 and choice["indicative"]
    line = lambda_verdicts(result)[0]
    assert "rests on one seed: indicative" in line
    assert "+8.00 points over λ = 3 (no SDD), one seed in common: no interval" in line


def test_holds_to_and_paired_difference_directly() -> None:
    stats = pd.DataFrame(
        {"curve": "c", "round": range(4), "sparsity": [0, 0.2, 0.36, 0.49],
         "collapsed": [False, False, False, True]}
    )  # fmt: skip
    assert holds_to(stats, {"curve": "c", "collapsed_sparsity": 0.49}) == (0.36, 0.49)
    assert holds_to(stats, {"curve": "c", "collapse_sparsity": 0.2}) == (0.0, 0.2)
    diff = paired_difference(pd.Series([0.7, 0.8], index=[0, 1]), pd.Series([0.6], index=[1]))
    assert diff["diff"] == pytest.approx(0.2) and diff["n_paired"] == 1
    assert math.isnan(diff["low"])


def test_analyze_prints_the_evidence_from_a_results_folder(tmp_path: Path, capsys) -> None:
    rows = _runs(0.0, [0, 1], DIP, [v - 0.2 for v in DIP])
    rows += _runs(2.0, [0, 1], [0.82] * (ROUNDS + 1), [0.66 + 0.01 * (k == 3) for k in range(13)])
    out = write_store(pd.DataFrame([r for r in rows if not r["collapsed"]]), tmp_path / "out")
    code, said, _ = run_cli(["analyze", str(out)], capsys)
    line = next(x for x in said.splitlines() if x.startswith("λ choice"))
    assert code == 0 and "λ* = 2 holds to 93.1% sparsity." in line
    assert "+6.00 points over λ = 0 (" in line and "paired over 2 seeds" in line
