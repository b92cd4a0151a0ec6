"""One poll of one feed: fetch -> parse -> normalise (-> full text), as plain data.

:class:`Poller` touches neither the bus nor the store; the service decides what to
publish and what state to keep from the :class:`PollOutcome` it returns. Every failure
comes back inside the outcome as a :class:`~storywatch.errors.FeedError` so that one
broken feed never stops the others.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ingest.fetch import Fetcher, FetchResult, Validators
from ingest.hosts import HostLimiter
from ingest.normalise import LanguageDetector, Normalised, normalise_entry
from ingest.parse import ParsedFeed, parse_feed
from ingest.schedule import FeedState
from ingest.urls import resolve_feed_url, url_host
from storywatch.clock import Clock
from storywatch.errors import FeedError, FeedParseError
from storywatch.logs import kv
from storywatch.settings.ingest import FeedSettings, IngestSettings

log = logging.getLogger("ingest.poll")


@dataclass(frozen=True, slots=True)
class FeedSpec:
    """A configured feed with its location resolved to a URL; ``key`` names it everywhere."""

    key: str
    name: str = ""
    interval_s: float | None = None
    full_text: bool = False
    enabled: bool = True

    @classmethod
    def from_settings(cls, feed: FeedSettings, base_dir: Path) -> FeedSpec:
        return cls(
            key=resolve_feed_url(feed.url, base_dir),
            name=feed.name,
            interval_s=feed.interval_s,
            full_text=feed.full_text,
            enabled=feed.enabled,
        )


@dataclass(slots=True)
class PollOutcome:
    spec: FeedSpec
    url: str
    fetched_at: datetime
    result: FetchResult | None = None
    parsed: ParsedFeed | None = None
    items: list[Normalised] = field(default_factory=list)
    error: FeedError | None = None
    elapsed_s: float = 0.0
    body_sha: str | None = None
    """Hash of the document; a body identical to the last one is not parsed again
    (servers without ETag or Last-Modified resend the same bytes)."""
    entry_marks: list[str] | None = None
    """Fingerprints of this document's entries; None when it was not parsed."""
    abandoned: bool = False
    """The fetcher was aborted (the service is stopping) before the poll finished: it
    did not happen, and the feed's state must not move."""

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def status(self) -> int | None:
        if self.result is not None:
            return self.result.status
        return getattr(self.error, "status", None)


class Poller:
    def __init__(
        self,
        settings: IngestSettings,
        fetcher: Fetcher,
        limiter: HostLimiter,
        clock: Clock,
        langs: LanguageDetector | None = None,
    ):
        self.settings = settings
        self.fetcher = fetcher
        self.limiter = limiter
        self.clock = clock
        self.langs = langs or LanguageDetector()

    def poll(
        self, spec: FeedSpec, state: FeedState, *, is_known: Callable[[str], bool] = lambda _id: False
    ) -> PollOutcome:
        """Poll ``spec`` from its current URL with its stored validators."""
        start = time.monotonic()
        out = PollOutcome(spec, state.url, self.clock.now())
        try:
            with self.limiter.slot(url_host(state.url)):
                out.result = self.fetcher.fetch(state.url, Validators(state.etag, state.last_modified))
            if out.result.body is not None:
                out.body_sha = hashlib.sha256(out.result.body).hexdigest()[:32]
            if out.result.body is not None and out.body_sha != state.body_sha:
                out.parsed = parse_feed(
                    out.result.body,
                    out.result.url,
                    content_type=out.result.content_type,
                    max_bytes=self.settings.max_body_bytes,
                    max_entries=self.settings.max_entries_per_feed,
                )
                out.items, out.entry_marks = self._normalise(
                    spec, out.parsed, out.result.url, out.fetched_at, set(state.entry_marks or ())
                )
                if spec.full_text:
                    out.items = [self._with_full_text(i, is_known) for i in out.items]
        except FeedError as exc:
            out.error = exc
        except Exception as exc:  # a bug or a library surprise must not stop the poller
            log.exception("unexpected error polling feed", extra=kv(feed_url=spec.key))
            out.error = FeedParseError(state.url, f"unexpected {type(exc).__name__}: {exc}")
        out.elapsed_s = time.monotonic() - start
        out.abandoned = self.fetcher.aborted
        return out

    def _normalise(
        self, spec: FeedSpec, parsed: ParsedFeed, url: str, fetched_at: datetime, known: set[str]
    ) -> tuple[list[Normalised], list[str]]:
        """Normalise the entries not in ``known`` (the marks of the feed's last document);
        return them and the marks of this document."""
        items = []
        marks = []
        for entry in parsed.entries:
            mark = entry_mark(entry)
            marks.append(mark)
            if mark in known:
                continue
            try:
                items.append(
                    normalise_entry(
                        entry,
                        parsed,
                        feed_key=spec.key,
                        feed_url=url,
                        feed_name=spec.name,
                        fetched_at=fetched_at,
                        langs=None,  # detected later, for published articles only
                    )
                )
            except (ValueError, TypeError) as exc:
                parsed.warnings.append(f"entry skipped: {exc}")
        return items, marks

    def _with_full_text(self, item: Normalised, is_known: Callable[[str], bool]) -> Normalised:
        """Replace a headline-only summary with the article page's main text (new articles only)."""
        art = item.article
        if not art.url or is_known(art.id):
            return item
        try:
            with self.limiter.slot(url_host(art.url)):
                page = self.fetcher.fetch(art.url, max_body_bytes=self.settings.full_text_max_bytes)
        except FeedError as exc:
            log.info("full text not fetched", extra=kv(feed_url=item.article.feeds[0], url=art.url, error=str(exc)))
            return item
        text = extract_text(page.body or b"", art.url)
        if not text or len(text) <= len(art.summary):
            return item
        summary = " ".join(text.split())[:4000]
        return Normalised(art.model_copy(update={"summary": summary}), item.title_key, item.declared_lang)


def entry_mark(entry: Any) -> str:
    """A short fingerprint of an entry as the feed sent it (GUID, link, title, summary).

    An entry whose mark was in the feed's previous document was handled then and is
    skipped; any change (a corrected headline, say) gives a new mark, so the seen-store
    still gets to decide whether it is an update.
    """
    parts = [str(entry.get(k) or "") for k in ("id", "link", "title", "summary")]
    return hashlib.blake2b("\x1f".join(parts).encode("utf-8", "replace"), digest_size=8).hexdigest()


def extract_text(html: bytes, url: str) -> str | None:
    """The main text of an article page (trafilatura), or None."""
    if not html:
        return None
    import trafilatura

    try:
        return trafilatura.extract(html, url=url, include_comments=False, include_tables=False, fast=True)
    except Exception:  # trafilatura raises assorted lxml errors on broken pages
        return None
