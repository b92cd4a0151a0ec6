"""A feed that stalls for a minute must neither hold up the other feeds nor a shutdown.

Real servers, the background scheduler and the real fetcher. Assertions are on events
(requests seen, articles published, states stored); the only time limits are generous
ones that stop a broken build from hanging, or that are far below the stall.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from ingest.service import NS_FEEDS, IngestService
from storywatch.settings import Settings
from tests.feedserver import FeedServer, Reply, rss
from tests.ingest.conftest import Harness, make_settings

STALL_S = 60  # as long as the default total_timeout_s
STALLS = [Reply(body=b"", delay_s=STALL_S), Reply(endless=True, chunk_delay_s=0.2)]
STALL_IDS = ["silent", "trickling"]
SLOW_BODY = rss("Slow Wire", [{"title": "Strike halts trains", "link": "https://slow.example/s1"}])


def desk(*titles: str) -> bytes:
    return rss("Desk", [{"title": t, "link": f"https://desk.example/{i}"} for i, t in enumerate(titles)])


def wait_for(cond: Callable[[], bool], limit_s: float = 30.0) -> None:
    """Wait until ``cond()`` holds; the limit only stops a broken build from hanging."""
    deadline = time.monotonic() + limit_s
    while not cond():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.02)


def collect(svc: IngestService, n: int, limit_s: float = 30.0) -> int:
    """Articles the running service publishes, until ``n`` (half of the stall at most)."""
    got = 0
    deadline = time.monotonic() + limit_s
    while got < n and time.monotonic() < deadline:
        got += svc.step(0.1)
    return got


def slow_settings(harness: Harness, feeds: list[dict[str, Any] | str]) -> Settings:
    return make_settings(
        harness.tmp_path,
        feeds,
        tick_s=0.05,
        read_timeout_s=2 * STALL_S,
        total_timeout_s=2 * STALL_S,
        max_body_bytes=1 << 30,
    )


@pytest.mark.parametrize("stall", STALLS, ids=STALL_IDS)
def test_a_slow_feed_does_not_hold_up_the_others(server: FeedServer, harness: Harness, stall: Reply) -> None:
    slow = server.script("/slow.xml", stall)
    fast = server.feed("/desk.xml", desk("Typhoon nears the coast", "Ferry service resumes"), etag='"d1"')
    settings = slow_settings(harness, [slow, {"url": fast, "interval_s": 60}])
    svc = harness.service(settings)
    svc.start()
    assert collect(svc, 2) == 2
    wait_for(lambda: server.hits("/slow.xml") == 1)

    server.feed("/desk.xml", desk("Typhoon nears the coast", "Ferry service resumes", "Port reopens"), etag='"d2"')
    harness.clock.advance(seconds=120)  # the fast feed is due again (the slow one has been all along)
    assert collect(svc, 1) == 1  # published while the slow download is still in flight
    assert server.hits("/desk.xml") == 2
    assert server.hits("/slow.xml") == 1  # in flight: not asked again
    assert svc.state(slow).last_attempt is None and svc.state(fast).etag == '"d2"'
    svc.close()


@pytest.mark.parametrize("stall", STALLS, ids=STALL_IDS)
def test_close_abandons_a_slow_poll_and_its_feed_is_polled_after_a_restart(
    server: FeedServer, harness: Harness, stall: Reply
) -> None:
    slow = server.script("/slow.xml", stall)
    fast = server.feed("/desk.xml", desk("Typhoon nears the coast"))
    settings = slow_settings(harness, [slow, fast])
    svc = harness.service(settings)
    svc.start()
    assert collect(svc, 1) == 1
    wait_for(lambda: server.hits("/slow.xml") == 1)

    start = time.monotonic()
    svc.close()
    assert time.monotonic() - start < 15  # the stall lasts 60 s

    assert harness.store.get(NS_FEEDS, slow) is None  # the abandoned poll did not happen
    assert svc.state(slow).last_attempt is None and svc.state(slow).error_count == 0
    assert harness.store.get(NS_FEEDS, fast)["status"] == "ok"  # type: ignore[index]
    assert [h.feed_url for h in harness.health(settings)] == []

    server.feed("/slow.xml", SLOW_BODY)
    restarted = harness.service(settings)
    assert restarted.tick() == 1  # due at once, and polled this time
    assert server.hits("/slow.xml") == 2 and server.hits("/desk.xml") == 1
    assert restarted.state(slow).status == "ok"
