"""The paper's figure: test accuracy and memorization against sparsity, one line per λ.

The x axis shows the fraction of weights *remaining* on a log scale (reversed, so sparsity grows
to the right), which spreads the high-sparsity end where SDD happens; ticks are labelled as
sparsity in percent. Bands are ±1 standard deviation over seeds (clipped to [0, 100]); a
dash-dot line marks each curve's dense accuracy. The test-accuracy panel also draws, dotted, the
3-round mean the verdict is taken on, with the dip (▼) and peak (▲) on it: filled where the
verdict is SDD, hollow where it is inconclusive (whose curve is drawn dashed). A curve whose
runs stopped as collapsed (the training's collapse stop) ends where its first seed stopped, with a
× in every row; each seed that trained on is drawn on its own (a thin line) to its last trained
round, with its own × where it stopped; rounds no seed trained are not drawn. The legend sits
below the axes, which take most of the width; tick labels that would touch are thinned once the
figure is laid out (``figure_parts.thin_tick_labels``). The title names the setting (model,
dataset, ε). ``plot_layers`` (in ``plot_layers``) draws, per curve, how much of each layer survives
against the global sparsity; the axes, titles and saving live in ``figure_parts``. PDFs embed
TrueType (Type 42) fonts, which journals and editors accept, not Type 3.
"""

from __future__ import annotations

import textwrap
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from sparsedd.analysis.curve_noise import smooth
from sparsedd.analysis.figure_parts import (  # noqa: E402
    TITLE_WIDTH,
    figure_size,
    format_sparsity_axis,
    panel_title,
    place_legend,
    remaining,
    setting_title,
    text_rc,
    thin_tick_labels,
)
from sparsedd.analysis.load import collapsed_flags  # noqa: E402
from sparsedd.analysis.plot_control import control_handle, draw_control  # noqa: E402
from sparsedd.analysis.tables import Analysis  # noqa: E402
from sparsedd.errors import UserError  # noqa: E402

__all__ = [
    "has_entropy",
    "judged_curve",
    "last_trained",
    "line_key",
    "panel_keys",
    "plot_analysis",
    "seed_tails",
]

#: Okabe & Ito's colour-blind-safe palette (black last).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
LINESTYLES = ("-", (0, (8, 2, 1, 2)), (0, (8, 2, 1, 2, 1, 2)))  # beside 8 colours
INCONCLUSIVE_STYLE = (0, (5, 3))  # a curve whose verdict is inconclusive
DENSE_STYLE = "-."
SMOOTH_STYLE = (0, (1, 1.5))
#: The marker at the last trained round of a curve whose runs stopped as collapsed.
COLLAPSED_MARKER = "X"
#: The legend's words for that marker.
COLLAPSED_LABEL = "collapsed: run stopped"


def line_key(result: Analysis) -> str | None:
    """The key that labels lines within a panel: λ if it varies, else noise if it varies, else λ."""
    for key in ("weight_decay", "noise"):
        if key in result.curves.columns and result.curves[key].nunique(dropna=False) > 1:
            return key
    return "weight_decay" if "weight_decay" in result.curves.columns else None


def panel_keys(result: Analysis) -> list[str]:
    """Curve keys that vary across curves and are not the line key: one column of panels each."""
    line = line_key(result)
    return [
        k
        for k in result.keys
        if k != line and k in result.curves and result.curves[k].nunique(dropna=False) > 1
    ]


def _line_label(key: str | None, value: Any, curve: str) -> str:
    if key == "weight_decay":
        return f"λ = {value:g}"
    if key == "noise":
        return f"ε = {value:g}"
    return curve


def draw_metric(
    ax: Any,
    stats: pd.DataFrame,
    metric: str,
    color: str,
    style: Any,
    scale: float = 100,
    runs: pd.DataFrame | None = None,
) -> bool:
    """The metric's mean over seeds and a ±1 s.d. band, clipped to [0, ``scale``]; with the
    curve's ``runs``, each seed that trained past the mean's last point is drawn on its own."""
    mean = pd.to_numeric(stats[f"{metric}_mean"], errors="coerce").to_numpy() * scale
    if np.isnan(mean).all():
        return False
    x = remaining(stats["sparsity"])
    ax.plot(x, mean, color=color, linestyle=style, marker="o", markersize=3, linewidth=1.6)
    std = pd.to_numeric(stats[f"{metric}_std"], errors="coerce").fillna(0).to_numpy() * scale
    ax.fill_between(x, np.clip(mean - std, 0, scale), np.clip(mean + std, 0, scale), color=color,
                    alpha=0.18, linewidth=0)  # fmt: skip
    flags = collapsed_flags(stats).to_numpy()
    _mark_collapse(ax, x, mean, flags, color)
    end = last_trained(mean, flags)
    if runs is not None and end is not None:
        _draw_seed_tails(ax, runs, metric, int(stats["round"].iloc[end]), color, scale)
    return True


def seed_tails(runs: pd.DataFrame, metric: str, from_round: int) -> list[pd.DataFrame]:
    """Per run (seed) that trained past ``from_round``: its trained rounds from ``from_round``
    on (sorted), the rounds the mean over seeds no longer covers once another seed stopped."""
    trained = runs[~collapsed_flags(runs)]
    tails = []
    for _, run in trained.groupby("run_id", sort=True):
        run = run[run["round"] >= from_round].sort_values("round")
        run = run[pd.to_numeric(run[metric], errors="coerce").notna()] if metric in run else run[:0]
        if len(run) and int(run["round"].max()) > from_round:
            tails.append(run)
    return tails


def _draw_seed_tails(
    ax: Any, runs: pd.DataFrame, metric: str, from_round: int, color: str, scale: float
) -> None:
    """Thin lines: each seed's own rounds after the mean ends, with a × at the last one of a
    seed whose run stopped as collapsed."""
    stopped = set(runs.loc[collapsed_flags(runs), "run_id"])
    for tail in seed_tails(runs, metric, from_round):
        x = remaining(tail["sparsity"])
        y = pd.to_numeric(tail[metric], errors="coerce").to_numpy() * scale
        ax.plot(x, y, color=color, linewidth=0.9, alpha=0.75, marker="o", markersize=2,
                gid="seed-tail")  # fmt: skip
        if tail["run_id"].iloc[0] not in stopped:
            continue
        ax.plot(x[-1], y[-1], marker=COLLAPSED_MARKER, markersize=7, color=color,
                markeredgecolor="black", markeredgewidth=0.6, linestyle="none", zorder=6,
                gid="seed-collapsed")  # fmt: skip


def last_trained(mean: np.ndarray, collapsed: np.ndarray) -> int | None:
    """The index of a curve's last drawn point before its first collapsed point (None when it
    has no collapsed point, or nothing drawn before it)."""
    if not collapsed.any():
        return None
    drawn = np.flatnonzero(np.isfinite(mean[: int(np.argmax(collapsed))]))
    return int(drawn[-1]) if drawn.size else None


def _mark_collapse(
    ax: Any, x: np.ndarray, mean: np.ndarray, collapsed: np.ndarray, color: str
) -> None:
    """A × at the last trained round of a curve whose runs stopped as collapsed: its line ends
    there (collapsed points have no mean), and the × says it ended, not that data is missing."""
    end = last_trained(mean, collapsed)
    if end is None:
        return
    ax.plot(x[end], mean[end], marker=COLLAPSED_MARKER, markersize=9, color=color,
            markeredgecolor="black", markeredgewidth=0.8, linestyle="none", zorder=6,
            gid="collapsed")  # fmt: skip


def has_entropy(result: Analysis) -> bool:
    """Whether any round of ``result`` recorded the activation-state entropy."""
    column = result.stats.get("activation_entropy_mean")
    return column is not None and pd.to_numeric(column, errors="coerce").notna().any()


def judged_curve(stats: pd.DataFrame, curve: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(sparsity, accuracy) of the 3-round mean the verdict was taken on: the seeds' mean test
    accuracy before the collapse, smoothed as the verdict smooths it."""
    sparsity = stats["sparsity"].to_numpy(dtype=float)
    mean = pd.to_numeric(stats["test_acc_mean"], errors="coerce").to_numpy(dtype=float)
    end = len(mean)
    if np.isfinite(float(curve["collapse_sparsity"])):
        end = int(np.argmin(np.abs(sparsity - float(curve["collapse_sparsity"]))))
    return sparsity[:end], smooth(mean[:end])


def mark_dense(ax: Any, curve: pd.Series, color: str) -> None:
    """A dash-dot line across the panel at the curve's dense (round 0) test accuracy."""
    if not np.isfinite(float(curve["dense_acc"])):
        return
    ax.axhline(float(curve["dense_acc"]) * 100, color=color, linestyle=DENSE_STYLE,
               linewidth=0.9, alpha=0.7, zorder=1)  # fmt: skip


def mark_sdd(ax: Any, stats: pd.DataFrame, curve: pd.Series, color: str, order: int) -> None:
    """The judged 3-round mean, dotted, and on it the dip and peak of an SDD (filled) or an
    inconclusive (hollow) verdict. Later curves get smaller markers, so none hides another."""
    sparsity, judged = judged_curve(stats, curve)
    if len(judged) >= 2:
        ax.plot(remaining(sparsity), judged * 100, color=color, linestyle=SMOOTH_STYLE,
                linewidth=1.2, alpha=0.9, zorder=3, gid="judged")  # fmt: skip
    if curve["verdict"] == "no SDD" or not np.isfinite(float(curve["dip_acc"])):
        return
    size = max(6, 12 - 2 * order)
    face = color if curve["verdict"] == "SDD" else "white"
    for kind, marker in (("dip", "v"), ("peak", "^")):
        x = remaining(curve[f"{kind}_sparsity"])
        ax.plot(x, curve[f"{kind}_acc"] * 100, marker=marker, markersize=size, color=color,
                markerfacecolor=face, markeredgecolor="black", markeredgewidth=1.0,
                alpha=0.9, linestyle="none", zorder=5 + order, gid=kind)  # fmt: skip


def plot_analysis(
    result: Analysis, title: str | None = None, entropy: bool = False, width: float | None = None
) -> Figure:
    """The figure of an analysis: per panel group, test accuracy (top) and memorization (below);
    with ``entropy``, the activation-state entropy (bits) in a third row. ``width``: the
    figure's width in inches (default 5.2 per panel column); the legend sits below the axes."""
    if entropy and not has_entropy(result):
        raise UserError(
            "these results hold no activation entropy (rounds recorded before sparsedd "
            "recorded it); leave out --entropy, or re-run into a new --out"
        )
    pkeys, curves = panel_keys(result), result.curves
    groups = [g for _, g in curves.groupby(pkeys, sort=True, dropna=False)] if pkeys else [curves]
    size = figure_size(len(groups), 3 if entropy else 2, width)
    with matplotlib.rc_context(text_rc(size[0] / len(groups))):
        return _draw_analysis(result, groups, size, title, entropy)


def _draw_analysis(
    result: Analysis,
    groups: list[pd.DataFrame],
    size: tuple[float, float],
    title: str | None,
    entropy: bool,
) -> Figure:
    line, pkeys, curves = line_key(result), panel_keys(result), result.curves
    rows = 3 if entropy else 2
    fig, axes = plt.subplots(
        rows,
        len(groups),
        figsize=size,
        squeeze=False,
        sharex="col",
        layout="constrained",
    )
    max_sparsity = float(result.stats["sparsity"].max())
    colors = {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(_line_values(curves, line))}
    for col, group in enumerate(groups):
        top, memo = axes[0][col], axes[1][col]
        for i, (_, curve) in enumerate(group.iterrows()):
            color = colors[curve[line] if line else curve["curve"]]
            style = LINESTYLES[(i // len(PALETTE)) % len(LINESTYLES)]
            if curve["verdict"] == "inconclusive":
                style = INCONCLUSIVE_STYLE
            stats = result.stats[result.stats["curve"] == curve["curve"]].sort_values("round")
            runs = result.rounds[result.rounds["curve"] == curve["curve"]]
            draw_metric(top, stats, "test_acc", color, style, runs=runs)
            draw_control(top, result.controls, curve["curve"], stats)
            draw_metric(memo, stats, "memorization", color, style, runs=runs)
            if entropy:
                draw_metric(axes[2][col], stats, "activation_entropy", color, style, 1, runs)
            mark_dense(top, curve, color)
            mark_sdd(top, stats, curve, color, i)
        top.set_title(panel_title(pkeys, group.iloc[0]), fontsize="medium")
        for ax in (axes[r][col] for r in range(rows)):
            format_sparsity_axis(ax, max_sparsity)
        top.set_ylabel("Test accuracy (%)")
        memo.set_ylabel("Memorization of noisy labels (%)")
        memo.set_ylim(0, max(5.0, memo.get_ylim()[1]))
        if entropy:
            axes[2][col].set_ylabel("Activation entropy (bits)")
            axes[2][col].set_ylim(0, 1)
        axes[rows - 1][col].set_xlabel("Sparsity (%; log scale of weights remaining)")
    extra = [] if result.controls.empty else [control_handle()]
    place_legend(fig, legend_handles(curves, line, colors, extra))
    default = "Test accuracy and memorization across pruning rounds"
    setting = textwrap.fill(setting_title(result), TITLE_WIDTH + 12)
    fig.suptitle(title or "\n".join(filter(None, (setting, default))), fontsize="large")
    thin_tick_labels(fig)
    return fig


def _line_values(curves: pd.DataFrame, line: str | None) -> list[Any]:
    if line is None:
        return list(dict.fromkeys(curves["curve"]))
    return sorted(curves[line].dropna().unique())


def legend_handles(
    curves: pd.DataFrame, line: str | None, colors: dict, extra: list[Any] | None = None
) -> list[Any]:
    """The legend entries of a figure of ``curves``: a line per value of ``line`` (its colour),
    ``extra`` entries, then the band, the reference lines and each marker the figure draws."""
    handles: list[Any] = [
        Line2D([], [], color=c, marker="o", markersize=4, label=_line_label(line, v, str(v)))
        for v, c in colors.items()
    ] + (extra or [])
    seeds = int(pd.to_numeric(curves["n_seeds"]).max())
    band = f"±1 s.d. over {seeds} seeds" if seeds > 1 else "one seed: no band"
    handles += [
        Patch(color="grey", alpha=0.3, label=band),
        Line2D([], [], color="grey", linestyle=DENSE_STYLE, linewidth=0.9, label="dense accuracy"),
        Line2D([], [], color="grey", linestyle=SMOOTH_STYLE, linewidth=1.2,
               label="3-round mean (judged)"),
    ]  # fmt: skip
    verdicts = set(curves["verdict"])
    if "inconclusive" in verdicts:
        handles.append(
            Line2D([], [], color="grey", linestyle=INCONCLUSIVE_STYLE, label="inconclusive")
        )
    if "SDD" in verdicts:
        handles += [_marker_handle("v", "SDD dip"), _marker_handle("^", "SDD peak")]
    if (curves["n_collapsed_runs"] > 0).any():
        handles.append(_marker_handle(COLLAPSED_MARKER, COLLAPSED_LABEL))
    inconclusive_dips = curves[(curves["verdict"] == "inconclusive") & curves["dip_acc"].notna()]
    if not inconclusive_dips.empty:
        handles.append(_marker_handle("v", "dip, inconclusive", face="white"))
    if curves["n_collapsed_runs"].gt(0).any():
        handles.append(
            Line2D([], [], color="grey", linewidth=0.9, label="one seed, others stopped")
        )
    return handles


def _marker_handle(marker: str, label: str, face: str = "grey") -> Line2D:
    """A legend entry for the dip or peak marker."""
    return Line2D(
        [],
        [],
        marker=marker,
        color="grey",
        markerfacecolor=face,
        markeredgecolor="black",
        linestyle="none",
        markersize=9,
        label=label,
    )
