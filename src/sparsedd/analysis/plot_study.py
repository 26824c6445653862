"""The study figure, laid out as the paper's: one panel of test accuracy against sparsity per
setting (model, dataset, noise and any other key that varies), λ as colours, and each curve's
verdict written in its panel in the curve's colour (λ* starred). Rows are the settings other
than ε, columns the noise levels, so that a row reads as a dataset across ε."""

from __future__ import annotations

import textwrap
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from sparsedd.analysis.figure_parts import (  # noqa: E402
    TITLE_WIDTH,
    format_sparsity_axis,
    place_legend,
    setting_title,
    text_rc,
    thin_tick_labels,
    value_text,
    wrap_pairs,
)
from sparsedd.analysis.plot import (  # noqa: E402
    INCONCLUSIVE_STYLE,
    PALETTE,
    draw_metric,
    legend_handles,
    line_key,
    mark_dense,
    mark_sdd,
    panel_keys,
)
from sparsedd.analysis.tables import Analysis  # noqa: E402

#: The settings whose values make a study's panels (any other varying key is added to them).
SETTING_KEYS = ("model", "dataset", "noise")
#: Inches per panel column when no width is asked for.
PANEL_WIDTH = 3.6


def is_study(result: Analysis) -> bool:
    """Whether ``result`` spans more than one setting (model, dataset or ε) with λ as the line
    key: the results of a study, drawn a panel per setting."""
    keys = panel_keys(result)
    return line_key(result) == "weight_decay" and any(k in keys for k in SETTING_KEYS)


def study_grid(result: Analysis) -> tuple[list[tuple], list[Any], list[str]]:
    """(row values, column values, panel keys): rows are the combinations of the panel keys
    other than ``noise``, columns the noise levels (one column when ε does not vary)."""
    keys = panel_keys(result)
    row_keys = [k for k in keys if k != "noise"]
    curves = result.curves
    rows = (
        sorted(set(map(tuple, curves[row_keys].astype(str).to_numpy())), key=str)
        if row_keys
        else [()]
    )
    cols = sorted(curves["noise"].dropna().unique()) if "noise" in keys else [None]
    return rows, cols, keys


def plot_study(result: Analysis, title: str | None = None, width: float | None = None) -> Figure:
    """A panel of test accuracy per setting of a study, λ as colours, each curve's verdict in
    its panel. ``width``: the figure's width in inches (default 3.6 per column)."""
    rows, cols, keys = study_grid(result)
    total = PANEL_WIDTH * len(cols) if width is None else float(width)
    panel = total / len(cols)
    size = (total, len(rows) * max(1.8, 0.8 * panel) + 1.4)
    with matplotlib.rc_context(text_rc(panel * 1.3)):
        return _draw(result, rows, cols, keys, size, title)


def _draw(
    result: Analysis,
    rows: list[tuple],
    cols: list[Any],
    keys: list[str],
    size: tuple[float, float],
    title: str | None,
) -> Figure:
    fig, axes = plt.subplots(
        len(rows), len(cols), figsize=size, squeeze=False, layout="constrained"
    )
    curves = result.curves
    colors = {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(sorted(curves["weight_decay"]
              .dropna().unique()))}  # fmt: skip
    max_sparsity = float(result.stats["sparsity"].max())
    row_keys = [k for k in keys if k != "noise"]
    for r, row in enumerate(rows):
        for c, noise in enumerate(cols):
            ax = axes[r][c]
            group = curves
            if row_keys:
                group = group[(group[row_keys].astype(str).to_numpy() == list(row)).all(axis=1)]
            if noise is not None:
                group = group[group["noise"] == noise]
            if group.empty:
                ax.set_visible(False)
                continue
            _panel(ax, result, group.sort_values("weight_decay"), colors, keys)
            format_sparsity_axis(ax, max_sparsity)
            if c == 0:
                ax.set_ylabel("Test accuracy (%)")
            if r == len(rows) - 1:
                ax.set_xlabel("Sparsity (%)")
    place_legend(fig, legend_handles(curves, "weight_decay", colors))
    default = "Test accuracy across pruning rounds, per setting"
    setting = textwrap.fill(setting_title(result), TITLE_WIDTH + 12)
    fig.suptitle(title or "\n".join(filter(None, (setting, default))), fontsize="large")
    thin_tick_labels(fig)
    return fig


def _panel(ax: Any, result: Analysis, group: pd.DataFrame, colors: dict, keys: list[str]) -> None:
    """One setting's curves (a line per λ) and their verdicts, one line each, in the corner."""
    lines = []
    for i, (_, curve) in enumerate(group.iterrows()):
        color = colors[curve["weight_decay"]]
        style = INCONCLUSIVE_STYLE if curve["verdict"] == "inconclusive" else "-"
        stats = result.stats[result.stats["curve"] == curve["curve"]].sort_values("round")
        runs = result.rounds[result.rounds["curve"] == curve["curve"]]
        draw_metric(ax, stats, "test_acc", color, style, runs=runs)
        mark_dense(ax, curve, color)
        mark_sdd(ax, stats, curve, color, i)
        lines.append((verdict_label(curve), color))
    for i, (text, color) in enumerate(lines):
        ax.annotate(text, xy=(0.03, 0.04 + 0.085 * (len(lines) - 1 - i)), xycoords="axes fraction",
                    color=color, fontsize="small", fontweight="bold", gid="verdict")  # fmt: skip
    ax.set_title(wrap_pairs([_pair(k, group.iloc[0][k]) for k in keys]), fontsize="medium")


def verdict_label(curve: pd.Series) -> str:
    """'λ = 0.03: SDD ★' (★: the λ* of its setting), as a panel writes a curve's verdict."""
    star = " ★" if curve.get("best_weight_decay") == curve["weight_decay"] else ""
    return f"λ = {curve['weight_decay']:g}: {curve['verdict']}{star}"


def _pair(key: str, value: Any) -> str:
    return f"ε = {value_text(value)}" if key == "noise" else f"{value_text(value)}"
