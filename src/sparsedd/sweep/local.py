"""The local backend: jobs on this machine, one per slot (GPU, or share of the cores)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import active_children, get_context
from pathlib import Path
from typing import Any

from sparsedd.config import Config
from sparsedd.errors import Interrupted
from sparsedd.plugins import load_plugins
from sparsedd.sweep.jobs import place, run_job
from sparsedd.sweep.placement import Slot, local_slots


def machine_slots(device: str, jobs: int | None) -> list[Slot]:
    """Slots of this machine for runs whose config says ``device``."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return local_slots(device, jobs, gpus, os.cpu_count() or 1)


def run_local(
    jobs: Sequence[Config],
    out_dir: str | Path,
    slots: Sequence[Slot],
    quiet: bool = False,
    labels: Mapping[str, str] | None = None,
    logs: Sequence[str] = (),
    parent: str | None = None,
) -> None:
    """Run every job (one run each); with one slot in this process, else one process per slot.

    Ctrl-C or SIGTERM stops the whole sweep: running workers save their progress and exit,
    queued jobs never start, and this returns only when every worker has ended.

    ``labels`` name runs by their grid values in the progress lines; ``logs`` names the
    trackers (``run --log``) and ``parent`` a sweep's MLflow parent run.
    """
    labels = dict(labels or {})
    if len(slots) == 1 or len(jobs) == 1:
        for cfg in jobs:
            run_job(place(cfg, slots[0]), out_dir, quiet, labels=labels, logs=logs, parent=parent)
        return
    pool = ProcessPoolExecutor(
        max_workers=len(slots), mp_context=get_context("spawn"), initializer=_init_worker
    )
    stopped: list[int] = []

    def request_stop(signum: int, frame: Any) -> None:
        stopped.append(signum)
        for worker in active_children():
            with contextlib.suppress(OSError, AttributeError):
                worker.terminate()  # SIGTERM: the worker saves its progress and exits

    previous = {s: signal.signal(s, request_stop) for s in STOP_SIGNALS}
    free = list(slots)
    waiting = list(jobs)
    running: dict[Future, Slot] = {}
    failure: BaseException | None = None
    try:
        while running or (waiting and not stopped):
            while waiting and free and not stopped:
                slot = free.pop(0)
                cfg = place(waiting.pop(0), slot)
                fut = pool.submit(_run_job_in_worker, cfg, str(out_dir), labels, logs, parent)
                running[fut] = slot
            finished, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
            for fut in finished:
                free.append(running.pop(fut))
                err = fut.exception()
                stop_noise = stopped and isinstance(err, Interrupted | BrokenProcessPool)
                if err is not None and failure is None and not stop_noise:
                    failure = err
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for s, handler in previous.items():
            signal.signal(s, handler)
    if failure is not None:
        raise failure
    if stopped:
        raise Interrupted("the sweep was stopped; its queued runs were not started")


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_WORKER_STOP: Any = None  # the stop flag of a sweep's worker process
_WORKER = {"parent": 0, "busy": False}


def _init_worker() -> None:
    """Set up a sweep worker: the parent decides when to stop, and its death stops us too."""
    global _WORKER_STOP
    from sparsedd.training.experiment import StopFlag

    _WORKER_STOP = StopFlag()
    _WORKER["parent"] = os.getppid()
    # Ctrl-C in a terminal reaches every process of the group: the parent handles it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _worker_sigterm)
    _stop_when_parent_dies()


def _orphaned() -> bool:
    return os.getppid() != _WORKER["parent"]


def _worker_sigterm(signum: int, frame: Any) -> None:
    """Stop the job at its next epoch boundary; an idle worker whose parent died just exits."""
    _WORKER_STOP.requested = True
    if _orphaned() and not _WORKER["busy"]:
        os._exit(1)


def _stop_when_parent_dies() -> None:
    """Ask Linux to send us SIGTERM when the parent process dies (no orphaned workers)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)


def _run_job_in_worker(
    cfg: Config,
    out_dir: str,
    labels: dict[str, str],
    logs: Sequence[str] = (),
    parent: str | None = None,
) -> None:
    """One job of a sweep, in a worker; a worker told to stop starts no further job."""
    if _WORKER_STOP.requested:
        raise Interrupted("the sweep was stopped before this run started")
    load_plugins()  # a spawned worker starts without the parent's registrations
    _WORKER["busy"] = True
    try:
        run_job(
            cfg,
            out_dir,
            True,
            stop=_WORKER_STOP,
            labels=labels,
            signals=(),
            logs=logs,
            parent=parent,
        )
    finally:
        _WORKER["busy"] = False
        if _orphaned():  # no one will collect the result or send another job
            os._exit(1)
