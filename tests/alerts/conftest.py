"""Fixtures and builders for the alerts tests: settings, story events, a bus and a store."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from alerts.service import AlertsService
from storywatch.bus.embedded import EmbeddedBus
from storywatch.clock import FakeClock
from storywatch.schema import ArticleRef, FeedHealth, StoryEvent, StorySnapshot, TopicMatch
from storywatch.settings import Settings
from storywatch.store.sqlite import SQLiteStore

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def make_settings(
    tmp_path: Path,
    channels: dict[str, dict[str, Any]] | None = None,
    *,
    topics: list[dict[str, Any]] | None = None,
    **alerts: Any,
) -> Settings:
    """Settings with the given channels (default: one file channel) and alert options."""
    channels = channels if channels is not None else {"file": {"kind": "file", "path": "alerts.jsonl"}}
    alerts.setdefault("default_channels", list(channels))
    alerts.setdefault("operator_channels", list(channels))
    alerts.setdefault("backoff_base_s", 1.0)
    alerts.setdefault("claim_lease_s", 60.0)
    data = {
        "base_dir": str(tmp_path),
        "bus": {"path": str(tmp_path / "bus.db")},
        "store": {"path": str(tmp_path / "state.db")},
        "topics": topics if topics is not None else [{"name": "floods", "min_sources": 1}],
        "alerts": {"channels": channels, **alerts},
    }
    return Settings.model_validate(data)


def snapshot(
    story_id: str = "s1",
    revision: int = 1,
    *,
    sources: int = 1,
    articles: int | None = None,
    headline: str = "River bursts its banks in the north",
    summary: str = "Heavy rain overnight flooded several towns.",
    at: datetime = T0,
    entities: list[str] | None = None,
) -> StorySnapshot:
    n = articles if articles is not None else sources
    refs = [
        ArticleRef(
            id=f"{story_id}-a{i}",
            title=f"{headline} (report {i})",
            url=f"https://news{i}.example/{story_id}/{i}?a=1&b=2",
            source=f"news{i}.example",
            published=at,
        )
        for i in range(1, min(n, 6) + 1)
    ]
    return StorySnapshot(
        story_id=story_id,
        revision=revision,
        headline=headline,
        summary=summary,
        first_seen=T0,
        last_seen=at,
        article_count=n,
        source_count=sources,
        sources=[f"news{i}.example" for i in range(1, sources + 1)],
        velocity=2.0,
        top_articles=refs,
        entities=entities or [],
    )


def event(
    type: str = "matched",
    story_id: str = "s1",
    revision: int = 1,
    *,
    topic: str | None = "floods",
    at: datetime | None = None,
    changes: list[str] | None = None,
    merged_from: str | None = None,
    **snap: Any,
) -> StoryEvent:
    at = at or T0 + timedelta(minutes=revision)
    match = None
    if topic is not None and type == "matched":
        match = TopicMatch(topic=topic, score=0.71, threshold=0.45, explanation="close to example 2")
    return StoryEvent(
        type=type,  # type: ignore[arg-type]
        story_id=story_id,
        revision=revision,
        at=at,
        story=snapshot(story_id, revision, at=at, **snap),
        changes=changes or [],
        match=match,
        merged_from=merged_from,
    )


def feed_health(state: str = "failing", url: str = "https://feeds.example/rss", at: datetime = T0) -> FeedHealth:
    return FeedHealth(feed_url=url, feed_name="Example feed", state=state, error="HTTP 503", failures=3, at=at)  # type: ignore[arg-type]


class Harness:
    """An alerts service over a real embedded bus and SQLite store, with a fake clock."""

    def __init__(self, settings: Settings, tmp_path: Path):
        self.settings = settings
        self.tmp_path = tmp_path
        self.clock = FakeClock(T0)
        self.stdout = io.StringIO()
        self.bus = EmbeddedBus(tmp_path / "bus.db")
        self.store = SQLiteStore(tmp_path / "state.db")
        self.producer = self.bus.producer()
        self.service = self.new_service()

    def new_service(self) -> AlertsService:
        import random

        return AlertsService(self.settings, self.bus, self.store, self.clock, stdout=self.stdout, rng=random.Random(7))

    def restart(self) -> None:
        self.service.close()
        self.service = self.new_service()

    def send(self, *events: StoryEvent | FeedHealth) -> None:
        topics = self.settings.bus.topics
        for ev in events:
            if isinstance(ev, FeedHealth):
                self.producer.publish(topics.feed_health, ev.feed_url, ev.to_bytes())
            else:
                self.producer.publish(topics.story_events, ev.story_id, ev.to_bytes())
        self.producer.flush()

    def drain(self) -> int:
        return self.service.drain()

    def deliveries(self, state: str | None = None) -> list[dict[str, Any]]:
        return [d for _, d in self.store.scan("alerts.deliveries", tag=state)]

    def file_lines(self, name: str = "alerts.jsonl") -> list[dict[str, Any]]:
        import json

        path = self.tmp_path / name
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def published(self) -> list[Any]:
        from storywatch.schema import Alert, decode

        consumer = self.bus.consumer("test-reader", [self.settings.bus.topics.alerts])
        out = [decode(Alert, r.topic, r.value) for r in consumer.poll(1000, 0)]
        consumer.close()
        return out

    def close(self) -> None:
        self.service.close()
        self.bus.close()
        self.store.close()


@pytest.fixture
def harness_factory(tmp_path: Path) -> Iterator[Any]:
    made: list[Harness] = []

    def make(settings: Settings | None = None) -> Harness:
        h = Harness(settings or make_settings(tmp_path), tmp_path)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()
