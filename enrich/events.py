"""Story events: decide, after each assignment, whether a story changed materially.

Alerts follow stories, not articles, so a story's revision goes up only when something
an analyst would care about happened, and every event carries the revision:

- ``created``: the story's first article (revision 1).
- ``matched``: the story newly reaches a watched topic's threshold (its best article
  score, :func:`enrich.topics.best_scores`); one event per topic, once per story.
- ``updated``: ``changes`` says what: ``new_sources`` (independent sources grew by
  ``source_step`` since the last revision, or reached a matched topic's ``min_sources``),
  ``new_articles`` (reached a matched topic's ``min_articles``), ``velocity_jump``
  (articles per hour at least ``velocity_jump_factor`` times the last revision's),
  ``new_entities`` (``entities_step`` key entities never shown before).
- ``emerging``: velocity and independent sources far above the rolling baseline of all
  stories, watched topic or not; once per story.
- ``merged``: another story was absorbed into this one.

A source is *independent* when it contributed an article that was not a near-copy of one
already in the story (syndicated wire copy does not count twice).

:class:`StoryEvents` is plain data in, events out: per story it keeps what was last
published (a JSON-able ledger), so the service can snapshot it next to the clusterer's
state and a replay from a snapshot gives the same events.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from enrich.cluster import Assignment
from enrich.story import StoryState
from enrich.topics import TopicScore, best_scores
from storywatch.schema import ArticleRef, StoryEvent, StorySnapshot, TopicMatch
from storywatch.settings.enrich import EventSettings, WatchedTopic

STATE_VERSION = 1
_MAX_SEEN_ENTITIES = 200
_MAX_RETITLED = 16
_PRUNE_EVERY = 500


@dataclass(frozen=True)
class ArticleInfo:
    """What the events need of one article; ``at`` is the event time (when it was fetched)."""

    id: str
    title: str
    at: datetime
    url: str | None = None
    source: str = ""
    published: datetime | None = None
    lead: str = ""


class StoryEvents:
    """Per-story ledgers and the rolling baseline; see the module docstring.

    >>> events = StoryEvents(EventSettings(), topics)            # doctest: +SKIP
    >>> events.on_assignment(assignment, info, matcher.score(text, vec))  # doctest: +SKIP
    [StoryEvent(type='created', ...)]
    """

    def __init__(self, settings: EventSettings, topics: Iterable[WatchedTopic]):
        self.cfg = settings
        self.topics = {t.name: t for t in topics}
        self.ledgers: dict[str, dict[str, Any]] = {}
        self.changed: set[str] = set()
        """Ids of the ledgers created or changed since the owner last cleared this (snapshots)."""
        self.article_story: dict[str, str] = {}
        self.touched: set[str] | None = set()
        """Ids of :attr:`article_story` added or dropped since the owner last reset this (snapshots)."""
        self.aliases: dict[str, str] = {}
        self.baseline: dict[str, float] = {"n": 0, "velocity": 0.0, "sources": 0.0}
        self.now: datetime | None = None
        self._since_prune = 0

    # -- the decision ------------------------------------------------------------------

    def on_assignment(
        self, assignment: Assignment, article: ArticleInfo, scores: Sequence[TopicScore]
    ) -> list[StoryEvent]:
        """Fold one assignment into the ledgers and return the events it causes, in order."""
        story = assignment.story
        sid = assignment.story_id
        self.now = article.at if self.now is None else max(self.now, article.at)
        ledger = self.ledgers.get(sid)
        self.changed.add(sid)
        kinds: list[tuple[str, dict[str, Any]]] = []
        if ledger is None:
            ledger = self.ledgers[sid] = _new_ledger()
            if assignment.created:
                kinds.append(("created", {}))
        for gone in assignment.merged_from:
            if gone == sid:
                continue
            self.aliases[gone] = sid
            absorbed = self.ledgers.pop(gone, None)
            if absorbed is not None:
                _absorb(ledger, absorbed)
            kinds.append(("merged", {"merged_from": gone}))
        self.article_story[article.id] = sid
        if self.touched is not None:
            self.touched.add(article.id)
        ledger["last_at"] = article.at.isoformat()
        if not assignment.is_near_duplicate and article.source:
            _add_unique(ledger["independent"], article.source)
        _add_ref(ledger, article, self.cfg.top_articles)
        if not ledger["lead"] and article.lead:
            ledger["lead"] = article.lead

        best = best_scores(scores, {k: _score_from(v) for k, v in ledger["topics"].items()})
        ledger["topics"] = {k: _score_to(v) for k, v in best.items()}
        matched_now = {k for k, s in best.items() if s.matched and k in self.topics}
        new_matches = sorted(matched_now - set(ledger["matched"]))
        for name in new_matches:
            ledger["matched"].append(name)
            kinds.append(("matched", {"topic": name}))

        changes = [] if kinds and kinds[0][0] == "created" else self._changes(ledger, story, new_matches)
        if changes:
            kinds.append(("updated", {"changes": changes}))
        if self._emerging(ledger, story):
            ledger["emerging"] = True
            kinds.append(("emerging", {}))
        self._update_baseline(ledger, story)
        self._maybe_prune()
        if not kinds:
            return []
        return self._publish(sid, ledger, story, article, kinds)

    def _changes(self, ledger: dict[str, Any], story: StoryState, new_matches: list[str]) -> list[str]:
        cfg, pub = self.cfg, ledger["published"]
        changes = []
        independent = len(ledger["independent"])
        new_ready = self._newly_ready(ledger, story, new_matches)
        if independent - pub["independent"] >= cfg.source_step or "sources" in new_ready:
            changes.append("new_sources")
        if "articles" in new_ready:
            changes.append("new_articles")
        velocity = story.velocity
        if velocity >= cfg.velocity_jump_min and velocity >= cfg.velocity_jump_factor * pub["velocity"]:
            changes.append("velocity_jump")
        fresh = [e for e in story.entities if e not in ledger["seen_entities"]]
        if pub["revision_entities"] and len(fresh) >= cfg.entities_step:
            changes.append("new_entities")
        return changes

    def _newly_ready(self, ledger: dict[str, Any], story: StoryState, new_matches: list[str]) -> set[str]:
        """Which thresholds (sources, articles) a matched topic crossed since the last revision.

        A topic matched by this very article is ready silently: its ``matched`` event says it.
        """
        out = set()
        for name in ledger["matched"]:
            topic = self.topics.get(name)
            if topic is None or name in ledger["ready"]:
                continue
            if story.source_count >= topic.min_sources and story.article_count >= topic.min_articles:
                ledger["ready"].append(name)
                if name in new_matches:
                    continue
                if topic.min_sources > 1:
                    out.add("sources")
                if topic.min_articles > 1:
                    out.add("articles")
        return out

    def _emerging(self, ledger: dict[str, Any], story: StoryState) -> bool:
        cfg, base = self.cfg, self.baseline
        if ledger["emerging"] or base["n"] < cfg.emerging_warmup:
            return False
        independent = len(ledger["independent"])
        return (
            story.velocity >= max(cfg.emerging_min_velocity, cfg.emerging_factor * base["velocity"])
            and independent >= max(cfg.emerging_min_sources, cfg.emerging_factor * base["sources"])
        )

    def _update_baseline(self, ledger: dict[str, Any], story: StoryState) -> None:
        """Exponential moving averages, per article, of its story's velocity and sources."""
        base = self.baseline
        alpha = 1.0 - 0.5 ** (1.0 / self.cfg.baseline_half_life)
        n = int(base["n"])
        weight = max(alpha, 1.0 / (n + 1))
        base["velocity"] += weight * (story.velocity - base["velocity"])
        base["sources"] += weight * (len(ledger["independent"]) - base["sources"])
        base["n"] = n + 1

    def _publish(
        self,
        sid: str,
        ledger: dict[str, Any],
        story: StoryState,
        article: ArticleInfo,
        kinds: list[tuple[str, dict[str, Any]]],
    ) -> list[StoryEvent]:
        ledger["revision"] += 1
        pub = ledger["published"]
        pub["independent"] = len(ledger["independent"])
        pub["velocity"] = story.velocity
        pub["revision_entities"] = True
        for e in story.entities:
            _add_unique(ledger["seen_entities"], e, _MAX_SEEN_ENTITIES)
        snapshot = self.snapshot(sid, ledger, story)
        matches = [self._match(name, ledger) for name in ledger["matched"] if name in self.topics]
        out = []
        for kind, extra in kinds:
            topic = extra.get("topic")
            out.append(
                StoryEvent(
                    type=kind,  # type: ignore[arg-type]
                    story_id=sid,
                    revision=ledger["revision"],
                    at=article.at,
                    story=snapshot,
                    changes=list(extra.get("changes", [])),
                    match=self._match(topic, ledger) if topic else None,
                    matches=matches,
                    merged_from=extra.get("merged_from"),
                    article_id=article.id,
                )
            )
        return out

    def _match(self, name: str, ledger: dict[str, Any]) -> TopicMatch:
        return _score_from(ledger["topics"][name]).to_match(self.topics[name])

    def snapshot(self, sid: str, ledger: dict[str, Any], story: StoryState) -> StorySnapshot:
        retitled = {o: n for o, n in ledger["retitled"]}
        headline = retitled.get(story.headline, story.headline)
        return StorySnapshot(
            story_id=sid,
            revision=ledger["revision"],
            headline=headline,
            summary=ledger["lead"],
            key_terms=list(story.key_terms),
            entities=list(story.entities),
            first_seen=story.first_seen,
            last_seen=story.last_seen,
            article_count=story.article_count,
            source_count=story.source_count,
            sources=list(story.sources),
            velocity=round(story.velocity, 4),
            top_articles=[ArticleRef.model_validate(r) for r in ledger["refs"]],
        )

    # -- title updates, merges, housekeeping -------------------------------------------

    def story_of(self, article_id: str) -> str | None:
        sid = self.article_story.get(article_id)
        return None if sid is None else self.resolve(sid)

    def resolve(self, story_id: str) -> str:
        seen = set()
        while story_id in self.aliases and story_id not in seen:
            seen.add(story_id)
            story_id = self.aliases[story_id]
        return story_id

    def on_title_update(self, article_id: str, title: str) -> bool:
        """An article was retitled: show the new title wherever the story shows the old one.

        Not a material change (no event); the next revision carries it. False when the
        article is unknown (the caller then treats it as a new article).
        """
        sid = self.story_of(article_id)
        ledger = self.ledgers.get(sid) if sid else None
        if sid is None or ledger is None:
            return False
        self.changed.add(sid)
        for ref in ledger["refs"]:
            if ref["id"] == article_id and ref["title"] != title:
                old = ref["title"]
                pairs = [[o, title if n == old else n] for o, n in ledger["retitled"] if o != old]
                ledger["retitled"] = [*pairs, [old, title]][-_MAX_RETITLED:]
                ref["title"] = title
        return True

    def _maybe_prune(self) -> None:
        self._since_prune += 1
        if self._since_prune < _PRUNE_EVERY or self.now is None:
            return
        self._since_prune = 0
        horizon = (self.now - timedelta(seconds=self.cfg.story_ttl_s)).isoformat()
        # ISO strings of aware UTC datetimes compare in time order.
        gone = {sid for sid, led in self.ledgers.items() if led["last_at"] < horizon}
        for sid in gone:
            del self.ledgers[sid]
        kept = {a: s for a, s in self.article_story.items() if self.resolve(s) in self.ledgers}
        if self.touched is not None:
            self.touched.update(a for a in self.article_story if a not in kept)
            if len(self.touched) > len(kept):  # never saved (no owner resets it): keep it bounded
                self.touched = None
        self.article_story = kept
        self.aliases = {a: s for a, s in self.aliases.items() if self.resolve(s) in self.ledgers}

    # -- snapshot ----------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "ledgers": self.ledgers,
            "article_story": self.article_story,
            "aliases": self.aliases,
            "baseline": self.baseline,
            "now": self.now.isoformat() if self.now else None,
            "since_prune": self._since_prune,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported events state version {state.get('version')!r}")
        self.ledgers = state["ledgers"]
        self.changed = set(self.ledgers)
        self.article_story = state["article_story"]
        self.touched = set()
        self.aliases = state["aliases"]
        self.baseline = state["baseline"]
        self.now = datetime.fromisoformat(state["now"]) if state["now"] else None
        self._since_prune = int(state.get("since_prune", 0))


def _new_ledger() -> dict[str, Any]:
    return {
        "revision": 0,
        "published": {"independent": 0, "velocity": 0.0, "revision_entities": False},
        "independent": [],
        "seen_entities": [],
        "refs": [],
        "lead": "",
        "topics": {},
        "matched": [],
        "ready": [],
        "emerging": False,
        "retitled": [],
        "last_at": "",
    }


def _absorb(keep: dict[str, Any], gone: dict[str, Any]) -> None:
    keep["revision"] = max(keep["revision"], gone["revision"])
    for s in gone["independent"]:
        _add_unique(keep["independent"], s)
    for e in gone["seen_entities"]:
        _add_unique(keep["seen_entities"], e, _MAX_SEEN_ENTITIES)
    for name, sc in gone["topics"].items():
        mine = keep["topics"].get(name)
        if mine is None or (sc["gate"] is None, sc["score"]) > (mine["gate"] is None, mine["score"]):
            keep["topics"][name] = sc
    for key in ("matched", "ready"):
        for name in gone[key]:
            _add_unique(keep[key], name)
    keep["emerging"] = keep["emerging"] or gone["emerging"]
    keep["lead"] = keep["lead"] or gone["lead"]
    keep["retitled"] = (keep["retitled"] + gone["retitled"])[-_MAX_RETITLED:]
    keep["last_at"] = max(keep["last_at"], gone["last_at"])
    keep["published"]["independent"] = max(keep["published"]["independent"], gone["published"]["independent"])
    keep["published"]["velocity"] = max(keep["published"]["velocity"], gone["published"]["velocity"])
    keep["published"]["revision_entities"] = (
        keep["published"]["revision_entities"] or gone["published"]["revision_entities"]
    )
    limit = max(len(keep["refs"]), len(gone["refs"]))
    for ref in gone["refs"]:
        _insert_ref(keep["refs"], ref, limit)


def _add_unique(items: list[str], value: str, limit: int | None = None) -> None:
    if value not in items and (limit is None or len(items) < limit):
        items.append(value)


def _add_ref(ledger: dict[str, Any], article: ArticleInfo, limit: int) -> None:
    ref = ArticleRef(
        id=article.id, title=article.title, url=article.url, source=article.source, published=article.published
    ).model_dump(mode="json")
    _insert_ref(ledger["refs"], ref, limit)


def _insert_ref(refs: list[dict[str, Any]], ref: dict[str, Any], limit: int) -> None:
    """Keep at most ``limit`` refs, one per source first, in arrival order."""
    if any(r["id"] == ref["id"] for r in refs):
        return
    if len(refs) < limit:
        refs.append(ref)
        return
    sources = [r["source"] for r in refs]
    if ref["source"] in sources:
        return
    for i in range(len(refs) - 1, -1, -1):
        if sources.count(sources[i]) > 1:
            del refs[i]
            refs.append(ref)
            return


def _score_to(s: TopicScore) -> dict[str, Any]:
    return {
        "score": s.score,
        "threshold": s.threshold,
        "similarity": s.similarity,
        "closest": s.closest,
        "counter": s.counter,
        "counter_similarity": s.counter_similarity,
        "keywords": list(s.keywords),
        "gate": s.gate,
        "topic": s.topic,
        "allowance": s.allowance,
    }


def _score_from(d: dict[str, Any]) -> TopicScore:
    return TopicScore(
        topic=d["topic"],
        score=d["score"],
        threshold=d["threshold"],
        similarity=d["similarity"],
        closest=d["closest"],
        counter=d["counter"],
        counter_similarity=d["counter_similarity"],
        keywords=tuple(d["keywords"]),
        gate=d["gate"],
        allowance=d.get("allowance", 0.0),
    )
