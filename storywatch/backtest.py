"""``storywatch backtest``: which alerts a new config would have sent over past articles.

Tuning a watched topic or a rule is guesswork without history, so this replays articles
(the raw-articles topic still retained on the configured bus, or a JSONL file) through
the enrich stage and the alert rules of the new config, and prints the alerts that
would have fired, per topic and channel, with counts. Nothing is sent and nothing of
the running pipeline is touched:

- the replay runs on its own temporary embedded bus and SQLite store, deleted after;
- every channel of the new config is replaced by a recording sink (a ``file`` channel in
  the temporary directory), without rate budgets, digests or quiet hours, so the count
  is of alerts the rules produce, not of messages a channel would have batched;
- reading history from the configured bus uses a fresh consumer group that never
  commits, so no stage's offsets move.

Time is replayed, not waited for: a :class:`~storywatch.clock.FakeClock` follows the
times the articles arrived (``fetched_at``; a JSONL file's ``published``), and the stages
drain after each ``_SLICE`` of that time, so velocity and "emerging" see the history's
own pace.

The core does not import the stages: the caller (the CLI, the composition root) passes
``make_services``, which builds the enrich and alerts services over the temporary bus
and store, in pipeline order.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

from storywatch.bus import Bus
from storywatch.clock import Clock, FakeClock
from storywatch.errors import SchemaError, StorywatchError
from storywatch.logs import kv
from storywatch.runtime import Service
from storywatch.schema import Article, decode
from storywatch.settings import Settings
from storywatch.settings.alerts import FileChannel
from storywatch.store import Store

log = logging.getLogger("storywatch.backtest")

ServiceFactory = Callable[[Settings, Bus, Store, Clock], Sequence[Service]]
"""Builds the services to replay through (enrich, then alerts) over a bus and a store."""

_SLICE = timedelta(minutes=10)
_MAX_SLICE_ARTICLES = 200
_POLL_BATCH = 500


class BacktestInputError(StorywatchError):
    """A line of the input file is not an article; ``line`` says which."""

    def __init__(self, path: Path, line: int, reason: str):
        self.path = path
        self.line = line
        self.reason = reason
        super().__init__(f"{path}:{line}: {reason}")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> timedelta:
    """``"7d"``, ``"36h"``, ``"90m"``, ``"1w"``, ``"45s"`` (or plain seconds) as a timedelta.

    >>> parse_duration("7d")
    datetime.timedelta(days=7)
    """
    t = text.strip().lower()
    unit = _UNITS.get(t[-1:]) if t else None
    number = t[:-1] if unit else t
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (expected e.g. 7d, 36h, 90m)") from None
    if value <= 0 or value != value or value == float("inf"):
        raise ValueError(f"not a positive duration: {text!r}")
    return timedelta(seconds=value * (unit or 1))


def _parse_time(value: object) -> datetime:
    if not isinstance(value, str) or not value:
        raise ValueError("published: expected an ISO-8601 time")
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _text(row: dict[str, object], *keys: str) -> str:
    """The first of ``keys`` that is set, as text: a string or a number; null is empty."""
    for key in keys:
        value = row.get(key)
        if value is None or value == "":
            continue
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError(f"{key}: expected a string, got {type(value).__name__}")
        return str(value)
    return ""


def read_jsonl(path: Path) -> Iterator[Article]:
    """Articles of a JSONL file with ``id, title, text, published, source, url`` per line
    (``text`` may be named ``summary``; blank lines are skipped)."""
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                reason = f"not UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of the line)"
                raise BacktestInputError(path, n, reason) from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError("expected a JSON object")
                if "id" not in row:
                    raise KeyError("id")
                article_id = _text(row, "id")
                if not article_id:
                    raise ValueError("id: expected a non-empty string or a number")
                published = _parse_time(row.get("published"))
                url = _text(row, "url") or None
                yield Article(
                    id=article_id,
                    url=url,
                    title=_text(row, "title"),
                    summary=_text(row, "text", "summary"),
                    published=published,
                    fetched_at=published,
                    source=_text(row, "source"),
                    source_host=(urlsplit(url).hostname or "") if url else "",
                )
            except (ValueError, KeyError, TypeError) as exc:
                reason = f"missing {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
                raise BacktestInputError(path, n, reason) from None


def read_history(bus: Bus, topic: str, since: datetime | None) -> Iterator[Article]:
    """Articles retained on ``topic`` that arrived (``fetched_at``) at or after ``since``,
    read by a throwaway consumer group that never commits."""
    consumer = bus.consumer(f"storywatch-backtest-{uuid.uuid4().hex[:12]}", [topic])
    try:
        while records := consumer.poll(_POLL_BATCH, 1.0):
            for rec in records:
                try:
                    article = decode(Article, rec.topic, rec.value)
                except SchemaError:
                    continue
                if since is None or article.fetched_at >= since:
                    yield article
    finally:
        consumer.close()


def isolated_settings(settings: Settings, workdir: Path) -> Settings:
    """``settings`` pointed at a bus and store in ``workdir``, every channel a recording
    file sink there, and http off: nothing of it reaches the outside."""
    channels = {
        name: FileChannel.model_validate({"kind": "file", "path": workdir / "sent" / f"{name}.jsonl"})
        for name in settings.alerts.channels
    }
    return settings.model_copy(
        update={
            "bus": settings.bus.model_copy(update={"kind": "embedded", "path": workdir / "bus.db"}),
            "store": settings.store.model_copy(update={"kind": "sqlite", "path": workdir / "state.db"}),
            "http": settings.http.model_copy(update={"enabled": False}),
            "alerts": settings.alerts.model_copy(update={"channels": channels}),
        }
    )


def _slices(articles: list[Article]) -> Iterator[list[Article]]:
    """Consecutive articles grouped by ``_SLICE`` of arrival time (capped in size)."""
    batch: list[Article] = []
    for a in articles:
        if batch and (a.fetched_at - batch[0].fetched_at >= _SLICE or len(batch) >= _MAX_SLICE_ARTICLES):
            yield batch
            batch = []
        batch.append(a)
    if batch:
        yield batch


def replay(
    settings: Settings, articles: Sequence[Article], make_services: ServiceFactory, workdir: Path
) -> list[dict[str, object]]:
    """Run ``articles`` (in publication order) through the services on an isolated bus
    and store under ``workdir``, in arrival order; return the deliveries the alert rules
    recorded."""
    from storywatch.bus.embedded import EmbeddedBus
    from storywatch.store.sqlite import SQLiteStore
    from storywatch.views import NS_DELIVERIES

    iso = isolated_settings(settings, workdir)
    ordered = sorted(articles, key=lambda a: (a.fetched_at, a.published, a.id))
    clock = FakeClock(ordered[0].fetched_at if ordered else datetime.now(UTC))
    bus = EmbeddedBus(workdir / "bus.db", retention_s=10 * 365 * 86400.0)
    store = SQLiteStore(workdir / "state.db")
    try:
        topics = iso.bus.topics
        bus.ensure_topics(
            [topics.raw_articles, topics.story_events, topics.feed_health, topics.alerts, topics.dead_letters]
        )
        services = list(make_services(iso, bus, store, clock))
        producer = bus.producer()
        # "alert sent" would be untrue here: the channels are recording sinks. Failures
        # and warnings still show.
        alerts_log = logging.getLogger("storywatch.alerts")
        alerts_level = alerts_log.level
        alerts_log.setLevel(max(logging.WARNING, alerts_log.getEffectiveLevel()))
        try:
            for batch in _slices(ordered):
                for a in batch:
                    producer.publish(topics.raw_articles, a.id, a.to_bytes())
                producer.flush()
                latest = batch[-1].fetched_at
                if latest > clock.now():
                    clock.advance((latest - clock.now()).total_seconds())
                for svc in services:
                    svc.drain()
        finally:
            for svc in reversed(services):
                svc.close()
            producer.close()
            alerts_log.setLevel(alerts_level)
        return [doc for _, doc in store.scan(NS_DELIVERIES)]
    finally:
        bus.close()
        store.close()


def backtest(
    settings: Settings,
    since: timedelta | None,
    input_path: Path | None,
    out: TextIO,
    *,
    make_services: ServiceFactory,
    history_bus: Bus | None = None,
    now: datetime | None = None,
    err: TextIO | None = None,
) -> int:
    """Replay history through ``settings`` (NEW.yaml) and print what would have fired.

    ``input_path`` replays a JSONL file; otherwise the raw-articles topic of the
    configured bus (``history_bus`` if given, else one opened from ``settings``) from
    ``since`` ago (all that is retained when None). Exit status 0, or 2 for unusable input.
    """
    now = now or datetime.now(UTC)
    err = err or sys.stderr  # errors apart from the report, which may be piped
    if since is not None and input_path is not None:
        err.write("backtest: give --since (stored history) or --input (a file), not both\n")
        return 2
    try:
        if input_path is not None:
            articles = list(read_jsonl(input_path))
            origin = str(input_path)
        else:
            articles = _from_bus(settings, history_bus, now - since if since else None)
            origin = f"{settings.bus.kind} bus topic {settings.bus.topics.raw_articles}"
    except (BacktestInputError, OSError) as exc:
        err.write(f"backtest: {exc}\n")
        return 2
    if not articles:
        out.write(f"backtest: no articles to replay from {origin}\n")
        return 0
    log.info("backtest started", extra=kv(articles=len(articles), origin=origin))
    with tempfile.TemporaryDirectory(prefix="storywatch-backtest-") as tmp:
        deliveries = replay(settings, articles, make_services, Path(tmp))
    report(articles, deliveries, origin, out)
    return 0


def _from_bus(settings: Settings, bus: Bus | None, since: datetime | None) -> list[Article]:
    if bus is not None:
        return list(read_history(bus, settings.bus.topics.raw_articles, since))
    from storywatch.bus import make_bus

    opened = make_bus(settings.resolved_bus())
    try:
        return list(read_history(opened, settings.bus.topics.raw_articles, since))
    finally:
        opened.close()


def report(articles: Sequence[Article], deliveries: Sequence[dict[str, object]], origin: str, out: TextIO) -> None:
    """Print the alerts of a replay: totals per topic (or rule) and channel, then each alert."""
    first = min(a.published for a in articles)
    last = max(a.published for a in articles)
    w = out.write
    span = f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC"
    w(f"replayed {len(articles)} articles from {origin}, published {span}\n")
    w("nothing was sent: every channel was replaced by a recording sink\n\n")
    by_alert: dict[str, dict[str, object]] = {}
    channels_of: dict[str, list[str]] = {}
    counts: Counter[tuple[str, str]] = Counter()
    for d in deliveries:
        alert = d.get("alert")
        if not isinstance(alert, dict):
            continue
        key = str(alert.get("key", d.get("id")))
        label = str(alert.get("topic") or f"({alert.get('rule', '?')})")
        counts[(label, str(d.get("channel", "")))] += 1
        by_alert.setdefault(key, alert)
        channels_of.setdefault(key, []).append(str(d.get("channel", "")))
    w(f"ALERTS THAT WOULD HAVE FIRED: {len(by_alert)} ({sum(counts.values())} deliveries)\n")
    if not counts:
        return
    width = max(len("TOPIC / RULE"), *(len(t) for t, _ in counts))
    w(f"  {'TOPIC / RULE':<{width}}  {'CHANNEL':<14} {'COUNT':>5}\n")
    for (label, channel), n in sorted(counts.items(), key=lambda kv_: (-kv_[1], kv_[0])):
        w(f"  {label:<{width}}  {channel:<14} {n:>5}\n")
    w("\n")
    for key, alert in sorted(by_alert.items(), key=lambda kv_: (str(kv_[1].get("created_at", "")), kv_[0])):
        at = str(alert.get("created_at", ""))[:16].replace("T", " ")
        rule = str(alert.get("rule", ""))
        title = " ".join(str(alert.get("title", "")).split())
        title = title if len(title) <= 80 else title[:79] + "…"
        w(f"  {at}  {rule:<14} {','.join(sorted(channels_of[key])):<16} {title}\n")
