"""The seen-store: each article published once, updates on changed headlines, bounded size."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.dedup import NS_SEEN, SeenStore, merge_batch
from ingest.normalise import Normalised, title_key
from ingest.urls import canonical_url, stable_id, url_host
from storywatch.schema import Article
from storywatch.store.sqlite import SQLiteStore
from tests.ingest.conftest import T0


def item(url: str | None, title: str, feed: str = "feed-a", guid: str | None = None) -> Normalised:
    canon = canonical_url(url) if url else None
    host = url_host(canon or "") or "example.com"
    aid = stable_id("url", canon) if canon else stable_id("guid", guid or title)
    art = Article(id=aid, url=canon, guid=guid, title=title, published=T0, fetched_at=T0, feeds=[feed])
    return Normalised(art, title_key(title, host))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "state.db")
    yield s
    s.close()


def publish(seen: SeenStore, items: list[Normalised], minutes: int = 0) -> list[Article]:
    d = seen.decide(items, T0 + timedelta(minutes=minutes))
    seen.commit(d)
    return d.publish


def test_same_article_via_several_feeds_is_published_once_listing_all_feeds(store: SQLiteStore) -> None:
    seen = SeenStore(store, 1000)
    out = publish(
        seen,
        [
            item("https://news.example/a?utm_source=one", "Flood warning issued", "feed-a"),
            item("https://NEWS.example/a#top", "Flood warning issued", "feed-b"),
            item("https://news.example/b", "Other story", "feed-b"),
        ],
    )
    assert [a.title for a in out] == ["Flood warning issued", "Other story"]
    assert out[0].feeds == ["feed-a", "feed-b"]
    # A third feed later: nothing published, the feed is remembered.
    assert publish(seen, [item("https://news.example/a", "Flood warning issued", "feed-c")]) == []
    assert store.get(NS_SEEN, out[0].id)["feeds"] == ["feed-a", "feed-b", "feed-c"]  # type: ignore[index]


def test_resent_items_and_changed_guids_are_not_new(store: SQLiteStore) -> None:
    seen = SeenStore(store, 1000)
    assert len(publish(seen, [item("https://news.example/a", "Budget passes", guid="g1")])) == 1
    # Same URL, new GUID.
    assert publish(seen, [item("https://news.example/a", "Budget passes", guid="g2")]) == []
    # New URL (e.g. a CMS migration), same headline at the same host.
    assert publish(seen, [item("https://news.example/2026/a-budget", "Budget passes")]) == []
    assert publish(seen, [item("https://news.example/2026/a-budget", "Budget passes")]) == []
    # The same headline at another host is another article.
    assert len(publish(seen, [item("https://other.example/a", "Budget passes")])) == 1


def test_changed_title_is_published_as_an_update(store: SQLiteStore) -> None:
    seen = SeenStore(store, 1000)
    [first] = publish(seen, [item("https://news.example/q", "Quake hits coast")])
    [upd] = publish(seen, [item("https://news.example/q", "Quake of magnitude 7 hits coast")])
    assert upd.kind == "update" and upd.id == first.id and upd.title == "Quake of magnitude 7 hits coast"
    # Cosmetic changes (case, punctuation) are not updates; the new title is now the known one.
    assert publish(seen, [item("https://news.example/q", "QUAKE of magnitude 7 hits coast!")]) == []
    assert publish(seen, [item("https://news.example/q", "Quake of magnitude 7 hits coast")]) == []


def test_decide_does_not_write(store: SQLiteStore) -> None:
    seen = SeenStore(store, 1000)
    d = seen.decide([item("https://news.example/x", "X")], T0)
    assert d.new_count == 1 and store.count(NS_SEEN) == 0
    # Not committed (the bus flush failed, say): the replay publishes again.
    assert len(publish(seen, [item("https://news.example/x", "X")])) == 1


def test_capacity_evicts_the_oldest(store: SQLiteStore) -> None:
    seen = SeenStore(store, 5)
    for i in range(8):
        publish(seen, [item(f"https://news.example/{i}", f"Story number {i}")], minutes=i)
    assert len(seen) == 5 and store.count(NS_SEEN) == 5
    # The oldest were forgotten (and would be published again); the newest were not.
    assert len(publish(seen, [item("https://news.example/7", "Story number 7")])) == 0
    assert len(publish(seen, [item("https://news.example/0", "Story number 0")])) == 1


def test_merge_batch_keeps_order_and_merges_by_title() -> None:
    merged = merge_batch(
        [item("https://a.example/1", "One", "f1"), item("https://a.example/2", "Two", "f1"),
         item("https://a.example/1-copy", "One", "f2")]
    )  # fmt: skip
    assert [m.article.title for m in merged] == ["One", "Two"]
    assert merged[0].article.feeds == ["f1", "f2"]


_titles = st.sampled_from(["Flood", "Quake", "Election", "Strike", "Fire"])
_paths = st.sampled_from(["/a", "/b", "/c", "/a?utm_source=x", "/b#frag"])
_feeds = st.sampled_from(["f1", "f2", "f3"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.tuples(_paths, _titles, _feeds), max_size=6), min_size=1, max_size=5))
def test_replaying_batches_publishes_nothing_new(tmp_path_factory: pytest.TempPathFactory, batches: list) -> None:
    """Whatever arrives, each article id is published as "article" at most once, and
    replaying everything afterwards publishes nothing."""
    store = SQLiteStore(tmp_path_factory.mktemp("seen") / "s.db")
    try:
        seen = SeenStore(store, 10_000)
        firsts: list[str] = []
        for batch in batches:
            for art in publish(seen, [item("https://n.example" + p, t, f) for p, t, f in batch]):
                if art.kind == "article":
                    firsts.append(art.id)
        assert len(firsts) == len(set(firsts))
        for batch in batches:
            replay = publish(seen, [item("https://n.example" + p, t, f) for p, t, f in batch])
            assert all(a.kind == "update" for a in replay)
    finally:
        store.close()
