"""Analysis: loading, curves over seeds, SDD detection (with its validation), λ choice, CLI."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pandas as pd
import pytest
from support import run_cli, sweep, write_store

from sparsedd.analysis import tables as an
from sparsedd.analysis.figure_parts import save_figure
from sparsedd.analysis.load import add_curve_column, curve_keys, load_results
from sparsedd.analysis.stats import summarize, t_quantile_975
from sparsedd.analysis.synthetic import synthetic_rounds
from sparsedd.errors import UserError
from sparsedd.store.results import ResultsStore

JSON_FIELDS = {
    "n_seeds",
    "dense_acc",
    "best_acc",
    "best_sparsity",
    "compressible_to",
    "sdd_detected",
    "dip_sparsity",
    "dip_acc",
    "peak_sparsity",
    "peak_acc",
    "rise",
    "rise_low",
    "rise_high",
    "best_weight_decay",
}


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory) -> Path:
    """A results store holding a small sweep: 2 λ × 2 seeds × 13 rounds (written once)."""
    return write_store(sweep(rounds=12, n_seeds=2), tmp_path_factory.mktemp("store"))


# ---------------------------------------------------------------- statistics


def test_t_quantiles_match_known_values_and_decrease():
    assert t_quantile_975(1) == pytest.approx(12.706, abs=1e-3)
    assert t_quantile_975(10) == pytest.approx(2.228, abs=1e-3)
    assert t_quantile_975(60) == pytest.approx(2.000, abs=2e-3)
    assert t_quantile_975(10_000) == pytest.approx(1.960, abs=1e-3)
    values = [t_quantile_975(d) for d in range(1, 200)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))


def test_summarize_mean_std_interval():
    vals = [0.70, 0.72, 0.75]
    s = summarize(vals)
    assert s["n"] == 3
    assert s["mean"] == pytest.approx(statistics.mean(vals))
    assert s["std"] == pytest.approx(statistics.stdev(vals))
    half = 4.303 * statistics.stdev(vals) / math.sqrt(3)
    assert (s["low"], s["high"]) == pytest.approx((s["mean"] - half, s["mean"] + half), abs=1e-4)
    one = summarize([0.5, None, float("nan")])
    assert one == {"n": 1, "mean": 0.5, "std": None, "low": None, "high": None}


# ---------------------------------------------------------------- loading and curves


def test_load_results_from_a_store_groups_seeds_into_curves(store_dir):
    df = load_results(store_dir)
    assert len(df) == 2 * 2 * 13
    assert set(df["epochs"]) == {7} and set(df["round_epochs"]) == {3}  # config vs round epochs
    assert isinstance(df["layer_density"].iloc[0], dict)
    result = an.analyze(df)
    assert len(result.curves) == 2
    assert list(result.curves["n_seeds"]) == [2, 2]
    assert result.keys == ["model", "dataset", "noise", "weight_decay"]
    stats = result.stats
    assert len(stats) == 2 * 13 and set(stats["n_seeds"]) == {2}
    # per-round mean is the mean over the three seeds
    r5 = df[(df["weight_decay"] == 0.0) & (df["round"] == 5)]["test_acc"]
    got = stats[(stats["curve"] == result.curves["curve"][0]) & (stats["round"] == 5)]
    assert got["test_acc_mean"].item() == pytest.approx(r5.mean())
    assert got["test_acc_std"].item() == pytest.approx(r5.std(ddof=1))


def test_settings_that_do_not_change_results_do_not_split_curves():
    df = synthetic_rounds("flat", n_seeds=2, seed=3)
    df["threads"] = df["seed"] + 1  # varies by run, but is not semantic
    df["lr"] = 0.1
    assert curve_keys(df) == ["model", "dataset", "noise", "weight_decay"]
    df.loc[df["seed"] == 1, "lr"] = 0.2  # a semantic key that varies: two curves
    assert "lr" in curve_keys(df)
    assert add_curve_column(df)["curve"].nunique() == 2


def test_empty_or_missing_results_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no results"):
        load_results(tmp_path / "absent")
    ResultsStore(tmp_path)
    with pytest.raises(UserError, match="no recorded rounds"):
        load_results(tmp_path)


# ---------------------------------------------------------------- verdicts on curves
# (the verdict's own shapes and calibration are in test_verdict.py)


def test_a_clear_dip_is_sdd_at_the_right_place():
    df = synthetic_rounds("sdd", depth=0.10, noise_sd=0.003, seed=4, n_test=10_000)
    c = an.analyze(df).curves.iloc[0]
    assert c["verdict"] == "SDD" and c["sdd_detected"]
    u_dip = -math.log10(1 - c["dip_sparsity"])
    assert 0.4 <= u_dip <= 0.8  # the synthetic dip is centred at u = 0.6
    assert c["peak_sparsity"] > c["dip_sparsity"]
    assert c["rise"] == pytest.approx(c["peak_acc"] - c["dip_acc"])
    assert 0.07 < c["rise"] < 0.11
    assert c["rise_low"] < c["rise"] < c["rise_high"]
    assert c["n_test"] == 10_000 and c["collapse_sparsity"] > c["peak_sparsity"]


@pytest.mark.parametrize("shape", ["flat", "gain", "decline"])
def test_no_dip_shapes_are_not_sdd(shape):
    df = synthetic_rounds(shape, depth=0.05, noise_sd=0.002, seed=5, n_test=10_000)
    assert an.analyze(df).curves.iloc[0]["verdict"] != "SDD"


def test_curve_table_columns_are_numeric():
    curves = an.analyze(sweep()).curves
    for name in an.CURVE_FIELDS:
        if name in ("verdict", "verdict_note", "seed_collapse_rounds"):
            assert curves[name].map(type).eq(str).all()
        elif name == "sdd_detected":
            assert curves[name].dtype == bool
        else:
            assert pd.api.types.is_numeric_dtype(curves[name]), name


def test_per_round_intervals_stay_within_0_and_100_percent():
    df = synthetic_rounds("flat", noise_sd=0.2, n_seeds=2, seed=9, n_test=45)
    stats = an.analyze(df).stats
    assert stats["test_acc_low"].min() >= 0 and stats["test_acc_high"].max() <= 1
    one = summarize([0.98], n_eval=45, bounds=(0, 1))
    assert one["low"] < 0.98 and one["high"] == 1.0  # one seed: the test set's noise


# ---------------------------------------------------------------- per-curve fields, λ choice


def test_compressible_to_is_the_highest_sparsity_within_tolerance():
    spars = [0.0, 0.2, 0.36, 0.49, 0.59]
    assert an.compressible_to(spars, [0.80, 0.795, 0.78, 0.791, 0.70]) == 0.49
    assert an.compressible_to(spars, [0.80, 0.70, 0.60, 0.50, 0.40]) == 0.0


def test_weight_decay_is_chosen_on_validation_never_test():
    good_test = synthetic_rounds("flat", weight_decay=0.0, seed=6)
    good_val = synthetic_rounds("flat", weight_decay=0.1, seed=7)
    good_test["test_acc"] += 0.05  # best on test ...
    good_test["val_acc"] -= 0.05  # ... worst on validation
    result = an.analyze(pd.concat([good_test, good_val]))
    assert len(result.lambdas) == 1
    assert result.lambdas["best_weight_decay"].item() == 0.1
    assert set(result.curves["best_weight_decay"]) == {0.1}


def test_lambda_groups_are_per_noise_and_missing_validation_gives_none():
    frames = [
        synthetic_rounds("flat", weight_decay=w, noise=n, seed=i)
        for i, (w, n) in enumerate([(0.0, 0.1), (0.01, 0.1), (0.0, 0.5), (0.01, 0.5)])
    ]
    frames[2]["val_acc"] = None
    frames[3]["val_acc"] = None
    result = an.analyze(pd.concat(frames))
    lam = result.lambdas
    by_group = dict(zip(lam["lambda_group"], lam["best_weight_decay"], strict=True))
    assert len(by_group) == 2
    assert by_group["model=synthetic dataset=synthetic noise=0.1"] in (0.0, 0.01)
    assert math.isnan(by_group["model=synthetic dataset=synthetic noise=0.5"])


def test_curve_table_fields_on_a_sweep():
    result = an.analyze(sweep())
    dip, flat = (result.curves.iloc[i] for i in range(2))
    assert dip["weight_decay"] == 0.0 and dip["sdd_detected"]
    assert not flat["sdd_detected"]
    for c in (dip, flat):
        assert c["dense_acc"] == pytest.approx(0.80, abs=0.02)
        assert c["best_acc"] >= c["dense_acc"]
        assert 0.9 < c["compressible_to"] < 0.99  # until the collapse near u = 2
        assert c["n_rounds"] == 26


# ---------------------------------------------------------------- CLI and export


def test_cli_analyze_json_and_table(store_dir, capsys):
    code, out, _ = run_cli(["analyze", str(store_dir), "--format", "json"], capsys)
    assert code == 0
    curves = json.loads(out)
    assert len(curves) == 2
    for c in curves:
        assert set(c) >= JSON_FIELDS
        assert {"model", "dataset", "noise", "weight_decay"} <= set(c)
    assert [c["sdd_detected"] for c in curves] == [True, False]
    code, out, _ = run_cli(["analyze", str(store_dir)], capsys)
    assert code == 0
    assert "verdict" in out.splitlines()[0] and "λ choice" in out
    lines = out.splitlines()
    assert " SDD " in lines[1] and " no SDD " in lines[2]  # rows sorted by λ: 0, 0.01
    # dip, peak and rise with its bounds are shown for SDD and inconclusive verdicts
    assert "%)" in lines[1].split(" SDD ")[1] and "[" in lines[1]
    assert curves[1]["dip_acc"] is not None


def test_a_curve_without_sdd_shows_no_dip_peak_or_rise(capsys, tmp_path):
    df = synthetic_rounds("decline", depth=0.05, noise_sd=0.001, n_seeds=3, seed=3)
    out = write_store(df, tmp_path / "decline")
    code, text, _ = run_cli(["analyze", str(out)], capsys)
    assert code == 0
    row = text.splitlines()[1]
    assert " no SDD " in row and row.split(" no SDD ")[1].split()[:3] == ["-", "-", "-"]


def test_cli_errors_are_one_line(tmp_path, store_dir, capsys):
    code, out, err = run_cli(["analyze", str(tmp_path / "none")], capsys)
    assert code == 2 and err.count("\n") == 1 and "no results" in err
    code, _, err = run_cli(["export", str(store_dir), "-o", str(tmp_path / "x.xlsx")], capsys)
    assert code == 2 and ".parquet or .csv" in err


@pytest.mark.parametrize("table", ["rounds", "stats", "curves"])
def test_export_parquet_and_csv_round_trip(tmp_path, store_dir, capsys, table):
    pytest.importorskip("pyarrow")
    for name in ("out.parquet", "out.csv"):
        target = tmp_path / name
        args = ["export", str(store_dir), "-o", str(target), "--table", table]
        code, out, _ = run_cli(args, capsys)
        assert code == 0, out
        back = pd.read_parquet(target) if name.endswith("parquet") else pd.read_csv(target)
        assert len(back) == {"rounds": 52, "stats": 26, "curves": 2}[table]
        if table == "rounds":
            assert json.loads(back["layer_density"][0]) == {"fc": 1.0}


def test_reports_quote_the_tolerances_the_analysis_used():
    from sparsedd.analysis.report import render_html
    from sparsedd.analysis.report_sections import lambda_verdicts, verdict

    result = an.analyze(sweep(), min_rise=0.03, tolerance=0.02)
    assert (result.min_rise, result.tolerance) == (0.03, 0.02)
    page = render_html(result, b"png", source="x")
    assert "within\n2 points of the dense model" in page and "minimum\nrise (3 points)" in page
    assert "1 point" not in page
    for _, c in result.curves.iterrows():
        text = verdict(c, result.keys, result.tolerance)
        assert c["sdd_detected"] or "within 2 points of dense" in text
        if c["verdict"] == "SDD":
            assert c["rise_low"] > 0.03 and c["fall_low"] > 0.03  # the minimum rise it used
            assert f"rise {100 * c['rise']:+.1f} [{100 * c['rise_low']:+.1f}," in text
    (line,) = lambda_verdicts(result)
    assert "λ* = " in line and " of {" in line and "without SDD" in line
    assert "λ = 0: SDD, best test accuracy " in line


def test_seeds_recorded_to_different_rounds_make_one_curve():
    df = synthetic_rounds("sdd", n_seeds=2, rounds=12, seed=3)
    df["rounds"] = [12 if s == 0 else 8 for s in df["seed"]]
    df = df[(df["seed"] == 0) | (df["round"] <= 8)]
    result = an.analyze(df)
    assert len(result.curves) == 1 and result.curves.iloc[0]["n_rounds"] == 13


def test_lambda_lines_name_every_lambda_when_a_key_is_missing_in_some_runs():
    from sparsedd.analysis.report_sections import lambda_verdicts

    old = synthetic_rounds("sdd", 0.10, weight_decay=0.0, seed=1)
    new = synthetic_rounds("flat", weight_decay=0.01, seed=2, init="torch")
    result = an.analyze(pd.concat([old, new]))  # runs recorded before `init` existed lack it
    lines = lambda_verdicts(result)
    assert len(lines) == len(result.curves) == 2
    assert all("SDD" in line and "λ = " in line for line in lines)


# ---------------------------------------------------------------- λ rules


def _sdd_and_flat_with_val(sdd_val: float, flat_val: float) -> pd.DataFrame:
    """λ = 0 with a clear dip, λ = 0.01 without; their validation accuracy set by hand."""
    sdd = synthetic_rounds("sdd", 0.10, 0.002, 3, weight_decay=0.0, seed=1, n_test=10_000)
    flat = synthetic_rounds("decline", 0.03, 0.002, 3, weight_decay=0.01, seed=2)
    flat["n_test"] = 10_000
    sdd["val_acc"], flat["val_acc"] = sdd_val, flat_val
    return pd.concat([sdd, flat])


def test_lambda_star_avoids_a_curve_with_sdd_and_says_which_rule_chose():
    df = _sdd_and_flat_with_val(0.9, 0.7)  # the SDD curve validates best
    default = an.analyze(df)
    assert list(default.curves["verdict"]) == ["SDD", "no SDD"]
    (row,) = default.lambdas.to_dict("records")
    assert row["best_weight_decay"] == 0.01 and row["lambdas"] == [0.01]
    assert "without SDD" in row["rule"]
    best = an.analyze(df, lambda_rule="best-val").lambdas.iloc[0]
    assert best["best_weight_decay"] == 0.0 and "shows SDD" in best["note"]


def test_lambda_star_at_a_target_sparsity_compares_validation_there():
    df = _sdd_and_flat_with_val(0.7, 0.7)
    df.loc[(df["weight_decay"] == 0.0) & (df["round"] == 10), "val_acc"] = 0.95
    target = float(df[df["round"] == 10]["sparsity"].iloc[0])
    chosen = an.analyze(df, lambda_rule="at-sparsity", target_sparsity=target).lambdas.iloc[0]
    assert chosen["best_weight_decay"] == 0.0 and f"{target:.2%}" in chosen["rule"]
    with pytest.raises(UserError, match="target sparsity"):
        an.analyze(df, lambda_rule="at-sparsity")


def test_no_lambda_is_chosen_when_every_curve_shows_sdd():
    frames = [
        synthetic_rounds("sdd", 0.10, 0.002, 3, weight_decay=w, seed=s, n_test=10_000)
        for s, w in enumerate((0.0, 0.1))
    ]
    (row,) = an.analyze(pd.concat(frames)).lambdas.to_dict("records")
    assert math.isnan(row["best_weight_decay"]) and "every λ shows SDD" in row["note"]


def test_cli_lambda_rule_and_title(tmp_path, capsys, monkeypatch):
    from sparsedd.analysis import figure_parts

    titles = []
    save = save_figure
    monkeypatch.setattr(
        figure_parts,
        "save_figure",
        lambda fig, path: titles.append(fig.get_suptitle()) or save(fig, path),
    )
    out = write_store(_sdd_and_flat_with_val(0.9, 0.7), tmp_path / "r")
    code, text, _ = run_cli(["analyze", str(out), "--lambda-rule", "best-val"], capsys)
    assert code == 0 and "best validation accuracy over all λ" in text
    code, text, _ = run_cli(["analyze", str(out)], capsys)
    assert code == 0 and "without SDD" in text
    figure = tmp_path / "f.png"
    code, _, _ = run_cli(["plot", str(out), "-o", str(figure), "--title", "My title"], capsys)
    assert code == 0 and figure.stat().st_size > 0 and titles == ["My title"]


def test_the_report_says_how_label_noise_was_drawn():
    from sparsedd.analysis.report_sections import noise_draw_line

    per_seed = an.analyze(synthetic_rounds("flat", noise_seed=None))
    assert "drawn anew for each seed" in noise_draw_line(per_seed)
    pinned = an.analyze(synthetic_rounds("flat", noise_seed=3))
    assert "pinned" in noise_draw_line(pinned) and "noise_seed = 3" in noise_draw_line(pinned)
