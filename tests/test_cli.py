"""The command line end to end: a tiny run, results in every format, presets, help."""

import functools
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from support import run_process

from sparsedd.store.schema import PROVENANCE_FIELDS, ROUND_FIELDS

TINY = ["--preset", "tiny", "--set", "rounds=2", "--set", "epochs=2"]


sparsedd = functools.partial(run_process, check=True)  # `sparsedd ARGS`, as a user runs it


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    proc = sparsedd("run", *TINY, "--grid", "seed=0,1", "--out", str(out))
    return out, proc


def test_run_prints_one_summary_line_per_round(finished) -> None:
    _, proc = finished
    lines = [line for line in proc.stderr.splitlines() if " round " in line]
    assert len(lines) == 2 * 3
    assert "sparsity  36.00%" in lines[2] and "memorization" in lines[2]


def test_results_json_has_config_keys_run_id_and_round_fields(finished) -> None:
    out, _ = finished
    rows = json.loads(sparsedd("results", str(out), "--format", "json").stdout)
    assert len(rows) == 6
    for row in rows:
        assert {
            "run_id",
            "model",
            "noise",
            "weight_decay",
            "seed",
            *ROUND_FIELDS,
            "layer_density",
        } <= set(row)
    assert {r["seed"] for r in rows} == {0, 1}


def test_results_csv_and_table(finished) -> None:
    out, _ = finished
    csv_lines = sparsedd("results", str(out), "--format", "csv").stdout.splitlines()
    assert len(csv_lines) == 7 and "test_acc" in csv_lines[0].split(",")
    table = sparsedd("results", str(out)).stdout.splitlines()
    assert len(table) == 7 and "memorization" in table[0]


def test_results_per_epoch(finished) -> None:
    out, _ = finished
    rows = json.loads(sparsedd("results", str(out), "--epochs", "--format", "json").stdout)
    assert len(rows) == 2 * 3 * 2  # seeds × rounds × epochs
    assert set(rows[0]) == {"run_id", "round", "epoch", "train_loss", "train_acc"}
    table = sparsedd("results", str(out), "--epochs").stdout.splitlines()
    assert len(table) == 13 and "train_loss" in table[0]


def test_rerun_resumes_and_records_nothing_twice(finished) -> None:
    out, _ = finished
    proc = sparsedd("run", *TINY, "--grid", "seed=0,1", "--out", str(out))
    assert "sparsity" not in proc.stderr
    assert proc.stderr.count("every round already recorded") == 2
    rows = json.loads(sparsedd("results", str(out), "--format", "json").stdout)
    assert len(rows) == 6


def test_parallel_jobs_give_the_same_results(finished, tmp_path) -> None:
    out, _ = finished
    sparsedd("run", *TINY, "--grid", "seed=0,1", "--jobs", "2", "--out", str(tmp_path))
    drop = {"seconds", *PROVENANCE_FIELDS}  # where, not what: a commit may turn dirty meanwhile
    a = json.loads(sparsedd("results", str(out), "--format", "json").stdout)
    b = json.loads(sparsedd("results", str(tmp_path), "--format", "json").stdout)

    def strip(rows):
        rows = sorted(rows, key=lambda r: (r["run_id"], r["round"]))
        return [{k: v for k, v in r.items() if k not in drop} for r in rows]

    assert strip(a) == strip(b)


def test_killed_run_resumes_to_the_same_results(finished, tmp_path) -> None:
    out, _ = finished
    args = ["run", *TINY, "--set", "epochs=30", "--out", str(tmp_path)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "sparsedd", *args], stderr=subprocess.PIPE, text=True
    )
    for line in proc.stderr:  # kill during the first pruned round
        if "round  0" in line:
            time.sleep(0.3)
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    sparsedd(*args)
    sparsedd(*args, "--set", "epochs=30")  # a third time: nothing left to do
    reference = tmp_path / "ref"
    sparsedd("run", *TINY, "--set", "epochs=30", "--out", str(reference))
    got = json.loads(sparsedd("results", str(tmp_path), "--format", "json").stdout)
    want = json.loads(sparsedd("results", str(reference), "--format", "json").stdout)
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in got] == [
        {k: v for k, v in r.items() if k != "seconds"} for r in want
    ]


def test_presets_list_and_resolve() -> None:
    listing = sparsedd("presets").stdout
    for name in ("demo", "vit-cifar10", "vit-cifar100", "resnet18-cifar10", "resnet18-cifar100"):
        assert name in listing
    cfg = json.loads(sparsedd("presets", "vit-cifar10", "--format", "json").stdout)
    assert cfg["dim"] == 512 and cfg["weight_decay"] == 0.03
    assert "batch_size: 512" in sparsedd("presets", "vit-cifar10").stdout


@pytest.mark.parametrize("command", [[], ["run"], ["results"], ["presets"]])
def test_help(command) -> None:
    assert "Usage" in sparsedd(*command, "--help").stdout


def test_bad_value_is_one_line_and_status_2(tmp_path) -> None:
    proc = sparsedd(
        "run", "--preset", "tiny", "--set", "noise=1.5", "--out", str(tmp_path / "x"), check=False
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "noise" in proc.stderr
    assert not (tmp_path / "x").exists()


def test_unused_key_is_noted_once_and_more_rounds_continue(finished, tmp_path) -> None:
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(finished[0], out)
    proc = sparsedd("run", *TINY, "--set", "dim=64", "--grid", "seed=0,1", "--out", str(out))
    notes = [line for line in proc.stderr.splitlines() if "note:" in line]
    assert notes == [
        "sparsedd: note: config key 'dim' is not used by model 'lenet' with optimizer 'adamw'; "
        "it is ignored and does not change the run id"
    ]
    assert proc.stderr.count("every round already recorded") == 2  # same runs as without dim
    more = sparsedd(
        "run", *TINY, "--grid", "rounds=3,1", "--grid", "seed=0,1", "--jobs", "2", "--out", str(out)
    )
    trained = re.findall(r" round +(\d+)", more.stderr)
    assert trained == ["3", "3"]
    rows = json.loads(sparsedd("results", str(out), "--format", "json").stdout)
    assert len(rows) == 8 and {r["rounds"] for r in rows} == {3}


def test_a_config_from_a_pipe_is_read_whole_by_every_step(tmp_path) -> None:
    """`--config /dev/stdin` is read once: its grid and its keys both apply (not the preset's)."""
    study = "epochs: 1\nrounds: 1\ngrid:\n  seed: [0, 1, 2]\n"
    proc = sparsedd(
        "run", "--preset", "tiny", "--config", "/dev/stdin", "--out", str(tmp_path / "o"),
        "--dry-run", input=study,
    )  # fmt: skip
    assert "3 runs: 0 done, 0 partial, 3 new; 6 epochs left of 6" in proc.stdout + proc.stderr
