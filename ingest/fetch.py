"""Fetching feed documents politely: conditional GET, bounded size and time, few redirects.

The fetcher only moves bytes; it never parses. It sends ``If-None-Match`` and
``If-Modified-Since`` from the feed's stored validators so that an unchanged feed costs
one 304 and no parsing, enforces the body limit while streaming (after decompression,
so a gzip bomb stops at the limit too), and turns every failure into a
:class:`~storywatch.errors.FeedFetchError` subclass whose message says what to do.

``file://`` URLs are read from disk with the file's mtime and size as the validator, so
the offline demo behaves like a server that answers 304 when nothing changed.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import httpx

from storywatch.errors import FeedFetchError
from storywatch.settings.ingest import IngestSettings

PERMANENT_REDIRECTS = frozenset({301, 308})
ACCEPT = "application/rss+xml, application/atom+xml, application/rdf+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"  # noqa: E501


class FeedTimeoutError(FeedFetchError):
    """The server did not answer (or finish answering) within the configured timeouts."""


class FeedTooLargeError(FeedFetchError):
    """The document is larger than ``ingest.max_body_bytes``."""


class FeedRedirectError(FeedFetchError):
    """Too many redirects, or a redirect loop."""


class FeedHTTPError(FeedFetchError):
    """The server answered with an error status (``status`` says which)."""


@dataclass(frozen=True, slots=True)
class Validators:
    """What the last successful fetch told us, sent back to ask "changed since?"."""

    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True, slots=True)
class FetchResult:
    """One successful exchange: a body (status 200) or "not modified" (status 304)."""

    url: str
    status: int
    body: bytes | None
    validators: Validators
    permanent_url: str | None = None
    """The new address when every redirect on the way was permanent (301/308)."""
    max_age_s: float | None = None
    retry_after_s: float | None = None
    content_type: str = ""
    elapsed_s: float = 0.0

    @property
    def not_modified(self) -> bool:
        return self.status == 304


def user_agent(contact_url: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("storywatch")
    except PackageNotFoundError:
        v = "0"
    return f"storywatch/{v} (+{contact_url})"


class Fetcher:
    """An HTTP client configured from :class:`IngestSettings`, shared by the poller threads.

    ``max_body_bytes`` can be lowered per call (full-text pages have their own limit).
    """

    def __init__(self, settings: IngestSettings, *, transport: httpx.BaseTransport | None = None):
        self.settings = settings
        timeout = httpx.Timeout(
            connect=settings.connect_timeout_s,
            read=settings.read_timeout_s,
            write=settings.read_timeout_s,
            pool=settings.total_timeout_s,
        )
        self._client = httpx.Client(
            timeout=timeout,
            follow_redirects=True,
            max_redirects=settings.max_redirects,
            headers={"User-Agent": user_agent(settings.contact_url), "Accept": ACCEPT},
            limits=httpx.Limits(
                max_connections=settings.global_concurrency * 2,
                max_keepalive_connections=settings.global_concurrency * 2,
            ),
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def fetch(
        self, url: str, validators: Validators | None = None, *, max_body_bytes: int | None = None
    ) -> FetchResult:
        limit = max_body_bytes or self.settings.max_body_bytes
        if url.startswith("file:"):
            return _fetch_file(url, validators, limit)
        return self._fetch_http(url, validators or Validators(), limit)

    def _fetch_http(self, url: str, validators: Validators, limit: int) -> FetchResult:
        headers = {}
        if validators.etag:
            headers["If-None-Match"] = validators.etag
        if validators.last_modified:
            headers["If-Modified-Since"] = validators.last_modified
        start = time.monotonic()
        deadline = start + self.settings.total_timeout_s
        try:
            with self._client.stream("GET", url, headers=headers) as resp:
                return self._read(url, resp, validators, limit, start, deadline)
        except httpx.TooManyRedirects:
            raise FeedRedirectError(
                url,
                f"more than {self.settings.max_redirects} redirects (a redirect loop?); "
                "open the URL in a browser and configure where it ends up",
            ) from None
        except httpx.TimeoutException as exc:
            raise FeedTimeoutError(
                url, f"timed out ({type(exc).__name__}); the server is slow or down, will retry later"
            ) from None
        except httpx.UnsupportedProtocol as exc:
            raise FeedFetchError(url, f"unsupported URL: {exc}; use http(s):// or file://") from None
        except httpx.DecodingError as exc:
            raise FeedFetchError(url, f"cannot decompress the response: {exc}") from None
        except httpx.HTTPError as exc:
            raise FeedFetchError(url, f"network error: {type(exc).__name__}: {exc or 'no detail'}") from None

    def _read(
        self,
        url: str,
        resp: httpx.Response,
        sent: Validators,
        limit: int,
        start: float,
        deadline: float,
    ) -> FetchResult:
        final = str(resp.url)
        permanent = None
        if resp.history and all(r.status_code in PERMANENT_REDIRECTS for r in resp.history):
            permanent = final
        retry_after = parse_retry_after(resp.headers.get("retry-after"))
        status = resp.status_code
        if status == 304:
            resp.read()  # an unread response would cost the pooled keep-alive connection
            # A 304 may refresh the validators; keep the old ones where it does not.
            return FetchResult(
                url=final,
                status=304,
                body=None,
                validators=Validators(
                    resp.headers.get("etag") or sent.etag, resp.headers.get("last-modified") or sent.last_modified
                ),
                permanent_url=permanent,
                max_age_s=parse_max_age(resp.headers.get("cache-control")),
                retry_after_s=retry_after,
                elapsed_s=time.monotonic() - start,
            )
        if status >= 400 or status < 200:
            length = resp.headers.get("content-length", "")
            if length.isdigit() and int(length) <= 64 * 1024:
                resp.read()  # small error pages are read so the connection can be reused
            raise FeedHTTPError(url, http_error_message(status, retry_after), status=status, retry_after=retry_after)
        declared = resp.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise _too_large(url, limit, status)
        buf = bytearray()
        for chunk in resp.iter_bytes():
            buf += chunk
            if len(buf) > limit:
                raise _too_large(url, limit, status)
            if time.monotonic() > deadline:
                raise FeedTimeoutError(
                    url, f"the download took longer than {self.settings.total_timeout_s:g}s", status=status
                )
        return FetchResult(
            url=final,
            status=status,
            body=bytes(buf),
            validators=Validators(resp.headers.get("etag"), resp.headers.get("last-modified")),
            permanent_url=permanent,
            max_age_s=parse_max_age(resp.headers.get("cache-control")),
            retry_after_s=retry_after,
            content_type=resp.headers.get("content-type", ""),
            elapsed_s=time.monotonic() - start,
        )


def _too_large(url: str, limit: int, status: int) -> FeedTooLargeError:
    return FeedTooLargeError(
        url,
        f"the document is larger than {limit:,} bytes (ingest.max_body_bytes); "
        "is this really a feed? raise the limit if it is",
        status=status,
    )


def http_error_message(status: int, retry_after: float | None) -> str:
    """What an HTTP error status means for a feed poller, and what to do about it."""
    hints = {
        401: "the feed needs credentials, which storywatch does not send; find a public feed URL",
        403: "the server refuses us (blocked user agent or IP?); backing off this host",
        404: "the feed is not there; check the URL (the site may have moved its feed)",
        410: "the feed is gone for good (the poller stops polling it); remove it from the config",
        429: "rate limited; backing off this host",
        503: "the server is unavailable; backing off this host",
    }
    hint = hints.get(status, "server error, will retry later" if status >= 500 else "unexpected status")
    after = f" (Retry-After {retry_after:g}s)" if retry_after is not None else ""
    return f"HTTP {status}: {hint}{after}"


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from ``Retry-After`` (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def parse_max_age(value: str | None) -> float | None:
    """``max-age`` (or ``s-maxage``) seconds from a Cache-Control header, or None."""
    if not value:
        return None
    best = None
    for part in value.split(","):
        name, _, arg = part.strip().partition("=")
        if name.lower() in ("max-age", "s-maxage") and arg.strip().strip('"').isdigit():
            best = max(best or 0.0, float(arg.strip().strip('"')))
    return best


def _fetch_file(url: str, validators: Validators | None, limit: int) -> FetchResult:
    start = time.monotonic()
    parts = urlsplit(url)
    path = Path(url2pathname(unquote(parts.path)))
    try:
        st = path.stat()
        if not path.is_file():
            raise FeedFetchError(url, f"{path} is not a file", status=404)
        tag = f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
        if validators and validators.etag == tag:
            return FetchResult(url, 304, None, validators, elapsed_s=time.monotonic() - start)
        if st.st_size > limit:
            raise _too_large(url, limit, 200)
        body = path.read_bytes()
    except FileNotFoundError:
        raise FeedHTTPError(url, f"no such file: {path}; check the path in the feeds config", status=404) from None
    except OSError as exc:
        raise FeedFetchError(url, f"cannot read {path}: {exc.strerror}") from None
    return FetchResult(url, 200, body, Validators(etag=tag), elapsed_s=time.monotonic() - start)
