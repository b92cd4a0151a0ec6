"""The seen-store: which articles were already published, so each is published once.

Publishers resend old items, change GUIDs, and syndicate the same story into several
feeds. An article is recognised by its id (the hash of its canonical URL, see
:mod:`ingest.normalise`) and by its headline at its host. A known article whose headline
changed is published again as ``kind="update"``; anything else known is dropped, and
only the list of feeds it came through grows.

Deciding (:meth:`SeenStore.decide`) only reads the store; the decisions are written by
:meth:`SeenStore.commit` after the bus accepted the articles, inside the same store
transaction as the feed state, so a crash between the two re-publishes (consumers
deduplicate by id) rather than loses. The store is bounded: beyond ``capacity`` the
oldest entries are evicted.

Namespaces: ``ingest.seen`` (id -> record), ``ingest.seen_title`` (headline key -> id),
``ingest.seen_order`` (sequence -> id, for eviction), ``ingest.seen_meta``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ingest.normalise import Normalised
from storywatch.schema import Article
from storywatch.store.base import Store

NS_SEEN = "ingest.seen"
NS_TITLE = "ingest.seen_title"
NS_ORDER = "ingest.seen_order"
NS_META = "ingest.seen_meta"


@dataclass
class Decisions:
    """What to publish, and what to remember once it is published."""

    publish: list[Article] = field(default_factory=list)
    seen: dict[str, dict[str, Any]] = field(default_factory=dict)
    titles: dict[str, str] = field(default_factory=dict)
    new_ids: list[str] = field(default_factory=list)
    duplicates: int = 0

    @property
    def new_count(self) -> int:
        return sum(1 for a in self.publish if a.kind == "article")


def merge_batch(items: list[Normalised]) -> list[Normalised]:
    """Collapse one batch (possibly from several feeds) so each article appears once,
    listing every feed it came from. Order of first appearance is kept."""
    by_id: dict[str, int] = {}
    by_title: dict[str, int] = {}
    out: list[Normalised] = []
    for item in items:
        idx = by_id.get(item.article.id)
        if idx is None:
            idx = by_title.get(item.title_key)
        if idx is None:
            by_id[item.article.id] = by_title[item.title_key] = len(out)
            out.append(item)
            continue
        kept = out[idx]
        feeds = kept.article.feeds + [f for f in item.article.feeds if f not in kept.article.feeds]
        out[idx] = Normalised(kept.article.model_copy(update={"feeds": feeds}), kept.title_key, kept.declared_lang)
        by_id.setdefault(item.article.id, idx)
    return out


class SeenStore:
    def __init__(self, store: Store, capacity: int):
        self.store = store
        self.capacity = capacity

    def _resolve(self, article_id: str) -> tuple[str, dict[str, Any]] | None:
        doc = self.store.get(NS_SEEN, article_id)
        if doc is not None and doc.get("alias_of"):
            target = str(doc["alias_of"])
            main = self.store.get(NS_SEEN, target)
            return (target, main) if main is not None else None
        return (article_id, doc) if doc is not None else None

    def decide(self, items: list[Normalised], now: datetime) -> Decisions:
        """Which of ``items`` to publish (new, or updated headline); reads only."""
        d = Decisions()
        for item in merge_batch(items):
            art = item.article
            found = self._resolve(art.id)
            if found is None:
                tid = d.titles.get(item.title_key) or (self.store.get(NS_TITLE, item.title_key) or {}).get("id")
                if tid and tid != art.id and (tid in d.seen or self._resolve(str(tid)) is not None):
                    # Same headline at the same host under another URL or GUID: a resend.
                    d.duplicates += 1
                    d.seen[art.id] = {"alias_of": tid, "first_seen": now.isoformat()}
                    d.new_ids.append(art.id)
                    self._add_feeds(d, str(tid), art.feeds)
                    continue
                d.publish.append(art)
                d.seen[art.id] = {
                    "title_key": item.title_key,
                    "title": art.title,
                    "feeds": list(art.feeds),
                    "first_seen": now.isoformat(),
                }
                d.titles[item.title_key] = art.id
                d.new_ids.append(art.id)
                continue
            main_id, doc = found
            doc = dict(d.seen.get(main_id) or doc)
            feeds = list(doc.get("feeds") or [])
            feeds += [f for f in art.feeds if f not in feeds]
            changed = doc.get("title_key") != item.title_key and bool(art.title)
            if changed:
                d.publish.append(art.model_copy(update={"id": main_id, "kind": "update", "feeds": feeds}))
                doc.update(title_key=item.title_key, title=art.title)
                d.titles[item.title_key] = main_id
            else:
                d.duplicates += 1
            if changed or feeds != doc.get("feeds"):
                doc["feeds"] = feeds
                d.seen[main_id] = doc
        return d

    def _add_feeds(self, d: Decisions, main_id: str, feeds: list[str]) -> None:
        doc = d.seen.get(main_id) or self.store.get(NS_SEEN, main_id)
        if doc is None:
            return
        have = list(doc.get("feeds") or [])
        extra = [f for f in feeds if f not in have]
        if extra:
            d.seen[main_id] = {**doc, "feeds": have + extra}

    def commit(self, d: Decisions) -> None:
        """Remember ``d`` (call inside the caller's store transaction, after the bus flush)."""
        if not d.seen:
            return
        with self.store.transaction():
            meta = self.store.get(NS_META, "seq") or {"next": 0}
            seq = int(meta["next"])
            for key, doc in d.seen.items():
                self.store.put(NS_SEEN, key, doc)
            for tkey, article_id in d.titles.items():
                self.store.put(NS_TITLE, tkey, {"id": article_id})
            for article_id in d.new_ids:
                self.store.put(NS_ORDER, f"{seq:016d}", {"id": article_id})
                seq += 1
            self.store.put(NS_META, "seq", {"next": seq})
            self._evict()

    def _evict(self) -> None:
        excess = self.store.count(NS_ORDER) - self.capacity
        if excess <= 0:
            return
        for key, doc in list(self.store.scan(NS_ORDER, limit=excess)):
            article_id = str(doc.get("id"))
            seen = self.store.get(NS_SEEN, article_id)
            if seen and seen.get("title_key"):
                title = self.store.get(NS_TITLE, seen["title_key"])
                if title and title.get("id") == article_id:
                    self.store.delete(NS_TITLE, seen["title_key"])
            self.store.delete(NS_SEEN, article_id)
            self.store.delete(NS_ORDER, key)

    def __len__(self) -> int:
        return self.store.count(NS_ORDER)
