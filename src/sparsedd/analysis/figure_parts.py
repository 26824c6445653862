"""The parts every sparsedd figure shares: the sparsity axis (log scale of the weights
remaining, labelled in sparsity), panel and figure titles, and saving (PNG, SVG, PDF with
TrueType fonts) or embedding a figure."""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FixedLocator, NullLocator  # noqa: E402

from sparsedd.errors import UserError  # noqa: E402
from sparsedd.store.atomic import atomic_write  # noqa: E402

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from sparsedd.analysis.tables import Analysis

#: File types a figure is saved as.
FORMATS = (".png", ".svg", ".pdf")
#: Sparsity ticks (percent), most wanted first; a tick is kept when it does not crowd the others.
SPARSITY_TICKS = (
    0, 50, 90, 99, 99.9, 99.99, 80, 95, 98, 99.5, 99.8, 99.95, 99.98,
    20, 40, 60, 70, 10, 30, 85, 97, 99.7, 99.97,
)  # fmt: skip
#: Smallest gap between two ticks, as a fraction of the axis' width (log scale).
TICK_GAP = 1 / 12
#: The smallest fraction of weights remaining drawn (keeps the log scale finite).
MIN_REMAINING = 1e-5
#: Characters per line of a panel title (a 5.2-inch panel at 10 pt); longer titles wrap.
TITLE_WIDTH = 48
#: Saved PDFs (and PostScript) embed TrueType fonts (Type 42) instead of Type 3.
FONT_RC = {"pdf.fonttype": 42, "ps.fonttype": 42}


def remaining(sparsity: Any) -> np.ndarray:
    """Fraction of weights remaining (the plotted x), floored to keep the log scale finite."""
    return np.maximum(1.0 - np.asarray(sparsity, dtype=float), MIN_REMAINING)


def sparsity_ticks(max_sparsity: float) -> list[float]:
    """Sparsity ticks (percent) for an axis reaching ``max_sparsity``: as many as fit without
    crowding, so that a short curve (a few rounds) gets 0, 10, 20, ... and a long one 0, 50, 80,
    90, 95, 98, 99, ..."""
    top = max(max_sparsity, 0.5)
    left, right = _xlim(max_sparsity)
    gap = TICK_GAP * math.log10(left / right)
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


def format_sparsity_axis(ax: Any, max_sparsity: float) -> None:
    """A log x axis of the weights remaining, reversed and labelled in sparsity (percent)."""
    ax.set_xscale("log")
    ticks = sparsity_ticks(max_sparsity)
    ax.xaxis.set_major_locator(FixedLocator(list(remaining(np.array(ticks) / 100))))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{t:g}" for t in ticks])
    ax.set_xlim(*_xlim(max_sparsity))
    ax.grid(True, which="major", alpha=0.3)
    ax.sparsity_ticks = ticks  # read by thin_tick_labels once the figure is laid out


def thin_tick_labels(fig: Figure, pad: float = 3.0) -> None:
    """Drop the sparsity ticks whose labels would touch another's, as drawn at ``fig``'s size:
    the most wanted ticks (SPARSITY_TICKS' order) stay. Lays the figure out once."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    for ax in fig.axes:
        ticks = getattr(ax, "sparsity_ticks", None)
        labels = [t for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]
        if not ticks or len(labels) != len(ticks):
            continue
        boxes = {
            t: lab.get_window_extent(renderer).padded(pad)
            for t, lab in zip(ticks, labels, strict=True)
        }
        kept: list[float] = []
        for tick in sorted(ticks, key=_priority):
            if not any(boxes[tick].overlaps(boxes[k]) for k in kept):
                kept.append(tick)
        kept.sort()
        if kept != list(ticks):
            ax.xaxis.set_major_locator(FixedLocator(list(remaining(np.array(kept) / 100))))
            ax.set_xticklabels([f"{t:g}" for t in kept])
            ax.sparsity_ticks = kept


def _priority(tick: float) -> int:
    return SPARSITY_TICKS.index(tick) if tick in SPARSITY_TICKS else len(SPARSITY_TICKS)


def figure_size(cols: int, rows: int, width: float | None = None) -> tuple[float, float]:
    """(width, height) in inches of a figure of ``cols`` × ``rows`` panels: 5.2 inches per
    column unless ``width`` is given (7 for a two-column paper's full width, 3.4 for one
    column); each row a little shorter than its panels are wide, plus room for the title and
    the legend below."""
    total = 5.2 * cols if width is None else float(width)
    if total <= 0:
        raise UserError(f"--width must be a positive number of inches, not {width:g}")
    row = min(3.75, max(1.8, 0.72 * total / cols))
    return total, rows * row + 1.6


def text_rc(panel_width: float) -> dict[str, Any]:
    """Matplotlib settings for text in panels ``panel_width`` inches wide: 10 pt at 5 inches
    and more, down to 7 pt in a narrow column, so that labels keep their place."""
    size = min(10.0, max(7.0, 10.0 * panel_width / 5.0))
    return {"font.size": size, "legend.fontsize": 0.9 * size}


def place_legend(fig: Figure, handles: Sequence[Any]) -> None:
    """The figure's legend below its axes, in as many columns as fit across its width."""
    fig.legend(handles=handles, loc="outside lower center", fontsize="small", frameon=False,
               ncols=legend_columns(fig, handles))  # fmt: skip


def legend_columns(fig: Figure, handles: Sequence[Any], fontsize: float | None = None) -> int:
    """The most legend columns whose entries fit across ``fig``'s width (columns fill top to
    bottom, each as wide as its longest label, as matplotlib lays them out)."""
    fontsize = fontsize or 0.9 * plt.rcParams["font.size"]
    sizes = [len(h.get_label()) for h in handles]
    for ncols in range(len(sizes), 1, -1):
        per = math.ceil(len(sizes) / ncols)
        chunks = [sizes[i : i + per] for i in range(0, len(sizes), per)]
        inches = sum(0.55 * fontsize / 72 * max(c) + 0.75 for c in chunks)
        if inches <= 0.95 * fig.get_figwidth():
            return ncols
    return 1


def panel_title(keys: Sequence[str], curve: pd.Series) -> str:
    """``key = value`` pairs, wrapped so that titles of neighbouring panels never overlap."""
    return wrap_pairs([f"{k} = {value_text(curve[k])}" for k in keys])


def wrap_pairs(pairs: Sequence[str]) -> str:
    """``a = 1, b = 2`` wrapped to TITLE_WIDTH, breaking lines only between pairs."""
    glued = ", ".join(p.replace(" ", "\u00a0") for p in pairs)  # no break inside a pair
    return textwrap.fill(glued, TITLE_WIDTH).replace("\u00a0", " ")


def value_text(value: Any) -> str:
    """A config value as a title shows it (floats in their shortest form)."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def setting_title(result: Analysis) -> str:
    """The setting all curves share (or the values they span): model, dataset, ε."""
    runs = result.rounds

    def values(key: str) -> str:
        if key not in runs.columns:
            return ""
        found = sorted({value_text(v) for v in runs[key].dropna()})
        return "/".join(found)

    model, dataset, noise = values("model"), values("dataset"), values("noise")
    setting = " on ".join(p for p in (model, dataset) if p)
    if noise:
        kind = values("noise_kind")
        setting += f", ε = {noise}" + (f" ({kind} label noise)" if kind else " label noise")
    return setting


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
