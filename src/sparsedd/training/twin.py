"""A control and its pruned twin share their dense round.

A control (``pruning: false``) and the pruned run of the same config train the same round 0:
pruning starts after it. A run whose twin has recorded round 0 in the same results folder
adopts it (its checkpoint, under its own run id, and its row) instead of training it again,
when the twin's checkpoint was trained on the same data (the same data identity).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from sparsedd.components import run_id
from sparsedd.config import Config
from sparsedd.store import checkpoint as ckpt
from sparsedd.store.results import ResultsStore, RunStore
from sparsedd.store.run_folder import RunFolder
from sparsedd.training.reporter import Reporter


class Twinned(Protocol):
    """What adopting a twin's dense round needs of a run (an ``Experiment``)."""

    cfg: Config
    id: str
    store: RunStore
    files: RunFolder
    reporter: Reporter

    def input_meta(self) -> dict[str, Any]: ...


def twin_id(cfg: Config) -> str:
    """The run id of ``cfg``'s twin: the same config with ``pruning`` the other way."""
    return run_id(dataclasses.replace(cfg, pruning=not cfg.pruning))


def adopt_dense_round(run: Twinned) -> bool:
    """Record ``run``'s round 0 as its twin's (checkpoint and row) when the twin recorded it
    on the same data; whether it did. A Ray worker's ledger store trains its own."""
    store = run.store
    if not isinstance(store, ResultsStore):
        return False
    twin = twin_id(run.cfg)
    source = run.files.sibling(twin).round_file(0)
    if 0 not in store.rounds_done(twin) or not source.exists():
        return False
    tensors, meta = ckpt.load_tensors(source)
    if (meta.get("run_id"), meta.get("round"), meta.get("input")) != (twin, 0, run.input_meta()):
        return False  # another run's, or other data: train it
    ckpt.save_tensors(run.files.round_file(0), tensors, {**meta, "run_id": run.id})
    store.copy_round(twin, run.id, 0)
    run.files.progress.unlink(missing_ok=True)
    run.reporter.note(
        run.id,
        f"run {run.id}: round 0 is run {twin}'s dense round (the same training: pruning starts "
        f"after it), recorded without training it again",
    )
    return True
