"""The fetcher against a real local HTTP server: validators, limits, redirects, encodings."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.fetch import (
    FeedHTTPError,
    FeedRedirectError,
    FeedTimeoutError,
    FeedTooLargeError,
    FetchAbortedError,
    Fetcher,
    Validators,
    parse_max_age,
    parse_retry_after,
)
from storywatch.errors import FeedFetchError
from storywatch.settings.ingest import IngestSettings
from tests.feedserver import FeedServer, Reply, rss

BODY = rss("T", [{"title": "Item", "link": "https://example.com/a"}])


@pytest.fixture
def fetcher() -> Iterator[Fetcher]:
    f = Fetcher(
        IngestSettings(
            connect_timeout_s=1,
            read_timeout_s=0.5,
            total_timeout_s=2,
            max_body_bytes=64 * 1024,
            contact_url="https://ops.example/contact",
        )
    )
    yield f
    f.close()


def test_etag_round_trip_gives_304(server: FeedServer, fetcher: Fetcher) -> None:
    url = server.feed("/a.xml", BODY, etag='"v1"')
    first = fetcher.fetch(url)
    assert (first.status, first.body, first.validators.etag) == (200, BODY, '"v1"')
    second = fetcher.fetch(url, first.validators)
    assert second.not_modified and second.body is None and second.validators.etag == '"v1"'
    assert server.requests[-1].headers["If-None-Match"] == '"v1"'


def test_last_modified_round_trip_gives_304(server: FeedServer, fetcher: Fetcher) -> None:
    lm = "Mon, 02 Mar 2026 10:00:00 GMT"
    url = server.feed("/lm.xml", BODY, last_modified=lm)
    first = fetcher.fetch(url)
    assert first.validators == Validators(None, lm)
    assert fetcher.fetch(url, first.validators).status == 304
    assert server.requests[-1].headers["If-Modified-Since"] == lm


def test_user_agent_names_storywatch_and_contact(server: FeedServer, fetcher: Fetcher) -> None:
    fetcher.fetch(server.feed("/ua.xml", BODY))
    ua = server.requests[-1].headers["User-Agent"]
    assert ua.startswith("storywatch/") and "https://ops.example/contact" in ua


@pytest.mark.parametrize("encoding", ["gzip", "br"])
def test_compressed_bodies_are_decoded(server: FeedServer, fetcher: Fetcher, encoding: str) -> None:
    url = server.script("/c.xml", Reply(body=BODY, encoding=encoding))  # type: ignore[arg-type]
    assert fetcher.fetch(url).body == BODY
    assert encoding in server.requests[-1].headers["Accept-Encoding"]


def test_429_carries_retry_after(server: FeedServer, fetcher: Fetcher) -> None:
    url = server.script("/busy.xml", Reply(429, headers={"Retry-After": "120"}))
    with pytest.raises(FeedHTTPError) as info:
        fetcher.fetch(url)
    assert info.value.status == 429 and info.value.retry_after == 120
    assert "rate limited" in info.value.message


@pytest.mark.parametrize("status", [404, 410, 500, 503, 403])
def test_error_statuses(server: FeedServer, fetcher: Fetcher, status: int) -> None:
    url = server.script(f"/e{status}.xml", Reply(status, b"no"))
    with pytest.raises(FeedHTTPError) as info:
        fetcher.fetch(url)
    assert info.value.status == status
    assert f"HTTP {status}" in str(info.value)


def test_permanent_redirect_reports_new_url(server: FeedServer, fetcher: Fetcher) -> None:
    server.feed("/new.xml", BODY)
    old = server.redirect("/old.xml", "/new.xml", status=301)
    res = fetcher.fetch(old)
    assert res.body == BODY and res.permanent_url == server.url("/new.xml")


def test_temporary_redirect_keeps_url(server: FeedServer, fetcher: Fetcher) -> None:
    server.feed("/dest.xml", BODY)
    tmp = server.redirect("/tmp.xml", "/dest.xml", status=302)
    assert fetcher.fetch(tmp).permanent_url is None


def test_mixed_redirect_chain_is_not_permanent(server: FeedServer, fetcher: Fetcher) -> None:
    server.feed("/end.xml", BODY)
    server.redirect("/hop.xml", "/end.xml", status=302)
    start = server.redirect("/start.xml", "/hop.xml", status=308)
    assert fetcher.fetch(start).permanent_url is None


def test_redirect_loop_is_refused(server: FeedServer, fetcher: Fetcher) -> None:
    server.redirect("/loop-a", "/loop-b")
    server.redirect("/loop-b", "/loop-a")
    with pytest.raises(FeedRedirectError, match="redirects"):
        fetcher.fetch(server.url("/loop-a"))
    assert server.hits("/loop-a") + server.hits("/loop-b") == 6  # the first request and 5 redirects


def test_slow_server_times_out(server: FeedServer, fetcher: Fetcher) -> None:
    url = server.script("/slow.xml", Reply(body=BODY, delay_s=1))
    with pytest.raises(FeedTimeoutError, match="timed out"):
        fetcher.fetch(url)


def test_dripping_body_hits_the_total_timeout(server: FeedServer) -> None:
    url = server.script("/drip.xml", Reply(body=BODY * 40, chunk_delay_s=0.05))
    fetcher = Fetcher(IngestSettings(read_timeout_s=0.5, total_timeout_s=0.3))
    with pytest.raises(FeedTimeoutError, match=r"longer than 0\.3s"):
        fetcher.fetch(url)
    fetcher.close()


def wait_for(cond: object, limit_s: float = 15.0) -> None:
    """Wait until ``cond()`` holds; the limit only stops a broken test from hanging."""
    deadline = time.monotonic() + limit_s
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.01)


@pytest.mark.parametrize(
    "reply",
    [Reply(body=BODY, delay_s=60), Reply(endless=True, chunk_delay_s=0.2)],
    ids=["silent-before-headers", "trickling-body"],
)
def test_abort_cuts_a_download_in_flight(server: FeedServer, reply: Reply) -> None:
    url = server.script("/stall.xml", reply)
    fetcher = Fetcher(IngestSettings(read_timeout_s=120, total_timeout_s=120, max_body_bytes=1 << 30))
    raised: list[BaseException] = []

    def fetch() -> None:
        try:
            fetcher.fetch(url)
        except BaseException as exc:
            raised.append(exc)

    t = threading.Thread(target=fetch)
    t.start()
    wait_for(lambda: server.hits("/stall.xml") == 1)
    fetcher.abort()
    t.join(timeout=15)  # the stall lasts 60 s or more
    assert not t.is_alive()
    assert [type(e) for e in raised] == [FetchAbortedError]
    with pytest.raises(FetchAbortedError):  # and nothing new starts
        fetcher.fetch(url)
    assert server.hits("/stall.xml") == 1
    fetcher.close()


def test_declared_oversized_body_is_refused_before_download(server: FeedServer, fetcher: Fetcher) -> None:
    url = server.feed("/big.xml", b"x" * (65 * 1024))
    with pytest.raises(FeedTooLargeError, match="max_body_bytes"):
        fetcher.fetch(url)


def test_endless_body_stops_at_the_limit(server: FeedServer, fetcher: Fetcher) -> None:
    url = server.script("/endless.xml", Reply(endless=True))
    with pytest.raises(FeedTooLargeError):
        fetcher.fetch(url)


def test_gzip_bomb_stops_at_the_limit(server: FeedServer, fetcher: Fetcher) -> None:
    url = server.script("/bomb.xml", Reply(body=b"\0" * (5 * 1024 * 1024), encoding="gzip"))
    with pytest.raises(FeedTooLargeError):
        fetcher.fetch(url)


def test_connection_refused(fetcher: Fetcher) -> None:
    with FeedServer() as srv:
        url = srv.url("/gone.xml")
    with pytest.raises(FeedFetchError, match="network error"):
        fetcher.fetch(url)


def test_file_urls_and_their_validators(tmp_path: Path, fetcher: Fetcher) -> None:
    path = tmp_path / "feed.xml"
    path.write_bytes(BODY)
    first = fetcher.fetch(path.as_uri())
    assert first.body == BODY and first.validators.etag
    assert fetcher.fetch(path.as_uri(), first.validators).status == 304
    with pytest.raises(FeedHTTPError, match="no such file"):
        fetcher.fetch((tmp_path / "missing.xml").as_uri())


@pytest.mark.parametrize(
    ("header", "expected"),
    [("120", 120.0), ("0", 0.0), (None, None), ("soon", None), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],
    ids=["seconds", "zero", "absent", "junk", "past-date"],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [("max-age=300", 300.0), ("public, max-age=60, s-maxage=600", 600.0), ("no-cache", None), (None, None)],
    ids=["max-age", "s-maxage-wins", "no-cache", "absent"],
)
def test_parse_max_age(header: str | None, expected: float | None) -> None:
    assert parse_max_age(header) == expected
