"""Benchmark: state store operations per second, SQLite against PostgreSQL.

The stages' hot paths are single-document reads and writes (the ingest seen-store, the
delivery log's claims), so this measures those, one at a time from one thread, bare and
grouped in transactions of 100, plus a full scan. PostgreSQL is a throwaway local server
(``tests/pg_server.py``, durability off, loopback TCP): the numbers are the client and
protocol cost per round trip, a floor for a real networked server.

Usage: ``python bench/bench_store.py [--n 3000]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from storywatch.store import Store  # noqa: E402
from storywatch.store.postgres import PostgresStore  # noqa: E402
from storywatch.store.sqlite import SQLiteStore  # noqa: E402
from tests.pg_server import PostgresServer  # noqa: E402

DOC = {"id": "abc123", "state": "pending", "attempts": 0, "alert": {"title": "x" * 200, "n": 1.5}}


def timed(fn: Callable[[], None], n: int) -> float:
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def run(store: Store, n: int) -> dict[str, float]:
    keys = [f"k{i:08d}" for i in range(n)]
    out: dict[str, float] = {}

    def puts() -> None:
        for k in keys:
            store.put("bench", k, DOC, tag="pending")

    def puts_tx() -> None:
        for i in range(0, n, 100):
            with store.transaction():
                for k in keys[i : i + 100]:
                    store.put("bench2", k, DOC, tag="pending")

    def gets() -> None:
        for k in keys:
            store.get("bench", k)

    def inserts_dup() -> None:
        for k in keys:
            store.insert("bench", k, DOC, tag="pending")

    def claims() -> None:
        for k in keys:
            with store.transaction():
                cur = store.get("bench", k)
                assert cur is not None
                store.update_if("bench", k, "pending", {**cur, "state": "sending"}, tag="sending")

    def scan() -> None:
        assert sum(1 for _ in store.scan("bench")) == n

    out["put"] = timed(puts, n)
    out["put (tx of 100)"] = timed(puts_tx, n)
    out["get"] = timed(gets, n)
    out["insert (exists)"] = timed(inserts_dup, n)
    out["claim (tx: get+update_if)"] = timed(claims, n)
    out["scan (docs/s)"] = timed(scan, n)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--n", type=int, default=3000, help="documents per operation (default 3000)")
    args = ap.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = SQLiteStore(Path(tmp) / "state.db")
        results["sqlite"] = run(sqlite, args.n)
        sqlite.close()
    with PostgresServer() as pg:
        store = PostgresStore(pg.new_database("bench"))
        results["postgres"] = run(store, args.n)
        store.close()
    ops = list(results["sqlite"])
    print(f"\n{'operation':<28} {'sqlite ops/s':>13} {'postgres ops/s':>15}")
    print("-" * 58)
    for op in ops:
        print(f"{op:<28} {results['sqlite'][op]:>13,.0f} {results['postgres'][op]:>15,.0f}")


if __name__ == "__main__":
    main()
