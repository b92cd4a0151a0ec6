"""Slack alerts against a local Slack stand-in: incoming webhook, bot token with threads,
429 with Retry-After, 500, bad token; mrkdwn escaping and Block Kit limits."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from storywatch.settings.base import Secret
from tests.alerts.conftest import event, make_settings
from tests.servers import SlackServer


def bot_channel(slack: SlackServer, token: str | None = None) -> dict[str, Any]:
    return {
        "kind": "slack",
        "token": Secret(token or slack.token),
        "channel": "#news-desk",
        "api_url": slack.api_url,
        "timeout_s": 5,
    }


def hook_channel(slack: SlackServer) -> dict[str, Any]:
    return {"kind": "slack", "webhook_url": Secret(slack.webhook_url), "timeout_s": 5}


@pytest.mark.parametrize("kind", ["webhook", "bot"])
def test_slack_alert_has_blocks_and_the_key(kind: str, tmp_path: Path, harness_factory: Any) -> None:
    with SlackServer() as slack:
        chan = hook_channel(slack) if kind == "webhook" else bot_channel(slack)
        h = harness_factory(make_settings(tmp_path, {"slack": chan}))
        h.send(event(sources=2))
        h.drain()
        [msg] = slack.wait_for(1)
        assert msg.kind == kind.replace("bot", "api")
        types = [b["type"] for b in msg.blocks]
        assert types[0] == "header" and types[-1] == "context" and "section" in types
        body = "\n".join(b["text"]["text"] for b in msg.blocks if b["type"] == "section")
        assert "<https://news1.example/s1/1?a=1&amp;b=2|River bursts its banks in the north (report 1)>" in body
        assert "*Sources:* 2" in body
        [d] = h.deliveries()
        assert d["state"] == "sent"
        if kind == "bot":
            assert msg.key == d["key"] and d["result"]["ts"] == msg.ts
            assert msg.payload["channel"] == "#news-desk"
        else:
            assert d["key"] in msg.blocks[-1]["elements"][0]["text"]


def test_follow_ups_go_into_the_first_alerts_thread(tmp_path: Path, harness_factory: Any) -> None:
    with SlackServer() as slack:
        settings = make_settings(tmp_path, {"slack": bot_channel(slack)}, rules={"follow_up": {"min_interval_s": 0}})
        h = harness_factory(settings)
        h.send(event(sources=1))
        h.send(event("updated", revision=2, sources=4, changes=["new_sources"]))
        h.send(event("updated", revision=3, sources=5, changes=["new_entities"], entities=["Rhine"]))
        h.send(event("updated", revision=4, sources=5, changes=["new_sources"]))  # +0 sources: no follow-up
        h.drain()
        root, first, second = slack.wait_for(3)
        assert root.thread_ts is None
        assert first.thread_ts == root.ts and second.thread_ts == root.ts
        assert slack.thread(root.ts) == [first, second]
        assert "3 new sources" in str(first.blocks) and "Rhine" in str(second.blocks)
        assert len(slack.messages) == 3


def test_429_retry_after_is_honoured(tmp_path: Path, harness_factory: Any) -> None:
    with SlackServer() as slack:
        slack.fail_next(429, retry_after=120)
        h = harness_factory(make_settings(tmp_path, {"slack": bot_channel(slack)}))
        h.send(event())
        h.drain()
        [d] = h.deliveries()
        assert d["state"] == "failed" and "429" in d["last_error"]
        wait = (datetime.fromisoformat(d["next_at"]) - h.clock.now()).total_seconds()
        assert wait >= 120, "the retry must not come before Retry-After"
        h.clock.advance(seconds=119)
        h.drain()
        assert slack.messages == []
        h.clock.advance(seconds=2)
        h.drain()
        assert len(slack.wait_for(1)) == 1
        assert h.deliveries()[0]["state"] == "sent"
        assert len(slack.requests) == 2


def test_500s_back_off_until_dead_then_retry_command_revives(tmp_path: Path, harness_factory: Any) -> None:
    import io

    from alerts.commands import list_alerts, retry_alert

    with SlackServer() as slack:
        slack.fail_next(500, times=3)
        h = harness_factory(make_settings(tmp_path, {"slack": hook_channel(slack)}, max_attempts=3))
        h.send(event())
        delays = []
        for _ in range(3):
            h.drain()
            d = h.deliveries()[0]
            if d["state"] == "failed":
                delays.append((datetime.fromisoformat(d["next_at"]) - h.clock.now()).total_seconds())
                h.clock.advance(seconds=delays[-1] + 0.001)
        [d] = h.deliveries()
        assert d["state"] == "dead" and d["attempts"] == 3
        assert 0.5 <= delays[0] <= 1.0 and 1.0 <= delays[1] <= 2.0, "exponential backoff with jitter"
        out = io.StringIO()
        assert list_alerts(h.settings, h.store, "dead", False, out) == 0
        assert d["id"] in out.getvalue() and "HTTP 500" in out.getvalue()
        out = io.StringIO()
        assert retry_alert(h.settings, h.store, d["id"][:8], out, clock=h.clock) == 0
        assert h.deliveries()[0]["state"] == "pending"
        h.drain()
        assert len(slack.wait_for(1)) == 1
        assert h.deliveries()[0]["state"] == "sent"
        assert retry_alert(h.settings, h.store, d["id"], io.StringIO()) == 1, "a sent alert is not retried"


def test_invalid_token_is_permanent_and_the_token_is_not_logged(
    tmp_path: Path, harness_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with SlackServer() as slack:
        h = harness_factory(make_settings(tmp_path, {"slack": bot_channel(slack, token="xoxb-wrong-token")}))
        h.send(event())
        h.drain()
        [d] = h.deliveries()
        assert d["state"] == "dead" and "invalid_auth" in d["last_error"]
        assert "xoxb-wrong-token" not in caplog.text and slack.webhook_url not in caplog.text


def test_mrkdwn_in_a_headline_is_escaped(tmp_path: Path, harness_factory: Any) -> None:
    evil = "Flood <!channel> <https://evil.example|click> & *bold*"
    with SlackServer() as slack:
        h = harness_factory(make_settings(tmp_path, {"slack": bot_channel(slack)}))
        h.send(event(headline=evil))
        h.drain()
        [msg] = slack.wait_for(1)
        mrkdwn = [b["text"]["text"] for b in msg.blocks if b["type"] == "section"] + [msg.text]
        body = "\n".join(mrkdwn)
        assert "<!channel>" not in body and "<https://evil.example" not in body
        assert "&lt;!channel&gt;" in body and "&amp;" in body
        # The header is plain_text, which Slack shows literally: no escaping needed there.
        assert msg.blocks[0]["text"]["type"] == "plain_text"


@pytest.mark.parametrize("posted_before_crash", [True, False], ids=["posted-then-crash", "crash-before-post"])
@pytest.mark.parametrize("follow_up", [False, True], ids=["root", "in-thread"])
def test_an_uncertain_resend_looks_before_posting_again(
    posted_before_crash: bool, follow_up: bool, tmp_path: Path, harness_factory: Any
) -> None:
    with SlackServer() as slack:
        chan = {**bot_channel(slack), "channel": slack.channel_id}
        rules = {"follow_up": {"min_interval_s": 0}}
        h = harness_factory(make_settings(tmp_path, {"slack": chan}, claim_lease_s=60, rules=rules))
        if follow_up:
            h.send(event())
            h.drain()
            h.send(event("updated", revision=2, changes=["velocity_jump"]))
        else:
            h.send(event())
        h.service._ingest(h.service._io()[0].poll(10, 0))
        [doc] = h.deliveries("pending")
        claimed = h.service.deliveries.claim(doc, h.clock.now())
        assert claimed is not None
        if posted_before_crash:
            h.service._notifier("slack").send(h.service._outbound(claimed))  # ...and the worker dies
        h.restart()
        h.clock.advance(seconds=61)
        h.drain()
        posts = [m for m in slack.messages if m.key == doc["key"]]
        assert len(posts) == 1, "posted exactly once"
        d = h.service.deliveries.get(doc["id"])
        assert d is not None and d["state"] == "sent" and d["uncertain"]
        assert d["result"]["ts"] == posts[0].ts
        assert d["result"].get("recovered", False) == posted_before_crash
        if follow_up:
            assert posts[0].thread_ts == slack.messages[0].ts


def test_a_200_that_is_not_slacks_ok_is_not_sent(tmp_path: Path, harness_factory: Any) -> None:
    """A proxy's login page answers 200 too: the alert must stay due, not count as sent."""
    with SlackServer() as slack:
        slack.reply_next(200, b"<html><body>Please log in</body></html>")
        h = harness_factory(make_settings(tmp_path, {"slack": hook_channel(slack)}))
        h.send(event())
        h.drain()
        [d] = h.deliveries()
        assert d["state"] == "failed" and "without Slack's 'ok'" in d["last_error"]
        assert "secretpart" not in d["last_error"]
        h.clock.advance(seconds=60)
        h.drain()
        assert len(slack.wait_for(1)) == 1
        assert h.deliveries()[0]["state"] == "sent"
