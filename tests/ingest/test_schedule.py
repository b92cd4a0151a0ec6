"""When feeds are checked next, how failures back off, and when health changes are reported."""

from __future__ import annotations

import itertools
import random
from datetime import timedelta

import pytest

from ingest.fetch import FeedHTTPError, FeedTimeoutError
from ingest.hosts import HostLimiter
from ingest.schedule import (
    FeedState,
    after_failure,
    after_success,
    failure_interval,
    success_interval,
)
from storywatch.errors import FeedParseError
from storywatch.settings.ingest import IngestSettings
from tests.ingest.conftest import T0

CFG = IngestSettings(
    default_interval_s=900, min_interval_s=60, max_interval_s=6 * 3600, jitter_fraction=0.1,
    backoff_base_s=120, failing_after_polls=3, failing_after_hours=6,
)  # fmt: skip


@pytest.mark.parametrize(
    ("configured", "ttl", "max_age", "retry_after", "expected"),
    [
        (None, None, None, None, 900),
        (300, None, None, None, 300),
        (300, 3600, None, None, 3600),
        (300, None, 1800, None, 1800),
        (300, 600, 1200, 2400, 2400),
        (10, None, None, None, 60),
        (300, 7 * 86400, None, None, 6 * 3600),
    ],
    ids=["default", "configured", "ttl-wins", "max-age-wins", "retry-after-wins", "clamped-low", "clamped-high"],
)
def test_success_interval(
    configured: float | None, ttl: float | None, max_age: float | None, retry_after: float | None, expected: float
) -> None:
    assert success_interval(CFG, configured, ttl_s=ttl, max_age_s=max_age, retry_after_s=retry_after) == expected


@pytest.mark.parametrize(
    ("errors", "retry_after", "expected"),
    [(1, None, 120), (2, None, 240), (5, None, 1920), (30, None, 6 * 3600), (1, 3000, 3000), (1, 10**9, 6 * 3600)],
    ids=["first", "second", "fifth", "capped", "retry-after", "retry-after-capped"],
)
def test_failure_backoff(errors: int, retry_after: float | None, expected: float) -> None:
    assert failure_interval(CFG, errors, retry_after) == expected


def test_jitter_is_seeded_and_bounded() -> None:
    state = FeedState(key="k", url="k")

    def nexts(seed: int) -> list[float]:
        rng = random.Random(seed)
        out = []
        for _ in range(20):
            tr = after_success(
                state, T0, CFG, rng, configured_s=600, etag=None, last_modified=None, url="k",
                ttl_s=None, max_age_s=None, retry_after_s=None,
            )  # fmt: skip
            assert tr.state.next_check_at is not None
            out.append((tr.state.next_check_at - T0).total_seconds())
        return out

    a, b = nexts(1), nexts(1)
    assert a == b
    assert all(600 <= s <= 660 for s in a) and len(set(a)) > 1


def test_failing_after_n_polls_then_recovered() -> None:
    rng = random.Random(0)
    state = FeedState(key="k", url="k", status="ok")
    err = FeedTimeoutError("k", "timed out")
    healths = []
    for i in range(4):
        tr = after_failure(state, err, T0 + timedelta(minutes=i), CFG, rng)
        state = tr.state
        healths.append(tr.health)
    assert healths == [None, None, "failing", None]
    assert state.status == "failing" and state.error_count == 4 and state.failing_since == T0
    assert state.next_check_at is not None and state.next_check_at > T0
    tr = after_success(
        state, T0 + timedelta(hours=1), CFG, rng, configured_s=None, etag='"e"', last_modified=None, url="k",
        ttl_s=None, max_age_s=None, retry_after_s=None,
    )  # fmt: skip
    assert tr.health == "recovered"
    assert tr.state.status == "ok" and tr.state.error_count == 0 and tr.state.etag == '"e"'


def test_failing_after_hours_even_with_few_polls() -> None:
    state = FeedState(key="k", url="k", status="ok", error_count=1, failing_since=T0)
    tr = after_failure(state, FeedParseError("k", "bad"), T0 + timedelta(hours=7), CFG, random.Random(0))
    assert tr.health == "failing"


def test_404_fails_at_once_and_410_disables() -> None:
    state = FeedState(key="k", url="k", status="ok")
    tr = after_failure(state, FeedHTTPError("k", "HTTP 404", status=404), T0, CFG, random.Random(0))
    assert tr.health == "failing"
    gone = after_failure(state, FeedHTTPError("k", "HTTP 410", status=410), T0, CFG, random.Random(0))
    assert gone.health == "disabled" and gone.state.status == "disabled"
    assert not gone.state.due(T0 + timedelta(days=365))


def test_failing_feed_is_still_retried_at_the_max_interval() -> None:
    state = FeedState(key="k", url="k", status="failing", error_count=50, failing_since=T0)
    tr = after_failure(state, FeedTimeoutError("k", "t"), T0, CFG, random.Random(0))
    assert tr.state.next_check_at is not None
    wait = (tr.state.next_check_at - T0).total_seconds()
    assert CFG.max_interval_s <= wait <= CFG.max_interval_s * 1.1


@pytest.mark.parametrize(
    ("status", "retry_after", "host_backoff"),
    [(429, 300.0, 300.0), (503, None, 600.0), (403, None, 600.0), (500, None, None), (404, None, None)],
    ids=["429-retry-after", "503-default", "403-default", "500-no-host-backoff", "404-no-host-backoff"],
)
def test_host_backoff_signals(status: int, retry_after: float | None, host_backoff: float | None) -> None:
    err = FeedHTTPError("k", f"HTTP {status}", status=status, retry_after=retry_after)
    tr = after_failure(FeedState(key="k", url="k"), err, T0, CFG, random.Random(0))
    assert tr.host_backoff_s == host_backoff


def test_state_round_trips_through_a_document() -> None:
    state = FeedState(
        key="k", url="https://new.example/rss", etag='"x"', last_modified="Mon", next_check_at=T0,
        error_count=2, last_error="E: m", last_success=T0, last_attempt=T0, failing_since=T0,
        status="failing", ttl_s=60.0,
    )  # fmt: skip
    assert FeedState.from_doc(state.to_doc()) == state
    assert FeedState.from_doc({**state.to_doc(), "unknown_future_key": 1}) == state


def test_host_limiter_backoff_expires() -> None:
    limiter = HostLimiter(2, 0)
    limiter.back_off("a.example", T0 + timedelta(minutes=5))
    assert limiter.blocked_until("a.example", T0) == T0 + timedelta(minutes=5)
    assert limiter.blocked_until("b.example", T0) is None
    assert limiter.blocked_until("a.example", T0 + timedelta(minutes=6)) is None


def test_host_limiter_caps_in_flight_and_spaces_requests() -> None:
    import threading
    import time

    limiter = HostLimiter(1, 0.05)
    starts: list[float] = []
    active = [0]
    peak = [0]
    lock = threading.Lock()

    def work() -> None:
        with limiter.slot("h.example"):
            with lock:
                starts.append(time.monotonic())
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            time.sleep(0.01)
            with lock:
                active[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    starts.sort()
    assert peak[0] == 1
    assert all(b - a >= 0.045 for a, b in itertools.pairwise(starts))
