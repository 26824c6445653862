"""Per-image test correctness: every trained round records which test images its model got right
(packed bits), per run and λ; collapsed rounds and older databases have none."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_config

import sparsedd
from sparsedd.analysis.load import load_results
from sparsedd.analysis.paired import paired_diff_sd, paired_noise, unpack
from sparsedd.components import run_id
from sparsedd.data.batches import channel_stats, normalize
from sparsedd.data.datasets import load_dataset
from sparsedd.errors import StoreError
from sparsedd.export.pruned import export_pruned
from sparsedd.store.results import ResultsStore
from sparsedd.store.results_folder import DB_NAME
from sparsedd.store.schema import SCHEMA_VERSION
from sparsedd.training.experiment import Experiment

#: Two tiny rounds at 60% label noise: test accuracies 86%, 94%, 88% (not all images right).
NOISY = dict(rounds=2, epochs=1, noise=0.6)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bits") / "out"
    Experiment(tiny_config(**NOISY), out).run()
    return out


def _bits(out: Path) -> dict[tuple[str, int], np.ndarray]:
    return {key: unpack(*value) for key, value in ResultsStore(out).round_correctness().items()}


def test_each_round_records_which_test_images_its_model_got_right(finished, tmp_path) -> None:
    cfg = tiny_config(**NOISY)
    data = load_dataset(cfg)
    bits = _bits(finished)
    rows = {(r["run_id"], r["round"]): r for r in ResultsStore(finished).round_rows()}
    assert set(bits) == set(rows) and len(bits) == 3
    x = normalize(data.test_x, channel_stats(data.mean, "cpu"), channel_stats(data.std, "cpu"))
    for (run, k), correct in bits.items():
        assert len(correct) == rows[run, k]["n_test"] == len(data.test_y) == 512
        assert correct.mean() == pytest.approx(rows[run, k]["test_acc"], abs=1e-6)
        # the very images: the round's exported model, run on the test set, agrees bit for bit
        path = tmp_path / f"r{k}.safetensors"
        export_pruned(finished, run, k, path)
        with torch.no_grad():
            predicted = sparsedd.load_pruned(path)(x).argmax(1) == data.test_y
        assert np.array_equal(correct, predicted.numpy())
    assert not np.array_equal(bits[run, 0], bits[run, 2])  # rounds differ image by image


def test_runs_record_it_per_lambda_and_collapsed_rounds_have_none(tmp_path) -> None:
    """λ = 100 collapses (rounds 7 and 8 recorded untrained); λ = 0 trains every round."""
    cfgs = [tiny_config(prune_rate=0.5, rounds=8, weight_decay=wd) for wd in (0.0, 100.0)]
    for cfg in cfgs:
        Experiment(cfg, tmp_path / "out").run()
    bits = _bits(tmp_path / "out")
    rows = ResultsStore(tmp_path / "out").round_rows()
    for row in rows:
        key = (row["run_id"], row["round"])
        if row["collapsed"]:
            assert key not in bits
        else:
            assert bits[key].mean() == pytest.approx(row["test_acc"], abs=1e-6)
    shrunk = [k for (run, k) in bits if run == run_id(cfgs[1])]
    assert sorted(shrunk) == list(range(7)) and len(bits) == 9 + 7
    steady, other = (bits[run_id(c), 3] for c in cfgs)
    assert not np.array_equal(steady, other)  # each λ's own model, not one shared


def test_load_results_gives_it_only_when_asked(finished) -> None:
    assert "test_correct" not in load_results(finished).columns
    df = load_results(finished, correctness=True)
    assert all(isinstance(b, bytes) and len(b) == 64 for b in df["test_correct"])
    assert "test_correct" not in sparsedd.analysis.load.config_keys(df)


def test_a_loaded_curve_gives_the_verdict_its_paired_noise_in_one_call(finished) -> None:
    df = load_results(finished, correctness=True)
    sd = paired_noise(df)  # the one curve of the folder
    bits = {k: b for (_, k), b in _bits(finished).items()}
    assert sd(0, 2) == pytest.approx(paired_diff_sd(bits[0], bits[2])) and sd(0, 2) > 0
    assert paired_noise(load_results(finished)) is None  # loaded without it: as before


def _old_copy(finished: Path, out: Path) -> Path:
    """A copy written by the previous schema (5): no per-image correctness column."""
    shutil.copytree(finished, out)
    conn = sqlite3.connect(out / DB_NAME)
    conn.execute("ALTER TABLE rounds DROP COLUMN test_correct")
    conn.execute("UPDATE meta SET value = '5' WHERE key = 'schema'")
    conn.commit()
    conn.close()
    return out


def test_an_older_database_is_read_without_it_and_upgraded_when_written(finished, tmp_path):
    out = _old_copy(finished, tmp_path / "old")
    store = ResultsStore(out, create=False)
    assert store.round_correctness() == {} and len(store.round_rows()) == 3
    df = load_results(out, correctness=True)
    assert df["test_correct"].isna().all()
    # a resumed run upgrades it: the column is added, the new round has its bits
    conn = sqlite3.connect(out / DB_NAME)
    conn.execute("DELETE FROM rounds WHERE round = 2")
    conn.commit()
    conn.close()
    Experiment(tiny_config(**NOISY), out).run()
    assert [k for (_, k) in _bits(out)] == [2]
    conn = sqlite3.connect(out / DB_NAME)
    assert conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0] == SCHEMA_VERSION
    conn.close()


@pytest.mark.parametrize("value", ["x'00ff'", "'text'", "3"])
def test_a_damaged_correctness_value_is_refused(finished, tmp_path, value) -> None:
    out = tmp_path / "damaged"
    shutil.copytree(finished, out)
    conn = sqlite3.connect(out / DB_NAME)
    conn.execute(f"UPDATE rounds SET test_correct = {value} WHERE round = 1")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="test_correct|per-image") as info:
        ResultsStore(out, create=False).round_correctness()
    assert "damaged" in str(info.value)
