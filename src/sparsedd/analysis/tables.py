"""Analysis of a results folder: curves over seeds, SDD detection, λ choice, exports.

Pure functions on pandas DataFrames; nothing here imports torch or the training code, so it runs
on results copied from a cluster to a laptop.

Vocabulary (see DESIGN.md): a *curve* is the set of runs that differ only in ``seed``; its
per-round statistics are the mean, standard deviation and 95% t-interval over seeds. A curve
shows sparse double descent (SDD) when its mean test accuracy has a *dip* (a minimum after the
dense round, reached by a real fall from an earlier round) followed by a *peak* (a later maximum,
before the final collapse) whose *rise* (peak − dip) exceeds the seed-to-seed spread and the
minimum rise (default 0.01, i.e. 1 point). Dip, peak, rise, its interval and the verdict are all
measured on one curve: the seeds' accuracies smoothed over 3 rounds (see ``detect_sdd``).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sparsedd.config import NON_SEMANTIC, NOT_IN_RUN_ID
from sparsedd.errors import UserError
from sparsedd.store.atomic import atomic_write
from sparsedd.store.results import ROUND_COLUMNS as STORE_ROUND_COLUMNS
from sparsedd.store.results import ResultsStore

#: Minimum rise (peak − dip, as a fraction) for SDD; also the compression tolerance.
DEFAULT_MIN_RISE = 0.01
DEFAULT_TOLERANCE = 0.01
#: Metrics summarised per round over seeds.
METRICS = ("test_acc", "memorization", "val_acc")
#: Keys always in a curve's label (when present), varying or not.
ALWAYS_KEYS = ("model", "dataset", "noise", "weight_decay")
#: Per-round columns that are not config keys (``round_epochs`` is the round's own epoch count;
#: the config key ``epochs`` keeps its name, and runs that differ in it are different curves).
ROUND_COLUMNS = frozenset(STORE_ROUND_COLUMNS) | {"curve"}
CURVE_FIELDS = (
    "n_seeds",
    "n_rounds",
    "dense_acc",
    "best_acc",
    "best_sparsity",
    "compressible_to",
    "sdd_detected",
    "dip_sparsity",
    "dip_acc",
    "peak_sparsity",
    "peak_acc",
    "rise",
    "rise_low",
    "rise_high",
    "sdd_threshold",
    "best_val_acc",
    "best_weight_decay",
)

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


# ---------------------------------------------------------------- loading


def row_config_keys(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The config keys of round rows (every key that is not a round column), in first-seen order."""
    keys: dict[str, None] = {}
    for row in rows:
        keys.update((k, None) for k in row if k not in ROUND_COLUMNS)
    return list(keys)


def differing_keys(rows: Sequence[dict[str, Any]], semantic: bool = False) -> list[str]:
    """Config keys (other than seed) whose value differs between the runs of ``rows``.

    ``semantic``: only keys that change results (not NON_SEMANTIC ones such as ``threads``).
    """
    runs = {row.get("run_id"): row for row in rows}.values()
    return [
        key
        for key in row_config_keys(rows)
        if key != "seed"
        and not (semantic and key in NON_SEMANTIC)
        and len({_hashable(run.get(key)) for run in runs}) > 1
    ]


def _sort_value(value: Any) -> tuple:
    """A sort key that orders None, then numbers, then anything else as text."""
    value = _hashable(value)
    if value is None:
        return (0, 0)
    if isinstance(value, bool | int | float | np.number):
        return (1, float(value))
    return (2, str(value))


def order_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Round rows sorted by config (model, dataset, noise, λ, then the other keys that differ),
    then seed, run and round: the order of ``results`` and of ``export``."""
    keys = [k for k in ALWAYS_KEYS if any(k in r for r in rows)]
    keys += [k for k in differing_keys(rows) if k not in keys]
    keys += ["seed", "run_id", "round"]
    return sorted(rows, key=lambda r: tuple(_sort_value(r.get(k)) for k in keys))


def rows_to_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Round rows (as ``ResultsStore.round_rows`` gives them) in ``order_rows`` order."""
    if not rows:
        raise UserError("no recorded rounds to analyse; run `sparsedd run --out DIR` first")
    return pd.DataFrame(order_rows(rows))


def load_results(out_dir: str | Path) -> pd.DataFrame:
    """All recorded rounds of a results folder: one row per (run, round).

    Columns, as ``sparsedd results`` prints them: every config key of the run (``epochs`` is
    the config's), then ``store.ROUND_COLUMNS``: ``run_id``, the round fields with
    ``round_epochs`` (epochs trained in that round), the provenance fields and
    ``layer_density`` (a dict column: layer name → fraction of weights surviving).
    """
    rows = ResultsStore(out_dir, create=False).round_rows()
    if not rows:
        raise UserError(f"no recorded rounds in {out_dir}; let a run finish its dense round first")
    kept, diverged = drop_diverged(rows)
    if not kept:
        raise UserError(
            f"every recorded run in {out_dir} diverged at its dense round (non-finite loss); "
            f"re-run with a lower 'lr'"
        )
    df = rows_to_frame(kept)
    df.attrs["notes"] = [
        f"run {run} diverged at round {k} (non-finite loss): its rounds from {k} on are left out"
        for run, k in sorted(diverged.items())
    ]
    return df


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def drop_diverged(rows: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Rows without diverged rounds, and per diverged run the first round left out.

    A round whose test loss or accuracy is not a finite number (NaN is stored as NULL) diverged;
    every later round of that run started from it, so it is left out as well. Databases written
    before sparsedd stopped diverged runs may hold such rounds.
    """
    diverged: dict[str, int] = {}
    for row in rows:
        if "test_loss" in row and not (_finite(row["test_loss"]) and _finite(row["test_acc"])):
            run = row["run_id"]
            diverged[run] = min(diverged.get(run, row["round"]), row["round"])
    kept = [r for r in rows if r["round"] < diverged.get(r["run_id"], r["round"] + 1)]
    return kept, diverged


def config_keys(df: pd.DataFrame) -> list[str]:
    """The config columns of a rounds DataFrame (everything that is not a round field)."""
    return [c for c in df.columns if c not in ROUND_COLUMNS]


def _hashable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return value


def varying_keys(df: pd.DataFrame) -> list[str]:
    """Config keys (other than seed, ``rounds`` and settings that do not change results) that
    vary by run: seeds stopped after different numbers of rounds still make one curve."""
    runs = df.drop_duplicates("run_id")
    keys = []
    for key in config_keys(df):
        if key == "seed" or key in NON_SEMANTIC or key in NOT_IN_RUN_ID:
            continue
        if len({_hashable(v) for v in runs[key]}) > 1:
            keys.append(key)
    return keys


def curve_keys(df: pd.DataFrame) -> list[str]:
    """Keys naming a curve: model, dataset, noise, weight_decay (if present) + varying keys."""
    present = [k for k in ALWAYS_KEYS if k in df.columns]
    return present + [k for k in varying_keys(df) if k not in present]


def _label(keys: Sequence[str], values: Sequence[Any]) -> str:
    return " ".join(f"{k}={_fmt_value(v)}" for k, v in zip(keys, values, strict=True))


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def add_curve_column(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` with a ``curve`` column: the label shared by runs differing only in seed."""
    keys = curve_keys(df)
    out = df.copy()
    out["curve"] = [
        _label(keys, [_hashable(v) for v in vals]) for vals in df[keys].itertuples(False)
    ]
    return out


# ---------------------------------------------------------------- per-round statistics


def summarize(values: Sequence[float]) -> dict[str, float | int | None]:
    """n, mean, std (ddof=1) and 95% t-interval of finite ``values`` (None where undefined)."""
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    n = len(arr)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "low": None, "high": None}
    mean = float(arr.mean())
    if n == 1:
        return {"n": 1, "mean": mean, "std": None, "low": None, "high": None}
    std = float(arr.std(ddof=1))
    half = t_quantile_975(n - 1) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "low": mean - half, "high": mean + half}


def curve_stats(df: pd.DataFrame) -> pd.DataFrame:
    """Per curve and round: sparsity, n_seeds, and ``{metric}_{mean,std,low,high}`` over seeds.

    ``df`` is a rounds DataFrame (``load_results``); metrics are test_acc, memorization, val_acc.
    """
    df = df if "curve" in df.columns else add_curve_column(df)
    records = []
    for (curve, round_), group in df.groupby(["curve", "round"], sort=True):
        rec: dict[str, Any] = {
            "curve": curve,
            "round": int(round_),
            "sparsity": float(group["sparsity"].mean()),
            "n_seeds": int(group["run_id"].nunique()),
        }
        for metric in METRICS:
            values = pd.to_numeric(group[metric], errors="coerce") if metric in group else []
            stats = summarize(list(values))
            for name in ("mean", "std", "low", "high"):
                rec[f"{metric}_{name}"] = stats[name]
        records.append(rec)
    return pd.DataFrame.from_records(records)


# ---------------------------------------------------------------- detection


@dataclass(frozen=True)
class Detection:
    """The verdict on one curve: the best dip/peak candidate and whether it is SDD."""

    detected: bool
    dip_round: int | None = None
    peak_round: int | None = None
    dip_sparsity: float | None = None
    dip_acc: float | None = None
    peak_sparsity: float | None = None
    peak_acc: float | None = None
    rise: float | None = None
    rise_low: float | None = None
    rise_high: float | None = None
    fall: float | None = None
    threshold: float | None = None


def smooth(mean: np.ndarray) -> np.ndarray:
    """3-round running mean of a curve's pruned rounds (round 0, the dense model, kept as is).

    Real dips span several rounds; single-round noise does not survive the average, which keeps
    the search over every (dip, peak) pair from finding valleys in noise. Missing (NaN) rounds
    are left out of each window.
    """
    mean = np.asarray(mean, dtype=float)
    out = mean.copy()
    last = len(out) - 1
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for k in range(1, last + 1):
            out[k] = np.nanmean(mean[max(1, k - 1) : min(last, k + 1) + 1])
    return out


def _best_candidate(curve: np.ndarray) -> tuple[int, int, float, float] | None:
    """(dip, peak, fall, rise): the valley maximising min(fall into dip, rise out of it).

    The dip is a round after the dense one (index ≥ 1); the fall is measured from the highest
    earlier round, the rise to the highest later round (which precedes the final collapse).
    """
    best = None
    for i in range(1, len(curve) - 1):
        fall = float(curve[:i].max() - curve[i])
        j = i + 1 + int(np.argmax(curve[i + 1 :]))
        rise = float(curve[j] - curve[i])
        if best is None or min(fall, rise) > min(best[2], best[3]):
            best = (i, j, fall, rise)
    return best


def detect_sdd(
    seed_acc: np.ndarray, sparsity: Sequence[float], min_rise: float = DEFAULT_MIN_RISE
) -> Detection:
    """Decide whether a curve shows sparse double descent.

    ``seed_acc`` is a (seeds × rounds) array of test accuracy (NaN where a seed lacks a round),
    round 0 being the dense model. Everything is measured on one curve: each seed's accuracy
    smoothed over 3 rounds (``smooth``), and their mean. On that mean the dip is the deepest
    valley after the dense round: the round whose fall (from the best earlier round) and rise
    (to the best later round, the peak) are both as large as possible. SDD is detected when that
    fall and rise both exceed ``threshold``: the larger of ``min_rise`` and the seed-to-seed
    standard deviation at the dip and at the peak. ``dip_acc``, ``peak_acc`` and ``rise`` =
    peak − dip are those of the same smoothed mean, and the rise's 95% interval is that of the
    per-seed rises between the same two rounds (centred on ``rise`` when every seed has every
    round; None with one seed). Without any valley (no round lower than an earlier one and a
    later one) every field but ``detected`` is None.
    """
    acc = np.atleast_2d(np.asarray(seed_acc, dtype=float))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        keep = np.isfinite(np.nanmean(acc, axis=0))
        acc = np.vstack([smooth(row) for row in acc[:, keep]]) if keep.any() else acc[:, keep]
        curve = np.nanmean(acc, axis=0)
    sparsity = [s for s, k in zip(sparsity, keep, strict=True) if k]
    cand = _best_candidate(curve)
    if cand is None or min(cand[2], cand[3]) <= 0:
        return Detection(detected=False)
    i, j, fall, rise = cand
    stats = summarize(list(acc[:, j] - acc[:, i]))
    spreads = [summarize(list(acc[:, k]))["std"] for k in (i, j)]
    threshold = max([min_rise, *(s for s in spreads if s is not None)])
    return Detection(
        detected=bool(rise > threshold and fall > threshold),
        dip_round=i,
        peak_round=j,
        dip_sparsity=float(sparsity[i]),
        dip_acc=float(curve[i]),
        peak_sparsity=float(sparsity[j]),
        peak_acc=float(curve[j]),
        rise=rise,
        rise_low=stats["low"],
        rise_high=stats["high"],
        fall=fall,
        threshold=threshold,
    )


def seed_matrix(df: pd.DataFrame, metric: str = "test_acc") -> tuple[np.ndarray, list[float]]:
    """One curve's rows as a (seeds × rounds) array of ``metric`` and the rounds' mean sparsity."""
    wide = df.pivot_table(index="run_id", columns="round", values=metric, aggfunc="mean")
    sparsity = df.groupby("round")["sparsity"].mean().reindex(wide.columns)
    return wide.to_numpy(dtype=float), [float(s) for s in sparsity]


# ---------------------------------------------------------------- per-curve table


def compressible_to(
    sparsity: Sequence[float], mean_acc: Sequence[float], tolerance: float = DEFAULT_TOLERANCE
) -> float:
    """Highest sparsity whose mean test accuracy is at least the dense one minus ``tolerance``."""
    dense = mean_acc[0]
    ok = [s for s, a in zip(sparsity, mean_acc, strict=True) if a >= dense - tolerance - 1e-12]
    return float(max(ok))


def _curve_row(
    group: pd.DataFrame, stats: pd.DataFrame, min_rise: float, tolerance: float
) -> dict[str, Any]:
    stats = stats.sort_values("round")
    spars = list(stats["sparsity"])
    acc = list(stats["test_acc_mean"])
    best = int(np.nanargmax(acc))
    matrix, _ = seed_matrix(group)
    det = detect_sdd(matrix, spars, min_rise)
    val = pd.to_numeric(stats["val_acc_mean"], errors="coerce")
    return {
        "n_seeds": int(group["run_id"].nunique()),
        "n_rounds": len(stats),
        "dense_acc": float(acc[0]),
        "best_acc": float(acc[best]),
        "best_sparsity": float(spars[best]),
        "compressible_to": compressible_to(spars, acc, tolerance),
        "sdd_detected": det.detected,
        "dip_sparsity": det.dip_sparsity,
        "dip_acc": det.dip_acc,
        "peak_sparsity": det.peak_sparsity,
        "peak_acc": det.peak_acc,
        "rise": det.rise,
        "rise_low": det.rise_low,
        "rise_high": det.rise_high,
        "sdd_threshold": det.threshold,
        "best_val_acc": None if val.isna().all() else float(val.max()),
    }


def curve_table(
    df: pd.DataFrame,
    min_rise: float = DEFAULT_MIN_RISE,
    tolerance: float = DEFAULT_TOLERANCE,
) -> pd.DataFrame:
    """One row per curve: its keys, the fields of CURVE_FIELDS and the SDD verdict.

    ``best_weight_decay`` is the λ chosen on validation accuracy among the curves that differ
    from this one only in ``weight_decay`` (see ``choose_weight_decay``).
    """
    df = df if "curve" in df.columns else add_curve_column(df)
    keys = curve_keys(df)
    stats = curve_stats(df)
    records = []
    for curve, group in df.groupby("curve", sort=False):
        first = group.iloc[0]
        rec = {"curve": curve, **{k: _hashable(first[k]) for k in keys}}
        rec.update(_curve_row(group, stats[stats["curve"] == curve], min_rise, tolerance))
        records.append(rec)
    table = pd.DataFrame.from_records(records)
    # Missing values as None before labelling groups: ``analyze`` labels them from this table.
    table = table.astype(object).where(table.notna(), None)
    choice = choose_weight_decay(table, keys)
    table["lambda_group"] = _lambda_groups(table, keys)
    table["best_weight_decay"] = table["lambda_group"].map(
        dict(zip(choice["lambda_group"], choice["best_weight_decay"], strict=True))
    )
    table = table.sort_values(keys, kind="stable").reset_index(drop=True)
    return table.astype(object).where(table.notna(), None)


# ---------------------------------------------------------------- λ choice


def _lambda_groups(table: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    others = [k for k in keys if k != "weight_decay"]
    return [
        _label(others, [_hashable(v) for v in vals]) for vals in table[others].itertuples(False)
    ]


def choose_weight_decay(table: pd.DataFrame, keys: Sequence[str] | None = None) -> pd.DataFrame:
    """Per group of curves that differ only in ``weight_decay``: λ* chosen on validation accuracy.

    ``table`` is a curve table (with ``weight_decay`` and ``best_val_acc``, the best mean
    validation accuracy over rounds). Test accuracy is never used. Ties go to the smaller λ.
    Returns columns lambda_group, n_lambdas, best_weight_decay (None without validation data),
    best_val_acc.
    """
    keys = list(keys) if keys is not None else [k for k in table.columns if k in ALWAYS_KEYS]
    if "weight_decay" not in table.columns:
        raise UserError("the results have no weight_decay key; cannot choose λ")
    groups = _lambda_groups(table, keys)
    records = []
    for group in dict.fromkeys(groups):
        members = table[[g == group for g in groups]]
        val = pd.to_numeric(members["best_val_acc"], errors="coerce")
        best = None
        if val.notna().any():
            order = members.assign(_v=val).sort_values(
                ["_v", "weight_decay"], ascending=[False, True], kind="stable"
            )
            best = float(order.iloc[0]["weight_decay"])
        records.append(
            {
                "lambda_group": group,
                "n_lambdas": int(members["weight_decay"].nunique()),
                "best_weight_decay": best,
                "best_val_acc": None if val.isna().all() else float(val.max()),
            }
        )
    table = pd.DataFrame.from_records(records)
    return table.astype(object).where(table.notna(), None)


# ---------------------------------------------------------------- analysis bundle


@dataclass
class Analysis:
    """Everything ``sparsedd analyze``/``plot``/``report`` show about one results folder."""

    rounds: pd.DataFrame
    stats: pd.DataFrame
    curves: pd.DataFrame
    lambdas: pd.DataFrame
    keys: list[str]
    #: The minimum rise and compression tolerance these verdicts used (reports quote them).
    min_rise: float = DEFAULT_MIN_RISE
    tolerance: float = DEFAULT_TOLERANCE


def analyze(
    df: pd.DataFrame, min_rise: float = DEFAULT_MIN_RISE, tolerance: float = DEFAULT_TOLERANCE
) -> Analysis:
    """Curves, per-round statistics, per-curve verdicts and λ choices of a rounds DataFrame."""
    if df.empty:
        raise UserError("no recorded rounds to analyse; run `sparsedd run --out DIR` first")
    df = add_curve_column(df)
    keys = curve_keys(df)
    curves = curve_table(df, min_rise, tolerance)
    lambdas = choose_weight_decay(curves, keys) if "weight_decay" in df.columns else pd.DataFrame()
    return Analysis(df, curve_stats(df), curves, lambdas, keys, min_rise, tolerance)


def analyze_dir(
    out_dir: str | Path, min_rise: float = DEFAULT_MIN_RISE, tolerance: float = DEFAULT_TOLERANCE
) -> Analysis:
    """``analyze`` of the results folder ``out_dir``."""
    return analyze(load_results(out_dir), min_rise=min_rise, tolerance=tolerance)


def curves_json(result: Analysis) -> list[dict[str, Any]]:
    """The curve table as a list of JSON-ready dicts (keys, CURVE_FIELDS, lambda_group)."""
    out = []
    for rec in result.curves.to_dict(orient="records"):
        out.append({k: _json_value(v) for k, v in rec.items()})
    return out


def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ---------------------------------------------------------------- export


def export_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` to ``path`` as Parquet (.parquet) or CSV (.csv); dict columns become JSON."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise UserError(f"cannot export to {path.name!r}: use a .parquet or .csv file name")
    out = df.copy()
    for col in out.columns:
        if out[col].map(lambda v: isinstance(v, dict | list)).any():
            out[col] = out[col].map(lambda v: json.dumps(v, sort_keys=True))
    if not path.parent.exists():
        raise UserError(f"cannot write {path}: folder {path.parent} does not exist")
    if suffix == ".csv":
        atomic_write(path, lambda tmp: out.to_csv(tmp, index=False))
        return path
    try:
        atomic_write(path, lambda tmp: out.to_parquet(tmp, index=False))
    except ImportError:
        raise UserError(
            "Parquet export needs pyarrow: `pip install pyarrow`, or export to a .csv file"
        ) from None
    return path


# ---------------------------------------------------------------- synthetic curves

SHAPES = ("sdd", "flat", "gain", "decline")


def synthetic_rounds(
    shape: str = "sdd",
    depth: float = 0.04,
    noise_sd: float = 0.005,
    n_seeds: int = 3,
    rounds: int = 25,
    seed: int = 0,
    **config: Any,
) -> pd.DataFrame:
    """A rounds DataFrame of one synthetic curve with known shape, for tests and validation.

    Shapes over u = −log10(1 − sparsity): ``sdd`` a dip of ``depth`` around u = 0.6 and full
    recovery; ``flat`` no dip; ``gain`` a monotone rise of ``depth`` (pruning helps, no dip);
    ``decline`` a steady fall of ``depth``. All end in a collapse near u = 2. Each seed adds
    independent Gaussian noise of ``noise_sd`` to every round. ``config`` keys become columns.
    """
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; choose from {SHAPES}")
    rng = np.random.default_rng(seed)
    sparsity = 1 - 0.8 ** np.arange(rounds + 1)
    u = -np.log10(1 - sparsity)
    collapse = 0.6 / (1 + np.exp(-(u - 2.0) / 0.08))
    bend = {
        "sdd": -depth * np.exp(-(((u - 0.6) / 0.25) ** 2)),
        "flat": 0 * u,
        "gain": depth * np.minimum(u / 1.5, 1.0),
        "decline": -depth * np.minimum(u / 1.5, 1.0),
    }[shape]
    clean = 0.80 + bend - collapse
    memo = 0.9 / (1 + np.exp((u - 0.9) / 0.15))
    base = {"model": "synthetic", "dataset": "synthetic", "noise": 0.2, "weight_decay": 0.0}
    rows = []
    for s in range(n_seeds):
        acc = np.clip(clean + rng.normal(0, noise_sd, len(u)), 0, 1)
        for k in range(rounds + 1):
            rows.append(
                {
                    **base,
                    **config,
                    "seed": s,
                    "run_id": f"{shape}-{seed}-{config}-{s}",
                    "round": k,
                    "sparsity": float(sparsity[k]),
                    "test_acc": float(acc[k]),
                    "memorization": float(np.clip(memo[k] + rng.normal(0, noise_sd), 0, 1)),
                    "val_acc": float(np.clip(acc[k] + rng.normal(0, noise_sd), 0, 1)),
                }
            )
    return rows_to_frame(rows)
