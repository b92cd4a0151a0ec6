"""The single-writer lease, over every store kind (two handles stand for two processes)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from storywatch.clock import FakeClock
from storywatch.lease import HOST, Lease
from storywatch.store import STORES, Store

StoreFactory = Callable[..., Store]
T0 = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.fixture(params=sorted(STORES))
def two(request: pytest.FixtureRequest, store_factory: StoreFactory) -> tuple[Store, Store]:
    first = store_factory(request.param)
    return first, store_factory(request.param, shared_with=first)


def test_one_holder_at_a_time_and_release_hands_over_at_once(two: tuple[Store, Store]) -> None:
    clock = FakeClock(T0)
    a = Lease(two[0], "enrich", "writer", 30, clock, owner="a")
    b = Lease(two[1], "enrich", "writer", 30, clock, owner="b")
    assert a.acquire() and a.held
    assert not b.acquire() and not b.held
    assert b.holder is not None and b.holder["owner"] == "a"
    clock.advance(20)
    assert a.acquire(), "the holder renews"
    clock.advance(20)
    assert not b.acquire(), "renewed 20 s ago: still alive at 40 s"
    a.release()
    assert not a.held
    assert b.acquire(), "released: taken at once"
    assert not a.acquire()


def test_an_expired_lease_is_taken_over_and_the_old_holder_learns_it_lost(two: tuple[Store, Store]) -> None:
    clock = FakeClock(T0)
    a = Lease(two[0], "enrich", "writer", 30, clock, owner="a")
    b = Lease(two[1], "enrich", "writer", 30, clock, owner="b")
    assert a.acquire()
    clock.advance(31)  # a stalled (a long pause, a partition) and did not renew
    assert b.acquire()
    assert not a.acquire(), "a cannot renew what b now holds"
    assert not a.held and b.held


def test_due_after_a_third_of_the_lease(two: tuple[Store, Store]) -> None:
    clock = FakeClock(T0)
    a = Lease(two[0], "enrich", "writer", 30, clock, owner="a")
    assert a.due()
    a.acquire()
    assert not a.due()
    clock.advance(10)
    assert a.due()


def test_a_dead_holder_on_this_host_is_replaced_without_waiting(two: tuple[Store, Store]) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # its pid is gone (reaped)
    clock = FakeClock(T0)
    dead = {"owner": "dead", "host": HOST, "pid": proc.pid, "expires_at": T0.timestamp() + 30}
    two[0].put("enrich", "writer", dead, tag="dead")
    b = Lease(two[1], "enrich", "writer", 30, clock, owner="b")
    assert b.acquire()


def test_a_live_holder_on_this_host_is_respected(two: tuple[Store, Store]) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        clock = FakeClock(T0)
        live = {"owner": "live", "host": HOST, "pid": proc.pid, "expires_at": T0.timestamp() + 30}
        two[0].put("enrich", "writer", live, tag="live")
        b = Lease(two[1], "enrich", "writer", 30, clock, owner="b")
        assert not b.acquire()
    finally:
        proc.kill()
        proc.wait()


def test_an_earlier_life_of_this_pid_is_gone(two: tuple[Store, Store]) -> None:
    """A restarted container runs as pid 1 again under the same hostname."""
    clock = FakeClock(T0)
    before = {"owner": "old", "host": HOST, "pid": os.getpid(), "expires_at": T0.timestamp() + 30}
    two[0].put("enrich", "writer", before, tag="old")
    assert Lease(two[1], "enrich", "writer", 30, clock, owner="new").acquire()
