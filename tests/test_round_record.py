"""The round record: one typed row of the rounds table, whose fields are the table's columns,
written by the evaluator and the collapse stop and recorded by the store as it is."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sparsedd.store.results import ResultsStore
from sparsedd.store.round_record import ROUND_RECORD_COLUMNS, RoundRecord
from sparsedd.store.schema import ADDED_COLUMNS, VALUE_RULES, schema_columns
from sparsedd.training.collapse import collapsed_rows

RUN = "abcdef0123456789"


def _record(k: int = 0, **over: object) -> RoundRecord:
    fields = dict(
        round=k,
        sparsity=1 - 0.8**k,
        params_remaining=1000,
        test_acc=0.75,
        test_loss=0.9,
        train_acc=0.8,
        train_acc_clean=0.85,
        memorization=0.3,
        val_acc=0.7,
        epochs=3,
        seconds=1.5,
        layer_density={"fc.weight": 0.8**k},
    )
    return RoundRecord(**{**fields, **over})


def test_the_record_fields_are_the_rounds_table_columns() -> None:
    names = [f.name for f in dataclasses.fields(RoundRecord)]
    assert schema_columns()["rounds"] == ["run_id", *names] == ["run_id", *ROUND_RECORD_COLUMNS]
    # the columns added since the first schema are the ones an upgrade adds
    assert list(ADDED_COLUMNS) == names[names.index("sparsedd_version") :]
    # and every column has a rule for what it must hold
    assert set(VALUE_RULES["rounds"]) == {"run_id", *names}


def test_a_record_is_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        _record().test_acc = 0.1  # type: ignore[misc]


def test_the_store_records_a_record_as_it_is(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    store.record_run(RUN, {"epochs": 3, "rounds": 1})
    record = _record(
        1,
        sparsedd_version="9.9",
        git_commit="abc",
        torch_version="2.x",
        device_name="cpu",
        execution="eager",
        n_test=16,
        activation_entropy=0.5,
        test_correct=bytes([0b10100000, 0]),
    )
    store.record_round(RUN, record)
    (row,) = store.round_rows()
    expected = {k: v for k, v in record.as_row().items() if k != "test_correct"}
    stored = {c: row["round_epochs" if c == "epochs" else c] for c in expected}
    assert stored == {**expected, "collapsed": 0}
    assert store.round_correctness() == {(RUN, 1): (record.test_correct, 16)}


def test_collapsed_rounds_are_records_with_nothing_measured(tmp_path: Path) -> None:
    provenance = {"sparsedd_version": "9.9", "git_commit": None, "torch_version": "2.x",
                  "device_name": "cpu"}  # fmt: skip
    rows = collapsed_rows(2, 0.36, range(3, 5), 0.2, (1100, 1000, 0), 16, provenance)
    assert all(isinstance(r, RoundRecord) and r.collapsed for r in rows)
    assert [r.round for r in rows] == [3, 4]
    assert all(r.test_acc is None and r.epochs == 0 and r.n_test == 16 for r in rows)
    store = ResultsStore(tmp_path)
    store.record_run(RUN, {"epochs": 3, "rounds": 4})
    store.record_rounds(RUN, rows)
    recorded = store.round_rows()
    assert [(r["round"], r["collapsed"], r["test_acc"]) for r in recorded] == [
        (3, 1, None),
        (4, 1, None),
    ]
    assert recorded[0]["sparsity"] == pytest.approx(1 - 0.64 * 0.8)
