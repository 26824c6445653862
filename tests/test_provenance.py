"""Provenance of every round: version, commit, torch, device; old databases stay usable."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
import torch
from conftest import tiny_config
from support import Notes, run_process

import sparsedd
from sparsedd.provenance import device_name, git_commit
from sparsedd.store.results import ResultsStore
from sparsedd.store.results_folder import DB_NAME
from sparsedd.store.schema import PROVENANCE_FIELDS, SCHEMA_VERSION
from sparsedd.training.experiment import Experiment


def _results_json(out: Path) -> list[dict]:
    proc = run_process("results", str(out), "--format", "json", timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _edited_copy(finished: Path, out: Path, *statements: str) -> Path:
    """A copy of a finished results folder with SQL statements run on its database."""
    shutil.copytree(finished, out)
    conn = sqlite3.connect(out / DB_NAME)
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()
    return out


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prov") / "out"
    Experiment(tiny_config(rounds=2, epochs=1), out).run()
    return out


def test_every_round_records_its_provenance(finished):
    rows = _results_json(finished)
    assert len(rows) == 3
    for row in rows:
        assert row["sparsedd_version"] == sparsedd.__version__
        assert row["torch_version"] == torch.__version__
        assert row["device_name"] == device_name(torch.device("cpu")) and row["device_name"]
        assert row["git_commit"] == git_commit()
        assert row["execution"] == "fp32"  # the tiny config: precision=fp32, compile off
    # this test runs from a git checkout: the commit is known
    if (Path(sparsedd.__file__).parents[2] / ".git").exists():
        assert rows[0]["git_commit"] and len(rows[0]["git_commit"].split("+")[0]) == 40


def test_a_database_without_provenance_is_read_and_resumed(finished, tmp_path):
    out = _edited_copy(
        finished,
        tmp_path / "old",
        *(f"ALTER TABLE rounds DROP COLUMN {field}" for field in PROVENANCE_FIELDS),
        "UPDATE meta SET value = '1' WHERE key = 'schema'",
    )
    # read as it is (a reader never changes it)
    rows = _results_json(out)
    assert len(rows) == 3 and all(r["sparsedd_version"] is None for r in rows)
    conn = sqlite3.connect(out / DB_NAME)
    assert conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0] == "1"
    # resumed: round 2 is recomputed by this version, which says so in one line
    run_id = rows[0]["run_id"]
    conn.execute("DELETE FROM rounds WHERE round = 2")
    conn.commit()
    conn.close()
    reporter = Notes()
    Experiment(tiny_config(rounds=2, epochs=1), out, reporter=reporter).run()
    assert reporter.notes == [
        f"rounds 0..1 of this run were recorded by sparsedd of unknown version; "
        f"this is sparsedd {sparsedd.__version__}, resuming with it"
    ]
    rows = _results_json(out)
    assert [r["sparsedd_version"] for r in rows] == [None, None, sparsedd.__version__]
    assert {r["run_id"] for r in rows} == {run_id}
    conn = sqlite3.connect(out / DB_NAME)
    assert conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_resuming_rounds_of_another_version_says_so_once(finished, tmp_path):
    out = _edited_copy(
        finished,
        tmp_path / "other",
        "UPDATE rounds SET sparsedd_version = '0.0.9'",
        "DELETE FROM rounds WHERE round = 2",
    )
    reporter = Notes()
    Experiment(tiny_config(rounds=2, epochs=1), out, reporter=reporter).run()
    assert len(reporter.notes) == 1 and "sparsedd 0.0.9" in reporter.notes[0]
    assert "rounds 0..1" in reporter.notes[0]
    # same version everywhere now, nothing left to run: no note
    reporter = Notes()
    Experiment(tiny_config(rounds=2, epochs=1), out, reporter=reporter).run()
    assert reporter.notes == []
    assert len(ResultsStore(out).round_rows()) == 3


def test_the_report_says_what_computed_the_rounds(finished):
    from sparsedd.analysis.report import provenance_rows, render_html
    from sparsedd.analysis.tables import analyze_dir

    result = analyze_dir(finished)
    rows = provenance_rows(result)
    assert len(rows) == 1 and rows[0]["rounds"] == 3
    assert rows[0]["sparsedd_version"] == sparsedd.__version__
    assert rows[0]["torch_version"] == torch.__version__
    page = render_html(result, b"", source="x")
    assert "Computed with" in page and rows[0]["device_name"] in page


@pytest.mark.parametrize(
    ("precision", "compile", "execution"),
    [("bf16", False, "bf16"), ("fp32", True, "fp32+compile")],
)
def test_each_round_records_how_it_was_computed(tmp_path, precision, compile, execution):
    """`execution` is what precision and compile resolved to, not the config's words."""
    out = tmp_path / "out"
    Experiment(tiny_config(rounds=1, epochs=1, precision=precision, compile=compile), out).run()
    assert [r["execution"] for r in ResultsStore(out, create=False).round_rows()] == [execution] * 2


def test_a_schema_2_database_gains_the_execution_column(finished, tmp_path):
    """A database of the version before `execution`: read as it is, upgraded when resumed."""
    out = _edited_copy(
        finished,
        tmp_path / "v2",
        "ALTER TABLE rounds DROP COLUMN execution",
        "UPDATE meta SET value = '2' WHERE key = 'schema'",
        "DELETE FROM rounds WHERE round = 2",
    )
    rows = _results_json(out)
    assert [r["execution"] for r in rows] == [None, None]
    assert rows[0]["sparsedd_version"] == sparsedd.__version__
    Experiment(tiny_config(rounds=2, epochs=1), out).run()
    assert [r["execution"] for r in _results_json(out)] == [None, None, "fp32"]
    conn = sqlite3.connect(out / DB_NAME)
    assert conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0] == SCHEMA_VERSION
    conn.close()


@pytest.mark.parametrize("field", PROVENANCE_FIELDS)
def test_a_provenance_value_that_is_not_text_is_a_damaged_database(finished, tmp_path, field):
    # found by the property test: a blob in a provenance column broke `results --format json`
    out = _edited_copy(finished, tmp_path / "out", f"UPDATE rounds SET {field} = x'00'")
    proc = run_process("results", str(out), "--format", "json", timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "damaged" in proc.stderr and f"column {field!r} that is not text or NULL" in proc.stderr
