"""The test broker helper fails loudly: a broker that cannot start is an error, never a skip."""

from __future__ import annotations

import pytest

from tests.kafka_broker import BrokerStartError, TansuBroker


@pytest.mark.parametrize(
    ("binary", "expected"),
    [("/bin/false", "exited with status 1"), ("/nonexistent/tansu", "cannot run the broker binary")],
    ids=["exits-at-once", "missing-binary"],
)
def test_a_broker_that_cannot_start_raises(binary: str, expected: str) -> None:
    broker = TansuBroker(binary=binary, attempts=2)
    with pytest.raises(BrokerStartError, match=expected):
        broker.start()
    broker.close()


def test_broker_answers_and_stops() -> None:
    with TansuBroker() as broker:
        assert broker.bootstrap.startswith("127.0.0.1:")
        proc = broker._proc
        assert proc is not None and proc.poll() is None
    assert proc.poll() is not None, "the broker process is gone after the block"
