"""Settings of the alerts stage: channels, rules and delivery.

Each channel names its kind and may add a rate budget, a digest window and quiet hours;
each rule can be switched off or tuned. Everything has a default, so a config with only
``channels`` and ``default_channels`` works.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from storywatch.settings.base import Secret, Section, UnsetSecret, http_url_problem

Severity = Literal["low", "medium", "high", "critical"]
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class RateBudget(Section):
    """At most ``max_alerts`` deliveries per ``per_s`` seconds; the rest wait their turn."""

    max_alerts: int = Field(20, ge=1, description="deliveries allowed per window")
    per_s: float = Field(3600.0, gt=0, description="the sliding window, in seconds")


class DigestSettings(Section):
    """Collect a channel's alerts for ``window_s`` seconds and send them as one message.

    Alerts whose severity is in ``bypass_severity`` are sent at once.
    """

    window_s: float = Field(900.0, gt=0, description="alerts collected per digest (windows aligned to the clock)")
    bypass_severity: list[Severity] = Field(default=["critical"], description="severities sent at once")
    max_items: int = Field(50, ge=1, le=500, description="items shown in one digest; the rest are counted")


class QuietHours(Section):
    """Hold alerts from ``start`` to ``end`` (local ``HH:MM`` in ``tz``) and release them as a
    digest when the quiet period ends; ``bypass_severity`` goes through at once.
    ``start`` after ``end`` spans midnight (22:00-07:00)."""

    start: str = Field(description="local time HH:MM when quiet hours begin")
    end: str = Field(description="local time HH:MM when they end (before start: spans midnight)")
    tz: str = Field("UTC", description="IANA time zone of start and end, e.g. Europe/Berlin")
    bypass_severity: list[Severity] = Field(default=["high", "critical"], description="severities sent at once")

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not _HHMM.match(v):
            raise ValueError("expected a 24-hour time HH:MM")
        return v

    @field_validator("tz")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("start and end must differ")
        return self


class ChannelBase(Section):
    template: Path | None = Field(
        None, description="directory with templates overriding the packaged defaults (same file names)"
    )
    timeout_s: float = Field(30.0, gt=0, description="per network operation")
    rate_budget: RateBudget | None = Field(None, description="cap on deliveries per time window")
    digest: DigestSettings | None = Field(None, description="collect alerts and send one message per window")
    quiet_hours: QuietHours | None = Field(None, description="hold alerts at night, release them as a digest")


class EmailChannel(ChannelBase):
    kind: Literal["email"]
    host: str = Field(description="SMTP server")
    port: int = Field(587, ge=1, le=65535, description="587 for STARTTLS, 465 for implicit TLS")
    security: Literal["starttls", "tls", "none"] = Field("starttls", description="tls = implicit TLS (SMTPS)")
    username: str | None = Field(None, description="SMTP AUTH user; with password")
    password: Secret | None = None
    from_addr: str = Field(description="From address; its domain ends every Message-ID")
    to: list[str] = Field(min_length=1, description="recipients")
    ca_file: Path | None = Field(None, description="CA bundle to trust instead of the system's")
    subject_prefix: str = "[storywatch] "


class SlackChannel(ChannelBase):
    kind: Literal["slack"]
    webhook_url: Secret | None = Field(None, description="incoming webhook (no threads); or give token")
    token: Secret | None = Field(None, description="bot token (chat:write); follow-ups go in threads")
    channel: str | None = Field(None, description="channel name or ID, with token")
    api_url: str = Field("https://slack.com/api/", description="Web API base URL")

    @field_validator("webhook_url")
    @classmethod
    def _webhook_is_http(cls, v: Secret | None) -> Secret | None:
        return None if v is None else _checked_secret_url(v)

    @field_validator("api_url")
    @classmethod
    def _api_is_http(cls, v: str) -> str:
        problem = http_url_problem(v)
        if problem:
            raise ValueError(f"{problem}, got {v!r}")
        return v

    @model_validator(mode="after")
    def _one_way_in(self) -> SlackChannel:
        if (self.webhook_url is None) == (self.token is None):
            raise ValueError("give exactly one of webhook_url or token")
        if self.token is not None and not self.channel:
            raise ValueError("a bot token needs a channel (name or ID) to post to")
        return self


class WebhookChannel(ChannelBase):
    kind: Literal["webhook"]
    url: Secret = Field(description="where to POST the alert JSON")
    signing_secret: Secret | None = Field(None, description="HMAC-SHA256 key over '<timestamp>.<body>'")
    signature_header: str = Field("X-Storywatch-Signature", description="carries sha256=<hex>")
    timestamp_header: str = Field("X-Storywatch-Timestamp", description="Unix seconds, signed")

    @field_validator("url")
    @classmethod
    def _url_is_http(cls, v: Secret) -> Secret:
        return _checked_secret_url(v)


def _checked_secret_url(v: Secret) -> Secret:
    """A channel URL read from a secret must be http(s) with a host: anything else fails
    every delivery, and retrying cannot fix it. The message never shows the value (it holds
    the token); the key and the file name the place to look."""
    if isinstance(v, UnsetSecret):  # a config loaded to read: nothing is sent with it
        return v
    problem = http_url_problem(v.get_secret_value())
    if problem:
        raise ValueError(f"{problem} (the value is a secret and not shown)")
    return v


class ConsoleChannel(ChannelBase):
    kind: Literal["console"]


class FileChannel(ChannelBase):
    kind: Literal["file"]
    path: Path = Field(description="JSON Lines file to append to")


Channel = Annotated[
    EmailChannel | SlackChannel | WebhookChannel | ConsoleChannel | FileChannel, Field(discriminator="kind")
]


class MatchRule(Section):
    """Alert when a story matches a watched topic and meets its min_sources/min_articles."""

    enabled: bool = True


class AppearsRule(Section):
    """A watched topic's first matching story after ``quiet_period_s`` without one is
    announced as the topic appearing (rule ``topic_appears``) instead of a plain match."""

    enabled: bool = True
    quiet_period_s: float = Field(6 * 3600.0, ge=0, description="silence after which a match is 'New on <topic>'")


class EmergingRule(Section):
    """Alert on emerging stories, watched or not, to ``channels`` (else default_channels)."""

    enabled: bool = True
    channels: list[str] = Field(default_factory=list, description="where emerging alerts go (else default_channels)")
    severity: Severity = "high"
    min_sources: int = Field(2, ge=1, description="independent sources an emerging story needs")


FollowUpChange = Literal["new_sources", "velocity_jump", "new_entities", "merged"]


class FollowUpRule(Section):
    """Follow up on an alerted story when it changes materially, never per article.

    ``new_sources`` counts only once the source count grew by ``source_step`` since the
    last alert; at most ``max_per_story`` follow-ups, at least ``min_interval_s`` apart.
    """

    enabled: bool = True
    on: list[FollowUpChange] = Field(
        default=["new_sources", "velocity_jump", "new_entities", "merged"], description="changes worth a follow-up"
    )
    source_step: int = Field(3, ge=1, description="new sources since the last alert that make a follow-up")
    max_per_story: int = Field(5, ge=0, description="follow-ups per story at most")
    min_interval_s: float = Field(1800.0, ge=0, description="seconds between alerts on one story; 0 = no minimum")


class FeedHealthRule(Section):
    """Tell the operator channels when a feed starts failing, recovers or is disabled."""

    enabled: bool = True
    states: list[Literal["failing", "recovered", "disabled"]] = Field(
        default=["failing", "recovered", "disabled"], description="feed states that alert"
    )


class RuleSettings(Section):
    match: MatchRule = MatchRule()
    appears: AppearsRule = AppearsRule()
    emerging: EmergingRule = EmergingRule()
    follow_up: FollowUpRule = FollowUpRule()
    feed_health: FeedHealthRule = FeedHealthRule()


class AlertSettings(Section):
    channels: dict[str, Channel] = Field(default_factory=dict, description="named channels; see kinds below")
    default_channels: list[str] = Field(default_factory=list, description="for topics that name no channels")
    operator_channels: list[str] = Field(default_factory=list, description="where feed-health alerts go")
    rules: RuleSettings = RuleSettings()
    group: str = Field("storywatch-alerts", description="consumer group of the alerts stage")
    batch_size: int = Field(100, ge=1, le=10_000, description="events polled per step")
    max_attempts: int = Field(8, ge=1, description="attempts before a delivery is dead")
    backoff_base_s: float = Field(5.0, gt=0, description="first retry delay; doubles per attempt, with jitter")
    backoff_max_s: float = Field(900.0, gt=0, description="longest retry delay (Retry-After may ask for more)")
    claim_lease_s: float = Field(
        120.0,
        gt=0,
        description="a delivery claimed longer ago than this by a worker that died is retried; "
        "keep it above the slowest channel's timeout_s",
    )
    retention_days: float = Field(
        30.0,
        gt=0,
        description="story state and sent deliveries untouched this long are pruned "
        "(dead and failed deliveries stay until retried)",
    )
    top_articles: int = Field(5, ge=1, le=20, description="articles shown per alert")
    summary_chars: int = Field(400, ge=40, le=3000, description="story summary shown, cut at a word")

    @model_validator(mode="after")
    def _rule_channels_known(self) -> AlertSettings:
        unknown = [c for c in self.rules.emerging.channels if c not in self.channels]
        if unknown:
            known = sorted(self.channels)
            raise ValueError(f"rules.emerging.channels: unknown channel(s) {unknown} (known: {known})")
        slow = [n for n, c in self.channels.items() if c.timeout_s >= self.claim_lease_s]
        if slow:
            raise ValueError(f"claim_lease_s must exceed every channel's timeout_s (too slow: {slow})")
        return self
