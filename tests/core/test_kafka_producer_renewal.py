"""A kafka-python producer that can never deliver again is replaced, not kept until restart.

kafka-python 3.0.12 has states its producer never leaves (see
:func:`storywatch.bus.kafka.unrecoverable`). Two are reached here for real, against tansu:

- the broker restarts empty (tansu keeps nothing): the idempotent producer's next batch
  gets ``UnknownProducerIdError``, its epoch bump gets ``UnknownError``, and the
  transaction manager enters its fatal state for good;
- the broker stops answering for longer than ``delivery_timeout_ms`` while a batch is
  being retried: the batch expires, the producer drops its producer id and never asks
  for a new one, and every later send waits forever.

The backoff test forces the fatal state through kafka-python's own
``TransactionManager.transition_to_fatal_error`` (the method its sender calls), so that
it can move an injected clock between replacements.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from storywatch.bus.kafka import KafkaBus, KafkaBusProducer, unrecoverable
from storywatch.errors import BusError
from storywatch.settings.core import BusSettings
from tests.kafka_broker import TansuBroker


@pytest.fixture
def broker() -> Iterator[TansuBroker]:
    """A broker of this test's own: the tests restart or pause it."""
    with TansuBroker() as b:
        yield b


def _bus(bootstrap: str) -> KafkaBus:
    return KafkaBus(BusSettings.model_validate({"kind": "kafka", "bootstrap_servers": [bootstrap], "partitions": 1}))


def _values(bootstrap: str, topic: str) -> list[bytes]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        out: list[bytes] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                out += [r.value for r in records]
            if consumer.position(tp) >= end:
                break
        return out
    finally:
        consumer.close()


def _publish_until_flushed(producer: KafkaBusProducer, topic: str, value: bytes, attempts: int) -> list[str]:
    """Publish and flush as the stages do, again after each BusError; the errors seen."""
    errors: list[str] = []
    for _ in range(attempts):
        try:
            producer.publish(topic, "k", value)
            producer.flush(timeout=10)
            return errors
        except BusError as exc:
            errors.append(str(exc))
            time.sleep(0.5)
    raise AssertionError(f"never flushed after {attempts} attempts: {errors}")


@pytest.mark.kafka
def test_producer_publishes_again_after_the_broker_restarts_empty(
    broker: TansuBroker, unique_name: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    topic = unique_name("t")
    bus = _bus(broker.bootstrap)
    try:
        bus.ensure_topics([topic])
        producer = bus.producer()
        producer.publish(topic, "k", b"before")
        producer.flush()

        broker.stop()
        broker.start(port=broker.port)  # empty: no topic, no producer ids
        fresh = _bus(broker.bootstrap)
        try:
            fresh.ensure_topics([topic])
        finally:
            fresh.close()

        with caplog.at_level(logging.WARNING, logger="storywatch.bus.kafka"):
            errors = _publish_until_flushed(producer, topic, b"after", attempts=20)
        # The first attempt's batch is lost with the old producer id, and said so: a
        # caller that commits only after a clean flush publishes it again.
        assert errors, "expected the first flush after the restart to fail"
        assert all(broker.bootstrap in e for e in errors)
        assert producer.renewals >= 1
        assert any(r.getMessage() == "replaced an unrecoverable Kafka producer" for r in caplog.records)
        assert _values(broker.bootstrap, topic) == [b"after"]
    finally:
        bus.close()


@pytest.mark.kafka
def test_producer_that_dropped_its_id_after_a_long_outage_is_replaced(
    broker: TansuBroker, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("t")
    bus = _bus(broker.bootstrap)
    bus.ensure_topics([topic])
    bus.close()

    # Short timeouts so that the batch sent into the pause is retried, then expires; as
    # in KafkaBus.producer, a replacement reuses the API version the first client found.
    opts: dict[str, Any] = dict(
        bootstrap_servers=broker.bootstrap, acks="all", retries=5, linger_ms=5,
        request_timeout_ms=1000, max_block_ms=1000, delivery_timeout_ms=4000, reconnect_backoff_max_ms=1000,
    )  # fmt: skip
    made: list[KafkaProducer] = []

    def factory() -> KafkaProducer:
        made.append(KafkaProducer(**opts))
        opts.setdefault("api_version", made[-1].config["api_version"])
        return made[-1]

    producer = KafkaBusProducer(factory, broker.bootstrap, close_timeout_s=5)
    try:
        producer.publish(topic, "k", b"before")
        producer.flush()
        broker.pause()
        try:
            producer.publish(topic, "k", b"during")
            with pytest.raises(BusError, match="1 of 1 messages were not written"):
                producer.flush(timeout=15)
            # kafka-python's dead end, seen by the flush that reported the lost message.
            assert "reset its producer id" in str(unrecoverable(made[0]))
            assert producer.renewals == 1 and made[0]._closed
        finally:
            broker.resume()

        # The fresh client may need a moment to connect; that is no reason to replace it.
        _publish_until_flushed(producer, topic, b"after", attempts=20)
        assert producer.renewals == 1
        values = _values(broker.bootstrap, topic)
        # "during" timed out, so the caller publishes it again; the paused broker may
        # still have written it once it woke up (at least once).
        assert values in ([b"before", b"after"], [b"before", b"during", b"after"])
    finally:
        producer.close()


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _force_fatal(producer: KafkaBusProducer) -> None:
    """Put the current client where the sender puts it after an error it cannot recover from.

    Once it holds a producer id, as in a real run: forced earlier, the InitProducerId
    answer would arrive in the fatal state and kafka-python would log its failed transition.
    """
    tm = producer._producer._transaction_manager
    deadline = time.monotonic() + 20
    while not tm.has_producer_id():
        assert time.monotonic() < deadline, "the producer never got a producer id"
        time.sleep(0.01)
    tm.transition_to_fatal_error(KafkaError("forced by the test"))


@pytest.mark.kafka
def test_replacements_back_off_and_report_what_the_dead_client_held(
    kafka_broker: str, unique_name: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    topic = unique_name("t")
    bus = _bus(kafka_broker)
    bus.ensure_topics([topic])
    bus.close()
    made: list[KafkaProducer] = []

    def factory() -> KafkaProducer:
        # A long linger keeps a published message in the client until a flush.
        made.append(KafkaProducer(bootstrap_servers=kafka_broker, linger_ms=60_000))
        return made[-1]

    clock = _Clock()
    producer = KafkaBusProducer(factory, kafka_broker, renew_backoff_s=1, renew_backoff_max_s=3, clock=clock)
    try:
        producer.publish(topic, "k", b"held")  # waits in the first client
        _force_fatal(producer)
        with caplog.at_level(logging.WARNING, logger="storywatch.bus.kafka"):
            producer.publish(topic, "k", b"next")  # replaces the client first
        assert producer.renewals == 1 and made[0]._closed
        with pytest.raises(BusError, match="1 of 2 messages were not written"):
            producer.flush()
        producer.publish(topic, "k", b"held")
        producer.flush()  # the caller's retry goes through the new client

        (record,) = [r for r in caplog.records if r.getMessage() == "replaced an unrecoverable Kafka producer"]
        fields = record.sw_fields
        assert set(fields) == {"bootstrap_servers", "error", "pending"}
        assert "forced by the test" in fields["error"] and fields["pending"] == 1

        # Replacements are base * 2**n apart, n counting those since the last good flush.
        def dies_and_waits(seconds: float) -> None:
            renewals = producer.renewals
            _force_fatal(producer)
            clock.now += seconds - 0.5
            producer.publish(topic, "k", b"x")  # too soon: goes to the dead client
            assert producer.renewals == renewals
            clock.now += 0.5
            producer.publish(topic, "k", b"x")
            assert producer.renewals == renewals + 1

        dies_and_waits(1)  # after a good flush: the base
        dies_and_waits(2)
        dies_and_waits(3)  # 4, capped at 3
        with pytest.raises(BusError, match="5 of 6 messages were not written"):
            producer.flush()  # all but the last went to clients that died
        producer.publish(topic, "k", b"x")
        producer.flush()  # a good flush: back to the base
        dies_and_waits(1)
        with pytest.raises(BusError, match="1 of 2 messages were not written"):
            producer.flush()
    finally:
        producer.close()
    assert all(c._closed for c in made)
    assert len(made) == 6
