"""Choosing λ (``weight_decay``) among curves that differ only in λ, by a stated rule.

Every rule reads validation accuracy only (never test accuracy); ties go to the smaller λ.
- ``avoid-sdd`` (default): the best validation accuracy among the λ whose verdict is ``no SDD``
  from more than one seed; where none is, among the ``inconclusive`` ones and the one-seed
  (indicative) ``no SDD`` ones (said so); none where every λ shows SDD.
- ``best-val``: the best validation accuracy overall, even on a curve with SDD (said so).
- ``at-sparsity``: the best validation accuracy at a target sparsity (the recorded round
  closest to it).

No rule picks a collapsed round (one where a seed's run had stopped as collapsed): its mean
validation accuracy is missing, so the λ whose curve is collapsed there is never chosen on it.

With the rounds table, each choice also says how far the chosen λ holds, its validation edge
over the runner-up with an interval paired by seed, when its verdict rests on one seed, and
which other λ stays compressible past where it holds (``lambda_evidence``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from sparsedd.analysis.choices import DEFAULT_LAMBDA_RULE, LAMBDA_RULES
from sparsedd.analysis.lambda_evidence import holds_to, paired_difference, seed_values
from sparsedd.analysis.load import (
    ALWAYS_KEYS,
    add_curve_column,
    collapsed_flags,
    hashable,
    label,
)
from sparsedd.analysis.verdict import INCONCLUSIVE, NO_SDD, SDD
from sparsedd.errors import UserError

RULE_WORDS = {
    "avoid-sdd": "best validation accuracy among λ without SDD",
    "best-val": "best validation accuracy over all λ",
    "at-sparsity": "best validation accuracy at sparsity {target}",
}


def lambda_groups(table: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    """Per curve of ``table``, the label of its curve keys other than ``weight_decay``."""
    others = [k for k in keys if k != "weight_decay"]
    return [label(others, [hashable(v) for v in vals]) for vals in table[others].itertuples(False)]


def _nearest(stats: pd.DataFrame, curve: str, target: float) -> pd.Series | None:
    """The per-round statistics of ``curve`` at its recorded round closest to ``target``."""
    rows = stats[stats["curve"] == curve]
    if rows.empty:
        return None
    return rows.iloc[int(np.argmin(np.abs(rows["sparsity"].to_numpy() - target)))]


def val_at_sparsity(stats: pd.DataFrame, curve: str, target: float) -> float:
    """Mean validation accuracy of ``curve`` at its recorded round closest to ``target`` (NaN
    where that round is collapsed: a run had stopped before it, so it is never chosen)."""
    nearest = _nearest(stats, curve, target)
    if nearest is None:
        return float("nan")
    return float(pd.to_numeric(nearest["val_acc_mean"], errors="coerce"))


def collapsed_at_sparsity(stats: pd.DataFrame, curve: str, target: float) -> bool:
    """Whether ``curve``'s recorded round closest to ``target`` is a collapsed point."""
    nearest = _nearest(stats, curve, target)
    return nearest is not None and bool(collapsed_flags(nearest.to_frame().T).iloc[0])


def _candidates(members: pd.DataFrame, rule: str) -> tuple[pd.DataFrame, str]:
    """The curves ``rule`` may choose among, and a note when that is not what it asks for."""
    verdicts = members.get("verdict", pd.Series([NO_SDD] * len(members), index=members.index))
    if rule != "avoid-sdd":
        return members, ""
    one_seed = (
        members["n_seeds"] == 1 if "n_seeds" in members else pd.Series(False, index=members.index)
    )
    shown = (verdicts == NO_SDD) & ~one_seed
    indicative = (verdicts == NO_SDD) & one_seed
    if shown.any():
        return members[shown], ""
    if indicative.any():
        note = "no λ was shown free of SDD by more than one seed: chosen among inconclusive "
        return members[indicative | (verdicts == INCONCLUSIVE)], note + "and one-seed curves"
    if (verdicts == INCONCLUSIVE).any():
        note = "no λ was shown free of SDD: chosen among inconclusive curves"
        return members[verdicts == INCONCLUSIVE], note
    return members.iloc[0:0], "every λ shows SDD: none chosen"


def choose_weight_decay(
    table: pd.DataFrame,
    keys: Sequence[str] | None = None,
    rule: str = DEFAULT_LAMBDA_RULE,
    target_sparsity: float | None = None,
    stats: pd.DataFrame | None = None,
    rounds: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per group of curves that differ only in ``weight_decay``: λ* chosen by ``rule``.

    ``table`` is a curve table (with ``weight_decay``, ``verdict`` and ``best_val_acc``);
    ``at-sparsity`` also needs ``target_sparsity`` and the per-round ``stats``. Returns columns
    lambda_group, n_lambdas, lambdas (those the rule chose among), best_weight_decay (NaN when
    none), best_val_acc, rule, note (what the reader must know about the choice), then, with
    ``stats`` and ``rounds`` (the rounds table with its ``curve`` column), EVIDENCE_FIELDS (see
    ``evidence``; NaN, None or empty without them or without a choice).
    """
    if rule not in LAMBDA_RULES:
        raise UserError(f"unknown λ rule {rule!r}; choose one of: {', '.join(LAMBDA_RULES)}")
    if rule == "at-sparsity" and (target_sparsity is None or stats is None):
        raise UserError("the at-sparsity λ rule needs a target sparsity (--target-sparsity)")
    keys = list(keys) if keys is not None else [k for k in table.columns if k in ALWAYS_KEYS]
    if "weight_decay" not in table.columns:
        raise UserError("the results have no weight_decay key; cannot choose λ")
    groups = lambda_groups(table, keys)
    records = []
    for group in dict.fromkeys(groups):
        members = table[[g == group for g in groups]]
        pool, note = _candidates(members, rule)
        if rule == "at-sparsity":
            val = pool["curve"].map(lambda c: val_at_sparsity(stats, c, target_sparsity))
        else:
            val = pd.to_numeric(pool["best_val_acc"], errors="coerce")
        best = float("nan")
        if val.notna().any():
            order = pool.assign(_v=val).sort_values(
                ["_v", "weight_decay"], ascending=[False, True], kind="stable"
            )
            best = float(order.iloc[0]["weight_decay"])
            if rule == "best-val" and order.iloc[0].get("verdict") == SDD:
                note = "the chosen λ shows SDD (rule best-val); --lambda-rule avoid-sdd avoids it"
        elif (
            rule == "at-sparsity"
            and not pool.empty
            and all(collapsed_at_sparsity(stats, c, target_sparsity) for c in pool["curve"])
        ):
            note = "every λ's runs had stopped as collapsed by the target sparsity: none chosen"
        elif not pool.empty:
            note = "no validation accuracy (set val_size > 0)"
        record = {
            "lambda_group": group,
            "n_lambdas": int(members["weight_decay"].nunique()),
            "lambdas": sorted(float(v) for v in pool["weight_decay"]),
            "best_weight_decay": best,
            "best_val_acc": float(val.max()) if val.notna().any() else float("nan"),
            "rule": RULE_WORDS[rule].format(target=f"{target_sparsity or 0:.2%}"),
            "note": note,
            **dict.fromkeys(EVIDENCE_FIELDS),
        }
        if not np.isnan(best) and stats is not None and rounds is not None:
            rounds = rounds if "curve" in rounds.columns else add_curve_column(rounds)
            measure = _measure(members, rule, target_sparsity, stats)
            record.update(evidence(members, best, measure, stats, rounds))
        records.append(record)
    columns = ["lambda_group", "n_lambdas", "lambdas", "best_weight_decay", "best_val_acc"]
    return pd.DataFrame.from_records(records, columns=[*columns, "rule", "note", *EVIDENCE_FIELDS])


#: What ``evidence`` adds to a λ choice.
EVIDENCE_FIELDS = (
    "holds_to",
    "collapse_at",
    "indicative",
    "runner_up",
    "runner_up_verdict",
    "val_diff",
    "val_diff_low",
    "val_diff_high",
    "n_paired",
    "compressible_beyond",
)


def _measure(
    members: pd.DataFrame, rule: str, target: float | None, stats: pd.DataFrame
) -> pd.DataFrame:
    """Per member curve: the validation accuracy the rule compares and the sparsity of the
    round it is at (columns ``_v``, ``_at``)."""
    if rule == "at-sparsity":
        val = members["curve"].map(lambda c: val_at_sparsity(stats, c, target))
        return members.assign(_v=val, _at=float(target or 0))
    val = pd.to_numeric(members["best_val_acc"], errors="coerce")
    return members.assign(_v=val, _at=pd.to_numeric(members["best_val_sparsity"]))


def evidence(
    members: pd.DataFrame,
    best: float,
    measure: pd.DataFrame,
    stats: pd.DataFrame,
    rounds: pd.DataFrame,
) -> dict[str, object]:
    """For the λ ``best`` chosen among ``members`` (the curves of one group, with ``_v`` and
    ``_at`` from ``_measure``): the sparsity it holds to and where its collapse starts, whether
    its verdict rests on one seed (``indicative``), the runner-up (the other λ with the best
    compared validation accuracy) and its verdict, the chosen λ's validation difference over it
    (paired by seed: val_diff with its 95% interval and the seeds paired), and the other λ that
    stay compressible (within the tolerance of dense) past where the chosen one holds."""
    chosen = measure[measure["weight_decay"] == best].iloc[0]
    held, collapse = holds_to(stats, chosen)
    out: dict[str, object] = {
        "holds_to": held,
        "collapse_at": collapse,
        "indicative": int(chosen.get("n_seeds", 2)) == 1,
        "compressible_beyond": [
            (float(c["weight_decay"]), float(c["compressible_to"]))
            for _, c in members.sort_values("weight_decay").iterrows()
            if c["weight_decay"] != best and float(c["compressible_to"]) > held + 1e-12
        ],
    }
    others = measure[(measure["weight_decay"] != best) & measure["_v"].notna()]
    if others.empty:
        return out
    other = others.sort_values(["_v", "weight_decay"], ascending=[False, True]).iloc[0]
    mine = seed_values(rounds, stats, chosen["curve"], float(chosen["_at"]), "val_acc")
    theirs = seed_values(rounds, stats, other["curve"], float(other["_at"]), "val_acc")
    diff = paired_difference(mine, theirs)
    return {
        **out,
        "runner_up": float(other["weight_decay"]),
        "runner_up_verdict": other.get("verdict"),
        "val_diff": diff["diff"],
        "val_diff_low": diff["low"],
        "val_diff_high": diff["high"],
        "n_paired": diff["n_paired"],
    }
