"""Has the dense round converged on the noisy labels? Pure functions, no pandas or torch.

Every pruning round retrains with the full schedule, so a dense round that stopped while its
training accuracy on the noisy labels was still climbing keeps fitting them in the next
rounds, with or without pruning: the first rounds then fall because of more training. The
check reads the dense round's per-epoch training accuracy (on the noisy labels).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

#: Training accuracy (a fraction) the dense round may still gain over its last fifth of epochs
#: and count as converged.
CLIMB = 0.01


def dense_climb(train_acc: Sequence[float]) -> tuple[float, int] | None:
    """(gain, epochs): how much the mean training accuracy of the last fifth of the dense
    round's epochs exceeds that of the fifth before it, and that fifth's length in epochs;
    None with fewer than 5 epochs (or a non-finite accuracy among those read)."""
    n = len(train_acc)
    if n < 5:
        return None
    w = max(1, n // 5)
    last, before = train_acc[n - w :], train_acc[n - 2 * w : n - w]
    if not all(math.isfinite(a) for a in [*last, *before]):
        return None
    return sum(last) / w - sum(before) / w, w


def dense_epoch_accs(epochs: Sequence[Mapping[str, object]]) -> dict[str, list[float]]:
    """Per run, the dense round's training accuracy in epoch order, from epoch rows
    (``run_id``, ``round``, ``epoch``, ``train_acc``: what ``ResultsStore.epoch_rows`` gives)."""
    by_run: dict[str, dict[int, float]] = {}
    for row in epochs:
        acc, epoch = row.get("train_acc"), row.get("epoch")
        if row.get("round") == 0 and isinstance(acc, int | float) and isinstance(epoch, int):
            by_run.setdefault(str(row["run_id"]), {})[epoch] = float(acc)
    return {
        run: [accs[e] for e in sorted(accs)]
        for run, accs in by_run.items()
        if sorted(accs) == list(range(len(accs)))  # every epoch recorded
    }


def not_converged(train_acc: Sequence[float]) -> str | None:
    """Why the dense round has not converged (its accuracy still climbing), or None."""
    climb = dense_climb(train_acc)
    if climb is None or climb[0] <= CLIMB:
        return None
    gain, w = climb
    return (
        f"its training accuracy on the noisy labels still rose {100 * gain:.1f} points over its "
        f"last {w} of {len(train_acc)} epochs"
    )


def fix_hint(dense_epochs: int | None, control: bool = False) -> str:
    """The fix: more dense epochs (three times as many, when known) or, for a pruned run, the
    control (``control``: the run is a control itself)."""
    more = f"--set dense_epochs={3 * dense_epochs}" if dense_epochs else "more dense_epochs"
    fix = f"train the dense round to convergence ({more})"
    if control:
        return fix
    return f"{fix}, or add the control (--control) to tell the fall that more training causes"
