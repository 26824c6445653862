"""Where everything under a results folder (``--out``) lives: the database, the figure, the
report, MLflow's store, ``runs/<id>/…`` and ``sweeps/``.

:class:`ResultsFolder` is the one owner of the paths at the top of a results folder, as
:class:`~sparsedd.store.run_folder.RunFolder` is of those inside a run's folder; nothing else
builds them. The names are part of the on-disk format (existing results folders are read with
them).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from sparsedd.errors import ConfigError, StoreError
from sparsedd.store.run_folder import RunFolder, check_run_files

DB_NAME = "results.sqlite"
RUNS_DIR = "runs"
SWEEPS_DIR = "sweeps"
FIGURE_FILE = "sdd.png"
LAYERS_FIGURE_FILE = "layers.png"
REPORT_FILE = "report.html"
MLFLOW_DB = "mlflow.db"
MLFLOW_ARTIFACTS = "mlartifacts"
#: The name of a run's folder: its id, 16 hex digits.
RUN_ID = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True)
class ResultsFolder:
    """A results folder (``--out``) and the path of each thing in it."""

    path: Path

    def __init__(self, out_dir: str | Path) -> None:
        object.__setattr__(self, "path", Path(out_dir))

    @property
    def database(self) -> Path:
        """The results database (SQLite): runs, rounds and epochs of every run."""
        return self.path / DB_NAME

    @property
    def runs(self) -> Path:
        """The folder holding one folder per run."""
        return self.path / RUNS_DIR

    @property
    def sweeps(self) -> Path:
        """The folder holding the sweep files (one JSON file per sweep)."""
        return self.path / SWEEPS_DIR

    def run(self, run_id: str) -> RunFolder:
        """The folder of run ``run_id``."""
        return RunFolder(self.runs / run_id)

    def sweep_file(self, name: str) -> Path:
        """The file of sweep ``name``: its planned runs (and an adaptive study's settings)."""
        return self.sweeps / f"{name}.json"

    def sweep_files(self) -> list[Path]:
        """Every sweep file, in name order."""
        return sorted(self.sweeps.glob("*.json"))

    @property
    def figure(self) -> Path:
        """``sparsedd plot``'s default figure."""
        return self.path / FIGURE_FILE

    @property
    def layers_figure(self) -> Path:
        """``sparsedd plot --layers``'s default figure."""
        return self.path / LAYERS_FIGURE_FILE

    @property
    def report(self) -> Path:
        """``sparsedd report``'s default HTML page."""
        return self.path / REPORT_FILE

    @property
    def mlflow_db(self) -> Path:
        """MLflow's tracking database when ``MLFLOW_TRACKING_URI`` is not set."""
        return self.path / MLFLOW_DB

    @property
    def mlflow_artifacts(self) -> Path:
        """MLflow's artifact store when ``MLFLOW_TRACKING_URI`` is not set."""
        return self.path / MLFLOW_ARTIFACTS


def check_path_encoding(out_dir: Path) -> None:
    """Refuse an output folder whose name the checkpoint library cannot open (not UTF-8)."""
    try:
        str(out_dir.resolve()).encode("utf-8")
    except (RuntimeError, OSError) as err:  # a symlink loop (RuntimeError before Python 3.13)
        reason = "symlinks that loop" if "loop" in str(err).lower() else str(err)
        raise ConfigError(
            f"output folder {str(out_dir)!r} cannot be used: its path runs through {reason}; "
            f"choose another --out"
        ) from None
    except UnicodeEncodeError:
        raise ConfigError(
            f"output folder {str(out_dir)!r} has a name that is not valid UTF-8, which "
            f"checkpoints cannot be written to; choose a UTF-8 --out name"
        ) from None


def check_out_layout(out_dir: str | Path) -> None:
    """StoreError naming the path and the fix when something under ``out_dir`` is not what
    sparsedd keeps there: a file where a folder belongs (``runs``, ``sweeps``, a run's
    folder) or a folder where a file belongs (``results.sqlite``). Called before anything is
    written, so that a refusal leaves the folder as it was."""
    out = ResultsFolder(out_dir)
    fix = "move it away, or choose another --out"
    if out.path.exists() and not out.path.is_dir():
        raise StoreError(f"output folder {out.path} is a file, not a folder; {fix}")
    for path in (out.runs, out.sweeps):
        if path.exists() and not path.is_dir():
            raise StoreError(
                f"{path} is a file, but sparsedd keeps its {path.name} folder there; {fix}"
            )
    db = out.database  # (its -wal and -shm may be absent where storage is read-only)
    if (db.exists() or db.is_symlink()) and not db.is_file():
        raise StoreError(
            f"{db} is not a regular file (a folder, a dangling link or a device), but "
            f"sparsedd keeps its results database there; {fix}"
        )
    if not out.runs.is_dir():
        return
    with os.scandir(out.runs) as entries:
        for entry in entries:
            if RUN_ID.fullmatch(entry.name) and not entry.is_dir():
                raise StoreError(
                    f"{entry.path} is not a folder, but it is where run {entry.name} keeps "
                    f"its checkpoints; move it away (the run is then recomputed)"
                )
            if RUN_ID.fullmatch(entry.name) and entry.is_dir():
                check_run_files(Path(entry.path))
