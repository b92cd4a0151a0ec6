"""What only the Kafka bus must show, beyond the shared contract: refused messages fail
``flush``, topics are created with the configured partitions, a group's members split the
partitions, connection attempts are bounded, and settings reach kafka-python intact
without the password ever appearing in an error."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer

from storywatch.bus import Record
from storywatch.bus.kafka import KafkaBus, KafkaBusConsumer, client_options
from storywatch.errors import BusError
from storywatch.settings.core import BusSettings
from tests.kafka_broker import TansuBroker, free_port

PASSWORD = "sw-test-kafka-password-7c1e"


def make_bus(section: dict[str, Any], **kwargs: Any) -> KafkaBus:
    return KafkaBus(BusSettings.model_validate(section), **kwargs)


@pytest.mark.kafka
@pytest.mark.parametrize(
    ("topic_suffix", "value", "reason"),
    [("", b"x" * 2_000_000, "MessageSizeTooLarge"), (" illegal name!", b"v", "is illegal")],
    ids=["over-request-limit", "illegal-topic-name"],
)
def test_refused_message_raises_bus_error_naming_the_servers(
    kafka_bus_settings: dict[str, Any],
    kafka_broker: str,
    unique_name: Callable[[str], str],
    topic_suffix: str,
    value: bytes,
    reason: str,
) -> None:
    bus = make_bus(kafka_bus_settings)
    topic = unique_name("t")
    bus.ensure_topics([topic])
    try:
        producer = bus.producer()
        producer.publish(topic, "k", b"fine")
        with pytest.raises(BusError) as info:
            producer.publish(topic + topic_suffix, "k", value)
            producer.flush()
        assert kafka_broker in str(info.value) and reason in str(info.value)
        producer.publish(topic, "k", b"after")
        producer.flush()  # the refusal was reported; the producer goes on
    finally:
        bus.close()


@pytest.mark.kafka
def test_flush_fails_within_its_timeout_when_the_broker_is_gone(unique_name: Callable[[str], str]) -> None:
    topic = unique_name("t")
    with TansuBroker() as broker:  # its own broker: this test stops it
        bus = make_bus({"kind": "kafka", "bootstrap_servers": [broker.bootstrap], "request_timeout_ms": 1000})
        try:
            bus.ensure_topics([topic])
            producer = bus.producer()
            producer.publish(topic, "k", b"before")
            producer.flush()
            broker.stop()
            producer.publish(topic, "k", b"lost")
            with pytest.raises(BusError) as info:
                producer.flush(timeout=2)
            assert broker.bootstrap in str(info.value)
            assert "did not acknowledge 1 messages" in str(info.value)
            assert producer.renewals == 0  # an unreachable broker is transient: same client
        finally:
            bus.close()  # gives up on the pending message after request_timeout_ms


@pytest.mark.kafka
def test_ensure_topics_creates_configured_partitions_and_tolerates_existing(
    kafka_bus_settings: dict[str, Any], kafka_broker: str, unique_name: Callable[[str], str]
) -> None:
    topics = [unique_name("a"), unique_name("b")]
    first = make_bus({**kafka_bus_settings, "partitions": 4})
    second = make_bus({**kafka_bus_settings, "partitions": 2})
    try:
        first.ensure_topics(topics)
        first.ensure_topics(topics)
        second.ensure_topics([*topics, topics[0]])  # exists already: kept as it is
    finally:
        first.close()
        second.close()
    probe = KafkaConsumer(bootstrap_servers=kafka_broker)
    try:
        for topic in topics:
            assert probe.partitions_for_topic(topic) == {0, 1, 2, 3}
    finally:
        probe.close()


@pytest.mark.kafka
def test_members_of_one_group_split_the_partitions(
    kafka_bus_settings: dict[str, Any], unique_name: Callable[[str], str]
) -> None:
    """Two members, each polling in its own thread as separate processes would."""
    topic, group = unique_name("t"), unique_name("g")
    bus = make_bus(kafka_bus_settings)  # 3 partitions
    stop = threading.Event()
    members: list[KafkaBusConsumer] = []
    got: list[list[Record]] = [[], []]
    errors: list[BaseException] = []
    threads: list[threading.Thread] = []

    def run(member: KafkaBusConsumer, records: list[Record]) -> None:
        try:
            while not stop.is_set():
                records.extend(member.poll(timeout=0.2))
                member.commit()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    def wait_for(condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 60
        while not condition():
            assert not errors, errors
            assert time.monotonic() < deadline, what
            time.sleep(0.05)

    try:
        bus.ensure_topics([topic])
        members = [bus.consumer(group, [topic]), bus.consumer(group, [topic])]
        threads += [threading.Thread(target=run, args=(m, r), daemon=True) for m, r in zip(members, got, strict=True)]
        for t in threads:
            t.start()
        everything = {(topic, p) for p in range(3)}

        def split() -> bool:
            first, second = (m.assignment() for m in members)
            return bool(first) and bool(second) and first.isdisjoint(second) and first | second == everything

        wait_for(split, "the partitions were never split between the two members")
        producer = bus.producer()
        for i in range(30):
            producer.publish(topic, f"key-{i}", f"v{i}".encode())
        producer.flush()
        wait_for(lambda: sum(map(len, got)) >= 30, "not every record arrived")
        stop.set()
        for t in threads:
            t.join(timeout=30)
        assert not errors, errors
        for member, records in zip(members, got, strict=True):
            assert records, "both members received records"
            assert {(r.topic, r.partition) for r in records} <= member.assignment()
        assert sorted(r.value for r in got[0] + got[1]) == sorted(f"v{i}".encode() for i in range(30))
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)  # a consumer is closed only once its thread is done with it
        bus.close()


def test_connecting_is_retried_a_bounded_number_of_times(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SW_TEST_KAFKA_PW", PASSWORD)
    server = f"127.0.0.1:{free_port()}"
    sleeps: list[float] = []
    bus = make_bus(
        {
            "kind": "kafka",
            "bootstrap_servers": [server],
            "request_timeout_ms": 1000,
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "PLAIN",
            "sasl_username": "storywatch",
            "sasl_password": {"env": "SW_TEST_KAFKA_PW"},
        },
        connect_attempts=3,
        connect_backoff_s=0.25,
        sleep=sleeps.append,
    )
    with pytest.raises(BusError) as info:
        bus.producer()
    assert sleeps == [0.25, 0.5], "two waits between three attempts, doubling"
    assert server in str(info.value)
    assert PASSWORD not in str(info.value) and PASSWORD not in repr(info.value.__cause__)
    bus.close()
    with pytest.raises(BusError, match="closed"):
        bus.producer()


def test_settings_reach_kafka_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SW_TEST_KAFKA_PW", PASSWORD)
    settings = BusSettings.model_validate(
        {
            "kind": "kafka",
            "bootstrap_servers": ["k1:9093", "k2:9093"],
            "client_id": "storywatch-enrich",
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "storywatch",
            "sasl_password": {"env": "SW_TEST_KAFKA_PW"},
            "ssl_cafile": str(tmp_path / "ca.pem"),
            "ssl_certfile": str(tmp_path / "client.pem"),
            "ssl_keyfile": str(tmp_path / "client.key"),
            "request_timeout_ms": 12_000,
        }
    )
    assert client_options(settings) == {
        "bootstrap_servers": ["k1:9093", "k2:9093"],
        "client_id": "storywatch-enrich",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "storywatch",
        "sasl_plain_password": PASSWORD,
        "ssl_cafile": str(tmp_path / "ca.pem"),
        "ssl_certfile": str(tmp_path / "client.pem"),
        "ssl_keyfile": str(tmp_path / "client.key"),
        "request_timeout_ms": 12_000,
        "bootstrap_timeout_ms": 12_000,
        "reconnect_backoff_max_ms": 10_000,
    }
    plain = client_options(BusSettings.model_validate({"kind": "kafka"}))
    assert not any(k.startswith(("sasl", "ssl")) for k in plain)
