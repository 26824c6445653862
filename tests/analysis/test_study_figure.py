"""`plot` on a study's results: the paper's layout, a panel of test accuracy per model, dataset
and ε, λ as colours (the same in every panel), each curve's verdict written in its panel."""

from __future__ import annotations

import re
import struct

import pandas as pd
import pytest
from support import run_cli, write_store

from sparsedd.analysis import tables as an
from sparsedd.analysis.figure_parts import close
from sparsedd.analysis.plot_study import is_study, plot_study, verdict_label
from sparsedd.analysis.synthetic import synthetic_rounds

LAMBDAS = (0.0, 0.03)


@pytest.fixture(scope="module")
def study() -> pd.DataFrame:
    """Two datasets × two ε × two λ (λ = 0 dips, 0.03 stays flat), two seeds each."""
    frames, i = [], 0
    for dataset in ("cifar10", "cifar100"):
        for noise in (0.1, 0.5):
            for lam in LAMBDAS:
                i += 1
                shape = "sdd" if lam == 0 else "flat"
                frames.append(
                    synthetic_rounds(shape, 0.05, 0.003, 2, rounds=12, weight_decay=lam,
                                        noise=noise, dataset=dataset, model="vit", seed=i)
                )  # fmt: skip
    return pd.concat(frames)


def test_a_panel_per_setting_lambda_as_colours_verdict_on_each_curve(study):
    result = an.analyze(study)
    assert is_study(result)
    fig = plot_study(result)
    try:
        panels = [ax for ax in fig.axes if ax.get_visible()]
        assert len(panels) == 4
        titles = sorted(ax.get_title() for ax in panels)
        assert titles == sorted(
            f"{d}, ε = {n}" for d in ("cifar10", "cifar100") for n in (0.1, 0.5)
        )
        colours = {}
        for ax in panels:
            words = [t for t in ax.texts if t.get_gid() == "verdict"]
            assert len(words) == len(LAMBDAS)  # one verdict per curve
            for text in words:
                lam = float(re.match(r"λ = ([\d.]+):", text.get_text()).group(1))
                colours.setdefault(lam, set()).add(text.get_color())
        assert sorted(colours) == list(LAMBDAS)
        assert all(len(c) == 1 for c in colours.values())  # a λ keeps its colour
        assert len({next(iter(c)) for c in colours.values()}) == len(LAMBDAS)
        # what is written is each curve's verdict
        written = {t.get_text() for ax in panels for t in ax.texts if t.get_gid() == "verdict"}
        assert written == {verdict_label(c) for _, c in result.curves.iterrows()}
        assert any(": SDD" in w for w in written)
    finally:
        close(fig)


def test_one_setting_is_no_study():
    one = an.analyze(synthetic_rounds("sdd", rounds=6, weight_decay=0.0))
    assert not is_study(one)


def _png_width(path) -> int:
    return struct.unpack(">I", path.read_bytes()[16:20])[0]


def test_cli_plot_on_a_study_folder_draws_the_panels_at_a_papers_width(study, tmp_path, capsys):
    out = write_store(study, tmp_path / "runs")
    assert run_cli(["plot", str(out), "-o", str(tmp_path / "s.svg")], capsys)[0] == 0
    svg = (tmp_path / "s.svg").read_text()
    assert svg.count('id="verdict') == 8  # 4 panels × 2 curves: the study layout
    assert run_cli(["plot", str(out), "--layout", "curves", "-o", str(tmp_path / "c.svg")])[0] == 0
    assert 'id="verdict' not in (tmp_path / "c.svg").read_text()
    for width in (7.0, 3.4):
        png = tmp_path / f"w{width}.png"
        assert run_cli(["plot", str(out), "--width", str(width), "-o", str(png)])[0] == 0
        # saved at 150 dpi with a tight box (0.1 inch of margin each side): the asked width
        assert 0.85 * width * 150 <= _png_width(png) <= (width + 0.2) * 150 + 2
    code, _, err = run_cli(["plot", str(out), "--width", "0"], capsys)
    assert code == 2 and "--width" in err and err.count("\n") == 1


def test_report_on_a_study_embeds_the_panels(study, tmp_path, capsys, monkeypatch):
    import sparsedd.analysis.plot_study as plot_study_module

    drawn = []
    real = plot_study_module.plot_study

    def spy(*args, **kwargs):
        drawn.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(plot_study_module, "plot_study", spy)
    out = write_store(study, tmp_path / "runs")
    assert run_cli(["report", str(out)], capsys)[0] == 0
    assert len(drawn) == 1  # the study's panels, not the curves' rows
    page = (out / "report.html").read_text()
    assert 'id="sdd-figure"' in page and 'id="sdd-data"' in page
