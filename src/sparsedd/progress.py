"""Console progress for runs: a bar per round and a one-line summary per round."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sparsedd.train import EpochStats


def summary_line(run: str, row: dict[str, Any]) -> str:
    """One line describing a finished round."""
    val = row.get("val_acc")
    mem = row.get("memorization")
    return (
        f"{run[:8]} round {row['round']:>2}  sparsity {row['sparsity']:7.2%}  "
        f"test {row['test_acc']:6.2%}  "
        f"memorization {'-' if mem is None else f'{mem:6.2%}'}  "
        f"val {'-' if val is None else f'{val:6.2%}'}  "
        f"train {row['train_acc']:6.2%}  {row['seconds']:6.1f}s"
    )


class ConsoleReporter:
    """Draws a progress bar over the epochs of each round and prints round summaries."""

    def __init__(self, show_bars: bool = True) -> None:
        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.3f}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
            disable=not show_bars,
        )
        self.task: Any = None
        self.announcement = ""

    def start(self, run: str, folder: Path) -> None:
        """Remember the run; it is announced when its first round starts, so that an error
        found while restoring its state stays the only line printed."""
        self.announcement = f"run {run} → {folder}"

    def finish(self) -> None:
        """Announce a run that had nothing left to train."""
        if self.announcement:
            self.console.print(f"{self.announcement}: every round already recorded", soft_wrap=True)
            self.announcement = ""

    def __enter__(self) -> ConsoleReporter:
        self.progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.stop()

    def round_started(self, run: str, round_: int, epochs: int, first_epoch: int) -> None:
        """Open a bar for the round."""
        if self.announcement:
            self.console.print(self.announcement, soft_wrap=True)
            self.announcement = ""
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(
            f"round {round_}", total=epochs, completed=first_epoch, loss=float("nan")
        )

    def epoch_done(self, run: str, round_: int, epoch: int, stats: EpochStats) -> None:
        """Advance the bar."""
        self.progress.update(self.task, completed=epoch + 1, loss=stats.loss)

    def note(self, run: str, message: str) -> None:
        """Print one line about the run (e.g. rounds dropped to be recomputed)."""
        self.console.print(f"note: {message}", highlight=False, soft_wrap=True)

    def round_done(self, run: str, row: dict[str, Any]) -> None:
        """Print the round's summary line."""
        self.console.print(summary_line(run, row), highlight=False, soft_wrap=True)
