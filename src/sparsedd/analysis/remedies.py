"""The remedy table: remedy × λ per setting, what each costs and what it buys (pure functions).

For every curve of a results folder whose curves differ in ``remedy``: its verdict, the test
accuracy at its best validation round, the sparsity it holds to within the tolerance, and the
epochs one run of it trained, a distilled run's teacher included (the default teacher is the
dense round of the same run without a remedy: ``dense_epochs`` or ``epochs`` more; a teacher
named by run id counts that run's recorded dense round; an exported file's is not known).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from sparsedd.analysis.report_sections import amount, key_cell, missing, pct, verdict_cell
from sparsedd.analysis.tables import Analysis
from sparsedd.config import round_epochs

#: Columns of :func:`remedy_table` after the curve's keys.
REMEDY_FIELDS = (
    "is_best_lambda",
    "verdict",
    "n_seeds",
    "test_at_best_val",
    "compressible_to",
    "student_epochs",
    "teacher_epochs",
    "epochs",
)


def has_remedies(result: Analysis) -> bool:
    """Whether the folder's curves differ in their remedy (the table has something to compare)."""
    return "remedy" in result.keys


def _value(row: pd.Series, key: str, default: Any = None) -> Any:
    value = row.get(key, default)
    return default if missing(value) else value


def teacher_epochs(run: pd.Series, rounds: pd.DataFrame) -> float:
    """Epochs a run's teacher trained (0 without one; NaN where it is not known)."""
    if _value(run, "remedy", "none") != "distill":
        return 0.0
    teacher = _value(run, "teacher")
    if teacher is None:
        return float(round_epochs(run.to_dict(), 0))
    dense = rounds[(rounds["run_id"] == teacher) & (rounds["round"] == 0)]
    return float(dense["round_epochs"].iloc[0]) if len(dense) else math.nan


def _run_costs(group: pd.DataFrame, rounds: pd.DataFrame) -> tuple[float, float]:
    """(student, teacher) epochs of one run, averaged over the curve's runs."""
    students, teachers = [], []
    for _, run in group.groupby("run_id", sort=False):
        students.append(float(pd.to_numeric(run["round_epochs"]).fillna(0).sum()))
        teachers.append(teacher_epochs(run.iloc[0], rounds))
    return sum(students) / len(students), sum(teachers) / len(teachers)


def remedy_table(result: Analysis) -> pd.DataFrame:
    """One row per curve: its keys, then REMEDY_FIELDS (epochs per run, teacher included)."""
    records = []
    for _, c in result.curves.iterrows():
        group = result.rounds[result.rounds["curve"] == c["curve"]]
        student, teacher = _run_costs(group, result.rounds)
        star = c.get("best_weight_decay")
        records.append(
            {
                **{k: c[k] for k in result.keys},
                "is_best_lambda": bool(not missing(star) and c.get("weight_decay") == star),
                "verdict": verdict_cell(c),
                "n_seeds": int(c["n_seeds"]),
                "test_at_best_val": c["test_at_best_val"],
                "compressible_to": c["compressible_to"],
                "student_epochs": student,
                "teacher_epochs": teacher,
                "epochs": student + teacher,
            }
        )
    return pd.DataFrame.from_records(records)


def remedy_rows(result: Analysis) -> list[tuple[str, list[dict[str, str]]]]:
    """Per setting (curves differing only in remedy and λ): one row per remedy × λ, as text."""
    if not has_remedies(result):
        return []
    table = remedy_table(result)
    setting_keys = [k for k in result.keys if k not in ("remedy", "weight_decay")]
    order = [k for k in ("remedy", "weight_decay") if k in table.columns]
    out = []
    groups = table.groupby(setting_keys, sort=False) if setting_keys else [((), table)]
    for values, members in groups:
        values = values if isinstance(values, tuple) else (values,)
        label = " ".join(f"{k}={key_cell(v)}" for k, v in zip(setting_keys, values, strict=True))
        rows = [_text_row(r, result.tolerance) for _, r in members.sort_values(order).iterrows()]
        out.append((label or "all runs", rows))
    return out


def _text_row(r: pd.Series, tolerance: float) -> dict[str, str]:
    lam = r.get("weight_decay")
    return {
        "remedy": str(r["remedy"]),
        "λ": "-" if missing(lam) else f"{lam:g}",
        "λ*": "λ*" if r["is_best_lambda"] else "",
        "verdict": str(r["verdict"]),
        "test at best val": pct(r["test_at_best_val"]),
        f"holds to (±{amount(tolerance)})": pct(r["compressible_to"]),
        "epochs per run": _epochs(r["epochs"]),
        "of which teacher": _epochs(r["teacher_epochs"]),
    }


def _epochs(value: float) -> str:
    return "?" if missing(value) else f"{value:,.0f}"
