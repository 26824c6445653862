"""The results database (SQLite, WAL) of one output folder: writing and reading its rows.

Its tables, column rules and damage checks are defined in ``store/schema.py``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from sparsedd.errors import NoResultsError, StoreError
from sparsedd.store.results_folder import ResultsFolder, check_out_layout
from sparsedd.store.round_record import RoundRecord
from sparsedd.store.schema import (
    ADDED_COLUMNS,
    APP_ID,
    CORRECTNESS_FIELD,
    RECORD_COLUMNS,
    SCHEMA_SQL,
    SCHEMA_VERSION,
    UPGRADABLE_SCHEMAS,
    layout_problem,
    parse_json,
)
from sparsedd.store.table_reads import TableReads

# How long a statement waits for a database locked by another writer before giving up, and
# how long each attempt lets SQLite's own busy handler wait (tests lower these).
LOCK_TIMEOUT_S = 120.0
BUSY_WAIT_S = 5.0
# how often a reader reads a database that looks damaged before it says so
READ_ATTEMPTS = 4


#: What the collapse stop reads of a recorded round: (collapsed, test accuracy, layer density,
#: memorization).
RoundOutcome = tuple[bool, float | None, dict[str, float], float | None]


class RunStore(Protocol):
    """What a run records into and reads back: the results database, or on a Ray worker the
    ledger that carries its rows to the driver (``sweep.ray_backend.LedgerStore``)."""

    def record_run(self, run_id: str, config: dict[str, Any]) -> None: ...
    def record_round(self, run_id: str, record: RoundRecord) -> None: ...
    def record_rounds(self, run_id: str, rows: list[RoundRecord]) -> None: ...
    def record_epoch(
        self, run_id: str, round_: int, epoch: int, loss: float, acc: float
    ) -> None: ...
    def drop_rounds(self, run_id: str, first: int) -> None: ...
    def rounds_done(self, run_id: str) -> set[int]: ...
    def round_versions(self, run_id: str) -> dict[int, str | None]: ...
    def round_sparsity(self, run_id: str, round_: int) -> float | None: ...
    def round_outcomes(self, run_id: str) -> dict[int, RoundOutcome]: ...
    def round_rows(self) -> list[dict[str, Any]]: ...


_INSERT_COLUMNS = (*RECORD_COLUMNS, CORRECTNESS_FIELD)
_INSERT_ROUND = (
    f"INSERT OR REPLACE INTO rounds ({', '.join(_INSERT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_INSERT_COLUMNS))})"
)


def _round_values(run_id: str, record: RoundRecord) -> tuple:
    """The values of one ``rounds`` row, in RECORD_COLUMNS order, then its per-image
    correctness (bytes, or None)."""
    stored = {
        "layer_density": json.dumps(record.layer_density),
        "collapsed": int(bool(record.collapsed)),
        CORRECTNESS_FIELD: None if record.test_correct is None else bytes(record.test_correct),
    }
    row = record.as_row()
    return (run_id, *(stored.get(c, row[c]) for c in _INSERT_COLUMNS[1:]))


class ResultsStore(TableReads):
    """One SQLite database per output folder; safe with many concurrent writers."""

    def __init__(self, out_dir: str | Path, create: bool = True) -> None:
        """Open (``create``: or create) the database; ``create=False`` only reads it.

        A database that is opened only to read is opened read-only, so that results on
        read-only storage (or a copy without write permission) can be read.
        """
        self.out_dir = Path(out_dir)
        self.path = ResultsFolder(self.out_dir).database
        self.read_only = not create
        self._immutable = False
        check_out_layout(self.out_dir)
        if not self.path.exists():
            if not create:
                raise NoResultsError(
                    f"no results in {self.out_dir} (no {self.path.name}); "
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
        self,
        script: str,
        params: tuple | list[tuple] = (),
        many: bool = False,
        write: bool = True,
        batch: bool = False,
    ) -> list[tuple]:
        """Run one statement (or a script; or, with ``batch``, one statement for each tuple
        of ``params``) in a transaction, retrying while locked."""
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
                    if batch:
                        conn.executemany(script, params)
                        rows = []
                    else:
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
            f"BEGIN IMMEDIATE; {SCHEMA_SQL} "
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
        problem = layout_problem(lambda sql: self._execute(sql, write=False))
        if problem is not None:
            raise self._damaged(problem)

    # ------------------------------------------------------------ writing

    def record_run(self, run_id: str, config: dict[str, Any]) -> None:
        """Register a run and its full config (a later call updates the config, e.g. rounds)."""
        self._execute(
            "INSERT INTO runs VALUES (?, ?, ?) ON CONFLICT(run_id) DO UPDATE SET config = "
            "excluded.config",
            (run_id, json.dumps(config), time.time()),
        )

    def record_round(self, run_id: str, record: RoundRecord) -> None:
        """Record one finished round (replacing an identical earlier record of it)."""
        self._execute(_INSERT_ROUND, _round_values(run_id, record))

    def record_rounds(self, run_id: str, rows: list[RoundRecord]) -> None:
        """Record several rounds in one transaction (a collapsed run's remaining rounds): the
        cost is that of the rows, not of a commit each."""
        if rows:
            self._execute(_INSERT_ROUND, [_round_values(run_id, row) for row in rows], batch=True)

    def copy_round(self, source: str, run_id: str, round_: int) -> None:
        """Record round ``round_`` of run ``source`` as the same round of ``run_id`` (a twin's
        shared dense round: every column but the run id)."""
        cols = ", ".join(c for c in _INSERT_COLUMNS if c != "run_id")
        self._execute(
            f"INSERT OR REPLACE INTO rounds (run_id, {cols}) "
            f"SELECT ?, {cols} FROM rounds WHERE run_id = ? AND round = ?",
            (run_id, source, round_),
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
        """(collapsed, test accuracy, layer density, memorization) of each recorded round of
        ``run_id``."""
        present = set(self._round_columns())
        flag = "collapsed" if "collapsed" in present else "NULL"
        rows = self._execute(
            f"SELECT round, {flag}, test_acc, layer_density, memorization FROM rounds "
            "WHERE run_id = ?",
            (run_id,),
            write=False,
        )
        outcomes = {}
        for k, collapsed, acc, density, memo in rows:
            layers = parse_json(density)
            outcomes[k] = (bool(collapsed), acc, layers if isinstance(layers, dict) else {}, memo)
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
