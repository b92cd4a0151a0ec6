"""PostgreSQL state store: the store for several machines (replicas of a stage).

The same model as :mod:`storywatch.store.sqlite`, one table of namespaced JSON documents
with a tag, so that stages cannot tell the two apart and both pass the same contract
tests. Decisions that keep the behaviour identical:

- **Transactions are serialised**, as SQLite's ``BEGIN IMMEDIATE`` serialises them: the
  outermost :meth:`PostgresStore.transaction` takes a transaction-scoped advisory lock,
  so a read-check-write inside a transaction (the delivery log's claim re-reads a
  document, checks its lease token, then ``update_if``\\ s it) cannot interleave with
  another worker's. Statements outside a transaction are atomic on their own and take
  no lock. Under plain READ COMMITTED, two workers reclaiming one expired delivery could
  both pass the token check; with the lock the second one sees the first one's claim.
- **Keys sort bytewise** (``COLLATE "C"``), as SQLite's BINARY collation does, whatever
  the database's locale, so ``scan(after=...)`` pages the same way.
- **Values are stored as JSON text**, not ``jsonb``: ``jsonb`` rewrites numbers
  (``1e300`` comes back as an integer) and rejects ``\\u0000``; text round-trips exactly.
- **Nested transactions flatten** into the outermost one, as in the SQLite store.

Threads: each thread doing a transaction holds one pooled connection until the outermost
transaction ends; a statement outside a transaction borrows any idle connection. The
pool opens connections lazily up to ``pool_size`` and drops broken ones (and, on the first
broken one, every idle one), so a restarted server costs a failed statement or two, not
the process.

Errors become :class:`StoreError` naming the server as ``user@host:port/dbname``; the
password never appears (it is not in psycopg's messages, and is masked if it were).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from storywatch.errors import StoreError
from storywatch.store.base import Doc, dump_doc, load_doc

TABLE = "storywatch_docs"
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    ns TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    tag TEXT COLLATE "C",
    value TEXT NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (ns, key)
);
CREATE INDEX IF NOT EXISTS {TABLE}_tag ON {TABLE} (ns, tag, key);
"""
# One advisory lock number for the table: transactions of every replica serialise on it.
_TX_LOCK = f"SELECT pg_advisory_xact_lock(hashtext('{TABLE}'))"
_UPSERT = (
    f"INSERT INTO {TABLE} (ns, key, tag, value, updated_ms) VALUES (%s,%s,%s,%s,%s) "
    "ON CONFLICT (ns, key) DO UPDATE SET tag=excluded.tag, value=excluded.value, updated_ms=excluded.updated_ms"
)
_SCHEMA_LOCK = f"SELECT pg_advisory_xact_lock(hashtext('{TABLE}.schema'))"
_PAGE = 500


def describe(dsn: str) -> str:
    """``user@host:port/dbname`` for messages: the server without the password.

    >>> describe("postgresql://sw:hunter2@db.internal:5433/storywatch")
    'sw@db.internal:5433/storywatch'
    """
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "<unparseable dsn>"
    user = str(parts.get("user") or "")
    host = parts.get("host") or parts.get("hostaddr") or "localhost"
    port = parts.get("port") or "5432"
    db = parts.get("dbname") or user or ""
    return f"{user + '@' if user else ''}{host}:{port}/{db}"


class _Pool:
    """At most ``size`` connections, opened on demand; a caller waits ``timeout_s`` for one."""

    def __init__(self, connect: Any, size: int, timeout_s: float):
        self._connect = connect
        self._size = size
        self._timeout_s = timeout_s
        self._idle: list[psycopg.Connection] = []
        self._open = 0
        self._closed = False
        self._cond = threading.Condition()

    def acquire(self) -> psycopg.Connection:
        deadline = time.monotonic() + self._timeout_s
        with self._cond:
            while True:
                if self._closed:
                    raise StoreError("store is closed")
                if self._idle:
                    return self._idle.pop()
                if self._open < self._size:
                    self._open += 1
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StoreError(f"no free connection within {self._timeout_s}s (pool_size={self._size})")
                self._cond.wait(left)
        try:
            return self._connect()  # type: ignore[no-any-return]
        except BaseException:
            with self._cond:
                self._open -= 1
                self._cond.notify()
            raise

    def release(self, conn: psycopg.Connection) -> None:
        """Return ``conn``; a broken one is dropped, and with it every idle one, since a
        lost connection usually means a restarted server and they are all dead too."""
        broken = conn.closed or conn.broken
        usable = not broken and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        stale: list[psycopg.Connection] = []
        with self._cond:
            if usable and not self._closed:
                self._idle.append(conn)
            else:
                self._open -= 1
                stale.append(conn)
                if broken:
                    stale += self._idle
                    self._open -= len(self._idle)
                    self._idle = []
            self._cond.notify_all()
        for c in stale:
            c.close()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            self._cond.notify_all()
        for conn in idle:
            conn.close()


class PostgresStore:
    """The store in a PostgreSQL database given by a libpq ``dsn`` (URL or key=value)."""

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 4,
        pool_timeout_s: float = 10.0,
        connect_timeout_s: int = 10,
        statement_timeout_s: float = 30.0,
    ):
        try:
            parts = conninfo_to_dict(dsn)
        except psycopg.Error:
            # libpq's parse errors quote the string, which may hold the password.
            raise StoreError("invalid PostgreSQL dsn (not shown: it may hold a password)") from None
        self.server = describe(dsn)
        self._dsn = dsn
        self._password = str(parts.get("password") or "")
        self._kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": max(2, int(connect_timeout_s)),
            "application_name": "storywatch",
            "options": f"-c statement_timeout={int(statement_timeout_s * 1000)}",
        }
        self._pool = _Pool(self._connect, pool_size, pool_timeout_s)
        self._local = threading.local()
        with self._wrap("cannot open PostgreSQL store"), self._conn() as conn, conn.transaction():
            # Serialise schema creation: concurrent CREATE ... IF NOT EXISTS can still collide.
            conn.execute(_SCHEMA_LOCK)
            conn.execute(_SCHEMA)

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(self._dsn, **self._kwargs)

    def _error(self, what: str, exc: BaseException) -> StoreError:
        text = str(exc).strip()
        # A second line of defence (libpq does not quote passwords, but a DSN it cannot
        # parse it may). A password of a few characters is masked only where it stands
        # alone: masked inside words ("port", "accepting") it would garble the message.
        if len(self._password) >= 4:
            text = text.replace(self._password, "**********")
        elif self._password:
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(self._password)}(?![A-Za-z0-9])", "**********", text)
        return StoreError(f"{what} {self.server}: {text}")

    @contextmanager
    def _wrap(self, what: str = "PostgreSQL store") -> Iterator[None]:
        try:
            yield
        except psycopg.Error as exc:
            raise self._error(what, exc) from None

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection]:
        """The thread's transaction connection if it is in one, else a pooled one."""
        held = getattr(self._local, "conn", None)
        if held is not None:
            yield held
            return
        conn = self._pool.acquire()
        try:
            yield conn
        finally:
            self._pool.release(conn)

    def _exec(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]] | int:
        """Run one statement: its rows if it returns any, else its row count."""
        with self._wrap(), self._conn() as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description is not None else cur.rowcount

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        out = self._exec(sql, params)
        assert isinstance(out, list)
        return out

    def _count(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        out = self._exec(sql, params)
        assert isinstance(out, int)
        return out

    @contextmanager
    def transaction(self) -> Iterator[None]:
        depth = getattr(self._local, "depth", 0)
        if depth:
            self._local.depth = depth + 1
            try:
                yield
            finally:
                self._local.depth = depth
            return
        with self._wrap():
            conn = self._pool.acquire()
        try:
            with self._wrap():
                conn.execute("BEGIN")
                conn.execute(_TX_LOCK)
            self._local.conn, self._local.depth = conn, 1
            try:
                yield
            finally:
                self._local.conn, self._local.depth = None, 0
            with self._wrap():
                conn.execute("COMMIT")
        except BaseException:
            if not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                try:
                    conn.execute("ROLLBACK")
                except psycopg.Error:
                    conn.close()  # the pool drops it
            raise
        finally:
            self._pool.release(conn)

    def get(self, ns: str, key: str) -> Doc | None:
        rows = self._rows(f"SELECT value FROM {TABLE} WHERE ns=%s AND key=%s", (ns, key))
        return load_doc(rows[0][0]) if rows else None

    def get_tag(self, ns: str, key: str) -> str | None:
        rows = self._rows(f"SELECT tag FROM {TABLE} WHERE ns=%s AND key=%s", (ns, key))
        return rows[0][0] if rows else None

    def put(self, ns: str, key: str, value: Doc, *, tag: str | None = None) -> None:
        self._exec(_UPSERT, (ns, key, tag, dump_doc(value), _now_ms()))

    def put_many(self, ns: str, items: Mapping[str, Doc]) -> None:
        now = _now_ms()
        rows = [(ns, key, None, dump_doc(value), now) for key, value in items.items()]
        if not rows:
            return
        # psycopg pipelines executemany: one round trip for the lot, not one per document.
        with self.transaction(), self._wrap(), self._conn() as conn, conn.cursor() as cur:
            cur.executemany(_UPSERT, rows)

    def insert(self, ns: str, key: str, value: Doc, *, tag: str | None = None) -> bool:
        return (
            self._count(
                f"INSERT INTO {TABLE} (ns, key, tag, value, updated_ms) VALUES (%s,%s,%s,%s,%s) "
                "ON CONFLICT (ns, key) DO NOTHING",
                (ns, key, tag, dump_doc(value), _now_ms()),
            )
            == 1
        )

    def update_if(self, ns: str, key: str, expect_tag: str | None, value: Doc, *, tag: str | None) -> bool:
        return (
            self._count(
                f"UPDATE {TABLE} SET tag=%s, value=%s, updated_ms=%s "
                "WHERE ns=%s AND key=%s AND tag IS NOT DISTINCT FROM %s::text",
                (tag, dump_doc(value), _now_ms(), ns, key, expect_tag),
            )
            == 1
        )

    def delete(self, ns: str, key: str) -> None:
        self._exec(f"DELETE FROM {TABLE} WHERE ns=%s AND key=%s", (ns, key))

    def scan(
        self, ns: str, *, tag: str | None = None, after: str | None = None, limit: int | None = None
    ) -> Iterator[tuple[str, Doc]]:
        # Pages of keys, as in the SQLite store: a long scan holds no connection between
        # pages and never sees a row twice.
        page = _PAGE if limit is None else min(limit, _PAGE)
        remaining = limit
        last = after
        while remaining is None or remaining > 0:
            sql = f"SELECT key, value FROM {TABLE} WHERE ns=%s"
            params: list[Any] = [ns]
            if tag is not None:
                sql += " AND tag=%s"
                params.append(tag)
            if last is not None:
                sql += " AND key>%s"
                params.append(last)
            sql += " ORDER BY key LIMIT %s"
            params.append(page if remaining is None else min(page, remaining))
            rows = self._rows(sql, tuple(params))
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
            rows = self._rows(f"SELECT COUNT(*) FROM {TABLE} WHERE ns=%s", (ns,))
        else:
            rows = self._rows(f"SELECT COUNT(*) FROM {TABLE} WHERE ns=%s AND tag=%s", (ns, tag))
        return int(rows[0][0])

    def close(self) -> None:
        self._pool.close()


def _now_ms() -> int:
    return int(time.time() * 1000)
