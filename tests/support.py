"""Shared test support: running the CLI (in this process or as a user does), checking that a
command is refused harmlessly, reporters that tests drive runs with, and builders of results
folders (synthetic rounds written through the real store).

Tests import helpers from here, fixtures and tiny configs from ``conftest.py`` and dataset
files from ``datafiles.py``; never from one another.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_config
from rich.console import Console

from sparsedd.analysis import tables as an
from sparsedd.cli.main import main
from sparsedd.components import resolve_config
from sparsedd.components import run_id as id_of_run
from sparsedd.config import NON_SEMANTIC, Config, to_dict
from sparsedd.errors import ConfigError
from sparsedd.events.progress import ConsoleReporter
from sparsedd.store.results import ResultsStore
from sparsedd.store.results_folder import ResultsFolder
from sparsedd.store.round_record import RoundRecord
from sparsedd.sweep.backends import BACKENDS, SweepRequest
from sparsedd.sweep.jobs import run_job
from sparsedd.sweep.plan import Cell, sweep_configs
from sparsedd.training.experiment import StopFlag

#: `sparsedd run` on the `tiny` preset, quietly.
TINY = ["run", "--preset", "tiny", "-q"]

# ---------------------------------------------------------------- running the CLI


def run_cli(
    args: list[str], capsys: pytest.CaptureFixture[str] | None = None
) -> tuple[int, str, str]:
    """Run ``sparsedd ARGS`` in-process: (exit status, stdout, stderr) of this call alone.

    Without ``capsys`` (in a fixture wider than one test) the output is not kept: ("", "").
    """
    if capsys is not None:
        capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out, err = capsys.readouterr() if capsys is not None else ("", "")
    code = 0 if info.value.code is None else info.value.code
    return (code if isinstance(code, int) else 1), out, err


def run_process(
    *args: str, check: bool = False, timeout: float = 300, **kw: Any
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m sparsedd ARGS`` as a user runs it (text output captured); ``check``:
    assert that it exits 0, showing its stderr if not."""
    proc = subprocess.run(
        [sys.executable, "-m", "sparsedd", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


# ---------------------------------------------------------------- refusals


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` with a hash of its bytes."""
    out: dict[str, str] = {}
    if not root.exists():
        return out
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():  # it may dangle or loop: its target names it
            out[rel] = f"link to {os.readlink(path)}"
            continue
        out[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def assert_one_error_line(err: str, needles: list[str], allow_announce: bool = False) -> None:
    """stderr is one ``sparsedd: error:`` line holding every needle (no traceback)."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    if allow_announce:  # a resumed run announces itself ("run <id> → <folder>") before it fails
        lines = [line for line in lines if not line.startswith("run ")]
    assert len(lines) == 1, err
    assert lines[0].startswith("sparsedd: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def assert_refused_unchanged(
    root: Path, args: list[str], needles: list[str], capsys: pytest.CaptureFixture[str]
) -> str:
    """``sparsedd ARGS`` exits 2 with one error line naming every needle, and nothing under
    ``root`` changes; returns stderr."""
    before = snapshot(root)
    code, _, err = run_cli(args, capsys)
    assert code == 2, err
    assert_one_error_line(err, needles)
    assert snapshot(root) == before
    return err


# ---------------------------------------------------------------- reporters


class Notes:
    """A reporter that keeps the notes it is given."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    def round_started(self, *args: Any) -> None: ...

    def epoch_done(self, *args: Any) -> None: ...

    def round_done(self, *args: Any) -> None: ...

    def note(self, run: str, message: str) -> None:
        self.notes.append(message)


class Stopper:
    """A reporter that requests ``stop`` during round ``at_round`` (after its first epoch)."""

    def __init__(self, stop: StopFlag, at_round: int) -> None:
        self.stop, self.at_round = stop, at_round

    def round_started(self, *args: Any) -> None: ...

    def epoch_done(self, run: str, round_: int, epoch: int, stats: Any) -> None:
        if round_ == self.at_round:
            self.stop.requested = True

    def round_done(self, *args: Any) -> None: ...


def console_reporter() -> tuple[ConsoleReporter, io.StringIO]:
    """A console reporter started on a made-up 2-round run, and the text it writes."""
    out = io.StringIO()
    reporter = ConsoleReporter(console=Console(file=out, width=200, force_terminal=False))
    reporter.start(
        "abcdef0123456789", Path("runs/abcdef0123456789"), tiny_config(rounds=2, epochs=3)
    )
    return reporter, out


def tiny_folder(out: Path) -> Path:
    """The `tiny` run's folder inside a results folder."""
    return ResultsFolder(out).run(id_of_run(resolve_config("tiny"))).path


# ---------------------------------------------------------------- results folders

#: The `tiny` preset's config, as a run records it.
BASE = to_dict(tiny_config())


def round_row(k: int, acc: float | None, **over: Any) -> dict[str, Any]:
    """One recorded round as `Experiment` would record it."""
    row = {
        "round": k,
        "sparsity": 1 - 0.8**k,
        "params_remaining": 1000,
        "test_acc": acc,
        "test_loss": 1.0,
        "train_acc": acc,
        "train_acc_clean": acc,
        "memorization": 0.5,
        "val_acc": acc,
        "epochs": 2,
        "seconds": 1.0,
        "layer_density": {"fc1.weight": 0.8**k},
    }
    row.update(over)
    return row


def curve(accs: list[float | None], **over: Any) -> list[dict[str, Any]]:
    """Round rows 0, 1, … with these test accuracies."""
    return [round_row(k, a, **over) for k, a in enumerate(accs)]


def fill(out: Path, runs: list[tuple[str, dict[str, Any], list[dict[str, Any]]]]) -> Path:
    """A results folder holding ``runs`` as (run id, config, round rows)."""
    store = ResultsStore(out)
    for run_id, config, rows in runs:
        store.record_run(run_id, config)
        for row in rows:
            store.record_round(run_id, RoundRecord(**row))
    return out


def py_value(value: Any) -> Any:
    """A NumPy scalar as the Python value it holds (others as they are)."""
    return value.item() if isinstance(value, np.generic) else value


def write_store(df: pd.DataFrame, out: Path, extra: dict | None = None) -> Path:
    """Write a synthetic rounds DataFrame into a real results store (with layer densities);
    rows with ``collapsed`` 1 are recorded as the collapse stop records them."""
    store = ResultsStore(out)
    for run_id, run in df.groupby("run_id"):
        first = run.iloc[0]
        cfg = {k: py_value(first[k]) for k in ("model", "dataset", "noise", "weight_decay", "seed")}
        store.record_run(str(run_id), {**cfg, "epochs": 7, "threads": 1, **(extra or {})})
        for _, r in run.iterrows():
            row = {f: py_value(r.get(f)) for f in ("round", "sparsity", "test_acc", "memorization")}
            row["n_test"] = py_value(r.get("n_test"))
            row.update(
                params_remaining=1000,
                test_loss=1.0,
                train_acc=0.9,
                train_acc_clean=0.8,
                val_acc=py_value(r["val_acc"]),
                epochs=3,
                seconds=0.1,
                layer_density={"fc": 1 - py_value(r["sparsity"])},
            )
            if pd.notna(r.get("n_test")):  # the test-set size, where the frame has one
                row["n_test"] = int(r["n_test"])
            if r.get("collapsed") == 1:  # as the collapse stop records a skipped round
                row.update(collapsed=True, test_loss=None, train_acc=None, train_acc_clean=None,
                           epochs=0, seconds=0.0, layer_density={})  # fmt: skip
            store.record_round(str(run_id), RoundRecord(**row))
    return out


def sweep(rounds: int = 25, n_seeds: int = 3) -> pd.DataFrame:
    """Synthetic rounds: λ=0 with a dip, λ=0.01 without."""
    return pd.concat(
        [
            an.synthetic_rounds(
                "sdd", 0.10, n_seeds=n_seeds, rounds=rounds, weight_decay=0.0, seed=1
            ),
            an.synthetic_rounds("flat", n_seeds=n_seeds, rounds=rounds, weight_decay=0.01, seed=2),
        ]
    )


#: λ × ε × seed, 2 × 2 × 2, on the tiny preset: 3 epochs a round, 2 pruning rounds.
SWEEP_GRID = {"weight_decay": [0.0, 0.1], "noise": [0.1, 0.3], "seed": [0, 1]}
SWEEP_SETTINGS = ["epochs=3", "rounds=2", "threads=1"]


def sweep_grid_configs(**axes: list[Any]) -> list[Config]:
    """The configs of a `tiny` sweep over ``axes`` (default: SWEEP_GRID), with SWEEP_SETTINGS."""
    return [cfg for _, cfg in sweep_configs([Cell("tiny", axes or SWEEP_GRID)], SWEEP_SETTINGS)]


def comparable(out: Path) -> list[dict]:
    """Recorded round rows without the wall time and where they ran (device, threads)."""
    drop = {"seconds", *NON_SEMANTIC}
    return [{k: v for k, v in r.items() if k not in drop} for r in ResultsStore(out).round_rows()]


def epoch_count(out: Path) -> int:
    """How many epochs the results folder ``out`` records."""
    return len(ResultsStore(out).epoch_rows())


class RecordingBackend:
    """A sweep backend for tests: trains every job in this process and remembers what it was
    asked (each request checked, each job's run labels, each call's labels as one wave).
    It refuses runs of seed ``refused_seed`` in ``check_runs``, as a backend may."""

    def __init__(self, refused_seed: int | None = None) -> None:
        self.refused_seed = refused_seed
        self.checked: list[SweepRequest] = []
        self.jobs: list[str] = []
        self.waves: list[list[str]] = []

    def check(self, request: SweepRequest) -> None:
        """Remember the request."""
        self.checked.append(request)

    def check_runs(self, configs: Sequence[Config], request: SweepRequest) -> None:
        """Refuse the configured seed, accept everything else."""
        if any(cfg.seed == self.refused_seed for cfg in configs):
            raise ConfigError(f"the test backend refuses seed {self.refused_seed}")

    def run(self, jobs: Sequence[Config], request: SweepRequest, labels: Mapping[str, str]) -> None:
        """Train each job (one run) here, remembering its label and the wave they make."""
        self.waves.append(sorted(labels[id_of_run(c)] for c in jobs))
        for cfg in jobs:
            self.jobs.append(labels[id_of_run(cfg)])
            run_job(cfg, request.out_dir, quiet=True)


@contextmanager
def registered_backend(name: str, backend: RecordingBackend) -> Iterator[RecordingBackend]:
    """``backend`` registered as ``name`` for the duration, then removed again."""
    BACKENDS.register(name)(backend)
    try:
        yield backend
    finally:
        BACKENDS.unregister(name)


#: The analysis commands that must be total on any folder the tool could have written.
COMMANDS = ("analyze", "plot", "report", "export-rounds", "export-curves", "export-stats")


def run_command(out: Path, command: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run one analysis command on ``out``: (exit status, stderr)."""
    args = {
        "analyze": ["analyze", str(out)],
        "plot": ["plot", str(out)],
        "report": ["report", str(out)],
    }.get(command)
    if args is None:
        table = command.split("-", 1)[1]
        args = ["export", str(out), "-o", str(out / f"{table}.csv"), "--table", table]
    code, _, err = run_cli(args, capsys)
    return code, err


def assert_total(out: Path, capsys: pytest.CaptureFixture[str]) -> list[int]:
    """Every analysis command gives exit 0, or exit 2 with one ``sparsedd: error:`` line."""
    codes = []
    for command in COMMANDS:
        code, err = run_command(out, command, capsys)
        assert "Traceback" not in err, (command, err)
        assert code in (0, 2), (command, code, err)
        if code == 2:
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("sparsedd: error: "), (command, err)
        codes.append(code)
    return codes
