"""Channels that go away and come back: every alert is delivered once after recovery,
retries back off (counted attempts, never a hammering loop) and Retry-After is obeyed.

The alerts service runs over a real bus and store with a fake clock, against a real
SMTP server and the Slack stand-in; the clock is stepped, so no test sleeps.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.alerts.conftest import Harness, event, make_settings
from tests.servers import SlackServer, SMTPServer

STEP_S = 5.0


def _run_for(h: Harness, duration: timedelta) -> None:
    """Advance the fake clock in steps, letting the service do its due work at each."""
    end = h.clock.now() + duration
    while h.clock.now() < end:
        h.clock.advance(STEP_S)
        h.drain()


def test_smtp_down_for_ten_minutes_then_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    probe = SMTPServer(tmp_dir=tmp_path).__enter__()
    host, port = probe.host, probe.port
    probe.__exit__()  # the server goes away; its port is where it will come back
    channel = {"kind": "email", "host": host, "port": port, "security": "none", "timeout_s": 2,
               "from_addr": "sw@example.org", "to": ["desk@example.org"]}
    h = Harness(make_settings(tmp_path, {"mail": channel}, backoff_base_s=5.0, backoff_max_s=120.0,
                              max_attempts=50, claim_lease_s=30.0), tmp_path)
    try:
        h.send(*(event(story_id=f"s{i}") for i in range(3)))
        h.drain()
        _run_for(h, timedelta(minutes=10))
        down = h.deliveries()
        assert {d["state"] for d in down} == {"failed"}, [d["state"] for d in down]
        attempts = [d["attempts"] for d in down]
        # 600 s of outage with backoff 5 s doubling to 120 s (jittered): about 10 attempts
        # each; a retry on every 5 s step would make 120.
        assert all(3 <= a <= 20 for a in attempts), attempts
        monkeypatch.setattr("tests.servers._free_port", lambda: port)
        with SMTPServer(tmp_dir=tmp_path) as smtp:
            _run_for(h, timedelta(minutes=3))
            assert {d["state"] for d in h.deliveries()} == {"sent"}
            keys = [m.message["X-Storywatch-Key"] for m in smtp.messages]
        assert sorted(keys) == sorted(set(keys)) and len(keys) == 3, keys
        print(f"smtp outage: attempts per delivery {attempts}")
    finally:
        h.close()


def _slack_harness(tmp_path: Path, slack: SlackServer, **alerts: Any) -> Harness:
    os.environ["SW_T_SLACK"] = slack.webhook_url
    try:
        channel = {"kind": "slack", "webhook_url": {"env": "SW_T_SLACK"}}
        return Harness(make_settings(tmp_path, {"slack": channel}, **alerts), tmp_path)
    finally:
        del os.environ["SW_T_SLACK"]


def test_slack_500s_then_recovers(tmp_path: Path) -> None:
    with SlackServer() as slack:
        h = _slack_harness(tmp_path, slack, backoff_base_s=5.0, backoff_max_s=60.0)
        try:
            slack.fail_next(500, times=4)
            h.send(event())
            h.drain()
            _run_for(h, timedelta(minutes=5))
            assert [d["state"] for d in h.deliveries()] == ["sent"]
            assert len(slack.messages) == 1
            assert len(slack.requests) == 5, "four failures, one success, nothing more"
        finally:
            h.close()


def test_slack_429_retry_after_is_obeyed(tmp_path: Path) -> None:
    with SlackServer() as slack:
        h = _slack_harness(tmp_path, slack, backoff_base_s=1.0, backoff_max_s=10.0)
        try:
            slack.fail_next(429, retry_after=120)
            h.send(event())
            h.drain()
            assert len(slack.requests) == 1
            # The server asked for 120 s: nothing may be tried before then, though the
            # service's own backoff (1 s) would have retried long ago.
            _run_for(h, timedelta(seconds=110))
            assert len(slack.requests) == 1, "retried before Retry-After"
            _run_for(h, timedelta(seconds=30))
            assert len(slack.requests) == 2
            assert len(slack.messages) == 1
            assert [d["state"] for d in h.deliveries()] == ["sent"]
        finally:
            h.close()
