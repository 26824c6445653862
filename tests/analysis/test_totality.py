"""Analysis is total: analyze, plot, report and export on any folder the tool could have written
give a table (exit 0) or one clear line (exit 2), never a traceback.

The folders are filled with synthetic rows through ``ResultsStore`` (no training), so that many
shapes can be tried quickly: curves of 1, 2 or 4 rounds, one seed, runs of different lengths,
runs differing in a key left null in one of them, runs registered without any round (a sweep
stopped part-way), diverged rounds (a NULL loss), and random small folders drawn by Hypothesis.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import BASE, COMMANDS, assert_total, curve, fill, round_row, run_cli

CASES = {
    "one-round": [("a", BASE, curve([0.5]))],
    "two-rounds": [("a", BASE, curve([0.5, 0.6]))],
    # a valley whose raw minimum is the last round: "argmax of an empty sequence" before
    "four-rounds-dip-at-end": [("a", BASE, curve([0.7, 0.4, 0.6, 0.3]))],
    "one-seed-with-dip": [("a", BASE, curve([0.8, 0.6, 0.5, 0.7, 0.75, 0.2]))],
    # train_size null in one run, 256 in the other: IndexError before
    "key-null-in-one-run": [
        ("a", {**BASE, "train_size": None}, curve([0.5, 0.4, 0.45])),
        ("b", {**BASE, "train_size": 256}, curve([0.5, 0.4, 0.45])),
    ],
    "different-lengths": [
        ("a", BASE, curve([0.5, 0.4, 0.45, 0.5, 0.3])),
        ("b", {**BASE, "seed": 1}, curve([0.5, 0.45])),
    ],
    "partial-sweep": [
        ("a", BASE, curve([0.5, 0.4, 0.45])),
        ("b", {**BASE, "weight_decay": 0.1}, []),
    ],
    "all-metrics-null": [("a", BASE, curve([None, None]))],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_known_shapes_give_a_table(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = fill(tmp_path / "out", CASES[name])
    codes = assert_total(out, capsys)
    if name != "all-metrics-null":
        assert codes == [0] * len(COMMANDS), codes


# ---------------------------------------------------------------- random folders

metric = st.one_of(st.none(), st.floats(0, 1), st.sampled_from([math.nan, 0.0, 1.0]))
run_strategy = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2),
        "weight_decay": st.sampled_from([0.0, 0.01]),
        "train_size": st.sampled_from([None, 256]),
        "noise": st.sampled_from([0.0, 0.2]),
        "accs": st.lists(metric, min_size=0, max_size=5),
        "memorization": metric,
        "val_acc": metric,
        "test_loss": st.one_of(st.none(), st.floats(0, 5)),
    }
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(runs=st.lists(run_strategy, min_size=1, max_size=4))
def test_random_folders_give_a_table_or_one_line(
    runs: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        entries = []
        for i, r in enumerate(runs):
            config = {**BASE, **{k: r[k] for k in ("seed", "weight_decay", "train_size", "noise")}}
            rows = curve(
                r["accs"], memorization=r["memorization"], val_acc=r["val_acc"],
                test_loss=r["test_loss"],
            )  # fmt: skip
            entries.append((f"run{i}", config, rows))
        assert_total(fill(Path(tmp) / "out", entries), capsys)


def test_a_diverged_round_is_never_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As older sparsedd recorded a diverged run: NULL losses, round 1 at 100% sparsity."""
    import json

    rows = [round_row(0, 0.6), round_row(1, 0.1, test_loss=None, sparsity=1.0)]
    rows.append(round_row(2, 0.1, test_loss=None, sparsity=1.0))
    out = fill(tmp_path / "out", [("a", BASE, rows), ("b", {**BASE, "seed": 1}, curve([0.6]))])
    code, stdout, err = run_cli(["analyze", str(out), "--format", "json"], capsys)
    assert code == 0, err
    assert "run a diverged at round 1" in err
    (curve_row,) = json.loads(stdout)
    assert curve_row["n_rounds"] == 1
    assert curve_row["compressible_to"] == 0.0
