"""The paper's figure: test accuracy and memorization against sparsity, one line per λ.

The x axis shows the fraction of weights *remaining* on a log scale (reversed, so sparsity grows
to the right), which spreads the high-sparsity end where SDD happens; ticks are labelled as
sparsity in percent. Bands are ±1 standard deviation over seeds; a detected dip (▼) and peak (▲)
are marked on the test-accuracy panel.
"""

from __future__ import annotations

import io
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

from sparsedd.analysis import Analysis  # noqa: E402
from sparsedd.atomic import atomic_write  # noqa: E402
from sparsedd.errors import UserError  # noqa: E402

#: Okabe & Ito's colour-blind-safe palette (black last).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
LINESTYLES = ("-", "--", "-.", ":")
FORMATS = (".png", ".svg", ".pdf")
SPARSITY_TICKS = (0, 50, 80, 90, 95, 98, 99, 99.5, 99.8, 99.9, 99.95, 99.98, 99.99)
_MIN_REMAINING = 1e-5


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


def _format_sparsity_axis(ax: Any, max_sparsity: float) -> None:
    ax.set_xscale("log")
    ticks = [t for t in SPARSITY_TICKS if t / 100 <= max(max_sparsity, 0.5) + 1e-9]
    ax.xaxis.set_major_locator(FixedLocator(list(remaining(np.array(ticks) / 100))))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{t:g}" for t in ticks], rotation=45)
    lo = remaining(max_sparsity)[()] if max_sparsity > 0 else 0.5
    ax.set_xlim(1.05, min(lo * 0.8, 0.5))
    ax.grid(True, which="major", alpha=0.3)


def _line_label(key: str | None, value: Any, curve: str) -> str:
    if key == "weight_decay":
        return f"λ = {value:g}"
    if key == "noise":
        return f"ε = {value:g}"
    return curve


def _draw_metric(ax: Any, stats: pd.DataFrame, metric: str, color: str, style: str) -> bool:
    mean = pd.to_numeric(stats[f"{metric}_mean"], errors="coerce").to_numpy() * 100
    if np.isnan(mean).all():
        return False
    std = pd.to_numeric(stats[f"{metric}_std"], errors="coerce").fillna(0).to_numpy() * 100
    x = remaining(stats["sparsity"])
    ax.plot(x, mean, color=color, linestyle=style, marker="o", markersize=3, linewidth=1.6)
    ax.fill_between(
        x, np.clip(mean - std, 0, 100), np.clip(mean + std, 0, 100), color=color, alpha=0.18
    )
    return True


def _mark_sdd(ax: Any, curve: pd.Series, color: str) -> None:
    if not curve["sdd_detected"]:
        return
    for kind, marker in (("dip", "v"), ("peak", "^")):
        x = remaining(curve[f"{kind}_sparsity"])
        ax.plot(x, curve[f"{kind}_acc"] * 100, marker=marker, markersize=11, color=color,
                markeredgecolor="black", linestyle="none", zorder=5)  # fmt: skip


def _panel_title(keys: Sequence[str], curve: pd.Series) -> str:
    return ", ".join(f"{k} = {curve[k]}" for k in keys) if keys else ""


def plot_analysis(result: Analysis, title: str | None = None) -> Figure:
    """The figure of an analysis: per panel group, test accuracy (top) and memorization (bottom)."""
    line, pkeys = line_key(result), panel_keys(result)
    curves = result.curves
    groups = [g for _, g in curves.groupby(pkeys, sort=True, dropna=False)] if pkeys else [curves]
    fig, axes = plt.subplots(
        2, len(groups), figsize=(5.2 * len(groups), 7.5), squeeze=False, sharex="col"
    )
    max_sparsity = float(result.stats["sparsity"].max())
    colors = {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(_line_values(curves, line))}
    for col, group in enumerate(groups):
        top, bottom = axes[0][col], axes[1][col]
        for i, (_, curve) in enumerate(group.iterrows()):
            color = colors[curve[line] if line else curve["curve"]]
            style = LINESTYLES[(i // len(PALETTE)) % len(LINESTYLES)]
            stats = result.stats[result.stats["curve"] == curve["curve"]].sort_values("round")
            _draw_metric(top, stats, "test_acc", color, style)
            _draw_metric(bottom, stats, "memorization", color, style)
            _mark_sdd(top, curve, color)
        top.set_title(_panel_title(pkeys, group.iloc[0]), fontsize=10)
        for ax in (top, bottom):
            _format_sparsity_axis(ax, max_sparsity)
        top.set_ylabel("Test accuracy (%)")
        bottom.set_ylabel("Memorization of noisy labels (%)")
        bottom.set_xlabel("Sparsity (% of weights pruned; log scale of weights remaining)")
    _legend(fig, curves, line, colors)
    fig.suptitle(title or "Test accuracy and memorization across pruning rounds", fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
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
        _marker_handle("v", "SDD dip"),
        _marker_handle("^", "SDD peak"),
    ]
    fig.legend(
        handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=9, frameon=False
    )


def _marker_handle(marker: str, label: str) -> Line2D:
    """A legend entry for the dip or peak marker."""
    return Line2D(
        [],
        [],
        marker=marker,
        color="grey",
        markeredgecolor="black",
        linestyle="none",
        markersize=9,
        label=label,
    )


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
