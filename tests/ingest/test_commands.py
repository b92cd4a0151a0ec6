"""``storywatch feeds check`` and ``storywatch feeds import`` as plain functions."""

from __future__ import annotations

import io
import json
from pathlib import Path

import yaml

from ingest.commands import check_feeds, import_opml
from ingest.service import NS_FEEDS
from tests.feedserver import FeedServer, Reply, rss
from tests.ingest.conftest import FIXTURES, Harness, make_settings

FEED = rss("Wire", [{"title": "One", "link": "https://w.example/1"}, {"title": "Two", "link": "https://w.example/2"}])


def test_check_reports_each_feed_and_changes_nothing(server: FeedServer, harness: Harness) -> None:
    good = server.feed("/good.xml", FEED, etag='"g"')
    page = server.feed(
        "/home", (FIXTURES / "html_page_with_autodiscovery.html").read_bytes(), content_type="text/html"
    )
    missing = server.url("/missing.xml")
    settings = make_settings(harness.tmp_path, [{"url": good, "name": "Good"}, page, missing])
    svc = harness.service(settings)
    svc.drain()
    harness.articles(settings)
    before = {k: v for k, v in harness.store.scan(NS_FEEDS)}
    server.feed("/good.xml", rss("Wire", [{"title": "Three", "link": "https://w.example/3"}]) , etag='"g2"')

    out = io.StringIO()
    assert check_feeds(settings, harness.store, True, out) == 1
    rows = {r["feed"]: r for r in map(json.loads, out.getvalue().splitlines())}
    assert rows[good] | {"elapsed_s": 0} == rows[good] | {
        "ok": True, "status": 200, "entries": 1, "new": 1, "error": None, "elapsed_s": 0
    }  # fmt: skip
    assert rows[page]["ok"] is False and rows[page]["error"] == "FeedParseError"
    assert rows[page]["suggestion"] == server.url("/feeds/all.rss")
    assert rows[missing]["status"] == 404 and rows[missing]["error"] == "FeedHTTPError"
    assert "check the URL" in rows[missing]["message"]
    # No validators sent (a 304 would say nothing), nothing published, no state written.
    assert "If-None-Match" not in server.requests[-1].headers or server.requests[-1].path != "/good.xml"
    assert harness.articles(settings) == []
    assert {k: v for k, v in harness.store.scan(NS_FEEDS)} == before


def test_check_text_output_and_exit_zero(server: FeedServer, harness: Harness) -> None:
    url = server.feed("/good.xml", FEED)
    settings = make_settings(harness.tmp_path, [{"url": url, "name": "Good"}])
    out = io.StringIO()
    assert check_feeds(settings, harness.store, False, out) == 0
    text = out.getvalue()
    assert "OK    200     2 entries    2 new" in text and "Good" in text and "1 of 1 feeds OK" in text


def test_check_text_output_on_failure(server: FeedServer, harness: Harness) -> None:
    url = server.script("/busy.xml", Reply(429, headers={"Retry-After": "60"}))
    out = io.StringIO()
    assert check_feeds(make_settings(harness.tmp_path, [url]), harness.store, False, out) == 1
    assert "FAIL  429  FeedHTTPError: HTTP 429: rate limited" in out.getvalue()


OPML = b"""<?xml version="1.0" encoding="utf-8"?>
<opml version="2.0"><head><title>Subscriptions</title></head><body>
  <outline text="News">
    <outline type="rss" text="Harbor Herald" xmlUrl="https://harborherald.example/rss"/>
    <outline type="rss" title="Ledger" text="The Daily Ledger" xmlUrl="https://ledger.example/rss"/>
    <outline type="rss" text="Dupe" xmlUrl="https://existing.example/feed.xml"/>
  </outline>
  <outline text="A folder without feeds"/>
</body></opml>
"""


def test_import_opml_into_the_feeds_include(tmp_path: Path) -> None:
    (tmp_path / "storywatch.yaml").write_text("include:\n  - feeds.yaml\nlog:\n  level: INFO\n")
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text("# my feeds\nfeeds:\n  - url: https://existing.example/feed.xml\n    name: Existing\n")
    opml = tmp_path / "subs.opml"
    opml.write_bytes(OPML)
    assert import_opml(opml, tmp_path / "storywatch.yaml") == 0
    text = feeds.read_text()
    assert text.startswith("# my feeds\n")  # comments survive
    assert yaml.safe_load(text)["feeds"] == [
        {"url": "https://existing.example/feed.xml", "name": "Existing"},
        {"url": "https://harborherald.example/rss", "name": "Harbor Herald"},
        {"url": "https://ledger.example/rss", "name": "Ledger"},
    ]
    assert import_opml(opml, feeds) == 0
    assert len(yaml.safe_load(feeds.read_text())["feeds"]) == 3


def test_import_opml_rewrites_when_feeds_is_not_last(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("feeds: []\nlog:\n  level: INFO\n")
    opml = tmp_path / "subs.opml"
    opml.write_bytes(OPML)
    assert import_opml(opml, cfg) == 0
    data = yaml.safe_load(cfg.read_text())
    assert len(data["feeds"]) == 3 and data["log"] == {"level": "INFO"}


def test_import_refuses_hostile_or_broken_opml(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("feeds: []\n")
    bad = tmp_path / "bad.opml"
    bad.write_bytes((FIXTURES / "billion_laughs.xml").read_bytes())
    assert import_opml(bad, cfg) == 1
    bad.write_bytes(b"<opml><body><outline")
    assert import_opml(bad, cfg) == 1
    assert cfg.read_text() == "feeds: []\n"
