"""The test-set size of rounds recorded without one (databases written before ``n_test`` was).

The verdict's test-set noise needs it: taken as unknown, one seed decides nothing and a curve
may stay inconclusive. Two ways recover it, each only when the rounds agree with it:

1. **The dataset**: the built-in datasets' test sets have a known size, and every run is
   tested on the whole test set (the validation split is held out of the training set).
2. **The granularity of the accuracies**: a test accuracy is a count of correct images over
   n, so the smallest n for which every recorded accuracy of the run is such a count (within
   float32 rounding) is n, when the run has enough distinct accuracies that a multiple of it
   is not as likely (``MIN_DISTINCT``: all counts even by chance has odds 2^-8).

Where neither holds, the size stays missing. Pure functions on a rounds DataFrame.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

#: Test images of the built-in datasets (their loaders in ``sparsedd.data.datasets``; the test
#: suite checks the generated one against its loader).
KNOWN_TEST_SIZES = {
    "mnist": 10_000,
    "fashion-mnist": 10_000,
    "cifar10": 10_000,
    "cifar100": 10_000,
    "synthetic": 512,
}
#: Largest test set the granularity search tries.
MAX_TEST_SIZE = 100_000
#: Distinct accuracies a run needs before its granularity is trusted.
MIN_DISTINCT = 8
#: How far a recorded accuracy may sit from count / n: float32's rounding of a fraction ≤ 1.
TOLERANCE = 1e-7

DATASET, GRANULARITY = "its dataset", "the granularity of its accuracies"


def is_count_over(values: Sequence[float], n: int) -> bool:
    """Whether every accuracy in ``values`` is (within float32 rounding) a count over ``n``."""
    acc = np.asarray(values, dtype=float)
    return bool(np.all(np.abs(np.rint(acc * n) / n - acc) <= TOLERANCE))


def size_from_granularity(values: Sequence[float]) -> int | None:
    """The smallest n ≤ MAX_TEST_SIZE over which every accuracy is a count, or None when there
    are fewer than MIN_DISTINCT distinct accuracies or no such n."""
    acc = np.unique(np.asarray([v for v in values if np.isfinite(v)], dtype=float))
    if len(acc) < MIN_DISTINCT:
        return None
    for start in range(1, MAX_TEST_SIZE + 1, 4096):  # in blocks: a few MB at a time
        n = np.arange(start, min(start + 4096, MAX_TEST_SIZE + 1), dtype=float)[:, None]
        fits = np.all(np.abs(np.rint(acc * n) / n - acc) <= TOLERANCE, axis=1)
        if fits.any():
            return int(n[int(np.argmax(fits)), 0])
    return None


def recover_size(dataset: object, values: Sequence[float]) -> tuple[int | None, str]:
    """(n, how) for one run's recorded test accuracies: from its dataset's known size when
    every accuracy is a count over it, else from their granularity; (None, "") if neither."""
    known = KNOWN_TEST_SIZES.get(dataset) if isinstance(dataset, str) else None
    finite = [v for v in values if np.isfinite(v)]
    if known is not None and finite and is_count_over(finite, known):
        return known, DATASET
    found = size_from_granularity(finite)
    return (found, GRANULARITY) if found is not None else (None, "")


def recover_n_test(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """``df`` with ``n_test`` filled in for runs that recorded none, where it can be recovered,
    and one note per size and way it was recovered, naming the runs.

    Runs that recorded their size are left alone; where it cannot be recovered it stays
    missing, without a note here: the verdict says what an unknown size leaves open.
    """
    if "run_id" not in df or "test_acc" not in df:
        return df, []
    n_test = df["n_test"] if "n_test" in df else pd.Series(np.nan, index=df.index)
    n_test = pd.to_numeric(n_test, errors="coerce")
    found: dict[tuple[int | None, str], list[str]] = {}
    out = df.assign(n_test=n_test)
    for run, rows in df.groupby("run_id", sort=True):
        if n_test[rows.index].notna().any():
            continue
        # a collapsed round has no accuracy: dropped with the other missing ones
        values = pd.to_numeric(rows["test_acc"], errors="coerce")
        dataset = rows["dataset"].iloc[0] if "dataset" in rows else None
        n, how = recover_size(dataset, list(values.dropna()))
        found.setdefault((n, how), []).append(str(run))
        if n is not None:
            out.loc[rows.index, "n_test"] = n
    return out, [_note(n, how, runs) for (n, how), runs in found.items() if n is not None]


def _note(n: int, how: str, runs: list[str]) -> str:
    """The note on runs whose test-set size was recovered."""
    which = f"run{'s' if len(runs) > 1 else ''} {', '.join(runs[:3])}"
    which += f" and {len(runs) - 3} more" if len(runs) > 3 else ""
    how = how.replace("its ", "their ") if len(runs) > 1 else how
    return (
        f"{which} recorded no test-set size (written before sparsedd recorded it): "
        f"{n:,} test images, recovered from {how}"
    )
