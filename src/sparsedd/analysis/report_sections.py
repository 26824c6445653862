"""The report's text: display tables, the one-sentence verdict per curve, the λ choice and
trade-off, how the label noise was drawn, where runs stopped as collapsed, provenance and
per-round statistics. Plain strings and rows of strings; ``report`` puts them into HTML and the
CLI prints them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from sparsedd.analysis.load import collapsed_flags
from sparsedd.analysis.tables import DEFAULT_TOLERANCE, Analysis
from sparsedd.store.schema import PROVENANCE_FIELDS

#: What a collapsed round or point reads instead of its metrics.
COLLAPSED = "collapsed"
DISPLAY_COLUMNS = (
    "n_seeds",
    "dense",
    "best (at sparsity)",
    "compressible to",
    "verdict",
    "dip (at sparsity)",
    "peak (at sparsity)",
    "rise [90% bounds]",
    "valley bound",
    "best val",
    "λ*",
)


def missing(value: Any) -> bool:
    """Whether a table value is missing (None or NaN)."""
    return value is None or (isinstance(value, float) and value != value)


def pct(value: Any, digits: int = 1) -> str:
    """A fraction as a percentage string ('-' for missing)."""
    if missing(value):
        return "-"
    return f"{100 * float(value):.{digits}f}%"


def points(value: Any) -> str:
    """A difference of fractions as signed percentage points ('-' for missing)."""
    if missing(value):
        return "-"
    return f"{100 * float(value):+.1f}"


def at_cell(acc: Any, sparsity: Any) -> str:
    """An accuracy and the sparsity it was reached at: '80.1% (73.8%)' ('-' for missing)."""
    return "-" if missing(acc) else f"{pct(acc)} ({pct(sparsity)})"


def key_cell(value: Any) -> str:
    """A curve key's value as the tables show it."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def verdict_cell(curve: pd.Series | dict) -> str:
    """The verdict as the tables show it: one seed's verdict is marked indicative."""
    word = str(curve["verdict"])
    return f"{word} (1 seed)" if curve["n_seeds"] == 1 and word != "inconclusive" else word


def bounds(curve: pd.Series | dict, name: str) -> str:
    """The 90% bounds of a curve's ``fall`` or ``rise``, in signed points."""
    return f"[{points(curve[f'{name}_low'])}, {points(curve[f'{name}_high'])}]"


def valley_bound(curve: pd.Series | dict) -> str:
    """The upper bound on the deepest valley in points, '≤ 0.9' (what no SDD is judged on;
    '-' for SDD or where none was computed)."""
    high = curve.get("depth_high")
    if curve["verdict"] == "SDD" or missing(high):
        return "-"
    return f"≤ {100 * float(high):.1f}"


def display_rows(result: Analysis) -> list[dict[str, str]]:
    """The curve table as rows of strings: curve keys then DISPLAY_COLUMNS.

    A curve judged ``no SDD`` shows "-" for dip, peak and rise: its largest valley is no dip;
    ``analyze --format json`` keeps it for those who want it.
    """
    rows = []
    for _, c in result.curves.iterrows():
        row = {k: key_cell(c[k]) for k in result.keys}
        valley = c["verdict"] != "no SDD"
        lam = c.get("best_weight_decay")
        row.update(
            {
                "n_seeds": str(c["n_seeds"]),
                "dense": pct(c["dense_acc"]),
                "best (at sparsity)": at_cell(c["best_acc"], c["best_sparsity"]),
                "compressible to": pct(c["compressible_to"]),
                "verdict": verdict_cell(c),
                "dip (at sparsity)": at_cell(c["dip_acc"], c["dip_sparsity"]) if valley else "-",
                "peak (at sparsity)": at_cell(c["peak_acc"], c["peak_sparsity"]) if valley else "-",
                "rise [90% bounds]": (
                    f"{points(c['rise'])} {bounds(c, 'rise')}"
                    if valley and not missing(c["rise"])
                    else "-"
                ),
                "valley bound": valley_bound(c),
                "best val": pct(c["best_val_acc"]),
                "λ*": "-" if missing(lam) else f"{lam:g}",
            }
        )
        rows.append(row)
    return rows


def verdict_notes(result: Analysis) -> list[str]:
    """One line per curve whose verdict needs a word: indicative (one seed) or inconclusive."""
    out = []
    for _, c in result.curves.iterrows():
        if c["verdict"] == "inconclusive" or c["n_seeds"] == 1:
            out.append(f"{c['curve']}: {c['verdict']}, {c['verdict_note']}")
    return out


def text_table(rows: Sequence[dict[str, str]]) -> str:
    """Rows of strings as an aligned plain-text table."""
    if not rows:
        return "(no curves)"
    cols = list(rows[0])
    widths = [max(len(c), *(len(r[c]) for r in rows)) for c in cols]
    lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(r[c].rjust(w) for c, w in zip(cols, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def amount(fraction: float) -> str:
    """A tolerance (a fraction) in words: '1 point', '0.5 points'."""
    value = 100 * float(fraction)
    return f"{value:.3g} point{'' if value == 1 else 's'}"


def verdict(
    curve: pd.Series | dict, keys: Sequence[str], tolerance: float = DEFAULT_TOLERANCE
) -> str:
    """One sentence on whether a curve shows sparse double descent, with the evidence.

    ``tolerance`` is the compression tolerance the analysis used (``Analysis.tolerance``).
    """
    within = f"within {amount(tolerance)} of dense up to {pct(curve['compressible_to'])} sparsity"
    name = ", ".join(f"{k} = {key_cell(curve[k])}" for k in keys)
    seeds = f"{curve['n_seeds']} seed{'s' if curve['n_seeds'] != 1 else ''}"
    evidence = (
        f"fall {points(curve['fall'])} {bounds(curve, 'fall')}, rise {points(curve['rise'])} "
        f"{bounds(curve, 'rise')} points (90% bounds, noise {points(curve['noise_sd'])[1:]} "
        f"points per seed and round)"
    )
    valley = (
        f"test accuracy dips to {pct(curve['dip_acc'])} at {pct(curve['dip_sparsity'])} "
        f"sparsity and recovers to {pct(curve['peak_acc'])} at {pct(curve['peak_sparsity'])}"
    )
    note = curve["verdict_note"]
    if curve["verdict"] == "SDD":
        return f"{name}: sparse double descent ({seeds}; {note}): {valley}; {evidence}."
    if curve["verdict"] == "inconclusive":
        shown = f"{valley}; {evidence}" if not missing(curve["rise"]) else "no valley measured"
        return f"{name}: inconclusive ({seeds}): {shown}; {note}. Accuracy stays {within}."
    shown = "" if missing(curve["rise_high"]) else f"; {evidence}"
    return f"{name}: no sparse double descent ({seeds}; {note}){shown}. Accuracy stays {within}."


def lambda_verdicts(result: Analysis) -> list[str]:
    """Per λ group: which λ the rule picks and why, and for each λ its verdict and accuracy."""
    out = []
    for _, g in result.lambdas.iterrows():
        members = result.curves[result.curves["lambda_group"] == g["lambda_group"]]
        members = members.sort_values("weight_decay", kind="stable")
        each = "; ".join(
            f"λ = {c['weight_decay']:g}: {verdict_cell(c)}, best test accuracy "
            f"{pct(c['best_acc'])} at {pct(c['best_sparsity'])} sparsity"
            for _, c in members.iterrows()
        )
        lam = g["best_weight_decay"]
        note = f" ({g['note']})" if g["note"] else ""
        if missing(lam):
            out.append(f"{g['lambda_group']}: no λ chosen{note}. {each}.")
            continue
        among = ", ".join(f"{v:g}" for v in g["lambdas"])
        out.append(
            f"{g['lambda_group']}: λ* = {lam:g} of {{{among}}} by {g['rule']}{note} "
            f"(validation accuracy {pct(g['best_val_acc'])}{_edge(g)}).{_reach(g, lam)} {each}."
        )
    return out


def _edge(g: pd.Series) -> str:
    """The chosen λ's validation edge over the runner-up, with its interval paired by seed."""
    if missing(g.get("val_diff")):
        return ""
    diff = (
        f"{100 * g['val_diff']:+.2f} points over λ = {g['runner_up']:g} ({g['runner_up_verdict']})"
    )
    if missing(g["val_diff_low"]):
        return f", {diff}, one seed in common: no interval"
    low, high = (f"{100 * g[k]:+.2f}" for k in ("val_diff_low", "val_diff_high"))
    tie = ": a tie within it" if g["val_diff_low"] <= 0 <= g["val_diff_high"] else ""
    return f", {diff} [95% interval {low}, {high}, paired over {g['n_paired']} seeds{tie}]"


def _reach(g: pd.Series, lam: float) -> str:
    """How far λ* holds, whether its verdict is indicative, and who compresses past it."""
    if missing(g.get("holds_to")):
        return ""
    held = pct(g["holds_to"])
    text = f" λ* = {lam:g} holds to {held} sparsity"
    text += "" if missing(g["collapse_at"]) else f" (it collapses from {pct(g['collapse_at'])})"
    text += "."
    if g["indicative"]:
        text += " Its verdict rests on one seed: indicative; add seeds to confirm."
    if g["compressible_beyond"]:
        others = ", ".join(f"λ = {w:g} to {pct(s)}" for w, s in g["compressible_beyond"])
        text += (
            f" Past {held} it does not apply: other λ stay within the tolerance of dense "
            f"further ({others})."
        )
    return text


#: How λ* is chosen, as the report states it.
LAMBDA_RULE = (
    "λ* is chosen on validation accuracy (mean over seeds), never test accuracy; ties go to "
    "the smaller λ. Rules: avoid-sdd (default: best validation among λ without SDD), "
    "best-val (best validation overall), at-sparsity (best validation at a target sparsity)"
)


def tradeoff_rows(result: Analysis) -> list[tuple[str, list[dict[str, str]]]]:
    """Per setting (curves that differ only in λ): one row per λ, smallest first: its verdict,
    best validation accuracy and the test accuracy at that round, dense and best accuracy, and
    the sparsity it holds to within the tolerance; λ* marked.
    """
    if "weight_decay" not in result.curves.columns or "lambda_group" not in result.curves:
        return []
    chosen = {g["lambda_group"]: g["best_weight_decay"] for _, g in result.lambdas.iterrows()}
    out = []
    for group in dict.fromkeys(result.curves["lambda_group"]):
        members = result.curves[result.curves["lambda_group"] == group]
        members = members.sort_values("weight_decay", kind="stable")
        star = chosen.get(group)
        rows = []
        for _, c in members.iterrows():
            rows.append(
                {
                    "λ": f"{c['weight_decay']:g}",
                    "λ*": "λ*" if not missing(star) and c["weight_decay"] == star else "",
                    "n_seeds": str(c["n_seeds"]),
                    "verdict": verdict_cell(c),
                    "best val (at sparsity)": at_cell(c["best_val_acc"], c["best_val_sparsity"]),
                    "test there": pct(c["test_at_best_val"]),
                    "dense": pct(c["dense_acc"]),
                    "best (at sparsity)": at_cell(c["best_acc"], c["best_sparsity"]),
                    f"holds to (±{amount(result.tolerance)})": pct(c["compressible_to"]),
                }
            )
        out.append((str(group), rows))
    return out


def noise_draw_line(result: Analysis) -> str:
    """How the label noise was drawn across seeds, as the report says it."""
    if "noise_seed" not in result.rounds.columns:
        return "Label noise: one draw for every seed (results recorded before per-seed draws)."
    pinned = result.rounds["noise_seed"].dropna().unique()
    if len(pinned) == 0:
        return "Label noise: drawn anew for each seed, so seed intervals include the draw."
    seeds = ", ".join(str(int(v)) for v in sorted(pinned))
    return (
        f"Label noise: pinned, one draw (noise_seed = {seeds}) shared by every seed; seed "
        "intervals leave out the variance of the draw."
    )


def provenance_rows(result: Analysis) -> list[dict[str, Any]]:
    """Each distinct (sparsedd version, commit, torch version, device) and how many rounds it
    computed ('-' where rounds were recorded before provenance was)."""
    rounds = result.rounds
    cols = [c for c in PROVENANCE_FIELDS if c in rounds.columns]
    if not cols:
        return []
    keys = rounds[cols].astype(object).where(rounds[cols].notna(), None)
    counts: dict[tuple, int] = {}
    for values in keys.itertuples(index=False):
        counts[tuple(values)] = counts.get(tuple(values), 0) + 1
    return [{**dict(zip(cols, k, strict=True)), "rounds": n} for k, n in counts.items()]


def _bits(value: Any) -> str:
    return "-" if missing(value) else f"{float(value):.3f}"


def stats_rows(result: Analysis) -> list[dict[str, Any]]:
    """The per-round statistics as rows of strings; a collapsed point (a seed's run had stopped
    as collapsed before it) reads "collapsed (k of n seeds)" instead of its metrics."""
    rows = []
    for s, collapsed in zip(
        result.stats.to_dict(orient="records"),
        collapsed_flags(result.stats).to_numpy(),
        strict=True,
    ):
        row = {
            "curve": s["curve"],
            "round": s["round"],
            "sparsity": pct(s["sparsity"], 2),
            "seeds": s["n_seeds"],
            "test acc": pct(s["test_acc_mean"], 2),
            "± s.d.": points(s["test_acc_std"]).lstrip("+"),
            "95% CI": f"{pct(s['test_acc_low'], 2)} – {pct(s['test_acc_high'], 2)}",
            "memorization": pct(s["memorization_mean"]),
            "entropy (bits)": _bits(s.get("activation_entropy_mean")),
            "val acc": pct(s["val_acc_mean"]),
        }
        if collapsed:
            word = f"{COLLAPSED} ({s['n_collapsed']} of {s['n_seeds']} seeds)"
            row.update(dict.fromkeys(("test acc", "memorization", "entropy (bits)"), word))
            row.update({"± s.d.": "-", "95% CI": "-", "val acc": word})
        rows.append(row)
    return rows


def collapse_lines(result: Analysis) -> list[str]:
    """One line per curve whose runs stopped as collapsed (the training's collapse stop): from
    which sparsity (round) they stopped, and how many rounds they skipped in all."""
    out = []
    flags = collapsed_flags(result.rounds)
    for _, c in result.curves.iterrows():
        if not c.get("n_collapsed_runs"):
            continue
        rows = result.rounds[(result.rounds["curve"] == c["curve"]) & flags]
        starts = rows.groupby("run_id")["round"].min()
        first, last = int(starts.min()), int(starts.max())
        where = f"from {_round_at(result, c['curve'], first)}"
        if last != first:
            where = f"the first {where}, the last from {_round_at(result, c['curve'], last)}"
        skipped = int(c["skipped_rounds"])
        out.append(
            f"{c['curve']}: {c['n_collapsed_runs']} of {c['n_seeds']} runs stopped as collapsed, "
            f"{where}; {skipped} round{'s' if skipped != 1 else ''} skipped (not trained, shown "
            f"as collapsed); the verdict reads each run's rounds before its own collapse"
        )
    return out


def _round_at(result: Analysis, curve: str, round_: int) -> str:
    """'73.8% sparsity (round 6)' for ``round_`` of ``curve``."""
    stats = result.stats[(result.stats["curve"] == curve) & (result.stats["round"] == round_)]
    return f"{pct(stats['sparsity'].iloc[0])} sparsity (round {round_})"


def unequal_rounds_lines(result: Analysis) -> list[str]:
    """One line per curve whose runs recorded different numbers of rounds (a run still going,
    or stopped early): from which round its mean rests on fewer seeds. Collapsed rounds count
    as recorded: the collapse stop records every round it skips."""
    out = []
    last = result.rounds.groupby(["curve", "run_id"], sort=True)["round"].max()
    for curve, runs in last.groupby(level="curve", sort=False):
        if runs.nunique() < 2:
            continue
        seeds = result.rounds.drop_duplicates("run_id").set_index("run_id").get("seed")
        each = ", ".join(
            f"{_run_name(run_id, seeds)}: rounds 0-{int(n)}"
            for (_, run_id), n in runs.sort_values(ascending=False).items()
        )
        short = int(runs.min())
        out.append(
            f"{curve}: its runs recorded different numbers of rounds ({each}); after round "
            f"{short} the mean, the best round and 'compressible to' rest on fewer seeds "
            f"(n_seeds per round: --format json or the report's per-round statistics)"
        )
    return out


def _run_name(run_id: str, seeds: pd.Series | None) -> str:
    if seeds is None or missing(seeds.get(run_id)):
        return f"run {run_id[:8]}"
    return f"seed {key_cell(seeds.get(run_id))}"
