"""The control arm: pruning's own fall, told apart from the fall that more training causes.

Every pruning round retrains with the full schedule, so every round is also more training. A
control run (config ``pruning: false``, ``sparsedd run --control``) takes the same seed through
the same rounds without pruning. Paired by seed, the pruned run's accuracy minus the control's
drift since round 0 is the curve that pruning alone would give: the verdict reads that curve
where every seed has its control. Pure functions on rounds DataFrames.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sparsedd.analysis.convergence import fix_hint, not_converged
from sparsedd.analysis.curve_noise import DiffSd, smooth
from sparsedd.analysis.load import collapsed_flags, config_keys, hashable
from sparsedd.analysis.verdict import ALPHA, Verdict, sdd_verdict
from sparsedd.config import DEFAULTS, NON_SEMANTIC, NOT_IN_RUN_ID

#: The config key that turns pruning off (a control run).
CONTROL_KEY = "pruning"
#: Rounds a stopped control's accuracy is averaged over to extend it (its settled value).
SETTLED_ROUNDS = 3
#: The columns the curve table gains from a control (NaN or "" where a curve has none).
CONTROL_FIELDS = (
    "control_seeds",
    "fall_round",
    "fall_vs_dense",
    "fall_vs_control",
    "control_fall",
    "control_note",
)
_IGNORED = NON_SEMANTIC | NOT_IN_RUN_ID | {CONTROL_KEY, "seed", "curve"}


def is_control(df: pd.DataFrame) -> pd.Series:
    """Per row, whether it is a control run's (``pruning`` false; runs recorded before the key
    existed pruned)."""
    if CONTROL_KEY not in df.columns:
        return pd.Series(False, index=df.index)
    return df[CONTROL_KEY].map(lambda v: hashable(v) is not None and not bool(v)).astype(bool)


def split_controls(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(pruned rows, control rows) of a rounds DataFrame; the pruned rows lose the
    ``pruning`` column, so that the curves keep the labels they had without a control."""
    flags = is_control(df)
    pruned = df.loc[~flags].drop(columns=[CONTROL_KEY], errors="ignore")
    controls = df.loc[flags]
    pruned.attrs, controls.attrs = dict(df.attrs), dict(df.attrs)
    return pruned, controls


def _twin_keys(df: pd.DataFrame) -> list[str]:
    return sorted(k for k in config_keys(df) if k not in _IGNORED)


def _twin(row: pd.Series, keys: list[str]) -> tuple[Any, ...]:
    """What a run computes apart from pruning: its config keys, a missing one at its default."""
    out = []
    for key in keys:
        value = hashable(row.get(key)) if key in row.index else None
        if value is None:
            value = getattr(DEFAULTS, key, None)
        out.append(value)
    return (*out, hashable(row.get("seed")))


def with_twin_curves(pruned: pd.DataFrame, controls: pd.DataFrame) -> pd.DataFrame:
    """``controls`` with a ``curve`` column: the curve of the pruned run each pairs with
    (the same config and seed, pruning on), or "" for a control without its pruned run."""
    out = controls.copy()
    if controls.empty:
        out["curve"] = pd.Series(dtype=object)
        return out
    keys = sorted(set(_twin_keys(pruned)) | set(_twin_keys(controls)))
    curve_of = {_twin(r, keys): r["curve"] for _, r in pruned.drop_duplicates("run_id").iterrows()}
    twins = {
        r["run_id"]: curve_of.get(_twin(r, keys), "")
        for _, r in controls.drop_duplicates("run_id").iterrows()
    }
    out["curve"] = out["run_id"].map(twins)
    return out


def control_matrix(group: pd.DataFrame, controls: pd.DataFrame) -> np.ndarray | None:
    """The control test accuracy paired with ``group``'s runs: a (seeds × rounds) array in the
    order of ``tables.seed_matrix`` (sorted run ids, every round of the group), or None unless
    every run of the group has its control.

    A control that stopped before the group's last round is extended by its settled value
    (its mean over its last ``SETTLED_ROUNDS`` recorded rounds).
    """
    if controls.empty:
        return None
    keys = sorted(set(_twin_keys(group)) | set(_twin_keys(controls)))
    by_twin = {_twin(r, keys): rid for rid, r in controls.drop_duplicates("run_id").set_index(
        "run_id").iterrows()}  # fmt: skip
    rounds = sorted(group["round"].unique())
    out = []
    for rid in sorted(group["run_id"].unique()):
        first = group[group["run_id"] == rid].iloc[0]
        twin = by_twin.get(_twin(first, keys))
        if twin is None:
            return None
        out.append(_control_row(controls[controls["run_id"] == twin], rounds))
    return np.array(out, dtype=float)


def _control_row(runs: pd.DataFrame, rounds: list[int]) -> list[float]:
    trained = runs[~collapsed_flags(runs)]
    values = pd.to_numeric(trained["test_acc"], errors="coerce")
    acc = dict(zip(trained["round"], values, strict=True))
    last = [acc[k] for k in sorted(acc)[-SETTLED_ROUNDS:]]
    settled = float(np.mean(last)) if last else math.nan
    top = max(acc, default=-1)
    return [float(acc[k]) if k in acc else (settled if k > top else math.nan) for k in rounds]


def adjusted(pruned: np.ndarray, control: np.ndarray) -> np.ndarray:
    """The pruned accuracy less the control's drift since round 0, per seed: what pruning
    alone does (round 0 unchanged)."""
    return pruned - (control - control[:, :1])


@dataclass(frozen=True)
class Fall:
    """A pruned curve's fall at round ``at``, against round 0 and against its control."""

    at: int
    vs_dense: float
    vs_control: float
    control_fall: float
    noise: float  # one standard error of the fall against the control (binomial, paired)


def paired_noise(p: float, n_test: float | None, n_seeds: int) -> float:
    """Binomial standard error of a seed-mean difference of two accuracies near ``p`` on
    ``n_test`` images (p(1 − p) no smaller than 1/n: one image's worth at 0% or 100%)."""
    if not n_test or n_test <= 0:
        return 0.0
    var = max(p * (1 - p), 1 / n_test)
    return math.sqrt(2 * var / n_test / max(1, n_seeds))


def fall_at(pruned: np.ndarray, control: np.ndarray, at: int, n_test: float | None) -> Fall:
    """The seed-mean falls at round index ``at`` (pruned vs its round 0, control vs pruned,
    control vs its round 0), and the binomial standard error of a paired difference."""
    vs_dense = float(np.nanmean(pruned[:, 0] - pruned[:, at]))
    vs_control = float(np.nanmean(control[:, at] - pruned[:, at]))
    control_fall = float(np.nanmean(control[:, 0] - control[:, at]))
    p = float(np.nanmean(pruned[:, at]))
    noise = paired_noise(p, n_test, len(pruned)) if math.isfinite(p) else 0.0
    return Fall(at, vs_dense, vs_control, control_fall, noise)


def fall_note(fall: Fall, sparsity: float) -> str:
    """What the fall is: pruning's, training's, or both in stated parts (points, one decimal).

    A fall counts where it exceeds twice the binomial noise of a paired difference; a fall
    against round 0 is training when the control falls with it (pruning's own part, against the
    control, is within the noise or under half of it).
    """
    where = f"by round {fall.at} ({sparsity:.1%} sparsity)"
    total = f"the fall of {100 * fall.vs_dense:.1f} points {where}"
    real = 2 * fall.noise
    if fall.vs_control <= real or fall.vs_control < fall.vs_dense / 2:
        if fall.vs_dense <= real:
            return (
                f"no fall beyond the noise {where}, against round 0 "
                f"({100 * fall.vs_dense:+.1f} points) or the control "
                f"({100 * fall.vs_control:+.1f})"
            )
        return (
            f"{total} also happens without pruning (the control falls "
            f"{100 * fall.control_fall:.1f}): more training, not sparsity; pruning's own fall, "
            f"against the control, is {100 * fall.vs_control:.1f}"
        )
    if fall.vs_dense > real and fall.control_fall > real:
        return (
            f"of {total}, {100 * fall.control_fall:.1f} also happen without pruning (more "
            f"training); {100 * fall.vs_control:.1f} are pruning's, against the control"
        )
    return (
        f"against the control, pruning costs {100 * fall.vs_control:.1f} points {where} "
        f"(against round 0: {100 * fall.vs_dense:+.1f}; the control moves "
        f"{-100 * fall.control_fall:+.1f})"
    )


def control_fields(
    pruned: np.ndarray,
    control: np.ndarray | None,
    dip: int | None,
    sparsity: list[float],
    n_test: float | None,
) -> dict[str, Any]:
    """The CONTROL_FIELDS of one curve: falls at round index ``dip`` (the first descent that
    round 0 shows), or the pruned curve's lowest round before its best when ``dip`` is None."""
    empty: dict[str, Any] = {name: math.nan for name in CONTROL_FIELDS}
    empty["control_note"] = ""
    if control is None:
        return empty
    empty["control_seeds"] = float(len(control))
    at = dip if dip is not None else _lowest_before_best(pruned)
    if at is None or at == 0:
        empty["control_note"] = "no fall before the best round"
        return empty
    fall = fall_at(pruned, control, at, n_test)
    return {
        "control_seeds": float(len(control)),
        "fall_round": float(at),
        "fall_vs_dense": fall.vs_dense,
        "fall_vs_control": fall.vs_control,
        "control_fall": fall.control_fall,
        "control_note": fall_note(fall, sparsity[at]),
    }


def _lowest_before_best(pruned: np.ndarray) -> int | None:
    mean = np.nanmean(pruned, axis=0)
    if not np.isfinite(mean).any():
        return None
    best = int(np.nanargmax(mean))
    return int(np.nanargmin(mean[: best + 1])) if best > 0 else None


def controlled_verdict(
    matrix: np.ndarray,
    collapsed: np.ndarray,
    control: np.ndarray | None,
    n_test: float | None,
    min_rise: float,
    sparsity: list[float],
    *,
    alpha: float = ALPHA,
    paired_diff_sd: DiffSd | None = None,
    chance: float | None = None,
) -> tuple[Verdict, dict[str, Any]]:
    """(verdict, CONTROL_FIELDS) of one curve's (seeds × rounds) test accuracy.

    Without a control the verdict reads the curve itself. With one, it reads the adjusted
    curve (``adjusted``): a difference of three accuracies on the same test images, so it is
    given the binomial noise of a third of them (no smaller, as they are correlated); the falls
    are measured where the plain curve dips (what round 0 alone would call the first descent).
    ``alpha``, ``chance`` and ``paired_diff_sd`` go to ``sdd_verdict``; the paired test-set
    noise applies to the plain curve only (the adjusted one mixes the control's rounds in).
    """
    plain = sdd_verdict(
        matrix, n_test, min_rise, collapsed=collapsed, alpha=alpha,
        paired_diff_sd=paired_diff_sd, sparsity=sparsity, chance=chance,
    )  # fmt: skip
    if control is None:
        return plain, control_fields(matrix, None, None, sparsity, n_test)
    judged = sdd_verdict(
        adjusted(matrix, control), n_test / 3 if n_test else None, min_rise,
        collapsed=collapsed, alpha=alpha, sparsity=sparsity, chance=chance,
    )  # fmt: skip
    # fall and rise are the adjusted curve's; the dip and peak accuracies are the pruned
    # curve's own at those rounds, so that the table and the figure show them where it is
    own = _smoothed_mean(matrix)
    judged = dataclasses.replace(
        judged,
        note=f"against the control: {judged.note}".strip(),
        dip_acc=_at_round(own, judged.dip_round, judged.dip_acc),
        peak_acc=_at_round(own, judged.peak_round, judged.peak_acc),
    )
    dip = plain.dip_round if plain.fall and plain.fall > 0 else judged.dip_round
    return judged, control_fields(matrix, control, dip, sparsity, n_test)


def control_lines(curves: pd.DataFrame) -> list[str]:
    """One line per curve with a control: what its fall is (pruning's or training's)."""
    if "control_note" not in curves.columns:
        return []
    return [f"{c['curve']}: {c['control_note']}" for _, c in curves.iterrows() if c["control_note"]]


def convergence_lines(
    rounds: pd.DataFrame, controls: pd.DataFrame, dense_train_acc: dict[str, list[float]]
) -> list[str]:
    """One line per curve whose dense rounds had not converged on the noisy labels: training
    accuracy still climbing at their last epochs (``dense_train_acc``: per run, the dense
    round's accuracy per epoch), or the control's first two rounds moving more than twice the
    test set's binomial noise of a paired difference. Each line gives the fix."""
    out = []
    for curve, group in rounds.groupby("curve", sort=False):
        runs = sorted(group["run_id"].unique())
        why = {r: not_converged(dense_train_acc.get(r, [])) for r in runs}
        climbing = [r for r in runs if why[r] is not None]
        reasons = []
        if climbing:
            reasons.append(f"in {len(climbing)} of {len(runs)} runs {why[climbing[0]]}")
        moved = _control_moves(controls[controls["curve"] == curve]) if len(controls) else None
        if moved is not None:
            reasons.append(moved)
        if reasons:
            hint = fix_hint(_dense_epochs(group))
            out.append(
                f"{curve}: the dense round had not converged on the noisy labels "
                f"({'; '.join(reasons)}); {hint}"
            )
    return out


def _dense_epochs(group: pd.DataFrame) -> int | None:
    """The dense round's epochs of a curve's runs (``dense_epochs``, else ``epochs``)."""
    for key in ("dense_epochs", "epochs"):
        if key in group.columns:
            values = pd.to_numeric(group[key], errors="coerce").dropna()
            if len(values):
                return int(values.max())
    return None


def _control_moves(controls: pd.DataFrame, rounds: int = 2) -> str | None:
    """How far the controls' seed-mean test accuracy moves over their first ``rounds``
    rounds, when that is more than twice a paired difference's binomial noise; else None."""
    if controls.empty:
        return None
    acc = controls.pivot_table(index="run_id", columns="round", values="test_acc")
    if 0 not in acc.columns or rounds not in acc.columns:
        return None
    move = float((acc[rounds] - acc[0]).mean())
    n = pd.to_numeric(controls["n_test"], errors="coerce").min()
    p = float(acc[0].mean())
    noise = paired_noise(p, n, len(acc))
    if abs(move) <= 2 * noise:
        return None
    return (
        f"without pruning, test accuracy moves {100 * move:+.1f} points over the first "
        f"{rounds} rounds, more than the noise ({100 * 2 * noise:.1f})"
    )


def _smoothed_mean(matrix: np.ndarray) -> np.ndarray:
    """The seeds' mean test accuracy per round, smoothed as the verdict smooths it."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(matrix, axis=0)
    end = int(np.flatnonzero(np.isfinite(mean))[-1]) + 1 if np.isfinite(mean).any() else 0
    return smooth(mean[:end]) if end else mean


def _at_round(curve: np.ndarray, index: int | None, fallback: float | None) -> float | None:
    if index is None or index >= len(curve) or not math.isfinite(curve[index]):
        return fallback
    return float(curve[index])
