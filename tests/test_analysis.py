"""Analysis: loading, curves over seeds, SDD detection (with its validation), λ choice, CLI."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsedd.analysis import tables as an
from sparsedd.cli.main import main
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


def _py(value):
    return value.item() if isinstance(value, np.generic) else value


def write_store(df: pd.DataFrame, out: Path, extra: dict | None = None) -> Path:
    """Write a synthetic rounds DataFrame into a real results store."""
    store = ResultsStore(out)
    for run_id, run in df.groupby("run_id"):
        first = run.iloc[0]
        cfg = {k: _py(first[k]) for k in ("model", "dataset", "noise", "weight_decay", "seed")}
        store.record_run(str(run_id), {**cfg, "epochs": 7, "threads": 1, **(extra or {})})
        for _, r in run.iterrows():
            row = {f: _py(r.get(f)) for f in ("round", "sparsity", "test_acc", "memorization")}
            row.update(
                params_remaining=1000,
                test_loss=1.0,
                train_acc=0.9,
                train_acc_clean=0.8,
                val_acc=_py(r["val_acc"]),
                epochs=3,
                seconds=0.1,
                layer_density={"fc": 1 - r["sparsity"]},
            )
            store.record_round(str(run_id), row)
    return out


def sweep(rounds: int = 25, n_seeds: int = 3) -> pd.DataFrame:
    """λ=0 with a dip, λ=0.01 without."""
    return pd.concat(
        [
            an.synthetic_rounds(
                "sdd", 0.05, n_seeds=n_seeds, rounds=rounds, weight_decay=0.0, seed=1
            ),
            an.synthetic_rounds("flat", n_seeds=n_seeds, rounds=rounds, weight_decay=0.01, seed=2),
        ]
    )


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory) -> Path:
    """A results store holding a small sweep: 2 λ × 2 seeds × 13 rounds (written once)."""
    return write_store(sweep(rounds=12, n_seeds=2), tmp_path_factory.mktemp("store"))


# ---------------------------------------------------------------- statistics


def test_t_quantiles_match_known_values_and_decrease():
    assert an.t_quantile_975(1) == pytest.approx(12.706, abs=1e-3)
    assert an.t_quantile_975(10) == pytest.approx(2.228, abs=1e-3)
    assert an.t_quantile_975(60) == pytest.approx(2.000, abs=2e-3)
    assert an.t_quantile_975(10_000) == pytest.approx(1.960, abs=1e-3)
    values = [an.t_quantile_975(d) for d in range(1, 200)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))


def test_summarize_mean_std_interval():
    vals = [0.70, 0.72, 0.75]
    s = an.summarize(vals)
    assert s["n"] == 3
    assert s["mean"] == pytest.approx(statistics.mean(vals))
    assert s["std"] == pytest.approx(statistics.stdev(vals))
    half = 4.303 * statistics.stdev(vals) / math.sqrt(3)
    assert (s["low"], s["high"]) == pytest.approx((s["mean"] - half, s["mean"] + half), abs=1e-4)
    one = an.summarize([0.5, None, float("nan")])
    assert one == {"n": 1, "mean": 0.5, "std": None, "low": None, "high": None}


# ---------------------------------------------------------------- loading and curves


def test_load_results_from_a_store_groups_seeds_into_curves(store_dir):
    df = an.load_results(store_dir)
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
    df = an.synthetic_rounds("flat", n_seeds=2, seed=3)
    df["threads"] = df["seed"] + 1  # varies by run, but is not semantic
    df["lr"] = 0.1
    assert an.curve_keys(df) == ["model", "dataset", "noise", "weight_decay"]
    df.loc[df["seed"] == 1, "lr"] = 0.2  # a semantic key that varies: two curves
    assert "lr" in an.curve_keys(df)
    assert an.add_curve_column(df)["curve"].nunique() == 2


def test_empty_or_missing_results_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no results"):
        an.load_results(tmp_path / "absent")
    ResultsStore(tmp_path)
    with pytest.raises(UserError, match="no recorded rounds"):
        an.load_results(tmp_path)


# ---------------------------------------------------------------- detection


def test_detects_a_clear_dip_at_the_right_place():
    df = an.synthetic_rounds("sdd", depth=0.05, noise_sd=0.003, seed=4)
    acc, spars = an.seed_matrix(df)
    det = an.detect_sdd(acc, spars)
    assert det.detected
    u_dip = -math.log10(1 - det.dip_sparsity)
    assert 0.4 <= u_dip <= 0.8  # the synthetic dip is centred at u = 0.6
    assert det.peak_sparsity > det.dip_sparsity
    assert det.rise == pytest.approx(det.peak_acc - det.dip_acc)
    assert 0.035 < det.rise < 0.065
    assert det.rise_low < det.rise < det.rise_high


@pytest.mark.parametrize("shape", ["flat", "gain", "decline"])
def test_no_dip_shapes_are_not_detected(shape):
    df = an.synthetic_rounds(shape, depth=0.05, noise_sd=0.002, seed=5)
    assert not an.detect_sdd(*an.seed_matrix(df)).detected


def test_one_seed_uses_the_minimum_rise_and_gives_no_interval():
    sparsity = [1 - 0.8**k for k in range(9)]
    curve = np.array([[0.80, 0.80, 0.79, 0.77, 0.77, 0.77, 0.79, 0.80, 0.80]])
    det = an.detect_sdd(curve, sparsity)
    assert det.detected and det.rise_low is None and det.rise_high is None
    assert det.dip_acc == pytest.approx(0.77) and det.peak_acc == pytest.approx(0.80)
    assert not an.detect_sdd(curve, sparsity, min_rise=0.05).detected


def test_rise_within_the_seed_spread_is_not_detected():
    sparsity = [1 - 0.8**k for k in range(9)]
    shape = np.array([0.80, 0.80, 0.78, 0.76, 0.76, 0.76, 0.78, 0.80, 0.80])
    tight = np.stack([shape + d for d in (-0.002, 0.0, 0.002)])
    assert an.detect_sdd(tight, sparsity).detected
    # same mean curve, but seeds 5 points apart at every round: the 4-point rise is noise
    loose = np.stack([shape + d for d in (-0.05, 0.0, 0.05)])
    assert not an.detect_sdd(loose, sparsity).detected


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=30))
def test_a_never_increasing_curve_never_shows_sdd(values):
    curve = np.sort(np.array(values))[::-1][None, :]
    sparsity = [1 - 0.8**k for k in range(curve.shape[1])]
    assert not an.detect_sdd(curve, sparsity).detected


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 4),
    st.lists(st.floats(0.3, 0.9), min_size=4, max_size=20),
    st.integers(0, 2**32 - 1),
)
def test_verdict_rise_and_interval_come_from_one_curve(n_seeds, shape, seed):
    """The verdict is exactly `rise > threshold and fall > threshold` on the numbers printed."""
    rng = np.random.default_rng(seed)
    acc = np.array(shape)[None, :] + rng.normal(0, 0.01, (n_seeds, len(shape)))
    sparsity = [1 - 0.8**k for k in range(len(shape))]
    det = an.detect_sdd(acc, sparsity)
    if det.rise is None:
        assert not det.detected
        return
    mean = np.mean([an.smooth(row) for row in acc], axis=0)  # the one curve
    i, j = det.dip_round, det.peak_round
    assert det.dip_acc == pytest.approx(mean[i]) and det.peak_acc == pytest.approx(mean[j])
    assert det.rise == pytest.approx(det.peak_acc - det.dip_acc, abs=1e-12)
    assert det.fall == pytest.approx(mean[:i].max() - mean[i], abs=1e-12)
    assert det.detected == (det.rise > det.threshold and det.fall > det.threshold)
    if n_seeds > 1:
        assert (det.rise_low + det.rise_high) / 2 == pytest.approx(det.rise, abs=1e-9)


def test_a_one_round_dip_is_judged_on_the_rise_it_prints():
    sparsity = [1 - 0.8**k for k in range(9)]
    # raw fall 1.5 and rise 2.7 points; on the 3-round means the verdict is taken on, the
    # valley is 0.5 deep and 0.9 high: no SDD, and the rise printed is that 0.9, not 2.7
    curve = np.array([[0.80, 0.80, 0.80, 0.80, 0.785, 0.80, 0.812, 0.80, 0.50]])
    det = an.detect_sdd(curve, sparsity)
    assert not det.detected and det.threshold == 0.01
    assert det.rise == pytest.approx(0.804 - 0.795) and det.fall == pytest.approx(0.005)
    assert det.rise == pytest.approx(det.peak_acc - det.dip_acc)


def test_detector_error_rates_on_synthetic_curves():
    """Validation: known shapes, seed noise; prints and bounds false-positive/negative rates."""
    trials = 100
    cases = {
        # (shape, depth, seeds, noise sd per seed)
        "dip 3 pt, 3 seeds, sd 0.5 pt": ("sdd", 0.03, 3, 0.005),
        "dip 2 pt, 1 seed, sd 0.3 pt": ("sdd", 0.02, 1, 0.003),
        "flat, 3 seeds, sd 0.5 pt": ("flat", 0.0, 3, 0.005),
        "gain 4 pt, 2 seeds, sd 0.5 pt": ("gain", 0.04, 2, 0.005),
        "decline 4 pt, 1 seed, sd 0.3 pt": ("decline", 0.04, 1, 0.003),
    }
    rates = {}
    for name, (shape, depth, seeds, sd) in cases.items():
        hits = sum(
            an.detect_sdd(
                *an.seed_matrix(an.synthetic_rounds(shape, depth, sd, seeds, seed=1000 + t))
            ).detected
            for t in range(trials)
        )
        rates[name] = hits / trials if shape != "sdd" else 1 - hits / trials
    print("\nSDD detector on synthetic curves (rate over", trials, "curves each):")
    for name, rate in rates.items():
        kind = "false negative" if name.startswith("dip") else "false positive"
        print(f"  {name:34s} {kind} rate {rate:.3f}")
    assert all(rate <= 0.05 for rate in rates.values()), rates


# ---------------------------------------------------------------- per-curve fields, λ choice


def test_compressible_to_is_the_highest_sparsity_within_tolerance():
    spars = [0.0, 0.2, 0.36, 0.49, 0.59]
    assert an.compressible_to(spars, [0.80, 0.795, 0.78, 0.791, 0.70]) == 0.49
    assert an.compressible_to(spars, [0.80, 0.70, 0.60, 0.50, 0.40]) == 0.0


def test_weight_decay_is_chosen_on_validation_never_test():
    good_test = an.synthetic_rounds("flat", weight_decay=0.0, seed=6)
    good_val = an.synthetic_rounds("flat", weight_decay=0.1, seed=7)
    good_test["test_acc"] += 0.05  # best on test ...
    good_test["val_acc"] -= 0.05  # ... worst on validation
    result = an.analyze(pd.concat([good_test, good_val]))
    assert len(result.lambdas) == 1
    assert result.lambdas["best_weight_decay"].item() == 0.1
    assert set(result.curves["best_weight_decay"]) == {0.1}


def test_lambda_groups_are_per_noise_and_missing_validation_gives_none():
    frames = [
        an.synthetic_rounds("flat", weight_decay=w, noise=n, seed=i)
        for i, (w, n) in enumerate([(0.0, 0.1), (0.01, 0.1), (0.0, 0.5), (0.01, 0.5)])
    ]
    frames[2]["val_acc"] = None
    frames[3]["val_acc"] = None
    result = an.analyze(pd.concat(frames))
    lam = result.lambdas
    by_group = dict(zip(lam["lambda_group"], lam["best_weight_decay"], strict=True))
    assert len(by_group) == 2
    assert by_group["model=synthetic dataset=synthetic noise=0.1"] in (0.0, 0.01)
    assert by_group["model=synthetic dataset=synthetic noise=0.5"] is None


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


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


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
    assert "SDD" in out.splitlines()[0] and "λ choice" in out
    lines = out.splitlines()
    assert " yes " in lines[1] and " no " in lines[2]  # rows sorted by λ: 0 (dip), then 0.01
    # a curve without SDD has no dip, peak or rise to show; the JSON keeps its largest valley
    assert "%)" in lines[1].split(" yes ")[1] and "[" in lines[1]
    assert lines[2].split(" no ")[1].split()[:3] == ["-", "-", "-"]
    assert curves[1]["dip_acc"] is not None


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


def test_cli_default_min_rise_matches_the_library():
    from sparsedd.cli import analysis as cli_analysis

    assert cli_analysis.DEFAULT_MIN_RISE == an.DEFAULT_MIN_RISE


def test_reports_quote_the_tolerances_the_analysis_used():
    from sparsedd.analysis.report import lambda_verdicts, render_html, verdict

    result = an.analyze(sweep(), min_rise=0.03, tolerance=0.02)
    assert (result.min_rise, result.tolerance) == (0.03, 0.02)
    page = render_html(result, b"png", source="x")
    assert "within\n2 points of the dense model" in page and "minimum rise (3 points)" in page
    assert "1 point" not in page
    for _, c in result.curves.iterrows():
        text = verdict(c, result.keys, result.tolerance)
        assert c["sdd_detected"] or "within 2 points of dense" in text
        if c["rise"] is not None:
            assert c["sdd_threshold"] >= 0.03
            assert f"threshold {100 * c['sdd_threshold']:.3g} points" in text
    (line,) = lambda_verdicts(result)
    assert "validation picks λ* = " in line and " of {" in line
    assert "λ = 0: SDD detected, best test accuracy " in line
    assert "λ = 0.01: SDD not detected, best test accuracy " in line


def test_seeds_recorded_to_different_rounds_make_one_curve():
    df = an.synthetic_rounds("sdd", n_seeds=2, rounds=12, seed=3)
    df["rounds"] = [12 if s == 0 else 8 for s in df["seed"]]
    df = df[(df["seed"] == 0) | (df["round"] <= 8)]
    result = an.analyze(df)
    assert len(result.curves) == 1 and result.curves.iloc[0]["n_rounds"] == 13


def test_lambda_lines_name_every_lambda_when_a_key_is_missing_in_some_runs():
    from sparsedd.analysis.report import lambda_verdicts

    old = an.synthetic_rounds("sdd", 0.05, weight_decay=0.0, seed=1)
    new = an.synthetic_rounds("flat", weight_decay=0.01, seed=2, init="torch")
    result = an.analyze(pd.concat([old, new]))  # runs recorded before `init` existed lack it
    lines = lambda_verdicts(result)
    assert len(lines) == len(result.curves) == 2
    assert all(" SDD " in line and "λ = " in line for line in lines)
