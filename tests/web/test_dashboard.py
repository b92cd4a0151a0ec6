"""The dashboard over a populated store: every page, escaping, and a real browser's view."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.web.browser import dump_dom, screenshot
from tests.web.conftest import Dashboard
from tests.web.fixtures import EVIL

PAGES = [
    ("/", ["Live stories", "North Korea fires ballistic missile", "missile launches", "closest to example"]),
    ("/?sort=growing", ["Fastest growing", "Storm closes mountain passes"]),
    ("/stories/s-missile", ["Growth", "<svg", "independent sources", "Coast Radio", "missile launches"]),
    ("/timeline", ["Story growth", "Topic activity", "<svg", "port disasters"]),
    ("/feeds", ["World Wire", "The Daily Ledger", "HTTP 503", "Gone Gazette", "failing"]),
    ("/alerts", ["Alert log", "missile launches: North Korea", "sent"]),
    ("/alerts?state=sent", ["missile launches: North Korea"]),
    ("/alerts?state=dead", ["HTTP 401: invalid token", "Feed failing: The Daily Ledger"]),
    ("/alerts?state=held", ["No alerts in state held"]),
]


@pytest.mark.parametrize(("path", "expected"), PAGES, ids=[p for p, _ in PAGES])
def test_page_renders(dashboard: Dashboard, path: str, expected: list[str]) -> None:
    resp = dashboard.client.get(path)
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    for text in expected:
        assert text in html, f"{text!r} missing from {path}"


@pytest.mark.parametrize(
    ("path", "status"),
    [("/stories/no-such-story", 404), ("/alerts?state=bogus", 400), ("/nowhere", 404)],
    ids=["unknown-story", "unknown-state", "unknown-page"],
)
def test_errors(dashboard: Dashboard, path: str, status: int) -> None:
    assert dashboard.client.get(path).status_code == status


@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_read_only(dashboard: Dashboard, method: str) -> None:
    assert getattr(dashboard.client, method)("/").status_code == 405


@pytest.mark.parametrize("path", ["/", "/stories/s-fire", "/timeline", "/alerts"])
def test_titles_are_escaped(dashboard: Dashboard, path: str) -> None:
    html = dashboard.client.get(path).get_data(as_text=True)
    assert "<script" not in html.lower()
    assert "&lt;script&gt;" in html
    assert "javascript:" not in html


def test_security_headers(dashboard: Dashboard) -> None:
    resp = dashboard.client.get("/")
    assert "script-src" not in resp.headers["Content-Security-Policy"]
    assert resp.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


def test_browser_shows_script_title_as_text(dashboard: Dashboard) -> None:
    dom = dump_dom(dashboard.url)
    # The browser parsed the page: the title is text inside the heading, not an element.
    assert "<script" not in dom.lower()
    headings = re.findall(r'<h2><a href="/stories/([^"]+)">(.*?)</a></h2>', dom)
    assert ("s-fire", EVIL.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")) in headings
    assert "javascript:" not in dom
    assert dom.count('class="story"') == 4


def test_browser_draws_the_timeline(dashboard: Dashboard) -> None:
    dom = dump_dom(dashboard.url + "timeline")
    assert dom.count("<svg") == 3
    paths = re.findall(r'<path class="line (s\d)" d="(M[^"]+)"', dom)
    assert len(paths) == 4 + 4 + 2  # four stories (articles, sources), two topics
    assert "North Korea fires ballistic missile toward Japan" in dom


def test_browser_screenshot(dashboard: Dashboard, shots: Path) -> None:
    png = screenshot(dashboard.url, shots / "dashboard.png", (1280, 900))
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    assert (width, height) == (1280, 900)
    assert png.stat().st_size > 20_000  # a rendered page, not a blank one


def test_one_port_for_dashboard_and_probes(dashboard: Dashboard) -> None:
    from storywatch.observe import Health, Metrics
    from storywatch.web import create_app

    health, metrics = Health(), Metrics()
    metrics.polls.labels(feed="World Wire", outcome="ok").inc()
    client = create_app(dashboard.settings, dashboard.store, health=health, metrics=metrics).test_client()
    assert client.get("/readyz").status_code == 503
    health.set_ready("alerts")
    health.beat("alerts")
    assert client.get("/readyz").get_json() == {"ok": True, "stages": {"alerts": True}}
    assert client.get("/healthz").status_code == 200
    body = client.get("/metrics").get_data(as_text=True)
    assert 'storywatch_feed_polls_total{feed="World Wire",outcome="ok"} 1.0' in body
    assert client.get("/").status_code == 200
    # Without them, the dashboard alone answers no probe.
    assert dashboard.client.get("/metrics").status_code == 404


_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\u2028\u2029"),
    min_size=1,
    max_size=60,
).filter(lambda t: t.strip() == t and "  " not in t)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    title=_TEXT | st.sampled_from(["<img src=x onerror=alert(1)>", "a</h2><script>x</script>", "&amp; &lt;"]),
    topic=_TEXT,
    url=st.sampled_from(["javascript:alert(1)", " JAVASCRIPT:x", "data:text/html,<b>", "https://ok.example/"]),
)
def test_any_title_renders_as_its_own_text(tmp_path: Path, title: str, topic: str, url: str) -> None:
    """Whatever a feed puts in a title, topic or link, the page shows it as text and
    links only http(s)."""
    from selectolax.lexbor import LexborHTMLParser as HTMLParser

    from storywatch.settings import Settings
    from storywatch.store.sqlite import SQLiteStore
    from storywatch.views import NS_STORIES
    from storywatch.web import create_app

    store = SQLiteStore(":memory:")
    try:
        store.put(
            NS_STORIES,
            "s",
            {
                "story_id": "s", "headline": title, "article_count": 1, "source_count": 1,
                "last_seen": "2026-01-01T00:00:00+00:00",
                "articles": [{"id": "a", "title": title, "url": url, "source": topic}],
                "matches": [{"topic": topic, "score": 0.5, "threshold": 0.4, "explanation": title}],
            },
        )  # fmt: skip
        client = create_app(Settings(base_dir=tmp_path), store).test_client()
        for path in ("/", "/stories/s"):
            tree = HTMLParser(client.get(path).get_data(as_text=True))
            assert tree.css("script") == []
            heading = tree.css_first("h1" if path != "/" else "article.story h2")
            assert heading is not None and heading.text(strip=True) == title.strip()
            assert tree.css_first(".topic").text() == topic
            hrefs = [a.attributes.get("href") or "" for a in tree.css("a")]
            assert all(h.startswith(("/", "http://", "https://")) for h in hrefs), hrefs
            assert (url in hrefs) == url.startswith("https://")
    finally:
        store.close()
