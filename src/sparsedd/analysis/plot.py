"""The paper's figure: test accuracy and memorization against sparsity, one line per λ.

The x axis shows the fraction of weights *remaining* on a log scale (reversed, so sparsity grows
to the right), which spreads the high-sparsity end where SDD happens; ticks are labelled as
sparsity in percent. Bands are ±1 standard deviation over seeds (clipped to [0, 100]); a
dash-dot line marks each curve's dense accuracy. The test-accuracy panel also draws, dotted, the
3-round mean the verdict is taken on, with the dip (▼) and peak (▲) on it: filled where the
verdict is SDD, hollow where it is inconclusive (whose curve is drawn dashed). The title names
the setting (model, dataset, ε). ``plot_layers`` draws, per curve, how much of each layer
survives against the global sparsity. PDFs embed TrueType (Type 42) fonts, which journals and
editors accept, not Type 3.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FixedLocator, NullLocator  # noqa: E402

from sparsedd.analysis.tables import Analysis  # noqa: E402
from sparsedd.analysis.verdict import smooth  # noqa: E402
from sparsedd.errors import UserError  # noqa: E402
from sparsedd.store.atomic import atomic_write  # noqa: E402

#: Okabe & Ito's colour-blind-safe palette (black last).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
LINESTYLES = ("-", (0, (8, 2, 1, 2)), (0, (8, 2, 1, 2, 1, 2)))  # beside 8 colours
INCONCLUSIVE_STYLE = (0, (5, 3))  # a curve whose verdict is inconclusive
DENSE_STYLE = "-."
SMOOTH_STYLE = (0, (1, 1.5))
FORMATS = (".png", ".svg", ".pdf")
#: Sparsity ticks (percent), most wanted first; a tick is kept when it does not crowd the others.
SPARSITY_TICKS = (
    0, 50, 90, 99, 99.9, 99.99, 80, 95, 98, 99.5, 99.8, 99.95, 99.98,
    20, 40, 60, 70, 10, 30, 85, 97, 99.7, 99.97,
)  # fmt: skip
#: Smallest gap between two ticks, as a fraction of the axis' width (log scale).
_TICK_GAP = 1 / 12
_MIN_REMAINING = 1e-5
#: Characters per line of a panel title (a 5.2-inch panel at 10 pt); longer titles wrap.
_TITLE_WIDTH = 48
#: Saved PDFs (and PostScript) embed TrueType fonts (Type 42) instead of Type 3.
FONT_RC = {"pdf.fonttype": 42, "ps.fonttype": 42}


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


def remaining(sparsity: Any) -> np.ndarray:
    """Fraction of weights remaining (the plotted x), floored to keep the log scale finite."""
    return np.maximum(1.0 - np.asarray(sparsity, dtype=float), _MIN_REMAINING)


def sparsity_ticks(max_sparsity: float) -> list[float]:
    """Sparsity ticks (percent) for an axis reaching ``max_sparsity``: as many as fit without
    crowding, so that a short curve (a few rounds) gets 0, 10, 20, ... and a long one 0, 50, 80,
    90, 95, 98, 99, ..."""
    top = max(max_sparsity, 0.5)
    left, right = _xlim(max_sparsity)
    gap = _TICK_GAP * math.log10(left / right)
    kept: list[float] = []
    for tick in SPARSITY_TICKS:
        if tick / 100 > top + 1e-9:
            continue
        x = math.log10(remaining(tick / 100)[()])
        if all(abs(x - math.log10(remaining(k / 100)[()])) >= gap for k in kept):
            kept.append(tick)
    return sorted(kept)


def _xlim(max_sparsity: float) -> tuple[float, float]:
    lo = remaining(max_sparsity)[()] if max_sparsity > 0 else 0.5
    return 1.05, min(lo * 0.8, 0.5)


def _format_sparsity_axis(ax: Any, max_sparsity: float) -> None:
    ax.set_xscale("log")
    ticks = sparsity_ticks(max_sparsity)
    ax.xaxis.set_major_locator(FixedLocator(list(remaining(np.array(ticks) / 100))))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{t:g}" for t in ticks], rotation=45)
    ax.set_xlim(*_xlim(max_sparsity))
    ax.grid(True, which="major", alpha=0.3)


def _line_label(key: str | None, value: Any, curve: str) -> str:
    if key == "weight_decay":
        return f"λ = {value:g}"
    if key == "noise":
        return f"ε = {value:g}"
    return curve


def _draw_metric(
    ax: Any, stats: pd.DataFrame, metric: str, color: str, style: Any, scale: float = 100
) -> bool:
    """The metric's mean over seeds and a ±1 s.d. band, clipped to [0, ``scale``]."""
    mean = pd.to_numeric(stats[f"{metric}_mean"], errors="coerce").to_numpy() * scale
    if np.isnan(mean).all():
        return False
    x = remaining(stats["sparsity"])
    ax.plot(x, mean, color=color, linestyle=style, marker="o", markersize=3, linewidth=1.6)
    std = pd.to_numeric(stats[f"{metric}_std"], errors="coerce").fillna(0).to_numpy() * scale
    ax.fill_between(x, np.clip(mean - std, 0, scale), np.clip(mean + std, 0, scale), color=color,
                    alpha=0.18, linewidth=0)  # fmt: skip
    return True


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


def _mark_dense(ax: Any, curve: pd.Series, color: str) -> None:
    """A dash-dot line across the panel at the curve's dense (round 0) test accuracy."""
    if not np.isfinite(float(curve["dense_acc"])):
        return
    ax.axhline(float(curve["dense_acc"]) * 100, color=color, linestyle=DENSE_STYLE,
               linewidth=0.9, alpha=0.7, zorder=1)  # fmt: skip


def _mark_sdd(ax: Any, stats: pd.DataFrame, curve: pd.Series, color: str, order: int) -> None:
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


def _panel_title(keys: Sequence[str], curve: pd.Series) -> str:
    """``key = value`` pairs, wrapped so that titles of neighbouring panels never overlap."""
    return _wrap_pairs([f"{k} = {_value_text(curve[k])}" for k in keys])


def _wrap_pairs(pairs: Sequence[str]) -> str:
    """``a = 1, b = 2`` wrapped to _TITLE_WIDTH, breaking lines only between pairs."""
    glued = ", ".join(p.replace(" ", "\u00a0") for p in pairs)  # no break inside a pair
    return textwrap.fill(glued, _TITLE_WIDTH).replace("\u00a0", " ")


def _value_text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def setting_title(result: Analysis) -> str:
    """The setting all curves share (or the values they span): model, dataset, ε."""
    runs = result.rounds

    def values(key: str) -> str:
        if key not in runs.columns:
            return ""
        found = sorted({_value_text(v) for v in runs[key].dropna()})
        return "/".join(found)

    model, dataset, noise = values("model"), values("dataset"), values("noise")
    setting = " on ".join(p for p in (model, dataset) if p)
    if noise:
        kind = values("noise_kind")
        setting += f", ε = {noise}" + (f" ({kind} label noise)" if kind else " label noise")
    return setting


def plot_analysis(result: Analysis, title: str | None = None, entropy: bool = False) -> Figure:
    """The figure of an analysis: per panel group, test accuracy (top) and memorization (below);
    with ``entropy``, the activation-state entropy (bits) in a third row."""
    if entropy and not has_entropy(result):
        raise UserError(
            "these results hold no activation entropy (rounds recorded before sparsedd "
            "recorded it); leave out --entropy, or re-run into a new --out"
        )
    line, pkeys = line_key(result), panel_keys(result)
    curves = result.curves
    groups = [g for _, g in curves.groupby(pkeys, sort=True, dropna=False)] if pkeys else [curves]
    rows = 3 if entropy else 2
    fig, axes = plt.subplots(
        rows,
        len(groups),
        figsize=(5.2 * len(groups), 3.75 * rows),
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
            _draw_metric(top, stats, "test_acc", color, style)
            _draw_metric(memo, stats, "memorization", color, style)
            if entropy:
                _draw_metric(axes[2][col], stats, "activation_entropy", color, style, scale=1)
            _mark_dense(top, curve, color)
            _mark_sdd(top, stats, curve, color, i)
        top.set_title(_panel_title(pkeys, group.iloc[0]), fontsize=10)
        for ax in (axes[r][col] for r in range(rows)):
            _format_sparsity_axis(ax, max_sparsity)
        top.set_ylabel("Test accuracy (%)")
        memo.set_ylabel("Memorization of noisy labels (%)")
        memo.set_ylim(0, max(5.0, memo.get_ylim()[1]))
        if entropy:
            axes[2][col].set_ylabel("Activation entropy (bits)")
            axes[2][col].set_ylim(0, 1)
        axes[rows - 1][col].set_xlabel("Sparsity (%; log scale of weights remaining)")
    _legend(fig, curves, line, colors)
    default = "Test accuracy and memorization across pruning rounds"
    setting = textwrap.fill(setting_title(result), _TITLE_WIDTH + 12)
    fig.suptitle(title or "\n".join(filter(None, (setting, default))), fontsize=12)
    return fig


def _line_values(curves: pd.DataFrame, line: str | None) -> list[Any]:
    if line is None:
        return list(dict.fromkeys(curves["curve"]))
    return sorted(curves[line].dropna().unique())


def _legend(fig: Figure, curves: pd.DataFrame, line: str | None, colors: dict) -> None:
    handles = [
        Line2D([], [], color=c, marker="o", markersize=4, label=_line_label(line, v, str(v)))
        for v, c in colors.items()
    ]
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
    inconclusive_dips = curves[(curves["verdict"] == "inconclusive") & curves["dip_acc"].notna()]
    if not inconclusive_dips.empty:
        handles.append(_marker_handle("v", "dip, inconclusive", face="white"))
    fig.legend(handles=handles, loc="outside right center", fontsize=9, frameon=False)


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


def layer_density_table(result: Analysis) -> pd.DataFrame:
    """Per curve, round and prunable layer: mean sparsity and mean layer density over seeds."""
    records = []
    for _, row in result.rounds.iterrows():
        density = row.get("layer_density")
        if not isinstance(density, dict):
            continue
        for layer, value in density.items():
            records.append(
                {"curve": row["curve"], "round": row["round"], "sparsity": row["sparsity"],
                 "layer": layer, "density": value}
            )  # fmt: skip
    if not records:
        raise UserError("these results record no per-layer density; re-run them with sparsedd")
    table = pd.DataFrame.from_records(records)
    table["density"] = pd.to_numeric(table["density"], errors="coerce")
    return table.groupby(["curve", "layer", "round"], sort=False, as_index=False).agg(
        sparsity=("sparsity", "mean"), density=("density", "mean")
    )


#: Density ticks (percent), most wanted first, thinned like the sparsity ticks.
DENSITY_TICKS = (
    100, 10, 1, 0.1, 0.01, 50, 5, 0.5, 0.05, 20, 2, 0.2, 0.02, 80, 60, 40, 30, 70, 90,
)  # fmt: skip


def _format_density_axis(ax: Any, min_density: float) -> None:
    """Log y axis of a layer's remaining weights (percent), with plain, uncrowded labels."""
    ax.set_yscale("log")
    low = max(min_density * 100 * 0.8, _MIN_REMAINING * 100)
    ax.set_ylim(low, 115)
    gap = _TICK_GAP * math.log10(115 / low)
    ticks: list[float] = []
    for tick in DENSITY_TICKS:
        if low <= tick and all(abs(math.log10(tick / k)) >= gap for k in ticks):
            ticks.append(tick)
    ticks.sort()
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_yticklabels([f"{t:g}" for t in ticks])


def _layer_panel_title(result: Analysis, curve: str) -> str:
    """What sets this curve apart: λ and the curve keys that differ between curves."""
    row = result.curves[result.curves["curve"] == curve].iloc[0]
    keys = [k for k in result.keys if k in result.curves and result.curves[k].nunique() > 1]
    if "weight_decay" in result.curves and "weight_decay" not in keys:
        keys.insert(0, "weight_decay")
    return _wrap_pairs(
        [
            f"λ = {_value_text(row[k])}" if k == "weight_decay" else f"{k} = {_value_text(row[k])}"
            for k in keys
        ]
    )


def plot_layers(result: Analysis, title: str | None = None) -> Figure:
    """Per curve, the fraction of each prunable layer's weights remaining against sparsity.

    Global pruning strips layers at very different speeds; the dashed black line is what every
    layer would keep under uniform pruning (the global fraction remaining).
    """
    table = layer_density_table(result)
    curves = list(dict.fromkeys(table["curve"]))
    layers = list(dict.fromkeys(table["layer"]))
    cols = min(3, len(curves))
    rows = math.ceil(len(curves) / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(5.2 * cols, 4.2 * rows), squeeze=False, layout="constrained"
    )
    cmap = plt.get_cmap("viridis")
    colors = {name: cmap(0.85 * i / max(1, len(layers) - 1)) for i, name in enumerate(layers)}
    max_sparsity = float(table["sparsity"].max())
    for ax, curve in zip(axes.flat, curves, strict=False):
        part = table[table["curve"] == curve]
        for layer, group in part.groupby("layer", sort=False):
            group = group.sort_values("round")
            density = np.maximum(group["density"], _MIN_REMAINING) * 100
            ax.plot(remaining(group["sparsity"]), density, color=colors[layer], marker="o",
                    markersize=2.5, linewidth=1.3)  # fmt: skip
        spars = np.sort(part["sparsity"].unique())
        ax.plot(remaining(spars), remaining(spars) * 100, color="black", linestyle="--",
                linewidth=1.0)  # fmt: skip
        _format_density_axis(ax, float(np.nanmin(np.maximum(part["density"], _MIN_REMAINING))))
        _format_sparsity_axis(ax, max_sparsity)
        ax.set_title(_layer_panel_title(result, curve), fontsize=10)
        ax.set_ylabel("Weights remaining in the layer (%, log)")
        ax.set_xlabel("Sparsity (%; log scale of weights remaining)")
    for ax in list(axes.flat)[len(curves) :]:
        ax.set_visible(False)
    handles = [Line2D([], [], color=colors[n], linewidth=1.5, label=n) for n in layers]
    handles.append(Line2D([], [], color="black", linestyle="--", label="uniform (global) density"))
    fig.legend(handles=handles, loc="outside right center", fontsize=8, frameon=False,
               ncols=1 + len(handles) // 28)  # fmt: skip
    setting = textwrap.fill(setting_title(result), _TITLE_WIDTH + 12)
    default = "Weights remaining per layer across pruning rounds"
    fig.suptitle(title or "\n".join(filter(None, (setting, default))), fontsize=12)
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Save ``fig`` as PNG, SVG or PDF, chosen by the file extension."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise UserError(
            f"cannot write a figure to {path.name!r}: use a .png, .svg or .pdf file name"
        )
    if not path.parent.exists():
        raise UserError(f"cannot write {path}: folder {path.parent} does not exist")
    fmt = path.suffix.lower()[1:]
    with matplotlib.rc_context(FONT_RC):
        atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight"))
    return path


def figure_png(fig: Figure) -> bytes:
    """``fig`` as PNG bytes (for embedding in the HTML report)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def close(fig: Figure) -> None:
    """Release a figure's memory."""
    plt.close(fig)
