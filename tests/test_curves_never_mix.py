"""Runs that differ in any config key but seed are different curves; results = export columns."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support import run_cli

from sparsedd.analysis import tables as an
from sparsedd.analysis.report import render_html
from sparsedd.store.results import ResultsStore
from sparsedd.store.round_record import RoundRecord


def _py(value):
    return value.item() if isinstance(value, np.generic) else value


def _write(out: Path, frames: list[tuple[pd.DataFrame, dict]]) -> Path:
    """Write synthetic curves into a real store, each with its own extra config keys."""
    store = ResultsStore(out)
    for df, extra in frames:
        for _, run in df.groupby("run_id"):
            first = run.iloc[0]
            keys = ("model", "dataset", "noise", "weight_decay", "seed")
            cfg = {k: _py(first[k]) for k in keys}
            rid = f"run{len(store.runs())}"
            store.record_run(rid, {**cfg, "epochs": 7, **extra})
            for _, r in run.iterrows():
                row = {f: _py(r[f]) for f in ("round", "sparsity", "test_acc", "memorization")}
                row.update(
                    val_acc=_py(r["val_acc"]),
                    params_remaining=100,
                    test_loss=1.0,
                    train_acc=0.9,
                    train_acc_clean=0.8,
                    epochs=3 if r["round"] else 5,
                    seconds=0.1,
                    layer_density={"fc": 1 - _py(r["sparsity"])},
                )
                store.record_round(rid, RoundRecord(**row))
    return out


@pytest.fixture(scope="module")
def epochs_dir(tmp_path_factory) -> Path:
    """Two runs with the same seeds that differ only in the config's epochs (7 and 9)."""
    df = an.synthetic_rounds("flat", n_seeds=2, rounds=6, seed=4)
    return _write(tmp_path_factory.mktemp("ep"), [(df, {}), (df, {"epochs": 9})])


def test_runs_that_differ_in_epochs_are_different_curves(epochs_dir):
    df = an.load_results(epochs_dir)
    assert set(df["epochs"]) == {7, 9}  # the config's
    assert set(df["round_epochs"]) == {3, 5}  # each round's own
    result = an.analyze(df)
    assert "epochs" in result.keys
    assert len(result.curves) == 2 and list(result.curves["n_seeds"]) == [2, 2]
    assert sorted(result.curves["epochs"]) == [7, 9]
    page = render_html(result, b"", source="x")
    runs_table = page.split("Runs and the settings that differ")[1]
    assert "<th>epochs</th>" in runs_table


def test_a_shared_epochs_is_in_the_report_config_table(tmp_path):
    df = an.synthetic_rounds("flat", n_seeds=2, rounds=4, seed=5)
    result = an.analyze(an.load_results(_write(tmp_path, [(df, {})])))
    shared = render_html(result, b"", source="x").split("Settings shared by every run")[1]
    shared = shared.split("Runs and the settings that differ")[0]
    assert '<td class="l">epochs</td><td class="l">7</td>' in shared


@pytest.fixture(scope="module")
def lambda_dir(tmp_path_factory) -> Path:
    """λ = 1e-5 and λ = 0 (written in that order), two seeds each, and two lr."""
    frames = [
        (an.synthetic_rounds("flat", n_seeds=2, rounds=3, weight_decay=1e-5, seed=6), {}),
        (an.synthetic_rounds("flat", n_seeds=2, rounds=3, weight_decay=0.0, seed=7), {}),
        (an.synthetic_rounds("flat", n_seeds=1, rounds=3, weight_decay=0.0, seed=8), {"lr": 0.1}),
    ]
    return _write(tmp_path_factory.mktemp("lam"), frames)


def test_results_table_tells_lambdas_apart_sorted_by_config_then_seed(lambda_dir, capsys):
    code, out, _ = run_cli(["results", str(lambda_dir)], capsys)
    assert code == 0
    lines = out.splitlines()
    head = lines[0].split()
    assert head[:7] == ["run_id", "model", "dataset", "noise", "weight_decay", "lr", "seed"]
    assert "round_epochs" in head and "epochs" not in head  # same epochs everywhere
    cells = [dict(zip(head, line.split(), strict=True)) for line in lines[1:]]
    order = [(c["weight_decay"], c["lr"], c["seed"], c["round"]) for c in cells]
    lam = {"0.0": 0, "1e-05": 1}
    assert order == sorted(order, key=lambda o: (lam[o[0]], o[1] != "-", o[1], o[2], int(o[3])))
    assert {c["weight_decay"] for c in cells} == {"0.0", "1e-05"}
    assert {c["lr"] for c in cells} == {"-", "0.1"}


def test_results_and_export_have_the_same_columns_and_order(lambda_dir, tmp_path, capsys):
    code, out, _ = run_cli(["results", str(lambda_dir), "--format", "csv"], capsys)
    assert code == 0
    results = list(csv.reader(io.StringIO(out)))
    code, _, _ = run_cli(["export", str(lambda_dir), "-o", str(tmp_path / "r.csv")], capsys)
    assert code == 0
    exported = list(csv.reader(io.StringIO((tmp_path / "r.csv").read_text())))
    assert results[0] == exported[0]
    assert "epochs" in results[0] and "round_epochs" in results[0]
    assert {"sparsedd_version", "torch_version", "device_name", "git_commit"} <= set(results[0])
    col = results[0].index("run_id"), results[0].index("round")
    assert [(r[col[0]], r[col[1]]) for r in results[1:]] == [
        (r[col[0]], r[col[1]]) for r in exported[1:]
    ]
    code, out, _ = run_cli(["results", str(lambda_dir), "--format", "json"], capsys)
    assert list(json.loads(out)[0]) == results[0]


def test_a_repeated_grid_key_is_refused(tmp_path, capsys):
    code, _, err = run_cli(
        ["run", "--preset", "tiny", "--grid", "seed=0", "--grid", "seed=1", "--out", str(tmp_path)],
        capsys,
    )
    assert code == 2 and err.count("\n") == 1 and "--grid seed is given twice" in err
    assert not (tmp_path / "results.sqlite").exists()
