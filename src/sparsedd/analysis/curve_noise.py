"""The noise model of the SDD verdict: the 3-round smoothing it judges a curve on, and the
noise of a curve's seeds' mean between two smoothed rounds (the seeds' own noise, averaged over
seeds, and the test set's binomial noise, which every seed shares). ``verdict`` runs the test.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

#: One-sided 95% quantile of the standard normal (each bound's level).
Z_ONE_SIDED = 1.6448536269514722
#: Rounds either side of a round in its running mean (1: a 3-round mean).
SMOOTH_HALF = 1


def smooth(values: np.ndarray) -> np.ndarray:
    """3-round running mean of a curve's pruned rounds (round 0, the dense model, kept as is).

    Real dips span several rounds; single-round noise does not survive the average. The window
    is cut at the curve's ends; missing (NaN) rounds are left out of each window.
    """
    return smoothing_matrix(len(values)) @ np.nan_to_num(values) / _window_counts(values)


def _window_counts(values: np.ndarray) -> np.ndarray:
    """Per round, the share of its window's weight that falls on finite values."""
    finite = np.isfinite(values).astype(float)
    with np.errstate(all="ignore"):
        counts = smoothing_matrix(len(values)) @ finite
    return np.where(counts > 0, counts, np.nan)


@lru_cache(maxsize=256)
def smoothing_matrix(length: int) -> np.ndarray:
    """The linear map of ``smooth`` for a curve of ``length`` rounds (rows sum to one)."""
    w = np.zeros((length, length))
    if length:
        w[0, 0] = 1.0
    for k in range(1, length):
        lo, hi = max(1, k - SMOOTH_HALF), min(length - 1, k + SMOOTH_HALF)
        w[k, lo : hi + 1] = 1.0 / (hi - lo + 1)
    return w


def noise_sd(acc: np.ndarray) -> tuple[float, int]:
    """(σ, its degrees of freedom): the noise of one seed's accuracy at one round.

    Two-way residuals (seed level and round removed) over the rounds every seed has, with two
    or more seeds; else the second differences of the one curve's pruned rounds.
    """
    seeds = acc.shape[0]
    complete = acc[:, np.isfinite(acc).all(axis=0)]
    if seeds >= 2 and complete.shape[1] >= 2:
        resid = (
            complete
            - complete.mean(axis=1, keepdims=True)
            - complete.mean(axis=0, keepdims=True)
            + complete.mean()
        )
        dof = (seeds - 1) * (complete.shape[1] - 1)
        return math.sqrt(float((resid**2).sum() / dof)), dof
    row = acc[0][np.isfinite(acc[0])][1:]  # the dense round trains longer: leave it out
    if len(row) < 3:
        return 0.0, 0
    return math.sqrt(float(np.mean(np.diff(row, n=2) ** 2) / 6)), len(row) - 2


def estimation_factor(dof: int) -> float:
    """t(0.95, dof) / z(0.95): how much wider a bound gets when σ is estimated, not known."""
    if dof <= 0:
        return math.inf
    z = Z_ONE_SIDED
    t = z + (z**3 + z) / (4 * dof) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof**2)
    return t / z


def binomial_sd(acc: np.ndarray, n_test: float | None) -> float:
    """√(p(1−p)/n): the test set's noise at the curve's mean accuracy (0 when n is unknown).

    The seeds share the test set, so this part of the noise does not average out over seeds.
    """
    if not n_test:
        return 0.0
    with np.errstate(all="ignore"):
        p = float(np.nanmean(acc))
    return math.sqrt(max(p * (1 - p), 0.0) / n_test)


def _seed_inflation(smoothed: np.ndarray, w: np.ndarray, a: int, b: int, sigma: float) -> float:
    """How much more the seeds' own differences between rounds ``a`` and ``b`` vary than σ
    predicts, where significantly more (a one-sided 95% χ² test), else 1: guards the pooled σ
    against noise that is larger at the valley, or that persists across rounds (a seed's
    excursion spanning several rounds)."""
    diffs = smoothed[:, b] - smoothed[:, a]
    diffs = diffs[np.isfinite(diffs)]
    predicted = sigma**2 * float(np.sum((w[b] - w[a]) ** 2))
    if len(diffs) < 2 or predicted <= 0:
        return 1.0
    ratio = float(np.var(diffs, ddof=1)) / predicted
    return ratio if ratio > chi2_95(len(diffs) - 1) / (len(diffs) - 1) else 1.0


def chi2_95(dof: int) -> float:
    """The 0.95 quantile of χ² with ``dof`` degrees of freedom (Wilson–Hilferty; exact for 1)."""
    if dof == 1:
        return 1.959964**2  # P(|Z| > 1.96) = 5%
    h = 2 / (9 * dof)
    return dof * (1 - h + Z_ONE_SIDED * math.sqrt(h)) ** 3


class SeedNoise:
    """The noise of a curve's seeds' mean, for the difference between two smoothed rounds."""

    def __init__(self, region: np.ndarray, n_test: float | None) -> None:
        self.sigma, self.dof = noise_sd(region)
        self.binom = binomial_sd(region, n_test)
        self.n_seeds = len(region)
        self.seeds = max(1, int(np.isfinite(region).sum(axis=0).min()))
        self.w = smoothing_matrix(region.shape[1])
        self.smoothed = np.vstack([smooth(row) for row in region])

    def spread(self, a: int, b: int) -> float:
        """‖w_a − w_b‖: how a unit noise per round carries into smoothed round b minus a."""
        return float(np.linalg.norm(self.w[b] - self.w[a]))

    def own(self, a: int, b: int) -> float:
        """The seeds' own noise, averaged over seeds (estimated, so widened to its t quantile).
        One seed's σ holds the test set's noise too."""
        factor = estimation_factor(self.dof) if self.sigma > 0 else 0.0
        if self.n_seeds == 1:
            return self.sigma * factor
        inflation = _seed_inflation(self.smoothed, self.w, a, b, self.sigma)
        return math.sqrt(inflation / self.seeds) * self.sigma * factor

    def total(self, a: int, b: int) -> float:
        """Own noise and the test set's binomial noise (shared by every seed: it does not
        average out) together."""
        if self.n_seeds == 1:
            return max(self.own(a, b), self.binom)
        return math.hypot(self.own(a, b), self.binom)
