"""Fixtures for the ingest tests: a feed server, settings, a bus, a store and a service."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ingest.normalise import LanguageDetector
from ingest.service import IngestService
from storywatch.bus.embedded import EmbeddedBus
from storywatch.clock import FakeClock
from storywatch.schema import Article, FeedHealth, decode
from storywatch.settings import Settings
from storywatch.store.sqlite import SQLiteStore
from tests.feedserver import FeedServer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "feeds"
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def langs() -> LanguageDetector:
    """One language model for the session (loading it takes about a second)."""
    return LanguageDetector()


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as srv:
        yield srv


def make_settings(tmp_path: Path, feeds: list[dict[str, Any] | str], **ingest: Any) -> Settings:
    """Settings for tests: no per-host gap (every test feed is on 127.0.0.1), short timeouts."""
    ingest.setdefault("per_host_min_gap_s", 0)
    ingest.setdefault("per_host_concurrency", 8)
    ingest.setdefault("connect_timeout_s", 2)
    ingest.setdefault("read_timeout_s", 2)
    ingest.setdefault("total_timeout_s", 5)
    ingest.setdefault("jitter_seed", 1)
    return Settings.model_validate(
        {
            "base_dir": str(tmp_path),
            "bus": {"path": str(tmp_path / "bus.db")},
            "store": {"path": str(tmp_path / "state.db")},
            "ingest": ingest,
            "feeds": [f if isinstance(f, dict) else {"url": f} for f in feeds],
        }
    )


class Harness:
    """A bus, a store and a fake clock on a temp dir; builds services and reads topics."""

    def __init__(self, tmp_path: Path, langs: LanguageDetector):
        self.tmp_path = tmp_path
        self.langs = langs
        self.bus = EmbeddedBus(tmp_path / "bus.db")
        self.store = SQLiteStore(tmp_path / "state.db")
        self.clock = FakeClock(T0)
        self.services: list[IngestService] = []
        self._consumers: dict[str, Any] = {}

    def service(self, settings: Settings) -> IngestService:
        svc = IngestService(settings, self.bus, self.store, self.clock, langs=self.langs)
        self.services.append(svc)
        return svc

    def _read(self, topic: str) -> list[bytes]:
        if topic not in self._consumers:
            self._consumers[topic] = self.bus.consumer(f"test-{topic}", [topic])
        c = self._consumers[topic]
        out = []
        while batch := c.poll(500, 0.01):
            out += [r.value for r in batch]
            c.commit()
        return out

    def articles(self, settings: Settings) -> list[Article]:
        topic = settings.bus.topics.raw_articles
        return [decode(Article, topic, v) for v in self._read(topic)]

    def health(self, settings: Settings) -> list[FeedHealth]:
        topic = settings.bus.topics.feed_health
        return [decode(FeedHealth, topic, v) for v in self._read(topic)]

    def close(self) -> None:
        for svc in self.services:
            svc.close()
        for c in self._consumers.values():
            c.close()
        self.bus.close()
        self.store.close()


@pytest.fixture
def harness(tmp_path: Path, langs: LanguageDetector) -> Iterator[Harness]:
    h = Harness(tmp_path, langs)
    yield h
    h.close()
