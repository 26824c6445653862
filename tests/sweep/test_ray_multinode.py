"""A Ray cluster of three nodes on this machine (Ray's own ``ray.cluster_utils.Cluster``): a
head, which runs the driver and its ledger, and two worker nodes of one CPU each. A whole
worker node is removed mid-sweep, with its raylet, its object store and the runs it was
training; the sweep still completes, with the rows of the local backend and no round recorded
twice."""

from __future__ import annotations

import collections
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'sparsedd[ray]')")
cluster_utils = pytest.importorskip("ray.cluster_utils")

from support import comparable, epoch_count, sweep_grid_configs  # noqa: E402

from sparsedd.sweep import ray_backend  # noqa: E402
from sparsedd.sweep.local import run_local  # noqa: E402
from sparsedd.sweep.placement import Slot  # noqa: E402

AXES = {"weight_decay": [0.0, 0.1], "noise": [0.1], "seed": [0, 1]}  # four runs


@pytest.fixture(scope="module")
def three_nodes():
    """Head (no CPUs for tasks: the driver and ledger live there) and two 1-CPU workers."""
    if ray.is_initialized():
        ray.shutdown()
    cluster = cluster_utils.Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": False},
    )
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
    yield cluster, workers
    ray.shutdown()
    cluster.shutdown()


def _remove_node_mid_run(cluster, node, out: Path, removed: list[str], deadline: float) -> None:
    """Once two runs have started (each worker node trains one), remove ``node`` whole."""
    while time.monotonic() < deadline:
        started = list(out.glob("runs/*/progress.safetensors"))
        if started:
            cluster.remove_node(node, allow_graceful=False)
            removed.append(str(started[0].parent.name))
            return
        time.sleep(0.01)


def test_a_worker_node_lost_mid_sweep(three_nodes, tmp_path, monkeypatch) -> None:
    cluster, workers = three_nodes
    cfgs = sweep_grid_configs(**AXES)
    local = tmp_path / "local"
    run_local(cfgs, local, [Slot("cpu", 1)], quiet=True)

    recorded: collections.Counter[tuple[str, int]] = collections.Counter()
    started: collections.Counter[str] = collections.Counter()
    record = ray_backend._record

    def counting(store, items):  # the driver's writes, counted per (run, round)
        for item in items:
            started[item[1]] += item[0] == "run"  # each attempt of a run registers it
            if item[0] == "round":
                recorded[(item[1], item[2].round)] += 1
        record(store, items)

    monkeypatch.setattr(ray_backend, "_record", counting)
    out = tmp_path / "ray"
    removed: list[str] = []
    remover = threading.Thread(
        target=_remove_node_mid_run,
        args=(cluster, workers[0], out, removed, time.monotonic() + 120),
    )
    remover.start()
    ray_backend.run_ray(cfgs, out)
    remover.join()
    assert removed, "no run was seen mid-round, so no node was removed"
    # the head and one worker finished the sweep (a loaded machine reports the death late)
    deadline = time.monotonic() + 60
    while len(alive := [n for n in ray.nodes() if n["Alive"]]) > 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(alive) == 2
    assert comparable(out) == comparable(local)
    assert len(recorded) == 4 * 3 and set(recorded.values()) == {1}  # no round twice
    assert sum(started.values()) > 4, "no run was started again: the node had none running"
    assert epoch_count(out) == epoch_count(local)
