"""The local backend: jobs on this machine, one per slot (GPU, or share of the cores)."""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

from sparsedd.config import Config
from sparsedd.sweep.jobs import place, run_job
from sparsedd.sweep.placement import Slot, local_slots


def machine_slots(device: str, jobs: int | None) -> list[Slot]:
    """Slots of this machine for runs whose config says ``device``."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return local_slots(device, jobs, gpus, os.cpu_count() or 1)


def run_local(
    jobs: Sequence[Sequence[Config]],
    out_dir: str | Path,
    slots: Sequence[Slot],
    quiet: bool = False,
    labels: Mapping[str, str] | None = None,
    logs: Sequence[str] = (),
    parent: str | None = None,
) -> None:
    """Run every job; with one slot in this process, else one process per slot.

    ``labels`` name runs by their grid values in the progress lines; ``logs`` names the
    trackers (``run --log``) and ``parent`` a sweep's MLflow parent run.
    """
    labels = dict(labels or {})
    if len(slots) == 1 or len(jobs) == 1:
        for group in jobs:
            run_job(place(group, slots[0]), out_dir, quiet, labels=labels, logs=logs, parent=parent)
        return
    ctx = get_context("spawn")
    free = list(slots)
    waiting = list(jobs)
    running: dict[Future, Slot] = {}
    with ProcessPoolExecutor(
        max_workers=len(slots), mp_context=ctx, initializer=_ignore_sigint
    ) as pool:
        while waiting or running:
            while waiting and free:
                slot = free.pop(0)
                group = place(waiting.pop(0), slot)
                fut = pool.submit(
                    run_job, group, str(out_dir), True, labels=labels, logs=logs, parent=parent
                )
                running[fut] = slot
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                free.append(running.pop(fut))
                fut.result()


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
