"""``storywatch feeds check`` and ``storywatch feeds import`` as plain functions."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml

from ingest.commands import check_feeds, import_opml
from ingest.service import NS_FEEDS
from storywatch.settings import load_settings
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


MIXED_OPML = b"""<?xml version="1.0" encoding="utf-8"?>
<opml version="2.0"><body>
  <outline text="World Wire" xmlUrl="https://wire.example/rss"/>
  <outline text="Evil" xmlUrl="javascript:alert(1)"/>
  <outline text="Old" xmlUrl="ftp://example.org/x"/>
  <outline text="No host" xmlUrl="http://"/>
  <outline text="Harbor" xmlUrl="https://harbor.example/rss"/>
</body></opml>
"""
MAIN_WITH_INCLUDES = "# main\ninclude: [feeds.yaml, channels.yaml]\n"
FEEDS_YAML = "# my feeds\nfeeds:\n  - url: https://existing.example/feed.xml\n    name: World Wire\n"
CHANNELS_YAML = "# channels\nalerts:\n  channels:\n    console: {kind: console}\n"


def split_config(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "storywatch.yaml").write_text(MAIN_WITH_INCLUDES)
    (tmp_path / "feeds.yaml").write_text(FEEDS_YAML)
    (tmp_path / "channels.yaml").write_text(CHANNELS_YAML)
    opml = tmp_path / "subs.opml"
    opml.write_bytes(MIXED_OPML)
    return tmp_path / "storywatch.yaml", opml


def snapshot(tmp_path: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(tmp_path.glob("*.yaml"))}


def test_import_skips_and_reports_unsupported_urls_and_keeps_names_unique(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, opml = split_config(tmp_path)
    assert import_opml(opml, cfg) == 0
    out = capsys.readouterr().out
    assert "skipped Evil: unsupported URL scheme 'javascript'" in out
    assert "skipped Old: unsupported URL scheme 'ftp'" in out
    assert "skipped No host: expected an http:// or https:// URL with a host" in out
    assert "added 2 feeds" in out and "3 unsupported" in out
    assert yaml.safe_load((tmp_path / "feeds.yaml").read_text())["feeds"][1:] == [
        {"url": "https://wire.example/rss", "name": "World Wire (wire.example)"},
        {"url": "https://harbor.example/rss", "name": "Harbor"},
    ]
    load_settings(cfg, environ={})  # the result is a valid config


INTO_REFUSED = {
    "another-file-of-the-config": ("channels.yaml", "feeds: is defined in"),
    "a-file-outside-the-config": ("other.yaml", "feeds: is defined in"),
    "a-directory": (".", "is a directory"),
}


@pytest.mark.parametrize(("into", "message"), INTO_REFUSED.values(), ids=INTO_REFUSED.keys())
def test_import_into_a_file_other_than_the_feeds_file_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], into: str, message: str
) -> None:
    cfg, opml = split_config(tmp_path)
    (tmp_path / "other.yaml").write_text("feeds: []\n")
    before = snapshot(tmp_path)
    assert import_opml(opml, cfg, tmp_path / into) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert snapshot(tmp_path) == before


def test_import_into_the_feeds_file_checks_duplicates_against_the_whole_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, opml = split_config(tmp_path)
    opml.write_bytes(OPML)  # Dupe is https://existing.example/feed.xml, in feeds.yaml
    assert import_opml(opml, cfg, tmp_path / "feeds.yaml") == 0
    assert "added 2 feeds" in capsys.readouterr().out
    assert (tmp_path / "feeds.yaml").read_text().startswith("# my feeds\n")
    assert len(load_settings(cfg, environ={}).feeds) == 3


def test_import_with_broken_yaml_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, opml = split_config(tmp_path)
    (tmp_path / "feeds.yaml").write_text("feeds:\n  - url: [unclosed\n")
    before = snapshot(tmp_path)
    assert import_opml(opml, cfg, tmp_path / "feeds.yaml") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"storywatch: {(tmp_path / 'feeds.yaml').resolve()}: invalid YAML: line")
    assert len(err.splitlines()) == 1
    assert snapshot(tmp_path) == before


def test_import_adds_the_feeds_section_to_an_included_file_when_none_exists(tmp_path: Path) -> None:
    (tmp_path / "storywatch.yaml").write_text("# main\ninclude: [channels.yaml, feeds.yaml]\n")
    (tmp_path / "channels.yaml").write_text(CHANNELS_YAML)
    (tmp_path / "feeds.yaml").write_text("# feeds go here\n")
    opml = tmp_path / "subs.opml"
    opml.write_bytes(OPML)
    assert import_opml(opml, tmp_path / "storywatch.yaml", tmp_path / "feeds.yaml") == 0
    assert (tmp_path / "feeds.yaml").read_text().startswith("# feeds go here\nfeeds:\n")
    assert (tmp_path / "channels.yaml").read_text() == CHANNELS_YAML
    assert len(load_settings(tmp_path / "storywatch.yaml", environ={}).feeds) == 3
