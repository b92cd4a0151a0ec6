"""The state store under a lock held by another process and on a full disk: a clear
StoreError, no corruption (``PRAGMA integrity_check``), and recovery once the condition
clears. The full disk is a 1 MB tmpfs when the tests run as root (else SQLite's
``max_page_count``, which fails writes with the same SQLITE_FULL)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from storywatch.errors import StoreError
from storywatch.store.sqlite import SQLiteStore

HOLD_LOCK = """
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
con.execute("ROLLBACK")
"""


def integrity(path: Path) -> str:
    con = sqlite3.connect(path)
    try:
        return str(con.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        con.close()


def test_store_locked_by_another_process(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    store = SQLiteStore(db, busy_timeout_s=0.3)
    store.put("ns", "before", {"n": 1})
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(db)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(StoreError) as err:
            store.put("ns", "during", {"n": 2})
        assert str(db) in str(err.value) and "locked" in str(err.value), str(err.value)
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(10)
    store.put("ns", "after", {"n": 3})
    assert store.get("ns", "during") is None
    assert [k for k, _ in store.scan("ns")] == ["after", "before"]
    store.close()
    assert integrity(db) == "ok"


@contextlib.contextmanager
def tiny_disk(tmp_path: Path) -> Iterator[tuple[Path, bool]]:
    """A directory on a 1 MB tmpfs (root) or a plain one (the caller caps the page count)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
    ).returncode == 0
    try:
        yield mount, mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(mount)], check=False)


def test_store_on_a_full_disk(tmp_path: Path) -> None:
    with tiny_disk(tmp_path) as (disk, mounted):
        db = disk / "state.db"
        ballast = disk / "ballast"
        store = SQLiteStore(db)
        if not mounted:
            store._conn.execute("PRAGMA max_page_count = 64")  # type: ignore[attr-defined]
        else:
            ballast.write_bytes(b"\0" * 400_000)  # freed later: the operator cleaning up
        written = 0
        with pytest.raises(StoreError) as err:
            for i in range(10_000):
                store.put("ns", f"k{i:05d}", {"text": "x" * 2000})
                written += 1
        message = str(err.value)
        assert str(db) in message and "full" in message, message
        assert written > 10
        # What was committed stays readable; the failed write left nothing half-done.
        assert store.count("ns") == written
        assert store.get("ns", f"k{written - 1:05d}") == {"text": "x" * 2000}
        if mounted:
            ballast.unlink()
        else:
            store._conn.execute("PRAGMA max_page_count = 100000")  # type: ignore[attr-defined]
        store.put("ns", "after", {"ok": True})
        assert store.get("ns", "after") == {"ok": True}
        store.close()
        assert integrity(db) == "ok"
        print(f"full after {written} writes on {'a 1 MB tmpfs' if mounted else 'max_page_count'}")
