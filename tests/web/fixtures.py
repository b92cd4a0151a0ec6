"""A store populated with what the stages keep, for the dashboard and status tests.

Feed state and the alert delivery log come from the real stage code where it is cheap
(ingest's ``FeedState`` documents, the alerts stage run over story events); story
snapshots are representative documents of the shape :mod:`storywatch.views` reads.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from alerts.deliveries import new_delivery
from storywatch.bus.embedded import EmbeddedBus
from storywatch.clock import FakeClock
from storywatch.schema import ArticleRef, StoryEvent, StorySnapshot, TopicMatch
from storywatch.settings import Settings
from storywatch.store import Store
from storywatch.views import NS_FEEDS, NS_STORIES, story_documents

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
EVIL = '<script>alert("pwned")</script> Harbour fire <b>spreads</b>'

SOURCES = ["World Wire", "Harbor Herald", "The Daily Ledger", "Asia-Pacific Desk", "Metro Post", "Coast Radio"]


def settings_for(tmp: Path) -> Settings:
    """A config with two feeds, one watched topic and a file channel, under ``tmp``."""
    return Settings.model_validate(
        {
            "base_dir": str(tmp),
            "bus": {"path": "bus.db"},
            "store": {"path": "state.db"},
            "feeds": [
                {"url": "https://news.example/world.xml", "name": "World Wire"},
                {"url": "https://ledger.example/rss", "name": "The Daily Ledger"},
                {"url": "https://gone.example/feed", "name": "Gone Gazette"},
            ],
            "topics": [
                {"name": "missile launches", "severity": "high", "channels": ["file"]},
                {"name": "port disasters", "severity": "medium", "channels": ["file"]},
            ],
            "alerts": {
                "channels": {"file": {"kind": "file", "path": "alerts.jsonl"}},
                "default_channels": ["file"],
                "operator_channels": ["file"],
                "rules": {"appears": {"enabled": False}},
            },
        }
    )


def _story(
    sid: str, headline: str, start: datetime, n: int, step_min: int, topics: list[TopicMatch], sources: int
) -> list[StoryEvent]:
    arts = [
        ArticleRef(
            id=f"{sid}-a{i}",
            title=f"{headline} (report {i + 1})" if i else headline,
            url=f"https://{SOURCES[i % sources].lower().replace(' ', '')}.example/{sid}/{i}",
            source=SOURCES[i % sources],
            published=start + timedelta(minutes=step_min * i),
        )
        for i in range(n)
    ]
    if "<script>" in headline:
        # A feed may carry any URL; the dashboard must not turn this one into a link.
        arts[0] = arts[0].model_copy(update={"url": "javascript:alert(document.cookie)"})
    events = []
    for i in range(n):
        snap = StorySnapshot(
            story_id=sid, revision=i + 1, headline=headline, summary=f"Summary of {headline}.",
            key_terms=["harbour", "fire"] if "fire" in headline.lower() else ["missile"],
            first_seen=arts[0].published, last_seen=arts[i].published,
            article_count=i + 1, source_count=len({a.source for a in arts[: i + 1]}),
            sources=sorted({a.source for a in arts[: i + 1]}), velocity=round(60 / step_min * min(i + 1, 6) / 6, 2),
            top_articles=arts[: i + 1][-5:],
        )  # fmt: skip
        kind = "created" if i == 0 else "updated"
        events.append(StoryEvent(type=kind, story_id=sid, revision=i + 1, at=arts[i].published, story=snap,
                                 changes=["new_sources"] if i else []))  # fmt: skip
        if topics and i == 1:
            for m in topics:
                events.append(StoryEvent(type="matched", story_id=sid, revision=i + 1, at=arts[i].published,
                                         story=snap, match=m, matches=topics))  # fmt: skip
    return events


def _failed_deliveries(store: Store, settings: Settings) -> None:
    """One delivery that failed and waits for a retry, one that is dead, through the
    alerts stage's own delivery log transitions."""
    from alerts.model import Planned
    from alerts.service import delivery_log
    from storywatch.errors import DeliveryError
    from storywatch.schema import Alert

    dlog = delivery_log(settings, store)
    for i, (error, permanent) in enumerate([("HTTP 503 from receiver", False), ("HTTP 401: invalid token", True)]):
        at = NOW - timedelta(minutes=20 + 10 * i)
        alert = Alert(key=f"feed_health:ledger:{i}", rule="feed_health", severity="medium",
                      title=f"Feed failing: The Daily Ledger ({i + 1})", created_at=at)  # fmt: skip
        doc = new_delivery(Planned(alert, ("file",)), "file", at, None)
        dlog.record([doc])
        claimed = dlog.claim(doc, at)
        assert claimed is not None
        dlog.mark_failed(claimed, DeliveryError("file", error, permanent=permanent), at)


def populate(store: Store, settings: Settings, tmp: Path) -> dict[str, Any]:
    """Fill ``store`` with feeds, stories and deliveries; return what a test may assert on."""
    from alerts.service import AlertsService
    from ingest.schedule import FeedState

    feeds = [
        FeedState(key="https://news.example/world.xml", url="https://news.example/world.xml", status="ok",
                  last_success=NOW - timedelta(minutes=4), last_attempt=NOW - timedelta(minutes=4),
                  next_check_at=NOW + timedelta(minutes=11), etag='"abc"'),
        FeedState(key="https://ledger.example/rss", url="https://ledger.example/rss", status="failing",
                  error_count=4, last_error="FeedFetchError: HTTP 503 Service Unavailable",
                  last_success=NOW - timedelta(hours=7), last_attempt=NOW - timedelta(minutes=2),
                  failing_since=NOW - timedelta(hours=5), next_check_at=NOW + timedelta(minutes=30)),
    ]  # fmt: skip
    for f in feeds:
        store.put(NS_FEEDS, f.key, f.to_doc(), tag=f.status)

    missile = TopicMatch(topic="missile launches", score=0.71, threshold=0.45, severity="high",
                         explanation='closest to example "North Korea fires ballistic missile into the sea"',
                         keywords=["missile"])  # fmt: skip
    port = TopicMatch(topic="port disasters", score=0.52, threshold=0.45,
                      explanation="closest to the description")  # fmt: skip
    stories = [
        _story("s-fire", EVIL, NOW - timedelta(hours=5), 9, 30, [port], 5),
        _story("s-missile", "North Korea fires ballistic missile toward Japan", NOW - timedelta(hours=3), 12, 12,
               [missile], 6),
        _story("s-budget", "City council passes budget after long night", NOW - timedelta(hours=9), 4, 90, [], 2),
        _story("s-storm", "Storm closes mountain passes", NOW - timedelta(hours=1, minutes=40), 5, 18, [port], 3),
    ]  # fmt: skip
    # The stories' read model, as the enrich stage keeps it from the events it publishes.
    for ev in sorted((e for evs in stories for e in evs), key=lambda e: e.at):
        for key, doc in story_documents(ev, lambda k: store.get(NS_STORIES, k)).items():
            store.put(NS_STORIES, key, doc)

    # The alert log, written by the real alerts stage from the story events.
    bus = EmbeddedBus(tmp / "alerts-bus.db")
    try:
        topics = settings.bus.topics
        producer = bus.producer()
        events = sorted((e for evs in stories for e in evs), key=lambda e: e.at)
        clock = FakeClock(events[0].at)
        svc = AlertsService(settings, bus, store, clock, stdout=io.StringIO())
        for ev in events:  # as they happened, so each delivery has its own time
            clock.advance((ev.at - clock.now()).total_seconds())
            producer.publish(topics.story_events, ev.story_id, ev.to_bytes())
            producer.flush()
            svc.drain()
        svc.close()
    finally:
        bus.close()
    _failed_deliveries(store, settings)
    return {"now": NOW, "evil": EVIL, "events": stories}
