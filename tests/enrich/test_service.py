"""The enrich service over the real embedded bus and SQLite store, with the real model."""

from __future__ import annotations

import gc
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enrich.embed import Embedder
from enrich.maplog import MapLog
from enrich.packing import pack_floats, unpack_floats
from enrich.service import (
    ARTICLES_KEY_PREFIX,
    DF_KEY_PREFIX,
    LEDGER_KEY_PREFIX,
    SNAPSHOT_VERSION,
    STATE_KEY,
    STORY_KEY_PREFIX,
    EnrichService,
)
from storywatch.bus import make_bus
from storywatch.bus.embedded import EmbeddedBus, EmbeddedConsumer
from storywatch.clock import FakeClock
from storywatch.schema import Article, DeadLetter, StoryEvent
from storywatch.settings import Settings
from storywatch.store.sqlite import SQLiteStore
from storywatch.views import NS_STORIES

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
MISSILE = {
    "name": "missile launches",
    "description": "A country test-fires or launches ballistic, cruise or hypersonic missiles.",
    "examples": ["North Korea fires ballistic missile into the sea off its east coast"],
    "counter_examples": ["Rocket company launches communications satellites into orbit"],
    "min_sources": 2,
    "severity": "high",
}

# (id, source, title, lead): three stories and some singletons, interleaved.
STREAM = [
    ("nk1", "World Wire", "North Korea fires ballistic missile toward Sea of Japan",
     "Pyongyang launched a ballistic missile off its east coast early on Monday, South Korea's military said."),
    ("q1", "Daily Ledger", "Magnitude 6.8 earthquake strikes Morocco's High Atlas",
     "The quake struck late on Friday south-west of Marrakesh, toppling buildings in mountain villages."),
    ("x1", "Harbor Herald", "City council approves new harbour ferry timetable",
     "Ferries will run every twenty minutes from next month."),
    ("nk2", "Asia-Pacific Desk", "North Korea fires ballistic missile into Sea of Japan, Tokyo says",
     "Pyongyang launched a ballistic missile off its east coast, Japan's defence ministry said on Monday."),
    ("q2", "World Wire", "Morocco earthquake death toll rises above 2,000",
     "Rescuers dug through rubble in High Atlas villages after the Morocco earthquake near Marrakesh."),
    ("nk3", "Daily Ledger", "North Korea fires ballistic missile off east coast; Seoul condemns launch",
     "Pyongyang launched a ballistic missile into the Sea of Japan, South Korea's military said on Monday."),
    ("x2", "Daily Ledger", "Local bakery wins national bread award",
     "The sourdough loaf impressed judges at the annual competition."),
    ("r1", "World Wire", "Federal Reserve holds interest rates steady",
     "The Fed kept its benchmark rate unchanged and signalled two cuts later this year."),
    ("q3", "Harbor Herald", "Aid arrives in Morocco quake zone as survivors sleep outdoors",
     "Aid convoys reached High Atlas villages flattened by the Morocco earthquake near Marrakesh."),
    ("nk4", "Harbor Herald", "Japan protests as North Korea fires ballistic missile into Sea of Japan",
     "Pyongyang launched a ballistic missile off its east coast on Monday; Tokyo lodged a protest."),
    ("r2", "Asia-Pacific Desk", "Fed keeps rates on hold, signals cuts later in the year",
     "The Federal Reserve left interest rates unchanged and pencilled in two cuts this year."),
    ("x3", "Asia-Pacific Desk", "Film festival opens with historical drama premiere",
     "Stars walked the red carpet as the festival began."),
]
STORIES = {"nk": ["nk1", "nk2", "nk3", "nk4"], "q": ["q1", "q2", "q3"], "r": ["r1", "r2"]}


def article(i: int, row: tuple[str, str, str, str], **kw: Any) -> Article:
    aid, source, title, lead = row
    at = T0 + timedelta(minutes=10 * i)
    return Article(id=aid, title=title, summary=lead, source=source, published=at, fetched_at=at, **kw)


def make_settings(tmp: Path, **enrich: Any) -> Settings:
    return Settings.model_validate(
        {
            "base_dir": str(tmp),
            "topics": [MISSILE],
            "enrich": {"embed": {"batch_size": 4, "batch_ms": 0}, **enrich},
        }
    )


class Run:
    """A bus and a store in one directory, and helpers to feed and read them."""

    def __init__(self, tmp: Path, embedder: Embedder, **enrich: Any):
        tmp.mkdir(parents=True, exist_ok=True)
        self.settings = make_settings(tmp, **enrich)
        self.bus = EmbeddedBus(tmp / "bus.db")
        self.store = SQLiteStore(tmp / "state.db")
        self.clock = FakeClock(T0 + timedelta(days=1))
        self.embedder = embedder
        self.assigned: dict[str, str] = {}
        self.topics = self.settings.bus.topics

    def service(self, bus: Any = None) -> EnrichService:
        return EnrichService(
            self.settings, bus or self.bus, self.store, self.clock,
            embedder=self.embedder, on_assign=self.assigned.__setitem__,
        )

    def publish(self, items: Sequence[Article | bytes]) -> None:
        p = self.bus.producer()
        for item in items:
            if isinstance(item, Article):
                p.publish(self.topics.raw_articles, item.id, item.to_bytes())
            else:
                p.publish(self.topics.raw_articles, None, item)
        p.flush()

    def read(self, topic: str) -> list[bytes]:
        return [r.value for r in self.bus.read(topic, 0, 10_000)]

    def events(self) -> list[StoryEvent]:
        return [StoryEvent.model_validate_json(v) for v in self.read(self.topics.story_events)]

    def final(self, service: EnrichService) -> dict[str, str]:
        return {a: service.resolve(s) for a, s in self.assigned.items()}

    def close(self) -> None:
        self.bus.close()
        self.store.close()


@pytest.fixture
def run(tmp_path: Path, embedder: Embedder) -> Iterator[Run]:
    r = Run(tmp_path / "run", embedder)
    yield r
    r.close()


def stream() -> list[Article]:
    return [article(i, row) for i, row in enumerate(STREAM)]


def test_articles_in_story_events_out(run: Run) -> None:
    run.publish(stream())
    svc = run.service()
    assert svc.drain() == len(STREAM)
    svc.close()

    final = run.final(svc)
    for ids in STORIES.values():
        assert len({final[a] for a in ids}) == 1, (ids, final)
    assert len({final[a] for a in STORIES["nk"] + STORIES["q"] + STORIES["r"]}) == 3

    events = run.events()
    created = [e for e in events if e.type == "created"]
    assert len(created) == len(set(final.values()))
    matched = [e for e in events if e.type == "matched"]
    assert [e.story_id for e in matched] == [final["nk1"]]
    assert matched[0].match is not None and matched[0].match.topic == "missile launches"
    assert matched[0].match.explanation
    # min_sources is 2: the second source of the matched story is an update alerts waits for.
    assert any(e.type == "updated" and e.story_id == final["nk1"] and "new_sources" in e.changes for e in events)
    # Revisions of a story only go up, and there are far fewer events than articles per story.
    nk = [e for e in events if e.story_id == final["nk1"]]
    assert [e.revision for e in nk] == sorted(e.revision for e in nk)
    assert nk[-1].story.article_count == 4 and nk[-1].story.source_count == 4
    keys = {r.key for r in run.bus.read(run.topics.story_events, 0, 1000)}
    assert keys == {e.story_id for e in events}

    doc = run.store.get(run.settings.enrich.state_namespace, STATE_KEY)
    assert doc is not None and doc["offsets"] == {f"{run.topics.raw_articles}:0": len(STREAM)}
    assert run.store.get(NS_STORIES, final["nk1"])["matches"][0]["topic"] == "missile launches"
    assert EmbeddedConsumer(run.bus, run.settings.enrich.group, [run.topics.raw_articles]).lag() == 0


def test_undecodable_messages_go_to_dead_letters_and_the_stream_goes_on(run: Run) -> None:
    arts = stream()
    run.publish([arts[0], b"not json", b'{"id": "no-dates"}', arts[1]])
    svc = run.service()
    assert svc.drain() == 4
    svc.close()
    letters = [DeadLetter.model_validate_json(v) for v in run.read(run.topics.dead_letters)]
    assert [d.value for d in letters] == ["not json", '{"id": "no-dates"}']
    assert all(d.stage == "enrich" and d.source_topic == run.topics.raw_articles and d.reason for d in letters)
    assert "published" in letters[1].reason
    assert set(run.assigned) == {"nk1", "q1"}


def test_title_update_is_not_a_new_report(run: Run) -> None:
    arts = stream()
    fixed = "North Korea fires two ballistic missiles toward Sea of Japan"
    update = arts[0].model_copy(update={"kind": "update", "title": fixed})
    run.publish([arts[0], update, arts[3], arts[5]])
    svc = run.service()
    svc.drain()
    svc.close()
    events = run.events()
    assert len([e for e in events if e.type == "created"]) == 1
    sid = run.assigned["nk1"]
    assert run.assigned["nk3"] == sid
    state = svc.story(sid)
    assert state is not None and state.article_count == 3
    assert fixed in [a.title for a in events[-1].story.top_articles]


class CommitCrash(Exception):
    """The process 'dies' while committing offsets (after the snapshot was written)."""


class CrashOnCommit:
    """The real embedded bus, whose consumers fail their ``n``-th commit."""

    def __init__(self, bus: EmbeddedBus, n: int):
        self.bus, self.n = bus, n

    def producer(self) -> Any:
        return self.bus.producer()

    def consumer(self, group: str, topics: Sequence[str]) -> Any:
        inner = self.bus.consumer(group, topics)
        outer = self

        class Consumer:
            def poll(self, max_records: int = 100, timeout: float = 1.0) -> Any:
                return inner.poll(max_records, timeout)

            def commit(self) -> None:
                outer.n -= 1
                if outer.n == 0:
                    raise CommitCrash()
                inner.commit()

            def lag(self) -> int | None:
                return inner.lag()

            def close(self) -> None:
                inner.close()

        return Consumer()

    def ensure_topics(self, topics: Sequence[str]) -> None:
        self.bus.ensure_topics(topics)

    def close(self) -> None:
        pass


def _event_ids(events: list[StoryEvent]) -> set[tuple[Any, ...]]:
    return {(e.story_id, e.type, e.revision, e.merged_from, e.match.topic if e.match else None) for e in events}


@pytest.mark.parametrize("pipeline", [True, False], ids=["pipelined", "one batch at a time"])
@pytest.mark.parametrize("crash", ["between snapshots", "between snapshot and commit"])
def test_restart_mid_stream_gives_the_same_stories_and_events(
    tmp_path: Path, embedder: Embedder, crash: str, pipeline: bool
) -> None:
    calm = Run(tmp_path / "calm", embedder)
    calm.publish(stream())
    svc = calm.service()
    svc.drain()
    svc.close()
    expected = calm.final(svc)
    expected_events = _event_ids(calm.events())
    calm.close()

    # Batches of 4 and a snapshot once 6 are pending: snapshots after 8 articles, then at close.
    embed = {"batch_size": 4, "batch_ms": 0, "pipeline": pipeline}
    r = Run(tmp_path / "crash", embedder, snapshot_every=6, embed=embed)
    r.publish(stream())
    if crash == "between snapshots":
        first = r.service()
        while first.processed < len(STREAM):
            first.step(0.0)
        # The process dies: no close, nothing after the last snapshot is committed.
        covered = r.store.get(r.settings.enrich.state_namespace, STATE_KEY)["offsets"]
        assert list(covered.values()) == [8]
    else:
        first = r.service(CrashOnCommit(r.bus, 1))
        with pytest.raises(CommitCrash):
            while True:
                first.step(0.0)
    # The dead writer's lease runs out (a dead process on this host is noticed at once;
    # `first` lives on in this test process, so only expiry frees the lease).
    r.clock.advance(r.settings.enrich.lease_s + 1)
    second = r.service()
    second.drain()
    second.close()
    assert second.processed < len(STREAM)  # what the snapshot covered was skipped, not redone
    assert r.final(second) == expected
    events = r.events()
    assert _event_ids(events) == expected_events
    r.close()


def test_a_batch_polled_ahead_is_processed_before_the_commit_that_covers_it(tmp_path: Path, embedder: Embedder) -> None:
    r = Run(tmp_path, embedder)  # batches of 4, pipelined by default
    r.publish(stream())
    svc = r.service()
    group, topic = r.settings.enrich.group, r.topics.raw_articles
    assert svc.step(0.0) == 4
    assert r.bus.committed(group, topic) == 0
    assert len(r.assigned) == 4  # the second batch is being encoded, not yet processed
    svc.checkpoint()
    # The consumer was past the second batch: the snapshot and the commit cover it, and
    # it was processed before them.
    assert len(r.assigned) == 8 and svc.processed == 8
    assert list(r.store.get(r.settings.enrich.state_namespace, STATE_KEY)["offsets"].values()) == [8]
    assert r.bus.committed(group, topic) == 8
    while svc.step(0.0):
        pass
    svc.close()
    assert len(r.assigned) == len(STREAM)
    r.close()


def test_the_pipeline_changes_no_story_and_no_event(tmp_path: Path, embedder: Embedder) -> None:
    outcomes = []
    for pipeline in (False, True):
        r = Run(tmp_path / str(pipeline), embedder, embed={"batch_size": 4, "batch_ms": 0, "pipeline": pipeline})
        r.publish(stream())
        svc = r.service()
        while svc.step(0.0):
            pass
        svc.close()
        outcomes.append((r.final(svc), [(e.story_id, e.type, e.revision) for e in r.events()]))
        r.close()
    assert outcomes[0] == outcomes[1]


class EncoderDown(Exception):
    pass


class FailingEncoder:
    """The real encoder, except that its ``fail_on``-th call raises (a model server gone, OOM)."""

    def __init__(self, inner: Embedder, fail_on: int):
        self.inner, self.calls, self.fail_on = inner, 0, fail_on

    @property
    def dim(self) -> int:
        return self.inner.dim

    def encode(self, texts: list[str]) -> Any:
        self.calls += 1
        if self.calls == self.fail_on:
            raise EncoderDown("encoder unavailable")
        return self.inner.encode(texts)


def test_a_batch_that_fails_is_neither_snapshotted_nor_committed(tmp_path: Path, embedder: Embedder) -> None:
    calm = Run(tmp_path / "calm", embedder)
    calm.publish(stream())
    svc = calm.service()
    svc.drain()
    svc.close()
    expected, expected_events = calm.final(svc), _event_ids(calm.events())
    calm.close()

    # Batches of 4, the second one encoded ahead of the first one's topic anchors: the
    # third batch is the fourth encode.
    r = Run(tmp_path / "fail", embedder, snapshot_every=6)
    r.publish(stream())
    first = EnrichService(
        r.settings, r.bus, r.store, r.clock, embedder=FailingEncoder(embedder, 4), on_assign=r.assigned.__setitem__
    )
    with pytest.raises(EncoderDown):
        while True:
            first.step(0.0)
    first.close()  # what run_services does on the way out: it must not commit past the failure
    covered = r.store.get(r.settings.enrich.state_namespace, STATE_KEY)["offsets"]
    assert list(covered.values()) == [8]
    assert r.bus.committed(r.settings.enrich.group, r.topics.raw_articles) == 8
    second = r.service()
    second.drain()
    second.close()
    assert second.processed == len(STREAM) - 8
    assert r.final(second) == expected
    assert _event_ids(r.events()) == expected_events
    r.close()


def test_each_story_and_ledger_is_a_document_rewritten_only_when_it_changed(
    tmp_path: Path, embedder: Embedder
) -> None:
    r = Run(tmp_path, embedder, snapshot_every=2)
    r.publish(stream())
    svc = r.service()
    ns = r.settings.enrich.state_namespace
    written: list[str] = []
    put, put_many = r.store.put, r.store.put_many

    def spy(namespace: str, key: str, value: Any, **kw: Any) -> None:
        if namespace == ns and key.startswith(STORY_KEY_PREFIX):
            written.append(key)
        put(namespace, key, value, **kw)

    def spy_many(namespace: str, items: dict[str, Any]) -> None:
        written.extend(k for k in items if namespace == ns and k.startswith(STORY_KEY_PREFIX))
        put_many(namespace, items)

    r.store.put = spy  # type: ignore[method-assign]
    r.store.put_many = spy_many  # type: ignore[method-assign]
    svc.drain()
    svc.close()
    doc = r.store.get(ns, STATE_KEY)
    assert doc is not None and doc["version"] == SNAPSHOT_VERSION
    stories = {s["id"]: s for s in svc._clusterer.to_state()["stories"]}  # type: ignore[union-attr]
    assert doc["clusterer"]["story_ids"] == list(stories)
    stored = {k.removeprefix(STORY_KEY_PREFIX): d for k, d in r.store.scan(ns) if k.startswith(STORY_KEY_PREFIX)}
    assert stored == json.loads(json.dumps(stories)), "merged stories deleted, the others up to date"
    assert written, "stories are written"
    assert len(written) < len(STREAM) * len(stories), "idle stories are not written again"
    assert doc["events"]["ledger_ids"] == list(svc.events.ledgers)
    stored = {k.removeprefix(LEDGER_KEY_PREFIX): d for k, d in r.store.scan(ns) if k.startswith(LEDGER_KEY_PREFIX)}
    assert stored == json.loads(json.dumps(svc.events.ledgers))
    # The growing maps are saved as changes: their documents read back to the live maps.
    df_log, articles_log = doc["clusterer"]["df"]["log"], doc["events"]["articles_log"]
    assert df_log["deltas"] and articles_log["deltas"], "saved as changes, not whole each time"
    assert MapLog(r.store, ns, DF_KEY_PREFIX).load(df_log) == svc._clusterer.df.counts  # type: ignore[union-attr]
    assert MapLog(r.store, ns, ARTICLES_KEY_PREFIX).load(articles_log) == svc.events.article_story
    r.close()


@pytest.mark.parametrize("version", [2, 3])
def test_a_snapshot_in_an_earlier_format_still_restores(tmp_path: Path, embedder: Embedder, version: int) -> None:
    calm = Run(tmp_path / "calm", embedder)
    calm.publish(stream())
    svc = calm.service()
    svc.drain()
    svc.close()
    expected = calm.final(svc)
    calm.close()

    r = Run(tmp_path / "old", embedder)
    r.publish(stream()[:5])
    first = r.service()
    first.drain()
    first.close()
    ns = r.settings.enrich.state_namespace
    doc = r.store.get(ns, STATE_KEY)
    assert doc is not None
    # 3: the document frequencies and the article map inside the snapshot document.
    df = doc["clusterer"]["df"]
    df["df"] = MapLog(r.store, ns, DF_KEY_PREFIX).load(df.pop("log"))
    doc["events"]["article_story"] = MapLog(r.store, ns, ARTICLES_KEY_PREFIX).load(doc["events"].pop("articles_log"))
    gone: tuple[str, ...] = (DF_KEY_PREFIX, ARTICLES_KEY_PREFIX)
    if version == 2:  # and the stories and ledgers too
        ids = doc["clusterer"].pop("story_ids")
        doc["clusterer"]["stories"] = [r.store.get(ns, STORY_KEY_PREFIX + sid) for sid in ids]
        ledger_ids = doc["events"].pop("ledger_ids")
        doc["events"]["ledgers"] = {sid: r.store.get(ns, LEDGER_KEY_PREFIX + sid) for sid in ledger_ids}
        gone += (STORY_KEY_PREFIX, LEDGER_KEY_PREFIX)
    doc["version"] = version
    r.store.put(ns, STATE_KEY, doc)
    for key, _ in list(r.store.scan(ns)):
        if key.startswith(gone):
            r.store.delete(ns, key)
    r.publish(stream()[5:])
    second = r.service()
    second.drain()
    second.close()
    assert r.final(second) == expected
    assert r.store.get(ns, STATE_KEY)["version"] == SNAPSHOT_VERSION
    r.close()


def test_a_quiet_stream_is_snapshotted_and_committed(run: Run) -> None:
    run.publish(stream()[:3])
    svc = run.service()
    while svc.processed < 3:
        svc.step(0.0)
    assert run.store.get(run.settings.enrich.state_namespace, STATE_KEY) is None  # 3 < snapshot_every
    assert svc.step(0.0) == 0
    doc = run.store.get(run.settings.enrich.state_namespace, STATE_KEY)
    assert doc is not None and list(doc["offsets"].values()) == [3]
    assert EmbeddedConsumer(run.bus, run.settings.enrich.group, [run.topics.raw_articles]).lag() == 0
    svc.close()


def test_one_log_line_a_batch_and_each_event_at_debug(run: Run, caplog: pytest.LogCaptureFixture) -> None:
    run.publish(stream())
    svc = run.service()
    with caplog.at_level(logging.DEBUG, logger="storywatch.enrich"):
        svc.drain()
    batches = [r for r in caplog.records if r.getMessage() == "batch enriched"]
    events = [r for r in caplog.records if r.getMessage() == "story event"]
    assert all(r.levelno == logging.INFO for r in batches) and all(r.levelno == logging.DEBUG for r in events)
    fields = [r.sw_fields for r in batches]
    assert sum(f["articles"] for f in fields) == 12
    published = Counter(e.type for e in run.events())
    assert sum(f[t] for f in fields for t in ("created", "updated", "matched", "emerging", "merged")) == len(events)
    assert {t: sum(f[t] for f in fields) for t in published} == dict(published)
    svc.close()


def test_a_busy_stream_is_snapshotted_once_the_interval_has_passed(tmp_path: Path, embedder: Embedder) -> None:
    """Fewer than snapshot_every articles, and the stream never goes quiet: the interval decides."""
    r = Run(tmp_path, embedder, snapshot_interval_s=30)
    ns = r.settings.enrich.state_namespace
    more = [article(20 + i, (f"{aid}-again", src, title, lead)) for i, (aid, src, title, lead) in enumerate(STREAM)]
    r.publish(stream()[:8])
    svc = r.service()
    assert svc.step(0.0) == 4
    r.clock.advance(seconds=29)
    assert svc.step(0.0) == 4
    assert r.store.get(ns, STATE_KEY) is None  # 29 s after the first unsaved article
    r.publish(stream()[8:])
    r.clock.advance(seconds=1)
    assert svc.step(0.0) == 4
    assert list(r.store.get(ns, STATE_KEY)["offsets"].values()) == [12]
    r.publish(more[:8])
    r.clock.advance(seconds=25)
    assert svc.step(0.0) == 4
    r.clock.advance(seconds=25)
    assert svc.step(0.0) == 4
    # Counted from the first article after the snapshot (25 s ago), not from the snapshot (50 s ago).
    assert list(r.store.get(ns, STATE_KEY)["offsets"].values()) == [12]
    svc.close()
    assert list(r.store.get(ns, STATE_KEY)["offsets"].values()) == [20]
    r.close()


@pytest.mark.kafka
def test_enrich_over_kafka_with_partitions_and_a_restart(
    tmp_path: Path, embedder: Embedder, kafka_bus_settings: dict[str, Any], unique_name: Callable[[str], str]
) -> None:
    """Three partitions: the snapshot covers each one, drain waits for the group join, and a
    restarted member skips what the snapshot covered."""
    names = ("raw_articles", "story_events", "feed_health", "alerts", "dead_letters")
    topics = {n: unique_name(n.replace("_", "-")) for n in names}
    settings = Settings.model_validate(
        {
            "base_dir": str(tmp_path),
            "bus": {**kafka_bus_settings, "topics": topics},
            "topics": [MISSILE],
            "enrich": {"group": unique_name("enrich"), "embed": {"batch_size": 8, "batch_ms": 0}},
        }
    )
    bus = make_bus(settings.bus)
    store = SQLiteStore(tmp_path / "state.db")
    clock = FakeClock(T0 + timedelta(days=1))
    try:
        bus.ensure_topics(list(topics.values()))
        producer = bus.producer()
        for a in stream():
            producer.publish(topics["raw_articles"], a.id, a.to_bytes())
        producer.flush()
        assigned: dict[str, str] = {}
        svc = EnrichService(settings, bus, store, clock, embedder=embedder, on_assign=assigned.__setitem__)
        assert svc.drain() == len(STREAM)
        svc.close()
        assert set(assigned) == {row[0] for row in STREAM}
        doc = store.get(settings.enrich.state_namespace, STATE_KEY)
        assert doc is not None and sum(doc["offsets"].values()) == len(STREAM)
        assert len(doc["offsets"]) > 1  # the article keys spread over the partitions

        again = EnrichService(settings, bus, store, clock, embedder=embedder)
        assert again.drain() == 0
        again.close()

        reader = bus.consumer(unique_name("reader"), [topics["story_events"]])
        events: list[StoryEvent] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(e.type == "matched" for e in events):
            events += [StoryEvent.model_validate_json(r.value) for r in reader.poll(100, 0.5)]
        reader.close()
        # Partitions interleave differently from the file order, so only the topic is certain.
        matched = {e.story_id for e in events if e.type == "matched"}
        assert matched and matched <= {assigned[a] for a in STORIES["nk"]}
    finally:
        bus.close()
        store.close()


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.floats(width=64),
        lambda inner: st.lists(inner, max_size=20)
        | st.lists(st.floats(width=32), min_size=16, max_size=40)
        | st.lists(st.floats(), min_size=16, max_size=40)
        | st.dictionaries(st.text(max_size=5), inner, max_size=5),
        max_leaves=60,
    )
)
def test_snapshot_float_packing_is_lossless(value: Any) -> None:
    packed = json.loads(json.dumps(pack_floats(value)))
    back = unpack_floats(packed)
    assert json.dumps(back) == json.dumps(value)


def test_a_restored_writer_reports_its_stories_before_the_next_article(run: Run) -> None:
    from storywatch.observe import Metrics

    run.publish(stream())
    svc = run.service()
    svc.drain()
    stories = len({svc.resolve(s) for s in run.assigned.values()})
    svc.close()
    metrics = Metrics()
    restored = EnrichService(run.settings, run.bus, run.store, run.clock, embedder=run.embedder, metrics=metrics)
    restored.start()
    assert restored.step(0.0) == 0  # nothing new on the bus
    assert metrics.stories_active._value.get() == stories  # type: ignore[attr-defined]
    restored.close()


def test_restored_stories_are_left_out_of_full_garbage_collections(run: Run) -> None:
    """Long-lived state (the model, restored stories) is frozen once it is built: a full
    collection then walks only what the stream created since (runtime.settle_heap)."""
    run.publish(stream())
    svc = run.service()
    svc.drain()
    svc.close()
    restored = run.service()
    restored.start()
    run.publish([article(99, ("x9", "World Wire", "Chess champion retains title", "The final game was drawn."))])
    assert restored.step(1.0) == 1  # the first article restores the stories
    assert restored._clusterer is not None
    story = next(iter(restored._clusterer._stories.values()))
    assert gc.get_freeze_count() > 0
    assert not any(obj is story for obj in gc.get_objects())  # the permanent generation is not listed
    gc.unfreeze()
    assert any(obj is story for obj in gc.get_objects())
    restored.close()
