"""Grid → runs: expand the axes, name each run, and say what is done and what is left."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparsedd.config import Config, run_id
from sparsedd.errors import NoResultsError, UserError


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

    ``assignments`` (``--set``) apply to every run; grid values win over them.
    """
    from sparsedd.config import resolve_config

    out: dict[str, tuple[str, Config]] = {}
    for cell in cells:
        for combo in expand(cell.axes):
            extra = [f"{k}={_text(v)}" for k, v in combo.items()]
            cfg = resolve_config(cell.preset, cell.config_file, [*assignments, *extra], ("grid",))
            rid = run_id(cfg)
            # One run id named twice (a grid over `rounds` or over a key the run does not
            # read) is one run, trained for the most rounds asked.
            if rid in out and cfg.rounds <= out[rid][1].rounds:
                continue
            prefix = [f"preset={cell.preset}"] if len(cells) > 1 else []
            out[rid] = (
                out[rid][0] if rid in out else " ".join([*prefix, label_of(combo)]).strip(),
                cfg,
            )
    return list(out.values())


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def run_epochs(cfg: Config) -> int:
    """Epochs a whole run trains: the dense round and every pruning round."""
    return cfg.round0_epochs + cfg.rounds * cfg.epochs


def recorded_rounds(out_dir: str | Path) -> dict[str, set[int]]:
    """Recorded rounds by run id (empty when the folder holds no results yet)."""
    from sparsedd.store.results import ResultsStore

    try:
        store = ResultsStore(out_dir, create=False)
    except NoResultsError:  # none yet, or another run is creating the database right now
        return {}
    done: dict[str, set[int]] = {}
    for row in store.round_rows():
        done.setdefault(row["run_id"], set()).add(row["round"])
    return done


def saved_epoch(folder: Path) -> tuple[int, int] | None:
    """(round, epochs done in it) of a run's saved mid-round progress, if any."""
    from safetensors import safe_open

    from sparsedd.training.experiment import PROGRESS_FILE

    path = folder / PROGRESS_FILE
    if not path.exists():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("sparsedd", "{}"))
        return int(meta["round"]), int(meta["epoch"]) + 1
    except Exception:  # an unreadable file is the run's to refuse when it resumes
        return None


def plan(runs: Sequence[tuple[str, Config]], out_dir: str | Path) -> list[PlannedRun]:
    """Each run with what is recorded of it in ``out_dir`` and what it costs in epochs."""
    done = recorded_rounds(out_dir)
    planned = []
    for label, cfg in runs:
        rid = run_id(cfg)
        rounds = done.get(rid, set())
        epochs = sum(cfg.round0_epochs if k == 0 else cfg.epochs for k in rounds if k <= cfg.rounds)
        saved = saved_epoch(Path(out_dir) / "runs" / rid)
        if saved is not None and saved[0] not in rounds and saved[0] <= cfg.rounds:
            epochs += saved[1]
        n_recorded = len([k for k in rounds if k <= cfg.rounds])
        if n_recorded == cfg.rounds + 1 and not _last_checkpoint_exists(out_dir, cfg, rid):
            n_recorded -= 1  # its folder was deleted: the run drops its rows and recomputes
        planned.append(PlannedRun(cfg, rid, label, n_recorded, epochs, run_epochs(cfg)))
    return planned


def _last_checkpoint_exists(out_dir: str | Path, cfg: Config, rid: str) -> bool:
    from sparsedd.training.experiment import round_file

    return round_file(Path(out_dir) / "runs" / rid, cfg.rounds).exists()


def format_plan(planned: Sequence[PlannedRun]) -> str:
    """One line per run (id, state, epochs left, label) and a closing total."""
    lines = [f"{p.id}  {p.state:<22} {p.epochs_left:>7} epochs  {p.label}" for p in planned]
    states = [p.state.split(" ")[0] for p in planned]
    total = sum(p.epochs_left for p in planned)
    lines.append(
        f"{len(planned)} runs: {states.count('done')} done, {states.count('partial')} partial, "
        f"{states.count('new')} new; {total} epochs left of "
        f"{sum(p.epochs_total for p in planned)}"
    )
    return "\n".join(lines)
