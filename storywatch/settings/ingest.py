"""Settings of the ingest stage and the feed list."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pydantic import Field, field_validator, model_validator

from storywatch.settings.base import Section, http_url_problem

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")
"""A URL scheme; two characters at least, so that a Windows drive (``C:``) is a path."""


def feed_url_problem(url: str) -> str | None:
    """Why the fetcher could not read a feed at ``url``, or None if it can.

    The fetcher reads http(s) URLs with a host, ``file://`` URLs, and plain paths (taken
    relative to the config file); anything else (``ftp://``, ``javascript:``, ``http://``
    without a host) would only fail at every poll.

    >>> [feed_url_problem(u) is None for u in ("https://a.example/rss", "feeds/a.xml", "file:///srv/a.xml")]
    [True, True, True]
    >>> feed_url_problem("ftp://a.example/rss")
    "unsupported URL scheme 'ftp' in 'ftp://a.example/rss': use http://, https://, file:// or a path"
    """
    url = url.strip()
    if not url:
        return "url must not be blank"
    match = _SCHEME.match(url)
    if match is None:
        if "://" in url:
            return f"{url!r} is not a URL: the scheme before :// is missing or malformed"
        return None  # a path, relative to the config file's directory
    scheme = match.group(1).lower()
    if scheme in ("http", "https"):
        problem = http_url_problem(url)
        return f"{problem}, got {url!r}" if problem else None
    if scheme == "file":
        parts = urlsplit(url)
        if not url[5:].startswith("//") or parts.netloc not in ("", "localhost") or not parts.path:
            return f"expected file:///absolute/path (a file on this machine), got {url!r}"
        return None
    return f"unsupported URL scheme {scheme!r} in {url!r}: use http://, https://, file:// or a path"


class FeedSettings(Section):
    """One feed. ``url`` is http(s)://, file://, or a path relative to the config file.

    ``name`` is how ``status`` and ``feeds enable`` tell feeds apart, so two feeds may not
    share one (a feed without a name shows its own title instead)."""

    url: str
    """http(s):// or file:// URL, or a path relative to the config file's directory."""
    name: str = ""
    """Shown as the articles' source; empty: the feed's own title."""
    interval_s: float | None = Field(None, gt=0)
    """Seconds between polls; empty: ingest.default_interval_s. The feed's TTL, Cache-Control
    max-age and Retry-After can only lengthen it; min/max_interval_s bound it."""
    full_text: bool = False
    """Fetch each new article's page and use its main text as the summary (headline-only feeds)."""
    enabled: bool = True

    @field_validator("url")
    @classmethod
    def _url_supported(cls, v: str) -> str:
        problem = feed_url_problem(v)
        if problem:
            raise ValueError(problem)
        return v.strip()

    @field_validator("name")
    @classmethod
    def _name_trimmed(cls, v: str) -> str:
        return v.strip()


def feed_location(url: str, base_dir: Path) -> str:
    """Where a feed is, as one string for one place: a path (relative to ``base_dir``) or a
    ``file://`` URL as the resolved file's URL, an http(s) URL with its scheme and host in
    lower case and without the default port. Two feeds at one location are one feed.

    >>> feed_location("./feeds/../a.xml", Path("/srv/sw")), feed_location("HTTPS://News.Example:443/rss", Path("."))
    ('file:///srv/sw/a.xml', 'https://news.example/rss')
    """
    url = url.strip()
    if _SCHEME.match(url) is None:
        path = Path(url).expanduser()
        return (path if path.is_absolute() else base_dir / path).resolve().as_uri()
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return Path(unquote(parts.path)).resolve().as_uri()
    host = (parts.hostname or "").lower()
    if parts.port is not None and parts.port != {"http": 80, "https": 443}.get(scheme):
        host = f"{host}:{parts.port}"
    return parts._replace(scheme=scheme, netloc=host, path=parts.path or "/").geturl()


def feed_list_problems(feeds: list[FeedSettings], base_dir: Path = Path(".")) -> list[tuple[str, str]]:
    """``(dotted key, message)`` for each feed repeating an earlier feed's URL or name.

    URLs are compared by :func:`feed_location`: ``feeds/a.xml``, ``./feeds/a.xml`` and its
    ``file://`` URL are one feed, and would share one feed state.

    Names are compared ignoring case and surrounding space: "World Wire" and "world wire"
    would be two indistinguishable rows in ``status``. A feed without a name takes its
    title from the feed document, which is not known before the first poll, so only
    names given in the config can clash here.
    """
    problems: list[tuple[str, str]] = []
    at: dict[str, int] = {}
    for i, feed in enumerate(feeds):
        where = feed_location(feed.url, base_dir)
        if where in at:
            j = at[where]
            same = "the url" if feeds[j].url == feed.url else f"the same feed as {feeds[j].url!r}"
            problems.append((f"feeds.{i}.url", f"{feed.url!r} is {same} of feeds.{j}; list each feed once"))
        else:
            at[where] = i
    first: dict[str, int] = {}
    for i, feed in enumerate(feeds):
        key = " ".join(feed.name.casefold().split())
        if not key:
            continue
        if key in first:
            problems.append(
                (f"feeds.{i}.name", f"{feed.name!r} is already the name of feeds.{first[key]}; give each feed its own")
            )
        else:
            first[key] = i
    return problems


class IngestSettings(Section):
    """Polling, politeness, parsing limits and deduplication of the ingest stage."""

    contact_url: str = "https://github.com/storywatch/storywatch"
    """Sent in the User-Agent (``storywatch/<version> (+contact_url)``) so publishers can reach you."""
    default_interval_s: float = Field(900.0, gt=0)
    """Seconds between polls of a feed without interval_s."""
    min_interval_s: float = Field(60.0, gt=0)
    """No feed is polled more often than this, whatever it is configured to."""
    max_interval_s: float = Field(6 * 3600.0, gt=0)
    """No feed waits longer than this, not even a failing one (it is retried at this pace)."""
    jitter_fraction: float = Field(0.1, ge=0, le=1)
    """Each wait is lengthened by a random share up to this, so feeds drift apart."""
    connect_timeout_s: float = Field(10.0, gt=0)
    read_timeout_s: float = Field(30.0, gt=0)
    """Longest silence while waiting for the response or the next bytes of the body."""
    total_timeout_s: float = Field(60.0, gt=0)
    """Longest time one download may take, however steadily the bytes trickle in."""
    max_body_bytes: int = Field(10 * 1024 * 1024, gt=0)
    """Largest feed document accepted (after decompression); larger ones fail the poll."""
    max_redirects: int = Field(5, ge=0, le=20)
    per_host_concurrency: int = Field(2, ge=1)
    """Most requests in flight to one host at a time."""
    per_host_min_gap_s: float = Field(1.0, ge=0)
    """Least time between the starts of two requests to one host."""
    global_concurrency: int = Field(16, ge=1)
    """Polls running at once (the size of the poller thread pool)."""
    failing_after_polls: int = Field(3, ge=1)
    """Failed polls in a row after which a feed is reported failing (feed-health topic)."""
    failing_after_hours: float = Field(6.0, gt=0)
    """Hours of failing after which a feed is reported failing, however few polls that was."""
    seen_capacity: int = Field(200_000, ge=100)
    """Articles the seen-store remembers for deduplication; the oldest are forgotten first."""
    tick_s: float = Field(5.0, gt=0)
    """How often the scheduler looks for feeds that are due. A tick does not wait for the polls it
    starts: a slow feed delays only itself (it is not polled again while in flight)."""
    backoff_base_s: float = Field(120.0, gt=0)
    """After the first failure a feed waits this long; each further failure doubles it (up to max_interval_s)."""
    host_backoff_s: float = Field(600.0, gt=0)
    """How long a host that answered 403, 429 or 503 without Retry-After is left alone."""
    max_entries_per_feed: int = Field(500, ge=1)
    """Entries beyond this many in one document are ignored (the first ones, in feed order, are kept)."""
    jitter_seed: int | None = None
    """Seed of the random jitter added to each next check; None draws a fresh seed at start."""
    full_text_max_bytes: int = Field(5 * 1024 * 1024, gt=0)
    """Largest article page fetched for full-text extraction."""

    @model_validator(mode="after")
    def _bounds_in_order(self) -> IngestSettings:
        if self.min_interval_s > self.max_interval_s:
            raise ValueError(
                f"min_interval_s ({self.min_interval_s:g}) must not exceed max_interval_s ({self.max_interval_s:g})"
            )
        return self
