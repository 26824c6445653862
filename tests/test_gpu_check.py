"""bench/gpu_check.sh, the prepared GPU check, runs end to end in its --tiny CPU mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.sh"
ENV = {**os.environ, "PYTHON": sys.executable}  # the interpreter running the tests


def test_gpu_check_tiny_runs_every_part_and_ends_with_its_json_line() -> None:
    pytest.importorskip("vit_pytorch")
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--tiny"], capture_output=True, text=True, timeout=600, env=ENV
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (summary["check"], summary["mode"], summary["ok"]) == ("gpu_check", "tiny", True)
    curve = summary["curve"]
    assert len(curve["rounds"]) == 2 and curve["ok"]
    assert all(r["sparsity_device"] == r["sparsity_cpu"] for r in curve["rounds"])
    assert curve["first_loss_rel_diff"] <= 1e-3
    assert summary["peak_fp32_tflop_s"] > 0 and summary["peak_bf16_tflop_s"] > 0
    paths = {(r["path"], r["sparsity"]) for r in summary["vit"]}
    for sparsity in (0.0, 0.99):
        assert {("paper fp32", sparsity), ("ours fp32", sparsity), ("ours bf16", sparsity)} <= paths
    for row in summary["vit"]:
        assert "skipped" not in row
        assert row["img_s"] > 0 and row["peak_mb"] > 0 and row["mfu"] > 0
        assert row["curve_h"] == pytest.approx(35 * row["round_h"])
        assert row["ratio"] > 0
    assert "vit-cifar10 path" in proc.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="the full check runs where a GPU is")
def test_gpu_check_without_a_gpu_says_so_in_one_line() -> None:
    proc = subprocess.run(
        ["bash", str(SCRIPT)], capture_output=True, text=True, timeout=300, env=ENV
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "--tiny" in proc.stderr


def _gpu_check_module():
    sys.path.insert(0, str(SCRIPT.parent))
    import gpu_check

    return gpu_check


def test_a_failing_part_is_reported_not_raised() -> None:
    gpu_check = _gpu_check_module()

    def broken(x: int) -> dict:
        raise ModuleNotFoundError(f"No module named 'vit_pytorch' ({x})\nsecond line")

    row = gpu_check.guarded({"path": "paper fp32", "sparsity": 0.0}, broken, 7)
    assert row == {
        "path": "paper fp32",
        "sparsity": 0.0,
        "error": "ModuleNotFoundError: No module named 'vit_pytorch' (7)",
    }


def test_curve_tolerance_is_twice_the_standard_error_of_the_test_accuracy() -> None:
    gpu_check = _gpu_check_module()
    assert gpu_check.accuracy_tolerance(0.8, 512) == pytest.approx(2 * (0.16 / 512) ** 0.5)
    assert gpu_check.accuracy_tolerance(1.0, 512) > 0  # a perfect score still allows one image
