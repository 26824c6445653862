"""Collapsed rounds (the training's collapse stop) are shown as collapsed, never as missing,
as a 0 or as a crash: `results`, `analyze` (per-round points, verdict, λ choice, named rounds),
`plot` (curves end with a ×) and `report` (one line per curve saying where its runs stopped).

Folders are filled through ``ResultsStore`` with rows as the collapse stop records them
(``collapsed=True``, metrics None, epochs 0, seconds 0, no layer densities), or built with
``synthetic_rounds(collapsed_from=...)``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import BASE, COMMANDS, assert_total, fill, round_row, run_cli

from sparsedd.analysis import tables as an
from sparsedd.analysis.figure_parts import close, remaining
from sparsedd.analysis.load import load_results, rows_to_frame
from sparsedd.analysis.plot import plot_analysis
from sparsedd.analysis.report import render_html
from sparsedd.analysis.report_sections import collapse_lines
from sparsedd.analysis.rounds import named_round, run_rounds
from sparsedd.analysis.stats import METRICS
from sparsedd.analysis.synthetic import synthetic_rounds
from sparsedd.analysis.verdict import sdd_verdict

SPARSITY = [1 - 0.8**k for k in range(40)]


def collapsed_row(k: int) -> dict[str, Any]:
    """A round the collapse stop skipped, as the engine records it."""
    return round_row(
        k, None, test_loss=None, memorization=None, epochs=0, seconds=0.0, layer_density={},
        collapsed=True,
    )  # fmt: skip


def stopped_run(accs: list[float], stop: int, total: int) -> list[dict[str, Any]]:
    """Trained rounds 0..len(accs)-1 with ``accs``, then collapsed rounds ``stop``..``total``."""
    assert stop == len(accs)
    return [round_row(k, a) for k, a in enumerate(accs)] + [
        collapsed_row(k) for k in range(stop, total + 1)
    ]


def frame(runs: dict[str, tuple[dict[str, Any], list[float | None]]]) -> pd.DataFrame:
    """A rounds DataFrame: per run id, (config, accuracy per round; None: collapsed)."""
    rows = []
    for run_id, (config, accs) in runs.items():
        for k, acc in enumerate(accs):
            row = collapsed_row(k) if acc is None else round_row(k, acc)
            row["collapsed"] = int(acc is None)
            row["round_epochs"] = row.pop("epochs")  # as round_rows names it
            rows.append({**config, "run_id": run_id, **row})
    return rows_to_frame(rows)


# ---------------------------------------------------------------- results


def test_results_shows_collapsed_rounds_and_exports_keep_the_flag(tmp_path, capsys) -> None:
    out = fill(tmp_path / "out", [("a", BASE, stopped_run([0.8, 0.7, 0.6], 3, 5))])
    code, text, err = run_cli(["results", str(out)], capsys)
    assert code == 0, err
    lines = text.splitlines()
    header = lines[0].split()
    rows = [line.split() for line in lines[1:]]
    assert len(rows) == 6
    col = header.index("test_acc")
    for k, row in enumerate(rows):
        assert row[header.index("round")] == str(k)
        if k >= 3:
            assert row[col] == "collapsed" and row[header.index("val_acc")] == "collapsed"
        else:
            assert float(row[col]) == pytest.approx([0.8, 0.7, 0.6][k])
    code, text, _ = run_cli(["results", str(out), "--format", "csv"], capsys)
    table = list(csv.DictReader(io.StringIO(text)))
    assert [r["collapsed"] for r in table] == ["0"] * 3 + ["1"] * 3
    assert all(r["test_acc"] == "" for r in table[3:])
    code, text, _ = run_cli(["results", str(out), "--format", "json"], capsys)
    records = json.loads(text)
    assert [r["collapsed"] for r in records] == [0, 0, 0, 1, 1, 1]
    assert all(r["test_acc"] is None for r in records[3:])
    code, _, err = run_cli(["export", str(out), "-o", str(tmp_path / "r.csv")], capsys)
    assert code == 0, err
    exported = pd.read_csv(tmp_path / "r.csv")
    assert list(exported["collapsed"]) == [0, 0, 0, 1, 1, 1]
    assert exported["test_acc"].iloc[3:].isna().all()


def test_a_collapsed_round_is_not_taken_for_a_diverged_one(tmp_path, capsys) -> None:
    out = fill(tmp_path / "out", [("a", BASE, stopped_run([0.8, 0.7, 0.6, 0.65], 4, 6))])
    rounds = load_results(out)
    assert len(rounds) == 7 and rounds.attrs["notes"] == []
    assert list(rounds["collapsed"]) == [0] * 4 + [1] * 3
    code, _, err = run_cli(["analyze", str(out)], capsys)
    assert code == 0 and "diverged" not in err


# ---------------------------------------------------------------- analyze


def test_a_point_where_any_seed_collapsed_has_no_mean_not_the_survivors() -> None:
    df = synthetic_rounds("sdd", 0.05, 0.002, 3, rounds=20, n_test=10_000,
                             collapsed_from=[None, None, 12])  # fmt: skip
    stats = an.analyze(df).stats.set_index("round")
    survivors = df[df["round"] == 14]["test_acc"].dropna()
    assert len(survivors) == 2 and survivors.mean() > 0.5  # what averaging the rest would give
    assert not stats.loc[:11, "collapsed"].any() and stats.loc[12:, "collapsed"].all()
    assert list(stats.loc[10:13, "n_collapsed"]) == [0, 0, 1, 1]
    for metric in METRICS:
        assert stats.loc[12:, f"{metric}_mean"].isna().all(), metric
    assert stats.loc[:11, "test_acc_mean"].notna().all()


def test_best_accuracy_and_compression_never_come_from_collapsed_points() -> None:
    # the surviving seed climbs to 95% after the other stopped: its mean alone would be best
    df = frame({
        "s0": ({**BASE, "seed": 0}, [0.80, 0.78, 0.79, 0.80, 0.95, 0.95]),
        "s1": ({**BASE, "seed": 1}, [0.80, 0.78, 0.79, 0.80, None, None]),
    })  # fmt: skip
    curve = an.analyze(df).curves.iloc[0]
    assert curve["best_acc"] == pytest.approx(0.80)
    assert curve["best_sparsity"] < SPARSITY[4]
    assert curve["compressible_to"] == pytest.approx(SPARSITY[3])
    assert curve["collapsed_round"] == 4 and curve["collapsed_sparsity"] == pytest.approx(
        SPARSITY[4]
    )
    assert curve["n_collapsed_runs"] == 1 and curve["skipped_rounds"] == 2


def test_the_verdict_leaves_out_each_seed_from_its_own_collapsed_round() -> None:
    kwargs = {"shape": "sdd", "depth": 0.05, "noise_sd": 0.002, "n_seeds": 3, "rounds": 14}
    free = an.analyze(synthetic_rounds(**kwargs, n_test=10_000)).curves.iloc[0]
    assert math.isnan(free["collapse_sparsity"])  # no collapse within 14 rounds
    stopped = synthetic_rounds(**kwargs, n_test=10_000, collapsed_from=[None, 11, None])
    curve = an.analyze(stopped).curves.iloc[0]
    # one seed stopped: the two others carry the later rounds; the curve has not collapsed
    assert math.isnan(curve["collapse_sparsity"])
    assert curve["collapsed_round"] == 11
    acc, _ = an.seed_matrix(stopped)
    mask = an.collapsed_matrix(stopped)
    assert mask.sum() == 4
    assert sdd_verdict(acc, 10_000).seed_collapse_rounds == (None, None, None)
    assert sdd_verdict(acc, 10_000, collapsed=mask).seed_collapse_rounds == (None, 11, None)
    every = synthetic_rounds(**kwargs, n_test=10_000, collapsed_from=11)
    curve = an.analyze(every).curves.iloc[0]
    assert curve["collapse_sparsity"] == pytest.approx(SPARSITY[11])
    assert curve["peak_sparsity"] < SPARSITY[11]


def test_an_accuracy_collapse_before_the_stop_stays_the_collapse() -> None:
    # chance (10%) for two rounds, then the stop: the collapse is where accuracy fell
    accs = [0.8, 0.79, 0.78, 0.8, 0.79, 0.1, 0.1, None, None]
    df = frame({f"s{s}": ({**BASE, "seed": s}, accs) for s in range(2)})
    curve = an.analyze(df).curves.iloc[0]
    assert curve["collapse_sparsity"] == pytest.approx(SPARSITY[5])
    assert curve["collapsed_round"] == 7


def test_a_curve_that_collapsed_early_says_so() -> None:
    df = frame({f"s{s}": ({**BASE, "seed": s}, [0.8, 0.75, None, None, None]) for s in range(2)})
    curve = an.analyze(df).curves.iloc[0]
    assert curve["verdict"] == "inconclusive"
    assert "stopped as collapsed from round 2" in curve["verdict_note"]
    assert curve["collapse_sparsity"] == pytest.approx(SPARSITY[2])
    v = sdd_verdict(np.array([[0.8, np.nan]]), collapsed=np.array([[False, True]]))
    assert v.verdict == "inconclusive" and v.collapse_round == 1


def test_named_rounds_are_never_collapsed_rounds() -> None:
    df = frame({
        "s0": ({**BASE, "seed": 0}, [0.80, 0.78, 0.79, 0.80, 0.95, 0.95]),
        "s1": ({**BASE, "seed": 1}, [0.80, 0.78, 0.79, 0.81, None, None]),
    })  # fmt: skip
    result = an.analyze(df)
    table = run_rounds(result).set_index("run_id")
    assert table.loc["s1", "collapsed_round"] == 4 and table.loc["s0", "collapsed_round"] is None
    assert table.loc["s1", "best_round"] == 3  # the best of its trained rounds
    assert named_round(result, "s1", "best") == 3


# ---------------------------------------------------------------- λ choice


def _two_lambdas() -> pd.DataFrame:
    """λ = 0: high validation accuracy only where one seed had stopped; λ = 0.1: steady."""
    runs = {
        "a0": ({**BASE, "seed": 0, "weight_decay": 0.0}, [0.80, 0.80, 0.81, 0.82, 0.97, 0.97]),
        "a1": ({**BASE, "seed": 1, "weight_decay": 0.0}, [0.80, 0.80, 0.81, 0.82, None, None]),
        "b0": ({**BASE, "seed": 0, "weight_decay": 0.1}, [0.85, 0.85, 0.86, 0.86, 0.86, 0.86]),
        "b1": ({**BASE, "seed": 1, "weight_decay": 0.1}, [0.85, 0.85, 0.86, 0.86, 0.86, 0.86]),
    }
    return frame(runs)


@pytest.mark.parametrize("rule", ["best-val", "avoid-sdd"])
def test_lambda_rules_skip_collapsed_rounds(rule: str) -> None:
    result = an.analyze(_two_lambdas(), lambda_rule=rule)
    (choice,) = result.lambdas.to_dict("records")
    assert choice["best_weight_decay"] == 0.1
    assert choice["best_val_acc"] == pytest.approx(0.86)


def test_at_sparsity_never_picks_a_curve_collapsed_there() -> None:
    result = an.analyze(_two_lambdas(), lambda_rule="at-sparsity", target_sparsity=SPARSITY[5])
    (choice,) = result.lambdas.to_dict("records")
    assert choice["best_weight_decay"] == 0.1
    both = frame({
        f"{lam}{s}": ({**BASE, "seed": s, "weight_decay": w}, [0.8, 0.8, 0.8, None])
        for lam, w in (("a", 0.0), ("b", 0.1)) for s in range(2)
    })  # fmt: skip
    result = an.analyze(both, lambda_rule="at-sparsity", target_sparsity=SPARSITY[3])
    (choice,) = result.lambdas.to_dict("records")
    assert math.isnan(choice["best_weight_decay"]) and "collapsed" in choice["note"]


# ---------------------------------------------------------------- plot


def _end_markers(ax: Any) -> list[Any]:
    return [line for line in ax.get_lines() if line.get_gid() == "collapsed"]


def test_plot_ends_a_collapsed_curve_with_a_marker_in_every_row() -> None:
    df = synthetic_rounds("sdd", 0.05, 0.002, 3, rounds=16, n_test=10_000,
                             collapsed_from=[None, 10, 12])  # fmt: skip
    df["activation_entropy"] = np.where(df["collapsed"] == 1, None, 0.6)
    result = an.analyze(df)
    fig = plot_analysis(result, entropy=True)
    try:
        axes = fig.axes[:3]
        for ax in axes:
            (marker,) = _end_markers(ax)
            assert marker.get_xdata()[0] == pytest.approx(remaining(SPARSITY[9]))
            assert marker.get_marker() == "X"
        mean_line = axes[0].get_lines()[0]
        drawn = np.isfinite(np.asarray(mean_line.get_ydata(), dtype=float))
        assert drawn.sum() == 10 and not drawn[10:].any()  # ends at the last trained round
        for ax in axes:  # each seed's rounds after the mean ends are drawn: none left out
            tails = [line for line in ax.get_lines() if line.get_gid() == "seed-tail"]
            ends = sorted(round(float(line.get_xdata()[-1]), 6) for line in tails)
            assert ends == sorted(round(remaining(SPARSITY[k])[()], 6) for k in (11, 16))
            (stop,) = [line for line in ax.get_lines() if line.get_gid() == "seed-collapsed"]
            assert stop.get_xdata()[0] == pytest.approx(remaining(SPARSITY[11]))
        texts = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
        assert any("collapsed" in t for t in texts)
    finally:
        close(fig)
    plain = plot_analysis(an.analyze(synthetic_rounds("sdd", rounds=16, n_test=10_000)))
    try:
        assert not any(_end_markers(ax) for ax in plain.axes)
        assert not any(line.get_gid() == "seed-tail" for ax in plain.axes for line in ax.lines)
        texts = [t.get_text() for legend in plain.legends for t in legend.get_texts()]
        assert not any("collapsed" in t for t in texts)
    finally:
        close(plain)


# ---------------------------------------------------------------- report


def test_report_and_analyze_name_where_runs_stopped(tmp_path, capsys) -> None:
    runs = [
        ("a", BASE, stopped_run([0.8, 0.7, 0.75, 0.8, 0.78, 0.79], 6, 9)),
        ("b", {**BASE, "seed": 1}, stopped_run([0.8, 0.71, 0.74, 0.8, 0.77, 0.8, 0.79], 7, 9)),
        ("c", {**BASE, "seed": 2}, [round_row(k, 0.8) for k in range(10)]),
    ]
    out = fill(tmp_path / "out", runs)
    result = an.analyze(load_results(out))
    (line,) = collapse_lines(result)
    assert "2 of 3 runs stopped as collapsed, the first from 73.8% sparsity (round 6)" in line
    assert "the last from 79.0% sparsity (round 7)" in line
    assert "7 rounds skipped" in line
    page = render_html(result, b"png", "out")
    assert "Runs stopped as collapsed" in page and "73.8% sparsity (round 6)" in page
    assert "collapsed (1 of 3 seeds)" in page and "collapsed (2 of 3 seeds)" in page
    code, text, err = run_cli(["analyze", str(out)], capsys)
    assert code == 0, err
    assert "stopped as collapsed, the first from 73.8% sparsity (round 6)" in text
    assert "collapsed from round" in text  # the per-run table's column
    code, _, err = run_cli(["report", str(out)], capsys)
    assert code == 0 and "Runs stopped as collapsed" in (out / "report.html").read_text()


def test_no_collapse_line_without_collapsed_rounds() -> None:
    result = an.analyze(synthetic_rounds("sdd", rounds=12, n_test=10_000))
    assert collapse_lines(result) == []
    assert "Runs stopped as collapsed" not in render_html(result, b"png", "out")


# ---------------------------------------------------------------- totality


CASES = {
    # every run collapsed right after round 1
    "all-after-round-1": [
        (f"r{s}", {**BASE, "seed": s}, stopped_run([0.8, 0.3], 2, 8)) for s in range(3)
    ],
    # every run stopped right after its dense round
    "all-after-dense": [(f"r{s}", {**BASE, "seed": s}, stopped_run([0.8], 1, 5)) for s in range(2)],
    "some-seeds": [
        ("a", BASE, stopped_run([0.8, 0.7, 0.6], 3, 6)),
        ("b", {**BASE, "seed": 1}, [round_row(k, 0.8 - 0.01 * k) for k in range(7)]),
    ],
    "one-lambda-all-collapsed": [
        ("a", BASE, stopped_run([0.8], 1, 4)),
        ("b", {**BASE, "weight_decay": 0.1}, [round_row(k, 0.8) for k in range(5)]),
    ],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_collapsed_folders_give_a_table(name: str, tmp_path, capsys) -> None:
    out = fill(tmp_path / "out", CASES[name])
    assert assert_total(out, capsys) == [0] * len(COMMANDS)
    code, text, err = run_cli(["analyze", str(out), "--format", "json"], capsys)
    assert code == 0, err
    assert any(c["n_collapsed_runs"] >= 1 for c in json.loads(text))


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    runs=st.lists(
        st.tuples(
            st.integers(0, 2),  # seed
            st.lists(st.floats(0, 1), min_size=1, max_size=5),  # trained accuracies
            st.integers(0, 4),  # collapsed rounds after them
        ),
        min_size=1,
        max_size=4,
    )
)
def test_random_collapsed_folders_give_a_table_or_one_line(runs, capsys) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        entries = [
            (f"run{i}", {**BASE, "seed": seed}, stopped_run(accs, len(accs), len(accs) + extra - 1))
            for i, (seed, accs, extra) in enumerate(runs)
        ]
        assert_total(fill(Path(tmp) / "out", entries), capsys)
