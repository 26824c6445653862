"""Figure and HTML report: formats, axes, markers, self-containment, a real headless browser."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support import run_cli, write_store

from sparsedd.analysis import tables as an
from sparsedd.analysis.figure_parts import close, figure_png, save_figure
from sparsedd.analysis.plot import line_key, plot_analysis
from sparsedd.analysis.report import render_html, write_report
from sparsedd.analysis.synthetic import synthetic_rounds
from sparsedd.errors import UserError

# Where the browser test leaves its screenshot of the report, for a person to look at.
SCREENSHOT = Path(
    os.environ.get("SPARSEDD_SCREENSHOT", Path(tempfile.gettempdir()) / "sparsedd-report.png")
)


@pytest.fixture(scope="module")
def result() -> an.Analysis:
    """λ = 0 with a dip, λ = 0.01 without (3 seeds, 21 rounds)."""
    return an.analyze(
        pd.concat(
            [
                synthetic_rounds("sdd", 0.10, rounds=20, weight_decay=0.0, seed=1),
                synthetic_rounds("flat", rounds=20, weight_decay=0.01, seed=2),
            ]
        )
    )


def _markers(ax, marker: str, filled: bool | None = None) -> int:
    return sum(
        1
        for line in ax.get_lines()
        if line.get_marker() == marker
        and (filled is None or (line.get_markerfacecolor() != "white") == filled)
    )


def test_figure_axes_lines_and_sdd_markers(result):
    fig = plot_analysis(result)
    try:
        top, bottom = fig.axes[:2]
        assert top.get_xscale() == "log"
        left, right = top.get_xlim()
        assert left > right  # remaining weights shrink to the right: sparsity grows
        fig.canvas.draw()
        labels = [t.get_text() for t in bottom.get_xticklabels()]
        assert {"0", "50", "90", "98"} <= set(labels)  # up to 98.8% sparsity: no 99
        assert "Test accuracy (%)" in top.get_ylabel()
        assert "Memorization" in bottom.get_ylabel() and "Sparsity" in bottom.get_xlabel()
        assert _markers(top, "v", filled=True) == 1 and _markers(top, "^", filled=True) == 1
        assert result.curves.iloc[1]["verdict"] == "no SDD"  # no markers
        assert _markers(top, "v", filled=False) == 0
        legend = [t.get_text() for t in fig.legends[0].get_texts()]
        assert "λ = 0" in legend and "λ = 0.01" in legend
        assert any("s.d." in t for t in legend) and "inconclusive" not in legend
        # the dip marker sits on the judged 3-round mean, drawn dotted, at the verdict's dip
        dip = next(line for line in top.get_lines() if line.get_marker() == "v")
        curve = result.curves.iloc[0]
        assert dip.get_xdata()[0] == pytest.approx(1 - curve["dip_sparsity"])
        assert dip.get_ydata()[0] == pytest.approx(100 * curve["dip_acc"])
        judged = [line for line in top.get_lines() if line.get_gid() == "judged"]
        assert len(judged) == 2  # one per curve
        assert any(
            np.any(np.isclose(j.get_xdata(), dip.get_xdata()[0]))
            and np.any(np.isclose(j.get_ydata(), dip.get_ydata()[0]))
            for j in judged
        )
        assert bottom.get_ylim()[0] == 0  # memorization starts at 0
    finally:
        close(fig)


def test_lines_are_per_noise_when_lambda_is_fixed():
    frames = [synthetic_rounds("flat", rounds=8, noise=n, seed=i) for i, n in enumerate((0.1, 0.5))]
    res = an.analyze(pd.concat(frames))
    assert line_key(res) == "noise"
    fig = plot_analysis(res)
    try:
        legend = [t.get_text() for t in fig.legends[0].get_texts()]
        assert "ε = 0.1" in legend and "ε = 0.5" in legend
    finally:
        close(fig)


@pytest.mark.parametrize(
    ("suffix", "magic"), [(".png", b"\x89PNG"), (".svg", b"<?xml"), (".pdf", b"%PDF")]
)
def test_save_by_extension(result, tmp_path, suffix, magic):
    fig = plot_analysis(result)
    try:
        path = save_figure(fig, tmp_path / f"fig{suffix}")
        assert path.read_bytes().startswith(magic)
        with pytest.raises(UserError, match="png, .svg or .pdf"):
            save_figure(fig, tmp_path / "fig.jpg")
    finally:
        close(fig)


def test_report_is_self_contained_and_escaped(result, tmp_path):
    fig = plot_analysis(result)
    png = figure_png(fig)
    close(fig)
    page = render_html(result, png, source="<runs & co>")
    assert "&lt;runs &amp; co&gt;" in page and "<runs & co>" not in page
    assert re.search(r'<img id="sdd-figure"[^>]*src="data:image/png;base64,', page)
    assert not re.search(r'(src|href)="(https?:)?//', page)  # no network resources
    # the interactive view's script and data are inside the page, never fetched
    scripts = re.findall(r"<script[^>]*>", page)
    assert scripts == ['<script type="application/json" id="sdd-data">', "<script>"]
    assert page.count("</script>") == 2  # no data closes a script early
    assert (
        "sparse double descent (3 seeds" in page
        and "(3 seeds; no valley of 2.5% or more up to" in page
    )
    # λ = 0 shows SDD: the default rule (avoid-sdd) chooses among the others, and says so
    assert "λ* = 0.01 of {0.01} by best validation accuracy among λ without SDD" in page
    with pytest.raises(UserError, match=".html"):
        write_report(result, png, tmp_path / "r.txt", "x")


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory) -> Path:
    """A results folder with a dip (λ=0) and without (λ=0.01), 2 seeds, 13 rounds."""
    df = pd.concat(
        [
            synthetic_rounds("sdd", 0.10, n_seeds=2, rounds=12, weight_decay=0.0, seed=1),
            synthetic_rounds("flat", n_seeds=2, rounds=12, weight_decay=0.01, seed=2),
        ]
    )
    return write_store(df, tmp_path_factory.mktemp("results"))


def test_cli_plot_and_report_defaults_and_errors(store_dir, tmp_path, capsys):
    code, out, _ = run_cli(["plot", str(store_dir)], capsys)
    assert code == 0 and (store_dir / "sdd.png").read_bytes().startswith(b"\x89PNG")
    code, out, _ = run_cli(["plot", str(store_dir), "-o", str(tmp_path / "f.svg")], capsys)
    assert code == 0 and (tmp_path / "f.svg").exists()
    code, _, err = run_cli(["plot", str(store_dir), "-o", str(tmp_path / "f.gif")], capsys)
    assert code == 2 and err.count("\n") == 1
    code, out, _ = run_cli(["report", str(store_dir)], capsys)
    assert code == 0 and "data:image/png;base64," in (store_dir / "report.html").read_text()
    code, _, err = run_cli(["report", str(tmp_path / "missing")], capsys)
    assert code == 2 and "no results" in err


# ---------------------------------------------------------------- real browser

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
)
_PROBE = (
    '<script>window.addEventListener("load", () => {const i = document.getElementById('
    '"sdd-figure"); document.body.setAttribute("data-figure", i.complete + ":" + i.naturalWidth)'
    "; %s});</script></body>"
)


def _chromium(tmp_path: Path, page: Path, *args: str) -> subprocess.CompletedProcess:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (CI installs Debian's chromium)")
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    cmd = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)


def _probed(report: Path, tmp_path: Path, extra_js: str) -> Path:
    probed = tmp_path / f"probed-{abs(hash(extra_js))}.html"
    probed.write_text(report.read_text().replace("</body>", _PROBE % extra_js))
    return probed


def _console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def test_report_in_headless_chromium(store_dir, tmp_path, capsys):
    report = tmp_path / "report.html"
    assert run_cli(["report", str(store_dir), "-o", str(report)], capsys)[0] == 0
    # The page itself loads without console messages and the figure decodes.
    probe = _chromium(tmp_path, _probed(report, tmp_path, ""), "--dump-dom")
    assert probe.returncode == 0, probe.stderr[-2000:]
    width = re.search(r'data-figure="true:(\d+)"', probe.stdout)
    assert width and int(width.group(1)) > 300, probe.stdout[:500]
    assert _console_errors(probe.stderr) == [], _console_errors(probe.stderr)
    # Control: the same check does see an error when the page has one.
    bad = _chromium(tmp_path, _probed(report, tmp_path, "undefinedFunction()"), "--dump-dom")
    assert any("undefinedFunction" in line for line in _console_errors(bad.stderr))
    # A screenshot of the unmodified page, kept for a person to look at.
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shot = _chromium(
        tmp_path,
        report,
        f"--screenshot={SCREENSHOT}",
        "--window-size=1200,1600",
        "--hide-scrollbars",
    )
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert SCREENSHOT.read_bytes().startswith(b"\x89PNG") and SCREENSHOT.stat().st_size > 20_000
    print(f"\nscreenshot of the report: {SCREENSHOT}")


# The interaction, driven inside the page once it has loaded: hover the first point of the first
# curve (the browser's own mouseenter event), read the tooltip; click the first legend entry,
# count the points still shown; choose the second metric, read the y axis' label.
_INTERACT = """
const before = document.querySelectorAll("#sdd-plot circle").length;
const dot = document.querySelector('#sdd-plot g.curve[data-curve="0"] circle');
const r = dot.getBoundingClientRect();
dot.dispatchEvent(new MouseEvent("mouseenter", {clientX: r.x + 2, clientY: r.y + 2}));
const tip = document.getElementById("sdd-tip");
document.body.setAttribute("data-tip", (tip.hidden ? "hidden" : "shown") + "|" + tip.textContent);
document.querySelector('#sdd-legend span[data-curve="0"]').click();
const after = [...document.querySelectorAll("#sdd-plot circle")]
  .filter(c => c.getBoundingClientRect().width > 0).length;
document.body.setAttribute("data-points", before + ":" + after);
const select = document.getElementById("sdd-metric");
select.value = "2"; select.dispatchEvent(new Event("change"));
const labels = [...document.querySelectorAll("#sdd-plot .axes text")].map(t => t.textContent);
document.body.setAttribute("data-metric", labels[labels.length - 1]);
"""
OFFLINE = ("--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9")


def test_report_view_hover_hide_and_metric_in_headless_chromium(store_dir, tmp_path, capsys):
    """The demo-shaped report, opened offline: hovering a point shows its run, seed, round,
    sparsity, accuracies and memorization; clicking a legend entry hides that curve's points."""
    report = tmp_path / "report.html"
    assert run_cli(["report", str(store_dir), "-o", str(report)], capsys)[0] == 0
    page = _chromium(tmp_path, _probed(report, tmp_path, _INTERACT), *OFFLINE, "--dump-dom")
    assert page.returncode == 0, page.stderr[-2000:]
    assert _console_errors(page.stderr) == [], _console_errors(page.stderr)
    tip = re.search(r'data-tip="([^"]*)"', page.stdout)
    assert tip, page.stdout[-2000:]
    state, text = tip.group(1).split("|", 1)
    assert state == "shown"
    for word in ("run sdd-", "seed 0", "round 0", "sparsity 0.00%", "test accuracy",
                 "validation accuracy", "memorization"):  # fmt: skip
        assert word in text, text
    points = re.search(r'data-points="(\d+):(\d+)"', page.stdout)
    before, after = int(points.group(1)), int(points.group(2))
    assert before == 2 * 2 * 13 and after == before // 2  # 2 curves × 2 seeds × 13 rounds
    assert 'data-metric="Memorization of noisy labels (%)"' in page.stdout


def test_view_data_holds_every_trained_round_and_no_collapsed_one():
    from sparsedd.analysis.report_view import view_data

    df = pd.concat(
        [
            synthetic_rounds("sdd", 0.05, rounds=8, n_seeds=2, weight_decay=0.0, seed=1),
            synthetic_rounds("flat", rounds=8, n_seeds=2, weight_decay=2.0, seed=2,
                                collapsed_from=[5, None]),
        ]
    )  # fmt: skip
    data = view_data(an.analyze(df))
    assert [c["label"] for c in data["curves"]] == ["λ = 0", "λ = 2"]
    points = [len(r["points"]) for c in data["curves"] for r in c["runs"]]
    assert sorted(points) == [5, 9, 9, 9]  # the stopped seed's 4 collapsed rounds left out
    assert [m["key"] for m in data["metrics"]][:3] == ["test_acc", "val_acc", "memorization"]
