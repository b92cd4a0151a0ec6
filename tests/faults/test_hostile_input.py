"""Hostile input: whatever a feed server or a config file holds, the fetch -> parse ->
normalise path and the config loader raise only their documented errors, finish in
bounded time and use bounded memory.

Deadlines are generous (seconds, for a shared CI machine): they catch hangs and
super-linear blow-ups, not slowness.
"""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.normalise import normalise_entry
from ingest.parse import parse_feed
from ingest.urls import canonical_url, url_host
from storywatch.errors import ConfigError, FeedParseError
from storywatch.settings import load_settings

URL = "https://hostile.example/feed.xml"
T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
PEAK_BYTES = 64 * 1024 * 1024
FUZZ = settings(
    max_examples=25,
    deadline=timedelta(seconds=10),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def parse_and_normalise(body: bytes) -> None:
    """The ingest path after fetch, as the service runs it (without the network)."""
    try:
        feed = parse_feed(body, URL, content_type="application/rss+xml")
    except FeedParseError:
        return
    for entry in feed.entries:
        normalise_entry(entry, feed, feed_key=URL, feed_url=URL, feed_name="", fetched_at=T0, langs=None)


def bounded(fn: Any, *args: Any) -> None:
    tracemalloc.start()
    try:
        fn(*args)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < PEAK_BYTES, f"peak memory {peak:,} bytes"


_names = st.sampled_from(["rss", "channel", "item", "title", "link", "description", "feed", "entry", "guid",
                          "summary", "content", "a", "b", "script", "pubDate", "x:y"])
_text = st.text(max_size=30).map(lambda s: s.replace("<", "&lt;"))


def _element(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(
        lambda name, attr, kids: f"<{name}{attr}>{''.join(kids)}</{name}>",
        _names,
        st.one_of(st.just(""), st.builds(lambda v: f' href="{v}"', _text)),
        st.lists(children, max_size=4),
    )


xmlish = st.recursive(_text, _element, max_leaves=40).map(
    lambda d: f'<?xml version="1.0"?><rss version="2.0">{d}</rss>'
)


@FUZZ
@given(st.binary(max_size=4096))
def test_arbitrary_bytes(body: bytes) -> None:
    bounded(parse_and_normalise, body)


@FUZZ
@given(xmlish)
def test_arbitrary_xmlish_documents(doc: str) -> None:
    bounded(parse_and_normalise, doc.encode())


def _item(title: str, link: str, extra: str = "") -> str:
    return f"<item><title>{title}</title><link>{link}</link>{extra}</item>"


def _rss(items: str) -> bytes:
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{items}</channel></rss>'.encode()


HUGE = 2_000_000
EXTREMES = {
    "huge-attribute": _rss(_item("a", "https://x.example/1", f'<enclosure url="{"A" * HUGE}" type="x"/>')),
    "huge-title": _rss(_item("T" * HUGE, "https://x.example/2")),
    "huge-link": _rss(_item("t", "https://x.example/" + "p" * HUGE)),
    "deep-nesting-10k": _rss("<item><title>deep</title><description>" + "<div>" * 10_000 + "x"
                             + "</div>" * 10_000 + "</description></item>"),
    "deep-unclosed-10k": _rss("<item>" + "<a>" * 10_000),
    "many-attributes": _rss(_item("t", "https://x.example/3", "<x "
                            + " ".join(f"a{i}='v'" for i in range(200_000)) + "/>")),
    "many-items": _rss("".join(_item(f"t{i}", f"https://x.example/{i}") for i in range(5_000))),
    "entity-bomb": b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
                   b"<rss><channel><item><title>&b;</title></item></channel></rss>",
    "external-entity": b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                       b"<rss><channel><item><title>&x;</title></item></channel></rss>",
    "nul-and-controls": _rss(_item("a\x00b\x01c\x1b[31m", "https://x.example/4")),
    "script-in-cdata": _rss(_item("<![CDATA[<script>alert(1)</script>hi]]>", "javascript:alert(1)")),
}


@pytest.mark.parametrize("body", list(EXTREMES.values()), ids=list(EXTREMES))
def test_extreme_documents(body: bytes) -> None:
    bounded(parse_and_normalise, body)


@pytest.mark.parametrize(
    ("name", "reason"), [("external-entity", "entit"), ("entity-bomb", "entit"), ("many-attributes", "attributes")]
)
def test_refused_without_parsing(name: str, reason: str) -> None:
    with pytest.raises(FeedParseError, match=reason):
        parse_feed(EXTREMES[name], URL)


@FUZZ
@given(st.text(max_size=300), st.one_of(st.none(), st.text(max_size=60)))
def test_urls_never_crash(url: str, base: str | None) -> None:
    out = canonical_url(url, base)
    assert out is None or out.startswith(("http://", "https://"))
    url_host(url)


yaml_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20)),
    lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=12), kids, max_size=4)),
    max_leaves=20,
)
SECTIONS = ["bus", "store", "ingest", "enrich", "alerts", "feeds", "topics", "log", "http", "include"]


def load_or_config_error(path: Path) -> None:
    try:
        load_settings(path, environ={})
    except ConfigError as exc:
        assert str(exc)


@FUZZ
@given(st.dictionaries(st.sampled_from(SECTIONS), yaml_values, max_size=5))
def test_config_with_arbitrary_values(tmp_path_factory: pytest.TempPathFactory, data: dict[str, Any]) -> None:
    path = tmp_path_factory.mktemp("cfg") / "storywatch.yaml"
    path.write_text(yaml.safe_dump(data))
    bounded(load_or_config_error, path)


@FUZZ
@given(st.text(max_size=500))
def test_config_with_arbitrary_text(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    path = tmp_path_factory.mktemp("cfg") / "storywatch.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    bounded(load_or_config_error, path)


YAML_EXTREMES = {
    "alias-bomb": "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                  "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                  "bus: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n",
    "deep-nesting": "bus: " + "[" * 1500 + "]" * 1500 + "\n",
    "python-tag": "bus: !!python/object/apply:os.system ['echo pwned']\n",
    "binary-bytes": "\x00\x01\xff",
    "self-include": "include: [storywatch.yaml]\n",
    "secret-literal": "alerts: {channels: {s: {kind: slack, webhook_url: 'https://hooks.slack.com/T/B/literal'}}}\n",
    "huge-string": "log: {level: " + "x" * 1_000_000 + "}\n",
}


@pytest.mark.parametrize("text", list(YAML_EXTREMES.values()), ids=list(YAML_EXTREMES))
def test_config_extremes(tmp_path: Path, text: str) -> None:
    path = tmp_path / "storywatch.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    # Memory is traced only where it is the risk: tracing every allocation of a
    # thousand-frame recursion or a megabyte scan costs minutes.
    if "bomb" in text or "&a" in text:
        bounded(load_or_config_error, path)
    else:
        load_or_config_error(path)
