"""The results database on read-only storage can be read; a damaged one is refused with one line
naming the problem, and `run` refuses it before writing anything."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from support import TINY, assert_refused_unchanged, run_cli, snapshot

from sparsedd.store.results import ResultsStore

READERS = {
    "results": lambda out, dest: ["results", str(out)],
    "analyze": lambda out, dest: ["analyze", str(out)],
    "plot": lambda out, dest: ["plot", str(out), "-o", str(dest / "sdd.png")],
    "report": lambda out, dest: ["report", str(out), "-o", str(dest / "report.html")],
    "export": lambda out, dest: ["export", str(out), "-o", str(dest / "rounds.csv")],
}


@pytest.mark.parametrize("command", sorted(READERS))
def test_reads_where_no_wal_index_can_be_created(
    command: str,
    tmp_path: Path,
    finished_results: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """-wal and -shm cannot be created beside the database (here: folders hold their names),
    as on read-only storage; before, every reader failed with 'unable to open database file'.
    This proves the read path opens the database without creating them; the test below runs
    the same commands on a real read-only mount where the machine allows one."""
    out = tmp_path / "out"
    shutil.copytree(finished_results, out)
    for suffix in ("-wal", "-shm"):
        (out / f"results.sqlite{suffix}").mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    before = snapshot(out)
    code, stdout, err = run_cli(READERS[command](out, dest), capsys)
    assert code == 0, err
    assert snapshot(out) == before
    if command == "results":
        assert len(stdout.strip().splitlines()) == 1 + 3  # header + 3 rounds


def test_readers_never_write_the_database(
    tmp_path: Path,
    finished_results: Path,
) -> None:
    out = tmp_path / "out"
    shutil.copytree(finished_results, out)
    store = ResultsStore(out, create=False)
    with pytest.raises(Exception, match="readonly"), store._connect() as conn:
        conn.execute("DELETE FROM rounds")
    assert len(store.round_rows()) == 3


def test_read_only_mount(tmp_path: Path, finished_results: Path) -> None:
    """A real read-only bind mount, in a private mount namespace (skipped where not allowed)."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare")
    out = tmp_path / "out"
    shutil.copytree(finished_results, out)
    script = (
        f"mount --bind {out} {out} && mount -o remount,bind,ro {out} && "
        f"! touch {out}/probe 2>/dev/null && "
        f"{sys.executable} -m sparsedd results {out} && "
        f"{sys.executable} -m sparsedd analyze {out}"
    )
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("cannot create a mount namespace here")
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "SDD" in proc.stdout


# ---------------------------------------------------------------- damaged databases


def _sql(*statements: str):  # noqa: ANN202
    def damage(db: Path) -> None:
        conn = sqlite3.connect(db)
        for statement in statements:
            conn.execute(statement)
        conn.commit()
        conn.close()

    return damage


DAMAGE = {
    "dropped-rounds": (_sql("DROP TABLE rounds"), "table 'rounds' is missing"),
    "dropped-runs": (_sql("DROP TABLE runs"), "table 'runs' is missing"),
    "extra-column": (_sql("ALTER TABLE rounds ADD COLUMN junk TEXT"), "extra column 'junk'"),
    "missing-column": (_sql("ALTER TABLE epochs DROP COLUMN train_acc"), "no column 'train_acc'"),
    "text-sparsity": (_sql("UPDATE rounds SET sparsity = 'lots' WHERE round = 1"), "'sparsity'"),
    "null-sparsity": (_sql("UPDATE rounds SET sparsity = NULL WHERE round = 2"), "'sparsity'"),
    "text-round": (_sql("UPDATE rounds SET round = 'two' WHERE round = 2"), "'round'"),
    "text-accuracy": (_sql("UPDATE rounds SET test_acc = 'x'"), "'test_acc'"),
    "text-epoch": (_sql("UPDATE epochs SET epoch = 'one' WHERE rowid = 1"), "'epoch'"),
    "null-seconds": (_sql("UPDATE rounds SET seconds = NULL"), "'seconds'"),
    "text-loss": (_sql("UPDATE epochs SET train_loss = 'nan?'"), "'train_loss'"),
    "config-not-json": (_sql("UPDATE runs SET config = '{model: lenet'"), "'config'"),
    "config-a-list": (_sql("UPDATE runs SET config = '[1, 2]'"), "'config'"),
    "density-not-json": (_sql("UPDATE rounds SET layer_density = 'fc1=0.8'"), "'layer_density'"),
}


@pytest.mark.parametrize("command", ["run", "results", "analyze", "export"])
@pytest.mark.parametrize("name", sorted(DAMAGE))
def test_damaged_database_is_one_line(
    name: str,
    command: str,
    tmp_path: Path,
    finished_results: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    shutil.copytree(finished_results, out)
    damage, needle = DAMAGE[name]
    damage(out / "results.sqlite")
    args = {
        # another seed: the run would have to write new rows and files
        "run": [*TINY, "--set", "seed=7", "--out", str(out)],
        "results": ["results", str(out)],
        "analyze": ["analyze", str(out)],
        "export": ["export", str(out), "-o", str(tmp_path / "x.csv")],
    }[command]
    err = assert_refused_unchanged(tmp_path, args, ["results.sqlite", "damaged", needle], capsys)
    assert "free disk space" not in err


def test_reader_sees_rows_a_connected_writer_has_not_merged(
    tmp_path: Path,
    finished_results: Path,
) -> None:
    """While a writer is connected, new rows live in the -wal file: the reader must see them."""
    out = tmp_path / "out"
    shutil.copytree(finished_results, out)
    writer = sqlite3.connect(out / "results.sqlite", isolation_level=None)
    try:
        writer.execute("PRAGMA wal_autocheckpoint = 0")
        columns = [r[1] for r in writer.execute("PRAGMA table_info(rounds)")]
        values = ", ".join("9" if c == "round" else c for c in columns)
        writer.execute(f"INSERT INTO rounds SELECT {values} FROM rounds WHERE round = 0")
        assert (out / "results.sqlite-wal").stat().st_size > 0
        rounds = [r["round"] for r in ResultsStore(out, create=False).round_rows()]
    finally:
        writer.close()
    assert rounds == [0, 1, 2, 9]
