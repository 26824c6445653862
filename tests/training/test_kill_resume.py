"""Kills and interrupts: a run SIGKILLed at 20 seeded random moments, resumed each time, ends
with per-round results identical to an uninterrupted run; SIGINT stops cleanly and resumes.

The runs are real `sparsedd run` processes on generated data (CPU, fp32, one thread). Each kill
lands a random delay after the run announced itself, while it trains, writes checkpoints or
records rows; the delays are short against the whole run, so the 20 kills spread over it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import load_file

from sparsedd.store.checkpoint import load_tensors
from sparsedd.store.results import ResultsStore

SETS = ["rounds=4", "epochs=4", "dense_epochs=4", "checkpoint_every=1"]
COMMAND = [sys.executable, "-m", "sparsedd", "run", "--preset", "tiny", "-q"]
COMMAND += [a for kv in SETS for a in ("--set", kv)]
KILLS = 20
SEED = 20240605


def start(out: Path) -> tuple[subprocess.Popen[str], float]:
    """Start a run as a fresh process; return it once it announced itself, and when it did."""
    proc = subprocess.Popen(
        [*COMMAND, "--out", str(out)], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert line.startswith("run "), line
    return proc, time.monotonic()


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    """Wait for a run; (exit status, the rest of its stderr)."""
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


# A process that imports sparsedd (and torch) once, runs no torch operation itself, and forks
# one child per run: each child is a separate process running the CLI's `main`, started in
# milliseconds instead of the seconds that importing torch takes on a busy machine.
_ZYGOTE = r"""
import json, os, sys
from sparsedd.cli.main import main
import sparsedd.data.datasets, sparsedd.models.base
import sparsedd.training.experiment, sparsedd.events.progress, sparsedd.training.trainer
import torch._dynamo  # imported lazily by the first optimizer step: seconds on a busy machine
for line in sys.stdin:
    cmd, arg = line.split(" ", 1)
    if cmd == "start":
        spec = json.loads(arg)
        pid = os.fork()
        if pid == 0:
            os.dup2(os.open(spec["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            code = 1
            try:
                main(spec["args"])
            except SystemExit as exit:
                code = exit.code if isinstance(exit.code, int) else 1
            finally:
                sys.stderr.flush()
                os._exit(code)
        print(pid, flush=True)
    elif cmd == "wait":
        print(os.waitstatus_to_exitcode(os.waitpid(int(arg), 0)[1]), flush=True)
"""


class Zygote:
    """Starts `sparsedd run` processes by forking a pre-imported interpreter."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _ZYGOTE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.count = 0

    def _ask(self, line: str) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def start(self, out: Path) -> tuple[int, Path, float]:
        """Fork a run; return (pid, its stderr file, when it announced itself)."""
        self.count += 1
        err = self.folder / f"stderr-{self.count}.txt"
        args = [*COMMAND[3:], "--out", str(out)]
        pid = self._ask("start " + json.dumps({"args": args, "stderr": str(err)}))
        deadline = time.monotonic() + 60
        while not (err.exists() and err.read_text().startswith("run ")):
            assert time.monotonic() < deadline, "the run never announced itself"
            time.sleep(0.002)
        return pid, err, time.monotonic()

    def wait(self, pid: int) -> int:
        """The exit status of a run (negative: killed by that signal)."""
        return self._ask(f"wait {pid}")

    def close(self) -> None:
        """End the zygote."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def zygote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zygote]:
    """One pre-imported interpreter for every forked run of this module."""
    z = Zygote(tmp_path_factory.mktemp("zygote"))
    yield z
    z.close()


def outcome(out: Path) -> dict[str, Any]:
    """Everything a run computed: round rows (less timings), epoch rows, final weights."""
    store = ResultsStore(out, create=False)
    rounds = [
        {k: v for k, v in row.items() if k not in ("seconds", "created")}
        for row in store.round_rows()
    ]
    epochs = store.epoch_rows()
    (folder,) = (out / "runs").iterdir()
    weights = {
        path.name: {k: v.tolist() for k, v in load_file(str(path)).items()}
        for path in sorted(folder.glob("round_*.safetensors"))
    }
    return {"rounds": rounds, "epochs": epochs, "weights": weights}


def epochs_recorded(out: Path) -> int:
    """Epoch rows in a results folder (0 while it has no database)."""
    if not (out / "results.sqlite").exists():
        return 0
    conn = sqlite3.connect(out / "results.sqlite", timeout=10)
    try:
        return conn.execute("SELECT COUNT(*) FROM epochs").fetchone()[0]
    except sqlite3.OperationalError:  # tables not created yet
        return 0
    finally:
        conn.close()


def check_database(out: Path) -> None:
    """integrity_check ok, and no round or epoch recorded twice."""
    conn = sqlite3.connect(out / "results.sqlite")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        for table, key in (("rounds", "run_id, round"), ("epochs", "run_id, round, epoch")):
            total = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            distinct = conn.execute(f"SELECT COUNT(*) FROM (SELECT DISTINCT {key} FROM {table})")
            assert total == distinct.fetchone()[0], table
    finally:
        conn.close()


def check_saved_files(out: Path) -> None:
    """Every checkpoint that has its final name is whole (temporary names are ignored)."""
    if not (out / "runs").exists():
        return
    for path in (out / "runs").rglob("*.safetensors"):
        load_tensors(path)


@pytest.fixture(scope="module")
def reference(
    tmp_path_factory: pytest.TempPathFactory, zygote: Zygote
) -> tuple[dict[str, Any], float]:
    """An uninterrupted run: its outcome and how long it ran after announcing itself."""
    out = tmp_path_factory.mktemp("reference") / "out"
    pid, err, announced = zygote.start(out)
    assert zygote.wait(pid) == 0, err.read_text()
    return outcome(out), time.monotonic() - announced


def test_sigkill_at_random_moments_then_resume_is_exact(
    tmp_path: Path, reference: tuple[dict[str, Any], float], zygote: Zygote
) -> None:
    expected, duration = reference
    total = len(expected["epochs"])
    epoch_time = duration / total
    rng = random.Random(SEED)
    # Kill i waits until the run has recorded targets[i] epochs (drawn over the whole run), then
    # a random fraction of two epochs more: kills sweep every round, and land in training, in
    # checkpoint writes, in results writes and at round ends.
    targets = sorted(rng.randrange(total) for _ in range(KILLS))
    delays = [rng.uniform(0.0, 2 * epoch_time) for _ in range(KILLS)]
    out = tmp_path / "out"
    landed = 0
    progress = []
    for target, delay in zip(targets, delays, strict=True):
        pid, _, _ = zygote.start(out)
        deadline = time.monotonic() + 60
        while epochs_recorded(out) < target and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
        landed += zygote.wait(pid) == -signal.SIGKILL
        check_saved_files(out)
        if (out / "results.sqlite").exists():
            check_database(out)
        progress.append(epochs_recorded(out))
    print(f"kills: {landed} landed; epochs recorded after each: {progress}")
    pid, err, _ = zygote.start(out)
    assert zygote.wait(pid) == 0, err.read_text()
    check_database(out)
    assert outcome(out) == expected
    assert landed >= KILLS * 3 // 4, f"only {landed} kills hit a running process"
    # the kills were spread over the run, not all in its first moments
    assert progress == sorted(progress), "a kill lost recorded epochs"
    assert progress[KILLS // 2] >= total // 4 and progress[-2] >= total // 2, progress


def test_sigint_stops_cleanly_and_resume_is_exact(
    tmp_path: Path, reference: tuple[dict[str, Any], float]
) -> None:
    expected, duration = reference
    out = tmp_path / "out"
    proc, announced = start(out)
    time.sleep(max(0.0, announced + duration / 5 - time.monotonic()))
    proc.send_signal(signal.SIGINT)
    code, err = finish(proc)
    assert code == 130, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("sparsedd: stopped in round ") and "re-run the same command" in last
    (folder,) = (out / "runs").iterdir()
    assert (folder / "progress.safetensors").exists()
    check_database(out)
    done = len(ResultsStore(out, create=False).epoch_rows())
    assert 0 < done < len(expected["epochs"])
    proc, _ = start(out)
    code, err = finish(proc)
    assert code == 0, err
    assert outcome(out) == expected
    assert not (folder / "progress.safetensors").exists()
