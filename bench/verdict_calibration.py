"""Calibration of the SDD verdict: its false-alarm rate on curves without SDD and its power on
curves with one, measured by seeded simulation over seeds, noise levels and test-set sizes.

    python bench/verdict_calibration.py            # 1,000 curves per cell
    python bench/verdict_calibration.py --quick    # 200 curves per cell

Curves have 35 rounds (dense + 34, as the paper's protocol) and end
in a collapse. Each seed's accuracy at a round has noise of s.d. ``noise`` made of the test
set's binomial noise (shared by the seeds: one test set) and the seed's own training noise; a
noise level below a test set's binomial noise is that noise (one cell, not several). Seeds also
differ in level (1 point s.d.). Null curves: ``flat`` (80% until the collapse) and ``monotone``
(a steady 5-point decline). Power: ``sdd`` curves whose dip is 3 × the per-round noise deep
(every seed falls and rises by it), the floor we were asked for. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sparsedd.analysis.synthetic import simulate_curves  # noqa: E402
from sparsedd.analysis.tables import DEFAULT_MIN_RISE  # noqa: E402
from sparsedd.analysis.verdict import VERDICTS, sdd_verdict  # noqa: E402

NOISES = (0.005, 0.01, 0.02)
SEEDS = (1, 2, 3, 5)
TEST_SIZES = (100, 1000, 10_000)
CASES = (("flat", 0.0), ("monotone", 0.05), ("sdd", 3.0))  # sdd: depth in units of noise
SHAPE = {"flat": "flat", "monotone": "decline", "sdd": "sdd"}


def effective_noise(noise: float, n_test: int) -> float:
    """The per-round noise a curve really has: never below the binomial noise at 80%."""
    return max(noise, float(np.sqrt(0.8 * 0.2 / n_test)))


def cell_rates(case: str, noise: float, seeds: int, n_test: int, curves: int) -> dict:
    """Verdict rates over ``curves`` seeded curves of one cell of the grid."""
    depth = dict(CASES)[case]
    sigma = effective_noise(noise, n_test)
    if case == "sdd":
        depth = depth * sigma
    rng = np.random.default_rng([seeds, n_test, int(noise * 1e4), list(dict(CASES)).index(case)])
    counts = dict.fromkeys(VERDICTS, 0)
    for _ in range(curves):
        test, _ = simulate_curves(SHAPE[case], depth, sigma, seeds, n_test, rng)
        counts[sdd_verdict(test, n_test, DEFAULT_MIN_RISE).verdict] += 1
    return {v: c / curves for v, c in counts.items()} | {"noise": sigma, "depth": depth}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 curves per cell, not 1,000")
    args = parser.parse_args()
    curves = 200 if args.quick else 1000
    start = time.perf_counter()
    rows = []
    print(f"verdict calibration: {curves} curves per cell, min_rise {DEFAULT_MIN_RISE:.1%}")
    print(f"{'case':9} {'noise':>6} {'seeds':>5} {'n_test':>6}  {'SDD':>6} {'no SDD':>6} "
          f"{'incon.':>6}")  # fmt: skip
    for case, _ in CASES:
        for n_test in TEST_SIZES:
            # a noise below the test set's binomial noise is that noise: one cell, not three
            noises = sorted({effective_noise(noise, n_test) for noise in NOISES})
            for noise in noises:
                for seeds in SEEDS:
                    r = cell_rates(case, noise, seeds, n_test, curves)
                    rows.append({"case": case, "seeds": seeds, "n_test": n_test, **r})
                    print(
                        f"{case:9} {100 * r['noise']:5.2f}p {seeds:5d} {n_test:6d}  "
                        f"{r['SDD']:6.1%} {r['no SDD']:6.1%} {r['inconclusive']:6.1%}"
                    )
    null = [r for r in rows if r["case"] != "sdd"]
    power = [r for r in rows if r["case"] == "sdd"]
    multi = [r for r in power if r["seeds"] >= 2]
    summary = {
        "curves_per_cell": curves,
        "min_rise": DEFAULT_MIN_RISE,
        "false_sdd_max": max(r["SDD"] for r in null),
        "false_sdd_mean": float(np.mean([r["SDD"] for r in null])),
        "power_min_2plus_seeds": min(r["SDD"] for r in multi),
        "power_mean_2plus_seeds": float(np.mean([r["SDD"] for r in multi])),
        "power_min_3plus_seeds": min(r["SDD"] for r in multi if r["seeds"] >= 3),
        "power_one_seed_mean": float(np.mean([r["SDD"] for r in power if r["seeds"] == 1])),
        "cells_power_below_80": [
            f"{r['noise'] * 100:.2f}p/{r['seeds']}s/{r['n_test']}: {r['SDD']:.1%}"
            for r in power
            if r["SDD"] < 0.8
        ],
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
