"""The per-layer figure: how much of each prunable layer survives against global sparsity."""

from __future__ import annotations

import math
import textwrap
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FixedLocator, NullLocator  # noqa: E402

from sparsedd.analysis.figure_parts import (  # noqa: E402
    MIN_REMAINING,
    TICK_GAP,
    TITLE_WIDTH,
    format_sparsity_axis,
    remaining,
    setting_title,
    thin_tick_labels,
    value_text,
    wrap_pairs,
)
from sparsedd.analysis.tables import Analysis  # noqa: E402
from sparsedd.errors import UserError  # noqa: E402

#: Density ticks (percent), most wanted first, thinned like the sparsity ticks.
DENSITY_TICKS = (
    100, 10, 1, 0.1, 0.01, 50, 5, 0.5, 0.05, 20, 2, 0.2, 0.02, 80, 60, 40, 30, 70, 90,
)  # fmt: skip


def _format_density_axis(ax: Any, min_density: float) -> None:
    """Log y axis of a layer's remaining weights (percent), with plain, uncrowded labels."""
    ax.set_yscale("log")
    low = max(min_density * 100 * 0.8, MIN_REMAINING * 100)
    ax.set_ylim(low, 115)
    gap = TICK_GAP * math.log10(115 / low)
    ticks: list[float] = []
    for tick in DENSITY_TICKS:
        if low <= tick and all(abs(math.log10(tick / k)) >= gap for k in ticks):
            ticks.append(tick)
    ticks.sort()
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_yticklabels([f"{t:g}" for t in ticks])


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


def _layer_panel_title(result: Analysis, curve: str) -> str:
    """What sets this curve apart: λ and the curve keys that differ between curves."""
    row = result.curves[result.curves["curve"] == curve].iloc[0]
    keys = [k for k in result.keys if k in result.curves and result.curves[k].nunique() > 1]
    if "weight_decay" in result.curves and "weight_decay" not in keys:
        keys.insert(0, "weight_decay")
    return wrap_pairs(
        [
            f"λ = {value_text(row[k])}" if k == "weight_decay" else f"{k} = {value_text(row[k])}"
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
            density = np.maximum(group["density"], MIN_REMAINING) * 100
            ax.plot(remaining(group["sparsity"]), density, color=colors[layer], marker="o",
                    markersize=2.5, linewidth=1.3)  # fmt: skip
        spars = np.sort(part["sparsity"].unique())
        ax.plot(remaining(spars), remaining(spars) * 100, color="black", linestyle="--",
                linewidth=1.0)  # fmt: skip
        _format_density_axis(ax, float(np.nanmin(np.maximum(part["density"], MIN_REMAINING))))
        format_sparsity_axis(ax, max_sparsity)
        ax.set_title(_layer_panel_title(result, curve), fontsize=10)
        ax.set_ylabel("Weights remaining in the layer (%, log)")
        ax.set_xlabel("Sparsity (%; log scale of weights remaining)")
    for ax in list(axes.flat)[len(curves) :]:
        ax.set_visible(False)
    handles = [Line2D([], [], color=colors[n], linewidth=1.5, label=n) for n in layers]
    handles.append(Line2D([], [], color="black", linestyle="--", label="uniform (global) density"))
    fig.legend(handles=handles, loc="outside right center", fontsize=8, frameon=False,
               ncols=1 + len(handles) // 28)  # fmt: skip
    setting = textwrap.fill(setting_title(result), TITLE_WIDTH + 12)
    default = "Weights remaining per layer across pruning rounds"
    fig.suptitle(title or "\n".join(filter(None, (setting, default))), fontsize=12)
    thin_tick_labels(fig)
    return fig
