"""Politeness per host: a few requests in flight, a minimum gap, and back-off after 403/429/503.

Gaps are measured in real monotonic time (they protect a remote server's CPU, not our
schedule), while back-off deadlines are datetimes from the injected clock, because they
decide when a feed is next due.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime


class HostLimiter:
    """``with limiter.slot("example.com"):`` blocks until the host may be asked again.

    File URLs (empty host) are never limited.
    """

    def __init__(
        self,
        per_host: int,
        min_gap_s: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.per_host = per_host
        self.min_gap_s = min_gap_s
        self._monotonic = monotonic
        self._cond = threading.Condition()
        self._in_flight: dict[str, int] = {}
        self._next_start: dict[str, float] = {}
        self._backoff: dict[str, datetime] = {}

    @contextmanager
    def slot(self, host: str) -> Iterator[None]:
        if not host:
            yield
            return
        with self._cond:
            while True:
                now = self._monotonic()
                wait = self._next_start.get(host, 0.0) - now
                if self._in_flight.get(host, 0) < self.per_host and wait <= 0:
                    break
                self._cond.wait(timeout=wait if wait > 0 else None)
            self._in_flight[host] = self._in_flight.get(host, 0) + 1
            self._next_start[host] = now + self.min_gap_s
        try:
            yield
        finally:
            with self._cond:
                self._in_flight[host] -= 1
                if not self._in_flight[host]:
                    del self._in_flight[host]
                self._cond.notify_all()

    def back_off(self, host: str, until: datetime) -> None:
        """Leave ``host`` alone until ``until`` (it said 403, 429 or 503)."""
        if not host:
            return
        with self._cond:
            current = self._backoff.get(host)
            if current is None or until > current:
                self._backoff[host] = until

    def blocked_until(self, host: str, now: datetime) -> datetime | None:
        """When ``host`` may be polled again, or None if it may be now."""
        with self._cond:
            until = self._backoff.get(host)
            if until is None:
                return None
            if until <= now:
                del self._backoff[host]
                return None
            return until
