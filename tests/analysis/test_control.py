"""The control arm (`run --control`, config key `pruning`), the verdict against it, and the
dense convergence check."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from support import BASE, TINY, Notes, assert_one_error_line, curve, fill, run_cli, tiny_config

from sparsedd.analysis.control import (
    adjusted,
    control_matrix,
    split_controls,
    with_twin_curves,
)
from sparsedd.analysis.convergence import dense_climb, dense_epoch_accs, not_converged
from sparsedd.analysis.load import rows_to_frame
from sparsedd.analysis.tables import analyze
from sparsedd.components import normalized, resolve_config, run_id
from sparsedd.store.results import ResultsStore
from sparsedd.training.experiment import Experiment
from sparsedd.training.trainer import EpochStats

# ---------------------------------------------------------------- the runs


def test_control_runs_the_same_rounds_without_pruning(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code, _, err = run_cli([*TINY, "--control", "--set", "rounds=3", "--out", str(out)], capsys)
    assert code == 0, err
    rows = ResultsStore(out, create=False).round_rows()
    pruned = {r["round"]: r for r in rows if r["pruning"]}
    control = {r["round"]: r for r in rows if not r["pruning"]}
    assert sorted(pruned) == sorted(control) == [0, 1, 2, 3]
    assert {r["run_id"] for r in pruned.values()} != {r["run_id"] for r in control.values()}
    # the control never prunes: sparsity 0 and every layer whole, every round
    assert all(r["sparsity"] == 0 for r in control.values())
    assert all(d == 1 for r in control.values() for d in r["layer_density"].values())
    # the same dense round (same seed, data and epochs) ...
    for key in ("test_acc", "test_loss", "train_acc", "memorization"):
        assert control[0][key] == pruned[0][key]
    # ... then other models: from round 1 the pruned run is pruned, the control is not
    for k in (1, 2, 3):
        assert pruned[k]["sparsity"] == pytest.approx(1 - 0.8**k, abs=0.01)
        assert control[k]["test_loss"] != pruned[k]["test_loss"]
        assert control[k]["round_epochs"] == pruned[k]["round_epochs"]


def test_pruning_key_names_a_run_only_when_off() -> None:
    cfg = resolve_config("tiny")
    assert "pruning" not in normalized(cfg)  # every recorded run id stays what it was
    off = dataclasses.replace(cfg, pruning=False)
    assert normalized(off)["pruning"] is False
    assert run_id(off) != run_id(cfg)


def test_control_with_pruning_off_is_refused(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    args = [*TINY, "--control", "--set", "pruning=false", "--out", str(out)]
    code, _, err = run_cli(args, capsys)
    assert code == 2
    assert_one_error_line(err, ["--control", "pruning=false"])
    assert not out.exists()


# ---------------------------------------------------------------- the analysis

#: The demo's old setting (dense 30 epochs, λ = 0), as measured (seed means, docs/science.md):
#: the pruned curve falls 9.4 points by round 5 and recovers; without pruning the same rounds
#: fall as far and stay there (the control was run to round 8).
PRUNED = [0.740, 0.699, 0.665, 0.655, 0.649, 0.646, 0.653, 0.670, 0.683, 0.705, 0.721, 0.741]
CONTROL = [0.740, 0.696, 0.665, 0.652, 0.649, 0.650, 0.652, 0.651, 0.654]
FLAT = [0.740, 0.741, 0.738, 0.742, 0.739, 0.740, 0.741, 0.740, 0.739, 0.741, 0.740, 0.741]


def _runs(accs: list[float], pruning: bool, seeds: int = 2, **cfg: Any) -> list[dict[str, Any]]:
    rng = np.random.default_rng(7 if pruning else 8)
    rows = []
    for seed in range(seeds):
        rid = f"{'p' if pruning else 'c'}{seed}"
        for k, acc in enumerate(accs):
            rows.append(
                {
                    "model": "vit",
                    "dataset": "fashion-mnist",
                    "noise": 0.2,
                    "weight_decay": 0.0,
                    "seed": seed,
                    "pruning": pruning,
                    **cfg,
                    "run_id": rid,
                    "round": k,
                    "sparsity": (1 - 0.8**k) if pruning else 0.0,
                    "test_acc": acc + rng.normal(0, 0.002),
                    "val_acc": acc - 0.1,
                    "memorization": 0.5,
                    "n_test": 10000,
                    "collapsed": 0,
                }  # fmt: skip
            )
    return rows


def test_a_fall_that_happens_without_pruning_is_named_training() -> None:
    plain = analyze(rows_to_frame(_runs(PRUNED, True)))
    assert plain.curves.iloc[0]["verdict"] == "SDD"  # against round 0 alone: a phantom SDD
    result = analyze(rows_to_frame(_runs(PRUNED, True) + _runs(CONTROL, False)))
    (c,) = result.curves.to_dict(orient="records")
    assert "pruning" not in result.curves.columns  # the curve keeps its label
    assert c["control_seeds"] == 2
    assert c["fall_vs_dense"] == pytest.approx(0.094, abs=0.005)
    assert c["control_fall"] == pytest.approx(0.090, abs=0.005)
    assert abs(c["fall_vs_control"]) < 0.01
    assert "also happens without pruning" in c["control_note"]
    assert "more training, not sparsity" in c["control_note"]
    assert c["verdict"] != "SDD"  # judged against the control: no first descent is left
    assert c["verdict_note"].startswith("against the control")
    if np.isfinite(c["dip_acc"]):  # drawn on the pruned curve itself, not the adjusted one
        assert c["dip_acc"] < 0.70
    assert any("more training" in line for line in result.control_lines)
    assert set(result.controls["curve"]) == {c["curve"]}


def test_a_fall_the_control_does_not_share_is_pruning() -> None:
    result = analyze(rows_to_frame(_runs(PRUNED, True) + _runs(FLAT, False)))
    (c,) = result.curves.to_dict(orient="records")
    assert c["fall_vs_control"] == pytest.approx(0.09, abs=0.01)
    assert "against the control, pruning costs 9" in c["control_note"]
    assert c["verdict"] == "SDD"


def test_a_control_that_stopped_is_extended_by_its_settled_value() -> None:
    rows = _runs(PRUNED, True, seeds=1) + _runs(CONTROL[:7], False, seeds=1)
    pruned, controls = split_controls(rows_to_frame(rows))
    pruned = pruned.assign(curve="c")
    matrix = control_matrix(pruned, with_twin_curves(pruned, controls))
    assert matrix is not None and matrix.shape == (1, len(PRUNED))
    settled = np.mean(matrix[0, 4:7])
    assert np.allclose(matrix[0, 7:], settled)
    assert np.allclose(adjusted(matrix, matrix), matrix[:, :1])


def test_controls_pair_by_seed_and_config() -> None:
    rows = _runs(PRUNED, True) + _runs(CONTROL, False, seeds=1)  # seed 1 has no control
    result = analyze(rows_to_frame(rows))
    assert np.isnan(result.curves.iloc[0]["control_seeds"])  # judged against round 0 alone
    other = _runs(CONTROL, False, noise=0.4)  # another noise level's control: not this curve's
    result = analyze(rows_to_frame(_runs(PRUNED, True) + other))
    assert result.curves.iloc[0]["control_note"] == ""


# ---------------------------------------------------------------- dense convergence


def test_dense_climb_reads_the_last_fifth_of_epochs() -> None:
    climbing = [0.5 + 0.01 * e for e in range(30)]
    gain, w = dense_climb(climbing)
    assert w == 6 and gain == pytest.approx(0.06)
    assert "rose 6.0 points over its last 6 of 30 epochs" in not_converged(climbing)
    assert not_converged([0.5] * 15 + [0.99] * 15) is None  # converged early: flat at the end
    assert dense_climb([0.5, 0.6, 0.7]) is None


def test_dense_epoch_accs_needs_every_epoch() -> None:
    rows = [{"run_id": "a", "round": 0, "epoch": e, "train_acc": 0.1 * e} for e in range(5)]
    rows += [{"run_id": "a", "round": 1, "epoch": 0, "train_acc": 0.9}]
    rows += [{"run_id": "b", "round": 0, "epoch": e, "train_acc": 0.5} for e in (0, 2)]
    assert dense_epoch_accs(rows) == {"a": pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])}


def test_analyze_says_when_the_dense_round_had_not_converged(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    accs = [0.8, 0.78, 0.76, 0.75, 0.74, 0.75, 0.76]
    fill(out, [("a" * 16, BASE, curve(accs))])
    store = ResultsStore(out)
    for e in range(10):
        store.record_epoch("a" * 16, 0, e, 1.0, 0.5 + 0.03 * e)
    code, text, err = run_cli(["analyze", str(out)], capsys)
    assert code == 0, err
    (line,) = [x for x in text.splitlines() if x.startswith("dense")]
    assert "had not converged on the noisy labels" in line
    assert "--control" in line and "dense_epochs" in line
    for e in range(10):  # flat at its end: converged, nothing said
        store.record_epoch("a" * 16, 0, e, 1.0, 0.9)
    code, text, err = run_cli(["analyze", str(out)], capsys)
    assert not [x for x in text.splitlines() if x.startswith("dense")]


def test_frames_without_a_pruning_column_analyze_as_before() -> None:
    rows = [r for r in _runs(PRUNED, True) if r.pop("pruning")]
    result = analyze(pd.DataFrame(rows))
    assert result.controls.empty and result.control_lines == []


def test_figure_and_report_show_the_control() -> None:
    from matplotlib.colors import to_hex

    from sparsedd.analysis.figure_parts import close
    from sparsedd.analysis.plot import plot_analysis
    from sparsedd.analysis.plot_control import CONTROL_COLOR
    from sparsedd.analysis.report import render_html

    def grey_lines(result) -> list:
        fig = plot_analysis(result)
        try:
            top = fig.axes[0]
            return [ln for ln in top.get_lines() if to_hex(ln.get_color()) == CONTROL_COLOR]
        finally:
            close(fig)

    with_control = analyze(rows_to_frame(_runs(PRUNED, True) + _runs(CONTROL, False)))
    (line,) = grey_lines(with_control)
    # round k of the control is drawn at the pruned curve's sparsity in round k
    assert list(line.get_ydata()) == pytest.approx(
        [100 * np.mean([a, a]) for a in CONTROL], abs=0.5
    )
    assert not grey_lines(analyze(rows_to_frame(_runs(PRUNED, True))))
    page = render_html(with_control, b"", "out")
    assert 'id="control"' in page and "more training, not sparsity" in page


@pytest.mark.parametrize("pruning", [True, False])
def test_run_notes_a_dense_round_still_climbing(tmp_path: Path, pruning: bool) -> None:
    notes = Notes()
    run = Experiment(tiny_config(pruning=pruning), tmp_path, reporter=notes)
    for e in range(10):
        run.check_finite(0, e, EpochStats(1.0, 0.9))
    run._check_dense_convergence(10)
    assert notes.notes == []  # flat at its end: converged
    for e in range(10):
        run.check_finite(0, e, EpochStats(1.0, 0.5 + 0.03 * e))
    run._check_dense_convergence(10)
    (note,) = notes.notes
    assert "has not converged on the noisy labels" in note and "dense_epochs=6" in note
    assert ("--control" in note) is pruning  # a control run is not told to add a control


def test_control_with_adaptive_seeds_is_refused(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code, _, err = run_cli(
        [*TINY, "--control", "--adaptive-seeds", "2:3", "--out", str(out)], capsys
    )
    assert code == 2
    assert_one_error_line(err, ["--control", "--adaptive-seeds"])
    assert not out.exists()
