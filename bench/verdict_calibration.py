"""Calibration of the SDD verdict: its false SDD on curves without SDD, its false "no SDD" on
curves with a dip, its power and its "no SDD" reach, by seeded simulation.

    python bench/verdict_calibration.py            # 200 curves per cell
    python bench/verdict_calibration.py --quick    # 40 curves per cell
    python bench/verdict_calibration.py --curves 80 --named-curves 200
        # 200 curves in the cells the limits name (flat, 3 seeds, 10,000 test images; the
        # 3-point dips), 80 in the others

Curves have 35 rounds (dense + 34, the paper's protocol) and end in a collapse near round 21,
each seed at its own round (±3). Each seed's accuracy at a round has noise of 1 point s.d.
(never below the test set's binomial noise, 1.26 points at 1,000 images): the test set's
binomial noise (shared by the seeds: one test set) and the seed's own training noise of one of
five kinds (independent; AR(1) with ρ 0.5 or 0.8; a random walk; independent noise growing to
4 × towards the collapse). Seeds also differ in level (1 point s.d.).

Null curves: flat; a 5-point monotone decline; a 5-point fall, then a plateau; a plateau, then a
5-point rise; a 5-point monotone rise. Dips of 3 points, every seed's: aligned, misaligned (each
seed's dip moved by −2..2 rounds) and one-round; and an aligned dip of 6 points (power). Then the
adaptive procedure (``--adaptive-seeds 2:5``, alpha spent over its looks) against a fixed 5 seeds.
Prints a table (markdown) and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sparsedd.analysis.choices import DEFAULT_MIN_RISE
from sparsedd.analysis.synthetic import NOISE_KINDS, simulate_curves  # noqa: E402
from sparsedd.analysis.verdict import ALPHA, sdd_verdict
from sparsedd.sweep.adaptive import AdaptiveSeeds, look_alpha  # noqa: E402

NOISE = 0.01
SEEDS = (2, 3, 5)
TEST_SIZES = (1000, 10_000)
#: case: (shape, depth, dip shift); nulls first
NULLS = {
    "flat": ("flat", 0.0, 0),
    "monotone": ("decline", 0.05, 0),
    "fall-plateau": ("fall-plateau", 0.05, 0),
    "plateau-rise": ("plateau-rise", 0.05, 0),
    "rise": ("gain", 0.05, 0),
}
DIPS = {
    "dip aligned": ("sdd", 0.03, 0),
    "dip ±2 rounds": ("sdd", 0.03, 2),
    "dip one round": ("one-round", 0.03, 0),
    "dip 6 points": ("sdd", 0.06, 0),
}
CASES = NULLS | DIPS
ADAPTIVE = AdaptiveSeeds(2, 5)


def effective_noise(n_test: int) -> float:
    """The per-round noise a curve really has: never below the binomial noise at 80%."""
    return max(NOISE, float(np.sqrt(0.8 * 0.2 / n_test)))


def draw(case: str, kind: str, seeds: int, n_test: int, rng: np.random.Generator) -> np.ndarray:
    """One simulated curve of the cell (seeds × 35 rounds)."""
    shape, depth, shift = CASES[case]
    return simulate_curves(
        shape, depth, effective_noise(n_test), seeds, n_test, rng, noise_kind=kind,
        dip_shift=shift, collapse_jitter=3,
    )[0]  # fmt: skip


def is_named(case: str, seeds: int, n_test: int) -> bool:
    """Whether the issue's limits name the cell: flat curves with 3 seeds at 10,000 test
    images (the "no SDD" reach) and the 3-point dips (the false "no SDD")."""
    flat = case == "flat" and seeds == 3 and n_test == 10_000
    return flat or case in ("dip aligned", "dip ±2 rounds", "dip one round")


def cell(case: str, kind: str, seeds: int, n_test: int, curves: int) -> dict[str, float]:
    """Verdict shares over ``curves`` seeded curves of one cell."""
    rng = np.random.default_rng([seeds, n_test, list(CASES).index(case), NOISE_KINDS.index(kind)])
    out = {"SDD": 0, "no SDD": 0, "inconclusive": 0}
    for _ in range(curves):
        out[sdd_verdict(draw(case, kind, seeds, n_test, rng), n_test).verdict] += 1
    return {k: v / curves for k, v in out.items()}


def adaptive_cell(case: str, kind: str, n_test: int, curves: int) -> dict[str, float]:
    """The adaptive rule (ADAPTIVE, alpha spent over its looks) and a fixed MAX seeds on the
    same curves: verdict shares of each and the adaptive rule's mean seeds."""
    rng = np.random.default_rng([7, n_test, list(CASES).index(case), NOISE_KINDS.index(kind)])
    fixed = {"SDD": 0, "no SDD": 0}
    adaptive = {"SDD": 0, "no SDD": 0}
    used = 0
    for _ in range(curves):
        acc = draw(case, kind, ADAPTIVE.most, n_test, rng)
        v = sdd_verdict(acc, n_test, alpha=ALPHA).verdict
        if v in fixed:
            fixed[v] += 1
        for n in range(ADAPTIVE.start, ADAPTIVE.most + 1):
            v = sdd_verdict(acc[:n], n_test, alpha=look_alpha(ADAPTIVE, n)).verdict
            if v in adaptive or n == ADAPTIVE.most:
                break
        if v in adaptive:
            adaptive[v] += 1
        used += n
    return {
        "fixed SDD": fixed["SDD"] / curves, "fixed no SDD": fixed["no SDD"] / curves,
        "adaptive SDD": adaptive["SDD"] / curves,
        "adaptive no SDD": adaptive["no SDD"] / curves, "mean seeds": used / curves,
    }  # fmt: skip


def adaptive_table(curves: int) -> list[dict[str, float | str]]:
    """Print the adaptive rule against a fixed MAX seeds; its rows."""
    print(f"\nadaptive seeds {ADAPTIVE} (alpha spent over the looks) against a fixed "
          f"{ADAPTIVE.most} seeds, 10,000 test images:\n")  # fmt: skip
    print("| case | noise | fixed: SDD | fixed: no SDD | adaptive: SDD | adaptive: no SDD | "
          "adaptive: mean seeds |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|")
    adaptive = []
    for case in ("flat", "fall-plateau", "plateau-rise", "dip 6 points"):
        for kind in ("independent", "growing"):
            r = adaptive_cell(case, kind, 10_000, curves)
            adaptive.append({"case": case, "kind": kind} | r)
            print(f"| {case} | {kind} | {r['fixed SDD']:.1%} | {r['fixed no SDD']:.1%} | "
                  f"{r['adaptive SDD']:.1%} | {r['adaptive no SDD']:.1%} | "
                  f"{r['mean seeds']:.2f} |", flush=True)  # fmt: skip
    return adaptive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="40 curves per cell, not 200")
    parser.add_argument("--curves", type=int, help="curves per cell (overrides --quick)")
    parser.add_argument("--named-curves", type=int, help="curves in the cells the limits name")
    parser.add_argument(
        "--cases", help=f"comma-separated cases to run (default all: {list(CASES)})"
    )
    parser.add_argument("--no-adaptive", action="store_true", help="skip the adaptive rule")
    parser.add_argument("--sizes", help=f"comma-separated test-set sizes (default {TEST_SIZES})")
    args = parser.parse_args()
    cases = args.cases.split(",") if args.cases else list(CASES)
    sizes = [int(n) for n in args.sizes.split(",")] if args.sizes else list(TEST_SIZES)
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {list(CASES)}")
    curves = args.curves or (40 if args.quick else 200)
    named = args.named_curves or curves
    start = time.perf_counter()
    print(f"verdict calibration: {curves} curves per cell ({named} in the named cells), "
          f"min_rise {DEFAULT_MIN_RISE:.1%}\n")  # fmt: skip
    print("| case | noise | test images | seeds | SDD | no SDD | inconclusive |")
    print("|---|---|---:|---:|---:|---:|---:|")
    rows = []
    for case in cases:
        for kind in NOISE_KINDS:
            for n_test in sizes:
                for seeds in SEEDS:
                    n = named if is_named(case, seeds, n_test) else curves
                    r = cell(case, kind, seeds, n_test, n)
                    rows.append({"case": case, "kind": kind, "n_test": n_test, "seeds": seeds,
                                 "curves": n} | r)  # fmt: skip
                    print(f"| {case} | {kind} | {n_test:,} | {seeds} | {r['SDD']:.1%} | "
                          f"{r['no SDD']:.1%} | {r['inconclusive']:.1%} |", flush=True)  # fmt: skip
    adaptive = [] if args.no_adaptive else adaptive_table(curves)
    null = [r for r in rows if r["case"] in NULLS]
    dips = [r for r in rows if r["case"] in DIPS]  # every dip is 3 points deep or more
    target = [r for r in null if r["case"] in ("flat", "plateau-rise", "rise") and r["seeds"] == 3
              and r["n_test"] == 10_000 and r["kind"] == "independent"]  # fmt: skip
    summary = {
        "curves_per_cell": curves,
        "named_cells_curves": named,
        "min_rise": DEFAULT_MIN_RISE,
        "false_sdd_max": max((r["SDD"] for r in null), default=None),
        "false_sdd_over_5pct": [
            f"{r['case']}/{r['kind']}/{r['n_test']}/{r['seeds']}: {r['SDD']:.1%}"
            for r in null
            if r["SDD"] > 0.05
        ],  # fmt: skip
        "false_no_sdd_max": max((r["no SDD"] for r in dips), default=None),
        "false_no_sdd_over_5pct": [
            f"{r['case']}/{r['kind']}/{r['n_test']}/{r['seeds']}: {r['no SDD']:.1%}"
            for r in dips
            if r["no SDD"] > 0.05
        ],  # fmt: skip
        "no_sdd_flat_rising_3_seeds_10k_1pt": [r["no SDD"] for r in target],
        "power_mean_aligned": float(
            np.mean([r["SDD"] for r in dips if r["case"] == "dip aligned"])
        ),
        "power_mean_6_points": float(
            np.mean([r["SDD"] for r in dips if r["case"] == "dip 6 points"])
        ),
        "adaptive": adaptive,
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
