"""The valley search of the SDD verdict, on seeds that collapse at their own rounds.

A valley is a (high, dip, peak) of rounds. Its fall and rise are averaged over the seeds still
alive at its peak (a seed alive there is alive at every earlier round): within-seed
differences, so a seed's level cancels and a seed that collapsed leaves the later rounds to the
others instead of pulling the mean. Each seed's curve is smoothed over 3 rounds first.

Two statistics come out (``search``): the valley whose fall and rise clear ``min_rise`` by the
most standardized margin (the SDD side) and the upper bound on the deepest valley (the no SDD
side). ``margins`` calibrates the SDD side by seeded simulation of the noise model.

The smoothing keeps a third of a dip that lasts a single round, so the no SDD side also bounds
every single round's dip on the unsmoothed rounds (``one_round_high``): its fall from the mean
of up to ONE_ROUND_REACH rounds before it and its rise to the mean of as many after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from sparsedd.analysis.curve_noise import NoiseModel, smoothing_matrix

#: Simulated noise curves per verdict (seeded: the margins are a fixed function of the model).
NULL_DRAWS = 1500
NULL_SEED = 20231106
#: Rounds each side of a round whose mean a single-round dip is measured against.
ONE_ROUND_REACH = 5
#: Seeded normal draws that set the single-round bounds' joint critical value.
JOINT_DRAWS = 20_000


@dataclass(frozen=True)
class SeedSet:
    """Seeds alive at every round before ``end``; ``peaks`` are the rounds where exactly
    these seeds are alive (a valley peaking there is measured on them)."""

    seeds: np.ndarray
    end: int
    peaks: np.ndarray


def seed_sets(ends: np.ndarray) -> list[SeedSet]:
    """The seed sets of a curve whose seed s has rounds [0, ends[s]) (largest set first)."""
    out = []
    bounds = sorted({int(e) for e in ends if e > 0}, reverse=True)
    for i, end in enumerate(bounds):
        below = bounds[i + 1] if i + 1 < len(bounds) else 0
        seeds = np.flatnonzero(ends >= end)
        out.append(SeedSet(seeds, end, np.arange(below, end)))
    return out


def pair_sd(cov: np.ndarray) -> np.ndarray:
    """SD of (x_j − x_i) for every pair of rounds, from their covariance."""
    d = np.diag(cov)
    return np.sqrt(np.clip(d[:, None] + d[None, :] - 2 * cov, 1e-18, None))


def set_curve(acc: np.ndarray, group: SeedSet) -> np.ndarray:
    """The mean over the set's seeds of their 3-round smoothed curves, rounds [0, end)."""
    w = smoothing_matrix(group.end)
    return (acc[group.seeds, : group.end] @ w.T).mean(axis=0)


def raw_set_cov(model: NoiseModel, group: SeedSet) -> np.ndarray:
    """Covariance of the noise of the set's unsmoothed mean curve, rounds [0, end): the set's
    own noise averaged, plus the test set's."""
    end = group.end
    lags = np.abs(np.subtract.outer(np.arange(end), np.arange(end)))
    sigma = model.sigma[:end]
    own = np.outer(sigma, sigma) * model.rho**lags / len(group.seeds)
    return own + model.test_cov[:end, :end]


def set_cov(model: NoiseModel, group: SeedSet) -> np.ndarray:
    """Covariance of ``set_curve``'s noise (``raw_set_cov`` through the 3-round smoothing)."""
    w = smoothing_matrix(group.end)
    return w @ raw_set_cov(model, group) @ w.T


@dataclass(frozen=True)
class Valley:
    """The valley the search chose, with the SDs of its fall and rise, and the upper bound on
    the deepest valley (fractions; positions in the judged rounds)."""

    high: int
    dip: int
    peak: int
    fall: float
    rise: float
    fall_sd: float
    rise_sd: float
    dip_acc: float
    peak_acc: float
    depth_high: float
    n_seeds: int


def search(
    acc: np.ndarray,
    model: NoiseModel,
    groups: list[SeedSet],
    min_rise: float,
    qf: float,
    qr: float,
    z2: float,
) -> Valley | None:
    """The valley maximising min(standardized fall excess − qf, standardized rise excess − qr)
    over every seed set, and the largest per-valley upper bound min(fall, rise) + z2 SDs each
    (None when no set has 3 rounds)."""
    best: tuple[float, Valley] | None = None
    depth_high = -np.inf
    for g in groups:
        if g.end < 3 or g.peaks.max() < 2:
            continue
        c, sd = set_curve(acc, g), pair_sd(set_cov(model, g))
        diff = c[:, None] - c[None, :]  # diff[a, b] = c_a − c_b
        upper = np.triu(np.ones((g.end, g.end), bool), 1)
        peak_ok = np.zeros(g.end, bool)
        peak_ok[g.peaks] = True
        fall_z = np.where(upper, (diff - min_rise) / sd, -np.inf)
        rise_z = np.where(upper & peak_ok[None, :], (diff.T - min_rise) / sd, -np.inf)
        fall_b = np.where(upper, diff + z2 * sd, -np.inf).max(axis=0)
        rise_b = np.where(upper & peak_ok[None, :], diff.T + z2 * sd, -np.inf).max(axis=1)
        dips = np.arange(1, g.end - 1)
        depth_high = max(depth_high, float(np.minimum(fall_b[dips], rise_b[dips]).max()))
        score = np.minimum(fall_z.max(axis=0)[dips] - qf, rise_z.max(axis=1)[dips] - qr)
        d = int(dips[np.argmax(score)])
        if best is not None and score.max() <= best[0]:
            continue
        h, p = int(np.argmax(fall_z[:, d])), int(np.argmax(rise_z[d]))
        valley = Valley(h, d, p, float(diff[h, d]), float(diff[p, d]), float(sd[h, d]),
                        float(sd[d, p]), float(c[d]), float(c[p]), 0.0, len(g.seeds))  # fmt: skip
        best = (float(score.max()), valley)
    if best is None:
        return None
    v = best[1]
    return Valley(**{**v.__dict__, "depth_high": depth_high})


@dataclass(frozen=True)
class OneRound:
    """The deepest single-round dip's upper bound (``high``), its estimate and SD (fractions),
    and its round (a position in the judged rounds)."""

    high: float
    depth: float
    sd: float
    round: int


def one_round_contrasts(end: int, reach: int = ONE_ROUND_REACH) -> np.ndarray:
    """(3, rounds, rounds) weights: for round d (row), its fall (the mean of up to ``reach``
    rounds before it, minus it), its rise (the mean of up to ``reach`` rounds after it, minus
    it) and the mean of the two; rows 0 and end − 1 are zero."""
    a = np.zeros((3, end, end))
    for d in range(1, end - 1):
        lo, hi = max(0, d - reach), min(end - 1, d + reach)
        a[0, d, lo:d] = 1.0 / (d - lo)
        a[1, d, d + 1 : hi + 1] = 1.0 / (hi - d)
        a[:2, d, d] = -1.0
    a[2] = (a[0] + a[1]) / 2
    return a


def one_round_high(
    acc: np.ndarray, model: NoiseModel, groups: list[SeedSet], alpha: float
) -> OneRound | None:
    """The largest upper bound on how deep a single round dips below its neighbours, on each
    seed set's unsmoothed mean curve (a round is measured on the seeds alive at the round after
    it). A round's dip is min(fall, rise) against the mean of the rounds either side, bounded by
    the smallest of three bounds: its fall's, its rise's, and the mean of the two's (min(fall,
    rise) is at most their mean, whose SD is smaller; a step down has a large mean but no rise),
    all at one z chosen so that any of the three falls short with probability ``alpha`` under
    the noise model (their joint normal law). A real single-round dip of that depth is covered
    with probability 1 − alpha however the other rounds fall. None under 3 rounds."""
    best: OneRound | None = None
    for g in groups:
        if g.end < 3:
            continue
        end = g.end
        cov = raw_set_cov(model, g)
        a = one_round_contrasts(end)
        est = a @ acc[g.seeds, :end].mean(axis=0)
        sd = np.sqrt(np.clip(np.einsum("cij,jk,cik->ci", a, cov, a), 1e-18, None))
        corr = np.einsum("ij,jk,ik->i", a[0], cov, a[1]) / (sd[0] * sd[1])
        bounds = est + _joint_z(corr, sd, alpha)[None, :] * sd
        pick = np.argmin(bounds, axis=0)
        rows = np.arange(end)
        high, depth, spread = bounds[pick, rows], est[pick, rows], sd[pick, rows]
        peaks = set(g.peaks.tolist())
        dips = np.array([d for d in range(1, end - 1) if d + 1 in peaks], int)
        if dips.size == 0:
            continue
        d = int(dips[np.argmax(high[dips])])
        if best is None or float(high[d]) > best.high:
            best = OneRound(float(high[d]), float(depth[d]), float(spread[d]), d)
    return best


def _joint_z(corr: np.ndarray, sd: np.ndarray, alpha: float) -> np.ndarray:
    """Per round, the z at which the smallest of its standardized fall, rise and mean (the
    mean is (fall + rise) / 2, so the three are one 2-d normal) is below −z with probability
    ``alpha``: seeded draws, the same for every curve."""
    e = _standard_pairs()
    r = np.clip(corr, -1.0, 1.0)
    zf = e[:, :1]
    zr = r[None, :] * zf + np.sqrt(1 - r**2)[None, :] * e[:, 1:]
    za = (sd[0][None, :] * zf + sd[1][None, :] * zr) / (2 * sd[2][None, :])
    low = np.minimum(np.minimum(zf, zr), za)
    return -np.quantile(low, alpha, axis=0)


@lru_cache(maxsize=1)
def _standard_pairs() -> np.ndarray:
    """JOINT_DRAWS seeded standard normal pairs."""
    return np.random.default_rng([NULL_SEED, 1]).standard_normal((JOINT_DRAWS, 2))


def margins(model: NoiseModel, groups: list[SeedSet], alpha: float) -> tuple[float, float]:
    """(fall, rise) margins: the ``1 − alpha`` quantiles of the largest standardized fall and
    rise that the search meets in curves of pure noise with this noise model (every seed's own
    noise, the shared test-set noise, the same seed sets and smoothing), NULL_DRAWS seeded."""
    n_seeds, length = model.alive.shape
    rng = np.random.default_rng([NULL_SEED, n_seeds, length])
    lags = np.abs(np.subtract.outer(np.arange(length), np.arange(length)))
    own = _factor(np.outer(model.sigma, model.sigma) * model.rho**lags)
    test = _factor(model.test_cov)
    # einsum, not BLAS: small products that threads only slow down on a shared machine
    seeds = np.einsum("nsk,lk->nsl", rng.standard_normal((NULL_DRAWS, n_seeds, length)), own)
    shared = np.einsum("nk,lk->nl", rng.standard_normal((NULL_DRAWS, length)), test)
    fall = np.full(NULL_DRAWS, -np.inf, np.float32)
    rise = np.full(NULL_DRAWS, -np.inf, np.float32)
    for g in groups:
        if g.end < 3 or g.peaks.max() < 2:
            continue
        w = smoothing_matrix(g.end)
        noise = seeds[:, g.seeds, : g.end].mean(axis=1) + shared[:, : g.end]
        x = np.einsum("nk,lk->nl", noise, w).astype(np.float32)
        inv = (1 / pair_sd(set_cov(model, g))).astype(np.float32)
        for b in range(1, g.end):  # b: the later round of each pair
            step = (x[:, :b] - x[:, b : b + 1]) * inv[:b, b]
            if b < g.end - 1:
                fall = np.maximum(fall, step.max(axis=1))
            if b >= 2 and b >= g.peaks.min():
                rise = np.maximum(rise, -step[:, 1:].min(axis=1))
    return float(np.quantile(fall, 1 - alpha)), float(np.quantile(rise, 1 - alpha))


def _factor(cov: np.ndarray) -> np.ndarray:
    """F with F Fᵀ = cov (eigen-decomposition, negative eigenvalues clipped)."""
    vals, vecs = np.linalg.eigh(cov)
    return vecs * np.sqrt(np.clip(vals, 0, None))
