"""Open-ended input: whatever bytes arrive, parsing either yields clean articles or raises
FeedParseError; it never crashes the poller with anything else."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.normalise import LanguageDetector, html_to_text, normalise_entry
from ingest.parse import parse_feed
from storywatch.errors import FeedParseError
from tests.ingest.conftest import FIXTURES, T0

SEEDS = sorted(p.read_bytes() for p in FIXTURES.iterdir() if p.stat().st_size < 20_000)
URL = "https://prop.example/feed.xml"


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A fixture with a few random bytes replaced, inserted or cut off."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["replace", "insert", "truncate"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "replace" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[pos:]
    return bytes(data)


_item_text = st.text(max_size=40).map(lambda s: s.replace("]]>", ""))


@st.composite
def generated_rss(draw: st.DrawFn) -> bytes:
    """Well-formed RSS whose titles, links and dates are arbitrary text in CDATA."""
    items = []
    for _ in range(draw(st.integers(0, 4))):
        title, link, date = draw(_item_text), draw(_item_text), draw(_item_text)
        items.append(
            f"<item><title><![CDATA[{title}]]></title><link><![CDATA[{link}]]></link>"
            f"<pubDate><![CDATA[{date}]]></pubDate></item>"
        )
    head = '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>P</title>'
    doc = head + "".join(items) + "</channel></rss>"
    return doc.encode("utf-8", "surrogatepass")


def _check(body: bytes, langs: LanguageDetector) -> None:
    try:
        feed = parse_feed(body, URL)
    except FeedParseError as exc:
        assert exc.message and exc.feed_url == URL
        return
    for entry in feed.entries:
        art = normalise_entry(
            entry, feed, feed_key=URL, feed_url=URL, feed_name="", fetched_at=T0, langs=langs
        ).article
        assert art.published <= T0 + timedelta(seconds=0)
        assert art.url is None or art.url.startswith(("http://", "https://"))
        assert "\n" not in art.title


_SLOW_OK = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]


@settings(max_examples=60, deadline=None, suppress_health_check=_SLOW_OK)
@given(mutated())
def test_mutated_fixtures_never_crash(langs: LanguageDetector, body: bytes) -> None:
    _check(body, langs)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(generated_rss(), st.binary(max_size=300)))
def test_arbitrary_documents_never_crash(langs: LanguageDetector, body: bytes) -> None:
    _check(body, langs)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_html_to_text_is_plain(value: str) -> None:
    out = html_to_text(value)
    assert out == " ".join(out.split())
    assert "<script" not in out.lower() or "<script" in value.lower()
