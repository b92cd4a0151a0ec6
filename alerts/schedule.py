"""When a delivery may go out: retry backoff, quiet hours, digest windows, rate budgets.

Pure functions of the time they are given (and a random source for jitter), so tests
pin them with fixed datetimes.
"""

from __future__ import annotations

import math
import random
from collections import deque
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from storywatch.settings.alerts import ChannelBase, QuietHours, RateBudget


def backoff_s(
    attempts: int, base_s: float, max_s: float, rng: random.Random, retry_after: float | None = None
) -> float:
    """Seconds to wait before attempt ``attempts + 1``: exponential with jitter, at least
    ``retry_after`` when the receiver asked for it (a Slack 429).

    "Equal jitter": half the exponential step is fixed and half random, so retries of
    many deliveries that failed together spread out yet never come back at once.
    """
    step = min(max_s, base_s * math.pow(2, max(0, attempts - 1)))
    delay = step / 2 + rng.uniform(0, step / 2)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def _parse_hhmm(s: str) -> time:
    h, m = s.split(":")
    return time(int(h), int(m))


def quiet_until(q: QuietHours, now: datetime) -> datetime | None:
    """The UTC end of the quiet period ``now`` falls in, or None outside quiet hours.

    ``start`` after ``end`` spans midnight. Local wall times are turned into instants
    with zoneinfo, so a period across a DST change is as long as the clock on the wall says.
    """
    tz = ZoneInfo(q.tz)
    local = now.astimezone(tz)
    start, end = _parse_hhmm(q.start), _parse_hhmm(q.end)
    t = local.time()
    if start < end:
        inside = start <= t < end
        end_day = local.date()
    else:
        inside = t >= start or t < end
        end_day = local.date() + timedelta(days=1) if t >= start else local.date()
    if not inside:
        return None
    return datetime.combine(end_day, end, tzinfo=tz).astimezone(UTC)


def digest_release(window_s: float, now: datetime) -> datetime:
    """The end of the digest window ``now`` falls in; windows are aligned to the epoch
    so that every alert of one window gets the same release time (and one digest key)."""
    ts = now.timestamp()
    end = (math.floor(ts / window_s) + 1) * window_s
    return datetime.fromtimestamp(end, UTC)


def hold_until(channel: ChannelBase, severity: str, now: datetime) -> datetime | None:
    """When a new alert of ``severity`` on ``channel`` may go out, or None for at once.

    Quiet hours hold everything but their bypass severities until they end; a digest
    channel holds everything but its bypass severities until the window ends (or, if
    that falls in quiet hours, until they end).
    """
    q = channel.quiet_hours
    if q is not None and severity not in q.bypass_severity:
        end = quiet_until(q, now)
        if end is not None:
            return end
    d = channel.digest
    if d is not None and severity not in d.bypass_severity:
        release = digest_release(d.window_s, now)
        if q is not None and severity not in q.bypass_severity:
            release = quiet_until(q, release) or release
        return release
    return None


class RateLimiter:
    """A sliding-window budget per channel, in this process (monotonic seconds).

    With several alert workers each keeps its own window; the budget is then per worker.
    """

    def __init__(self) -> None:
        self._sent: dict[str, deque[float]] = {}

    def wait_s(self, channel: str, budget: RateBudget | None, now: float) -> float:
        """0 if ``channel`` may send now, else the seconds until its budget frees a slot."""
        if budget is None:
            return 0.0
        q = self._sent.setdefault(channel, deque())
        while q and q[0] <= now - budget.per_s:
            q.popleft()
        if len(q) < budget.max_alerts:
            return 0.0
        return q[0] + budget.per_s - now

    def note(self, channel: str, now: float) -> None:
        self._sent.setdefault(channel, deque()).append(now)
