"""The events a run reports while it trains, and a reporter that ignores them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from sparsedd.training.trainer import EpochStats


def rounds_span(rounds: Sequence[int]) -> str:
    """Rounds (in order) as a message names them: 'round 5', 'rounds 5..12',
    'rounds 0..2, 5, 7'."""
    if len(rounds) == 1:
        return f"round {rounds[0]}"
    parts, start = [], rounds[0]
    for prev, cur in zip(rounds, [*rounds[1:], None], strict=True):
        if cur != prev + 1:
            parts.append(f"{start}..{prev}" if prev != start else str(start))
            start = cur
    return "rounds " + ", ".join(parts)


class Reporter(Protocol):
    """Receives progress events of a run (the CLI draws bars and summary lines)."""

    def round_started(self, run: str, round_: int, epochs: int, first_epoch: int) -> None:
        """Round ``round_`` of ``epochs`` epochs starts (at ``first_epoch`` when resumed)."""
        ...

    def epoch_done(self, run: str, round_: int, epoch: int, stats: EpochStats) -> None:
        """Epoch ``epoch`` (0-based) of round ``round_`` is trained."""
        ...

    def round_done(self, run: str, row: dict[str, Any]) -> None:
        """Trained round ``row["round"]`` is recorded with ``row``."""
        ...

    def note(self, run: str, message: str) -> None:
        """One line worth telling a person (a wait, dropped rounds, a collapse …)."""
        ...


class SilentReporter:
    """A reporter that reports nothing."""

    def round_started(self, run: str, round_: int, epochs: int, first_epoch: int) -> None:
        """Ignore the event."""

    def epoch_done(self, run: str, round_: int, epoch: int, stats: EpochStats) -> None:
        """Ignore the event."""

    def round_done(self, run: str, row: dict[str, Any]) -> None:
        """Ignore the event."""

    def note(self, run: str, message: str) -> None:
        """Ignore the note."""
