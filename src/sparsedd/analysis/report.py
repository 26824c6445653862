"""Display tables and the self-contained HTML report (figures embedded, no network needed)."""

from __future__ import annotations

import base64
import datetime as dt
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from sparsedd.analysis.tables import DEFAULT_TOLERANCE, Analysis, config_keys
from sparsedd.errors import UserError
from sparsedd.store.atomic import atomic_write_text
from sparsedd.store.results import PROVENANCE_FIELDS

DISPLAY_COLUMNS = (
    "n_seeds",
    "dense",
    "best (at sparsity)",
    "compressible to",
    "verdict",
    "dip (at sparsity)",
    "peak (at sparsity)",
    "rise [90% bounds]",
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


def _at(acc: Any, sparsity: Any) -> str:
    return "-" if missing(acc) else f"{pct(acc)} ({pct(sparsity)})"


def _key_cell(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def verdict_cell(curve: pd.Series | dict) -> str:
    """The verdict as the tables show it: one seed's verdict is marked indicative."""
    word = str(curve["verdict"])
    return f"{word} (1 seed)" if curve["n_seeds"] == 1 and word != "inconclusive" else word


def _bounds(curve: pd.Series | dict, name: str) -> str:
    return f"[{points(curve[f'{name}_low'])}, {points(curve[f'{name}_high'])}]"


def display_rows(result: Analysis) -> list[dict[str, str]]:
    """The curve table as rows of strings: curve keys then DISPLAY_COLUMNS.

    A curve judged ``no SDD`` shows "-" for dip, peak and rise: its largest valley is no dip;
    ``analyze --format json`` keeps it for those who want it.
    """
    rows = []
    for _, c in result.curves.iterrows():
        row = {k: _key_cell(c[k]) for k in result.keys}
        valley = c["verdict"] != "no SDD"
        lam = c.get("best_weight_decay")
        row.update(
            {
                "n_seeds": str(c["n_seeds"]),
                "dense": pct(c["dense_acc"]),
                "best (at sparsity)": _at(c["best_acc"], c["best_sparsity"]),
                "compressible to": pct(c["compressible_to"]),
                "verdict": verdict_cell(c),
                "dip (at sparsity)": _at(c["dip_acc"], c["dip_sparsity"]) if valley else "-",
                "peak (at sparsity)": _at(c["peak_acc"], c["peak_sparsity"]) if valley else "-",
                "rise [90% bounds]": (
                    f"{points(c['rise'])} {_bounds(c, 'rise')}"
                    if valley and not missing(c["rise"])
                    else "-"
                ),
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
    name = ", ".join(f"{k} = {_key_cell(curve[k])}" for k in keys)
    seeds = f"{curve['n_seeds']} seed{'s' if curve['n_seeds'] != 1 else ''}"
    evidence = (
        f"fall {points(curve['fall'])} {_bounds(curve, 'fall')}, rise {points(curve['rise'])} "
        f"{_bounds(curve, 'rise')} points (90% bounds, noise {points(curve['noise_sd'])[1:]} "
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
            f"(validation accuracy {pct(g['best_val_acc'])}). {each}."
        )
    return out


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
                    "best val (at sparsity)": _at(c["best_val_acc"], c["best_val_sparsity"]),
                    "test there": pct(c["test_at_best_val"]),
                    "dense": pct(c["dense_acc"]),
                    "best (at sparsity)": _at(c["best_acc"], c["best_sparsity"]),
                    f"holds to (±{amount(result.tolerance)})": pct(c["compressible_to"]),
                }
            )
        out.append((str(group), rows))
    return out


def _tradeoff_html(result: Analysis) -> str:
    tables = "".join(
        f"<h3>{html.escape(setting)}</h3>" + html_table(rows, left=("λ*",))
        for setting, rows in tradeoff_rows(result)
    )
    return (
        tables + f'<p class="meta">{html.escape(LAMBDA_RULE)}. "Holds to": the highest '
        f"sparsity whose mean test accuracy is within {amount(result.tolerance)} of dense.</p>"
    )


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


# ---------------------------------------------------------------- HTML

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1200px; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0 1.5em; }
th, td { border: 1px solid #ddd; padding: .25em .5em; text-align: right; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; }
.yes { color: #0072B2; font-weight: bold; } .no { color: #555; }
img { max-width: 100%; height: auto; }
.meta { color: #555; } details { margin: 1em 0; } code { background: #f5f5f5; }
"""


def html_table(rows: Sequence[dict[str, Any]], left: Sequence[str] = ()) -> str:
    """Rows of dicts as an escaped HTML table (columns named in ``left`` are left-aligned)."""
    if not rows:
        return "<p>(none)</p>"
    cols = list(rows[0])
    cls = {c: ' class="l"' if c in left else "" for c in cols}
    head = "".join(f"<th{cls[c]}>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td{cls[c]}>{html.escape(_cell(r.get(c)))}</td>" for c in cols) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _unread_keys(runs: pd.DataFrame) -> set[str]:
    """Config keys that no run reads (the ViT's sizes in a LeNet study, momentum with AdamW)."""
    import dataclasses

    from sparsedd.components import unused_keys
    from sparsedd.config import DEFAULTS

    if not {"model", "optimizer"} <= set(runs.columns):
        return set()
    unread = [
        unused_keys(dataclasses.replace(DEFAULTS, model=str(m), optimizer=str(o)))
        for m, o in zip(runs["model"], runs["optimizer"], strict=True)
    ]
    return set.intersection(*map(set, unread)) if unread else set()


def _config_sections(result: Analysis) -> str:
    runs = result.rounds.drop_duplicates("run_id")
    unread = _unread_keys(runs)
    cols = [c for c in config_keys(runs) if c not in unread]
    shared = {c: runs[c].iloc[0] for c in cols if runs[c].astype(str).nunique() == 1}
    varying = [c for c in cols if c not in shared]
    shared_rows = [{"key": k, "value": v} for k, v in shared.items()]
    run_rows = [{"run_id": r["run_id"], **{c: r[c] for c in varying}} for _, r in runs.iterrows()]
    return (
        "<h3>Settings shared by every run</h3>"
        + html_table(shared_rows, left=("key", "value"))
        + "<h3>Runs and the settings that differ</h3>"
        + html_table(run_rows, left=("run_id",))
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


def _stats_rows(result: Analysis) -> list[dict[str, Any]]:
    rows = []
    for _, s in result.stats.iterrows():
        rows.append(
            {
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
        )
    return rows


def render_html(result: Analysis, figure_png: bytes, source: str) -> str:
    """The whole report page as a string; ``figure_png`` is embedded as a data URI."""
    img = base64.b64encode(figure_png).decode("ascii")
    n_runs = result.rounds["run_id"].nunique()
    verdicts = "".join(
        f'<li class="{"yes" if c["sdd_detected"] else "no"}">'
        f"{html.escape(verdict(c, result.keys, result.tolerance))}</li>"
        for _, c in result.curves.iterrows()
    )
    lambdas = "".join(f"<li>{html.escape(v)}</li>" for v in lambda_verdicts(result))
    stamp = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sparsedd report: {html.escape(source)}</title><style>{_CSS}</style></head>
<body>
<h1>Sparse double descent report</h1>
<p class="meta">Results folder <code>{html.escape(source)}</code>: {n_runs} runs,
{len(result.curves)} curves (runs differing only in seed are averaged), generated {stamp}.</p>
<h2>Verdicts</h2><ul id="verdicts">{verdicts}</ul>
<p class="meta">{html.escape(noise_draw_line(result))}</p>
<h2>Choice of λ (on validation accuracy, never test)</h2><ul id="lambdas">{lambdas}</ul>
<h2>Trade-off across λ</h2>
{_tradeoff_html(result)}
<h2>Figure</h2>
<figure><img id="sdd-figure" alt="Test accuracy and memorization against sparsity"
 src="data:image/png;base64,{img}">
<figcaption>Mean over seeds; bands ±1 s.d. over seeds; where recorded, a third row shows
the activation-state entropy (bits: the mean over ReLU/GELU units of the entropy of their on/off
state over 512 training images, a signal that needs no labels); dotted: the 3-round mean the
verdict is taken on; ▼ dip and ▲ peak on it where the verdict is SDD (hollow: inconclusive);
an inconclusive curve is drawn dashed. The x axis is logarithmic in the fraction of weights
remaining and labelled in sparsity.</figcaption></figure>
<h2>Curves</h2>
{html_table(display_rows(result), left=tuple(result.keys))}
<p class="meta">Compressible to: highest sparsity whose mean test accuracy is within
{amount(result.tolerance)} of the dense model. Dip, peak, fall and rise are measured on the seeds'
mean accuracy averaged over 3 rounds, before the final collapse. The lower bounds subtract the
depth that noise alone finds in a flat curve of the same length (95th percentile, calibrated by
simulation); the upper bounds add 1.645 standard errors. SDD: both lower bounds above the minimum
rise ({amount(result.min_rise)}); no SDD: no valley, or an upper bound below it; otherwise
inconclusive. The noise per seed and round combines the seeds' spread and the test set's binomial
noise.</p>
<details><summary>Per-round statistics</summary>
{html_table(_stats_rows(result), left=("curve",))}</details>
<h2>Configs</h2>
{_config_sections(result)}
<h3>Computed with</h3>
{html_table(provenance_rows(result), left=PROVENANCE_FIELDS)}
</body></html>
"""


def write_report(result: Analysis, figure_png: bytes, path: str | Path, source: str) -> Path:
    """Write the HTML report to ``path`` (must end in .html or .htm)."""
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise UserError(f"cannot write the report to {path.name!r}: use a .html file name")
    if not path.parent.exists():
        raise UserError(f"cannot write {path}: folder {path.parent} does not exist")
    atomic_write_text(path, render_html(result, figure_png, source))
    return path
