"""Templates and escaping: HTML autoescape, mrkdwn escaping, Slack limits, overrides."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.notifiers.base import NotifierContext, Outbound
from alerts.notifiers.email import EmailNotifier
from alerts.notifiers.slack import SlackNotifier
from alerts.render import (
    SLACK_BLOCKS_MAX,
    SLACK_HEADER_MAX,
    SLACK_SECTION_MAX,
    Renderer,
    mrkdwn_escape,
    slack_blocks,
    slack_link,
)
from storywatch.clock import FakeClock
from storywatch.schema import Alert, ArticleRef
from storywatch.settings.alerts import EmailChannel, SlackChannel
from storywatch.settings.base import Secret

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def alert(headline: str = "Floods", summary: str = "Rain.", title: str | None = None, n: int = 3) -> Alert:
    arts = [ArticleRef(id=f"a{i}", title=f"{headline} {i}", url=f"https://x.example/{i}", source="x") for i in range(n)]
    return Alert(
        key="topic_match/floods:s1:1",
        rule="topic_match",
        story_id="s1",
        revision=1,
        topic="floods",
        title=title or f"floods: {headline}",
        headline=headline,
        summary=summary,
        why="matched",
        articles=arts,
        source_count=n,
        first_seen=NOW,
        created_at=NOW,
    )


def ctx(renderer: Renderer | None = None) -> NotifierContext:
    return NotifierContext(FakeClock(NOW), renderer or Renderer(), lambda p: p, io.StringIO())


def email_notifier(renderer: Renderer | None = None) -> EmailNotifier:
    cfg = EmailChannel(kind="email", host="localhost", from_addr="sw@alerts.example", to=["a@example.org"])
    return EmailNotifier("mail", cfg, ctx(renderer))


def slack_notifier() -> SlackNotifier:
    cfg = SlackChannel(kind="slack", webhook_url=Secret("https://hooks.example/x"))
    return SlackNotifier("slack", cfg, ctx())


TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=400)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


TEMPLATE_TAGS = {"html", "body", "h1", "h2", "p", "table", "tr", "th", "td", "ul", "li", "a", "span", "b", "hr"}


@settings(max_examples=50, deadline=None)
@given(headline=TEXT, summary=TEXT)
def test_no_markup_survives_into_the_html_email(headline: str, summary: str) -> None:
    msg = email_notifier().build(Outbound(alert(headline, summary), "k|mail", "mail"))
    parser = _Tags()
    parser.feed(msg.get_body(("html",)).get_content())
    for tag, attrs in parser.tags:
        assert tag in TEMPLATE_TAGS, f"injected <{tag}>"
        assert {k for k, _ in attrs} <= {"style", "align", "href"}
        if tag == "a":
            assert dict(attrs)["href"].startswith("https://x.example/")
    assert "\n" not in msg["Subject"]


@settings(max_examples=50, deadline=None)
@given(headline=TEXT, summary=TEXT, n=st.integers(0, 20))
def test_slack_payload_stays_within_limits_and_escaped(headline: str, summary: str, n: int) -> None:
    payload = slack_notifier().payload(Outbound(alert(headline, summary * 20, n=n), "k|slack", "slack"))
    blocks = payload["blocks"]
    assert len(blocks) <= SLACK_BLOCKS_MAX
    for b in blocks:
        if b["type"] == "header":
            assert len(b["text"]["text"]) <= SLACK_HEADER_MAX
        if b["type"] == "section":
            text = b["text"]["text"]
            assert len(text) <= SLACK_SECTION_MAX
            # Only the links we build open an angle bracket.
            for part in text.split("<")[1:]:
                assert part.startswith("https://x.example/")
    assert len(payload["text"]) <= 3000


def test_slack_blocks_cap_at_50_with_a_note() -> None:
    body = "\n\n".join("x" * 2900 for _ in range(80))
    blocks = slack_blocks("h", body, "ctx")
    assert len(blocks) == SLACK_BLOCKS_MAX
    assert "more sections not shown" in blocks[-2]["text"]["text"]


@pytest.mark.parametrize(
    ("text", "escaped"),
    [("a & b", "a &amp; b"), ("<!here>", "&lt;!here&gt;"), ("x > y", "x &gt; y"), ("*bold*", "*bold*")],
    ids=["amp", "mention", "gt", "formatting-kept"],
)
def test_mrkdwn_escape(text: str, escaped: str) -> None:
    assert mrkdwn_escape(text) == escaped


def test_slack_link_rejects_non_http_and_pipes() -> None:
    assert slack_link("javascript:alert(1)", "x") == "x"
    assert slack_link("https://a.example/?q=1|2", "a|b") == "<https://a.example/?q=1%7C2|a¦b>"


def test_email_headers_thread_and_carry_the_key() -> None:
    out = Outbound(alert(), "follow_up:s1:2|mail", "mail", parent_key="topic_match/floods:s1:1|mail")
    msg = email_notifier().build(out)
    again = email_notifier().build(out)
    assert msg["Message-ID"] == again["Message-ID"], "stable across resends"
    assert msg["In-Reply-To"] and msg["In-Reply-To"] != msg["Message-ID"]
    assert msg["X-Storywatch-Key"] == "follow_up:s1:2|mail"


def test_a_template_directory_overrides_the_defaults(tmp_path: Path) -> None:
    (tmp_path / "email_subject.txt.j2").write_text("ALERT {{ alert.topic }}")
    msg = email_notifier(Renderer(tmp_path)).build(Outbound(alert(), "k|mail", "mail"))
    assert msg["Subject"] == "ALERT floods"
    assert "Top articles" in msg.get_body(("plain",)).get_content(), "the rest stay the defaults"


def test_digest_renders_every_item() -> None:
    items = [alert(f"Story {i}") for i in range(3)]
    digest = alert(title="3 alerts").model_copy(update={"rule": "digest", "headline": "Digest of 3 alerts"})
    msg = email_notifier().build(Outbound(digest, "d|mail", "mail", items=items, more=2))
    text = msg.get_body(("plain",)).get_content()
    assert all(f"Story {i}" in text for i in range(3)) and "and 2 more" in text
