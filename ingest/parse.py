"""Turning fetched bytes into feed entries, refusing hostile or useless documents clearly.

feedparser only ever sees bytes we fetched (it must never fetch by itself). Before it
does, a few cheap checks catch what it would mishandle or make confusing:

- a DOCTYPE that declares entities: feedparser expands internal entities, so a
  "billion laughs" document would blow up memory; such documents are refused;
- an HTML page where a feed was expected: the error names the feed URL the page
  advertises (``<link rel="alternate" type="application/rss+xml">``) when it has one;
- empty and oversized documents.

A feed with XML errors ("bozo") keeps whatever entries feedparser recovered, and the
warning is recorded; only when nothing usable is left does parsing fail.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import feedparser
from selectolax.lexbor import LexborHTMLParser as HTMLParser

from storywatch.errors import FeedParseError

_SNIFF_BYTES = 64 * 1024
_ENTITY_DECL = re.compile(rb"<!ENTITY", re.IGNORECASE)
_DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)
_HTML_START = re.compile(
    rb"^\s*(<\?xml[^>]*>\s*)?(<!--.*?-->\s*)*(<!doctype\s+html|<html[\s>]|<head[\s>]|<body[\s>])", re.I | re.S
)
MAX_ATTRIBUTES = 256
_LONG_TAG = re.compile(rb"<[^<>]{2048,}>")
_ATTRIBUTE = re.compile(rb"""\s[^\s=<>/]+\s*=\s*["']""")
_FEED_ROOT = re.compile(rb"<(rss|feed|rdf:RDF|RDF)[\s>]")
_FEED_TYPES = ("application/rss+xml", "application/atom+xml", "application/rdf+xml", "application/feed+json")
_SY_PERIODS = {"hourly": 3600, "daily": 86400, "weekly": 7 * 86400, "monthly": 30 * 86400, "yearly": 365 * 86400}


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """The usable content of one feed document."""

    title: str
    link: str | None
    language: str | None
    entries: list[Any]
    """feedparser entries that have at least a title or a link."""
    ttl_s: float | None = None
    """How often the publisher says the feed changes (``<ttl>``, ``sy:updatePeriod``)."""
    warnings: list[str] = field(default_factory=list)
    version: str = ""


def parse_feed(
    body: bytes, feed_url: str, *, content_type: str = "", max_bytes: int = 10 * 1024 * 1024, max_entries: int = 500
) -> ParsedFeed:
    """Parse ``body`` fetched from ``feed_url``; raise :class:`FeedParseError` if unusable."""
    if len(body) > max_bytes:
        raise FeedParseError(feed_url, f"document of {len(body):,} bytes exceeds the {max_bytes:,}-byte limit")
    if not body.strip():
        raise FeedParseError(feed_url, "the document is empty; the server sent no feed")
    raw_head = body[:_SNIFF_BYTES].lstrip(b"\xef\xbb\xbf")
    view = _ascii_view(body)
    head = view[:_SNIFF_BYTES].lstrip(b"\xef\xbb\xbf")
    if _declares_entities(view):
        raise FeedParseError(
            feed_url,
            "the document declares XML entities in its DOCTYPE (an entity-expansion attack such as "
            "'billion laughs'?); refused without parsing",
        )
    if (flood := _attribute_flood(view)) is not None:
        raise FeedParseError(
            feed_url,
            f"an element carries {flood:,} attributes (more than {MAX_ATTRIBUTES}); refused without parsing, "
            "as the XML parser's time grows with the square of that number",
        )
    if head.lstrip()[:1] in (b"{", b"["):
        raise FeedParseError(
            feed_url, "got a JSON document (a JSON Feed?); storywatch reads RSS, Atom and RSS 1.0 (RDF) feeds"
        )
    # The content decides; a Content-Type of text/html only counts when no feed root is in sight
    # (plenty of servers label their feeds text/html).
    if _HTML_START.match(head) or (content_type.startswith("text/html") and not _FEED_ROOT.search(head[:4096])):
        suggestion = discover_feed(body, feed_url)
        hint = f"; the page advertises a feed at {suggestion}" if suggestion else "; look for the site's RSS link"
        raise FeedParseError(feed_url, "got an HTML page, not a feed" + hint, suggestion=suggestion)

    # No content-location: feedparser would "resolve" plain GUIDs such as "g1" into URLs.
    # Relative links are resolved against the feed URL in ingest.normalise instead.
    headers = {}
    if content_type:
        headers["content-type"] = content_type
    # No sanitising or URI rewriting inside HTML: every title and summary is reduced to
    # plain text (ingest.normalise.html_to_text), which drops scripts and markup anyway,
    # and feedparser's sanitiser is the largest part of its parsing time.
    try:
        parsed = feedparser.parse(body, response_headers=headers, sanitize_html=False, resolve_relative_uris=False)
    except Exception as exc:  # feedparser itself trips over some broken encoding declarations
        problem = _encoding_problem(raw_head)
        raise FeedParseError(
            feed_url, problem or f"the document cannot be parsed ({type(exc).__name__}: {exc})"
        ) from None
    warnings: list[str] = []
    if parsed.get("bozo"):
        bozo = parsed.get("bozo_exception")
        warnings.append(f"{type(bozo).__name__}: {bozo}" if bozo else "malformed XML")
    raw_entries = list(parsed.get("entries") or [])
    feed = parsed.get("feed") or {}
    if not parsed.get("version") and not raw_entries:
        bad_encoding = _encoding_problem(raw_head)
        if bad_encoding:
            raise FeedParseError(feed_url, f"{bad_encoding}; the publisher's encoding declaration is wrong")
        reason = warnings[0] if warnings else "no RSS, Atom or RDF root element"
        raise FeedParseError(feed_url, f"not a feed ({reason}); check that the URL points at the feed itself")
    entries = [e for e in raw_entries if (e.get("title") or "").strip() or (e.get("link") or "").strip()]
    skipped = len(raw_entries) - len(entries)
    if skipped:
        warnings.append(f"{skipped} entries without a title or a link were skipped")
    if raw_entries and not entries:
        raise FeedParseError(feed_url, f"none of the {len(raw_entries)} entries has a title or a link")
    if not raw_entries:
        warnings.append("the feed has no entries")
    if len(entries) > max_entries:
        warnings.append(f"only the first {max_entries} of {len(entries)} entries were kept")
        entries = entries[:max_entries]
    return ParsedFeed(
        title=_plain(feed.get("title") or ""),
        link=feed.get("link") or None,
        language=(feed.get("language") or None),
        entries=entries,
        ttl_s=_ttl(feed),
        warnings=warnings,
        version=parsed.get("version") or "",
    )


_DECLARED_ENCODING = re.compile(rb"""^<\?xml[^>]*?encoding\s*=\s*["']([^"'>]*)["']""")


def _encoding_problem(head: bytes) -> str | None:
    """Why the document cannot be decoded as the encoding it declares, if it cannot."""
    m = _DECLARED_ENCODING.match(head)
    if not m or head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return None
    name = m.group(1).decode("latin-1")
    if not re.fullmatch(r"[A-Za-z0-9._:-]+", name):
        return f"the document declares a malformed encoding name {name!r}"
    if name.lower().replace("-", "").startswith(("utf16", "utf32")) and b"\x00" not in head[:64]:
        return f"the document declares encoding {name!r} but is single-byte text (no NUL bytes)"
    try:
        head.decode(name)
    except LookupError:
        return f"the document declares an unknown encoding {name!r}"
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the sniffed head is not an error.
        if exc.start < len(head) - 4:
            return f"the document declares encoding {name!r} but is not valid {name} (byte {exc.start})"
    return None


_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
    (b"<\x00?\x00", "utf-16-le"),
    (b"\x00<\x00?", "utf-16-be"),
)


def _ascii_view(body: bytes) -> bytes:
    """``body`` as UTF-8 for sniffing: a UTF-16 or UTF-32 document is transcoded, so that
    the checks below cannot be dodged by sending the same markup in wide characters."""
    for bom, encoding in _BOMS:
        if body.startswith(bom):
            start = len(bom) if bom[0] in (0xFF, 0xFE) or bom[:2] == b"\x00\x00" else 0
            return body[start:].decode(encoding, "replace").encode("utf-8")
    return body


def _declares_entities(view: bytes) -> bool:
    """Whether any DOCTYPE in the document has an internal subset declaring entities.

    The whole document is searched, not just its start: a long comment must not be able
    to push the DOCTYPE past a sniffing window.
    """
    pos = 0
    while (start := _DOCTYPE.search(view, pos)) is not None:
        begin = start.start()
        bracket = view.find(b"[", begin)
        close = view.find(b">", begin)
        # Where the internal subset ends cannot be found reliably without parsing (a
        # quoted "]" may come first), so any entity declaration after its start counts.
        if bracket != -1 and (close == -1 or bracket < close) and _ENTITY_DECL.search(view, bracket):
            return True
        pos = begin + 9
    return False


def _attribute_flood(view: bytes) -> int | None:
    """The attribute count of the first start tag with more than ``MAX_ATTRIBUTES``, if any.

    feedparser looks each attribute up by name in a list, so one element with n
    attributes costs n^2 steps: 20,000 attributes (200 KB) took 18 s, a 10 MB document
    would hold the poller for hours. Only long tags are counted, so the check is linear.
    """
    for tag in _LONG_TAG.finditer(view):
        count = len(_ATTRIBUTE.findall(tag.group()))
        if count > MAX_ATTRIBUTES:
            return count
    return None


def discover_feed(html: bytes, page_url: str) -> str | None:
    """The first feed a page links to with ``<link rel="alternate" type="...rss+xml">``."""
    try:
        tree = HTMLParser(html[: 512 * 1024])
    except Exception:
        return None
    for node in tree.css("link[href]"):
        rel = (node.attributes.get("rel") or "").lower().split()
        kind = (node.attributes.get("type") or "").lower().split(";")[0].strip()
        href = node.attributes.get("href")
        if "alternate" in rel and kind in _FEED_TYPES and href:
            return urljoin(page_url, href.strip())
    return None


def _ttl(feed: Any) -> float | None:
    best: float | None = None
    ttl = str(feed.get("ttl") or "").strip()
    if ttl.isdigit():
        best = float(ttl) * 60
    period = _SY_PERIODS.get(str(feed.get("sy_updateperiod") or "").strip().lower())
    if period:
        freq = str(feed.get("sy_updatefrequency") or "1").strip()
        n = int(freq) if freq.isdigit() and int(freq) > 0 else 1
        best = max(best or 0.0, period / n)
    return best


def _plain(text: str) -> str:
    return " ".join(text.split())
