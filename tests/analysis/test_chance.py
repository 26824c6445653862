"""Chance, the collapse's reference, is each curve's own test set's constant-prediction
accuracy (its largest class's share), not a fixed 10%; and the verdict's bounds are columns."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_config

from sparsedd.analysis.chance import KNOWN_CLASS_COUNTS, chance_of
from sparsedd.analysis.report_sections import display_rows
from sparsedd.analysis.synthetic import synthetic_rounds
from sparsedd.analysis.tables import CURVE_FIELDS, analyze
from sparsedd.analysis.verdict import DEFAULT_CHANCE
from sparsedd.data.datasets import dataset_shape, load_dataset

FASHION_LABELS = Path("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")


def test_the_known_class_counts_are_the_datasets_own():
    for name, counts in KNOWN_CLASS_COUNTS.items():
        assert len(counts) == dataset_shape(name)[2], name  # the registry's class count
    test_y = load_dataset(tiny_config()).test_y
    assert tuple(torch.bincount(test_y).tolist()) == KNOWN_CLASS_COUNTS["synthetic"]
    assert sum(KNOWN_CLASS_COUNTS["mnist"]) == 10_000


@pytest.mark.skipif(not FASHION_LABELS.exists(), reason="Fashion-MNIST is not on this machine")
def test_fashion_mnists_counts_are_its_test_files():
    labels = np.frombuffer(gzip.decompress(FASHION_LABELS.read_bytes())[8:], dtype=np.uint8)
    assert tuple(np.bincount(labels).tolist()) == KNOWN_CLASS_COUNTS["fashion-mnist"]


def test_chance_is_the_largest_classs_share():
    assert chance_of("cifar100") == pytest.approx(0.01)
    assert chance_of("mnist") == pytest.approx(0.1135)
    assert chance_of("synthetic") == pytest.approx(133 / 512)
    assert chance_of("my-images") == chance_of(None) == DEFAULT_CHANCE


def _dropping_to(level: float, dataset: str) -> pd.DataFrame:
    """A flat 80% curve (3 seeds) that drops to ``level`` from round 15 and stays there."""
    df = synthetic_rounds("flat", noise_sd=0.003, n_seeds=3, rounds=25, seed=2, dataset=dataset)
    late = df["round"] >= 15
    df.loc[late, "test_acc"] = level + np.random.default_rng(0).normal(0, 0.002, late.sum())
    return df


def test_a_100_class_curve_and_a_10_class_curve_collapse_at_their_own_line():
    # collapse line chance + 0.8 (dense - chance): 64.2% at 1% chance, 66% at 10%
    hundred = analyze(_dropping_to(0.65, "cifar100")).curves.iloc[0]
    ten = analyze(_dropping_to(0.65, "fashion-mnist")).curves.iloc[0]
    assert np.isnan(hundred["collapse_sparsity"]) and hundred["last_round"] == 25
    assert ten["collapse_sparsity"] == pytest.approx(1 - 0.8**15)
    assert ten["last_round"] == 14 and ten["seed_collapse_rounds"] == "15, 15, 15"


def test_a_two_class_curve_collapses_where_a_ten_class_one_does_not(monkeypatch):
    monkeypatch.setitem(KNOWN_CLASS_COUNTS, "pairs", (500, 500))  # line: 50% + 0.8 x 30 = 74%
    two = analyze(_dropping_to(0.70, "pairs")).curves.iloc[0]
    ten = analyze(_dropping_to(0.70, "fashion-mnist")).curves.iloc[0]
    assert two["last_round"] == 14 and ten["last_round"] == 25


def test_the_verdicts_bounds_and_range_are_curve_columns():
    result = analyze(synthetic_rounds("flat", noise_sd=0.005, n_seeds=3, rounds=18, seed=4))
    curve = result.curves.iloc[0]
    for name in ("depth_high", "one_round_high", "last_round", "judged_to_sparsity"):
        assert name in CURVE_FIELDS and np.isfinite(curve[name]), name
    assert curve["verdict"] == "no SDD"
    assert curve["depth_high"] < result.min_rise
    assert curve["judged_to_sparsity"] == pytest.approx(1 - 0.8**18)
    assert curve["seed_collapse_rounds"] == "-, -, -"
    assert display_rows(result)[0]["valley bound"] == f"≤ {100 * curve['depth_high']:.1f}"
