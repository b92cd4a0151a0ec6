"""The alerts stage over the real Kafka-protocol test broker: events in, alerts out, once,
across a restart of the service (a new member of the same consumer group)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from alerts.service import AlertsService
from storywatch.bus import make_bus
from storywatch.clock import FakeClock
from storywatch.schema import Alert, decode
from storywatch.settings import Settings
from storywatch.store.sqlite import SQLiteStore
from tests.alerts.conftest import T0, event


def lines(path: Path) -> list[str]:
    return [json.loads(x)["alert"]["key"] for x in path.read_text().splitlines()] if path.exists() else []


def run_until(service: AlertsService, path: Path, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(lines(path)) < n:
        assert time.monotonic() < deadline, f"only {len(lines(path))} of {n} alerts"
        service.step(0.5)


@pytest.mark.kafka
def test_alerts_over_kafka_once_across_a_restart(
    tmp_path: Path, kafka_bus_settings: dict[str, Any], unique_name: Callable[[str], str]
) -> None:
    names = ("raw_articles", "story_events", "feed_health", "alerts", "dead_letters")
    topics = {n: unique_name(n.replace("_", "-")) for n in names}
    settings = Settings.model_validate(
        {
            "base_dir": str(tmp_path),
            "bus": {**kafka_bus_settings, "topics": topics},
            "topics": [{"name": "floods"}],
            "alerts": {
                "group": unique_name("alerts"),
                "channels": {"file": {"kind": "file", "path": "alerts.jsonl"}},
                "default_channels": ["file"],
                "rules": {"appears": {"enabled": False}},
            },
        }
    )
    out = tmp_path / "alerts.jsonl"
    bus = make_bus(settings.bus)
    store = SQLiteStore(tmp_path / "state.db")
    try:
        bus.ensure_topics(list(topics.values()))
        producer = bus.producer()

        def send(*story_ids: str) -> None:
            for sid in story_ids:
                producer.publish(topics["story_events"], sid, event("matched", sid, at=T0).to_bytes())
            producer.flush()

        send("s1", "s2", "s3", "s2")
        service = AlertsService(settings, bus, store, FakeClock(T0))
        run_until(service, out, 3)
        service.close()

        send("s4", "s1")
        service = AlertsService(settings, bus, store, FakeClock(T0))
        run_until(service, out, 4)
        for _ in range(3):
            service.step(0.5)  # a late duplicate would show up here
        service.close()

        assert sorted(lines(out)) == [f"topic_match/floods:s{i}:1" for i in range(1, 5)]
        reader = bus.consumer(unique_name("reader"), [topics["alerts"]])
        published: list[str] = []
        deadline = time.monotonic() + 30
        while len(published) < 4 and time.monotonic() < deadline:
            published += [decode(Alert, r.topic, r.value).key for r in reader.poll(100, 0.5)]
        reader.close()
        assert sorted(published) == sorted(lines(out))
    finally:
        bus.close()
        store.close()
