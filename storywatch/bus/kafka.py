"""The Kafka bus (kafka-python): the distributed deployment, one cluster shared by every stage.

The producer waits for every in-sync replica (``acks="all"``), retries transient
failures, and is idempotent when the broker supports it (kafka-python 3 turns
idempotence on by default and turns it off, with a warning, for brokers older than
0.11), so a retry cannot write a message twice. A producer that kafka-python leaves in
a state it never recovers from (a fatal idempotence error, say after a broker lost its
producer state) is replaced by a fresh one, see :class:`KafkaBusProducer`. Records are
partitioned by the murmur2 hash of their key, the same hash the Java client uses, so one
story's events stay in order whichever client wrote them.

Consumers never auto-commit: :meth:`KafkaBusConsumer.commit` commits the position after
the last record each partition returned from ``poll``. Every failure the broker reports
becomes a :class:`BusError` naming the bootstrap servers, so that an operator sees
*which* cluster was unreachable rather than a kafka-python stack trace.

Example::

    bus = KafkaBus.from_settings(settings.bus)
    bus.ensure_topics([settings.bus.topics.raw_articles])
    consumer = bus.consumer("enrich", [settings.bus.topics.raw_articles])
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from kafka import ConsumerRebalanceListener, KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import CommitFailedError, KafkaError, KafkaTimeoutError, TopicAlreadyExistsError
from kafka.producer.transaction_manager import TransactionState
from kafka.structs import OffsetAndMetadata

from storywatch.bus.base import Record
from storywatch.errors import BusError
from storywatch.logs import kv

if TYPE_CHECKING:
    from storywatch.settings import BusSettings

log = logging.getLogger("storywatch.bus.kafka")

T = TypeVar("T")


def client_options(settings: BusSettings) -> dict[str, Any]:
    """kafka-python options every client shares: where the cluster is, how to reach it, timeouts."""
    opts: dict[str, Any] = {
        "bootstrap_servers": list(settings.bootstrap_servers),
        "client_id": settings.client_id,
        "security_protocol": settings.security_protocol,
        "request_timeout_ms": settings.request_timeout_ms,
        # kafka-python 3 gives up bootstrapping after this long; without it a wrong
        # address would hang for the library's 30 s default regardless of our settings.
        "bootstrap_timeout_ms": settings.request_timeout_ms,
        "reconnect_backoff_max_ms": 10_000,
    }
    if settings.sasl_mechanism is not None:
        opts["sasl_mechanism"] = settings.sasl_mechanism
        opts["sasl_plain_username"] = settings.sasl_username
        if settings.sasl_password is not None:
            opts["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        value = getattr(settings, key)
        if value is not None:
            opts[key] = str(value)
    return opts


class KafkaBus:
    """Factory for Kafka producers and consumers, configured once from :class:`BusSettings`.

    Connecting is retried ``connect_attempts`` times with doubling backoff, because
    in docker-compose a stage often starts a moment before the broker answers; after
    that the error is a :class:`BusError`, and the service exits for its supervisor
    to restart it.
    """

    def __init__(
        self,
        settings: BusSettings,
        *,
        connect_attempts: int = 3,
        connect_backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.settings = settings
        self.servers = ",".join(settings.bootstrap_servers)
        self._options = client_options(settings)
        self._attempts = max(1, connect_attempts)
        self._backoff_s = connect_backoff_s
        self._sleep = sleep
        self._admin: KafkaAdminClient | None = None
        self._probe: KafkaConsumer | None = None  # group-less, for group_lag
        self._known_topics: set[str] = set()
        self._producers: list[KafkaBusProducer] = []
        self._consumers: list[KafkaBusConsumer] = []
        self._closed = False

    @classmethod
    def from_settings(cls, settings: BusSettings) -> KafkaBus:
        return cls(settings)

    def _connect(self, what: str, factory: Callable[[], T]) -> T:
        if self._closed:
            raise BusError(f"Kafka bus for {self.servers} is closed")
        last: KafkaError | None = None
        for attempt in range(1, self._attempts + 1):
            try:
                return factory()
            except KafkaError as exc:
                last = exc
                if not exc.retriable or attempt == self._attempts:
                    break
                log.warning(
                    "cannot reach Kafka, retrying",
                    extra=kv(bootstrap_servers=self.servers, client=what, attempt=attempt, error=str(exc)),
                )
                self._sleep(self._backoff_s * 2 ** (attempt - 1))
        raise BusError(f"cannot connect {what} to Kafka at {self.servers}: {last}") from last

    def _admin_client(self) -> KafkaAdminClient:
        if self._admin is None:
            self._admin = self._connect("admin client", lambda: KafkaAdminClient(**self._options))
        return self._admin

    def producer(self) -> KafkaBusProducer:
        opts = dict(self._options, acks="all", retries=5, linger_ms=5, max_block_ms=self.settings.request_timeout_ms)
        # delivery_timeout_ms bounds retries in time; kafka-python requires it to cover
        # one request plus the linger.
        opts["delivery_timeout_ms"] = max(120_000, self.settings.request_timeout_ms + 5)

        def make() -> KafkaProducer:
            client = self._connect("producer", lambda: KafkaProducer(**opts))
            # A replacement (see KafkaBusProducer) skips the version probe, which would
            # block for bootstrap_timeout_ms while the cluster is unreachable: it starts
            # at once and connects in the background, like the client it replaces.
            opts.setdefault("api_version", client.config["api_version"])
            return client

        producer = KafkaBusProducer(make, self.servers, close_timeout_s=self.settings.request_timeout_ms / 1000)
        self._producers.append(producer)
        return producer

    def consumer(self, group: str, topics: Sequence[str]) -> KafkaBusConsumer:
        self.ensure_topics(topics)
        s = self.settings
        opts = dict(
            self._options,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_interval_ms=s.max_poll_interval_ms,
            session_timeout_ms=s.session_timeout_ms,
            # Three heartbeats per session, as Kafka recommends, but no slower than its default.
            heartbeat_interval_ms=max(100, min(3000, s.session_timeout_ms // 3)),
        )
        client = self._connect("consumer", lambda: KafkaConsumer(**opts))
        consumer = KafkaBusConsumer(client, group, list(topics), self.servers)
        self._consumers.append(consumer)
        return consumer

    def ensure_topics(self, topics: Sequence[str]) -> None:
        """Create the topics that do not exist yet, with the configured partitions and replication."""
        wanted = [t for t in dict.fromkeys(topics) if t not in self._known_topics]
        if not wanted:
            return
        admin = self._admin_client()
        try:
            existing = set(admin.list_topics())
            missing = [t for t in wanted if t not in existing]
            if missing:
                spec = {
                    "num_partitions": self.settings.partitions,
                    "replication_factor": self.settings.replication_factor,
                }
                result = admin.create_topics(
                    {t: dict(spec) for t in missing}, timeout_ms=self.settings.request_timeout_ms, raise_errors=False
                )
                for entry in result.get("topics", []):
                    code = entry.get("error_code", 0)
                    if code not in (0, TopicAlreadyExistsError.errno):
                        raise BusError(
                            f"cannot create topic {entry.get('name')!r} on Kafka at {self.servers}: "
                            f"error {code} {entry.get('error_message') or ''}".rstrip()
                        )
                admin.wait_for_topics(missing, timeout_ms=self.settings.request_timeout_ms)
                log.info(
                    "created topics",
                    extra=kv(
                        topic=",".join(missing), partitions=self.settings.partitions, bootstrap_servers=self.servers
                    ),
                )
        except KafkaError as exc:
            raise BusError(f"cannot create topics {wanted} on Kafka at {self.servers}: {exc}") from exc
        self._known_topics.update(wanted)

    def group_lag(self, group: str, topics: Sequence[str]) -> int | None:
        """Records of ``topics`` that ``group`` has not committed, asked without joining it.

        For ``storywatch status``: one attempt, so an unreachable cluster is a
        :class:`BusError` after ``request_timeout_ms``, not after every retry. A group
        that never committed counts from the start of each partition. (Against tansu the
        end of a partition may read one batch short, see :meth:`KafkaBusConsumer.lag`.)
        """
        if self._closed:
            raise BusError(f"Kafka bus for {self.servers} is closed")
        try:
            if self._admin is None:
                self._admin = KafkaAdminClient(**self._options)
            if self._probe is None:
                self._probe = KafkaConsumer(**self._options, group_id=None, enable_auto_commit=False)
            committed = self._admin.list_group_offsets({group: None}).get(group, {})
            tps = [TopicPartition(t, p) for t in topics for p in sorted(self._probe.partitions_for_topic(t) or ())]
            if not tps:
                return None
            ends = self._probe.end_offsets(tps)
            starts = self._probe.beginning_offsets(tps)
        except KafkaError as exc:
            raise BusError(f"cannot read the lag of group {group!r} on Kafka at {self.servers}: {exc}") from exc
        total = 0
        for tp in tps:
            meta = committed.get(tp)
            done = meta.offset if meta is not None and meta.offset >= 0 else starts.get(tp) or 0
            total += max(0, (ends.get(tp) or 0) - done)
        return total

    def close(self) -> None:
        """Close every client this bus made; consumers do not commit, producers flush first."""
        if self._closed:
            return
        self._closed = True
        if self._probe is not None:
            self._probe.close()
        for consumer in self._consumers:
            consumer.close()
        for producer in self._producers:
            try:
                producer.close()
            except BusError as exc:
                log.warning("unflushed messages lost on close", extra=kv(error=str(exc)))
        if self._admin is not None:
            self._admin.close()


def unrecoverable(client: KafkaProducer) -> str | None:
    """Why ``client`` will never deliver another message, or None while it still can.

    kafka-python 3.0.12 has two dead ends from which no later send recovers:

    - the transaction manager's fatal (or abortable) error state, which it never leaves:
      its sender fails every new batch with the same error. An idempotent producer
      lands there when the broker has forgotten its producer id (a broker that lost
      its state, such as a restarted in-memory tansu) and refuses the epoch bump;
    - an idempotent producer that reset its producer id after a batch it had sent
      expired (an outage longer than ``delivery_timeout_ms``): it stays READY with no
      id, never asks for a new one, and every later send waits forever.

    Both are read from kafka-python's internal state (``_transaction_manager``,
    ``_sender``), the only place that shows them; without it this answers None.
    """
    sender = getattr(client, "_sender", None)
    if sender is not None and not sender.is_alive() and not getattr(client, "_closed", False):
        return "the producer's I/O thread has stopped"
    tm = getattr(client, "_transaction_manager", None)
    if tm is None:
        return None
    if tm.has_error():
        return f"the producer is in an error state it never leaves: {tm.last_error}"
    if (
        not tm.is_transactional()
        and not tm.has_producer_id()
        and getattr(tm, "_current_state", None) == TransactionState.READY
    ):
        return "the idempotent producer reset its producer id and will never ask for a new one"
    return None


class KafkaBusProducer:
    """Sends asynchronously; :meth:`flush` waits and reports any message the broker refused.

    The futures of every send since the last flush are kept, because kafka-python's own
    ``flush`` returns normally even when some sends failed.

    A kafka-python producer that has reached a state it cannot leave (see
    :func:`unrecoverable`) is replaced by a fresh one from ``factory``: otherwise the
    stage could never publish again until restarted. Messages pending on the old client
    are not lost silently: the flush that notices, or the next one, raises
    :class:`BusError` for them, so that the caller does not commit their input and
    publishes them again. Replacements are at least ``renew_backoff_s`` apart, doubling
    up to ``renew_backoff_max_s`` while the fresh clients keep failing, so that a
    broken cluster does not get a new producer on every attempt. Transient failures
    (timeouts, an unreachable broker) never replace the client: kafka-python retries them.
    """

    def __init__(
        self,
        factory: Callable[[], KafkaProducer],
        servers: str,
        *,
        close_timeout_s: float = 30.0,
        renew_backoff_s: float = 1.0,
        renew_backoff_max_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._factory = factory
        self._producer = factory()
        self._servers = servers
        self._close_timeout_s = close_timeout_s
        self._pending: list[tuple[str, Any]] = []
        self._closed = False
        self._renew_lock = threading.Lock()
        self._renew_backoff_s = renew_backoff_s
        self._renew_backoff_max_s = renew_backoff_max_s
        self._renewed_at = float("-inf")
        self._renewal_streak = 0  # replacements since the last flush that delivered something
        self._clock = clock
        self.renewals = 0  # clients replaced so far, for tests and diagnostics

    def publish(self, topic: str, key: str | None, value: bytes) -> None:
        self._renew_if_unrecoverable()
        try:
            future = self._producer.send(topic, value=value, key=None if key is None else key.encode("utf-8"))
        except (KafkaError, ValueError) as exc:
            # ValueError: kafka-python's verdict on an illegal topic name or partition.
            raise BusError(f"cannot publish to {topic!r} on Kafka at {self._servers}: {exc}") from exc
        self._pending.append((topic, future))

    def flush(self, timeout: float = 30.0) -> None:
        """Return once the broker has acknowledged every message published so far.

        On a timeout the messages stay pending (kafka-python keeps sending them) and the
        next flush checks them again, unless the client turned out to be unrecoverable
        and was replaced: then they are reported lost by this flush. Messages the broker
        refused are dropped: the caller must not commit the input they came from, so
        that it is processed again.
        """
        pending, self._pending = self._pending, []
        try:
            self._producer.flush(timeout=timeout)
        except KafkaTimeoutError as exc:
            unacked = [p for p in pending if not p[1].is_done]
            if not self._renew_if_unrecoverable():
                self._pending = unacked + self._pending
            raise BusError(
                f"Kafka at {self._servers} did not acknowledge {len(unacked)} messages within {timeout:g}s"
            ) from exc
        except KafkaError as exc:
            self._renew_if_unrecoverable()
            raise BusError(f"flush to Kafka at {self._servers} failed: {exc}") from exc
        self._renew_if_unrecoverable()
        failed = [(topic, fut) for topic, fut in pending if not fut.is_done or fut.failed()]
        if failed:
            topic, fut = failed[0]
            reason = fut.exception if fut.is_done else "not acknowledged"
            raise BusError(
                f"{len(failed)} of {len(pending)} messages were not written to Kafka at {self._servers} "
                f"(first: topic {topic!r}: {reason})"
            )
        if pending:
            self._renewal_streak = 0  # the current client works

    def _renew_if_unrecoverable(self) -> bool:
        """Replace the client if it can never deliver again and the backoff allows; True if replaced.

        The old client is closed at once, which fails its pending futures: they stay in
        ``_pending`` for the next flush to report, unless the caller reports them itself.
        """
        if self._closed:
            return False
        with self._renew_lock:
            old = self._producer
            reason = unrecoverable(old)
            now = self._clock()
            wait_s = min(self._renew_backoff_s * 2**self._renewal_streak, self._renew_backoff_max_s)
            if reason is None or now < self._renewed_at + wait_s:
                return False
            self._renewed_at = now
            self._renewal_streak += 1
            fields = {"bootstrap_servers": self._servers, "error": reason, "pending": len(self._pending)}
            try:
                self._producer = self._factory()
            except (BusError, KafkaError) as exc:
                log.warning(
                    "cannot replace an unrecoverable Kafka producer yet; will try again",
                    extra=kv(**fields, replace_error=str(exc)),
                )
                return False
            self.renewals += 1
            log.warning("replaced an unrecoverable Kafka producer", extra=kv(**fields))
        self._stop_client(old, timeout_s=0.0)
        return True

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.flush(timeout=self._close_timeout_s)
        finally:
            self._stop_client(self._producer, timeout_s=self._close_timeout_s)

    def _stop_client(self, client: KafkaProducer, *, timeout_s: float) -> None:
        try:
            client.close(timeout=timeout_s)
        except KafkaError:
            # kafka-python's close() stops half-way when its own flush times out, leaving
            # the sender thread retrying a dead broker (and __del__ trying again). Stop it:
            # a forced close fails every incomplete batch, so no future waits forever.
            sender = getattr(client, "_sender", None)
            if sender is not None:
                sender.force_close()
                sender.join(self._close_timeout_s)
            client._closed = True


class _ForgetRevoked(ConsumerRebalanceListener):
    """Drops uncommitted positions of partitions taken away in a rebalance.

    Their records go to the partition's new owner (at-least-once); committing them from
    here would either fail or skip records that owner has not processed.
    """

    def __init__(self, pending: dict[TopicPartition, int]):
        self._pending = pending

    def on_partitions_revoked(self, revoked: Any) -> None:
        for tp in revoked:
            self._pending.pop(tp, None)

    def on_partitions_assigned(self, assigned: Any) -> None:
        pass


class KafkaBusConsumer:
    """One member of a consumer group; partitions are split between the group's members."""

    def __init__(self, consumer: KafkaConsumer, group: str, topics: list[str], servers: str):
        self._consumer = consumer
        self.group = group
        self.topics = topics
        self._servers = servers
        self._pending: dict[TopicPartition, int] = {}
        self._closed = False
        try:
            consumer.subscribe(topics, listener=_ForgetRevoked(self._pending))
        except KafkaError as exc:
            raise BusError(f"cannot subscribe group {group!r} to {topics} on Kafka at {servers}: {exc}") from exc

    def poll(self, max_records: int = 100, timeout: float = 1.0) -> list[Record]:
        try:
            batches = self._consumer.poll(timeout_ms=int(timeout * 1000), max_records=max_records)
        except KafkaError as exc:
            raise BusError(f"poll of group {self.group!r} on Kafka at {self._servers} failed: {exc}") from exc
        out: list[Record] = []
        for tp, records in batches.items():
            for r in records:
                key = None if r.key is None else r.key.decode("utf-8", errors="replace")
                out.append(Record(r.topic, r.partition, r.offset, key, r.value or b"", r.timestamp))
            if records:
                self._pending[tp] = records[-1].offset + 1
        return out

    def commit(self) -> None:
        if not self._pending:
            return
        offsets = {tp: OffsetAndMetadata(off, "", -1) for tp, off in self._pending.items()}
        try:
            self._consumer.commit(offsets=offsets)
        except CommitFailedError as exc:
            # The group moved these partitions to another member while we worked; it
            # will process the records again, which stages tolerate.
            log.warning(
                "commit rejected after a rebalance; records will be redelivered",
                extra=kv(group=self.group, bootstrap_servers=self._servers, error=str(exc)),
            )
            self._pending.clear()
            return
        except KafkaError as exc:
            raise BusError(f"commit of group {self.group!r} on Kafka at {self._servers} failed: {exc}") from exc
        for tp, meta in offsets.items():
            if self._pending.get(tp) == meta.offset:
                del self._pending[tp]

    def assignment(self) -> set[tuple[str, int]]:
        """The ``(topic, partition)`` pairs the group gave this member; empty while it joins."""
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment() or ()}

    def lag(self) -> int | None:
        """Records of the subscribed topics the group has not committed, over all partitions.

        The end of a partition is the larger of the ListOffsets answer and the high
        watermark of the last fetch: some Kafka-protocol brokers (tansu) answer ListOffsets
        with the start of the last batch plus one.
        """
        c = self._consumer
        try:
            tps = [TopicPartition(t, p) for t in self.topics for p in sorted(c.partitions_for_topic(t) or ())]
            if not tps:
                return None
            ends = c.end_offsets(tps)
            starts = c.beginning_offsets(tps)
            assigned = c.assignment() or set()
            total = 0
            for tp in tps:
                end = ends.get(tp) or 0
                if tp in assigned:
                    end = max(end, c.highwater(tp) or 0)
                committed = c.committed(tp)
                done = committed if committed is not None else starts.get(tp) or 0
                total += max(0, end - done)
            return total
        except KafkaError as exc:
            log.warning(
                "cannot compute lag", extra=kv(group=self.group, bootstrap_servers=self._servers, error=str(exc))
            )
            return None

    def close(self) -> None:
        """Leave the group without committing: what was polled but not committed is redelivered."""
        if self._closed:
            return
        self._closed = True
        try:
            self._consumer.close(autocommit=False)
        except KafkaError as exc:
            log.warning("error closing consumer", extra=kv(group=self.group, error=str(exc)))
