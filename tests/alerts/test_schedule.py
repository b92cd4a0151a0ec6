"""Backoff, quiet hours (with time zones and DST), digest windows and rate budgets."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts.schedule import RateLimiter, backoff_s, digest_release, hold_until, quiet_until
from storywatch.settings.alerts import ConsoleChannel, QuietHours, RateBudget


@given(attempts=st.integers(1, 30), retry_after=st.none() | st.floats(0, 5000), seed=st.integers())
def test_backoff_is_bounded_and_honours_retry_after(attempts: int, retry_after: float | None, seed: int) -> None:
    d = backoff_s(attempts, 5.0, 900.0, random.Random(seed), retry_after)
    step = min(900.0, 5.0 * 2 ** (attempts - 1))
    assert step / 2 <= d or (retry_after is not None and d == retry_after)
    assert d <= max(step, retry_after or 0)
    if retry_after is not None:
        assert d >= retry_after


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


NIGHT = QuietHours(start="22:00", end="07:00", tz="Europe/Berlin")
LUNCH = QuietHours(start="12:00", end="13:30", tz="America/New_York")


@pytest.mark.parametrize(
    ("quiet", "now", "until"),
    [
        (NIGHT, utc(2026, 3, 2, 20, 59), None),  # 21:59 Berlin (CET, UTC+1)
        (NIGHT, utc(2026, 3, 2, 21, 0), utc(2026, 3, 3, 6, 0)),  # 22:00 -> 07:00 next day
        (NIGHT, utc(2026, 3, 3, 2, 0), utc(2026, 3, 3, 6, 0)),  # 03:00, after midnight
        (NIGHT, utc(2026, 3, 3, 6, 0), None),  # 07:00 exactly: awake
        (NIGHT, utc(2026, 3, 28, 22, 0), utc(2026, 3, 29, 5, 0)),  # DST night: 07:00 CEST = 05:00 UTC
        (LUNCH, utc(2026, 7, 1, 16, 15), utc(2026, 7, 1, 17, 30)),  # 12:15 EDT
        (LUNCH, utc(2026, 7, 1, 18, 0), None),
    ],
    ids=["before", "start", "after-midnight", "end", "dst-change", "same-day", "after-same-day"],
)
def test_quiet_until(quiet: QuietHours, now: datetime, until: datetime | None) -> None:
    assert quiet_until(quiet, now) == until


def test_digest_windows_are_aligned() -> None:
    assert digest_release(600, utc(2026, 3, 2, 9, 3)) == utc(2026, 3, 2, 9, 10)
    assert digest_release(600, utc(2026, 3, 2, 9, 10)) == utc(2026, 3, 2, 9, 20)


def test_hold_until_combines_quiet_hours_and_digest() -> None:
    ch = ConsoleChannel.model_validate(
        {"kind": "console", "quiet_hours": NIGHT.model_dump(), "digest": {"window_s": 3600}}
    )
    assert hold_until(ch, "critical", utc(2026, 3, 2, 23, 0)) is None, "critical bypasses both"
    assert hold_until(ch, "high", utc(2026, 3, 2, 23, 0)) == utc(2026, 3, 3, 0, 0), "digest only"
    assert hold_until(ch, "low", utc(2026, 3, 2, 23, 0)) == utc(2026, 3, 3, 6, 0), "quiet hours"
    assert hold_until(ch, "low", utc(2026, 3, 2, 20, 30)) == utc(2026, 3, 3, 6, 0), "window ends in quiet"
    assert hold_until(ConsoleChannel(kind="console"), "low", utc(2026, 3, 2, 23, 0)) is None


def test_rate_limiter_sliding_window() -> None:
    rl = RateLimiter()
    budget = RateBudget(max_alerts=2, per_s=60)
    assert rl.wait_s("c", budget, 0.0) == 0
    rl.note("c", 0.0)
    rl.note("c", 10.0)
    assert rl.wait_s("c", budget, 20.0) == pytest.approx(40.0)
    assert rl.wait_s("c", budget, 60.0) == 0
    assert rl.wait_s("other", budget, 20.0) == 0 and rl.wait_s("c", None, 20.0) == 0


@pytest.mark.parametrize(
    "bad",
    [
        {"start": "25:00", "end": "07:00"},
        {"start": "22:00", "end": "22:00"},
        {"start": "22:00", "end": "7", "tz": "UTC"},
        {"start": "22:00", "end": "07:00", "tz": "Mars/Olympus"},
    ],
    ids=["hour", "empty", "format", "zone"],
)
def test_quiet_hours_validation(bad: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        QuietHours.model_validate(bad)
