"""Where every file of a run's folder (``<out>/runs/<id>/…``) lives.

:class:`RunFolder` is the one owner of the paths inside a run's folder; nothing else builds
them (``store/results_folder.py`` owns those above it). The names are part of the on-disk
format (existing results folders resume with them).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from sparsedd.errors import StoreError

CONFIG_FILE = "config.yaml"
LABELS_FILE = "labels.safetensors"
DATA_FILE = "data.json"
PROGRESS_FILE = "progress.safetensors"
LOCK_NAME = ".lock"
TENSORBOARD_DIR = "tensorboard"
_ROUND = re.compile(r"round_(\d+)\.safetensors")


@dataclass(frozen=True)
class RunFolder:
    """The folder of one run and the path of each file in it."""

    path: Path

    @property
    def id(self) -> str:
        """The run id (the folder's name)."""
        return self.path.name

    def sibling(self, run_id: str) -> RunFolder:
        """The folder of run ``run_id`` in the same results folder."""
        return RunFolder(self.path.parent / run_id)

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

    @property
    def tensorboard(self) -> Path:
        """The run's TensorBoard event files (``--log tensorboard``)."""
        return self.path / TENSORBOARD_DIR

    def round_file(self, round_: int) -> Path:
        """Checkpoint (weights and masks) written at the end of trained round ``round_``."""
        return self.path / f"round_{round_:03d}.safetensors"

    def checkpointed_rounds(self) -> list[int]:
        """Rounds whose end-of-round checkpoint exists, in order."""
        found = (_ROUND.fullmatch(p.name) for p in self.path.glob("round_*.safetensors"))
        return sorted(int(m.group(1)) for m in found if m)


def check_run_files(folder: Path) -> None:
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
