"""``storywatch status`` and the read-only views it is built on."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from storywatch import views
from storywatch.bus.embedded import EmbeddedBus
from storywatch.settings import Settings
from storywatch.store.sqlite import SQLiteStore
from tests.web.fixtures import NOW, populate, settings_for


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Settings, SQLiteStore, EmbeddedBus]]:
    settings = settings_for(tmp_path)
    store = SQLiteStore(tmp_path / "state.db")
    bus = EmbeddedBus(tmp_path / "bus.db")
    populate(store, settings, tmp_path)
    try:
        yield settings, store, bus
    finally:
        bus.close()
        store.close()


def test_text_report(world: tuple[Settings, SQLiteStore, EmbeddedBus]) -> None:
    settings, store, bus = world
    out = io.StringIO()
    rc = views.status(settings, store, bus, False, out, now=NOW)
    text = out.getvalue()
    assert rc == 1, "a failing feed needs a person"
    for expected in (
        "FEEDS  1/3 healthy, 1 not polled yet",
        "failing  The Daily Ledger",
        "errors 4: FeedFetchError: HTTP 503",
        "next in 11m",
        "STORIES  most active of 4",
        "North Korea fires ballistic missile toward Japan  [missile launches]",
        "ALERTS  5 sent, 1 failed, 1 dead",
        "dead     ",
        "HTTP 401: invalid token",
        "BUS LAG",
        "enrich   0",
    ):
        assert expected in text, f"{expected!r} missing:\n{text}"
    # Most active first: the missile story grows fastest.
    stories = text.split("STORIES")[1].split("ALERTS")[0].splitlines()[1:]
    assert "North Korea" in stories[0]


def test_json_report(world: tuple[Settings, SQLiteStore, EmbeddedBus]) -> None:
    settings, store, bus = world
    out = io.StringIO()
    rc = views.status(settings, store, bus, True, out, now=NOW)
    doc = json.loads(out.getvalue())
    assert rc == 1 and doc["ok"] is False
    assert {f["status"] for f in doc["feeds"]} == {"ok", "failing", "new"}
    assert doc["alerts"]["counts"] == {"sent": 5, "failed": 1, "dead": 1}
    assert {a["state"] for a in doc["alerts"]["failed"]} == {"failed", "dead"}
    assert doc["stories"][0]["story_id"] == "s-missile"
    assert doc["stories"][0]["matches"][0]["topic"] == "missile launches"
    assert doc["bus_lag"] == {"enrich": 0, "alerts": 0}


def test_healthy_exits_0(tmp_path: Path) -> None:
    settings = Settings.model_validate({"base_dir": str(tmp_path)})
    store = SQLiteStore(tmp_path / "s.db")
    try:
        store.put(views.NS_FEEDS, "https://a.example/", {"status": "ok", "last_success": NOW.isoformat()}, tag="ok")
        out = io.StringIO()
        assert views.status(settings, store, None, False, out, now=NOW) == 0
        assert "none yet" in out.getvalue()
    finally:
        store.close()


def test_bus_lag_counts_uncommitted_records_without_committing(tmp_path: Path) -> None:
    settings = Settings.model_validate({"base_dir": str(tmp_path)})
    topics = settings.bus.topics
    bus = EmbeddedBus(tmp_path / "bus.db")
    try:
        producer = bus.producer()
        for i in range(7):
            producer.publish(topics.raw_articles, str(i), b"{}")
        for i in range(3):
            producer.publish(topics.story_events, str(i), b"{}")
        producer.flush()
        consumer = bus.consumer(settings.enrich.group, [topics.raw_articles])
        consumer.poll(5, 0.0)
        consumer.commit()
        consumer.close()
        groups = views.stage_groups(settings)
        assert views.bus_lag(bus, groups) == {"enrich": 2, "alerts": 3}
        assert views.bus_lag(bus, groups) == {"enrich": 2, "alerts": 3}
    finally:
        bus.close()


def test_bus_lag_unknown_for_a_bus_without_a_side_door() -> None:
    class Opaque:
        pass

    assert views.bus_lag(Opaque(), {"enrich": ("g", ["t"])}) == {"enrich": None}  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("doc", "headline", "articles", "sources", "growth"),
    [
        ({"story_id": "x", "headline": "H"}, "H", 0, 0, 0),
        (
            {
                "headline": "H", "article_count": 3, "source_count": 2, "last_seen": "2026-01-01T02:00:00+00:00",
                "top_articles": [
                    {"id": "1", "source": "A", "published": "2026-01-01T00:00:00Z"},
                    {"id": "2", "source": "B", "published": "2026-01-01T01:00:00Z"},
                ],
            },
            "H", 3, 2, 3,
        ),
        (
            {"story": {"headline": "wrapped", "article_count": 2}, "history": [
                {"at": "2026-01-01T00:00:00Z", "article_count": 1, "source_count": 1},
                {"at": "2026-01-01T00:30:00Z", "article_count": 2, "source_count": 1},
                {"at": "not a time"},
            ]},
            "wrapped", 2, 0, 2,
        ),
        ({"headline": 5, "first_seen": "garbage", "matches": [{"topic": "t"}, "junk"]}, "5", 0, 0, 0),
    ],
    ids=["minimal", "snapshot-with-articles", "event-wrapped-with-history", "junk-tolerated"],
)  # fmt: skip
def test_story_documents_are_read_tolerantly(
    doc: dict[str, object], headline: str, articles: int, sources: int, growth: int
) -> None:
    row = views.story_from_doc("k", doc)
    assert (row.headline, row.article_count, row.source_count, len(row.growth)) == (headline, articles, sources, growth)
    assert all(a.at <= b.at for a, b in zip(row.growth, row.growth[1:], strict=False))


def test_status_over_the_real_ingest_stage(tmp_path: Path) -> None:
    """Feed state as the ingest stage writes it, read back by name: one seed feed that
    works, one that does not exist."""
    from ingest.service import IngestService
    from storywatch.clock import SystemClock

    seeds = Path(__file__).resolve().parents[1] / "seeds" / "feeds"
    settings = Settings.model_validate(
        {
            "base_dir": str(tmp_path),
            "feeds": [
                {"url": str(seeds / "world-wire.xml"), "name": "World Wire"},
                {"url": "missing.xml", "name": "Missing Feed"},
            ],
        }
    )
    store = SQLiteStore(tmp_path / "state.db")
    bus = EmbeddedBus(tmp_path / "bus.db")
    try:
        svc = IngestService(settings, bus, store, SystemClock())
        published = svc.drain()
        svc.close()
        rows = {f.name: f for f in views.feeds_view(store, settings)}
        assert rows["World Wire"].status == "ok" and rows["World Wire"].last_success is not None
        assert rows["Missing Feed"].error_count == 1 and "missing.xml" in (rows["Missing Feed"].last_error or "")
        out = io.StringIO()
        views.status(settings, store, bus, True, out)
        doc = json.loads(out.getvalue())
        # Nothing consumed the articles yet: enrich lags by exactly what ingest published.
        assert published > 0 and doc["bus_lag"]["enrich"] == published
    finally:
        bus.close()
        store.close()


def test_bus_lag_over_kafka_without_joining_the_groups(
    tmp_path: Path, kafka_bus_settings: dict[str, object], unique_name: object
) -> None:
    from storywatch.bus import make_bus

    assert callable(unique_name)
    topics = {"raw_articles": unique_name("raw"), "story_events": unique_name("ev"), "feed_health": unique_name("fh")}
    settings = Settings.model_validate({"base_dir": str(tmp_path), "bus": {**kafka_bus_settings, "topics": topics}})
    bus = make_bus(settings.resolved_bus())
    try:
        bus.ensure_topics(list(topics.values()))
        producer = bus.producer()
        for i in range(5):
            producer.publish(topics["raw_articles"], f"k{i}", b"{}")
        producer.flush()
        before = views.bus_lag(bus, views.stage_groups(settings), strict=True)
        consumer = bus.consumer(settings.enrich.group, [topics["raw_articles"]])
        got = 0
        for _ in range(100):
            got += len(consumer.poll(10, 0.5))
            if got == 5:
                break
        consumer.commit()
        after = views.bus_lag(bus, views.stage_groups(settings), strict=True)
    finally:
        bus.close()
    # No group had committed: the enrich stage had every record ahead of it (tansu may
    # read one batch short at the end of a partition, see KafkaBusConsumer.lag).
    assert before["enrich"] is not None and 1 <= before["enrich"] <= 5
    assert before["alerts"] == 0
    assert got == 5 and after["enrich"] == 0


def test_status_exits_3_when_kafka_cannot_be_reached(tmp_path: Path) -> None:
    import socket

    from click.testing import CliRunner

    from storywatch.cli import main

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tmp_path / "storywatch.yaml"
    cfg.write_text(
        f"base_dir: {tmp_path}\n"
        f"bus: {{kind: kafka, bootstrap_servers: ['127.0.0.1:{port}'], request_timeout_ms: 2000}}\n"
    )
    result = CliRunner().invoke(main, ["status", "--config", str(cfg)])
    assert result.exit_code == 3, result.output
    assert f"127.0.0.1:{port}" in result.output


def test_a_feed_tried_and_never_polled_fine_is_not_healthy() -> None:
    assert views.FeedRow(key="a").healthy, "not polled yet"
    assert not views.FeedRow(key="a", error_count=1, last_error="ConnectError").healthy
    assert views.FeedRow(key="a", status="ok").healthy
