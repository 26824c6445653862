"""The report's interactive view of the curves: every run's rounds as JSON in the page and a
small hand-written script (no library, no network) that draws them as SVG. Hover a point: its
run, seed, round, sparsity, test and validation accuracy, memorization (and entropy); click a
legend entry to hide or show a curve; choose the metric on the y axis."""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from sparsedd.analysis.load import collapsed_flags
from sparsedd.analysis.report_sections import key_cell
from sparsedd.analysis.tables import Analysis

#: Colour-blind-safe colours (Okabe & Ito), one per curve in order, as the figure uses them.
COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
#: The metrics the view can show: (column, label, scale to the shown unit).
METRICS = (
    ("test_acc", "Test accuracy (%)", 100.0),
    ("val_acc", "Validation accuracy (%)", 100.0),
    ("memorization", "Memorization of noisy labels (%)", 100.0),
    ("activation_entropy", "Activation entropy (bits)", 1.0),
)


def _number(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def view_data(result: Analysis) -> dict[str, Any]:
    """What the view draws, as plain JSON-ready data: the metrics recorded in ``result`` and,
    per curve, its label, colour, verdict and each run's trained rounds (collapsed rounds are
    left out: nothing was measured)."""
    rounds = result.rounds[~collapsed_flags(result.rounds)]
    metrics = [
        {"key": key, "label": label, "scale": scale}
        for key, label, scale in METRICS
        if key in rounds and pd.to_numeric(rounds[key], errors="coerce").notna().any()
    ]
    curves = []
    for i, (_, curve) in enumerate(result.curves.iterrows()):
        runs = []
        part = rounds[rounds["curve"] == curve["curve"]]
        for run_id, run in part.groupby("run_id", sort=True):
            run = run.sort_values("round")
            points = [
                {
                    "round": int(r["round"]),
                    "sparsity": _number(r["sparsity"]),
                    **{m["key"]: _number(r.get(m["key"])) for m in metrics},
                }
                for _, r in run.iterrows()
            ]
            seed = run["seed"].iloc[0] if "seed" in run else None
            runs.append({"run_id": str(run_id), "seed": _seed(seed), "points": points})
        curves.append(
            {
                "label": _label(result, curve),
                "curve": str(curve["curve"]),
                "colour": COLOURS[i % len(COLOURS)],
                "verdict": str(curve["verdict"]),
                "runs": runs,
            }
        )
    return {"metrics": metrics, "curves": curves}


def _label(result: Analysis, curve: pd.Series) -> str:
    """What sets the curve apart from the others ("λ = 0", "noise = 0.5, λ = 0"); the whole
    curve name when nothing does (one curve)."""
    keys = [k for k in result.keys if result.curves[k].nunique(dropna=False) > 1]
    pairs = [
        f"λ = {key_cell(curve[k])}" if k == "weight_decay" else f"{k} = {key_cell(curve[k])}"
        for k in keys
    ]
    return ", ".join(pairs) or str(curve["curve"])


def _seed(value: Any) -> Any:
    number = _number(value)
    return int(number) if number is not None and number == int(number) else value


def view_html(result: Analysis) -> str:
    """The view's HTML: a metric chooser, the SVG the script fills, its data and its script."""
    data = json.dumps(view_data(result), allow_nan=False).replace("</", "<\\/")
    return (
        '<div id="sdd-view"><label>Metric <select id="sdd-metric"></select></label>'
        '<div id="sdd-legend"></div><svg id="sdd-plot" role="img" '
        'aria-label="interactive curves" viewBox="0 0 900 420"></svg>'
        '<div id="sdd-tip" hidden></div></div>'
        f'<script type="application/json" id="sdd-data">{data}</script>'
        f"<script>{VIEW_JS}</script>"
    )


VIEW_CSS = """
#sdd-view { position: relative; } #sdd-plot { width: 100%; height: auto; background: #fff; }
#sdd-legend span { cursor: pointer; margin-right: 1.2em; user-select: none; }
#sdd-legend span.off { opacity: .35; text-decoration: line-through; }
#sdd-tip { position: absolute; background: #fff; border: 1px solid #888; padding: .3em .5em;
           font-size: .8em; pointer-events: none; white-space: pre; }
#sdd-plot circle { cursor: crosshair; }
"""

# A hand-written script: it reads the JSON above and draws into the SVG; no library.
VIEW_JS = r"""
(function () {
  const data = JSON.parse(document.getElementById("sdd-data").textContent);
  const svg = document.getElementById("sdd-plot"), tip = document.getElementById("sdd-tip");
  const select = document.getElementById("sdd-metric");
  const legend = document.getElementById("sdd-legend");
  const NS = "http://www.w3.org/2000/svg", W = 900, H = 420;
  const M = {left: 60, right: 15, top: 15, bottom: 45};
  const hidden = new Set();
  const el = (name, attrs, parent) => {
    const node = document.createElementNS(NS, name);
    for (const k in attrs) node.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(node);
    return node;
  };
  const pct = (v, d) => v === null || v === undefined ? "-" : (100 * v).toFixed(d) + "%";
  data.metrics.forEach((m, i) => {
    const o = document.createElement("option");
    o.value = i; o.textContent = m.label; select.appendChild(o);
  });
  data.curves.forEach((c, i) => {
    const s = document.createElement("span");
    s.dataset.curve = i; s.style.color = c.colour;
    s.textContent = "\u25CF " + c.label + " (" + c.verdict + ")";
    s.addEventListener("click", () => {
      hidden.has(i) ? hidden.delete(i) : hidden.add(i);
      s.classList.toggle("off", hidden.has(i)); draw();
    });
    legend.appendChild(s);
  });
  const lx = s => Math.log10(Math.max(1 - s, 1e-5));
  function draw() {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const metric = data.metrics[+select.value || 0];
    if (!metric) return;
    const pts = [];
    data.curves.forEach((c, i) => hidden.has(i) || c.runs.forEach(r => r.points.forEach(p => {
      if (p[metric.key] !== null && p.sparsity !== null) pts.push(p);
    })));  // the axes fit the curves shown
    if (!pts.length) return;
    const xs = pts.map(p => lx(p.sparsity)), ys = pts.map(p => p[metric.key] * metric.scale);
    const x0 = Math.max(...xs), x1 = Math.min(...xs) - 0.05;
    let y0 = Math.min(...ys), y1 = Math.max(...ys);
    const pad = (y1 - y0) * 0.05 || 1; y0 -= pad; y1 += pad;
    const X = v => M.left + (x0 - v) / ((x0 - x1) || 1) * (W - M.left - M.right);
    const Y = v => H - M.bottom - (v - y0) / (y1 - y0) * (H - M.top - M.bottom);
    const axes = el("g", {"class": "axes", "font-size": 12, fill: "#333"}, svg);
    for (const t of [0, 50, 80, 90, 95, 98, 99, 99.5, 99.8, 99.9]) {
      const v = lx(t / 100);
      if (v < x1 || v > x0 + 1e-9) continue;
      el("line", {x1: X(v), x2: X(v), y1: M.top, y2: H - M.bottom, stroke: "#eee"}, axes);
      el("text", {x: X(v), y: H - M.bottom + 16, "text-anchor": "middle"}, axes).textContent = t;
    }
    for (let k = 0; k <= 5; k++) {
      const v = y0 + k * (y1 - y0) / 5;
      el("line", {x1: M.left, x2: W - M.right, y1: Y(v), y2: Y(v), stroke: "#eee"}, axes);
      el("text", {x: M.left - 6, y: Y(v) + 4, "text-anchor": "end"}, axes).textContent =
        v.toFixed(metric.scale === 1 ? 2 : 1);
    }
    el("text", {x: (W + M.left) / 2, y: H - 8, "text-anchor": "middle"}, axes).textContent =
      "Sparsity (%; log scale of weights remaining)";
    el("text", {x: 14, y: H / 2, transform: "rotate(-90 14 " + H / 2 + ")",
                "text-anchor": "middle"}, axes).textContent = metric.label;
    data.curves.forEach((c, i) => {
      const g = el("g", {"class": "curve", "data-curve": i}, svg);
      if (hidden.has(i)) g.style.display = "none";
      c.runs.forEach(r => {
        const shown = r.points.filter(p => p[metric.key] !== null && p.sparsity !== null);
        const d = shown.map((p, k) => (k ? "L" : "M") + X(lx(p.sparsity)).toFixed(1) + "," +
                             Y(p[metric.key] * metric.scale).toFixed(1)).join("");
        if (d) el("path", {d: d, fill: "none", stroke: c.colour, "stroke-width": 1.5,
                           "stroke-opacity": 0.8}, g);
        shown.forEach(p => {
          const dot = el("circle", {cx: X(lx(p.sparsity)), cy: Y(p[metric.key] * metric.scale),
                                    r: 4, fill: c.colour}, g);
          dot.addEventListener("mouseenter", e => show(e, c, r, p));
          dot.addEventListener("mouseleave", () => { tip.hidden = true; });
        });
      });
    });
  }
  function show(event, curve, run, p) {
    const lines = [curve.curve, "run " + run.run_id + ", seed " + run.seed,
      "round " + p.round + ", sparsity " + pct(p.sparsity, 2),
      "test accuracy " + pct(p.test_acc, 2), "validation accuracy " + pct(p.val_acc, 2),
      "memorization " + pct(p.memorization, 1)];
    if (p.activation_entropy !== undefined && p.activation_entropy !== null)
      lines.push("entropy " + p.activation_entropy.toFixed(3) + " bits");
    tip.textContent = lines.join("\n");
    const box = svg.parentNode.getBoundingClientRect();
    tip.style.left = (event.clientX - box.left + 12) + "px";
    tip.style.top = (event.clientY - box.top + 12) + "px";
    tip.hidden = false;
  }
  select.addEventListener("change", draw);
  draw();
})();
"""
