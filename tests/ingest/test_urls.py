"""Canonical article URLs: a table of real-world shapes, and properties over arbitrary URLs."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.urls import TRACKING_PARAMS, canonical_url, is_tracking_param, resolve_feed_url, url_host

CASES = [
    ("https://Example.COM/a", None, "https://example.com/a"),
    ("https://example.com:443/a", None, "https://example.com/a"),
    ("http://example.com:8080/a", None, "http://example.com:8080/a"),
    ("https://example.com/a#section-2", None, "https://example.com/a"),
    ("https://example.com/a?utm_source=rss&utm_medium=feed", None, "https://example.com/a"),
    ("https://example.com/a?id=1&fbclid=x&gclid=y", None, "https://example.com/a?id=1"),
    ("https://example.com/a?mc_cid=1&mc_eid=2&ref=home&page=2", None, "https://example.com/a?page=2"),
    ("https://example.com/a?UTM_Campaign=x", None, "https://example.com/a"),
    ("https://example.com/a?b=2&a=1", None, "https://example.com/a?b=2&a=1"),
    ("https://example.com", None, "https://example.com/"),
    ("https://example.com/caf%C3%A9", None, "https://example.com/caf%C3%A9"),
    ("https://example.com/café", None, "https://example.com/caf%C3%A9"),
    ("/world/1", "https://news.example/feeds/rss.xml", "https://news.example/world/1"),
    ("story.html", "https://news.example/feeds/rss.xml", "https://news.example/feeds/story.html"),
    ("//cdn.example/x", "https://news.example/rss", "https://cdn.example/x"),
    ("  https://example.com/padded  ", None, "https://example.com/padded"),
    ("mailto:someone@example.com", None, None),
    ("javascript:alert(1)", None, None),
    ("ftp://example.com/file", None, None),
    ("", None, None),
    ("https://", None, None),
    ("https://exa mple.com:99999/", None, None),
]


@pytest.mark.parametrize(("url", "base", "expected"), CASES, ids=[f"{i}-{c[0][:30]}" for i, c in enumerate(CASES)])
def test_canonical_url(url: str, base: str | None, expected: str | None) -> None:
    assert canonical_url(url, base) == expected


def test_url_host() -> None:
    assert url_host("https://WWW.Example.com/a") == "example.com"
    assert url_host("file:///tmp/x.xml") == ""


def test_resolve_feed_url(tmp_path: Path) -> None:
    assert resolve_feed_url("https://a.example/rss", tmp_path) == "https://a.example/rss"
    assert resolve_feed_url("feeds/x.xml", tmp_path) == (tmp_path / "feeds/x.xml").as_uri()
    assert resolve_feed_url(str(tmp_path / "y.xml"), Path("/elsewhere")) == (tmp_path / "y.xml").as_uri()


# -- properties ---------------------------------------------------------------------

_hosts = st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,10}(\.[A-Za-z]{2,5}){1,2}", fullmatch=True)
_segment = st.text(st.characters(codec="utf-8", exclude_characters="/?#\x00"), max_size=8)
_key = st.one_of(st.sampled_from(sorted(TRACKING_PARAMS)), st.from_regex(r"(utm_|pk_)?[a-z]{1,6}", fullmatch=True))
_value = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=6)


@st.composite
def urls(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["http", "https", "HTTPS"]))
    host = draw(_hosts)
    port = draw(st.sampled_from(["", ":80", ":443", ":8080"]))
    path = "/".join(draw(st.lists(_segment, max_size=4)))
    params = draw(st.lists(st.tuples(_key, _value), max_size=5))
    from urllib.parse import quote

    query = "&".join(f"{quote(k)}={quote(v)}" for k, v in params)
    frag = draw(st.sampled_from(["", "#top", "#x?utm_source=1"]))
    return f"{scheme}://{host}{port}/{quote(path, safe='/')}" + (f"?{query}" if query else "") + frag


@settings(max_examples=150, deadline=None)
@given(urls())
def test_canonicalisation_is_idempotent(url: str) -> None:
    once = canonical_url(url)
    assert once is not None
    assert canonical_url(once) == once


@settings(max_examples=150, deadline=None)
@given(urls())
def test_tracking_params_and_fragments_never_survive(url: str) -> None:
    out = canonical_url(url)
    assert out is not None
    parts = urlsplit(out)
    assert not parts.fragment
    assert not any(is_tracking_param(k) for k, _ in parse_qsl(parts.query, keep_blank_values=True))
    assert parts.hostname == parts.hostname.lower()  # type: ignore[union-attr]
    assert parts.port not in (80, 443) or (parts.scheme, parts.port) in (("http", 443), ("https", 80))


@settings(max_examples=100, deadline=None)
@given(urls(), st.lists(st.tuples(st.sampled_from(["utm_source", "fbclid", "gclid", "mc_eid"]), _value), max_size=3))
def test_adding_tracking_params_does_not_change_the_canonical_url(url: str, extra: list[tuple[str, str]]) -> None:
    from urllib.parse import quote

    base = url.split("#")[0]
    sep = "&" if "?" in base else "?"
    tracked = base + (sep + "&".join(f"{k}={quote(v)}" for k, v in extra) if extra else "")
    assert canonical_url(tracked) == canonical_url(url)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=60), st.one_of(st.none(), urls()))
def test_never_raises_on_junk(junk: str, base: str | None) -> None:
    out = canonical_url(junk, base)
    assert out is None or out.startswith(("http://", "https://"))
