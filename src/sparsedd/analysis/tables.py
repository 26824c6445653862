"""Analysis of a results folder: one row per curve with its verdict, and the λ choice.

Pure functions on pandas DataFrames; nothing here imports torch or the training code, so it runs
on results copied from a cluster to a laptop. The parts live one job a module: ``load``
(reading and naming curves), ``stats`` (per-round statistics), ``verdict`` (the calibrated SDD
test) with ``curve_noise`` (its smoothing and noise model), ``lambdas`` (λ rules), ``export``
(tables to files), ``synthetic`` (curves of known shape). This module puts them together;
import each part's names from its own module. Rounds a run skipped once it had collapsed are
*collapsed* points of its curve: no mean, never chosen, and a collapse for the verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sparsedd.analysis.chance import chance_of
from sparsedd.analysis.choices import DEFAULT_LAMBDA_RULE, DEFAULT_MIN_RISE
from sparsedd.analysis.control import (
    CONTROL_FIELDS,
    control_lines,
    control_matrix,
    controlled_verdict,
    convergence_lines,
    split_controls,
    with_twin_curves,
)
from sparsedd.analysis.lambdas import choose_weight_decay, lambda_groups
from sparsedd.analysis.load import (
    add_curve_column,
    collapsed_flags,
    curve_keys,
    hashable,
    load_results,
)
from sparsedd.analysis.paired import paired_noise
from sparsedd.analysis.stats import (
    curve_stats,
    eval_size,
)
from sparsedd.analysis.verdict import ALPHA, SDD, Verdict
from sparsedd.errors import UserError

__all__ = [
    "CURVE_FIELDS",
    "DEFAULT_TOLERANCE",
    "Analysis",
    "analyze",
    "collapse_fields",
    "collapsed_matrix",
    "analyze_dir",
    "compressible_to",
    "curve_table",
    "curves_json",
    "seed_matrix",
]

#: Compression tolerance: a curve holds to a sparsity while within this of its dense accuracy.
DEFAULT_TOLERANCE = 0.01
#: The columns of the curve table after the curve's keys (numbers, bools and text).
CURVE_FIELDS = (
    "n_seeds",
    "n_rounds",
    "n_test",
    "dense_acc",
    "best_acc",
    "best_sparsity",
    "compressible_to",
    "verdict",
    "verdict_note",
    "sdd_detected",
    "dip_sparsity",
    "dip_acc",
    "peak_sparsity",
    "peak_acc",
    "fall",
    "fall_low",
    "fall_high",
    "rise",
    "rise_low",
    "rise_high",
    "noise_sd",
    "selection_margin",
    "depth_high",
    "one_round_high",
    "last_round",
    "judged_to_sparsity",
    "seed_collapse_rounds",
    "collapse_sparsity",
    "collapsed_round",
    "collapsed_sparsity",
    "n_collapsed_runs",
    "skipped_rounds",
    "best_val_acc",
    "best_val_sparsity",
    "test_at_best_val",
    "best_weight_decay",
)
_TEXT_FIELDS = ("verdict", "verdict_note", "seed_collapse_rounds")


def seed_matrix(df: pd.DataFrame, metric: str = "test_acc") -> tuple[np.ndarray, list[float]]:
    """One curve's rows as a (seeds × rounds) array of ``metric`` and the rounds' mean sparsity.

    Rows are runs in sorted run id order, columns every round any run recorded (NaN where a run
    lacks it; a collapsed round has no metric, so NaN too: see ``collapsed_matrix``)."""
    wide = _wide(df, pd.to_numeric(df[metric], errors="coerce"))
    sparsity = df.groupby("round")["sparsity"].mean().reindex(wide.columns)
    return wide.to_numpy(dtype=float), [float(s) for s in sparsity]


def collapsed_matrix(df: pd.DataFrame) -> np.ndarray:
    """One curve's rows as a (seeds × rounds) boolean array, aligned with ``seed_matrix``: True
    where the run skipped the round as collapsed."""
    wide = _wide(df, collapsed_flags(df).astype(float))
    return wide.fillna(0).to_numpy(dtype=float) > 0


def _wide(df: pd.DataFrame, values: pd.Series) -> pd.DataFrame:
    """``values`` (one per row of ``df``) as a runs × rounds table: every run, every round."""
    frame = pd.DataFrame({"run_id": df["run_id"], "round": df["round"], "_m": values})
    wide = frame.pivot_table(
        index="run_id", columns="round", values="_m", aggfunc="mean", dropna=False
    )
    return wide.reindex(index=sorted(df["run_id"].unique()), columns=sorted(df["round"].unique()))


def collapse_fields(group: pd.DataFrame, sparsity: list[float]) -> dict[str, Any]:
    """How a curve's runs stopped as collapsed: the first round any run skipped as collapsed
    (``collapsed_round``) and its sparsity, how many runs stopped, and how many rounds they
    skipped in all (NaN and 0 where none did)."""
    flags = collapsed_flags(group)
    rounds = sorted(group["round"].unique())
    if not flags.any():
        return {"collapsed_round": math.nan, "collapsed_sparsity": math.nan,
                "n_collapsed_runs": 0, "skipped_rounds": 0}  # fmt: skip
    first = int(group.loc[flags, "round"].min())
    return {
        "collapsed_round": float(first),
        "collapsed_sparsity": float(sparsity[rounds.index(first)]),
        "n_collapsed_runs": int(group.loc[flags, "run_id"].nunique()),
        "skipped_rounds": int(flags.sum()),
    }


def compressible_to(
    sparsity: list[float], mean_acc: list[float], tolerance: float = DEFAULT_TOLERANCE
) -> float:
    """Highest sparsity whose mean test accuracy is at least the dense one minus ``tolerance``."""
    dense = mean_acc[0]
    ok = [s for s, a in zip(sparsity, mean_acc, strict=True) if a >= dense - tolerance - 1e-12]
    return float(max(ok)) if ok else float(sparsity[0])


def _at(sparsity: list[float], index: int | None) -> float:
    return float("nan") if index is None else float(sparsity[index])


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _verdict_fields(v: Verdict, sparsity: list[float]) -> dict[str, Any]:
    return {
        "verdict": v.verdict,
        "verdict_note": v.note,
        "sdd_detected": v.verdict == SDD,
        "dip_sparsity": _at(sparsity, v.dip_round),
        "dip_acc": _nan(v.dip_acc),
        "peak_sparsity": _at(sparsity, v.peak_round),
        "peak_acc": _nan(v.peak_acc),
        **{
            name: _nan(getattr(v, name))
            for name in ("fall", "fall_low", "fall_high", "rise", "rise_low", "rise_high")
        },
        "noise_sd": _nan(v.noise_sd),
        "selection_margin": _nan(v.selection_margin),
        "depth_high": _nan(v.depth_high),
        "one_round_high": _nan(v.one_round_high),
        "last_round": _nan(v.last_round),
        "judged_to_sparsity": _at(sparsity, v.last_round),
        # per run with a recorded accuracy (run id order), its own collapse's round ("-": none)
        "seed_collapse_rounds": ", ".join(
            "-" if k is None else str(k) for k in v.seed_collapse_rounds
        ),  # fmt: skip
        "collapse_sparsity": _at(sparsity, v.collapse_round),
    }


def _curve_row(
    group: pd.DataFrame,
    stats: pd.DataFrame,
    min_rise: float,
    tolerance: float,
    alpha: float,
    controls: pd.DataFrame | None = None,
) -> dict[str, Any]:
    stats = stats.sort_values("round")
    spars = list(stats["sparsity"])
    # collapsed points have no mean (None): never the best round, never within the tolerance
    acc = [float(a) if a is not None else math.nan for a in stats["test_acc_mean"]]
    best = int(np.nanargmax(acc)) if np.isfinite(acc).any() else None
    matrix, _ = seed_matrix(group)
    n_test = eval_size(group, "n_test")
    # the control arm (analysis/control.py): the verdict judges pruning, not more training
    control = control_matrix(group, controls) if controls is not None else None
    verdict, control_info = controlled_verdict(
        matrix,
        collapsed_matrix(group),
        control,
        n_test,
        min_rise,
        spars,
        alpha=alpha,
        paired_diff_sd=paired_noise(group),
        chance=chance_of(group["dataset"].iloc[0]) if "dataset" in group else None,
    )
    val = pd.to_numeric(stats["val_acc_mean"], errors="coerce").to_numpy(dtype=float)
    has_val = bool(np.isfinite(val).any())
    best_val = int(np.nanargmax(val)) if has_val else None
    return {
        "n_seeds": int(group["run_id"].nunique()),
        "n_rounds": len(stats),
        "n_test": _nan(n_test),
        "dense_acc": acc[0],
        "best_acc": math.nan if best is None else acc[best],
        "best_sparsity": _at(spars, best),
        "compressible_to": compressible_to(spars, acc, tolerance),
        **_verdict_fields(verdict, spars),
        **collapse_fields(group, spars),
        "best_val_acc": float(val[best_val]) if best_val is not None else math.nan,
        "best_val_sparsity": _at(spars, best_val),
        "test_at_best_val": acc[best_val] if best_val is not None else math.nan,
        **control_info,
    }


def curve_table(
    df: pd.DataFrame,
    min_rise: float = DEFAULT_MIN_RISE,
    tolerance: float = DEFAULT_TOLERANCE,
    lambda_rule: str = DEFAULT_LAMBDA_RULE,
    target_sparsity: float | None = None,
    alpha: float = ALPHA,
) -> pd.DataFrame:
    """One row per curve: its keys, then CURVE_FIELDS (numbers as floats, NaN where missing).

    ``best_weight_decay`` is the λ that ``lambda_rule`` chooses among the curves that differ
    from this one only in ``weight_decay`` (see ``lambdas.choose_weight_decay``).
    """
    return _tables(df, min_rise, tolerance, lambda_rule, target_sparsity, alpha=alpha)[0]


def _tables(
    df: pd.DataFrame,
    min_rise: float,
    tolerance: float,
    lambda_rule: str,
    target_sparsity: float | None,
    controls: pd.DataFrame | None = None,
    alpha: float = ALPHA,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(curves, λ choices, per-round stats) of a rounds DataFrame (of pruned runs; their
    ``controls``' rows apart)."""
    df = df if "curve" in df.columns else add_curve_column(df)
    keys = curve_keys(df)
    stats = curve_stats(df)
    records = []
    for curve, group in df.groupby("curve", sort=False):
        first = group.iloc[0]
        rec = {"curve": curve, **{k: hashable(first[k]) for k in keys}}
        rec.update(
            _curve_row(group, stats[stats["curve"] == curve], min_rise, tolerance, alpha, controls)
        )
        records.append(rec)
    table = pd.DataFrame.from_records(records)
    lambdas = pd.DataFrame()
    table["best_weight_decay"] = math.nan
    if "weight_decay" in table.columns:
        lambdas = choose_weight_decay(table, keys, lambda_rule, target_sparsity, stats, df)
        table["lambda_group"] = lambda_groups(table, keys)
        chosen = dict(zip(lambdas["lambda_group"], lambdas["best_weight_decay"], strict=True))
        table["best_weight_decay"] = table["lambda_group"].map(chosen).astype(float)
    table = table.sort_values(keys, kind="stable").reset_index(drop=True)
    return _typed(table), lambdas, stats


def _typed(table: pd.DataFrame) -> pd.DataFrame:
    """Numeric curve fields as numbers (NaN where missing), text as text, the verdict as bool."""
    for name in CURVE_FIELDS:
        if name == "sdd_detected":
            table[name] = table[name].astype(bool)
        elif name in ("n_seeds", "n_rounds", "n_collapsed_runs", "skipped_rounds"):
            table[name] = table[name].astype(int)
        elif name not in _TEXT_FIELDS:
            table[name] = pd.to_numeric(table[name], errors="coerce").astype(float)
    for name in CONTROL_FIELDS[:-1]:  # the last is the note
        table[name] = pd.to_numeric(table[name], errors="coerce").astype(float)
    return table


@dataclass
class Analysis:
    """Everything ``sparsedd analyze``/``plot``/``report`` show about one results folder."""

    rounds: pd.DataFrame
    stats: pd.DataFrame
    curves: pd.DataFrame
    lambdas: pd.DataFrame
    keys: list[str]
    #: The settings these verdicts and λ choices used (reports quote them).
    min_rise: float = DEFAULT_MIN_RISE
    tolerance: float = DEFAULT_TOLERANCE
    lambda_rule: str = DEFAULT_LAMBDA_RULE
    target_sparsity: float | None = None
    notes: list[str] = field(default_factory=list)
    #: The control runs' rounds (``pruning: false``; see analysis/control.py), with a curve
    #: column; empty where there are none.
    controls: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: Per curve: what its fall is against the control; dense rounds that had not converged.
    control_lines: list[str] = field(default_factory=list)
    convergence_lines: list[str] = field(default_factory=list)
    #: The one-sided level of each verdict's claims.
    alpha: float = ALPHA


def analyze(
    df: pd.DataFrame,
    min_rise: float = DEFAULT_MIN_RISE,
    tolerance: float = DEFAULT_TOLERANCE,
    lambda_rule: str = DEFAULT_LAMBDA_RULE,
    target_sparsity: float | None = None,
    alpha: float = ALPHA,
) -> Analysis:
    """Curves, per-round statistics, per-curve verdicts and λ choices of a rounds DataFrame."""
    if df.empty:
        raise UserError("no recorded rounds to analyse; run `sparsedd run --out DIR` first")
    df, controls = split_controls(df)
    if df.empty:
        raise UserError("only control runs (pruning: false) are recorded; run the pruned ones")
    df = add_curve_column(df)
    keys = curve_keys(df)
    controls = with_twin_curves(df, controls)
    curves, lambdas, stats = _tables(
        df, min_rise, tolerance, lambda_rule, target_sparsity, controls, alpha
    )
    return Analysis(
        df, stats, curves, lambdas, keys, min_rise, tolerance, lambda_rule, target_sparsity,
        notes=list(df.attrs.get("notes", [])), controls=controls, alpha=alpha,
        control_lines=control_lines(curves),
        convergence_lines=convergence_lines(df, controls, df.attrs.get("dense_train_acc", {})),
    )  # fmt: skip


def analyze_dir(out_dir: str | Path, **options: Any) -> Analysis:
    """``analyze`` of the results folder ``out_dir`` (``options`` as ``analyze`` takes them)."""
    return analyze(load_results(out_dir, correctness=True), **options)


def curves_json(result: Analysis) -> list[dict[str, Any]]:
    """The curve table as a list of JSON-ready dicts (keys, CURVE_FIELDS, lambda_group)."""
    return [
        {k: _json_value(v) for k, v in rec.items()}
        for rec in result.curves.to_dict(orient="records")
    ]


def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
