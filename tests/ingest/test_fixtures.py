"""Every file of the fixture corpus, parsed and normalised, with its expected outcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import pytest

from ingest.normalise import LanguageDetector, normalise_entry
from ingest.parse import parse_feed
from storywatch.errors import FeedParseError
from tests.ingest.conftest import FIXTURES, T0

FEED_URL = "https://fixtures.example.org/feeds/feed.xml"


@dataclass(frozen=True)
class Expect:
    entries: int | None = None
    error: str | None = None
    """A fragment of the FeedParseError message, when the file must be refused."""
    suggestion: str | None = None
    titles: list[str] = field(default_factory=list)
    urls: list[str | None] = field(default_factory=list)
    published: list[str] = field(default_factory=list)
    """ISO dates of the first entries (UTC); "fetched" means the fetch time."""
    langs: list[str | None] = field(default_factory=list)
    summaries: list[str] = field(default_factory=list)
    warning: str | None = None
    ttl_s: float | None = None
    source: str | None = None
    hosts: list[str] = field(default_factory=list)


CASES: dict[str, Expect] = {
    "rss2_basic.xml": Expect(
        3,
        titles=["Storm closes harbor for second day", "Council votes to expand tram line"],
        urls=["https://www.harborherald.example/news/2026/03/storm-harbor"],
        published=["2026-03-02T07:30:00", "2026-03-02T11:00:00", "2026-03-01T18:15:00"],
        langs=["en"],
        source="Harbor Herald",
        hosts=["harborherald.example"],
    ),
    "rss2_cdata_html_titles.xml": Expect(
        2,
        titles=["Breaking: Bridge reopens after repairs", "Mayor says no to toll & parking fees"],
        summaries=["Traffic resumed at noon.", "The mayor rejected the plan."],
    ),
    "rss2_relative_links.xml": Expect(
        3,
        urls=[
            "https://fixtures.example.org/world/story-1",
            "https://fixtures.example.org/feeds/story-2.html",
            "https://relative.example/world/story-3",
        ],
    ),
    "rss2_missing_dates.xml": Expect(2, published=["fetched", "fetched"]),
    "rss2_future_dates.xml": Expect(2, published=["fetched", "2026-02-01T00:00:00"]),
    "rss2_tracking_params.xml": Expect(
        2, urls=["https://www.harborherald.example/a?id=42", "https://www.harborherald.example/b"]
    ),
    "rss2_dc_content.xml": Expect(1, published=["2026-03-02T08:15:00"], summaries=["Short summary."]),
    "rss2_ttl.xml": Expect(1, ttl_s=7200),
    "rss2_sy_update.xml": Expect(1, ttl_s=6 * 3600),
    "rss2_guid_only.xml": Expect(2, urls=[None, None], titles=["No link but a GUID", "No link, no GUID"]),
    "rss2_entries_without_title_or_link.xml": Expect(
        2, warning="1 entries without a title or a link", titles=["A proper item", "Link but no title; the summary"]
    ),
    "rss2_all_entries_unusable.xml": Expect(error="none of the 2 entries has a title or a link"),
    "rss2_empty_channel.xml": Expect(0, warning="no entries"),
    "rss2_bozo_unescaped_ampersand.xml": Expect(
        2, warning="not well-formed", titles=["Fish & chips shop wins award", "Second item survives"]
    ),
    "rss2_bozo_truncated.xml": Expect(2, warning="no element found", titles=["Complete item before the cut"]),
    "rss2_latin1_declared.xml": Expect(
        1,
        titles=["Le café rouvre après les travaux de rénovation"],
        urls=["https://cafe.example/r%C3%A9ouverture"],
        langs=["fr"],
        source="Le Café du Port",
    ),
    "rss2_wrong_encoding.xml": Expect(1, warning="CharacterEncodingOverride", titles=["Café owners protest new rules"]),
    "rss2_utf16.xml": Expect(1, titles=["Zürich trams run again"]),
    "rss2_unknown_encoding.xml": Expect(1, warning="declared as x-klingon", titles=["Qapla wins the vote"]),
    "rss2_declared_utf16_sent_utf8.xml": Expect(error="declares encoding 'utf-16' but is single-byte"),
    "rss2_bom.xml": Expect(1, titles=["Byte order mark feed"]),
    "rss091_netscape_doctype.xml": Expect(1, titles=["An RSS 0.91 item"], summaries=["Classic."]),
    "atom_basic.atom": Expect(
        2,
        titles=["Typhoon makes landfall in the south", "Markets rally on trade deal"],
        published=["2026-03-01T20:00:00", "2026-03-02T01:00:00"],
        summaries=["Winds of 180 km/h were recorded near the coast.", "Shares rose across the region."],
        source="Asia-Pacific Desk",
    ),
    "atom_xhtml_content.atom": Expect(1, titles=["Election results are in"], summaries=["Turnout was high."]),
    "atom_relative_xml_base.atom": Expect(1, urls=["https://apdesk.example/section/story-9"]),
    "atom_updated_only.atom": Expect(1, published=["2026-02-27T20:00:00"]),
    "atom_multiple_links.atom": Expect(1, urls=["https://apdesk.example/podcast/ep1"]),
    "rdf_rss1.rdf": Expect(2, titles=["Central bank holds rates"], urls=["https://ledger.example/a"]),
    "rdf_dc_dates.rdf": Expect(1, published=["2026-03-01T14:30:00"]),
    "rss2_multilang.xml": Expect(3, langs=["fr", "de", "en"]),
    "rss2_duplicate_items.xml": Expect(
        2, urls=["https://www.harborherald.example/twice", "https://www.harborherald.example/twice"]
    ),
    "rss2_double_escaped_title.xml": Expect(1, titles=['Q&A: what the "new deal" means']),
    "rss2_whitespace_and_long_summary.xml": Expect(
        1, titles=["Title with odd whitespace"], urls=["https://www.harborherald.example/ws"]
    ),
    "rss2_feedburner_origlink.xml": Expect(
        1, urls=["https://gazette.example/2026/03/ferry-service-resumes/"], published=["2026-03-02T08:00:00"]
    ),
    "rss2_podcast_itunes.xml": Expect(1, urls=["https://www.harborherald.example/pod/12"]),
    "html_page_with_autodiscovery.html": Expect(
        error="got an HTML page, not a feed", suggestion="https://fixtures.example.org/feeds/all.rss"
    ),
    "html_page_no_feed.html": Expect(error="got an HTML page, not a feed"),
    "billion_laughs.xml": Expect(error="declares XML entities"),
    "external_entity_xxe.xml": Expect(error="declares XML entities"),
    "billion_laughs_utf16.xml": Expect(error="declares XML entities"),
    "entities_after_long_comment.xml": Expect(error="declares XML entities"),
    "empty.xml": Expect(error="empty"),
    "whitespace_only.xml": Expect(error="empty"),
    "not_a_feed.txt": Expect(error="not a feed"),
    "xml_not_a_feed.xml": Expect(error="not a feed"),
    "json_feed.json": Expect(error="JSON"),
}


def test_every_fixture_has_an_expectation() -> None:
    assert sorted(p.name for p in FIXTURES.iterdir()) == sorted(CASES)
    assert len(CASES) >= 30


@pytest.mark.parametrize("name", sorted(CASES), ids=sorted(CASES))
def test_fixture(name: str, langs: LanguageDetector) -> None:
    exp = CASES[name]
    body = (FIXTURES / name).read_bytes()
    if exp.error:
        with pytest.raises(FeedParseError) as info:
            parse_feed(body, FEED_URL)
        assert exp.error in info.value.message
        assert info.value.feed_url == FEED_URL
        assert info.value.suggestion == exp.suggestion
        return
    feed = parse_feed(body, FEED_URL)
    arts = [
        normalise_entry(
            e, feed, feed_key=FEED_URL, feed_url=FEED_URL, feed_name="", fetched_at=T0, langs=langs
        ).article
        for e in feed.entries
    ]
    assert len(arts) == exp.entries
    for want, art in zip(exp.titles, arts, strict=False):
        assert art.title.startswith(want)
    for want_url, art in zip(exp.urls, arts, strict=False):
        assert art.url == want_url
    for want_date, art in zip(exp.published, arts, strict=False):
        assert art.published == (T0 if want_date == "fetched" else datetime.fromisoformat(want_date + "+00:00"))
    for want_lang, art in zip(exp.langs, arts, strict=False):
        assert art.lang == want_lang
    for want_summary, art in zip(exp.summaries, arts, strict=False):
        assert art.summary == want_summary
    for want_host, art in zip(exp.hosts, arts, strict=False):
        assert art.source_host == want_host
    if exp.warning:
        assert any(exp.warning in w for w in feed.warnings), feed.warnings
    else:
        assert feed.warnings == []
    if exp.ttl_s is not None:
        assert feed.ttl_s == exp.ttl_s
    if exp.source is not None:
        assert {a.source for a in arts} == {exp.source}
    for art in arts:
        assert art.published <= T0
        assert art.published.tzinfo is not None
        assert art.title and "<" not in art.title
        assert art.feeds == [FEED_URL]
        assert len(art.id) == 32




@pytest.mark.parametrize(
    ("name", "content_type", "ok"),
    [
        ("atom_basic.atom", "text/html; charset=utf-8", True),
        ("rss2_basic.xml", "text/html", True),
        ("rdf_rss1.rdf", "text/html", True),
        ("html_page_no_feed.html", "application/rss+xml", False),
    ],
    ids=["atom-as-html", "rss-as-html", "rdf-as-html", "html-as-rss"],
)
def test_content_decides_not_the_content_type(name: str, content_type: str, ok: bool) -> None:
    body = (FIXTURES / name).read_bytes()
    if ok:
        assert parse_feed(body, FEED_URL, content_type=content_type).entries
    else:
        with pytest.raises(FeedParseError, match="HTML page"):
            parse_feed(body, FEED_URL, content_type=content_type)


def test_xhtml_page_with_xml_prolog_is_recognised() -> None:
    page = b'<?xml version="1.0"?>\n<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "x.dtd">\n<html><head>' \
        b'<link rel="alternate" type="application/atom+xml" href="https://x.example/atom"/></head></html>'
    with pytest.raises(FeedParseError) as info:
        parse_feed(page, FEED_URL)
    assert info.value.suggestion == "https://x.example/atom"
