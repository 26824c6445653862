"""Progress a person can read: round k/N, epochs, ETA, resume lines, grid names and summary."""

from __future__ import annotations

import io
import re

from rich.console import Console
from support import console_reporter, run_process

from sparsedd.events.progress import ConsoleReporter, duration
from sparsedd.training.trainer import EpochStats

ROW = {
    "round": 1,
    "sparsity": 0.2,
    "test_acc": 0.5,
    "memorization": 0.4,
    "val_acc": None,
    "train_acc": 0.9,
    "round_epochs": 3,
    "seconds": 1.5,
}


def _bar(reporter: ConsoleReporter) -> str:
    """The progress bar's line as it is drawn now."""
    console = Console(file=io.StringIO(), width=200, record=True)
    console.print(reporter.progress.make_tasks_table(reporter.progress.tasks))
    return console.export_text()


def test_bar_says_round_k_of_n_and_no_nan_loss_before_the_first_batch():
    reporter, _ = console_reporter()
    reporter.round_started("abcdef0123456789", 1, 3, 0)
    bar = _bar(reporter)
    assert "round 1/2" in bar and "0/3" in bar
    assert "nan" not in bar and "loss -" in bar
    reporter.epoch_done("abcdef0123456789", 1, 0, EpochStats(loss=0.5, acc=0.7))
    bar = _bar(reporter)
    assert "loss 0.500" in bar and "1/3" in bar and "ETA run" in bar


def test_round_line_has_round_k_of_n_epochs_and_eta():
    reporter, out = console_reporter()
    run = "abcdef0123456789"
    reporter.round_started(run, 1, 3, 0)
    for epoch in range(3):
        reporter.epoch_done(run, 1, epoch, EpochStats(loss=0.5, acc=0.7))
    reporter.round_done(run, ROW)
    reporter.round_started(run, 2, 3, 0)
    reporter.round_done(run, {**ROW, "round": 2})
    lines = out.getvalue().splitlines()
    assert lines[0] == f"run {run} → runs/{run}"
    assert re.match(
        r"abcdef01 round  1/2  sparsity  20\.00% .* 3 epochs +1\.5s  ETA run \d", lines[1]
    )
    assert lines[2].startswith("abcdef01 round  2/2") and lines[2].endswith("run done")


def test_a_resumed_round_says_where_it_resumes():
    reporter, out = console_reporter()
    reporter.round_started("abcdef0123456789", 1, 3, 2)
    lines = out.getvalue().splitlines()
    assert lines[1] == "abcdef01 resuming round 1/2 at epoch 3 of 3 (2 already trained)"


def test_durations_read_as_time():
    assert [duration(s) for s in (4.4, 75, 3600 + 300)] == ["4s", "1m 15s", "1h 05m"]


def test_a_grid_names_runs_by_what_differs_and_ends_with_the_next_command(tmp_path):
    out = tmp_path / "grid"
    args = ["--preset", "tiny", "--set", "rounds=1", "--set", "epochs=1", "--set", "threads=1"]
    grid = ["--grid", "weight_decay=0,0.1", "--grid", "seed=0,1"]
    proc = run_process("run", *args, *grid, "--out", str(out), check=True)
    lines = proc.stderr.splitlines()
    assert any(
        re.match(r"run weight_decay=0\.1 seed=1 \([0-9a-f]{16}\) → ", line) for line in lines
    )
    assert any(line.startswith("weight_decay=0.1 seed=1 round  1/1  ") for line in lines)
    assert len([line for line in lines if " round " in line]) == 4 * 2
    assert re.fullmatch(
        rf"grid done: 4 runs in \S+( \S+)?, results in {re.escape(str(out))}; "
        rf"next: sparsedd report {re.escape(str(out))}",
        lines[-1],
    )
