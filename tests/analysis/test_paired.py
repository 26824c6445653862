"""The paired test-set noise of a difference between two rounds, checked against a seeded
simulation of test sets drawn from a population, and against the binomial formula."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sparsedd.analysis.paired import (
    independent_diff_sd,
    pack,
    paired_diff_sd,
    paired_noise,
    seed_paired_diff_sd,
    unpack,
)

POPULATION = 200_000
N_TEST = 2_000
DRAWS = 2_000


def _population(rng: np.random.Generator, models: int, agreement: float) -> np.ndarray:
    """Per-image correctness of ``models`` models on a population of images: each image has a
    difficulty; a model gets it right with a probability set by the difficulty and, with
    probability 1 − ``agreement``, by its own coin (0: models err independently)."""
    easy = rng.beta(4, 1.2, size=POPULATION)  # most images easy, some hard: accuracy ≈ 0.77
    shared = rng.random(POPULATION) < easy
    out = []
    for _ in range(models):
        own = rng.random(POPULATION) < easy
        keep = rng.random(POPULATION) < agreement
        out.append(np.where(keep, shared, own))
    return np.stack(out)


def _resampled_sd(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> float:
    """Empirical SD of mean_b − mean_a (seed means) over test sets drawn from the population."""
    diffs = []
    for _ in range(DRAWS):
        idx = rng.integers(0, POPULATION, size=N_TEST)
        diffs.append(b[:, idx].mean() - a[:, idx].mean())
    return float(np.std(diffs, ddof=1))


@pytest.mark.parametrize("agreement", [0.0, 0.6, 0.9])
def test_its_sd_matches_the_sd_over_resampled_test_sets(agreement: float) -> None:
    """Models that share the images' difficulty (and, with ``agreement``, more)."""
    rng = np.random.default_rng(24)
    a, b = _population(rng, 2, agreement)
    empirical = _resampled_sd(a[None], b[None], rng)
    idx = rng.integers(0, POPULATION, size=N_TEST)  # one test set, as a run has
    estimate = paired_diff_sd(a[idx], b[idx])
    assert estimate == pytest.approx(empirical, rel=0.1)
    # correlated rounds: less noise than the binomial formula claims, the less the more alike
    binomial = independent_diff_sd(a[idx].mean(), b[idx].mean(), N_TEST)
    assert estimate < binomial * (1 - 0.3 * agreement) * 0.99


def test_rounds_that_err_independently_get_the_binomial_formula() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.random(POPULATION) < 0.77, rng.random(POPULATION) < 0.70
    empirical = _resampled_sd(a[None], b[None], rng)
    idx = rng.integers(0, POPULATION, size=N_TEST)
    estimate = paired_diff_sd(a[idx], b[idx])
    binomial = independent_diff_sd(a[idx].mean(), b[idx].mean(), N_TEST)
    assert estimate == pytest.approx(binomial, rel=0.03)
    assert estimate == pytest.approx(empirical, rel=0.1)


def test_seed_averaged_sd_matches_resampled_test_sets() -> None:
    """Three seeds per round scored on the same images; the difference of the seed means."""
    rng = np.random.default_rng(7)
    seeds = _population(rng, 6, 0.7)
    a, b = seeds[:3], seeds[3:]
    empirical = _resampled_sd(a, b, rng)
    idx = rng.integers(0, POPULATION, size=N_TEST)
    estimate = seed_paired_diff_sd(a[:, idx], b[:, idx])
    assert estimate == pytest.approx(empirical, rel=0.1)
    # not the one-seed SD: averaging seeds on one test set lowers the test set's share
    assert estimate < paired_diff_sd(a[0, idx], b[0, idx]) * 0.95


def test_identical_rounds_have_no_test_set_noise_and_sizes_must_agree() -> None:
    correct = np.arange(100) % 3 == 0
    assert paired_diff_sd(correct, correct) == 0.0
    # every image discordant (34 only a, 66 only b): var(d) = 1 − 0.32²
    assert paired_diff_sd(correct, ~correct) == pytest.approx(math.sqrt((1 - 0.32**2) / 100))
    with pytest.raises(ValueError, match="100 and 99"):
        paired_diff_sd(correct, correct[:99])
    assert math.isnan(seed_paired_diff_sd(np.zeros((0, 5)), np.ones((1, 5))))


def test_pack_and_unpack_round_trip_any_length() -> None:
    rng = np.random.default_rng(3)
    for n in (1, 7, 8, 9, 10_000):
        correct = rng.random(n) < 0.5
        bits = pack(correct)
        assert len(bits) == (n + 7) // 8 and np.array_equal(unpack(bits, n), correct)


def _rounds(correct: np.ndarray, collapsed: set[tuple[int, int]] = frozenset()) -> pd.DataFrame:
    """A rounds table (with ``test_correct``) of one curve: ``correct`` is seeds × rounds × n."""
    rows = []
    for s, seed in enumerate(correct):
        for k, bits in enumerate(seed):
            gone = (s, k) in collapsed
            rows.append(
                {
                    "model": "m", "noise": 0.2, "weight_decay": 0.0, "seed": s,
                    "run_id": f"run{s}", "round": k, "sparsity": 1 - 0.8**k,
                    "test_acc": None if gone else float(bits.mean()), "n_test": bits.size,
                    "collapsed": int(gone), "test_correct": None if gone else pack(bits),
                }
            )  # fmt: skip
    return pd.DataFrame(rows)


def test_paired_noise_gives_each_pair_of_rounds_its_sd_over_the_seeds_that_trained_it() -> None:
    rng = np.random.default_rng(11)
    correct = rng.random((3, 5, 400)) < 0.8
    correct[:, 3] = correct[:, 2]  # rounds 2 and 3 agree on every image
    sd = paired_noise(_rounds(correct))
    assert sd is not None
    assert sd(2, 3) == 0.0
    assert sd(0, 4) == pytest.approx(seed_paired_diff_sd(correct[:, 0], correct[:, 4]))
    assert sd(0, 4) != pytest.approx(sd(0, 1))
    # seed 2 stopped as collapsed at round 4: round 4's mean is over seeds 0 and 1
    table = _rounds(correct, collapsed={(2, 4)})
    sd = paired_noise(table.assign(curve="c"), "c")
    assert sd(1, 4) == pytest.approx(seed_paired_diff_sd(correct[:, 1], correct[:2, 4]))


def test_paired_noise_is_none_where_any_trained_round_lacks_it() -> None:
    rng = np.random.default_rng(5)
    table = _rounds(rng.random((2, 4, 64)) < 0.7)
    assert paired_noise(table.drop(columns="test_correct")) is None  # an older database
    partly = table.copy()
    partly.loc[0, "test_correct"] = None  # round 0 recorded before the upgrade
    assert paired_noise(partly) is None
    assert paired_noise(table) is not None
