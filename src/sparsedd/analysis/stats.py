"""Per-round statistics of a curve over its seeds: mean, standard deviation, 95% interval."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from sparsedd.analysis.load import add_curve_column, collapsed_flags

#: Metrics summarised per round over seeds; all lie in [0, 1] (entropy of a binary state, in
#: bits, too), where their intervals are clipped.
METRICS = ("test_acc", "memorization", "val_acc", "activation_entropy")

# Two-sided 97.5% quantiles of Student's t for 1..30 degrees of freedom.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t_quantile_975(dof: int) -> float:
    """The 0.975 quantile of Student's t with ``dof`` degrees of freedom (for 95% intervals)."""
    if dof < 1:
        raise ValueError("a t interval needs at least 1 degree of freedom")
    if dof <= len(_T975):
        return _T975[dof - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * dof) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof**2)


def summarize(
    values: Sequence[float], n_eval: float | None = None, bounds: tuple[float, float] | None = None
) -> dict[str, float | int | None]:
    """n, mean, std (ddof=1) and 95% interval of finite ``values`` (None where undefined).

    ``n_eval``: the size of the set the values are accuracies on; the interval is then never
    narrower than that set's binomial noise √(p(1−p)/n), also with one value. ``bounds``: the
    range the interval is clipped to (accuracies lie in [0, 1]).
    """
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    n = len(arr)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "low": None, "high": None}
    mean = float(arr.mean())
    std = float(arr.std(ddof=1)) if n > 1 else None
    binomial = math.sqrt(max(mean * (1 - mean), 0.0) / n_eval) if n_eval else 0.0
    if std is None and not binomial:
        return {"n": 1, "mean": mean, "std": None, "low": None, "high": None}
    if std is not None and std >= binomial:
        half = t_quantile_975(n - 1) * std / math.sqrt(n)
    else:  # the test set's noise dominates; it does not average out over seeds
        half = 1.959964 * binomial
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return {"n": n, "mean": mean, "std": std, "low": low, "high": high}


def curve_stats(df: pd.DataFrame) -> pd.DataFrame:
    """Per curve and round: sparsity, n_seeds, ``{metric}_{mean,std,low,high}`` over seeds,
    then ``collapsed`` and ``n_collapsed``.

    ``df`` is a rounds DataFrame (``load_results``); metrics are test_acc, memorization, val_acc,
    activation_entropy. Intervals are clipped to [0, 1]; test accuracy's is never narrower than
    the test set's binomial noise (``n_test``, where recorded). A round where any seed's run had
    collapsed (and skipped it) is a *collapsed point*: ``collapsed`` True, ``n_collapsed`` the
    seeds that skipped it, every metric None. A collapsed run sat at a constant prediction's
    accuracy, so the mean of the seeds that survived would overstate the curve.
    """
    df = df if "curve" in df.columns else add_curve_column(df)
    df = df.assign(_collapsed=collapsed_flags(df))
    records = []
    for (curve, round_), group in df.groupby(["curve", "round"], sort=True):
        rec: dict[str, Any] = {
            "curve": curve,
            "round": int(round_),
            "sparsity": float(group["sparsity"].mean()),
            "n_seeds": int(group["run_id"].nunique()),
        }
        n_collapsed = int(group.loc[group["_collapsed"], "run_id"].nunique())
        for metric in METRICS:
            values = pd.to_numeric(group[metric], errors="coerce") if metric in group else []
            n_eval = eval_size(group, "n_test") if metric == "test_acc" else None
            stats = summarize([] if n_collapsed else list(values), n_eval, bounds=(0.0, 1.0))
            for name in ("mean", "std", "low", "high"):
                rec[f"{metric}_{name}"] = stats[name]
        rec["collapsed"] = n_collapsed > 0
        rec["n_collapsed"] = n_collapsed
        records.append(rec)
    return pd.DataFrame.from_records(records)


def eval_size(rows: pd.DataFrame, column: str = "n_test") -> float | None:
    """The evaluation-set size recorded in ``rows`` (their smallest; None where unrecorded)."""
    if column not in rows:
        return None
    sizes = pd.to_numeric(rows[column], errors="coerce").dropna()
    return float(sizes.min()) if len(sizes) and sizes.min() > 0 else None
