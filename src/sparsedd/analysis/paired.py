"""The test set's noise on the difference of two rounds, paired over the same test images.

Two rounds of a curve are scored on one test set, so the test set's sampling noise on their
difference is not that of two independent accuracies: an image both models get right (or both
wrong) adds nothing. Only the discordant images count (as in McNemar's test). With ``d_i`` the
per-image difference (+1: only b is right, −1: only a is, 0: both or neither; with several seeds,
the difference of the seeds' mean correctness), acc_b − acc_a is the mean of ``d`` over the n
test images, and over the draw of the test set its standard deviation is √(var(d) / n). For
one seed, var(d) = p₀₁ + p₁₀ − (p₁₀ − p₀₁)², which for rounds that err independently is the
binomial p_a(1 − p_a) + p_b(1 − p_b): the pairing never claims less noise than the data show.

This is the test-set part of the noise only: the seeds' own noise (training order, init, label
draw) is estimated apart and adds to it. All values are fractions (0.01: one point), as the
recorded accuracies are. Pure functions; the per-image correctness is recorded per round
(``store.schema.CORRECTNESS_FIELD``) and read with ``load_results(..., correctness=True)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from sparsedd.analysis.load import add_curve_column, collapsed_flags
from sparsedd.store.schema import CORRECTNESS_FIELD

#: The test-set SD of acc_b − acc_a for two columns a, b of a curve's ``seed_matrix``.
PairedNoise = Callable[[int, int], float]


def unpack(bits: bytes, n: int) -> np.ndarray:
    """The per-image correctness (n bools, the test set's order) of a recorded round."""
    return np.unpackbits(np.frombuffer(bits, dtype=np.uint8), count=n).astype(bool)


def pack(correct: np.ndarray) -> bytes:
    """Per-image correctness as it is recorded (``np.packbits``, big-endian bit order)."""
    return np.packbits(np.asarray(correct, dtype=bool)).tobytes()


def paired_diff_sd(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """The SD (a fraction) of acc_b − acc_a over the draw of the test set, from which of the
    same n test images models a and b got right (two boolean arrays of length n)."""
    return seed_paired_diff_sd(np.atleast_2d(correct_a), np.atleast_2d(correct_b))


def seed_paired_diff_sd(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """The SD (a fraction) over the draw of the test set of mean_b − mean_a, the difference of
    two seed-averaged accuracies: ``correct_a`` is (seeds × n) per-image correctness of round a,
    ``correct_b`` (seeds' × n) of round b, every seed scored on the same n images (the seeds of
    a and of b may differ, e.g. where a seed has broken down by round b). NaN without seeds."""
    a = np.atleast_2d(np.asarray(correct_a, dtype=float))
    b = np.atleast_2d(np.asarray(correct_b, dtype=float))
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"rounds scored on {a.shape[1]} and {b.shape[1]} test images")
    n = a.shape[1]
    if n == 0 or len(a) == 0 or len(b) == 0:
        return math.nan
    d = b.mean(axis=0) - a.mean(axis=0)  # per image: its share of the difference of means
    return math.sqrt(float(np.var(d)) / n)


def independent_diff_sd(acc_a: float, acc_b: float, n: int) -> float:
    """The binomial SD of acc_b − acc_a were the two rounds scored on independent test sets of
    n images each (or erred independently): √((p_a(1 − p_a) + p_b(1 − p_b)) / n)."""
    return math.sqrt((acc_a * (1 - acc_a) + acc_b * (1 - acc_b)) / n)


def paired_noise(rounds: pd.DataFrame, curve: str | None = None) -> PairedNoise | None:
    """For one curve of a rounds table read with ``load_results(dir, correctness=True)``: a
    function (a, b) → the paired test-set SD of the difference between its rounds a and b (the
    columns of ``seed_matrix``: the curve's recorded rounds in order, the round numbers when
    every round from 0 is recorded), over the seeds that trained each round.

    ``curve``: the label of the curve (the ``curve`` column); None: the table is one curve.
    None when any trained round of the curve lacks its correctness (an older database, or a
    run recorded partly before it was) or the rounds disagree on the test set's size: such a
    curve is judged as before, with the binomial noise.
    """
    if CORRECTNESS_FIELD not in rounds.columns or "n_test" not in rounds.columns:
        return None
    if curve is not None and "curve" not in rounds.columns:
        rounds = add_curve_column(rounds)
    members = rounds if curve is None else rounds[rounds["curve"] == curve]
    order = sorted(members["round"].unique())  # collapsed rounds keep their column
    rows = members[~collapsed_flags(members)]
    if rows.empty or rows[CORRECTNESS_FIELD].isna().any():
        return None
    sizes = {int(n) for n in pd.to_numeric(rows["n_test"], errors="coerce").dropna()}
    if len(sizes) != 1:
        return None
    n = sizes.pop()
    if any(len(bits) != (n + 7) // 8 for bits in rows[CORRECTNESS_FIELD]):
        return None
    per_round: dict[int, np.ndarray] = {}
    for k, group in rows.groupby("round"):
        runs = group.sort_values("run_id")
        per_round[order.index(k)] = np.stack([unpack(b, n) for b in runs[CORRECTNESS_FIELD]])

    def sd(a: int, b: int) -> float:
        """The paired test-set SD of round b's mean accuracy minus round a's."""
        if a not in per_round or b not in per_round:
            return math.nan
        return seed_paired_diff_sd(per_round[a], per_round[b])

    return sd
