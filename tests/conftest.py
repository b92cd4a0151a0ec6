"""Session fixtures shared by every test package: the Kafka-protocol broker and unique names.

The broker starts once per session, on first use, and is always stopped. A test that
asks for ``kafka_broker`` fails (never skips) when the broker cannot start, so a broken
Kafka setup cannot pass CI unnoticed.
"""

from __future__ import annotations

import gc
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kafka_broker import BrokerStartError, TansuBroker

# Tansu holds a group's first join for the whole rebalance timeout, which kafka-python
# sets to max_poll_interval_ms; small values keep each join to a few seconds.
TEST_MAX_POLL_INTERVAL_MS = 3000
TEST_SESSION_TIMEOUT_MS = 3000


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[str]:
    """Bootstrap address (``127.0.0.1:PORT``) of a fresh in-memory tansu broker."""
    broker = TansuBroker()
    try:
        broker.start()
    except BrokerStartError as exc:
        broker.close()
        pytest.fail(f"the Kafka test broker could not start (tests that need Kafka never skip):\n{exc}")
    try:
        yield broker.bootstrap
    finally:
        broker.close()


@pytest.fixture(autouse=True)
def _unfreeze_heap() -> Iterator[None]:
    """A restored enrich stage freezes the heap (runtime.settle_heap), as a service should
    once; this process runs hundreds of them, so each test gives its frozen objects back."""
    yield
    gc.unfreeze()


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Make names (topics, groups) unique to this test and safe for Kafka: ``unique_name("in")``."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40].strip("-")
    run = uuid.uuid4().hex[:8]

    def make(prefix: str) -> str:
        return f"{prefix}.{base}.{run}"

    return make


@pytest.fixture
def topic_name(unique_name: Callable[[str], str]) -> str:
    return unique_name("topic")


@pytest.fixture
def group_name(unique_name: Callable[[str], str]) -> str:
    return unique_name("group")


@pytest.fixture
def kafka_bus_settings(kafka_broker: str) -> dict[str, Any]:
    """The ``bus`` section for a Kafka bus on the test broker, tuned for fast group joins."""
    return {
        "kind": "kafka",
        "bootstrap_servers": [kafka_broker],
        "partitions": 3,
        "max_poll_interval_ms": TEST_MAX_POLL_INTERVAL_MS,
        "session_timeout_ms": TEST_SESSION_TIMEOUT_MS,
        "request_timeout_ms": 10_000,
    }


@pytest.fixture
def tmp_config(tmp_path: Path) -> Callable[..., Path]:
    """Write YAML config files under ``tmp_path``: ``tmp_config({"bus": {...}}, name="x.yaml")``."""

    def write(data: dict[str, Any] | str, name: str = "storywatch.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return path

    return write
