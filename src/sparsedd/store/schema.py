"""The results database's schema: its tables and columns, what each column must hold, and
the checks that refuse a damaged or hand-edited database (table, column and row named).

``ResultsStore`` (``store/results.py``) writes and reads by these definitions.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

from sparsedd.errors import ConfigError
from sparsedd.store.round_record import ROUND_RECORD_COLUMNS, columns_added_in

APP_ID = "sparsedd"
SCHEMA_VERSION = "6"
#: Older schemas this version reads as they are and upgrades when it writes to them.
UPGRADABLE_SCHEMAS = ("1", "2", "3", "4", "5")

#: The rounds table's columns from the first schema on (after ``run_id``), but layer_density.
ROUND_FIELDS = columns_added_in(None)[: list(ROUND_RECORD_COLUMNS).index("layer_density")]
#: Where and with what each round was computed (schema 2; NULL in rounds recorded before).
PROVENANCE_FIELDS = columns_added_in("2")
#: Added in schema 4 (NULL in rounds recorded before): how many test images the round's accuracy
#: is over (the verdict's binomial noise), and the activation-state entropy of its model.
EVAL_FIELDS = columns_added_in("4")
#: Added in schema 5: 1 for a round a run skipped because it had collapsed (its accuracy sat at
#: a constant prediction's, or no prunable weight was left): nothing was trained or measured,
#: so its metrics are NULL, its epochs 0 and its sparsity the one the round would have had.
#: 0 for a trained round; NULL in rounds recorded before schema 5 (all trained).
STOP_FIELDS = columns_added_in("5")
#: Added in schema 6 (NULL in rounds recorded before, and in collapsed rounds): which test images
#: the round's model classified correctly, in the test set's order, as ``np.packbits`` of one
#: bool per image (big-endian bit order; ``n_test`` bits, 10,000 images take 1,250 bytes). The
#: verdict compares two rounds on the same images with it (``analysis/paired.py``). Read only
#: by ``ResultsStore.round_correctness``, never into the rounds table ``round_rows`` returns.
(CORRECTNESS_FIELD,) = columns_added_in("6")
#: Columns an older database may lack; upgrading adds them (with their SQL types).
ADDED_COLUMNS = {
    c: ROUND_RECORD_COLUMNS[c] for c in columns_added_in(*UPGRADABLE_SCHEMAS, SCHEMA_VERSION)
}
#: The rounds table's columns in the order ``ResultsStore`` writes and reads them.
RECORD_COLUMNS = ("run_id", *(c for c in ROUND_RECORD_COLUMNS if c != CORRECTNESS_FIELD))
#: The columns of a round row as ``round_rows`` returns it (after the run's config keys): the
#: round's own epoch count is ``round_epochs``, so that ``epochs`` stays the config's key.
ROUND_COLUMNS = (
    "run_id",
    *("round_epochs" if f == "epochs" else f for f in ROUND_FIELDS),
    *PROVENANCE_FIELDS,
    *EVAL_FIELDS,
    *STOP_FIELDS,
    "layer_density",
)

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, config TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS rounds (
    run_id TEXT NOT NULL REFERENCES runs(run_id), {rounds_columns},
    PRIMARY KEY (run_id, round));
CREATE TABLE IF NOT EXISTS epochs (
    run_id TEXT NOT NULL REFERENCES runs(run_id), round INTEGER NOT NULL,
    epoch INTEGER NOT NULL, train_loss REAL, train_acc REAL,
    PRIMARY KEY (run_id, round, epoch));
""".format(rounds_columns=", ".join(f"{c} {sql}" for c, sql in ROUND_RECORD_COLUMNS.items()))

# What each column must hold (SQLite does not enforce declared types): a damaged or hand-edited
# database is refused when opened, with the table, column and row named.
_INTEGER, _NUMBER = "typeof({c}) = 'integer'", "typeof({c}) IN ('integer', 'real')"
_NUMBER_OR_NULL = "typeof({c}) IN ('integer', 'real', 'null')"
_INTEGER_OR_NULL = "typeof({c}) IN ('integer', 'null')"
_FLAG_OR_NULL = "typeof({c}) = 'null' OR {c} IN (0, 1)"
_TEXT = "typeof({c}) = 'text'"
_TEXT_OR_NULL = "typeof({c}) IN ('text', 'null')"
_BLOB_OR_NULL = "typeof({c}) IN ('blob', 'null')"
_JSON_OBJECT = (  # CASE: json_type would fail on invalid JSON before AND could stop it
    "typeof({c}) = 'text' AND CASE WHEN json_valid({c}) THEN json_type({c}) = 'object' ELSE 0 END"
)
VALUE_RULES = {
    "runs": {"run_id": _TEXT, "config": _JSON_OBJECT, "created": _NUMBER},
    "rounds": {
        "run_id": _TEXT,
        "round": _INTEGER,
        "sparsity": _NUMBER,
        **{f: _NUMBER_OR_NULL for f in ROUND_FIELDS if f not in ("round", "sparsity")},
        "params_remaining": _INTEGER,
        "epochs": _INTEGER,
        "seconds": _NUMBER,
        "layer_density": _JSON_OBJECT,
        "n_test": _INTEGER_OR_NULL,
        "activation_entropy": _NUMBER_OR_NULL,
        "collapsed": _FLAG_OR_NULL,
        CORRECTNESS_FIELD: _BLOB_OR_NULL,
        **dict.fromkeys(PROVENANCE_FIELDS, _TEXT_OR_NULL),
    },
    "epochs": {
        "run_id": _TEXT,
        "round": _INTEGER,
        "epoch": _INTEGER,
        "train_loss": _NUMBER_OR_NULL,
        "train_acc": _NUMBER_OR_NULL,
    },
}
RULE_WORDS = {
    _INTEGER: "an integer",
    _NUMBER: "a number",
    _NUMBER_OR_NULL: "a number or NULL",
    _INTEGER_OR_NULL: "an integer or NULL",
    _TEXT: "text",
    _TEXT_OR_NULL: "text or NULL",
    _JSON_OBJECT: "a JSON object",
    _FLAG_OR_NULL: "0, 1 or NULL",
    _BLOB_OR_NULL: "bytes or NULL",
}


_SCALARS = (str, int, float, bool, type(None))
#: Config keys that every sparsedd version has recorded for every run and that the analysis
#: and `status` compute with: where some runs of a database hold one, all must.
CORE_CONFIG_KEYS = ("noise", "weight_decay", "epochs", "rounds")


def config_problem(config: dict[str, Any]) -> str | None:
    """What is wrong with a run's recorded config (None: nothing): a value of the wrong type
    for its key, or a nested value (none of sparsedd's keys holds one). Keys may be missing:
    a config recorded by another version, or through the Python API, lacks some."""
    from sparsedd.config import FIELDS, coerce

    for key, value in config.items():
        if not isinstance(value, _SCALARS):
            return f"has a {type(value).__name__} as config key {short(key)}"
        if key not in FIELDS:
            continue  # a key of another sparsedd version: shown as it is
        try:
            coerced = coerce(key, value)
        except ConfigError:
            coerced = NOT_JSON
        # as recorded: "0.1" is not the number 0.1, nor "true" a switch
        if coerced != value or isinstance(value, str) != isinstance(coerced, str):
            return f"has {short(value)} as config key {key!r}"
    return None


def density_problem(density: Any) -> str | None:
    """What is wrong with a round's recorded layer densities (None: nothing)."""
    if not isinstance(density, dict):
        return "layer densities that are not a mapping"
    for name, value in density.items():
        if type(value) not in (int, float) or not 0.0 <= value <= 1.0:
            return f"layer density {short(value)} for layer {short(name)}"
    return None


def short(value: Any) -> str:
    """A recorded value as an error message names it, cut to keep the message one line."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_json(text: str) -> Any:
    """Parsed JSON, or a marker object for text that is not (or nests too deep to parse)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return NOT_JSON


NOT_JSON = object()


def schema_columns() -> dict[str, list[str]]:
    """Columns of each table, as the schema this sparsedd writes defines them."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(SCHEMA_SQL)
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: [r[1] for r in conn.execute(f"PRAGMA table_info({t})")] for t in tables}
    finally:
        conn.close()


def layout_problem(execute: Callable[[str], list[tuple]]) -> str | None:
    """What makes a database's tables, columns or values other than what sparsedd writes (None:
    nothing); ``execute(sql)`` returns the rows of one read-only statement on it."""
    for table, columns in schema_columns().items():
        found = [r[1] for r in execute(f"PRAGMA table_info({table})")]
        if not found:
            return f"table {table!r} is missing"
        extra = [c for c in found if c not in columns]
        # an older database is read as it is: it lacks the columns added since
        missing = [c for c in columns if c not in found and c not in ADDED_COLUMNS]
        if extra:
            return f"table {table!r} has an extra column {extra[0]!r}"
        if missing:
            return f"table {table!r} has no column {missing[0]!r}"
    for table, all_rules in VALUE_RULES.items():
        present = {r[1] for r in execute(f"PRAGMA table_info({table})")}
        rules = {c: rule for c, rule in all_rules.items() if c in present}
        checks = [rule.format(c=column) for column, rule in rules.items()]
        flags = ", ".join(f"NOT ({c})" for c in checks)
        where = " OR ".join(f"NOT ({c})" for c in checks)
        rows = execute(f"SELECT rowid, {flags} FROM {table} WHERE {where} LIMIT 1")
        if rows:
            bad = [col for col, flag in zip(rules, rows[0][1:], strict=True) if flag]
            column = bad[0] if bad else next(iter(rules))
            return (
                f"table {table!r} row {rows[0][0]} has a value in column {column!r} "
                f"that is not {RULE_WORDS[rules[column]]}"
            )
    return None
