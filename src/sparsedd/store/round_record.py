"""The round record: one row of the ``rounds`` table, typed.

:class:`RoundRecord` is what the evaluator (``training/evaluate.py``) measures, what the collapse
stop (``training/collapse.py``) writes for a round it skips, and what the results database
records (``store/results.py``). Its fields, in order, are the table's columns after ``run_id``;
each field's metadata gives the column's SQL type and the schema version that added it
(``store/schema.py`` builds the table and its upgrades from them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


def _column(sql: str, added: str | None = None, default: Any = dataclasses.MISSING) -> Any:
    """A field that is a ``rounds`` column of SQL type ``sql``, added in schema ``added``
    (None: there from the first schema)."""
    return field(default=default, metadata={"sql": sql, "added": added})


@dataclass(frozen=True)
class RoundRecord:
    """What is recorded of one round of a run: a trained round's measurements, or a
    collapsed (or settled) round's stand-in, whose metrics are None and epochs 0."""

    round: int = _column("INTEGER NOT NULL")
    sparsity: float = _column("REAL")
    params_remaining: int = _column("INTEGER")
    test_acc: float | None = _column("REAL")
    test_loss: float | None = _column("REAL")
    train_acc: float | None = _column("REAL")
    #: accuracy on the training images whose label is right
    train_acc_clean: float | None = _column("REAL")
    #: accuracy on the noisy labels of the training images whose label is wrong
    memorization: float | None = _column("REAL")
    val_acc: float | None = _column("REAL")
    epochs: int = _column("INTEGER")
    seconds: float = _column("REAL")
    #: each pruned layer's surviving fraction of weights (JSON in the table)
    layer_density: dict[str, float] = _column("TEXT")
    # where and with what the round was computed (schema 2)
    sparsedd_version: str | None = _column("TEXT", "2", None)
    git_commit: str | None = _column("TEXT", "2", None)
    torch_version: str | None = _column("TEXT", "2", None)
    device_name: str | None = _column("TEXT", "2", None)
    execution: str | None = _column("TEXT", "2", None)
    #: how many test images the round's accuracy is over (the verdict's binomial noise)
    n_test: int | None = _column("INTEGER", "4", None)
    activation_entropy: float | None = _column("REAL", "4", None)
    #: a round the run skipped because it had collapsed (or, a control, settled) (schema 5)
    collapsed: bool = _column("INTEGER", "5", False)
    #: which test images the round got right: ``np.packbits`` of one bool per image (schema 6)
    test_correct: bytes | None = _column("BLOB", "6", None)

    def as_row(self) -> dict[str, Any]:
        """The record as a dict of column → value (what reporters and trackers read)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


#: The columns of the rounds table after ``run_id``, in order, with their SQL types.
ROUND_RECORD_COLUMNS: dict[str, str] = {
    f.name: f.metadata["sql"] for f in dataclasses.fields(RoundRecord)
}


def columns_added_in(*versions: str | None) -> tuple[str, ...]:
    """The record's columns added by the schema versions ``versions`` (None: the first
    schema's), in order."""
    return tuple(f.name for f in dataclasses.fields(RoundRecord) if f.metadata["added"] in versions)
