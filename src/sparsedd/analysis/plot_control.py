"""The control arm in the figure: a grey line of the control's test accuracy (pruning off),
each round drawn at the sparsity the pruned curve has at that round, so that the two compare
round by round (the same seeds and training; only the pruning differs)."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from sparsedd.analysis.figure_parts import remaining  # noqa: E402
from sparsedd.analysis.load import collapsed_flags  # noqa: E402

CONTROL_COLOR = "#7f7f7f"
CONTROL_LABEL = "control: same rounds, no pruning"


def draw_control(ax: Any, controls: pd.DataFrame, curve: str, stats: pd.DataFrame) -> bool:
    """Draw the seed-mean test accuracy of ``curve``'s control runs on ``ax`` (grey), round k
    at the pruned curve's sparsity in round k (``stats``: that curve's per-round statistics);
    False when the curve has no control."""
    if controls.empty or "curve" not in controls.columns:
        return False
    rows = controls[(controls["curve"] == curve)]
    rows = rows[~collapsed_flags(rows)]
    if rows.empty:
        return False
    mean = rows.groupby("round")["test_acc"].mean()
    sparsity = stats.set_index("round")["sparsity"]
    rounds = [k for k in mean.index if k in sparsity.index]
    ax.plot(remaining(sparsity[rounds]), mean[rounds].to_numpy() * 100, color=CONTROL_COLOR,
            linewidth=1.2, marker=".", markersize=3, zorder=1)  # fmt: skip
    return True


def control_handle() -> Line2D:
    """The legend entry of the control's grey line."""
    return Line2D([], [], color=CONTROL_COLOR, marker=".", markersize=4, label=CONTROL_LABEL)
