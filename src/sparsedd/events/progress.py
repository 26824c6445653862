"""Console progress for runs: a bar per round and a one-line summary per round."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sparsedd.config import round_epochs
from sparsedd.training.trainer import EpochStats


def duration(seconds: float) -> str:
    """A duration for people: '45s', '7m 12s', '2h 05m'."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def summary_line(run: str, row: dict[str, Any], rounds: int | None = None, eta: str = "") -> str:
    """One line describing a finished round: round k/N, its metrics, its epochs, the run's ETA."""
    val = row.get("val_acc")
    mem = row.get("memorization")
    of = f"/{rounds}" if rounds is not None else ""
    epochs = row.get("round_epochs", row.get("epochs"))
    return (
        f"{run} round {row['round']:>2}{of}  sparsity {row['sparsity']:7.2%}  "
        f"test {row['test_acc']:6.2%}  "
        f"memorization {'-' if mem is None else f'{mem:6.2%}'}  "
        f"val {'-' if val is None else f'{val:6.2%}'}  "
        f"train {row['train_acc']:6.2%}  {epochs} epochs {row['seconds']:6.1f}s"
        + (f"  {eta}" if eta else "")
    )


@dataclass
class RunPlan:
    """What the reporter knows of one run: its name, its rounds' epochs, its pace so far."""

    label: str
    announcement: str
    epochs: list[int] = field(default_factory=list)  # per round, round 0 first
    trained: int = 0  # epochs trained in this process
    training_s: float = 0.0  # ... and the seconds they took
    first_epoch_s: float | None = None  # the first of them: warm-up (torch.compile) included
    evaluated: int = 0  # rounds evaluated (and saved) in this process
    evaluating_s: float = 0.0  # ... and the seconds that took
    last: float | None = None  # when the last event of this run came

    def lap(self) -> float:
        """Seconds since the last event of this run (0 for the first)."""
        now = time.monotonic()
        seconds = 0.0 if self.last is None else now - self.last
        self.last = now
        return seconds

    def epoch_done(self, seconds: float) -> None:
        """Count one trained epoch of ``seconds``."""
        if self.first_epoch_s is None:
            self.first_epoch_s = seconds
        self.training_s += seconds
        self.trained += 1

    def epoch_pace(self) -> float:
        """Mean seconds per epoch, leaving out this process's first epoch once there are others:
        it carries one-time work (torch.compile's kernels, warm caches) no later epoch repeats."""
        if self.trained > 1 and self.first_epoch_s is not None:
            return (self.training_s - self.first_epoch_s) / (self.trained - 1)
        return self.training_s / self.trained

    def eta(self, round_: int, epochs_left_in_round: int, evaluated: bool = False) -> str:
        """Time left for the run at the pace of this process: epochs left times the mean epoch
        time, plus rounds left to evaluate times the mean evaluation time."""
        if not self.epochs:
            return ""
        last_round = len(self.epochs) - 1
        if round_ >= last_round and epochs_left_in_round == 0 and evaluated:
            return "run done"
        if not self.trained:
            return ""
        left = epochs_left_in_round + sum(self.epochs[round_ + 1 :])
        seconds = self.epoch_pace() * left
        if self.evaluated:
            seconds += self.evaluating_s / self.evaluated * (last_round - round_ + (not evaluated))
        return f"ETA run {duration(seconds)}"


class ConsoleReporter:
    """Draws a progress bar over the epochs of each round and prints round summaries."""

    def __init__(self, show_bars: bool = True, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("epochs  {task.fields[loss]}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[eta]}"),
            console=self.console,
            transient=True,
            disable=not show_bars or not self.console.is_terminal,  # bars need a terminal
        )
        self.task: Any = None
        self.plans: dict[str, RunPlan] = {}

    def start(self, run: str, folder: Path, cfg: Any = None, label: str = "") -> None:
        """Remember the run (its name, and its rounds' epochs when ``cfg`` is given); it is
        announced when its first round starts, so that an error found while restoring its state
        stays the only line printed. ``label`` names it by what differs in a grid."""
        name = f"{label} ({run})" if label else run
        plan = RunPlan(label or run[:8], f"run {name} → {folder}")
        if cfg is not None:
            plan.epochs = [round_epochs(cfg, k) for k in range(cfg.rounds + 1)]
        self.plans[run] = plan

    def _plan(self, run: str) -> RunPlan:
        if run not in self.plans:
            self.plans[run] = RunPlan(run[:8], "")
        return self.plans[run]

    def _announce(self, run: str) -> None:
        plan = self._plan(run)
        if plan.announcement:
            self.console.print(plan.announcement, soft_wrap=True, highlight=False)
            plan.announcement = ""

    def finish(self) -> None:
        """Announce the runs that had nothing left to train."""
        for plan in self.plans.values():
            if plan.announcement:
                self.console.print(
                    f"{plan.announcement}: every round already recorded",
                    soft_wrap=True,
                    highlight=False,
                )
                plan.announcement = ""

    def note(self, run: str, message: str) -> None:
        """Print one line about the run."""
        self._announce(run)
        self.console.print(f"{self._plan(run).label}: {message}", soft_wrap=True, highlight=False)

    def __enter__(self) -> ConsoleReporter:
        self.progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.stop()

    def _of(self, run: str) -> str:
        plan = self._plan(run)
        return f"/{len(plan.epochs) - 1}" if plan.epochs else ""

    def round_started(self, run: str, round_: int, epochs: int, first_epoch: int) -> None:
        """Open a bar for the round; say so when it resumes from a saved epoch."""
        self._announce(run)
        plan = self._plan(run)
        if first_epoch > 0:
            where = (
                f"at epoch {first_epoch + 1} of {epochs} ({first_epoch} already trained)"
                if first_epoch < epochs  # else a kill came after training, before the record
                else f"after its {epochs} trained epoch(s): evaluating and recording it"
            )
            self.console.print(
                f"{plan.label} resuming round {round_}{self._of(run)} {where}",
                soft_wrap=True,
                highlight=False,
            )
        plan.lap()
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(
            f"{plan.label} round {round_}{self._of(run)}",
            total=epochs,
            completed=first_epoch,
            loss="loss -",  # no batch trained yet: nothing to show
            eta="",
        )

    def epoch_done(self, run: str, round_: int, epoch: int, stats: EpochStats) -> None:
        """Advance the bar."""
        plan = self._plan(run)
        plan.epoch_done(plan.lap())
        total = plan.epochs[round_] if round_ < len(plan.epochs) else epoch + 1
        if self.task is not None:
            self.progress.update(
                self.task,
                completed=epoch + 1,
                loss=f"loss {stats.loss:.3f}",
                eta=plan.eta(round_, total - epoch - 1),
            )

    def round_done(self, run: str, row: dict[str, Any]) -> None:
        """Print the round's summary line (none for a round recorded as collapsed: the run's
        note has said so)."""
        if row.get("collapsed"):
            return
        plan = self._plan(run)
        plan.evaluating_s += plan.lap()
        plan.evaluated += 1
        rounds = len(plan.epochs) - 1 if plan.epochs else None
        line = summary_line(plan.label, row, rounds, plan.eta(row["round"], 0, evaluated=True))
        self.console.print(line, highlight=False, soft_wrap=True)
