"""The self-contained HTML report (figures embedded, no network needed). Its text comes from
``report_sections``, whose public names are importable from here as well."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from sparsedd.analysis.load import config_keys
from sparsedd.analysis.remedies import remedy_rows
from sparsedd.analysis.report_sections import (
    LAMBDA_RULE,
    amount,
    collapse_lines,
    display_rows,
    lambda_verdicts,
    noise_draw_line,
    provenance_rows,
    stats_rows,
    tradeoff_rows,
    unequal_rounds_lines,
    verdict,
)
from sparsedd.analysis.report_view import VIEW_CSS, view_html
from sparsedd.analysis.tables import Analysis
from sparsedd.config import DEFAULTS
from sparsedd.errors import UserError
from sparsedd.store.atomic import atomic_write_text
from sparsedd.store.schema import PROVENANCE_FIELDS

# components is imported inside _unread_keys: it brings torch (4.4 s to import, measured: see
# docs/architecture.md, "Imports") and sits above analysis (a layering exception to remove).

__all__ = [
    "REPORT_WIDTH",
    "html_table",
    "render_html",
    "write_report",
]


#: The figure's width in inches in the report: 1,100 pixels at figure_png's 110 dpi, the page's
#: full width.
REPORT_WIDTH = 10.0


def _tradeoff_html(result: Analysis) -> str:
    tables = "".join(
        f"<h3>{html.escape(setting)}</h3>" + html_table(rows, left=("λ*",))
        for setting, rows in tradeoff_rows(result)
    )
    return (
        tables + f'<p class="meta">{html.escape(LAMBDA_RULE)}. "Holds to": the highest '
        f"sparsity whose mean test accuracy is within {amount(result.tolerance)} of dense.</p>"
    )


def _remedies_html(result: Analysis) -> str:
    """The remedy × λ tables (see ``analysis.remedies``), or nothing where one remedy ran."""
    sections = remedy_rows(result)
    if not sections:
        return ""
    tables = "".join(
        f"<h3>{html.escape(setting)}</h3>" + html_table(rows, left=("remedy", "λ*"))
        for setting, rows in sections
    )
    return (
        '<h2 id="remedies">Remedies × λ</h2>' + tables + '<p class="meta">Epochs per run: '
        "every round a run trained, averaged over seeds, plus its teacher's dense round "
        "(distill).</p>"
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
figure { margin: 1em 0; } figure img { width: 100%; height: auto; }
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
    from sparsedd.components import unused_keys

    if not {"model", "optimizer"} <= set(runs.columns):
        return set()
    unread = [
        unused_keys(dataclasses.replace(DEFAULTS, model=str(m), optimizer=str(o)))
        for m, o in zip(runs["model"], runs["optimizer"], strict=True)
    ]
    return set.intersection(*map(set, unread)) if unread else set()


def _texts(values: pd.Series) -> pd.Series:
    """Values as text, every missing value (None, NaN) as one missing value."""
    return values.astype(str).where(values.notna(), None)


def _config_sections(result: Analysis) -> str:
    runs = result.rounds.drop_duplicates("run_id")
    unread = _unread_keys(runs)
    # a key that no run sets (every value missing: recorded before it existed) is not listed
    cols = [c for c in config_keys(runs) if c not in unread and runs[c].notna().any()]
    shared = {c: runs[c].iloc[0] for c in cols if _texts(runs[c]).nunique(dropna=False) == 1}
    varying = [c for c in cols if c not in shared]
    shared_rows = [{"key": k, "value": v} for k, v in shared.items()]
    run_rows = [{"run_id": r["run_id"], **{c: r[c] for c in varying}} for _, r in runs.iterrows()]
    return (
        "<h3>Settings shared by every run</h3>"
        + html_table(shared_rows, left=("key", "value"))
        + "<h3>Runs and the settings that differ</h3>"
        + html_table(run_rows, left=("run_id",))
    )


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
    collapses = "".join(f"<li>{html.escape(v)}</li>" for v in collapse_lines(result))
    collapsed = (
        f'<h2>Runs stopped as collapsed</h2><ul id="collapsed">{collapses}</ul>'
        if collapses
        else ""
    )
    unequal = "".join(f"<li>{html.escape(v)}</li>" for v in unequal_rounds_lines(result))
    if unequal:
        collapsed += f'<h2>Runs with fewer rounds</h2><ul id="unequal">{unequal}</ul>'
    control = "".join(
        f"<li>{html.escape(v)}</li>" for v in [*result.control_lines, *result.convergence_lines]
    )
    control = f'<h2>Pruning or training?</h2><ul id="control">{control}</ul>' if control else ""
    stamp = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sparsedd report: {html.escape(source)}</title><style>{_CSS}{VIEW_CSS}</style></head>
<body>
<h1>Sparse double descent report</h1>
<p class="meta">Results folder <code>{html.escape(source)}</code>: {n_runs} runs,
{len(result.curves)} curves (runs differing only in seed are averaged), generated {stamp}.</p>
<h2>Verdicts</h2><ul id="verdicts">{verdicts}</ul>
<p class="meta">{html.escape(noise_draw_line(result))}</p>
{collapsed}
{control}
<h2>Choice of λ (on validation accuracy, never test)</h2><ul id="lambdas">{lambdas}</ul>
<h2>Trade-off across λ</h2>
{_tradeoff_html(result)}
{_remedies_html(result)}
<h2>Figure</h2>
<figure><img id="sdd-figure" alt="Test accuracy and memorization against sparsity"
 src="data:image/png;base64,{img}">
<figcaption>Mean over seeds; bands ±1 s.d. over seeds; where recorded, a third row shows
the activation-state entropy (bits: the mean over ReLU/GELU units of the entropy of their on/off
state over 512 training images, a signal that needs no labels); dotted: the 3-round mean the
verdict is taken on; ▼ dip and ▲ peak on it where the verdict is SDD (hollow: inconclusive);
an inconclusive curve is drawn dashed; × ends a curve where its first run stopped as collapsed,
and a thin line carries each seed that trained on to its own last round (rounds no seed trained
are not drawn); grey: the control (pruning off), round k drawn at the pruned curve's sparsity in
round k. The x axis is logarithmic in the fraction of weights
remaining and labelled in sparsity.</figcaption></figure>
<h2>Explore the curves</h2>
<p class="meta">Every run's rounds (one line per seed): hover a point for its run, seed, round,
sparsity, test and validation accuracy and memorization; click a curve's name to hide or show it;
choose what the y axis shows. Drawn by a script inside this file: it works offline.</p>
{view_html(result)}
<h2>Curves</h2>
{html_table(display_rows(result), left=tuple(result.keys))}
<p class="meta">Compressible to: highest sparsity whose mean test accuracy is within
{amount(result.tolerance)} of the dense model. Dip, peak, fall and rise are measured within
each seed (its accuracy averaged over 3 rounds), averaged over the seeds still alive at the peak;
a seed counts up to its own collapse (it stays below chance + 80% of its dense accuracy's margin
over chance). The lower bounds subtract the largest fall or rise that noise alone finds in the
curve (simulated with the curve's fitted noise: each seed's own, correlated across rounds and
growing with sparsity, and the test set's); SDD: both lower bounds above the minimum
rise ({amount(result.min_rise)}); no SDD: the upper bound on every valley below it, over the
rounds judged; otherwise inconclusive (each claim at one-sided level {result.alpha:g}).</p>
<details><summary>Per-round statistics</summary>
{html_table(stats_rows(result), left=("curve",))}</details>
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
