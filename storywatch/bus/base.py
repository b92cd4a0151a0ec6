"""The bus: publish keyed messages to topics, consume them in groups, commit after processing.

Both implementations (Kafka and the embedded SQLite log) give the same guarantees, and
one contract-test suite (``tests/core/test_bus_contract.py``) holds them to it:

- ``Producer.publish`` may buffer; ``Producer.flush`` returns only when the broker has
  accepted every buffered message, and raises :class:`BusError` otherwise.
- Within a partition, records arrive in publish order; records with the same key go to
  the same partition.
- ``Consumer.commit`` records that everything ``poll`` returned so far was processed.
  A consumer that stops without committing leaves those records to be delivered again
  to the next consumer of the same group (at-least-once; stages make processing
  idempotent).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    timestamp_ms: int


class Producer(Protocol):
    def publish(self, topic: str, key: str | None, value: bytes) -> None: ...

    def flush(self, timeout: float = 30.0) -> None: ...

    def close(self) -> None: ...


class Consumer(Protocol):
    def poll(self, max_records: int = 100, timeout: float = 1.0) -> list[Record]: ...

    def commit(self) -> None: ...

    def lag(self) -> int | None:
        """Records not yet consumed by this group, or None when unknown."""
        ...

    def close(self) -> None: ...


class Bus(Protocol):
    def producer(self) -> Producer: ...

    def consumer(self, group: str, topics: Sequence[str]) -> Consumer: ...

    def ensure_topics(self, topics: Sequence[str]) -> None: ...

    def close(self) -> None: ...
