"""Details a reader meets: `presets own-data` says which printed values a run replaces, `analyze`
says when a curve's seeds recorded different numbers of rounds, torch's CUDA line stays out of
the progress lines, the ETA leaves out the first epoch's warm-up, and the report lists no
setting that no run sets as one that differs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import torch
import yaml
from support import run_cli, write_store

from sparsedd.analysis import tables as an
from sparsedd.analysis.report import render_html
from sparsedd.analysis.synthetic import synthetic_rounds
from sparsedd.events.progress import RunPlan


def test_presets_own_data_says_what_the_data_decides(capsys):
    code, text, _ = run_cli(["presets", "own-data"], capsys)
    assert code == 0
    notes = {line.split(":")[0]: line for line in text.splitlines() if "#" in line}
    assert set(notes) == {"data_dir", "download", "val_size"}
    assert "10% of the folder's training images" in notes["val_size"]
    assert "never downloaded" in notes["download"]
    # still YAML with the preset's values, as --format json gives them
    code, as_json, _ = run_cli(["presets", "own-data", "--format", "json"], capsys)
    assert yaml.safe_load(text) == json.loads(as_json)
    code, paper, _ = run_cli(["presets", "vit-cifar10"], capsys)
    assert "#" not in paper


def _unequal() -> pd.DataFrame:
    """Three seeds of one curve: seed 0 recorded 18 rounds, seeds 1 and 2 only 6."""
    df = synthetic_rounds("sdd", 0.05, rounds=18, n_seeds=3, seed=4)
    short = df["run_id"].isin(sorted(set(df["run_id"]))[1:]) & (df["round"] > 6)
    seeds = df.drop_duplicates("run_id").set_index("run_id")["seed"]
    assert sorted(seeds[df.loc[~short, "run_id"].unique()]) == [0, 1, 2]
    return df[~short]


def test_analyze_says_when_seeds_recorded_unequal_rounds(tmp_path, capsys):
    out = write_store(_unequal(), tmp_path / "runs")
    code, text, _ = run_cli(["analyze", str(out)], capsys)
    assert code == 0
    (line,) = [ln for ln in text.splitlines() if ln.startswith("rounds    ")]
    assert "rounds 0-18" in line and line.count("rounds 0-6") == 2 and "after round 6" in line
    report = tmp_path / "r.html"
    assert run_cli(["report", str(out), "-o", str(report)], capsys)[0] == 0
    assert 'id="unequal"' in report.read_text()
    # control: equal rounds, no such line
    even = write_store(synthetic_rounds("sdd", rounds=8, n_seeds=2), tmp_path / "even")
    code, text, _ = run_cli(["analyze", str(even)], capsys)
    assert code == 0 and not any(ln.startswith("rounds    ") for ln in text.splitlines())


def test_eta_leaves_out_the_first_epochs_warm_up():
    plan = RunPlan("r", "", epochs=[3, 3, 3])
    for seconds in (40.0, 2.0, 2.0):  # the first epoch compiled the model
        plan.epoch_done(seconds)
    assert plan.epoch_pace() == 2.0
    assert plan.eta(0, 0) == "ETA run 12s"  # 6 epochs left at 2 s, not at the mean 14.7 s
    one = RunPlan("r", "", epochs=[3, 3])
    one.epoch_done(5.0)
    assert one.eta(0, 2) == "ETA run 25s"  # one epoch: its own pace is all there is


def test_the_cuda_line_is_kept_out_of_the_progress_lines(tmp_path):
    if torch.cuda.is_available():
        import pytest

        pytest.skip("torch logs the line only where no GPU is")
    env = {**os.environ, "CUDA_HOME": str(tmp_path)}

    def stderr(code: str) -> str:
        return subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        ).stderr

    # control: importing torch.compile's C++ toolchain module logs it
    assert "No CUDA runtime is found" in stderr("import torch.utils.cpp_extension")
    quiet = "from sparsedd.training.execution import quiet_compile_imports as q; q()"
    assert "No CUDA runtime is found" not in stderr(quiet)


def test_report_lists_no_setting_that_no_run_sets():
    df = pd.concat(
        [
            synthetic_rounds("flat", rounds=4, weight_decay=lam, seed=i)
            for i, lam in enumerate((0.0, 0.1))
        ]
    )
    # a key every run leaves unset, read back as None for some runs and NaN for others
    df["noise_file"] = pd.Series([None if w == 0 else float("nan") for w in df["weight_decay"]],
                                 index=df.index, dtype=object)  # fmt: skip
    df.loc[df["weight_decay"] == 0.1, "noise_label_set"] = "worse_label"  # set by some runs
    page = render_html(an.analyze(df), b"", "x")
    differ = page.split("Runs and the settings that differ", 1)[1].split("</table>", 1)[0]
    assert "weight_decay" in differ and "noise_label_set" in differ
    assert "noise_file" not in page
