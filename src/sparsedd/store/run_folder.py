"""Where every file of a results folder lives: ``<out>/runs/<id>/…`` and ``<out>/sweeps``.

:class:`RunFolder` is the one owner of the paths inside a run's folder; nothing else builds
them. The names are part of the on-disk format (existing results folders resume with them).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from sparsedd.errors import ConfigError, StoreError
from sparsedd.store.schema import DB_NAME

RUNS_DIR = "runs"
SWEEPS_DIR = "sweeps"
CONFIG_FILE = "config.yaml"
LABELS_FILE = "labels.safetensors"
DATA_FILE = "data.json"
PROGRESS_FILE = "progress.safetensors"
LOCK_NAME = ".lock"
_ROUND = re.compile(r"round_(\d+)\.safetensors")
#: The name of a run's folder: its id, 16 hex digits.
RUN_ID = re.compile(r"[0-9a-f]{16}")


def runs_dir(out_dir: str | Path) -> Path:
    """The folder holding one folder per run of a results folder."""
    return Path(out_dir) / RUNS_DIR


def sweeps_dir(out_dir: str | Path) -> Path:
    """The folder holding the sweep files (one JSON file per sweep) of a results folder."""
    return Path(out_dir) / SWEEPS_DIR


@dataclass(frozen=True)
class RunFolder:
    """The folder of one run and the path of each file in it."""

    path: Path

    @classmethod
    def of(cls, out_dir: str | Path, run_id: str) -> RunFolder:
        """The folder of run ``run_id`` inside results folder ``out_dir``."""
        return cls(runs_dir(out_dir) / run_id)

    @property
    def id(self) -> str:
        """The run id (the folder's name)."""
        return self.path.name

    @property
    def config(self) -> Path:
        """The run's full config (its ``rounds`` the most asked for so far)."""
        return self.path / CONFIG_FILE

    @property
    def labels(self) -> Path:
        """The run's noisy training and validation labels with their dataset indices."""
        return self.path / LABELS_FILE

    @property
    def data(self) -> Path:
        """Digests of the data the run trained on (checked on resume)."""
        return self.path / DATA_FILE

    @property
    def progress(self) -> Path:
        """Mid-round state (weights, masks, optimizer) to resume a round from."""
        return self.path / PROGRESS_FILE

    @property
    def lock(self) -> Path:
        """The advisory lock file held by the process that trains the run."""
        return self.path / LOCK_NAME

    def round_file(self, round_: int) -> Path:
        """Checkpoint (weights and masks) written at the end of trained round ``round_``."""
        return self.path / f"round_{round_:03d}.safetensors"

    def checkpointed_rounds(self) -> list[int]:
        """Rounds whose end-of-round checkpoint exists, in order."""
        found = (_ROUND.fullmatch(p.name) for p in self.path.glob("round_*.safetensors"))
        return sorted(int(m.group(1)) for m in found if m)


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
    out = Path(out_dir)
    fix = "move it away, or choose another --out"
    if out.exists() and not out.is_dir():
        raise StoreError(f"output folder {out} is a file, not a folder; {fix}")
    for name in (RUNS_DIR, SWEEPS_DIR):
        path = out / name
        if path.exists() and not path.is_dir():
            raise StoreError(f"{path} is a file, but sparsedd keeps its {name} folder there; {fix}")
    db = out / DB_NAME  # (its -wal and -shm may be absent where storage is read-only)
    if (db.exists() or db.is_symlink()) and not db.is_file():
        raise StoreError(
            f"{db} is not a regular file (a folder, a dangling link or a device), but "
            f"sparsedd keeps its results database there; {fix}"
        )
    runs = out / RUNS_DIR
    if not runs.is_dir():
        return
    with os.scandir(runs) as entries:
        for entry in entries:
            if RUN_ID.fullmatch(entry.name) and not entry.is_dir():
                raise StoreError(
                    f"{entry.path} is not a folder, but it is where run {entry.name} keeps "
                    f"its checkpoints; move it away (the run is then recomputed)"
                )
            if RUN_ID.fullmatch(entry.name) and entry.is_dir():
                _check_run_files(Path(entry.path))


def _check_run_files(folder: Path) -> None:
    """StoreError when something other than a regular file stands where a run keeps one of its
    files (its config, labels, data identity, progress or a round's checkpoint)."""
    names = (CONFIG_FILE, LABELS_FILE, DATA_FILE, PROGRESS_FILE)
    with os.scandir(folder) as entries:
        for entry in entries:
            kept = entry.name in names or _ROUND.fullmatch(entry.name)
            if kept and not entry.is_file():
                raise StoreError(
                    f"{entry.path} is not a regular file, but it is where run {folder.name} "
                    f"keeps its {entry.name}; move it away, or choose another --out"
                )
