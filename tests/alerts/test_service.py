"""The alerts service end to end over a real embedded bus and SQLite store (file and
console channels): rules, exactly-once recording, restarts, dead letters, digests,
quiet hours and rate budgets."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from alerts.commands import list_alerts
from alerts.deliveries import DeliveryLog
from storywatch.schema import DeadLetter, decode
from tests.alerts.conftest import T0, event, feed_health, make_settings

FILE = {"file": {"kind": "file", "path": "alerts.jsonl"}}


def keys(h: Any) -> list[str]:
    return [line["alert"]["key"] for line in h.file_lines()]


def test_the_same_event_twice_gives_one_alert(harness_factory: Any) -> None:
    h = harness_factory()
    h.send(event(), event())
    h.drain()
    h.send(event())
    h.drain()
    assert keys(h) == ["topic_appears/floods:s1:1"]
    assert [a.key for a in h.published()] == ["topic_appears/floods:s1:1"]


def test_sent_alerts_are_counted_and_timed_per_hop(harness_factory: Any) -> None:
    h = harness_factory()
    h.send(event(at=T0))
    h.clock.advance(3)
    h.drain()
    value = h.service.metrics.registry.get_sample_value
    assert value("storywatch_alert_deliveries_total", {"channel": "file", "state": "sent"}) == 1
    assert value("storywatch_latency_seconds_count", {"hop": "enriched_to_alerted"}) == 1
    assert value("storywatch_latency_seconds_sum", {"hop": "enriched_to_alerted"}) == 3
    assert value("storywatch_latency_seconds_count", {"hop": "published_to_alerted"}) == 1


def test_crash_before_commit_redelivers_without_duplicates(harness_factory: Any) -> None:
    h = harness_factory()
    h.send(event("matched", "s1"), event("matched", "s2"))
    consumer, _ = h.service._io()

    def crash() -> None:
        raise RuntimeError("killed before commit")

    consumer.commit = crash  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        h.service.step(0)
    h.restart()  # a new consumer of the group sees the uncommitted events again
    h.drain()
    assert sorted(keys(h)) == ["topic_appears/floods:s1:1", "topic_match/floods:s2:1"]


def test_a_dead_workers_claim_is_retried_after_the_lease(tmp_path: Path, harness_factory: Any) -> None:
    h = harness_factory(make_settings(tmp_path, FILE, claim_lease_s=60))
    h.send(event())
    h.service._ingest(h.service._io()[0].poll(10, 0))
    [doc] = h.deliveries("pending")
    assert h.service.deliveries.claim(doc, h.clock.now()) is not None  # ...and the worker dies here
    h.restart()
    h.drain()
    assert keys(h) == [], "the claim is still leased"
    h.clock.advance(seconds=61)
    h.drain()
    assert keys(h) == ["topic_appears/floods:s1:1"]
    [doc] = h.deliveries()
    assert doc["state"] == "sent" and doc["uncertain"] is True and doc["attempts"] == 2


def test_two_workers_never_claim_the_same_delivery(harness_factory: Any) -> None:
    h = harness_factory()
    h.send(event())
    h.service._ingest(h.service._io()[0].poll(10, 0))
    [doc] = h.deliveries("pending")
    other = DeliveryLog(h.store, max_attempts=3, backoff_base_s=1, backoff_max_s=10, lease_s=60)
    assert h.service.deliveries.claim(doc, h.clock.now()) is not None
    assert other.claim(doc, h.clock.now()) is None
    assert other.claim(h.deliveries("sending")[0], h.clock.now()) is None, "not stale yet"


def test_undecodable_events_go_to_dead_letters_and_processing_goes_on(harness_factory: Any) -> None:
    h = harness_factory()
    topics = h.settings.bus.topics
    h.producer.publish(topics.story_events, "x", b"{not json")
    h.producer.publish(topics.story_events, "y", b'{"type": "matched"}')
    h.producer.flush()
    h.send(event())
    h.drain()
    assert keys(h) == ["topic_appears/floods:s1:1"]
    consumer = h.bus.consumer("dl-reader", [topics.dead_letters])
    dead = [decode(DeadLetter, r.topic, r.value) for r in consumer.poll(10, 0)]
    assert [d.key for d in dead] == ["x", "y"] and all(d.stage == "alerts" for d in dead)
    assert h.service._io()[0].lag() == 0


def test_a_story_alerts_when_it_crosses_min_sources(tmp_path: Path, harness_factory: Any) -> None:
    topics = [{"name": "floods", "min_sources": 3, "min_articles": 4}]
    h = harness_factory(make_settings(tmp_path, FILE, topics=topics))
    h.send(event("matched", revision=1, sources=1))
    h.send(event("updated", revision=2, sources=3, articles=3, changes=["new_sources"]))
    h.drain()
    assert keys(h) == []
    h.send(event("updated", revision=3, sources=3, articles=4))
    h.send(event("updated", revision=4, sources=9, articles=12, changes=["new_sources"]))
    h.drain()
    assert keys(h) == ["topic_appears/floods:s1:3"], "one alert, at the crossing; no follow-up within 30 min"


def test_topic_appears_after_its_quiet_period(tmp_path: Path, harness_factory: Any) -> None:
    h = harness_factory(make_settings(tmp_path, FILE, rules={"appears": {"quiet_period_s": 3600}}))
    h.send(event("matched", "s1", at=T0))
    h.send(event("matched", "s2", at=T0 + timedelta(minutes=30)))
    h.send(event("matched", "s3", at=T0 + timedelta(minutes=100)))
    h.drain()
    assert keys(h) == ["topic_appears/floods:s1:1", "topic_match/floods:s2:1", "topic_appears/floods:s3:1"]


def test_emerging_stories_go_to_their_channels(tmp_path: Path, harness_factory: Any) -> None:
    channels = {**FILE, "desk": {"kind": "console"}}
    rules = {"emerging": {"channels": ["desk"], "min_sources": 2}}
    settings = make_settings(tmp_path, channels, default_channels=["file"], rules=rules)
    h = harness_factory(settings)
    h.send(event("emerging", "s9", topic=None, sources=1))
    h.send(event("emerging", "s9", revision=2, topic=None, sources=4, headline="Quake hits <b>coast</b>"))
    h.send(event("emerging", "s9", revision=3, topic=None, sources=6))
    h.drain()
    assert keys(h) == []
    out = h.stdout.getvalue()
    assert out.count("Emerging story") == 1 and "Quake hits <b>coast</b>" in out and "4 sources" in out


@pytest.mark.parametrize(
    ("updates", "expected"),
    [
        ([(2, 2, ["new_sources"]), (3, 3, ["new_sources"])], []),
        ([(2, 2, ["new_sources"]), (3, 4, ["new_sources"])], [3]),
        ([(2, 1, ["velocity_jump"])], [2]),
        ([(2, 1, ["new_entities"]), (3, 1, ["new_entities"])], [2, 3]),
        ([(2, 9, [])], []),
    ],
    ids=["below-step", "step-reached", "velocity", "entities-twice", "no-change-named"],
)
def test_follow_ups_only_for_material_changes(
    updates: list[tuple[int, int, list[str]]], expected: list[int], tmp_path: Path, harness_factory: Any
) -> None:
    rules = {"follow_up": {"min_interval_s": 0, "source_step": 3}}
    h = harness_factory(make_settings(tmp_path, FILE, rules=rules))
    h.send(event(sources=1))
    for rev, sources, changes in updates:
        h.send(event("updated", revision=rev, sources=sources, changes=changes))
    h.drain()
    assert keys(h) == ["topic_appears/floods:s1:1"] + [f"follow_up:s1:{r}" for r in expected]


def test_merge_carries_the_thread_to_the_surviving_story(tmp_path: Path, harness_factory: Any) -> None:
    h = harness_factory(make_settings(tmp_path, FILE, rules={"follow_up": {"min_interval_s": 0}}))
    h.send(event("matched", "old", sources=2))
    h.send(event("merged", "new", revision=5, merged_from="old", sources=6))
    h.drain()
    lines = h.file_lines()
    assert [line["alert"]["key"] for line in lines] == ["topic_appears/floods:old:1", "follow_up:new:5"]
    assert lines[1]["in_reply_to"] == "topic_appears/floods:old:1|file"
    assert "merged with story old" in lines[1]["alert"]["why"]


def test_feed_health_goes_to_operator_channels_only(tmp_path: Path, harness_factory: Any) -> None:
    channels = {**FILE, "ops": {"kind": "console"}}
    settings = make_settings(tmp_path, channels, default_channels=["file"], operator_channels=["ops"])
    h = harness_factory(settings)
    h.send(feed_health("failing"), feed_health("recovered", at=T0 + timedelta(hours=1)))
    h.drain()
    assert keys(h) == []
    out = h.stdout.getvalue()
    assert "Feed Example feed is failing" in out and "Feed Example feed recovered" in out


def test_digest_collects_a_window_into_one_message(tmp_path: Path, harness_factory: Any) -> None:
    channels = {"file": {"kind": "file", "path": "alerts.jsonl", "digest": {"window_s": 600}}}
    topics = [{"name": "floods"}, {"name": "fires", "severity": "critical"}]
    h = harness_factory(make_settings(tmp_path, channels, topics=topics))
    h.send(*(event("matched", f"s{i}") for i in range(3)))
    h.send(event("matched", "hot", topic="fires"))
    h.drain()
    assert keys(h) == ["topic_appears/fires:hot:1"], "critical bypasses the digest"
    h.clock.advance(seconds=600)
    h.drain()
    lines = h.file_lines()
    assert len(lines) == 2
    digest = lines[1]
    assert digest["alert"]["rule"] == "digest" and len(digest["items"]) == 3
    assert {d["state"] for d in h.deliveries()} == {"sent", "digested"}
    assert len(h.published()) == 4, "each alert of the digest is published once"


def test_quiet_hours_hold_until_morning_and_let_high_severity_through(tmp_path: Path, harness_factory: Any) -> None:
    quiet = {"start": "22:00", "end": "07:00", "tz": "Europe/Berlin"}
    channels = {"file": {"kind": "file", "path": "alerts.jsonl", "quiet_hours": quiet}}
    topics = [{"name": "floods"}, {"name": "fires", "severity": "high"}]
    h = harness_factory(make_settings(tmp_path, channels, topics=topics))
    late = datetime(2026, 3, 2, 22, 30, tzinfo=UTC)  # 23:30 in Berlin
    h.clock.advance(seconds=(late - T0).total_seconds())
    h.send(event("matched", "s1"), event("matched", "s2"), event("matched", "f1", topic="fires"))
    h.drain()
    assert keys(h) == ["topic_appears/fires:f1:1"]
    h.clock.advance(hours=7, minutes=29)  # 06:59 Berlin
    h.drain()
    assert len(h.file_lines()) == 1
    h.clock.advance(minutes=1)
    h.drain()
    digest = h.file_lines()[1]
    assert digest["alert"]["rule"] == "digest"
    assert [i["story_id"] for i in digest["items"]] == ["s1", "s2"]


def test_rate_budget_defers_the_excess(tmp_path: Path, harness_factory: Any) -> None:
    budget = {"max_alerts": 2, "per_s": 3600}
    channels = {"file": {"kind": "file", "path": "alerts.jsonl", "rate_budget": budget}}
    h = harness_factory(make_settings(tmp_path, channels))
    h.send(*(event("matched", f"s{i}") for i in range(5)))
    h.drain()
    assert len(h.file_lines()) == 2 and len(h.deliveries("pending")) == 3
    h.clock.advance(seconds=3601)
    h.drain()
    assert len(h.file_lines()) == 4
    h.clock.advance(seconds=3601)
    h.drain()
    assert len(h.file_lines()) == 5


def test_list_alerts_json_and_unknown_state(harness_factory: Any) -> None:
    import json

    h = harness_factory()
    h.send(event())
    h.drain()
    out = io.StringIO()
    assert list_alerts(h.settings, h.store, None, True, out) == 0
    [row] = [json.loads(line) for line in out.getvalue().splitlines()]
    assert row["state"] == "sent" and row["rule"] == "topic_appears"
    assert list_alerts(h.settings, h.store, "bogus", False, io.StringIO()) == 2


def test_step_waits_no_longer_than_the_next_retry(tmp_path: Path, harness_factory: Any) -> None:
    h = harness_factory()
    h.send(event())
    assert h.service.step(0.0) >= 1
    assert h.service._next_due is not None
    assert h.service.step(0.0) == 0


def test_old_state_is_pruned_but_dead_deliveries_stay(tmp_path: Path, harness_factory: Any) -> None:
    h = harness_factory(make_settings(tmp_path, FILE, retention_days=1))
    h.send(event("matched", "s1"))
    h.drain()
    [doc] = h.deliveries()
    h.store.put("alerts.deliveries", "dead1", {**doc, "id": "dead1", "state": "dead"}, tag="dead")
    h.clock.advance(days=2)
    h.send(event("matched", "s2", at=h.clock.now()))
    h.service.step(0)
    assert [d["id"] for d in h.deliveries("dead")] == ["dead1"]
    assert [d["alert"]["story_id"] for d in h.deliveries("sent")] == ["s2"]
    assert [k for k, _ in h.store.scan("alerts.stories")] == ["s2"]


def test_alerts_wait_in_the_outbox_while_the_bus_is_down(harness_factory: Any) -> None:
    from storywatch.errors import BusError

    h = harness_factory()
    h.send(event())
    _, producer = h.service._io()
    real_flush = producer.flush

    def down(timeout: float = 30.0) -> None:
        raise BusError("broker unavailable")

    producer.flush = down  # type: ignore[method-assign]
    h.drain()
    assert keys(h) == ["topic_appears/floods:s1:1"], "the alert itself went out"
    assert h.store.count("alerts.outbox") == 1
    producer.flush = real_flush  # type: ignore[method-assign]
    producer._buffer.clear()  # what the failed flush kept is published again from the outbox
    h.drain()
    assert h.store.count("alerts.outbox") == 0
    assert [a.key for a in h.published()] == ["topic_appears/floods:s1:1"]


def test_list_shows_when_held_alerts_go_out(tmp_path: Path, harness_factory: Any) -> None:
    channels = {"file": {"kind": "file", "path": "alerts.jsonl", "digest": {"window_s": 600}}}
    h = harness_factory(make_settings(tmp_path, channels))
    h.send(event())
    h.drain()
    out = io.StringIO()
    assert list_alerts(h.settings, h.store, "held", False, out) == 0
    assert "held until 2026-03-02 09:10 UTC" in out.getvalue()
