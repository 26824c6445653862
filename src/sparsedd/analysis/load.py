"""Loading a results folder into a rounds DataFrame, and naming its curves.

A *curve* is the set of runs that differ only in ``seed`` (and in keys that change no result:
``NOT_CURVE_KEYS``); ``curve_identity`` is that definition, which adaptive seeds
(``sweep/adaptive.py``) group a grid's runs by as well. A curve's label names the keys that
tell it apart (model, dataset, noise, λ, and any other key that varies).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sparsedd.analysis.convergence import dense_epoch_accs
from sparsedd.analysis.set_size import recover_n_test
from sparsedd.config import DEFAULTS, NON_SEMANTIC, NOT_IN_RUN_ID, to_dict
from sparsedd.errors import UserError
from sparsedd.store.results import ResultsStore
from sparsedd.store.schema import CORRECTNESS_FIELD
from sparsedd.store.schema import ROUND_COLUMNS as STORE_ROUND_COLUMNS

#: Config keys whose values do not tell curves apart: the seed, settings that change no
#: result, and how many rounds a run was asked for.
NOT_CURVE_KEYS = frozenset({"seed"}) | NON_SEMANTIC | NOT_IN_RUN_ID
#: Keys always in a curve's label (when present), varying or not.
ALWAYS_KEYS = ("model", "dataset", "noise", "weight_decay")
#: Per-round columns that are not config keys (``round_epochs`` is the round's own epoch count;
#: the config key ``epochs`` keeps its name, and runs that differ in it are different curves).
ROUND_COLUMNS = frozenset(STORE_ROUND_COLUMNS) | {"curve", CORRECTNESS_FIELD}


def row_config_keys(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The config keys of round rows (every key that is not a round column), in first-seen order."""
    keys: dict[str, None] = {}
    for row in rows:
        keys.update((k, None) for k in row if k not in ROUND_COLUMNS)
    return list(keys)


def differing_keys(rows: Sequence[dict[str, Any]], semantic: bool = False) -> list[str]:
    """Config keys (other than seed) whose value differs between the runs of ``rows``.

    ``semantic``: only keys that change results (not NON_SEMANTIC ones such as ``threads``).
    """
    runs = {row.get("run_id"): row for row in rows}.values()
    return [
        key
        for key in row_config_keys(rows)
        if key != "seed"
        and not (semantic and key in NON_SEMANTIC)
        and len({hashable(run.get(key)) for run in runs}) > 1
    ]


def _sort_value(value: Any) -> tuple:
    """A sort key that orders None, then numbers, then anything else as text."""
    value = hashable(value)
    if value is None:
        return (0, 0)
    if isinstance(value, bool | int | float | np.number):
        return (1, float(value))
    return (2, str(value))


def order_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Round rows sorted by config (model, dataset, noise, λ, then the other keys that differ),
    then seed, run and round: the order of ``results`` and of ``export``."""
    keys = [k for k in ALWAYS_KEYS if any(k in r for r in rows)]
    keys += [k for k in differing_keys(rows) if k not in keys]
    keys += ["seed", "run_id", "round"]
    return sorted(rows, key=lambda r: tuple(_sort_value(r.get(k)) for k in keys))


def rows_to_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Round rows (as ``ResultsStore.round_rows`` gives them) in ``order_rows`` order."""
    if not rows:
        raise UserError("no recorded rounds to analyse; run `sparsedd run --out DIR` first")
    return pd.DataFrame(order_rows(rows))


def with_default_keys(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows whose run recorded no value for a config key that other runs of the folder record
    (it was recorded before the key existed) take the key's default: what that run computed,
    as a new key's default keeps every earlier run's result and id. Runs of one curve then
    never split on a key added since."""
    recorded = set().union(*(r.keys() for r in rows)) if rows else set()
    defaults = {k: v for k, v in to_dict(DEFAULTS).items() if k in recorded}
    return [{**r, **{k: v for k, v in defaults.items() if k not in r}} for r in rows]


def load_results(out_dir: str | Path, correctness: bool = False) -> pd.DataFrame:
    """All recorded rounds of a results folder: one row per (run, round).

    Columns, as ``sparsedd results`` prints them: every config key of the run (``epochs`` is
    the config's), then ``store.ROUND_COLUMNS``: ``run_id``, the round fields with
    ``round_epochs`` (epochs trained in that round), the provenance fields, ``collapsed`` (1: a
    round the run skipped once it had collapsed; its metrics are None) and ``layer_density``
    (a dict column: layer name → fraction of weights surviving).

    Runs that recorded no test-set size (older databases) get it recovered where it can be
    (``set_size.recover_n_test``), said in a note in ``df.attrs["notes"]``; where it cannot
    be, it stays missing.

    ``correctness``: also a ``test_correct`` column, the round's packed per-image test
    correctness (bytes; None where not recorded: collapsed rounds, older databases), which
    ``analysis.paired`` reads. Left out by default: the tables have no use for it.
    """
    store = ResultsStore(out_dir, create=False)
    rows = with_default_keys(store.round_rows())
    if correctness:
        bits = store.round_correctness()
        for row in rows:
            row[CORRECTNESS_FIELD] = bits.get((row["run_id"], row["round"]), (None, 0))[0]
    if not rows:
        raise UserError(f"no recorded rounds in {out_dir}; let a run finish its dense round first")
    kept, diverged = drop_diverged(rows)
    if not kept:
        raise UserError(
            f"every recorded run in {out_dir} diverged at its dense round (non-finite loss); "
            f"re-run with a lower 'lr'"
        )
    df, size_notes = recover_n_test(rows_to_frame(kept))
    df.attrs["notes"] = [
        f"run {run} diverged at round {k} (non-finite loss): its rounds from {k} on are left out"
        for run, k in sorted(diverged.items())
    ] + size_notes
    # the dense round's training accuracy per epoch (analysis/convergence.py reads it)
    df.attrs["dense_train_acc"] = dense_epoch_accs(store.epoch_rows())
    return df


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def drop_diverged(rows: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Rows without diverged rounds, and per diverged run the first round left out.

    A round whose test loss or accuracy is not a finite number (NaN is stored as NULL) diverged;
    every later round of that run started from it, so it is left out as well. Databases written
    before sparsedd stopped diverged runs may hold such rounds. A collapsed round (one the
    collapse stop skipped: ``collapsed`` 1, metrics NULL) did not diverge and is kept.
    """
    diverged: dict[str, int] = {}
    for row in rows:
        if row.get("collapsed"):  # skipped by the collapse stop: no metrics, not diverged
            continue
        if "test_loss" in row and not (_finite(row["test_loss"]) and _finite(row["test_acc"])):
            run = row["run_id"]
            diverged[run] = min(diverged.get(run, row["round"]), row["round"])
    kept = [r for r in rows if r["round"] < diverged.get(r["run_id"], r["round"] + 1)]
    return kept, diverged


def collapsed_flags(df: pd.DataFrame) -> pd.Series:
    """Per row of a rounds DataFrame, whether it is a collapsed round (one the collapse stop
    skipped, so nothing was trained or measured); all False where no ``collapsed`` column is
    (rounds recorded before schema 5, or built by hand)."""
    if "collapsed" not in df.columns:
        return pd.Series(False, index=df.index)
    # as objects: a column of True and None (statistics) is read like one of 1 and NULL
    return pd.to_numeric(df["collapsed"].astype(object), errors="coerce").fillna(0).astype(bool)


def config_keys(df: pd.DataFrame) -> list[str]:
    """The config columns of a rounds DataFrame (everything that is not a round field)."""
    return [c for c in df.columns if c not in ROUND_COLUMNS]


def hashable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return value


def varying_keys(df: pd.DataFrame) -> list[str]:
    """Config keys (other than seed, ``rounds`` and settings that do not change results) that
    vary by run: seeds stopped after different numbers of rounds still make one curve."""
    runs = df.drop_duplicates("run_id")
    keys = []
    for key in config_keys(df):
        if key in NOT_CURVE_KEYS:
            continue
        if len({hashable(v) for v in runs[key]}) > 1:
            keys.append(key)
    return keys


def curve_identity(config: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """What every run of one curve shares: its config but ``NOT_CURVE_KEYS``, sorted by key."""
    return tuple(sorted((k, hashable(v)) for k, v in config.items() if k not in NOT_CURVE_KEYS))


def curve_keys(df: pd.DataFrame) -> list[str]:
    """Keys naming a curve: model, dataset, noise, weight_decay (if present) + varying keys."""
    present = [k for k in ALWAYS_KEYS if k in df.columns]
    return present + [k for k in varying_keys(df) if k not in present]


def label(keys: Sequence[str], values: Sequence[Any]) -> str:
    return " ".join(f"{k}={_fmt_value(v)}" for k, v in zip(keys, values, strict=True))


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def add_curve_column(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` with a ``curve`` column: the label shared by runs differing only in seed."""
    keys = curve_keys(df)
    out = df.copy()
    out["curve"] = [label(keys, [hashable(v) for v in vals]) for vals in df[keys].itertuples(False)]
    return out
