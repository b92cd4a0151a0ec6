"""MapLog on a real SQLite store: changes only, compaction, deletions, and a failed transaction."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from enrich import maplog
from enrich.maplog import MapLog
from storywatch.errors import StoreError
from storywatch.store.sqlite import SQLiteStore

NS = "enrich"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "state.db")
    yield s
    s.close()


def keys(store: SQLiteStore) -> list[str]:
    return sorted(k for k, _ in store.scan(NS))


def save(log: MapLog, store: SQLiteStore, data: dict[str, Any], touched: set[str] | None) -> dict[str, Any]:
    with store.transaction():
        manifest = log.save(data, touched)
    log.committed(manifest)
    return manifest


def test_the_first_save_is_whole_and_later_ones_are_changes(store: SQLiteStore) -> None:
    log = MapLog(store, NS, "df:")
    data = {"quake": 1, "chile": 1}
    first = save(log, store, data, {"quake", "chile"})
    assert keys(store) == ["df:base"] and first["deltas"] == []
    data["quake"] = 2
    data["lima"] = 1
    second = save(log, store, data, {"quake", "lima"})
    assert keys(store) == ["df:base", "df:delta:0"]
    assert store.get(NS, "df:delta:0") == {"quake": 2, "lima": 1}
    assert save(log, store, data, set()) == second, "nothing changed, nothing written"
    assert MapLog(store, NS, "df:").load(second) == data


def test_a_dropped_key_is_dropped_on_load(store: SQLiteStore) -> None:
    log = MapLog(store, NS, "articles:")
    data = {"a1": "s1", "a2": "s1"}
    save(log, store, data, None)
    del data["a1"]
    manifest = save(log, store, data, {"a1"})
    assert MapLog(store, NS, "articles:").load(manifest) == {"a2": "s1"}


def test_changes_are_folded_into_the_base_once_they_outgrow_the_map(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(maplog, "_MIN_COMPACT", 4)
    log = MapLog(store, NS, "df:")
    data = {"a": 1, "b": 1, "c": 1, "d": 1}
    save(log, store, data, None)
    manifests = []
    for i in range(6):
        data["a"] = data["b"] = 2 + i
        manifests.append(save(log, store, data, {"a", "b"}))
    # 2 entries, then 4; the third change (6 > 4 keys) rewrites the base and clears the changes.
    assert [len(m["deltas"]) for m in manifests] == [1, 2, 0, 1, 2, 0]
    assert keys(store) == ["df:base"]
    assert MapLog(store, NS, "df:").load(manifests[-1]) == data
    # A reloaded log carries on numbering its change documents.
    reloaded = MapLog(store, NS, "df:")
    reloaded.load(manifests[-1])
    data["e"] = 1
    assert save(reloaded, store, data, {"e"})["deltas"] == [manifests[-1]["next"]]


def test_a_failed_transaction_leaves_the_log_as_last_committed(store: SQLiteStore) -> None:
    log = MapLog(store, NS, "df:")
    data = {"a": 1}
    good = save(log, store, data, None)
    data["b"] = 1
    with pytest.raises(RuntimeError), store.transaction():
        log.save(data, {"b"})
        raise RuntimeError("the snapshot document could not be written")
    assert keys(store) == ["df:base"]
    assert MapLog(store, NS, "df:").load(good) == {"a": 1}
    # The next save still writes the change that was rolled back.
    manifest = save(log, store, data, {"b"})
    assert MapLog(store, NS, "df:").load(manifest) == {"a": 1, "b": 1}


def test_a_missing_document_is_a_store_error_naming_it(store: SQLiteStore) -> None:
    log = MapLog(store, NS, "df:")
    manifest = save(log, store, {"a": 1}, None)
    with pytest.raises(StoreError, match="df:delta:7"):
        MapLog(store, NS, "df:").load({**manifest, "deltas": [7]})
    store.delete(NS, "df:base")
    with pytest.raises(StoreError, match="df:base"):
        MapLog(store, NS, "df:").load(manifest)
