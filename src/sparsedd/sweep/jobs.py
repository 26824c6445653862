"""Jobs: a single run, or runs differing only in λ trained as one batched model."""

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


def group_jobs(configs: Sequence[Config], batch_lambdas: bool | None) -> list[list[Config]]:
    """Configs grouped into jobs: runs differing only in λ share one job when batched.

    ``batch_lambdas`` None (the default) batches nothing: no measurement shows that it pays (on
    the CPU it measured slower; bench/gpu_check.sh measures it on a GPU).
    """
    from sparsedd.training.batched import batch_key

    groups: dict[Any, list[Config]] = {}
    for i, cfg in enumerate(configs):
        groups.setdefault(batch_key(cfg) if batch_lambdas else i, []).append(cfg)
    return list(groups.values())


def place(group: Sequence[Config], slot: Slot) -> list[Config]:
    """The job's configs set to run in ``slot`` (its GPU; its share of the CPU threads)."""
    out = []
    for cfg in group:
        device = slot.device if slot.device.startswith("cuda:") else cfg.device
        out.append(dataclasses.replace(cfg, device=device, threads=job_threads(slot, cfg.threads)))
    return out


def run_job(
    group: Sequence[Config],
    out_dir: str | Path,
    quiet: bool = True,
    store: RunStore | None = None,
    stop: Any = None,
    labels: Mapping[str, str] | None = None,
    signals: Sequence[signal.Signals] = (signal.SIGINT, signal.SIGTERM),
    logs: Sequence[str] = (),
    parent: str | None = None,
) -> None:
    """Run one job into ``out_dir``; rows go to ``store`` when given (else the folder's DB).

    ``labels`` name runs by their grid values. SIGINT and SIGTERM (what batch schedulers send
    before killing) set the stop flag: the job saves its progress and raises ``Interrupted``.
    """
    import sparsedd.export.pruned  # noqa: F401  registers exported models as teacher files
    from sparsedd.components import run_id
    from sparsedd.events.progress import ConsoleReporter
    from sparsedd.events.trackers import with_trackers
    from sparsedd.store.results_folder import ResultsFolder
    from sparsedd.training.experiment import Experiment, StopFlag, run_batched

    labels = labels or {}
    stop = stop or StopFlag()
    in_main = threading.current_thread() is threading.main_thread()
    previous = {
        s: signal.signal(s, lambda *_: setattr(stop, "requested", True))
        for s in (signals if in_main else ())
    }
    try:
        console = ConsoleReporter(show_bars=not quiet and len(group) == 1)
        reporter = with_trackers(console, logs, out_dir, parent)  # run --log
        if len(group) > 1:
            for cfg in group:
                rid = run_id(cfg)
                reporter.start(rid, ResultsFolder(out_dir).run(rid).path, cfg, labels.get(rid, ""))
            with reporter:
                run_batched(group, out_dir, reporter=reporter, stop=stop, store=store)
            reporter.finish()
            return
        exp = Experiment(group[0], out_dir, reporter=reporter, stop=stop, store=store)
        reporter.start(exp.id, exp.folder, exp.cfg, labels.get(exp.id, ""))
        with reporter:
            exp.run()
        reporter.finish()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
