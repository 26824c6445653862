"""Does the activation entropy warn of the dip and the recovery? Measured per run.

    python bench/entropy_warning.py RESULTS_DIR [--where remedy=none --where weight_decay=0]

DSD² reads the entropy of the units' on/off states (recorded per round as
``activation_entropy``) as a signal of the phases of sparse double descent. For every run of
a results folder (those matching ``--where``), this finds the dip and the peak of its own test
accuracy as the verdict does (``sdd_verdict`` on the run alone: the 3-round mean, before any
collapse) and the turning points of its entropy (the rounds where the 3-round mean of the
entropy changes direction), then prints, for the dip and for the peak, the nearest turning
point and how many rounds it came before (positive: the entropy turned first). It ends with one
JSON line per run. Nothing is trained.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sparsedd.analysis.load import load_results  # noqa: E402
from sparsedd.analysis.verdict import sdd_verdict  # noqa: E402


def smooth3(values: np.ndarray) -> np.ndarray:
    """The centred 3-round mean (the ends average the two rounds they have)."""
    out = np.empty_like(values, dtype=float)
    for i in range(len(values)):
        out[i] = np.mean(values[max(i - 1, 0) : i + 2])
    return out


def turning_points(values: np.ndarray) -> list[tuple[int, str]]:
    """(round, 'max' or 'min') where the smoothed series changes direction."""
    s = smooth3(np.asarray(values, dtype=float))
    steps = np.sign(np.diff(s))
    points = []
    last = 0.0
    for i, step in enumerate(steps):
        if step == 0:
            continue
        if last and step != last:
            points.append((i, "max" if last > 0 else "min"))
        last = step
    return points


def nearest_lead(event: int | None, points: list[tuple[int, str]]) -> dict[str, Any] | None:
    """The turning point nearest round ``event`` and its lead in rounds (positive: earlier)."""
    if event is None or not points:
        return None
    round_, kind = min(points, key=lambda p: (abs(p[0] - event), -p[0]))
    return {"round": round_, "kind": kind, "lead": event - round_}


def run_report(rows: Any) -> dict[str, Any]:
    """Dip, peak, entropy turning points and leads of one run's rows (sorted by round)."""
    rows = rows.sort_values("round")
    trained = rows[~rows["collapsed"].fillna(False).astype(bool)] if "collapsed" in rows else rows
    acc = trained["test_acc"].to_numpy(dtype=float)
    entropy = trained["activation_entropy"].to_numpy(dtype=float)
    n_test = float(trained["n_test"].dropna().iloc[0]) if trained["n_test"].notna().any() else None
    verdict = sdd_verdict(acc[None, :], n_test)
    points = turning_points(entropy)
    return {
        "run_id": rows["run_id"].iloc[0],
        "seed": int(rows["seed"].iloc[0]),
        "verdict": verdict.verdict,
        "dip_round": verdict.dip_round,
        "peak_round": verdict.peak_round,
        "entropy_turning_points": points,
        "entropy_at_dip": nearest_lead(verdict.dip_round, points),
        "entropy_at_peak": nearest_lead(verdict.peak_round, points),
        "entropy": [round(float(e), 4) for e in entropy],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results")
    parser.add_argument("--where", action="append", default=[], help="KEY=VALUE filter")
    args = parser.parse_args()
    df = load_results(args.results)
    for cond in args.where:
        key, value = cond.split("=", 1)
        column = df[key]
        numeric = column.dtype.kind in "fiu"
        df = df[column == float(value)] if numeric else df[column.astype(str) == value]
    reports = [run_report(rows) for _, rows in df.groupby("run_id", sort=False)]
    for r in reports:
        dip, peak = r["entropy_at_dip"], r["entropy_at_peak"]
        print(
            f"{r['run_id']} seed {r['seed']}: {r['verdict']}; dip round {r['dip_round']}, "
            f"peak round {r['peak_round']}; entropy turning points {r['entropy_turning_points']}; "
            f"nearest the dip: {dip}; nearest the peak: {peak}"
        )
    for r in reports:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
