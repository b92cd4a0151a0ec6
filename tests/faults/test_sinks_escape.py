"""Hostile titles and summaries (HTML, <script>, Slack mrkdwn control sequences, control
characters) reach every sink escaped, through the real code paths: ingest's
normalisation (which drops control characters), then the alerts service delivering to a
real SMTP server and the Slack stand-in, and the dashboard over the read model.

The sinks themselves escape markup but do not strip control characters: that is
ingest's job, so the events below carry what ingest leaves of a hostile entry.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from ingest.normalise import normalise_entry, plain_text
from ingest.parse import parse_feed
from storywatch.clock import FakeClock
from storywatch.store.sqlite import SQLiteStore
from storywatch.views import NS_STORIES, story_documents
from storywatch.web import create_app
from tests.alerts.conftest import T0, Harness, event, make_settings
from tests.servers import SlackServer, SMTPServer

HEADLINE = 'Flood <script>alert("x")</script> <!channel> <http://evil.example|click> *bold* \x1b[31mred\x07 <b>b</b>'
SUMMARY = "Rain &amp; <img src=x onerror=alert(1)> <!here> <@U123> end\x00\x08"
DANGEROUS_SLACK = ["<!channel>", "<!here>", "<http://evil.example|", "<@U123>", "<script"]


def _hostile_event() -> Any:
    return event(headline=plain_text(HEADLINE), summary=plain_text(SUMMARY))


def test_ingest_drops_control_characters_from_a_feed_entry() -> None:
    cdata = "<![CDATA[" + HEADLINE + "]]>"
    body = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><link>https://x.example/</link>'
        f"<item><title>{cdata}</title><link>https://x.example/1</link>"
        f"<description><![CDATA[{SUMMARY}]]></description></item></channel></rss>"
    ).encode()
    feed = parse_feed(body, "https://x.example/feed")
    art = normalise_entry(
        feed.entries[0], feed, feed_key="k", feed_url="https://x.example/feed", feed_name="", fetched_at=T0, langs=None
    ).article
    for text in (art.title, art.summary):
        assert not any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in text), repr(text)


def test_email_html_part_is_escaped(tmp_path: Path) -> None:
    with SMTPServer(tmp_dir=tmp_path) as smtp:
        channel = {"kind": "email", "host": smtp.host, "port": smtp.port, "security": "none",
                   "from_addr": "sw@example.org", "to": ["desk@example.org"]}
        h = Harness(make_settings(tmp_path, {"mail": channel}), tmp_path)
        try:
            h.send(_hostile_event())
            h.drain()
            msg = smtp.wait_for(1, 10)[0].message
        finally:
            h.close()
    html_part, text_part = msg.get_body(preferencelist=("html",)), msg.get_body(preferencelist=("plain",))
    assert html_part is not None and text_part is not None
    html = html_part.get_content()
    assert "<script" not in html and "<img src=x onerror" not in html
    assert "&lt;script&gt;" in html
    assert "<img" not in html and "<b>b</b>" not in html
    subject = str(msg["Subject"])
    assert not any(ord(c) < 32 for c in subject), repr(subject)
    for part in (html, text_part.get_content()):
        assert "\x1b" not in part and "\x00" not in part and "\x07" not in part, "control characters reach the mail"


def test_slack_message_is_escaped(tmp_path: Path) -> None:
    with SlackServer() as slack:
        channel = {"kind": "slack", "webhook_url": {"env": "X"}}
        os.environ["X"] = slack.webhook_url
        try:
            h = Harness(make_settings(tmp_path, {"slack": channel}), tmp_path)
        finally:
            del os.environ["X"]
        try:
            h.send(_hostile_event())
            h.drain()
            payload = slack.wait_for(1, 10)[0].payload
        finally:
            h.close()
    # Header blocks are plain_text, which Slack never reads as mrkdwn: only mrkdwn counts.
    texts = [payload.get("text", ""), *_mrkdwn(payload.get("blocks", []))]
    for bad in DANGEROUS_SLACK:
        assert not any(bad in t for t in texts), (bad, texts)
    assert any("&lt;!channel&gt;" in t for t in texts)
    assert len(texts) > 1, "the blocks carry mrkdwn sections"
    assert not any(c in t for t in texts for c in "\x1b\x00\x07\x08"), "control characters reach Slack"


def _mrkdwn(obj: Any) -> list[str]:
    if isinstance(obj, dict):
        own = [obj["text"]] if obj.get("type") == "mrkdwn" and isinstance(obj.get("text"), str) else []
        return own + [s for v in obj.values() for s in _mrkdwn(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in _mrkdwn(v)]
    return []


@pytest.mark.parametrize(
    "page", ["/", "/stories/s1", "/timeline", "/alerts"], ids=["stories", "story", "timeline", "alerts"]
)
def test_dashboard_escapes(tmp_path: Path, page: str) -> None:
    settings = make_settings(tmp_path)
    store = SQLiteStore(tmp_path / "state.db")
    try:
        ev = _hostile_event()
        for key, doc in story_documents(ev, lambda k: store.get(NS_STORIES, k)).items():
            store.put(NS_STORIES, key, doc)
        app = create_app(settings, store, clock=FakeClock(T0))
        resp = app.test_client().get(page)
        assert resp.status_code == 200, resp.status_code
        body = resp.get_data(as_text=True)
    finally:
        store.close()
    assert "<script>alert" not in body and "<img src=x" not in body and "<b>b</b>" not in body
    if page in ("/", "/stories/s1"):
        assert "&lt;script&gt;" in body
    assert "\x1b" not in body and "\x00" not in body, "control characters reach the dashboard"
    json.dumps(body)
