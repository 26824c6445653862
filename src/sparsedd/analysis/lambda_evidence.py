"""What a user needs to prune with a chosen λ: how far it holds, and how sure its edge is.

- **Holds to**: the sparsity of the last round before the curve's collapse (the verdict's, or
  the first round a seed's run stopped as collapsed), or of its last round when it never
  collapses. A λ says nothing about sparsities past it.
- **The edge over the runner-up**: the validation difference between the chosen λ and the
  best other λ, each at the round the rule compared (its best-validation round, or the round
  nearest the target sparsity), paired by seed (runs of one seed share the label-noise draw and
  the validation split, so their difference cancels both), with a 95% t interval over the seeds
  the two curves share; none with fewer than two.

Pure functions on the curve table, the per-round statistics and the rounds table.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from sparsedd.analysis.load import collapsed_flags
from sparsedd.analysis.stats import t_quantile_975


def holds_to(stats: pd.DataFrame, curve: pd.Series | dict[str, Any]) -> tuple[float, float]:
    """(the sparsity ``curve`` holds to, the sparsity its collapse starts at: NaN when none).

    ``curve`` is a row of the curve table (``collapse_sparsity``, ``collapsed_sparsity``)."""
    rows = stats[stats["curve"] == curve["curve"]].sort_values("round")
    sparsity = rows["sparsity"].to_numpy(dtype=float)
    starts = [_number(curve.get(k)) for k in ("collapse_sparsity", "collapsed_sparsity")]
    starts = [s for s in starts if math.isfinite(s)]
    if starts:
        collapse = min(starts)
        before = sparsity[sparsity < collapse - 1e-12]
        return (float(before.max()) if before.size else math.nan), collapse
    trained = sparsity[~collapsed_flags(rows).to_numpy()] if len(rows) else sparsity
    return (float(trained.max()) if trained.size else math.nan), math.nan


def seed_values(
    rounds: pd.DataFrame, stats: pd.DataFrame, curve: str, sparsity: float, metric: str
) -> pd.Series:
    """Each seed's ``metric`` at ``curve``'s recorded round nearest ``sparsity`` (by seed;
    seeds without a value there are left out)."""
    at = stats[stats["curve"] == curve]
    if at.empty or not math.isfinite(sparsity):
        return pd.Series(dtype=float)
    k = at.iloc[int(np.argmin(np.abs(at["sparsity"].to_numpy() - sparsity)))]["round"]
    rows = rounds[(rounds["curve"] == curve) & (rounds["round"] == k)]
    rows = rows[~collapsed_flags(rows)]
    seeds = rows["seed"] if "seed" in rows else rows["run_id"]
    values = pd.to_numeric(rows[metric], errors="coerce")
    return pd.Series(values.to_numpy(dtype=float), index=seeds.to_numpy()).dropna()


def paired_difference(a: pd.Series, b: pd.Series) -> dict[str, float]:
    """The mean of a − b over the seeds both have, with its 95% t interval (NaN bounds with
    fewer than two such seeds): keys diff, low, high, n_paired."""
    common = a.index.intersection(b.index)
    d = (a[common] - b[common]).to_numpy(dtype=float)
    n = len(d)
    if n == 0:
        return {"diff": math.nan, "low": math.nan, "high": math.nan, "n_paired": 0}
    mean = float(d.mean())
    if n < 2:
        return {"diff": mean, "low": math.nan, "high": math.nan, "n_paired": 1}
    half = t_quantile_975(n - 1) * float(d.std(ddof=1)) / math.sqrt(n)
    return {"diff": mean, "low": mean - half, "high": mean + half, "n_paired": n}


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
