"""The store's connection: its pragmas, serialised write transactions, locked reads.

:class:`StoreConnection` is the base of :class:`~storage.store.Store` and of the parts it
is made of (:class:`~storage.images.ImageStore`,
:class:`~storage.humans.HumanJudgmentStore`); SQL lives only in those classes and in the
two modules that work on the raw database for them (:mod:`storage.schema`,
:mod:`storage.integrity`).

Concurrency: one connection may be shared by threads (the app's request handlers); its
writes are serialised by a lock and each runs in ``BEGIN IMMEDIATE``, so a writer waits
for the database lock up front (busy timeout, then retries) instead of failing half way.
Other processes open their own store on the same file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlite_utils import Database

BUSY_TIMEOUT_MS = 5_000
LOCK_RETRIES = 20  # after the busy timeout; a writer gives up only after ~2 minutes


def now() -> str:
    """The current time, UTC, ISO 8601 with microseconds (every ``created_at``)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def _names(cur: sqlite3.Cursor) -> list[str]:
    return [d[0] for d in cur.description or ()]


class StoreConnection:
    """``db`` set up for the store: busy timeout, foreign keys, recursive triggers and,
    for a file, WAL with ``synchronous = NORMAL``; images live under ``data_dir``."""

    def __init__(self, db: Database, data_dir: str | os.PathLike[str] | None = None) -> None:
        self.db = db
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.path: Path | None = None
        """The database file, when :meth:`Store.open` made the store from one."""
        self._lock = threading.RLock()
        conn = db.conn
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        # The rows that INSERT OR REPLACE deletes fire DELETE triggers too (defence in
        # depth beside m003's triggers, which refuse such inserts outright).
        conn.execute("PRAGMA recursive_triggers = ON")
        if not db.memory:
            db.enable_wal()
            # WAL + NORMAL: a commit survives the process being killed (it is in the
            # WAL file); only an OS crash or power cut can lose the last commits.
            conn.execute("PRAGMA synchronous = NORMAL")

    @contextlib.contextmanager
    def write(self) -> Iterator[Database]:
        """One write transaction (``BEGIN IMMEDIATE``), serialised across threads.

        Nested calls join the outer transaction. A lock held by another process is
        waited out (busy timeout, then retries), never reported to the caller."""
        with self._lock:
            conn = self.db.conn
            if conn.in_transaction:
                yield self.db
                return
            for attempt in range(LOCK_RETRIES + 1):
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    break
                except sqlite3.OperationalError as err:
                    if "locked" not in str(err) or attempt == LOCK_RETRIES:
                        raise
                    time.sleep(min(0.05 * 2**attempt, 1.0))
            try:
                yield self.db
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")

    def _one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        """The first row of a read as a dict, or None."""
        with self._lock:
            cur = self.db.conn.execute(sql, params)
            row = cur.fetchone()
            return None if row is None else dict(zip(_names(cur), row, strict=True))

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Every row of a read, as dicts."""
        with self._lock:
            cur = self.db.conn.execute(sql, params)
            names = _names(cur)
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Every row of a read as a tuple (the big scans: no dict per row)."""
        with self._lock:
            return self.db.conn.execute(sql, params).fetchall()

    def _insert(self, table: str, row: Mapping[str, Any], *, ignore: bool = False) -> int:
        """Insert one row in the open write transaction with sqlite-utils'
        ``Table.insert`` (``ignore``: INSERT OR IGNORE); returns its rowid. A caller that
        passes ``ignore`` looks the row up itself: a skipped insert has no new rowid."""
        assert self.db.conn.in_transaction, "insert inside Store.write()"
        return int(self.db.table(table).insert(dict(row), ignore=ignore).last_rowid or 0)

    def _insert_rows(self, table: str, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        """Insert rows in order with one sqlite-utils ``Table.insert_all``, in the open
        write transaction; returns their ids. ``table`` has an ``id INTEGER PRIMARY KEY``
        and this writer holds the database, so the new rows are exactly those past the
        largest id before, in order (SQLite gives each new row the largest rowid + 1)."""
        assert self.db.conn.in_transaction, "insert inside Store.write()"
        ((before,),) = self._rows(f"SELECT COALESCE(MAX(id), 0) FROM {table}")
        self.db.table(table).insert_all([dict(r) for r in rows])
        ids = [int(i) for (i,) in self._rows(
            f"SELECT id FROM {table} WHERE id > ? ORDER BY id", [before])]
        assert len(ids) == len(rows), f"{table}: the new rows are not the last ids"
        return ids
