"""Settings of the shared core: bus, store, logging and the service HTTP endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from storywatch.settings.base import Secret, Section


class TopicNames(Section):
    """Kafka topic names (also the embedded bus's), one per message model."""

    raw_articles: str = "storywatch.raw-articles"
    embedded_articles: str = "storywatch.embedded-articles"
    story_events: str = "storywatch.story-events"
    feed_health: str = "storywatch.feed-health"
    alerts: str = "storywatch.alerts"
    dead_letters: str = "storywatch.dead-letters"


class BusSettings(Section):
    kind: Literal["embedded", "kafka"] = "embedded"
    """embedded: a SQLite log on this machine; kafka: an Apache Kafka cluster."""
    # embedded
    path: Path = Path("var/bus.db")
    """The embedded bus's log file."""
    retention_hours: float = Field(168.0, gt=0)
    """Embedded bus: keep consumed messages this long before pruning."""
    # kafka
    bootstrap_servers: list[str] = Field(default_factory=lambda: ["localhost:9092"], min_length=1)
    """Kafka: host:port of one or more brokers (a list, or one comma-separated string)."""

    @field_validator("bootstrap_servers", mode="before")
    @classmethod
    def _split_servers(cls, v: object) -> object:
        return [s.strip() for s in v.split(",") if s.strip()] if isinstance(v, str) else v
    client_id: str = "storywatch"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    """Kafka SASL password: {env: NAME} or {file: PATH}."""
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    partitions: int = Field(6, ge=1, le=1000)
    """Partitions of topics storywatch creates; the most consumers a group can use."""
    replication_factor: int = Field(1, ge=1, le=10)
    max_poll_interval_ms: int = Field(300_000, ge=1000)
    """Kafka: longest gap between polls before the group reassigns the consumer's partitions."""
    session_timeout_ms: int = Field(10_000, ge=1000)
    request_timeout_ms: int = Field(30_000, ge=1000)
    topics: TopicNames = TopicNames()


class StoreSettings(Section):
    kind: Literal["sqlite", "postgres"] = "sqlite"
    """sqlite: a file on this machine; postgres: a PostgreSQL database shared by replicas."""
    path: Path = Path("var/state.db")
    """The SQLite state store file."""
    # postgres
    dsn: Secret | None = None
    """PostgreSQL: libpq URL or key=value string, as {env: NAME} or {file: PATH} (it may hold a password)."""
    pool_size: int = Field(4, ge=1, le=100)
    """PostgreSQL: most connections one process opens (one per thread inside a transaction)."""
    pool_timeout_s: float = Field(10.0, gt=0, le=600)
    """PostgreSQL: how long a thread waits for a free connection before the store fails."""
    connect_timeout_s: int = Field(10, ge=2, le=600)
    """PostgreSQL: how long opening a connection may take."""
    statement_timeout_s: float = Field(30.0, gt=0, le=3600)
    """PostgreSQL: longest a statement (including a wait for a lock) may run."""

    @model_validator(mode="after")
    def _dsn_for_postgres(self) -> StoreSettings:
        if self.kind == "postgres" and self.dsn is None:
            raise ValueError("store.kind postgres needs store.dsn, e.g. {env: STORYWATCH_PG_DSN}")
        return self


class LogSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"
    """text: key=value lines; json: one JSON object per line."""


class HttpSettings(Section):
    """The service's health and metrics endpoint (``/healthz``, ``/readyz``, ``/metrics``)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(9464, ge=0, le=65535)
