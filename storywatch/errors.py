"""One root exception; subclasses carry the data a caller needs to act on them."""

from __future__ import annotations


class StorywatchError(Exception):
    """Root of every error storywatch raises on purpose."""


class ConfigError(StorywatchError):
    """A configuration file is missing, malformed or invalid.

    ``problems`` lists one ``(file, key, message)`` triple per problem so that the CLI can
    print all of them at once instead of making the user fix one at a time.
    """

    def __init__(self, problems: list[tuple[str, str, str]]):
        self.problems = problems
        lines = [f"{file}: {key}: {msg}" if key else f"{file}: {msg}" for file, key, msg in problems]
        super().__init__("invalid configuration:\n  " + "\n  ".join(lines))


class BusError(StorywatchError):
    """The message bus refused or lost a request (broker down, timeout, bad topic)."""


class StoreError(StorywatchError):
    """The state store failed (locked, disk full, corrupt)."""


class SchemaError(StorywatchError):
    """A message on the bus does not match its topic's model."""

    def __init__(self, topic: str, reason: str):
        self.topic = topic
        self.reason = reason
        super().__init__(f"message on {topic!r} does not match its schema: {reason}")


class FeedError(StorywatchError):
    """Base for per-feed failures; ``feed_url`` says which feed."""

    def __init__(self, feed_url: str, message: str):
        self.feed_url = feed_url
        self.message = message
        super().__init__(f"{feed_url}: {message}")


class FeedFetchError(FeedError):
    """Fetching a feed failed: network, HTTP status, size or timeout."""

    def __init__(
        self,
        feed_url: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ):
        self.status = status
        self.retry_after = retry_after
        super().__init__(feed_url, message)


class FeedParseError(FeedError):
    """The fetched bytes are not a usable feed."""

    def __init__(self, feed_url: str, message: str, *, suggestion: str | None = None):
        self.suggestion = suggestion
        super().__init__(feed_url, message)


class DeliveryError(StorywatchError):
    """A notifier could not deliver an alert.

    ``retry_after`` (seconds) is set when the receiver said when to come back (HTTP 429);
    ``permanent`` marks errors that retrying will not fix (bad credentials, 4xx).
    """

    def __init__(
        self, channel: str, message: str, *, retry_after: float | None = None, permanent: bool = False
    ):
        self.channel = channel
        self.retry_after = retry_after
        self.permanent = permanent
        super().__init__(f"channel {channel!r}: {message}")
