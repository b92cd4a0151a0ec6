"""The store contract: one suite, run over every store in ``storywatch.store.STORES``.

The ``store`` fixture (tests/core/conftest.py) gives a fresh store of each registered
kind; ``store_factory(kind, shared_with=store)`` a second handle on the same database,
which stands for another worker or process. What stages rely on: JSON documents round
trip exactly, keys scan in order with ``after``/``limit`` paging and tag filters,
``insert`` and ``update_if`` are atomic compare-and-set (two alert workers never both
claim a delivery), and a transaction is all or nothing.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storywatch.errors import StoreError
from storywatch.store import Store
from storywatch.store.sqlite import SQLiteStore

StoreFactory = Callable[..., Store]


class Boom(Exception):
    pass


def test_get_of_missing_key_is_none(store: Store) -> None:
    assert store.get("ns", "missing") is None
    assert store.get_tag("ns", "missing") is None


@pytest.mark.parametrize(
    "doc",
    [
        {},
        {"n": 1, "f": 0.5, "neg": -3, "big": 2**53, "t": True, "f2": False, "none": None},
        {"nested": {"list": [1, "two", [3.0], {"four": None}]}},
        {"ünï": "cödé 中文 🚀", "quote": "'\"\\", "nl": "a\nb"},
    ],
    ids=["empty", "scalars", "nested", "unicode"],
)
def test_documents_round_trip_exactly(store: Store, doc: dict[str, Any]) -> None:
    store.put("ns", "k", doc, tag="t")
    assert store.get("ns", "k") == doc
    assert store.get_tag("ns", "k") == "t"


def test_documents_take_what_the_stages_put_in_them(store: Store) -> None:
    """Floats in full precision, numpy scalars as numbers, a NUL, integer keys as strings."""
    doc = {"w": 0.1 + 0.2, "tiny": 1e-300, "np32": np.float32(0.5), "np64": np.float64(1 / 3), "i": np.int64(7),
           "nul": "a\u0000b", "by_int": {3: "x"}}
    store.put("ns", "k", doc)
    assert store.get("ns", "k") == {
        "w": 0.1 + 0.2, "tiny": 1e-300, "np32": 0.5, "np64": 1 / 3, "i": 7, "nul": "a\u0000b", "by_int": {"3": "x"}
    }


def test_non_finite_floats_are_stored_as_null(store: Store) -> None:
    """JSON has no NaN or infinity; the stores write null rather than Python's non-standard tokens."""
    store.put("ns", "k", {"nan": float("nan"), "inf": float("inf"), "list": [float("-inf"), 1.0]})
    assert store.get("ns", "k") == {"nan": None, "inf": None, "list": [None, 1.0]}


def test_integers_beyond_64_bits_round_trip_exactly(store: Store) -> None:
    doc = {"big": 2**70, "low": -(2**63) - 1, "max": 2**64 - 1, "list": [2**64, np.int64(3)]}
    store.put("ns", "k", doc)
    assert store.get("ns", "k") == {"big": 2**70, "low": -(2**63) - 1, "max": 2**64 - 1, "list": [2**64, 3]}


@pytest.mark.parametrize("value", [object(), {1, 2}, b"bytes"], ids=["object", "set", "bytes"])
def test_a_value_json_cannot_hold_is_refused(store: Store, value: object) -> None:
    with pytest.raises(TypeError):
        store.put("ns", "k", {"v": value})
    assert store.get("ns", "k") is None


def test_put_replaces_value_and_tag(store: Store) -> None:
    store.put("ns", "k", {"v": 1}, tag="old")
    store.put("ns", "k", {"v": 2})
    assert store.get("ns", "k") == {"v": 2}
    assert store.get_tag("ns", "k") is None


def test_namespaces_are_separate(store: Store) -> None:
    store.put("a", "k", {"ns": "a"})
    store.put("b", "k", {"ns": "b"})
    store.delete("a", "k")
    assert store.get("a", "k") is None
    assert store.get("b", "k") == {"ns": "b"}
    assert store.count("a") == 0 and store.count("b") == 1


def test_insert_only_when_absent(store: Store) -> None:
    assert store.insert("ns", "k", {"v": 1}, tag="first") is True
    assert store.insert("ns", "k", {"v": 2}, tag="second") is False
    assert store.get("ns", "k") == {"v": 1}
    assert store.get_tag("ns", "k") == "first"


@pytest.mark.parametrize(
    ("stored_tag", "expect", "replaced"),
    [
        ("pending", "pending", True),
        ("pending", "sent", False),
        ("pending", None, False),
        (None, None, True),
        (None, "pending", False),
    ],
    ids=["tag-matches", "tag-differs", "expect-none-but-tagged", "both-none", "expect-tag-but-untagged"],
)
def test_update_if_compares_the_tag(store: Store, stored_tag: str | None, expect: str | None, replaced: bool) -> None:
    store.put("ns", "k", {"v": "before"}, tag=stored_tag)
    assert store.update_if("ns", "k", expect, {"v": "after"}, tag="new") is replaced
    assert store.get("ns", "k") == {"v": "after" if replaced else "before"}
    assert store.get_tag("ns", "k") == ("new" if replaced else stored_tag)


def test_update_if_of_missing_key_does_nothing(store: Store) -> None:
    assert store.update_if("ns", "missing", None, {"v": 1}, tag="x") is False
    assert store.get("ns", "missing") is None


def test_delete_is_idempotent(store: Store) -> None:
    store.put("ns", "k", {})
    store.delete("ns", "k")
    store.delete("ns", "k")
    assert store.get("ns", "k") is None


def test_put_many_stores_all(store: Store) -> None:
    store.put_many("ns", {f"k{i}": {"i": i} for i in range(10)})
    assert store.count("ns") == 10
    assert store.get("ns", "k7") == {"i": 7}


def test_put_many_replaces_documents_and_their_tags(store: Store) -> None:
    store.put("ns", "a", {"v": 1}, tag="t")
    store.put_many("ns", {"a": {"v": 2}, "b": {"v": 3}})
    store.put_many("ns", {})
    assert store.get("ns", "a") == {"v": 2} and store.get("ns", "b") == {"v": 3}
    assert store.get_tag("ns", "a") is None, "as put without a tag"


def test_put_many_in_a_failed_transaction_writes_nothing(store: Store) -> None:
    store.put("ns", "a", {"v": 1})
    with pytest.raises(RuntimeError), store.transaction():
        store.put_many("ns", {"a": {"v": 2}, "b": {"v": 3}})
        raise RuntimeError("crash mid-batch")
    assert store.get("ns", "a") == {"v": 1} and store.get("ns", "b") is None


def test_put_many_refuses_what_json_cannot_hold_and_writes_none_of_it(store: Store) -> None:
    with pytest.raises(TypeError):
        store.put_many("ns", {"a": {"v": 1}, "b": {"v": {1, 2}}})
    assert store.get("ns", "a") is None


def test_scan_pages_through_every_key_in_order(store: Store) -> None:
    # More than one internal page (SQLite reads 500 rows at a time).
    keys = [f"key-{i:05d}" for i in range(1234)]
    store.put_many("ns", {k: {"k": k} for k in reversed(keys)})
    assert [k for k, _ in store.scan("ns")] == keys

    seen: list[str] = []
    after: str | None = None
    while True:
        page = list(store.scan("ns", after=after, limit=100))
        if not page:
            break
        assert len(page) <= 100
        seen.extend(k for k, _ in page)
        after = page[-1][0]
    assert seen == keys
    assert list(store.scan("ns", limit=0)) == []
    assert [k for k, _ in store.scan("ns", after="key-01231")] == ["key-01232", "key-01233"]


def test_scan_and_count_filter_by_tag(store: Store) -> None:
    for i in range(30):
        store.put("ns", f"k{i:02d}", {"i": i}, tag=["pending", "sent", None][i % 3])
    pending = [k for k, _ in store.scan("ns", tag="pending")]
    assert pending == [f"k{i:02d}" for i in range(0, 30, 3)]
    assert [k for k, _ in store.scan("ns", tag="sent", after="k10", limit=3)] == ["k13", "k16", "k19"]
    assert store.count("ns") == 30
    assert store.count("ns", tag="pending") == 10
    assert store.count("ns", tag="nobody") == 0
    assert [doc for _, doc in store.scan("ns", tag="sent", limit=1)] == [{"i": 1}]


def test_transaction_commits_all_writes(store: Store) -> None:
    with store.transaction():
        store.put("ns", "a", {"v": 1})
        store.insert("ns", "b", {"v": 2})
    assert store.count("ns") == 2


def test_transaction_rolls_back_on_exception(store: Store) -> None:
    store.put("ns", "kept", {"v": 0}, tag="old")
    with pytest.raises(Boom), store.transaction():
        store.put("ns", "new", {"v": 1})
        assert store.update_if("ns", "kept", "old", {"v": 2}, tag="changed")
        store.delete("ns", "kept")
        raise Boom
    assert store.get("ns", "new") is None
    assert store.get("ns", "kept") == {"v": 0}
    assert store.get_tag("ns", "kept") == "old"


def test_nested_transactions_commit_with_the_outer_one(
    store: Store, store_factory: StoreFactory, store_kind: str
) -> None:
    other = store_factory(store_kind, shared_with=store)
    with store.transaction():
        store.put("ns", "outer", {})
        with store.transaction():
            store.put("ns", "inner", {})
        assert other.get("ns", "inner") is None, "another handle does not see uncommitted writes"
    assert other.get("ns", "inner") == {} and other.get("ns", "outer") == {}


def test_exception_through_nested_transactions_rolls_back_everything(store: Store) -> None:
    with pytest.raises(Boom), store.transaction():
        store.put("ns", "outer", {})
        with store.transaction():
            store.put("ns", "inner", {})
            raise Boom
    assert store.count("ns") == 0


def test_store_is_usable_after_a_rolled_back_transaction(store: Store) -> None:
    with pytest.raises(Boom), store.transaction():
        store.put("ns", "a", {})
        raise Boom
    with store.transaction():
        store.put("ns", "b", {})
    assert [k for k, _ in store.scan("ns")] == ["b"]


def test_update_if_lets_exactly_one_of_two_workers_claim(
    store: Store, store_factory: StoreFactory, store_kind: str
) -> None:
    """Two workers, each with its own handle, race to claim every pending document."""
    docs = 200
    with store.transaction():
        for i in range(docs):
            store.put("jobs", f"job-{i:03d}", {"state": "pending"}, tag="pending")
    workers = {"w1": store_factory(store_kind, shared_with=store), "w2": store_factory(store_kind, shared_with=store)}
    won: dict[str, list[str]] = {name: [] for name in workers}
    start = threading.Barrier(len(workers))
    errors: list[BaseException] = []

    def claim(name: str, handle: Store) -> None:
        try:
            start.wait()
            for key, _ in list(handle.scan("jobs", tag="pending")):
                if handle.update_if("jobs", key, "pending", {"state": "claimed", "by": name}, tag=f"claimed-{name}"):
                    won[name].append(key)
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=claim, args=item) for item in workers.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    claimed = won["w1"] + won["w2"]
    assert sorted(claimed) == [f"job-{i:03d}" for i in range(docs)], "every job claimed exactly once"
    for name, keys in won.items():
        for key in keys:
            assert store.get("jobs", key) == {"state": "claimed", "by": name}
    assert store.count("jobs", tag="pending") == 0


def test_closed_store_raises_store_error(store_factory: StoreFactory, store_kind: str) -> None:
    store = store_factory(store_kind)
    store.close()
    with pytest.raises(StoreError):
        store.get("ns", "k")


def test_sqlite_store_on_unusable_path_raises_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="a-file"):
        SQLiteStore(blocker / "state.db")


# -- the store behaves like a dict of (key -> (tag, doc)) --------------------------------

KEYS = st.sampled_from(["a", "b", "B", "c-1", "c_1", "é", "中"])
TAGS = st.none() | st.sampled_from(["pending", "sent"])
DOCS = st.dictionaries(st.sampled_from(["x", "y"]), st.integers(-5, 5) | st.text(max_size=3), max_size=2)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), KEYS, DOCS, TAGS),
        st.tuples(st.just("insert"), KEYS, DOCS, TAGS),
        st.tuples(st.just("update_if"), KEYS, TAGS, DOCS, TAGS),
        st.tuples(st.just("delete"), KEYS),
    ),
    max_size=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS, tag=TAGS, after=st.none() | KEYS, limit=st.none() | st.integers(0, 3))
def test_store_matches_a_dict_model(
    store: Store, ops: list[tuple[Any, ...]], tag: str | None, after: str | None, limit: int | None
) -> None:
    ns = uuid.uuid4().hex  # one store serves every example; each gets its own namespace
    model: dict[str, tuple[str | None, dict[str, Any]]] = {}
    for op in ops:
        if op[0] == "put":
            _, key, doc, t = op
            store.put(ns, key, doc, tag=t)
            model[key] = (t, doc)
        elif op[0] == "insert":
            _, key, doc, t = op
            assert store.insert(ns, key, doc, tag=t) is (key not in model)
            model.setdefault(key, (t, doc))
        elif op[0] == "update_if":
            _, key, expect, doc, t = op
            hit = key in model and model[key][0] == expect
            assert store.update_if(ns, key, expect, doc, tag=t) is hit
            if hit:
                model[key] = (t, doc)
        else:
            store.delete(ns, op[1])
            model.pop(op[1], None)
    for key in set(model) | {"a", "zz"}:
        assert store.get(ns, key) == (model[key][1] if key in model else None)
    # Byte-wise key order (what SQLite's BINARY collation gives), not a locale's.
    expected = sorted(
        (
            k
            for k, (t, _) in model.items()
            if (tag is None or t == tag) and (after is None or k.encode() > after.encode())
        ),
        key=str.encode,
    )
    if limit is not None:
        expected = expected[:limit]
    assert [k for k, _ in store.scan(ns, tag=tag, after=after, limit=limit)] == expected
    assert store.count(ns, tag=tag) == sum(1 for t, _ in model.values() if tag is None or t == tag)
