"""The SDD verdict: a calibrated three-way test on one curve (seeds × rounds of test accuracy).

The test, step by step (the docs' "The verdict" page argues each choice):

1. **Collapse.** A curve's final collapse starts at the first round after which its accuracy
   stays more than COLLAPSE_MIN_DROP (10 points) below its dense accuracy to the end. Rounds
   from the first collapse of the seeds' mean or of any one seed on are left out: wiggles inside
   the collapse, or a mean that mixes a broken seed with working ones, are no double descent.
   A round that a seed's run skipped as collapsed (the training's collapse stop) is a collapse
   at that round, whatever the accuracy before it.
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

from sparsedd.analysis.curve_noise import (  # smooth and the noise model (re-exported)
    SMOOTH_HALF,
    Z_ONE_SIDED,
    SeedNoise,
    binomial_sd,
    chi2_95,
    estimation_factor,
    noise_sd,
    smooth,
    smoothing_matrix,
)

__all__ = [
    "COLLAPSE_MIN_DROP",
    "DEFAULT_MIN_RISE",
    "SMOOTH_HALF",
    "VERDICTS",
    "Z_ONE_SIDED",
    "Verdict",
    "best_valley",
    "binomial_sd",
    "chi2_95",
    "collapse_round",
    "estimation_factor",
    "first_collapse",
    "noise_sd",
    "null_margin",
    "sdd_verdict",
    "smooth",
    "stopped_round",
    "what_would_settle",
]

#: Minimum fall and rise (as fractions) that count as SDD: the verdict's effect size.
DEFAULT_MIN_RISE = 0.005
#: The least drop below dense (as a fraction) that can start the final collapse.
COLLAPSE_MIN_DROP = 0.10
#: One-sided level of each bound (the verdict's false-alarm rate on a flat curve).
ALPHA = 0.05
#: Simulated null curves per curve length (seeded: the margin is a fixed function of length).
NULL_DRAWS = 20_000
NULL_SEED = 20231106
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
    smoothed = noise @ smoothing_matrix(length).T
    return float(np.quantile(_null_depths(smoothed), quantile))


def stopped_round(collapsed: np.ndarray | None) -> int | None:
    """The first round (column) at which any seed's run is collapsed (skipped by the collapse
    stop), from a (seeds × rounds) boolean matrix; None when none is (or no matrix)."""
    if collapsed is None:
        return None
    flags = np.atleast_2d(np.asarray(collapsed, dtype=bool)).any(axis=0)
    return int(np.argmax(flags)) if flags.any() else None


def sdd_verdict(
    seed_acc: np.ndarray,
    n_test: float | None = None,
    min_rise: float = DEFAULT_MIN_RISE,
    collapsed: np.ndarray | None = None,
) -> Verdict:
    """The verdict on one curve: ``seed_acc`` is (seeds × rounds) test accuracy as fractions,
    NaN where a seed lacks a round; round 0 is the dense model. ``n_test``: test images (None:
    unknown; then one seed is never enough). ``collapsed``: a (seeds × rounds) boolean matrix,
    True where a seed's run skipped the round as collapsed; the first such round is a collapse
    (the verdict reads only the rounds before it, and ``collapse_round`` is at most it). See the
    module docstring."""
    acc = np.atleast_2d(np.asarray(seed_acc, dtype=float))
    stop = stopped_round(collapsed)
    if stop is not None:
        acc = acc[:, :stop]
    acc = acc[np.isfinite(acc).any(axis=1)]
    n_seeds = len(acc)
    if n_seeds == 0 or acc.shape[1] == 0:
        note = "no recorded accuracy" if stop is None else "no trained round before the collapse"
        return Verdict(INCONCLUSIVE, note, 0, collapse_round=stop)
    columns = np.flatnonzero(np.isfinite(acc).any(axis=0))
    acc = acc[:, columns]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(acc, axis=0)
    collapse = first_collapse(acc)
    region = acc[:, : collapse if collapse is not None else acc.shape[1]]
    at = _Rounds(columns, collapse, stop)
    if region.shape[1] < 4:
        return Verdict(
            INCONCLUSIVE, _too_few(stop), n_seeds, collapse_round=at.collapse,
        )  # fmt: skip
    length = region.shape[1]
    curve = smooth(mean[:length])
    high, dip, peak, fall, rise = best_valley(curve)  # type: ignore[misc]  # length ≥ 4
    noise = SeedNoise(region, n_test)
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


def _decide(v: Verdict, noise: SeedNoise, min_rise: float, n_test: float | None) -> dict[str, str]:
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


def _too_few(stop: int | None) -> str:
    """The note of a curve with under 4 rounds before its collapse (``stop``: the first round
    a run skipped as collapsed, if any)."""
    if stop is None:
        return "too few rounds before the collapse: run more rounds"
    return (
        f"too few trained rounds before the collapse (runs stopped as collapsed from round "
        f"{stop}): a smaller prune_rate gives more rounds before that sparsity"
    )


class _Rounds:
    """Maps positions in the rounds kept (those with any value) back to the input's columns;
    the collapse is the earlier of the accuracy's own and the first round a run skipped as
    collapsed (``stop``)."""

    def __init__(self, columns: np.ndarray, collapse: int | None, stop: int | None = None) -> None:
        self.columns = columns
        # the curve was cut at ``stop``, so its own collapse, when found, comes before it
        self.collapse = stop if collapse is None else int(columns[collapse])

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
