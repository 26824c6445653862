"""Writing a results table to a Parquet or CSV file (`sparsedd export -o FILE`)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from sparsedd.errors import UserError
from sparsedd.store.atomic import atomic_write


def export_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` to ``path`` as Parquet (.parquet) or CSV (.csv); dict columns become JSON."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise UserError(f"cannot export to {path.name!r}: use a .parquet or .csv file name")
    out = df.copy()
    for col in out.columns:
        if out[col].map(lambda v: isinstance(v, dict | list)).any():
            out[col] = out[col].map(lambda v: json.dumps(v, sort_keys=True))
    if not path.parent.exists():
        raise UserError(f"cannot write {path}: folder {path.parent} does not exist")
    if suffix == ".csv":
        atomic_write(path, lambda tmp: out.to_csv(tmp, index=False))
        return path
    try:
        atomic_write(path, lambda tmp: out.to_parquet(tmp, index=False))
    except ImportError:
        raise UserError(
            "Parquet export needs pyarrow: `pip install pyarrow`, or export to a .csv file"
        ) from None
    return path
