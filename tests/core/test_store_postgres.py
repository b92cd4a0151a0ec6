"""The PostgreSQL store: the same answers as the SQLite store, safe between workers, and
errors that name the server but never the password.

The contract suite (``test_store_contract.py``) runs over every store through the
``store`` fixture; this file adds what only a shared, networked store needs:

- a differential test: random operation sequences give the same results on SQLite and
  PostgreSQL (key order, tags, ``after``/``limit`` paging, nested and failed
  transactions, JSON round trips);
- the delivery log's claim pattern (read, check the lease token, ``update_if``) from two
  store handles and several threads: every document is claimed exactly once, including
  the reclaim of expired claims, where plain READ COMMITTED would let two workers in;
- connection failures, a restarted server and a full pool, reported as ``StoreError``.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storywatch.errors import StoreError
from storywatch.settings import Settings
from storywatch.store import Store
from storywatch.store.postgres import PostgresStore, describe
from tests.pg_server import PostgresServer

# -- same answers as SQLite ---------------------------------------------------------

# Keys mix case, punctuation and non-ASCII so that a locale-aware sort would show.
KEYS = st.text(alphabet="aBz_~-é中0", min_size=1, max_size=3)
TAGS = st.none() | st.sampled_from(["pending", "sent", "Sent", "é"])
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=4), kids, max_size=3),
    max_leaves=8,
)
DOCS = st.dictionaries(st.text(max_size=4), JSON, max_size=3)

OPS = st.one_of(
    st.tuples(st.just("put"), KEYS, DOCS, TAGS),
    st.tuples(st.just("insert"), KEYS, DOCS, TAGS),
    st.tuples(st.just("update_if"), KEYS, TAGS, DOCS, TAGS),
    st.tuples(st.just("delete"), KEYS),
    st.tuples(st.just("get"), KEYS),
    st.tuples(st.just("get_tag"), KEYS),
    st.tuples(st.just("scan"), TAGS, st.none() | KEYS, st.none() | st.integers(0, 4)),
    st.tuples(st.just("count"), TAGS),
    st.tuples(st.just("put_many"), st.dictionaries(KEYS, DOCS, max_size=3)),
)
# A batch runs bare, in a transaction, in a nested one, or in one that fails at the end.
BATCHES = st.lists(
    st.tuples(st.sampled_from(["bare", "tx", "nested", "rollback"]), st.lists(OPS, min_size=1, max_size=6)),
    min_size=1,
    max_size=5,
)


class Boom(Exception):
    pass


def apply(store: Store, ns: str, op: tuple[Any, ...]) -> Any:
    name, *args = op
    if name == "put":
        return store.put(ns, args[0], args[1], tag=args[2])
    if name == "insert":
        return store.insert(ns, args[0], args[1], tag=args[2])
    if name == "update_if":
        return store.update_if(ns, args[0], args[1], args[2], tag=args[3])
    if name == "delete":
        return store.delete(ns, args[0])
    if name == "get":
        return store.get(ns, args[0])
    if name == "get_tag":
        return store.get_tag(ns, args[0])
    if name == "scan":
        return list(store.scan(ns, tag=args[0], after=args[1], limit=args[2]))
    if name == "count":
        return store.count(ns, tag=args[0])
    if name == "put_many":
        return store.put_many(ns, args[0])
    raise AssertionError(name)


def run_batches(store: Store, ns: str, batches: list[tuple[str, list[tuple[Any, ...]]]]) -> list[Any]:
    out: list[Any] = []
    for mode, ops in batches:
        try:
            if mode == "bare":
                out += [apply(store, ns, op) for op in ops]
            else:
                with store.transaction():
                    if mode == "nested":
                        with store.transaction():
                            out += [apply(store, ns, op) for op in ops]
                    else:
                        out += [apply(store, ns, op) for op in ops]
                    if mode == "rollback":
                        raise Boom
        except Boom:
            out.append("rolled back")
        out.append(("final", list(store.scan(ns))))
    return out


@pytest.fixture
def both(store_factory: Callable[..., Store]) -> tuple[Store, Store]:
    return store_factory("sqlite"), store_factory("postgres")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=BATCHES)
def test_same_answers_as_sqlite(both: tuple[Store, Store], batches: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
    sqlite, postgres = both
    ns = f"diff-{uuid.uuid4().hex[:8]}"
    assert run_batches(postgres, ns, batches) == run_batches(sqlite, ns, batches)


def test_namespaces_are_separate(store_factory: Callable[..., Store]) -> None:
    store = store_factory("postgres")
    store.put("a", "k", {"v": 1}, tag="x")
    store.put("b", "k", {"v": 2}, tag="x")
    assert store.get("a", "k") == {"v": 1}
    assert store.count("a", tag="x") == 1
    assert [k for k, _ in store.scan("b")] == ["k"]


def test_nul_in_a_key_is_a_store_error(store_factory: Callable[..., Store]) -> None:
    # PostgreSQL text cannot hold NUL; values can (JSON escapes it), keys and tags cannot.
    store = store_factory("postgres")
    with pytest.raises(StoreError, match="NUL"):
        store.put("ns", "a\x00b", {})
    store.put("ns", "k", {"s": "a\x00b"})
    assert store.get("ns", "k") == {"s": "a\x00b"}


# -- two workers --------------------------------------------------------------------

NS = "claims"
DOCS_N = 40
THREADS = 3


def claim(store: Store, key: str, seen: dict[str, Any], me: str) -> bool:
    """The delivery log's claim: re-read in a transaction, check state and lease token, update_if."""
    with store.transaction():
        cur = store.get(NS, key)
        if cur is None or cur["state"] not in ("pending", "sending"):
            return False
        if cur["state"] == "sending" and cur["token"] != seen["token"]:
            return False
        return store.update_if(NS, key, cur["state"], {**cur, "state": "sending", "token": me}, tag="sending")


@pytest.mark.parametrize("start", ["pending", "sending"], ids=["fresh-claims", "reclaims-of-expired-leases"])
def test_two_workers_claim_each_document_once(store_factory: Callable[..., Store], start: str) -> None:
    first = store_factory("postgres")
    second = store_factory("postgres", shared_with=first)
    for i in range(DOCS_N):
        first.put(NS, f"d{i:03d}", {"state": start, "token": "expired"}, tag=start)
    wins: list[tuple[str, str]] = []
    lock = threading.Lock()
    go = threading.Barrier(2 * THREADS)

    def worker(store: Store, me: str) -> None:
        # Every worker reads all documents before any claims, so all hold the same stale view.
        seen = {k: d for k, d in store.scan(NS)}
        go.wait()
        for key, doc in seen.items():
            if claim(store, key, doc, me):
                with lock:
                    wins.append((key, me))

    threads = [
        threading.Thread(target=worker, args=(store, f"{name}-{t}"))
        for name, store in (("a", first), ("b", second))
        for t in range(THREADS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    claimed = sorted(k for k, _ in wins)
    assert claimed == [f"d{i:03d}" for i in range(DOCS_N)], "each document claimed exactly once"
    assert first.count(NS, tag="sending") == DOCS_N


# -- failures -----------------------------------------------------------------------

PASSWORD = "Sup3r-secret-pw"


@pytest.mark.parametrize(
    "make_dsn",
    [
        lambda pg: pg.dsn(password=PASSWORD),
        lambda pg: f"postgresql://storywatch:{PASSWORD}@127.0.0.1:1/nowhere",
        lambda pg: f"host=127.0.0.1 port={pg.port} user=nobody password={PASSWORD} dbname=x",
        lambda pg: f"host=127.0.0.1 password={PASSWORD} = broken",
    ],
    ids=["wrong-password", "server-down", "unknown-user", "unparseable-dsn"],
)
def test_errors_name_the_server_not_the_password(pg_server: PostgresServer, make_dsn: Any) -> None:
    dsn = make_dsn(pg_server)
    with pytest.raises(StoreError) as info:
        PostgresStore(dsn, connect_timeout_s=2)
    text = str(info.value)
    assert PASSWORD not in text
    assert info.value.__cause__ is None or PASSWORD not in str(info.value.__cause__)
    if "broken" not in dsn:
        assert "127.0.0.1" in text


def test_a_short_password_does_not_garble_the_error() -> None:
    """Masking "on" everywhere would turn "connection" into "c**********necti**********"."""
    with pytest.raises(StoreError) as info:
        PostgresStore("postgresql://u:on@127.0.0.1:1/db", connect_timeout_s=2)
    text = str(info.value)
    assert "connection" in text and "c**********n" not in text, text


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("postgresql://sw:pw@db.internal:5433/storywatch", "sw@db.internal:5433/storywatch"),
        ("host=db user=sw password=pw dbname=s", "sw@db:5432/s"),
        ("postgresql:///storywatch", "localhost:5432/storywatch"),
    ],
    ids=["url", "key-value", "defaults"],
)
def test_describe(dsn: str, shown: str) -> None:
    assert describe(dsn) == shown


def test_store_recovers_after_a_server_restart(pg_server: PostgresServer, store_factory: Callable[..., Store]) -> None:
    store = store_factory("postgres")
    store.put("ns", "k", {"v": 1})
    pg_server.restart()
    failures = 0
    for _ in range(3):
        try:
            assert store.get("ns", "k") == {"v": 1}
            break
        except StoreError as exc:
            assert "127.0.0.1" in str(exc)
            failures += 1
    assert failures <= 1, "one failed statement at most, then a fresh connection"
    with store.transaction():
        store.put("ns", "k2", {"v": 2})
    assert store.count("ns") == 2


def test_full_pool_is_a_store_error(pg_server: PostgresServer) -> None:
    store = PostgresStore(pg_server.new_database(), pool_size=1, pool_timeout_s=0.2)
    inside, done = threading.Event(), threading.Event()

    def hold() -> None:
        with store.transaction():
            inside.set()
            done.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert inside.wait(30)
        with pytest.raises(StoreError, match="pool_size=1"):
            store.get("ns", "k")
    finally:
        done.set()
        t.join(30)
        store.close()


def test_closed_store_refuses(store_factory: Callable[..., Store]) -> None:
    store = store_factory("postgres")
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.get("ns", "k")


# -- settings -----------------------------------------------------------------------


def test_postgres_settings_need_a_dsn() -> None:
    with pytest.raises(ValueError, match=r"needs store\.dsn"):
        Settings.model_validate({"store": {"kind": "postgres"}})


def test_dsn_is_a_secret_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    dsn = f"postgresql://sw:{PASSWORD}@db:5432/storywatch"
    with pytest.raises(ValueError, match="must not be written in a config file"):
        Settings.model_validate({"store": {"kind": "postgres", "dsn": dsn}})
    monkeypatch.setenv("SW_TEST_PG_DSN", dsn)
    s = Settings.model_validate({"store": {"kind": "postgres", "dsn": {"env": "SW_TEST_PG_DSN"}, "pool_size": 2}})
    assert s.store.dsn is not None and s.store.dsn.get_secret_value() == dsn
    assert PASSWORD not in str(s.redacted())


def test_missing_server_binaries_say_to_run_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    import tests.pg_server as helper

    monkeypatch.setattr(helper.glob, "glob", lambda pattern: [])
    monkeypatch.setattr(helper.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match=r"scripts/setup\.sh"):
        PostgresServer()
