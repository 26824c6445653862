"""The noise model of the SDD verdict: the 3-round smoothing it judges a curve on, and the
covariance of a seed's accuracy across rounds, with its two parts:

- each seed's own noise: an AR(1) process over rounds (each round starts from the last one's
  weights) whose variance may grow with sparsity (a log-linear fit over rounds), estimated from
  the residuals of a two-way (seed level + round) fit over the rounds each seed has before its
  own collapse; it averages over the seeds alive at a round;
- the test set's noise, shared by every seed (one test set): independent binomial noise
  √(p(1−p)/n) per round by default, or the pairwise SD of a difference between two rounds from
  an optional callable (paired, from recorded per-image correctness).

``verdict`` runs the test on it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

#: One-sided 95% quantile of the standard normal.
Z_ONE_SIDED = 1.6448536269514722
#: Rounds either side of a round in its running mean (1: a 3-round mean).
SMOOTH_HALF = 1
#: The test set's part of the SD of (accuracy at round b − accuracy at round a), a and b the
#: input's round columns: the hook for a paired (McNemar-style) estimate.
DiffSd = Callable[[int, int], float]
#: AR(1) coefficients are kept within [0, RHO_MAX] (a random walk reads as RHO_MAX).
RHO_MAX = 0.95


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


def normal_quantile(p: float) -> float:
    """The standard normal's ``p`` quantile (Acklam's rational approximation, |error| < 1e-8
    after one Newton step)."""
    if not 0 < p < 1:
        raise ValueError(f"a probability in (0, 1) is needed, got {p}")
    a = (-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.3577518672690,
         -30.66479806614716, 2.506628277459239)  # fmt: skip
    b = (-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972,
         -13.28068155288572)  # fmt: skip
    c = (-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734,
         4.374664141464968, 2.938163982698783)  # fmt: skip
    d = (0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416)
    q = min(p, 1 - p)
    if q < 0.02425:
        r = math.sqrt(-2 * math.log(q))
        x = (((((c[0] * r + c[1]) * r + c[2]) * r + c[3]) * r + c[4]) * r + c[5]) / (
            (((d[0] * r + d[1]) * r + d[2]) * r + d[3]) * r + 1
        )
        x = x if p < 0.5 else -x
    else:
        r = (p - 0.5) ** 2
        x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * (p - 0.5)
        x /= ((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1
    err = 0.5 * math.erfc(-x / math.sqrt(2)) - p
    return x - err * math.sqrt(2 * math.pi) * math.exp(x * x / 2)


def estimation_factor(dof: float, z: float = Z_ONE_SIDED) -> float:
    """t(dof) / z at the quantile ``z``: how much wider a bound gets when σ is estimated."""
    if dof <= 0:
        return math.inf
    t = z + (z**3 + z) / (4 * dof) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof**2)
    return t / z


def chi2_95(dof: int) -> float:
    """The 0.95 quantile of χ² with ``dof`` degrees of freedom (Wilson–Hilferty; exact for 1)."""
    if dof == 1:
        return 1.959964**2  # P(|Z| > 1.96) = 5%
    h = 2 / (9 * dof)
    return dof * (1 - h + Z_ONE_SIDED * math.sqrt(h)) ** 3


def binomial_sd(acc: np.ndarray, n_test: float | None) -> float:
    """√(p(1−p)/n): the test set's noise at the curve's mean accuracy (0 when n is unknown)."""
    if not n_test or not math.isfinite(n_test):
        return 0.0
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(np.nanmean(acc))
    return math.sqrt(max(p * (1 - p), 0.0) / n_test) if math.isfinite(p) else 0.0


def two_way(acc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(levels, round means, residuals) of an additive seed + round fit on the finite cells of
    ``acc`` (seeds × rounds; seeds may miss rounds). Levels sum to zero."""
    finite = np.isfinite(acc)
    levels = np.zeros(acc.shape[0])
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for _ in range(30):
            rounds = np.nanmean(acc - levels[:, None], axis=0)
            new = np.nanmean(acc - rounds[None, :], axis=1)
            new = np.nan_to_num(new - np.nanmean(new))
            if np.allclose(new, levels, atol=1e-12):
                break
            levels = new
        rounds = np.nanmean(acc - levels[:, None], axis=0)
    resid = np.where(finite, acc - levels[:, None] - rounds[None, :], np.nan)
    return levels, rounds, resid


def _fit_log_linear(ss: np.ndarray, dof: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Variances v = exp(a + b·x) maximising the Gaussian likelihood of sums of squares ``ss``
    with ``dof`` degrees of freedom at positions ``x`` (damped Newton steps on a and b; the
    pooled variance where the fit fails)."""
    use = dof > 0
    ss, dof_u, xu = ss[use], dof[use], x[use]
    pooled = max(float(ss.sum()), 1e-12) / max(float(dof_u.sum()), 1.0)
    a, b = math.log(pooled), 0.0
    for _ in range(50):
        r = ss / np.exp(a + b * xu)
        g = np.array([np.sum(r - dof_u), np.sum(xu * (r - dof_u))]) / 2
        h = -np.array([[np.sum(r), np.sum(xu * r)], [np.sum(xu * r), np.sum(xu * xu * r)]]) / 2
        try:
            step = np.clip(np.linalg.solve(h, g), -1.0, 1.0)
        except np.linalg.LinAlgError:
            break
        if not np.isfinite(step).all():
            break
        a, b = a - float(step[0]), float(np.clip(b - float(step[1]), -6.0, 6.0))
        if abs(step).max() < 1e-9:
            break
    var = np.exp(a + b * x)
    return var if np.isfinite(var).all() and (var > 0).all() else np.full(len(x), pooled)


@dataclass(frozen=True)
class NoiseModel:
    """The noise of one seed's accuracy over a curve's judged rounds, and which seeds count."""

    #: Per round, one seed's own noise SD (widened for having been estimated).
    sigma: np.ndarray
    #: AR(1) coefficient of a seed's own noise across rounds.
    rho: float
    #: Degrees of freedom of the estimate (effective, after the correlation).
    dof: float
    #: (seeds × rounds) whether a seed's value counts at a round (before its own collapse).
    alive: np.ndarray
    #: Covariance of the test set's noise between rounds (shared by the seeds).
    test_cov: np.ndarray

    @property
    def test_sd(self) -> np.ndarray:
        """The test set's noise SD per round."""
        return np.sqrt(np.clip(np.diag(self.test_cov), 0, None))


def test_covariance(
    p: np.ndarray, n_test: float, columns: np.ndarray, diff_sd: DiffSd | None = None
) -> np.ndarray:
    """The test set's noise covariance between rounds at accuracies ``p``: independent binomial
    by default; with ``diff_sd`` (the SD of a difference between input columns a and b), the
    covariance those differences imply, made positive semi-definite."""
    var = np.clip(p * (1 - p), 0, None) / n_test
    if diff_sd is None:
        return np.diag(var)
    cov = np.diag(var)
    for i in range(len(p)):
        for j in range(i + 1, len(p)):
            d = float(diff_sd(int(columns[i]), int(columns[j])))
            cov[i, j] = cov[j, i] = (var[i] + var[j] - d * d) / 2
    vals, vecs = np.linalg.eigh(cov)
    return (vecs * np.clip(vals, 0, None)) @ vecs.T


def fit_noise(
    acc: np.ndarray,
    ends: np.ndarray,
    test_cov: np.ndarray,
    z: float = Z_ONE_SIDED,
) -> NoiseModel:
    """The noise model of a curve from its (seeds × rounds) accuracy, seed s counting on rounds
    [0, ends[s]) (before its own collapse). Two or more seeds: residuals of the two-way fit
    (without each seed's last 2 rounds, where its final descent may start) give a log-linear
    variance over rounds and the AR(1) coefficient (corrected for the bias the seed levels put
    into both). One seed: its second differences give one SD holding both parts (never below
    the test set's), with no correlation."""
    n_seeds, length = acc.shape
    alive = np.arange(length)[None, :] < np.asarray(ends)[:, None]
    if n_seeds == 1:
        row = acc[0][alive[0]][1:]  # the dense round trains longer: leave it out
        dof = max(len(row) - 2, 0)
        sd = math.sqrt(float(np.mean(np.diff(row, n=2) ** 2) / 6)) if dof else 0.0
        sd = max(sd * estimation_factor(dof, z), float(np.sqrt(test_cov.diagonal().max())))
        return NoiseModel(np.full(length, sd), 0.0, dof, alive, np.zeros_like(test_cov))
    trimmed = np.arange(length)[None, :] < np.asarray(ends)[:, None] - 2
    use = trimmed if (trimmed.sum(axis=0) >= 2).sum() >= 4 else alive
    _, _, resid = two_way(np.where(use, acc, np.nan))
    counts = np.isfinite(resid).sum(axis=0)
    ss = np.nansum(resid**2, axis=0)
    round_dof = np.clip(counts - 1, 0, None).astype(float)
    var = _fit_log_linear(ss, round_dof, np.arange(length) / max(length - 1, 1))
    rho = _ar1(resid / np.sqrt(var)[None, :])
    # each seed's level takes (1+ρ)/(1−ρ) of its rounds' worth of noise out of its residuals
    lost = min((1 + rho) / (1 - rho), length / 2) * (n_seeds - 1)
    dof = max(float(round_dof.sum()) - lost, 1.0)
    var = var * round_dof.sum() / dof
    effective = dof * (1 - rho) / (1 + rho)
    sigma = np.sqrt(var) * estimation_factor(effective, z)
    return NoiseModel(sigma, rho, effective, alive, test_cov)


def _ar1(z: np.ndarray) -> float:
    """Lag-one autocorrelation of standardized residuals (seeds × rounds, NaN where absent),
    corrected for the downward bias of removing each seed's level (about (1 + 3ρ)/L)."""
    a, b = z[:, :-1], z[:, 1:]
    both = np.isfinite(a) & np.isfinite(b)
    if both.sum() < 3:
        return 0.0
    num = float(np.sum(a[both] * b[both]))
    den = float(np.sum((a[both] ** 2 + b[both] ** 2) / 2))
    rho = num / den if den > 0 else 0.0
    length = float(np.isfinite(z).sum(axis=1).mean())
    rho = (rho * length + 1) / max(length - 3, 1.0)
    return float(np.clip(rho, 0.0, RHO_MAX))
