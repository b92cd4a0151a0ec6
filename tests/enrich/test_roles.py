"""The enrich stage split into embed workers and one story writer, and the writer's lease.

Real embedded bus, SQLite store and model; one test over the Kafka-protocol broker with
two embed workers in one consumer group.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from enrich.embed import Embedder
from enrich.service import LEASE_KEY, STATE_KEY, EnrichService
from storywatch.bus import make_bus
from storywatch.bus.kafka import KafkaBusConsumer
from storywatch.clock import FakeClock
from storywatch.schema import EmbeddedArticle, StoryEvent
from storywatch.settings import Settings
from storywatch.store.sqlite import SQLiteStore
from tests.enrich.test_service import MISSILE, STORIES, STREAM, T0, Run, stream


@pytest.fixture
def run(tmp_path: Path, embedder: Embedder) -> Iterator[Run]:
    r = Run(tmp_path / "run", embedder)
    yield r
    r.close()


def _joined(svc: EnrichService) -> bool:
    consumer = svc._consumer
    return isinstance(consumer, KafkaBusConsumer) and bool(consumer.assignment())


def _digest(events: list[StoryEvent]) -> list[tuple[str, str, int, str | None, tuple[str, ...]]]:
    return [(e.type, e.story_id, e.revision, e.article_id, tuple(e.changes)) for e in events]


def role(run: Run, name: str, **kw: Any) -> EnrichService:
    return EnrichService(
        run.settings, run.bus, run.store, run.clock, embedder=run.embedder,
        on_assign=run.assigned.__setitem__, role=name, **kw,
    )


def test_embed_then_cluster_gives_the_same_stories_and_events_as_one_process(
    tmp_path: Path, embedder: Embedder
) -> None:
    one = Run(tmp_path / "all", embedder)
    split = Run(tmp_path / "split", embedder)
    try:
        for r in (one, split):
            r.publish(stream())
        svc = role(one, "all")
        assert svc.drain() == len(STREAM)
        svc.close()

        worker = role(split, "embed")
        assert worker.drain() == len(STREAM)
        worker.close()
        embedded = [EmbeddedArticle.model_validate_json(v) for v in split.read(split.topics.embedded_articles)]
        assert [m.article.id for m in embedded] == [row[0] for row in STREAM]
        assert {(m.model, m.dim) for m in embedded} == {("all-MiniLM-L6-v2", 384)}
        assert split.events() == [], "an embed worker writes no story events"
        assert split.store.get(split.settings.enrich.state_namespace, STATE_KEY) is None, "nor any state"

        writer = role(split, "cluster")
        assert writer.drain() == len(STREAM)
        writer.close()
        assert _digest(split.events()) == _digest(one.events())
        final = split.final(writer)
        for ids in STORIES.values():
            assert len({final[a] for a in ids}) == 1
    finally:
        one.close()
        split.close()


def test_the_writer_embeds_again_what_another_model_or_a_broken_vector_sent(run: Run) -> None:
    arts = stream()[:3]
    p = run.bus.producer()
    vec = base64.b64encode(np.ones(384, dtype="<f4").tobytes()).decode()
    msgs = [
        EmbeddedArticle(article=arts[0], model="some-other-model", dim=384, vector=vec, embedded_at=T0),
        EmbeddedArticle(article=arts[1], model="all-MiniLM-L6-v2", dim=384, vector="not base64!", embedded_at=T0),
        EmbeddedArticle(article=arts[2], model="all-MiniLM-L6-v2", dim=12, vector=vec, embedded_at=T0),
    ]
    for m in msgs:
        p.publish(run.topics.embedded_articles, m.article.id, m.to_bytes())
    p.publish(run.topics.embedded_articles, "junk", b"{}")
    p.flush()
    writer = role(run, "cluster")
    assert writer.drain() == 4
    writer.close()
    assert set(run.assigned) == {a.id for a in arts}
    assert len(run.read(run.topics.dead_letters)) == 1


def test_a_second_writer_stands_by_then_takes_over_from_the_snapshot(run: Run) -> None:
    arts = stream()
    run.publish(arts[:6])
    first = role(run, "all")
    second = role(run, "all")
    assert first.drain() == 6
    assert second.step(0.1) == 0
    assert second._consumer is None, "a standby does not join the consumer group"
    first.close()  # checkpoints and releases the lease

    run.publish(arts[6:])
    assert second.drain() == len(arts) - 6, "took over at once, from the snapshot's offsets"
    second.close()
    created = [e for e in run.events() if e.type == "created"]
    assert len({e.story_id for e in created}) == len(created), "no story created twice"
    doc = run.store.get(run.settings.enrich.state_namespace, STATE_KEY)
    assert doc is not None and doc["articles"] == len(arts) - 6 and sum(doc["offsets"].values()) == len(arts)


def test_a_writer_whose_lease_expired_drops_its_state_instead_of_overwriting(run: Run) -> None:
    arts = stream()
    run.publish(arts[:4])
    stalled = role(run, "all")
    assert stalled.step(0.1) == 4  # a batch, not yet snapshotted (snapshot_every is 200)
    run.clock.advance(run.settings.enrich.lease_s + 1)  # it stalled past its lease

    successor = role(run, "all")
    assert successor.drain() == 4, "the stalled writer committed nothing: all four again"
    successor.close()
    ours = run.store.get(run.settings.enrich.state_namespace, STATE_KEY)

    # close() released the lease; hold it for a live writer elsewhere, as if the successor
    # were still running when the stalled writer wakes up.
    run.store.put(
        run.settings.enrich.state_namespace, LEASE_KEY,
        {"owner": "successor", "host": "elsewhere", "expires_at": run.clock.now().timestamp() + 60},
        tag="successor",
    )
    stalled.checkpoint()
    assert run.store.get(run.settings.enrich.state_namespace, STATE_KEY) == ours, "did not overwrite"
    assert stalled.step(0.1) == 0 and stalled._consumer is None, "now a standby"
    stalled.close()


def _kafka_settings(tmp: Path, bus: dict[str, Any], unique_name: Callable[[str], str]) -> Settings:
    names = ("raw_articles", "embedded_articles", "story_events", "feed_health", "alerts", "dead_letters")
    return Settings.model_validate(
        {
            "base_dir": str(tmp),
            "bus": {**bus, "topics": {n: unique_name(n.replace("_", "-")) for n in names}},
            "topics": [MISSILE],
            "enrich": {
                "group": unique_name("cluster"),
                "embed_group": unique_name("embed"),
                "embed": {"batch_size": 2, "batch_ms": 0},
            },
        }
    )


@pytest.mark.kafka
def test_two_embed_workers_share_the_partitions_and_one_writer_clusters(
    tmp_path: Path, embedder: Embedder, kafka_bus_settings: dict[str, Any], unique_name: Callable[[str], str]
) -> None:
    settings = _kafka_settings(tmp_path, kafka_bus_settings, unique_name)
    topics = settings.bus.topics
    bus = make_bus(settings.bus)
    store = SQLiteStore(tmp_path / "state.db")
    clock = FakeClock(T0 + timedelta(days=1))
    assigned: dict[str, str] = {}
    services: list[EnrichService] = []
    try:
        bus.ensure_topics([topics.raw_articles, topics.embedded_articles, topics.story_events, topics.dead_letters])
        workers = [
            EnrichService(settings, bus, SQLiteStore(tmp_path / f"w{i}.db"), clock, embedder=embedder, role="embed")
            for i in range(2)
        ]
        writer = EnrichService(
            settings, bus, store, clock, embedder=embedder, on_assign=assigned.__setitem__, role="cluster"
        )
        services = [*workers, writer]
        for svc in services:
            svc.start()
        # Both workers join before any article arrives, so the group splits the partitions.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(_joined(w) for w in workers):
            for w in workers:
                w.step(0.3)
        assert all(_joined(w) for w in workers), "both workers got partitions"

        producer = bus.producer()
        for a in stream():
            producer.publish(topics.raw_articles, a.id, a.to_bytes())
        producer.flush()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(assigned) < len(STREAM):
            for svc in services:
                svc.step(0.3)
        assert set(assigned) == {row[0] for row in STREAM}
        assert all(w.processed > 0 for w in workers), [w.processed for w in workers]
        assert sum(w.processed for w in workers) == len(STREAM)
        assert len({assigned[a] for a in STORIES["nk"]}) == 1
    finally:
        for svc in services:
            svc.close()
            if svc.role == "embed":
                svc.store.close()
        bus.close()
        store.close()


def test_the_enrich_metrics_count_what_the_stage_did(run: Run) -> None:
    from storywatch.observe import Metrics

    metrics = Metrics()
    run.publish(stream())
    svc = role(run, "all", metrics=metrics)
    while svc.processed < len(STREAM):
        svc.step(0.0)
    svc.close()
    value = metrics.registry.get_sample_value
    events = run.events()
    assert value("storywatch_records_consumed_total", {"stage": "enrich", "topic": run.topics.raw_articles}) == len(
        STREAM
    )
    for kind in ("created", "matched"):
        assert value("storywatch_story_events_total", {"type": kind}) == sum(e.type == kind for e in events)
    assert value("storywatch_topic_matches_total", {"topic": "missile launches"}) == 1
    assert value("storywatch_stories_active") == len({svc.resolve(s) for s in run.assigned.values()})
    assert value("storywatch_latency_seconds_count", {"hop": "fetched_to_enriched"}) == len(STREAM)
    assert value("storywatch_consumer_lag", {"stage": "enrich"}) is not None
