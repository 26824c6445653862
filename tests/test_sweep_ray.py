"""The Ray backend on a real local Ray cluster (2 CPUs): same rows as the local backend,
a worker killed mid-run is retried and resumes, overlapping sweeps share one folder, a run
folder deleted by hand is recomputed."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'sparsedd[ray]')")

from support import comparable, epoch_count, sweep_grid_configs  # noqa: E402

from sparsedd.store.results import ResultsStore  # noqa: E402
from sparsedd.store.round_record import RoundRecord  # noqa: E402
from sparsedd.sweep.local import run_local  # noqa: E402
from sparsedd.sweep.placement import Slot  # noqa: E402
from sparsedd.sweep.ray_backend import Ledger, run_ray  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def local_rows(tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    run_local(sweep_grid_configs(), out, [Slot("cpu", 1)], quiet=True)
    return comparable(out)


def test_ray_sweep_gives_the_local_backends_rows(cluster, local_rows, tmp_path) -> None:
    run_ray(sweep_grid_configs(), tmp_path)
    assert len(local_rows) == 8 * 3
    assert comparable(tmp_path) == local_rows
    assert epoch_count(tmp_path) == 8 * 3 * 3


def _kill_first_worker_mid_run(out: Path, killed: list[int], deadline: float) -> None:
    """Wait until a run has saved a mid-round epoch, then SIGKILL the Ray worker running it."""
    while time.monotonic() < deadline and not killed:
        if any(out.glob("runs/*/progress.safetensors")):
            for pid in _task_workers():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.01)


def _task_workers() -> list[int]:
    """Processes whose title says they run our Ray task."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(b"ray::train_job"):
                pids.append(int(entry.name))
    return pids


def test_a_killed_worker_is_retried_and_resumes(cluster, local_rows, tmp_path) -> None:
    cfgs = sweep_grid_configs(weight_decay=[0.0, 0.1], noise=[0.1], seed=[0])
    killed: list[int] = []
    killer = threading.Thread(
        target=_kill_first_worker_mid_run, args=(tmp_path, killed, time.monotonic() + 120)
    )
    killer.start()
    run_ray(cfgs, tmp_path)
    killer.join()
    assert killed, "no Ray worker was seen mid-run, so none was killed"
    rows = comparable(tmp_path)
    ids = {r["run_id"] for r in rows}
    assert len(ids) == 2 and rows == [r for r in local_rows if r["run_id"] in ids]
    assert epoch_count(tmp_path) == 2 * 3 * 3  # every epoch once


def test_two_overlapping_sweeps_share_one_folder(cluster, local_rows, tmp_path) -> None:
    first = sweep_grid_configs(weight_decay=[0.0, 0.1], noise=[0.1], seed=[0])
    second = sweep_grid_configs(weight_decay=[0.1], noise=[0.1, 0.3], seed=[0])
    errors: list[BaseException] = []

    def sweep(cfgs) -> None:
        try:
            run_ray(cfgs, tmp_path)
        except BaseException as err:  # surfaced by the assert below
            errors.append(err)

    threads = [threading.Thread(target=sweep, args=(c,)) for c in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors
    rows = comparable(tmp_path)
    ids = {r["run_id"] for r in rows}
    assert len(ids) == 3 and rows == [r for r in local_rows if r["run_id"] in ids]
    assert epoch_count(tmp_path) == 3 * 3 * 3


def _round(k: int, sparsity: float) -> RoundRecord:
    return RoundRecord(
        **{
            **dict.fromkeys(("test_acc", "test_loss", "train_acc", "train_acc_clean"), 0.5),
            **{"round": k, "sparsity": sparsity, "params_remaining": 10, "memorization": 0.1},
            **{"val_acc": None, "epochs": 1, "seconds": 0.1, "layer_density": {"w": 1.0}},
            "sparsedd_version": "0.1.0",
        }
    )


def test_the_ledger_knows_sparsity_and_forwards_drops(tmp_path) -> None:
    """What a worker asks the ledger: every round recorded (also by another sweep after the
    ledger started) or on its way, their sparsity, and drops until rounds come again."""
    store = ResultsStore(tmp_path)
    store.record_run("r", {})
    store.record_round("r", _round(0, 0.0))
    ledger = Ledger(str(tmp_path))
    store.record_round("r", _round(1, 0.2))  # another sweep's driver, meanwhile
    ledger.put(("round", "r", _round(2, 0.36)))
    ledger.put(("round", "r", _round(2, 0.36)))  # a retried task's copy
    ledger.put(("round", "r", _round(1, 0.2)))  # recorded already
    assert ledger.rounds_done("r") == [0, 1, 2] and ledger.round_sparsity("r", 2) == 0.36
    assert ledger.round_versions("r") == dict.fromkeys((0, 1, 2), "0.1.0")
    ledger.put(("drop", "r", 1))
    assert ledger.rounds_done("r") == [0] and ledger.round_sparsity("r", 1) is None
    ledger.put(("round", "r", _round(1, 0.2)))  # recomputed
    assert ledger.rounds_done("r") == [0, 1]
    assert [item[0] for item in ledger.take()] == ["round", "drop", "round"]
    assert Ledger(str(tmp_path / "none")).rounds_done("r") == []


def test_a_run_folder_deleted_by_hand_is_recomputed_on_ray(cluster, local_rows, tmp_path) -> None:
    cfgs = sweep_grid_configs(weight_decay=[0.0], noise=[0.1], seed=[0])
    run_ray(cfgs, tmp_path)
    folder = next((tmp_path / "runs").iterdir())
    shutil.rmtree(folder)
    # rows that only recomputing replaces: kept rows would keep this accuracy
    conn = sqlite3.connect(tmp_path / "results.sqlite")
    conn.execute("UPDATE rounds SET test_acc = 0.0")
    conn.commit()
    conn.close()
    run_ray(cfgs, tmp_path)
    assert sorted(p.name for p in folder.glob("round_*.safetensors")) == [
        f"round_00{k}.safetensors" for k in range(3)
    ]
    rows = comparable(tmp_path)
    assert rows == [r for r in local_rows if r["run_id"] == folder.name]
    assert epoch_count(tmp_path) == 3 * 3


def test_tensorboard_logs_from_ray_workers(cluster, local_rows, tmp_path) -> None:
    """--log tensorboard with the Ray backend: each run's event file holds its recorded rounds."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfgs = sweep_grid_configs(weight_decay=[0.0], noise=[0.1], seed=[0])
    run_ray(cfgs, tmp_path, logs=["tensorboard"])
    rows = ResultsStore(tmp_path).round_rows()
    events = EventAccumulator(str(tmp_path / "runs" / rows[0]["run_id"] / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == list(range(9))  # 3 rounds × 3
    test_acc = [(e.step, e.value) for e in events.Scalars("round/test_acc")]
    assert test_acc == [(r["round"], pytest.approx(r["test_acc"], rel=1e-6)) for r in rows]
