"""SQLite state store (WAL): the default, for one machine.

One connection per store object, shared by the threads of a process under a lock.
SQLite errors become :class:`StoreError` with the path and what went wrong, so that a
locked database or a full disk is reported clearly instead of as a stack trace.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from storywatch.errors import StoreError
from storywatch.security import create_private
from storywatch.store.base import Doc, dump_doc, load_doc

_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    ns TEXT NOT NULL,
    key TEXT NOT NULL,
    tag TEXT,
    value TEXT NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (ns, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS docs_tag ON docs(ns, tag, key);
"""
_UPSERT = (
    "INSERT INTO docs(ns, key, tag, value, updated_ms) VALUES (?,?,?,?,?) "
    "ON CONFLICT(ns, key) DO UPDATE SET tag=excluded.tag, value=excluded.value, updated_ms=excluded.updated_ms"
)


class SQLiteStore:
    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0):
        self.path = Path(path)
        self._lock = threading.RLock()
        self._depth = 0
        try:
            if str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
                create_private(self.path)
            self._conn = sqlite3.connect(
                str(path), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open SQLite store at {self.path}: {exc}") from exc

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            outer = self._depth == 0
            try:
                if outer:
                    self._conn.execute("BEGIN IMMEDIATE")
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                if outer:
                    self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if outer and self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise StoreError(f"SQLite store {self.path}: {exc}") from exc
            except BaseException:
                if outer and self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    def _exec(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        with self._lock:
            try:
                return self._conn.execute(sql, params)
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite store {self.path}: {exc}") from exc

    def get(self, ns: str, key: str) -> Doc | None:
        row = self._exec("SELECT value FROM docs WHERE ns=? AND key=?", (ns, key)).fetchone()
        return load_doc(row[0]) if row else None

    def get_tag(self, ns: str, key: str) -> str | None:
        row = self._exec("SELECT tag FROM docs WHERE ns=? AND key=?", (ns, key)).fetchone()
        return row[0] if row else None

    def put(self, ns: str, key: str, value: Doc, *, tag: str | None = None) -> None:
        self._exec(_UPSERT, (ns, key, tag, dump_doc(value), _now_ms()))

    def put_many(self, ns: str, items: Mapping[str, Doc]) -> None:
        now = _now_ms()
        rows = [(ns, key, None, dump_doc(value), now) for key, value in items.items()]
        if not rows:
            return
        with self.transaction(), self._lock:
            try:
                self._conn.executemany(_UPSERT, rows)  # one statement, prepared once
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite store {self.path}: {exc}") from exc

    def insert(self, ns: str, key: str, value: Doc, *, tag: str | None = None) -> bool:
        cur = self._exec(
            "INSERT OR IGNORE INTO docs(ns, key, tag, value, updated_ms) VALUES (?,?,?,?,?)",
            (ns, key, tag, dump_doc(value), _now_ms()),
        )
        return cur.rowcount == 1

    def update_if(self, ns: str, key: str, expect_tag: str | None, value: Doc, *, tag: str | None) -> bool:
        cur = self._exec(
            "UPDATE docs SET tag=?, value=?, updated_ms=? WHERE ns=? AND key=? AND tag IS ?",
            (tag, dump_doc(value), _now_ms(), ns, key, expect_tag),
        )
        return cur.rowcount == 1

    def delete(self, ns: str, key: str) -> None:
        self._exec("DELETE FROM docs WHERE ns=? AND key=?", (ns, key))

    def scan(
        self, ns: str, *, tag: str | None = None, after: str | None = None, limit: int | None = None
    ) -> Iterator[tuple[str, Doc]]:
        # Pages of keys rather than one cursor, so a long scan neither holds the lock
        # nor sees the table change under it.
        page = 500 if limit is None else min(limit, 500)
        remaining = limit
        last = after
        while remaining is None or remaining > 0:
            sql = "SELECT key, value FROM docs WHERE ns=?"
            params: list = [ns]
            if tag is not None:
                sql += " AND tag=?"
                params.append(tag)
            if last is not None:
                sql += " AND key>?"
                params.append(last)
            sql += " ORDER BY key LIMIT ?"
            params.append(page if remaining is None else min(page, remaining))
            rows = self._exec(sql, tuple(params)).fetchall()
            if not rows:
                return
            for key, value in rows:
                yield key, load_doc(value)
            last = rows[-1][0]
            if remaining is not None:
                remaining -= len(rows)
            if len(rows) < page:
                return

    def count(self, ns: str, *, tag: str | None = None) -> int:
        if tag is None:
            row = self._exec("SELECT COUNT(*) FROM docs WHERE ns=?", (ns,)).fetchone()
        else:
            row = self._exec("SELECT COUNT(*) FROM docs WHERE ns=? AND tag=?", (ns, tag)).fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _now_ms() -> int:
    return int(time.time() * 1000)
