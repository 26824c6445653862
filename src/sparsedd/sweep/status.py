"""Where a sweep stands: runs done, running, waiting; rounds done; an ETA."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparsedd.config import round_epochs, run_epochs
from sparsedd.errors import StoreError
from sparsedd.store.results_folder import ResultsFolder
from sparsedd.store.run_lock import is_running
from sparsedd.sweep.plan import PlannedRun, saved_epoch, seconds_per_epoch

#: The key of a sweep file that holds an adaptive study's full grid (never a run id: those
#: are hexadecimal).
ADAPTIVE_KEY = "adaptive"


def write_sweep_file(
    out_dir: str | Path,
    planned: Sequence[PlannedRun],
    extra: Mapping[str, Any] | None = None,
    name_ids: Sequence[str] | None = None,
) -> Path:
    """Record a sweep's runs in ``out_dir/sweeps/`` so that `sparsedd status` knows them.

    ``extra``: an adaptive study's entry (see ``sweep.adaptive.sweep_entry``), kept under
    ADAPTIVE_KEY; ``name_ids``: the run ids that name the file (default: ``planned``'s).
    """
    from sparsedd.store.atomic import atomic_write_text
    from sparsedd.store.checkpoint import OUT_FIX

    runs: dict[str, Any] = {
        p.id: {"label": p.label, "rounds": p.cfg.rounds, "epochs_total": p.epochs_total}
        for p in planned
    }
    name = _digest(sorted(name_ids if name_ids is not None else runs))
    if extra is not None:
        runs[ADAPTIVE_KEY] = dict(extra)
    path = ResultsFolder(out_dir).sweep_file(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(runs, indent=1), OUT_FIX)
    return path


def _digest(ids: list[str]) -> str:
    import hashlib

    return hashlib.sha256(",".join(ids).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class AdaptiveStatus:
    """An adaptive study's epochs against its full grid (MAX seeds a curve, every round)."""

    seeds: str
    grid_runs: int
    grid_epochs: int
    #: Epochs recorded so far (the sum of ``round_epochs``) by the runs the study gave seeds.
    trained: int
    #: Runs of the grid that no curve will get (decided before reaching MAX seeds).
    runs_skipped: int
    #: Epochs saved so far: those of the skipped runs, and of rounds finished runs never
    #: trained (a run the collapse stop ended).
    saved: int


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
    #: One entry per adaptive study that the folder's sweep files hold.
    adaptive: tuple[AdaptiveStatus, ...] = ()

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
    entries = []
    for path in ResultsFolder(out_dir).sweep_files():
        try:
            planned = json.loads(path.read_text())
        except (OSError, ValueError, RecursionError):
            continue  # a damaged sweep file only hides runs not yet started
        if isinstance(planned, dict):
            runs.update({k: v for k, v in planned.items() if k not in runs and _plan_entry(v)})
            if _adaptive_entry(planned.get(ADAPTIVE_KEY)):
                entries.append(planned[ADAPTIVE_KEY])
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
        folder = ResultsFolder(out_dir).run(rid)
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
    adaptive = tuple(_adaptive_status(e, runs, recorded) for e in entries)
    return SweepStatus(
        done, running, waiting, rounds_done, rounds_total, epochs_left, per_epoch, adaptive
    )


def _adaptive_status(
    entry: dict[str, Any], runs: dict[str, dict[str, Any]], recorded: dict[str, list[dict]]
) -> AdaptiveStatus:
    """Epochs trained and saved so far by one adaptive study (see AdaptiveStatus)."""
    grid: dict[str, int] = entry["grid"]
    skipped = set(entry["skipped"]) & set(grid)
    trained = saved = 0
    for rid, total in grid.items():
        if rid in skipped:  # (recorded all the same when a plain grid shares the folder)
            saved += total
            continue
        mine = recorded.get(rid, [])
        epochs = sum(r["round_epochs"] or 0 for r in mine)
        trained += epochs
        if rid in runs and len(mine) >= runs[rid]["rounds"] + 1:  # finished: what it skipped
            saved += max(0, total - epochs)
    total = sum(grid.values())
    return AdaptiveStatus(entry["seeds"], len(grid), total, trained, len(skipped), saved)


def _adaptive_entry(value: Any) -> bool:
    """Whether a sweep file's adaptive entry is what ``sweep.adaptive.sweep_entry`` writes."""
    return (
        isinstance(value, dict)
        and isinstance(value.get("seeds"), str)
        and isinstance(value.get("grid"), dict)
        and all(type(v) is int for v in value["grid"].values())
        and isinstance(value.get("skipped"), list)
        and all(isinstance(v, str) for v in value["skipped"])
    )


def format_status(status: SweepStatus) -> str:
    """The status as a few readable lines."""
    from sparsedd.events.progress import duration

    eta = status.eta_s
    eta_text = "unknown (no round recorded yet)" if eta is None else duration(eta)
    lines = [
        f"runs: {status.done} done, {status.running} running, {status.waiting} waiting",
        f"rounds: {status.rounds_done} of {status.rounds_total} done; "
        f"{status.epochs_left} epochs left",
        f"ETA: {eta_text}",
    ]
    for a in status.adaptive:
        share = a.saved / a.grid_epochs if a.grid_epochs else 0.0
        lines.append(
            f"adaptive seeds {a.seeds}: {a.trained} epochs trained; {a.saved} saved so far "
            f"({share:.0%}) of the full grid's {a.grid_epochs} epochs ({a.grid_runs} runs; "
            f"{a.runs_skipped} not needed)"
        )
    return "\n".join(lines)


def _plan_entry(value: Any) -> bool:
    """Whether a sweep file's entry for a run is what ``write_sweep_file`` writes."""
    return (
        isinstance(value, dict)
        and type(value.get("rounds")) is int
        and value["rounds"] >= 0
        and type(value.get("epochs_total")) is int
    )
