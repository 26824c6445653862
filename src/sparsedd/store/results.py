"""The results database (SQLite, WAL) of one output folder, and its run folders."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from sparsedd.errors import ConfigError, NoResultsError, StoreError

DB_NAME = "results.sqlite"
APP_ID = "sparsedd"
SCHEMA_VERSION = "5"
#: Older schemas this version reads as they are and upgrades when it writes to them.
UPGRADABLE_SCHEMAS = ("1", "2", "3", "4")

ROUND_FIELDS = (
    "round",
    "sparsity",
    "params_remaining",
    "test_acc",
    "test_loss",
    "train_acc",
    "train_acc_clean",
    "memorization",
    "val_acc",
    "epochs",
    "seconds",
)
#: Where and with what each round was computed (schema 2; NULL in rounds recorded before).
PROVENANCE_FIELDS = ("sparsedd_version", "git_commit", "torch_version", "device_name", "execution")
#: Added in schema 4 (NULL in rounds recorded before): how many test images the round's accuracy
#: is over (the verdict's binomial noise), and the activation-state entropy of its model.
EVAL_FIELDS = ("n_test", "activation_entropy")
#: Added in schema 5: 1 for a round a run skipped because it had collapsed (its accuracy sat at
#: a constant prediction's, or no prunable weight was left): nothing was trained or measured,
#: so its metrics are NULL, its epochs 0 and its sparsity the one the round would have had.
#: 0 for a trained round; NULL in rounds recorded before schema 5 (all trained).
STOP_FIELDS = ("collapsed",)
#: Columns an older database may lack; upgrading adds them (with their SQL types).
ADDED_COLUMNS = {
    **dict.fromkeys(PROVENANCE_FIELDS, "TEXT"),
    "n_test": "INTEGER",
    "activation_entropy": "REAL",
    "collapsed": "INTEGER",
}
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

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, config TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS rounds (
    run_id TEXT NOT NULL REFERENCES runs(run_id), round INTEGER NOT NULL,
    sparsity REAL, params_remaining INTEGER, test_acc REAL, test_loss REAL, train_acc REAL,
    train_acc_clean REAL, memorization REAL, val_acc REAL, epochs INTEGER, seconds REAL,
    layer_density TEXT, sparsedd_version TEXT, git_commit TEXT, torch_version TEXT,
    device_name TEXT, execution TEXT, n_test INTEGER, activation_entropy REAL,
    collapsed INTEGER,
    PRIMARY KEY (run_id, round));
CREATE TABLE IF NOT EXISTS epochs (
    run_id TEXT NOT NULL REFERENCES runs(run_id), round INTEGER NOT NULL,
    epoch INTEGER NOT NULL, train_loss REAL, train_acc REAL,
    PRIMARY KEY (run_id, round, epoch));
"""

# What each column must hold (SQLite does not enforce declared types): a damaged or hand-edited
# database is refused when opened, with the table, column and row named.
_INTEGER, _NUMBER = "typeof({c}) = 'integer'", "typeof({c}) IN ('integer', 'real')"
_NUMBER_OR_NULL = "typeof({c}) IN ('integer', 'real', 'null')"
_INTEGER_OR_NULL = "typeof({c}) IN ('integer', 'null')"
_FLAG_OR_NULL = "typeof({c}) = 'null' OR {c} IN (0, 1)"
_TEXT = "typeof({c}) = 'text'"
_TEXT_OR_NULL = "typeof({c}) IN ('text', 'null')"
_JSON_OBJECT = (  # CASE: json_type would fail on invalid JSON before AND could stop it
    "typeof({c}) = 'text' AND CASE WHEN json_valid({c}) THEN json_type({c}) = 'object' ELSE 0 END"
)
_VALUE_RULES = {
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
_RULE_WORDS = {
    _INTEGER: "an integer",
    _NUMBER: "a number",
    _NUMBER_OR_NULL: "a number or NULL",
    _INTEGER_OR_NULL: "an integer or NULL",
    _TEXT: "text",
    _TEXT_OR_NULL: "text or NULL",
    _JSON_OBJECT: "a JSON object",
    _FLAG_OR_NULL: "0, 1 or NULL",
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
            return f"has a {type(value).__name__} as config key {_short(key)}"
        if key not in FIELDS:
            continue  # a key of another sparsedd version: shown as it is
        try:
            coerced = coerce(key, value)
        except ConfigError:
            coerced = _NOT_JSON
        # as recorded: "0.1" is not the number 0.1, nor "true" a switch
        if coerced != value or isinstance(value, str) != isinstance(coerced, str):
            return f"has {_short(value)} as config key {key!r}"
    return None


def _density_problem(density: Any) -> str | None:
    """What is wrong with a round's recorded layer densities (None: nothing)."""
    if not isinstance(density, dict):
        return "layer densities that are not a mapping"
    for name, value in density.items():
        if type(value) not in (int, float) or not 0.0 <= value <= 1.0:
            return f"layer density {_short(value)} for layer {_short(name)}"
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _json(text: str) -> Any:
    """Parsed JSON, or a marker object for text that is not (or nests too deep to parse)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return _NOT_JSON


_NOT_JSON = object()


def _schema_columns() -> dict[str, list[str]]:
    """Columns of each table, as the schema this sparsedd writes defines them."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(_SCHEMA)
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: [r[1] for r in conn.execute(f"PRAGMA table_info({t})")] for t in tables}
    finally:
        conn.close()


# How long a statement waits for a database locked by another writer before giving up, and
# how long each attempt lets SQLite's own busy handler wait (tests lower these).
LOCK_TIMEOUT_S = 120.0
BUSY_WAIT_S = 5.0
# how often a reader reads a database that looks damaged before it says so
READ_ATTEMPTS = 4


#: What the collapse stop reads of a recorded round: (collapsed, test accuracy, layer density).
RoundOutcome = tuple[bool, float | None, dict[str, float]]


class RunStore(Protocol):
    """What a run records into and reads back: the results database, or on a Ray worker the
    ledger that carries its rows to the driver (``sweep.ray_backend.LedgerStore``)."""

    def record_run(self, run_id: str, config: dict[str, Any]) -> None: ...
    def record_round(self, run_id: str, row: dict[str, Any]) -> None: ...
    def record_epoch(
        self, run_id: str, round_: int, epoch: int, loss: float, acc: float
    ) -> None: ...
    def drop_rounds(self, run_id: str, first: int) -> None: ...
    def rounds_done(self, run_id: str) -> set[int]: ...
    def round_versions(self, run_id: str) -> dict[int, str | None]: ...
    def round_sparsity(self, run_id: str, round_: int) -> float | None: ...
    def round_outcomes(self, run_id: str) -> dict[int, RoundOutcome]: ...
    def round_rows(self) -> list[dict[str, Any]]: ...


class ResultsStore:
    """One SQLite database per output folder; safe with many concurrent writers."""

    def __init__(self, out_dir: str | Path, create: bool = True) -> None:
        """Open (``create``: or create) the database; ``create=False`` only reads it.

        A database that is opened only to read is opened read-only, so that results on
        read-only storage (or a copy without write permission) can be read.
        """
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / DB_NAME
        self.read_only = not create
        self._immutable = False
        if not self.path.exists():
            if not create:
                raise NoResultsError(
                    f"no results in {self.out_dir} (no {DB_NAME}); "
                    f"run `sparsedd run --out {self.out_dir}` first"
                )
            try:
                self.out_dir.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise StoreError(
                    f"cannot create output folder {self.out_dir}: "
                    f"{err.strerror}; choose a writable --out"
                ) from None
        self._init(create)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        wait = max(0.0, min(BUSY_WAIT_S, LOCK_TIMEOUT_S))
        try:
            conn = self._open(wait)
        except sqlite3.Error as err:
            raise StoreError(f"cannot open results database {self.path}: {err}") from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(wait * 1000)}")
            yield conn
        finally:
            conn.close()

    def _open(self, wait: float) -> sqlite3.Connection:
        """A connection; a read-only one never creates, changes or leaves a file."""
        if not self.read_only:
            return sqlite3.connect(self.path, timeout=wait, isolation_level=None)
        # Without a -wal file no writer is connected and every write is in the database file:
        # read that file as it is. With one, read it as a WAL reader (it needs the -shm file);
        # where that cannot be opened (read-only storage), again read the database file alone.
        wal = Path(f"{self.path}-wal").exists()
        immutable = self._immutable or not wal
        uri = self.path.resolve().as_uri() + ("?immutable=1" if immutable else "?mode=ro")
        conn = sqlite3.connect(uri, timeout=wait, isolation_level=None, uri=True)
        if immutable:
            return conn
        try:
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        except sqlite3.DatabaseError as err:
            conn.close()
            if "unable to open" not in str(err):  # the statement itself will say what is wrong
                return sqlite3.connect(uri, timeout=wait, isolation_level=None, uri=True)
            self._immutable = True
            return self._open(wait)
        return conn

    def _execute(
        self, script: str, params: tuple = (), many: bool = False, write: bool = True
    ) -> list[tuple]:
        """Run one statement (or a script) in a transaction, retrying while locked."""
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        attempt = 0
        while True:
            attempt += 1
            try:
                with self._connect() as conn:
                    if many:
                        conn.executescript(script)
                        return []
                    if write:
                        conn.execute("BEGIN IMMEDIATE")
                    rows = conn.execute(script, params).fetchall()
                    if write:
                        conn.execute("COMMIT")
                    return rows
            except sqlite3.OperationalError as err:
                if "locked" in str(err) or "busy" in str(err):
                    if time.monotonic() >= deadline:
                        break
                    time.sleep(min(0.05 * attempt, 0.5, max(0.0, deadline - time.monotonic())))
                    continue
                raise StoreError(
                    f"results database {self.path} cannot be used ({err}); "
                    f"check free disk space and the permissions of the file and its folder"
                ) from None
            except sqlite3.DatabaseError as err:
                # A reader of a database with no -wal file reads the file as it is; a writer
                # that connects meanwhile can change pages under it: read again before
                # calling the database damaged.
                if self.read_only and attempt < READ_ATTEMPTS:
                    time.sleep(0.05 * attempt)
                    continue
                raise StoreError(
                    f"{self.path} is not a sparsedd results database ({err}); "
                    f"move it away or choose another --out"
                ) from None
        raise StoreError(
            f"results database {self.path} stayed locked for {LOCK_TIMEOUT_S:g}s; close other "
            f"programs holding it and retry"
        )

    def _init(self, create: bool) -> None:
        tables = {
            r[0]
            for r in self._execute("SELECT name FROM sqlite_master WHERE type='table'", write=False)
        }
        if tables and "meta" not in tables:
            raise StoreError(
                f"{self.path} is not a sparsedd results database; move it away "
                f"or choose another --out"
            )
        if "meta" in tables:
            meta_columns = [r[1] for r in self._execute("PRAGMA table_info(meta)", write=False)]
            if meta_columns[:2] != ["key", "value"]:  # another program's meta table
                raise StoreError(
                    f"{self.path} is not a sparsedd results database (its meta table is "
                    f"another program's); move it away or choose another --out"
                )
            meta = dict(self._execute("SELECT key, value FROM meta", write=False))
            if meta.get("app") != APP_ID:
                raise StoreError(
                    f"{self.path} is not a sparsedd results database; move it "
                    f"away or choose another --out"
                )
            schema = meta.get("schema")
            if schema != SCHEMA_VERSION and schema not in UPGRADABLE_SCHEMAS:
                raise StoreError(
                    f"{self.path} has schema {meta.get('schema')}, this sparsedd "
                    f"reads {SCHEMA_VERSION}; upgrade sparsedd"
                )
            self._check_layout()  # before an upgrade writes to it
            lacking = any(c not in self._round_columns() for c in ADDED_COLUMNS)
            if create and (schema in UPGRADABLE_SCHEMAS or lacking):
                self._upgrade()
            if create:
                # Fail now, before any run file is written, if another program holds the lock.
                self._execute("SELECT 1", write=True)
            return
        if not create:
            # also what a reader sees while another run is creating the database
            raise NoResultsError(f"{self.path} holds no results")
        self._execute("PRAGMA journal_mode=WAL", write=False)
        # One transaction: a kill leaves either no tables or a complete, marked database.
        self._execute(
            f"BEGIN IMMEDIATE; {_SCHEMA} "
            f"INSERT OR IGNORE INTO meta VALUES ('app', '{APP_ID}'); "
            f"INSERT OR IGNORE INTO meta VALUES ('schema', '{SCHEMA_VERSION}'); COMMIT;",
            many=True,
        )

    def _round_columns(self) -> list[str]:
        """The columns the database's rounds table has (older schemas lack some)."""
        return [r[1] for r in self._execute("PRAGMA table_info(rounds)", write=False)]

    def _upgrade(self) -> None:
        """Add the columns an older database lacks (it stays readable as it was)."""
        missing = [f for f in ADDED_COLUMNS if f not in self._round_columns()]
        adds = "".join(f"ALTER TABLE rounds ADD COLUMN {f} {ADDED_COLUMNS[f]}; " for f in missing)
        try:
            self._execute(
                f"BEGIN IMMEDIATE; {adds}"
                f"UPDATE meta SET value = '{SCHEMA_VERSION}' WHERE key = 'schema'; COMMIT;",
                many=True,
            )
        except StoreError:
            if any(f not in self._round_columns() for f in ADDED_COLUMNS):
                raise  # not just another writer upgrading it at the same time

    def _damaged(self, problem: str) -> StoreError:
        return StoreError(
            f"results database {self.path} is damaged: {problem}; restore it from a copy, "
            f"or move it away and re-run"
        )

    def _check_layout(self) -> None:
        """Refuse a database whose tables, columns or values are not what sparsedd writes."""
        for table, columns in _schema_columns().items():
            found = [r[1] for r in self._execute(f"PRAGMA table_info({table})", write=False)]
            if not found:
                raise self._damaged(f"table {table!r} is missing")
            extra = [c for c in found if c not in columns]
            # an older database is read as it is: it lacks the columns added since
            missing = [c for c in columns if c not in found and c not in ADDED_COLUMNS]
            if extra:
                raise self._damaged(f"table {table!r} has an extra column {extra[0]!r}")
            if missing:
                raise self._damaged(f"table {table!r} has no column {missing[0]!r}")
        for table, all_rules in _VALUE_RULES.items():
            present = {r[1] for r in self._execute(f"PRAGMA table_info({table})", write=False)}
            rules = {c: rule for c, rule in all_rules.items() if c in present}
            checks = [rule.format(c=column) for column, rule in rules.items()]
            flags = ", ".join(f"NOT ({c})" for c in checks)
            where = " OR ".join(f"NOT ({c})" for c in checks)
            rows = self._execute(
                f"SELECT rowid, {flags} FROM {table} WHERE {where} LIMIT 1", write=False
            )
            if rows:
                bad = [col for col, flag in zip(rules, rows[0][1:], strict=True) if flag]
                column = bad[0] if bad else next(iter(rules))
                raise self._damaged(
                    f"table {table!r} row {rows[0][0]} has a value in column {column!r} "
                    f"that is not {_RULE_WORDS[rules[column]]}"
                )

    # ------------------------------------------------------------ writing

    def record_run(self, run_id: str, config: dict[str, Any]) -> None:
        """Register a run and its full config (a later call updates the config, e.g. rounds)."""
        self._execute(
            "INSERT INTO runs VALUES (?, ?, ?) ON CONFLICT(run_id) DO UPDATE SET config = "
            "excluded.config",
            (run_id, json.dumps(config), time.time()),
        )

    def record_round(self, run_id: str, row: dict[str, Any]) -> None:
        """Record one finished round (replacing an identical earlier record of it).

        ``row`` holds ROUND_FIELDS, ``layer_density`` and, where known, PROVENANCE_FIELDS,
        EVAL_FIELDS and ``collapsed`` (true for a round skipped by the collapse stop).
        """
        cols = (
            "run_id",
            *ROUND_FIELDS,
            "layer_density",
            *PROVENANCE_FIELDS,
            *EVAL_FIELDS,
            *STOP_FIELDS,
        )
        values = (
            run_id,
            *(row[f] for f in ROUND_FIELDS),
            json.dumps(row["layer_density"]),
            *(row.get(f) for f in (*PROVENANCE_FIELDS, *EVAL_FIELDS)),
            int(bool(row.get("collapsed"))),
        )
        self._execute(
            f"INSERT OR REPLACE INTO rounds ({', '.join(cols)}) "
            f"VALUES ({', '.join('?' * len(cols))})",
            values,
        )

    def record_epoch(self, run_id: str, round_: int, epoch: int, loss: float, acc: float) -> None:
        """Record one epoch's training loss and accuracy."""
        self._execute(
            "INSERT OR REPLACE INTO epochs VALUES (?, ?, ?, ?, ?)",
            (run_id, round_, epoch, loss, acc),
        )

    def drop_rounds(self, run_id: str, first: int) -> None:
        """Forget rounds ``first``, ``first + 1``, … of a run and their epochs (to recompute)."""
        for table in ("rounds", "epochs"):  # a kill in between leaves epochs to overwrite
            self._execute(f"DELETE FROM {table} WHERE run_id = ? AND round >= ?", (run_id, first))

    # ------------------------------------------------------------ reading

    def round_sparsity(self, run_id: str, round_: int) -> float | None:
        """Recorded sparsity of one round of a run (None if not recorded)."""
        rows = self._execute(
            "SELECT sparsity FROM rounds WHERE run_id = ? AND round = ?",
            (run_id, round_),
            write=False,
        )
        return rows[0][0] if rows else None

    def round_outcomes(self, run_id: str) -> dict[int, RoundOutcome]:
        """(collapsed, test accuracy, layer density) of each recorded round of ``run_id``."""
        present = set(self._round_columns())
        flag = "collapsed" if "collapsed" in present else "NULL"
        rows = self._execute(
            f"SELECT round, {flag}, test_acc, layer_density FROM rounds WHERE run_id = ?",
            (run_id,),
            write=False,
        )
        outcomes = {}
        for k, collapsed, acc, density in rows:
            layers = _json(density)
            outcomes[k] = (bool(collapsed), acc, layers if isinstance(layers, dict) else {})
        return outcomes

    def round_versions_and_sparsity(self, run_id: str) -> dict[int, tuple[str | None, float]]:
        """(sparsedd version, sparsity) of each recorded round of ``run_id``."""
        rows = self._execute(
            f"SELECT round, {self._version_column()}, sparsity FROM rounds WHERE run_id = ?",
            (run_id,),
            write=False,
        )
        return {k: (version, sparsity) for k, version, sparsity in rows}

    def rounds_done(self, run_id: str) -> set[int]:
        """Rounds of ``run_id`` already recorded."""
        rows = self._execute("SELECT round FROM rounds WHERE run_id = ?", (run_id,), write=False)
        return {r[0] for r in rows}

    def round_versions(self, run_id: str) -> dict[int, str | None]:
        """The sparsedd version that recorded each round of ``run_id`` (None: not recorded)."""
        rows = self._execute(
            f"SELECT round, {self._version_column()} FROM rounds WHERE run_id = ?",
            (run_id,),
            write=False,
        )
        return dict(rows)

    def _version_column(self) -> str:
        """The rounds' version column, or NULL in a database from before provenance."""
        return "sparsedd_version" if "sparsedd_version" in self._round_columns() else "NULL"

    def runs(self) -> dict[str, dict[str, Any]]:
        """Config of every run, by run id."""
        rows = self._execute("SELECT run_id, config FROM runs ORDER BY created", write=False)
        configs = {}
        for rid, text in rows:
            config = _json(text)
            problem = (
                config_problem(config)
                if isinstance(config, dict)
                else "is not a JSON object it can read (invalid, or nested too deep)"
            )
            if problem is not None:
                raise self._damaged(f"the recorded config of run {_short(rid)} {problem}")
            configs[rid] = config
        for key in CORE_CONFIG_KEYS:
            lacking = [rid for rid, config in configs.items() if key not in config]
            if lacking and len(lacking) < len(configs):
                raise self._damaged(
                    f"the recorded config of run {_short(lacking[0])} has no {key!r}, which "
                    f"the other runs' configs have"
                )
        return configs

    def round_rows(self) -> list[dict[str, Any]]:
        """Every recorded round of every run: the run's config keys, then ROUND_COLUMNS.

        ``epochs`` is the config's key; the round's own epoch count is ``round_epochs``.
        A provenance field is None for rounds recorded before it was (older schemas).
        """
        configs = self.runs()
        present = set(self._round_columns())
        cols = (
            "run_id",
            *ROUND_FIELDS,
            "layer_density",
            *PROVENANCE_FIELDS,
            *EVAL_FIELDS,
            *STOP_FIELDS,
        )
        select = ", ".join(c if c in present else f"NULL AS {c}" for c in cols)
        rows = self._execute(f"SELECT {select} FROM rounds ORDER BY run_id, round", write=False)
        out = []
        for values in rows:
            rec = dict(zip(cols, values, strict=True))
            rec["round_epochs"] = rec.pop("epochs")
            rec["collapsed"] = int(rec["collapsed"] or 0)  # NULL: recorded before schema 5
            if rec["run_id"] not in configs:  # every run is registered before its rounds
                raise self._damaged(
                    f"round {rec['round']} is of run {_short(rec['run_id'])}, which has no "
                    f"recorded config"
                )
            rec["layer_density"] = density = _json(rec["layer_density"])
            problem = _density_problem(density)
            if problem is not None:
                where = f"round {rec['round']} of run {_short(rec['run_id'])}"
                raise self._damaged(f"{where} records {problem}")
            out.append({**configs.get(rec["run_id"], {}), **{c: rec[c] for c in ROUND_COLUMNS}})
        return out

    def epoch_rows(self) -> list[dict[str, Any]]:
        """Every recorded epoch: run_id, round, epoch, train_loss, train_acc."""
        cols = ("run_id", "round", "epoch", "train_loss", "train_acc")
        rows = self._execute(
            f"SELECT {', '.join(cols)} FROM epochs ORDER BY run_id, round, epoch", write=False
        )
        return [dict(zip(cols, r, strict=True)) for r in rows]
