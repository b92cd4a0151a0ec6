"""Per-feed state and when to look at each feed next.

Every feed carries its own ``next_check_at``; the scheduler merely ticks and polls the
feeds that are due. After a success the next check waits the largest of the configured
interval, the feed's own TTL, the server's Cache-Control max-age and Retry-After, clamped
to ``[min_interval_s, max_interval_s]``; after a failure it backs off exponentially up to
``max_interval_s`` (a failing feed is retried at that pace forever, never parked). Random
jitter (from an injected, seedable ``Random``) keeps feeds configured together from
being polled together.

Health: a feed that failed ``failing_after_polls`` times in a row, or has failed for
``failing_after_hours``, becomes ``failing`` (reported once); its next success reports
``recovered``. HTTP 404 marks a feed failing at once; HTTP 410 disables it.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from storywatch.errors import FeedError, FeedFetchError
from storywatch.settings.ingest import IngestSettings

Status = Literal["new", "ok", "failing", "disabled"]
HOST_BACKOFF_STATUSES = frozenset({403, 429, 503})


@dataclass(frozen=True, slots=True)
class FeedState:
    """What the store remembers of one feed between polls and restarts."""

    key: str
    url: str
    etag: str | None = None
    last_modified: str | None = None
    next_check_at: datetime | None = None
    error_count: int = 0
    last_error: str | None = None
    last_success: datetime | None = None
    last_attempt: datetime | None = None
    failing_since: datetime | None = None
    status: Status = "new"
    ttl_s: float | None = None
    last_warning: str | None = None
    body_sha: str | None = None
    """Hash of the last document parsed, to skip parsing an unchanged one."""
    entry_marks: list[str] | None = None
    """Fingerprints of the last document's entries, to skip entries handled before."""
    """What was wrong with the last document that still parsed (bozo XML, skipped entries)."""

    def to_doc(self) -> dict[str, Any]:
        doc = asdict(self)
        for k, v in doc.items():
            if isinstance(v, datetime):
                doc[k] = v.isoformat()
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> FeedState:
        known = {f for f in cls.__dataclass_fields__}
        data = {k: v for k, v in doc.items() if k in known}
        for k in ("next_check_at", "last_success", "last_attempt", "failing_since"):
            if data.get(k):
                data[k] = datetime.fromisoformat(data[k])
        return cls(**data)

    def due(self, now: datetime) -> bool:
        return self.status != "disabled" and (self.next_check_at is None or self.next_check_at <= now)


@dataclass(frozen=True, slots=True)
class Transition:
    """The state after a poll, and the health change to report (if any)."""

    state: FeedState
    health: Literal["failing", "recovered", "disabled"] | None = None
    host_backoff_s: float | None = None
    notes: list[str] = field(default_factory=list)


def clamp(value: float, settings: IngestSettings) -> float:
    return min(max(value, settings.min_interval_s), settings.max_interval_s)


def with_jitter(seconds: float, settings: IngestSettings, rng: random.Random) -> float:
    return seconds * (1.0 + rng.uniform(0.0, settings.jitter_fraction))


def success_interval(
    settings: IngestSettings,
    configured_s: float | None,
    *,
    ttl_s: float | None = None,
    max_age_s: float | None = None,
    retry_after_s: float | None = None,
) -> float:
    """Seconds until the next check of a healthy feed, before jitter."""
    candidates = [configured_s or settings.default_interval_s, ttl_s, max_age_s, retry_after_s]
    return clamp(max(c for c in candidates if c is not None), settings)


def failure_interval(settings: IngestSettings, error_count: int, retry_after_s: float | None = None) -> float:
    """Seconds until the next check after ``error_count`` failures in a row, before jitter."""
    exp = min(max(error_count - 1, 0), 30)
    wait = settings.backoff_base_s * (2**exp)
    return clamp(max(wait, retry_after_s or 0.0), settings)


def after_success(
    state: FeedState,
    now: datetime,
    settings: IngestSettings,
    rng: random.Random,
    *,
    configured_s: float | None,
    etag: str | None,
    last_modified: str | None,
    url: str,
    ttl_s: float | None,
    max_age_s: float | None,
    retry_after_s: float | None,
) -> Transition:
    ttl = ttl_s if ttl_s is not None else state.ttl_s
    wait = success_interval(settings, configured_s, ttl_s=ttl, max_age_s=max_age_s, retry_after_s=retry_after_s)
    new = replace(
        state,
        url=url,
        etag=etag,
        last_modified=last_modified,
        next_check_at=now + timedelta(seconds=with_jitter(wait, settings, rng)),
        error_count=0,
        last_error=None,
        last_success=now,
        last_attempt=now,
        failing_since=None,
        status="ok",
        ttl_s=ttl,
    )
    return Transition(new, health="recovered" if state.status == "failing" else None)


def after_failure(
    state: FeedState, error: FeedError, now: datetime, settings: IngestSettings, rng: random.Random
) -> Transition:
    status_code = error.status if isinstance(error, FeedFetchError) else None
    retry_after = error.retry_after if isinstance(error, FeedFetchError) else None
    count = state.error_count + 1
    since = state.failing_since or now
    message = f"{type(error).__name__}: {error.message}"
    if status_code == 410:
        new = replace(
            state, error_count=count, last_error=message, last_attempt=now, failing_since=since,
            status="disabled", next_check_at=None,
        )  # fmt: skip
        return Transition(new, health="disabled" if state.status != "disabled" else None)
    failing = (
        state.status == "failing"
        or status_code == 404
        or count >= settings.failing_after_polls
        or (now - since).total_seconds() >= settings.failing_after_hours * 3600
    )
    wait = failure_interval(settings, count, retry_after)
    new = replace(
        state,
        error_count=count,
        last_error=message,
        last_attempt=now,
        failing_since=since,
        status="failing" if failing else state.status,
        next_check_at=now + timedelta(seconds=with_jitter(wait, settings, rng)),
    )
    host_backoff = None
    if status_code in HOST_BACKOFF_STATUSES:
        host_backoff = retry_after if retry_after is not None else settings.host_backoff_s
    health: Literal["failing"] | None = "failing" if failing and state.status != "failing" else None
    return Transition(new, health=health, host_backoff_s=host_backoff)


def deferred(state: FeedState, until: datetime) -> FeedState:
    """Postpone a due feed (its host is backing off) without counting a failure."""
    return replace(state, next_check_at=until)
