"""The remedy × λ table of `analyze` and the report: verdict, test at best val, compression,
and epochs per run with a distilled run's teacher counted."""

from pathlib import Path

import pytest
from support import BASE, curve, fill, run_cli

from sparsedd.analysis.remedies import remedy_rows, remedy_table
from sparsedd.analysis.tables import analyze_dir

DIP = [0.80, 0.80, 0.79, 0.70, 0.72, 0.80, 0.81, 0.60]
FLAT = [0.80, 0.80, 0.80, 0.80, 0.80, 0.79, 0.78, 0.60]


def _folder(out: Path) -> Path:
    runs = []
    for lam in (0.0, 0.1):
        for remedy, accs in (("none", DIP), ("distill", FLAT)):
            for seed in (0, 1):
                cfg = {**BASE, "remedy": remedy, "weight_decay": lam, "seed": seed}
                cfg.update(dense_epochs=5, epochs=2)
                rows = curve(accs)
                rows[0]["epochs"] = 5  # the dense round trained dense_epochs
                runs.append((f"{remedy}{lam}{seed}".ljust(16, "0"), cfg, rows))
    return fill(out, runs)


def test_remedy_table_counts_the_teacher_and_compares_remedies(tmp_path: Path) -> None:
    result = analyze_dir(_folder(tmp_path))
    table = remedy_table(result).set_index(["remedy", "weight_decay"])
    # 8 rounds: the dense round's 5 epochs and 7 pruned rounds of 2
    assert table.loc[("none", 0.0), "epochs"] == 19
    assert table.loc[("distill", 0.0), "teacher_epochs"] == 5  # the dense round of its teacher
    assert table.loc[("distill", 0.0), "epochs"] == 24
    # how far each holds within 1 point of dense: FLAT to round 5, DIP (recovered) to round 6
    assert table.loc[("distill", 0.0), "compressible_to"] == pytest.approx(1 - 0.8**5)
    assert table.loc[("none", 0.0), "compressible_to"] == pytest.approx(1 - 0.8**6)
    assert table.loc[("none", 0.0), "test_at_best_val"] == pytest.approx(0.81)
    [(setting, rows)] = remedy_rows(result)
    assert "remedy" not in setting and [r["remedy"] for r in rows] == ["distill"] * 2 + ["none"] * 2
    assert rows[0]["of which teacher"] == "5" and rows[2]["of which teacher"] == "0"


def test_a_named_teacher_counts_its_recorded_dense_round(tmp_path: Path) -> None:
    teacher = "feedfeedfeedfeed"
    cfg = {**BASE, "remedy": "distill", "teacher": teacher}
    fill(
        tmp_path,
        [(teacher, BASE, curve([0.8])), ("a" * 16, cfg, curve(FLAT)), ("b" * 16, BASE, curve(DIP))],
    )
    table = remedy_table(analyze_dir(tmp_path)).set_index("remedy")
    assert table.loc["distill", "teacher_epochs"] == 2


def test_analyze_and_report_show_the_remedy_table_only_where_remedies_differ(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _folder(tmp_path / "both")
    code, out, _ = run_cli(["analyze", str(tmp_path / "both")], capsys)
    assert code == 0 and "remedies × λ" in out and "of which teacher" in out
    code, _, _ = run_cli(["report", str(tmp_path / "both"), "-o", str(tmp_path / "r.html")], capsys)
    assert code == 0 and 'id="remedies"' in (tmp_path / "r.html").read_text()
    fill(tmp_path / "one", [("c" * 16, BASE, curve(DIP))])
    code, out, _ = run_cli(["analyze", str(tmp_path / "one")], capsys)
    assert code == 0 and "remedies × λ" not in out
    assert remedy_rows(analyze_dir(tmp_path / "one")) == []


def test_remedy_is_a_grid_axis_on_the_command_line_and_in_study_yaml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["run", "--preset", "tiny", "--out", str(tmp_path), "--dry-run"]
    grid = ["--grid", "remedy=none,distill", "--grid", "weight_decay=0,2"]
    code, out, _ = run_cli([*args, *grid], capsys)
    assert code == 0 and "4 runs: 0 done" in out and "remedy=distill weight_decay=2" in out
    study = tmp_path / "study.yaml"
    study.write_text("grid:\n  remedy: [none, label_smooth, distill]\n  seed: [0, 1]\n")
    code, out, _ = run_cli([*args, "--config", str(study)], capsys)
    assert code == 0 and "6 runs: 0 done" in out and "remedy=label_smooth seed=1" in out


def test_runs_recorded_before_the_remedy_keys_join_their_curve(tmp_path: Path) -> None:
    """A folder's earlier runs lack the keys added since (remedy, vgg_depth, …): they read as
    the defaults they ran with, so a new seed joins their curve instead of splitting it."""
    added = ("remedy", "kd_alpha", "kd_temperature", "teacher", "label_smoothing")
    old = {k: v for k, v in BASE.items() if k not in (*added, "vgg_depth", "vgg_width")}
    fill(tmp_path, [("a" * 16, old, curve(DIP)), ("b" * 16, {**BASE, "seed": 1}, curve(DIP))])
    result = analyze_dir(tmp_path)
    assert len(result.curves) == 1 and int(result.curves["n_seeds"].iloc[0]) == 2
    assert "remedy" not in result.keys
