"""The round of each run behind an analysis' numbers: best validation accuracy, dip and peak.

A curve's dip and peak are sparsities (``dip_sparsity``, ``peak_sparsity`` of the curve table);
each run of the curve reached them at one of its rounds. ``run_rounds`` lists, per run, that
round and the round of its best validation accuracy; ``named_round`` answers
``sparsedd export --round best|dip|peak``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from sparsedd.analysis.load import collapsed_flags
from sparsedd.errors import UserError

if TYPE_CHECKING:
    from sparsedd.analysis.tables import Analysis

#: Names ``export --round`` takes besides round numbers.
ROUND_NAMES = ("best", "dip", "peak")


def _nearest_round(rounds: pd.DataFrame, sparsity: Any) -> int | None:
    """The round of ``rounds`` (one run's rows) whose sparsity is nearest ``sparsity``."""
    if sparsity is None or pd.isna(sparsity) or rounds.empty:
        return None
    gaps = (pd.to_numeric(rounds["sparsity"]) - float(sparsity)).abs()
    return int(rounds.loc[gaps.idxmin(), "round"])


def _best_round(rounds: pd.DataFrame) -> tuple[int | None, float | None]:
    """(round, val_acc) of the highest validation accuracy; ties go to the sparser round."""
    val = pd.to_numeric(rounds["val_acc"], errors="coerce") if "val_acc" in rounds else None
    if val is None or val.isna().all():
        return None, None
    best = val.max()
    return int(rounds.loc[val == best, "round"].max()), float(best)


def run_rounds(result: Analysis) -> pd.DataFrame:
    """Per run: its curve, seed, the round (and test accuracy) of its best validation accuracy,
    the rounds at its curve's dip and peak (None where the curve shows no SDD), and the first
    round it skipped as collapsed (None where it never stopped). Only trained rounds are named:
    a collapsed round is never the best, the dip or the peak."""
    curves = {rec["curve"]: rec for rec in result.curves.to_dict(orient="records")}
    records = []
    for run_id, every in result.rounds.groupby("run_id", sort=False):
        every = every.sort_values("round")
        flags = collapsed_flags(every)
        rows = every[~flags]  # a collapsed round (skipped, nothing measured) is never named
        curve = curves[every["curve"].iloc[0]]
        sdd = bool(curve.get("sdd_detected"))
        best, best_val = _best_round(rows)
        test = None if best is None else float(rows.loc[rows["round"] == best, "test_acc"].iloc[0])
        records.append(
            {
                "curve": curve["curve"],
                "run_id": run_id,
                "seed": rows["seed"].iloc[0] if "seed" in rows else None,
                "best_round": best,
                "best_val_acc": best_val,
                "best_test_acc": test,
                "dip_round": _nearest_round(rows, curve.get("dip_sparsity")) if sdd else None,
                "peak_round": _nearest_round(rows, curve.get("peak_sparsity")) if sdd else None,
                "collapsed_round": int(every.loc[flags, "round"].min()) if flags.any() else None,
            }
        )
    table = pd.DataFrame.from_records(records)
    return table.astype(object).where(table.notna(), None)


def named_round(result: Analysis, run_id: str, name: str) -> int:
    """The round of run ``run_id`` that ``name`` (best, dip or peak) stands for; UserError
    when the run has none (no validation data, or a curve without SDD)."""
    if name not in ROUND_NAMES:
        raise UserError(f"--round takes a round number or one of {', '.join(ROUND_NAMES)}")
    table = run_rounds(result)
    rows = table[table["run_id"] == run_id]
    if rows.empty:
        raise UserError(f"run {run_id} has no recorded rounds to analyse; train it first")
    row = rows.iloc[0]
    k = row[f"{name}_round"]
    if k is not None:
        return int(k)
    if name == "best":
        raise UserError(
            f"run {run_id} has no validation accuracy (val_size=0), so no best round; "
            f"re-run with --set val_size=N, or give --round as a number"
        )
    raise UserError(
        f"the curve of run {run_id} ({row['curve']}) shows no sparse double descent, so it has "
        f"no {name}; give --round best or a round number"
    )


def rounds_json(result: Analysis) -> dict[str, list[dict[str, Any]]]:
    """``run_rounds`` grouped by curve label, as JSON-ready dicts (without the label)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for rec in run_rounds(result).to_dict(orient="records"):
        curve = rec.pop("curve")
        out.setdefault(curve, []).append(
            {k: (v.item() if hasattr(v, "item") else v) for k, v in rec.items()}
        )
    return out


def rounds_text_rows(result: Analysis) -> list[dict[str, str]]:
    """``run_rounds`` as rows of strings for a plain-text table (with a "collapsed from round"
    column where any run stopped as collapsed)."""

    def cell(value: Any, pct: bool = False) -> str:
        if value is None or (isinstance(value, float) and value != value):
            return "-"
        if pct:
            return f"{100 * value:.1f}%"
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)

    records = run_rounds(result).to_dict(orient="records")
    stopped = any(rec["collapsed_round"] is not None for rec in records)
    return [
        {
            "run": rec["run_id"],
            "curve": rec["curve"],
            "seed": cell(rec["seed"]),
            "best round": cell(rec["best_round"]),
            "val": cell(rec["best_val_acc"], pct=True),
            "test": cell(rec["best_test_acc"], pct=True),
            "dip round": cell(rec["dip_round"]),
            "peak round": cell(rec["peak_round"]),
            **({"collapsed from round": cell(rec["collapsed_round"])} if stopped else {}),
        }
        for rec in records
    ]
