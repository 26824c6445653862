"""CLI commands on a results folder: analyze, plot, report, export (training imports only
to rebuild an exported model)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from sparsedd.analysis.choices import DEFAULT_MIN_RISE, LAMBDA_RULES
from sparsedd.errors import UserError
from sparsedd.store.results_folder import (
    FIGURE_FILE,
    LAYERS_FIGURE_FILE,
    REPORT_FILE,
    ResultsFolder,
)

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from sparsedd.analysis.tables import Analysis

# `sparsedd --help` imports only what it needs; the rest is imported inside the commands that
# use it (torch alone takes 4.4 s to import; measured: docs/architecture.md, "Imports").

T = TypeVar("T")


_DIR = click.argument("out_dir", default="./sparsedd-runs", type=click.Path(file_okay=False))
_MIN_RISE = click.option(
    "--min-rise",
    default=DEFAULT_MIN_RISE,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="smallest fall and rise (as fractions) that count as SDD: SDD when both lower bounds "
    "exceed it, no SDD when the upper bound on the deepest valley is below it",
)
_LAMBDA_RULE = click.option(
    "--lambda-rule",
    type=click.Choice(LAMBDA_RULES),
    default=LAMBDA_RULES[0],
    show_default=True,
    help="how λ* is chosen on validation accuracy: avoid-sdd (best among λ without SDD), "
    "best-val (best overall, even with SDD), at-sparsity (best at --target-sparsity)",
)
_TARGET = click.option(
    "--target-sparsity",
    type=click.FloatRange(0, 1, max_open=True),
    default=None,
    help="sparsity (a fraction, e.g. 0.9) at which --lambda-rule at-sparsity compares λ",
)


def _options(fn: Callable[..., None]) -> Callable[..., None]:
    """The analysis options every command on a results folder takes."""
    return _MIN_RISE(_LAMBDA_RULE(_TARGET(fn)))


def _analysis(
    out_dir: str, min_rise: float, lambda_rule: str = "avoid-sdd", target: float | None = None
) -> Analysis:
    from sparsedd.analysis.tables import analyze

    return analyze(
        _load(out_dir), min_rise=min_rise, lambda_rule=lambda_rule, target_sparsity=target
    )


def _load(out_dir: str) -> pd.DataFrame:
    """The rounds of ``out_dir``, with each round's per-image test correctness (the verdict
    pairs the test-set noise with it); notes on rounds left out (diverged runs) and on test-set
    sizes recovered (older databases) go to stderr."""
    from sparsedd.analysis.load import load_results

    rounds = load_results(out_dir, correctness=True)
    for note in rounds.attrs.get("notes", []):
        click.echo(f"note: {note}", err=True)
    return rounds


def _with_figure(
    result: Analysis,
    use: Callable[[Figure], T],
    layers: bool = False,
    title: str | None = None,
    entropy: bool = False,
    width: float | None = None,
    layout: str = "auto",
) -> T:
    """Draw the SDD figure (with ``entropy``, its entropy row; with ``layers``, the per-layer
    density figure instead) of ``result``, ``width`` inches wide, hand it to ``use``, and
    always close it. ``layout``: "study" draws a panel per setting (``plot_study``), "curves"
    accuracy and memorization rows, "auto" the first for a study's results."""
    from sparsedd.analysis.figure_parts import close
    from sparsedd.analysis.plot import plot_analysis
    from sparsedd.analysis.plot_layers import plot_layers
    from sparsedd.analysis.plot_study import is_study, plot_study

    if layers:
        fig = plot_layers(result, title)
    elif layout == "study" or (layout == "auto" and is_study(result) and not entropy):
        fig = plot_study(result, title, width)
    else:
        fig = plot_analysis(result, title, entropy, width)
    try:
        return use(fig)
    finally:
        close(fig)


@click.command()
@_DIR
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
)
@_options
def analyze(
    out_dir: str, fmt: str, min_rise: float, lambda_rule: str, target_sparsity: float | None
) -> None:
    """Per curve (runs differing only in seed): SDD verdict, dip/peak, compression, λ*."""
    from sparsedd.analysis.remedies import remedy_rows
    from sparsedd.analysis.report_sections import (
        collapse_lines,
        display_rows,
        lambda_verdicts,
        text_table,
        unequal_rounds_lines,
        verdict_notes,
    )
    from sparsedd.analysis.rounds import rounds_json, rounds_text_rows
    from sparsedd.analysis.tables import curves_json

    result = _analysis(out_dir, min_rise, lambda_rule, target_sparsity)
    if fmt == "json":
        runs = rounds_json(result)
        curves = [{**c, "runs": runs.get(c["curve"], [])} for c in curves_json(result)]
        click.echo(json.dumps(curves, indent=1))
        return
    click.echo(text_table(display_rows(result)))
    for line in verdict_notes(result):
        click.echo(f"verdict   {line}")
    for line in unequal_rounds_lines(result):
        click.echo(f"rounds    {line}")
    for line in collapse_lines(result):
        click.echo(f"collapsed {line}")
    for line in result.control_lines:
        click.echo(f"control   {line}")
    for line in result.convergence_lines:
        click.echo(f"dense     {line}")
    for line in lambda_verdicts(result):
        click.echo(f"λ choice  {line}")
    for setting, rows in remedy_rows(result):
        click.echo(f"\nremedies × λ, {setting} (epochs per run, a teacher's included):")
        click.echo(text_table(rows))
    click.echo("\nrounds per run (sparsedd export --run ID --round best|dip|peak):")
    click.echo(text_table(rounds_text_rows(result)))


@click.command()
@_DIR
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help=f"figure file: .png, .svg or .pdf  [default: OUT_DIR/{FIGURE_FILE}, with --layers "
    f"{LAYERS_FIGURE_FILE}]",
)
@click.option(
    "--layers",
    is_flag=True,
    help="draw each layer's remaining weights against sparsity instead (one panel per curve)",
)
@click.option("--title", default=None, help="the figure's title  [default: the setting]")
@click.option(
    "--entropy",
    is_flag=True,
    help="add a row: each round's activation-state entropy (bits), a label-free signal",
)
@click.option(
    "--width",
    type=click.FloatRange(1.5, 40),
    default=None,
    help="the figure's width in inches: 7 for a two-column paper's full width, 3.4 for one "
    "column  [default: 5.2 per panel]",
)
@click.option(
    "--layout",
    type=click.Choice(["auto", "study", "curves"]),
    default="auto",
    show_default=True,
    help="study: a panel of test accuracy per model, dataset and ε (λ as colours, each "
    "curve's verdict written in); curves: accuracy and memorization rows; auto: study when "
    "the results span several settings",
)
@_options
def plot(
    out_dir: str,
    output: str | None,
    layers: bool,
    title: str | None,
    entropy: bool,
    width: float | None,
    layout: str,
    min_rise: float,
    lambda_rule: str,
    target_sparsity: float | None,
) -> None:
    """Draw test accuracy and memorization against sparsity (one line per λ, seed bands)."""
    from sparsedd.analysis.figure_parts import save_figure

    files = ResultsFolder(out_dir)
    path = Path(output) if output else files.layers_figure if layers else files.figure
    result = _analysis(out_dir, min_rise, lambda_rule, target_sparsity)
    _with_figure(result, lambda fig: save_figure(fig, path), layers, title, entropy, width, layout)
    click.echo(f"wrote {path}")


@click.command()
@_DIR
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help=f"HTML file  [default: OUT_DIR/{REPORT_FILE}]",
)
@_options
def report(
    out_dir: str,
    output: str | None,
    min_rise: float,
    lambda_rule: str,
    target_sparsity: float | None,
) -> None:
    """Write one self-contained HTML page: verdicts, λ choice, figure, tables, configs."""
    from sparsedd.analysis.figure_parts import figure_png
    from sparsedd.analysis.plot import has_entropy
    from sparsedd.analysis.plot_study import is_study
    from sparsedd.analysis.report import REPORT_WIDTH, write_report

    path = Path(output) if output else ResultsFolder(out_dir).report
    result = _analysis(out_dir, min_rise, lambda_rule, target_sparsity)
    entropy = has_entropy(result) and not is_study(result)
    png = _with_figure(result, figure_png, entropy=entropy, width=REPORT_WIDTH)
    write_report(result, png, path, source=str(out_dir))
    click.echo(f"wrote {path}")


@click.command()
@_DIR
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="file to write: .parquet or .csv (a table), .safetensors (a model, with --run)",
)
@click.option(
    "--table",
    "which",
    type=click.Choice(["rounds", "stats", "curves"]),
    default=None,
    help="rounds: every recorded round; stats: per curve and round over seeds; curves: verdicts"
    "  [default: rounds]",
)
@click.option("--run", "run", help="export the pruned model of this run (id or unique prefix)")
@click.option(
    "--round",
    "round_",
    metavar="N|best|dip|peak",
    help="round of --run: a number, best (highest validation accuracy), or the dip or peak of "
    "its curve's SDD (see `sparsedd analyze`)  [default: its last]",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["sparse", "dense"]),
    default=None,
    help="model file: surviving weights with their positions (CSR), or every weight  "
    "[default: sparse]",
)
def export(
    out_dir: str,
    output: str,
    which: str | None,
    run: str | None,
    round_: str | None,
    fmt: str | None,
) -> None:
    """Export a results table (Parquet, CSV), or with --run a pruned model (safetensors)."""
    if run is not None:
        if which is not None:
            raise UserError("--table exports a results table; leave it out with --run")
        _export_model(out_dir, run, round_, output, fmt or "sparse")
        return
    if round_ is not None or fmt is not None:
        raise UserError("--round and --format choose a model to export; give --run ID too")
    from sparsedd.analysis.table_file import export_table
    from sparsedd.analysis.tables import analyze
    from sparsedd.store.schema import CORRECTNESS_FIELD

    rounds = _load(out_dir)
    if which in (None, "rounds"):
        table = rounds.drop(columns=[CORRECTNESS_FIELD], errors="ignore")  # packed bits
    else:
        result = analyze(rounds)
        table = result.stats if which == "stats" else result.curves
    path = export_table(table, output)
    click.echo(f"wrote {len(table)} rows to {path}")


def _round_number(out_dir: str, run: str, round_: str | None) -> int | None:
    """``--round`` as a round number: given, or the round that best, dip or peak names."""
    from sparsedd.analysis.rounds import ROUND_NAMES

    if round_ is None or round_.isdigit():
        return None if round_ is None else int(round_)
    if round_ not in ROUND_NAMES:
        raise UserError(
            f"--round takes a round number or one of {', '.join(ROUND_NAMES)}, not {round_!r}"
        )
    from sparsedd.analysis.rounds import named_round
    from sparsedd.analysis.tables import analyze
    from sparsedd.export.pruned import find_run_folder

    run_id = find_run_folder(out_dir, run).name
    k = named_round(analyze(_load(out_dir)), run_id, round_)
    click.echo(f"--round {round_}: round {k} of run {run_id}")
    return k


def _export_model(out_dir: str, run: str, round_: str | None, output: str, fmt: str) -> None:
    """Write one run's pruned model and print its size beside the dense size."""
    from sparsedd.export.pruned import export_pruned

    s = export_pruned(out_dir, run, _round_number(out_dir, run, round_), output, fmt)
    click.echo(
        f"wrote {s.path}: run {s.run_id} round {s.round}, {s.kept:,} of {s.prunable:,} "
        f"prunable weights kept ({s.kept / max(s.prunable, 1):.2%}); {s.format} "
        f"{s.bytes:,} bytes, dense {s.dense_bytes:,} bytes ({s.bytes / s.dense_bytes:.2f}×)"
    )
