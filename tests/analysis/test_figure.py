"""A figure that goes in a paper: setting in the title, dense lines, honest legend, readable
ticks, panel titles apart, TrueType fonts in PDFs; per-layer density; the λ trade-off table."""

from __future__ import annotations

import os
import re
import tempfile
from itertools import combinations
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from support import run_cli, write_store

from sparsedd.analysis import tables as an
from sparsedd.analysis.figure_parts import (
    close,
    format_sparsity_axis,
    save_figure,
    sparsity_ticks,
    thin_tick_labels,
)
from sparsedd.analysis.plot import plot_analysis
from sparsedd.analysis.plot_layers import plot_layers
from sparsedd.analysis.report import render_html
from sparsedd.analysis.report_sections import tradeoff_rows
from sparsedd.analysis.synthetic import synthetic_rounds

# Where the figures are left for a person to look at.
FIGURES = Path(os.environ.get("SPARSEDD_FIGURES", Path(tempfile.gettempdir()) / "sparsedd-figures"))


def _with_layers(df: pd.DataFrame) -> pd.DataFrame:
    """Give synthetic rounds a per-layer density: 'head' keeps 4× more than 'body'."""
    df = df.copy()
    df["layer_density"] = [
        {"body": (1 - s) ** 1.2, "head": min(1.0, 4 * (1 - s) ** 1.2)} for s in df["sparsity"]
    ]
    return df


@pytest.fixture(scope="module")
def sdd_and_flat() -> an.Analysis:
    """λ = 0 with a dip, λ = 0.01 without (2 seeds, 21 rounds)."""
    return an.analyze(
        _with_layers(
            pd.concat(
                [
                    synthetic_rounds("sdd", 0.10, n_seeds=2, rounds=20, weight_decay=0.0, seed=1),
                    synthetic_rounds("flat", n_seeds=2, rounds=20, weight_decay=0.01, seed=2),
                ]
            )
        )
    )


@pytest.fixture(scope="module")
def flat_only() -> an.Analysis:
    return an.analyze(synthetic_rounds("flat", n_seeds=2, rounds=3, seed=3))


def _legend(fig) -> list[str]:
    return [t.get_text() for t in fig.legends[0].get_texts()]


def test_title_names_the_setting_and_dense_lines_are_dash_dot(sdd_and_flat):
    fig = plot_analysis(sdd_and_flat)
    try:
        assert "synthetic on synthetic, ε = 0.2" in fig.get_suptitle()
        top = fig.axes[0]
        dashed = sorted(
            line.get_ydata()[0]
            for line in top.get_lines()
            if line.get_linestyle() == "-." and len(set(line.get_ydata())) == 1
        )
        dense = sorted(100 * sdd_and_flat.curves["dense_acc"].astype(float))
        assert dashed == pytest.approx(dense)
        assert "dense accuracy" in _legend(fig)
        assert "SDD dip" in _legend(fig) and "SDD peak" in _legend(fig)
        FIGURES.mkdir(parents=True, exist_ok=True)
        save_figure(fig, FIGURES / "sdd.png")
    finally:
        close(fig)


def test_dip_and_peak_are_in_the_legend_only_when_detected(flat_only):
    assert not flat_only.curves["sdd_detected"].any()
    fig = plot_analysis(flat_only)
    try:
        assert not any("SDD" in text for text in _legend(fig))
    finally:
        close(fig)


def test_short_curves_get_enough_sparsity_ticks(flat_only):
    assert sparsity_ticks(0.488) == [0, 10, 20, 30, 40, 50]
    long = sparsity_ticks(0.988)
    assert {0, 50, 80, 90, 95, 98} <= set(long) and 99 not in long
    fig = plot_analysis(flat_only)  # 3 rounds: up to 48.8% sparsity
    try:
        fig.canvas.draw()
        labels = [t.get_text() for t in fig.axes[1].get_xticklabels()]
        assert len(labels) >= 5
    finally:
        close(fig)


def test_panel_titles_never_overlap():
    """Three panels that differ in six keys: long titles wrap instead of running into each other."""
    values = [("gradient", 1, "constant"), ("magnitude", 0.001, "cosine"), ("random", 0.1, "step")]
    frames = [
        synthetic_rounds(
            "flat",
            n_seeds=1,
            rounds=4,
            seed=i,
            prune_criterion=c,
            lr=lr,
            schedule=s,
            retrain=c,
            noise_kind=s,
            optimizer=c,
        )  # fmt: skip
        for i, (c, lr, s) in enumerate(values)
    ]
    result = an.analyze(pd.concat(frames))
    fig = plot_analysis(result)
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        titles = [ax.title for ax in fig.axes if ax.get_title()]
        assert len(titles) == 3
        boxes = [t.get_window_extent(renderer) for t in titles]
        boxes.append(fig._suptitle.get_window_extent(renderer))
        for a, b in combinations(boxes, 2):
            assert not a.overlaps(b), (a, b)
    finally:
        close(fig)


def test_pdf_embeds_truetype_fonts_not_type3(sdd_and_flat, tmp_path):
    fig = plot_analysis(sdd_and_flat)
    try:
        pdf = save_figure(fig, tmp_path / "sdd.pdf").read_bytes()
    finally:
        close(fig)
    subtypes = set(re.findall(rb"/Subtype\s*/(Type3|TrueType|CIDFontType2|Type1)", pdf))
    assert b"Type3" not in subtypes
    assert subtypes & {b"TrueType", b"CIDFontType2"}, subtypes


def test_layers_figure_draws_each_layer_against_sparsity(sdd_and_flat, tmp_path):
    fig = plot_layers(sdd_and_flat)
    try:
        panels = [ax for ax in fig.axes if ax.get_visible()]
        assert len(panels) == 2  # one per curve
        assert set(_legend(fig)) >= {"body", "head"}
        lines = panels[0].get_lines()
        body, head = lines[0], lines[1]
        assert len(body.get_xdata()) == 21
        # 'head' keeps more weights than 'body' once pruning starts
        assert head.get_ydata()[5] > body.get_ydata()[5]
        assert panels[0].get_yscale() == "log"
        save_figure(fig, FIGURES / "layers.png")
    finally:
        close(fig)


def test_cli_plot_layers(tmp_path, capsys):
    df = pd.concat(
        [
            synthetic_rounds("sdd", 0.10, n_seeds=2, rounds=8, weight_decay=0.0, seed=1),
            synthetic_rounds("flat", n_seeds=2, rounds=8, weight_decay=0.01, seed=2),
        ]
    )
    out = write_store(df, tmp_path / "runs")
    assert run_cli(["plot", str(out), "--layers"])[0] == 0
    assert (out / "layers.png").read_bytes().startswith(b"\x89PNG")


def test_tradeoff_table_across_lambda_marks_lambda_star(sdd_and_flat):
    rows = tradeoff_rows(sdd_and_flat)
    assert len(rows) == 1  # one setting
    setting, table = rows[0]
    assert "synthetic" in setting
    assert [r["λ"] for r in table] == ["0", "0.01"]
    star = [r for r in table if r["λ*"] == "λ*"]
    assert len(star) == 1
    best = sdd_and_flat.lambdas.iloc[0]["best_weight_decay"]
    assert star[0]["λ"] == f"{best:g}"
    assert table[0]["verdict"] == "SDD" and table[1]["verdict"] != "SDD"
    for r in table:
        assert set(r) >= {
            "verdict",
            "dense",
            "best (at sparsity)",
            "holds to (±1 point)",
            "best val (at sparsity)",
            "test there",
        }
    page = render_html(sdd_and_flat, b"", source="x")
    assert "Trade-off across λ" in page and "ties go to the smaller λ" in page


def test_tradeoff_ties_go_to_the_smaller_lambda():
    frames = [
        synthetic_rounds("flat", n_seeds=1, rounds=3, weight_decay=lam, seed=9)
        for lam in (0.1, 0.001)
    ]
    df = pd.concat(frames)
    df["val_acc"] = 0.5  # every λ validates equally
    rows = tradeoff_rows(an.analyze(df))[0][1]
    assert [r["λ*"] for r in rows] == ["λ*", ""]  # 0.001 (listed first), not 0.1


def _axes_share(fig) -> float:
    """The widest row of axes' summed width as a share of the figure's drawn width."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    whole = fig.get_tightbbox(renderer).width * fig.dpi  # inches → pixels, as saved
    rows: dict[float, float] = {}
    for ax in fig.axes:
        box = ax.get_window_extent(renderer)
        rows[round(box.y0)] = rows.get(round(box.y0), 0.0) + box.width
    return max(rows.values()) / whole


def _tick_overlaps(fig) -> list[tuple[str, str]]:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    found = []
    for ax in fig.axes:
        labels = [t for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]
        boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in labels]
        found += [(a, b) for (a, p), (b, q) in combinations(boxes, 2) if p.overlaps(q)]
    return found


@pytest.mark.parametrize("rounds", [5, 19, 35])
@pytest.mark.parametrize("width", [None, 7.0, 3.4])
def test_axes_take_most_of_the_width_and_tick_labels_never_overlap(rounds, width):
    frames = [
        synthetic_rounds("sdd", n_seeds=2, rounds=rounds, weight_decay=lam, seed=i)
        for i, lam in enumerate((0.0, 0.003, 0.03, 0.3))
    ]
    fig = plot_analysis(an.analyze(pd.concat(frames)), width=width)
    try:
        assert _axes_share(fig) >= 0.6
        assert _tick_overlaps(fig) == []
        labels = [t.get_text() for t in fig.axes[1].get_xticklabels() if t.get_text()]
        assert len(labels) >= 4, labels  # thinned, never emptied
        if width is not None:
            assert fig.get_figwidth() == width
    finally:
        close(fig)


def test_crowded_tick_labels_would_overlap_without_thinning():
    """Control: at a one-column width and 35 rounds the wanted ticks do collide, so the test above
    measures the thinning and not a lucky layout."""
    from sparsedd.analysis.figure_parts import figure_size

    fig = plt.figure(figsize=figure_size(1, 2, 3.4), layout="constrained")
    ax = fig.add_subplot()
    format_sparsity_axis(ax, 1 - 0.8**35)
    try:
        assert _tick_overlaps(fig) != []
        thin_tick_labels(fig)
        assert _tick_overlaps(fig) == []
    finally:
        close(fig)
