"""A test-set size the database did not record is recovered from the dataset or from the
granularity of the accuracies, said in a note, and left missing where neither holds."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_config
from support import run_cli

from sparsedd.analysis.load import load_results
from sparsedd.analysis.set_size import (
    DATASET,
    GRANULARITY,
    KNOWN_TEST_SIZES,
    recover_n_test,
    recover_size,
    size_from_granularity,
)
from sparsedd.analysis.tables import analyze
from sparsedd.data.datasets import load_dataset
from sparsedd.store.results_folder import DB_NAME
from sparsedd.training.experiment import Experiment


def _accuracies(n: int, rounds: int, seed: int = 0) -> list[float]:
    """Test accuracies as training records them: float32 of a count over ``n``."""
    counts = np.random.default_rng(seed).integers(int(0.6 * n), int(0.9 * n), size=rounds)
    return [float(np.float32(c) / np.float32(n)) for c in counts]


@pytest.mark.parametrize("n", [1_000, 1_237, 1_600, 10_000, 50_000])
def test_the_granularity_of_the_accuracies_gives_the_size(n: int) -> None:
    assert size_from_granularity(_accuracies(n, 19)) == n


def test_too_few_distinct_accuracies_or_none_that_are_counts_leave_it_missing() -> None:
    assert size_from_granularity(_accuracies(1_237, 5)) is None  # a multiple is as likely
    noise = np.random.default_rng(1).uniform(0.6, 0.9, size=19)
    assert size_from_granularity(list(noise)) is None  # not counts over any n ≤ 100,000
    assert recover_size("fashion-mnist", list(noise)) == (None, "")


def test_a_known_dataset_gives_its_size_when_the_accuracies_agree() -> None:
    assert recover_size("fashion-mnist", _accuracies(10_000, 3)) == (10_000, DATASET)
    # a few rounds only: too few for the granularity, the dataset still says it
    assert recover_size("my-images", _accuracies(10_000, 3)) == (None, "")
    # a dataset whose accuracies are not counts over its known size: the granularity decides
    assert recover_size("cifar10", _accuracies(1_600, 19)) == (1_600, GRANULARITY)


def test_the_generated_datasets_size_is_its_loaders() -> None:
    assert KNOWN_TEST_SIZES["synthetic"] == len(load_dataset(tiny_config()).test_y)


def test_recover_n_test_fills_only_the_runs_without_one_and_says_so() -> None:
    acc = _accuracies(10_000, 4) + _accuracies(777, 12, seed=2) + _accuracies(999, 4, seed=3)
    df = pd.DataFrame(
        {
            "run_id": ["a"] * 4 + ["b"] * 12 + ["c"] * 4,
            "dataset": ["fashion-mnist"] * 4 + ["own"] * 12 + ["own"] * 4,
            "test_acc": acc,
            "n_test": [None] * 16 + [999.0] * 4,
        }
    )
    out, notes = recover_n_test(df)
    assert list(out["n_test"]) == [10_000] * 4 + [777] * 12 + [999] * 4
    assert notes == [
        "run a recorded no test-set size (written before sparsedd recorded it): 10,000 test "
        "images, recovered from its dataset",
        "run b recorded no test-set size (written before sparsedd recorded it): 777 test "
        "images, recovered from the granularity of its accuracies",
    ]
    _, notes = recover_n_test(pd.concat([df.iloc[:4], df.iloc[:4].assign(run_id="e")]))
    assert notes == [
        "runs a, e recorded no test-set size (written before sparsedd recorded it): 10,000 test "
        "images, recovered from their dataset"
    ]
    unknown = pd.DataFrame({"run_id": ["d"] * 3, "test_acc": [0.5, 0.25, 0.75]})
    out, notes = recover_n_test(unknown)
    assert out["n_test"].isna().all() and notes == []  # the verdict says what that leaves


@pytest.fixture(scope="module")
def unrecorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run's database as one written before the test-set size was recorded."""
    out = tmp_path_factory.mktemp("size") / "out"
    Experiment(tiny_config(rounds=2, epochs=1, noise=0.6), out).run()
    old = out.parent / "old"
    shutil.copytree(out, old)
    conn = sqlite3.connect(old / DB_NAME)
    conn.execute("UPDATE rounds SET n_test = NULL")
    conn.commit()
    conn.close()
    return old


def test_an_older_database_is_analysed_with_the_recovered_size_and_a_note(
    unrecorded, capsys
) -> None:
    df = load_results(unrecorded)
    assert set(df["n_test"]) == {512}
    assert any("512 test images, recovered from its dataset" in n for n in df.attrs["notes"])
    assert analyze(df).curves["n_test"].tolist() == [512.0]
    code, _, err = run_cli(["analyze", str(unrecorded)], capsys)
    assert code == 0 and "note: run " in err and "512 test images, recovered" in err
