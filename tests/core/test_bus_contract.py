"""The bus contract: one suite, run over every bus (embedded on a SQLite file, Kafka on tansu).

What stages rely on (see ``storywatch/bus/base.py``): per-partition order, key affinity,
independent consumer groups, resuming after the committed position (also from a new bus
object, as after a restart), redelivery of what was polled but not committed, ``flush``
either succeeding or raising :class:`BusError`, and ``lag`` counting uncommitted records.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from storywatch.bus import Bus, Consumer, Record, make_bus
from storywatch.errors import BusError
from storywatch.settings import Settings
from storywatch.settings.core import BusSettings
from tests.kafka_broker import free_port

NewBus = Callable[[], Bus]

# Generous: a Kafka consumer's first poll includes joining its group (about 3 s on tansu).
WAIT_S = 30.0


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def bus_settings(request: pytest.FixtureRequest, tmp_path: Path) -> BusSettings:
    if request.param == "embedded":
        return BusSettings.model_validate({"kind": "embedded", "path": tmp_path / "bus.db"})
    return BusSettings.model_validate(request.getfixturevalue("kafka_bus_settings"))


@pytest.fixture
def new_bus(bus_settings: BusSettings) -> Iterator[NewBus]:
    """Make bus objects over the same log or cluster; a second one stands for a restarted process."""
    made: list[Bus] = []

    def factory() -> Bus:
        bus = make_bus(bus_settings)
        made.append(bus)
        return bus

    yield factory
    for bus in made:
        bus.close()


@pytest.fixture
def bus(new_bus: NewBus) -> Bus:
    return new_bus()


def poll_exactly(consumer: Consumer, n: int) -> list[Record]:
    """Poll until ``n`` records arrived (never asking for more), or fail after a generous wait."""
    got: list[Record] = []
    deadline = time.monotonic() + WAIT_S
    while len(got) < n:
        assert time.monotonic() < deadline, f"only {len(got)} of {n} records arrived"
        got.extend(consumer.poll(max_records=n - len(got), timeout=0.5))
    assert len(got) == n
    return got


def assert_nothing_more(consumer: Consumer) -> None:
    assert consumer.poll(max_records=10, timeout=0.5) == []


def publish(bus: Bus, topic: str, items: list[tuple[str | None, bytes]]) -> None:
    producer = bus.producer()
    for key, value in items:
        producer.publish(topic, key, value)
    producer.flush()


def test_keyed_records_keep_publish_order_and_partition(bus: Bus, unique_name: Callable[[str], str]) -> None:
    topics = [unique_name("a"), unique_name("b")]
    bus.ensure_topics(topics)
    producer = bus.producer()
    sent: dict[tuple[str, str], list[bytes]] = {}
    for i in range(8):
        for key in ("k1", "k2", "k3"):
            for topic in topics:
                value = f"{topic}/{key}/{i}".encode()
                producer.publish(topic, key, value)
                sent.setdefault((topic, key), []).append(value)
    producer.flush()

    records = poll_exactly(bus.consumer(unique_name("g"), topics), 48)

    got: dict[tuple[str, str], list[bytes]] = {}
    partition_of: dict[tuple[str, str], set[int]] = {}
    last_offset: dict[tuple[str, int], int] = {}
    for r in records:
        assert r.key is not None and r.timestamp_ms > 0
        got.setdefault((r.topic, r.key), []).append(r.value)
        partition_of.setdefault((r.topic, r.key), set()).add(r.partition)
        assert r.offset > last_offset.get((r.topic, r.partition), -1), "offsets increase within a partition"
        last_offset[(r.topic, r.partition)] = r.offset
    assert got == sent, "every record arrives once, in publish order per key"
    assert all(len(parts) == 1 for parts in partition_of.values()), "a key always maps to one partition"


def test_unkeyed_records_and_binary_values_round_trip(bus: Bus, unique_name: Callable[[str], str]) -> None:
    topic = unique_name("t")
    bus.ensure_topics([topic])
    values = [bytes(range(256)), b"", "ünïcode".encode()]
    publish(bus, topic, [(None, v) for v in values])
    records = poll_exactly(bus.consumer(unique_name("g"), [topic]), 3)
    assert sorted(r.value for r in records) == sorted(values)
    assert all(r.key is None for r in records)


def test_consumer_groups_are_independent(bus: Bus, unique_name: Callable[[str], str]) -> None:
    topic = unique_name("t")
    bus.ensure_topics([topic])
    publish(bus, topic, [("k", f"v{i}".encode()) for i in range(5)])
    first, second = bus.consumer(unique_name("g1"), [topic]), bus.consumer(unique_name("g2"), [topic])

    assert [r.value for r in poll_exactly(first, 5)] == [f"v{i}".encode() for i in range(5)]
    first.commit()
    assert [r.value for r in poll_exactly(second, 5)] == [f"v{i}".encode() for i in range(5)]
    assert first.lag() == 0
    assert second.lag() == 5, "the other group's commit does not count for this one"


def test_new_consumer_resumes_after_committed_position(new_bus: NewBus, unique_name: Callable[[str], str]) -> None:
    topic, group = unique_name("t"), unique_name("g")
    bus = new_bus()
    bus.ensure_topics([topic])
    bus.ensure_topics([topic])  # idempotent
    publish(bus, topic, [("story-1", f"v{i}".encode()) for i in range(5)])
    consumer = bus.consumer(group, [topic])
    consumer.commit()  # nothing polled yet: commits nothing
    assert [r.value for r in poll_exactly(consumer, 3)] == [b"v0", b"v1", b"v2"]
    consumer.commit()
    consumer.commit()  # again: a no-op
    consumer.close()
    bus.close()

    restarted = new_bus().consumer(group, [topic])
    resumed = poll_exactly(restarted, 2)
    assert [r.value for r in resumed] == [b"v3", b"v4"]
    assert [r.offset for r in resumed] == [r.offset for r in sorted(resumed, key=lambda r: r.offset)]
    assert_nothing_more(restarted)


def test_uncommitted_records_are_redelivered_to_next_consumer(bus: Bus, unique_name: Callable[[str], str]) -> None:
    topic, group = unique_name("t"), unique_name("g")
    bus.ensure_topics([topic])
    publish(bus, topic, [("k", f"v{i}".encode()) for i in range(4)])
    crashed = bus.consumer(group, [topic])
    poll_exactly(crashed, 2)
    crashed.commit()
    lost = poll_exactly(crashed, 2)
    crashed.close()  # stops without committing the second batch

    successor = bus.consumer(group, [topic])
    again = poll_exactly(successor, 2)
    assert [(r.partition, r.offset, r.value) for r in again] == [(r.partition, r.offset, r.value) for r in lost]
    successor.commit()
    assert_nothing_more(successor)


def test_flush_makes_every_published_record_visible(bus: Bus, unique_name: Callable[[str], str]) -> None:
    topic = unique_name("t")
    bus.ensure_topics([topic])
    producer = bus.producer()
    producer.flush()  # nothing pending: a no-op
    for i in range(50):
        producer.publish(topic, f"k{i % 7}", f"v{i}".encode())
    producer.flush()
    producer.flush()  # flushing twice publishes nothing twice
    consumer = bus.consumer(unique_name("g"), [topic])
    assert sorted(r.value for r in poll_exactly(consumer, 50)) == sorted(f"v{i}".encode() for i in range(50))
    assert_nothing_more(consumer)


def test_lag_counts_records_the_group_has_not_committed(bus: Bus, unique_name: Callable[[str], str]) -> None:
    topic = unique_name("t")
    bus.ensure_topics([topic])
    publish(bus, topic, [("k", f"v{i}".encode()) for i in range(5)])
    consumer = bus.consumer(unique_name("g"), [topic])
    poll_exactly(consumer, 2)
    consumer.commit()
    assert consumer.lag() == 3
    poll_exactly(consumer, 3)
    assert consumer.lag() == 3, "polled but not committed still counts"
    consumer.commit()
    assert consumer.lag() == 0
    publish(bus, topic, [("k", b"late")])
    assert consumer.lag() == 1


def test_publishing_on_a_closed_bus_raises_bus_error(new_bus: NewBus, unique_name: Callable[[str], str]) -> None:
    topic = unique_name("t")
    bus = new_bus()
    bus.ensure_topics([topic])
    producer = bus.producer()
    bus.close()
    with pytest.raises(BusError):
        producer.publish(topic, "k", b"v")
        producer.flush()


def _unreachable(kind: str, tmp_path: Path) -> tuple[dict[str, Any], str]:
    if kind == "embedded":
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("a file where the bus wants a directory")
        return {"kind": "embedded", "path": str(blocker / "bus.db")}, str(blocker)
    server = f"127.0.0.1:{free_port()}"
    return {"kind": "kafka", "bootstrap_servers": [server], "request_timeout_ms": 1000}, server


@pytest.mark.parametrize("kind", ["embedded", "kafka"])
def test_unreachable_bus_raises_bus_error_naming_where(kind: str, tmp_path: Path) -> None:
    section, where = _unreachable(kind, tmp_path)
    settings = Settings.model_validate({"bus": section}).bus
    with pytest.raises(BusError) as info:
        bus = make_bus(settings)
        try:
            producer = bus.producer()
            producer.publish("t", "k", b"v")
            producer.flush(timeout=2)
        finally:
            bus.close()
    assert where in str(info.value)
