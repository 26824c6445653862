"""Concurrent writers: four processes recording into one results folder lose and duplicate
nothing, whether they write rows directly or run whole experiments side by side."""

from __future__ import annotations

import multiprocessing
import sqlite3
import subprocess
import sys
from pathlib import Path

from sparsedd.store import ResultsStore

WRITERS = 4
ROUNDS = 30


def _row(round_: int, writer: int) -> dict:
    return {
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
    cmd = [sys.executable, "-m", "sparsedd.cli", "run", "--preset", "tiny", "-q", "--out", str(out)]
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
