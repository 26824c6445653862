"""Where a sweep stands: runs done, running, waiting; rounds done; an ETA."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparsedd.config import round_epochs, run_epochs
from sparsedd.errors import StoreError
from sparsedd.store.run_folder import RunFolder, sweeps_dir
from sparsedd.store.run_lock import is_running
from sparsedd.sweep.plan import PlannedRun, saved_epoch, seconds_per_epoch


def write_sweep_file(out_dir: str | Path, planned: Sequence[PlannedRun]) -> Path:
    """Record a sweep's runs in ``out_dir/sweeps/`` so that `sparsedd status` knows them."""
    from sparsedd.store.atomic import atomic_write_text
    from sparsedd.store.checkpoint import OUT_FIX

    runs = {
        p.id: {"label": p.label, "rounds": p.cfg.rounds, "epochs_total": p.epochs_total}
        for p in planned
    }
    name = _digest(sorted(runs))
    folder = sweeps_dir(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    atomic_write_text(path, json.dumps(runs, indent=1), OUT_FIX)
    return path


def _digest(ids: list[str]) -> str:
    import hashlib

    return hashlib.sha256(",".join(ids).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class SweepStatus:
    """Counts and ETA of the runs an output folder knows."""

    done: int
    running: int
    waiting: int
    rounds_done: int
    rounds_total: int
    epochs_left: int
    seconds_per_epoch: float | None

    @property
    def eta_s(self) -> float | None:
        """Seconds until all runs are done at the recorded pace and current parallelism."""
        if self.seconds_per_epoch is None:
            return None
        return self.epochs_left * self.seconds_per_epoch / max(1, self.running)


def sweep_status(out_dir: str | Path) -> SweepStatus:
    """The status of every run of every sweep (and every recorded run) in ``out_dir``.

    A run not done is running while a process holds its folder's lock, else waiting.
    """
    from sparsedd.store.results import ResultsStore

    out_dir = Path(out_dir)
    store = ResultsStore(out_dir, create=False)
    rows = store.round_rows()
    runs: dict[str, dict[str, Any]] = {}
    for rid, cfg in store.runs().items():  # their values have the config's types
        missing = [k for k in ("epochs", "rounds") if cfg.get(k) is None]
        if missing:
            raise StoreError(
                f"results database {store.path} is damaged: the recorded config of run {rid} "
                f"has no {missing[0]!r}; restore it from a copy, or move it away and re-run"
            )
        runs[rid] = {"rounds": cfg["rounds"], "epochs_total": run_epochs(cfg)}
    for path in sorted(sweeps_dir(out_dir).glob("*.json")):
        try:
            planned = json.loads(path.read_text())
        except (OSError, ValueError, RecursionError):
            continue  # a damaged sweep file only hides runs not yet started
        if isinstance(planned, dict):
            runs.update({k: v for k, v in planned.items() if k not in runs and _plan_entry(v)})
    recorded: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        recorded.setdefault(row["run_id"], []).append(row)
    per_epoch = seconds_per_epoch(rows)
    done = running = waiting = rounds_done = rounds_total = epochs_left = 0
    for rid, info in runs.items():
        mine = [r for r in recorded.get(rid, []) if r["round"] <= info["rounds"]]
        rounds_done += len(mine)
        rounds_total += info["rounds"] + 1
        # a collapsed round is done without training: it leaves no epochs to train
        trained = sum(
            round_epochs(r, r["round"]) if r.get("collapsed") else r["round_epochs"] or 0
            for r in mine
        )
        folder = RunFolder.of(out_dir, rid)
        saved = saved_epoch(folder.path)
        if saved is not None and saved[0] not in {r["round"] for r in mine}:
            trained += saved[1]
        epochs_left += max(0, info["epochs_total"] - trained)
        if len(mine) == info["rounds"] + 1:
            done += 1
        elif is_running(folder.path):
            running += 1
        else:
            waiting += 1
    return SweepStatus(done, running, waiting, rounds_done, rounds_total, epochs_left, per_epoch)


def format_status(status: SweepStatus) -> str:
    """The status as a few readable lines."""
    from sparsedd.training.progress import duration

    eta = status.eta_s
    eta_text = "unknown (no round recorded yet)" if eta is None else duration(eta)
    return "\n".join(
        [
            f"runs: {status.done} done, {status.running} running, {status.waiting} waiting",
            f"rounds: {status.rounds_done} of {status.rounds_total} done; "
            f"{status.epochs_left} epochs left",
            f"ETA: {eta_text}",
        ]
    )


def _plan_entry(value: Any) -> bool:
    """Whether a sweep file's entry for a run is what ``write_sweep_file`` writes."""
    return (
        isinstance(value, dict)
        and type(value.get("rounds")) is int
        and value["rounds"] >= 0
        and type(value.get("epochs_total")) is int
    )
