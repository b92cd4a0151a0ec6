"""One contract for every notifier, against its real receiver: a message arrives with the
headline and the idempotency key, a resend carries the same key, feed markup arrives
inert, and a digest shows every item."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from alerts.notifiers import NOTIFIERS, Notifier, NotifierContext, Outbound, make_notifier
from alerts.render import Renderer
from storywatch.clock import FakeClock
from storywatch.schema import Alert, ArticleRef
from storywatch.settings import Settings
from storywatch.settings.base import Secret
from tests.servers import SlackServer, SMTPServer, WebhookReceiver

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


@dataclass
class Rig:
    """A notifier and what its receiver got: (idempotency key, everything as text)."""

    notifier: Notifier
    received: Callable[[], list[tuple[str | None, str]]]
    escaped: Callable[[str], bool]


def _ctx(stdout: io.StringIO) -> NotifierContext:
    return NotifierContext(FakeClock(NOW), Renderer(), lambda p: p, stdout)


def _channel(cfg: dict[str, Any]) -> Any:
    return Settings.model_validate({"alerts": {"channels": {"c": cfg}}}).alerts.channels["c"]


@pytest.fixture(params=["email", "slack-webhook", "slack-bot", "webhook", "console", "file"])
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    kind = request.param
    out = io.StringIO()
    if kind == "email":
        with SMTPServer(tmp_dir=tmp_path, auth=("u", "p"), starttls=True) as smtp:
            cfg = {
                "kind": "email",
                "host": smtp.host,
                "port": smtp.port,
                "username": "u",
                "password": Secret("p"),
                "ca_file": str(smtp.ca_file),
                "from_addr": "sw@alerts.example",
                "to": ["d@example.org"],
            }

            def mails() -> list[tuple[str | None, str]]:
                out = []
                for r in smtp.messages:
                    plain, html = (r.message.get_body((k,)) for k in ("plain", "html"))
                    assert plain is not None and html is not None
                    text = plain.get_content() + "\n<!--html-->\n" + html.get_content()
                    out.append((r.message["X-Storywatch-Key"], text))
                return out

            def html_safe(s: str) -> bool:
                html = s.split("<!--html-->", 1)[1]
                return "<script>" not in html and "&lt;script&gt;" in html

            yield Rig(make_notifier("c", _channel(cfg), _ctx(out)), mails, html_safe)
    elif kind.startswith("slack"):
        with SlackServer() as slack:
            if kind == "slack-bot":
                cfg = {"kind": "slack", "token": Secret(slack.token), "channel": "#x", "api_url": slack.api_url}
            else:
                cfg = {"kind": "slack", "webhook_url": Secret(slack.webhook_url)}

            def posts() -> list[tuple[str | None, str]]:
                out = []
                for m in slack.messages:
                    key = m.key or m.blocks[-1]["elements"][0]["text"].split("`")[1]
                    out.append((key, json.dumps(m.payload)))
                return out

            def mrkdwn_safe(s: str) -> bool:
                sections = [b["text"]["text"] for b in json.loads(s)["blocks"] if b["type"] == "section"]
                return all("<script>" not in t for t in sections)

            yield Rig(make_notifier("c", _channel(cfg), _ctx(out)), posts, mrkdwn_safe)
    elif kind == "webhook":
        with WebhookReceiver(secret=b"k") as rx:
            cfg = {"kind": "webhook", "url": Secret(rx.hook_url), "signing_secret": Secret("k")}

            def calls() -> list[tuple[str | None, str]]:
                return [(c.key, json.dumps(c.payload)) for c in rx.messages]

            # JSON carries the text as data; a receiver renders it. Data must be intact.
            yield Rig(make_notifier("c", _channel(cfg), _ctx(out)), calls, lambda s: "<script>" in s)
    elif kind == "console":

        def printed() -> list[tuple[str | None, str]]:
            blocks = [b for b in out.getvalue().split("\n\n=== ") if b.strip()]
            return [(b.rsplit("key: ", 1)[1].strip(), b) for b in blocks]

        yield Rig(make_notifier("c", _channel({"kind": "console"}), _ctx(out)), printed, lambda s: True)
    else:
        path = tmp_path / "alerts.jsonl"

        def lines() -> list[tuple[str | None, str]]:
            rows = path.read_text().splitlines() if path.exists() else []
            return [(json.loads(r)["idempotency_key"], r) for r in rows]

        cfg = {"kind": "file", "path": str(path)}
        yield Rig(make_notifier("c", _channel(cfg), _ctx(out)), lines, lambda s: "<script>" in s)


def alert(headline: str = "Dam breaks upstream", key: str = "topic_match/floods:s1:1") -> Alert:
    return Alert(
        key=key,
        rule="topic_match",
        story_id="s1",
        revision=1,
        topic="floods",
        title=f"floods: {headline}",
        headline=headline,
        summary="Evacuations ordered.",
        why="matched",
        articles=[ArticleRef(id="a", title=headline, url="https://n.example/a", source="n.example")],
        source_count=1,
        first_seen=NOW,
        created_at=NOW,
    )


def test_every_kind_is_registered() -> None:
    assert set(NOTIFIERS) == {"email", "slack", "webhook", "console", "file"}


def test_delivers_headline_and_key(rig: Rig) -> None:
    rig.notifier.send(Outbound(alert(), "topic_match/floods:s1:1|c", "c"))
    [(key, text)] = rig.received()
    assert key == "topic_match/floods:s1:1|c"
    assert "Dam breaks upstream" in text


def test_a_resend_carries_the_same_key(rig: Rig) -> None:
    out = Outbound(alert(), "topic_match/floods:s1:1|c", "c")
    rig.notifier.send(out)
    rig.notifier.send(Outbound(out.alert, out.key, "c", attempt=2))
    keys = [k for k, _ in rig.received()]
    assert keys == [out.key, out.key]


def test_feed_markup_arrives_inert(rig: Rig) -> None:
    rig.notifier.send(Outbound(alert("Dam <script>alert(1)</script> breaks"), "k|c", "c"))
    [(_, text)] = rig.received()
    assert rig.escaped(text)


def test_a_digest_shows_every_item(rig: Rig) -> None:
    items = [alert(f"Story number {i}", key=f"topic_match/floods:s{i}:1") for i in range(3)]
    digest = alert("Digest of 3 alerts", key="digest:c:1").model_copy(update={"rule": "digest"})
    rig.notifier.send(Outbound(digest, "digest:c:1|c", "c", items=items))
    [(_, text)] = rig.received()
    assert all(f"Story number {i}" in text for i in range(3))


def test_the_file_channel_creates_its_file_private(tmp_path: Path) -> None:
    """Alerts say what a newsroom watches: 0600 whatever the umask, like the bus and store."""
    import os

    path = tmp_path / "var" / "alerts.jsonl"
    old = os.umask(0o022)
    try:
        notifier = make_notifier("f", _channel({"kind": "file", "path": str(path)}), _ctx(io.StringIO()))
        notifier.send(Outbound(alert(), "topic_match/floods:s1:1|f", "f"))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o600
