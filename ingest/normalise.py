"""From a feedparser entry to an :class:`~storywatch.schema.Article`: clean text, one URL,
a stable id, a UTC date, a language and a source.

The id is the hash of the canonical URL, so the same story from two feeds (or from one
feed that changes its GUIDs) gets one id; entries without a usable link fall back to the
GUID, then to title and feed.
"""

from __future__ import annotations

import calendar
import re
import threading
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from selectolax.lexbor import LexborHTMLParser as HTMLParser

from ingest.parse import ParsedFeed
from ingest.urls import canonical_url, stable_id, url_host
from storywatch.schema import Article

MAX_SUMMARY_CHARS = 4000
_WORDS = re.compile(r"\w+", re.UNICODE)
_BLOCK_END = re.compile(r"<(br|hr|/p|/div|/li|/h[1-6]|/tr|/td|/th|/blockquote|/section|/article)\b[^>]*>", re.I)


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def plain_text(value: str) -> str:
    """``value`` with control characters dropped and whitespace collapsed.

    Terminal escapes (ESC), bells and NULs in a headline would otherwise travel to email
    subjects, Slack messages and the dashboard.
    """
    return " ".join(_CONTROL.sub("", value).split())


def html_to_text(value: str) -> str:
    """Visible text of an HTML fragment, entities decoded, whitespace collapsed.

    >>> html_to_text("<p>Storm &amp; <b>floods</b></p><script>x()</script>")
    'Storm & floods'
    """
    if "<" not in value and "&" not in value:
        return plain_text(value)
    # Block boundaries become spaces; inline markup ("<b>noon</b>.") must not.
    tree = HTMLParser(_BLOCK_END.sub(r"\g<0> ", value))
    for node in tree.css("script, style, noscript, iframe, object"):
        node.decompose()
    root = tree.body or tree.root
    text = root.text(separator="") if root is not None else ""
    return plain_text(text)


def _text_of(entry: Any, key: str) -> str:
    value = entry.get(key) or ""
    detail = entry.get(f"{key}_detail") or {}
    kind = str(detail.get("type") or "text/html")
    if "html" in kind:
        return html_to_text(str(value))
    return plain_text(str(value))


def title_key(title: str, host: str) -> str:
    """The fingerprint of a headline at a host: case, accents and punctuation ignored."""
    folded = unicodedata.normalize("NFKD", title.casefold())
    words = _WORDS.findall("".join(c for c in folded if not unicodedata.combining(c)))
    return stable_id("title", " ".join(words), host)


class LanguageDetector:
    """py3langid behind a lazy, thread-safe load (the model takes about a second)."""

    def __init__(self, min_confidence: float = 0.6):
        self.min_confidence = min_confidence
        self._lock = threading.Lock()
        self._ident: Any = None

    def detect(self, text: str) -> tuple[str | None, float]:
        if len(text) < 12:
            return None, 0.0
        with self._lock:
            if self._ident is None:
                from py3langid.langid import MODEL_FILE, LanguageIdentifier

                self._ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
            lang, prob = self._ident.classify(text)
        return str(lang), float(prob)

    def language(self, text: str, declared: str | None) -> str | None:
        """Detected language if confident, else the feed's declared one, else None.

        Headlines are short and langid is often unsure of them ("Absolute link" is 5%
        English); a feed's ``<language>`` is the better guess then, and no answer is
        better than a wrong one.
        """
        lang, prob = self.detect(text)
        if lang and prob >= self.min_confidence:
            return lang
        if declared:
            return declared.strip().lower().replace("_", "-").split("-")[0][:3] or None
        return None


@dataclass(frozen=True, slots=True)
class Normalised:
    """An article plus the keys the seen-store deduplicates on."""

    article: Article
    title_key: str
    declared_lang: str | None = None
    """The feed's ``<language>``, for detecting the language later (see :func:`with_language`)."""


def entry_date(entry: Any) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        st = entry.get(key)
        if st:
            try:
                return datetime.fromtimestamp(calendar.timegm(st), UTC)
            except (OverflowError, ValueError, OSError):
                continue
    return None


def normalise_entry(
    entry: Any,
    feed: ParsedFeed,
    *,
    feed_key: str,
    feed_url: str,
    feed_name: str,
    fetched_at: datetime,
    langs: LanguageDetector | None,
) -> Normalised:
    """One entry as an Article; ``feed_key`` is the configured feed URL listed in ``feeds``.

    Without ``langs`` the language is left for :func:`with_language`, so that the
    service detects it only for the articles it publishes.
    """
    base = feed_url if not feed_url.startswith("file:") else (feed.link or feed_url)
    # FeedBurner-style proxies put a redirecting link in <link> and the article in origLink.
    link = str(entry.get("feedburner_origlink") or entry.get("link") or "").strip()
    url = canonical_url(link, base) if link else None
    guid = str(entry.get("id") or "").strip() or None
    title = _text_of(entry, "title")
    summary = _text_of(entry, "summary")[:MAX_SUMMARY_CHARS]
    if not title:
        title = summary[:140] or (url or "")
    host = url_host(url or "") or url_host(feed.link or "") or url_host(feed_url)
    if url:
        article_id = stable_id("url", url)
    elif guid:
        article_id = stable_id("guid", guid)
    else:
        article_id = stable_id("title", title, feed_key)
    published = entry_date(entry) or fetched_at
    if published > fetched_at:
        published = fetched_at
    article = Article(
        id=article_id,
        url=url,
        guid=guid,
        title=title,
        summary=summary,
        published=published,
        fetched_at=fetched_at,
        source=feed_name or feed.title or host,
        source_host=host,
        feeds=[feed_key],
        lang=langs.language(f"{title}. {summary[:500]}", feed.language) if langs else None,
    )
    return Normalised(article, title_key(title, host), feed.language)


def with_language(article: Article, declared: str | None, langs: LanguageDetector) -> Article:
    """``article`` with its language detected from title and summary (or the feed's)."""
    if article.lang:
        return article
    lang = langs.language(f"{article.title}. {article.summary[:500]}", declared)
    return article.model_copy(update={"lang": lang}) if lang else article
