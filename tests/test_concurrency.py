"""Concurrent writers: four processes recording into one results folder lose and duplicate
nothing, whether they write rows directly or run whole experiments side by side."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import tiny_config
from support import Notes

from sparsedd.errors import Interrupted, NoResultsError
from sparsedd.store.results import ResultsStore
from sparsedd.store.round_record import RoundRecord
from sparsedd.store.run_folder import RunFolder
from sparsedd.store.run_lock import run_locks
from sparsedd.sweep.plan import recorded_rows
from sparsedd.training.experiment import Experiment

WRITERS = 4
ROUNDS = 30


def _row(round_: int, writer: int) -> RoundRecord:
    row = {
        "round": round_,
        "sparsity": round_ / ROUNDS,
        "params_remaining": 1000 - round_,
        "test_acc": writer + round_ / 1000,
        "test_loss": 1.0,
        "train_acc": 0.5,
        "train_acc_clean": 0.5,
        "memorization": 0.1,
        "val_acc": None,
        "epochs": 2,
        "seconds": 0.01,
        "layer_density": {"fc.weight": 1.0},
    }
    return RoundRecord(**row)


def _writer(out: str, writer: int, start: multiprocessing.synchronize.Barrier) -> None:
    """One writer: opens (maybe creates) the store at the same moment as the others."""
    start.wait()
    store = ResultsStore(out)
    run = f"run-{writer}"
    store.record_run(run, {"seed": writer})
    for k in range(ROUNDS):
        store.record_epoch(run, k, 0, 1.0 / (k + 1), 0.5)
        store.record_round(run, _row(k, writer))
        # every writer also re-records a shared run's rounds: replaced, never duplicated
        store.record_run("shared", {"seed": -1})
        store.record_round("shared", _row(k, 0))


def test_four_store_writers_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"  # created by whichever writer comes first
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(WRITERS)
    procs = [ctx.Process(target=_writer, args=(str(out), w, start)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * WRITERS
    store = ResultsStore(out, create=False)
    rows = store.round_rows()
    keys = [(r["run_id"], r["round"]) for r in rows]
    assert len(keys) == len(set(keys)) == (WRITERS + 1) * ROUNDS
    for w in range(WRITERS):
        mine = [r for r in rows if r["run_id"] == f"run-{w}"]
        assert [r["round"] for r in mine] == list(range(ROUNDS))
        assert all(r["test_acc"] == w + r["round"] / 1000 for r in mine)
        assert mine[0]["seed"] == w
    assert len(store.epoch_rows()) == WRITERS * ROUNDS
    assert set(store.runs()) == {"shared", *(f"run-{w}" for w in range(WRITERS))}
    conn = sqlite3.connect(out / "results.sqlite")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT COUNT(*) FROM meta").fetchone()[0] == 2
    conn.close()


def test_four_runs_into_one_folder(tmp_path: Path) -> None:
    """Four `sparsedd run` processes (seeds 0-3) at once: every round of every run recorded."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "sparsedd", "run", "--preset", "tiny", "-q", "--out", str(out)]
    procs = [
        subprocess.Popen([*cmd, "--set", f"seed={s}"], stderr=subprocess.PIPE, text=True)
        for s in range(WRITERS)
    ]
    errors = [p.communicate(timeout=170)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * WRITERS, errors
    store = ResultsStore(out, create=False)
    rows = store.round_rows()
    assert sorted(r["seed"] for r in rows) == sorted(list(range(WRITERS)) * 3)
    assert len({(r["run_id"], r["round"]) for r in rows}) == len(rows) == WRITERS * 3
    assert len(store.epoch_rows()) == WRITERS * 3 * 2
    assert len(list((out / "runs").iterdir())) == WRITERS


def _file_another_run_is_creating(out: Path, stage: str) -> None:
    """The database as a reader finds it while another run is still creating it."""
    out.mkdir()
    conn = sqlite3.connect(out / "results.sqlite")  # creates an empty file
    if stage == "wal-set":
        conn.execute("PRAGMA journal_mode=WAL")
    conn.close()


@pytest.mark.parametrize("stage", ["empty-file", "wal-set"])
def test_a_database_being_created_counts_as_no_results_yet(tmp_path: Path, stage: str) -> None:
    """A run planning its work while another creates the database sees nothing recorded."""
    out = tmp_path / "out"
    _file_another_run_is_creating(out, stage)
    assert recorded_rows(out) == []
    with pytest.raises(NoResultsError, match="holds no results"):
        ResultsStore(out, create=False)
    ResultsStore(out).record_run("r", {"seed": 0})  # the creating run goes on unharmed
    assert ResultsStore(out, create=False).runs() == {"r": {"seed": 0}}


def test_a_reader_reads_again_before_calling_a_database_damaged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page a writer changed under a reader reads as damaged once; the next read is right."""
    out = tmp_path / "out"
    ResultsStore(out).record_run("r", {"seed": 0})
    reader = ResultsStore(out, create=False)
    opened = reader._open
    failures = iter([True])

    def open_torn_once(wait: float) -> sqlite3.Connection:
        return _TornConnection() if next(failures, False) else opened(wait)

    monkeypatch.setattr(reader, "_open", open_torn_once)
    assert reader.runs() == {"r": {"seed": 0}}
    assert next(failures, "used") == "used"


class _TornConnection:
    """A connection whose statements fail as a torn read does."""

    def execute(self, *args: object) -> sqlite3.Cursor:
        raise sqlite3.DatabaseError("database disk image is malformed")

    def close(self) -> None:
        pass


# ------------------------------------------------------------ one process trains a run


def _hold_lock(folder: Path) -> int:
    """Take a run folder's lock as another process would (flock is per open file)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(RunFolder(folder).lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def test_a_run_another_process_trains_waits_for_it(tmp_path: Path) -> None:
    """The run waits (saying so once) while its folder is locked, then trains in full."""
    cfg = tiny_config(rounds=1, epochs=1)
    exp = Experiment(cfg, tmp_path / "out", reporter=Notes())
    fd = _hold_lock(exp.folder)
    released: list[float] = []

    def release() -> None:
        time.sleep(1.0)
        released.append(time.monotonic())
        os.close(fd)

    threading.Thread(target=release).start()
    exp.run()
    assert released, "the run trained while another process held its folder"
    assert exp.reporter.notes == [
        f"another process is training run {exp.id}; waiting for it to finish"
    ]
    assert [r["round"] for r in ResultsStore(tmp_path / "out").round_rows()] == [0, 1]


def test_stop_while_waiting_for_a_run_stops_before_it(tmp_path: Path) -> None:
    """Ctrl-C while another process holds the run: Interrupted, the run never entered."""
    folder = tmp_path / "runs" / "r"
    fd = _hold_lock(folder)
    calls: list[Path] = []
    try:
        with (
            pytest.raises(Interrupted, match="stopped while waiting"),
            run_locks([folder], stopped=lambda: True, waiting=calls.append),
        ):
            raise AssertionError("entered a run whose lock another process holds")
    finally:
        os.close(fd)
    assert calls == [folder]
    with run_locks([folder, folder]):  # free now; a folder named twice is locked once
        pass


def test_two_processes_running_one_run_record_it_once(tmp_path: Path) -> None:
    """Two `sparsedd run` of the same config at once: both succeed, every round recorded once,
    the same rows as one run alone."""
    cmd = [sys.executable, "-m", "sparsedd", "run", "--preset", "tiny", "-q"]
    procs = [
        subprocess.Popen([*cmd, "--out", str(tmp_path / "both")], stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    errors = [p.communicate(timeout=170)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    alone = subprocess.run([*cmd, "--out", str(tmp_path / "alone")], capture_output=True)
    assert alone.returncode == 0
    keep = ("run_id", "round", "sparsity", "test_acc", "train_acc", "memorization")
    rows = [
        [{k: r[k] for k in keep} for r in ResultsStore(tmp_path / name).round_rows()]
        for name in ("both", "alone")
    ]
    assert rows[0] == rows[1] and len(rows[0]) == 3
    assert len(ResultsStore(tmp_path / "both").epoch_rows()) == 6
