"""How much of the test set's noise pairing removes, on a recorded results folder.

    python bench/paired_noise.py [OUT_DIR]      # default ./sparsedd-runs

For every curve whose rounds recorded their per-image test correctness, the test-set SD of
the difference between two rounds' seed-mean accuracies, paired over the same test images
(``sparsedd.analysis.paired``), against the binomial SD the verdict uses without it (the two
rounds' test-set noise adding as if independent, √((p_a(1 − p_a) + p_b(1 − p_b))/n)): for each
pair of consecutive trained rounds (their median ratio) and for the curve's dip and peak as
``analyze`` finds them. Ends with one JSON line per curve.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sparsedd.analysis.load import load_results  # noqa: E402
from sparsedd.analysis.paired import independent_diff_sd, paired_noise  # noqa: E402
from sparsedd.analysis.tables import analyze  # noqa: E402
from sparsedd.provenance import cpu_name  # noqa: E402


def curve_summary(rounds, curve, stats, row) -> dict | None:
    """The paired and binomial SDs (points) of one curve's round differences, or None."""
    sd = paired_noise(rounds, curve)
    if sd is None:
        return None
    at = stats[stats["curve"] == curve].sort_values("round").reset_index(drop=True)
    acc = at["test_acc_mean"].astype(float).to_numpy()
    n = int(rounds.loc[rounds["curve"] == curve, "n_test"].min())

    def pair(a: int, b: int) -> tuple[float, float]:
        return 100 * sd(a, b), 100 * independent_diff_sd(acc[a], acc[b], n)

    trained = [k for k in range(len(at)) if math.isfinite(acc[k])]
    steps = [pair(a, b) for a, b in zip(trained, trained[1:], strict=False) if b == a + 1]
    out = {
        "curve": curve,
        "n_seeds": int(row["n_seeds"]),
        "n_test": n,
        "consecutive_pairs": len(steps),
        "consecutive_paired_sd_median": float(np.median([p for p, _ in steps])),
        "consecutive_binomial_sd_median": float(np.median([b for _, b in steps])),
        "consecutive_ratio_median": float(np.median([p / b for p, b in steps])),
    }
    sparsity = at["sparsity"].to_numpy()
    if math.isfinite(row["dip_sparsity"]) and math.isfinite(row["peak_sparsity"]):
        dip = int(np.argmin(np.abs(sparsity - row["dip_sparsity"])))
        peak = int(np.argmin(np.abs(sparsity - row["peak_sparsity"])))
        paired, binomial = pair(dip, peak)
        out.update(dip_round=dip, peak_round=peak, dip_peak_paired_sd=paired,
                   dip_peak_binomial_sd=binomial, dip_peak_ratio=paired / binomial)  # fmt: skip
    return out


def _line(s: dict) -> str:
    """One curve's summary in words."""
    text = (
        f"{s['curve']}: consecutive rounds: paired {s['consecutive_paired_sd_median']:.3f} vs "
        f"binomial {s['consecutive_binomial_sd_median']:.3f} points "
        f"(median ratio {s['consecutive_ratio_median']:.2f})"
    )
    if "dip_round" in s:
        text += (
            f"; dip (round {s['dip_round']}) to peak (round {s['peak_round']}): paired "
            f"{s['dip_peak_paired_sd']:.3f} vs binomial {s['dip_peak_binomial_sd']:.3f} points"
        )
    return text


def main() -> None:
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "./sparsedd-runs"
    rounds = load_results(out_dir, correctness=True)
    result = analyze(rounds.drop(columns="test_correct"))
    rounds = result.rounds.assign(test_correct=rounds["test_correct"].to_numpy())
    print(f"machine: {cpu_name()}, {os.cpu_count()} CPUs, python {platform.python_version()}")
    found = []
    for _, row in result.curves.iterrows():
        summary = curve_summary(rounds, row["curve"], result.stats, row)
        if summary is None:
            print(f"{row['curve']}: no per-image correctness recorded")
            continue
        found.append(summary)
        print(_line(summary))
    for summary in found:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
