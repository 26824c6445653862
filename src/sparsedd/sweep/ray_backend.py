"""The Ray backend: each job is a Ray task; only the driver writes the results database.

Workers train into the output folder, which must be storage every worker reaches (a shared
path): run folders, checkpoints and labels live there. Their round and epoch rows go to a
ledger actor; the driver drains it and records the rows in SQLite, so the database is written
by one process on one host. The ledger knows every round received, so a retried task (Ray
retries a task whose worker died) skips rounds already sent, resumes the current round from
its last saved epoch, and no round is recorded twice.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sparsedd.config import Config, to_dict
from sparsedd.errors import UserError
from sparsedd.store.round_record import RoundRecord

RAY_MISSING = (
    "--backend ray needs Ray, which is not installed; install it with "
    "pip install 'sparsedd[ray]' (or pip install ray)"
)
# Ray retries a task whose worker process died this many times.
MAX_RETRIES = 3


def import_ray() -> Any:
    """The ``ray`` module, or a UserError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UserError(RAY_MISSING) from None
    return ray


class Ledger:
    """Ray actor between workers and driver: queues rows, knows which rounds are recorded.

    It runs on the driver's host and reads the results database there (read-only), so a worker
    sees every round recorded so far, by this sweep or another one sharing the folder, plus
    the rounds on their way to the driver; rounds a worker dropped (to recompute them) are
    hidden until received again.
    """

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir
        self.received: dict[str, dict[int, tuple[str | None, float]]] = {}
        self.outcomes: dict[str, dict[int, tuple]] = {}  # what the collapse stop reads
        self.dropped: dict[str, int] = {}  # run id → first round dropped
        self.items: list[tuple] = []
        self._store: Any = None

    def _recorded(self, run_id: str) -> dict[int, tuple[str | None, float]]:
        from sparsedd.errors import NoResultsError
        from sparsedd.store.results import ResultsStore

        if self._store is None:
            try:
                self._store = ResultsStore(self.out_dir, create=False)
            except NoResultsError:
                return {}
        recorded = self._store.round_versions_and_sparsity(run_id)
        first = self.dropped.get(run_id)
        return {k: v for k, v in recorded.items() if first is None or k < first}

    def _known(self, run_id: str) -> dict[int, tuple[str | None, float]]:
        return {**self._recorded(run_id), **self.received.get(run_id, {})}

    def put(self, item: tuple) -> None:
        """Queue one row (or a drop) for the driver; a round already known is ignored."""
        if item[0] == "round":
            record: RoundRecord = item[2]
            if record.round in self._known(item[1]):
                return
            entry = (record.sparsedd_version, record.sparsity)
            self.received.setdefault(item[1], {})[record.round] = entry
            outcome = (
                bool(record.collapsed),
                record.test_acc,
                record.layer_density,
                record.memorization,
            )
            self.outcomes.setdefault(item[1], {})[record.round] = outcome
        elif item[0] == "drop":
            run, first = item[1], item[2]
            self.dropped[run] = min(first, self.dropped.get(run, first))
            for known in (self.received.get(run, {}), self.outcomes.get(run, {})):
                for k in [k for k in known if k >= first]:
                    del known[k]
        self.items.append(item)

    def rounds_done(self, run_id: str) -> list[int]:
        """Rounds of ``run_id`` recorded or on their way to the driver."""
        return sorted(self._known(run_id))

    def round_versions(self, run_id: str) -> dict[int, str | None]:
        """The sparsedd version that recorded each round of ``run_id``."""
        return {k: version for k, (version, _) in self._known(run_id).items()}

    def round_sparsity(self, run_id: str, round_: int) -> float | None:
        """The sparsity recorded for one round of ``run_id`` (None if not recorded)."""
        entry = self._known(run_id).get(round_)
        return None if entry is None else entry[1]

    def round_outcomes(self, run_id: str) -> dict[int, tuple]:
        """(collapsed, test accuracy, layer density, memorization) of each round of
        ``run_id`` recorded or on its way to the driver."""
        recorded: dict[int, tuple] = {}
        if self._recorded(run_id):  # opens the database when there is one
            first = self.dropped.get(run_id)
            recorded = {
                k: v
                for k, v in self._store.round_outcomes(run_id).items()
                if first is None or k < first
            }
        return {**recorded, **self.outcomes.get(run_id, {})}

    def take(self) -> list[tuple]:
        """Every queued row, emptying the queue."""
        items, self.items = self.items, []
        return items


class LedgerStore:
    """The RunStore of a run on a Ray worker: rows go to the ledger, never to SQLite."""

    def __init__(self, ledger: Any) -> None:
        self.ledger = ledger

    def _put(self, item: tuple) -> None:
        import ray

        ray.get(self.ledger.put.remote(item))  # delivered before the run goes on

    def record_run(self, run_id: str, config: dict[str, Any]) -> None:
        """Send the run's config."""
        self._put(("run", run_id, config))

    def record_round(self, run_id: str, record: RoundRecord) -> None:
        """Send one finished round."""
        self._put(("round", run_id, record))

    def record_rounds(self, run_id: str, rows: list[RoundRecord]) -> None:
        """Send several finished (collapsed) rounds."""
        for row in rows:
            self.record_round(run_id, row)

    def record_epoch(self, run_id: str, round_: int, epoch: int, loss: float, acc: float) -> None:
        """Send one epoch's training loss and accuracy."""
        self._put(("epoch", run_id, round_, epoch, loss, acc))

    def rounds_done(self, run_id: str) -> set[int]:
        """Rounds the driver has or will record."""
        import ray

        return set(ray.get(self.ledger.rounds_done.remote(run_id)))

    def round_versions(self, run_id: str) -> dict[int, str | None]:
        """The sparsedd version of each round the driver has or will record."""
        import ray

        return ray.get(self.ledger.round_versions.remote(run_id))

    def round_sparsity(self, run_id: str, round_: int) -> float | None:
        """The sparsity of a round the driver has or will record (None if neither)."""
        import ray

        return ray.get(self.ledger.round_sparsity.remote(run_id, round_))

    def round_outcomes(self, run_id: str) -> dict[int, tuple]:
        """(collapsed, test accuracy, layer density, memorization) of each round the driver
        has or will record."""
        import ray

        return ray.get(self.ledger.round_outcomes.remote(run_id))

    def drop_rounds(self, run_id: str, first: int) -> None:
        """Have the driver forget rounds ``first``, ``first + 1``, … of a run (to recompute)."""
        self._put(("drop", run_id, first))

    def round_rows(self) -> list[dict[str, Any]]:
        """Rows are read on the driver, not here."""
        return []


def train_job(config: dict[str, Any], out_dir: str, ledger: Any, logs: Sequence[str] = ()) -> None:
    """Body of a Ray task: run one run into the shared output folder (``logs``: --log)."""
    from sparsedd.components import from_dict
    from sparsedd.plugins import load_plugins
    from sparsedd.sweep.jobs import run_job

    load_plugins()  # the worker's own process: the driver's registrations are not here
    run_job(from_dict(config), out_dir, quiet=True, store=LedgerStore(ledger), logs=logs)


def task_resources(cfg: Config, cluster_gpus: float) -> tuple[float, int]:
    """(num_gpus, num_cpus) a job of ``cfg`` declares to Ray."""
    gpus = 1.0 if cfg.device != "cpu" and cluster_gpus > 0 else 0.0
    return gpus, max(1, cfg.threads)


def _for_ray(cfg: Config, gpus: float) -> dict[str, Any]:
    """A config as a worker runs it: Ray picks the GPU; threads match the CPUs declared."""
    device = "cuda" if cfg.device.startswith("cuda") else cfg.device
    if not gpus and device == "cuda":
        device = "cpu"
    return to_dict(dataclasses.replace(cfg, device=device, threads=max(1, cfg.threads)))


def run_ray(
    jobs: Sequence[Config],
    out_dir: str | Path,
    address: str | None = None,
    poll_s: float = 0.2,
    logs: Sequence[str] = (),
) -> None:
    """Run every job (one run each) as a Ray task; record their rows here; Ctrl-C stops and
    keeps progress.

    ``logs`` names the trackers each task writes to (``tensorboard``: event files in the run
    folders, on the shared storage).
    """
    from sparsedd.store.results import ResultsStore
    from sparsedd.training.experiment import Interrupted

    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.ERROR,
            )
        except (ConnectionError, ValueError, RuntimeError) as err:
            raise UserError(
                f"cannot join Ray cluster {address!r} ({str(err).splitlines()[0][:120]}); "
                f"start it with `ray start --head` or give the right --address"
            ) from None
    out_dir = Path(out_dir).resolve()
    store = ResultsStore(out_dir)
    ledger = _start_ledger(ray, out_dir)
    task = ray.remote(max_retries=MAX_RETRIES)(train_job)
    gpus_in_cluster = ray.cluster_resources().get("GPU", 0)
    pending = []
    for cfg in jobs:
        gpus, cpus = task_resources(cfg, gpus_in_cluster)
        pending.append(
            task.options(num_gpus=gpus, num_cpus=cpus).remote(
                _for_ray(cfg, gpus), str(out_dir), ledger, list(logs)
            )
        )
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=poll_s)
            _record(store, ray.get(ledger.take.remote()))
            for ref in ready:
                _result(ray, ref)  # a job's error stops the sweep here
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref)
        time.sleep(poll_s)
        raise Interrupted("sweep stopped by Ctrl-C") from None
    finally:
        _record(store, ray.get(ledger.take.remote()))
        ray.kill(ledger)
        if started_here:
            ray.shutdown()


def _start_ledger(ray: Any, out_dir: Path) -> Any:
    """The ledger actor, on this (the driver's) host, where it can read the database."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    return ray.remote(num_cpus=0)(Ledger).options(scheduling_strategy=here).remote(str(out_dir))


def _result(ray: Any, ref: Any) -> None:
    """Wait for a task; a user error raised in it is raised here as itself (one clear line)."""
    try:
        ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        if isinstance(err.cause, UserError):
            raise err.cause from None
        raise


def _record(store: Any, items: list[tuple]) -> None:
    """Write rows received from the workers into the results database."""
    for item in items:
        kind, run_id, *rest = item
        if kind == "run":
            store.record_run(run_id, rest[0])
        elif kind == "round":
            store.record_round(run_id, rest[0])
        elif kind == "drop":
            store.drop_rounds(run_id, rest[0])
        else:
            store.record_epoch(run_id, *rest)
