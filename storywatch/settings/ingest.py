"""Settings of the ingest stage and the feed list."""

from __future__ import annotations

from pydantic import Field, field_validator

from storywatch.settings.base import Section


class FeedSettings(Section):
    """One feed. ``url`` is http(s)://, file://, or a path relative to the config file."""

    url: str
    name: str = ""
    interval_s: float | None = Field(None, gt=0)
    full_text: bool = False
    enabled: bool = True

    @field_validator("url")
    @classmethod
    def _url_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("url must not be blank")
        return v.strip()


class IngestSettings(Section):
    contact_url: str = "https://github.com/storywatch/storywatch"
    default_interval_s: float = Field(900.0, gt=0)
    min_interval_s: float = Field(60.0, gt=0)
    max_interval_s: float = Field(6 * 3600.0, gt=0)
    jitter_fraction: float = Field(0.1, ge=0, le=1)
    connect_timeout_s: float = Field(10.0, gt=0)
    read_timeout_s: float = Field(30.0, gt=0)
    total_timeout_s: float = Field(60.0, gt=0)
    max_body_bytes: int = Field(10 * 1024 * 1024, gt=0)
    max_redirects: int = Field(5, ge=0, le=20)
    per_host_concurrency: int = Field(2, ge=1)
    per_host_min_gap_s: float = Field(1.0, ge=0)
    global_concurrency: int = Field(16, ge=1)
    failing_after_polls: int = Field(3, ge=1)
    failing_after_hours: float = Field(6.0, gt=0)
    seen_capacity: int = Field(200_000, ge=100)
    tick_s: float = Field(5.0, gt=0)
    backoff_base_s: float = Field(120.0, gt=0)
    """After the first failure a feed waits this long; each further failure doubles it (up to max_interval_s)."""
    host_backoff_s: float = Field(600.0, gt=0)
    """How long a host that answered 403, 429 or 503 without Retry-After is left alone."""
    max_entries_per_feed: int = Field(500, ge=1)
    """Entries beyond this many in one document are ignored (newest first as the feed orders them)."""
    jitter_seed: int | None = None
    """Seed of the random jitter added to each next check; None draws a fresh seed at start."""
    full_text_max_bytes: int = Field(5 * 1024 * 1024, gt=0)
    """Largest article page fetched for full-text extraction."""
