"""The SDD verdict: a calibrated three-way test on one curve (seeds × rounds of test accuracy).

The test, step by step (the docs' "The verdict" page argues each choice):

1. **Collapse.** A curve's final collapse starts at the first round after which its accuracy
   stays more than COLLAPSE_MIN_DROP (10 points) below its dense accuracy to the end. Rounds
   from the first collapse of the seeds' mean or of any one seed on are left out: wiggles inside
   the collapse, or a mean that mixes a broken seed with working ones, are no double descent.
2. **Noise.** Two parts. The seeds' own noise σ (training order, initialisation, the label
   draw) is estimated from the residuals of a two-way (seed + round) fit, so that a seed sitting
   above another all along (its level) does not count: each seed's own fall and rise are what
   is compared. It averages over S seeds (σ/√S, widened to its t quantile since σ is
   estimated), and where the seeds' own falls or rises vary significantly more than σ predicts
   (a χ² test), that larger spread is used. The test set's binomial noise √(p(1−p)/n) is
   shared by every seed (one test set), so it does not average out; the two add in quadrature.
   With one seed, σ comes from the curve's second differences and holds both parts; without a
   test-set size one seed decides nothing.
3. **Valley.** Each seed's curve and their mean are smoothed over 3 rounds (``smooth``). On the
   smoothed mean, the dip is the round whose fall (from the highest earlier round) and rise (to
   the highest later round, the peak) are both as large as possible.
4. **Selection.** Searching every round for a valley finds one in pure noise. The margin that
   noise alone produces is calibrated by simulation: the same search on flat curves of the same
   length with the same smoothing and unit noise (a seeded generator, so the margin is a fixed
   number per curve length; a flat curve is the least favourable null, as a trend shrinks either
   the fall or the rise). Its 95th percentile, times the mean's noise, is subtracted from the
   fall and the rise: their lower bounds.
5. **Verdict.** ``SDD`` when the lower bounds of the fall and of the rise both exceed
   ``min_rise`` (an intersection-union test: at most a 5% false alarm on a flat curve).
   ``no SDD`` when there is no valley before the collapse, or the upper bound (the estimate
   plus 1.645 standard errors, without selection credit: conservative) of the fall or of the
   rise is below ``min_rise``. Otherwise ``inconclusive``, saying what would settle it.
   One seed gives at most an indicative verdict.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

#: Minimum fall and rise (as fractions) that count as SDD: the verdict's effect size.
DEFAULT_MIN_RISE = 0.005
#: The least drop below dense (as a fraction) that can start the final collapse.
COLLAPSE_MIN_DROP = 0.10
#: One-sided level of each bound (the verdict's false-alarm rate on a flat curve).
ALPHA = 0.05
Z_ONE_SIDED = 1.6448536269514722
#: Simulated null curves per curve length (seeded: the margin is a fixed function of length).
NULL_DRAWS = 20_000
NULL_SEED = 20231106
#: Rounds either side of a round in its running mean (1: a 3-round mean).
SMOOTH_HALF = 1
#: Verdicts.
SDD, NO_SDD, INCONCLUSIVE = "SDD", "no SDD", "inconclusive"
VERDICTS = (SDD, NO_SDD, INCONCLUSIVE)


@dataclass(frozen=True)
class Verdict:
    """The verdict on one curve, the valley it judged and the bounds it used (fractions)."""

    verdict: str
    note: str
    n_seeds: int
    dip_round: int | None = None
    peak_round: int | None = None
    fall: float | None = None
    fall_low: float | None = None
    fall_high: float | None = None
    rise: float | None = None
    rise_low: float | None = None
    rise_high: float | None = None
    dip_acc: float | None = None
    peak_acc: float | None = None
    noise_sd: float | None = None
    selection_margin: float | None = None
    collapse_round: int | None = None


def smooth(values: np.ndarray) -> np.ndarray:
    """3-round running mean of a curve's pruned rounds (round 0, the dense model, kept as is).

    Real dips span several rounds; single-round noise does not survive the average. The window
    is cut at the curve's ends; missing (NaN) rounds are left out of each window.
    """
    return _smoothing_matrix(len(values)) @ np.nan_to_num(values) / _window_counts(values)


def _window_counts(values: np.ndarray) -> np.ndarray:
    """Per round, the share of its window's weight that falls on finite values."""
    finite = np.isfinite(values).astype(float)
    with np.errstate(all="ignore"):
        counts = _smoothing_matrix(len(values)) @ finite
    return np.where(counts > 0, counts, np.nan)


@lru_cache(maxsize=256)
def _smoothing_matrix(length: int) -> np.ndarray:
    """The linear map of ``smooth`` for a curve of ``length`` rounds (rows sum to one)."""
    w = np.zeros((length, length))
    if length:
        w[0, 0] = 1.0
    for k in range(1, length):
        lo, hi = max(1, k - SMOOTH_HALF), min(length - 1, k + SMOOTH_HALF)
        w[k, lo : hi + 1] = 1.0 / (hi - lo + 1)
    return w


def collapse_round(values: np.ndarray) -> int | None:
    """First round of the final collapse of one curve (None when it never collapses).

    The collapse starts where accuracy falls more than COLLAPSE_MIN_DROP below the dense
    accuracy and never comes back within it: a dip that recovers is no collapse, a partial
    recovery that stays far below dense (a model breaking down) is part of it.
    """
    values = np.asarray(values, dtype=float)
    level = values[0] - COLLAPSE_MIN_DROP
    above = np.flatnonzero(~(values < level))  # NaN counts as not below
    start = int(above[-1]) + 1 if above.size else 0
    return start if start < len(values) else None


def first_collapse(acc: np.ndarray) -> int | None:
    """The first round at which the seeds' mean or any one seed has collapsed (None: never).

    Past it the mean mixes a broken model with working ones: no valley there counts."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(acc, axis=0)
    starts = [collapse_round(row) for row in (mean, *acc) if np.isfinite(row[0])]
    found = [k for k in starts if k is not None]
    return min(found) if found else None


def best_valley(curve: np.ndarray) -> tuple[int, int, int, float, float] | None:
    """(high, dip, peak, fall, rise) of the valley maximising min(fall, rise) on ``curve``.

    The dip is a round after the dense one; the fall is from the highest earlier round (the
    high), the rise to the highest later round (the peak). None for curves under 3 rounds.
    """
    if len(curve) < 3:
        return None
    best = None
    for i in range(1, len(curve) - 1):
        h = int(np.argmax(curve[:i]))
        j = i + 1 + int(np.argmax(curve[i + 1 :]))
        fall, rise = float(curve[h] - curve[i]), float(curve[j] - curve[i])
        if best is None or min(fall, rise) > min(best[3], best[4]):
            best = (h, i, j, fall, rise)
    return best


def _null_depths(curves: np.ndarray) -> np.ndarray:
    """min(fall, rise) of the best valley of each row of ``curves`` (vectorised best_valley)."""
    left = np.maximum.accumulate(curves, axis=1)
    right = np.maximum.accumulate(curves[:, ::-1], axis=1)[:, ::-1]
    fall = left[:, :-2] - curves[:, 1:-1]
    rise = right[:, 2:] - curves[:, 1:-1]
    return np.minimum(fall, rise).max(axis=1)


@lru_cache(maxsize=128)
def null_margin(length: int, quantile: float = 1 - ALPHA) -> float:
    """The ``quantile`` of the deepest valley (min of fall and rise) that smoothing and the
    valley search find in a flat curve of ``length`` rounds with unit i.i.d. noise.

    Flat is the least favourable curve without SDD: a trend makes either the fall or the rise
    smaller. Seeded, so a fixed number per length (the calibration bench measures the result).
    """
    if length < 3:
        return 0.0
    rng = np.random.default_rng([NULL_SEED, length])
    noise = rng.standard_normal((NULL_DRAWS, length))
    smoothed = noise @ _smoothing_matrix(length).T
    return float(np.quantile(_null_depths(smoothed), quantile))


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


class _Noise:
    """The noise of a curve's seeds' mean, for the difference between two smoothed rounds."""

    def __init__(self, region: np.ndarray, n_test: float | None) -> None:
        self.sigma, self.dof = noise_sd(region)
        self.binom = binomial_sd(region, n_test)
        self.n_seeds = len(region)
        self.seeds = max(1, int(np.isfinite(region).sum(axis=0).min()))
        self.w = _smoothing_matrix(region.shape[1])
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


def sdd_verdict(
    seed_acc: np.ndarray, n_test: float | None = None, min_rise: float = DEFAULT_MIN_RISE
) -> Verdict:
    """The verdict on one curve: ``seed_acc`` is (seeds × rounds) test accuracy as fractions,
    NaN where a seed lacks a round; round 0 is the dense model. ``n_test``: test images (None:
    unknown; then one seed is never enough). See the module docstring."""
    acc = np.atleast_2d(np.asarray(seed_acc, dtype=float))
    acc = acc[np.isfinite(acc).any(axis=1)]
    n_seeds = len(acc)
    if n_seeds == 0 or acc.shape[1] == 0:
        return Verdict(INCONCLUSIVE, "no recorded accuracy", 0)
    columns = np.flatnonzero(np.isfinite(acc).any(axis=0))
    acc = acc[:, columns]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(acc, axis=0)
    collapse = first_collapse(acc)
    region = acc[:, : collapse if collapse is not None else acc.shape[1]]
    at = _Rounds(columns, collapse)
    if region.shape[1] < 4:
        return Verdict(
            INCONCLUSIVE, "too few rounds before the collapse: run more rounds", n_seeds,
            collapse_round=at.collapse,
        )  # fmt: skip
    length = region.shape[1]
    curve = smooth(mean[:length])
    high, dip, peak, fall, rise = best_valley(curve)  # type: ignore[misc]  # length ≥ 4
    noise = _Noise(region, n_test)
    sigma = math.hypot(noise.sigma, noise.binom) if n_seeds == 1 else noise.sigma
    if min(fall, rise) <= 0:
        return Verdict(
            NO_SDD, "no valley before the collapse", n_seeds, dip_round=at.round(dip),
            peak_round=at.round(peak), fall=fall, rise=rise, dip_acc=float(curve[dip]),
            peak_acc=float(curve[peak]), noise_sd=sigma, collapse_round=at.collapse,
        )  # fmt: skip
    unit = null_margin(length)
    fall_noise, rise_noise = noise.total(high, dip), noise.total(dip, peak)
    v = Verdict(
        INCONCLUSIVE, "", n_seeds, dip_round=at.round(dip), peak_round=at.round(peak),
        fall=fall, fall_low=fall - unit * fall_noise,
        fall_high=fall + Z_ONE_SIDED * fall_noise * noise.spread(high, dip),
        rise=rise, rise_low=rise - unit * rise_noise,
        rise_high=rise + Z_ONE_SIDED * rise_noise * noise.spread(dip, peak),
        dip_acc=float(curve[dip]), peak_acc=float(curve[peak]), noise_sd=sigma,
        selection_margin=unit * max(fall_noise, rise_noise), collapse_round=at.collapse,
    )  # fmt: skip
    return dataclasses.replace(v, **_decide(v, noise, min_rise, n_test))


def _decide(v: Verdict, noise: _Noise, min_rise: float, n_test: float | None) -> dict[str, str]:
    """The verdict and its note from the bounds of ``v``."""
    cleared = v.fall_low > min_rise and v.rise_low > min_rise
    if v.n_seeds == 1 and not n_test and cleared:
        note = "one seed and an unknown test-set size: its noise is unknown; add seeds"
        return {"verdict": INCONCLUSIVE, "note": note}
    one_seed = "indicative: one seed; add seeds to confirm" if v.n_seeds == 1 else ""
    if cleared:
        return {"verdict": SDD, "note": one_seed or "fall and rise both clear the margin"}
    if min(v.fall_high, v.rise_high) < min_rise:
        note = one_seed or f"valley shallower than the minimum rise ({min_rise:.2%})"
        return {"verdict": NO_SDD, "note": note}
    se = (v.fall_high - v.fall) if v.fall < v.rise else (v.rise_high - v.rise)
    share = noise.binom / max(noise.total(0, 1), 1e-12)
    settle = what_would_settle(
        min(v.fall, v.rise), v.selection_margin, se / Z_ONE_SIDED, v.n_seeds, share, min_rise
    )
    return {"verdict": INCONCLUSIVE, "note": settle}


class _Rounds:
    """Maps positions in the rounds kept (those with any value) back to the input's columns."""

    def __init__(self, columns: np.ndarray, collapse: int | None) -> None:
        self.columns = columns
        self.collapse = None if collapse is None else int(columns[collapse])

    def round(self, index: int) -> int:
        """The input column of kept position ``index``."""
        return int(self.columns[index])


def what_would_settle(
    depth: float,
    margin: float,
    depth_se: float,
    n_seeds: int,
    binomial_share: float,
    min_rise: float,
) -> str:
    """What would turn an inconclusive verdict into a decided one, in words.

    ``depth``: the valley's min(fall, rise); ``margin`` and ``depth_se``: the selection margin
    and standard error at ``n_seeds`` seeds (both shrink as 1/√seeds); ``binomial_share``: the
    test set's binomial noise as a share of the per-round noise (near 1: it dominates, and more
    seeds no longer help).
    """
    if binomial_share >= 0.8:
        return "settle with a larger test set (its binomial noise dominates the seeds' spread)"
    if depth > min_rise:  # leaning SDD: the lower bounds must clear min_rise
        needed = n_seeds * (margin / (depth - min_rise)) ** 2
    elif depth < min_rise:  # leaning no SDD: the upper bound must fall below min_rise
        needed = n_seeds * (Z_ONE_SIDED * depth_se / (min_rise - depth)) ** 2
    else:
        needed = math.inf
    if needed <= 50:
        return f"settle with more seeds (about {max(math.ceil(needed), n_seeds + 1)} in all)"
    return "settle with many more seeds or a larger test set"
