"""The embedded bus: a durable, append-only log in one SQLite file, for one machine.

Each topic is one partition; offsets start at 0. Consumer groups keep committed
offsets in the same file, so a restarted stage resumes where it committed and sees
again whatever it had polled but not committed. Several processes may share the file
(WAL mode); each consumer group should have one active consumer at a time, because
the embedded bus has no group coordinator to split partitions between members.

Old messages are pruned once every group that reads a topic has committed past them
and they are older than the retention period, so the file stays bounded.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from storywatch.bus.base import Record
from storywatch.errors import BusError
from storywatch.security import create_private

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    topic TEXT NOT NULL,
    offset INTEGER NOT NULL,
    key TEXT,
    value BLOB NOT NULL,
    ts_ms INTEGER NOT NULL,
    PRIMARY KEY (topic, offset)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS topics (
    topic TEXT PRIMARY KEY,
    next_offset INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS offsets (
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (grp, topic)
);
"""


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    create_private(path)
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(_SCHEMA)
    return conn


class EmbeddedBus:
    """Factory for producers and consumers over one log file.

    ``retention_s`` bounds how long fully consumed messages are kept.
    """

    def __init__(self, path: str | Path, *, retention_s: float = 7 * 24 * 3600):
        self.path = Path(path)
        self.retention_s = retention_s
        self._lock = threading.Lock()
        self._new_data = threading.Condition()
        try:
            self._conn = _connect(self.path)
        except (sqlite3.Error, OSError) as exc:
            raise BusError(f"cannot open embedded bus at {self.path}: {exc}") from exc
        self._closed = False

    # Producers and consumers of one process share this connection under a lock; other
    # processes have their own and meet in SQLite's WAL.
    @contextmanager
    def _txn(self, immediate: bool = False) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._closed:
                raise BusError("embedded bus is closed")
            try:
                self._conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
                try:
                    yield self._conn
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise BusError(f"embedded bus {self.path}: {exc}") from exc

    def producer(self) -> EmbeddedProducer:
        return EmbeddedProducer(self)

    def consumer(self, group: str, topics: Sequence[str]) -> EmbeddedConsumer:
        return EmbeddedConsumer(self, group, list(topics))

    def ensure_topics(self, topics: Sequence[str]) -> None:
        with self._txn(immediate=True) as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO topics(topic, next_offset) VALUES (?, 0)", [(t,) for t in topics]
            )

    def append(self, batch: Sequence[tuple[str, str | None, bytes]]) -> None:
        """Append ``(topic, key, value)`` records durably, in order, in one transaction."""
        if not batch:
            return
        now_ms = int(time.time() * 1000)
        with self._txn(immediate=True) as conn:
            next_offsets: dict[str, int] = {}
            rows = []
            for topic, key, value in batch:
                if topic not in next_offsets:
                    row = conn.execute("SELECT next_offset FROM topics WHERE topic=?", (topic,)).fetchone()
                    next_offsets[topic] = row[0] if row else 0
                off = next_offsets[topic]
                next_offsets[topic] = off + 1
                rows.append((topic, off, key, value, now_ms))
            conn.executemany("INSERT INTO messages(topic, offset, key, value, ts_ms) VALUES (?,?,?,?,?)", rows)
            conn.executemany(
                "INSERT INTO topics(topic, next_offset) VALUES (?, ?) "
                "ON CONFLICT(topic) DO UPDATE SET next_offset=excluded.next_offset",
                list(next_offsets.items()),
            )
        with self._new_data:
            self._new_data.notify_all()

    def read(self, topic: str, from_offset: int, limit: int) -> list[Record]:
        with self._txn() as conn:
            rows = conn.execute(
                "SELECT offset, key, value, ts_ms FROM messages WHERE topic=? AND offset>=? "
                "ORDER BY offset LIMIT ?",
                (topic, from_offset, limit),
            ).fetchall()
        return [Record(topic, 0, off, key, bytes(value), ts) for off, key, value, ts in rows]

    def committed(self, group: str, topic: str) -> int:
        with self._txn() as conn:
            row = conn.execute("SELECT next_offset FROM offsets WHERE grp=? AND topic=?", (group, topic)).fetchone()
        return row[0] if row else 0

    def end_offset(self, topic: str) -> int:
        with self._txn() as conn:
            row = conn.execute("SELECT next_offset FROM topics WHERE topic=?", (topic,)).fetchone()
        return row[0] if row else 0

    def commit(self, group: str, positions: dict[str, int]) -> None:
        with self._txn(immediate=True) as conn:
            conn.executemany(
                "INSERT INTO offsets(grp, topic, next_offset) VALUES (?,?,?) "
                "ON CONFLICT(grp, topic) DO UPDATE SET next_offset=excluded.next_offset",
                [(group, t, o) for t, o in positions.items()],
            )

    def prune(self) -> int:
        """Delete messages every group has committed past and that are older than retention."""
        cutoff = int((time.time() - self.retention_s) * 1000)
        with self._txn(immediate=True) as conn:
            cur = conn.execute(
                "DELETE FROM messages WHERE ts_ms < ? AND offset < "
                "(SELECT COALESCE(MIN(o.next_offset), 0) FROM offsets o WHERE o.topic = messages.topic)",
                (cutoff,),
            )
            return cur.rowcount

    def wait_for_data(self, timeout: float) -> None:
        """Sleep until a producer of this process appends, or ``timeout`` passes.

        Other processes cannot signal us, so the caller polls again after the timeout.
        """
        with self._new_data:
            self._new_data.wait(timeout)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()


class EmbeddedProducer:
    """Buffers records and appends them in one transaction on :meth:`flush`."""

    def __init__(self, bus: EmbeddedBus, *, max_buffer: int = 1000):
        self._bus = bus
        self._buffer: list[tuple[str, str | None, bytes]] = []
        self._max_buffer = max_buffer

    def publish(self, topic: str, key: str | None, value: bytes) -> None:
        self._buffer.append((topic, key, value))
        if len(self._buffer) >= self._max_buffer:
            self.flush()

    def flush(self, timeout: float = 30.0) -> None:
        batch, self._buffer = self._buffer, []
        try:
            self._bus.append(batch)
        except BusError:
            self._buffer = batch + self._buffer
            raise

    def close(self) -> None:
        self.flush()


class EmbeddedConsumer:
    """Reads topics from the group's committed offsets; :meth:`commit` stores the positions."""

    _CROSS_PROCESS_POLL_S = 0.1

    def __init__(self, bus: EmbeddedBus, group: str, topics: list[str]):
        self._bus = bus
        self.group = group
        self.topics = topics
        bus.ensure_topics(topics)
        self._positions = {t: bus.committed(group, t) for t in topics}
        self._committed = dict(self._positions)
        self._commits = 0

    def poll(self, max_records: int = 100, timeout: float = 1.0) -> list[Record]:
        deadline = time.monotonic() + timeout
        while True:
            out: list[Record] = []
            for topic in self.topics:
                if len(out) >= max_records:
                    break
                records = self._bus.read(topic, self._positions[topic], max_records - len(out))
                if records:
                    self._positions[topic] = records[-1].offset + 1
                    out.extend(records)
            remaining = deadline - time.monotonic()
            if out or remaining <= 0:
                return out
            self._bus.wait_for_data(min(remaining, self._CROSS_PROCESS_POLL_S))

    def commit(self) -> None:
        changed = {t: o for t, o in self._positions.items() if self._committed.get(t) != o}
        if not changed:
            return
        self._bus.commit(self.group, changed)
        self._committed.update(changed)
        self._commits += 1
        if self._commits % 200 == 0:
            self._bus.prune()

    def lag(self) -> int | None:
        return sum(max(0, self._bus.end_offset(t) - self._committed[t]) for t in self.topics)

    def close(self) -> None:
        """Close without committing: what was polled but not committed is redelivered."""
