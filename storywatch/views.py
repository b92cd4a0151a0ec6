"""Read-only views of the stages' state, for ``storywatch status`` and the web dashboard.

The stages own their store namespaces and document shapes; this module is the one
place outside them that reads those documents, so when a stage changes a shape only the
accessors here change, not the dashboard or the status command. Every accessor only
reads (``get``, ``scan``, ``count``) and tolerates documents it half understands: a
field it cannot parse is shown as unknown rather than failing the page.

Namespaces read (owned by the stages):

- ``feeds`` (ingest): one document per feed, keyed by the feed's resolved URL, tagged
  with its status (``new``/``ok``/``failing``/``disabled``).
- ``enrich.stories`` (enrich): one document per story, written with
  :func:`story_documents` from each story event the stage publishes.
- ``alerts.deliveries`` (alerts): the delivery log, tagged with the delivery state.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from storywatch.bus import Bus
from storywatch.errors import BusError
from storywatch.schema import StoryEvent, dump
from storywatch.settings import Settings
from storywatch.store import Doc, Store

NS_FEEDS = "feeds"
NS_STORIES = "enrich.stories"
NS_DELIVERIES = "alerts.deliveries"
ALERT_STATES = ("held", "pending", "sending", "sent", "failed", "dead", "digested")
_SCAN_CAP = 20_000
"""Most documents a view reads from one namespace: a dashboard page must stay cheap."""


def parse_time(value: Any) -> datetime | None:
    """An ISO-8601 string (or datetime) as aware UTC; None if absent or unreadable."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str) and value:
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _resolve_feed_url(url: str, base_dir: Path) -> str:
    """The key ingest files a configured feed under (its location as a URL)."""
    if "://" in url:
        return url
    path = Path(url).expanduser()
    return (path if path.is_absolute() else (base_dir / path).resolve()).as_uri()


# -- feeds ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedRow:
    """One feed's health as the dashboard and ``status`` show it."""

    key: str
    name: str = ""
    status: str = "new"
    last_success: datetime | None = None
    last_attempt: datetime | None = None
    next_check_at: datetime | None = None
    error_count: int = 0
    last_error: str | None = None
    failing_since: datetime | None = None
    configured: bool = True

    @property
    def healthy(self) -> bool:
        """Polled fine last time, or not polled yet; a feed that was tried and never
        worked (new, with errors) is not healthy."""
        return self.status == "ok" or self.waiting

    @property
    def waiting(self) -> bool:
        """Not polled yet (no attempt, or none finished)."""
        return self.status == "new" and not self.error_count


def feeds_view(store: Store, settings: Settings | None = None) -> list[FeedRow]:
    """Every feed: the configured ones (with their names, even if never polled) and any
    other the store still remembers; failing and disabled first, then by name."""
    names: dict[str, str] = {}
    if settings is not None:
        for f in settings.feeds:
            names[_resolve_feed_url(f.url, settings.base_dir)] = f.name
    rows: dict[str, FeedRow] = {}
    for key, doc in store.scan(NS_FEEDS, limit=_SCAN_CAP):
        rows[key] = FeedRow(
            key=key,
            name=names.get(key, ""),
            status=str(doc.get("status") or "new"),
            last_success=parse_time(doc.get("last_success")),
            last_attempt=parse_time(doc.get("last_attempt")),
            next_check_at=parse_time(doc.get("next_check_at")),
            error_count=int(doc.get("error_count") or 0),
            last_error=doc.get("last_error"),
            failing_since=parse_time(doc.get("failing_since")),
            configured=key in names or settings is None,
        )
    for key, name in names.items():
        rows.setdefault(key, FeedRow(key=key, name=name))
    order = {"failing": 0, "disabled": 1, "new": 2, "ok": 3}
    return sorted(rows.values(), key=lambda r: (order.get(r.status, 0), (r.name or r.key).lower()))


# -- stories -------------------------------------------------------------------------


@dataclass(frozen=True)
class ArticleRow:
    id: str
    title: str = ""
    url: str | None = None
    source: str = ""
    published: datetime | None = None


@dataclass(frozen=True)
class MatchRow:
    """A watched topic a story matched, and why."""

    topic: str
    score: float = 0.0
    threshold: float = 0.0
    severity: str = "medium"
    explanation: str = ""
    keywords: tuple[str, ...] = ()
    at: datetime | None = None


@dataclass(frozen=True)
class GrowthPoint:
    at: datetime
    articles: int
    sources: int


@dataclass(frozen=True)
class StoryRow:
    story_id: str
    headline: str
    summary: str = ""
    revision: int = 0
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    article_count: int = 0
    source_count: int = 0
    sources: tuple[str, ...] = ()
    velocity: float = 0.0
    key_terms: tuple[str, ...] = ()
    articles: tuple[ArticleRow, ...] = ()
    matches: tuple[MatchRow, ...] = ()
    growth: tuple[GrowthPoint, ...] = field(default=(), repr=False)
    merged_into: str | None = None


def _article(d: Mapping[str, Any]) -> ArticleRow:
    return ArticleRow(
        id=str(d.get("id", "")),
        title=str(d.get("title") or ""),
        url=d.get("url") or None,
        source=str(d.get("source") or d.get("source_host") or ""),
        published=parse_time(d.get("published")),
    )


def _match(d: Mapping[str, Any]) -> MatchRow:
    return MatchRow(
        topic=str(d.get("topic", "")),
        score=float(d.get("score") or 0.0),
        threshold=float(d.get("threshold") or 0.0),
        severity=str(d.get("severity") or "medium"),
        explanation=str(d.get("explanation") or ""),
        keywords=tuple(str(k) for k in d.get("keywords") or ()),
        at=parse_time(d.get("at") or d.get("matched_at")),
    )


def _growth(doc: Mapping[str, Any], articles: Sequence[ArticleRow]) -> tuple[GrowthPoint, ...]:
    """The story's size over time: the stage's own history if it keeps one, else the
    cumulative articles and distinct sources by publication time of the articles known."""
    points: list[GrowthPoint] = []
    for h in doc.get("history") or ():
        at = parse_time(h.get("at"))
        if at is not None:
            points.append(GrowthPoint(at, int(h.get("article_count") or 0), int(h.get("source_count") or 0)))
    if not points:
        seen: set[str] = set()
        dated = sorted((a for a in articles if a.published), key=lambda a: a.published)  # type: ignore[arg-type,return-value]
        for i, a in enumerate(dated, 1):
            seen.add(a.source or a.id)
            points.append(GrowthPoint(a.published, i, len(seen)))  # type: ignore[arg-type]
    last = parse_time(doc.get("last_seen"))
    count, sources = int(doc.get("article_count") or 0), int(doc.get("source_count") or 0)
    if last is not None and (not points or (points[-1].articles, points[-1].sources) != (count, sources)):
        if not points or last >= points[-1].at:
            points.append(GrowthPoint(last, count, sources))
    points.sort(key=lambda p: p.at)
    return tuple(points)


def story_from_doc(story_id: str, doc: Mapping[str, Any]) -> StoryRow:
    """A story snapshot document (a ``StorySnapshot`` dump, optionally with ``matches``,
    ``articles`` and ``history``) as a :class:`StoryRow`."""
    snap = _snapshot(doc)
    raw_articles = snap.get("articles") or snap.get("top_articles") or ()
    articles = tuple(_article(a) for a in raw_articles if isinstance(a, Mapping))
    raw_matches = doc.get("matches") or snap.get("matches") or ()
    matches = tuple(_match(m) for m in raw_matches if isinstance(m, Mapping))
    return StoryRow(
        story_id=str(snap.get("story_id") or story_id),
        headline=str(snap.get("headline") or ""),
        summary=str(snap.get("summary") or ""),
        revision=int(snap.get("revision") or 0),
        first_seen=parse_time(snap.get("first_seen")),
        last_seen=parse_time(snap.get("last_seen")),
        article_count=int(snap.get("article_count") or len(articles)),
        source_count=int(snap.get("source_count") or len({a.source for a in articles})),
        sources=tuple(str(s) for s in snap.get("sources") or ()),
        velocity=float(snap.get("velocity") or 0.0),
        key_terms=tuple(str(t) for t in snap.get("key_terms") or ()),
        articles=articles,
        matches=matches,
        growth=_growth({**snap, "history": doc.get("history") or snap.get("history")}, articles),
        merged_into=doc.get("merged_into") or None,
    )


_HISTORY_KEEP = 240
_ARTICLES_KEEP = 100


def story_documents(event: StoryEvent, previous: Callable[[str], Doc | None]) -> dict[str, Doc]:
    """The ``enrich.stories`` documents to write after publishing ``event`` (key -> doc).

    This is the read model the dashboard and ``status`` show, kept by the enrich stage
    with two lines after it publishes a story event::

        for key, doc in story_documents(event, lambda k: store.get(NS_STORIES, k)).items():
            store.put(NS_STORIES, key, doc)

    Each document is the event's :class:`~storywatch.schema.StorySnapshot` plus what a
    single snapshot forgets: every topic matched so far with its evidence (``matches``),
    the story's size at each revision (``history``, bounded) and the articles seen among
    the snapshots' top articles (``articles``, bounded). A ``merged`` event also marks
    the absorbed story ``merged_into``. An event older than the document is ignored, so
    a redelivered event changes nothing.
    """
    out: dict[str, Doc] = {}
    prev = previous(event.story_id) or {}
    if int(prev.get("revision") or 0) > event.revision:
        return out
    at = event.at.isoformat()
    matches: dict[str, Doc] = {str(m.get("topic")): m for m in prev.get("matches") or () if isinstance(m, dict)}
    for m in [event.match] if event.match else []:
        matches[m.topic] = {**dump(m), "at": matches.get(m.topic, {}).get("at") or at}
    for m in event.matches:
        matches[m.topic] = {**dump(m), "at": matches.get(m.topic, {}).get("at") or at}
    snap = event.story
    history = [h for h in prev.get("history") or () if isinstance(h, dict)]
    point = {"at": at, "article_count": snap.article_count, "source_count": snap.source_count}
    if not history or (history[-1].get("article_count"), history[-1].get("source_count")) != (
        snap.article_count,
        snap.source_count,
    ):
        history.append(point)
    if len(history) > _HISTORY_KEEP:
        history = history[:1] + history[-(_HISTORY_KEEP - 1) :]
    articles = {str(a.get("id")): a for a in prev.get("articles") or () if isinstance(a, dict)}
    for ref in snap.top_articles:
        articles[ref.id] = dump(ref)
    kept = sorted(articles.values(), key=lambda a: (str(a.get("published") or ""), str(a.get("id"))))
    out[event.story_id] = {
        **dump(snap),
        "matches": sorted(matches.values(), key=lambda m: str(m.get("topic"))),
        "history": history,
        "articles": kept[-_ARTICLES_KEEP:],
        "merged_into": None,
    }
    if event.type == "merged" and event.merged_from and event.merged_from != event.story_id:
        gone = previous(event.merged_from)
        if gone is not None:
            out[event.merged_from] = {**gone, "merged_into": event.story_id}
    return out


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _snapshot(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    inner = doc.get("story")
    return inner if isinstance(inner, Mapping) else doc


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def stories_view(store: Store, limit: int = 50, order: str = "newest", since: datetime | None = None) -> list[StoryRow]:
    """The live stories (merged ones left out; with ``since``, only those active since
    then): ``order="newest"`` by last activity, ``"growing"`` by velocity (articles per
    hour), ties broken the other way. Only the ``limit`` shown are fully parsed."""
    ranked = []
    for key, doc in store.scan(NS_STORIES, limit=_SCAN_CAP):
        if not isinstance(doc, dict) or doc.get("merged_into"):
            continue
        snap = _snapshot(doc)
        last = parse_time(snap.get("last_seen")) or _EPOCH
        if since is not None and last < since:
            continue
        velocity = _float(snap.get("velocity"))
        rank = (velocity, last) if order == "growing" else (last, velocity)
        ranked.append((rank, key, doc))
    top = heapq.nlargest(limit, ranked, key=lambda r: (r[0], r[1]))
    return [story_from_doc(key, doc) for _, key, doc in top]


@dataclass(frozen=True)
class TopicActivity:
    """Articles of stories matching one watched topic, counted per time bucket."""

    topic: str
    buckets: tuple[tuple[datetime, int], ...]
    stories: int


def topic_activity(stories: Iterable[StoryRow], bucket: timedelta = timedelta(hours=1)) -> list[TopicActivity]:
    """How much each watched topic is in the news: for every topic, the new articles of
    its matching stories per ``bucket`` (from the stories' growth)."""
    per_topic: dict[str, dict[datetime, int]] = {}
    counts: dict[str, int] = {}
    step = bucket.total_seconds()
    for s in stories:
        increments: list[tuple[datetime, int]] = []
        prev = 0
        for p in s.growth:
            if p.articles > prev:
                increments.append((p.at, p.articles - prev))
                prev = p.articles
        for m in {m.topic for m in s.matches}:
            counts[m] = counts.get(m, 0) + 1
            slots = per_topic.setdefault(m, {})
            for at, n in increments:
                slot = datetime.fromtimestamp(at.timestamp() // step * step, UTC)
                slots[slot] = slots.get(slot, 0) + n
    return [TopicActivity(t, tuple(sorted(per_topic[t].items())), counts[t]) for t in sorted(per_topic, key=str.lower)]


# -- alerts --------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertRow:
    id: str
    state: str
    channel: str
    rule: str = ""
    topic: str | None = None
    severity: str = "medium"
    title: str = ""
    story_id: str | None = None
    why: str = ""
    attempts: int = 0
    created_at: datetime | None = None
    sent_at: datetime | None = None
    next_at: datetime | None = None
    last_error: str | None = None
    follow_up: bool = False


def alert_from_doc(doc: Doc) -> AlertRow:
    alert = doc.get("alert") or {}
    return AlertRow(
        id=str(doc.get("id", "")),
        state=str(doc.get("state", "")),
        channel=str(doc.get("channel", "")),
        rule=str(alert.get("rule") or ""),
        topic=alert.get("topic"),
        severity=str(alert.get("severity") or "medium"),
        title=str(alert.get("title") or ""),
        story_id=alert.get("story_id"),
        why=str(alert.get("why") or ""),
        attempts=int(doc.get("attempts") or 0),
        created_at=parse_time(doc.get("created_at")),
        sent_at=parse_time(doc.get("sent_at")),
        next_at=parse_time(doc.get("next_at")),
        last_error=doc.get("last_error"),
        follow_up=bool(alert.get("follow_up")),
    )


def alerts_view(store: Store, state: str | Sequence[str] | None = None, limit: int = 50) -> list[AlertRow]:
    """Deliveries, newest first; only those in ``state`` (one or several) if given."""
    states: list[str | None] = [state] if isinstance(state, str) or state is None else list(state)
    rows = [alert_from_doc(d) for s in states for _, d in store.scan(NS_DELIVERIES, tag=s, limit=_SCAN_CAP)]
    rows.sort(key=lambda r: (r.created_at or _EPOCH, r.id), reverse=True)
    return rows[:limit]


def alert_counts(store: Store) -> dict[str, int]:
    """Deliveries per state (states with none left out)."""
    counts = {s: store.count(NS_DELIVERIES, tag=s) for s in ALERT_STATES}
    return {s: n for s, n in counts.items() if n}


# -- the bus -------------------------------------------------------------------------


def stage_groups(settings: Settings) -> dict[str, tuple[str, list[str]]]:
    """Each consuming stage's consumer group and the topics it reads.

    The group names are the stages' settings (``enrich.group``, ``alerts.group``). With
    ``enrich.role`` other than ``all`` the enrich stage is split into embed workers and
    a story writer, reported apart.
    """
    t = settings.bus.topics
    e = settings.enrich
    enrich: dict[str, tuple[str, list[str]]] = {"enrich": (e.group, [t.raw_articles])}
    if e.role != "all":  # split into embed workers and one story writer
        enrich = {"enrich-embed": (e.embed_group, [t.raw_articles]), "enrich-cluster": (e.group, [t.embedded_articles])}
    return {**enrich, "alerts": (settings.alerts.group, [t.story_events, t.feed_health])}


def bus_lag(
    bus: Bus, groups: Mapping[str, tuple[str, Sequence[str]]], *, strict: bool = False
) -> dict[str, int | None]:
    """Records each stage's group has not yet committed, or None where unknown.

    Joining a live Kafka group to ask would make it rebalance, so a bus is asked through
    a side door that does not join: ``group_lag(group, topics)`` if it has one, or the
    embedded bus's committed and end offsets. ``strict``: a bus that cannot be reached
    raises :class:`BusError` (``storywatch status`` exits 3) instead of reading unknown.
    """
    out: dict[str, int | None] = {}
    for stage, (group, topics) in groups.items():
        try:
            out[stage] = _group_lag(bus, group, topics)
        except BusError:
            if strict:
                raise
            out[stage] = None
        except Exception:
            out[stage] = None
    return out


def _group_lag(bus: Bus, group: str, topics: Sequence[str]) -> int | None:
    fn = getattr(bus, "group_lag", None)
    if callable(fn):
        lag = fn(group, list(topics))
        return None if lag is None else int(lag)
    committed, end = getattr(bus, "committed", None), getattr(bus, "end_offset", None)
    if callable(committed) and callable(end):
        return sum(max(0, int(end(t)) - int(committed(group, t))) for t in topics)
    return None


# -- storywatch status ---------------------------------------------------------------


def _ago(dt: datetime | None, now: datetime) -> str:
    if dt is None:
        return "never"
    s = (now - dt).total_seconds()
    sign, s = ("in ", -s) if s < 0 else ("", s)
    if s < 120:
        text = f"{s:.0f}s"
    elif s < 7200:
        text = f"{s / 60:.0f}m"
    else:
        text = f"{s / 3600:.1f}h" if s < 172800 else f"{s / 86400:.0f}d"
    return f"{sign}{text}" if sign else f"{text} ago"


def _one_line(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj


def status(
    settings: Settings,
    store: Store,
    bus: Bus | None,
    as_json: bool,
    out: TextIO,
    *,
    now: datetime | None = None,
    stories: int = 5,
    alerts: int = 10,
) -> int:
    """Print the state of the pipeline: feeds, the most active stories, recent and failed
    alerts, and each stage's bus lag. Exit status 1 when a feed is failing or disabled
    or a delivery is dead (something needs a person), else 0."""
    now = now or datetime.now(UTC)
    feeds = feeds_view(store, settings)
    top = stories_view(store, limit=stories, order="growing")
    recent = alerts_view(store, limit=alerts)
    failed = alerts_view(store, state=("failed", "dead"), limit=alerts)
    counts = alert_counts(store)
    lag = bus_lag(bus, stage_groups(settings), strict=True) if bus is not None else {}
    unhealthy = any(not f.healthy for f in feeds) or counts.get("dead", 0) > 0
    if as_json:
        doc = {
            "ok": not unhealthy,
            "feeds": [asdict(f) for f in feeds],
            "stories": [{k: v for k, v in asdict(s).items() if k not in ("growth", "articles")} for s in top],
            "alerts": {"counts": counts, "recent": [asdict(a) for a in recent], "failed": [asdict(a) for a in failed]},
            "bus_lag": lag,
        }
        out.write(json.dumps(_jsonable(doc), ensure_ascii=False) + "\n")
        return 1 if unhealthy else 0
    w = out.write
    ok = sum(f.status == "ok" for f in feeds)
    waiting = sum(f.waiting for f in feeds)
    w(f"FEEDS  {ok}/{len(feeds)} healthy" + (f", {waiting} not polled yet\n" if waiting else "\n"))
    for f in feeds:
        w(
            f"  {f.status:<8} {_one_line(f.name or f.key, 40):<40}  last ok {_ago(f.last_success, now):<10}"
            f"  next {_ago(f.next_check_at, now) if f.next_check_at else '-':<10}"
        )
        w(f"  errors {f.error_count}: {_one_line(f.last_error, 60)}\n" if f.last_error else "\n")
    w(f"\nSTORIES  most active of {store.count(NS_STORIES)}\n")
    if not top:
        w("  none yet\n")
    for s in top:
        topics = ", ".join(m.topic for m in s.matches)
        w(
            f"  {s.velocity:>6.1f}/h  {s.article_count:>4} art {s.source_count:>3} src  "
            f"{_one_line(s.headline, 60)}" + (f"  [{_one_line(topics, 40)}]" if topics else "") + "\n"
        )
    summary = ", ".join(f"{n} {st}" for st, n in counts.items()) or "none"
    w(f"\nALERTS  {summary}\n")
    for a in recent:
        when = _ago(a.sent_at or a.created_at, now)
        w(f"  {a.state:<8} {a.channel[:12]:<12} {when:<10} {_one_line(a.title, 70)}\n")
    if failed:
        w("  failed or dead:\n")
        for a in failed:
            w(f"  {a.state:<8} {a.id} {a.channel[:12]:<12} tries {a.attempts}: {_one_line(a.last_error or '', 70)}\n")
    w("\nBUS LAG  records not yet consumed\n")
    for stage, n in lag.items():
        w(f"  {stage:<8} {'unknown' if n is None else n}\n")
    return 1 if unhealthy else 0
