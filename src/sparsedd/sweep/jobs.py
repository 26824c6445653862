"""A job: one run of a sweep, placed in a slot and run with its signals, progress and trackers."""

from __future__ import annotations

import dataclasses
import signal
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sparsedd.config import Config
from sparsedd.store.results import RunStore
from sparsedd.sweep.placement import Slot, job_threads


def place(cfg: Config, slot: Slot) -> Config:
    """The run's config set to run in ``slot`` (its GPU; its share of the CPU threads)."""
    device = slot.device if slot.device.startswith("cuda:") else cfg.device
    return dataclasses.replace(cfg, device=device, threads=job_threads(slot, cfg.threads))


def run_job(
    cfg: Config,
    out_dir: str | Path,
    quiet: bool = True,
    store: RunStore | None = None,
    stop: Any = None,
    labels: Mapping[str, str] | None = None,
    signals: Sequence[signal.Signals] = (signal.SIGINT, signal.SIGTERM),
    logs: Sequence[str] = (),
    parent: str | None = None,
) -> None:
    """Run one run into ``out_dir``; rows go to ``store`` when given (else the folder's DB).

    ``labels`` name runs by their grid values. SIGINT and SIGTERM (what batch schedulers send
    before killing) set the stop flag: the job saves its progress and raises ``Interrupted``.
    """
    import sparsedd.export.pruned  # noqa: F401  registers exported models as teacher files
    from sparsedd.events.progress import ConsoleReporter
    from sparsedd.events.trackers import with_trackers
    from sparsedd.training.experiment import Experiment, StopFlag

    labels = labels or {}
    stop = stop or StopFlag()
    in_main = threading.current_thread() is threading.main_thread()
    previous = {
        s: signal.signal(s, lambda *_: setattr(stop, "requested", True))
        for s in (signals if in_main else ())
    }
    try:
        console = ConsoleReporter(show_bars=not quiet)
        reporter = with_trackers(console, logs, out_dir, parent)  # run --log
        exp = Experiment(cfg, out_dir, reporter=reporter, stop=stop, store=store)
        reporter.start(exp.id, exp.folder, exp.cfg, labels.get(exp.id, ""))
        with reporter:
            exp.run()
        reporter.finish()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
