"""What only the embedded bus must show: its log and every group's offsets survive closing and
reopening the file (a restarted process), and two bus objects on one file (two processes)
see each other's messages; and any sequence of publish, flush, poll, commit and crash
keeps at-least-once delivery in order."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from storywatch.bus import Record
from storywatch.bus.embedded import EmbeddedBus


def _values(records: list[Record]) -> list[bytes]:
    return [r.value for r in records]


def test_log_and_per_group_offsets_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    bus = EmbeddedBus(path)
    producer = bus.producer()
    for i in range(6):
        producer.publish("t", "k", f"v{i}".encode())
    producer.flush()
    fast, slow = bus.consumer("fast", ["t"]), bus.consumer("slow", ["t"])
    fast.poll(max_records=4, timeout=0)
    fast.commit()
    slow.poll(max_records=1, timeout=0)
    slow.commit()
    slow.poll(max_records=3, timeout=0)  # polled, never committed
    bus.close()

    reopened = EmbeddedBus(path)
    fast, slow, fresh = (reopened.consumer(g, ["t"]) for g in ("fast", "slow", "fresh"))
    assert (fast.lag(), slow.lag(), fresh.lag()) == (2, 5, 6)
    assert _values(fast.poll(timeout=0)) == [b"v4", b"v5"]
    assert _values(slow.poll(timeout=0)) == [b"v1", b"v2", b"v3", b"v4", b"v5"]
    assert len(fresh.poll(timeout=0)) == 6

    producer = reopened.producer()
    producer.publish("t", "k", b"v6")
    producer.flush()
    [record] = fast.poll(timeout=0)
    assert (record.offset, record.value) == (6, b"v6"), "offsets continue after a restart, never reused"
    reopened.close()


def test_two_bus_objects_on_one_file_share_the_log(tmp_path: Path) -> None:
    writer, reader = EmbeddedBus(tmp_path / "bus.db"), EmbeddedBus(tmp_path / "bus.db")
    try:
        consumer = reader.consumer("g", ["t"])
        assert consumer.poll(timeout=0) == []
        producer = writer.producer()
        producer.publish("t", None, b"hello")
        producer.flush()
        # The reader's process gets no signal from the writer's; it notices within its poll.
        assert _values(consumer.poll(timeout=5)) == [b"hello"]
        consumer.commit()
        assert writer.consumer("g", ["t"]).lag() == 0, "commits are visible to the other process too"
    finally:
        writer.close()
        reader.close()


def test_published_messages_are_visible_only_after_flush(tmp_path: Path) -> None:
    bus = EmbeddedBus(tmp_path / "bus.db")
    producer = bus.producer()
    producer.publish("t", "k", b"buffered")
    assert bus.consumer("g", ["t"]).poll(timeout=0) == []
    producer.flush()
    assert _values(bus.consumer("g2", ["t"]).poll(timeout=0)) == [b"buffered"]
    bus.close()


class EmbeddedBusMachine(RuleBasedStateMachine):
    """Random publish / flush / poll / commit / crash-and-restart sequences against a model:
    a list of flushed values, the group's committed offset and the consumer's position."""

    def __init__(self) -> None:
        super().__init__()
        self._dir = tempfile.TemporaryDirectory()
        self.path = Path(self._dir.name) / "bus.db"
        self.log: list[bytes] = []
        self.buffer: list[bytes] = []
        self.committed = 0
        self.position = 0
        self.counter = 0
        self._open()

    def _open(self) -> None:
        self.bus = EmbeddedBus(self.path)
        self.producer = self.bus.producer()
        self.consumer = self.bus.consumer("g", ["t"])

    @rule(n=st.integers(1, 4))
    def publish(self, n: int) -> None:
        for _ in range(n):
            value = f"m{self.counter}".encode()
            self.counter += 1
            self.producer.publish("t", f"k{self.counter % 3}", value)
            self.buffer.append(value)

    @rule()
    def flush(self) -> None:
        self.producer.flush()
        self.log += self.buffer
        self.buffer = []

    @rule(max_records=st.integers(1, 5))
    def poll(self, max_records: int) -> None:
        records = self.consumer.poll(max_records=max_records, timeout=0)
        expected = self.log[self.position : self.position + max_records]
        assert [r.value for r in records] == expected
        assert [r.offset for r in records] == list(range(self.position, self.position + len(expected)))
        self.position += len(records)

    @rule()
    def commit(self) -> None:
        self.consumer.commit()
        self.committed = self.position

    @rule()
    def crash_and_restart(self) -> None:
        """The process dies: unflushed messages are lost, uncommitted ones come again."""
        self.bus.close()
        self.buffer = []
        self.position = self.committed
        self._open()

    @invariant()
    def lag_counts_uncommitted(self) -> None:
        assert self.consumer.lag() == len(self.log) - self.committed

    def teardown(self) -> None:
        self.bus.close()
        self._dir.cleanup()


TestEmbeddedBusMachine = EmbeddedBusMachine.TestCase
TestEmbeddedBusMachine.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
