"""Fetching feed documents politely: conditional GET, bounded size and time, few redirects.

The fetcher only moves bytes; it never parses. It sends ``If-None-Match`` and
``If-Modified-Since`` from the feed's stored validators so that an unchanged feed costs
one 304 and no parsing, enforces the body limit while streaming (after decompression,
so a gzip bomb stops at the limit too), and turns every failure into a
:class:`~storywatch.errors.FeedFetchError` subclass whose message says what to do.

``file://`` URLs are read from disk with the file's mtime and size as the validator, so
the offline demo behaves like a server that answers 304 when nothing changed.

:meth:`Fetcher.abort` cuts every download in flight at once (a stopping service must not
wait out a server that trickles bytes for a minute); those fetches raise
:class:`FetchAbortedError`.
"""

from __future__ import annotations

import email.utils
import socket
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import httpcore
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


class FetchAbortedError(FeedFetchError):
    """The fetcher was aborted (the service is stopping) while this fetch was in flight.

    It says nothing about the feed: the poll is dropped, as if it had not happened.
    """


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


class _AbortableStream(httpcore.NetworkStream):
    """A connection that :class:`_AbortableBackend` can cut from another thread."""

    def __init__(self, inner: httpcore.NetworkStream, backend: _AbortableBackend):
        self._inner = inner
        self._backend = backend

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._backend.forget(self)
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        self._inner = self._inner.start_tls(ssl_context, server_hostname, timeout)
        return self

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)

    def cut(self) -> None:
        sock = self._inner.get_extra_info("socket")
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except (AttributeError, OSError):  # already closed
            pass


class _AbortableBackend(httpcore.SyncBackend):
    """httpcore's socket backend, remembering open connections so that :meth:`abort` can
    cut them: closing a socket does not wake a thread blocked reading it, ``shutdown`` does.

    Once aborted, new connections are refused. A connect in progress is not interrupted
    (``connect_timeout_s`` bounds it).
    """

    def __init__(self) -> None:
        self.aborted = threading.Event()
        self._lock = threading.Lock()
        self._open: weakref.WeakSet[_AbortableStream] = weakref.WeakSet()

    def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        if self.aborted.is_set():
            raise httpcore.ConnectError("the fetcher was aborted")
        stream = _AbortableStream(super().connect_tcp(*args, **kwargs), self)
        with self._lock:
            self._open.add(stream)
        if self.aborted.is_set():  # aborted while connecting
            stream.cut()
        return stream

    def forget(self, stream: _AbortableStream) -> None:
        with self._lock:
            self._open.discard(stream)

    def abort(self) -> None:
        self.aborted.set()
        with self._lock:
            streams = list(self._open)
        for stream in streams:
            stream.cut()


class Fetcher:
    """An HTTP client configured from :class:`IngestSettings`, shared by the poller threads.

    ``max_body_bytes`` can be lowered per call (full-text pages have their own limit).
    """

    def __init__(self, settings: IngestSettings, *, transport: httpx.BaseTransport | None = None):
        self.settings = settings
        self._aborted = threading.Event()
        self._backend: _AbortableBackend | None = None
        limits = httpx.Limits(
            max_connections=settings.global_concurrency * 2,
            max_keepalive_connections=settings.global_concurrency * 2,
        )
        if transport is None:
            self._backend = _AbortableBackend()
            http = httpx.HTTPTransport(limits=limits)
            # httpx does not take a network backend; its transport's pool is rebuilt with
            # the same settings and ours, so that abort() can reach the sockets.
            http._pool = httpcore.ConnectionPool(
                ssl_context=httpx.create_ssl_context(),
                max_connections=limits.max_connections,
                max_keepalive_connections=limits.max_keepalive_connections,
                keepalive_expiry=limits.keepalive_expiry,
                network_backend=self._backend,
            )
            transport = http
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
            limits=limits,
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    @property
    def aborted(self) -> bool:
        return self._aborted.is_set()

    def abort(self) -> None:
        """Cut the downloads in flight and refuse new ones, from any thread; they raise
        :class:`FetchAbortedError`. Used when stopping, before :meth:`close`."""
        self._aborted.set()
        if self._backend is not None:
            self._backend.abort()

    def fetch(
        self, url: str, validators: Validators | None = None, *, max_body_bytes: int | None = None
    ) -> FetchResult:
        limit = max_body_bytes or self.settings.max_body_bytes
        if self.aborted:
            raise FetchAbortedError(url, "not fetched: the fetcher was aborted")
        try:
            if url.startswith("file:"):
                result = _fetch_file(url, validators, limit)
            else:
                result = self._fetch_http(url, validators or Validators(), limit)
        except FeedFetchError:
            if self.aborted:
                raise FetchAbortedError(url, "abandoned: the fetcher was aborted") from None
            raise
        if self.aborted:  # a cut connection can look like the end of a body without a length
            raise FetchAbortedError(url, "abandoned: the fetcher was aborted")
        return result

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
