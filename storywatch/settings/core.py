"""Settings of the shared core: bus, store, logging and the service HTTP endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from storywatch.settings.base import Secret, Section


class TopicNames(Section):
    """Kafka topic names (also the embedded bus's), one per message model."""

    raw_articles: str = "storywatch.raw-articles"
    story_events: str = "storywatch.story-events"
    feed_health: str = "storywatch.feed-health"
    alerts: str = "storywatch.alerts"
    dead_letters: str = "storywatch.dead-letters"


class BusSettings(Section):
    kind: Literal["embedded", "kafka"] = "embedded"
    # embedded
    path: Path = Path("var/bus.db")
    retention_hours: float = Field(168.0, gt=0)
    # kafka
    bootstrap_servers: list[str] = Field(default_factory=lambda: ["localhost:9092"], min_length=1)
    client_id: str = "storywatch"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    partitions: int = Field(6, ge=1, le=1000)
    replication_factor: int = Field(1, ge=1, le=10)
    max_poll_interval_ms: int = Field(300_000, ge=1000)
    session_timeout_ms: int = Field(10_000, ge=1000)
    request_timeout_ms: int = Field(30_000, ge=1000)
    topics: TopicNames = TopicNames()


class StoreSettings(Section):
    kind: Literal["sqlite"] = "sqlite"
    path: Path = Path("var/state.db")


class LogSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class HttpSettings(Section):
    """The service's health and metrics endpoint (``/healthz``, ``/readyz``, ``/metrics``)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(9464, ge=0, le=65535)
