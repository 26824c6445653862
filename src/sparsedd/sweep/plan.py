"""Grid → runs: expand the axes, name each run, and say what is done and what is left."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparsedd.components import run_id
from sparsedd.config import Config, coerce, parse_value, round_epochs, run_epochs
from sparsedd.errors import ConfigError, NoResultsError, UserError
from sparsedd.store.results_folder import ResultsFolder, check_out_layout
from sparsedd.store.run_folder import RunFolder

#: Keys of a YAML config file read by the sweep, not config keys: a study's ``grid:`` and its
#: ``adaptive_seeds:`` (see sweep/adaptive.py).
FILE_SWEEP_KEYS = ("grid", "adaptive_seeds")
#: The most runs one sweep may hold: every run is planned, checked and trained, and 10,000
#: runs of the demo already take weeks on one machine.
MAX_GRID_RUNS = 10_000
#: The most seeds one curve may get from ``--adaptive-seeds`` (each seed is a full run).
MAX_ADAPTIVE_SEEDS = 1_000
#: Config errors of a sweep named in full before "and N more".
NAMED_ERRORS = 3


@dataclass(frozen=True)
class Cell:
    """One block of a sweep: a preset (plus a YAML file and --set values) and its grid axes."""

    preset: str
    axes: Mapping[str, Sequence[Any]]
    config_file: str | None = None


@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep and where it stands in an output folder."""

    cfg: Config
    id: str
    label: str
    rounds_recorded: int
    epochs_done: int
    epochs_total: int
    seconds_per_epoch: float | None = None

    @property
    def state(self) -> str:
        """``done``, ``partial at round k`` or ``new``."""
        if self.rounds_recorded == self.cfg.rounds + 1:
            return "done"
        if self.rounds_recorded or self.epochs_done:
            return f"partial at round {self.rounds_recorded}"
        return "new"

    @property
    def epochs_left(self) -> int:
        """Epochs still to train."""
        return self.epochs_total - self.epochs_done

    @property
    def seconds_left(self) -> float | None:
        """Time still to train at the recorded pace (None: no comparable round recorded)."""
        if self.seconds_per_epoch is None:
            return None
        return self.epochs_left * self.seconds_per_epoch


def parse_grid_options(items: Sequence[str]) -> dict[str, list[str]]:
    """``KEY=V1,V2`` options → ``{KEY: [V1, V2]}``; a key given twice is refused."""
    axes: dict[str, list[str]] = {}
    seen: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--grid expects KEY=V1,V2,..., got {item!r} (no '=')")
        key, values = item.split("=", 1)
        name = key.strip()
        if name in seen:  # a second --grid KEY would silently override the first
            raise UserError(
                f"--grid {name} is given twice ({seen[name]!r} and {item!r}); "
                f"list every value in one --grid {name}=V1,V2,..."
            )
        seen[name] = item
        axis = values.split(",")
        if not values.strip():
            raise UserError(f"--grid {item!r} lists no values; give KEY=V1,V2,...")
        if any(not v.strip() for v in axis):  # `seed=0,,1` is a typo, not two values
            raise UserError(
                f"--grid {item!r} has an empty value between commas; give KEY=V1,V2,... "
                f"with a value between every two commas"
            )
        axes[name] = axis
    return axes


def expand(axes: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the axes' values (one empty combination for no axes)."""
    keys = list(axes)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*axes.values())]


def label_of(combo: Mapping[str, Any]) -> str:
    """A run's readable label in its sweep, e.g. ``weight_decay=0.1 seed=1``."""
    return " ".join(f"{k}={v}" for k, v in combo.items())


def sweep_configs(
    cells: Sequence[Cell], assignments: Sequence[str] = ()
) -> list[tuple[str, Config]]:
    """(label, config) of every run of the cells, without duplicates, in grid order.

    ``assignments`` (``--set``) apply to every run; grid values win over them. Each grid value
    is typed once (``grid_value``) and given to the config as that typed value.
    """
    from sparsedd.components import resolve_config

    check_grid_size(cells)
    out: dict[str, tuple[str, Config]] = {}
    errors: dict[str, list[str]] = {}
    typed: dict[tuple[str, str], Any] = {}
    tried = 0
    for cell in cells:
        for combo in expand(cell.axes):
            prefix = [f"preset={cell.preset}"] if len(cells) > 1 else []
            tried += 1
            try:
                values = {k: _typed(typed, k, v) for k, v in combo.items()}
                cfg = resolve_config(
                    cell.preset, cell.config_file, assignments, FILE_SWEEP_KEYS, values
                )
            except ConfigError as err:  # gather every run's errors: all are reported at once
                errors.setdefault(str(err), []).append(" ".join([*prefix, label_of(combo)]))
                continue
            rid = run_id(cfg)
            # One run id named twice (a grid over `rounds` or over a key the run does not
            # read) is one run, trained for the most rounds asked.
            if rid in out and cfg.rounds <= out[rid][1].rounds:
                continue
            out[rid] = (
                out[rid][0] if rid in out else " ".join([*prefix, label_of(combo)]).strip(),
                cfg,
            )
    if errors:
        raise ConfigError(all_errors(errors, tried))
    return list(out.values())


def check_grid_size(cells: Sequence[Cell]) -> None:
    """UserError when the cells' grids hold more than MAX_GRID_RUNS runs (counted, not built)."""
    total = 0
    for cell in cells:
        size = 1
        for values in cell.axes.values():
            size *= len(values)
        total += size
    if total > MAX_GRID_RUNS:
        axes = " × ".join(f"{len(v)} {k}" for cell in cells for k, v in cell.axes.items())
        raise UserError(
            f"the grid holds {total:,} runs ({axes}), more than the {MAX_GRID_RUNS:,} one sweep "
            f"may plan and train; split it into several sweeps, or give fewer values"
        )


def all_errors(errors: dict[str, list[str]], runs: int) -> str:
    """Config errors of a sweep's runs as one message: an error of every run reads as itself;
    otherwise each error is prefixed by the runs (grid labels) that have it. Long lists are
    summarised: the first few errors and labels, then how many more."""
    failing = sum(len(labels) for labels in errors.values())
    if len(errors) == 1 and failing == runs:
        return next(iter(errors))
    parts = [
        f"[{_first_few([label or 'the run' for label in labels])}] {message}"
        for message, labels in list(errors.items())[:NAMED_ERRORS]
    ]
    if len(errors) > NAMED_ERRORS:
        parts.append(f"and {len(errors) - NAMED_ERRORS} more errors")
    return f"{failing} of {runs} runs have config errors: " + "; ".join(parts)


def _first_few(labels: list[str]) -> str:
    more = f" and {len(labels) - NAMED_ERRORS} more runs" if len(labels) > NAMED_ERRORS else ""
    return ", ".join(labels[:NAMED_ERRORS]) + more


def check_adaptive_bound(text: str | None) -> None:
    """UserError for an ``--adaptive-seeds START:MAX`` whose MAX is beyond
    MAX_ADAPTIVE_SEEDS, or whose START is 0 (the rest of its form is checked where it is
    parsed)."""
    parts = str(text).split(":") if text is not None else []
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        return
    start, most = int(parts[0]), int(parts[1])
    if start < 1:
        raise UserError(
            f"--adaptive-seeds {text!r}: START must be at least 1 seed, e.g. "
            f"{min(2, max(most, 1))}:{max(most, 2)}"
        )
    if most > MAX_ADAPTIVE_SEEDS:
        raise UserError(
            f"--adaptive-seeds {text!r}: MAX ({most:,}) is more seeds than one curve can train "
            f"(each seed is a whole run); give MAX ≤ {MAX_ADAPTIVE_SEEDS:,}"
        )


def grid_value(key: str, value: Any) -> Any:
    """A grid value as config key ``key`` types it: text (``--grid``, a study) as ``--set``
    reads it, a YAML file's value as it is."""
    return parse_value(key, value) if isinstance(value, str) else coerce(key, value)


def _typed(cache: dict[tuple[str, str], Any], key: str, value: Any) -> Any:
    """``grid_value`` of each distinct (key, value) once, however many runs share it."""
    token = (key, repr(value))
    if token not in cache:
        cache[token] = grid_value(key, value)
    return cache[token]


def recorded_rows(out_dir: str | Path) -> list[dict[str, Any]]:
    """Every recorded round row of ``out_dir`` (empty when it holds no results yet)."""
    from sparsedd.store.results import ResultsStore

    try:
        store = ResultsStore(out_dir, create=False)
    except NoResultsError:  # none yet, or another run is creating the database right now
        return []
    return store.round_rows()


def seconds_per_epoch(rows: Sequence[Mapping[str, Any]]) -> float | None:
    """Recorded training pace: seconds over epochs of ``rows`` (None: none timed)."""
    timed = [r for r in rows if r.get("round_epochs") and r.get("seconds") is not None]
    epochs = sum(r["round_epochs"] for r in timed)
    return sum(r["seconds"] for r in timed) / epochs if epochs else None


def saved_epoch(folder: Path) -> tuple[int, int] | None:
    """(round, epochs done in it) of a run's saved mid-round progress, if any."""
    from safetensors import safe_open

    path = RunFolder(folder).progress
    if not path.exists():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("sparsedd", "{}"))
        return int(meta["round"]), int(meta["epoch"]) + 1
    except Exception:  # an unreadable file is the run's to refuse when it resumes
        return None


def plan(runs: Sequence[tuple[str, Config]], out_dir: str | Path) -> list[PlannedRun]:
    """Each run with what is recorded of it in ``out_dir`` and what it costs in epochs; the
    recorded rows are grouped by run once, so planning costs the rows and runs, not their
    product. Anything under ``out_dir`` that is not what sparsedd keeps there is refused
    first, before any run writes."""
    check_out_layout(out_dir)
    rows = recorded_rows(out_dir)
    by_run: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_run.setdefault(row["run_id"], []).append(row)
    pace_alike: dict[tuple[Any, ...], float | None] = {}
    planned = []
    for label, cfg in runs:
        rid = run_id(cfg)
        own = by_run.get(rid, [])
        # with the stop off, rounds recorded as collapsed (settled) are dropped and trained
        rounds = {r["round"] for r in own if cfg.collapse_stop or not r.get("collapsed")}
        epochs = sum(round_epochs(cfg, k) for k in rounds if k <= cfg.rounds)
        saved = saved_epoch(ResultsFolder(out_dir).run(rid).path)
        if saved is not None and saved[0] not in rounds and saved[0] <= cfg.rounds:
            epochs += saved[1]
        if cfg.collapse_stop and any(r.get("collapsed") for r in own):
            epochs = run_epochs(cfg)  # collapsed: its rounds left are recorded, not trained
        n_recorded = len([k for k in rounds if k <= cfg.rounds])
        if n_recorded == cfg.rounds + 1 and not _last_checkpoint_exists(out_dir, rid, own):
            n_recorded -= 1  # its folder was deleted: the run drops its rows and recomputes
        pace = _pace(cfg, own, rows, pace_alike)
        planned.append(PlannedRun(cfg, rid, label, n_recorded, epochs, run_epochs(cfg), pace))
    return planned


def _pace(
    cfg: Config,
    own: Sequence[Mapping[str, Any]],
    rows: Sequence[Mapping[str, Any]],
    alike_cache: dict[tuple[Any, ...], float | None],
) -> float | None:
    """A run's pace: its own recorded rounds, else those of runs of the same model, dataset
    and batch size in the folder (computed once per such kind); None when neither exists."""
    pace = seconds_per_epoch(own)
    if pace is not None:
        return pace
    alike = ("model", "dataset", "batch_size")
    key = tuple(getattr(cfg, k) for k in alike)
    if key not in alike_cache:
        alike_cache[key] = seconds_per_epoch(
            [r for r in rows if all(r.get(k) == getattr(cfg, k) for k in alike)]
        )
    return alike_cache[key]


def _last_checkpoint_exists(
    out_dir: str | Path, rid: str, own: Sequence[Mapping[str, Any]]
) -> bool:
    """Whether the checkpoint of the run's last trained round is there (collapsed rounds,
    recorded without training, have none); ``own`` holds the run's recorded rows."""
    trained = [r["round"] for r in own if not r.get("collapsed")]
    return not trained or ResultsFolder(out_dir).run(rid).round_file(max(trained)).exists()


#: The column names above the dry-run's lines, aligned with them.
PLAN_HEADER = f"{'run':<16}  {'state':<22} {'epochs left':>14}  {'time':>8}  setting"


def format_plan(planned: Sequence[PlannedRun]) -> str:
    """One line per run (id, state, epochs and time left, label), a total, and the time left
    at the pace recorded in the folder (for runs alike when a run has no round of its own)."""
    from sparsedd.events.progress import duration

    lines = [PLAN_HEADER] + [
        f"{p.id}  {p.state:<22} {p.epochs_left:>7} epochs  {_time(p.seconds_left):>8}  {p.label}"
        for p in planned
    ]
    states = [p.state.split(" ")[0] for p in planned]
    total = sum(p.epochs_left for p in planned)
    lines.append(
        f"{len(planned)} runs: {states.count('done')} done, {states.count('partial')} partial, "
        f"{states.count('new')} new; {total} epochs left of "
        f"{sum(p.epochs_total for p in planned)}"
    )
    left = [p for p in planned if p.epochs_left]
    unknown = [p for p in left if p.seconds_left is None]
    if not left:
        lines.append("time left: none")
    elif len(unknown) == len(left):
        lines.append(
            "time left: unknown (no round of these runs, or of runs of the same model, dataset "
            "and batch size, is recorded here yet)"
        )
    else:
        known = sum(p.seconds_left or 0.0 for p in left)
        rest = f", plus {len(unknown)} runs with no comparable recorded round" if unknown else ""
        lines.append(
            f"time left: about {duration(known)} one run at a time, at the recorded pace{rest}"
        )
    return "\n".join(lines)


def _time(seconds: float | None) -> str:
    from sparsedd.events.progress import duration

    return "?" if seconds is None else duration(seconds)
