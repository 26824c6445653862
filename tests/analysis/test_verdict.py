"""The SDD verdict: each shape a careful reader has tried, and the calibration it ships with."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsedd.analysis import verdict as vd
from sparsedd.analysis.choices import DEFAULT_MIN_RISE
from sparsedd.analysis.synthetic import simulate_curves

ROUNDS = np.arange(35)  # dense + 34 rounds, the paper's protocol
N = 10_000


def dip(depth: float, centre: float = 8, width: float = 3) -> np.ndarray:
    """A valley of ``depth`` (a fraction) around round ``centre``, on an 80% curve."""
    return 0.80 - depth * np.exp(-(((ROUNDS - centre) / width) ** 2))


def rates(make, curves: int = 100, **kwargs) -> dict[str, float]:
    """Verdict shares over seeded curves from ``make(rng)``."""
    counts = dict.fromkeys(vd.VERDICTS, 0)
    for t in range(curves):
        counts[vd.sdd_verdict(make(np.random.default_rng(t)), **kwargs).verdict] += 1
    return {k: v / curves for k, v in counts.items()}


def sim(shape, depth, seeds, n_test=N, noise=0.01, **kw):
    """A maker of simulated curves (the calibration bench's model)."""
    return lambda rng: simulate_curves(shape, depth, noise, seeds, n_test, rng, **kw)[0]


# ---------------------------------------------------------------- null curves: no false SDD


@pytest.mark.parametrize(("seeds", "sd"), [(2, 0.01), (3, 0.01), (3, 0.0075)])
def test_a_flat_noisy_curve_is_never_called_sdd(seeds, sd):
    r = rates(lambda rng: 0.80 + rng.normal(0, sd, (seeds, 35)), n_test=N)
    assert r["SDD"] <= 0.05, r


def test_a_monotone_decline_is_never_called_sdd():
    r = rates(lambda rng: np.linspace(0.80, 0.75, 35) + rng.normal(0, 0.015, (2, 35)), n_test=N)
    assert r["SDD"] <= 0.05, r


@pytest.mark.parametrize("seeds", [2, 3])
def test_a_fall_then_a_plateau_with_noise_growing_to_the_collapse_is_rarely_sdd(seeds):
    # the earlier margin (flat curves, one noise level) said SDD on 15.7% / 11.1% of these
    r = rates(sim("fall-plateau", 0.05, seeds, noise_kind="growing", collapse_jitter=3), n_test=N)
    assert r["SDD"] <= 0.05, r


def test_a_plateau_then_a_rise_with_correlated_rounds_is_rarely_sdd():
    r = rates(sim("plateau-rise", 0.05, 3, noise_kind="ar0.5", collapse_jitter=3), n_test=N)
    assert r["SDD"] <= 0.05, r


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=30))
def test_a_never_increasing_curve_is_never_sdd(values):
    curve = np.sort(np.array(values))[::-1][None, :]
    assert vd.sdd_verdict(np.repeat(curve, 2, axis=0), n_test=1000).verdict != vd.SDD


def test_a_wobble_inside_the_final_collapse_is_not_a_double_descent():
    # 80 → 30 → 34 → chance: every seed has collapsed from round 20 on; the wobble is not read
    curve = np.r_[np.full(20, 0.80), 0.30, 0.34, 0.10, 0.10]
    rng = np.random.default_rng(1)
    v = vd.sdd_verdict(np.stack([curve + rng.normal(0, 0.002, curve.size) for _ in range(3)]), N)
    assert v.collapse_round == 20 and v.last_round == 19
    assert v.verdict == vd.NO_SDD
    assert v.dip_round < 20 and v.peak_round < 20


# ---------------------------------------------------------------- real dips: no false "no SDD"


@pytest.mark.parametrize("seeds", [2, 3, 5])
def test_a_five_point_dip_with_seeds_breaking_down_around_round_14_is_not_no_sdd(seeds):
    # the "no valley before the collapse" shortcut called this no SDD in 9-27% of curves
    def make(rng):
        acc = dip(0.05) + rng.normal(0, 0.01, (seeds, 35))
        for s, k in enumerate(14 + rng.integers(-3, 4, seeds)):
            acc[s, k:] = 0.10 + rng.normal(0, 0.003, 35 - k)
        return acc

    r = rates(make, n_test=N)
    assert r["no SDD"] <= 0.05, r


def test_one_seed_breaking_down_right_after_the_dip_leaves_the_rise_to_the_others():
    # one of three seeds collapses at round 11, just after the dip: called no SDD in 55-78%
    def make(rng):
        acc = dip(0.05) + rng.normal(0, 0.01, (3, 35))
        acc[0, 11:] = 0.10 + rng.normal(0, 0.003, 24)
        return acc

    r = rates(make, n_test=N)
    assert r["no SDD"] <= 0.05, r


def test_a_deep_dip_with_a_sustained_partial_recovery_is_not_no_sdd():
    # 15-point dip, 4-point recovery that stays 11 points below dense: 68% no SDD before
    curve = 0.80 - 0.15 * (ROUNDS >= 6) + 0.04 * (ROUNDS >= 10) - 0.6 * (ROUNDS >= 24)
    r = rates(lambda rng: curve + rng.normal(0, 0.005, (3, 35)), n_test=N)
    assert r["no SDD"] == 0, r
    assert r["SDD"] >= 0.8, r


@pytest.mark.parametrize("kind", ["independent", "ar0.5", "growing"])
def test_three_point_dips_are_not_called_no_sdd(kind):
    r = rates(sim("sdd", 0.03, 3, noise_kind=kind, collapse_jitter=3), n_test=N)
    assert r["no SDD"] <= 0.05, r


def test_misaligned_three_point_dips_are_not_called_no_sdd():
    r = rates(sim("sdd", 0.03, 3, dip_shift=2, collapse_jitter=3), n_test=N)
    assert r["no SDD"] <= 0.05, r


@pytest.mark.parametrize("seeds", [3, 5])
def test_a_three_point_dip_lasting_one_round_is_not_called_no_sdd(seeds):
    # the 3-round smoothing keeps a third of it: 32-54% "no SDD" before single rounds were bounded
    r = rates(sim("one-round", 0.03, seeds, collapse_jitter=3), n_test=N)
    assert r["no SDD"] <= 0.05, r
    v = vd.sdd_verdict(sim("one-round", 0.03, seeds)(np.random.default_rng(0)), N)
    assert v.one_round_high >= vd.ONE_ROUND_LINE * DEFAULT_MIN_RISE > v.depth_high


def test_a_step_down_to_a_plateau_is_no_single_round_dip():
    # a 10-point step then flat (a seed's partial breakdown): its mean contrast is 5 points,
    # its rise none; the single-round bound must not read it as a dip
    curve = 0.80 - 0.10 * (ROUNDS >= 12)
    rng = np.random.default_rng(3)
    v = vd.sdd_verdict(curve + rng.normal(0, 0.003, (3, 35)), N, chance=0.0)
    assert v.one_round_high < vd.ONE_ROUND_LINE * DEFAULT_MIN_RISE, v
    assert v.verdict == vd.NO_SDD, v


# ---------------------------------------------------------------- "no SDD" is reachable


@pytest.mark.parametrize("shape", ["flat", "gain"])
def test_a_flat_or_rising_curve_with_three_seeds_reaches_no_sdd(shape):
    r = rates(sim(shape, 0.015, 3), n_test=N)
    assert r["no SDD"] >= 0.8, r
    assert r["SDD"] == 0, r


def test_a_clean_decline_at_ten_thousand_images_is_no_sdd():
    r = rates(lambda rng: np.linspace(0.80, 0.72, 25) + rng.normal(0, 0.005, (3, 25)), n_test=N)
    assert r["no SDD"] >= 0.95, r


def test_no_sdd_says_over_which_sparsity_range_it_holds():
    # the demo's λ = 2 (rising 79.0 → 80.5, one 0.08-point wobble): "more seeds (about 34)"
    rising = np.r_[np.linspace(0.790, 0.805, 10), 0.8042, 0.805, 0.20, 0.10]
    acc = np.stack([rising, rising + 0.002])
    sparsity = 1 - 0.8 ** np.arange(acc.shape[1])
    v = vd.sdd_verdict(acc, N, sparsity=sparsity)
    assert v.verdict == vd.NO_SDD
    assert v.last_round == 11 and v.collapse_round == 12
    assert f"up to {sparsity[11]:.1%} sparsity (round 11)" in v.note
    assert v.depth_high < DEFAULT_MIN_RISE


def test_a_valley_of_a_tenth_of_a_point_and_no_valley_get_the_same_answer():
    rising = np.linspace(0.79, 0.805, 20)
    wobble = rising.copy()
    wobble[8] -= 0.001
    for curve in (rising, wobble):
        acc = np.stack([curve, curve + 0.002, curve - 0.001])
        assert vd.sdd_verdict(acc, N).verdict == vd.NO_SDD


def test_no_sdd_holds_under_half_a_point_of_extra_noise():
    # today's λ = 2 rounds turned inconclusive in 38% of draws with 0.5 points of noise added
    base = np.linspace(0.79, 0.805, 14)
    r = rates(lambda rng: base + rng.normal(0, 0.005, (2, 14)), n_test=N)
    assert r["no SDD"] >= 0.8, r


# ---------------------------------------------------------------- the test-set size


@pytest.mark.parametrize("seeds", [1, 2, 5])
def test_an_unknown_test_set_size_is_inconclusive_never_zero_noise(seeds):
    # flat curves at 1,000 images without a recorded size: false SDD 61-80% before
    make = sim("flat", 0.0, seeds, n_test=1000)
    for n_test in (None, 0, float("nan")):
        r = rates(make, curves=20, n_test=n_test)
        assert r["inconclusive"] == 1.0, r
    v = vd.sdd_verdict(make(np.random.default_rng(0)))
    assert "test-set size is unknown" in v.note


def test_a_tiny_test_set_is_inconclusive_and_asks_for_a_larger_one():
    acc = np.array([[40, 38, 36, 36, 38, 40, 40, 39]] * 2) / 45
    v = vd.sdd_verdict(acc, n_test=45)
    assert v.verdict == vd.INCONCLUSIVE
    assert "larger test set" in v.note


def test_a_paired_test_set_noise_hook_replaces_the_independent_binomial():
    acc = sim("flat", 0.0, 3, n_test=1000)(np.random.default_rng(4))
    calls = []

    def paired(a: int, b: int) -> float:
        calls.append((a, b))
        return 0.002  # models of neighbouring rounds agree on most images

    default = vd.sdd_verdict(acc, 1000)
    hooked = vd.sdd_verdict(acc, 1000, paired_diff_sd=paired)
    assert calls and all(0 <= a < b < acc.shape[1] for a, b in calls)
    assert hooked.depth_high < default.depth_high
    assert hooked.selection_margin < default.selection_margin


# ---------------------------------------------------------------- seeds and collapse


def test_one_seed_gives_at_most_an_indicative_verdict():
    acc = (dip(0.08) + np.random.default_rng(3).normal(0, 0.002, 35))[None]
    v = vd.sdd_verdict(acc, n_test=N)
    assert v.verdict == vd.SDD and "indicative" in v.note


def test_seeds_offset_from_each_other_but_each_dipping_are_sdd():
    rng = np.random.default_rng(2)
    acc = np.stack([dip(0.05) + o + rng.normal(0, 0.002, 35) for o in (-0.03, 0.0, 0.03)])
    v = vd.sdd_verdict(acc, n_test=N)
    assert v.verdict == vd.SDD
    assert v.rise_low > DEFAULT_MIN_RISE and v.fall_low > DEFAULT_MIN_RISE
    assert abs(v.fall - 0.05) < 0.01


def test_the_collapse_is_defined_against_chance_per_seed():
    # chance 10%, dense 80%: collapsed once it stays below 10 + 0.8 × 70 = 66%
    assert vd.collapse_round(np.array([0.8, 0.7, 0.8, 0.6, 0.2, 0.1])) == 3
    assert vd.collapse_round(np.array([0.8, 0.7, 0.68, 0.7])) is None  # never below 66%
    assert vd.collapse_round(np.array([0.8, 0.3, 0.8, 0.8])) is None  # it came back
    # CIFAR-100's chance (1%) moves the line: 1 + 0.8 × 79 = 64.2%
    assert vd.collapse_round(np.array([0.8, 0.65, 0.65]), chance=0.01) is None
    assert vd.collapse_round(np.array([0.8, 0.65, 0.65]), chance=0.1) == 1
    # a round skipped by the collapse stop counts as collapsed
    stopped = np.array([False, False, False, True])
    assert vd.collapse_round(np.array([0.8, 0.8, 0.8, np.nan]), stopped=stopped) == 3


def test_a_seed_breaking_down_is_left_out_from_its_breakdown_on():
    # the demo's λ = 2 of an earlier version: one seed falls to 43% and climbs back to 63%
    healthy = [0.79, 0.80, 0.80, 0.80, 0.81, 0.81, 0.81, 0.80]
    seeds = np.array([
        healthy + [0.79, 0.80, 0.80, 0.79, 0.80, 0.80, 0.10, 0.10],
        healthy + [0.43, 0.63, 0.62, 0.10, 0.10, 0.10, 0.10, 0.10],
    ])  # fmt: skip
    v = vd.sdd_verdict(seeds, n_test=N)
    assert v.seed_collapse_rounds == (14, 8)
    assert v.collapse_round == 14 and v.verdict != vd.SDD
    assert "1 of 2 seeds collapsed before the others (from round 8)" in v.note


def test_a_smaller_alpha_widens_every_bound():
    acc = sim("sdd", 0.04, 3)(np.random.default_rng(5))
    loose, strict = vd.sdd_verdict(acc, N, alpha=0.1), vd.sdd_verdict(acc, N, alpha=0.01)
    assert strict.selection_margin > loose.selection_margin
    assert strict.depth_high > loose.depth_high


# ---------------------------------------------------------------- the rule itself


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 4),
    st.lists(st.floats(0.3, 0.9), min_size=4, max_size=30),
    st.integers(0, 2**32 - 1),
    st.sampled_from([100, 10_000]),
)
def test_the_verdict_is_the_stated_rule_on_the_bounds_it_reports(seeds, shape, seed, n_test):
    rng = np.random.default_rng(seed)
    acc = np.clip(np.array(shape)[None, :] + rng.normal(0, 0.01, (seeds, len(shape))), 0, 1)
    v = vd.sdd_verdict(acc, n_test=n_test, chance=0.0)
    assert v.verdict in vd.VERDICTS
    if v.fall_low is None:
        assert v.verdict == vd.INCONCLUSIVE
        return
    assert v.fall_low <= v.fall <= v.fall_high and v.rise_low <= v.rise <= v.rise_high
    cleared = v.fall_low > DEFAULT_MIN_RISE and v.rise_low > DEFAULT_MIN_RISE
    assert (v.verdict == vd.SDD) == cleared
    ruled_out = (
        v.depth_high < DEFAULT_MIN_RISE and v.one_round_high < vd.ONE_ROUND_LINE * DEFAULT_MIN_RISE
    )
    assert v.verdict != vd.NO_SDD or ruled_out
    assert v.verdict != vd.INCONCLUSIVE or not ruled_out


def test_the_margins_are_seeded_and_the_same_for_the_same_curve():
    acc = sim("flat", 0.0, 3)(np.random.default_rng(6))
    assert vd.sdd_verdict(acc, N) == vd.sdd_verdict(acc, N)
